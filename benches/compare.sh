#!/usr/bin/env bash
# Identical loads against convene and Janus Gateway's VideoRoom, alternately,
# on loopback; prints convene/Janus ratios of CPU per forwarded stream,
# p99 latency and loss. See benches/README.md.
#
#   bash benches/compare.sh                     # defaults below
#   ROOMS=2 PUBLISHERS=2 SUBSCRIBERS=10 DURATION=20s ROUNDS=2 bash benches/compare.sh
#   RAMP=1 SUBSCRIBERS=20 RAMP_STEP=20 DURATION=10s bash benches/compare.sh
#       # the same ramp against both; prints each knee (largest subscribers
#       # per room held at < MAX_LOSS and p99 < MAX_P99_MS) and their ratio
#   CONVENE_FLAGS="--sfu-pace-media true" bash benches/compare.sh
#   CONVENE_BIN=old/convene LOAD_BIN=new/convene-load bash benches/compare.sh
#       # extra flags for `convene up` (e.g. to compare a setting)
#
# Needs Janus (`apt-get install -y janus`; the script installs it when apt-get
# is there and it is missing). Everything binds to 127.0.0.1 only; both
# servers run on temporary directories and ports and are stopped at the end.
set -euo pipefail

ROOMS=${ROOMS:-1}
PUBLISHERS=${PUBLISHERS:-2}
SUBSCRIBERS=${SUBSCRIBERS:-10}
DURATION=${DURATION:-20s}
VIDEO_KBPS=${VIDEO_KBPS:-1500}
ROUNDS=${ROUNDS:-1}
# direct: both SFUs see the same topology (subscribers only receive,
# publishers only send). signaling: convene through its real join path,
# where publishers are also auto-subscribed to each other.
MODE=${MODE:-direct}
RAMP=${RAMP:-0}
RAMP_STEP=${RAMP_STEP:-20}
RAMP_MAX=${RAMP_MAX:-400}
MAX_LOSS=${MAX_LOSS:-0.01}
MAX_P99_MS=${MAX_P99_MS:-50}
CONVENE_FLAGS=${CONVENE_FLAGS:-}
# Pin the servers and the load generator to separate CPUs when there are
# at least two, so neither steals the other's core. SERVER_CPUS=all: no pinning.
SERVER_CPUS=${SERVER_CPUS:-1}
LOAD_CPUS=${LOAD_CPUS:-0}

HTTP_PORT=${HTTP_PORT:-18080}
UDP_PORT=${UDP_PORT:-17882}
SFU_HTTP_PORT=${SFU_HTTP_PORT:-17890}
JANUS_PORT=${JANUS_PORT:-18088}
SECRET="compare-$RANDOM$RANDOM"

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target_dir=${CARGO_TARGET_DIR:-$root/target}

if ! command -v janus >/dev/null; then
    if command -v apt-get >/dev/null; then
        echo "installing janus (apt-get)" >&2
        apt-get install -y janus >/dev/null
    else
        echo "janus is not installed (Debian: apt-get install -y janus)" >&2
        exit 1
    fi
fi

# CONVENE_BIN / LOAD_BIN: measure given binaries (e.g. an older build
# against this one) instead of building.
if [ -z "${CONVENE_BIN:-}" ] || [ -z "${LOAD_BIN:-}" ]; then
    echo "building convene and convene-load (release)" >&2
    cargo build --release -q --workspace --bins
fi
convene=${CONVENE_BIN:-$target_dir/release/convene}
load=${LOAD_BIN:-$target_dir/release/convene-load}

