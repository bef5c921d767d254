#!/usr/bin/env bash
# `make test`: installs what is needed, builds, and runs every suite, then checks that the plugins
# build in every other build type and with Debian's packaging flags (scripts/build-matrix.sh).
# Nothing is skipped: a missing privilege or tool is a failure, and so is a compiler or linker
# warning in any build. Ends with one line "tests: N passed, N failed" summing every suite's
# test cases.
#
# Three kinds of build, two cores: the g++ RelWithDebInfo tree is built first, in the
# foreground, and its suites run; meanwhile the clang ASan+UBSan tree and then the build
# matrix are built in the background at the lowest CPU and I/O priority, on the CPU the suites
# leave idle (they mostly wait on the kernel, etcd and timers). The ASan tree's suites run as
# soon as both it and the g++ suites are done; the matrix's result is reported last.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "make test needs root: the tests create network namespaces, links and nftables tables" >&2
  exit 1
fi

bash scripts/install-deps.sh || exit 1
# shellcheck source=scripts/ccache.sh
. scripts/ccache.sh
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
  cmake -S . -B "$dir" -DTETHER_WERROR=ON "${ccache_launcher[@]}" "$@" >/dev/null || return 1
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

# The suites of one build tree: unit, namespaces, etcd, integration (and the fuzz corpora under
# the sanitizers).
tree_suites() {
  local dir=$1
  suite "unit-$dir" "$dir/bin/tether_unit_test"
  suite "ns-$dir" "$dir/bin/tether_ns_test"
  suite "etcd-$dir" "$dir/bin/tether_etcd_test"
  suite "integration-$dir" env TETHER_BIN_DIR="$PWD/$dir/bin" "${PYTEST[@]}" tests/integration
  # Every fuzz corpus and kept crash (tests/fuzz) through the targets, under ASan+UBSan.
  if [ "$dir" = build-asan ]; then
    suite "fuzz-replay" "$dir/bin/tether_fuzz_replay" --require-all tests/fuzz/corpus \
      tests/fuzz/regressions
  fi
}

# A build that failed counts as one failed suite.
build_failed() {
  echo "build $1 failed"
  failures+=("build-$1")
  failed=$((failed + 1))
}

echo "=== build build (g++ -DCMAKE_BUILD_TYPE=RelWithDebInfo)"
build_ok=1
CXX=g++ build build -DCMAKE_BUILD_TYPE=RelWithDebInfo || { build_ok=0; build_failed build; }

# In the background, niced: the ASan+UBSan tree (clang; g++ builds it too but slower, and the
# clang tree with its tests is built nowhere else), then the matrix (Debug, Release, MinSizeRel
# and Debian's flags with LTO for both compilers, clang's RelWithDebInfo: plugins only), then
# clang-tidy (.clang-tidy) over common/ and plugins/.
bg_dir="$log_dir/background"
mkdir -p "$bg_dir"
(
  renice -n 19 -p "$BASHPID" >/dev/null
  ionice -c 3 -p "$BASHPID"
  CXX=clang++ build build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTETHER_SANITIZE=ON \
    >"$bg_dir/asan.out" 2>&1
  echo $? >"$bg_dir/asan.rc"
  bash scripts/build-matrix.sh build-matrix >"$bg_dir/matrix.out" 2>&1
  echo $? >"$bg_dir/matrix.rc"
  bash scripts/tidy.sh build-tidy >"$bg_dir/tidy.out" 2>&1
  echo $? >"$bg_dir/tidy.rc"
) &
bg_pid=$!

if [ "$build_ok" = 1 ]; then
  tree_suites build
  # Several hosts simulated in namespaces, with etcd and tether-agent (issue 11).
  suite "multihost" env TETHER_BIN_DIR="$PWD/build/bin" "${PYTEST[@]}" tests/multihost
  # make bench's tools and analysis on known input (seconds; the benchmark is make bench).
  suite "bench-tools" env TETHER_BIN_DIR="$PWD/build/bin" "${PYTEST[@]}" tests/bench
  # libcni, podman and containerd driving the installed plugins.
  suite "e2e" env TETHER_BIN_DIR="$PWD/build/bin" "${PYTEST[@]}" tests/e2e
  # The DNS daemon's soak, 2 minutes of it (`make soak`: 30 minutes, 1,000 cycles).
  suite "soak" env TETHER_BIN_DIR="$PWD/build/bin" SOAK_MINUTES=2 SOAK_CYCLES=100 /usr/bin/python3 tests/soak/soak.py
fi

echo "=== build build-asan (clang++ -DTETHER_SANITIZE=ON), in the background"
while [ ! -e "$bg_dir/asan.rc" ] && kill -0 "$bg_pid" 2>/dev/null; do sleep 5; done
cat "$bg_dir/asan.out" 2>/dev/null
if [ "$(cat "$bg_dir/asan.rc" 2>/dev/null)" = 0 ]; then
  tree_suites build-asan
else
  build_failed build-asan
fi

echo "=== build-matrix, in the background"
wait "$bg_pid"
cat "$bg_dir/matrix.out" 2>/dev/null
matrix_passed=$(grep -oE 'build-matrix: [0-9]+ passed' "$bg_dir/matrix.out" | grep -oE '[0-9]+')
passed=$((passed + ${matrix_passed:-0}))
if [ "$(cat "$bg_dir/matrix.rc" 2>/dev/null)" != 0 ]; then
  failures+=("build-matrix")
  failed=$((failed + 1))
fi
echo "=== tidy, in the background"
cat "$bg_dir/tidy.out" 2>/dev/null
if [ "$(cat "$bg_dir/tidy.rc" 2>/dev/null)" = 0 ]; then
  passed=$((passed + 1))
else
  failures+=("tidy")
  failed=$((failed + 1))
fi

echo
[ ${#failures[@]} -gt 0 ] && echo "failed suites: ${failures[*]} (logs in $log_dir)"
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
