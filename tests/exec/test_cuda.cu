// GPU tests of einlm/exec/cuda.cuh: the CUDA executor against the CPU executor on the same random
// inputs (device outputs poisoned with NaN first), in each kernel path — vectorised flat,
// unaligned flat, indexed — and for every dtype; random generators bit-identical on both; the
// launch counter; the caching allocator's statistics; copies; the CUDA error check.
// Exits with 77 (skipped) when no device is present (tests/support/main_gpu.cu).
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include <cuda_runtime_api.h>

#include "einlm/einlm.hpp"
#include "support/check.hpp"

using namespace einlm;
using test::ulp_distance;

namespace {

template <class T, class E>
void random_fill(tensor<T, E>& t, std::uint64_t seed, double lo = -3, double hi = 3) {
  const auto v = test::random_values<double>(static_cast<std::size_t>(t.size()), lo, hi, seed);
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = convert<T>(v[static_cast<std::size_t>(i)]);
}

template <class T, class E>
void poison(tensor<T, E, device>& t) {
  EINLM_CUDA_CHECK(cudaMemset(t.data(), 0xff, t.bytes()));
}

template <class T, class E>
void check_close(const tensor<T, E>& gpu, const tensor<T, E>& cpu, std::uint64_t ulps, const char* what) {
  std::uint64_t worst = 0;
  for (index_t i = 0; i < cpu.size(); ++i) {
    const float a = convert<float>(gpu.data()[i]), b = convert<float>(cpu.data()[i]);
    if constexpr (is_half_v<T>) worst = std::max<std::uint64_t>(worst, ulp_distance(a, b) >> 13);
    else worst = std::max(worst, ulp_distance(gpu.data()[i], cpu.data()[i]));
  }
  INFO(std::string(what), ": worst ", worst, " ulp");
  CHECK(worst <= ulps);
}

template <class T>
void compare_dtype() {
  const dims<2> shape(33, 1001);  // odd sizes: vector bodies and scalar tails
  tensor<T, dims<2>> a(shape), b(shape);
  random_fill(a, 1);
  random_fill(b, 2, 0.5, 4);
  auto da = to_device(a), db = to_device(b);
  tensor<T, dims<2>, device> out(shape);
  auto run = [&](const char* what, auto make, std::uint64_t ulps) {
    poison(out);
    out = make(da, db);
    tensor<T, dims<2>> cpu = make(a, b);
    check_close(to_host(out), cpu, ulps, what);
  };
  // CUDA's libm and einlm's CPU polynomials are each within 1–2 ulp of the exact result.
  run("arithmetic", [](auto& x, auto& y) { return (x + y) * (x - y) / y; }, 0);
  run("silu chain", [](auto& x, auto& y) { return silu(x) * y + x; }, 6);
  run("exp log sqrt", [](auto& x, auto& y) { return exp(x) + log(y) * sqrt(y); }, 6);
  run("tanh sigmoid", [](auto& x, auto& y) { return tanh(x) - sigmoid(y) * rsqrt(y); }, 6);
  // gelu on float: the host's float polynomial is within 6 ulp; the device computes it in double.
  run("gelu forms", [](auto& x, auto&) { return gelu(x) + gelu_tanh(x); }, 8);
  run("where/minimum/pow", [](auto& x, auto& y) { return where(x > 0.0f, minimum(x, y), pow(y, 1.5) - relu(-x)); }, 2);
  run("abs/cast", [](auto& x, auto& y) { return abs(cast<bf16>(x)) * y; }, 1);
}

}  // namespace

TEST_CASE("CUDA and CPU executors agree: float") { compare_dtype<float>(); }
TEST_CASE("CUDA and CPU executors agree: double") { compare_dtype<double>(); }
TEST_CASE("CUDA and CPU executors agree: bf16") { compare_dtype<bf16>(); }
TEST_CASE("CUDA and CPU executors agree: fp16") { compare_dtype<fp16>(); }

