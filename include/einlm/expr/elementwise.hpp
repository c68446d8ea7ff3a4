// einlm/expr/elementwise.hpp — lazy element-wise expressions with NumPy broadcasting.
//
//   a + b, a - b, a * b, a / b, -a              arithmetic (true division: integers give float)
//   a < b, a <= b, a > b, a >= b, a == b, a != b   comparisons (bool)
//   exp log sqrt rsqrt tanh sigmoid silu gelu gelu_tanh relu abs    unary functions (integer
//                                               inputs are computed in float)
//   pow(a, p)                                   a to a scalar power p
//   minimum(a, b), maximum(a, b)                element-wise min/max (NaN propagates)
//   where(cond, a, b)                           a where cond is true, b elsewhere
//   cast<T>(a)                                  conversion (rounds to nearest even into 16-bit types)
//
// Operands are expressions, tensors, views or numbers. Shapes broadcast as in NumPy (aligned from the
// right; an extent of 1 stretches). Static shapes are checked at compile time (a static_assert
// naming the problem), dynamic ones when the expression is built (einlm::shape_error naming the
// operation and both shapes). A number takes the other operand's type, so float_tensor * 2.0 stays
// float; tensors of different types promote as in PyTorch (promote_t).
//
// Nothing is computed until the expression is assigned or evaluated (einlm/exec): then the whole
// tree runs in one pass over the output. 16-bit values are widened to float on load and rounded
// once, on store.
#pragma once

#include <type_traits>
#include <utility>

#include <cuda/std/tuple>

#include "einlm/core/config.hpp"
#include "einlm/core/dtype.hpp"
#include "einlm/core/error.hpp"
#include "einlm/core/extents.hpp"
#include "einlm/core/math.hpp"
#include "einlm/core/simd.hpp"
#include "einlm/expr/broadcast.hpp"
#include "einlm/expr/expression.hpp"

namespace einlm {

namespace detail {

/// Applies op to the K-kind values of the arguments: directly for scalars and packets, lane by lane
/// for GPU lanes.
EINLM_EXEC_CHECK_DISABLE
template <class K, class Op, class... A>
EINLM_HD auto apply_kind(const Op& op, const A&... a) {
  if constexpr (is_lanes_kind_v<K>) {
    using R = decltype(op(a[0]...));
    lanes<R, K::width> out;
    EINLM_UNROLL
    for (int l = 0; l < K::width; ++l) out[l] = op(a[l]...);
    return out;
  } else {
    return op(a...);
  }
}

template <class... E>
struct broadcast_all;
template <class E>
struct broadcast_all<E> {
  using type = E;
};
template <class A, class B, class... Rest>
struct broadcast_all<A, B, Rest...> {
  static_assert(broadcastable_v<A, B>,
                "einlm: operands could not be broadcast together: two static extents differ and "
                "neither is 1 (shapes are aligned from the right, as in NumPy)");
  using type = typename broadcast_all<broadcast_t<A, B>, Rest...>::type;
};

}  // namespace detail

namespace ops {
template <class To>
struct cast;
}  // namespace ops

/// An element-wise node: result = op(args…) with broadcasting. ValueType is the result's element
/// type; op works on the arguments' compute types (all equal, except where()'s condition).
template <class Op, class ValueType, class... Args>
class map_node : public expression_base {
 public:
  using value_type = ValueType;
  using compute_type = compute_t<ValueType>;
  using extents_type = typename detail::broadcast_all<typename Args::extents_type...>::type;
  using space = common_space_t<typename Args::space...>;
  static constexpr std::size_t R = extents_type::rank();
  static constexpr std::size_t N = sizeof...(Args);

  map_node(const char* name, Op op, const Args&... args) : op_(op), args_(args...) {
    index_array<R> ext{};
    for (std::size_t r = 0; r != R; ++r) ext[r] = 1;
    if (!(detail::broadcast_into(ext, args.extents()) && ...))
      throw shape_error(detail::concat(name, ": operands could not be broadcast together with shapes",
                                       (" " + shape_string(args.extents()))...));
    extents_ = from_array<extents_type>(ext);
    std::size_t i = 0;
    ((masks_[i++] = detail::broadcast_mask(extents_, args.extents())), ...);
  }

  EINLM_HD const extents_type& extents() const { return extents_; }

  EINLM_HD compute_type at(const index_array<R>& idx) const {
    return at_impl(idx, std::make_index_sequence<N>{});
  }

