# EinlmDependencies.cmake — finds what einlm needs and stops with the Debian package to install
# when something is missing. Defines two imported interface targets that the einlm target links:
#   einlm::cuda_headers  CCCL (cuda/std, thrust, cub) and the CUDA toolkit headers (cuda_bf16.h, …);
#                        header-only use, host compilers included; nothing is linked
#   einlm::openmp        OpenMP for the CPU executor (host compiler flags, and -Xcompiler for nvcc)
# The same functions are used by einlmConfig.cmake in an install tree.

function(einlm_missing what debian_package hint)
  message(FATAL_ERROR "einlm: ${what} not found. On Debian/Ubuntu: apt-get install ${debian_package}. ${hint}")
endfunction()

macro(einlm_find_cuda_headers)
  if(NOT TARGET einlm::cuda_headers)
    find_package(CUDAToolkit QUIET)
    if(NOT CUDAToolkit_FOUND)
      einlm_missing("The CUDA toolkit (its headers: CCCL and cuda_bf16.h are needed even for CPU-only builds)"
                    "nvidia-cuda-toolkit" "Or install NVIDIA's cuda-toolkit and set CUDAToolkit_ROOT.")
    endif()
    find_package(CCCL CONFIG QUIET HINTS "${CUDAToolkit_LIBRARY_ROOT}/lib/cmake" "${CUDAToolkit_LIBRARY_ROOT}/lib64/cmake")
    if(NOT CCCL_FOUND)
      einlm_missing("CCCL (libcu++/Thrust/CUB, shipped with the CUDA toolkit)" "nvidia-cuda-toolkit"
                    "Set CCCL_DIR to the toolkit's lib64/cmake/cccl directory.")
    endif()
    add_library(einlm::cuda_headers INTERFACE IMPORTED GLOBAL)
    set_property(TARGET einlm::cuda_headers PROPERTY INTERFACE_LINK_LIBRARIES CCCL::CCCL)
    set_property(TARGET einlm::cuda_headers PROPERTY INTERFACE_INCLUDE_DIRECTORIES ${CUDAToolkit_INCLUDE_DIRS})
    set_property(TARGET einlm::cuda_headers PROPERTY INTERFACE_SYSTEM_INCLUDE_DIRECTORIES ${CUDAToolkit_INCLUDE_DIRS})
  endif()
endmacro()

macro(einlm_find_openmp)
  if(NOT TARGET einlm::openmp)
    find_package(OpenMP QUIET COMPONENTS CXX)
    if(NOT OpenMP_CXX_FOUND)
      einlm_missing("OpenMP for the C++ compiler" "libgomp1 (g++) or libomp-dev (clang)" "")
    endif()
    add_library(einlm::openmp INTERFACE IMPORTED GLOBAL)
    set_property(TARGET einlm::openmp PROPERTY INTERFACE_LINK_LIBRARIES OpenMP::OpenMP_CXX)
    set_property(TARGET einlm::openmp PROPERTY INTERFACE_COMPILE_OPTIONS
                 "$<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=${OpenMP_CXX_FLAGS}>")
  endif()
endmacro()

macro(einlm_find_doctest)
  find_package(doctest CONFIG QUIET)
  if(NOT doctest_FOUND)
    einlm_missing("doctest (needed for the tests)" "doctest-dev" "Or configure with -DEINLM_BUILD_TESTS=OFF.")
  endif()
endmacro()

macro(einlm_find_benchmark)
  find_package(benchmark CONFIG QUIET)
  if(NOT benchmark_FOUND)
    einlm_missing("Google Benchmark (needed for the benchmarks)" "libbenchmark-dev"
                  "Or configure with -DEINLM_BUILD_BENCHMARKS=OFF.")
  endif()
endmacro()
