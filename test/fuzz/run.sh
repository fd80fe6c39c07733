#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs each libFuzzer target for SECONDS (default 60), one after another,
# at the lowest CPU priority. Builds build-fuzz/ with clang and -Dfuzz=true
# when it is missing. New coverage goes to a scratch corpus (the committed
# seeds in test/fuzz/corpus/ are read, not written); crashing inputs are
# written to test/fuzz/crashers/<target>/ to be kept as regression inputs
# in the corpus once fixed. Exits non-zero when any target crashed. The
# session target runs a whole gateway with threads and sockets, so it gets
# more memory.
#   test/fuzz/run.sh [SECONDS] [TARGET...]
set -u
src=$(cd "$(dirname "$0")/../.." && pwd)
secs=${1:-60}
shift || true
targets=${*:-stomp_codec http_upgrade destination utf8 sockjs auth topic_match pmdeflate proxy_proto session}
build=${FUZZ_BUILD:-$src/build-fuzz}
if [ ! -f "$build/build.ninja" ]; then
  CC=clang meson setup "$build" "$src" -Dfuzz=true -De2e=false -Dbuildtype=debugoptimized >&2 || exit 1
fi
ninja -C "$build" $(for t in $targets; do echo test/fuzz/fuzz-$t; done) >&2 || exit 1
work=${FUZZ_WORK:-$(mktemp -d /tmp/sg-fuzz.XXXXXX)}
status=0
for t in $targets; do
  mkdir -p "$work/$t" "$src/test/fuzz/crashers/$t"
  echo "== $t: ${secs}s, scratch corpus $work/$t" >&2
  rss=1024
  [ "$t" = session ] && rss=2048
  nice -n 19 "$build/test/fuzz/fuzz-$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=$rss \
    -max_len=4096 -print_final_stats=1 \
    -artifact_prefix="$src/test/fuzz/crashers/$t/" "$work/$t" "$src/test/fuzz/corpus/$t" \
    2>"$work/$t.log"
  rc=$?
  grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)|^==[0-9]+== ERROR|^SUMMARY' "$work/$t.log" >&2
  [ $rc -eq 0 ] || { echo "!! $t exited $rc; see $work/$t.log" >&2; status=1; }
done
exit $status
