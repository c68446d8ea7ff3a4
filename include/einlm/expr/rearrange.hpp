// einlm/expr/rearrange.hpp — index-map nodes: rearrange and repeat of any expression, and of
// tensors and views without reading through a child node.
//
//   rearrange_node<X, E>    element at output index i is x at map(i): i is decomposed into
//                           elementary indices, which compose x's index (repeat's new axes are
//                           simply not used). Works for any child expression.
//   rearranged_array<T,E,S> the same for a tensor or view: each elementary axis has a stride in the
//                           array's memory (0 for repeat's new axes). When every output dimension's
//                           axes merge into one stride — a permutation, a split, a merge of adjacent
//                           axes, a broadcast — it is a strided view (to_view() returns it) and the
//                           executors treat it as one: contiguous rows run a packet at a time.
// Both carry a pattern::index_map (integers only) and their extents type.
#pragma once

#include <stdexcept>
#include <type_traits>

#include "einlm/core/config.hpp"
#include "einlm/core/error.hpp"
#include "einlm/core/extents.hpp"
#include "einlm/core/simd.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/expr/expression.hpp"
#include "einlm/pattern/lower.hpp"

namespace einlm {

namespace detail {

/// A cursor that evaluates a node element by element through at() (for nodes whose elements along
/// a row are not at a constant stride).
template <class Node>
struct indexed_cursor {
  Node node;
  index_array<Node::R> base;
  bool splat;
  EINLM_EXEC_CHECK_DISABLE
  template <class K>
  EINLM_HD kind_t<K, typename Node::compute_type> load(index_t j) const {
    using C = typename Node::compute_type;
    auto at = [&](index_t jj) {
      index_array<Node::R> idx = base;
      if constexpr (Node::R > 0) idx[Node::R - 1] = splat ? base[Node::R - 1] : jj;
      return node.at(idx);
    };
    if constexpr (std::is_same_v<K, scalar_kind>) {
      return at(j);
    } else if constexpr (std::is_same_v<K, packet_kind>) {
      return simd::generate<C>([&](int l) { return at(j + l); });
    } else {
      kind_t<K, C> out;
      EINLM_UNROLL
      for (int l = 0; l < K::width; ++l) out[l] = at(j + l);
      return out;
    }
  }
};

}  // namespace detail

/// x rearranged (or repeated) through an index map; see the file comment.
template <class X, extents_like E>
class rearrange_node : public expression_base {
 public:
  using value_type = typename X::value_type;
  using compute_type = typename X::compute_type;
  using extents_type = E;
  using space = typename X::space;
  static constexpr std::size_t R = E::rank();

  rearrange_node(const X& x, const E& e, const pattern::index_map& map) : x_(x), extents_(e), map_(map) {}

  EINLM_HD const E& extents() const { return extents_; }
  EINLM_HD compute_type at(const index_array<R>& idx) const {
    index_t el[pattern::max_elementary] = {};
    map_.decompose(idx, el);
    return x_.at(map_.compose<X::R>(el));
  }
  using cursor = detail::indexed_cursor<rearrange_node>;
  EINLM_HD cursor row(const index_array<R>& idx, bool splat) const { return cursor{*this, idx, splat}; }
  bool rows_ok() const { return false; }
  bool flat_ok() const { return false; }
  int contiguous_axis() const { return -1; }
  template <class F>
  void for_each_leaf(F&& f) const {
    x_.for_each_leaf(f);
  }
  const pattern::index_map& map() const { return map_; }

 private:
  X x_;
  E extents_;
  pattern::index_map map_;
};

/// A tensor or view rearranged (or repeated) in place; see the file comment.
template <class T, extents_like E, class S>
class rearranged_array : public expression_base {
 public:
  using element_type = T;
  using value_type = std::remove_const_t<T>;
  using compute_type = compute_t<value_type>;
  using extents_type = E;
  using space = S;
  static constexpr std::size_t R = E::rank();

