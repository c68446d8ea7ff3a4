// einlm/core/tensor.hpp — owning tensors, non-owning views, slicing and copies between spaces.
//
//   tensor<T, E, S>   owns its elements: row-major (C order), contiguous, in memory space S (host:
//                     64-byte aligned; device: from the caching allocator). Move-only; clone() copies.
//   view<T, E, L, S>  a non-owning cuda::std::mdspan<T, E, L> tagged with its memory space. L is
//                     cuda::std::layout_right (contiguous) or einlm::layout_strided (any integer
//                     strides, negative and zero included, as NumPy allows).
//   slice(x, spec…)   a view of part of x; one spec per axis: an integer (the axis is dropped),
//                     `full_extent` (the axis is kept with its static extent), or range{start, stop, step}
//                     with Python's slice semantics (negative indices count from the end; a negative
//                     step walks backwards; `none` leaves a bound open): x[::-1] is range{none, none, -1}.
//   copy(src, dst)    element copy between views/tensors of equal shape, across spaces
//   to_host(x), to_device(x)   copies into a new tensor of the other space (nvcc translation units)
//
// Element access with operator() is for host memory only (device memory is reached in kernels).
// Assigning a lazy expression to a tensor (`t = a * b`) evaluates it in one pass (einlm/expr).
#pragma once

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include <cuda/std/mdspan>

#include "einlm/core/config.hpp"
#include "einlm/core/dtype.hpp"
#include "einlm/core/error.hpp"
#include "einlm/core/extents.hpp"
#include "einlm/core/memory.hpp"

namespace einlm {

// -------------------------------------------------------------------------- strided layout

/// Layout with one signed stride per axis: offset = Σ index[r] · stride[r]. Unlike
/// cuda::std::layout_stride it allows zero strides (broadcast) and negative strides (reversed axes).
struct layout_strided {
  template <class Extents>
  class mapping {
   public:
    using extents_type = Extents;
    using index_type = typename Extents::index_type;
    using size_type = typename Extents::size_type;
    using rank_type = typename Extents::rank_type;
    using layout_type = layout_strided;
    static constexpr std::size_t R = Extents::rank();

    EINLM_HD constexpr mapping() noexcept : mapping(Extents{}) {}
    /// Row-major strides for the given extents.
    EINLM_HD constexpr explicit mapping(const Extents& e) noexcept : extents_(e) {
      index_t s = 1;
      for (std::size_t r = R; r-- > 0;) {
        strides_[r] = s;
        s *= static_cast<index_t>(e.extent(r));
      }
    }
    EINLM_HD constexpr mapping(const Extents& e, const index_array<R>& strides) noexcept
        : extents_(e), strides_(strides) {}
    /// From any strided mdspan mapping (layout_right, layout_left, layout_stride).
    template <class Other>
      requires(!std::is_same_v<Other, mapping> && requires(const Other& m) { m.stride(0); })
    EINLM_HD constexpr explicit mapping(const Other& m) noexcept : extents_(m.extents()) {
      for (std::size_t r = 0; r != R; ++r) strides_[r] = static_cast<index_t>(m.stride(r));
    }

    EINLM_HD constexpr const Extents& extents() const noexcept { return extents_; }
    EINLM_HD constexpr const index_array<R>& strides() const noexcept { return strides_; }
    EINLM_HD constexpr index_type stride(rank_type r) const noexcept { return strides_[r]; }

    template <class... I>
    EINLM_HD constexpr index_type operator()(I... i) const noexcept {
      static_assert(sizeof...(I) == R);
      index_type offset = 0;
      std::size_t r = 0;
      ((offset += static_cast<index_type>(i) * strides_[r++]), ...);
      return offset;
    }
    EINLM_HD constexpr index_type operator()(const index_array<R>& idx) const noexcept {
      index_type offset = 0;
      for (std::size_t r = 0; r != R; ++r) offset += idx[r] * strides_[r];
      return offset;
    }

