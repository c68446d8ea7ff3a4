// einlm/core/extents.hpp — static and dynamic extents, and compile-time shape arithmetic.
//
// Extents are cuda::std::extents<index_t, E...>: each E is a number known at compile time or `dyn`
// (known at run time). Arithmetic on extents keeps static results static: the concatenation of two
// static extents is static, a permutation of static extents is static, a product of static extents
// is a compile-time constant, and NumPy broadcasting of static extents is checked by static_assert.
//
//   extents<2, dyn, 64>          shape type (B=2, S dynamic, D=64)
//   dims<3>                      three dynamic extents
//   size(e), rank_v<E>, static_size_v<E>   number of elements (constexpr when static), rank
//   concat_t<E1, E2>, concat(e1, e2)       (a..., b...)
//   permute_t<E, P...>, permute<P...>(e)   (e[P0], e[P1], …)
//   broadcast_t<E1, E2>, broadcast(e1, e2, op)  NumPy broadcasting; shape_error at run time
//   to_array(e), from_array<E>(a)          conversion to/from cuda::std::array<index_t, rank>
#pragma once

#include <array>
#include <string>
#include <type_traits>
#include <utility>

#include <cuda/std/array>
#include <cuda/std/mdspan>

#include "einlm/core/config.hpp"
#include "einlm/core/error.hpp"

