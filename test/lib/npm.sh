#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the pinned npm packages of package-lock.json when node_modules is
# missing or older than the lock file. With SG_NPM=run only the
# "dependencies" (what the example pages and back ends load: @stomp/stompjs,
# ws, amqplib); otherwise the tests' "devDependencies" too. Source it from
# the repository root.
sg_npm_want=${SG_NPM:-full}
sg_npm_have=$(cat node_modules/.stompgate-npm 2>/dev/null || true)
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ] ||
   { [ "$sg_npm_want" = full ] && [ "$sg_npm_have" = run ]; }; then
  if [ "$sg_npm_want" = run ]; then
    npm ci --omit=dev --no-audit --no-fund >&2
  else
    npm ci --no-audit --no-fund >&2
  fi
  echo "$sg_npm_want" > node_modules/.stompgate-npm
fi
unset sg_npm_want sg_npm_have
