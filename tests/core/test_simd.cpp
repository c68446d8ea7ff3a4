// Tests of einlm/core/simd.hpp's loads and stores of 16-bit floats: widening every bf16 and fp16
// bit pattern to float lanes, and rounding floats to bf16 lanes (to nearest even, NaN kept quiet
// with its sign) against a reference that picks the nearer of the two neighbouring bf16 values in
// double, on every high half of a float crossed with the low halves where rounding changes; a
// packet set from one value keeps it (−0 included).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "einlm/core/simd.hpp"

#if EINLM_HAS_PACKETS

namespace {

namespace simd = einlm::simd;
using einlm::bf16;
using einlm::fp16;

float float_of_bits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

std::uint16_t bits_of_half(const void* p) {
  std::uint16_t h;
  std::memcpy(&h, p, sizeof h);
  return h;
}

/// bf16 bits of f rounded to nearest even, by comparing distances to the two candidates in double.
std::uint16_t reference_bf16_bits(std::uint32_t u) {
  const std::uint32_t sign = u & 0x80000000u;
  const std::uint32_t magnitude = u & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);  // quiet NaN
  if (magnitude == 0x7f800000u) return static_cast<std::uint16_t>(u >> 16);
  const std::uint32_t below = magnitude & 0xffff0000u;
  const std::uint32_t above = below + 0x10000u;  // may be inf: the next value up
  const double x = float_of_bits(magnitude);
  const double down = x - double(float_of_bits(below));
  // The distance to `above` when it is inf is the distance to 2^128, as IEEE rounding has it.
  const double up = (above == 0x7f800000u ? std::ldexp(1.0, 128) : double(float_of_bits(above))) - x;
  std::uint32_t chosen = down < up ? below : up < down ? above : ((below >> 16) & 1u) ? above : below;
  return static_cast<std::uint16_t>((sign | chosen) >> 16);
}

}  // namespace

TEST_CASE("simd::load widens every bf16 and fp16 bit pattern exactly") {
  std::vector<std::uint16_t> all(65536 + simd::width);  // + slack: loads at every offset
  for (std::uint32_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::uint16_t>(i * 40503u + (i >> 7));
  for (std::uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<std::uint16_t>(i);
  std::size_t bf16_mismatches = 0, fp16_mismatches = 0;
  for (std::size_t i = 0; i + simd::width <= all.size(); ++i) {
    const simd::packet<float> b = simd::load<float>(reinterpret_cast<const bf16*>(all.data() + i));
    const simd::packet<float> h = simd::load<float>(reinterpret_cast<const fp16*>(all.data() + i));
    for (int l = 0; l < simd::width; ++l) {
      const std::uint16_t bits = all[i + l];
      const float expected_b = float_of_bits(std::uint32_t(bits) << 16);
      const float got_b = b[l];
      if (std::memcmp(&expected_b, &got_b, sizeof(float)) != 0) ++bf16_mismatches;
      const float expected_h = einlm::detail::fp16_bits_to_float(bits);
      const float got_h = h[l];
      if (std::memcmp(&expected_h, &got_h, sizeof(float)) != 0) ++fp16_mismatches;
    }
  }
  CHECK(bf16_mismatches == 0);
  CHECK(fp16_mismatches == 0);
}

TEST_CASE("simd::store rounds float lanes to bf16 as nearest-even rounding does") {
  const std::uint32_t lows[] = {0x0000u, 0x0001u, 0x3fffu, 0x7fffu, 0x8000u, 0x8001u, 0xc000u, 0xffffu, 0x5a5au};
  std::vector<std::uint32_t> inputs;
  for (std::uint32_t high = 0; high < 65536; ++high)
    for (std::uint32_t low : lows) inputs.push_back((high << 16) | low);
  while (inputs.size() % simd::width) inputs.push_back(0x3f808000u);  // a tie that rounds to even
  // Store each packet one element past an aligned start, and check that the neighbours are kept.
  std::vector<std::uint16_t> out(inputs.size() + 2, 0xabcdu);
  std::size_t mismatches = 0;
  for (std::size_t i = 0; i < inputs.size(); i += simd::width) {
    simd::packet<float> x;
    for (int l = 0; l < simd::width; ++l) x.set(l, float_of_bits(inputs[i + l]));
    simd::store(reinterpret_cast<bf16*>(out.data() + 1 + i), x);
    for (int l = 0; l < simd::width; ++l) {
      if (bits_of_half(out.data() + 1 + i + l) != reference_bf16_bits(inputs[i + l])) ++mismatches;
      // The scalar conversion rounds the same way.
      if (einlm::detail::float_to_bf16_bits(float_of_bits(inputs[i + l])) != reference_bf16_bits(inputs[i + l])) ++mismatches;
    }
  }
  CHECK(mismatches == 0);
  CHECK(out.front() == 0xabcdu);
  CHECK(out.back() == 0xabcdu);
}

TEST_CASE("a packet set from one value keeps it exactly, the sign of zero and NaN included") {
  for (const float v : {-0.0f, 0.0f, -1.5f, 3.0e38f, -1e-45f, std::numeric_limits<float>::infinity()}) {
    const simd::packet<float> p(v);
    const simd::packet<double> d(static_cast<double>(v));
    for (int i = 0; i < simd::width; ++i) {
      CHECK(p[i] == v);
      CHECK(std::signbit(p[i]) == std::signbit(v));
      CHECK(std::signbit(d[i]) == std::signbit(v));
    }
  }
  const simd::packet<float> nan(std::numeric_limits<float>::quiet_NaN());
  for (int i = 0; i < simd::width; ++i) CHECK(std::isnan(nan[i]));
}

#else

TEST_CASE("simd loads and stores (skipped: this build has no packets)") { MESSAGE("EINLM_HAS_PACKETS is 0"); }

#endif
