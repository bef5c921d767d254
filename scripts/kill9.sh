#!/usr/bin/env bash
# The kill -9 campaign at full size (issue #15): tests/integration/test_kill9.py with 500 timed
# SIGKILLs (make test runs 150) and every crash point, printing the figures of
# docs/reliability.md. Usage: scripts/kill9.sh [build-dir] [trials] [seed]
set -euo pipefail
cd "$(dirname "$0")/.."
bdir=${1:-build}
export TETHER_BIN_DIR=$PWD/$bdir/bin TETHER_KILL9_TRIALS=${2:-500}
[ -n "${3:-}" ] && export TETHER_KILL9_SEED=$3
exec /usr/bin/python3 -m pytest -q -s -p no:cacheprovider tests/integration/test_kill9.py