# taskset prefix pinning to CPUS, empty when CPUS=all, taskset is missing
# or there is one CPU. A prefix rather than a wrapper function: a function
# run with `&` is a subshell, and `$!` would be its pid, not the server's.
pin() {
    if [ "$1" != all ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
        echo taskset -c "$1"
    fi
}

tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

wait_http() { # wait_http URL NAME
    for _ in $(seq 1 100); do
        if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
        sleep 0.2
    done
    echo "$2 did not come up ($1)" >&2
    exit 1
}

# ---- convene
if curl -fsS -o /dev/null "http://127.0.0.1:$HTTP_PORT/healthz" 2>/dev/null; then
    echo "something already answers on 127.0.0.1:$HTTP_PORT (HTTP_PORT)" >&2
    exit 1
fi
mkdir -p "$tmp/convene"
$(pin "$SERVER_CPUS") "$convene" up \
    --http-addr "127.0.0.1:$HTTP_PORT" --data-dir "$tmp/convene" \
    --udp-port "$UDP_PORT" --sfu-bind-ip 127.0.0.1 --sfu-public-ip 127.0.0.1 \
    --sfu-http-addr "127.0.0.1:$SFU_HTTP_PORT" --sfu-http-secret "$SECRET" \
    $CONVENE_FLAGS >"$tmp/convene.log" 2>&1 &
convene_pid=$!
pids+=("$convene_pid")
wait_http "http://127.0.0.1:$HTTP_PORT/healthz" convene

common=(--rooms "$ROOMS" --publishers "$PUBLISHERS" --subscribers "$SUBSCRIBERS"
        --duration "$DURATION" --video-kbps "$VIDEO_KBPS" --json)
if [ "$RAMP" = 1 ]; then
    common+=(--ramp --ramp-step "$RAMP_STEP" --ramp-max-subscribers "$RAMP_MAX"
             --max-loss "$MAX_LOSS" --max-p99-ms "$MAX_P99_MS")
fi
if [ "$MODE" = direct ]; then
    convene_args=(--direct --sfu-url "http://127.0.0.1:$SFU_HTTP_PORT" --sfu-secret "$SECRET")
else
    convene_args=(--url "http://127.0.0.1:$HTTP_PORT")
fi

for round in $(seq 1 "$ROUNDS"); do
    echo "round $round/$ROUNDS: convene ($MODE)" >&2
    $(pin "$LOAD_CPUS") "$load" "${common[@]}" "${convene_args[@]}" --sfu-pid "$convene_pid" \
        | tail -n 1 >"$tmp/convene-$round.json"
    echo "round $round/$ROUNDS: janus (private network namespace, see janus-ns.sh)" >&2
    # The generator runs in Janus's namespace, on 127.0.0.2 like Janus.
    JANUS_CPUS="$SERVER_CPUS" JANUS_PORT="$JANUS_PORT" JANUS_LOG="$tmp/janus-$round.log" \
        bash benches/janus-ns.sh bash -c '$0 "$@" --url "$JANUS_URL" --sfu-pid "$JANUS_PID"' \
        $(pin "$LOAD_CPUS") "$load" "${common[@]}" --target janus --bind-ip 127.0.0.2 \
        | tail -n 1 >"$tmp/janus-$round.json" || true
done

python3 - "$tmp" "$ROUNDS" <<'EOF'
import json, sys
tmp, rounds = sys.argv[1], int(sys.argv[2])
def load(name):
    out = []
    for r in range(1, rounds + 1):
        try:
            out.append(json.load(open(f"{tmp}/{name}-{r}.json")))
        except (OSError, ValueError):
            print(f"{name} round {r}: no report (the generator's errors are above)", file=sys.stderr)
            log = f"{tmp}/janus-{r}.log" if name == "janus" else f"{tmp}/convene.log"
            try:
                tail = open(log, errors="replace").read().splitlines()[-20:]
                print("last lines of the server log:", *tail, sep="\n  ", file=sys.stderr)
            except OSError:
                pass
            out.append({})
    return out
def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None
runs = {"convene": load("convene"), "janus": load("janus")}
rows = [
    ("forwarded packets/s", "forwarded_pps", "{:.0f}"),
    ("subscriber streams", "subscriber_streams", "{:.0f}"),
    ("SFU CPU, cores", "sfu_cpu_cores", "{:.3f}"),
    ("CPU per stream, millicores", "cpu_millicores_per_stream", "{:.2f}"),
    ("streams per core", "subscriber_streams_per_core", "{:.0f}"),
    ("RSS, MiB", "rss_mb", "{:.1f}"),
    ("loss, %", "loss_pct", "{:.3f}"),
    ("latency p50, ms", ("latency_ms", "p50"), "{:.2f}"),
    ("latency p99, ms", ("latency_ms", "p99"), "{:.2f}"),
    ("join p50, ms", ("join_ms", "p50"), "{:.0f}"),
]
def get(run, key):
    if isinstance(key, tuple):
        return run.get(key[0], {}).get(key[1])
    return run.get(key)
def fmt(f, v):
    return "n/a" if v is None else f.format(v)
print(f"{'':32} {'convene':>12} {'janus':>12} {'convene/janus':>14}")
for label, key, f in rows:
    c = mean([get(r, key) for r in runs["convene"]])
    j = mean([get(r, key) for r in runs["janus"]])
    ratio = "n/a" if c is None or not j else f"{c / j:.2f}"
    print(f"{label:32} {fmt(f, c):>12} {fmt(f, j):>12} {ratio:>14}")
knees = {}
for name, rs in runs.items():
    for i, r in enumerate(rs, 1):
        ramp = r.get("ramp")
        if not ramp:
            continue
        print(f"\n{name} ramp, round {i}: subscribers/room  loss %  p50 ms  p99 ms  CPU cores  passed")
        for s in ramp["steps"]:
            lat = s.get("latency_ms", {})
            print(f"  {s.get('subscribers_per_room', 0):>17}  {100 * s.get('loss', 0):6.2f}"
                  f"  {lat.get('p50', 0):6.2f}  {lat.get('p99', 0):6.2f}"
                  f"  {s.get('sfu_cpu_cores') or 0:9.3f}  {s['passed']}")
        knees.setdefault(name, []).append(ramp["max_subscribers_per_room_held"])
if knees:
    c, j = mean(knees.get("convene", [])), mean(knees.get("janus", []))
    ratio = "n/a" if not c or not j else f"{c / j:.2f}"
    print(f"\nknee (subscribers per room held): convene {c}  janus {j}  convene/janus {ratio}")
print(json.dumps({"convene": runs["convene"], "janus": runs["janus"]}))
EOF
