#!/usr/bin/env bash
# clang-tidy with the checks of .clang-tidy over every C++ file of common/ and plugins/:
# `make tidy`, and make test (in the background, after the build matrix). Its compile database
# is clang's, without precompiled headers; the tree is only configured, nothing is built.
#
#   scripts/tidy.sh [DIR]        (default build-tidy; TIDY_FILES="a.cc b.cc" for some files only)
#
# Prints every finding and ends with "tidy: N files, N findings"; exits non-zero on any finding
# (every check is an error: WarningsAsErrors in .clang-tidy).
set -uo pipefail
cd "$(dirname "$0")/.."

dir=${1:-build-tidy}
log=$(mktemp /tmp/tether-tidy.XXXXXX)
trap 'rm -f "$log"' EXIT
env -u CXXFLAGS CXX=clang++ cmake -S . -B "$dir" -DCMAKE_DISABLE_PRECOMPILE_HEADERS=ON \
  -DTETHER_TESTS=OFF >/dev/null || exit 1
# shellcheck disable=SC2086
files=${TIDY_FILES:-$(git ls-files 'common/*.cc' 'plugins/*.cc')}
# One clang-tidy per file, as many at once as there are cores; a file's findings stay together.
printf '%s\n' $files | xargs -P "$(nproc)" -I{} sh -c 'out=$(clang-tidy -p "$1" --quiet "$2" 2>&1) || printf "%s\n" "$out"' _ "$dir" {} >"$log"
grep -vE '^[0-9]+ (warning|error)s? generated\.$|^Suppressed|^Use -header-filter|^Error while processing' "$log"
n_files=$(printf '%s\n' $files | wc -l)
findings=$(grep -cE ': (warning|error): .*\[[a-z0-9.,-]+\]$' "$log")
echo "tidy: $n_files files, $findings findings"
[ "$findings" -eq 0 ] && ! grep -q 'Error while processing' "$log"
