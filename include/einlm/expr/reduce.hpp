// einlm/expr/reduce.hpp — reduction nodes: einops' reduce of any expression.
//
//   reduce_node<X, E, Op>   element at output index i combines x over every value of the reduced
//                           elementary axes (pattern::index_map::reduced) with Op, one of the
//                           reductions below. The result is a lazy expression like any other:
//                           reduce(rearrange(x * y)) is evaluated in one pass over the output.
// Reductions (einops' names): sum, mean, prod, max, min, any, all. Types, as in NumPy/PyTorch:
// floating inputs reduce in their accumulator type (float for bf16/fp16) and keep their type; sum
// and prod of integers or bool give int64; mean needs a floating input; max and min keep the type
// (NaN propagates); any and all give bool.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include <cuda/std/limits>

#include "einlm/core/config.hpp"
#include "einlm/core/dtype.hpp"
#include "einlm/core/extents.hpp"
#include "einlm/core/math.hpp"
#include "einlm/core/simd.hpp"
#include "einlm/expr/expression.hpp"
#include "einlm/expr/rearrange.hpp"
#include "einlm/pattern/lower.hpp"

namespace einlm {

namespace reductions {

struct sum {
  static constexpr const char* name = "sum";
  template <class T>
  using value = std::conditional_t<is_floating_v<T>, T, std::int64_t>;
  template <class A>
  EINLM_HD static A init() { return A(0); }
  EINLM_EXEC_CHECK_DISABLE
  template <class A>
  EINLM_HD static A combine(A a, A x) { return a + x; }
  template <class A>
  EINLM_HD static A finish(A a, index_t) { return a; }
};
struct mean {
  static constexpr const char* name = "mean";
  template <class T>
  using value = T;
  template <class A>
  EINLM_HD static A init() { return A(0); }
  EINLM_EXEC_CHECK_DISABLE
  template <class A>
  EINLM_HD static A combine(A a, A x) { return a + x; }
  EINLM_EXEC_CHECK_DISABLE
  template <class A>
  EINLM_HD static A finish(A a, index_t n) { return a / A(static_cast<simd::scalar_t<A>>(n)); }
};
struct prod {
  static constexpr const char* name = "prod";
  template <class T>
  using value = std::conditional_t<is_floating_v<T>, T, std::int64_t>;
  template <class A>
  EINLM_HD static A init() { return A(1); }
  EINLM_EXEC_CHECK_DISABLE
  template <class A>
  EINLM_HD static A combine(A a, A x) { return a * x; }
  template <class A>
  EINLM_HD static A finish(A a, index_t) { return a; }
};
struct max {
  static constexpr const char* name = "max";
  template <class T>
  using value = T;
  // cuda::std::numeric_limits: its members are usable in device code (std::numeric_limits' are
  // host-only constexpr functions, which nvcc rejects in __host__ __device__ code).
  template <class A>
  EINLM_HD static A init() {
    if constexpr (std::is_floating_point_v<A>) return -cuda::std::numeric_limits<A>::infinity();
    else return cuda::std::numeric_limits<A>::lowest();
  }
  EINLM_EXEC_CHECK_DISABLE
  template <class A>
  EINLM_HD static A combine(A a, A x) { return math::detail::select((x > a) | (x != x), x, a); }
  template <class A>
  EINLM_HD static A finish(A a, index_t) { return a; }
};
struct min {
  static constexpr const char* name = "min";
  template <class T>
  using value = T;
  template <class A>
  EINLM_HD static A init() {
    if constexpr (std::is_floating_point_v<A>) return cuda::std::numeric_limits<A>::infinity();
    else return cuda::std::numeric_limits<A>::max();
  }
  EINLM_EXEC_CHECK_DISABLE
  template <class A>
  EINLM_HD static A combine(A a, A x) { return math::detail::select((x < a) | (x != x), x, a); }
  template <class A>
  EINLM_HD static A finish(A a, index_t) { return a; }
};
struct any {
  static constexpr const char* name = "any";
  template <class T>
  using value = bool;
  template <class A>
  EINLM_HD static A init() { return false; }
  template <class A>
  EINLM_HD static A combine(A a, A x) { return a | x; }
  template <class A>
  EINLM_HD static A finish(A a, index_t) { return a; }
};
struct all {
  static constexpr const char* name = "all";
  template <class T>
  using value = bool;
  template <class A>
  EINLM_HD static A init() { return true; }
  template <class A>
  EINLM_HD static A combine(A a, A x) { return a & x; }
  template <class A>
  EINLM_HD static A finish(A a, index_t) { return a; }
};

}  // namespace reductions

/// x reduced with Op over the map's reduced axes; see the file comment.
template <class X, extents_like E, class Op>
class reduce_node : public expression_base {
 public:
  using input_type = typename X::value_type;
  using value_type = typename Op::template value<input_type>;
  using compute_type = compute_t<value_type>;
  /// The type values are combined in: the input's accumulator for floating sums, else the result.
  using accumulate_type = std::conditional_t<is_floating_v<value_type>, accumulator_t<value_type>, compute_type>;
  using extents_type = E;
  using space = typename X::space;
  static constexpr std::size_t R = E::rank();