    /// One past the largest offset reached (0 when empty); negative strides are measured from the
    /// lowest offset reached.
    EINLM_HD constexpr index_type required_span_size() const noexcept {
      index_type lo = 0, hi = 0;
      for (std::size_t r = 0; r != R; ++r) {
        const index_type n = static_cast<index_type>(extents_.extent(r));
        if (n == 0) return 0;
        const index_type d = (n - 1) * strides_[r];
        (d < 0 ? lo : hi) += d;
      }
      return hi - lo + 1;
    }
    EINLM_HD static constexpr bool is_always_unique() noexcept { return false; }
    EINLM_HD static constexpr bool is_always_exhaustive() noexcept { return false; }
    EINLM_HD static constexpr bool is_always_strided() noexcept { return true; }
    EINLM_HD constexpr bool is_unique() const noexcept {
      for (std::size_t r = 0; r != R; ++r)
        if (strides_[r] == 0 && extents_.extent(r) > 1) return false;
      return true;
    }
    EINLM_HD constexpr bool is_exhaustive() const noexcept { return is_row_major(); }
    EINLM_HD static constexpr bool is_strided() noexcept { return true; }

    /// True when the strides are the row-major strides of the extents (axes of extent 1 may have
    /// any stride).
    EINLM_HD constexpr bool is_row_major() const noexcept {
      index_t s = 1;
      for (std::size_t r = R; r-- > 0;) {
        const index_t n = static_cast<index_t>(extents_.extent(r));
        if (n != 1 && strides_[r] != s) return false;
        s *= n;
      }
      return true;
    }

    friend EINLM_HD constexpr bool operator==(const mapping& a, const mapping& b) noexcept {
      return a.extents_ == b.extents_ && a.strides_ == b.strides_;
    }

   private:
    Extents extents_{};
    index_array<R> strides_{};
  };
};

/// A mapping's strides as an array (layout_right, layout_left, layout_stride or layout_strided).
template <class Mapping>
EINLM_HD constexpr index_array<Mapping::extents_type::rank()> strides_of(const Mapping& m) {
  index_array<Mapping::extents_type::rank()> s{};
  for (std::size_t r = 0; r != s.size(); ++r) s[r] = static_cast<index_t>(m.stride(r));
  return s;
}

namespace detail {
template <class Mapping, std::size_t... I>
EINLM_HD constexpr index_t map_index(const Mapping& m, const index_array<sizeof...(I)>& idx, std::index_sequence<I...>) {
  return static_cast<index_t>(m(idx[I]...));
}
/// The offset a layout mapping gives a multi-index held in an array.
template <class Mapping>
EINLM_HD constexpr index_t map_index(const Mapping& m, const index_array<Mapping::extents_type::rank()>& idx) {
  return map_index(m, idx, std::make_index_sequence<Mapping::extents_type::rank()>{});
}
}  // namespace detail

// ------------------------------------------------------------------------------------- view

/// Non-owning view of elements in memory space S: a cuda::std::mdspan plus the space tag.
template <class T, extents_like E, class Layout = layout_strided, memory_space S = host>
class view {
 public:
  using element_type = T;
  using value_type = std::remove_cv_t<T>;
  using extents_type = E;
  using layout_type = Layout;
  using mapping_type = typename Layout::template mapping<E>;
  using mdspan_type = cuda::std::mdspan<T, E, Layout>;
  using space = S;
  static constexpr std::size_t R = E::rank();

  constexpr view() : span_(nullptr, mapping_type()) {}
  EINLM_HD constexpr view(T* data, const mapping_type& m) : span_(data, m) {}
  EINLM_HD constexpr view(T* data, const E& e) : span_(data, mapping_type(e)) {}
  EINLM_HD constexpr explicit view(const mdspan_type& m) : span_(m) {}
  /// Converts between layouts (e.g. a contiguous view to a strided one) and adds const.
  template <class U, class L2>
    requires(std::is_convertible_v<U (*)[], T (*)[]> &&
             (!std::is_same_v<L2, Layout> || !std::is_same_v<U, T>))
  EINLM_HD constexpr view(const view<U, E, L2, S>& other)
      : span_(other.data(), mapping_type(other.mapping())) {}

  EINLM_HD constexpr T* data() const noexcept { return span_.data_handle(); }
  EINLM_HD constexpr const E& extents() const noexcept { return span_.extents(); }
  EINLM_HD constexpr const mapping_type& mapping() const noexcept { return span_.mapping(); }
  EINLM_HD constexpr const mdspan_type& mdspan() const noexcept { return span_; }
  EINLM_HD constexpr index_t extent(std::size_t r) const noexcept { return static_cast<index_t>(extents().extent(r)); }
  EINLM_HD constexpr index_t stride(std::size_t r) const noexcept { return static_cast<index_t>(mapping().stride(r)); }
  EINLM_HD constexpr index_t size() const noexcept { return einlm::size(extents()); }
  static constexpr std::size_t rank() noexcept { return R; }

