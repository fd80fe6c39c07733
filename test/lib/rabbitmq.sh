#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Starts and stops a private RabbitMQ node on loopback, without a service
# manager, in its own directory and on free ports.
#
#   source test/lib/rabbitmq.sh
#   rmq_start DIR [web_stomp]   # sets RMQ_PID RMQ_AMQP_PORT RMQ_WEBSTOMP_PORT RMQ_NODE
#   rmq_stop DIR
#   rmq_restart DIR [SECONDS_DOWN]  # clean stop, start again on the same
#                               # ports and data (durable queues survive)
#   rmq_launch DIR              # start a stopped node again (same name,
#                               # ports and data; it rejoins its cluster)
#   rmq_ctl DIR args...         # rabbitmqctl against that node
#   rmq_tls_setup DIR           # before rmq_start: adds an amqps:// listener
#                               # with a fresh CA; sets RMQ_AMQPS_PORT RMQ_TLS_CA

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

rmq_env() {
  local d=$1
  export RABBITMQ_MNESIA_BASE=$d/mnesia RABBITMQ_LOG_BASE=$d/log \
    RABBITMQ_NODENAME=$(cat "$d/nodename") RABBITMQ_NODE_PORT=$(cat "$d/amqp_port") \
    RABBITMQ_DIST_PORT=$(cat "$d/dist_port") RABBITMQ_CONFIG_FILE=$d/rabbitmq \
    RABBITMQ_ENABLED_PLUGINS_FILE=$d/enabled_plugins HOME=$d
}

rmq_ctl() {
  local d=$1; shift
  # The Debian wrapper runs the CLI as the rabbitmq user with its own HOME,
  # so the node's cookie is passed explicitly.
  ( rmq_env "$d"; rabbitmqctl -n "$RABBITMQ_NODENAME" --erlang-cookie "$(cat "$d/.erlang.cookie")" "$@" )
}

# Starts the node whose files rmq_start wrote to DIR (name, ports, config,
# data) and waits until it serves AMQP.
rmq_launch() {
  local d=$1 amqp ws
  amqp=$(cat "$d/amqp_port")
  ws=$(sed -n 's/^web_stomp.tcp.port = //p' "$d/rabbitmq.conf")
  chown -R rabbitmq:rabbitmq "$d"
  (
    rmq_env "$d"
    ulimit -n 20000 2>/dev/null || true
    cd "$d"
    # A process group of its own, so stopping it stops every child.
    exec setsid setpriv --reuid rabbitmq --regid rabbitmq --init-groups \
      /usr/lib/rabbitmq/bin/rabbitmq-server > "$d/server.out" 2>&1
  ) &
  echo $! > "$d/pid"
  local i
  for i in $(seq 1 120); do
    if node -e 'const c=require("net").connect(+process.argv[1],"127.0.0.1");c.on("connect",()=>process.exit(0));c.on("error",()=>process.exit(1))' "$amqp" 2>/dev/null; then
      break
    fi
    if ! kill -0 "$(cat "$d/pid")" 2>/dev/null; then
      echo "rabbitmq-server exited early:" >&2; tail -20 "$d/server.out" >&2; return 1
    fi
    sleep 0.5
  done
  rmq_ctl "$d" await_startup >/dev/null 2>&1 || { echo "rabbitmq did not start" >&2; tail -20 "$d/server.out" >&2; return 1; }
  if [ -n "$ws" ]; then
    for i in $(seq 1 60); do
      node -e 'const c=require("net").connect(+process.argv[1],"127.0.0.1");c.on("connect",()=>process.exit(0));c.on("error",()=>process.exit(1))' "$ws" 2>/dev/null && break
      sleep 0.5
    done
  fi
}

