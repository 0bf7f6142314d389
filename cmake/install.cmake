# cmake --install: public headers (include/ferry, version.h), libferry.so.0 + libferry.a, the
# CMake package (find_package(ferry CONFIG) -> ferry::ferry, ferry::ferry_static) and ferry.pc.
# Internal headers are never installed; public ones include only each other.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/ferry
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.h")
install(FILES ${PROJECT_BINARY_DIR}/include/ferry/version.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/ferry)

install(TARGETS ferry_shared ferry_static EXPORT ferryTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} NAMELINK_COMPONENT Development
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
set(_cmakedir ${CMAKE_INSTALL_LIBDIR}/cmake/ferry)
install(EXPORT ferryTargets NAMESPACE ferry:: DESTINATION ${_cmakedir})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/ferryConfig.cmake.in
  ${PROJECT_BINARY_DIR}/ferryConfig.cmake INSTALL_DESTINATION ${_cmakedir})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/ferryConfigVersion.cmake
  COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/ferryConfig.cmake ${PROJECT_BINARY_DIR}/ferryConfigVersion.cmake
        DESTINATION ${_cmakedir})

# ferry.pc: Libs for the shared library; Libs.private / Requires.private for `--static`.
set(FERRY_PC_REQUIRES_PRIVATE "liblz4 libssl libcrypto")
if(FERRY_HAVE_URING)
  string(APPEND FERRY_PC_REQUIRES_PRIVATE " liburing")
endif()
if(FERRY_HAVE_RDMA)
  string(APPEND FERRY_PC_REQUIRES_PRIVATE " libibverbs librdmacm")
endif()
# The path from lib/pkgconfig back to the prefix (e.g. "../.."), for ${pcfiledir} in ferry.pc.
file(RELATIVE_PATH FERRY_PC_PREFIX_FROM_PCDIR "/prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/prefix")
string(REGEX REPLACE "/$" "" FERRY_PC_PREFIX_FROM_PCDIR "${FERRY_PC_PREFIX_FROM_PCDIR}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/ferry.pc.in ${PROJECT_BINARY_DIR}/ferry.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/ferry.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
