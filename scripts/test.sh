#!/usr/bin/env bash
# The README's test command, and what CI runs (.ci/run): installs what is
# missing (scripts/install_deps.sh), then builds and tests attn in legs:
#
#   release  Release build, warnings as errors, the whole suite (ctest).
#   asan     AddressSanitizer + UndefinedBehaviorSanitizer build (-O1, no
#            benchmarks or examples), the whole suite; any report fails.
#   tsan     ThreadSanitizer build of the library tests (attn_core_tests),
#            all of which run attn's loops on oneTBB's threads; oneTBB is
#            annotated for TSan (tests/sanitizers/README.md).
#   aarch64  Cross-compiled for 64-bit ARM (g++-aarch64-linux-gnu, arm64
#            multiarch packages), the suite (but install_and_consume, which
#            runs on the host) under qemu-user (scripts/ci/aarch64.sh).
#   fuzz     scripts/fuzz.sh (libFuzzer over the safetensors loader), when the
#            script exists, ATTN_FUZZ_SECONDS (default 60) per harness.
#
# Usage:
#   scripts/test.sh                   every leg (what CI runs)
#   scripts/test.sh --quick           the release leg only (a developer's loop;
#                                     also ATTN_TEST_QUICK=1)
#   scripts/test.sh --leg asan        one leg; repeat, or --leg asan,tsan
#   scripts/test.sh [--leg ...] [--] [ctest arguments]
#                                     e.g. scripts/test.sh --quick -R Golden;
#                                     ctest arguments go to every ctest leg.
#   ATTN_TEST_LEGS="release tsan"     the same as --leg, from the environment.
#
# Each leg builds in its own directory: build/ for release (ATTN_BUILD_DIR
# overrides it, as before), build-asan/, build-tsan/, build-aarch64/,
# build-fuzz/ (their prefix is ATTN_BUILD_PREFIX, default <repo>/build). Every leg runs even when
# one fails; the script prints a table of legs and times, and exits non-zero
# when any leg failed. On a 2-core machine the whole run took 30 minutes
# (scripts/ci/README.md has each leg's time).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
all_legs=(release asan tsan aarch64 fuzz)

legs=()
ctest_args=()
quick=${ATTN_TEST_QUICK:-0}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick=1 ;;
    --leg) shift; legs+=(${1//,/ }) ;;
    --leg=*) v=${1#--leg=}; legs+=(${v//,/ }) ;;
    -h | --help) sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --) shift; ctest_args+=("$@"); break ;;
    *) ctest_args+=("$1") ;;
  esac
  shift
