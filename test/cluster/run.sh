#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Broker faults against a real 3-node RabbitMQ cluster on loopback (a
# stopped node, a frozen node, a broker that stops reading a connection):
# starts the nodes with distinct names, ports and directories and one
# shared Erlang cookie, joins nodes 2 and 3 to node 1, runs
# test/cluster/*.test.mjs (TAP on stdout), and stops every node by PID.
set -u
src=${STOMPGATE_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$src"
: "${STOMPGATE_BIN:?STOMPGATE_BIN must name the stompgate binary}"
export STOMPGATE_BIN
[ -d node_modules/@stomp/stompjs ] || npm ci --no-audit --no-fund >&2
. test/lib/rabbitmq.sh
dir=$(mktemp -d /tmp/sg-cluster.XXXXXX)
chmod 755 "$dir"
trap 'for i in 1 2 3; do rmq_stop "$dir/n$i"; done; rm -rf "$dir"' EXIT
cookie=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
ports=() dirs=()
for i in 1 2 3; do
  mkdir -p "$dir/n$i"
  printf '%s' "$cookie" > "$dir/n$i/.erlang.cookie"
  chmod 400 "$dir/n$i/.erlang.cookie"
  rmq_start "$dir/n$i" >&2 || { echo "Bail out! node $i did not start"; exit 1; }
  ports+=("$RMQ_AMQP_PORT"); dirs+=("$dir/n$i")
done
first=$(cat "$dir/n1/nodename")
for i in 2 3; do
  { rmq_ctl "$dir/n$i" stop_app && rmq_ctl "$dir/n$i" join_cluster "$first" &&
    rmq_ctl "$dir/n$i" start_app; } >&2 || { echo "Bail out! node $i did not join"; exit 1; }
done
rmq_ctl "$dir/n1" cluster_status >&2
# Sanitizer reports of every gateway land here; the last case fails if
# there are any. Plain builds ignore these variables.
mkdir -p "$dir/san"
export ASAN_OPTIONS="log_path=$dir/san/asan:detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="log_path=$dir/san/ubsan:print_stacktrace=1"
export SG_SAN_DIR=$dir/san
export SG_AMQP_PORT=${ports[0]} SG_CLUSTER_PORTS=$(IFS=,; echo "${ports[*]}") \
  SG_CLUSTER_DIRS=$(IFS=,; echo "${dirs[*]}") SG_TMP=$dir
# A case that fails with a client still reconnecting must not keep the
# runner waiting: end the run once every case is done (Node >= 20.14).
force=$(node --help | grep -q -- --test-force-exit && echo --test-force-exit)
# Arguments name a subset of the files (default: all of them).
if [ $# -eq 0 ]; then set -- test/cluster/*.test.mjs; fi
node --test $force --test-reporter=tap --test-concurrency=1 "$@"
