#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# 100,000 sessions on one machine: stompgate in shared mode against a private
# RabbitMQ, and Web-STOMP on the same broker side by side, up to the largest
# count it holds here. Not part of CI: the full run takes several minutes and
# most of a small machine. Its recorded results are in docs/benchmarks.md.
#
# One process may hold at most `ulimit -Hn` descriptors (20,000 here, and the
# hard limit cannot be raised without CAP_SYS_RESOURCE), so the sessions are
# spread over BENCH_INSTANCES gateway instances, each on a port of its own
# with its default workers, and as many stompgate-bench processes, one per
# instance. The ephemeral port range is per destination, so each generator's
# sessions to its instance's port must fit in it.
#
# Half of the sessions subscribe to a topic of their own (/topic/RUN.user.G),
# half to one of BENCH_ROOMS room topics (/topic/RUN.room.R). Once every
# generator reports its sessions subscribed, the script records memory, queue
# and binding counts, then sends SIGUSR1 to every generator at once: each
# publishes one message to each of its users, the first also one to each room,
# and each counts MESSAGE frames until every session has its one message (the
# body names the topic, so a stray message is an error, as is a second one).
#
#   tools/bench-100k.sh                                  # the full run
#   BENCH_SESSIONS=3000 BENCH_INSTANCES=2 WEBSTOMP_SESSIONS=1000 tools/bench-100k.sh   # smoke, ~1 min
#
# Knobs (environment):
#   BENCH_SESSIONS       stompgate sessions in all (default 100000)
#   BENCH_INSTANCES      gateway instances and generator processes (default 6)
#   BENCH_WORKERS        --workers of each instance (default: its own default,
#                        the number of cores)
#   BENCH_ROOMS          room topics (default 100)
#   WEBSTOMP_SESSIONS    Web-STOMP session counts to try, comma-separated, the
#                        largest first; the first that completes cleanly is
#                        reported, with the failed attempts noted (default
#                        17000,15000,12000,9000; 0 skips Web-STOMP)
#   BENCH_CONCURRENCY    handshakes in flight per generator (default 64)
#   BENCH_SETUP_TIMEOUT  seconds allowed to connect and subscribe (default 1200)
#   BENCH_ROUND_TIMEOUT  seconds allowed for every delivery (default 300)
#   BENCH_SETTLE         seconds of quiet after every session is subscribed
#                        before memory is read (default 5): stompgate gives an
#                        idle WebSocket's framing buffers back after 2 s
#   BENCH_TARGETS        stompgate, webstomp or both (default stompgate,webstomp)
#   BENCH_BUILD_DIR      build directory (default build; built if needed)
#   BENCH_OUT            directory for the raw JSON and logs (default: a temp dir, kept)
#
# Prints a Markdown table on stdout (progress on stderr); the raw JSON lines
# of every generator, the gateway and broker logs stay in the output
# directory. Exit status 0 when every reported run was clean.
set -u
src=$(cd "$(dirname "$0")/.." && pwd)
cd "$src"
build=${BENCH_BUILD_DIR:-build}
TOTAL=${BENCH_SESSIONS:-100000}
INST=${BENCH_INSTANCES:-6}
WORKERS=${BENCH_WORKERS:-}
ROOMS=${BENCH_ROOMS:-100}
WS_LIST=${WEBSTOMP_SESSIONS:-17000,15000,12000,9000}
CONC=${BENCH_CONCURRENCY:-64}
SETUP_TIMEOUT=${BENCH_SETUP_TIMEOUT:-1200}
ROUND_TIMEOUT=${BENCH_ROUND_TIMEOUT:-300}
SETTLE=${BENCH_SETTLE:-5}
TARGETS=${BENCH_TARGETS:-stompgate,webstomp}

log() { echo "bench-100k: $(date -u +%H:%M:%S) $*" >&2; }
die() { echo "bench-100k: $*" >&2; exit 1; }

[[ $SETTLE =~ ^[0-9]+$ ]] || die "BENCH_SETTLE must be whole seconds (got '$SETTLE')"
for v in TOTAL INST ROOMS CONC SETUP_TIMEOUT ROUND_TIMEOUT; do
  [[ ${!v} =~ ^[0-9]+$ ]] && [ "${!v}" -gt 0 ] || die "$v must be a positive integer (got '${!v}')"
