#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The man page names every option that --help lists.
set -u
man=$1 bin=$2
[ -s "$man" ] || { echo "no man page at $man"; exit 1; }
missing=0
for opt in $("$bin" --help | grep -oE -- '--[a-z][a-z-]+' | sort -u); do
  grep -q -- "$(printf '%s' "$opt" | sed 's/-/\\\\-/g')" "$man" || grep -q -- "$opt" "$man" || {
    echo "missing from the man page: $opt"; missing=1; }
done
exit $missing
