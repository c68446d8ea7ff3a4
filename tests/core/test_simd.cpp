// Tests of einlm/core/simd.hpp's loads and stores of 16-bit floats: widening every bf16 and fp16
// bit pattern to float lanes, and rounding floats to bf16 lanes (to nearest even, NaN kept quiet
// with its sign) against a reference that picks the nearer of the two neighbouring bf16 values in
// double, on every high half of a float crossed with the low halves where rounding changes; a
// packet set from one value keeps it (−0 included). Each at the three packet widths (16, 32 and
// 64 bytes: what the build, AVX2 and AVX-512 kernels use), and once more inside a kernel that
// simd::dispatch runs at this CPU's widest packets.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <tuple>
#include <type_traits>
#include <vector>

#include "einlm/core/simd.hpp"
#include "einlm/core/simd_dispatch.hpp"

#if EINLM_HAS_PACKETS

namespace {

namespace simd = einlm::simd;
using einlm::bf16;
using einlm::index_t;
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

/// Loads and stores of 16-bit floats at packets of B bytes, over a whole array: out_b/out_h get
/// the widened bf16/fp16 lanes of halves[i …] for every i (n + lanes − 1 halves), and rounded[i]
/// the bf16 bits of the floats from_bits[i] (n a multiple of the lanes).
struct half_conversions_kernel {
  template <int B>
  static void run(const std::uint16_t* halves, float* out_b, float* out_h, index_t n, const std::uint32_t* from_bits,
                  std::uint16_t* rounded, index_t m) {
    constexpr int lanes = simd::packet<float, B>::size;
    for (index_t i = 0; i < n; ++i) {
      const simd::packet<float, B> b = simd::load<float, B>(reinterpret_cast<const bf16*>(halves + i));
      const simd::packet<float, B> h = simd::load<float, B>(reinterpret_cast<const fp16*>(halves + i));
      for (int l = 0; l < lanes; ++l) {
        out_b[i * lanes + l] = b[l];
        out_h[i * lanes + l] = h[l];
      }
    }
    for (index_t i = 0; i < m; i += lanes) {
      simd::packet<float, B> x;
      std::memcpy(static_cast<void*>(&x.p), from_bits + i, sizeof(x.p));
      simd::store(reinterpret_cast<bf16*>(rounded + i), x);
    }
  }
};

}  // namespace

using packet_widths = std::tuple<std::integral_constant<int, 16>, std::integral_constant<int, 32>, std::integral_constant<int, 64>>;

