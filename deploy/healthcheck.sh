#!/bin/bash
# SPDX-License-Identifier: MIT
# Container health check: GET /healthz on the admin port with bash's
# /dev/tcp, so the image needs no HTTP client. The port comes from
# STOMPGATE_ADMIN (HOST:PORT), default 15675.
port=${STOMPGATE_ADMIN##*:}
port=${port:-15675}
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
printf 'GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
read -r -t 3 status <&3 || exit 1
case $status in
  "HTTP/1.1 200"*) exit 0 ;;
  *) exit 1 ;;
esac