done
if [[ ${#legs[@]} -eq 0 && -n "${ATTN_TEST_LEGS:-}" ]]; then
  legs=(${ATTN_TEST_LEGS//,/ })
fi
if [[ ${#legs[@]} -eq 0 ]]; then
  if [[ "$quick" == 1 ]]; then legs=(release); else legs=("${all_legs[@]}"); fi
fi
for leg in "${legs[@]}"; do
  [[ " ${all_legs[*]} " == *" $leg "* ]] || { echo "test.sh: unknown leg '$leg' (${all_legs[*]})" >&2; exit 2; }
done

jobs=$(nproc)
prefix=${ATTN_BUILD_PREFIX:-$root/build}
logdir=${ATTN_TEST_LOG_DIR:-$prefix-logs}
mkdir -p "$logdir"

# --- Dependencies ------------------------------------------------------------
dep_flags=()
for leg in "${legs[@]}"; do
  case "$leg" in
    asan | tsan) dep_flags+=(--sanitizers) ;;
    aarch64) dep_flags+=(--aarch64) ;;
    fuzz) [[ -f "$root/scripts/fuzz.sh" ]] && dep_flags+=(--fuzz) ;;
  esac
done
"$root/scripts/install_deps.sh" $(printf '%s\n' "${dep_flags[@]}" | sort -u) || exit 1

# --- Helpers -----------------------------------------------------------------
# ctest with its output in a log, so that the summary can count the tests.
run_ctest() {
  local build=$1 log=$2
  shift 2
  (cd "$build" && ctest --output-on-failure -j "$jobs" "$@") 2>&1 | tee "$log"
  return "${PIPESTATUS[0]}"
}

# release: as the README's test command always did.
leg_release() {
  local build=${ATTN_BUILD_DIR:-$root/build}
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DATTN_WERROR=ON &&
    cmake --build "$build" -j "$jobs" &&
    run_ctest "$build" "$logdir/release.ctest.log" "${ctest_args[@]}"
}

# asan: -O1 keeps the sanitizers' stacks exact and builds fastest; NDEBUG is
# left out, so that attn's assert()s run too. The suite is the whole one.
leg_asan() {
  local build=$prefix-asan
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" -DATTN_SANITIZE=address,undefined \
    -DATTN_BUILD_BENCHMARKS=OFF -DATTN_BUILD_EXAMPLES=OFF &&
    cmake --build "$build" -j "$jobs" || return 1
  # install_and_consume's make/pkg-config step takes its flags from CXXFLAGS:
  # a consumer of the instrumented libattn.a links the sanitizers' run-times.
  # detect_leaks: LeakSanitizer is on by default with ASan; said for clarity.
  CXXFLAGS="-O1 -fsanitize=address,undefined" \
    ASAN_OPTIONS="detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1:abort_on_error=0:halt_on_error=1" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    run_ctest "$build" "$logdir/asan.ctest.log" "${ctest_args[@]}"
}

# tsan: the library tests (attn_core_tests: every module runs its loops on
# oneTBB's threads, and the Concurrency/UserArena/... tests call attn from
# several threads of their own), all of them. Not the kernel tests
# (attn_simd_tests: single-threaded kernels; the asan leg runs them), nor
# install_and_consume. Debian's oneTBB is not built with TSan:
# tests/sanitizers/tsan_tbb.cc tells TSan about TBB's synchronization (see
# tests/sanitizers/README.md; without it every parallel loop is reported,
# and the GPT-2-shape and parallel GEMM tests take over 5 minutes printing
# reports; with it, 7 s and 15 s), and tests/sanitizers/tsan.supp has the one
# narrow suppression that remains.
tsan_exclude='^(install_and_consume|attn_simd_tests_NOT_BUILT)$'
leg_tsan() {
  local build=$prefix-tsan
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" -DATTN_SANITIZE=thread \
    -DATTN_BUILD_BENCHMARKS=OFF -DATTN_BUILD_EXAMPLES=OFF &&
    cmake --build "$build" -j "$jobs" --target attn_core_tests || return 1
  local shim=$build/libattn_tsan_tbb.so
  g++ -O1 -g -shared -fPIC "$root/tests/sanitizers/tsan_tbb.cc" -o "$shim" -ldl ||
    return 1
  LD_PRELOAD=$shim INTEL_LIBITTNOTIFY64=$shim INTEL_ITTNOTIFY_GROUPS=sync \
    TSAN_OPTIONS="suppressions=$root/tests/sanitizers/tsan.supp:halt_on_error=1:second_deadlock_stack=1:history_size=7" \
    run_ctest "$build" "$logdir/tsan.ctest.log" -E "$tsan_exclude" "${ctest_args[@]}"
}

# aarch64: see cmake/toolchains/aarch64-linux-gnu.cmake and
# scripts/ci/aarch64.sh, which this leg runs.
leg_aarch64() {
  ATTN_AARCH64_BUILD_DIR=$prefix-aarch64 ATTN_AARCH64_LOG=$logdir/aarch64.ctest.log \
    "$root/scripts/ci/aarch64.sh" "${ctest_args[@]}"
}

# fuzz: the other half of the safetensors loader's tests; needs clang.
leg_fuzz() {
  if [[ ! -f "$root/scripts/fuzz.sh" ]]; then
    echo "fuzz: scripts/fuzz.sh is not there yet: skipped"
    return 0
  fi
  if ! command -v clang++-14 >/dev/null; then
    echo "fuzz: no clang++-14: skipped"
    return 0
  fi
  ATTN_FUZZ_BUILD_DIR=${ATTN_FUZZ_BUILD_DIR:-$prefix-fuzz} \
    bash "$root/scripts/fuzz.sh" "${ATTN_FUZZ_SECONDS:-60}"
}

# --- The legs ----------------------------------------------------------------
declare -A status seconds
start_all=$SECONDS
for leg in "${legs[@]}"; do
  echo
  echo "================================================================================"
  echo "== attn test leg: $leg   ($(date '+%H:%M:%S'))"
  echo "================================================================================"
  start=$SECONDS
  rm -f "$logdir/$leg.ctest.log"
  if ( "leg_$leg" ); then status[$leg]=passed; else status[$leg]=FAILED; fi
  seconds[$leg]=$((SECONDS - start))
  echo "== attn test leg: $leg ${status[$leg]} in $((seconds[$leg] / 60)) min $((seconds[$leg] % 60)) s"
done

# --- Summary -----------------------------------------------------------------
echo
echo "================================================================================"
echo "== attn tests: summary"
passed_tests=0
failed_tests=0
failed_legs=0
for leg in "${legs[@]}"; do
  counts=""
  log="$logdir/$leg.ctest.log"
  if [[ -f "$log" ]] && line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -1); then
    failed=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
    total=$(sed -E 's/.* failed out of ([0-9]+).*/\1/' <<<"$line")
    passed_tests=$((passed_tests + total - failed))
    failed_tests=$((failed_tests + failed))
    counts="$((total - failed))/$total tests"
  fi
  [[ ${status[$leg]} == passed ]] || failed_legs=$((failed_legs + 1))
  printf '==   %-8s %-7s %4d s  %s\n' "$leg" "${status[$leg]}" "${seconds[$leg]}" "$counts"
done
echo "==   total    $((SECONDS - start_all)) s"
echo "================================================================================"
# A leg that failed before its tests ran (a build error) counts as a failure.
[[ $failed_legs -gt 0 && $failed_tests -eq 0 ]] && failed_tests=$failed_legs
echo "tests: $passed_tests passed, $failed_tests failed"
[[ $failed_legs -eq 0 ]]
