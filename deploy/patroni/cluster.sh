#!/usr/bin/env bash
# A Patroni cluster of PostgreSQL 15 members with etcd, on this machine,
# for tests and for trying Tessera's failover by hand.
#
#   deploy/patroni/cluster.sh up            install if missing, start, wait for a primary and a sync standby
#   deploy/patroni/cluster.sh url           the multi-host URL Tessera takes (read-write)
#   deploy/patroni/cluster.sh status        patronictl list
#   deploy/patroni/cluster.sh primary       the primary's member name
#   deploy/patroni/cluster.sh kill-primary  SIGKILL the primary's Patroni and PostgreSQL (a lost machine)
#   deploy/patroni/cluster.sh start NAME    start a stopped member again (it rejoins as a standby)
#   deploy/patroni/cluster.sh switchover    a planned switchover to a synchronous standby
#   deploy/patroni/cluster.sh partition     cut the primary off from etcd, the members and Tessera
#   deploy/patroni/cluster.sh heal          once another member leads, reconnect and start the others; wait
#   deploy/patroni/cluster.sh read-url      the URL of the standbys (for --database-read-url)
#   deploy/patroni/cluster.sh wait          wait until there is a primary and a streaming sync standby
#   deploy/patroni/cluster.sh down          stop everything and remove the data
#
# Run as root, each member lives in a network namespace of its own on a
# private bridge (netns.sh); otherwise all share 127.0.0.1. Nothing listens
# beyond this machine (trust authentication: this is a test cluster, never a
# production one). Ports, from TESSERA_HA_PORT (default 5441): PostgreSQL
# PORT..PORT+N-1, Patroni's REST API PORT+100.., etcd PORT+200 (client) and
# PORT+201 (peer). Members: TESSERA_HA_MEMBERS (3). State lives in
# TESSERA_HA_DIR (/tmp/tessera-ha).
set -euo pipefail

DIR="${TESSERA_HA_DIR:-/tmp/tessera-ha}"
BASE="${TESSERA_HA_PORT:-5441}"
MEMBERS="${TESSERA_HA_MEMBERS:-3}"
BIN="${TESSERA_HA_PG_BIN:-/usr/lib/postgresql/15/bin}"
ETCD_PORT=$((BASE + 200))
# Patroni's timing decides how long a lost primary stays unnoticed: its
# leader key lives `ttl` seconds after the last refresh; each member
# refreshes every `loop_wait`; Patroni requires loop_wait + 2*retry_timeout
# <= ttl. These give a promotion some 5-12 s after a primary's machine is lost.
TTL="${TESSERA_HA_TTL:-10}"
LOOP_WAIT="${TESSERA_HA_LOOP_WAIT:-2}"
RETRY_TIMEOUT="${TESSERA_HA_RETRY_TIMEOUT:-4}"

say() { echo "cluster: $*" >&2; }

# shellcheck source=deploy/patroni/netns.sh
. "$(dirname "$0")/netns.sh"

