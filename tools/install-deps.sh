#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs what stompgate needs on Debian 12. Safe to run again: it only
# installs what is missing.
#
#   tools/install-deps.sh --run   build and run: compiler, meson, the
#                                 libraries, RabbitMQ, Node.js and the npm
#                                 packages the example pages load
#                                 (what tools/quickstart.sh needs)
#   tools/install-deps.sh         the above and what only the tests use:
#                                 clang, cmocka, Chromium, HAProxy, podman,
#                                 debootstrap, promtool, python3-stomp and the
#                                 npm test clients (what tools/run-tests.sh needs)
set -euo pipefail
cd "$(dirname "$0")/.."

scope=full
case "${1:-}" in
  --run) scope=run ;;
  "") ;;
  *) echo "usage: tools/install-deps.sh [--run]" >&2; exit 2 ;;
esac

# Building and running: the gateway, its man page (help2man), a private
# RabbitMQ for the quick start (test/lib/rabbitmq.sh stops it with pkill,
# from procps) and node for the example page's STOMP library.
pkgs=(build-essential pkg-config meson ninja-build help2man
      libuv1-dev libwslay-dev librabbitmq-dev libssl-dev libinih-dev libcjson-dev zlib1g-dev
      rabbitmq-server openssl ca-certificates procps)
if [ "$scope" = full ]; then
  pkgs+=(clang libclang-rt-14-dev      # the clang build, fuzzing
         libcmocka-dev python3         # unit tests; test counting, link and settings checks
         chromium                      # browser tests (driven by playwright-core)
         haproxy podman debootstrap    # scale-out test, image test
         python3-stomp                 # a STOMP client written elsewhere
         prometheus)                   # promtool: the end-to-end suite checks /metrics with it
fi
command -v node >/dev/null 2>&1 || pkgs+=(nodejs npm)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  echo "installing: ${missing[*]}" >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  # The Debian package starts a system broker where an init system exists;
  # stompgate's scripts run their own, so keep the package from starting one.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing[@]}" >&2
fi

SG_NPM=$scope . test/lib/npm.sh
