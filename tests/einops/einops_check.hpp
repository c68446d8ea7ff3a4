// Helpers of the einops tests: inputs, and element-for-element comparison with goldens written by
// einops 0.8 + NumPy (tools/make_einops_goldens.py → tests/data/einops/*.npz).
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include "einlm/core/npy.hpp"
#include "einlm/einops.hpp"
#include "support/check.hpp"

namespace einlm::test {

/// The golden archive tests/data/einops/<name>.npz, read once.
inline const std::map<std::string, npy_array>& einops_goldens(const std::string& name) {
  static std::map<std::string, std::map<std::string, npy_array>> cache;
  auto it = cache.find(name);
  if (it == cache.end()) it = cache.emplace(name, read_npz(test_data_dir() + "/einops/" + name + ".npz")).first;
  return it->second;
}

/// A tensor of static extents E holding 0, 1, 2, … (NumPy's arange(prod(shape)).reshape(shape)).
template <class T, extents_like E>
tensor<T, E> iota() {
  tensor<T, E> t;
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = convert<T>(i);
  return t;
}

/// The same with dynamic extents (so that shape checks happen at run time).
template <class T, std::size_t R>
tensor<T, dims<R>> iota_dynamic(const index_array<R>& shape) {
  tensor<T, dims<R>> t(from_array<dims<R>>(shape));
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = convert<T>(i);
  return t;
}

/// A tensor from a golden array (dtype and shape checked).
template <class T, extents_like E>
tensor<T, E> golden_tensor(const npy_array& a, const std::string& what) {
  return to_tensor<T, E>(a, what);
}

/// Evaluates `result` (any expression, view or tensor) and checks shape and every element against
/// the golden array `member` of archive `archive`; floating results within `tolerance` (relative).
template <class X>
void check_golden(const X& result, const std::string& archive, const std::string& member, double tolerance = 0) {
  const auto& goldens = einops_goldens(archive);
  const auto it = goldens.find(member);
  REQUIRE_MESSAGE(it != goldens.end(), "no golden '", member, "' in ", archive, ".npz");
  const npy_array& g = it->second;
  const auto value = eval(as_expression(result));
  using T = typename std::remove_cvref_t<decltype(value)>::value_type;
  const auto shape = to_array(value.extents());
  REQUIRE_MESSAGE(std::vector<index_t>(shape.begin(), shape.end()) == g.shape, member, ": shape ",
                  shape_string(value.extents()), " differs from einops' ", detail::format_shape(g.shape));
  const std::size_t item = g.data.size() / static_cast<std::size_t>(std::max<index_t>(g.size(), 1));
  for (index_t i = 0; i < value.size(); ++i) {
    double expected = 0;
    const std::uint8_t* p = g.data.data() + static_cast<std::size_t>(i) * item;
    const char kind = g.descr[1];
    if (kind == 'f' && item == 4) { float f; std::memcpy(&f, p, 4); expected = f; }
    else if (kind == 'f' && item == 8) std::memcpy(&expected, p, 8);
    else if (kind == 'i' && item == 8) { std::int64_t v; std::memcpy(&v, p, 8); expected = static_cast<double>(v); }
    else if (kind == 'i' && item == 4) { std::int32_t v; std::memcpy(&v, p, 4); expected = v; }
    else if (kind == 'b') expected = *p ? 1.0 : 0.0;
    else FAIL("unsupported golden dtype " << g.descr);
    const double got = convert<double>(value.data()[i]);
    if (tolerance == 0) {
      CHECK_MESSAGE(got == expected, member, " element ", i, ": ", got, " != ", expected);
    } else {
      CHECK_MESSAGE(std::abs(got - expected) <= tolerance * std::max(1.0, std::abs(expected)), member, " element ", i,
                    ": ", got, " vs ", expected);
    }
    if (got != expected && tolerance == 0) break;  // one message per case is enough
  }
  (void)sizeof(T);
}

}  // namespace einlm::test