  /// True when the elements are contiguous in row-major order.
  EINLM_HD constexpr bool is_contiguous() const noexcept {
    if constexpr (std::is_same_v<Layout, cuda::std::layout_right>) return true;
    else return layout_strided::mapping<E>(mapping()).is_row_major();
  }

  template <class... I>
    requires(sizeof...(I) == R && (std::is_integral_v<I> && ...))
  EINLM_HD constexpr T& operator()(I... i) const {
    return data()[mapping()(static_cast<index_t>(i)...)];
  }
  EINLM_HD constexpr T& operator()(const index_array<R>& idx) const {
    return data()[detail::map_index(mapping(), idx)];
  }

 private:
  mdspan_type span_{};
};

template <class T, class E, class L>
using host_view = view<T, E, L, host>;
template <class T, class E, class L>
using device_view = view<T, E, L, device>;

// ----------------------------------------------------------------------------------- tensor

/// Owning, contiguous, row-major tensor of T with extents E in memory space S.
template <dtype T, extents_like E, memory_space S = host>
class tensor {
 public:
  using element_type = T;
  using value_type = T;
  using extents_type = E;
  using space = S;
  using view_type = einlm::view<T, E, cuda::std::layout_right, S>;
  using const_view_type = einlm::view<const T, E, cuda::std::layout_right, S>;
  static constexpr std::size_t R = E::rank();

  /// A tensor whose extents are all static, or an empty one when some are dynamic.
  tensor() : extents_(), buffer_(is_static_v<E> ? static_cast<std::size_t>(einlm::size(E{})) : 0) {}
  /// A tensor with the given extents (elements uninitialised).
  explicit tensor(const E& e) : extents_(checked(e)), buffer_(static_cast<std::size_t>(einlm::size(e))) {}
  /// A tensor with the given dynamic extents, in order: tensor<float, extents<dyn, 64>> t(seq_len).
  template <std::integral... I>
    requires(sizeof...(I) == E::rank_dynamic() && sizeof...(I) > 0)
  explicit tensor(I... dynamic_extents) : tensor(E(static_cast<index_t>(dynamic_extents)...)) {}

  tensor(tensor&&) noexcept = default;
  tensor& operator=(tensor&&) noexcept = default;
  tensor(const tensor&) = delete;
  tensor& operator=(const tensor&) = delete;

  /// Evaluates a lazy expression into a new tensor of its shape (one pass; einlm/expr). Numbers
  /// are extents here (tensor t(n)), never expressions.
  template <class X>
    requires(!std::is_arithmetic_v<X> && requires(tensor& t, const X& x) { assign(t, x); })
  tensor(const X& x) : tensor(extents_of(x.extents())) {
    assign(*this, x);
  }
  /// Evaluates a lazy expression into this tensor (shapes must match; a number fills it; einlm/expr).
  template <class X>
    requires requires(tensor& t, const X& x) { assign(t, x); }
  tensor& operator=(const X& x) {
    assign(*this, x);
    return *this;
  }

  T* data() noexcept { return buffer_.data(); }
  const T* data() const noexcept { return buffer_.data(); }
  const E& extents() const noexcept { return extents_; }
  index_t extent(std::size_t r) const noexcept { return static_cast<index_t>(extents_.extent(r)); }
  index_t size() const noexcept { return einlm::size(extents_); }
  static constexpr std::size_t rank() noexcept { return R; }
  std::size_t bytes() const noexcept { return static_cast<std::size_t>(size()) * sizeof(T); }

  view_type view() noexcept { return view_type(data(), extents_); }
  const_view_type view() const noexcept { return const_view_type(data(), extents_); }
  const_view_type cview() const noexcept { return view(); }
  operator view_type() noexcept { return view(); }
  operator const_view_type() const noexcept { return view(); }
  /// A strided view (the type slices and transposes produce).
  einlm::view<T, E, layout_strided, S> strided() noexcept { return view(); }
  einlm::view<const T, E, layout_strided, S> strided() const noexcept { return view(); }

  template <class... I>
    requires(sizeof...(I) == R && (std::is_integral_v<I> && ...))
  T& operator()(I... i) {
    static_assert(std::is_same_v<S, host>, "element access needs host memory; copy with to_host() first");
    return view()(i...);
  }
  template <class... I>
    requires(sizeof...(I) == R && (std::is_integral_v<I> && ...))
  const T& operator()(I... i) const {
    static_assert(std::is_same_v<S, host>, "element access needs host memory; copy with to_host() first");
    return view()(i...);
  }

