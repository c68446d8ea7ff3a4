# EinlmDependencies.cmake — finds what einlm needs and stops with the Debian package to install
# when something is missing. Defines two imported interface targets that the einlm target links:
#   einlm::cuda_headers  CCCL (cuda/std, thrust, cub) and the CUDA toolkit headers (cuda_bf16.h, …);
#                        header-only use, host compilers included; nothing is linked
#   einlm::openmp        OpenMP for the CPU executor (host compiler flags, and -Xcompiler for nvcc)
# and two optional ones, which a target links to use them (defined only when found):
#   einlm::blas          a CBLAS (OpenBLAS by default; EINLM_BLAS_VENDOR) for the CPU GEMM:
#                        links it, adds its cblas.h, defines EINLM_HAS_BLAS=1
#   einlm::cublaslt      cuBLASLt for the CUDA GEMM's cublaslt backend: links CUDA::cublasLt,
#                        defines EINLM_HAS_CUBLASLT=1
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
    # CCCL's package files sit in the toolkit's lib/cmake (or lib64/cmake); FindCUDAToolkit leaves
    # CUDAToolkit_LIBRARY_ROOT empty when CUDA is not an enabled language, so derive the roots from
    # every directory it reports, and fall back to the CCCL that einlm itself was built with.
    set(_einlm_cccl_hints)
    foreach(_einlm_root "${CUDAToolkit_LIBRARY_ROOT}" "${CUDAToolkit_TARGET_DIR}" "${CUDAToolkit_BIN_DIR}/.."
                        "${CUDAToolkit_ROOT}" "$ENV{CUDAToolkit_ROOT}" "$ENV{CUDA_PATH}")
      if(_einlm_root AND NOT _einlm_root STREQUAL "/.." AND NOT _einlm_root STREQUAL "..")
        list(APPEND _einlm_cccl_hints "${_einlm_root}/lib/cmake" "${_einlm_root}/lib64/cmake")
      endif()
    endforeach()
    foreach(_einlm_include IN LISTS CUDAToolkit_INCLUDE_DIRS)
      list(APPEND _einlm_cccl_hints "${_einlm_include}/../lib/cmake" "${_einlm_include}/../lib64/cmake")
    endforeach()
    if(EINLM_BUILT_WITH_CCCL_DIR)
      list(APPEND _einlm_cccl_hints "${EINLM_BUILT_WITH_CCCL_DIR}/..")
    endif()
    find_package(CCCL CONFIG QUIET HINTS ${_einlm_cccl_hints})
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

# einlm_find_blas — einlm::blas when a BLAS with a CBLAS header is installed; otherwise a message
# (the CPU GEMM then uses its own kernel, which is always compiled).
macro(einlm_find_blas)
  if(NOT DEFINED EINLM_BLAS_VENDOR)
    set(EINLM_BLAS_VENDOR OpenBLAS CACHE STRING
        "BLAS for the CPU GEMM: a BLA_VENDOR of CMake's FindBLAS (OpenBLAS, FlexiBLAS, Intel10_64lp, All, …) or OFF")
  endif()
  if(NOT TARGET einlm::blas AND EINLM_BLAS_VENDOR)
    # Prefer Debian's OpenMP build of OpenBLAS (libopenblas-openmp-dev): its GEMMs run on the same
    # OpenMP thread pool as einlm's CPU executor. With the pthreads build the two pools spin
    # against each other between calls (3.6x slower training steps on 2 cores).
    if(EINLM_BLAS_VENDOR STREQUAL "OpenBLAS")
      find_library(EINLM_OPENBLAS_OPENMP_LIBRARY openblas
                   PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp NO_DEFAULT_PATH)
      find_path(EINLM_OPENBLAS_OPENMP_INCLUDE_DIR cblas.h
                PATHS /usr/include/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp NO_DEFAULT_PATH)
    endif()
    if(EINLM_OPENBLAS_OPENMP_LIBRARY AND EINLM_OPENBLAS_OPENMP_INCLUDE_DIR)
      set(BLAS_FOUND TRUE)
      set(_einlm_blas_link ${EINLM_OPENBLAS_OPENMP_LIBRARY})
      set(EINLM_CBLAS_INCLUDE_DIR ${EINLM_OPENBLAS_OPENMP_INCLUDE_DIR})
    else()
      set(_einlm_saved_vendor "${BLA_VENDOR}")
      set(BLA_VENDOR "${EINLM_BLAS_VENDOR}")
      find_package(BLAS QUIET)
      set(BLA_VENDOR "${_einlm_saved_vendor}")
      set(_einlm_blas_link BLAS::BLAS)
      find_path(EINLM_CBLAS_INCLUDE_DIR cblas.h
                PATH_SUFFIXES openblas-pthread openblas openblas-openmp openblas-serial flexiblas mkl
                HINTS /usr/include/${CMAKE_LIBRARY_ARCHITECTURE} /usr/include)
    endif()
    if(BLAS_FOUND AND EINLM_CBLAS_INCLUDE_DIR)
      add_library(einlm::blas INTERFACE IMPORTED GLOBAL)
      set_property(TARGET einlm::blas PROPERTY INTERFACE_LINK_LIBRARIES ${_einlm_blas_link})
      set_property(TARGET einlm::blas PROPERTY INTERFACE_INCLUDE_DIRECTORIES ${EINLM_CBLAS_INCLUDE_DIR})
      set_property(TARGET einlm::blas PROPERTY INTERFACE_SYSTEM_INCLUDE_DIRECTORIES ${EINLM_CBLAS_INCLUDE_DIR})
      set_property(TARGET einlm::blas PROPERTY INTERFACE_COMPILE_DEFINITIONS EINLM_HAS_BLAS=1)
      message(STATUS "einlm: BLAS (${EINLM_BLAS_VENDOR}: ${_einlm_blas_link}) found: the CPU GEMM calls it for float and double")
    else()
      message(STATUS "einlm: no BLAS (${EINLM_BLAS_VENDOR}) with cblas.h found: the CPU GEMM uses its own kernel. "
                     "For OpenBLAS on Debian/Ubuntu: apt-get install libopenblas-openmp-dev")
    endif()
  endif()
endmacro()

# einlm_find_cublaslt — einlm::cublaslt when the CUDA toolkit has cuBLASLt.
macro(einlm_find_cublaslt)
  if(NOT TARGET einlm::cublaslt)
    find_package(CUDAToolkit QUIET)
    if(TARGET CUDA::cublasLt)
      add_library(einlm::cublaslt INTERFACE IMPORTED GLOBAL)
      set_property(TARGET einlm::cublaslt PROPERTY INTERFACE_LINK_LIBRARIES CUDA::cublasLt)
      set_property(TARGET einlm::cublaslt PROPERTY INTERFACE_COMPILE_DEFINITIONS EINLM_HAS_CUBLASLT=1)
    endif()
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
