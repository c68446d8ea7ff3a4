// einlm/exec/cpu.hpp — the CPU executor: one threaded pass over the output per expression.
//
//   cpu_executor ex(threads);        threads = 0: OpenMP's default (OMP_NUM_THREADS or the cores)
//   ex.assign(dst, expr)             dst (host tensor or view) ← expr, shapes equal
//   ex.eval(expr)                    a new host tensor holding expr
//   ex.passes()                      loop nests run so far (each assign/eval is exactly one)
//   assign(dst, expr), eval(expr)    the same through default_cpu_executor()
//
// Schedules, chosen at run time from the expression (one is always used, all give equal results):
//   flat      output and every leaf contiguous and of the output's shape: one run over all n
//             elements, split among threads, 8 lanes at a time (simd::packet)
//   rows      output rows contiguous and every leaf contiguous along its last axis, or broadcast
//             along it (bias rows, per-row scales): each row one run, rows split among threads
//   indexed   anything else (transposed or strided leaves): element by element from the multi-index
// The operator code is the same the CUDA executor runs (einlm/exec/cuda.cuh).
//
// The output may be one of the inputs only when it is read at the same positions it is written
// (x = x * 2 is fine; x = transpose(x) is not).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <type_traits>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "einlm/core/config.hpp"
#include "einlm/core/dtype.hpp"
#include "einlm/core/error.hpp"
#include "einlm/core/extents.hpp"
#include "einlm/core/simd.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/exec/common.hpp"
#include "einlm/exec/transpose.hpp"
#include "einlm/expr/expression.hpp"

namespace einlm {

namespace detail {
/// A stand-in for the executor's run_units(units, f) in a requires-expression. (nvcc 12's front
/// end crashes on a lambda or a temporary there, so the expression names local objects.)
struct run_units_probe {
  template <class F>
  void operator()(index_t, F&&) const {}
};

/// Runs f(row) for every row, on OpenMP's threads when there is enough work (the CPU kernels
/// outside the executor: the nn layers', the optimizers').
template <class F>
void for_each_row(index_t rows, index_t work_per_row, F&& f) {
#if EINLM_HAS_OPENMP
  if (rows > 1 && rows * work_per_row >= (index_t{1} << 14)) {
#pragma omp parallel for schedule(static)
    for (index_t r = 0; r < rows; ++r) f(r);
    return;
  }
#endif
  for (index_t r = 0; r < rows; ++r) f(r);
}

/// f(first, count) over n elements cut into units of 2048, on OpenMP's threads.
template <class F>
void for_each_unit(index_t n, F&& f) {
  constexpr index_t unit = 2048;  // elements per parallel unit
  for_each_row((n + unit - 1) / unit, unit, [&](index_t u) {
    const index_t first = u * unit;
    f(first, std::min(n, first + unit) - first);
  });
}
}  // namespace detail

class cpu_executor {
 public:
  /// threads = 0 uses OpenMP's default team size.
  explicit cpu_executor(int threads = 0) : threads_(threads) {}
  cpu_executor(const cpu_executor&) = delete;
  cpu_executor& operator=(const cpu_executor&) = delete;

  int threads() const {
#if EINLM_HAS_OPENMP
    return threads_ > 0 ? threads_ : omp_get_max_threads();
#else
    return 1;
#endif
  }
  /// Loop nests run so far: each assign() or eval() is exactly one, whatever the expression.
  std::uint64_t passes() const { return passes_.load(); }
  void reset_counters() { passes_ = 0; }

  /// dst ← x in one pass. dst is a host tensor or view of x's shape.
  template <class Dst, class X>
  void assign(Dst&& dst_in, const X& x_in) {
    auto dst = as_view(std::forward<Dst>(dst_in));
    auto x = as_expression(x_in);
    using DstV = decltype(dst);
    using XE = decltype(x);
    static_assert(std::is_same_v<typename DstV::space, host>, "cpu_executor: the destination must be in host memory");
    static_assert(!std::is_same_v<typename XE::space, device>,
                  "cpu_executor: the expression reads device memory; use a cuda_executor");
    static_assert(!std::is_const_v<typename DstV::element_type>, "cpu_executor: the destination is read-only");
    ++passes_;
    run(dst, detail::fit_to_destination(dst, x, "assign"));
  }

  /// A new host tensor holding x.
  template <class X>
  auto eval(const X& x_in) {
    auto x = as_expression(x_in);
    using XE = decltype(x);
    tensor<typename XE::value_type, typename XE::extents_type, host> out(x.extents());
    assign(out, x);
    return out;
  }

 private:
  // Below this many elements read one thread does the work (a parallel region costs a few µs).
  static constexpr index_t serial_below = 1 << 15;