TEST_CASE_TEMPLATE_DEFINE("simd::load widens every bf16 and fp16 bit pattern exactly", W, load_widens) {
  constexpr int B = W::value, width = B / 4;
  std::vector<std::uint16_t> all(65536 + width);  // + slack: loads at every offset
  for (std::uint32_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::uint16_t>(i * 40503u + (i >> 7));
  for (std::uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<std::uint16_t>(i);
  std::size_t bf16_mismatches = 0, fp16_mismatches = 0;
  for (std::size_t i = 0; i + width <= all.size(); ++i) {
    const simd::packet<float, B> b = simd::load<float, B>(reinterpret_cast<const bf16*>(all.data() + i));
    const simd::packet<float, B> h = simd::load<float, B>(reinterpret_cast<const fp16*>(all.data() + i));
    for (int l = 0; l < width; ++l) {
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
TEST_CASE_TEMPLATE_APPLY(load_widens, packet_widths);

TEST_CASE_TEMPLATE_DEFINE("simd::store rounds float lanes to bf16 as nearest-even rounding does", W, store_rounds) {
  constexpr int B = W::value, width = B / 4;
  const std::uint32_t lows[] = {0x0000u, 0x0001u, 0x3fffu, 0x7fffu, 0x8000u, 0x8001u, 0xc000u, 0xffffu, 0x5a5au};
  std::vector<std::uint32_t> inputs;
  for (std::uint32_t high = 0; high < 65536; ++high)
    for (std::uint32_t low : lows) inputs.push_back((high << 16) | low);
  while (inputs.size() % width) inputs.push_back(0x3f808000u);  // a tie that rounds to even
  // Store each packet one element past an aligned start, and check that the neighbours are kept.
  std::vector<std::uint16_t> out(inputs.size() + 2, 0xabcdu);
  std::size_t mismatches = 0;
  for (std::size_t i = 0; i < inputs.size(); i += width) {
    simd::packet<float, B> x;
    for (int l = 0; l < width; ++l) x.set(l, float_of_bits(inputs[i + l]));
    simd::store(reinterpret_cast<bf16*>(out.data() + 1 + i), x);
    for (int l = 0; l < width; ++l) {
      if (bits_of_half(out.data() + 1 + i + l) != reference_bf16_bits(inputs[i + l])) ++mismatches;
      // The scalar conversion rounds the same way.
      if (einlm::detail::float_to_bf16_bits(float_of_bits(inputs[i + l])) != reference_bf16_bits(inputs[i + l])) ++mismatches;
    }
  }
  CHECK(mismatches == 0);
  CHECK(out.front() == 0xabcdu);
  CHECK(out.back() == 0xabcdu);
}
TEST_CASE_TEMPLATE_APPLY(store_rounds, packet_widths);

TEST_CASE_TEMPLATE_DEFINE("a packet set from one value keeps it exactly, the sign of zero and NaN included", W, splat) {
  constexpr int B = W::value, width = B / 4;
  for (const float v : {-0.0f, 0.0f, -1.5f, 3.0e38f, -1e-45f, std::numeric_limits<float>::infinity()}) {
    const simd::packet<float, B> p(v);
    const simd::packet<double, B> d(static_cast<double>(v));
    for (int i = 0; i < width; ++i) {
      CHECK(p[i] == v);
      CHECK(std::signbit(p[i]) == std::signbit(v));
      CHECK(std::signbit(d[i]) == std::signbit(v));
    }
  }
  const simd::packet<float, B> nan(std::numeric_limits<float>::quiet_NaN());
  for (int i = 0; i < width; ++i) CHECK(std::isnan(nan[i]));
}
TEST_CASE_TEMPLATE_APPLY(splat, packet_widths);

TEST_CASE("simd::dispatch: 16-bit loads and stores in kernels compiled for this CPU's wider packets") {
  // Each width the CPU runs (16: the build's; 32: AVX2; 64: AVX-512), within the cap that
  // EINLM_SIMD_BYTES may have set; the cap is restored at the end.
  const int start = simd::dispatch_bytes();
  MESSAGE("simd::dispatch runs kernels at " << start << "-byte packets here (the build's: " << simd::width * 4 << ")");
  CHECK(simd::limit_dispatch_bytes(16) == simd::width * 4);
  std::vector<std::uint16_t> halves(65536 + 16);
  for (std::uint32_t i = 0; i < halves.size(); ++i) halves[i] = static_cast<std::uint16_t>(i);
  const index_t n = 65536;
  std::vector<std::uint32_t> inputs;
  for (std::uint32_t high = 0; high < 65536; ++high)
    for (std::uint32_t low : {0x0000u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu}) inputs.push_back((high << 16) | low);
  while (inputs.size() % 16) inputs.push_back(0x3f808000u);
  for (const int cap : {16, 32, 64}) {
    if (cap > start) break;
    const int bytes = simd::limit_dispatch_bytes(cap);
    CHECK(bytes <= cap);
    CAPTURE(bytes);
    const int lanes = bytes / 4;
    std::vector<float> out_b(static_cast<std::size_t>(n) * lanes), out_h(out_b.size());
    std::vector<std::uint16_t> rounded(inputs.size());
    simd::dispatch<half_conversions_kernel>(halves.data(), out_b.data(), out_h.data(), n, inputs.data(), rounded.data(),
                                            static_cast<index_t>(inputs.size()));
    std::size_t mismatches = 0;
    for (index_t i = 0; i < n; ++i)
      for (int l = 0; l < lanes; ++l) {
        const std::uint16_t bits = halves[static_cast<std::size_t>(i + l)];
        const float expected_b = float_of_bits(std::uint32_t(bits) << 16), expected_h = einlm::detail::fp16_bits_to_float(bits);
        const std::size_t at = static_cast<std::size_t>(i * lanes + l);
        if (std::memcmp(&expected_b, &out_b[at], sizeof(float)) != 0) ++mismatches;
        if (std::memcmp(&expected_h, &out_h[at], sizeof(float)) != 0) ++mismatches;
      }
    for (std::size_t i = 0; i < inputs.size(); ++i)
      if (rounded[i] != reference_bf16_bits(inputs[i])) ++mismatches;
    CHECK(mismatches == 0);
  }
  CHECK(simd::limit_dispatch_bytes(start) == start);
}

#else

TEST_CASE("simd loads and stores (skipped: this build has no packets)") { MESSAGE("EINLM_HAS_PACKETS is 0"); }

#endif
