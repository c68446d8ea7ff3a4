// Helpers of the einops tests: inputs, and element-for-element comparison with goldens written by
// einops 0.8 + NumPy (tools/make_einops_goldens.py → tests/data/einops/*.npz).
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <type_traits>
#include <utility>
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

/// A tensor of static extents E holding start, start + 1, start + 2, … (NumPy's
/// arange(start, start + prod(shape)).reshape(shape)).
template <class T, extents_like E>
tensor<T, E> iota(double start = 0) {
  static_assert(is_static_v<E>, "iota: use iota_dynamic or iota_shaped for dynamic extents");
  tensor<T, E> t;
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = convert<T>(start + static_cast<double>(i));
  return t;
}

/// The same with extents of type E, some or all of them dynamic, given in full by `shape` (static
/// entries must agree with E).
template <class T, extents_like E>
tensor<T, E> iota_shaped(const index_array<E::rank()>& shape, double start = 0) {
  tensor<T, E> t(check_extents<E>(shape, "iota_shaped"));
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = convert<T>(start + static_cast<double>(i));
  return t;
}

/// The same with dynamic extents (so that shape checks happen at run time).
template <class T, std::size_t R>
tensor<T, dims<R>> iota_dynamic(const index_array<R>& shape, double start = 0) {
  return iota_shaped<T, dims<R>>(shape, start);
}

/// t with every element divided by `divisor` in T's arithmetic (NumPy's x / divisor for an array x
/// of dtype T and a divisor of the same dtype).
template <class T, extents_like E>
tensor<T, E> divided(tensor<T, E>&& t, T divisor) {
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = t.data()[i] / divisor;
  return std::move(t);
}

/// A tensor from a golden array (dtype and shape checked).
template <class T, extents_like E>
tensor<T, E> golden_tensor(const npy_array& a, const std::string& what) {
  return to_tensor<T, E>(a, what);
}

/// The input stored as `member` of archive `archive` (inputs that are not an arange: random
/// values, booleans), as a tensor of element type T and extents E (dtype and shape checked).
template <class T, extents_like E>
tensor<T, E> einops_input(const std::string& archive, const std::string& member) {
  const auto& goldens = einops_goldens(archive);
  const auto it = goldens.find(member);
  if (it == goldens.end()) throw io_error("no input '" + member + "' in " + archive + ".npz");
  return golden_tensor<T, E>(it->second, archive + ".npz[" + member + "]");
}

/// The error einlm reports at compile time (a static_assert carrying einops' sentence) when pattern
/// P is applied with operation Op to an input of extents E with the axis arguments A…;
/// error_code::none when the pattern and the static shapes are fine. Lets a test check a
/// compile-time error (a wrong rank: ranks are part of the type) without failing to compile.
template <fixed_string P, pattern::op_kind Op, extents_like E, class... A>
constexpr pattern::error_code static_error() {
  return einlm::detail::einops_plan<P, Op, E, A...>::error;
}

namespace detail {

/// Element i of a golden array as a double (bool, signed and unsigned integers, float32/64).
inline bool golden_value(const npy_array& g, index_t i, double& out) {
  const std::size_t item = einlm::detail::npy_item_size(g.descr);
  if (item == 0) return false;
  const std::uint8_t* p = g.data.data() + static_cast<std::size_t>(i) * item;
  const char kind = g.descr[1];
  auto read = [&](auto v) {
    std::memcpy(&v, p, sizeof(v));
    out = static_cast<double>(v);
    return true;
  };
  if (kind == 'b') {
    out = *p != 0 ? 1.0 : 0.0;
    return true;
  }
  if (kind == 'f' && item == 4) return read(float{});
  if (kind == 'f' && item == 8) return read(double{});
  if (kind == 'i' && item == 1) return read(std::int8_t{});
  if (kind == 'i' && item == 2) return read(std::int16_t{});
  if (kind == 'i' && item == 4) return read(std::int32_t{});
  if (kind == 'i' && item == 8) return read(std::int64_t{});
  if (kind == 'u' && item == 1) return read(std::uint8_t{});
  if (kind == 'u' && item == 2) return read(std::uint16_t{});
  if (kind == 'u' && item == 4) return read(std::uint32_t{});
  if (kind == 'u' && item == 8) return read(std::uint64_t{});
  return false;
}

}  // namespace detail

/// Evaluates `result` (any expression, view or tensor) and checks shape and every element against
/// the golden array `member` of archive `archive`; floating results within `tolerance` (relative to
/// the golden value, absolute below 1), exactly when the tolerance is 0. Reports the first
/// differing element only.
template <class X>
void check_golden(const X& result, const std::string& archive, const std::string& member, double tolerance = 0) {
  const auto& goldens = einops_goldens(archive);
  const auto it = goldens.find(member);
  REQUIRE_MESSAGE(it != goldens.end(), "no golden '", member, "' in ", archive, ".npz");
  const npy_array& g = it->second;
  const auto value = eval(as_expression(result));
  const auto shape = to_array(value.extents());
  REQUIRE_MESSAGE(std::vector<index_t>(shape.begin(), shape.end()) == g.shape, member, ": shape ",
                  shape_string(value.extents()), " differs from einops' ", einlm::detail::format_shape(g.shape));
  double probe = 0;
  REQUIRE_MESSAGE((g.size() == 0 || detail::golden_value(g, 0, probe)), member, ": unsupported golden dtype ", g.descr);
  // The first element that differs, if any: one message per case is enough.
  index_t bad = -1;
  double got = 0, expected = 0;
  for (index_t i = 0; i < value.size() && bad < 0; ++i) {
    detail::golden_value(g, i, expected);
    got = convert<double>(value.data()[i]);
    const bool same = got == expected || (std::isnan(got) && std::isnan(expected)) ||
                      (tolerance > 0 && std::abs(got - expected) <= tolerance * std::max(1.0, std::abs(expected)));
    if (!same) bad = i;
  }
  CHECK_MESSAGE(bad < 0, member, " element ", bad, " (of ", value.size(), "): einlm ", got, ", einops ", expected,
                tolerance > 0 ? " (tolerance " + std::to_string(tolerance) + ")" : std::string(" (exact)"));
}

}  // namespace einlm::test
