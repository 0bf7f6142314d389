# cmake -DDIR=include/ferry -P check_public_includes.cmake
# Fails when a public header includes, in quotes, anything outside ferry/: an installed ferry has
# only include/ferry/, so such a header would not compile for a consumer (and would leak an
# internal type into the API).
file(GLOB _headers "${DIR}/*.h" "${DIR}/*.h.in")
if(NOT _headers)
  message(FATAL_ERROR "no public headers found in '${DIR}'")
endif()
set(_bad "")
foreach(h IN LISTS _headers)
  file(STRINGS ${h} _lines)
  set(_n 0)
  foreach(line IN LISTS _lines)
    math(EXPR _n "${_n} + 1")
    if(line MATCHES "^[ \t]*#[ \t]*include[ \t]*\"([^\"]*)\"" AND NOT CMAKE_MATCH_1 MATCHES "^ferry/")
      string(APPEND _bad "\n  ${h}:${_n}: ${line}")
    endif()
  endforeach()
endforeach()
if(_bad)
  message(FATAL_ERROR "public headers include internal ones:${_bad}")
endif()
list(LENGTH _headers _count)
message(STATUS "${_count} public headers include only ferry/ headers in quotes")
