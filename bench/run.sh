#!/usr/bin/env bash
# Runs the attention benchmarks and writes the report (bench/README.md tells how
# to read it). ./scripts/bench.sh builds attn and then runs this script.
#
#   bench/run.sh <build dir> [--quick] [--with-gemm] [attn_attention_bench arguments]
#
# 1. attn_attention_bench: medians of ATTN_BENCH_REPETITIONS (5) repetitions of
#    at least ATTN_BENCH_MIN_TIME (0.3) s, the repetitions of all benchmarks in
#    a random order -> attn.json. Besides the modules (attn/<variant>/<config>),
#    it has the attention core alone (attn/core_*), KV-cache decoding
#    (attn/decode_1_after_1023, attn/decode_int8_1_after_1023,
#    attn/full_forward_1024), grouped-query attention on a Llama 3.2 1B layer
#    (attn/gqa_prefill, attn/gqa_decode_1_after_4095, attn/gqa_core; those at
#    T = 4096 run min(3, repetitions) repetitions, ATTN_BENCH_BIG_REPETITIONS)
#    and the machine's FMA peak and read bandwidth (machine/...). With
#    ATTN_BENCH_REFERENCE_DIR set to the results folder it writes the GQA
#    outputs the second peer checks (gqa_reference_*.safetensors).
# 2. the PyTorch peer (bench/peers/torch_mha.py), when /usr/bin/python3 can
#    import torch and ATTN_BENCH_SKIP_TORCH is not 1 -> torch.json, plus two
#    short runs that show the peer's sensitivity to its environment
#    (torch_default_core.json, torch_omp_active.json; not with --quick).
#    Then the grouped-query attention peer (bench/peers/torch_gqa.py), which
#    checks its outputs against attn's before timing -> torch_gqa.json.
# 3. the modern peers, when <build dir>/peers-venv exists (scripts/install_deps.sh
#    --with-peers makes it): attn_peer_reference writes the weights, inputs and
#    attn's outputs to <build dir>/peer-references/, bench/peers/check_peers.sh runs
#    each peer on toy shapes (peers_check_console.txt), then bench/peers/torch2_peer.py,
#    onnxruntime_peer.py and openvino_peer.py check against them and time
#    themselves -> torch2.json, onnxruntime.json, openvino.json.
#    ATTN_BENCH_SKIP_MODERN_PEERS=1 skips them.
# 4. --with-gemm: attn_gemm_bench and attn_gemm_int8_bench, when they were
#    built -> gemm.json, gemm.md, gemm_int8.json, gemm_int8.md.
# 5. bench/report.py -> report.md and time_vs_T.svg; prints the headline table.
#
# --quick: the headline configuration (B8_T1024: attn's wrapper, fused
# module and int8 fused module, the PyTorch book module, its quantize_dynamic
# qint8 copy and nn.MultiheadAttention, 1 and 2 threads) and the GQA prefill
# (attn/gqa_prefill/llama32_1b_T1024 with machine/fma_peak, the book's GQA
# module in PyTorch), with every modern peer on both, 3 repetitions, into
# bench-results-quick/: a few minutes.
# A --benchmark_filter=REGEX argument is applied to the peer's names too
# (torch/<variant>/<config>/threads:<n>), e.g.
#   bench/run.sh build --benchmark_filter='B8_T1024'
#   ATTN_BENCH_SKIP_TORCH=1 bench/run.sh build \
#     --benchmark_filter='fused|core_|decode|full_forward|peak|bandwidth'
#
# Results go to <build dir>/bench-results/ (bench-results-quick/ with --quick).
# Each program's raw output goes to <name>_console.txt there; the terminal
# shows one progress line per program (bench/progress.py) and the headline.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ $# -lt 1 ]]; then
  echo "usage: $0 <build dir> [--quick] [--with-gemm] [attn_attention_bench arguments]" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