  // Input elements read per output element: the reduced count of a reduction at the root (seen
  // through single-child wrappers), 1 otherwise. A reduction of 16 Mi elements to 4 Ki outputs is
  // a lot of work for a small output, and gets every thread.
  template <class X>
  static index_t reads_per_element(const X& x) {
    if constexpr (requires { x.reduced_count(); }) return std::max<index_t>(1, x.reduced_count());
    else if constexpr (requires { x.child(); }) return reads_per_element(x.child());
    else return 1;
  }
  // Rows are cut into pieces of at most this many elements so that two long rows still keep
  // every thread busy; a multiple of the packet width.
  static constexpr index_t piece = 1 << 14;
  // Side of the square tiles of transposing copies (32 × 32 × 4 bytes = 4 KiB read, 4 KiB written).
  static constexpr index_t tile = 32;

  template <class DstV, class X>
  void run(const DstV& dst, const X& x) {
    constexpr std::size_t R = X::extents_type::rank();
    using T = typename DstV::value_type;
    const index_t n = dst.size();
    if (n == 0) return;
    if constexpr (R == 0) {
      dst.data()[0] = convert<T>(x.at(index_array<0>{}));
    } else {
      const int team = n * reads_per_element(x) < serial_below ? 1 : threads();
      switch (detail::choose_schedule(dst, x)) {
        case detail::schedule::flat: {
          const auto cur = x.row(index_array<R>{}, false);
          T* out = dst.data();
          const index_t pieces = (n + piece - 1) / piece;
          parallel(team, pieces, [&](index_t p) { run_span(out, cur, p * piece, std::min(n, (p + 1) * piece)); });
          break;
        }
        case detail::schedule::rows: {
          const index_t inner = dst.extent(R - 1);
          const index_t rows = n / inner;
          const auto outer = subrange<0, R - 1>(dst.extents());
          // Too few rows to share out whole, each the result of a long reduction over outer axes:
          // the reduction itself is split (reduce_node::store_row_split).
          [[maybe_unused]] const index_array<R> row0{};
          [[maybe_unused]] const detail::run_units_probe probe;
          if constexpr (requires { x.store_row_split(row0, inner, dst.data(), probe); }) {
            if (rows < 4 * team) {
              const auto run_units = [&](index_t units, auto&& f) { parallel(team, units, f); };
              bool split = true;
              for (index_t row = 0; row < rows && split; ++row) {
                index_array<R> idx{};
                const auto o = detail::unravel<R - 1>(row, outer);
                for (std::size_t r = 0; r + 1 < R; ++r) idx[r] = o[r];
                split = x.store_row_split(idx, inner, &dst(idx), run_units);  // the same answer for every row
              }
              if (split) break;
            }
          }
          // Long rows are cut into pieces (shorter when there are few rows, so that every thread
          // works); short rows are grouped, so that a unit of work walks consecutive rows without
          // recomputing their indices.
          index_t row_piece = piece;
          while (rows * ((inner + row_piece - 1) / row_piece) < 4 * team && row_piece > 2048) row_piece /= 2;
          const index_t per_row = (inner + row_piece - 1) / row_piece;
          const index_t rows_per_unit = per_row > 1 ? 1 : std::max<index_t>(1, piece / std::max<index_t>(inner, 1));
          const index_t units = per_row > 1 ? rows * per_row : (rows + rows_per_unit - 1) / rows_per_unit;
          parallel(team, units, [&](index_t u) {
            const index_t first_row = per_row > 1 ? u / per_row : u * rows_per_unit;
            const index_t p = per_row > 1 ? u % per_row : 0;
            const index_t last_row = per_row > 1 ? first_row + 1 : std::min(rows, first_row + rows_per_unit);
            index_array<R> idx{};
            const auto o = detail::unravel<R - 1>(first_row, outer);
            for (std::size_t r = 0; r + 1 < R; ++r) idx[r] = o[r];
            const index_t begin = p * row_piece, end = std::min(inner, begin + row_piece);
            for (index_t row = first_row; row < last_row; ++row) {
              T* out = &dst(idx);
              bool done = false;
              if constexpr (requires { x.store_row(idx, begin, end, out); }) done = x.store_row(idx, begin, end, out);
              if (!done) run_span(out, x.row(idx, false), begin, end);
              for (std::size_t r = R - 1; r-- > 0;) {
                if (++idx[r] < dst.extent(r)) break;
                idx[r] = 0;
              }
            }
          });
          break;
        }
        case detail::schedule::indexed: {
          if constexpr (R >= 2) {
            // A transposing copy: the source's contiguous axis is not the output's last axis.
            // Walk 32×32 tiles of those two axes so that both read and written lines stay in cache.
            const int p = x.contiguous_axis();
            if (p >= 0 && p < static_cast<int>(R) - 1 && dst.extent(static_cast<std::size_t>(p)) > 1 &&
                dst.extent(R - 1) > 1) {
              if (!detail::copy_strided_source(dst, x, p, team)) run_tiled(dst, x, static_cast<std::size_t>(p), team);
              break;
            }
          }
          const index_t pieces = (n + piece - 1) / piece;
          parallel(team, pieces, [&](index_t p) {
            const index_t begin = p * piece, end = std::min(n, begin + piece);
            index_array<R> idx = detail::unravel<R>(begin, dst.extents());
            for (index_t i = begin; i < end; ++i) {
              dst(idx) = convert<T>(x.at(idx));
              for (std::size_t r = R; r-- > 0;) {
                if (++idx[r] < dst.extent(r)) break;
                idx[r] = 0;
              }
            }
          });
          break;
        }
      }
    }
  }

