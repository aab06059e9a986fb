# `cmake --install`: headers, libraries, CMake package (find_package(flexllm) -> flexllm::flexllm,
# flexllm::mock) and pkg-config file.
include(CMakePackageConfigHelpers)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/flexllm ${PROJECT_SOURCE_DIR}/apps/mock/include/flexllm
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_BINARY_DIR}/generated/flexllm/version.hpp
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/flexllm)
install(TARGETS flexllm flexllm_mock EXPORT flexllmTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT flexllmTargets NAMESPACE flexllm:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/flexllm)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/flexllmConfig.cmake.in
  ${PROJECT_BINARY_DIR}/flexllmConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/flexllm)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/flexllmConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/flexllmConfig.cmake ${PROJECT_BINARY_DIR}/flexllmConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/flexllm)
# Relocatable: the prefix is found from the .pc file's own place (${pcfiledir}).
file(RELATIVE_PATH FLEXLLM_PC_TO_PREFIX "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
string(REGEX REPLACE "/$" "" FLEXLLM_PC_TO_PREFIX "${FLEXLLM_PC_TO_PREFIX}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/flexllm.pc.in ${PROJECT_BINARY_DIR}/flexllm.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/flexllm.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
