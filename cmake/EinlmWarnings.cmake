# EinlmWarnings.cmake — compile options for the project's own targets (tests, benchmarks, examples):
# -Wall -Wextra on both compilers, warnings as errors, and optionally -march=native.
add_library(einlm_project_options INTERFACE)
target_compile_options(einlm_project_options INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Werror>
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra,-Werror --Werror all-warnings>)
if(EINLM_NATIVE_ARCH)
  target_compile_options(einlm_project_options INTERFACE
    $<$<COMPILE_LANGUAGE:CXX>:-march=native> $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-march=native>)
endif()
target_link_libraries(einlm_project_options INTERFACE einlm::einlm)