  reduce_node(const X& x, const E& e, const pattern::index_map& map) : x_(x), extents_(e), map_(map) {
    count_ = 1;
    for (int a = 0; a < map.n_elem; ++a) {
      if (map.is_reduced(a)) {
        reduced_[n_reduced_++] = static_cast<std::int8_t>(a);
        count_ *= map.length[a];
      }
    }
    // The elementary axis that moves the child's last index by one: when the child is contiguous
    // along its last axis, runs along it are read with cursors (a packet at a time on the CPU).
    const int last_dim = map.n_in - 1;
    if (last_dim >= 0 && map.in_size[last_dim] > 0 && x.rows_ok()) {
      const int a = map.in_axes[map.in_first[last_dim] + map.in_size[last_dim] - 1];
      if (map.is_reduced(a)) {
        inner_run_ = a;  // reducing along the child's contiguous axis
      } else if (R > 0 && map.out_size[R - 1] == 1 && map.out_axes[map.out_first[R - 1]] == a) {
        outer_rows_ = true;  // the output's rows are the child's rows
      }
    }
  }

  EINLM_HD const E& extents() const { return extents_; }

  EINLM_HD compute_type at(const index_array<R>& idx) const {
    index_t el[pattern::max_elementary] = {};
    map_.decompose(idx, el);
    return convert<compute_type>(Op::finish(reduce_at<scalar_kind>(el, 0), count_));
  }

  /// The mode of a cursor: a cached value (the row is broadcast), a reduction per element of an
  /// output row whose elements are adjacent in the child, or one at() per element.
  enum class cursor_mode : std::uint8_t { splat, rows, indexed };

  struct cursor {
    reduce_node node;
    index_array<R> base;
    cursor_mode mode;
    compute_type value;
    EINLM_EXEC_CHECK_DISABLE
    template <class K>
    EINLM_HD kind_t<K, compute_type> load(index_t j) const {
      using C = compute_type;
      if (mode == cursor_mode::splat) {
        if constexpr (is_lanes_kind_v<K>) {
          kind_t<K, C> out;
          for (int l = 0; l < K::width; ++l) out[l] = value;
          return out;
        } else {
          return kind_t<K, C>(value);
        }
      }
      if constexpr (!is_lanes_kind_v<K>) {
        if (mode == cursor_mode::rows) {
          index_t el[pattern::max_elementary] = {};
          node.map_.decompose(base, el);
          return node.finish_kind<K>(node.template reduce_at<K>(el, j));
        }
      }
      auto at = [&](index_t jj) {
        index_array<R> idx = base;
        if constexpr (R > 0) idx[R - 1] = jj;
        return node.at(idx);
      };
      if constexpr (std::is_same_v<K, scalar_kind>) {
        return at(j);
      } else if constexpr (std::is_same_v<K, packet_kind>) {
        return simd::generate<C>([&](int l) { return at(j + l); });
      } else {
        kind_t<K, C> out;
        for (int l = 0; l < K::width; ++l) out[l] = at(j + l);
        return out;
      }
    }
  };

