// einlm/expr/generators.hpp — expressions computed from the element's position alone.
//
//   arange<T>(e, start = 0, step = 1)      start + i·step for the row-major position i
//   full<T>(e, value)                      every element equal to value
//   uniform<T>(e, g, lo = 0, hi = 1)       Philox uniform numbers of stream g (einlm/core/random.hpp)
//   normal<T>(e, g, mean = 0, std = 1)     Philox normal numbers
//   truncated_normal<T>(e, g, mean, std, a, b)   normal numbers restricted to [a, b]
//
// `e` is an extents object (extents<2, 3>{} or dims<2>{rows, cols}). Generators read no memory,
// so they evaluate on either executor; the random ones give bit-identical values on both, since
// element i depends on (seed, stream, i) only.
#pragma once

#include <cstdint>
#include <type_traits>

#include "einlm/core/config.hpp"
#include "einlm/core/dtype.hpp"
#include "einlm/core/extents.hpp"
#include "einlm/core/random.hpp"
#include "einlm/core/simd.hpp"
#include "einlm/expr/expression.hpp"

namespace einlm {

/// A node whose element at row-major position i is gen(i) (converted to T's compute type).
template <class T, extents_like E, class Gen>
class generator_node : public expression_base {
 public:
  using value_type = T;
  using compute_type = compute_t<T>;
  using extents_type = E;
  using space = any_space;
  static constexpr std::size_t R = E::rank();

  generator_node(const E& e, Gen gen) : extents_(e), gen_(gen) {}

  EINLM_HD const E& extents() const { return extents_; }
  EINLM_HD compute_type at(const index_array<R>& idx) const { return gen_(linear(idx)); }

  struct cursor {
    Gen gen;
    std::uint64_t base;
    bool splat;
    EINLM_EXEC_CHECK_DISABLE
    template <class K>
    EINLM_HD kind_t<K, compute_type> load(index_t j) const {
      const std::uint64_t i = base + (splat ? 0 : static_cast<std::uint64_t>(j));
      if constexpr (std::is_same_v<K, scalar_kind>) {
        return gen(i);
      } else if constexpr (std::is_same_v<K, packet_kind>) {
        return simd::generate<compute_type>([&](int l) { return gen(splat ? i : i + static_cast<std::uint64_t>(l)); });
      } else {
        kind_t<K, compute_type> out;
        EINLM_UNROLL
        for (int l = 0; l < K::width; ++l) out[l] = gen(splat ? i : i + static_cast<std::uint64_t>(l));
        return out;
      }
    }
  };
  EINLM_HD cursor row(const index_array<R>& idx, bool splat) const { return cursor{gen_, linear(idx), splat}; }
  bool rows_ok() const { return true; }
  bool flat_ok() const { return true; }
  int contiguous_axis() const { return -1; }
  template <class F>
  void for_each_leaf(F&&) const {}

 private:
  EINLM_HD std::uint64_t linear(const index_array<R>& idx) const {
    std::uint64_t i = 0;
    for (std::size_t r = 0; r != R; ++r) i = i * static_cast<std::uint64_t>(extents_.extent(r)) + static_cast<std::uint64_t>(idx[r]);
    return i;
  }
  E extents_;
  Gen gen_;
};

namespace gen {
template <class T>
struct arange {
  double start, step;
  EINLM_HD compute_t<T> operator()(std::uint64_t i) const {
    return convert<compute_t<T>>(convert<T>(start + detail::mul_rn(static_cast<double>(i), step)));
  }
};
template <class T>
struct full {
  compute_t<T> value;
  EINLM_HD compute_t<T> operator()(std::uint64_t) const { return value; }
};
template <class T>
struct uniform {
  random_stream g;
  double lo, hi;
  EINLM_HD compute_t<T> operator()(std::uint64_t i) const { return convert<compute_t<T>>(uniform_at<T>(g, i, lo, hi)); }
};
template <class T>
struct normal {
  random_stream g;
  double mean, std;
  EINLM_HD compute_t<T> operator()(std::uint64_t i) const { return convert<compute_t<T>>(normal_at<T>(g, i, mean, std)); }
};
template <class T>
struct truncated_normal {
  random_stream g;
  double mean, std, a, b;
  EINLM_HD compute_t<T> operator()(std::uint64_t i) const {
    return convert<compute_t<T>>(truncated_normal_at<T>(g, i, mean, std, a, b));
  }
};
}  // namespace gen

template <dtype T, extents_like E>
auto arange(const E& e, double start = 0.0, double step = 1.0) {
  return generator_node<T, E, gen::arange<T>>(e, {start, step});
}

template <dtype T, extents_like E>
auto full(const E& e, T value) {
  return generator_node<T, E, gen::full<T>>(e, {convert<compute_t<T>>(value)});
}

template <dtype T, extents_like E>
auto uniform(const E& e, random_stream g, double lo = 0.0, double hi = 1.0) {
  static_assert(is_floating_v<T>, "uniform: the element type must be floating");
  return generator_node<T, E, gen::uniform<T>>(e, {g, lo, hi});
}

template <dtype T, extents_like E>
auto normal(const E& e, random_stream g, double mean = 0.0, double std = 1.0) {
  static_assert(is_floating_v<T>, "normal: the element type must be floating");
  return generator_node<T, E, gen::normal<T>>(e, {g, mean, std});
}

template <dtype T, extents_like E>
auto truncated_normal(const E& e, random_stream g, double mean, double std, double a, double b) {
  static_assert(is_floating_v<T>, "truncated_normal: the element type must be floating");
  if (!(a < b)) throw value_error(detail::concat("truncated_normal: the bounds [", a, ", ", b, "] are empty"));
  return generator_node<T, E, gen::truncated_normal<T>>(e, {g, mean, std, a, b});
}

}  // namespace einlm