  /// From an array's data pointer and the strides of its dimensions (in_strides[d]).
  rearranged_array(T* data, const index_t* in_strides, const E& e, const pattern::index_map& map)
      : data_(data), extents_(e), map_(map) {
    // Stride of each elementary axis: within its input dimension, row-major.
    for (int e_ = 0; e_ < pattern::max_elementary; ++e_) stride_[e_] = 0;
    for (int d = 0; d < map.n_in; ++d) {
      index_t s = in_strides[d];
      for (int k = map.in_size[d] - 1; k >= 0; --k) {
        const int a = map.in_axes[map.in_first[d] + k];
        stride_[a] = s;
        s *= map.length[a];
      }
    }
    // An output dimension is strided when its axes merge into one stride s: going outward from the
    // fastest axis, each axis of length > 1 must have the stride (product of the inner lengths)·s.
    strided_ = true;
    for (int o = 0; o < map.n_out; ++o) {
      index_t s = 0, inner = 1;
      bool have = false;
      for (int k = map.out_size[o] - 1; k >= 0; --k) {
        const int a = map.out_axes[map.out_first[o] + k];
        if (map.length[a] != 1) {
          if (!have) {
            s = stride_[a];
            have = true;
          } else if (stride_[a] != inner * s) {
            strided_ = false;
          }
        }
        inner *= map.length[a];
      }
      out_stride_[o] = s;
    }
    if (strided_) {
      for (std::size_t o = 0; o != R; ++o) out_strides_[o] = out_stride_[o];
    }
  }

  EINLM_HD const E& extents() const { return extents_; }
  EINLM_HD T* data() const { return data_; }

  EINLM_HD compute_type at(const index_array<R>& idx) const { return convert<compute_type>(data_[offset(idx)]); }

  /// The element's offset from data().
  EINLM_HD index_t offset(const index_array<R>& idx) const {
    if (strided_) {
      index_t o = 0;
      for (std::size_t r = 0; r != R; ++r) o += idx[r] * out_strides_[r];
      return o;
    }
    index_t el[pattern::max_elementary] = {};
    map_.decompose(idx, el);
    index_t o = 0;
    for (int e = 0; e < map_.n_elem; ++e) o += el[e] * stride_[e];
    return o;
  }

  using cursor = typename array_leaf<T, E, typename layout_strided::template mapping<E>, S>::cursor;
  EINLM_HD cursor row(const index_array<R>& idx, bool splat) const { return cursor{data_ + offset(idx), splat}; }
  bool rows_ok() const {
    if constexpr (R == 0) return strided_;
    else return strided_ && (extents_.extent(R - 1) <= 1 || out_strides_[R - 1] == 1);
  }
  bool flat_ok() const {
    return strided_ && layout_strided::mapping<E>(extents_, out_strides_).is_row_major();
  }
  int contiguous_axis() const {
    if (strided_)
      for (std::size_t r = R; r-- > 0;)
        if (out_strides_[r] == 1 && extents_.extent(r) > 1) return static_cast<int>(r);
    return -1;
  }
  template <class F>
  void for_each_leaf(F&& f) const {
    f(static_cast<const void*>(data_), sizeof(value_type));
  }

  /// True when the result is an ordinary strided view of the array's memory.
  bool is_strided() const { return strided_; }
  /// The strides of that view (valid when is_strided()).
  const index_array<R>& strides() const { return out_strides_; }
  /// The result as a view (no copy); shape_error when no single stride per dimension exists.
  view<T, E, layout_strided, S> to_view() const {
    if (!strided_)
      throw shape_error(detail::concat("rearrange: the result of shape ", shape_string(extents_),
                                       " is not a strided view of the input's memory (its axes do not merge); evaluate it instead"));
    return view<T, E, layout_strided, S>(data_, typename layout_strided::template mapping<E>(extents_, out_strides_));
  }

 private:
  T* data_;
  E extents_;
  pattern::index_map map_;
  index_t stride_[pattern::max_elementary] = {};
  index_t out_stride_[pattern::max_dims] = {};
  index_array<R> out_strides_{};
  bool strided_ = false;
};

}  // namespace einlm
