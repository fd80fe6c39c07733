#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs a soak driver, by default the fault soak (soak.mjs; history.sh runs
# history.mjs through here): starts a private RabbitMQ on free loopback
# ports, runs the driver (TAP on stdout), and stops the broker and every
# gateway the driver started by PID, also when the driver fails or dies.
#   run.sh [DRIVER]
#   SOAK_SECONDS=60 (publishing time)  SOAK_RATE=40 (per publisher, per second)
#   SOAK_KILL=per-session or shared (the gateway killed once)
set -u
driver=${1:-test/soak/soak.mjs}
src=${STOMPGATE_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$src"
: "${STOMPGATE_BIN:?STOMPGATE_BIN must name the stompgate binary}"
export STOMPGATE_BIN STOMPGATE_SRC=$src
. test/lib/npm.sh
. test/lib/rabbitmq.sh
dir=$(mktemp -d /tmp/sg-soak.XXXXXX)
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
# The driver runs in the background so that a signal (a meson timeout, ^C)
# is handled at once rather than when the driver ends.
trap '[ -z "$npid" ] || kill -TERM "$npid" 2>/dev/null; exit 1' INT TERM
rmq_start "$dir/broker" >&2 || { echo "Bail out! RabbitMQ did not start"; exit 1; }
export SG_AMQP_PORT=$RMQ_AMQP_PORT SG_BROKER_DIR=$dir/broker SG_TMP=$dir
# In a sanitizer build (SG_SANITIZE set) the gateways' reports land here and
# fail the run; plain builds ignore these variables.
mkdir -p "$dir/san"
export ASAN_OPTIONS="log_path=$dir/san/asan:detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="log_path=$dir/san/ubsan:print_stacktrace=1"
export SG_SAN_DIR=$dir/san
node "$driver" &
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
