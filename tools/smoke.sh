#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Smoke test for stompgate-bench: a private RabbitMQ, stompgate in front of
# it, one short fan-out run (20 subscribers, 200 messages) and the rooms
# scenario as tools/bench-100k.sh drives it. Passes when the JSON lines parse
# and every subscriber got every message, and when two processes that wrongly
# share their users report the duplicates; it asserts no timing. TAP on stdout.
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
echo "1..4"
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

# rooms, one process: 200 sessions, half on topics of their own, half over 10
# rooms; it publishes to its users and the rooms itself after --settle.
out=$("$STOMPGATE_BENCH_BIN" --url "ws://127.0.0.1:$port/ws" --scenario rooms --sessions 200 --rooms 10 \
  --publish-rooms --settle 0.5 --duration 60 --pid "$gw_pid" 2>"$dir/rooms.err")
rc=$?
echo "# $out"
if [ $rc -eq 0 ] && node -e '
  const r = JSON.parse(process.argv[1]);
  const want = { scenario: "rooms", sessions: 200, ready: 200, user_sessions: 100, room_sessions: 100,
                 published_users: 100, published_rooms: 10, expected: 200, delivered: 200,
                 sessions_complete: 200, duplicates: 0, wrong: 0, completed: 1, errors: 0 };
  for (const [k, v] of Object.entries(want))
    if (r[k] !== v) throw new Error(`${k}: expected ${v}, got ${r[k]}`);
  if (!(r.delivery_s >= 0)) throw new Error(`delivery_s: ${r.delivery_s}`);
' "$out" 2>"$dir/check.err"; then
  echo "ok 3 - rooms: every session got exactly its one message"
else
  echo "not ok 3 - rooms: exit $rc; $(head -1 "$dir/check.err") $(tail -1 "$dir/rooms.err")"
fi

# rooms, two processes driven as tools/bench-100k.sh does (ready files, then
# SIGUSR1 to go and again to let go), but both with --first-index 0: every
# user gets two messages, which both must report as duplicates.
run=smoke$RANDOM
pids=()
for i in 0 1; do
  extra=()
  [ $i -eq 0 ] && extra=(--publish-rooms)
  "$STOMPGATE_BENCH_BIN" --url "ws://127.0.0.1:$port/ws" --scenario rooms --sessions 40 --rooms 4 \
    --run-id "$run" --first-index 0 --ready-file "$dir/ready.$i" --duration 5 "${extra[@]}" \
    >"$dir/dup.$i" 2>"$dir/dup.$i.err" &
  pids+=($!)
done
for _ in $(seq 1 300); do [ -f "$dir/ready.0" ] && [ -f "$dir/ready.1" ] && break; sleep 0.1; done
kill -USR1 "${pids[@]}"
for _ in $(seq 1 300); do [ -s "$dir/dup.0" ] && [ -s "$dir/dup.1" ] && break; sleep 0.1; done
kill -USR1 "${pids[@]}"
rcs=()
for p in "${pids[@]}"; do wait "$p"; rcs+=($?); done
echo "# $(cat "$dir/ready.0" 2>/dev/null)"
echo "# $(cat "$dir/dup.0")"
if [ "${rcs[0]}" -ne 0 ] && [ "${rcs[1]}" -ne 0 ] && node -e '
  const fs = require("fs");
  for (const i of [0, 1]) {
    const ready = JSON.parse(fs.readFileSync(`${process.argv[1]}/ready.${i}`, "utf8"));
    if (ready.ready !== 40) throw new Error(`ready file ${i}: ${JSON.stringify(ready)}`);
    const r = JSON.parse(fs.readFileSync(`${process.argv[1]}/dup.${i}`, "utf8"));
    // 20 users each get the message of both processes; the rooms get one.
    if (r.duplicates !== 20 || r.sessions_complete !== 40 || r.wrong !== 0)
      throw new Error(`process ${i}: duplicates ${r.duplicates}, complete ${r.sessions_complete}, wrong ${r.wrong}`);
  }
' "$dir" 2>"$dir/check.err"; then
  echo "ok 4 - rooms: two processes sharing their users both report the 20 duplicates"
else
  echo "not ok 4 - rooms duplicates: exits ${rcs[*]}; $(head -1 "$dir/check.err")"
fi
