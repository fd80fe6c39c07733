#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# History soak (see history.mjs): starts a private RabbitMQ on free loopback
# ports, runs the driver (TAP on stdout) for each relay mode in turn, and
# stops the broker and every gateway the driver started by PID, also when
# the driver fails or dies.
#   HISTORY_SOAK_SECONDS=30 (publishing time per mode)
#   HISTORY_SOAK_MODES=per-session,shared   HISTORY_SOAK_RATE=200 (messages/s)
#   HISTORY_SOAK_CLIENTS=8   HISTORY_SOAK_SEGMENT_SIZE=4096
#   HISTORY_SOAK_PLANT=gap|dup (a fault planted in one client's count: the
#   run must then fail)
set -u
src=${STOMPGATE_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$src"
: "${STOMPGATE_BIN:?STOMPGATE_BIN must name the stompgate binary}"
export STOMPGATE_BIN STOMPGATE_SRC=$src
. test/lib/npm.sh
. test/lib/rabbitmq.sh
dir=$(mktemp -d /tmp/sg-hsoak.XXXXXX)
chmod 755 "$dir" # the broker runs as the rabbitmq user
cleanup() {
  local pid
  if [ -f "$dir/pids" ]; then
    while read -r pid; do kill -KILL "$pid" 2>/dev/null; done < "$dir/pids"
  fi
  rmq_stop "$dir/broker"
  if [ -n "${SOAK_KEEP:-}" ]; then echo "soak logs kept in $dir" >&2; else rm -rf "$dir"; fi
}
npid=
trap cleanup EXIT
trap '[ -z "$npid" ] || kill -TERM "$npid" 2>/dev/null; exit 1' INT TERM
rmq_start "$dir/broker" >&2 || { echo "Bail out! RabbitMQ did not start"; exit 1; }
export SG_AMQP_PORT=$RMQ_AMQP_PORT SG_BROKER_DIR=$dir/broker SG_TMP=$dir
mkdir -p "$dir/san"
export ASAN_OPTIONS="log_path=$dir/san/asan:detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="log_path=$dir/san/ubsan:print_stacktrace=1"
export SG_SAN_DIR=$dir/san
node test/soak/history.mjs &
npid=$!
wait "$npid"
rc=$?
npid=
if [ "$rc" -ne 0 ]; then
  for f in "$dir"/gateway-*.log; do
    [ -f "$f" ] && { echo "--- $f (last lines)" >&2; tail -30 "$f" >&2; }
  done
fi
exit "$rc"
