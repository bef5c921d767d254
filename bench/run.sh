#!/usr/bin/env bash
# make bench: tether against the reference plugins, side by side in one run (bench/bench.py).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "make bench needs root: it creates network namespaces, bridges and nftables tables" >&2
  exit 1
fi
exec /usr/bin/python3 bench/bench.py "$@"
