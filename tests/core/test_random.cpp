// Tests of einlm/core/random.hpp: Philox-4x32-10 against the Random123 known-answer vectors, the
// stream layout against an independent Python implementation (tools/philox_reference.py), the
// exact log/sincos used by the normals against <cmath>, and the distributions' moments.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "einlm/core/random.hpp"

using namespace einlm;

TEST_CASE("Philox-4x32-10 known-answer vectors (Random123 kat_vectors)") {
  using A4 = cuda::std::array<std::uint32_t, 4>;
  using A2 = cuda::std::array<std::uint32_t, 2>;
  CHECK(philox4x32_10(A4{0, 0, 0, 0}, A2{0, 0}) == A4{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
  CHECK(philox4x32_10(A4{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, A2{0xffffffffu, 0xffffffffu}) ==
        A4{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
  CHECK(philox4x32_10(A4{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, A2{0xa4093822u, 0x299f31d0u}) ==
        A4{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
}

TEST_CASE("stream layout matches the independent reference") {
  const random_stream g{42, 7};
  const std::uint32_t bits[] = {0x67ee6f2cu, 0xe55410ccu, 0x6c7eca35u, 0x557398d3u,
                                0xe5dde940u, 0x600f6196u, 0x8fcdf8f1u, 0x2c8ed839u};
  const double uniforms[] = {0.40598195791244507, 0.8958139419555664, 0.42380964756011963, 0.33379507064819336,
                             0.8979173302650452,  0.3752346634864807, 0.5617365837097168,  0.17405462265014648};
  const double normals[] = {1.065150880397961,   -0.8175247203520556, -0.658450371399801,  1.132865740964072,
                            -0.3286256696531599, 0.32765787805008223, 0.49325451580886626, 0.9540148240365031};
  for (int i = 0; i < 8; ++i) {
    CHECK(random_bits(g, static_cast<std::uint64_t>(i)) == bits[i]);
    CHECK(uniform_at<float>(g, static_cast<std::uint64_t>(i)) == static_cast<float>(uniforms[i]));
    const double n = normal_at<double>(g, static_cast<std::uint64_t>(i));
    CHECK(std::abs(n - normals[i]) <= 4e-15 * std::abs(normals[i]));
    CHECK(normal_at<float>(g, static_cast<std::uint64_t>(i)) == static_cast<float>(n));
  }
  // Different seeds and streams give different numbers.
  CHECK(random_bits({43, 7}, 0) != bits[0]);
  CHECK(random_bits({42, 8}, 0) != bits[0]);
}

TEST_CASE("the exact log and sincos agree with <cmath>") {
  for (int k = -1070; k <= 0; k += 3) {
    for (double m : {1.0, 1.2345, 1.5, 1.9999}) {
      const double x = std::ldexp(m, k) / 2;
      if (x <= 0 || x > 1) continue;
      CHECK(std::abs(detail::exact_log(x) - std::log(x)) <= 2e-16 * std::max(1.0, std::abs(std::log(x))));
    }
  }
  for (int i = 0; i < 4096; ++i) {
    const double u = i / 4096.0 + 1e-5;
    double c, s;
    detail::exact_sincos_2pi(u, c, s);
    CHECK(std::abs(c - std::cos(2 * M_PI * u)) < 1e-15);
    CHECK(std::abs(s - std::sin(2 * M_PI * u)) < 1e-15);
  }
}

TEST_CASE("moments of the distributions") {
  const random_stream g{2024, 1};
  constexpr int n = 1 << 20;
  double su = 0, su2 = 0, sn = 0, sn2 = 0, sn3 = 0, sn4 = 0;
  float umin = 1, umax = 0;
  for (int i = 0; i < n; ++i) {
    const float u = uniform_at<float>(g, static_cast<std::uint64_t>(i));
    umin = std::min(umin, u);
    umax = std::max(umax, u);
    su += u;
    su2 += static_cast<double>(u) * u;
    const double z = normal_at<double>(g, static_cast<std::uint64_t>(i));
    sn += z;
    sn2 += z * z;
    sn3 += z * z * z;
    sn4 += z * z * z * z;
  }
  // Standard errors at n = 2^20: mean 2.8e-4 (uniform) and 1e-3 (normal); bounds are 5 sigma.
  CHECK(umin >= 0.0f);
  CHECK(umax < 1.0f);
  CHECK(std::abs(su / n - 0.5) < 1.5e-3);
  CHECK(std::abs(su2 / n - 1.0 / 3.0) < 1.5e-3);
  CHECK(std::abs(sn / n) < 5e-3);
  CHECK(std::abs(sn2 / n - 1.0) < 7e-3);
  CHECK(std::abs(sn3 / n) < 1.2e-2);
  CHECK(std::abs(sn4 / n - 3.0) < 3e-2);
  // uniform in [lo, hi) and normal with mean/std
  for (int i = 0; i < 1000; ++i) {
    const double u = uniform_at<double>(g, static_cast<std::uint64_t>(i), -3.0, 5.0);
    CHECK(u >= -3.0);
    CHECK(u < 5.0);
    CHECK(normal_at<double>(g, static_cast<std::uint64_t>(i), 10.0, 2.0) ==
          doctest::Approx(10.0 + 2.0 * normal_at<double>(g, static_cast<std::uint64_t>(i))).epsilon(1e-15));
  }
}

TEST_CASE("truncated normals stay inside their bounds") {
  const random_stream g{5, 0};
  double s2 = 0;
  constexpr int n = 200000;
  for (int i = 0; i < n; ++i) {
    const double x = truncated_normal_at<double>(g, static_cast<std::uint64_t>(i), 0.0, 1.0, -2.0, 2.0);
    CHECK(x >= -2.0);
    CHECK(x <= 2.0);
    s2 += x * x;
  }
  // Variance of N(0,1) truncated to [-2, 2]: 1 - 4·φ(2)/(Φ(2) - Φ(-2)) = 0.7737.
  CHECK(std::abs(s2 / n - 0.77367) < 1e-2);
  // Inside the bounds, the first draw is the plain normal.
  const double z = normal_at<double>(g, 3);
  if (std::abs(z) <= 2) CHECK(truncated_normal_at<double>(g, 3, 0.0, 1.0, -2.0, 2.0) == z);
}
