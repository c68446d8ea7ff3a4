// einlm/exec/common.hpp — what the CPU and CUDA executors share: the shape check of an
// assignment, the choice of schedule, and row-major index arithmetic.
#pragma once

#include <type_traits>
#include <utility>

#include "einlm/core/config.hpp"
#include "einlm/core/error.hpp"
#include "einlm/core/extents.hpp"

namespace einlm {

namespace detail {

template <class Dst, class X>
void check_assign_shapes(const Dst& dst, const X& x, const char* op) {
  static_assert(Dst::extents_type::rank() == X::extents_type::rank(),
                "einlm: the expression's rank differs from the destination's rank");
  static_assert(compatible_extents_v<typename Dst::extents_type, typename X::extents_type>,
                "einlm: the expression's static shape differs from the destination's static shape");
  if (to_array(dst.extents()) != to_array(x.extents()))
    throw shape_error(concat(op, ": cannot store an expression of shape ", shape_string(x.extents()),
                             " into a destination of shape ", shape_string(dst.extents())));
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
