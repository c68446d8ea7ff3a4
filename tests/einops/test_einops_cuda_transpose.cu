// GPU tests of the CUDA executor's strided copies (einlm/exec/cuda_transpose.cuh): transposing
// rearranges ("a b -> b a", "b h s d -> b s h d", "b c h w -> b h w c"), converting copies and
// repeats, float and bf16, at odd extents (1, 31, 33, 1000, 4097) and at extents that take the
// 16-byte path, compared exactly with the CPU executor on the same random inputs. Device outputs
// are poisoned first; each assignment is one launch.
// Exits with 77 (skipped) when no device is present.
#include <doctest/doctest.h>

#include <array>
#include <string>

#include "einlm/einops.hpp"
#include "support/cuda_compare.cuh"

using namespace einlm;
using test::check_close;
using test::device_bytes;

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
