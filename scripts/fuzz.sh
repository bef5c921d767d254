#!/usr/bin/env bash
# `make fuzz`: builds the libFuzzer targets of tests/fuzz with clang (build-fuzz, TETHER_FUZZ=ON:
# coverage instrumentation, ASan+UBSan) and runs each for FUZZ_SECONDS (default 600), one after
# the other, from the committed corpus and regressions. New inputs go to build-fuzz/corpus/<t>,
# crashes to build-fuzz/crashes/<t>/. Ends with one line per target: seconds, executions,
# execs/s, coverage (edges covered of the edges instrumented in the binary, libFuzzer's cov:),
# features (ft:), corpus size, new inputs, and crashes by kind, also as a Markdown table in
# build-fuzz/fuzz-report.md; exits non-zero when any target crashed.
#
#   FUZZ_SECONDS=60 make fuzz                  every target for a minute
#   FUZZ_TARGETS="dns_query control" make fuzz  only these
#   FUZZ_JOBS=2 make fuzz                       two targets at a time
#   FUZZ_MERGE=1 make fuzz                      afterwards, merge what was found into
#                                               tests/fuzz/corpus (minimized; review, commit)
#   FUZZ_REPORT_ONLY=1 make fuzz                the report of the last run again, from its logs
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

SECONDS_EACH=${FUZZ_SECONDS:-600}
JOBS=${FUZZ_JOBS:-1}
BUILD=${FUZZ_BUILD:-build-fuzz}
ccache_launcher=()
if [ -f scripts/ccache.sh ]; then
  # shellcheck source=scripts/ccache.sh
  . scripts/ccache.sh
fi

# The targets are the list in tests/fuzz/CMakeLists.txt.
TARGETS=${FUZZ_TARGETS:-$(sed -n '/^set(TETHER_FUZZ_TARGETS/,/)/p' tests/fuzz/CMakeLists.txt |
  sed 's/set(TETHER_FUZZ_TARGETS//; s/)//')}
log_dir="$BUILD/fuzz-logs"

if [ "${FUZZ_REPORT_ONLY:-0}" != 1 ]; then
  CXX=clang++ cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTETHER_FUZZ=ON \
    -DTETHER_WERROR=ON "${ccache_launcher[@]}" >/dev/null || exit 1
  build_targets=()
  for t in $TARGETS; do build_targets+=(--target "fuzz_$t"); done
  cmake --build "$BUILD" -j"$(nproc)" "${build_targets[@]}" || exit 1

  # The targets that write files (hostlocal_lease, state_*, control) fsync them: on a disk that
  # is most of their time, so their scratch directories go to a tmpfs when there is one.
  if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then export TMPDIR=/dev/shm; fi
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  mkdir -p "$log_dir"

  run_one() {
    local t=$1 start=$SECONDS
    mkdir -p "$BUILD/corpus/$t" "$BUILD/crashes/$t"
    local seeds=()
    for d in "tests/fuzz/corpus/$t" "tests/fuzz/regressions/$t"; do
      [ -d "$d" ] && seeds+=("$d")
    done
    # -timeout: one input running 10 s is a hang; -rss_limit_mb: 2 GB is a leak or a blow-up.
    "$BUILD/bin/fuzz_$t" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
      -max_len=65536 -print_final_stats=1 -artifact_prefix="$BUILD/crashes/$t/" \
      "$BUILD/corpus/$t" "${seeds[@]}" >"$log_dir/$t.log" 2>&1
    echo $? >"$log_dir/$t.rc"
    echo $((SECONDS - start)) >"$log_dir/$t.secs"
  }

  running=0
  for t in $TARGETS; do
    echo "=== fuzz $t for ${SECONDS_EACH}s (log $log_dir/$t.log)"
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then
      wait -n
      running=$((running - 1))
    fi
  done
  wait
fi

# The report: from each log, libFuzzer's final stats (executions, execs/s) and its last status
# line ("#N DONE cov: C ft: F corp: U/S"): C edges covered of the inline 8-bit counters the
# binary has, F features (edges with hit-count buckets, what libFuzzer keeps inputs for), U the
# inputs in its corpus at the end; "new" the files it wrote to $BUILD/corpus/<t>; then the
# artifacts by kind. Also written as a Markdown table to $BUILD/fuzz-report.md.
crashed=0
report="$BUILD/fuzz-report.md"
{
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, ${SECONDS_EACH} s per target"
  echo
  echo "| target | seconds | executions | exec/s | cov | ft | corpus | new | crashes |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
} >"$report"
printf '%-18s %5s %11s %8s %13s %7s %6s %5s %s\n' target secs execs execs/s cov ft corpus new \
  crashes
for t in $TARGETS; do
  log="$log_dir/$t.log"
  execs=$(grep -oE 'stat::number_of_executed_units: +[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
  rate=$(grep -oE 'stat::average_exec_per_sec: +[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
  status=$(grep -E '^#[0-9]+[[:space:]].*cov: [0-9]+' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' <<<"$status" | grep -oE '[0-9]+$')
  ft=$(grep -oE 'ft: [0-9]+' <<<"$status" | grep -oE '[0-9]+$')
  units=$(grep -oE 'corp: [0-9]+' <<<"$status" | grep -oE '[0-9]+$')
  total=$(grep -oE 'Loaded [0-9]+ modules +\(([0-9]+) inline 8-bit counters' "$log" | head -1 |
    grep -oE '\(([0-9]+)' | tr -d '(')
  secs=$(cat "$log_dir/$t.secs" 2>/dev/null)
  new=$(find "$BUILD/corpus/$t" -type f | wc -l)
  # crash-, leak-, timeout-, oom-, slow-unit-<sha1>: counted by kind.
  kinds=$(find "$BUILD/crashes/$t" -type f -printf '%f\n' | sed 's/-[0-9a-f]*$//' | sort |
    uniq -c | awk '{printf "%s%s %s", sep, $1, $2; sep=", "}')
  rc=$(cat "$log_dir/$t.rc" 2>/dev/null || echo 1)
  if [ "$rc" -ne 0 ] || [ -n "$kinds" ]; then
    crashed=$((crashed + 1))
    [ -n "$kinds" ] || kinds="exit $rc"
  fi
  printf '%-18s %5s %11s %8s %13s %7s %6s %5s %s\n' "$t" "${secs:-?}" "${execs:-?}" \
    "${rate:-?}" "${cov:-?}/${total:-?}" "${ft:-?}" "${units:-?}" "$new" "${kinds:-0}"
  echo "| \`$t\` | ${secs:-?} | ${execs:-?} | ${rate:-?} | ${cov:-?}/${total:-?} | ${ft:-?} |" \
    "${units:-?} | $new | ${kinds:-0} |" >>"$report"
done
echo "(table in $report)"

if [ "${FUZZ_MERGE:-0}" = 1 ]; then
  for t in $TARGETS; do
    "$BUILD/bin/fuzz_$t" -merge=1 "tests/fuzz/corpus/$t" "$BUILD/corpus/$t" >/dev/null 2>&1
  done
  echo "merged new inputs into tests/fuzz/corpus (git status to review)"
fi
[ "$crashed" -eq 0 ]
