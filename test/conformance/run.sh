#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Side-by-side conformance run: starts a private RabbitMQ with its Web-STOMP
# plugin enabled, starts stompgate in front of the same broker, runs every
# case against both and prints the table, which also replaces everything
# after the marker line under "Case by case" in docs/conformance.md (the
# text above it is written by hand). Exits non-zero only when a stompgate
# case fails.
#
#   test/conformance/run.sh [path/to/stompgate]     (default build/stompgate)
set -u
src=$(cd "$(dirname "$0")/../.." && pwd)
cd "$src"
bin=${1:-${STOMPGATE_BIN:-$src/build/stompgate}}
[ -x "$bin" ] || { echo "no stompgate binary at $bin (build first: meson setup build && ninja -C build)" >&2; exit 2; }
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
rmq_start "$dir/broker" web_stomp >&2 || { echo "RabbitMQ did not start" >&2; exit 1; }
gw_port=$(free_port)
caps=(--max-tx-frames 50 --max-transactions 4 --require-host)
"$bin" --listen "127.0.0.1:$gw_port" --broker "amqp://guest:guest@127.0.0.1:$RMQ_AMQP_PORT/" \
  --log-level warn "${caps[@]}" 2> "$dir/stompgate.log" &
gw_pid=$!
for _ in $(seq 1 100); do
  node -e 'const c=require("net").connect(+process.argv[1],"127.0.0.1");c.on("connect",()=>process.exit(0));c.on("error",()=>process.exit(1))' "$gw_port" 2>/dev/null && break
  sleep 0.1
done
run=(node test/conformance/runner.mjs --amqp "$RMQ_AMQP_PORT" --max-tx-frames 50 --max-transactions 4)
"${run[@]}" --impl stompgate --url "ws://127.0.0.1:$gw_port/ws" --json "$dir/stompgate.json" >&2
sg_rc=$?
"${run[@]}" --impl web-stomp --url "ws://127.0.0.1:$RMQ_WEBSTOMP_PORT/ws" --json "$dir/webstomp.json" >&2
version=$(rmq_ctl "$dir/broker" status 2>/dev/null | sed -n 's/^RabbitMQ version: //p' | head -1)
doc=docs/conformance.md
marker='<!-- test/conformance/run.sh writes what follows this line -->'
node test/conformance/table.mjs "$dir/stompgate.json" "$dir/webstomp.json" "${version:-unknown}" > "$dir/table.md"
cat "$dir/table.md"
if grep -qxF "$marker" "$doc"; then
  { awk -v m="$marker" '{ print } $0 == m { exit }' "$doc"; echo; cat "$dir/table.md"; } > "$doc.new" &&
    mv "$doc.new" "$doc"
else
  echo "$doc has no line '$marker': table not written" >&2
fi
if [ "$sg_rc" -ne 0 ]; then
  echo "stompgate log:" >&2; tail -30 "$dir/stompgate.log" >&2
fi
exit "$sg_rc"
