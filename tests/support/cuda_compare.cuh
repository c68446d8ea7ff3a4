// Helpers of the GPU tests that compare a device assignment with the CPU executor's result:
// device_bytes(cpu_result, expr) assigns expr on the device (output poisoned first, exactly one
// launch checked) and returns the output's bytes; check_close compares them element-wise;
// random_tensor makes a host input; check_device_close compares a device tensor or lazy device
// expression with a host result, relative to max(1, |cpu|); poison, poison_cache and bytes_of
// fill a device tensor (or the allocator's cached block of a size) with NaN bytes and read one back.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
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

/// A host tensor of uniform random values in [lo, hi) (never zeros), from the Philox stream (seed, 0).
template <class T, class E>
tensor<T, E> random_tensor(std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
  tensor<T, E> t;
  t = uniform<T>(E{}, {seed, 0}, lo, hi);
  return t;
}

/// |gpu − cpu| ≤ tolerance · max(1, |cpu|) element by element; gpu_result is a device tensor or a
/// lazy device expression (evaluated first), cpu_result a host tensor or host expression.
template <class G, class C>
void check_device_close(const G& gpu_result, const C& cpu_result, double tolerance) {
  const auto h = to_host(eval(gpu_result));
  const auto c = eval(cpu_result);
  REQUIRE(to_array(h.extents()) == to_array(c.extents()));
  for (index_t i = 0; i < h.size(); ++i)
    CHECK(std::abs(convert<double>(h.data()[i]) - convert<double>(c.data()[i])) <=
          tolerance * std::max(1.0, std::abs(convert<double>(c.data()[i]))));
}

/// Fills a device tensor with NaN bytes, so that an element a kernel forgets to write fails.
template <class T, class E>
void poison(tensor<T, E, device>& t) {
  EINLM_CUDA_CHECK(cudaMemset(t.data(), 0xff, t.bytes()));
}

/// Fills the allocator's cached block of this size with NaN bytes, so the next allocation of
/// the same size starts poisoned.
template <class T, class E>
void poison_cache(const E& e) {
  tensor<T, E, device> junk(e);
  poison(junk);
  EINLM_CUDA_CHECK(cudaDeviceSynchronize());
}

/// A device tensor's bytes, copied to the host.
template <class T, class E>
std::vector<unsigned char> bytes_of(const tensor<T, E, device>& t) {
  std::vector<unsigned char> b(t.bytes());
  EINLM_CUDA_CHECK(cudaMemcpy(b.data(), t.data(), t.bytes(), cudaMemcpyDeviceToHost));
  return b;
}

}  // namespace einlm::test
