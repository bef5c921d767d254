#!/usr/bin/env bash
# Builds the plugins the way users and packagers build them: every standard CMake build type
# and Debian's packaging flags (dpkg-buildflags with hardening and LTO, CMAKE_BUILD_TYPE=None as
# debhelper configures), each with g++ and clang++, warnings as errors. g++'s RelWithDebInfo is
# not here: `make test` builds it, tests included.
#
#   scripts/build-matrix.sh [OUT_DIR]      (default build-matrix; one sub-directory per build)
#   MATRIX_ONLY="clang++-Debug g++-debian" scripts/build-matrix.sh    (only those builds)
#
# Only the plugins are built (-DTETHER_TESTS=OFF) and through ccache when it is installed, so a
# run costs little once the cache is warm. Each build's tree is removed when it is done (its log
# is kept) unless KEEP_BUILDS is set. Prints one line per build with its wall and CPU time
# and ends with "build-matrix: N passed, N failed"; a build fails when it fails or prints any
# compiler or linker warning. Exits non-zero when any build failed.
set -uo pipefail
cd "$(dirname "$0")/.."

out=${1:-build-matrix}
jobs=$(nproc)
# shellcheck source=scripts/ccache.sh
. scripts/ccache.sh

# Debian's flags for a package: -O2 -D_FORTIFY_SOURCE=2 -fstack-protector-strong -Wformat
# -Werror=format-security, relro/now, and LTO as `optimize=+lto` adds it for gcc. dpkg-buildflags
# speaks gcc: for clang the same hardening flags and clang's own -flto=thin (what clang-built
# distributions use; clang ignores gcc's -ffat-lto-objects with a warning).
debian_flags() {
  local cxx=$1 what=$2 features="hardening=+all"
  [ "$cxx" = g++ ] && features="$features optimize=+lto"
  local flags
  if [ "$what" = CXXFLAGS ]; then
    flags="$(DEB_BUILD_MAINT_OPTIONS=$features dpkg-buildflags --get CXXFLAGS)"
    flags="$flags $(DEB_BUILD_MAINT_OPTIONS=$features dpkg-buildflags --get CPPFLAGS)"
  else
    flags="$(DEB_BUILD_MAINT_OPTIONS=$features dpkg-buildflags --get LDFLAGS)"
  fi
  [ "$cxx" = clang++ ] && flags="$flags -flto=thin"
  echo "$flags"
}

# CPU seconds (user + system) used so far by this script's finished children, into $cpu_now:
# with the cores shared, wall time says little about what a build costs. `times` must run in
# this shell, not in a command substitution's subshell, which has no children of its own.
times_file=$(mktemp)
trap 'rm -f "$times_file"' EXIT
cpu_seconds() {
  times >"$times_file"
  cpu_now=$(tail -1 "$times_file" | awk '{
    s = 0
    for (i = 1; i <= NF; i++) { split($i, p, "m"); s += p[1] * 60 + p[2] }
    printf "%d\n", s }')
}

passed=0
failed=0
# clang's RelWithDebInfo too: make test builds that type with g++ and its tests, and clang only
# with the sanitizers.
for build in g++-Debug g++-Release g++-MinSizeRel g++-debian clang++-Debug clang++-Release \
             clang++-MinSizeRel clang++-RelWithDebInfo clang++-debian; do
  cxx=${build%-*}
  type=${build##*-}
  # MATRIX_ONLY="clang++-Release g++-debian ...": only those builds (default: every one).
  if [ -n "${MATRIX_ONLY:-}" ] && [[ " $MATRIX_ONLY " != *" $build "* ]]; then continue; fi
  dir="$out/$cxx-$type"
  log="$dir.log"
  mkdir -p "$dir"
  start=$(date +%s)
  cpu_seconds
  cpu_start=$cpu_now
  if [ "$type" = debian ]; then
    env CXX=$cxx CXXFLAGS="$(debian_flags "$cxx" CXXFLAGS)" LDFLAGS="$(debian_flags "$cxx" LDFLAGS)" \
      cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=None -DTETHER_TESTS=OFF -DTETHER_WERROR=ON \
      "${ccache_launcher[@]}" >"$log" 2>&1
  else
    env -u CXXFLAGS -u LDFLAGS CXX=$cxx \
      cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=$type -DTETHER_TESTS=OFF -DTETHER_WERROR=ON \
      "${ccache_launcher[@]}" >"$log" 2>&1
  fi
  rc=$?
  if [ $rc -eq 0 ]; then
    cmake --build "$dir" -j"$jobs" >>"$log" 2>&1
    rc=$?
  fi
  secs=$(($(date +%s) - start))
  cpu_seconds
  cpu=$((cpu_now - cpu_start))
  # -Werror stops a compile on its first warning; the grep also catches linker warnings.
  if [ $rc -ne 0 ] || grep -qiE '(^|[^a-z])warning:' "$log"; then
    failed=$((failed + 1))
    echo "build-matrix: $cxx $type FAILED in ${secs}s, ${cpu}s CPU (log: $log)"
    grep -iE 'warning:|error:' "$log" | head -20
  else
    passed=$((passed + 1))
    echo "build-matrix: $cxx $type ok in ${secs}s, ${cpu}s CPU"
  fi
  # A build here only proves it builds: its tree (up to a GB with debug info, more with LTO's
  # temporaries) goes at once, so nine builds never need more disk than one. The log stays.
  [ -n "${KEEP_BUILDS:-}" ] || rm -rf "$dir"
done
echo "build-matrix: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