  /// The underlying buffer (device tensors: its stream decides when the memory can be reused).
  buffer<T, S>& storage() noexcept { return buffer_; }

  /// A deep copy.
  tensor clone() const {
    tensor t(extents_);
    copy(view(), t.view());
    return t;
  }

 private:
  // The extents of an expression as this tensor's extents type (static entries must agree).
  template <class XE>
  static E extents_of(const XE& e) {
    static_assert(XE::rank() == R, "einlm: the expression's rank differs from the destination's rank");
    static_assert(compatible_extents_v<E, XE>,
                  "einlm: the expression's static shape differs from the destination's static shape");
    return check_extents<E>(to_array(e), "tensor");
  }
  static const E& checked(const E& e) {
    for (std::size_t r = 0; r != R; ++r)
      if (static_cast<index_t>(e.extent(r)) < 0)
        throw shape_error(detail::concat("tensor: negative extent in ", shape_string(e)));
    return e;
  }
  E extents_;
  buffer<T, S> buffer_;
};

template <class T, class E>
using host_tensor = tensor<T, E, host>;
template <class T, class E>
using device_tensor = tensor<T, E, device>;

// --------------------------------------------------------------------------------- traits

namespace detail {
template <class X>
struct view_traits {
  static constexpr bool is_view = false;
  static constexpr bool is_tensor = false;
};
template <class T, class E, class L, class S>
struct view_traits<view<T, E, L, S>> {
  static constexpr bool is_view = true;
  static constexpr bool is_tensor = false;
};
template <class T, class E, class S>
struct view_traits<tensor<T, E, S>> {
  static constexpr bool is_view = false;
  static constexpr bool is_tensor = true;
};
}  // namespace detail

template <class X>
concept view_like = detail::view_traits<std::remove_cvref_t<X>>::is_view;
template <class X>
concept tensor_like = detail::view_traits<std::remove_cvref_t<X>>::is_tensor;
/// A tensor or a view.
template <class X>
concept array_like = view_like<X> || tensor_like<X>;

/// The view of a tensor (const when the tensor is), or the view itself. A temporary tensor has no
/// view that outlives it, so it is refused.
template <array_like X>
constexpr auto as_view(X&& x) {
  static_assert(!tensor_like<X> || std::is_lvalue_reference_v<X>,
                "a view of a temporary tensor would dangle; keep the tensor in a variable");
  if constexpr (tensor_like<X>) return x.view();
  else return std::remove_cvref_t<X>(x);
}

// ---------------------------------------------------------------------------------- slicing

/// Keeps a whole axis (with its static extent), as NumPy's `:`.
struct full_extent_t {};
inline constexpr full_extent_t full_extent{};

/// An open bound of a range.
inline constexpr index_t none = std::numeric_limits<index_t>::min();

/// Python slice start:stop:step; `none` leaves a bound open.
struct range {
  index_t start = none;
  index_t stop = none;
  index_t step = 1;
};

namespace detail {

template <class Spec>
inline constexpr bool keeps_axis_v = !std::is_integral_v<Spec>;

template <class Spec, std::size_t Static>
inline constexpr std::size_t sliced_extent_v = std::is_same_v<Spec, full_extent_t> ? Static : dyn;

template <class E, class Specs, class Seq>
struct sliced_extents;
template <class E, class... Specs, std::size_t... I>
struct sliced_extents<E, std::tuple<Specs...>, std::index_sequence<I...>> {
  // Build the list of kept extents by concatenating one-or-zero-element extents per axis.
  template <std::size_t Axis, class Spec>
  using one = std::conditional_t<keeps_axis_v<Spec>, extents<sliced_extent_v<Spec, E::static_extent(Axis)>>,
                                 extents<>>;
  template <class... X>
  struct cat;
  template <class A>
  struct cat<A> {
    using type = A;
  };
  template <class A, class B, class... Rest>
  struct cat<A, B, Rest...> {
    using type = typename cat<concat_t<A, B>, Rest...>::type;
  };
  using type = typename cat<extents<>, one<I, Specs>...>::type;
};

/// Python's slice.indices(): normalised start and element count for an axis of length n.
inline std::pair<index_t, index_t> resolve_range(const range& r, index_t n, std::size_t axis) {
  if (r.step == 0) throw value_error(detail::concat("slice: step of axis ", axis, " must not be zero"));
  const bool up = r.step > 0;
  auto clamp = [&](index_t v, index_t dflt) {
    if (v == none) return dflt;
    if (v < 0) v += n;
    if (up) return std::clamp<index_t>(v, 0, n);
    return std::clamp<index_t>(v, -1, n - 1);
  };
  const index_t start = clamp(r.start, up ? 0 : n - 1);
  const index_t stop = clamp(r.stop, up ? n : -1);
  index_t count = 0;
  if (up && stop > start) count = (stop - start + r.step - 1) / r.step;
  if (!up && start > stop) count = (start - stop + (-r.step) - 1) / (-r.step);
  return {start, count};
}

}  // namespace detail

/// A view of part of a tensor or view; see the file comment for the specs.
template <array_like X, class... Specs>
auto slice(X&& x, Specs... specs) {
  auto v = as_view(std::forward<X>(x));
  using V = decltype(v);
  using E = typename V::extents_type;
  static_assert(sizeof...(Specs) == E::rank(), "slice: give one spec (index, full_extent or range) per axis");
  static_assert(((std::is_integral_v<Specs> || std::is_same_v<Specs, full_extent_t> || std::is_same_v<Specs, range>) && ...),
                "slice: each spec is an integer index, einlm::full_extent or einlm::range{start, stop, step}");
  using OutE = typename detail::sliced_extents<E, std::tuple<Specs...>, std::index_sequence_for<Specs...>>::type;
  constexpr std::size_t RO = OutE::rank();
  index_array<RO> out_ext{}, out_stride{};
  index_t offset = 0;
  std::size_t axis = 0, o = 0;
  auto one = [&](auto spec) {
    using Spec = decltype(spec);
    const index_t n = v.extent(axis), s = v.stride(axis);
    if constexpr (std::is_integral_v<Spec>) {
      index_t i = static_cast<index_t>(spec);
      if (i < 0) i += n;
      if (i < 0 || i >= n)
        throw shape_error(detail::concat("slice: index ", static_cast<index_t>(spec), " is out of range for axis ",
                                         axis, " of length ", n, " in a tensor of shape ", shape_string(v.extents())));
      offset += i * s;
    } else if constexpr (std::is_same_v<Spec, full_extent_t>) {
      out_ext[o] = n;
      out_stride[o++] = s;
    } else {
      auto [start, count] = detail::resolve_range(spec, n, axis);
      if (count > 0) offset += start * s;
      out_ext[o] = count;
      out_stride[o++] = s * spec.step;
    }
    ++axis;
  };
  (one(specs), ...);
  using T = typename V::element_type;
  using M = typename layout_strided::template mapping<OutE>;
  return view<T, OutE, layout_strided, typename V::space>(v.data() + offset, M(from_array<OutE>(out_ext), out_stride));
}

/// A view with the axes in the order P (out axis i is input axis P[i]); no data moves.
template <std::size_t... P, array_like X>
auto transpose(X&& x) {
  auto v = as_view(std::forward<X>(x));
  using V = decltype(v);
  using E = typename V::extents_type;
  using OutE = permute_t<E, P...>;
  const auto s = strides_of(v.mapping());
  using M = typename layout_strided::template mapping<OutE>;
  return view<typename V::element_type, OutE, layout_strided, typename V::space>(
      v.data(), M(permute<P...>(v.extents()), index_array<sizeof...(P)>{s[P]...}));
}

/// A contiguous view with new extents of the same size (static sizes checked at compile time).
template <extents_like NewE, array_like X>
auto reshape(X&& x, const NewE& new_extents = NewE{}) {
  auto v = as_view(std::forward<X>(x));
  using V = decltype(v);
  using E = typename V::extents_type;
  if constexpr (is_static_v<E> && is_static_v<NewE>)
    static_assert(static_size_v<E> == static_size_v<NewE>, "reshape: the new shape must have the same number of elements");
  if (einlm::size(new_extents) != v.size())
    throw shape_error(detail::concat("reshape: cannot reshape a tensor of shape ", shape_string(v.extents()),
                                     " into shape ", shape_string(new_extents)));
  if (!v.is_contiguous())
    throw shape_error(detail::concat("reshape: the view of shape ", shape_string(v.extents()),
                                     " is not contiguous; evaluate it into a tensor first"));
  return view<typename V::element_type, NewE, cuda::std::layout_right, typename V::space>(v.data(), new_extents);
}

// ------------------------------------------------------------------------------------ copies

namespace detail {

template <class Src, class Dst>
void check_same_shape(const Src& src, const Dst& dst, const char* op) {
  static_assert(Src::extents_type::rank() == Dst::extents_type::rank(), "copy: source and destination ranks differ");
  if (to_array(src.extents()) != to_array(dst.extents()))
    throw shape_error(concat(op, ": source shape ", shape_string(src.extents()), " differs from destination shape ",
                             shape_string(dst.extents())));
}

// Host strided copy (any strides), row by row.
template <class SrcV, class DstV>
void host_strided_copy(const SrcV& src, const DstV& dst) {
  constexpr std::size_t R = SrcV::extents_type::rank();
  const index_t n = src.size();
  if (n == 0) return;
  if constexpr (R == 0) {
    dst.data()[0] = convert<typename DstV::value_type>(src.data()[0]);
  } else {
    index_array<R> idx{};
    const layout_strided::mapping<typename SrcV::extents_type> ms(src.mapping());
    const layout_strided::mapping<typename DstV::extents_type> md(dst.mapping());
    for (index_t i = 0; i < n; ++i) {
      dst.data()[md(idx)] = convert<typename DstV::value_type>(src.data()[ms(idx)]);
      for (std::size_t r = R; r-- > 0;) {
        if (++idx[r] < src.extent(r)) break;
        idx[r] = 0;
      }
    }
  }
}

}  // namespace detail

/// Copies the elements of src into dst (same shape). Host to host: any strides and element types
/// (values converted). Across spaces or device to device: both contiguous and of the same element
/// type; evaluate a strided view into a tensor first.
template <array_like Src, array_like Dst>
void copy(const Src& src_in, Dst&& dst_in) {
  auto src = as_view(src_in);
  auto dst = as_view(dst_in);
  using SrcV = decltype(src);
  using DstV = decltype(dst);
  static_assert(!std::is_const_v<typename DstV::element_type>, "copy: the destination is read-only");
  detail::check_same_shape(src, dst, "copy");
  using SS = typename SrcV::space;
  using DS = typename DstV::space;
  if constexpr (std::is_same_v<SS, host> && std::is_same_v<DS, host>) {
    if constexpr (std::is_same_v<typename SrcV::value_type, typename DstV::value_type>) {
      if (src.is_contiguous() && dst.is_contiguous()) {
        if (src.size() > 0) std::memmove(dst.data(), src.data(), static_cast<std::size_t>(src.size()) * sizeof(*src.data()));
        return;
      }
    }
    detail::host_strided_copy(src, dst);
  } else {
#if EINLM_HAS_CUDA
    static_assert(std::is_same_v<typename SrcV::value_type, typename DstV::value_type>,
                  "copy: a copy that involves device memory needs equal element types; convert with cast<>() first");
    if (!src.is_contiguous() || !dst.is_contiguous())
      throw shape_error("copy: a copy that involves device memory needs contiguous source and destination; "
                        "evaluate the strided view into a tensor first");
    constexpr cudaMemcpyKind kind = std::is_same_v<SS, host>
                                        ? cudaMemcpyHostToDevice
                                        : (std::is_same_v<DS, host> ? cudaMemcpyDeviceToHost : cudaMemcpyDeviceToDevice);
    if (src.size() > 0)
      EINLM_CUDA_CHECK(cudaMemcpy(dst.data(), src.data(), static_cast<std::size_t>(src.size()) * sizeof(*src.data()), kind));
#else
    static_assert(sizeof(SrcV) == 0, "copies involving device memory need a translation unit compiled by nvcc");
#endif
  }
}

#if EINLM_HAS_CUDA
/// A copy of a tensor or view (contiguous) in memory space S.
template <memory_space S, array_like X>
auto to_space(const X& x) {
  auto v = as_view(x);
  using V = decltype(v);
  tensor<typename V::value_type, typename V::extents_type, S> out(v.extents());
  copy(v, out);
  return out;
}

/// A host copy of a device tensor or view (contiguous).
template <array_like X>
auto to_host(const X& x) {
  return to_space<host>(x);
}

/// A device copy of a host tensor or view (contiguous).
template <array_like X>
auto to_device(const X& x) {
  return to_space<device>(x);
}
#endif

}  // namespace einlm
