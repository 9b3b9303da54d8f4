#!/usr/bin/env bash
# The README's main command: installs what is missing (with the optional
# peers: OpenBLAS, oneDNN, PyTorch), builds attn and runs the benchmarks.
# Extra arguments go to the attention benchmark (e.g. --benchmark_filter=...).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${ATTN_BUILD_DIR:-$root/build}

"$root/scripts/install_deps.sh" --with-peers
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$(nproc)"
if [[ -x "$root/bench/run.sh" ]]; then
  exec "$root/bench/run.sh" "$build" "$@"
fi
for b in "$build"/bench/attn_*_bench; do
  echo "== $b"
  "$b" "$@"
done
