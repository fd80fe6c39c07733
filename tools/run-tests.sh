#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The whole test suite, as CI runs it: installs what is missing (with
# tools/install-deps.sh, the packages only the tests use included), builds
# with gcc, runs every test (unit and end-to-end against a private
# RabbitMQ) but the broker fault cases, builds a release build (-O3) and
# runs its unit tests, checks the clang build, runs the unit, fuzz,
# end-to-end and fault tests under AddressSanitizer +
# UndefinedBehaviorSanitizer, and ends with one line "N passed, N failed"
# counting every test case it ran. Every build here treats warnings as
# errors (-Dwerror=true); the project's default leaves that to the builder.
set -uo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)

tools/install-deps.sh || { echo "0 passed, 1 failed"; exit 1; }

results=$(mktemp)
failures=$(mktemp)
trap 'rm -f "$results" "$failures"' EXIT

# Counts the TAP cases of one meson run (a test without TAP counts once).
count() { # builddir [logbase]
  python3 - "$1/meson-logs/${2:-testlog}.txt" "${2:-testlog}" "$failures" >>"$results" <<'PY'
import re, sys
text = open(sys.argv[1], errors="replace").read()
failed_names = []
passed = failed = skipped = 0
for block in re.split(r"^=+ \d+/\d+ =+$", text, flags=re.M)[1:]:
    m = re.search(r"^result:\s+(.*)$", block, re.M)
    ok_exit = bool(m) and m.group(1).strip() == "exit status 0"
    out = block.split("-- stdout --", 1)[1] if "-- stdout --" in block else ""
    out = out.split("-- stderr --", 1)[0]
    oks = re.findall(r"^ok \d+.*$", out, re.M)
    sk = sum(1 for l in oks if re.search(r"#\s*SKIP", l, re.I))
    p = len(oks) - sk
    nok = re.findall(r"^not ok \d+.*$", out, re.M)
    f = len(nok)
    t = re.search(r"^test:\s+(.*)$", block, re.M)
    tname = t.group(1).strip() if t else "?"
    failed_names += [f"{sys.argv[2]}: {tname}: {l}" for l in nok]
    skipped += sk
    result = m.group(1).strip() if m else "no result"
    if p + f + sk == 0:
        p, f = (1, 0) if ok_exit else (0, 1)
        if not ok_exit:
            failed_names.append(f"{sys.argv[2]}: {tname}: {result}")
    elif not ok_exit and f == 0:
        f = 1  # the runner failed outside any case (a crash, a leak report)
        failed_names.append(f"{sys.argv[2]}: {tname}: {result}")
    passed += p
    failed += f
print(passed, failed, skipped)
with open(sys.argv[3], "a") as fh:
    for n in failed_names:
        fh.write(n + "\n")
PY
}

build() { # builddir [meson setup args...]
  local dir=$1; shift
  if [ ! -d "$dir" ]; then
    meson setup "$dir" -Dwerror=true "$@" >&2 || return 1
  else
    meson configure "$dir" -Dwerror=true "$@" >&2 || return 1
  fi
  ninja -C "$dir" >&2
}

run_suite() { # name builddir "meson test args" [meson setup args...]
  local name=$1 dir=$2 test_args=$3; shift 3
  echo "== $name ($(date +%T))" >&2
  if ! build "$dir" "$@"; then echo "0 1 0" >>"$results"; return; fi
  # shellcheck disable=SC2086
  meson test -C "$dir" --print-errorlogs --num-processes 2 --logbase "$name" $test_args
  count "$dir" "$name"
}

# The later builds compile at the lowest priority while the first build's
# tests run, which spend much of their time waiting on sockets and timers;
# each later suite then finds its build done (a failed one is built again
# there, and its errors shown).
prebuild() {
  { [ -d build-ci-release ] || meson setup build-ci-release -Dwerror=true --buildtype=release; } &&
    ninja -C build-ci-release -j 2
  { [ -d build-ci-asan ] || meson setup build-ci-asan -Dwerror=true \
      -Db_sanitize=address,undefined -Db_lundef=false; } && ninja -C build-ci-asan -j 2
  { [ -d build-ci-clang ] || CC=clang meson setup build-ci-clang -Dwerror=true; } &&
    ninja -C build-ci-clang -j 2
}

prebuild_pid=
if build build-ci; then
  nice -n 19 bash -c "$(declare -f prebuild); prebuild" >build-ci-prebuild.log 2>&1 &
  prebuild_pid=$!
  trap 'rm -f "$results" "$failures"; [ -n "$prebuild_pid" ] && kill "$prebuild_pid" 2>/dev/null' EXIT
fi
# The broker fault cases run once, under the sanitizers below: they drive
# the same code, and each run takes two minutes of a three-node cluster.
run_suite "gcc" build-ci "--no-suite faults"
[ -n "$prebuild_pid" ] && wait "$prebuild_pid"
# -O3 sees more (format truncation, for one) than the default -O2 build.
run_suite "release" build-ci-release "--suite unit" --buildtype=release
# The image test and the soak (suite slow) exercise packaging and long
# runs, not the gateway's memory safety: they run once, above.
# The end-to-end suite runs under the sanitizers in both relay modes.
run_suite "asan-ubsan" build-ci-asan "--no-suite slow --no-suite bench --no-suite e2e" \
  -Db_sanitize=address,undefined -Db_lundef=false
run_suite "asan-ubsan-e2e" build-ci-asan "--suite e2e"
# The broker fault cases (frozen node, a broker that stops reading) run
# under the sanitizers too: they drive the link's rarest paths.
run_suite "asan-ubsan-faults" build-ci-asan "--suite faults"

echo "== clang -Wall -Wextra -Werror ($(date +%T))" >&2
if { [ -d build-ci-clang ] || CC=clang meson setup build-ci-clang -Dwerror=true >&2; } &&
   meson configure build-ci-clang -Dwerror=true >&2 && ninja -C build-ci-clang >&2; then
  echo "1 0 0" >>"$results"
else
  echo "clang build failed" >&2
  echo "0 1 0" >>"$results"
fi

# What failed, named, just above the count: a log's tail shows both.
if [ -s "$failures" ]; then
  echo "failed cases:"
  sed 's/^/  /' "$failures"
fi
read -r passed failed skipped < <(awk '{p+=$1; f+=$2; s+=$3} END {print p+0, f+0, s+0}' "$results")
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