shift
with_gemm=0
quick=0
filter=""
repetitions=${ATTN_BENCH_REPETITIONS:-}
args=()
for arg in "$@"; do
  case $arg in
    --with-gemm) with_gemm=1 ;;
    --quick) quick=1 ;;
    --benchmark_filter=*) filter=${arg#--benchmark_filter=}; args+=("$arg") ;;
    --benchmark_repetitions=*) repetitions=${arg#--benchmark_repetitions=} ;;
    *) args+=("$arg") ;;
  esac
done

python=/usr/bin/python3
bench=$build/bench/attn_attention_bench
if [[ ! -x $bench ]]; then
  echo "$bench not found: cmake --build $build --target attn_attention_bench" >&2
  exit 1
fi

out=$build/bench-results
peer_args=()
gqa_peer_args=()
if [[ $quick == 1 ]]; then
  out=$build/bench-results-quick
  repetitions=${repetitions:-3}
  peer_args=(--repetitions "$repetitions" --big-repetitions "$repetitions")
  gqa_peer_args=(--repetitions "$repetitions")
  if [[ -z $filter ]]; then
    quick_attn='attn/(wrapper|fused|fused_int8)/B8_T1024/|attn/gqa_prefill/llama32_1b_T1024/'
    args+=("--benchmark_filter=^($quick_attn|machine/fma_peak/)")
    peer_args+=(--filter '^torch/(book_mha|book_mha_qint8|nn_mha)/B8_T1024/')
    gqa_peer_args+=(--filter '^torch/gqa_(book|sdpa)/llama32_1b_T1024/')
  fi
fi
repetitions=${repetitions:-5}
# The benchmarks of about a second per call (GQA at T = 4096): fewer repetitions.
big_repetitions=$((repetitions < 3 ? repetitions : 3))
if [[ -n $filter ]]; then
  peer_args+=(--filter "$filter")
  gqa_peer_args+=(--filter "$filter")
fi
mkdir -p "$out"
rm -f "$out"/attn.json "$out"/attn_console.txt "$out"/torch*.json "$out"/torch*_console.txt \
  "$out"/onnxruntime*.json "$out"/onnxruntime*_console.txt "$out"/openvino*.json \
  "$out"/openvino*_console.txt "$out"/peer_reference_console.txt "$out"/peers_check_console.txt \
  "$out"/report.md "$out"/time_vs_T.svg "$out"/gqa_reference_*.safetensors
[[ $with_gemm == 1 ]] && rm -f "$out"/gemm.json "$out"/gemm_console.txt "$out"/gemm.md \
  "$out"/gemm_int8.json "$out"/gemm_int8_console.txt "$out"/gemm_int8.md

# run_logged KIND LABEL LOG TOTAL COMMAND...: runs COMMAND with its output in LOG
# and a progress display on the terminal; on failure, shows the end of LOG.
run_logged() {
  local kind=$1 label=$2 log=$3 total=$4
  shift 4
  set +e +o pipefail
  "$@" 2>&1 | "$python" "$root/bench/progress.py" "$kind" "$label" "$log" "$total"
  local status=("${PIPESTATUS[@]}")
  set -e -o pipefail
  if [[ ${status[0]} != 0 || ${status[1]} != 0 ]]; then
    echo "$label failed (exit status ${status[0]}); the end of $log:" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
}

# benchmarks BINARY ARGS...: how many benchmarks BINARY runs with ARGS.
benchmarks() {
  local binary=$1
  shift
  "$binary" --benchmark_list_tests=true "$@" 2>/dev/null | grep -c . || true
}

if [[ $quick == 1 ]]; then
  echo "Quick run: B8_T1024 and the GQA prefill, $repetitions repetitions. Results: $out/"
else
  echo "Results: $out/"
fi

# The CPU model, recorded in attn.json for the report (no ',' or '=' allowed).
cpu_model=$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | tr ',=' '  ' |
  sed 's/^ *//; s/ *$//' || true)
attn_args=(--benchmark_repetitions="$repetitions"
  --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true
  --benchmark_min_time="${ATTN_BENCH_MIN_TIME:-0.3}"
  --benchmark_out="$out/attn.json" --benchmark_out_format=json
  --benchmark_context=cpu_model="${cpu_model:-?}" "${args[@]}")
