// Test driver of the GPU test executables: exits with 77 (ctest's "skipped") when no CUDA device is
// present, so the same suite passes on machines without a GPU and runs fully on machines with one.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include <cuda_runtime_api.h>

int main(int argc, char** argv) {
  int devices = 0;
  const cudaError_t status = cudaGetDeviceCount(&devices);
  if (status != cudaSuccess || devices == 0) {
    std::printf("no CUDA device (%s): skipping GPU tests\n",
                status == cudaSuccess ? "0 devices" : cudaGetErrorString(status));
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
