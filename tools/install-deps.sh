#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs what stompgate needs to build, test and run on Debian 12, and
# the pinned npm packages the end-to-end tests use. Safe to run again: it
# only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(build-essential pkg-config meson ninja-build clang libclang-rt-14-dev
      libuv1-dev libwslay-dev librabbitmq-dev libssl-dev libcmocka-dev
      libinih-dev libcjson-dev zlib1g-dev rabbitmq-server openssl ca-certificates python3 procps chromium help2man
      haproxy podman debootstrap python3-stomp
      prometheus) # promtool: the end-to-end suite checks /metrics with it
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

. test/lib/npm.sh
