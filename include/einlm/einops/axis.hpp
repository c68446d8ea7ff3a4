// einlm/einops/axis.hpp — axis sizes given to einops operations.
//
//   axis<"h", 8>{}          the length of axis h, known at compile time (static result extents)
//   axis_size<"h">{n}       the length of axis h, known at run time
// The name is always a compile-time string, so that patterns are checked against it at compile time.
#pragma once

#include <cstdint>

#include "einlm/core/config.hpp"
#include "einlm/pattern/fixed_string.hpp"
#include "einlm/pattern/recipe.hpp"

namespace einlm {

/// The size of axis Name, known at compile time: axis<"h", 8>{}.
template <fixed_string Name, index_t Length>
struct axis {
  static constexpr bool is_einops_axis = true;
  static constexpr auto name = Name;
  static constexpr std::int64_t static_length = Length;
  static_assert(Length > 0, "einops: axis lengths must be positive");
  constexpr index_t value() const { return Length; }
};

/// The size of axis Name, known at run time: axis_size<"h">{n}.
template <fixed_string Name>
struct axis_size {
  static constexpr bool is_einops_axis = true;
  static constexpr auto name = Name;
  static constexpr std::int64_t static_length = pattern::unknown_length;
  index_t length;
  constexpr index_t value() const { return length; }
};

}  // namespace einlm