TEST_CASE("each kernel path: vectorised, unaligned, indexed; one launch per assignment") {
  cuda_executor ex;
  tensor<float, dims<2>> a(dims<2>(64, 130)), bias(dims<2>(1, 130));
  random_fill(a, 3);
  random_fill(bias, 4);
  // [snippet cuda]
  auto da = to_device(a), dbias = to_device(bias);
  tensor<float, dims<2>, device> out(dims<2>(64, 130));
  // Vectorised flat path.
  poison(out);
  ex.assign(out, exp(da) * 2.0f);
  CHECK(ex.launches() == 1);
  // [end snippet]
  check_close(to_host(out), tensor<float, dims<2>>(exp(a) * 2.0f), 2, "flat");
  // Indexed path: a broadcast row and a transposed operand.
  poison(out);
  ex.assign(out, da + dbias);
  check_close(to_host(out), tensor<float, dims<2>>(a + bias), 0, "broadcast");
  tensor<float, dims<2>, device> outT(dims<2>(130, 64));
  poison(outT);
  ex.assign(outT, transpose<1, 0>(da) * 3.0f);
  check_close(to_host(outT), tensor<float, dims<2>>(transpose<1, 0>(a) * 3.0f), 0, "transpose");
  // Unaligned flat path: a contiguous view starting one element in.
  auto flat = reshape<dims<1>>(da, dims<1>(64 * 130));
  auto shifted = slice(flat, range{1, none});
  tensor<float, dims<1>, device> out1(dims<1>(64 * 130 - 1));
  poison(out1);
  ex.assign(out1, shifted * shifted);
  const auto back = to_host(out1);
  for (index_t i = 0; i < back.size(); ++i) CHECK(back.data()[i] == a.data()[i + 1] * a.data()[i + 1]);
  // Strided destination.
  poison(out);
  ex.assign(slice(out, range{none, none, -1}, full_extent), da + 0.0f);
  const auto rev = to_host(out);
  for (int i = 0; i < 64; ++i) CHECK(rev(i, 7) == a(63 - i, 7));
  CHECK(ex.launches() == 5);
  // eval allocates on the executor's stream.
  auto e = ex.eval(da * 2.0f);
  ex.synchronize();
  CHECK(to_host(e)(5, 5) == a(5, 5) * 2);
}

TEST_CASE("random generators give bit-identical numbers on the GPU and the CPU") {
  const random_stream g{123, 9};
  const dims<2> shape(100, 257);
  tensor<float, dims<2>, device> du(shape), dn(shape), dt(shape);
  tensor<bf16, dims<2>, device> db(shape);
  du = uniform<float>(shape, g, -2.0, 3.0);
  dn = normal<float>(shape, g, 0.5, 2.0);
  dt = truncated_normal<float>(shape, g, 0.0, 1.0, -1.5, 1.5);
  db = normal<bf16>(shape, g);
  tensor<float, dims<2>> u = uniform<float>(shape, g, -2.0, 3.0), n = normal<float>(shape, g, 0.5, 2.0),
                         t = truncated_normal<float>(shape, g, 0.0, 1.0, -1.5, 1.5);
  tensor<bf16, dims<2>> b = normal<bf16>(shape, g);
  const auto hu = to_host(du), hn = to_host(dn), ht = to_host(dt);
  const auto hb = to_host(db);
  for (index_t i = 0; i < u.size(); ++i) {
    CHECK(hu.data()[i] == u.data()[i]);
    CHECK(hn.data()[i] == n.data()[i]);
    CHECK(ht.data()[i] == t.data()[i]);
    CHECK(detail::bits_of(hb.data()[i]) == detail::bits_of(b.data()[i]));
  }
}

TEST_CASE("device memory statistics and the caching allocator") {
  release_cached_device_memory();
  const auto before = device_memory_stats();
  void* first = nullptr;
  {
    tensor<float, extents<1000>, device> t;
    first = t.data();
    CHECK(device_memory_stats().bytes_in_use == before.bytes_in_use + 4096);
  }
  CHECK(device_memory_stats().bytes_in_use == before.bytes_in_use);
  CHECK(device_memory_stats().bytes_cached >= 4096);
  cudaDeviceSynchronize();
  tensor<float, extents<1000>, device> again;
  CHECK(again.data() == first);
  CHECK(device_memory_stats().cache_hits == before.cache_hits + 1);
  CHECK(device_memory_stats().peak_bytes_in_use >= 4096);
}

TEST_CASE("copies between spaces and the CUDA error check") {
  tensor<double, extents<3, 4>> h;
  random_fill(h, 8);
  auto d = to_device(h);
  tensor<double, extents<3, 4>, device> d2;
  copy(d, d2);
  const auto back = to_host(d2);
  for (index_t i = 0; i < h.size(); ++i) CHECK(back.data()[i] == h.data()[i]);
  CHECK_THROWS_WITH_AS(copy(transpose<1, 0>(d), tensor<double, extents<4, 3>>{}),
                       doctest::Contains("needs contiguous source and destination"), shape_error);
  try {
    EINLM_CUDA_CHECK(cudaMemcpy(nullptr, h.data(), 1 << 20, cudaMemcpyHostToDevice));
    FAIL("expected a cuda_error");
  } catch (const cuda_error& e) {
    CHECK(std::string(e.what()).find("cudaMemcpy(nullptr, h.data(), 1 << 20, cudaMemcpyHostToDevice)") != std::string::npos);
    CHECK(std::string(e.what()).find("test_cuda.cu") != std::string::npos);
  }
}