  // dst ← x over tiles of (axis p, last axis); the other axes enumerate the tiles' planes.
  template <class DstV, class X>
  static void run_tiled(const DstV& dst, const X& x, std::size_t p, int team) {
    constexpr std::size_t R = X::extents_type::rank();
    using T = typename DstV::value_type;
    index_array<R> plane_extents = to_array(dst.extents());
    const index_t np = plane_extents[p], nl = plane_extents[R - 1];
    plane_extents[p] = 1;
    plane_extents[R - 1] = 1;
    index_t planes = 1;
    for (auto e : plane_extents) planes *= e;
    const index_t tp = (np + tile - 1) / tile, tl = (nl + tile - 1) / tile;
    parallel(team, planes * tp * tl, [&](index_t u) {
      index_t plane = u / (tp * tl);
      const index_t t = u % (tp * tl);
      index_array<R> idx{};
      for (std::size_t r = R; r-- > 0;) {
        idx[r] = plane % plane_extents[r];
        plane /= plane_extents[r];
      }
      const index_t p0 = (t / tl) * tile, l0 = (t % tl) * tile;
      const index_t p1 = std::min(np, p0 + tile), l1 = std::min(nl, l0 + tile);
      for (index_t i = p0; i < p1; ++i) {
        idx[p] = i;
        for (index_t j = l0; j < l1; ++j) {
          idx[R - 1] = j;
          dst(idx) = convert<T>(x.at(idx));
        }
      }
    });
  }

  // out[j] ← cur[j] for j in [begin, end): packets of 8, then single elements.
  template <class T, class Cursor>
  static void run_span(T* out, const Cursor& cur, index_t begin, index_t end) {
    index_t j = begin;
#if EINLM_HAS_PACKETS
    for (; j + simd::width <= end; j += simd::width) simd::store(out + j, cur.template load<packet_kind>(j));
    // Fewer than `width` elements remain; saying so keeps g++'s loop analysis from inventing
    // impossible iteration counts.
    for (int k = 0; k < simd::width && j < end; ++k, ++j) out[j] = convert<T>(cur.template load<scalar_kind>(j));
#else
    for (; j < end; ++j) out[j] = convert<T>(cur.template load<scalar_kind>(j));
#endif
  }

  template <class F>
  static void parallel([[maybe_unused]] int team, index_t units, F&& f) {
#if EINLM_HAS_OPENMP
    if (team > 1 && units > 1) {
#pragma omp parallel for schedule(static) num_threads(team)
      for (index_t u = 0; u < units; ++u) f(u);
      return;
    }
#endif
    for (index_t u = 0; u < units; ++u) f(u);
  }

  int threads_;
  std::atomic<std::uint64_t> passes_{0};
};

/// The executor that assign() and eval() use for host memory.
inline cpu_executor& default_cpu_executor() {
  static cpu_executor executor;
  return executor;
}

/// dst ← x in one pass on the default CPU executor (dst in host memory).
template <class Dst, class X>
  requires(array_like<Dst> && operand<X> && std::is_same_v<typename std::remove_cvref_t<Dst>::space, host>)
void assign(Dst&& dst, const X& x) {
  default_cpu_executor().assign(std::forward<Dst>(dst), x);
}

/// A new tensor holding x, computed by the default executor of x's memory space (host here; device
/// expressions go to the CUDA executor, einlm/exec/cuda.cuh).
template <class X>
  requires(operand<X> && !std::is_same_v<typename expression_t<const X&>::space, device>)
auto eval(const X& x) {
  return default_cpu_executor().eval(x);
}

}  // namespace einlm