install_missing() {
  local need=()
  command -v patroni >/dev/null || need+=(patroni)
  command -v etcd >/dev/null || need+=(etcd-server)
  command -v etcdctl >/dev/null || need+=(etcd-client)
  [ -x "$BIN/postgres" ] || need+=(postgresql-15)
  /usr/bin/python3 -c "import psycopg2" 2>/dev/null || need+=(python3-psycopg2)
  [ ${#need[@]} -eq 0 ] && return
  say "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

member_port() { echo $((BASE + $1 - 1)); }
rest_port() { echo $((BASE + 100 + $1 - 1)); }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

write_config() {
  local i=$1 name="pg$1" port rest ip
  port=$(member_port "$i")
  rest=$(rest_port "$i")
  ip=$(member_ip "$i")
  mkdir -p "$DIR/$name"
  cat >"$DIR/$name/patroni.yml" <<YML
scope: tessera
namespace: /tessera-ha/
name: $name
log:
  level: WARNING
restapi:
  listen: $ip:$rest
  connect_address: $ip:$rest
etcd3:
  hosts: $(host_ip):$ETCD_PORT
bootstrap:
  dcs:
    ttl: $TTL
    loop_wait: $LOOP_WAIT
    retry_timeout: $RETRY_TIMEOUT
    maximum_lag_on_failover: 1048576
    # A commit is acknowledged only once a synchronous standby has it, and
    # only a synchronous standby may be promoted: no acknowledged write is
    # lost when the primary is.
    synchronous_mode: true
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        max_connections: 300
        wal_log_hints: "on"
        hot_standby: "on"
        wal_keep_size: 256MB
  initdb:
    - encoding: UTF8
    - data-checksums
  pg_hba:
    - local all all trust
    - host replication replicator $(member_net) trust
    - host all all $(member_net) trust
postgresql:
  listen: $ip:$port
  connect_address: $ip:$port
  data_dir: $DIR/$name/data
  bin_dir: $BIN
  pgpass: $DIR/$name/pgpass
  authentication:
    superuser: {username: postgres, password: postgres}
    replication: {username: replicator, password: replicator}
    rewind: {username: postgres, password: postgres}
  parameters:
    unix_socket_directories: $DIR/$name
tags: {}
YML
  chown -R postgres:postgres "$DIR/$name"
}

start_member() {
  local name=$1
  local pidfile="$DIR/$name/patroni.pid"
  alive "$pidfile" && return
  rm -f "$pidfile"
  # `ip netns exec` forks, so the pid file is written from inside the
  # namespace by the shell that then becomes Patroni (setsid and setpriv
  # exec): it names Patroni itself, which `down` and `kill-primary` stop.
  HOME="$DIR/$name" in_member_ns "${name#pg}" sh -c 'echo $$ >"$1"; shift; exec "$@"' sh "$pidfile" \
    setsid setpriv --reuid=postgres --regid=postgres --init-groups \
    patroni "$DIR/$name/patroni.yml" >>"$DIR/$name/patroni.log" 2>&1 </dev/null 9>&- &
  for _ in $(seq 100); do [ -s "$pidfile" ] && return; sleep 0.05; done
  say "$name did not start"
  return 1
}

ctl() { patronictl -c "$DIR/pg1/patroni.yml" "$@"; }

# The cluster's state as JSON, from the first member's Patroni REST API
# that answers (soon: one cut off must not hold the others up).
members() {
  local i
  for i in $(seq "$MEMBERS"); do
    curl -fsS --connect-timeout 1 --max-time 2 "http://$(member_ip "$i"):$(rest_port "$i")/cluster" 2>/dev/null && return
  done
  return 1
}

primary() {
  members | python3 -c 'import json,sys
for m in json.load(sys.stdin)["members"]:
    if m["role"] == "leader" and m["state"] == "running": print(m["name"])' 2>/dev/null
}

# A primary and a streaming synchronous standby (so commits can be acknowledged).
ready() {
  members | python3 -c 'import json,sys
ms = json.load(sys.stdin)["members"]
ok = any(m["role"] == "leader" and m["state"] == "running" for m in ms) and \
     any(m["role"] == "sync_standby" and m["state"] in ("running", "streaming") for m in ms)
sys.exit(0 if ok else 1)' 2>/dev/null
}

wait_ready() {
  local limit=${1:-120}
  for _ in $(seq $((limit * 2))); do ready && return 0; sleep 0.5; done
  say "no primary with a synchronous standby after ${limit}s"; ctl list >&2 || true
  return 1
}

url() {
  local hosts=() i
  for i in $(seq "$MEMBERS"); do hosts+=("$(member_ip "$i"):$(member_port "$i")"); done
  local IFS=,
  echo "postgres://postgres@${hosts[*]}/tessera?target_session_attrs=${1:-read-write}"
}

up() {
  install_missing
  mkdir -p "$DIR"
  net_up
  if ! alive "$DIR/etcd.pid"; then
    local clients="http://127.0.0.1:$ETCD_PORT"
    [ "$(host_ip)" = 127.0.0.1 ] || clients+=",http://$(host_ip):$ETCD_PORT"
    setsid etcd --name tessera-ha --data-dir "$DIR/etcd" \
      --listen-client-urls "$clients" --advertise-client-urls "http://$(host_ip):$ETCD_PORT" \
      --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
      --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
      --initial-cluster "tessera-ha=http://127.0.0.1:$((ETCD_PORT + 1))" \
      >>"$DIR/etcd.log" 2>&1 </dev/null 9>&- &
    echo $! >"$DIR/etcd.pid"
    for _ in $(seq 60); do
      ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$ETCD_PORT" endpoint health >/dev/null 2>&1 && break
      sleep 0.5
    done
  fi
  chmod 755 "$DIR"
  local i
  for i in $(seq "$MEMBERS"); do
    [ -f "$DIR/pg$i/patroni.yml" ] || write_config "$i"
  done
  # The first member bootstraps alone, so it is the one that runs initdb.
  start_member pg1
  for _ in $(seq 240); do [ -n "$(primary)" ] && break; sleep 0.5; done
  for i in $(seq 2 "$MEMBERS"); do start_member "pg$i"; done
  wait_ready 180
  local at
  at=$(primary | tr -dc 0-9)
  psql -h "$(member_ip "$at")" -p "$(member_port "$at")" -U postgres -Atqc "SELECT 1 FROM pg_database WHERE datname = 'tessera'" |
    grep -q 1 || psql -h "$(member_ip "$at")" -p "$(member_port "$at")" -U postgres -qc "CREATE DATABASE tessera"
  say "up: $(url)"
}

stop_pid() {
  local pidfile=$1
  if alive "$pidfile"; then
    kill "$(cat "$pidfile")" 2>/dev/null || true
    for _ in $(seq 40); do alive "$pidfile" || break; sleep 0.25; done
    alive "$pidfile" && kill -9 "$(cat "$pidfile")" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

postmaster_pid() { head -n 1 "$DIR/$1/data/postmaster.pid" 2>/dev/null; }

down() {
  local i
  for i in $(seq "$MEMBERS"); do
    stop_pid "$DIR/pg$i/patroni.pid"
    # Patroni stops its PostgreSQL; one left by a SIGKILLed Patroni is stopped here.
    local pm
    pm=$(postmaster_pid "pg$i" || true)
    [ -n "$pm" ] && kill -9 "$pm" 2>/dev/null || true
  done
  stop_pid "$DIR/etcd.pid"
  net_down
  rm -rf "$DIR" "$DIR.lock"
  say "down"
}

kill_primary() {
  local name pm
  name=$(primary)
  [ -n "$name" ] || { say "no primary to kill"; return 1; }
  pm=$(postmaster_pid "$name")
  kill -9 "$(cat "$DIR/$name/patroni.pid")" 2>/dev/null || true
  [ -n "$pm" ] && kill -9 "$pm" 2>/dev/null || true
  # The postmaster's children die with it (they notice their parent is gone);
  # take them at once, as a lost machine would.
  pkill -9 -P "$pm" 2>/dev/null || true
  rm -f "$DIR/$name/patroni.pid"
  echo "$name"
}

switchover() {
  local leader candidate
  leader=$(primary)
  candidate=$(members | python3 -c 'import json,sys
for m in json.load(sys.stdin)["members"]:
    if m["role"] == "sync_standby": print(m["name"]); break' 2>/dev/null)
  [ -n "$leader" ] && [ -n "$candidate" ] || { say "no primary or no sync standby"; return 1; }
  ctl switchover --leader "$leader" --candidate "$candidate" --force >/dev/null
  echo "$leader -> $candidate"
}

# A member killed (or cut off) while it led must not come back before
# another leads: its Patroni would find its own leader key, still live, and
# lead again.
heal() {
  local leader i
  for _ in $(seq 240); do
    leader=$(primary)
    [ -n "$leader" ] && alive "$DIR/$leader/patroni.pid" &&
      [ "$leader" != "$(cat "$DIR/cut" 2>/dev/null)" ] && break
    sleep 0.25
  done
  net_heal
  for i in $(seq "$MEMBERS"); do start_member "pg$i"; done
  wait_ready 120
  echo "primary $(primary)"
}

# One `up` or `down` at a time per directory: a soak starting while the last
# one's cleanup still runs would otherwise lose its data directory. (The
# daemons are started without fd 9, so that they do not hold the lock.)
locked() {
  exec 9>"$DIR.lock"
  flock 9
  "$@"
}

case "${1:-}" in
  up) locked up ;;
  down) locked down ;;
  url) url ;;
  status) ctl list ;;
  primary) primary ;;
  wait) wait_ready "${2:-120}" ;;
  kill-primary) kill_primary ;;
  start) start_member "${2:?member name, e.g. pg1}" ;;
  switchover) switchover ;;
  partition) partition ;;
  heal) heal ;;
  read-url) url prefer-standby ;;
  *) sed -n '2,24p' "$0" >&2; exit 2 ;;
esac
