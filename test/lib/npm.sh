#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the pinned npm packages of package-lock.json when node_modules is
# missing or older than the lock file. Source it from the repository root.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund >&2
fi
