#!/usr/bin/env bash
# attn on 64-bit ARM, from an x86-64 Debian 12 machine: cross-compiles with
# Debian's g++-aarch64-linux-gnu against the arm64 multiarch packages of
# Highway, oneTBB and GoogleTest, and runs the test suite under qemu-user
# (CMake's crosscompiling emulator: see cmake/toolchains/aarch64-linux-gnu.cmake).
# scripts/test.sh's aarch64 leg; scripts/install_deps.sh --aarch64 installs
# what it needs.
#
#   scripts/ci/aarch64.sh [ctest arguments]
#
# Environment:
#   ATTN_AARCH64_BUILD_DIR  build directory (default <repo>/build-aarch64)
#   ATTN_AARCH64_LOG        also write ctest's output to this file
#   ATTN_AARCH64_SVE        1 (the default): compile Highway's SVE targets
#                           (SVE, SVE2, SVE_256, SVE2_128) beside NEON; 0:
#                           NEON only, a quicker build and run.
#   ATTN_AARCH64_VL         with SVE: the SVE vector lengths, in bits, to run
#                           the kernel tests at again (default "256").
#   ATTN_AARCH64_EXCLUDE    ctest -E regex of tests left out (default below).
#
# Which targets run: Highway compiles NEON (aarch64's baseline, so there is no
# scalar target) and the SVE targets, and each kernel test runs on every
# compiled target the CPU has. qemu-aarch64 7.2 emulates SVE and SVE2 with a
# vector length chosen per process (-cpu max,sve-default-vector-length=BYTES).
# ctest runs the suite at 128 bits (NEON, SVE, SVE2 and SVE2_128; see
# QEMU_CPU below), and the kernel tests run again at 256 bits (SVE_256 too).
# qemu's default, 512 bits, is about 7 times slower to emulate.
#
# SVE: Highway's SVE vectors are sizeless types, which C++ allows in no
# array, so the register tiles of flash attention and of the float32 GEMM
# (arrays of vectors on x86 and NEON) have their own code for these targets
# under #if HWY_HAVE_SCALABLE, with the accumulators as named variables
# (simd/flash_tiles-inl.h, simd/matmul_tile-inl.h, simd/matmul-inl.h; the
# GEMMs on the first 128 bits of each vector, as simd/matmul_int8_layout-inl.h).
#
# Left out (ATTN_AARCH64_EXCLUDE): install_and_consume, which configures a
# separate project with the compiler alone (no toolchain file, no emulator) and
# runs what it builds directly on the host, which cannot execute aarch64
# binaries; the x86-64 legs run it. The slowest tests under qemu are
# ParallelMatMulTest.SameBitsForAnyThreadCount (100 to 500 s, with the
# machine's load) and KVCache.GPT2ShapeDecodeOneTokenAfter1023 (50 to 315 s); if the
# leg ever needs to be shorter, exclude them here first: the kernel tests
# cover their kernels on every target.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${ATTN_AARCH64_BUILD_DIR:-$root/build-aarch64}
log=${ATTN_AARCH64_LOG:-/dev/null}
sve=${ATTN_AARCH64_SVE:-1}
lengths=${ATTN_AARCH64_VL:-256}
exclude=${ATTN_AARCH64_EXCLUDE:-'^install_and_consume$'}
jobs=$(nproc)

extra_flags=""
if [[ "$sve" != 1 ]]; then
  # HWY_SVE2_128 | HWY_SVE_256 | HWY_SVE2 | HWY_SVE (bits 24-27 of
  # hwy/detect_targets.h), as a number: no shell quoting needed.
  extra_flags="-DHWY_DISABLED_TARGETS=0xF000000"
  echo "aarch64: SVE targets disabled (ATTN_AARCH64_SVE=$sve): NEON only"
fi

# qemu emulates SVE at 128 bits about 7 times faster than at its default 512
# (the flash kernel tests on SVE2: 10 s against 88 s), so the suite runs at
# 128 bits: the kernel tests on NEON, SVE, SVE2 and SVE2_128, the modules on
# SVE2_128. The variable is set for the build too, where gtest_discover_tests
# lists the tests by running the binaries. QEMU_CPU from the caller wins.
export QEMU_CPU=${QEMU_CPU:-max,sve-default-vector-length=16}

cmake -S "$root" -B "$build" \
  -DCMAKE_TOOLCHAIN_FILE="$root/cmake/toolchains/aarch64-linux-gnu.cmake" \
  -DCMAKE_BUILD_TYPE=Release -DATTN_WERROR=ON -DCMAKE_CXX_FLAGS="$extra_flags" \
  -DATTN_BUILD_BENCHMARKS=OFF -DATTN_BUILD_EXAMPLES=OFF || exit 1
cmake --build "$build" -j "$jobs" || exit 1

cd "$build" || exit 1
emulator=$(sed -n 's/^CMAKE_CROSSCOMPILING_EMULATOR:[A-Z]*=//p' CMakeCache.txt | tr ';' ' ')

# Which targets the tests saw (the kernel tests' names end in /TARGET).
echo "-- aarch64 targets (tests per target): $(ctest -N | grep -oE '/[A-Z0-9_]+ ' |
  sort | uniq -c | awk '{printf "%s %s; ", substr($2, 2), $1}')"

status=0
echo "-- aarch64: the suite under $emulator (QEMU_CPU=$QEMU_CPU)"
ctest --output-on-failure -j "$jobs" --timeout 1500 -E "$exclude" "$@" 2>&1 | tee "$log"
[[ ${PIPESTATUS[0]} -eq 0 ]] || status=1

if [[ "$sve" == 1 ]]; then
  for vl in $lengths; do
    echo
    echo "-- aarch64: kernel tests at SVE vector length $vl bits"
    # The binary picks its targets at run time: SVE_256 and SVE2_128 only
    # appear at their length.
    QEMU_CPU="max,sve-default-vector-length=$((vl / 8))"
    echo "-- targets (tests per target): $($emulator tests/attn_simd_tests --gtest_list_tests |
      grep -oE '/[A-Z0-9_]+ ' | sort | uniq -c | awk '{printf "%s %s; ", substr($2, 2), $1}')"
    # Only the targets whose lanes depend on this length's run-time dispatch
    # (SVE_256 at 256 bits): the others ran at 128 bits above, and rerunning
    # them here would double the leg's time under emulation.
    $emulator tests/attn_simd_tests --gtest_brief=1 --gtest_filter="*/SVE_$vl:*/SVE_${vl}_*" ||
      status=1
  done
fi
exit $status
