// einlm/exec/common.hpp — what the CPU and CUDA executors share: the shape check of an
// assignment, the choice of schedule, and row-major index arithmetic.
#pragma once

#include <type_traits>
#include <utility>

#include "einlm/core/config.hpp"
#include "einlm/core/error.hpp"
#include "einlm/core/extents.hpp"
#include "einlm/expr/broadcast.hpp"

namespace einlm {

namespace detail {

/// The expression to evaluate into dst: x itself when the shapes agree, x broadcast to dst's
/// shape otherwise (NumPy's `dst[...] = x`); shape_error naming `op` and both shapes when neither.
template <class Dst, class X>
auto fit_to_destination(const Dst& dst, const X& x, const char* op) {
  using DE = typename Dst::extents_type;
  using XE = typename X::extents_type;
  static_assert(XE::rank() <= DE::rank(), "einlm: the expression's rank exceeds the destination's rank");
  static_assert(broadcastable_v<XE, DE> && compatible_extents_v<broadcast_t<XE, DE>, DE>,
                "einlm: the expression's static shape cannot be broadcast to the destination's static shape");
  index_array<DE::rank()> ext = to_array(dst.extents());
  if (!broadcast_into(ext, x.extents()) || ext != to_array(dst.extents()))
    throw shape_error(concat(op, ": cannot store an expression of shape ", shape_string(x.extents()),
                             " into a destination of shape ", shape_string(dst.extents())));
  return broadcast_node<X, DE>(x, dst.extents());
}

/// Which schedule an assignment takes (einlm/exec/cpu.hpp describes them; the CUDA executor runs
/// `rows` as `indexed`).
enum class schedule { flat, rows, indexed };

template <class DstV, class X>
schedule choose_schedule(const DstV& dst, const X& x) {
  constexpr std::size_t R = X::extents_type::rank();
  if (dst.is_contiguous() && x.flat_ok()) return schedule::flat;
  if constexpr (R > 0)
    if ((dst.extent(R - 1) <= 1 || dst.stride(R - 1) == 1) && x.rows_ok()) return schedule::rows;
  return schedule::indexed;
}

/// Row-major multi-index of linear position i within extents e.
template <std::size_t R, class E>
EINLM_HD index_array<R> unravel(index_t i, const E& e) {
  index_array<R> idx{};
  for (std::size_t r = R; r-- > 0;) {
    const index_t n = static_cast<index_t>(e.extent(r));
    idx[r] = i % n;
    i /= n;
  }
  return idx;
}

}  // namespace detail

}  // namespace einlm
