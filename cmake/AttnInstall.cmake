# `cmake --install` puts libattn.a, the public headers and a CMake package in
# the prefix, so that another project can do
#   find_package(attn CONFIG REQUIRED)
#   target_link_libraries(app PRIVATE attn::attn)
# and `#include <attn/attn.h>`.
#
# Header layout once installed:
#   include/attn/attn.h               the umbrella header
#   include/attn/{core,simd,parallel}/*.h
# Both include/ and include/attn/ are on attn::attn's include path, so the
# umbrella and the headers it pulls in resolve the same way as in the tree.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS attn EXPORT attnTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

install(FILES ${PROJECT_SOURCE_DIR}/include/attn/attn.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/attn)
foreach(dir core simd parallel)
  # Plain declarations only: per-target Highway code (-inl.h) stays private.
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${dir}/
    DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/attn/${dir}
    FILES_MATCHING PATTERN "*.h" PATTERN "*-inl.h" EXCLUDE
    # Internal to the library: not reachable from the umbrella header.
    PATTERN "attention_core.h" EXCLUDE PATTERN "input_checks.h" EXCLUDE
    PATTERN "json.h" EXCLUDE PATTERN "thread_scratch.h" EXCLUDE)
endforeach()

set(ATTN_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/attn)
install(EXPORT attnTargets NAMESPACE attn:: DESTINATION ${ATTN_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/attnConfig.cmake.in
  ${PROJECT_BINARY_DIR}/attnConfig.cmake INSTALL_DESTINATION ${ATTN_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/attnConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/attnConfig.cmake
  ${PROJECT_BINARY_DIR}/attnConfigVersion.cmake DESTINATION ${ATTN_CMAKE_DIR})
