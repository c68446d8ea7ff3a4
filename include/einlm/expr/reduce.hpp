// einlm/expr/reduce.hpp — reduction nodes: einops' reduce of any expression.
//
//   reduce_node<X, E, Op>   element at output index i combines x over every value of the reduced
//                           elementary axes (pattern::index_map::reduced) with Op, one of the
//                           reductions below. The result is a lazy expression like any other:
//                           reduce(rearrange(x * y)) is evaluated in one pass over the output.
// Reductions (einops' names): sum, mean, prod, max, min, any, all. Types, as in NumPy/PyTorch:
// floating inputs reduce in their accumulator type (float for bf16/fp16) and keep their type; sum
// and prod of integers or bool give int64; mean needs a floating input; max and min keep the type
// (NaN propagates); any and all give bool.
#pragma once

#include <cstdint>
#include <limits>
#include <type_traits>

#include "einlm/core/config.hpp"
#include "einlm/core/dtype.hpp"
#include "einlm/core/extents.hpp"
#include "einlm/core/simd.hpp"
#include "einlm/expr/expression.hpp"
#include "einlm/expr/rearrange.hpp"
#include "einlm/pattern/lower.hpp"

namespace einlm {

namespace reductions {

struct sum {
  static constexpr const char* name = "sum";
  template <class T>
  using value = std::conditional_t<is_floating_v<T>, T, std::int64_t>;
  template <class A>
  EINLM_HD static A init() { return A(0); }
  template <class A>
  EINLM_HD static A combine(A a, A x) { return a + x; }
  template <class A>
  EINLM_HD static A finish(A a, index_t) { return a; }
};
struct mean {
  static constexpr const char* name = "mean";
  template <class T>
  using value = T;
  template <class A>
  EINLM_HD static A init() { return A(0); }
  template <class A>
  EINLM_HD static A combine(A a, A x) { return a + x; }
  template <class A>
  EINLM_HD static A finish(A a, index_t n) { return a / static_cast<A>(n); }
};
struct prod {
  static constexpr const char* name = "prod";
  template <class T>
  using value = std::conditional_t<is_floating_v<T>, T, std::int64_t>;
  template <class A>
  EINLM_HD static A init() { return A(1); }
  template <class A>
  EINLM_HD static A combine(A a, A x) { return a * x; }
  template <class A>
  EINLM_HD static A finish(A a, index_t) { return a; }
};
struct max {
  static constexpr const char* name = "max";
  template <class T>
  using value = T;
  template <class A>
  EINLM_HD static A init() {
    if constexpr (std::is_floating_point_v<A>) return -std::numeric_limits<A>::infinity();
    else return std::numeric_limits<A>::lowest();
  }
  template <class A>
  EINLM_HD static A combine(A a, A x) { return (x > a || x != x) ? x : a; }
  template <class A>
  EINLM_HD static A finish(A a, index_t) { return a; }
};
struct min {
  static constexpr const char* name = "min";
  template <class T>
  using value = T;
  template <class A>
  EINLM_HD static A init() {
    if constexpr (std::is_floating_point_v<A>) return std::numeric_limits<A>::infinity();
    else return std::numeric_limits<A>::max();
  }
  template <class A>
  EINLM_HD static A combine(A a, A x) { return (x < a || x != x) ? x : a; }
  template <class A>
  EINLM_HD static A finish(A a, index_t) { return a; }
};
struct any {
  static constexpr const char* name = "any";
  template <class T>
  using value = bool;
  template <class A>
  EINLM_HD static A init() { return false; }
  template <class A>
  EINLM_HD static A combine(A a, A x) { return a || x; }
  template <class A>
  EINLM_HD static A finish(A a, index_t) { return a; }
};
struct all {
  static constexpr const char* name = "all";
  template <class T>
  using value = bool;
  template <class A>
  EINLM_HD static A init() { return true; }
  template <class A>
  EINLM_HD static A combine(A a, A x) { return a && x; }
  template <class A>
  EINLM_HD static A finish(A a, index_t) { return a; }
};

}  // namespace reductions

/// x reduced with Op over the map's reduced axes; see the file comment.
template <class X, extents_like E, class Op>
class reduce_node : public expression_base {
 public:
  using input_type = typename X::value_type;
  using value_type = typename Op::template value<input_type>;
  using compute_type = compute_t<value_type>;
  /// The type values are combined in: the input's accumulator for floating sums, else the result.
  using accumulate_type = std::conditional_t<is_floating_v<value_type>, accumulator_t<value_type>, compute_type>;
  using extents_type = E;
  using space = typename X::space;
  static constexpr std::size_t R = E::rank();

  reduce_node(const X& x, const E& e, const pattern::index_map& map) : x_(x), extents_(e), map_(map) {
    count_ = 1;
    for (int a = 0; a < map.n_elem; ++a) {
      if (map.is_reduced(a)) {
        reduced_[n_reduced_++] = static_cast<std::int8_t>(a);
        count_ *= map.length[a];
      }
    }
  }

  EINLM_HD const E& extents() const { return extents_; }
  EINLM_HD compute_type at(const index_array<R>& idx) const {
    index_t el[pattern::max_elementary] = {};
    map_.decompose(idx, el);
    accumulate_type acc = Op::template init<accumulate_type>();
    if (count_ > 0) {
      while (true) {
        acc = Op::combine(acc, convert<accumulate_type>(x_.at(map_.compose<X::R>(el))));
        // Odometer over the reduced axes (the last varies fastest).
        int k = n_reduced_ - 1;
        for (; k >= 0; --k) {
          const int a = reduced_[k];
          if (++el[a] < map_.length[a]) break;
          el[a] = 0;
        }
        if (k < 0) break;
      }
    }
    return convert<compute_type>(Op::finish(acc, count_));
  }
  using cursor = detail::indexed_cursor<reduce_node>;
  EINLM_HD cursor row(const index_array<R>& idx, bool splat) const { return cursor{*this, idx, splat}; }
  bool rows_ok() const { return false; }
  bool flat_ok() const { return false; }
  template <class F>
  void for_each_leaf(F&& f) const {
    x_.for_each_leaf(f);
  }
  /// Number of input elements combined into each output element.
  index_t reduced_count() const { return count_; }

 private:
  X x_;
  E extents_;
  pattern::index_map map_;
  std::int8_t reduced_[pattern::max_elementary] = {};
  int n_reduced_ = 0;
  index_t count_ = 1;
};

}  // namespace einlm
