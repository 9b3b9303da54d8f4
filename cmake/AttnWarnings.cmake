# Warnings for attn's own targets: -Wall -Wextra, zero warnings expected.
# Set ATTN_WERROR=ON (CI does) to turn them into errors.
option(ATTN_WERROR "Treat warnings in attn's own code as errors" OFF)

function(attn_enable_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  if(ATTN_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

# Sanitizers for the whole build (attn, its tests, benchmarks and examples):
#   -DATTN_SANITIZE=address,undefined   AddressSanitizer + UBSan
#   -DATTN_SANITIZE=thread              ThreadSanitizer
# Any list -fsanitize= accepts works. Every report is fatal
# (-fno-sanitize-recover=all), and frames are kept for readable stacks. The
# flags go into CMAKE_CXX_FLAGS, so they reach the compile and link lines of
# every target and the install_and_consume test's consumer project, which is
# built with this build's flags (its make/pkg-config step reads CXXFLAGS from
# the environment: scripts/test.sh sets it for the sanitizer legs).
# scripts/test.sh's asan and tsan legs use this (with their run-time options);
# tests/sanitizers/ holds the TSan annotations of oneTBB and the suppressions.
set(ATTN_SANITIZE "" CACHE STRING
    "Build with -fsanitize=<list> (e.g. address,undefined or thread); empty for none")
if(ATTN_SANITIZE)
  set(ATTN_SANITIZE_FLAGS
      "-fsanitize=${ATTN_SANITIZE} -fno-sanitize-recover=all -fno-omit-frame-pointer")
  string(APPEND CMAKE_CXX_FLAGS " ${ATTN_SANITIZE_FLAGS}")
  string(APPEND CMAKE_EXE_LINKER_FLAGS " -fsanitize=${ATTN_SANITIZE}")
  string(APPEND CMAKE_SHARED_LINKER_FLAGS " -fsanitize=${ATTN_SANITIZE}")
  if(ATTN_SANITIZE MATCHES "thread")
    # oneTBB's headers then report their synchronization (task trees, waits)
    # through TBB's ITT interface, which tests/sanitizers/tsan_tbb.cc turns
    # into TSan's happens-before edges; nothing else changes.
    string(APPEND CMAKE_CXX_FLAGS " -DTBB_USE_PROFILING_TOOLS=2")
  endif()
  message(STATUS "attn: sanitizers ${ATTN_SANITIZE} (${ATTN_SANITIZE_FLAGS})")
endif()
