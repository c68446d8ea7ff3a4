// einlm/expr/expression.hpp — the protocol every lazy expression node follows, and the leaves.
//
// An expression is a tree of small copyable nodes that describes a tensor without computing it.
// Executors (einlm/exec) materialise it in one pass. Every node N provides:
//
//   using value_type;      element type of the result (what eval stores)
//   using compute_type;    type the node computes in: compute_t<value_type> (float for bf16/fp16)
//   using extents_type;    static/dynamic extents of the result
//   using space;           host, device, or any_space (scalars and generators: either executor)
//   extents()              the result's extents
//   at(idx)                the element at a multi-index, as compute_type (any access order)
//   row(idx, splat)        a cursor over the run of elements idx, idx + e_last, idx + 2·e_last, …
//                          along the last axis (idx[last] = 0); `splat` asks for the element at
//                          idx repeated (the node is broadcast along the last axis)
//   cursor.load<K>(j)      element j of the run as a K-kind value: scalar_kind (one element),
//                          packet_kind (8 elements j…j+7 in a CPU simd::packet),
//                          lanes_kind<V> (V elements j…j+V−1 for one GPU thread; j is a multiple
//                          of V and every leaf is aligned to V elements)
//   rows_ok()              host check: every cursor can walk its rows contiguously
//   flat_ok()              host check: the whole expression is one run (row-major contiguous leaves
//                          of the result's shape, so row(0, false) covers every element in order)
//   contiguous_axis()      host: an axis along which the first array leaf is contiguous in memory,
//                          or −1 (the CPU executor walks transposes in tiles with it)
//   for_each_leaf(f)       host: calls f(pointer, element size) for each array leaf
//
// Leaves: array_leaf (a tensor or view; any strides), scalar_leaf (a number, rank 0). Element-wise
// nodes live in elementwise.hpp, generators (arange, random) in generators.hpp. Node types carry
// only types and integers, never a pattern string (ARCHITECTURE decision 3), so they may be kernel
// template arguments.
#pragma once

#include <concepts>
#include <cstdint>
#include <type_traits>
#include <utility>

#include <cuda/std/array>
#include <cuda/std/mdspan>

#include "einlm/core/config.hpp"
#include "einlm/core/dtype.hpp"
#include "einlm/core/extents.hpp"
#include "einlm/core/simd.hpp"
#include "einlm/core/tensor.hpp"

namespace einlm {

/// Memory space of nodes that read no memory (scalars, generators): they run on either executor.
struct any_space {
  static constexpr const char* name = "any";
};

// --------------------------------------------------------------------------- evaluation kinds

/// V consecutive elements handled by one GPU thread.
template <class T, int V>
struct lanes {
  T v[V];
  EINLM_HD T& operator[](int i) { return v[i]; }
  EINLM_HD const T& operator[](int i) const { return v[i]; }
};

struct scalar_kind {
  template <class T>
  using type = T;
};
struct packet_kind {
  template <class T>
  using type = simd::packet<T>;
};
template <int V>
struct lanes_kind {
  template <class T>
  using type = lanes<T, V>;
  static constexpr int width = V;
};

template <class K, class T>
using kind_t = typename K::template type<T>;

template <class K>
inline constexpr bool is_lanes_kind_v = false;
template <int V>
inline constexpr bool is_lanes_kind_v<lanes_kind<V>> = true;

/// Base of every expression node (a tag; nodes carry no virtual functions).
struct expression_base {};

template <class X>
concept expression = std::derived_from<std::remove_cvref_t<X>, expression_base>;

template <class X>
inline constexpr bool is_arithmetic_scalar_v =
    std::is_arithmetic_v<std::remove_cvref_t<X>> || is_half_v<std::remove_cvref_t<X>>;

/// Anything that can be an operand of an expression: an expression, a tensor, a view, a number.
template <class X>
concept operand = expression<X> || array_like<X> || is_arithmetic_scalar_v<X>;

// ------------------------------------------------------------------------------ spaces

namespace detail {
template <class A, class B>
struct common_space_impl {
  static_assert(std::is_same_v<A, B>,
                "einlm: operands live in different memory spaces (host and device); copy one of them "
                "with to_host() or to_device() first");
  using type = A;
};
template <class B>
struct common_space_impl<any_space, B> {
  using type = B;
};
template <class A>
struct common_space_impl<A, any_space> {
  using type = A;
};
template <>
struct common_space_impl<any_space, any_space> {
  using type = any_space;
};
}  // namespace detail

template <class... S>
struct common_space;
template <class S>
struct common_space<S> {
  using type = S;
};
template <class A, class B, class... Rest>
struct common_space<A, B, Rest...> {
  using type = typename common_space<typename detail::common_space_impl<A, B>::type, Rest...>::type;
};
template <class... S>
using common_space_t = typename common_space<S...>::type;

// ------------------------------------------------------------------------------- array leaf

namespace detail {
/// V elements of T from an address aligned to V·sizeof(T) bytes, as one vector load.
template <class T, int V>
struct alignas(V * sizeof(T) <= 16 ? V * sizeof(T) : 16) aligned_block {
  T v[V];
};
}  // namespace detail

/// A leaf that reads a tensor or view: element type T (possibly const), extents E, layout mapping
/// M (any cuda::std layout mapping, or layout_strided's), memory space S.
template <class T, extents_like E, class Mapping, class S>
class array_leaf : public expression_base {
 public:
  using element_type = std::remove_const_t<T>;
  using value_type = element_type;
  using compute_type = compute_t<value_type>;
  using extents_type = E;
  using space = S;
  static constexpr std::size_t R = E::rank();

