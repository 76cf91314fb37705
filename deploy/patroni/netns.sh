# Sourced by cluster.sh: each member in a network namespace of its own, so
# that a partition can be made with `ip`.
#
# Every member's namespace has one veth whose other end is a port of a
# bridge in the host's namespace; the bridge holds the host's address on a
# private /24 (etcd and Tessera live in the host's namespace and reach the
# members there). Cutting a member off is setting its bridge port down:
# its packets to everyone (etcd, the other members, Tessera) and theirs to
# it are dropped, silently, as on a real partition (no reset). Names and
# the subnet derive from the base port, so two clusters (a person's and
# CI's) do not meet.
#
# Used when run as root with `ip` at hand, unless TESSERA_HA_NETNS=0; then
# every member shares loopback and `partition` is refused.

BRIDGE="tha$BASE"
SUBNET="10.211.$((BASE % 256))"
NETNS="${TESSERA_HA_NETNS:-auto}"
if [ "$NETNS" = auto ]; then
  NETNS=0
  [ "$(id -u)" = 0 ] && command -v ip >/dev/null && NETNS=1
fi

netns_name() { echo "$BRIDGE-pg$1"; }
# The bridge's port (host side) and the member's end of its veth.
port_link() { echo "${BRIDGE}v$1"; }
member_link() { echo "${BRIDGE}m$1"; }

# Where member $1 listens, and where the members reach etcd.
member_ip() { if [ "$NETNS" = 1 ]; then echo "$SUBNET.$((10 + $1))"; else echo 127.0.0.1; fi; }
host_ip() { if [ "$NETNS" = 1 ]; then echo "$SUBNET.1"; else echo 127.0.0.1; fi; }
member_net() { if [ "$NETNS" = 1 ]; then echo "$SUBNET.0/24"; else echo 127.0.0.1/32; fi; }

# Runs member $1's command in its namespace.
in_member_ns() {
  local i=$1
  shift
  if [ "$NETNS" = 1 ]; then ip netns exec "$(netns_name "$i")" "$@"; else "$@"; fi
}

net_up() {
  [ "$NETNS" = 1 ] || return 0
  local i ns
  ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
  ip addr replace "$SUBNET.1/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  for i in $(seq "$MEMBERS"); do
    ns=$(netns_name "$i")
    ip netns list | grep -qw "$ns" || ip netns add "$ns"
    if ! ip link show "$(port_link "$i")" >/dev/null 2>&1; then
      ip link add "$(port_link "$i")" type veth peer name "$(member_link "$i")"
      ip link set "$(member_link "$i")" netns "$ns"
    fi
    ip link set "$(port_link "$i")" master "$BRIDGE" up
    ip -n "$ns" addr replace "$(member_ip "$i")/24" dev "$(member_link "$i")"
    ip -n "$ns" link set lo up
    ip -n "$ns" link set "$(member_link "$i")" up
  done
}

# Removing a namespace removes its end of the veth, and with it the pair.
net_down() {
  [ "$NETNS" = 1 ] || return 0
  local i
  for i in $(seq "$MEMBERS"); do
    ip netns del "$(netns_name "$i")" 2>/dev/null || true
    ip link del "$(port_link "$i")" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
}

# Cuts the primary off from everyone; prints its name.
partition() {
  [ "$NETNS" = 1 ] || { say "partition needs the members in network namespaces (root, ip)"; return 1; }
  local name
  name=$(primary)
  [ -n "$name" ] || { say "no primary to cut off"; return 1; }
  ip link set "$(port_link "${name#pg}")" down
  echo "$name" >"$DIR/cut"
  echo "$name"
}

# Every member reachable again.
net_heal() {
  [ "$NETNS" = 1 ] || return 0
  local i
  for i in $(seq "$MEMBERS"); do
    ip link set "$(port_link "$i")" up 2>/dev/null || true
  done
  rm -f "$DIR/cut"
}
