// GPU tests of the CUDA executor's dedicated kernels (einlm/exec/cuda_reduce.cuh,
// einlm/exec/cuda_transpose.cuh): every reduction over first, last, middle and several axes, and
// transposing rearranges, at odd extents (1, 31, 33, 1000, 4097), against the CPU executor on the
// same random inputs. Device outputs are poisoned first; each assignment is one launch.
// Exits with 77 (skipped) when no device is present.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include <cuda_runtime_api.h>

#include "einlm/einops.hpp"

using namespace einlm;

namespace {

using shape3 = std::array<index_t, 3>;

// Extents covering one-element axes, odd lengths around a warp, and runs longer than a block.
const shape3 shapes[] = {{31, 33, 1000}, {4097, 3, 33}, {1, 4097, 31}, {33, 1, 4097}, {1000, 31, 1}, {2, 5, 7}};

template <class T>
tensor<T, dims<3>> random_input(const shape3& s, std::uint64_t seed, double lo, double hi) {
  tensor<T, dims<3>> t(dims<3>(s[0], s[1], s[2]));
  t = uniform<T>(t.extents(), {seed, 7}, lo, hi);
  return t;
}

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

// Reduction P with Op over a random input of shape s, on the device and on the CPU.
template <fixed_string P, fixed_string Op, class T>
void check_reduction(const shape3& s, std::uint64_t seed) {
  constexpr bool is_prod = Op.view() == "prod";
  constexpr bool is_sum = Op.view() == "sum" || Op.view() == "mean";
  // Products of values near 1 stay finite and normal over 4097 factors.
  const auto x = is_prod ? random_input<T>(s, seed, 0.98, 1.02) : random_input<T>(s, seed, -2.0, 2.0);
  const auto d = to_device(x);
  const auto cpu = eval(reduce<P, Op>(x));
  const auto bytes = device_bytes(cpu, reduce<P, Op>(d));
  std::vector<double> abs_tol;
  double rel_tol = 0;
  if constexpr (is_sum) {
    // Summation order differs: bound the error by the magnitudes summed (Σ|x|, or its mean).
    const tensor<float, dims<3>> ax(abs(x));
    const auto scale = eval(reduce<P, Op>(ax));
    for (index_t i = 0; i < scale.size(); ++i) abs_tol.push_back(2e-5 * convert<double>(scale.data()[i]));
    rel_tol = std::is_same_v<T, float> ? 0.0 : 1.0 / 128;  // bf16: one rounding of the result may differ
  } else if constexpr (is_prod) {
    rel_tol = std::is_same_v<T, float> ? 1e-3 : 1e-3 + 1.0 / 128;
  }
  INFO("shape (", s[0], ", ", s[1], ", ", s[2], ")");
  check_close(bytes, cpu.data(), cpu.size(), abs_tol, rel_tol);
}

template <fixed_string P, class T>
void check_all_reductions(std::uint64_t seed) {
  for (const auto& s : shapes) {
    check_reduction<P, "sum", T>(s, seed++);
    check_reduction<P, "mean", T>(s, seed++);
    check_reduction<P, "max", T>(s, seed++);
    check_reduction<P, "min", T>(s, seed++);
    check_reduction<P, "prod", T>(s, seed++);
  }
}

// any / all of a random mask: sparse trues for any, sparse falses for all, so both outcomes occur.
template <fixed_string P>
void check_logical(std::uint64_t seed) {
  for (const auto& s : shapes) {
    const auto x = random_input<float>(s, seed++, -2.0, 2.0);
    const tensor<bool, dims<3>> rare(x > 1.99f), common(x > -1.99f);
    const auto d_rare = to_device(rare), d_common = to_device(common);
    const auto any_cpu = eval(reduce<P, "any">(rare));
    const auto all_cpu = eval(reduce<P, "all">(common));
    INFO("shape (", s[0], ", ", s[1], ", ", s[2], ")");
    check_close(device_bytes(any_cpu, reduce<P, "any">(d_rare)), any_cpu.data(), any_cpu.size(), {}, 0);
    check_close(device_bytes(all_cpu, reduce<P, "all">(d_common)), all_cpu.data(), all_cpu.size(), {}, 0);
  }
}

}  // namespace

TEST_CASE("reductions over the last axis (contiguous rows) agree with the CPU") {
  check_all_reductions<"a b c -> a b", float>(100);
  check_all_reductions<"a b c -> a b", bf16>(200);
  check_logical<"a b c -> a b">(300);
}

TEST_CASE("reductions over the first axis (columns) agree with the CPU") {
  check_all_reductions<"a b c -> b c", float>(400);
  check_all_reductions<"a b c -> b c", bf16>(500);
  check_logical<"a b c -> b c">(600);
}

TEST_CASE("reductions over a middle axis agree with the CPU") {
  check_all_reductions<"a b c -> a c", float>(700);
  check_all_reductions<"a b c -> a c", bf16>(800);
  check_logical<"a b c -> a c">(900);
}

