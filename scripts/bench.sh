#!/usr/bin/env bash
# The main job: installs what is missing (with the optional peers: OpenBLAS,
# oneDNN, PyTorch 1.13; PyTorch 2, ONNX Runtime and OpenVINO from PyPI),
# builds the attention benchmark and runs bench/run.sh, which shows its
# progress, keeps the raw output in the results folder and ends with the
# headline table and the paths of the report and the chart.
#
#   ./scripts/bench.sh                 the full run (about 13 minutes on 2 cores)
#   ./scripts/bench.sh --quick         the headline configuration and the GQA prefill
#                                      with every peer (about 2 minutes)
#   ./scripts/bench.sh --with-gemm     also the GEMM kernels (float32 and int8) against
#                                      OpenBLAS and oneDNN
#
# Other arguments go to the attention benchmark (e.g. --benchmark_filter=...).
# ATTN_BUILD_DIR picks the build directory (default: build/); the results go to
# its bench-results/ (bench-results-quick/ with --quick). bench/README.md tells
# how to read them.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${ATTN_BUILD_DIR:-$root/build}
python=/usr/bin/python3

targets=(attn_attention_bench attn_peer_reference)
for arg in "$@"; do
  [[ $arg == --with-gemm ]] && targets+=(attn_gemm_bench attn_gemm_int8_bench)
done

"$root/scripts/install_deps.sh" --with-peers

# The build's output goes to a log; the terminal gets one progress line.
mkdir -p "$build"
log=$build/bench-build.log
: > "$log"
if ! cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >> "$log" 2>&1; then
  echo "cmake failed; the end of $log:" >&2
  tail -n 30 "$log" >&2
  exit 1
fi
set +e +o pipefail
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}" 2>&1 |
  "$python" "$root/bench/progress.py" cmake "building ${targets[*]}" "$log"
status=("${PIPESTATUS[@]}")
set -e -o pipefail
if [[ ${status[0]} != 0 ]]; then
  echo "the build failed; the end of $log:" >&2
  tail -n 30 "$log" >&2
  exit 1
fi

exec "$root/bench/run.sh" "$build" "$@"