  EINLM_HD cursor row(const index_array<R>& idx, bool splat) const {
    if (splat) return cursor{*this, idx, cursor_mode::splat, at(idx)};
    return cursor{*this, idx, outer_rows_ ? cursor_mode::rows : cursor_mode::indexed, compute_type{}};
  }
  bool rows_ok() const {
    if constexpr (R == 0) return true;
    else return outer_rows_ || extents_.extent(R - 1) <= 1;
  }
  bool flat_ok() const { return false; }
  int contiguous_axis() const { return -1; }
  template <class F>
  void for_each_leaf(F&& f) const {
    x_.for_each_leaf(f);
  }
  /// Output positions [begin, end) of the row starting at idx, written to out, when the output's
  /// rows are the child's rows: the reduced axes are walked outermost, so that the child is read
  /// row after row (contiguous), into accumulators for a block of the row. False (nothing
  /// written) in the other modes. Host only.
  template <class T>
  bool store_row(const index_array<R>& idx, index_t begin, index_t end, T* out) const {
    if (!outer_rows_) return false;
#if EINLM_HAS_PACKETS
    using P = simd::packet<accumulate_type>;
    // Accumulators for up to 4 KiB of the row: long contiguous reads per input row keep the
    // hardware prefetchers streaming.
    constexpr index_t block = 4096 / static_cast<index_t>(sizeof(accumulate_type)) / simd::width * simd::width;
    P acc[block / simd::width];
    index_t el[pattern::max_elementary] = {};
    map_.decompose(idx, el);
    for (index_t b = begin; b < end; b += block) {
      const index_t n = std::min(block, end - b), full = n / simd::width * simd::width;
      for (auto& a : acc) a = P(Op::template init<accumulate_type>());
      accumulate_type tail[simd::width];
      for (auto& t : tail) t = Op::template init<accumulate_type>();
      index_t red[pattern::max_elementary] = {};
      for (int k = 0; k < n_reduced_; ++k) red[k] = 0;
      while (true) {
        for (int k = 0; k < n_reduced_; ++k) el[reduced_[k]] = red[k];
        const auto c = x_.row(map_.compose<X::R>(el), false);
        for (index_t j = 0; j < full; j += simd::width)
          acc[j / simd::width] = Op::combine(acc[j / simd::width],
                                             simd::convert_packet<accumulate_type>(c.template load<packet_kind>(b + j)));
        for (index_t j = full; j < n; ++j)
          tail[j - full] = Op::combine(tail[j - full], convert<accumulate_type>(c.template load<scalar_kind>(b + j)));
        int k = n_reduced_ - 1;
        for (; k >= 0; --k) {
          if (++red[k] < map_.length[reduced_[k]]) break;
          red[k] = 0;
        }
        if (k < 0) break;
      }
      for (index_t j = 0; j < full; j += simd::width)
        simd::store(out + b + j, simd::convert_packet<compute_type>(Op::finish(acc[j / simd::width], count_)));
      for (index_t j = full; j < n; ++j) out[b + j] = convert<T>(convert<compute_type>(Op::finish(tail[j - full], count_)));
    }
    return true;
#else
    (void)idx;
    (void)begin;
    (void)end;
    (void)out;
    return false;
#endif
  }

