// Helpers of the GPU tests that compare a device assignment with the CPU executor's result:
// device_bytes(cpu_result, expr) assigns expr on the device (output poisoned first, exactly one
// launch checked) and returns the output's bytes; check_close compares them element-wise.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include <cuda_runtime_api.h>

#include "einlm/einlm.hpp"

namespace einlm::test {

// The device result of `expr` assigned into a poisoned tensor of the CPU result's shape, as host
// bytes, after checking that the assignment was exactly one launch.
template <class Ref, class Expr>
std::vector<unsigned char> device_bytes(const Ref& cpu, const Expr& expr) {
  using T = typename Ref::value_type;
  using E = typename Ref::extents_type;
  tensor<T, E, device> out(cpu.extents());
  EINLM_CUDA_CHECK(cudaMemset(out.data(), 0xff, out.bytes()));
  cuda_executor ex;
  ex.assign(out, expr);
  ex.synchronize();
  CHECK(ex.launches() == 1);
  std::vector<unsigned char> bytes(out.bytes());
  EINLM_CUDA_CHECK(cudaMemcpy(bytes.data(), out.data(), out.bytes(), cudaMemcpyDeviceToHost));
  return bytes;
}

// Element-wise comparison: |gpu − cpu| ≤ abs_tol[i] + rel_tol·|cpu| (exact with zero tolerances).
template <class T>
void check_close(const std::vector<unsigned char>& gpu_bytes, const T* cpu, index_t n, const std::vector<double>& abs_tol,
                 double rel_tol) {
  REQUIRE(gpu_bytes.size() == static_cast<std::size_t>(n) * sizeof(T));
  index_t bad = 0;
  for (index_t i = 0; i < n; ++i) {
    T g;
    std::memcpy(&g, gpu_bytes.data() + i * sizeof(T), sizeof(T));
    const double a = convert<double>(g), b = convert<double>(cpu[i]);
    const double tol = (abs_tol.empty() ? 0.0 : abs_tol[i]) + rel_tol * std::abs(b);
    if (!(std::abs(a - b) <= tol) && !(a == b)) {
      if (bad++ < 5) INFO("element ", i, ": gpu ", a, " cpu ", b, " tolerance ", tol);
      CHECK(std::abs(a - b) <= tol);
    }
  }
  CHECK(bad == 0);
}

}  // namespace einlm::test