  EINLM_HD array_leaf(const T* data, const Mapping& m) : data_(data), map_(m) {}

  EINLM_HD const E& extents() const { return map_.extents(); }
  EINLM_HD const T* data() const { return data_; }
  EINLM_HD const Mapping& mapping() const { return map_; }

  EINLM_HD compute_type at(const index_array<R>& idx) const {
    return convert<compute_type>(data_[detail::map_index(map_, idx)]);
  }

  struct cursor {
    const T* p;
    bool splat;
    EINLM_EXEC_CHECK_DISABLE
    template <class K>
    EINLM_HD kind_t<K, compute_type> load(index_t j) const {
      if constexpr (std::is_same_v<K, scalar_kind>) {
        return convert<compute_type>(p[splat ? 0 : j]);
      } else if constexpr (std::is_same_v<K, packet_kind>) {
        if (splat) return simd::packet<compute_type>(convert<compute_type>(p[0]));
        return simd::load<compute_type>(p + j);
      } else {
        constexpr int V = K::width;
        lanes<compute_type, V> out;
        if (splat) {
          const compute_type x = convert<compute_type>(p[0]);
          EINLM_UNROLL
          for (int l = 0; l < V; ++l) out[l] = x;
        } else {
          const auto block = *reinterpret_cast<const detail::aligned_block<element_type, V>*>(p + j);
          EINLM_UNROLL
          for (int l = 0; l < V; ++l) out[l] = convert<compute_type>(block.v[l]);
        }
        return out;
      }
    }
  };

  EINLM_HD cursor row(const index_array<R>& idx, bool splat) const {
    return cursor{data_ + detail::map_index(map_, idx), splat};
  }

  bool rows_ok() const {
    if constexpr (R == 0) return true;
    else return map_.extents().extent(R - 1) <= 1 || map_.stride(R - 1) == 1;
  }
  bool flat_ok() const {
    if constexpr (std::is_same_v<Mapping, typename cuda::std::layout_right::template mapping<E>>) return true;
    else return layout_strided::mapping<E>(map_).is_row_major();
  }
  /// The axis along which consecutive elements are adjacent in memory (the last such), or −1.
  int contiguous_axis() const {
    if constexpr (R > 0)
      for (std::size_t r = R; r-- > 0;)
        if (map_.stride(r) == 1 && map_.extents().extent(r) > 1) return static_cast<int>(r);
    return -1;
  }
  template <class F>
  void for_each_leaf(F&& f) const {
    f(static_cast<const void*>(data_), sizeof(element_type));
  }

