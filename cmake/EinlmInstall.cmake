# EinlmInstall.cmake — install rules: headers, the exported einlm::einlm target, and
# einlmConfig.cmake / einlmConfigVersion.cmake so that find_package(einlm CONFIG) works.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(DIRECTORY include/einlm DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS einlm EXPORT einlmTargets)
install(EXPORT einlmTargets NAMESPACE einlm:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/einlm)
configure_package_config_file(cmake/einlmConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/einlmConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/einlm)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/einlmConfigVersion.cmake
  COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES
  ${CMAKE_CURRENT_BINARY_DIR}/einlmConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/einlmConfigVersion.cmake
  cmake/EinlmDependencies.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/einlm)
