# `cmake --install`: the headers, the libraries (libosmem and libosmem-malloc), a CMake package
# (find_package(osmem) -> osmem::osmem, osmem::osmem_static), osmem.pc for
# pkg-config and the `osmem` command. Layout from GNUInstallDirs, so
# distributions can move lib/ and include/.
include(CMakePackageConfigHelpers)

set(OSMEM_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/osmem)

install(TARGETS osmem osmem_static EXPORT osmemTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY include/osmem DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# libosmem-malloc (osmem::osmem_malloc, osmem::osmem_malloc_static): not in
# sanitizer builds, whose runtimes own malloc.
if(TARGET osmem_malloc)
  install(TARGETS osmem_malloc osmem_malloc_static EXPORT osmemTargets
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
endif()

# Every target in the osmemTargets export set reaches consumers through
# this file.
install(EXPORT osmemTargets NAMESPACE osmem:: DESTINATION ${OSMEM_INSTALL_CMAKEDIR})
configure_package_config_file(cmake/osmemConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/osmemConfig.cmake
  INSTALL_DESTINATION ${OSMEM_INSTALL_CMAKEDIR})
# 0.x releases make no ABI promise across minor versions.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/osmemConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/osmemConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/osmemConfigVersion.cmake
  DESTINATION ${OSMEM_INSTALL_CMAKEDIR})

# osmem.pc locates the prefix from its own directory (${pcfiledir}), so the
# same file works under any `cmake --install --prefix`.
set(OSMEM_PC_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
foreach(dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${dir}}")
    set(OSMEM_PC_${dir} "${CMAKE_INSTALL_${dir}}")
  else()
    set(OSMEM_PC_${dir} "\${prefix}/${CMAKE_INSTALL_${dir}}")
  endif()
endforeach()
if(IS_ABSOLUTE "${OSMEM_PC_DIR}")
  set(OSMEM_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH OSMEM_PC_UP "/root/${OSMEM_PC_DIR}" "/root")
  string(REGEX REPLACE "/$" "" OSMEM_PC_UP "${OSMEM_PC_UP}")
  set(OSMEM_PC_PREFIX "\${pcfiledir}/${OSMEM_PC_UP}")
endif()
configure_file(cmake/osmem.pc.in ${CMAKE_CURRENT_BINARY_DIR}/osmem.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/osmem.pc DESTINATION ${OSMEM_PC_DIR})

# The `osmem` command (Python 3; `osmem heapmap` needs matplotlib).
install(PROGRAMS tools/osmem DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY tools/osmemtool DESTINATION ${CMAKE_INSTALL_DATADIR}/osmem/python
  FILES_MATCHING PATTERN "*.py")
