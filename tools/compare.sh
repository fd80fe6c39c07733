#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Compares stompgate with RabbitMQ's Web-STOMP plugin on the same machine and
# the same broker, in one run: starts a private RabbitMQ with Web-STOMP on
# free loopback ports, starts stompgate in front of it (per-session mode, and
# shared mode when this build supports it), runs every stompgate-bench
# scenario against each, and prints a Markdown table with the ratios
# stompgate / Web-STOMP. Everything it starts is stopped by PID. The runs
# measured so far, and how to read them, are in docs/benchmarks.md.
#
#   tools/compare.sh                       # defaults finish in a few minutes on 2 cores
#   BENCH_SUBSCRIBERS=1000 BENCH_IDLE_SESSIONS=9000 tools/compare.sh
#
# Scale knobs (environment):
#   BENCH_BUILD_DIR          build directory (default build; built if needed)
#   BENCH_SUBSCRIBERS        fanout subscribers (default 1000)
#   BENCH_FANOUT_MESSAGES    fanout messages from the publisher (default 200)
#   BENCH_PAIRS              publisher/consumer pairs (default 10)
#   BENCH_PAIRS_MESSAGES     messages per pair (default 5000)
#   BENCH_LATENCY_SUBSCRIBERS  latency subscribers (default 10)
#   BENCH_LATENCY_DURATION   seconds of publishing at a fixed rate (default 10)
#   BENCH_LATENCY_RATE       messages/s; default: half of Web-STOMP's fan-out
#                            deliveries/s in this run, divided by the subscribers
#   BENCH_CONNECT_SESSIONS   connect + subscribe sessions (default 500)
#   BENCH_IDLE_SESSIONS      idle sessions with one subscription (default 1000).
#                            Per-session mode shares an AMQP connection
#                            among up to 16 sessions of one login, so the
#                            gateway needs a little over one descriptor per
#                            session; with --session-link-max 1 it needs two
#                            and the broker one each, and the file limit here
#                            is 20000 (rmq_start raises the broker's to it).
#   BENCH_WIRE_SUBSCRIBERS   wire: subscribers (default 100)
#   BENCH_WIRE_MESSAGES      wire: 4.8 KB JSON messages to them (default 50)
#   BENCH_SCENARIOS          subset, comma-separated (default all eight:
#                            idle, idle-unique, connect, connect-unique,
#                            fanout, pairs, latency, and wire, which runs
#                            tools/wire-bytes.mjs with and without
#                            permessage-deflate). The -unique variants
#                            give each session a topic of its own (per-user
#                            topics); the others put every session on one.
#                            Not in the default: history (topics with
#                            history, tools/history-bench.mjs): one stream
#                            filled once, then one session catching up on
#                            all of it, through stompgate (--history) and
#                            through Web-STOMP reading the stream queue.
#   BENCH_HISTORY_MESSAGES   history: messages in the stream (default 100000)
#   BENCH_HISTORY_SIZE       history: body bytes (default 100)
#   BENCH_HISTORY_KEYS       history: keys the messages go to in turn (default
#                            1); stompgate catches up on the first key only,
#                            Web-STOMP reads the whole stream queue
#   BENCH_HISTORY_PREFETCH   history: Web-STOMP's prefetch-count (default 1000)
#   BENCH_HISTORY_ACK_EVERY  history: Web-STOMP acks (ack: client, so
#                            cumulative) every this many messages (default 100)
#   BENCH_TARGETS            subset of webstomp, per-session, shared (default
#                            all that this build has)
#   BENCH_REPEAT             runs of each scenario per target, alternating
#                            between targets; the table shows the median
#                            (default 1; use 3 on a machine shared with others)
#   BENCH_OUT                directory for the raw JSON lines (default: a temp dir)
set -u
src=$(cd "$(dirname "$0")/.." && pwd)
cd "$src"
build=${BENCH_BUILD_DIR:-build}
SUBS=${BENCH_SUBSCRIBERS:-1000}
FAN_MSGS=${BENCH_FANOUT_MESSAGES:-200}
PAIRS=${BENCH_PAIRS:-10}
PAIRS_MSGS=${BENCH_PAIRS_MESSAGES:-5000}
LAT_SUBS=${BENCH_LATENCY_SUBSCRIBERS:-10}
LAT_DUR=${BENCH_LATENCY_DURATION:-10}
LAT_RATE=${BENCH_LATENCY_RATE:-}
CONN_SESS=${BENCH_CONNECT_SESSIONS:-500}
IDLE_SESS=${BENCH_IDLE_SESSIONS:-1000}
SCENARIOS=${BENCH_SCENARIOS:-idle,idle-unique,connect,connect-unique,fanout,pairs,latency,wire}
WIRE_SUBS=${BENCH_WIRE_SUBSCRIBERS:-100}
WIRE_MSGS=${BENCH_WIRE_MESSAGES:-50}
HIST_MSGS=${BENCH_HISTORY_MESSAGES:-100000}
HIST_SIZE=${BENCH_HISTORY_SIZE:-100}
HIST_KEYS=${BENCH_HISTORY_KEYS:-1}
HIST_PREFETCH=${BENCH_HISTORY_PREFETCH:-1000}
HIST_ACK_EVERY=${BENCH_HISTORY_ACK_EVERY:-100}
REPEAT=${BENCH_REPEAT:-1}
export BENCH_REPEAT=$REPEAT

