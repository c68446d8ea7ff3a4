// Shared helpers of the test suites: ulp distances, random inputs from an independent generator
// (std::mt19937_64, so that einlm's own Philox is never its own reference), and fixture paths.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

namespace einlm::test {

/// Distance in units in the last place between two floats (or doubles) of the same sign class;
/// 0 for equal values (NaN == NaN, +0 == -0).
template <class T>
std::uint64_t ulp_distance(T a, T b) {
  static_assert(std::is_floating_point_v<T>);
  if (std::isnan(a) && std::isnan(b)) return 0;
  if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<std::uint64_t>::max();
  if (a == b) return 0;
  using I = std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t>;
  I ia, ib;
  std::memcpy(&ia, &a, sizeof(T));
  std::memcpy(&ib, &b, sizeof(T));
  // Map the sign-magnitude bit patterns onto a monotonic integer line.
  const auto line = [](I v) -> long double {
    return v < 0 ? -static_cast<long double>(v & std::numeric_limits<I>::max()) : static_cast<long double>(v);
  };
  const long double d = line(ia) - line(ib);
  return static_cast<std::uint64_t>(d < 0 ? -d : d);
}

/// n values uniform in [lo, hi) from a seeded std::mt19937_64.
template <class T = float>
std::vector<T> random_values(std::size_t n, double lo, double hi, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(dist(rng));
  return v;
}

/// The directory holding cs336/ (EINLM_FIXTURES_DIR), or nothing when the fixtures are absent.
inline std::optional<std::string> fixtures_dir() {
  const char* dir = std::getenv("EINLM_FIXTURES_DIR");
  if (!dir || !*dir) return std::nullopt;
  return std::string(dir);
}

/// The directory of the committed test data (tests/data).
inline std::string test_data_dir() {
  const char* dir = std::getenv("EINLM_TEST_DATA_DIR");
  return dir && *dir ? std::string(dir) : std::string(EINLM_TEST_DATA_DIR_DEFAULT);
}

}  // namespace einlm::test
