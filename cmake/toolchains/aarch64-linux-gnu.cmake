# Cross-compiling attn for 64-bit ARM Linux on a Debian 12 x86-64 host:
#   cmake -S . -B build-aarch64 \
#     -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake
# Needs g++-aarch64-linux-gnu and qemu-user, and the arm64 multiarch
# development packages (dpkg --add-architecture arm64; apt-get install
# libhwy-dev:arm64 libtbb-dev:arm64 libgtest-dev:arm64), which put their
# libraries and CMake package files under /usr/lib/aarch64-linux-gnu.
# scripts/install_deps.sh --aarch64 installs all of it.
#
# Tests run under qemu-user: CMake's crosscompiling emulator prefixes every
# test command (and gtest_discover_tests' listing of the tests), so ctest
# works as on the host.
#
# The loader and C library the binaries run with: the arm64 multiarch
# packages bring libc6:arm64, whose loader is /lib/ld-linux-aarch64.so.1 on
# the host itself, so qemu needs no -L. It must not be given
# -L /usr/aarch64-linux-gnu then: that prefix holds the cross toolchain's C
# library (libc6-arm64-cross, a different build of glibc), and its loader
# would pair with libc6:arm64's libc.so.6, found outside the prefix beside
# libtbb; the two builds do not mix (the first pthread_create hangs). Without
# libc6:arm64 (no multiarch packages), the cross C library is the only one,
# and -L finds it.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

if(NOT DEFINED ATTN_QEMU_AARCH64)
  set(ATTN_QEMU_AARCH64 qemu-aarch64)
endif()
if(EXISTS /lib/ld-linux-aarch64.so.1)
  set(_attn_emulator ${ATTN_QEMU_AARCH64})
else()
  set(_attn_emulator ${ATTN_QEMU_AARCH64} -L /usr/aarch64-linux-gnu)
endif()
set(CMAKE_CROSSCOMPILING_EMULATOR ${_attn_emulator}
    CACHE STRING "Runs aarch64 test binaries on the host")
