#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The stompgate half of the conformance suite, for meson test: starts a
# private RabbitMQ, starts stompgate in front of it and runs every case,
# printing TAP. The side-by-side run with Web-STOMP is run.sh. With
# SG_CONF_TRANSPORT=tcp the raw-frame cases run over STOMP on TCP
# (--stomp-listen) instead of WebSocket; the others are skipped.
set -u
src=${STOMPGATE_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$src"
: "${STOMPGATE_BIN:?STOMPGATE_BIN must name the stompgate binary}"
. test/lib/npm.sh
. test/lib/rabbitmq.sh
dir=$(mktemp -d /tmp/sg-conf.XXXXXX)
chmod 755 "$dir"
gw_pid=
cleanup() {
  [ -n "$gw_pid" ] && kill "$gw_pid" 2>/dev/null && wait "$gw_pid" 2>/dev/null
  rmq_stop "$dir/broker"
  rm -rf "$dir"
}
trap cleanup EXIT
rmq_start "$dir/broker" >&2 || { echo "Bail out! RabbitMQ did not start"; exit 1; }
port=$(free_port)
stomp_port=$(free_port)
url="ws://127.0.0.1:$port/ws"
[ "${SG_CONF_TRANSPORT:-ws}" = tcp ] && url="tcp://127.0.0.1:$stomp_port"
"$STOMPGATE_BIN" --listen "127.0.0.1:$port" --broker "amqp://guest:guest@127.0.0.1:$RMQ_AMQP_PORT/" \
  --stomp-listen "127.0.0.1:$stomp_port" \
  --log-level warn --max-tx-frames 50 --max-transactions 4 --require-host \
  --mode "${SG_MODE:-per-session}" 2> "$dir/stompgate.log" &
gw_pid=$!
for _ in $(seq 1 100); do
  node -e 'const c=require("net").connect(+process.argv[1],"127.0.0.1");c.on("connect",()=>process.exit(0));c.on("error",()=>process.exit(1))' "$port" 2>/dev/null && break
  sleep 0.1
done
node test/conformance/runner.mjs --tap --impl stompgate --url "$url" \
  --amqp "$RMQ_AMQP_PORT" --max-tx-frames 50 --max-transactions 4
rc=$?
[ "$rc" -ne 0 ] && { echo "# stompgate log:"; tail -30 "$dir/stompgate.log" | sed 's/^/# /'; }
exit "$rc"
