#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Smoke test for stompgate-bench: a private RabbitMQ, stompgate in front of
# it, one short fan-out run (20 subscribers, 200 messages). Passes when the
# JSON line parses and every subscriber got every message; it asserts no
# timing. TAP on stdout.
set -u
src=${STOMPGATE_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$src"
: "${STOMPGATE_BIN:?STOMPGATE_BIN must name the stompgate binary}"
: "${STOMPGATE_BENCH_BIN:?STOMPGATE_BENCH_BIN must name the stompgate-bench binary}"
. test/lib/rabbitmq.sh
dir=$(mktemp -d /tmp/sg-bench-smoke.XXXXXX)
chmod 755 "$dir" # the broker runs as the rabbitmq user
gw_pid=
cleanup() {
  if [ -n "$gw_pid" ]; then kill -TERM "$gw_pid" 2>/dev/null; wait "$gw_pid" 2>/dev/null; fi
  rmq_stop "$dir/broker"
  rm -rf "$dir"
}
trap cleanup EXIT
echo "1..2"
rmq_start "$dir/broker" >&2 || { echo "Bail out! RabbitMQ did not start"; exit 1; }
# rabbitmq-server is a shell wrapper; the broker's CPU is in its beam.smp child.
beam=$(pgrep -g "$RMQ_PID" -x beam.smp | head -1)
port=$(free_port)
"$STOMPGATE_BIN" --listen "127.0.0.1:$port" --log-level warn \
  --broker "amqp://guest:guest@127.0.0.1:$RMQ_AMQP_PORT/" 2>"$dir/gateway.log" &
gw_pid=$!
for _ in $(seq 1 100); do
  node -e 'const c=require("net").connect(+process.argv[1],"127.0.0.1");c.on("connect",()=>process.exit(0));c.on("error",()=>process.exit(1))' "$port" 2>/dev/null && break
  sleep 0.1
done
out=$("$STOMPGATE_BENCH_BIN" --url "ws://127.0.0.1:$port/ws" --scenario fanout \
  --subscribers 20 --messages 200 --duration 60 --pid "$gw_pid" --broker-pid "${beam:-$RMQ_PID}")
rc=$?
echo "# $out"
if [ $rc -eq 0 ]; then echo "ok 1 - stompgate-bench fanout exits 0"; else echo "not ok 1 - stompgate-bench fanout exits $rc"; tail -5 "$dir/gateway.log" | sed 's/^/# /'; fi
if node -e '
  const lines = process.argv[1].trim().split("\n");
  if (lines.length !== 1) throw new Error("expected one JSON line, got " + lines.length);
  const r = JSON.parse(lines[0]);
  const want = { scenario: "fanout", subscribers: 20, subscribers_ready: 20, sent: 200,
                 expected: 4000, delivered: 4000, subscribers_complete: 20, completed: 1, errors: 0 };
  for (const [k, v] of Object.entries(want))
    if (r[k] !== v) throw new Error(`${k}: expected ${v}, got ${r[k]}`);
  for (const k of ["deliveries_per_s", "elapsed_s", "gateway_cpu_s", "broker_cpu_s", "cpu_s_per_million"])
    if (typeof r[k] !== "number" || !(r[k] >= 0)) throw new Error(`${k}: not a number: ${r[k]}`);
' "$out" 2>"$dir/check.err"; then
  echo "ok 2 - JSON line parses and every subscriber got all 200 messages"
else
  echo "not ok 2 - JSON check: $(head -1 "$dir/check.err")"
fi
