# `cmake --install` puts libattn.a, the public headers, a CMake package and a
# pkg-config file in the prefix:
#   include/attn/*.h                   everything under include/attn/ (only)
#   lib/libattn.a
#   lib/cmake/attn/attnConfig.cmake    find_package(attn CONFIG) -> attn::attn
#   lib/pkgconfig/attn.pc              pkg-config --cflags --libs attn
# The internal headers of core/, simd/ and parallel/ are not under
# include/attn/, so they are never installed.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS attn EXPORT attnTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/attn DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

set(ATTN_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/attn)
install(EXPORT attnTargets NAMESPACE attn:: DESTINATION ${ATTN_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/attnConfig.cmake.in
  ${PROJECT_BINARY_DIR}/attnConfig.cmake INSTALL_DESTINATION ${ATTN_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/attnConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/attnConfig.cmake
  ${PROJECT_BINARY_DIR}/attnConfigVersion.cmake DESTINATION ${ATTN_CMAKE_DIR})

# pkg-config: libattn.a is static, so Highway and oneTBB are public
# requirements (a consumer links them too). The prefix is found from the .pc
# file's own place, so that `cmake --install --prefix` anywhere works.
file(RELATIVE_PATH ATTN_PC_TO_PREFIX
  /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
string(REGEX REPLACE "/$" "" ATTN_PC_TO_PREFIX "${ATTN_PC_TO_PREFIX}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/attn.pc.in ${PROJECT_BINARY_DIR}/attn.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/attn.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
