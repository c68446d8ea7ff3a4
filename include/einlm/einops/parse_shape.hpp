// einlm/einops/parse_shape.hpp — einops' parse_shape, with the names known at compile time.
//
//   auto s = parse_shape<"b _ h w">(x);      s.get<"b">(), s["h"], s.size()
//   rearrange<"(b c h w) -> b c h w">(y, s, axis<"c", 3>{})   the parsed sizes as axis sizes
// Pattern: names, `_` (skip), `...` (skip any number of axes), anonymous numbers and `1`/`()`
// (checked against the shape); no brackets. A composition or a rank that cannot match is a compile
// error; lengths that do not match raise einlm::pattern_error with einops' message.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

#include "einlm/core/error.hpp"
#include "einlm/core/extents.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/expr/expression.hpp"
#include "einlm/pattern/errors.hpp"
#include "einlm/pattern/fixed_string.hpp"
#include "einlm/pattern/parse.hpp"

namespace einlm {

template <fixed_string Name>
struct axis_size;

namespace detail {

/// A fixed_string of length N copied from a constant string_view.
template <std::size_t N>
constexpr fixed_string<N> fixed_string_from(std::string_view s) {
  fixed_string<N> f{};
  for (std::size_t i = 0; i < N; ++i) f.chars[i] = s[i];
  return f;
}

}  // namespace detail

/// The named lengths of a shape, parsed with pattern P (see the file comment).
template <fixed_string P>
class parsed_shape {
 public:
  static constexpr bool is_parsed_shape = true;
  static constexpr pattern::side side = pattern::parse_side(P.view(), /*allow_underscore=*/true);
  static constexpr int count = [] {
    int n = 0;
    for (int i = 0; i < side.n_axes; ++i)
      if (!side.axes[i].ellipsis && !side.axes[i].anonymous() && side.axes[i].name != "_") ++n;
    return n;
  }();
  static constexpr auto names = [] {
    cuda::std::array<std::string_view, count + 1> v{};
    int n = 0;
    for (int i = 0; i < side.n_axes; ++i)
      if (!side.axes[i].ellipsis && !side.axes[i].anonymous() && side.axes[i].name != "_") v[n++] = side.axes[i].name;
    return v;
  }();

  /// Position of a name among the parsed names, or −1.
  static constexpr int index_of(std::string_view name) {
    for (int i = 0; i < count; ++i)
      if (names[i] == name) return i;
    return -1;
  }

  template <fixed_string Name>
  index_t get() const {
    constexpr int i = index_of(Name.view());
    static_assert(i >= 0, "parse_shape: the pattern has no axis of that name");
    return values_[i];
  }
  index_t operator[](std::string_view name) const {
    const int i = index_of(name);
    if (i < 0) throw value_error(detail::concat("parse_shape: no axis '", name, "' in \"", P.view(), "\""));
    return values_[i];
  }
  static constexpr int size() { return count; }

  /// The lengths as axis sizes (axis_size<"name">{length}…), for rearrange, reduce and repeat.
  auto axes() const {
    return [this]<std::size_t... I>(std::index_sequence<I...>) {
      return std::tuple{axis_size<detail::fixed_string_from<names[I].size()>(names[I])>{values_[I]}...};
    }(std::make_index_sequence<static_cast<std::size_t>(count)>{});
  }

  index_t values_[count > 0 ? count : 1] = {};
};

/// einops.parse_shape; see the file comment.
template <fixed_string P, class X>
  requires(array_like<X> || expression<X>)
parsed_shape<P> parse_shape(const X& x) {
  using S = parsed_shape<P>;
  constexpr pattern::side sd = S::side;
  if constexpr (!sd.ok()) {
    pattern::report_error<sd.error>();
    return {};
  } else {
    static_assert(!sd.has_composition, "einops: Can't parse shape with composite axes");
    const auto e = [&] {
      if constexpr (array_like<X>) return as_view(x).extents();
      else return x.extents();
    }();
    using E = std::remove_cvref_t<decltype(e)>;
    constexpr int rank = static_cast<int>(E::rank());
    if constexpr (sd.has_ellipsis) {
      static_assert(rank >= sd.n_groups - 1, "einops: Can't parse shape with this number of dimensions");
    } else {
      static_assert(rank == sd.n_groups, "einops: Can't parse shape with different number of dimensions");
    }
    const auto shape = to_array(e);
    auto fail = [&](const char* what) {
      throw pattern_error(detail::concat(what, ": ", P.view(), " ", detail::format_shape(shape)));
    };
    S out;
    int named = 0;
    int dim = 0;
    for (int g = 0; g < sd.n_groups; ++g) {
      if (g == sd.ellipsis_group) {
        dim += rank - (sd.n_groups - 1);
        continue;
      }
      const index_t length = shape[static_cast<std::size_t>(dim++)];
      if (sd.group_size[g] == 0) {
        if (length != 1) fail("Length of axis is not 1");
        continue;
      }
      const pattern::axis_ref& a = sd.axes[sd.group_first[g]];
      if (a.anonymous()) {
        if (a.length != length) fail("Length of anonymous axis does not match");
      } else if (a.name != "_") {
        out.values_[named++] = length;
      }
    }
    return out;
  }
}

}  // namespace einlm
