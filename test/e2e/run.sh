#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs the end-to-end cases: starts a private RabbitMQ on free loopback
# ports, runs every test/e2e/*.test.mjs with node's test runner (TAP on
# stdout), stops the broker by PID.
set -u
src=${STOMPGATE_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$src"
: "${STOMPGATE_BIN:?STOMPGATE_BIN must name the stompgate binary}"
export STOMPGATE_BIN
. test/lib/npm.sh
. test/lib/rabbitmq.sh
dir=$(mktemp -d /tmp/sg-e2e.XXXXXX)
chmod 755 "$dir" # the broker runs as the rabbitmq user
trap 'rmq_stop "$dir/broker"; rm -rf "$dir"' EXIT
rmq_tls_setup "$dir/broker-tls" >&2 || { echo "Bail out! cannot make the broker's TLS certificate"; exit 1; }
rmq_start "$dir/broker" >&2 || { echo "Bail out! RabbitMQ did not start"; exit 1; }
export SG_AMQP_PORT=$RMQ_AMQP_PORT SG_AMQPS_PORT=$RMQ_AMQPS_PORT SG_BROKER_CA=$RMQ_TLS_CA SG_TMP=$dir
export SG_BROKER_DIR=$dir/broker
# Sanitizer reports of every gateway the cases start land here; the last
# case fails if there are any. Plain builds ignore these variables.
mkdir -p "$dir/san"
export ASAN_OPTIONS="log_path=$dir/san/asan:detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="log_path=$dir/san/ubsan:print_stacktrace=1"
export SG_SAN_DIR=$dir/san
# A case that fails with a client still reconnecting must not keep the
# runner waiting: end the run once every case is done (Node >= 20.14).
force=$(node --help | grep -q -- --test-force-exit && echo --test-force-exit)
node --test $force --test-reporter=tap --test-concurrency=1 test/e2e/*.test.mjs
