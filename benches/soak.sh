#!/usr/bin/env bash
# Soak: one long-running `convene up`, and joins and leaves churning
# against it through the real product path (REST accounts and room tokens,
# WebSocket signaling, WebRTC media): `convene-load` runs back to back for
# SOAK (5 min), each run joining ROOMS rooms of PUBLISHERS + SUBSCRIBERS
# peers, holding them for RUN, and leaving. The server's RSS, open file
# descriptors and threads, and its participant/room/connection gauges, are
# sampled after a warm-up run and again at the end; the script fails when
# they grew past the bounds below. See benches/README.md.
#
#   bash benches/soak.sh
#   SOAK=60 RUN=10s bash benches/soak.sh        # a short one
#   CONVENE_BIN=... LOAD_BIN=... bash benches/soak.sh
#
# Everything binds to 127.0.0.1 only, on a temporary data directory.
set -euo pipefail

SOAK=${SOAK:-300}              # seconds of churn after the warm-up
RUN=${RUN:-15s}                # each load run's hold
ROOMS=${ROOMS:-3}
PUBLISHERS=${PUBLISHERS:-1}
SUBSCRIBERS=${SUBSCRIBERS:-4}
MAX_RSS_GROWTH_MB=${MAX_RSS_GROWTH_MB:-25}
MAX_FD_GROWTH=${MAX_FD_GROWTH:-10}
MAX_THREAD_GROWTH=${MAX_THREAD_GROWTH:-2}
SERVER_CPUS=${SERVER_CPUS:-1}
LOAD_CPUS=${LOAD_CPUS:-0}
HTTP_PORT=${HTTP_PORT:-18180}
UDP_PORT=${UDP_PORT:-17982}

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target_dir=${CARGO_TARGET_DIR:-$root/target}
if [ -z "${CONVENE_BIN:-}" ] || [ -z "${LOAD_BIN:-}" ]; then
    echo "building convene and convene-load (release)" >&2
    cargo build --release -q --workspace --bins
fi
convene=${CONVENE_BIN:-$target_dir/release/convene}
load=${LOAD_BIN:-$target_dir/release/convene-load}

pin() {
    if [ "$1" != all ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
        echo taskset -c "$1"
    fi
}

tmp=$(mktemp -d)
server=
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

if curl -fsS -o /dev/null "http://127.0.0.1:$HTTP_PORT/healthz" 2>/dev/null; then
    echo "something already answers on 127.0.0.1:$HTTP_PORT (HTTP_PORT)" >&2
    exit 1
fi
$(pin "$SERVER_CPUS") "$convene" up \
    --http-addr "127.0.0.1:$HTTP_PORT" --data-dir "$tmp/data" \
    --udp-port "$UDP_PORT" --sfu-bind-ip 127.0.0.1 --sfu-public-ip 127.0.0.1 \
    >"$tmp/convene.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$HTTP_PORT/healthz" 2>/dev/null && break
    sleep 0.2
done

# gauge NAME [PATH]: the server's Prometheus gauge from PATH (/metrics, the
# control plane's; the SFU's and signaling's are on /metrics/media);
# "absent" when it is not there, so a renamed metric fails the check
# instead of passing as 0.
gauge() {
    curl -fsS "http://127.0.0.1:$HTTP_PORT${2:-/metrics}" 2>/dev/null |
        awk -v n="$1" '$1 == n { print $2; found = 1 } END { if (!found) print "absent" }'
}

# sample LABEL: one line of the server's resources.
sample() {
    local rss fds threads
    rss=$(awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$server/status")
    fds=$(ls "/proc/$server/fd" | wc -l)
    threads=$(awk '/^Threads:/ { print $2 }' "/proc/$server/status")
    echo "$1 $rss $fds $threads $(gauge convene_sfu_participants /metrics/media) $(gauge convene_sfu_rooms /metrics/media) $(gauge convene_signaling_connections /metrics/media)"
}

run_load() {
    $(pin "$LOAD_CPUS") "$load" --url "http://127.0.0.1:$HTTP_PORT" \
        --rooms "$ROOMS" --publishers "$PUBLISHERS" --subscribers "$SUBSCRIBERS" \
        --duration "$RUN" --settle 1s --json 2>>"$tmp/load.log" | tail -n 1 >>"$tmp/runs.jsonl"
}

# settle: until the server's participants are gone (the last run's
# leaves), at most 20 s.
settle() {
    for _ in $(seq 1 100); do
        [ "$(gauge convene_sfu_participants /metrics/media)" = 0 ] && return 0
        sleep 0.2
    done
}

echo "warm-up run" >&2
run_load
settle
before=$(sample before)
runs=0
end=$(( $(date +%s) + SOAK ))
while [ "$(date +%s)" -lt "$end" ]; do
    run_load
    runs=$((runs + 1))
    echo "run $runs: $(sample now)" >&2
done
settle
sleep 2
after=$(sample after)
peers=$(( runs * ROOMS * (PUBLISHERS + SUBSCRIBERS) ))

echo
echo "soak: $runs runs in ${SOAK}s, $peers peers joined and left ($ROOMS rooms x $((PUBLISHERS + SUBSCRIBERS)) peers, $RUN each)"
printf '%-7s %9s %5s %8s %13s %6s %12s\n' "" "RSS MiB" "fds" "threads" "participants" "rooms" "connections"
for line in "$before" "$after"; do
    # shellcheck disable=SC2086
    printf '%-7s %9s %5s %8s %13s %6s %12s\n' $line
done
failed=$(jq -s '[.[] | select(.peers_failed > 0)] | length' "$tmp/runs.jsonl" 2>/dev/null || echo "?")
loss=$(jq -s '[.[].loss] | max' "$tmp/runs.jsonl" 2>/dev/null || echo "?")
echo "runs with failed joins: $failed; worst loss of a run: $loss"

read -r _ rss0 fd0 th0 _ _ _ <<<"$before"
read -r _ rss1 fd1 th1 p1 r1 c1 <<<"$after"
bad=0
awk -v a="$rss0" -v b="$rss1" -v m="$MAX_RSS_GROWTH_MB" 'BEGIN { exit !(b - a > m) }' &&
    { echo "RSS grew by more than $MAX_RSS_GROWTH_MB MiB" >&2; bad=1; }
[ $((fd1 - fd0)) -gt "$MAX_FD_GROWTH" ] && { echo "file descriptors grew by more than $MAX_FD_GROWTH" >&2; bad=1; }
[ $((th1 - th0)) -gt "$MAX_THREAD_GROWTH" ] && { echo "threads grew by more than $MAX_THREAD_GROWTH" >&2; bad=1; }
[ "$p1" != 0 ] && { echo "participants left behind: $p1" >&2; bad=1; }
[ "$r1" != 0 ] && { echo "rooms left behind: $r1" >&2; bad=1; }
[ "$c1" != 0 ] && { echo "connections left behind: $c1" >&2; bad=1; }
if [ "$bad" = 0 ]; then
    echo "within bounds (RSS +$MAX_RSS_GROWTH_MB MiB, fds +$MAX_FD_GROWTH, threads +$MAX_THREAD_GROWTH; nothing left behind)"
fi
exit "$bad"
