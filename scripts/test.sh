#!/usr/bin/env bash
# `make test`: installs what is needed, builds with g++, clang and ASan+UBSan, and runs every
# suite, then builds the plugins in every other build type and with Debian's packaging flags
# (scripts/build-matrix.sh). Nothing is skipped: a missing privilege or tool is a failure, and
# so is a compiler or linker warning in any build. Ends with one line
# "tests: N passed, N failed" summing every suite's test cases.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "make test needs root: the tests create network namespaces, links and nftables tables" >&2
  exit 1
fi

bash scripts/install-deps.sh || exit 1
JOBS=$(nproc)
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=86
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=87
PYTEST=(/usr/bin/python3 -m pytest -q -p no:cacheprovider)

passed=0
failed=0
failures=()
log_dir=$(mktemp -d /tmp/tether-test-logs.XXXXXX)

# Runs one suite, echoing its output, and adds its counts to the totals.
suite() {
  local name=$1
  shift
  echo "=== $name: $*"
  local log="$log_dir/$name.log"
  "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local p f
  if grep -q '^\[doctest\] test cases:' "$log"; then
    p=$(grep '^\[doctest\] test cases:' "$log" | tail -1 | sed -E 's/.*\| *([0-9]+) passed.*/\1/')
    f=$(grep '^\[doctest\] test cases:' "$log" | tail -1 | sed -E 's/.*\| *([0-9]+) failed.*/\1/')
  else
    p=$(tail -3 "$log" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' | tail -1)
    f=$(tail -3 "$log" | grep -oE '[0-9]+ (failed|error)' | awk '{s += $1} END {print s + 0}')
  fi
  p=${p:-0}
  f=${f:-0}
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then f=1; echo "$name ran no test"; fi
  passed=$((passed + p))
  failed=$((failed + f))
  [ "$f" -ne 0 ] && failures+=("$name")
  return 0
}

# The project's own builds: warnings are errors (TETHER_WERROR), and a warning -Werror does not
# stop (the linker's) fails the build too.
build() {
  local dir=$1
  shift
  local log="$log_dir/build-$(basename "$dir").log"
  cmake -S . -B "$dir" -DTETHER_WERROR=ON "$@" >/dev/null || return 1
  cmake --build "$dir" -j"$JOBS" >"$log" 2>&1
  local rc=$?
  grep -vE '^\[ *[0-9]+%\]|^-- ' "$log"
  [ "$rc" -eq 0 ] && ! grep -qiE '(^|[^a-z])warning:' "$log" && [ -x "$dir/bin/tether_unit_test" ]
}

echo "=== format: clang-format --dry-run on every C++ file"
if clang-format --dry-run --Werror $(git ls-files '*.cc' '*.h') 2>&1 | head -20 | grep .; then
  failures+=("format")
  failed=$((failed + 1))
else
  passed=$((passed + 1))
fi

for variant in "build:-DCMAKE_BUILD_TYPE=RelWithDebInfo:g++" \
               "build-clang:-DCMAKE_BUILD_TYPE=RelWithDebInfo:clang++" \
               "build-asan:-DTETHER_SANITIZE=ON:g++"; do
  IFS=: read -r dir flags cxx <<<"$variant"
  echo "=== build $dir ($cxx $flags)"
  if ! CXX=$cxx build "$dir" $flags; then
    echo "build $dir failed"
    failures+=("build-$dir")
    failed=$((failed + 1))
    continue
  fi
  suite "unit-$dir" "$dir/bin/tether_unit_test"
  [ "$dir" = build-clang ] && continue
  if [ -x "$dir/bin/tether_ns_test" ]; then
    suite "ns-$dir" "$dir/bin/tether_ns_test"
  fi
  suite "integration-$dir" env TETHER_BIN_DIR="$PWD/$dir/bin" "${PYTEST[@]}" tests/integration
done

# make bench's tools and analysis on known input (seconds; the benchmark itself is make bench).
suite "bench-tools" env TETHER_BIN_DIR="$PWD/build/bin" "${PYTEST[@]}" tests/bench

if [ -d tests/e2e ] && ls tests/e2e/test_*.py >/dev/null 2>&1; then
  suite "e2e" env TETHER_BIN_DIR="$PWD/build/bin" "${PYTEST[@]}" tests/e2e
fi

# Debug, Release, MinSizeRel and Debian's flags with LTO, g++ and clang: the plugins only, each
# build one case. RelWithDebInfo is the builds above.
suite "build-matrix" bash scripts/build-matrix.sh build-matrix

echo
[ ${#failures[@]} -gt 0 ] && echo "failed suites: ${failures[*]} (logs in $log_dir)"
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
