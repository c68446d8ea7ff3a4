# Builds and runs tests/install/consumer against einlm in one of three ways (cmake -P):
#   -DMODE=package       cmake --install the build tree into a prefix, then find_package(einlm)
#   -DMODE=subdirectory  add_subdirectory(<source tree>)
#   -DMODE=include       the compiler alone, with -I include (and the CUDA toolkit's headers)
# Inputs: MODE, SOURCE_DIR (einlm), BUILD_DIR (einlm's build tree), WORK_DIR (scratch), CXX,
# CCCL_INCLUDE, CUDA_INCLUDE.
cmake_minimum_required(VERSION 3.25)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
set(consumer ${SOURCE_DIR}/tests/install/consumer)

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "failed (${rc}): ${cmd}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()

if(MODE STREQUAL "package")
  run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix)
  run(${CMAKE_COMMAND} -S ${consumer} -B ${WORK_DIR}/build -G Ninja -DCMAKE_BUILD_TYPE=Release
      -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DEINLM_CONSUME=package)
  run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
  run(${WORK_DIR}/build/consumer)
elseif(MODE STREQUAL "subdirectory")
  run(${CMAKE_COMMAND} -S ${consumer} -B ${WORK_DIR}/build -G Ninja -DCMAKE_BUILD_TYPE=Release
      -DCMAKE_CXX_COMPILER=${CXX} -DEINLM_CONSUME=subdirectory -DEINLM_SOURCE_DIR=${SOURCE_DIR}
      -DEINLM_CUDA=OFF)
  run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
  run(${WORK_DIR}/build/consumer)
elseif(MODE STREQUAL "include")
  run(${CXX} -std=c++20 -O2 -fopenmp -Wno-psabi -I${SOURCE_DIR}/include -isystem ${CCCL_INCLUDE}
      -isystem ${CUDA_INCLUDE} ${consumer}/main.cpp -o ${WORK_DIR}/consumer)
  run(${WORK_DIR}/consumer)
else()
  message(FATAL_ERROR "unknown MODE ${MODE}")
endif()