# BENCH_TABLE_ONLY=DIR prints the table again from the JSON lines of an earlier run.
if [ -n "${BENCH_TABLE_ONLY:-}" ]; then
  out=$BENCH_TABLE_ONLY
  targets=webstomp
  for t in per-session shared; do ls "$out"/*-"$t"-*.json >/dev/null 2>&1 && targets="$targets $t"; done
  TABLE_ONLY=1
fi

log() { echo "compare: $*" >&2; }

results_table() {
  node - "$out" "$targets" "$SCENARIOS" <<'EOF'
const fs = require('fs');
const [dir, targetList, scenList] = process.argv.slice(2);
const scenarios = scenList.split(',');
const targets = targetList.split(' ');
const names = { webstomp: 'Web-STOMP', 'per-session': 'stompgate per-session', shared: 'stompgate shared' };
// runs[t][s] holds every run's JSON; r[t][s] the median of each numeric field.
const runs = {}, r = {};
const median = (v) => { v = v.filter((x) => typeof x === 'number').sort((a, b) => a - b); return v.length ? v[(v.length - 1) >> 1] : undefined; };
for (const t of targets) {
  runs[t] = {}; r[t] = {};
  for (const s of ['idle', 'idle-unique', 'connect', 'connect-unique', 'fanout', 'pairs', 'latency']) {
    const re = new RegExp(`^${s}-${t}-\\d+\\.json$`);
    runs[t][s] = fs.readdirSync(dir).filter((f) => re.test(f)).map((f) => {
      try { return JSON.parse(fs.readFileSync(`${dir}/${f}`, 'utf8').trim().split('\n')[0]); } catch { return undefined; }
    }).filter(Boolean);
    if (!runs[t][s].length) continue;
    const m = { ...runs[t][s][0] };
    for (const k of Object.keys(m)) if (typeof m[k] === 'number') m[k] = median(runs[t][s].map((x) => x[k]));
    // Errors add up over the runs rather than taking the median.
    m.errors = runs[t][s].reduce((n, x) => n + x.errors, 0);
    if (m.failed !== undefined) m.failed = runs[t][s].reduce((n, x) => n + x.failed, 0);
    r[t][s] = m;
  }
}
const fmt = (v) => !ok(v) ? 'n/a'
  : Number.isInteger(v) ? v.toString() : Math.abs(v) >= 100 ? Math.round(v).toString() : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2);
const ok = (v) => typeof v === 'number' && Number.isFinite(v);
const ratio = (a, b) => (ok(a) && ok(b) && b !== 0) ? `${(a / b).toFixed(2)}x` : 'n/a';
const rows = [
  ['fan-out deliveries/s (higher is better)', (x) => x.fanout?.deliveries_per_s],
  ['fan-out CPU s per million deliveries, gateway + broker (lower)', (x) => x.fanout?.cpu_s_per_million],
  ['fan-out: load generator CPU s per million deliveries (same work for both)', (x) => x.fanout?.bench_cpu_s / x.fanout?.delivered * 1e6],
  ['pairs messages/s (higher)', (x) => x.pairs?.messages_per_s],
  ['pairs CPU s per million messages, gateway + broker (lower)', (x) => x.pairs?.cpu_s_per_million],
  ['latency p50 ms (lower)', (x) => x.latency?.p50_ms],
  ['latency p99 ms (lower)', (x) => x.latency?.p99_ms],
  ['latency p99.9 ms (lower)', (x) => x.latency?.p999_ms],
  ['connect + subscribe sessions/s, one topic (higher)', (x) => x.connect?.sessions_per_s],
  ['connect + subscribe sessions/s, a topic each (higher)', (x) => x['connect-unique']?.sessions_per_s],
  ...[['idle', 'one topic'], ['idle-unique', 'a topic each']].flatMap(([s, what]) => [
    // Web-STOMP runs inside the broker: its whole cost is the broker's.
    [`idle RSS KB per session, ${what}, gateway process (lower; Web-STOMP has none)`, (x, t) => t === 'webstomp'
      ? undefined : x[s]?.gateway_rss_kb_per_session],
    [`idle RSS KB per session, ${what}, broker process (lower)`, (x, t) => t === 'webstomp'
      ? x[s]?.gateway_rss_kb_per_session
      : (x[s]?.broker_rss_kb_per_session >= 0 ? x[s].broker_rss_kb_per_session : undefined)],
    [`idle RSS KB per session, ${what}, gateway + broker (lower)`, (x, t) => t === 'webstomp'
      ? x[s]?.gateway_rss_kb_per_session
      : (x[s] && x[s].broker_rss_kb_per_session >= 0
        ? x[s].gateway_rss_kb_per_session + x[s].broker_rss_kb_per_session : undefined)],
    [`idle KB per session, ${what}, broker by its own count (erlang:memory, lower)`, (x) => x[s]?.broker_own_kb_per_session],
  ]),
  ['errors (all scenarios, all runs)', (x) => ['idle', 'idle-unique', 'connect', 'connect-unique', 'fanout', 'pairs', 'latency']
    .reduce((n, s) => n + (x[s] ? x[s].errors + (x[s].failed ?? 0) : 0), 0)],
];
const others = targets.filter((t) => t !== 'webstomp');
let head = '| metric | Web-STOMP |';
let sep = '|---|---:|';
for (const t of others) { head += ` ${names[t]} | ratio |`; sep += '---:|---:|'; }
console.log(head);
console.log(sep);
for (const [label, f] of rows) {
  const base = f(r.webstomp ?? {}, 'webstomp');
  let line = `| ${label} | ${fmt(base)} |`;
  for (const t of others) { const v = f(r[t], t); line += ` ${fmt(v)} | ${label.startsWith('errors') ? '' : ratio(v, base)} |`; }
  console.log(line);
}
const w = r.webstomp ?? {};
console.log('');
console.log(`Parameters: fanout ${w.fanout?.subscribers ?? '?'} subscribers x ${w.fanout?.sent ?? '?'} messages of ${w.fanout?.size ?? '?'} bytes; ` +
  `pairs ${w.pairs?.pairs ?? '?'} x ${w.pairs ? w.pairs.sent / w.pairs.pairs : '?'} messages; ` +
  `latency ${w.latency?.subscribers ?? '?'} subscribers at ${w.latency?.rate ?? '?'} messages/s; ` +
  `connect ${(w.connect ?? w['connect-unique'])?.sessions ?? '?'} sessions (${(w.connect ?? w['connect-unique'])?.concurrency ?? '?'} at once); ` +
  `idle ${(w.idle ?? w['idle-unique'])?.sessions ?? '?'} sessions; ` +
  `median of ${Math.max(...targets.flatMap((t) => Object.values(runs[t]).map((v) => v.length)))} run(s) each.`);
const incomplete = [];
for (const t of targets) for (const s of scenarios.filter((x) => x !== 'wire' && x !== 'history')) {
  if (!runs[t][s].length) { incomplete.push(`${s}/${t}: no result`); continue; }
  for (const x of runs[t][s])
    if (x.errors || x.failed || x.completed === 0 || (x.delivered !== undefined && x.expected !== undefined && x.delivered !== x.expected))
      incomplete.push(`${s}/${t}: ${x.errors} errors, completed ${x.completed}${x.first_error ? ` (${x.first_error})` : ''}`);
}
if (incomplete.length) console.log(`\nNot clean: ${incomplete.join('; ')}.`);
EOF
}

# permessage-deflate on and off: bytes per MESSAGE on the wire, CPU, RSS.
wire_table() {
  node - "$out" "$targets" <<'EOF'
const fs = require('fs');
const [dir, targetList] = process.argv.slice(2);
const names = { webstomp: 'Web-STOMP', 'per-session': 'stompgate per-session', shared: 'stompgate shared' };
const median = (v) => { v = v.filter((x) => typeof x === 'number').sort((a, b) => a - b); return v.length ? v[(v.length - 1) >> 1] : undefined; };
const get = (t, c) => {
  const re = new RegExp(`^wire-${t}-${c}-\\d+\\.json$`);
  const runs = fs.readdirSync(dir).filter((f) => re.test(f))
    .map((f) => { try { return JSON.parse(fs.readFileSync(`${dir}/${f}`, 'utf8')); } catch { return undefined; } }).filter(Boolean);
  if (!runs.length) return undefined;
  const m = { ...runs[0] };
  for (const k of Object.keys(m)) if (typeof m[k] === 'number') m[k] = median(runs.map((x) => x[k]));
  m.clean = runs.every((x) => x.intact && x.delivered === x.expected);
  return m;
};
const f = (v) => v === undefined || v === null || Number.isNaN(v) ? 'n/a' : String(v);
console.log('| target | compression | extension answered | bytes per MESSAGE on the wire | server CPU s per 1000 deliveries | with broker | RSS KB per subscribed session | clean |');
console.log('|---|---|---|---:|---:|---:|---:|---|');
let body;
for (const t of targetList.split(' ')) for (const c of ['on', 'off']) {
  const r = get(t, c);
  if (!r) continue;
  body = r.body_bytes;
  console.log(`| ${names[t]} | ${c} | ${r.extensions || '(none)'} | ${f(r.wire_bytes_per_message)} | ${f(r.server_cpu_s_per_thousand)} | ` +
    `${f(r.with_broker_cpu_s_per_thousand)} | ${f(r.rss_kb_per_session)} | ${r.clean ? 'yes' : 'no'} |`);
}
console.log(`\nA MESSAGE with a ${body ?? '?'}-byte JSON body to each subscriber; Web-STOMP's CPU and RSS are the broker's.`);
EOF
}

# Topics with history: catch-up from the stream to one session, and the
# stream's disk per message.
history_table() {
  node - "$out" "$targets" <<'EOF'
const fs = require('fs');
const [dir, targetList] = process.argv.slice(2);
const targets = targetList.split(' ');
const names = { webstomp: 'Web-STOMP', 'per-session': 'stompgate per-session', shared: 'stompgate shared' };
const median = (v) => { v = v.filter((x) => typeof x === 'number').sort((a, b) => a - b); return v.length ? v[(v.length - 1) >> 1] : undefined; };
const read = (f) => { try { return JSON.parse(fs.readFileSync(`${dir}/${f}`, 'utf8').trim().split('\n')[0]); } catch { return undefined; } };
const runs = {}, r = {};
for (const t of targets) {
  const re = new RegExp(`^history-${t}-\\d+\\.json$`);
  runs[t] = fs.readdirSync(dir).filter((f) => re.test(f)).map(read).filter(Boolean);
  if (!runs[t].length) continue;
  const m = { ...runs[t][0] };
  for (const k of Object.keys(m)) if (typeof m[k] === 'number') m[k] = median(runs[t].map((x) => x[k]));
  r[t] = m;
}
const fill = read('history-fill.json') ?? {};
const ok = (v) => typeof v === 'number' && Number.isFinite(v);
const fmt = (v) => !ok(v) ? 'n/a' : Number.isInteger(v) ? v.toString() : Math.abs(v) >= 100 ? Math.round(v).toString() : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2);
const ratio = (a, b) => (ok(a) && ok(b) && b !== 0) ? `${(a / b).toFixed(2)}x` : 'n/a';
// Medians of each quantity over the runs (not quantities of the median run).
const med = (t, f) => median((runs[t] ?? []).map(f));
const rows = [
  ['catch-up messages/s to one session (higher)', (x) => x.messages_per_s],
  ['catch-up time, s (lower)', (x) => x.seconds],
  ['first message after SUBSCRIBE, ms (lower)', (x) => x.first_message_ms],
  ['CPU s per million messages, gateway + broker (lower)', (x) => x.cpu_s_per_million],
  ['CPU s per million messages, gateway process (lower; Web-STOMP has none)', (x) => ok(x.gateway_cpu_s) ? x.gateway_cpu_s / x.delivered * 1e6 : undefined],
  ['CPU s per million messages, broker process (lower)', (x) => ok(x.broker_cpu_s) ? x.broker_cpu_s / x.delivered * 1e6 : undefined],
  ['client CPU s per million messages (same work for both)', (x) => ok(x.client_cpu_s) ? x.client_cpu_s / x.delivered * 1e6 : undefined],
  ['gateway RSS growth during the catch-up, KB (peak - before; Web-STOMP has none)', (x) => ok(x.gateway_rss_kb_peak) ? x.gateway_rss_kb_peak - x.gateway_rss_kb_before : undefined],
  ['broker RSS growth during the catch-up, KB (peak - before)', (x) => ok(x.broker_rss_kb_peak) ? x.broker_rss_kb_peak - x.broker_rss_kb_before : undefined],
];
const others = targets.filter((t) => t !== 'webstomp');
let head = '| metric | Web-STOMP |', sep = '|---|---:|';
for (const t of others) { head += ` ${names[t]} | ratio |`; sep += '---:|---:|'; }
console.log(head);
console.log(sep);
for (const [label, f] of rows) {
  const base = med('webstomp', f);
  let line = `| ${label} | ${fmt(base)} |`;
  for (const t of others) { const v = med(t, f); line += ` ${fmt(v)} | ${ratio(v, base)} |`; }
  console.log(line);
}
const w = r.webstomp ?? {};
console.log('');
console.log(`Stream: ${fill.messages ?? '?'} messages of ${fill.size ?? '?'} bytes published to amq.topic ` +
  `${fill.keys > 1 ? `over ${fill.keys} keys in turn ` : ''}(${fmt(fill.publish_per_s)}/s with confirms); ` +
  `${fill.keys > 1 ? `stompgate catches up on one key (${Math.ceil(fill.messages / fill.keys)} messages), Web-STOMP reads them all; ` : ''}` +
  `broker disk ${fmt(fill.disk_bytes_per_message)} bytes per message (du of the stream's directory: ${fill.stream_bytes_after ?? '?'} bytes, ` +
  `${fill.segment_bytes ?? '?'} in segments and ${fill.index_bytes ?? '?'} in indexes; one stream, read by every target). ` +
  `stompgate: SUBSCRIBE /topic/KEY with x-stream-offset: first (ack: auto); Web-STOMP: SUBSCRIBE ${w.dest ?? '/amq/queue/STREAM'} with x-stream-offset: first, ack: client, ` +
  `prefetch-count ${w.prefetch ?? '?'}, an ACK every ${process.env.HIST_ACK_EVERY ?? '?'} messages. ` +
  `Median of ${Math.max(0, ...targets.map((t) => runs[t].length))} run(s) each.`);
const bad = [];
for (const t of targets) {
  if (!runs[t].length) bad.push(`${t}: no result`);
  for (const x of runs[t]) if (!x.completed || x.errors || x.first_body?.split('|')[0] !== '0')
    bad.push(`${t}: ${x.delivered} of ${x.expected} delivered${x.first_error ? ` (${x.first_error})` : ''}`);
}
if (bad.length) console.log(`\nNot clean: ${bad.join('; ')}.`);
EOF
}

classic=
for s in ${SCENARIOS//,/ }; do case $s in wire|history) ;; *) classic=1 ;; esac; done
export HIST_ACK_EVERY

if [ -n "${TABLE_ONLY:-}" ]; then
  [ -z "$classic" ] || results_table
  ls "$out"/wire-*.json >/dev/null 2>&1 && { echo; wire_table; }
  ls "$out"/history-*.json >/dev/null 2>&1 && { echo; history_table; }
  exit 0
fi

if [ ! -f "$build/build.ninja" ]; then meson setup "$build" >&2 || exit 1; fi
ninja -C "$build" stompgate tools/stompgate-bench >&2 || exit 1
SG=$build/stompgate
BENCH=$build/tools/stompgate-bench

. test/lib/rabbitmq.sh
dir=$(mktemp -d /tmp/sg-compare.XXXXXX)
chmod 755 "$dir" # the broker runs as the rabbitmq user
out=${BENCH_OUT:-$dir/results}
mkdir -p "$out"
gw_pid=
stop_gateway() {
  if [ -n "$gw_pid" ]; then
    kill -TERM "$gw_pid" 2>/dev/null
    for _ in $(seq 1 40); do kill -0 "$gw_pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$gw_pid" 2>/dev/null
    wait "$gw_pid" 2>/dev/null
    gw_pid=
  fi
}
cleanup() {
  stop_gateway
  rmq_stop "$dir/broker"
  rm -rf "$dir/broker"
  if [ -n "${BENCH_OUT:-}" ]; then rm -rf "$dir"; else log "raw results and logs kept in $dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() {
  for _ in $(seq 1 100); do
    node -e 'const c=require("net").connect(+process.argv[1],"127.0.0.1");c.on("connect",()=>process.exit(0));c.on("error",()=>process.exit(1))' "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

log "starting RabbitMQ with Web-STOMP"
rmq_start "$dir/broker" web_stomp >&2 || { log "RabbitMQ did not start"; exit 1; }
# rabbitmq-server is a shell wrapper; the broker itself (and Web-STOMP) is its beam.smp child.
beam=$(pgrep -g "$RMQ_PID" -x beam.smp | head -1)
[ -n "$beam" ] || { log "no beam.smp under PID $RMQ_PID"; exit 1; }
rabbit_version=$(rmq_ctl "$dir/broker" version 2>/dev/null | tail -1)
# The broker's memory by its own count, after a collection of every
# process: RSS keeps what the allocators freed, so at a few thousand
# sessions its growth is mostly noise.
cat >"$dir/broker-mem.sh" <<EOF
#!/usr/bin/env bash
cd "$src" && . test/lib/rabbitmq.sh &&
  rmq_ctl "$dir/broker" eval '[erlang:garbage_collect(P) || P <- erlang:processes()], erlang:memory(total).' 2>/dev/null
EOF
chmod 755 "$dir/broker-mem.sh"

targets="webstomp per-session"
if "$SG" --help | grep -q 'shared'; then targets="$targets shared"; fi
if [ -n "${BENCH_TARGETS:-}" ]; then targets=${BENCH_TARGETS//,/ }; fi
log "targets: $targets"

# A fresh gateway per scenario, so that RSS and CPU are the scenario's own.
# Arguments after the mode go to the gateway.
start_gateway() {
  local mode=$1 port
  shift
  port=$(free_port)
  (
    ulimit -n "$(ulimit -Hn)" 2>/dev/null
    exec "$SG" --listen "127.0.0.1:$port" --mode "$mode" --log-level warn \
      --broker "amqp://guest:guest@127.0.0.1:$RMQ_AMQP_PORT/" "$@"
  ) 2>>"$out/gateway-$mode.log" &
  gw_pid=$!
  wait_port "$port" || { log "stompgate ($mode) did not listen"; return 1; }
  GW_URL="ws://127.0.0.1:$port/ws"
}

scenario_args() {
  case $1 in
    # Idle memory is read after 4 s of quiet: a WebSocket quiet for 2 s
    # gives its framing buffers back (the sweep runs every second).
    idle) echo "--scenario idle --sessions $IDLE_SESS --setup-timeout 600 --settle 4 --broker-mem-cmd $dir/broker-mem.sh" ;;
    idle-unique) echo "--scenario idle --topics unique --sessions $IDLE_SESS --setup-timeout 600 --settle 4 --broker-mem-cmd $dir/broker-mem.sh" ;;
    connect) echo "--scenario connect --sessions $CONN_SESS --duration 300" ;;
    connect-unique) echo "--scenario connect --topics unique --sessions $CONN_SESS --duration 300" ;;
    fanout) echo "--scenario fanout --subscribers $SUBS --messages $FAN_MSGS --duration 300 --setup-timeout 300" ;;
    pairs) echo "--scenario pairs --pairs $PAIRS --messages $PAIRS_MSGS --duration 300" ;;
    latency) echo "--scenario latency --subscribers $LAT_SUBS --rate $LAT_RATE --duration $LAT_DUR" ;;
  esac
}

# The broker's RSS is part of what idle measures: wait until memory freed by
# earlier runs has been given back (a change under 2 MB in 2 s, 60 s at most).
settle_broker() {
  local prev cur
  prev=$(awk '/^VmRSS:/{print $2}' "/proc/$beam/status")
  for _ in $(seq 1 30); do
    sleep 2
    cur=$(awk '/^VmRSS:/{print $2}' "/proc/$beam/status")
    [ $((cur > prev ? cur - prev : prev - cur)) -lt 2048 ] && return 0
    prev=$cur
  done
  log "broker RSS still moving before idle: $cur KB"
}

run_one() {
  local scen=$1 target=$2 n=$3 url pid bpid
  if [ "$target" = webstomp ]; then
    url="ws://127.0.0.1:$RMQ_WEBSTOMP_PORT/ws"; pid=$beam; bpid=$beam
  else
    start_gateway "$target" || return 1
    url=$GW_URL; pid=$gw_pid; bpid=$beam
  fi
  case $scen in idle*) settle_broker ;; esac
  log "$scen against $target ($url)"
  if [ "$scen" = wire ]; then
    for c in on off; do
      # A fresh gateway for each, so that RSS per session is its own.
      if [ "$target" != webstomp ] && [ "$c" = off ]; then
        stop_gateway
        start_gateway "$target" || return 1
        url=$GW_URL; pid=$gw_pid
      fi
      timeout 600 node tools/wire-bytes.mjs --url "$url" --compress "$c" --pid "$pid" --broker-pid "$bpid" \
        --subscribers "$WIRE_SUBS" --messages "$WIRE_MSGS" >"$out/wire-$target-$c-$n.json" 2>>"$out/bench.log" ||
        log "wire ($c) against $target: not clean"
    done
    [ "$target" = webstomp ] || stop_gateway
    sleep 5
    return 0
  fi
  # shellcheck disable=SC2046
  timeout 1200 "$BENCH" --url "$url" --pid "$pid" --broker-pid "$bpid" \
    $(scenario_args "$scen") >"$out/$scen-$target-$n.json" 2>>"$out/bench.log" ||
    log "$scen against $target: not clean (see $out/$scen-$target-$n.json)"
  [ "$target" = webstomp ] || stop_gateway
  # Let the broker delete the auto-delete queues of the closed sessions.
  sleep 5
}

# Topics with history: a gateway with --history declares the stream, which
# is filled once; then, for each repeat and target, one session reads all of
# it from its first offset.
HIST_PATTERN=hbench.#
HIST_KEY=hbench.room
run_history() {
  local n t sdir
  start_gateway per-session --history "$HIST_PATTERN:1D" || return 1
  # RabbitMQ 3.10 keeps a stream's segments and indexes in
  # DATA_DIR/stream/__<vhost>_<name>_<timestamp> (other characters as _).
  sdir=
  for _ in $(seq 1 50); do
    sdir=$(ls -d "$dir"/broker/mnesia/*/stream/__stompgate_history_hbench_* 2>/dev/null | head -1)
    [ -n "$sdir" ] && break
    sleep 0.1
  done
  [ -n "$sdir" ] || { log "history: no stream directory under $dir/broker/mnesia"; stop_gateway; return 1; }
  log "history: filling the stream ($HIST_MSGS messages of $HIST_SIZE bytes, $sdir)"
  node tools/history-bench.mjs fill --amqp-port "$RMQ_AMQP_PORT" --key "$HIST_KEY" \
    --messages "$HIST_MSGS" --keys "$HIST_KEYS" --size "$HIST_SIZE" --stream-dir "$sdir" >"$out/history-fill.json" 2>>"$out/bench.log" ||
    log "history: fill failed"
  stop_gateway
  for n in $(seq 1 "$REPEAT"); do
    for t in $targets; do
      log "history catch-up against $t"
      if [ "$t" = webstomp ]; then
        timeout 600 node tools/history-bench.mjs catchup --url "ws://127.0.0.1:$RMQ_WEBSTOMP_PORT/ws" \
          --dest "/amq/queue/stompgate.history.$HIST_PATTERN" --ack client --prefetch "$HIST_PREFETCH" \
          --ack-every "$HIST_ACK_EVERY" --messages "$HIST_MSGS" --pid "$beam" --broker-pid "$beam" \
          >"$out/history-$t-$n.json" 2>>"$out/bench.log" || log "history against $t: not clean"
      else
        start_gateway "$t" --history "$HIST_PATTERN:1D" || return 1
        timeout 600 node tools/history-bench.mjs catchup --url "$GW_URL" --dest "/topic/$HIST_KEY.0" \
          --messages $(((HIST_MSGS + HIST_KEYS - 1) / HIST_KEYS)) --pid "$gw_pid" --broker-pid "$beam" \
          >"$out/history-$t-$n.json" 2>>"$out/bench.log" || log "history against $t: not clean"
        stop_gateway
      fi
      sleep 3
    done
  done
}

