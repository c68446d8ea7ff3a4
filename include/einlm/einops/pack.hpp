// einlm/einops/pack.hpp — einops' pack and unpack.
//
//   auto [packed, shapes] = pack<"i j * k">(a, b, c);
//       concatenates the inputs along the `*` position after flattening each input's `*` part (the
//       axes between the leading names and the trailing names; possibly none). `packed` is a new
//       tensor in the inputs' memory space (one pass per input); `shapes` lists each input's `*`
//       part, as einops' packed shapes (PS).
//   auto [x, y, z] = unpack<"i j * k">(packed, extents<>{}, extents<7>{}, packed_shape<2>{7, -1});
//       views (no copy) of the pieces, one per `*` shape given: an extents object (static), or a
//       packed_shape<K>{…} in which one length may be −1 (inferred, at most one in all shapes).
//   stack(list)   a std::vector or std::array of equally shaped operands (tensors, views, lazy
//                 expressions) copied into one new tensor with a new first axis (np.stack)
// Pattern rules and errors are einops': names separated by spaces, exactly one `*`, no duplicates,
// valid names. Static violations are compile errors; a tensor of too small a rank is a compile
// error; run-time mismatches raise einlm::pattern_error with einops' message.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <array>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "einlm/core/error.hpp"
#include "einlm/core/extents.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/expr.hpp"
#include "einlm/expr/rearrange.hpp"
#include "einlm/pattern/errors.hpp"
#include "einlm/pattern/fixed_string.hpp"
#include "einlm/pattern/lower.hpp"
#include "einlm/pattern/parse.hpp"

