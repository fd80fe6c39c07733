#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# One command from a fresh Debian 12 machine to a running gateway:
# installs what building and running need (not what only the tests use),
# builds stompgate, starts a private RabbitMQ on
# loopback and runs stompgate in front of it until Ctrl-C, which stops both.
# stompgate also serves the example chat app (deploy/examples/chat) at
# http://127.0.0.1:15674/ unless another --www is given, and keeps the chat
# rooms' last hour (--history 'chat.#:1h', unless --history is given) so that
# a page resumes where it left off after a reconnect or a reload.
#
#   tools/quickstart.sh [stompgate options...]
#
# Environment: SG_PORT (WebSocket port, default 15674), SG_AMQP_PORT (the
# private broker's AMQP port, default 5672, or a free one if that is taken).
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-deps.sh --run
[ -d build ] || meson setup build >&2
ninja -C build >&2
# The example app loads @stomp/stompjs from beside itself.
mkdir -p deploy/examples/chat/vendor
cp node_modules/@stomp/stompjs/bundles/stomp.umd.min.js deploy/examples/chat/vendor/

. test/lib/rabbitmq.sh
port_free() { ! node -e 'const c=require("net").connect(+process.argv[1],"127.0.0.1");c.on("connect",()=>process.exit(0));c.on("error",()=>process.exit(1))' "$1" 2>/dev/null; }
amqp_port=${SG_AMQP_PORT:-5672}
port_free "$amqp_port" || amqp_port=$(free_port)
ws_port=${SG_PORT:-15674}

dir=$(mktemp -d /tmp/stompgate-quickstart.XXXXXX)
chmod 755 "$dir"
gw_pid=
cleanup() {
  [ -n "$gw_pid" ] && kill -TERM "$gw_pid" 2>/dev/null && wait "$gw_pid" 2>/dev/null
  echo "stopping RabbitMQ" >&2
  rmq_stop "$dir/broker"
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "starting RabbitMQ on 127.0.0.1:$amqp_port (data in $dir)" >&2
RMQ_FIXED_AMQP_PORT=$amqp_port rmq_start "$dir/broker" >&2

cat >&2 <<MSG

stompgate: ws://127.0.0.1:$ws_port/ws  ->  amqp://127.0.0.1:$amqp_port
Open http://127.0.0.1:$ws_port/ in two browser tabs to chat through it.
Connect a STOMP client (login guest, passcode guest), for example in Node:
  node -e "const {Client}=require('@stomp/stompjs');Object.assign(global,{WebSocket:require('ws')});
  const c=new Client({brokerURL:'ws://127.0.0.1:$ws_port/ws',connectHeaders:{login:'guest',passcode:'guest'},
  onConnect(){c.subscribe('/topic/hello',m=>{console.log('got',m.body);c.deactivate()});
  c.publish({destination:'/topic/hello',body:'hi'})}});c.activate()"
Ctrl-C stops the gateway and the broker.

MSG
# A pattern may be given once: --history among the options replaces the
# chat's.
history=(--history 'chat.#:1h')
for a in "$@"; do
  case $a in --history | --history=*) history=() ;; esac
done
build/stompgate --listen "127.0.0.1:$ws_port" --broker "amqp://guest:guest@127.0.0.1:$amqp_port/" \
  --www deploy/examples/chat "${history[@]}" "$@" &
gw_pid=$!
wait "$gw_pid"
