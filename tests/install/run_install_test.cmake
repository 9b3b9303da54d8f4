# Driver of the install_and_consume test (see CMakeLists.txt):
#   1. cmake --install BUILD_DIR --prefix PREFIX
#   2. configure and build CONSUMER_SOURCE_DIR in CONSUMER_BINARY_DIR against
#      PREFIX only (find_package(attn CONFIG REQUIRED))
#   3. run the consumer, which exits nonzero when attn misbehaves;
#   4. check that the installed headers are include/attn/*.h only;
#   5. build the same consumer with make and pkg-config (attn.pc), run it.
# Every step starts from scratch: PREFIX and CONSUMER_BINARY_DIR are removed.
cmake_minimum_required(VERSION 3.20)

foreach(var BUILD_DIR PREFIX CONSUMER_SOURCE_DIR CONSUMER_BINARY_DIR GENERATOR CXX_COMPILER)
  if(NOT ${var})
    message(FATAL_ERROR "run_install_test.cmake: -D ${var}=... is required")
  endif()
endforeach()

# Runs the command given as arguments, failing the test when it fails.
function(run_step name)
  message(STATUS "[install_and_consume] ${name}: ${ARGN}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "[install_and_consume] ${name} failed (${result})")
  endif()
endfunction()

file(REMOVE_RECURSE ${PREFIX} ${CONSUMER_BINARY_DIR})

# 1. Install.
set(config_args)
if(CONFIG)
  set(config_args --config ${CONFIG})
endif()
run_step(install ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${PREFIX} ${config_args})

# 2. Configure and build the consumer with this build's toolchain. The
# settings go through an initial-cache script (-C), which keeps lists and
# flags with spaces or quotes intact. The prefix comes first in
# CMAKE_PREFIX_PATH; the consumer checks that attn came from it.
string(REPLACE "|" ";" prefix_path "${PREFIX};${PREFIX_PATH}")
set(cache_entries
  CMAKE_CXX_COMPILER "${CXX_COMPILER}"
  CMAKE_CXX_FLAGS "${CXX_FLAGS}"
  CMAKE_EXE_LINKER_FLAGS "${EXE_LINKER_FLAGS}"
  CMAKE_MAKE_PROGRAM "${MAKE_PROGRAM}"
  CMAKE_BUILD_TYPE "${CONFIG}"
  # Highway and oneTBB where the library's own build found them.
  hwy_DIR "${hwy_DIR}"
  TBB_DIR "${TBB_DIR}"
  ATTN_EXPECTED_PREFIX "${PREFIX}")
set(init_cache "")
while(cache_entries)
  list(POP_FRONT cache_entries name value)
  if(NOT value STREQUAL "")
    string(APPEND init_cache "set(${name} [==[${value}]==] CACHE STRING \"\")\n")
  endif()
endwhile()
string(APPEND init_cache "set(CMAKE_PREFIX_PATH [==[${prefix_path}]==] CACHE STRING \"\")\n")
set(init_cache_file ${CONSUMER_BINARY_DIR}-init.cmake)
file(WRITE ${init_cache_file} "${init_cache}")

set(configure_args -C ${init_cache_file}
  -S ${CONSUMER_SOURCE_DIR} -B ${CONSUMER_BINARY_DIR} -G ${GENERATOR})
if(GENERATOR_PLATFORM)
  list(APPEND configure_args -A ${GENERATOR_PLATFORM})
endif()
if(GENERATOR_TOOLSET)
  list(APPEND configure_args -T ${GENERATOR_TOOLSET})
endif()
run_step(configure ${CMAKE_COMMAND} ${configure_args})
run_step(build ${CMAKE_COMMAND} --build ${CONSUMER_BINARY_DIR} ${config_args})

# 3. Run it (multi-config generators put it in a per-configuration folder).
set(consumer ${CONSUMER_BINARY_DIR}/consumer)
if(CONFIG AND EXISTS ${CONSUMER_BINARY_DIR}/${CONFIG}/consumer)
  set(consumer ${CONSUMER_BINARY_DIR}/${CONFIG}/consumer)
endif()
run_step(run ${consumer})

# 4. Only the public headers are installed, all under include/attn/.
file(GLOB_RECURSE installed_headers RELATIVE ${PREFIX}/include ${PREFIX}/include/*)
foreach(header ${installed_headers})
  if(NOT header MATCHES "^attn/[a-z_]+\\.h$")
    message(FATAL_ERROR "[install_and_consume] unexpected installed file include/${header}")
  endif()
endforeach()
if(NOT "attn/attn.h" IN_LIST installed_headers)
  message(FATAL_ERROR "[install_and_consume] include/attn/attn.h is not installed")
endif()

# 5. pkg-config and make, without CMake. The library directory is lib/ or
# lib64/ (GNUInstallDirs); both are searched.
find_program(MAKE_TOOL NAMES make gmake)
find_program(PKG_CONFIG_TOOL pkg-config)
if(NOT MAKE_TOOL OR NOT PKG_CONFIG_TOOL)
  message(FATAL_ERROR "[install_and_consume] make and pkg-config are needed for step 5")
endif()
file(GLOB pc_dirs ${PREFIX}/lib*/pkgconfig)
if(NOT pc_dirs)
  message(FATAL_ERROR "[install_and_consume] no attn.pc under ${PREFIX}/lib*/pkgconfig")
endif()
string(REPLACE ";" ":" pc_path "${pc_dirs}")
if(DEFINED ENV{PKG_CONFIG_PATH} AND NOT "$ENV{PKG_CONFIG_PATH}" STREQUAL "")
  string(APPEND pc_path ":$ENV{PKG_CONFIG_PATH}")
endif()
run_step(make ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${pc_path}
  ${MAKE_TOOL} -C ${CONSUMER_SOURCE_DIR} -B CXX=${CXX_COMPILER} PKG_CONFIG=${PKG_CONFIG_TOOL}
  OUT=${CONSUMER_BINARY_DIR}/consumer-make)
run_step(run-make ${CONSUMER_BINARY_DIR}/consumer-make)
