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
#include "einlm/expr/expression.hpp"

namespace einlm {

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
  // Below this many elements one thread does the work (a parallel region costs a few µs).
  static constexpr index_t serial_below = 1 << 15;
  // Rows are cut into pieces of at most this many elements so that two long rows still keep
  // every thread busy; a multiple of the packet width.
  static constexpr index_t piece = 1 << 14;

  template <class DstV, class X>
  void run(const DstV& dst, const X& x) {
    constexpr std::size_t R = X::extents_type::rank();
    using T = typename DstV::value_type;
    const index_t n = dst.size();
    if (n == 0) return;
    if constexpr (R == 0) {
      dst.data()[0] = convert<T>(x.at(index_array<0>{}));
    } else {
      const int team = n < serial_below ? 1 : threads();
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
          const index_t per_row = (inner + piece - 1) / piece;
          const auto outer = subrange<0, R - 1>(dst.extents());
          parallel(team, rows * per_row, [&](index_t u) {
            const index_t row = u / per_row, p = u % per_row;
            index_array<R> idx{};
            const auto o = detail::unravel<R - 1>(row, outer);
            for (std::size_t r = 0; r + 1 < R; ++r) idx[r] = o[r];
            T* out = &dst(idx);
            run_span(out, x.row(idx, false), p * piece, std::min(inner, (p + 1) * piece));
          });
          break;
        }
        case detail::schedule::indexed: {
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