  struct cursor {
    Op op;
    cuda::std::tuple<typename Args::cursor...> args;
    EINLM_EXEC_CHECK_DISABLE
    template <class K>
    EINLM_HD kind_t<K, compute_type> load(index_t j) const {
      return load_impl<K>(j, std::make_index_sequence<N>{});
    }
    EINLM_EXEC_CHECK_DISABLE
    template <class K, std::size_t... I>
    EINLM_HD kind_t<K, compute_type> load_impl(index_t j, std::index_sequence<I...>) const {
      return detail::apply_kind<K>(op, cuda::std::get<I>(args).template load<K>(j)...);
    }
  };

  EINLM_HD cursor row(const index_array<R>& idx, bool splat) const {
    return row_impl(idx, splat, std::make_index_sequence<N>{});
  }

  bool rows_ok() const {
    return apply_all([](const auto&... a) { return (a.rows_ok() && ...); });
  }
  bool flat_ok() const {
    return apply_all([this](const auto&... a) {
      return ((a.flat_ok() && detail::same_shape(a.extents(), extents_)) && ...);
    });
  }
  template <class F>
  void for_each_leaf(F&& f) const {
    apply_all([&](const auto&... a) { (a.for_each_leaf(f), ...); });
  }
  int contiguous_axis() const {
    return contiguous_axis_impl(std::make_index_sequence<N>{});
  }

  const Op& op() const { return op_; }
  template <std::size_t I>
  const auto& arg() const { return cuda::std::get<I>(args_); }

  /// A cast to the element type being stored is the store's own conversion, so a cast<T> of one
  /// unbroadcast operand of T's compute type forwards the operand's store_row and store_row_split
  /// (a reduction's row paths, see reduce_node: cast<T>(reduce(…)) stored into T). False
  /// otherwise.
  template <class T>
  bool store_row(const index_array<R>& idx, index_t begin, index_t end, T* out) const {
    if constexpr (forwards_store<T>() && requires { arg<0>().store_row(idx, begin, end, out); }) {
      if (masks_[0] == 0) return arg<0>().store_row(idx, begin, end, out);
    }
    return false;
  }
  template <class T, class RunUnits>
  bool store_row_split(const index_array<R>& idx, index_t n, T* out, RunUnits&& run_units) const {
    if constexpr (forwards_store<T>() && requires { arg<0>().store_row_split(idx, n, out, run_units); }) {
      if (masks_[0] == 0) return arg<0>().store_row_split(idx, n, out, run_units);
    }
    return false;
  }

 private:
  template <class T>
  static constexpr bool forwards_store() {
    if constexpr (N == 1) {
      using A = cuda::std::tuple_element_t<0, cuda::std::tuple<Args...>>;
      return std::is_same_v<Op, ops::cast<T>> && A::R == R &&
             std::is_same_v<compute_t<typename A::value_type>, compute_t<T>>;
    } else {
      return false;
    }
  }

  template <class F>
  decltype(auto) apply_all(F&& f) const {
    return apply_all_impl(f, std::make_index_sequence<N>{});
  }
  template <class F, std::size_t... I>
  decltype(auto) apply_all_impl(F& f, std::index_sequence<I...>) const {
    return f(cuda::std::get<I>(args_)...);
  }

  template <std::size_t... I>
  EINLM_HD compute_type at_impl(const index_array<R>& idx, std::index_sequence<I...>) const {
    return op_(cuda::std::get<I>(args_).at(detail::broadcast_index<Args::R>(idx, masks_[I]))...);
  }

  template <std::size_t... I>
  EINLM_HD cursor row_impl(const index_array<R>& idx, bool splat, std::index_sequence<I...>) const {
    return cursor{op_, {cuda::std::get<I>(args_).row(detail::broadcast_index<Args::R>(idx, masks_[I]),
                                                     splat || detail::broadcast_inner<Args::R>(masks_[I]))...}};
  }

  template <std::size_t... I>
  int contiguous_axis_impl(std::index_sequence<I...>) const {
    int axis = -1;
    auto one = [&](const auto& a, unsigned mask) {
      using A = std::remove_cvref_t<decltype(a)>;
      if (axis >= 0) return;
      const int c = a.contiguous_axis();
      if (c >= 0 && !((mask >> c) & 1u)) axis = c + static_cast<int>(R - A::R);
    };
    (one(cuda::std::get<I>(args_), masks_[I]), ...);
    return axis;
  }