machine() {
  echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), nproc $(nproc)"
  echo "- memory: $(free -m | awk '/^Mem:/{print $2}') MB; file limit $(ulimit -Hn)"
  echo "- kernel: $(uname -r); RabbitMQ $rabbit_version; $(erl -noshell -eval 'io:format("Erlang/OTP ~s", [erlang:system_info(otp_release)]), halt().' 2>/dev/null)"
  echo "- stompgate $(git -C "$src" describe --always --dirty 2>/dev/null), $(cc --version | head -1)"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for scen in ${SCENARIOS//,/ }; do
  if [ "$scen" = latency ] && [ -z "$LAT_RATE" ]; then
    LAT_RATE=$(node -e '
      const fs = require("fs"), v = [];
      for (const f of fs.readdirSync(process.argv[1]).filter((f) => /^fanout-webstomp-\d+\.json$/.test(f)))
        try { v.push(JSON.parse(fs.readFileSync(`${process.argv[1]}/${f}`, "utf8")).deliveries_per_s); } catch {}
      v.sort((a, b) => a - b);
      const r = v.length ? v[(v.length - 1) >> 1] : 0;
      console.log(r > 0 ? Math.max(1, Math.round(r / 2 / +process.argv[2])) : 500);
    ' "$out" "$LAT_SUBS")
    log "latency rate: $LAT_RATE messages/s to $LAT_SUBS subscribers"
  fi
  if [ "$scen" = history ]; then run_history; continue; fi
  for n in $(seq 1 "$REPEAT"); do
    for t in $targets; do run_one "$scen" "$t" "$n"; done
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

{
  echo "### Machine"
  echo
  machine
  echo "- load average before/after the run: $load_before / $load_after"
  echo
  if [ -n "$classic" ]; then
    echo "### Results"
    echo
    results_table
  fi
  case ,$SCENARIOS, in *,wire,*) echo; echo "### Bytes on the wire"; echo; wire_table ;; esac
  case ,$SCENARIOS, in *,history,*) echo; echo "### Topics with history"; echo; history_table ;; esac
}