namespace einlm {

/// The `*` part of one unpacked piece, lengths given at run time; −1 marks the one inferred length.
template <std::size_t K>
struct packed_shape {
  index_t values[K > 0 ? K : 1] = {};
  static constexpr std::size_t rank() { return K; }
};
template <class... I>
packed_shape(I...) -> packed_shape<sizeof...(I)>;

namespace pattern {

enum class pack_error : std::uint8_t { none, duplicates, no_star, invalid_name };

struct pack_pattern {
  int before = 0, after = 0;
  pack_error error = pack_error::none;
  std::string_view bad_name;
};

/// einops' analyze_pattern for pack/unpack.
constexpr pack_pattern analyze_pack(std::string_view p) {
  pack_pattern out{};
  std::string_view names[max_side_axes] = {};
  int n = 0, star = -1;
  std::size_t i = 0;
  while (i < p.size()) {
    while (i < p.size() && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n')) ++i;
    const std::size_t start = i;
    while (i < p.size() && p[i] != ' ' && p[i] != '\t' && p[i] != '\n') ++i;
    if (i == start) break;
    const std::string_view name = p.substr(start, i - start);
    for (int k = 0; k < n; ++k)
      if (names[k] == name) out.error = pack_error::duplicates;
    if (n == max_side_axes) return out;
    names[n++] = name;
    if (name == "*") star = n - 1;
  }
  if (out.error != pack_error::none) return out;
  if (star < 0) {
    out.error = pack_error::no_star;
    return out;
  }
  for (int k = 0; k < n; ++k) {
    if (k != star && check_axis_name(names[k]) != error_code::none) {
      out.error = pack_error::invalid_name;
      out.bad_name = names[k];
      return out;
    }
  }
  out.before = star;
  out.after = n - star - 1;
  return out;
}

template <pack_error E>
constexpr void report_pack_error() {
  if constexpr (E == pack_error::duplicates) static_assert(E == pack_error::none, "einops: Duplicates in axes names in pack(...)");
  else if constexpr (E == pack_error::no_star) static_assert(E == pack_error::none, "einops: No *-axis in pack(...)");
  else if constexpr (E == pack_error::invalid_name) static_assert(E == pack_error::none, "einops: Invalid axis name in pack(...)");
}

}  // namespace pattern

namespace detail {

/// The index map of "dims[0..before) (dims[before..before+k)) dims[before+k..)": the `*` axes merged.
template <class E>
pattern::index_map merge_star_map(const E& e, int before, int star_rank) {
  pattern::index_map m{};
  const int r = static_cast<int>(E::rank());
  m.n_in = static_cast<std::int8_t>(r);
  m.n_elem = static_cast<std::int8_t>(r);
  for (int d = 0; d < r; ++d) {
    m.in_first[d] = static_cast<std::int8_t>(d);
    m.in_size[d] = 1;
    m.in_axes[d] = static_cast<std::int8_t>(d);
    m.out_axes[d] = static_cast<std::int8_t>(d);
    m.length[d] = static_cast<index_t>(e.extent(static_cast<std::size_t>(d)));
  }
  int o = 0;
  for (int d = 0; d < before; ++d, ++o) {
    m.out_first[o] = static_cast<std::int8_t>(d);
    m.out_size[o] = 1;
  }
  m.out_first[o] = static_cast<std::int8_t>(before);
  m.out_size[o] = static_cast<std::int8_t>(star_rank);
  ++o;
  for (int d = before + star_rank; d < r; ++d, ++o) {
    m.out_first[o] = static_cast<std::int8_t>(d);
    m.out_size[o] = 1;
  }
  m.n_out = static_cast<std::int8_t>(o);
  return m;
}

template <std::size_t Before, std::size_t After, class E>
struct pack_types {
  static constexpr std::size_t star = E::rank() - Before - After;
  static constexpr std::size_t star_static = [] {
    std::size_t p = 1;
    for (std::size_t d = Before; d != Before + star; ++d) {
      if (E::static_extent(d) == dyn) return dyn;
      p *= E::static_extent(d);
    }
    return p;
  }();
  template <std::size_t... B, std::size_t... A>
  static auto merged(std::index_sequence<B...>, std::index_sequence<A...>)
      -> extents<E::static_extent(B)..., star_static, E::static_extent(E::rank() - After + A)...>;
  using merged_extents = decltype(merged(std::make_index_sequence<Before>{}, std::make_index_sequence<After>{}));
};

constexpr std::size_t add_static(std::size_t a, std::size_t b) { return a == dyn || b == dyn ? dyn : a + b; }

}  // namespace detail

/// einops.pack; see the file comment.
template <fixed_string P, class... X>
  requires(sizeof...(X) > 0 && (array_like<X> && ...))
auto pack(const X&... xs) {
  constexpr pattern::pack_pattern pp = pattern::analyze_pack(P.view());
  if constexpr (pp.error != pattern::pack_error::none) {
    pattern::report_pack_error<pp.error>();
    return 0;
  } else {
    constexpr std::size_t nb = static_cast<std::size_t>(pp.before), na = static_cast<std::size_t>(pp.after);
    static_assert(((std::remove_cvref_t<decltype(as_view(xs))>::extents_type::rank() >= nb + na) && ...),
                  "einops: packed tensor has fewer axes than the pattern assumes (while pattern assumes at least "
                  "before + after axes)");
    using First = std::remove_cvref_t<decltype(as_view(std::get<0>(std::tie(xs...))))>;
    using T = typename First::value_type;
    using S = typename First::space;
    static_assert(((std::is_same_v<typename std::remove_cvref_t<decltype(as_view(xs))>::value_type, T>) && ...),
                  "pack: all inputs need the same element type");
    static_assert(((std::is_same_v<typename std::remove_cvref_t<decltype(as_view(xs))>::space, S>) && ...),
                  "pack: all inputs need to be in the same memory space");
    using M = typename detail::pack_types<nb, na, typename First::extents_type>::merged_extents;
    constexpr std::size_t star_static = [] {
      std::size_t t = 0;
      ((t = detail::add_static(
            t, detail::pack_types<nb, na, typename std::remove_cvref_t<decltype(as_view(std::declval<const X&>()))>::extents_type>::star_static)),
       ...);
      return t;
    }();
    using PackedE = concat_t<concat_t<subrange_t<M, 0, nb>, extents<star_static>>, subrange_t<M, nb + 1, na>>;

    // Shapes: the `*` part of each input; the other axes must agree with the first input's.
    std::vector<std::vector<index_t>> shapes;
    const auto first_extents = to_array(as_view(std::get<0>(std::tie(xs...))).extents());
    constexpr std::size_t first_rank = First::extents_type::rank();
    index_t total = 0;
    int i = 0;
    auto measure = [&](const auto& x) {
      const auto e = to_array(as_view(x).extents());
      const std::size_t r = e.size();
      std::vector<index_t> star(e.begin() + nb, e.begin() + (r - na));
      index_t n = 1;
      for (auto v : star) n *= v;
      for (std::size_t d = 0; d != nb; ++d)
        if (e[d] != first_extents[d])
          throw pattern_error(detail::concat("pack(..., \"", P.view(), "\"): packed tensor #", i, " has shape ",
                                             detail::format_shape(e), ", which does not match tensor #0's ",
                                             detail::format_shape(first_extents), " outside the *-axes"));
      for (std::size_t d = 0; d != na; ++d)
        if (e[r - na + d] != first_extents[first_rank - na + d])
          throw pattern_error(detail::concat("pack(..., \"", P.view(), "\"): packed tensor #", i, " has shape ",
                                             detail::format_shape(e), ", which does not match tensor #0's ",
                                             detail::format_shape(first_extents), " outside the *-axes"));
      shapes.push_back(std::move(star));
      total += n;
      ++i;
    };
    (measure(xs), ...);

    index_array<PackedE::rank()> packed_extents{};
    for (std::size_t d = 0; d != nb; ++d) packed_extents[d] = first_extents[d];
    packed_extents[nb] = total;
    for (std::size_t d = 0; d != na; ++d) packed_extents[nb + 1 + d] = first_extents[first_rank - na + d];
    tensor<T, PackedE, S> packed(from_array<PackedE>(packed_extents));

    index_t offset = 0;
    auto place = [&](const auto& x) {
      auto v = as_view(x);
      using V = decltype(v);
      using ME = typename detail::pack_types<nb, na, typename V::extents_type>::merged_extents;
      const int star_rank = static_cast<int>(V::extents_type::rank() - nb - na);
      const auto map = detail::merge_star_map(v.extents(), static_cast<int>(nb), star_rank);
      index_array<ME::rank()> me{};
      for (std::size_t d = 0; d != nb; ++d) me[d] = v.extent(d);
      index_t n = 1;
      for (int k = 0; k < star_rank; ++k) n *= v.extent(nb + static_cast<std::size_t>(k));
      me[nb] = n;
      for (std::size_t d = 0; d != na; ++d) me[nb + 1 + d] = v.extent(V::extents_type::rank() - na + d);
      const auto strides = strides_of(v.mapping());
      const rearranged_array<const T, ME, S> merged(v.data(), strides.data(), from_array<ME>(me), map);
      // The destination: packed[..., offset : offset + n, ...] as a strided view.
      const auto ps = strides_of(packed.view().mapping());
      index_array<ME::rank()> dst_strides{};
      for (std::size_t d = 0; d != ME::rank(); ++d) dst_strides[d] = ps[d];
      const view<T, ME, layout_strided, S> dst(packed.data() + offset * ps[nb],
                                               layout_strided::mapping<ME>(from_array<ME>(me), dst_strides));
      assign(dst, merged);
      offset += n;
    };
    (place(xs), ...);
    return std::pair{std::move(packed), std::move(shapes)};
  }
}

namespace detail {

template <class S>
inline constexpr bool is_packed_shape_v = false;
template <std::size_t K>
inline constexpr bool is_packed_shape_v<packed_shape<K>> = true;

template <class S>
constexpr std::size_t star_rank_v = [] {
  if constexpr (is_packed_shape_v<S>) return S::rank();
  else return S::extents_type::rank();
}();

template <class S>
struct star_extents {
  using type = S;  // an extents object
};
template <std::size_t K>
struct star_extents<packed_shape<K>> {
  using type = dims<K>;
};

}  // namespace detail

/// einops.unpack; see the file comment.
template <fixed_string P, class X, class... Shapes>
  requires(array_like<X>)
auto unpack(X&& x, const Shapes&... shapes) {
  constexpr pattern::pack_pattern pp = pattern::analyze_pack(P.view());
  auto v = as_view(std::forward<X>(x));
  using V = decltype(v);
  using E = typename V::extents_type;
  if constexpr (pp.error != pattern::pack_error::none) {
    pattern::report_pack_error<pp.error>();
    return 0;
  } else {
    constexpr std::size_t nb = static_cast<std::size_t>(pp.before), na = static_cast<std::size_t>(pp.after);
    static_assert(E::rank() == nb + 1 + na, "einops: unpack(...) received input of wrong dim");
    static_assert(((extents_like<Shapes> || detail::is_packed_shape_v<Shapes>) && ...),
                  "unpack: give one extents object or packed_shape<K>{…} per output");
    const std::string p(P.view());
    auto fail = [&](const std::string& what) {
      throw pattern_error(detail::concat("Error during unpack(..., \"", p, "\"): ", what));
    };
    // Lengths of the pieces along the packed axis (−1 = inferred).
    std::vector<std::vector<index_t>> star_values;
    auto read = [&](const auto& s) {
      using S = std::remove_cvref_t<decltype(s)>;
      std::vector<index_t> vals;
      if constexpr (detail::is_packed_shape_v<S>) {
        for (std::size_t k = 0; k != S::rank(); ++k) vals.push_back(s.values[k]);
      } else {
        for (std::size_t k = 0; k != S::rank(); ++k) vals.push_back(static_cast<index_t>(s.extent(k)));
      }
      star_values.push_back(std::move(vals));
    };
    (read(shapes), ...);
    // The packed shapes as a Python list of lists, as einops prints the lists it is given.
    auto ps_string = [&] {
      std::string s = "[";
      for (std::size_t i = 0; i < star_values.size(); ++i) {
        if (i) s += ", ";
        s += '[';
        for (std::size_t k = 0; k < star_values[i].size(); ++k) {
          if (k) s += ", ";
          s += std::to_string(star_values[i][k]);
        }
        s += ']';
      }
      return s + "]";
    };
    std::vector<index_t> lengths;
    int unknown = -1, n_unknown = 0;
    for (std::size_t i = 0; i < star_values.size(); ++i) {
      index_t n = 1;
      bool infer = false;
      for (auto val : star_values[i]) {
        if (val == -1) infer = true;
        else n *= val;
      }
      if (infer) {
        unknown = static_cast<int>(i);
        ++n_unknown;
      }
      lengths.push_back(infer ? -1 : n);
    }
    if (n_unknown > 1)
      throw pattern_error(detail::concat("unpack(..., ", p, ") received more than one -1 in ", ps_string(),
                                         " and can't infer dimensions"));
    const index_t axis = v.extent(nb);
    index_t known = 0;
    for (auto l : lengths)
      if (l >= 0) known += l;
    if (unknown >= 0) {
      const auto& sv = star_values[static_cast<std::size_t>(unknown)];
      index_t rest = 1;
      for (auto val : sv)
        if (val != -1) rest *= val;
      if (axis < known || rest == 0 || (axis - known) % rest != 0)
        fail(detail::concat("could not split axis of size ", axis, " into requested ", ps_string()));
      lengths[static_cast<std::size_t>(unknown)] = axis - known;
      for (auto& val : star_values[static_cast<std::size_t>(unknown)])
        if (val == -1) val = (axis - known) / rest;
    } else if (known != axis) {
      fail(detail::concat("could not split axis of size ", axis, " into requested ", ps_string()));
    }
    // Each piece: v[..., offset : offset + n, ...] with the packed axis split into the piece's shape.
    const auto strides = strides_of(v.mapping());
    index_t offset = 0;
    std::size_t i = 0;
    auto piece = [&](const auto& s) {
      using S = std::remove_cvref_t<decltype(s)>;
      using StarE = typename detail::star_extents<S>::type;
      using OutE = concat_t<concat_t<subrange_t<E, 0, nb>, StarE>, subrange_t<E, nb + 1, na>>;
      constexpr std::size_t k = StarE::rank();
      const auto& sv = star_values[i];
      index_array<OutE::rank()> ext{}, st{};
      for (std::size_t d = 0; d != nb; ++d) {
        ext[d] = v.extent(d);
        st[d] = strides[d];
      }
      index_t inner = strides[nb];
      for (std::size_t q = k; q-- > 0;) {
        ext[nb + q] = sv[q];
        st[nb + q] = inner;
        inner *= sv[q];
      }
      for (std::size_t d = 0; d != na; ++d) {
        ext[nb + k + d] = v.extent(nb + 1 + d);
        st[nb + k + d] = strides[nb + 1 + d];
      }
      const OutE out = check_extents<OutE>(ext, "unpack");
      auto result = view<typename V::element_type, OutE, layout_strided, typename V::space>(
          v.data() + offset * strides[nb], layout_strided::mapping<OutE>(out, st));
      offset += lengths[i];
      ++i;
      return result;
    };
    return std::tuple{piece(shapes)...};
  }
}

namespace detail {

template <class L>
struct list_traits;
template <class X>
struct list_traits<std::vector<X>> {
  using item = X;
  static constexpr std::size_t count = dyn;
};
template <class X, std::size_t N>
struct list_traits<std::array<X, N>> {
  using item = X;
  static constexpr std::size_t count = N;
};

template <class Out, std::size_t... I>
auto item_slice(Out& out, index_t i, std::index_sequence<I...>) {
  return slice(out, i, ((void)I, full_extent)...);
}

}  // namespace detail

/// Stacks equally shaped operands on a new first axis into a new tensor (see the file comment).
template <class L>
auto stack(const L& list) {
  using Traits = detail::list_traits<L>;
  using X = typename Traits::item;
  using Item = decltype(as_expression(std::declval<const X&>()));
  using E = typename Item::extents_type;
  using T = typename Item::value_type;
  using S = std::conditional_t<std::is_same_v<typename Item::space, any_space>, host, typename Item::space>;
  if (list.size() == 0) throw value_error("Rearrange/Reduce/Repeat can't be applied to an empty list");
  const auto first = as_expression(list[0]).extents();
  for (std::size_t i = 1; i < list.size(); ++i)
    if (to_array(as_expression(list[i]).extents()) != to_array(first))
      throw shape_error(detail::concat("stack: item ", i, " has shape ", shape_string(as_expression(list[i]).extents()),
                                       ", item 0 has shape ", shape_string(first)));
  using OutE = concat_t<extents<Traits::count>, E>;
  tensor<T, OutE, S> out(concat(extents<Traits::count>(static_cast<index_t>(list.size())), first));
  for (std::size_t i = 0; i < list.size(); ++i)
    assign(detail::item_slice(out, static_cast<index_t>(i), std::make_index_sequence<E::rank()>{}), list[i]);
  return out;
}

}  // namespace einlm