done
[ -z "$WORKERS" ] || [[ $WORKERS =~ ^[1-9][0-9]*$ ]] || die "BENCH_WORKERS must be a positive integer"
[[ $WS_LIST =~ ^[0-9]+(,[0-9]+)*$ ]] || die "WEBSTOMP_SESSIONS must be comma-separated counts (got '$WS_LIST')"

# ---- limits of this machine --------------------------------------------------
hard=$(ulimit -Hn)
per=$(( (TOTAL + INST - 1) / INST ))
read -r port_lo port_hi < <(sysctl -n net.ipv4.ip_local_port_range 2>/dev/null || cat /proc/sys/net/ipv4/ip_local_port_range)
ports=$(( port_hi - port_lo + 1 ))
ws_max=0
for n in ${WS_LIST//,/ }; do [ "$n" -gt "$ws_max" ] && ws_max=$n; done
if [ "$hard" != unlimited ]; then
  # A gateway instance needs a descriptor per session plus its listener,
  # broker links and event loops; a generator one per session plus its publisher.
  need=$(( per + 64 ))
  if [ "$need" -gt "$hard" ]; then
    die "$per sessions per instance need about $need descriptors, but the hard open-files limit" \
      "(ulimit -Hn) is $hard and only a privileged process can raise it: set BENCH_INSTANCES to at least" \
      "$(( (TOTAL + hard - 65) / (hard - 64) ))"
  fi
  if [ "$(( ws_max + 64 ))" -gt "$hard" ]; then
    die "WEBSTOMP_SESSIONS $ws_max exceeds what one generator process can open under the hard" \
      "open-files limit $hard"
  fi
fi
# Every connection to one address and port needs an ephemeral port of its own.
if [ "$(( per + 1 ))" -gt "$ports" ] || [ "$(( ws_max + 1 ))" -gt "$ports" ]; then
  die "net.ipv4.ip_local_port_range is $port_lo-$port_hi ($ports ports per destination), too few for" \
    "$per sessions per instance (or $ws_max Web-STOMP sessions): raise BENCH_INSTANCES or widen the range"
fi
tw=$(awk 'NR > 1 && $4 == "06" {n++} END {print n + 0}' /proc/net/tcp 2>/dev/null)
[ "${tw:-0}" -lt 10000 ] || log "warning: $tw sockets in TIME_WAIT hold ephemeral ports from an earlier run"

if [ ! -f "$build/build.ninja" ]; then meson setup "$build" >&2 || exit 1; fi
ninja -C "$build" stompgate tools/stompgate-bench >&2 || exit 1
SG=$build/stompgate
BENCH=$build/tools/stompgate-bench
"$BENCH" --help | grep -q -- '--ready-file' || die "$BENCH has no rooms scenario: rebuild it"

. test/lib/rabbitmq.sh
dir=$(mktemp -d /tmp/sg-bench100k.XXXXXX)
chmod 755 "$dir" # the broker runs as the rabbitmq user
out=${BENCH_OUT:-$dir/results}
mkdir -p "$out"
# The table reads what this run writes, not an earlier run's files.
rm -f "$out"/stompgate.* "$out"/webstomp.* "$out"/webstomp-failed-*.json
gw_pids=() gen_pids=()
stop_pids() {
  local p
  for p in "$@"; do kill -TERM "$p" 2>/dev/null; done
  for p in "$@"; do
    for _ in $(seq 1 60); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
}
cleanup() {
  [ ${#gen_pids[@]} -eq 0 ] || stop_pids "${gen_pids[@]}"
  [ ${#gw_pids[@]} -eq 0 ] || stop_pids "${gw_pids[@]}"
  rmq_stop "$dir/broker"
  cp "$dir"/broker/log/*.log "$out"/ 2>/dev/null
  rm -rf "$dir/broker"
  [ -z "${BENCH_OUT:-}" ] || rm -rf "$dir"
  log "raw results and logs in $out"
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
rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
nofile() { awk '/^Max open files/{print $4 "/" $5}' "/proc/$1/limits" 2>/dev/null; }

# Broker state as JSON fields: RSS, Erlang's own total, queues, bindings,
# connections and channels.
broker_state() {
  local prefix=$1 q b bt c ch em t=$out/ctl.tmp
  # A count that rabbitmqctl could not read is null, not the lines of its error.
  count() { if rmq_ctl "$dir/broker" "$@" -q --no-table-headers >"$t" 2>/dev/null; then wc -l <"$t"; else echo null; fi; }
  q=$(count list_queues name)
  b=$(count list_bindings source_name)
  if [ "$b" = null ]; then bt=null; else bt=$(grep -c '^amq\.topic' "$t"); fi
  c=$(count list_connections pid)
  ch=$(count list_channels pid)
  rm -f "$t"
  em=$(rmq_ctl "$dir/broker" eval 'erlang:memory(total).' 2>/dev/null | tail -1 | tr -dc 0-9)
  printf '"%s_rss_kb":%s,"%s_erlang_bytes":%s,"%s_queues":%s,"%s_bindings":%s,"%s_topic_bindings":%s,"%s_connections":%s,"%s_channels":%s' \
    "$prefix" "$(rss_kb "$beam")" "$prefix" "${em:-null}" "$prefix" "$q" "$prefix" "$b" "$prefix" "$bt" \
    "$prefix" "$c" "$prefix" "$ch"
}

# The broker gives memory back slowly after a run: wait until its RSS moves
# less than 2 MB in 2 s and it holds at most $1 queues (120 s at most).
settle_broker() {
  local want=$1 prev cur q
  prev=$(rss_kb "$beam")
  for _ in $(seq 1 60); do
    sleep 2
    cur=$(rss_kb "$beam")
    q=$(rmq_ctl "$dir/broker" list_queues -q --no-table-headers name 2>/dev/null | wc -l)
    [ "$q" -le "$want" ] && [ $((cur > prev ? cur - prev : prev - cur)) -lt 2048 ] && return 0
    prev=$cur
  done
  log "broker not settled: RSS $cur KB, $q queues"
}

# Where connection tracking is on, every connection (and each closed one for
# a while) takes an entry; a full table drops new connections' packets. Waits
# (up to 180 s) until $1 more fit.
conntrack_room() {
  local want=$1 f=/proc/sys/net/netfilter
  [ -r $f/nf_conntrack_count ] && [ -r $f/nf_conntrack_max ] || return 0
  for _ in $(seq 1 90); do
    [ $(( $(cat $f/nf_conntrack_max) - $(cat $f/nf_conntrack_count) )) -gt $(( want + 1000 )) ] && return 0
    sleep 2
  done
  log "warning: the connection-tracking table holds $(cat $f/nf_conntrack_count) of $(cat $f/nf_conntrack_max) entries," \
    "too full for $want more connections: expect failed connects (raise net.netfilter.nf_conntrack_max)"
}

# Starts generators (arrays urls, counts, firsts, pids), waits until all are
# subscribed, records the state, starts the round, collects the results.
# $1: target name; $2: extra JSON fields measured before the sessions.
run_round() {
  local name=$1 before=$2 i n=${#urls[@]} run t0 t_ready t_go deadline ok=1
  run="b$(date +%s)$RANDOM"
  rm -f "$out/$name".*
  conntrack_room "$(( $(IFS=+; echo "${counts[*]}") + n ))"
  gen_pids=()
  log "$name: starting $n generator(s), $(IFS=+; echo "${counts[*]}") sessions"
  t0=$(date +%s%3N)
  for i in $(seq 0 $((n - 1))); do
    local extra=()
    [ "$i" -eq 0 ] && extra=(--publish-rooms)
    "$BENCH" --url "${urls[$i]}" --scenario rooms --sessions "${counts[$i]}" --first-index "${firsts[$i]}" \
      --rooms "$ROOMS" --run-id "$run" --ready-file "$out/$name.ready.$i" --concurrency "$CONC" \
      --setup-timeout "$SETUP_TIMEOUT" --duration "$ROUND_TIMEOUT" --pid "${pids[$i]}" --broker-pid "$beam" \
      "${extra[@]}" >"$out/$name.result.$i" 2>"$out/$name.log.$i" &
    gen_pids+=($!)
  done
  deadline=$(( $(date +%s) + SETUP_TIMEOUT + 60 ))
  local last_report=0
  while :; do
    local have=0
    for i in $(seq 0 $((n - 1))); do [ -f "$out/$name.ready.$i" ] && have=$((have + 1)); done
    [ "$have" -eq "$n" ] && break
    for i in $(seq 0 $((n - 1))); do
      if [ ! -f "$out/$name.ready.$i" ] && ! kill -0 "${gen_pids[$i]}" 2>/dev/null; then
        log "$name: generator $i exited before its sessions were subscribed:"; tail -5 "$out/$name.log.$i" >&2
        ok=0
      fi
    done
    [ "$ok" -eq 1 ] || return 1
    [ "$(date +%s)" -lt "$deadline" ] || { log "$name: generators not ready after $SETUP_TIMEOUT s"; return 1; }
    if [ $(( $(date +%s) - last_report )) -ge 15 ]; then
      last_report=$(date +%s)
      log "$name: $have/$n generators subscribed; load $(cut -d' ' -f1 /proc/loadavg)"
    fi
    sleep 0.2
  done
  t_ready=$(date +%s%3N)
  log "$name: all subscribed after $(( (t_ready - t0) / 1000 )) s; reading memory, queues and bindings"
  local gw_now=() gw_settled=() p
  for p in "${pids[@]}"; do gw_now+=("$(rss_kb "$p")"); done
  sleep "$SETTLE"
  for p in "${pids[@]}"; do gw_settled+=("$(rss_kb "$p")"); done
  local state gen_rss=0
  state=$(broker_state broker_ready)
  for p in "${gen_pids[@]}"; do gen_rss=$(( gen_rss + $(rss_kb "$p") )); done
  sleep 1
  log "$name: go"
  t_go=$(date +%s%3N)
  kill -USR1 "${gen_pids[@]}"
  deadline=$(( $(date +%s) + ROUND_TIMEOUT + 30 ))
  while :; do
    local have=0
    for i in $(seq 0 $((n - 1))); do [ -s "$out/$name.result.$i" ] && have=$((have + 1)); done
    [ "$have" -eq "$n" ] && break
    [ "$(date +%s)" -lt "$deadline" ] || { log "$name: results missing after the round timeout"; break; }
    sleep 0.1
  done
  log "$name: round over; releasing the sessions"
  kill -USR1 "${gen_pids[@]}" 2>/dev/null
  for p in "${gen_pids[@]}"; do wait "$p" 2>/dev/null; done
  gen_pids=()
  {
    printf '{"target":"%s","instances":%s,"t_start_ms":%s,"t_ready_ms":%s,"t_go_ms":%s,%s,%s,"gen_rss_kb":%s,"settle_s":%s,"gateway_rss_kb_ready":[%s],"gateway_rss_kb_settled":[%s],"results":[' \
      "$name" "$n" "$t0" "$t_ready" "$t_go" "$before" "$state" "$gen_rss" "$SETTLE" "$(IFS=,; echo "${gw_now[*]}")" \
      "$(IFS=,; echo "${gw_settled[*]}")"
    for i in $(seq 0 $((n - 1))); do
      [ "$i" -eq 0 ] || printf ','
      head -1 "$out/$name.result.$i" 2>/dev/null | grep '^{' || printf 'null'
    done
    printf ']}\n'
  } > "$out/$name.json"
}

log "machine: $(nproc) cores, $(free -m | awk '/^Mem:/{print $2}') MB, open files $(ulimit -Sn)/$hard, ports $port_lo-$port_hi; load $(cut -d' ' -f1-3 /proc/loadavg)"
# rabbitmqctl's own Erlang node listens on a port of its own (by default near
# the broker's distribution port, inside the ephemeral range). With 100,000
# connections open every ephemeral port is in use by some socket and that
# bind fails: give it ports below the range.
for _ in $(seq 1 50); do
  p=$(( 20000 + RANDOM % (port_lo > 21000 ? port_lo - 21000 : 1000) ))
  [ -z "$(ss -Htan "sport >= :$p and sport <= :$((p + 10))" 2>/dev/null)" ] && break
done
export RABBITMQ_CTL_DIST_PORT_MIN=$p RABBITMQ_CTL_DIST_PORT_MAX=$((p + 10))
log "starting RabbitMQ with Web-STOMP"
rmq_start "$dir/broker" web_stomp >&2 || die "RabbitMQ did not start"
beam=$(pgrep -g "$RMQ_PID" -x beam.smp | head -1)
[ -n "$beam" ] || die "no beam.smp under PID $RMQ_PID"
log "broker beam.smp PID $beam, open files $(nofile "$beam")"
rabbit_version=$(rmq_ctl "$dir/broker" version 2>/dev/null | tail -1)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- stompgate: BENCH_INSTANCES instances in shared mode ------------------------
if [[ ,$TARGETS, == *,stompgate,* ]]; then
  settle_broker 0
  before=$(broker_state broker_before)
  urls=() counts=() firsts=() pids=() gw_before=() limits=()
  first=0
  for i in $(seq 0 $((INST - 1))); do
    n=$(( TOTAL / INST + (i < TOTAL % INST ? 1 : 0) ))
    port=$(free_port)
    wopt=()
    [ -z "$WORKERS" ] || wopt=(--workers "$WORKERS")
    # The gateway raises its own soft open-files limit to the hard one.
    "$SG" --listen "127.0.0.1:$port" --mode shared --log-level warn "${wopt[@]}" \
      --broker "amqp://guest:guest@127.0.0.1:$RMQ_AMQP_PORT/" 2>>"$out/gateway-$i.log" &
    gw_pids+=($!)
    wait_port "$port" || die "stompgate instance $i did not listen on port $port (see $out/gateway-$i.log)"
    urls+=("ws://127.0.0.1:$port/ws") counts+=("$n") firsts+=("$first") pids+=("${gw_pids[$i]}")
    first=$(( first + n ))
  done
  sleep 2
  for p in "${gw_pids[@]}"; do gw_before+=("$(rss_kb "$p")") limits+=("\"$(nofile "$p")\""); done
  before="$before,\"gateway_rss_kb_before\":[$(IFS=,; echo "${gw_before[*]}")],\"gateway_nofile\":[$(IFS=,; echo "${limits[*]}")],\"gateway_threads\":$(awk '/^Threads:/{print $2}' "/proc/${gw_pids[0]}/status")"
  run_round stompgate "$before" || log "stompgate: the round did not run"
  stop_pids "${gw_pids[@]}"
  gw_pids=()
fi

# ---- Web-STOMP: one generator against the broker's own endpoint -----------------
ws_failed=()
if [[ ,$TARGETS, == *,webstomp,* ]] && [ "$WS_LIST" != 0 ]; then
  for n in ${WS_LIST//,/ }; do
    [ "$n" -gt 0 ] || continue
    settle_broker 0
    before=$(broker_state broker_before)
    urls=("ws://127.0.0.1:$RMQ_WEBSTOMP_PORT/ws") counts=("$n") firsts=(0) pids=("$beam")
    if run_round webstomp "$before" && node -e '
        const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).results[0];
        process.exit(r && r.completed && r.sessions_complete === r.sessions && !r.errors ? 0 : 1);' "$out/webstomp.json"; then
      break
    fi
    why=$(node -e '
      try { const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).results[0];
        console.log(r ? `${r.ready}/${r.sessions} subscribed, ${r.sessions_complete} complete, ${r.errors} errors${r.first_error ? ": " + r.first_error : ""}` : "no result");
      } catch { console.log("no result"); }' "$out/webstomp.json" 2>/dev/null)
    log "webstomp: $n sessions not clean ($why)"
    ws_failed+=("$n: $why")
    [ -f "$out/webstomp.json" ] && mv "$out/webstomp.json" "$out/webstomp-failed-$n.json"
  done
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- report -----------------------------------------------------------------------
{
  echo "### Machine"
  echo
  echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), nproc $(nproc)"
  echo "- memory: $(free -m | awk '/^Mem:/{print $2}') MB; open files $hard (hard); ephemeral ports $port_lo-$port_hi"
  echo "- kernel: $(uname -r); RabbitMQ $rabbit_version; $(erl -noshell -eval 'io:format("Erlang/OTP ~s", [erlang:system_info(otp_release)]), halt().' 2>/dev/null)"
  echo "- stompgate $(git -C "$src" describe --always --dirty 2>/dev/null), $(cc --version | head -1)"
  echo "- load average before/after: $load_before / $load_after"
  echo
  echo "### Results"
  echo
  node - "$out" "$ROOMS" "${ws_failed[@]}" <<'EOF'
const fs = require('fs');
const [dir, rooms, ...wsFailed] = process.argv.slice(2);
const load = (n) => { try { return JSON.parse(fs.readFileSync(`${dir}/${n}.json`, 'utf8')); } catch { return undefined; } };
const cols = [['stompgate', 'stompgate shared'], ['webstomp', 'Web-STOMP']].map(([k, l]) => [load(k), l]).filter(([d]) => d);
const sum = (a) => a.reduce((x, y) => x + y, 0);
const ok = (v) => typeof v === 'number' && Number.isFinite(v);
const f = (v, d = 1) => !ok(v) ? 'n/a' : Number.isInteger(v) ? v.toLocaleString('en-US') : v.toFixed(d);
const mb = (kb) => ok(kb) ? (kb / 1024).toFixed(0) : 'n/a';
const stats = (d) => {
  const r = d.results.filter(Boolean);
  const s = {};
  s.sessions = sum(r.map((x) => x.sessions));
  s.ready = sum(r.map((x) => x.ready));
  s.failed = sum(r.map((x) => x.failed));
  s.users = sum(r.map((x) => x.user_sessions));
  s.rooms = sum(r.map((x) => x.room_sessions));
  s.pub_users = sum(r.map((x) => x.published_users));
  s.pub_rooms = sum(r.map((x) => x.published_rooms));
  s.expected = sum(r.map((x) => x.expected));
  s.delivered = sum(r.map((x) => x.delivered));
  s.complete = sum(r.map((x) => x.sessions_complete));
  s.dup = sum(r.map((x) => x.duplicates));
  s.wrong = sum(r.map((x) => x.wrong));
  s.errors = sum(r.map((x) => x.errors));
  s.missing = d.results.length - r.length;
  s.first_error = r.map((x) => x.first_error).find(Boolean);
  s.connect_s = r.length ? (Math.max(...r.map((x) => x.ready_ms)) - Math.min(...r.map((x) => x.start_ms))) / 1e3 : NaN;
  s.slowest_gen_s = Math.max(...r.map((x) => x.connect_s));
  const last = r.map((x) => x.last_delivery_ms).filter(ok);
  s.delivery_s = last.length ? (Math.max(...last) - d.t_go_ms) / 1e3 : NaN;
  s.gen_rss_kb = d.gen_rss_kb;
  if (d.target === 'stompgate') {
    s.gw_kb = sum(d.gateway_rss_kb_settled) - sum(d.gateway_rss_kb_before);
    s.gw_kb_per = s.gw_kb / s.ready;
    s.gw_kb_per_ready = (sum(d.gateway_rss_kb_ready) - sum(d.gateway_rss_kb_before)) / s.ready;
    s.gw_per_inst = d.gateway_rss_kb_settled.map((x, i) => `${mb(x - d.gateway_rss_kb_before[i])}`).join(' / ');
    s.nofile = [...new Set(d.gateway_nofile)].join(', ');
    s.threads = d.gateway_threads;
  }
  s.br_kb = d.broker_ready_rss_kb - d.broker_before_rss_kb;
  s.br_kb_per = s.br_kb / s.ready;
  return s;
};
const S = cols.map(([d]) => stats(d));
const rows = [
  ['gateway processes (sessions each)', (s, d) => d.target === 'stompgate' ? `${d.instances} (${d.results.filter(Boolean).map((x) => x.sessions).join(', ')})` : '0 (inside the broker)'],
  ['sessions subscribed / asked', (s) => `${f(s.ready)} / ${f(s.sessions)}`],
  ['… on a user topic of their own / in one of the rooms', (s) => `${f(s.users)} / ${f(s.rooms)}`],
  ['time to connect + subscribe all (s)', (s) => f(s.connect_s)],
  ['sessions connected + subscribed per second', (s) => f(s.ready / s.connect_s, 0)],
  ['gateway RSS growth, all instances, after the settle (MB)', (s, d) => d.target === 'stompgate' ? `${mb(s.gw_kb)} (${s.gw_per_inst})` : 'n/a (in the broker)'],
  [`gateway RSS KB per session, after ${cols[0][0].settle_s ?? '?'} s of quiet`, (s, d) => d.target === 'stompgate' ? f(s.gw_kb_per, 2) : 'n/a (in the broker)'],
  ['gateway RSS KB per session, read at readiness', (s, d) => d.target === 'stompgate' ? f(s.gw_kb_per_ready, 2) : 'n/a (in the broker)'],
  ['gateway open-files limit (soft/hard, set by itself)', (s, d) => d.target === 'stompgate' ? s.nofile : 'n/a'],
  ['broker RSS at the start / with every session (MB)', (s, d) => `${mb(d.broker_before_rss_kb)} / ${mb(d.broker_ready_rss_kb)}`],
  ['broker RSS growth KB per session', (s) => f(s.br_kb_per, 2)],
  ['broker Erlang memory with every session (MB)', (s, d) => ok(d.broker_ready_erlang_bytes) ? (d.broker_ready_erlang_bytes / 1048576).toFixed(0) : 'n/a'],
  ['broker queues', (s, d) => f(d.broker_ready_queues)],
  ['broker bindings (on amq.topic)', (s, d) => `${f(d.broker_ready_bindings)} (${f(d.broker_ready_topic_bindings)})`],
  ['broker AMQP connections / channels (Web-STOMP\'s are not listed)', (s, d) => `${f(d.broker_ready_connections)} / ${f(d.broker_ready_channels)}`],
  ['messages published (users + rooms)', (s) => `${f(s.pub_users)} + ${f(s.pub_rooms)}`],
  ['deliveries expected / got', (s) => `${f(s.expected)} / ${f(s.delivered)}`],
  ['sessions with their one message', (s) => f(s.complete)],
  ['duplicates / wrong messages', (s) => `${f(s.dup)} / ${f(s.wrong)}`],
  ['delivery time for the whole round (s)', (s) => f(s.delivery_s, 2)],
  ['load generator RSS, all processes (MB)', (s) => mb(s.gen_rss_kb)],
  ['errors', (s) => f(s.errors + s.missing) + (s.first_error ? ` (${s.first_error})` : '')],
];
console.log(`| | ${cols.map(([, l]) => l).join(' | ')} |`);
console.log(`|---|${cols.map(() => '---:').join('|')}|`);
for (const [label, fn] of rows) console.log(`| ${label} | ${cols.map(([d], i) => fn(S[i], d)).join(' | ')} |`);
console.log('');
console.log(`Half of the sessions on a topic of their own, half over ${rooms} room topics; one message to every user ` +
  'and one to every room, published by the load generators through the target under test after every session was subscribed. ' +
  'Delivery time runs from the go signal to the last MESSAGE; connect time from the first generator\'s start to the last one\'s readiness. ' +
  `RSS growth is measured against the processes before the sessions opened; the broker's after the settle.`);
if (wsFailed.length) console.log(`\nWeb-STOMP attempts that did not complete cleanly: ${wsFailed.join('; ')}.`);
const bad = S.map((s, i) => [s, cols[i][1]]).filter(([s]) => s.complete !== s.sessions || s.errors || s.missing);
if (bad.length) console.log(`\nNot clean: ${bad.map(([s, l]) => `${l}: ${s.sessions - s.complete} sessions without their message, ${s.errors} errors`).join('; ')}.`);
process.exitCode = bad.length ? 1 : 0;
EOF
}