  /// The whole row at idx (output positions [0, n), written to out) when the output's rows are the
  /// child's rows and a long reduction feeds them (a few outputs rows of many reduced rows, as in
  /// "a b -> b"): the reduced positions are cut into chunks whose length is fixed by the shape —
  /// not by the thread count, so the result does not depend on it —, each chunk is accumulated
  /// over the whole row into a partial row of its own (the child read row after row, as it lies in
  /// memory, where a cut of the output row would read it in strided pieces), chunks handed out as
  /// units by run_units(units, f), and the partial rows combined in chunk order. False (nothing
  /// written) when this does not apply (also for integer and boolean reductions). Host only.
  template <class T, class RunUnits>
  bool store_row_split(const index_array<R>& idx, index_t n, T* out, RunUnits&& run_units) const {
#if EINLM_HAS_PACKETS
    if constexpr (std::is_floating_point_v<accumulate_type>) {
      constexpr index_t min_chunk = 64, max_chunks = 16, max_row = index_t{1} << 16;
      if (!outer_rows_ || count_ < 2 * min_chunk || n > max_row || n < simd::width) return false;
      using P = simd::packet<accumulate_type>;
      constexpr int W = simd::width;
      const index_t chunks = std::min<index_t>(max_chunks, count_ / min_chunk);
      const index_t len = (count_ + chunks - 1) / chunks;
      std::vector<accumulate_type> partial(static_cast<std::size_t>(chunks * n));
      index_t el0[pattern::max_elementary] = {};
      map_.decompose(idx, el0);
      const index_t full = n / W * W;
      run_units(chunks, [&](index_t c) {
        accumulate_type* acc = partial.data() + c * n;
        std::fill(acc, acc + n, Op::template init<accumulate_type>());
        const index_t first = c * len, last = std::min(count_, first + len);
        index_t el[pattern::max_elementary];
        std::copy(el0, el0 + pattern::max_elementary, el);
        // The reduced indices of position `first`, row-major over the reduced axes.
        index_t red[pattern::max_elementary] = {};
        for (index_t k = n_reduced_ - 1, rest = first; k >= 0; --k) {
          const index_t length = map_.length[reduced_[k]];
          red[k] = rest % length;
          rest /= length;
        }
        for (index_t t = first; t < last; ++t) {
          for (int k = 0; k < n_reduced_; ++k) el[reduced_[k]] = red[k];
          const auto cur = x_.row(map_.compose<X::R>(el), false);
          for (index_t j = 0; j < full; j += W)
            simd::store(acc + j, Op::combine(simd::load<accumulate_type>(acc + j),
                                             simd::convert_packet<accumulate_type>(cur.template load<packet_kind>(j))));
          for (index_t j = full; j < n; ++j)
            acc[j] = Op::combine(acc[j], convert<accumulate_type>(cur.template load<scalar_kind>(j)));
          for (int k = n_reduced_ - 1; k >= 0; --k) {
            if (++red[k] < map_.length[reduced_[k]]) break;
            red[k] = 0;
          }
        }
      });
      for (index_t j = 0; j < full; j += W) {
        P a = simd::load<accumulate_type>(partial.data() + j);
        for (index_t c = 1; c < chunks; ++c) a = Op::combine(a, simd::load<accumulate_type>(partial.data() + c * n + j));
        simd::store(out + j, simd::convert_packet<compute_type>(Op::finish(a, count_)));
      }
      for (index_t j = full; j < n; ++j) {
        accumulate_type a = partial[static_cast<std::size_t>(j)];
        for (index_t c = 1; c < chunks; ++c) a = Op::combine(a, partial[static_cast<std::size_t>(c * n + j)]);
        out[j] = convert<T>(convert<compute_type>(Op::finish(a, count_)));
      }
      return true;
    }
#endif
    (void)idx;
    (void)n;
    (void)out;
    (void)run_units;
    return false;
  }

  /// True when each output element reduces a run that is contiguous in the child (the CUDA
  /// executor then reduces each output element with a whole thread block).
  bool reduces_inner_run() const { return inner_run_ >= 0; }
  /// Number of input elements combined into each output element.
  index_t reduced_count() const { return count_; }
  const X& child() const { return x_; }
  const pattern::index_map& map() const { return map_; }

  // The pieces the CUDA executor's reduction kernels are made of (einlm/exec/cuda_reduce.cuh):
  // several threads accumulate parts of one output element, combine their parts, and finish.

  /// True when the output's last axis is the child's contiguous axis (reductions over outer axes).
  bool reduces_outer_axes() const { return outer_rows_; }
  /// The elementary indices of output index idx (reduced axes at 0).
  EINLM_HD void elementary(const index_array<R>& idx, index_t* el) const { map_.decompose(idx, el); }
  EINLM_HD static accumulate_type identity() { return Op::template init<accumulate_type>(); }
  EINLM_EXEC_CHECK_DISABLE
  EINLM_HD static accumulate_type combine(accumulate_type a, accumulate_type b) { return Op::combine(a, b); }
  /// The output value of an element whose reduced elements combined to a.
  EINLM_EXEC_CHECK_DISABLE
  EINLM_HD compute_type finish(accumulate_type a) const { return convert<compute_type>(Op::finish(a, count_)); }