TEST_CASE("reductions over several axes and with a transposed output agree with the CPU") {
  for (const auto& s : shapes) {
    check_reduction<"a b c -> a", "sum", float>(s, 1000);
    check_reduction<"a b c -> c", "max", float>(s, 1001);
    check_reduction<"a b c -> b", "mean", bf16>(s, 1002);
    check_reduction<"a b c -> b", "sum", float>(s, 1003);
    check_reduction<"a b c -> c b", "min", float>(s, 1004);
    check_reduction<"a b c -> c b", "sum", bf16>(s, 1005);
  }
}

TEST_CASE("a reduction of a fused expression agrees with the CPU") {
  for (const auto& s : shapes) {
    const auto x = random_input<float>(s, 1100, -2.0, 2.0);
    const auto d = to_device(x);
    const auto cpu = eval(reduce<"a b c -> a b", "sum">(exp(x) * 0.5f));
    const tensor<float, dims<3>> ex(exp(x) * 0.5f);
    const auto scale = eval(reduce<"a b c -> a b", "sum">(ex));
    std::vector<double> tol;
    for (index_t i = 0; i < scale.size(); ++i) tol.push_back(2e-5 * scale.data()[i]);
    check_close(device_bytes(cpu, reduce<"a b c -> a b", "sum">(exp(d) * 0.5f)), cpu.data(), cpu.size(), tol, 0);
  }
}

namespace {

template <std::size_t N>
dims<N> dims_of(const std::array<index_t, N>& shape) {
  index_array<N> a{};
  for (std::size_t r = 0; r != N; ++r) a[r] = shape[r];
  return from_array<dims<N>>(a);
}

// rearrange / repeat P of a random device tensor of the given extents, into a TD destination,
// compared exactly with the CPU executor's result.
template <fixed_string P, class TD, class TS, std::size_t N, class... A>
void check_rearrange(const std::array<index_t, N>& shape, std::uint64_t seed, const A&... axes) {
  tensor<TS, dims<N>> x(dims_of(shape));
  x = uniform<TS>(x.extents(), {seed, 3}, -2.0, 2.0);
  const auto d = to_device(x);
  using E = typename decltype(rearrange<P>(x, axes...))::extents_type;
  const tensor<TD, E> cpu(rearrange<P>(x, axes...));
  std::string s;
  for (auto e : shape) s += std::to_string(e) + " ";
  INFO(P.view(), " of shape ", s);
  check_close(device_bytes(cpu, rearrange<P>(d, axes...)), cpu.data(), cpu.size(), {}, 0);
}

template <fixed_string P, class TD, class TS, std::size_t N, class... A>
void check_repeat(const std::array<index_t, N>& shape, std::uint64_t seed, const A&... axes) {
  tensor<TS, dims<N>> x(dims_of(shape));
  x = uniform<TS>(x.extents(), {seed, 4}, -2.0, 2.0);
  const auto d = to_device(x);
  const auto cpu = eval(repeat<P>(x, axes...));
  INFO(P.view());
  check_close(device_bytes(cpu, repeat<P>(d, axes...)), cpu.data(), cpu.size(), {}, 0);
}

template <class T>
void check_transposes(std::uint64_t seed) {
  // Odd extents take the one-element path; multiples of 8 with aligned strides the 16-byte one.
  using s2 = std::array<index_t, 2>;
  using s4 = std::array<index_t, 4>;
  for (const auto& s : {s2{1, 4097}, s2{4097, 1}, s2{31, 33}, s2{1000, 33}, s2{64, 128}, s2{1024, 1000}, s2{33, 4097}})
    check_rearrange<"a b -> b a", T, T>(s, seed++);
  for (const auto& s : {s4{2, 3, 33, 31}, s4{1, 4, 1000, 64}, s4{3, 1, 31, 1}, s4{2, 31, 33, 8}, s4{1, 1, 1, 1}})
    check_rearrange<"b h s d -> b s h d", T, T>(s, seed++);
  for (const auto& s : {s4{2, 33, 31, 1}, s4{1, 64, 31, 33}, s4{2, 32, 16, 64}, s4{3, 1, 5, 7}, s4{1, 3, 1000, 33}})
    check_rearrange<"b c h w -> b h w c", T, T>(s, seed++);
  check_rearrange<"b c h w -> w (b h) c", T, T>(s4{2, 33, 5, 31}, seed++);
}

}  // namespace

TEST_CASE("transposing rearranges agree with the CPU: float") { check_transposes<float>(2000); }

TEST_CASE("transposing rearranges agree with the CPU: bf16") { check_transposes<bf16>(3000); }

TEST_CASE("transposing copies that convert, and repeats (zero strides), agree with the CPU") {
  using s2 = std::array<index_t, 2>;
  for (const auto& s : {s2{31, 33}, s2{64, 128}, s2{1000, 1}})
    check_rearrange<"a b -> b a", bf16, float>(s, 4000);
  check_repeat<"a b -> b a c", float, float>(s2{33, 64}, 4001, axis<"c", 3>{});
  check_repeat<"a b -> a c b", float, float>(s2{33, 64}, 4002, axis<"c", 5>{});
  check_repeat<"a b -> b c a", bf16, bf16>(s2{1000, 31}, 4003, axis<"c", 2>{});
}