  Op op_;
  cuda::std::tuple<Args...> args_;
  extents_type extents_{};
  unsigned masks_[N > 0 ? N : 1] = {};
};

// ------------------------------------------------------------------------------------- ops

namespace ops {

#define EINLM_BINARY_OP(NAME, EXPR)                                \
  struct NAME {                                                    \
    EINLM_EXEC_CHECK_DISABLE                                       \
    template <class A>                                             \
    EINLM_HD A operator()(A a, A b) const { return EXPR; }         \
  };
EINLM_BINARY_OP(add, a + b)
EINLM_BINARY_OP(sub, a - b)
EINLM_BINARY_OP(mul, a * b)
EINLM_BINARY_OP(div, a / b)
// NaN-propagating minimum/maximum, as numpy.minimum / torch.minimum.
EINLM_BINARY_OP(minimum, math::detail::select(a != a, a, math::detail::select(a < b, a, b)))
EINLM_BINARY_OP(maximum, math::detail::select(a != a, a, math::detail::select(a > b, a, b)))
#undef EINLM_BINARY_OP

#define EINLM_COMPARE_OP(NAME, OP)                                 \
  struct NAME {                                                    \
    EINLM_EXEC_CHECK_DISABLE                                       \
    template <class A>                                             \
    EINLM_HD auto operator()(A a, A b) const { return a OP b; }    \
  };
EINLM_COMPARE_OP(less, <)
EINLM_COMPARE_OP(less_equal, <=)
EINLM_COMPARE_OP(greater, >)
EINLM_COMPARE_OP(greater_equal, >=)
EINLM_COMPARE_OP(equal, ==)
EINLM_COMPARE_OP(not_equal, !=)
#undef EINLM_COMPARE_OP

#define EINLM_UNARY_OP(NAME, EXPR)                                 \
  struct NAME {                                                    \
    EINLM_EXEC_CHECK_DISABLE                                       \
    template <class A>                                             \
    EINLM_HD A operator()(A x) const { return EXPR; }              \
  };
EINLM_UNARY_OP(neg, -x)
EINLM_UNARY_OP(exp, math::exp(x))
EINLM_UNARY_OP(log, math::log(x))
EINLM_UNARY_OP(sqrt, math::sqrt(x))
EINLM_UNARY_OP(rsqrt, math::rsqrt(x))
EINLM_UNARY_OP(tanh, math::tanh(x))
EINLM_UNARY_OP(sigmoid, math::sigmoid(x))
EINLM_UNARY_OP(silu, math::silu(x))
EINLM_UNARY_OP(gelu, math::gelu(x))
EINLM_UNARY_OP(gelu_tanh, math::gelu_tanh(x))
EINLM_UNARY_OP(abs, math::abs(x))
// relu keeps NaN (x < 0 is false for NaN), as torch.relu does.
EINLM_UNARY_OP(relu, math::detail::select(x < A(simd::scalar_t<A>(0)), A(simd::scalar_t<A>(0)), x))
#undef EINLM_UNARY_OP

struct logical_not {
  EINLM_EXEC_CHECK_DISABLE
  template <class A>
  EINLM_HD A operator()(A x) const { return !x; }
};

/// x^p for a scalar p.
struct pow {
  double p;
  EINLM_EXEC_CHECK_DISABLE
  template <class A>
  EINLM_HD A operator()(A x) const { return math::pow(x, p); }
};

/// select(cond, a, b).
struct where {
  EINLM_EXEC_CHECK_DISABLE
  template <class C, class A>
  EINLM_HD A operator()(C c, A a, A b) const { return math::detail::select(c, a, b); }
};

/// Conversion between compute types, rounding through the storage type To (so a cast to bf16
/// produces bf16-representable values even though they are carried as float).
template <class To>
struct cast {
  EINLM_EXEC_CHECK_DISABLE
  template <class A>
  EINLM_HD auto operator()(A x) const {
    using C = compute_t<To>;
    if constexpr (simd::is_packet_v<A>) {
      if constexpr (is_half_v<To>) {
        To tmp[simd::width];
        simd::store(tmp, x);
        return simd::load<C>(tmp);
      } else {
        return simd::convert_packet<C>(x);
      }
    } else {
      return convert<C>(convert<To>(x));
    }
  }
};

}  // namespace ops

// ------------------------------------------------------------------------------ construction

/// Builds a map_node from operands; numbers take the type of the first non-number operand.
template <class Value, class Op, class... X>
auto make_map(const char* name, Op op, X&&... x) {
  return map_node<Op, Value, expression_t<X>...>(name, op, as_expression(std::forward<X>(x))...);
}

namespace detail {

template <class X>
struct operand_value {
  using type = typename expression_t<X>::value_type;
};

template <class X>
using operand_value_t = typename operand_value<X>::type;

/// The element type two operands combine into; a number adopts the other operand's type (a
/// floating number with an integer tensor gives float).
template <class X, class Y>
constexpr auto combined_value() {
  using A = operand_value_t<X>;
  using B = operand_value_t<Y>;
  constexpr bool xs = is_arithmetic_scalar_v<X>, ys = is_arithmetic_scalar_v<Y>;
  if constexpr (xs && !ys) {
    if constexpr (is_floating_v<A> && !is_floating_v<B>) return std::type_identity<float>{};
    else return std::type_identity<B>{};
  } else if constexpr (ys && !xs) {
    if constexpr (is_floating_v<B> && !is_floating_v<A>) return std::type_identity<float>{};
    else return std::type_identity<A>{};
  } else {
    return std::type_identity<promote_t<A, B>>{};
  }
}

template <class X, class Y>
using combined_value_t = typename decltype(combined_value<X, Y>())::type;

/// The operand as an expression of element type T (a cast node when it differs).
template <class T, class X>
auto as_typed(X&& x) {
  if constexpr (is_arithmetic_scalar_v<X>) {
    return scalar_leaf<T>(convert<T>(x));
  } else {
    auto e = as_expression(std::forward<X>(x));
    using E = decltype(e);
    if constexpr (std::is_same_v<typename E::value_type, T>) return e;
    else return map_node<ops::cast<T>, T, E>("cast", ops::cast<T>{}, e);
  }
}

template <class X, class Y>
concept binary_operands = operand<X> && operand<Y> && !(is_arithmetic_scalar_v<X> && is_arithmetic_scalar_v<Y>);

}  // namespace detail

// Arithmetic: the result has the combined type; true division gives a floating type.
template <class X, class Y>
  requires detail::binary_operands<X, Y>
auto operator+(X&& x, Y&& y) {
  using T = detail::combined_value_t<X, Y>;
  auto a = detail::as_typed<T>(std::forward<X>(x));
  auto b = detail::as_typed<T>(std::forward<Y>(y));
  return map_node<ops::add, T, decltype(a), decltype(b)>("add", {}, a, b);
}
template <class X, class Y>
  requires detail::binary_operands<X, Y>
auto operator-(X&& x, Y&& y) {
  using T = detail::combined_value_t<X, Y>;
  auto a = detail::as_typed<T>(std::forward<X>(x));
  auto b = detail::as_typed<T>(std::forward<Y>(y));
  return map_node<ops::sub, T, decltype(a), decltype(b)>("subtract", {}, a, b);
}
template <class X, class Y>
  requires detail::binary_operands<X, Y>
auto operator*(X&& x, Y&& y) {
  using T = detail::combined_value_t<X, Y>;
  auto a = detail::as_typed<T>(std::forward<X>(x));
  auto b = detail::as_typed<T>(std::forward<Y>(y));
  return map_node<ops::mul, T, decltype(a), decltype(b)>("multiply", {}, a, b);
}
template <class X, class Y>
  requires detail::binary_operands<X, Y>
auto operator/(X&& x, Y&& y) {
  using T = floating_t<detail::combined_value_t<X, Y>>;
  auto a = detail::as_typed<T>(std::forward<X>(x));
  auto b = detail::as_typed<T>(std::forward<Y>(y));
  return map_node<ops::div, T, decltype(a), decltype(b)>("divide", {}, a, b);
}

template <class X, class Y>
  requires detail::binary_operands<X, Y>
auto minimum(X&& x, Y&& y) {
  using T = detail::combined_value_t<X, Y>;
  auto a = detail::as_typed<T>(std::forward<X>(x));
  auto b = detail::as_typed<T>(std::forward<Y>(y));
  return map_node<ops::minimum, T, decltype(a), decltype(b)>("minimum", {}, a, b);
}
template <class X, class Y>
  requires detail::binary_operands<X, Y>
auto maximum(X&& x, Y&& y) {
  using T = detail::combined_value_t<X, Y>;
  auto a = detail::as_typed<T>(std::forward<X>(x));
  auto b = detail::as_typed<T>(std::forward<Y>(y));
  return map_node<ops::maximum, T, decltype(a), decltype(b)>("maximum", {}, a, b);
}

#define EINLM_COMPARISON(OPERATOR, OP, NAME)                                       \
  template <class X, class Y>                                                      \
    requires detail::binary_operands<X, Y>                                         \
  auto operator OPERATOR(X&& x, Y&& y) {                                           \
    using T = detail::combined_value_t<X, Y>;                                      \
    auto a = detail::as_typed<T>(std::forward<X>(x));                              \
    auto b = detail::as_typed<T>(std::forward<Y>(y));                              \
    return map_node<ops::OP, bool, decltype(a), decltype(b)>(NAME, {}, a, b);      \
  }
EINLM_COMPARISON(<, less, "less")
EINLM_COMPARISON(<=, less_equal, "less_equal")
EINLM_COMPARISON(>, greater, "greater")
EINLM_COMPARISON(>=, greater_equal, "greater_equal")
EINLM_COMPARISON(==, equal, "equal")
EINLM_COMPARISON(!=, not_equal, "not_equal")
#undef EINLM_COMPARISON

template <class X>
  requires(operand<X> && !is_arithmetic_scalar_v<X>)
auto operator-(X&& x) {
  auto a = as_expression(std::forward<X>(x));
  using T = typename decltype(a)::value_type;
  return map_node<ops::neg, T, decltype(a)>("negative", {}, a);
}

template <class X>
  requires(operand<X> && !is_arithmetic_scalar_v<X>)
auto operator!(X&& x) {
  auto a = detail::as_typed<bool>(std::forward<X>(x));
  return map_node<ops::logical_not, bool, decltype(a)>("logical_not", {}, a);
}

// Unary functions: integer and bool inputs are computed in float.
#define EINLM_UNARY_FUNCTION(NAME)                                                 \
  template <class X>                                                               \
    requires(operand<X> && !is_arithmetic_scalar_v<X>)                             \
  auto NAME(X&& x) {                                                               \
    using T = floating_t<typename expression_t<X>::value_type>;                    \
    auto a = detail::as_typed<T>(std::forward<X>(x));                              \
    return map_node<ops::NAME, T, decltype(a)>(#NAME, {}, a);                      \
  }
EINLM_UNARY_FUNCTION(exp)
EINLM_UNARY_FUNCTION(log)
EINLM_UNARY_FUNCTION(sqrt)
EINLM_UNARY_FUNCTION(rsqrt)
EINLM_UNARY_FUNCTION(tanh)
EINLM_UNARY_FUNCTION(sigmoid)
EINLM_UNARY_FUNCTION(silu)
EINLM_UNARY_FUNCTION(gelu)
EINLM_UNARY_FUNCTION(gelu_tanh)
#undef EINLM_UNARY_FUNCTION

/// |x| (keeps the type, integers included).
template <class X>
  requires(operand<X> && !is_arithmetic_scalar_v<X>)
auto abs(X&& x) {
  auto a = as_expression(std::forward<X>(x));
  using T = typename decltype(a)::value_type;
  return map_node<ops::abs, T, decltype(a)>("abs", {}, a);
}

/// max(x, 0) (keeps the type; NaN stays NaN).
template <class X>
  requires(operand<X> && !is_arithmetic_scalar_v<X>)
auto relu(X&& x) {
  auto a = as_expression(std::forward<X>(x));
  using T = typename decltype(a)::value_type;
  return map_node<ops::relu, T, decltype(a)>("relu", {}, a);
}

/// x^p for a scalar exponent (integer inputs are computed in float).
template <class X>
  requires(operand<X> && !is_arithmetic_scalar_v<X>)
auto pow(X&& x, double p) {
  using T = floating_t<typename expression_t<X>::value_type>;
  auto a = detail::as_typed<T>(std::forward<X>(x));
  return map_node<ops::pow, T, decltype(a)>("pow", ops::pow{p}, a);
}

/// Elements of a where cond is true, of b elsewhere (cond is converted to bool).
template <class C, class X, class Y>
  requires(operand<C> && operand<X> && operand<Y> && !is_arithmetic_scalar_v<C>)
auto where(C&& cond, X&& x, Y&& y) {
  using T = detail::combined_value_t<X, Y>;
  auto c = detail::as_typed<bool>(std::forward<C>(cond));
  auto a = detail::as_typed<T>(std::forward<X>(x));
  auto b = detail::as_typed<T>(std::forward<Y>(y));
  return map_node<ops::where, T, decltype(c), decltype(a), decltype(b)>("where", {}, c, a, b);
}

/// The operand converted to element type T.
template <dtype T, class X>
  requires(operand<X> && !is_arithmetic_scalar_v<X>)
auto cast(X&& x) {
  auto a = as_expression(std::forward<X>(x));
  return map_node<ops::cast<T>, T, decltype(a)>("cast", {}, a);
}

}  // namespace einlm