names=$("$bench" --benchmark_list_tests=true "${attn_args[@]}" 2>/dev/null || true)
count=$(grep -c . <<< "$names" || true)
big=$(grep -c '^attn/gqa_.*_T4096' <<< "$names" || true)
# --v=2: Google Benchmark logs every timed run to stderr; bench/progress.py counts them.
run_logged gbench attn_attention_bench "$out/attn_console.txt" \
  $(((count - big) * repetitions + big * big_repetitions)) \
  env ATTN_BENCH_BIG_REPETITIONS="$big_repetitions" ATTN_BENCH_REFERENCE_DIR="$out" \
  "$bench" --v=2 "${attn_args[@]}"

# The PyTorch peer. OPENBLAS_CORETYPE=SkylakeX: Debian's OpenBLAS 0.3.21 does
# not recognise newer Xeons and would fall back to its SSE3 (Prescott) kernels.
# OMP_WAIT_POLICY=PASSIVE: otherwise torch's OpenMP threads spin while
# OpenBLAS's own threads need the same cores (bench/README.md).
peer=$root/bench/peers/torch_mha.py
if [[ ${ATTN_BENCH_SKIP_TORCH:-0} != 1 ]] && "$python" -c 'import torch' 2>/dev/null; then
  run_logged peer "PyTorch peer" "$out/torch_console.txt" 0 \
    env OPENBLAS_CORETYPE=SkylakeX OMP_WAIT_POLICY=PASSIVE \
    "$python" "$peer" --progress --out "$out/torch.json" "${peer_args[@]}"
  if [[ $quick == 0 && ( -z $filter || B8_T1024 =~ $filter ) ]]; then
    run_logged peer "PyTorch peer without OPENBLAS_CORETYPE" \
      "$out/torch_default_core_console.txt" 0 \
      env -u OPENBLAS_CORETYPE OMP_WAIT_POLICY=PASSIVE "$python" "$peer" --progress \
      --prefix torch_default_core --filter '^torch_default_core/book_mha/B8_T1024/' \
      --big-repetitions 1 --out "$out/torch_default_core.json"
  fi
  if [[ $quick == 0 && ( -z $filter || B1_T256 =~ $filter ) ]]; then
    run_logged peer "PyTorch peer with OpenMP's default wait policy" \
      "$out/torch_omp_active_console.txt" 0 \
      env -u OMP_WAIT_POLICY OPENBLAS_CORETYPE=SkylakeX "$python" "$peer" --progress \
      --prefix torch_omp_active --filter '^torch_omp_active/book_mha/B1_T256/' --threads 2 \
      --repetitions 3 --out "$out/torch_omp_active.json"
  fi
  # Grouped-query attention: the book's module on the Llama 3.2 1B layer; its
  # outputs are checked against attn's (gqa_reference_*.safetensors) first.
  run_logged peer "PyTorch GQA peer" "$out/torch_gqa_console.txt" 0 \
    env OPENBLAS_CORETYPE=SkylakeX OMP_WAIT_POLICY=PASSIVE \
    "$python" "$root/bench/peers/torch_gqa.py" --progress --reference-dir "$out" \
    --out "$out/torch_gqa.json" "${gqa_peer_args[@]}"
else
  echo "PyTorch peer: skipped (no torch for $python, or ATTN_BENCH_SKIP_TORCH=1)"
fi

# The modern peers (bench/peers/*_peer.py: PyTorch 2, ONNX Runtime, OpenVINO) in
# the virtual environment scripts/install_deps.sh --with-peers makes. Each loads
# the weights and inputs attn_peer_reference writes, checks its output against
# attn's and stops with an error if it disagrees; a peer that fails is reported
# and left out, the others still run.
venv_python=$build/peers-venv/bin/python
reference_tool=$build/bench/attn_peer_reference
if [[ ${ATTN_BENCH_SKIP_MODERN_PEERS:-0} == 1 ]]; then
  echo "Modern peers: skipped (ATTN_BENCH_SKIP_MODERN_PEERS=1)"
