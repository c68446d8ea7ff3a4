// GPU tests of the CUDA executor's reduction kernels (einlm/exec/cuda_reduce.cuh): every
// reduction over first, last, middle and several axes, float and bf16, at odd extents (1, 31, 33,
// 1000, 4097), against the CPU executor on the same random inputs. Device outputs are poisoned
// first; each assignment is one launch.
// Exits with 77 (skipped) when no device is present.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>


#include "einlm/einops.hpp"
#include "support/cuda_compare.cuh"

using namespace einlm;
using test::check_close;
using test::device_bytes;

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

TEST_CASE("reductions over several axes, to a scalar, and with a transposed output agree with the CPU") {
  for (const auto& s : shapes) {
    check_reduction<"a b c -> a", "sum", float>(s, 1000);
    check_reduction<"a b c -> c", "max", float>(s, 1001);
    check_reduction<"a b c -> b", "mean", bf16>(s, 1002);
    check_reduction<"a b c -> b", "sum", float>(s, 1003);
    check_reduction<"a b c -> c b", "min", float>(s, 1004);
    check_reduction<"a b c -> c b", "sum", bf16>(s, 1005);
    check_reduction<"a b c ->", "sum", float>(s, 1006);
    check_reduction<"a b c ->", "max", bf16>(s, 1007);
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
