// einlm/expr/broadcast.hpp — NumPy broadcasting of expression nodes.
//
//   broadcast_to(x, e)   x stretched to extents e (x's axes align with e's from the right; each of
//                        x's extents equals e's or is 1). Assigning an expression to a larger
//                        destination broadcasts it this way, as NumPy's `a[...] = b` does.
// The detail:: helpers are shared with the element-wise nodes: a parent records, per argument, a
// mask of the axes it broadcasts, and hands the argument index 0 along them (so leaves need no zero
// strides, and any node can be broadcast).
#pragma once

#include <type_traits>

#include "einlm/core/config.hpp"
#include "einlm/core/error.hpp"
#include "einlm/core/extents.hpp"
#include "einlm/expr/expression.hpp"

namespace einlm {

namespace detail {

/// NumPy broadcasting of operand extents a into the running result extents ext (rank R ≥ a's);
/// false on a mismatch.
template <std::size_t R, class AE>
bool broadcast_into(index_array<R>& ext, const AE& a) {
  constexpr std::size_t ra = AE::rank();
  for (std::size_t k = 0; k != ra; ++k) {
    const index_t n = static_cast<index_t>(a.extent(k));
    index_t& e = ext[k + R - ra];
    if (e == 1) e = n;
    else if (n != 1 && n != e) return false;
  }
  return true;
}

/// Bit k is set when axis k of an operand of extents a has length 1 but the result's does not.
template <class RE, class AE>
unsigned broadcast_mask(const RE& result, const AE& a) {
  constexpr std::size_t R = RE::rank(), ra = AE::rank();
  unsigned m = 0;
  for (std::size_t k = 0; k != ra; ++k)
    if (a.extent(k) == 1 && result.extent(k + R - ra) != 1) m |= 1u << k;
  return m;
}

/// True when two extents objects have the same rank and values.
template <class A, class B>
bool same_shape(const A& a, const B& b) {
  if constexpr (A::rank() != B::rank()) {
    return false;
  } else {
    for (std::size_t k = 0; k != A::rank(); ++k)
      if (a.extent(k) != b.extent(k)) return false;
    return true;
  }
}

/// The index of an operand of rank RA for the result index idx: aligned right, 0 on masked axes.
template <std::size_t RA, std::size_t R>
EINLM_HD index_array<RA> broadcast_index(const index_array<R>& idx, unsigned mask) {
  index_array<RA> c{};
  for (std::size_t k = 0; k != RA; ++k) c[k] = ((mask >> k) & 1u) ? 0 : idx[k + R - RA];
  return c;
}

/// True when an operand of rank RA is broadcast along the result's last axis.
template <std::size_t RA>
EINLM_HD bool broadcast_inner(unsigned mask) {
  if constexpr (RA == 0) return true;
  else return (mask >> (RA - 1)) & 1u;
}

}  // namespace detail

/// x stretched to extents E (see the file comment).
template <class X, extents_like E>
class broadcast_node : public expression_base {
 public:
  using value_type = typename X::value_type;
  using compute_type = typename X::compute_type;
  using extents_type = E;
  using space = typename X::space;
  static constexpr std::size_t R = E::rank();
  static_assert(X::R <= R, "einlm: cannot broadcast to a smaller rank");

  broadcast_node(const X& x, const E& e) : x_(x), extents_(e) {
    index_array<R> ext = to_array(e);
    const index_array<R> target = ext;
    if (!detail::broadcast_into(ext, x.extents()) || ext != target)
      throw shape_error(detail::concat("broadcast_to: an expression of shape ", shape_string(x.extents()),
                                       " cannot be broadcast to shape ", shape_string(e)));
    mask_ = detail::broadcast_mask(e, x.extents());
  }

  EINLM_HD const E& extents() const { return extents_; }
  EINLM_HD compute_type at(const index_array<R>& idx) const {
    return x_.at(detail::broadcast_index<X::R>(idx, mask_));
  }
  using cursor = typename X::cursor;
  EINLM_HD cursor row(const index_array<R>& idx, bool splat) const {
    return x_.row(detail::broadcast_index<X::R>(idx, mask_), splat || detail::broadcast_inner<X::R>(mask_));
  }
  bool rows_ok() const { return x_.rows_ok(); }
  bool flat_ok() const { return x_.flat_ok() && detail::same_shape(x_.extents(), extents_); }
  int contiguous_axis() const {
    const int c = x_.contiguous_axis();
    return c >= 0 && !((mask_ >> c) & 1u) ? c + static_cast<int>(R - X::R) : -1;
  }
  template <class F>
  void for_each_leaf(F&& f) const {
    x_.for_each_leaf(f);
  }
  /// Forwards a child's store_row (see reduce_node) when nothing is broadcast.
  template <class T>
  bool store_row(const index_array<R>& idx, index_t begin, index_t end, T* out) const {
    if constexpr (X::R == R && requires { x_.store_row(idx, begin, end, out); }) {
      if (mask_ == 0) return x_.store_row(idx, begin, end, out);
    }
    return false;
  }
  /// Forwards a child's store_row_split (see reduce_node) when nothing is broadcast.
  template <class T, class RunUnits>
  bool store_row_split(const index_array<R>& idx, index_t n, T* out, RunUnits&& run_units) const {
    if constexpr (X::R == R && requires { x_.store_row_split(idx, n, out, run_units); }) {
      if (mask_ == 0) return x_.store_row_split(idx, n, out, run_units);
    }
    return false;
  }
  const X& child() const { return x_; }
  /// Bit k: axis k of the child is broadcast.
  unsigned mask() const { return mask_; }

 private:
  X x_;
  E extents_;
  unsigned mask_ = 0;
};

/// The operand stretched to extents e (NumPy broadcasting; shape_error when it cannot be).
template <class X, extents_like E>
auto broadcast_to(X&& x, const E& e) {
  auto a = as_expression(std::forward<X>(x));
  using A = decltype(a);
  static_assert(A::R <= E::rank(), "einlm: the expression's rank exceeds the destination's rank");
  static_assert(broadcastable_v<typename A::extents_type, E> && compatible_extents_v<broadcast_t<typename A::extents_type, E>, E>,
                "einlm: the expression's static shape cannot be broadcast to the destination's static shape");
  return broadcast_node<A, E>(a, e);
}

}  // namespace einlm
