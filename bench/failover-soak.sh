#!/usr/bin/env bash
# The failover soak: three Tessera replicas on a Patroni cluster of this
# machine, claims racing through the client crate while the database's
# primary is SIGKILLed and later switched over by plan (and, if asked, cut
# off from the others by a partition: see GUARANTEES.md); then every grant is
# read back (client/examples/failover_soak). Exits non-zero if an
# acknowledged use or revocation was lost, a grant was used past its
# maximum, or a claim, revoke or read failed for its caller.
#
#   bench/failover-soak.sh [--claims N] [--concurrency N] [--faults kill,switchover,partition] [--keep]
#
# The cluster is started by deploy/patroni/cluster.sh (installing Patroni and
# etcd from Debian's packages if missing) and removed at the end unless it
# was already up or --keep is given. Debug builds unless CARGO_PROFILE=release.
set -euo pipefail
cd "$(dirname "$0")/.."

CLAIMS=100000
CONCURRENCY=32
FAULTS=kill,switchover
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --claims) CLAIMS=$2; shift 2 ;;
    --concurrency) CONCURRENCY=$2; shift 2 ;;
    --faults) FAULTS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) sed -n '2,14p' "$0" >&2; exit 2 ;;
  esac
done

CLUSTER=deploy/patroni/cluster.sh
PROFILE="${CARGO_PROFILE:-dev}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")"
RUN="${TESSERA_HA_DIR:-/tmp/tessera-ha}-soak"
PORT="${TESSERA_SOAK_PORT:-50161}"

cargo build -q --profile "$PROFILE" --bin tessera
cargo build -q --profile "$PROFILE" -p tessera-client --example failover_soak

was_up=0
"$CLUSTER" primary 2>/dev/null | grep -q . && was_up=1
"$CLUSTER" up
URL=$("$CLUSTER" url)

mkdir -p "$RUN"
pids=()
# The replicas' logs are kept when the run failed, for reading.
cleanup() {
  local status=$1
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$KEEP" = 0 ] && [ "$was_up" = 0 ]; then "$CLUSTER" down; fi
  if [ "$status" = 0 ]; then rm -rf "$RUN"; else echo "replicas' logs: $RUN" >&2; fi
}
trap 'cleanup $?' EXIT

"$TARGET_DIR/tessera" migrate --database-url "$URL"
urls=()
for i in 0 1 2; do
  addr="127.0.0.1:$((PORT + i))"
  # RUST_LOG keeps sqlx's per-connection refusals of standbys out of the way.
  RUST_LOG="${RUST_LOG:-info,sqlx=warn}" "$TARGET_DIR/tessera" serve --listen "$addr" \
    --database-url "$URL" --no-migrate >"$RUN/tessera-$i.log" 2>&1 &
  pids+=($!)
  urls+=(--url "http://$addr")
  for _ in $(seq 100); do "$TARGET_DIR/tessera" health --addr "$addr" >/dev/null 2>&1 && break; sleep 0.2; done
done

faults=()
IFS=, read -ra wanted <<<"$FAULTS"
for fault in "${wanted[@]}"; do
  case "$fault" in
    kill) faults+=(--fault "$CLUSTER kill-primary") ;;
    switchover) faults+=(--fault "$CLUSTER switchover") ;;
    partition) faults+=(--fault "$CLUSTER partition") ;;
    *) echo "--faults: kill, switchover or partition, not $fault" >&2; exit 2 ;;
  esac
done

"$TARGET_DIR/examples/failover_soak" "${urls[@]}" --claims "$CLAIMS" \
  --concurrency "$CONCURRENCY" "${faults[@]}" --heal "$CLUSTER heal"
