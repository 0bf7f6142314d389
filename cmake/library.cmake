# libferry: one library, shared (libferry.so.0) and static (libferry.a), made of the layers'
# OBJECT libraries (ferry_codecs, ferry_transports, ferry_vmstate, ferry_engine), which are
# compiled once, position-independent, with hidden visibility. Only FERRY_API declarations of
# include/ferry/ leave the shared library (cmake/libferry.map).
#
# Inside this build, tests, tools and benchmarks link ferry_internal: the static library plus
# the repository root as include directory, so they may use internal headers.

set(FERRY_OBJECT_LIBS ferry_codecs ferry_transports ferry_vmstate ferry_engine)
set(FERRY_PUBLIC_INCLUDES
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
    $<BUILD_INTERFACE:${PROJECT_BINARY_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
# What libferry's objects need at link time.
set(FERRY_LINK_DEPS PkgConfig::LZ4 Threads::Threads OpenSSL::SSL OpenSSL::Crypto)
if(FERRY_HAVE_URING)
  list(APPEND FERRY_LINK_DEPS PkgConfig::LIBURING)
endif()
if(FERRY_HAVE_RDMA)
  list(APPEND FERRY_LINK_DEPS PkgConfig::LIBIBVERBS PkgConfig::LIBRDMACM)
endif()

foreach(lib IN LISTS FERRY_OBJECT_LIBS)
  set_target_properties(${lib} PROPERTIES
    CXX_VISIBILITY_PRESET hidden C_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
  target_compile_definitions(${lib} PRIVATE FERRY_BUILDING_LIBRARY=1)
  target_include_directories(${lib} PUBLIC ${PROJECT_SOURCE_DIR} ${FERRY_PUBLIC_INCLUDES})
endforeach()

set(_ferry_objects "")
foreach(lib IN LISTS FERRY_OBJECT_LIBS)
  list(APPEND _ferry_objects $<TARGET_OBJECTS:${lib}>)
endforeach()

add_library(ferry_shared SHARED ${_ferry_objects})
set_target_properties(ferry_shared PROPERTIES
  OUTPUT_NAME ferry VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR}
  EXPORT_NAME ferry LINK_DEPENDS ${PROJECT_SOURCE_DIR}/cmake/libferry.map)
target_link_options(ferry_shared PRIVATE
  -Wl,--version-script=${PROJECT_SOURCE_DIR}/cmake/libferry.map -Wl,--no-undefined
  -Wl,--exclude-libs,ALL)
target_link_libraries(ferry_shared PRIVATE ${FERRY_LINK_DEPS})
target_include_directories(ferry_shared PUBLIC ${FERRY_PUBLIC_INCLUDES})
target_compile_features(ferry_shared PUBLIC cxx_std_20)

add_library(ferry_static STATIC ${_ferry_objects})
set_target_properties(ferry_static PROPERTIES OUTPUT_NAME ferry EXPORT_NAME ferry_static)
target_link_libraries(ferry_static PUBLIC ${FERRY_LINK_DEPS})
target_include_directories(ferry_static PUBLIC ${FERRY_PUBLIC_INCLUDES})
target_compile_features(ferry_static PUBLIC cxx_std_20)

add_library(ferry::ferry ALIAS ferry_shared)
add_library(ferry::ferry_static ALIAS ferry_static)

add_library(ferry_internal INTERFACE)
target_link_libraries(ferry_internal INTERFACE ferry_static nlohmann_json::nlohmann_json)
target_include_directories(ferry_internal INTERFACE ${PROJECT_SOURCE_DIR})
# Which optional backends are in, for tests and benchmarks that reach into them.
target_compile_definitions(ferry_internal INTERFACE
  $<$<BOOL:${FERRY_HAVE_URING}>:FERRY_HAVE_URING=1> $<$<BOOL:${FERRY_HAVE_RDMA}>:FERRY_HAVE_RDMA=1>)
