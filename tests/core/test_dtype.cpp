// Tests of einlm/core/dtype.hpp: traits, and conversions that round to nearest even. fp16 is
// checked against the compiler's own _Float16 conversions; bf16 against a brute-force nearest
// search; both exhaustively over all 65536 bit patterns on the way back to float.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>

#include "einlm/core/dtype.hpp"

using einlm::bf16;
using einlm::convert;
using einlm::fp16;

namespace {

std::uint16_t bits(bf16 x) { return einlm::detail::bits_of(x); }
std::uint16_t bits(fp16 x) { return einlm::detail::bits_of(x); }

float from_bits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Nearest bf16 to a double by brute force over the two candidates around it; ties to even.
std::uint16_t reference_bf16(double d) {
  if (std::isnan(d)) return 0x7fc0;
  const float f = static_cast<float>(d);  // only used to locate the candidates
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  const std::uint16_t lo = static_cast<std::uint16_t>(u >> 16);
  std::uint16_t best = lo;
  double best_err = std::numeric_limits<double>::infinity();
  for (int k = -2; k <= 2; ++k) {
    const std::uint16_t c = static_cast<std::uint16_t>(lo + k);
    if (((c >> 15) & 1) != ((lo >> 15) & 1)) continue;
    double v = static_cast<double>(from_bits(static_cast<std::uint32_t>(c) << 16));
    if (std::isnan(v)) continue;
    if (std::isinf(v)) v = std::copysign(std::ldexp(1.0, 128), v);  // inf sits where 2^128 would
    const double err = std::abs(v - d);
    if (err < best_err || (err == best_err && (c & 1) == 0)) {
      best = c;
      best_err = err;
    }
  }
  return best;
}

std::uint16_t reference_fp16(double d) {
  const _Float16 h = static_cast<_Float16>(d);
  std::uint16_t b;
  std::memcpy(&b, &h, 2);
  return b;
}

}  // namespace

TEST_CASE("dtype_traits") {
  using einlm::dtype_traits;
  static_assert(dtype_traits<float>::size == 4);
  static_assert(dtype_traits<bf16>::size == 2);
  static_assert(std::is_same_v<dtype_traits<bf16>::accumulator, float>);
  static_assert(std::is_same_v<dtype_traits<fp16>::compute, float>);
  static_assert(std::is_same_v<dtype_traits<double>::accumulator, double>);
  static_assert(std::is_same_v<dtype_traits<std::int32_t>::accumulator, std::int64_t>);
  static_assert(dtype_traits<fp16>::is_floating && !dtype_traits<int>::is_floating);
  CHECK(std::string(dtype_traits<bf16>::name) == "bfloat16");
  CHECK(std::string(dtype_traits<fp16>::name) == "float16");
  CHECK(std::string(dtype_traits<float>::npy_descr) == "<f4");
  CHECK(std::string(dtype_traits<bool>::npy_descr) == "|b1");
}

TEST_CASE("16-bit values widen to float exactly (all bit patterns)") {
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const auto h = static_cast<std::uint16_t>(b);
    // bf16 is the upper half of a float.
    const float fb = convert<float>(einlm::bf16_from_bits(h));
    const float eb = from_bits(static_cast<std::uint32_t>(h) << 16);
    CHECK((std::memcmp(&fb, &eb, 4) == 0 || (std::isnan(fb) && std::isnan(eb))));
    // fp16 against the compiler's _Float16.
    _Float16 ref;
    std::memcpy(&ref, &h, 2);
    const float fh = convert<float>(einlm::fp16_from_bits(h));
    const float eh = static_cast<float>(ref);
    CHECK((std::memcmp(&fh, &eh, 4) == 0 || (std::isnan(fh) && std::isnan(eh))));
    // And back: every finite value round-trips bit for bit.
    if (!std::isnan(fb)) CHECK(bits(convert<bf16>(fb)) == h);
    if (!std::isnan(fh)) CHECK(bits(convert<fp16>(fh)) == h);
  }
}

TEST_CASE("float → bf16/fp16 rounds to nearest, ties to even") {
  std::mt19937 rng(7);
  for (int i = 0; i < 200000; ++i) {
    // Random bit patterns cover every exponent, subnormals, infinities and NaNs.
    const float f = from_bits(rng());
    if (std::isnan(f)) {
      CHECK(std::isnan(convert<float>(convert<bf16>(f))));
      CHECK(std::isnan(convert<float>(convert<fp16>(f))));
      continue;
    }
    CHECK(bits(convert<bf16>(f)) == reference_bf16(f));
    CHECK(bits(convert<fp16>(f)) == reference_fp16(f));
  }
  // Exact ties.
  CHECK(bits(convert<bf16>(1.00390625f)) == 0x3f80);   // halfway between 1 and 1+2^-7: even is 1
  CHECK(bits(convert<bf16>(1.01171875f)) == 0x3f82);   // halfway between 1+2^-7 and 1+2^-6: even is up
  CHECK(bits(convert<fp16>(65520.0f)) == 0x7c00);      // halfway to 2^16 overflows to inf
  CHECK(bits(convert<fp16>(65519.0f)) == 0x7bff);      // 65504, the largest fp16
  CHECK(bits(convert<fp16>(2.98023223876953125e-8f)) == 0x0000);  // 2^-25: ties to even (zero)
  CHECK(bits(convert<fp16>(2.98023259e-8f)) == 0x0001);           // just above: smallest subnormal
}

TEST_CASE("double → bf16/fp16 rounds once (no double rounding through float)") {
  // 1 + 2^-8 + 2^-40: nearest bf16 is 1 + 2^-7 (just above the tie); through float, the 2^-40 is
  // lost, the value becomes an exact tie and rounds down to 1.
  const double d = 1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -40);
  CHECK(bits(convert<bf16>(d)) == 0x3f81);
  CHECK(bits(convert<bf16>(static_cast<float>(d))) == 0x3f80);
  const double e = 1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40);
  CHECK(bits(convert<fp16>(e)) == reference_fp16(e));
  CHECK(bits(convert<fp16>(e)) == 0x3c01);
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> dist(-70000.0, 70000.0);
  for (int i = 0; i < 100000; ++i) {
    const double x = dist(rng) * std::ldexp(1.0, static_cast<int>(rng() % 40) - 30);
    CHECK(bits(convert<bf16>(x)) == reference_bf16(x));
    CHECK(bits(convert<fp16>(x)) == reference_fp16(x));
  }
}

TEST_CASE("integer and bool conversions") {
  CHECK(convert<float>(true) == 1.0f);
  CHECK(convert<bool>(0.5f));
  CHECK(!convert<bool>(0.0f));
  CHECK(convert<float>(convert<bf16>(7)) == 7.0f);
  CHECK(convert<std::int32_t>(convert<fp16>(-3.0)) == -3);
  CHECK(bits(convert<bf16>(std::int64_t{16777217})) == reference_bf16(16777217.0));
}
