#!/usr/bin/env bash
# Runs the attention benchmarks and writes the report (bench/README.md).
#
#   bench/run.sh <build dir> [--with-gemm] [arguments for attn_attention_bench]
#
# 1. attn_attention_bench: medians of ATTN_BENCH_REPETITIONS (5) repetitions of
#    at least ATTN_BENCH_MIN_TIME (0.3) s, the repetitions of all benchmarks
#    in a random order -> <build>/bench-results/attn.json. Besides the modules
#    (attn/<variant>/<config>), it has the attention core alone
#    (attn/core_flash, attn/core_materialized), KV-cache decoding
#    (attn/decode_1_after_1023, attn/full_forward_1024) and the machine's FMA
#    peak and read bandwidth (machine/...), e.g.
#      ATTN_BENCH_SKIP_TORCH=1 bench/run.sh build \
#        --benchmark_filter='fused|core_|decode|full_forward|peak|bandwidth'
#    (the report's targets, flash vs materialized, core, decoding tables).
# 2. the PyTorch peer (bench/peers/torch_mha.py) when /usr/bin/python3 can
#    import torch and ATTN_BENCH_SKIP_TORCH is not 1 -> torch.json, plus two
#    short runs that show the peer's sensitivity to its environment
# 3. bench/report.py -> report.md (printed) and time_vs_T.svg
# --with-gemm also runs attn_gemm_bench when it was built (-> gemm.json).
# A --benchmark_filter=REGEX argument is applied to the peer's names too
# (torch/<variant>/<config>/threads:<n>).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ $# -lt 1 ]]; then
  echo "usage: $0 <build dir> [--with-gemm] [attn_attention_bench arguments]" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
shift
with_gemm=0
filter=""
args=()
for arg in "$@"; do
  case $arg in
    --with-gemm) with_gemm=1 ;;
    --benchmark_filter=*) filter=${arg#--benchmark_filter=}; args+=("$arg") ;;
    *) args+=("$arg") ;;
  esac
done

bench=$build/bench/attn_attention_bench
if [[ ! -x $bench ]]; then
  echo "$bench not found: cmake --build $build --target attn_attention_bench" >&2
  exit 1
fi
out=$build/bench-results
mkdir -p "$out"
rm -f "$out"/attn.json "$out"/torch*.json

echo "== attn_attention_bench"
"$bench" --benchmark_repetitions="${ATTN_BENCH_REPETITIONS:-5}" \
  --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true \
  --benchmark_min_time="${ATTN_BENCH_MIN_TIME:-0.3}" \
  --benchmark_out="$out/attn.json" --benchmark_out_format=json "${args[@]}"

# The PyTorch peer. OPENBLAS_CORETYPE=SkylakeX: Debian's OpenBLAS 0.3.21 does
# not recognise this CPU and would fall back to its SSE3 (Prescott) kernels.
# OMP_WAIT_POLICY=PASSIVE: otherwise torch's OpenMP threads spin while
# OpenBLAS's own threads need the same two cores (bench/README.md).
python=/usr/bin/python3
peer=$root/bench/peers/torch_mha.py
if [[ ${ATTN_BENCH_SKIP_TORCH:-0} != 1 ]] && "$python" -c 'import torch' 2>/dev/null; then
  peer_filter=()
  [[ -n $filter ]] && peer_filter=(--filter "$filter")
  echo "== PyTorch peer"
  OPENBLAS_CORETYPE=SkylakeX OMP_WAIT_POLICY=PASSIVE \
    "$python" "$peer" --out "$out/torch.json" "${peer_filter[@]}"
  if [[ -z $filter || B8_T1024 =~ $filter ]]; then
    echo "== PyTorch peer, book MHA B8_T1024 without OPENBLAS_CORETYPE"
    env -u OPENBLAS_CORETYPE OMP_WAIT_POLICY=PASSIVE "$python" "$peer" \
      --prefix torch_default_core --filter '^torch_default_core/book_mha/B8_T1024/' \
      --big-repetitions 1 --out "$out/torch_default_core.json"
  fi
  if [[ -z $filter || B1_T256 =~ $filter ]]; then
    echo "== PyTorch peer, book MHA B1_T256, 2 threads, OpenMP's default wait policy"
    env -u OMP_WAIT_POLICY OPENBLAS_CORETYPE=SkylakeX "$python" "$peer" \
      --prefix torch_omp_active --filter '^torch_omp_active/book_mha/B1_T256/' --threads 2 \
      --repetitions 3 --out "$out/torch_omp_active.json"
  fi
else
  echo "== PyTorch peer skipped (no torch for $python, or ATTN_BENCH_SKIP_TORCH=1)"
fi

if [[ $with_gemm == 1 ]]; then
  if [[ -x $build/bench/attn_gemm_bench ]]; then
    echo "== attn_gemm_bench"
    # Repetitions in random order; the min/max aggregates are the best
    # repetition of each (bench/gemm_bench.cc). bench/gemm_table.py makes the
    # table of the README's GEMM section from gemm.json.
    OPENBLAS_CORETYPE=SkylakeX "$build/bench/attn_gemm_bench" \
      --benchmark_repetitions="${ATTN_BENCH_REPETITIONS:-5}" \
      --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true \
      --benchmark_out="$out/gemm.json" --benchmark_out_format=json
    "${python:-/usr/bin/python3}" "$root/bench/gemm_table.py" "$out/gemm.json" | tee "$out/gemm.md" || true
  else
    echo "== attn_gemm_bench not built; skipped"
  fi
fi

echo "== report ($out/report.md)"
"$python" "$root/bench/report.py" "$out"