namespace einlm {

/// A dynamic extent: the value is given at run time.
inline constexpr std::size_t dyn = cuda::std::dynamic_extent;

/// A shape type; each argument is a compile-time extent or `dyn`.
template <std::size_t... E>
using extents = cuda::std::extents<index_t, E...>;

/// A shape of rank R whose extents are all dynamic.
template <std::size_t R>
using dims = cuda::std::dextents<index_t, R>;

/// A multi-index of rank R.
template <std::size_t R>
using index_array = cuda::std::array<index_t, R>;

// ------------------------------------------------------------------------------------ traits

namespace detail {
template <class T>
struct is_extents : std::false_type {};
template <class I, std::size_t... E>
struct is_extents<cuda::std::extents<I, E...>> : std::true_type {};
}  // namespace detail

template <class T>
concept extents_like = detail::is_extents<std::remove_cvref_t<T>>::value;

template <extents_like E>
inline constexpr std::size_t rank_v = E::rank();

/// True when every extent of E is known at compile time.
template <extents_like E>
inline constexpr bool is_static_v = (E::rank_dynamic() == 0);

namespace detail {
template <class E, std::size_t... I>
constexpr std::size_t static_product(std::index_sequence<I...>) {
  std::size_t p = 1;
  ((p = (E::static_extent(I) == dyn || p == dyn) ? dyn : p * E::static_extent(I)), ...);
  return p;
}
}  // namespace detail

/// Number of elements when E is static, `dyn` otherwise.
template <extents_like E>
inline constexpr std::size_t static_size_v =
    detail::static_product<E>(std::make_index_sequence<E::rank()>{});

/// The I-th static extent of E (`dyn` when dynamic).
template <extents_like E, std::size_t I>
inline constexpr std::size_t static_extent_v = E::static_extent(I);

/// Number of elements.
template <class I, std::size_t... E>
EINLM_HD constexpr index_t size(const cuda::std::extents<I, E...>& e) {
  if constexpr (sizeof...(E) > 0 && ((E != dyn) && ...)) {
    return static_cast<index_t>((std::size_t{1} * ... * E));
  } else {
    index_t p = 1;
    for (std::size_t r = 0; r != sizeof...(E); ++r) p *= static_cast<index_t>(e.extent(r));
    return p;
  }
}

/// Extents as an array of numbers.
template <class I, std::size_t... E>
EINLM_HD constexpr index_array<sizeof...(E)> to_array(const cuda::std::extents<I, E...>& e) {
  index_array<sizeof...(E)> a{};
  for (std::size_t r = 0; r != sizeof...(E); ++r) a[r] = static_cast<index_t>(e.extent(r));
  return a;
}

namespace detail {
template <class E, std::size_t... I>
EINLM_HD constexpr E from_array_impl(const index_array<E::rank()>& a, std::index_sequence<I...>) {
  return E(a[I]...);
}
}  // namespace detail

/// Builds extents of type E from all R numbers; static entries must equal E's values (checked by
/// the caller with check_extents when the numbers come from outside).
template <extents_like E>
EINLM_HD constexpr E from_array(const index_array<E::rank()>& a) {
  return detail::from_array_impl<E>(a, std::make_index_sequence<E::rank()>{});
}

/// "(2, 3, 4)" for extents.
template <class I, std::size_t... E>
std::string shape_string(const cuda::std::extents<I, E...>& e) {
  return detail::format_shape(to_array(e));
}

/// True when extents types A and B have the same rank and no static extent of one differs from a
/// static extent of the other (they can describe the same shape).
template <extents_like A, extents_like B>
constexpr bool compatible_extents_v = [] {
  if constexpr (A::rank() != B::rank()) {
    return false;
  } else {
    for (std::size_t r = 0; r != A::rank(); ++r)
      if (A::static_extent(r) != dyn && B::static_extent(r) != dyn && A::static_extent(r) != B::static_extent(r))
        return false;
    return true;
  }
}();

/// "(2, ?)" — a shape type with its dynamic extents shown as "?".
template <extents_like E>
std::string static_shape_string() {
  std::string s = "(";
  for (std::size_t r = 0; r != E::rank(); ++r) {
    if (r) s += ", ";
    s += E::static_extent(r) == dyn ? std::string("?") : std::to_string(E::static_extent(r));
  }
  return s + (E::rank() == 1 ? ",)" : ")");
}

/// Checks that runtime numbers fit the static entries of E (for loading data into a typed tensor).
template <extents_like E, class Range>
E check_extents(const Range& shape, const char* what) {
  constexpr std::size_t R = E::rank();
  if (static_cast<std::size_t>(std::size(shape)) != R)
    throw shape_error(detail::concat(what, ": expected a rank-", R, " shape, got ",
                                     detail::format_shape(shape)));
  index_array<R> a{};
  std::size_t r = 0;
  for (auto v : shape) {
    if (v < 0) throw shape_error(detail::concat(what, ": negative extent in ", detail::format_shape(shape)));
    if (E::static_extent(r) != dyn && static_cast<index_t>(E::static_extent(r)) != v)
      throw shape_error(detail::concat(what, ": shape ", detail::format_shape(shape),
                                       " does not match the static shape ", static_shape_string<E>(),
                                       " at axis ", r));
    a[r++] = static_cast<index_t>(v);
  }
  return from_array<E>(a);
}

// ------------------------------------------------------------------------------ concatenation

namespace detail {
template <class A, class B>
struct concat_impl;
template <std::size_t... A, std::size_t... B>
struct concat_impl<extents<A...>, extents<B...>> {
  using type = extents<A..., B...>;
};
}  // namespace detail

/// (a..., b...) as a type.
template <extents_like A, extents_like B>
using concat_t = typename detail::concat_impl<std::remove_cvref_t<A>, std::remove_cvref_t<B>>::type;

/// (a..., b...) with the values of dynamic extents.
template <extents_like A, extents_like B>
EINLM_HD constexpr concat_t<A, B> concat(const A& a, const B& b) {
  constexpr std::size_t ra = A::rank(), rb = B::rank();
  index_array<ra + rb> v{};
  for (std::size_t r = 0; r != ra; ++r) v[r] = static_cast<index_t>(a.extent(r));
  for (std::size_t r = 0; r != rb; ++r) v[ra + r] = static_cast<index_t>(b.extent(r));
  return from_array<concat_t<A, B>>(v);
}

// -------------------------------------------------------------------------------- sub-ranges

namespace detail {
template <class E, std::size_t First, class Seq>
struct subrange_impl;
template <class E, std::size_t First, std::size_t... I>
struct subrange_impl<E, First, std::index_sequence<I...>> {
  using type = extents<E::static_extent(First + I)...>;
};
}  // namespace detail

/// Extents First, First+1, …, First+Count-1 of E.
template <extents_like E, std::size_t First, std::size_t Count>
using subrange_t =
    typename detail::subrange_impl<std::remove_cvref_t<E>, First, std::make_index_sequence<Count>>::type;

template <std::size_t First, std::size_t Count, extents_like E>
EINLM_HD constexpr subrange_t<E, First, Count> subrange(const E& e) {
  static_assert(First + Count <= E::rank(), "subrange: range exceeds the rank");
  index_array<Count> v{};
  for (std::size_t r = 0; r != Count; ++r) v[r] = static_cast<index_t>(e.extent(First + r));
  return from_array<subrange_t<E, First, Count>>(v);
}

// -------------------------------------------------------------------------------- permutation

namespace detail {
template <std::size_t... P>
EINLM_HD constexpr bool is_permutation() {
  constexpr std::size_t n = sizeof...(P);
  const std::size_t p[n + 1] = {P..., 0};
  bool seen[n + 1] = {};
  for (std::size_t i = 0; i != n; ++i) {
    if (p[i] >= n || seen[p[i]]) return false;
    seen[p[i]] = true;
  }
  return true;
}
}  // namespace detail

/// (e[P0], e[P1], …) as a type.
template <extents_like E, std::size_t... P>
  requires(sizeof...(P) == E::rank())
using permute_t = extents<std::remove_cvref_t<E>::static_extent(P)...>;

template <std::size_t... P, extents_like E>
EINLM_HD constexpr permute_t<E, P...> permute(const E& e) {
  static_assert(sizeof...(P) == E::rank(), "permute: one axis number per axis is needed");
  static_assert(detail::is_permutation<P...>(), "permute: the axis numbers must be a permutation");
  return permute_t<E, P...>(e.extent(P)...);
}

// ------------------------------------------------------------------------------- broadcasting

namespace detail {

// Static result of broadcasting one pair of aligned extents; `bad` marks an incompatible pair.
inline constexpr std::size_t broadcast_bad = dyn - 1;
constexpr std::size_t broadcast_one(std::size_t a, std::size_t b) {
  if (a == b) return a;
  if (a == 1) return b;
  if (b == 1) return a;
  if (a == dyn) return b;  // dyn must be 1 or b at run time
  if (b == dyn) return a;
  return broadcast_bad;
}

template <class A, class B, std::size_t R, std::size_t... I>
constexpr auto broadcast_static(std::index_sequence<I...>) {
  if constexpr (R == 0) {  // nvcc warns (#186) on `i + rank < R` with R = 0, even uncalled
    return std::array<std::size_t, 0>{};
  } else {
    [[maybe_unused]] constexpr std::size_t ra = A::rank(), rb = B::rank();
    [[maybe_unused]] constexpr auto at = [](auto e, std::size_t rank, std::size_t i) -> std::size_t {
      // axis i of the result (rank R) aligns with axis i - (R - rank) of an operand of that rank
      return i + rank < R ? 1 : decltype(e)::static_extent(i + rank - R);
    };
    return std::array<std::size_t, R>{broadcast_one(at(A{}, ra, I), at(B{}, rb, I))...};
  }
}

template <class A, class B>
struct broadcast_impl {
  static constexpr std::size_t R = A::rank() > B::rank() ? A::rank() : B::rank();
  static constexpr auto values = broadcast_static<A, B, R>(std::make_index_sequence<R>{});
  static constexpr bool ok = [] {
    for (auto v : values)
      if (v == broadcast_bad) return false;
    return true;
  }();
  template <std::size_t... I>
  static auto make(std::index_sequence<I...>) -> extents<(values[I] == broadcast_bad ? dyn : values[I])...>;
  using type = decltype(make(std::make_index_sequence<R>{}));
};

}  // namespace detail

/// True when static extents A and B broadcast together (dynamic extents are checked at run time).
template <extents_like A, extents_like B>
inline constexpr bool broadcastable_v = detail::broadcast_impl<A, B>::ok;

/// The NumPy-broadcast shape of A and B, aligned from the right.
template <extents_like A, extents_like B>
using broadcast_t = typename detail::broadcast_impl<std::remove_cvref_t<A>, std::remove_cvref_t<B>>::type;

/// Broadcasts two shapes (NumPy rules); throws shape_error naming `op` and both shapes when a pair
/// of aligned extents differs and neither is 1.
template <extents_like A, extents_like B>
constexpr broadcast_t<A, B> broadcast(const A& a, const B& b, const char* op) {
  static_assert(broadcastable_v<A, B>, "operands could not be broadcast together (static shapes differ)");
  using R = broadcast_t<A, B>;
  constexpr std::size_t r = R::rank(), ra = A::rank(), rb = B::rank();
  index_array<r> v{};
  for (std::size_t i = 0; i != r; ++i) {
    const index_t x = i + ra < r ? 1 : static_cast<index_t>(a.extent(i + ra - r));
    const index_t y = i + rb < r ? 1 : static_cast<index_t>(b.extent(i + rb - r));
    if (x != y && x != 1 && y != 1)
      throw shape_error(detail::concat(op, ": operands could not be broadcast together with shapes ",
                                       shape_string(a), " ", shape_string(b)));
    v[i] = x == 1 ? y : x;
  }
  return from_array<R>(v);
}

}  // namespace einlm