elif [[ ! -x $venv_python ]]; then
  echo "Modern peers: skipped (no $build/peers-venv: scripts/install_deps.sh --with-peers makes it)"
elif [[ ! -x $reference_tool ]]; then
  echo "Modern peers: skipped ($reference_tool not built)"
else
  references=$build/peer-references
  rm -rf "$references"
  mkdir -p "$references"
  reference_args=()
  [[ $quick == 1 ]] && reference_args=(--quick)
  "$reference_tool" "$references" "${reference_args[@]}" > "$out/peer_reference_console.txt"
  # Each peer on toy shapes first (a few seconds): does it load, agree, print?
  if ! "$root/bench/peers/check_peers.sh" "$build" > "$out/peers_check_console.txt" 2>&1; then
    echo "The modern peers' toy check failed; see $out/peers_check_console.txt" >&2
  fi
  modern_args=(--reference-dir "$references" --repetitions "$repetitions"
    --big-repetitions "$big_repetitions")
  [[ -n $filter ]] && modern_args+=(--filter "$filter")
  for peer in torch2:"PyTorch 2" onnxruntime:"ONNX Runtime" openvino:OpenVINO; do
    name=${peer%%:*}
    set +e +o pipefail
    "$venv_python" "$root/bench/peers/${name}_peer.py" --progress --out "$out/$name.json" \
      "${modern_args[@]}" 2>&1 |
      "$python" "$root/bench/progress.py" peer "${peer#*:} peer" "$out/${name}_console.txt" 0
    status=("${PIPESTATUS[@]}")
    set -e -o pipefail
    if [[ ${status[0]} != 0 ]]; then
      rm -f "$out/$name.json"
      echo "${peer#*:} peer failed (exit status ${status[0]}); left out of the report." \
        "The end of $out/${name}_console.txt:" >&2
      tail -n 5 "$out/${name}_console.txt" >&2
    fi
  done
fi

if [[ $with_gemm == 1 ]]; then
  gemm=$build/bench/attn_gemm_bench
  if [[ -x $gemm ]]; then
    # Repetitions in random order; the min/max aggregates are the best
    # repetition of each (bench/gemm_bench.cc). bench/gemm_table.py makes the
    # table of GEMM throughput from gemm.json.
    gemm_args=(--benchmark_repetitions="$repetitions"
      --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true
      --benchmark_out="$out/gemm.json" --benchmark_out_format=json)
    count=$(benchmarks "$gemm" "${gemm_args[@]}")
    run_logged gbench attn_gemm_bench "$out/gemm_console.txt" $((count * repetitions)) \
      env OPENBLAS_CORETYPE=SkylakeX "$gemm" --v=2 "${gemm_args[@]}"
    "$python" "$root/bench/gemm_table.py" "$out/gemm.json" > "$out/gemm.md" ||
      echo "gemm_table.py failed; the raw results are in $out/gemm.json" >&2
  else
    echo "attn_gemm_bench: not built; skipped"
  fi
  gemm_int8=$build/bench/attn_gemm_int8_bench
  if [[ -x $gemm_int8 ]]; then
    # The int8 GEMM against attn's float32 GEMM and oneDNN's integer GEMM
    # (bench/gemm_int8_bench.cc); table by bench/gemm_int8_table.py.
    int8_args=(--benchmark_repetitions="$repetitions"
      --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true
      --benchmark_out="$out/gemm_int8.json" --benchmark_out_format=json)
    count=$(benchmarks "$gemm_int8" "${int8_args[@]}")
    run_logged gbench attn_gemm_int8_bench "$out/gemm_int8_console.txt" \
      $((count * repetitions)) "$gemm_int8" --v=2 "${int8_args[@]}"
    "$python" "$root/bench/gemm_int8_table.py" "$out/gemm_int8.json" > "$out/gemm_int8.md" ||
      echo "gemm_int8_table.py failed; the raw results are in $out/gemm_int8.json" >&2
  else
    echo "attn_gemm_int8_bench: not built; skipped"
  fi
fi

echo
"$python" "$root/bench/report.py" "$out"