 private:
  const T* data_;
  Mapping map_;
};

// ------------------------------------------------------------------------------ scalar leaf

/// A number, as a rank-0 expression that broadcasts against anything.
template <class T>
class scalar_leaf : public expression_base {
 public:
  using value_type = T;
  using compute_type = compute_t<T>;
  using extents_type = einlm::extents<>;
  using space = any_space;
  static constexpr std::size_t R = 0;

  EINLM_HD explicit scalar_leaf(T v) : value_(convert<compute_type>(v)) {}
  EINLM_HD const extents_type& extents() const { return ext_; }
  EINLM_HD compute_type at(const index_array<0>&) const { return value_; }

  struct cursor {
    compute_type value;
    EINLM_EXEC_CHECK_DISABLE
    template <class K>
    EINLM_HD kind_t<K, compute_type> load(index_t) const {
      if constexpr (is_lanes_kind_v<K>) {
        kind_t<K, compute_type> out;
        EINLM_UNROLL
        for (int l = 0; l < K::width; ++l) out[l] = value;
        return out;
      } else {
        return kind_t<K, compute_type>(value);
      }
    }
  };
  EINLM_HD cursor row(const index_array<0>&, bool) const { return cursor{value_}; }
  bool rows_ok() const { return true; }
  bool flat_ok() const { return true; }
  int contiguous_axis() const { return -1; }
  template <class F>
  void for_each_leaf(F&&) const {}

 private:
  compute_type value_;
  extents_type ext_{};
};

// --------------------------------------------------------------------------- as_expression

/// The expression node for an operand: expressions as they are, tensors and views as array
/// leaves, numbers as scalar leaves of type Scalar (the other operand's type, so that a number
/// never widens a tensor: float_tensor * 2.0 stays float, as in NumPy and PyTorch).
template <class Scalar = void, class X>
auto as_expression(X&& x) {
  using D = std::remove_cvref_t<X>;
  if constexpr (expression<D>) {
    return D(x);
  } else if constexpr (array_like<D>) {
    auto v = as_view(std::forward<X>(x));
    using V = decltype(v);
    return array_leaf<typename V::element_type, typename V::extents_type, typename V::mapping_type,
                      typename V::space>(v.data(), v.mapping());
  } else {
    static_assert(is_arithmetic_scalar_v<D>, "einlm: not an expression, tensor, view or number");
    using T = std::conditional_t<std::is_void_v<Scalar>, D, Scalar>;
    return scalar_leaf<T>(convert<T>(x));
  }
}

template <class X>
using expression_t = decltype(as_expression(std::declval<X>()));

// ---------------------------------------------------------------------------- type promotion

namespace detail {
template <class T>
inline constexpr int int_rank = sizeof(T);

template <class A, class B>
constexpr auto promote_impl() {
  if constexpr (std::is_same_v<A, B>) return std::type_identity<A>{};
  else if constexpr (std::is_same_v<A, bool>) return std::type_identity<B>{};
  else if constexpr (std::is_same_v<B, bool>) return std::type_identity<A>{};
  else if constexpr (is_floating_v<A> && !is_floating_v<B>) return std::type_identity<A>{};
  else if constexpr (is_floating_v<B> && !is_floating_v<A>) return std::type_identity<B>{};
  else if constexpr (is_floating_v<A>) {
    // Two different floating types: the wider; bf16 with fp16 meets in float.
    if constexpr (sizeof(A) == sizeof(B)) return std::type_identity<float>{};
    else if constexpr (sizeof(A) > sizeof(B)) return std::type_identity<A>{};
    else return std::type_identity<B>{};
  } else {
    // Two integer types: the wider; equal widths of mixed signedness go to int64.
    if constexpr (sizeof(A) == sizeof(B)) return std::type_identity<std::int64_t>{};
    else if constexpr (sizeof(A) > sizeof(B)) return std::type_identity<A>{};
    else return std::type_identity<B>{};
  }
}
}  // namespace detail

/// The element type of a binary operation on A and B (PyTorch's promotion of tensor dtypes).
template <class A, class B>
using promote_t = typename decltype(detail::promote_impl<A, B>())::type;

/// The floating type an integer-valued operation is computed in (float for integers and bool).
template <class T>
using floating_t = std::conditional_t<is_floating_v<T>, T, float>;

}  // namespace einlm
