#!/usr/bin/env bash
# Run a command next to a throwaway Janus Gateway (VideoRoom plugin, HTTP
# API) in a private network namespace, then stop Janus.
#
#   bash benches/janus-ns.sh CMD [ARGS...]
#
# CMD runs inside the namespace with JANUS_URL (http://127.0.0.1:$JANUS_PORT/janus)
# and JANUS_PID set; the script exits with CMD's status. Environment:
# JANUS_PORT (18088), JANUS_CPUS (taskset list for Janus, default: no
# pinning), JANUS_LOG (file for Janus's output; default: discarded with the
# temporary directory).
#
# Why a namespace: Janus (libnice) never gathers candidates on loopback
# interfaces. In the namespace a veth interface `cvl0` carries 127.0.0.2/32
# and ICE is restricted to it, so Janus announces 127.0.0.2 and traffic
# stays in the loopback range; the namespace has no route out. libnice binds
# its sockets to that interface, which cannot send to 127.0.0.1 (EINVAL):
# peers must use 127.0.0.2 too (`convene-load --bind-ip 127.0.0.2`).
# Without root, `unshare --map-root-user` makes this work where user
# namespaces are enabled.
set -euo pipefail

[ $# -ge 1 ] || { echo "usage: $0 CMD [ARGS...]" >&2; exit 2; }
command -v janus >/dev/null || { echo "janus is not installed (Debian: apt-get install -y janus)" >&2; exit 1; }

JANUS_PORT=${JANUS_PORT:-18088}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
log=${JANUS_LOG:-$tmp/janus.log}

so=$(dpkg -L janus 2>/dev/null | grep -m1 '/janus/plugins/libjanus_videoroom.so$' ||
    echo /usr/lib/x86_64-linux-gnu/janus/plugins/libjanus_videoroom.so)
libdir=$(dirname "$(dirname "$so")")

# Only the VideoRoom plugin and the HTTP transport; full ICE, no STUN/TURN.
cat >"$tmp/janus.jcfg" <<EOF
general: {
    configs_folder = "$tmp"
    plugins_folder = "$libdir/plugins"
    transports_folder = "$libdir/transports"
    events_folder = "$libdir/events"
    loggers_folder = "$libdir/loggers"
    debug_level = 3
    session_timeout = 120
}
media: {
    rtp_port_range = "40000-49999"
}
nat: {
    ice_enforce_list = "cvl0"
    ignore_mdns = true
    full_trickle = false
}
plugins: {
    disable = "libjanus_audiobridge.so,libjanus_duktape.so,libjanus_echotest.so,libjanus_lua.so,libjanus_nosip.so,libjanus_recordplay.so,libjanus_sip.so,libjanus_streaming.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_voicemail.so"
}
transports: {
    disable = "libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_pfunix.so,libjanus_rabbitmq.so,libjanus_websockets.so"
}
events: {
    broadcast = false
}
loggers: {
    disable = "libjanus_jsonlog.so"
}
EOF
echo 'general: {}' >"$tmp/janus.plugin.videoroom.jcfg"
cat >"$tmp/janus.transport.http.jcfg" <<EOF
general: {
    json = "compact"
    base_path = "/janus"
    http = true
    port = $JANUS_PORT
    ip = "127.0.0.1"
    https = false
}
admin: {
    admin_http = false
}
cors: {
}
EOF

export JANUS_PORT JANUS_CPUS="${JANUS_CPUS:-all}" JCFG="$tmp" JLOG="$log"
# Root needs no user namespace (they may be disabled where root may still
# make network namespaces); anyone else maps themselves to root in one.
if [ "$(id -u)" = 0 ]; then ns=(unshare --net); else ns=(unshare --map-root-user --net); fi
"${ns[@]}" bash -s -- "$@" <<'INNER'
set -euo pipefail
ip link set lo up
ip link add cvl0 type veth peer name cvl1
ip addr add 127.0.0.2/32 dev cvl0
ip link set cvl0 up
ip link set cvl1 up
pin=()
if [ "$JANUS_CPUS" != all ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    pin=(taskset -c "$JANUS_CPUS")
fi
"${pin[@]}" janus -C "$JCFG/janus.jcfg" -F "$JCFG" >"$JLOG" 2>&1 &
JANUS_PID=$!
trap 'kill "$JANUS_PID" 2>/dev/null || true; wait "$JANUS_PID" 2>/dev/null || true' EXIT
export JANUS_PID JANUS_URL="http://127.0.0.1:$JANUS_PORT/janus"
for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "$JANUS_URL/info" 2>/dev/null && break
    kill -0 "$JANUS_PID" 2>/dev/null || { echo "janus exited:" >&2; tail -n 20 "$JLOG" >&2; exit 1; }
    sleep 0.2
done
curl -fsS -o /dev/null "$JANUS_URL/info" || { echo "janus did not answer on $JANUS_URL" >&2; exit 1; }
"$@"
INNER