  /// The combination of the reduced elements at linear positions first, first + step, … < count
  /// for the output element with elementary indices el (overwritten). Positions are row-major
  /// over the reduced axes with the child's contiguous one (when reduced) fastest, so that
  /// threads with consecutive `first` read consecutive elements. Four loads are kept in flight.
  EINLM_EXEC_CHECK_DISABLE
  EINLM_HD accumulate_type accumulate_strided(index_t* el, index_t first, index_t step) const {
    accumulate_type acc = identity();
    if (first >= count_) return acc;
    // The fastest axis: the contiguous run when there is one, else the last reduced axis.
    const int fast = inner_run_ >= 0 ? inner_run_ : (n_reduced_ > 0 ? reduced_[n_reduced_ - 1] : -1);
    const index_t run = fast >= 0 ? map_.length[fast] : 1;
    for (int k = 0; k < n_reduced_; ++k) el[reduced_[k]] = 0;
    index_t t = first % run;
    bool more = advance_reduced(el, fast, first / run);
    accumulate_type a1 = acc, a2 = acc, a3 = acc;
    while (more) {
      if (inner_run_ >= 0) {
        const auto c = x_.row(map_.compose<X::R>(el), false);
        for (; t + 3 * step < run; t += 4 * step) {
          const auto v0 = c.template load<scalar_kind>(t), v1 = c.template load<scalar_kind>(t + step);
          const auto v2 = c.template load<scalar_kind>(t + 2 * step), v3 = c.template load<scalar_kind>(t + 3 * step);
          acc = Op::combine(acc, convert<accumulate_type>(v0));
          a1 = Op::combine(a1, convert<accumulate_type>(v1));
          a2 = Op::combine(a2, convert<accumulate_type>(v2));
          a3 = Op::combine(a3, convert<accumulate_type>(v3));
        }
        for (; t < run; t += step) acc = Op::combine(acc, convert<accumulate_type>(c.template load<scalar_kind>(t)));
      } else {
        auto load = [&](index_t tt) {
          el[fast] = tt;
          return convert<accumulate_type>(x_.at(map_.compose<X::R>(el)));
        };
        for (; t + 3 * step < run; t += 4 * step) {  // (run > 1, so fast ≥ 0)
          const auto v0 = load(t), v1 = load(t + step), v2 = load(t + 2 * step), v3 = load(t + 3 * step);
          acc = Op::combine(acc, v0);
          a1 = Op::combine(a1, v1);
          a2 = Op::combine(a2, v2);
          a3 = Op::combine(a3, v3);
        }
        for (; t < run; t += step) {
          if (fast >= 0) el[fast] = t;
          acc = Op::combine(acc, convert<accumulate_type>(x_.at(map_.compose<X::R>(el))));
        }
        if (fast >= 0) el[fast] = 0;
      }
      more = advance_reduced(el, fast, t / run);
      t %= run;
    }
    return Op::combine(Op::combine(acc, a1), Op::combine(a2, a3));
  }

