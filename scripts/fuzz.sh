#!/usr/bin/env bash
# Fuzzes the safetensors reader with libFuzzer (clang-14, ASan + UBSan):
#   scripts/fuzz.sh [seconds per harness (default 60)] [harness...]
# Harnesses (tests/fuzz/): load_safetensors (a whole file) and
# safetensors_header (the JSON header alone); default both. Each starts from
# its seed corpus (tests/fuzz/seeds/<harness>/, plus tests/data/ for the
# loader) and the regression corpus (tests/fuzz/corpus/<harness>/); inputs
# that reach new code are then merged (minimized) into the regression corpus,
# which the unit tests replay in every build. Fails on any crash, leak,
# sanitizer report, timeout or out-of-memory; the input that caused it is
# kept under $ATTN_FUZZ_BUILD_DIR/fuzz-artifacts/.
# ATTN_FUZZ_RUNS=N runs N inputs per harness instead of a time limit.
# Needs clang-14 and libclang-rt-14-dev (Debian).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${ATTN_FUZZ_BUILD_DIR:-$root/build-fuzz}
seconds=${1:-60}
shift || true
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(load_safetensors safetensors_header)

CC=clang-14 CXX=clang++-14 cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release \
  -DATTN_WERROR=ON -DATTN_BUILD_FUZZERS=ON -DATTN_BUILD_TESTS=OFF \
  -DATTN_BUILD_BENCHMARKS=OFF -DATTN_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target "${harnesses[@]/#/fuzz_}"

limit=(-max_total_time="$seconds")
[ -z "${ATTN_FUZZ_RUNS:-}" ] || limit=(-runs="$ATTN_FUZZ_RUNS")
status=0
for harness in "${harnesses[@]}"; do
  fuzzer=$build/tests/fuzz/fuzz_$harness
  corpus=$root/tests/fuzz/corpus/$harness
  seeds=("$root/tests/fuzz/seeds/$harness")
  max_len=4096
  if [ "$harness" = load_safetensors ]; then
    seeds+=("$root/tests/data")
    max_len=16384
  fi
  work=$build/fuzz-work/$harness
  artifacts=$build/fuzz-artifacts/$harness
  rm -rf "$work"
  mkdir -p "$work" "$artifacts" "$corpus"
  flags=(-rss_limit_mb=2048 -timeout=10 -max_len="$max_len" -artifact_prefix="$artifacts/"
    -dict="$root/tests/fuzz/safetensors.dict")
  echo "== $harness: fuzzing (${limit[*]})"
  log=$build/fuzz-$harness.log
  if ! "$fuzzer" "${flags[@]}" "${limit[@]}" -print_final_stats=1 "$work" "$corpus" "${seeds[@]}" \
      >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "== $harness: FAILED; input kept in $artifacts" >&2
    status=1
    continue
  fi
  grep -E '^Done [0-9]+ runs|stat::number_of_executed_units' "$log" || true
  # Merge what was found into the regression corpus, minimized against the
  # corpus and the seeds: only inputs that reach code neither reaches.
  merged=$build/fuzz-merge/$harness
  rm -rf "$merged"
  mkdir -p "$merged"
  find "$corpus" "${seeds[@]}" -maxdepth 1 -type f -exec cp {} "$merged"/ \;
  before=$(ls "$merged" | sort)
  "$fuzzer" -merge=1 -max_len="$max_len" "$merged" "$work" >"$build/fuzz-merge-$harness.log" 2>&1
  added=$(comm -13 <(echo "$before") <(ls "$merged" | sort))
  for f in $added; do cp "$merged/$f" "$corpus/"; done
  echo "== $harness: $(echo "$added" | grep -c . || true) new input(s) in tests/fuzz/corpus/$harness"
done
exit $status
