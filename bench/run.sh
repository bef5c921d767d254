#!/usr/bin/env bash
# make bench: tether, the reference plugins and netavark side by side in one run (bench/bench.py).
# Usage: bench/run.sh BUILD_DIR [--quick | --long] [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "make bench needs root: it creates network namespaces, bridges, firewall state and perf traces" >&2
  exit 1
fi
exec /usr/bin/python3 bench/bench.py "$@"