  /// The accumulated value of the reduced elements for output elementary indices `el` (reduced
  /// axes at 0): as a K-kind value over the output positions j, j+1, … when the output's rows are
  /// the child's rows (K = scalar_kind: position j alone).
  EINLM_EXEC_CHECK_DISABLE
  template <class K>
  EINLM_HD kind_t<K, accumulate_type> reduce_at(index_t* el, index_t j) const {
    using A = kind_t<K, accumulate_type>;
    A acc = A(Op::template init<accumulate_type>());
    if (count_ == 0) return acc;
    const int last = outer_rows_ ? -1 : inner_run_;
    const index_t run = last >= 0 ? map_.length[last] : 1;
    // Odometer over the reduced axes other than the contiguous run (the last varies fastest).
    while (true) {
      const auto in = map_.compose<X::R>(el);
      if (outer_rows_) {
        // el holds the row start; position j of the output row is position j of the child's row.
        acc = Op::combine(acc, convert_kind<K, accumulate_type>(x_.row(in, false).template load<K>(j)));
      } else if (last >= 0) {
        const auto c = x_.row(in, false);
#if EINLM_HAS_PACKETS
        if constexpr (std::is_same_v<K, scalar_kind>) {
          using P = simd::packet<accumulate_type>;
          index_t t = 0;
          if (run >= simd::width) {
            // Four independent accumulators, so that the additions' latency overlaps.
            const P init(Op::template init<accumulate_type>());
            P p0 = init, p1 = init, p2 = init, p3 = init;
            for (; t + 4 * simd::width <= run; t += 4 * simd::width) {
              p0 = Op::combine(p0, simd::convert_packet<accumulate_type>(c.template load<packet_kind>(t)));
              p1 = Op::combine(p1, simd::convert_packet<accumulate_type>(c.template load<packet_kind>(t + simd::width)));
              p2 = Op::combine(p2, simd::convert_packet<accumulate_type>(c.template load<packet_kind>(t + 2 * simd::width)));
              p3 = Op::combine(p3, simd::convert_packet<accumulate_type>(c.template load<packet_kind>(t + 3 * simd::width)));
            }
            for (; t + simd::width <= run; t += simd::width)
              p0 = Op::combine(p0, simd::convert_packet<accumulate_type>(c.template load<packet_kind>(t)));
            const P p = Op::combine(Op::combine(p0, p1), Op::combine(p2, p3));
            for (int l = 0; l < simd::width; ++l) acc = Op::combine(acc, p[l]);
          }
          for (; t < run; ++t) acc = Op::combine(acc, convert<accumulate_type>(c.template load<scalar_kind>(t)));
        }
#else
        if constexpr (std::is_same_v<K, scalar_kind>)
          for (index_t t = 0; t < run; ++t) acc = Op::combine(acc, convert<accumulate_type>(c.template load<scalar_kind>(t)));
#endif
      } else {
        if constexpr (std::is_same_v<K, scalar_kind>) acc = Op::combine(acc, convert<accumulate_type>(x_.at(in)));
      }
      int k = n_reduced_ - 1;
      for (; k >= 0; --k) {
        const int a = reduced_[k];
        if (a == last) continue;
        if (++el[a] < map_.length[a]) break;
        el[a] = 0;
      }
      if (k < 0) break;
    }
    return acc;
  }

 private:
  /// Adds `carry` to the odometer of the reduced axes other than `fast` (the last varies fastest);
  /// false when it runs past the end.
  EINLM_HD bool advance_reduced(index_t* el, int fast, index_t carry) const {
    for (int k = n_reduced_ - 1; k >= 0 && carry > 0; --k) {
      const int a = reduced_[k];
      if (a == fast) continue;
      const index_t v = el[a] + carry;
      el[a] = v % map_.length[a];
      carry = v / map_.length[a];
    }
    return carry == 0;
  }

  EINLM_EXEC_CHECK_DISABLE
  template <class K, class To, class V>
  EINLM_HD static kind_t<K, To> convert_kind(const V& v) {
    if constexpr (std::is_same_v<K, packet_kind>) return simd::convert_packet<To>(v);
    else return convert<To>(v);
  }
  EINLM_EXEC_CHECK_DISABLE
  template <class K>
  EINLM_HD kind_t<K, compute_type> finish_kind(const kind_t<K, accumulate_type>& acc) const {
    if constexpr (std::is_same_v<K, packet_kind>)
      return simd::convert_packet<compute_type>(Op::finish(acc, count_));
    else
      return convert<compute_type>(Op::finish(acc, count_));
  }

 private:
  X x_;
  E extents_;
  pattern::index_map map_;
  std::int8_t reduced_[pattern::max_elementary] = {};
  int n_reduced_ = 0;
  index_t count_ = 1;
  int inner_run_ = -1;       // reduced elementary axis contiguous in the child, or -1
  bool outer_rows_ = false;  // the output's last axis is the child's contiguous axis
};

}  // namespace einlm