rmq_start() {
  local d=$1 plugins=${2:-}
  mkdir -p "$d"
  local amqp dist ws stomp
  amqp=${RMQ_FIXED_AMQP_PORT:-$(free_port)}; dist=$(free_port); ws=$(free_port); stomp=$(free_port)
  echo "sg$RANDOM$RANDOM@localhost" > "$d/nodename"
  echo "$amqp" > "$d/amqp_port"; echo "$dist" > "$d/dist_port"
  {
    echo "listeners.tcp.default = 127.0.0.1:$amqp"
    echo "loopback_users = none"
    [ -z "${RMQ_EXTRA_CONF:-}" ] || printf '%s\n' "$RMQ_EXTRA_CONF"
    if [ -n "$plugins" ]; then
      echo "web_stomp.tcp.port = $ws"
      echo "web_stomp.tcp.ip = 127.0.0.1"
      echo "stomp.listeners.tcp.1 = 127.0.0.1:$stomp"
    fi
  } > "$d/rabbitmq.conf"
  if [ -n "$plugins" ]; then echo '[rabbitmq_web_stomp].' > "$d/enabled_plugins"; else echo '[].' > "$d/enabled_plugins"; fi
  rmq_launch "$d" || return 1
  # Test users: one with full rights on /, one with none, and a second vhost.
  rmq_ctl "$d" add_user sgtest sgpass >/dev/null
  rmq_ctl "$d" set_permissions -p / sgtest '.*' '.*' '.*' >/dev/null
  rmq_ctl "$d" add_user sgnoperm sgpass >/dev/null
  rmq_ctl "$d" add_vhost sgvhost >/dev/null
  rmq_ctl "$d" set_permissions -p sgvhost guest '.*' '.*' '.*' >/dev/null
  RMQ_PID=$(cat "$d/pid"); RMQ_AMQP_PORT=$amqp; RMQ_WEBSTOMP_PORT=$ws; RMQ_NODE=$(cat "$d/nodename")
  export RMQ_PID RMQ_AMQP_PORT RMQ_WEBSTOMP_PORT RMQ_NODE
}

# Makes a CA and a certificate for localhost/127.0.0.1 in DIR and asks the
# next rmq_start for a TLS listener on a free port using them.
rmq_tls_setup() {
  local t=$1 port
  mkdir -p "$t"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=stompgate test broker CA" -keyout "$t/ca.key" -out "$t/ca.pem" 2>/dev/null || return 1
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$t/server.key" -out "$t/server.csr" 2>/dev/null || return 1
  printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n' > "$t/server.ext"
  openssl x509 -req -in "$t/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial \
    -days 2 -extfile "$t/server.ext" -out "$t/server.pem" 2>/dev/null || return 1
  # The broker runs as the rabbitmq user; these are throw-away test keys.
  chmod 755 "$t"; chmod 644 "$t"/*
  port=$(free_port)
  RMQ_EXTRA_CONF="listeners.ssl.default = 127.0.0.1:$port
ssl_options.cacertfile = $t/ca.pem
ssl_options.certfile = $t/server.pem
ssl_options.keyfile = $t/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false"
  RMQ_AMQPS_PORT=$port RMQ_TLS_CA=$t/ca.pem
  export RMQ_EXTRA_CONF RMQ_AMQPS_PORT RMQ_TLS_CA
}

rmq_stop() {
  local d=$1 pid
  pid=$(cat "$d/pid" 2>/dev/null) || return 0
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
  local i
  for i in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  # epmd is started detached by the node; stop it too when nothing else uses it.
  pkill -u rabbitmq -f "beam.*$(cat "$d/nodename")" 2>/dev/null || true
  rm -f "$d/pid"
}

# Stops the node cleanly (rabbitmqctl stop, so queues and persistent
# messages are flushed as on a planned restart), waits SECONDS_DOWN (default
# 0), and starts it again with the same name, ports and data directory:
# durable queues and persistent messages survive, and clients reconnect to
# the same address.
rmq_restart() {
  local d=$1 down=${2:-0} pid i
  pid=$(cat "$d/pid" 2>/dev/null) || { echo "rmq_restart: no node in $d" >&2; return 1; }
  rmq_ctl "$d" stop >/dev/null 2>&1 || true
  for i in $(seq 1 80); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "rmq_restart: clean stop timed out, killing" >&2
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
  fi
  # Whatever survives the VM (epmd, a stuck beam) of this node goes too.
  pkill -u rabbitmq -f "beam.*$(cat "$d/nodename")" 2>/dev/null || true
  rm -f "$d/pid"
  sleep "$down"
  rmq_launch "$d" || return 1
  RMQ_PID=$(cat "$d/pid"); export RMQ_PID
}

# Command-line use: rabbitmq.sh start DIR [web_stomp] | stop DIR
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -e
  case "${1:-}" in
    start) rmq_start "$2" "${3:-}"; echo "AMQP 127.0.0.1:$RMQ_AMQP_PORT pid $RMQ_PID" ;;
    stop) rmq_stop "$2" ;;
    restart) rmq_restart "$2" "${3:-0}"; echo "AMQP 127.0.0.1:$(cat "$2/amqp_port") pid $RMQ_PID" ;;
    launch) rmq_launch "$2"; echo "AMQP 127.0.0.1:$(cat "$2/amqp_port") pid $(cat "$2/pid")" ;;
    ctl) d=$2; shift 2; rmq_ctl "$d" "$@" ;;
    *) echo "usage: $0 start DIR [web_stomp] | stop DIR | restart DIR [SECONDS_DOWN] | launch DIR | ctl DIR ARGS..." >&2; exit 2 ;;
  esac
fi
