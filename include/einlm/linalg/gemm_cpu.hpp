// einlm/linalg/gemm_cpu.hpp — GEMM on the CPU: an installed BLAS, or einlm's own blocked kernel.
//
//   gemm_cpu(a, b, c, epilogue, options)   matrix_refs in host memory (see einlm/linalg/gemm.hpp for
//                                          the contract); gemm(a, b, c, …) on host tensors lands here
//
// Backends:
//   blas   float and double inputs, when compiled with EINLM_HAS_BLAS=1 (CMake target einlm::blas,
//          OpenBLAS from Debian's libopenblas-dev): cblas_sgemm / cblas_dgemm per batch, then one
//          fused, OpenMP-threaded pass for the epilogue (bias, activation, residual, output cast);
//          a large product with beta 0 and no residual adds into C filled with its bias (or
//          zeros) first, and only its activation runs after it.
//          Operands whose rows or columns are not contiguous are copied first. The automatic
//          backend skips an OpenBLAS whose kernels are older than the CPU (its table of CPUs does
//          not know this one, so it fell back to SSE3 "Prescott" kernels, without FMA) for
//          every product but matrix-vector ones, and runs the own kernel (3.6–3.9× as fast there);
//          cpu_gemm_description() says which runs.
//   own    every input type: the BLIS/GotoBLAS loop structure. B is packed in KC×NC panels and A in
//          MC×KC blocks (converted to the accumulator type while packing, so bf16/fp16 inputs cost
//          one conversion per reuse of a panel), and a register-blocked MR×NR micro-kernel on
//          simd::packet runs over them (12×32 floats with AVX-512, 6×16 with AVX2, 6×8 with SSE2;
//          4×4 scalars in nvcc translation units, which have no packets). bf16 inputs on a CPU with
//          AVX-512 BF16 (chosen at run time) are packed as bf16 instead (B in pairs along K, A row
//          by row) and multiplied by a 12×32 vdpbf16ps micro-kernel, never widened; on a CPU
//          with AMX (Sapphire Rapids and later, where Linux grants the tile data) the same packed
//          operands, K padded to 32, go through a 32×32 micro-kernel on AMX tiles. The epilogue
//          is applied when the last K panel of a tile is stored. Threads (OpenMP): each takes independent
//          blocks of C — whole matrices of the batch, or row (column) ranges of one matrix — with
//          its own packed panels, so no thread waits for another.
//
// Threads: BLAS brings its own thread pool (OpenBLAS: OPENBLAS_NUM_THREADS); the own kernel and
// the epilogue pass use OpenMP (options.threads, else OMP_NUM_THREADS). Called from inside an
// OpenMP parallel region of your own, the OpenMP parts run on the calling thread (no nesting) but
// BLAS still starts its threads: docs/gemm.md says how to set the two.
#pragma once

#include <algorithm>
#include <climits>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "einlm/core/config.hpp"
#include "einlm/core/dtype.hpp"
#include "einlm/core/error.hpp"
#include "einlm/core/math.hpp"
#include "einlm/core/memory.hpp"
#include "einlm/core/simd.hpp"
#include "einlm/core/simd_dispatch.hpp"
#include "einlm/linalg/gemm.hpp"

#if EINLM_HAS_BLAS
#include <cblas.h>
#endif

// The bf16 pair kernel (AVX-512 BF16, chosen at run time) exists in x86-64 builds with packets.
#if EINLM_HAS_PACKETS && defined(__x86_64__)
#define EINLM_GEMM_HAS_BF16_DOT 1
#include <cpuid.h>
#include <cstdint>
#include <immintrin.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#else
#define EINLM_GEMM_HAS_BF16_DOT 0
#endif

namespace einlm {

namespace detail {

// --------------------------------------------------------------------------- vectors of Acc

/// Loads and stores of `width` consecutive elements as one vector of Acc (a CPU packet; a single
/// scalar in nvcc translation units), converting from and to the storage type S.
template <class Acc>
struct cpu_vec {
#if EINLM_HAS_PACKETS
  using type = simd::packet<Acc>;
  static constexpr int width = simd::width;
  static constexpr int native_bytes = simd::detail::native_bytes;
  /// Every lane x, as one broadcast instruction. (packet(x) computes 0 + x, which the compiler
  /// must keep because 0 + −0 is +0; x − 0 is x for every x, so it folds away.)
  static type splat(Acc x) {
    type r;
    for (int k = 0; k < type::K; ++k) r.part_at(k) = x - typename type::part{};
    return r;
  }
  template <class S>
  static type load(const S* p) {
    if constexpr (is_half_v<S> && std::is_same_v<Acc, double>) return simd::convert_packet<double>(simd::load<float>(p));
    else return simd::load<Acc>(p);
  }
  template <class S>
  static void store(S* p, const type& v) {
    if constexpr (is_half_v<S> && std::is_same_v<Acc, double>) {
      for (int l = 0; l < width; ++l) p[l] = convert<S>(v[l]);  // one rounding, as convert<bf16>(double)
    } else {
      simd::store(p, v);
    }
  }
#else
  using type = Acc;
  static constexpr int width = 1;
  static constexpr int native_bytes = 16;
  static type splat(Acc x) { return x; }
  template <class S>
  static type load(const S* p) {
    return convert<Acc>(*p);
  }
  template <class S>
  static void store(S* p, const type& v) {
    *p = convert<S>(v);
  }
#endif
};

/// Tile sizes of the own CPU kernel for accumulator type Acc on this translation unit's packets
/// (see the file comment); its micro-kernel is micro_kernel<MR, NV>.
template <class Acc>
struct cpu_gemm_tiles {
  static constexpr int W = cpu_vec<Acc>::width;
  /// Vectors per micro-tile row: two registers' worth of Acc.
  static constexpr int NV = EINLM_HAS_PACKETS ? (sizeof(Acc) == 4 ? 2 : 1) : 4;
  static constexpr int NR = NV * W;
  /// Rows of a micro-tile: 2·MR accumulator registers of 32 (AVX-512) or 16 (others).
  static constexpr int MR = EINLM_HAS_PACKETS ? (cpu_vec<Acc>::native_bytes == 64 ? 12 : 6) : 4;
  /// K steps per panel: 512 for the AVX-512 tiles, as for cpu_gemm_tiles_x86; 256 otherwise.
  static constexpr index_t KC = EINLM_HAS_PACKETS && cpu_vec<Acc>::native_bytes == 64 ? 512 : 256;
  static constexpr index_t MC = MR * 12;
  static constexpr index_t NC = NR * (4096 / NR);
  using packed = Acc;                   // packed operands hold Acc
  static constexpr int k_group = 1;     // one K step per packed element
  static void kernel(index_t kc, const Acc* a, const Acc* b, Acc* tile);
  /// The kernel with RowsOfA on MR rows of A read in place, lda elements apart (A not packed),
  /// and with ToC storing the tile straight into C (rows ldc apart) as scale · product, plus
  /// bias[0..NR) when bias is not null.
  template <bool RowsOfA, bool ToC>
  static void kernel_with(index_t kc, const Acc* a, index_t lda, const Acc* b, Acc* out, index_t ldc, Acc scale,
                          const Acc* bias);
};

inline int gemm_threads(const gemm_options& options) {
#if EINLM_HAS_OPENMP
  return options.threads > 0 ? options.threads : omp_get_max_threads();
#else
  (void)options;
  return 1;
#endif
}

/// Runs f(u) for u in [0, units) on `team` OpenMP threads, or serially. `dynamic`: units are
/// handed out one at a time (a thread that is descheduled on a busy machine leaves its share to
/// the others); otherwise each thread takes a contiguous range.
template <class F>
void gemm_parallel(int team, index_t units, F&& f, bool dynamic = false) {
#if EINLM_HAS_OPENMP
  if (team > 1 && units > 1) {
    if (dynamic) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(team)
      for (index_t u = 0; u < units; ++u) f(u);
    } else {
#pragma omp parallel for schedule(static) num_threads(team)
      for (index_t u = 0; u < units; ++u) f(u);
    }
    return;
  }
#else
  (void)team;
  (void)dynamic;
#endif
  for (index_t u = 0; u < units; ++u) f(u);
}

// ------------------------------------------------------------------------- the epilogue pass

#if EINLM_HAS_PACKETS && defined(__x86_64__)
#define EINLM_GEMM_WIDE_EPILOGUE 1
// The common epilogue (no activation; float or bf16 output) on 16-float AVX-512 vectors, chosen
// at run time: builds for the x86-64 baseline have 4-float packets, and the packets' bf16 stores
// round lane by lane, so a GEMM with K below a few thousand would otherwise spend about as long in
// its stores as in its products.

typedef float wide_f32 __attribute__((vector_size(64)));
typedef std::uint32_t wide_u32 __attribute__((vector_size(64)));
typedef std::uint16_t wide_u16 __attribute__((vector_size(32)));

/// 16 consecutive float or bf16 values as floats.
template <class S>
__attribute__((always_inline)) inline wide_f32 wide_load(const S* p) {
  wide_f32 v;
  if constexpr (std::is_same_v<S, float>) {
    std::memcpy(&v, p, sizeof(v));
  } else {
    wide_u16 h;
    std::memcpy(&h, static_cast<const void*>(p), sizeof(h));
    const wide_u32 u = __builtin_convertvector(h, wide_u32) << 16;
    std::memcpy(&v, &u, sizeof(v));
  }
  return v;
}

/// Stores 16 floats as float or bf16 (round to nearest even, NaN → quiet NaN: convert<bf16>).
template <class S>
__attribute__((always_inline)) inline void wide_store(S* p, wide_f32 v) {
  if constexpr (std::is_same_v<S, float>) {
    std::memcpy(p, &v, sizeof(v));
  } else {
    wide_u32 u;
    std::memcpy(&u, &v, sizeof(u));
    const wide_u32 rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const wide_u32 quiet_nan = (u >> 16) | 0x40u;
    const wide_u32 is_nan = reinterpret_cast<wide_u32>((u & 0x7fffffffu) > 0x7f800000u);
    const wide_u16 h = __builtin_convertvector((quiet_nan & is_nan) | (rounded & ~is_nan), wide_u16);
    std::memcpy(static_cast<void*>(p), &h, sizeof(h));
  }
}

/// One run of the epilogue without activation on 16-float vectors (see cpu_epilogue::run):
/// v = scale·src (+ beta·out) (+ partial); then partial_out = v, or out = v (+ col_bias | row_bias)
/// (+ residual). Returns the columns done (a multiple of 16; the caller finishes the rest).
template <class Out>
__attribute__((target("avx512f,avx512bw"))) index_t wide_epilogue_run(index_t n, const float* src, float scale,
                                                                      Out* out, float beta, bool add_old,
                                                                      const float* partial, float* partial_out,
                                                                      const Out* col_bias, float row_bias,
                                                                      const Out* residual) {
  constexpr index_t W = 16;
  index_t j = 0;
  for (; j + W <= n; j += W) {
    wide_f32 v = scale * wide_load(src + j);
    if (add_old) v += beta * wide_load(out + j);
    if (partial) v += wide_load(partial + j);
    if (partial_out) {
      wide_store(partial_out + j, v);
      continue;
    }
    if (col_bias) v += wide_load(col_bias + j);
    else v += row_bias;
    if (residual) v += wide_load(residual + j);
    wide_store(out + j, v);
  }
  return j;
}

/// Whether this CPU runs wide_epilogue_run.
inline bool cpu_has_wide_epilogue() {
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  }();
  return yes;
}
#else
#define EINLM_GEMM_WIDE_EPILOGUE 0
#endif

/// x[j] = act(x[j]) for j < n, on packets of B bytes: the epilogue's activation when it runs over
/// a run of C after the stores (cpu_epilogue), through simd::dispatch, so on the CPU's widest
/// vectors (the element-wise layers' own kernels, with the same functions).
template <class T>
struct activation_kernel {
  template <int B, activation A>
  static void each(index_t n, T* x) {
    index_t j = 0;
#if EINLM_HAS_PACKETS
    constexpr int lanes = simd::packet<T, B>::size;
    for (; j + lanes <= n; j += lanes) simd::store(x + j, apply_activation(A, simd::load<T, B>(x + j)));
#endif
    for (; j < n; ++j) x[j] = apply_activation(A, x[j]);
  }
  template <int B>
  static void run(index_t n, T* x, activation act) {
    switch (act) {
      case activation::none: return;
      case activation::relu: return each<B, activation::relu>(n, x);
      case activation::gelu: return each<B, activation::gelu>(n, x);
      case activation::gelu_tanh: return each<B, activation::gelu_tanh>(n, x);
      case activation::silu: return each<B, activation::silu>(n, x);
    }
  }
};

/// The epilogue over runs of one output row, shared by the micro-kernel's stores and the pass
/// after BLAS. Values v (Acc) of a run become, in order:
///   v = scale·src[j]                       the product (alpha·A·B, or what BLAS left)
///   v += beta·C_old            when add_old   (the first K panel)
///   v += partial[j]            when partial   (later K panels)
///   then either partial_out[j] = v (not the last panel) or C = convert(post(v)) with
///   post(v) = act(v + bias) + residual.
/// When C holds float with contiguous rows and there is no residual, the activation is deferred: the
/// run is stored as v + bias, then act is applied to it in place by activation_kernel on the
/// widest packets (the run is still in L1), rather than on the build's packets inside the loop.
template <class Acc, class Out>
struct cpu_epilogue {
  using vec = cpu_vec<Acc>;
  using V = typename vec::type;
  static constexpr int W = vec::width;

  epilogue_op<Acc, Out> op;
  bool add_old_values;  // beta ≠ 0
  bool contiguous;      // C, residual and a per-column bias are contiguous along rows: vector path
  activation deferred_act;  // applied after the stores of a finished run (op.act is then none)

  static bool defers(const matrix_ref<Out>& c, const epilogue<Out>& ep) {
    return std::is_same_v<Acc, float> && std::is_same_v<Out, float> && ep.act != activation::none &&
           ep.residual.empty() && c.col_stride == 1;
  }
  static epilogue<Out> without_activation(epilogue<Out> ep) {
    ep.act = activation::none;
    return ep;
  }

  cpu_epilogue(const matrix_ref<Out>& c, const epilogue<Out>& ep)
      : op(c, defers(c, ep) ? without_activation(ep) : ep), add_old_values(ep.beta != 0.0),
        deferred_act(defers(c, ep) ? ep.act : activation::none) {
    contiguous = c.col_stride == 1 && (ep.residual.empty() || ep.residual.col_stride == 1 || ep.residual.cols <= 1) &&
                 (ep.bias.empty() || ep.bias_along == bias_axis::rows || ep.bias.stride == 1 || ep.bias.size <= 1);
  }

  bool has_post() const { return op.has_post() || deferred_act != activation::none; }

  struct run {
    index_t b, i, j0, n;        // batch, row, first column, length
    const Acc* src;             // the product, src_stride apart
    index_t src_stride;
    Acc scale;
    bool first;                 // + beta·C_old (when beta ≠ 0)
    const Acc* partial;         // + partial[j] when not null (contiguous)
    Acc* partial_out;           // not the last panel: store v here (contiguous)
  };

  void operator()(const run& r) const {
    const bool add_old = r.first && add_old_values;
    index_t j = 0;
#if EINLM_GEMM_WIDE_EPILOGUE
    if constexpr (std::is_same_v<Acc, float> && (std::is_same_v<Out, float> || std::is_same_v<Out, bf16>)) {
      if (contiguous && r.src_stride == 1 && r.n >= 16 && op.act == activation::none && cpu_has_wide_epilogue()) {
        const bool col_bias = !op.bias.empty() && op.bias_along == bias_axis::columns;
        const float row_bias = !op.bias.empty() && !col_bias ? convert<float>(op.bias[r.i]) : 0.0f;
        const Out* res = op.residual.empty() ? nullptr : &op.residual(op.residual.batch == 1 ? 0 : r.b, r.i, r.j0);
        j = wide_epilogue_run<Out>(r.n, r.src, r.scale, &op.c(r.b, r.i, r.j0), op.beta, add_old, r.partial,
                                   r.partial_out, col_bias ? &op.bias[r.j0] : nullptr, row_bias, res);
      }
    }
#endif
#if EINLM_HAS_PACKETS
    if (contiguous && r.src_stride == 1) {
      Out* out = &op.c(r.b, r.i, r.j0);
      const Out* res = op.residual.empty() ? nullptr : &op.residual(op.residual.batch == 1 ? 0 : r.b, r.i, r.j0);
      const bool col_bias = !op.bias.empty() && op.bias_along == bias_axis::columns;
      const V row_bias = vec::splat(!op.bias.empty() && !col_bias ? convert<Acc>(op.bias[r.i]) : Acc(0));
      const V scale = vec::splat(r.scale), beta = vec::splat(op.beta);
      for (; j + W <= r.n; j += W) {
        V v = scale * vec::load(r.src + j);
        if (add_old) v = v + beta * vec::load(out + j);
        if (r.partial) v = v + vec::load(r.partial + j);
        if (r.partial_out) {
          vec::store(r.partial_out + j, v);
          continue;
        }
        if (col_bias) v = v + vec::load(&op.bias[r.j0 + j]);
        else if (!op.bias.empty()) v = v + row_bias;
        v = apply_activation(op.act, v);
        if (res) v = v + vec::load(res + j);
        vec::store(out + j, v);
      }
    }
#endif
    for (; j < r.n; ++j) {
      const index_t jj = r.j0 + j;
      Acc v = r.scale * r.src[j * r.src_stride];
      if (add_old) v = v + op.beta * convert<Acc>(op.c(r.b, r.i, jj));
      if (r.partial) v = v + r.partial[j];
      if (r.partial_out) r.partial_out[j] = v;
      else op.c(r.b, r.i, jj) = convert<Out>(op.post(v, r.b, r.i, jj));
    }
    if constexpr (std::is_same_v<Acc, float> && std::is_same_v<Out, float>) {
      if (deferred_act != activation::none && !r.partial_out)
        simd::dispatch<activation_kernel<Acc>>(r.n, &op.c(r.b, r.i, r.j0), deferred_act);
    }
  }
};

// ----------------------------------------------------------------------------- own kernel

/// Packs rows [i0, i0 + mc) × columns [p0, p0 + kc) of A (batch b) into slivers of MR rows:
/// sliver s holds, for each k, the MR values A[i0 + s·MR + r, p0 + k] (zero past the last row).
template <int MR, class Acc, class In>
void pack_a(Acc* EINLM_RESTRICT dst, const matrix_ref<const In>& a, index_t b, index_t i0, index_t mc, index_t p0,
            index_t kc) {
  const In* base = a.data + b * a.batch_stride + i0 * a.row_stride + p0 * a.col_stride;
  if (a.row_stride == 1 && a.col_stride != 1) {
    // Column-major (a transposed operand): each k's MR values are consecutive in memory too.
    for (index_t s = 0; s < mc; s += MR) {
      const index_t rows = std::min<index_t>(MR, mc - s);
      Acc* out = dst + s * kc;
      for (index_t k = 0; k < kc; ++k) {
        const In* src = base + s + k * a.col_stride;
        Acc* o = out + k * MR;
        if (rows == MR) {
          if constexpr (std::is_same_v<In, Acc>) {
            std::memcpy(o, src, MR * sizeof(Acc));
          } else {
            EINLM_UNROLL
            for (int r = 0; r < MR; ++r) o[r] = convert<Acc>(src[r]);
          }
        } else {
          for (int r = 0; r < MR; ++r) o[r] = r < rows ? convert<Acc>(src[r]) : Acc(0);
        }
      }
    }
    return;
  }
  for (index_t s = 0; s < mc; s += MR) {
    const index_t rows = std::min<index_t>(MR, mc - s);
    Acc* out = dst + s * kc;
    if (rows < MR) std::fill(out, out + kc * MR, Acc(0));
    for (index_t r = 0; r < rows; ++r) {
      const In* src = base + (s + r) * a.row_stride;
      if (a.col_stride == 1) {
        for (index_t k = 0; k < kc; ++k) out[k * MR + r] = convert<Acc>(src[k]);
      } else {
        for (index_t k = 0; k < kc; ++k) out[k * MR + r] = convert<Acc>(src[k * a.col_stride]);
      }
    }
  }
}

/// Packs rows [p0, p0 + kc) × columns [j0, j0 + nc) of B (batch b) into slivers of NR columns:
/// sliver t holds, for each k, the NR values B[p0 + k, j0 + t·NR + c] (zero past the last column).
template <int NR, class Acc, class In>
void pack_b_sliver(Acc* EINLM_RESTRICT out, const matrix_ref<const In>& b, index_t batch, index_t p0, index_t kc,
                   index_t j, index_t cols) {
  using vec = cpu_vec<Acc>;
  const In* base = b.data + batch * b.batch_stride + p0 * b.row_stride + j * b.col_stride;
  if (cols == NR && b.col_stride == 1) {
    for (index_t k = 0; k < kc; ++k) {
      const In* src = base + k * b.row_stride;
      for (int v = 0; v < NR; v += vec::width) vec::store(out + k * NR + v, vec::load(src + v));
    }
    return;
  }
  if (cols < NR) std::fill(out, out + kc * NR, Acc(0));
  for (index_t c = 0; c < cols; ++c) {
    const In* src = base + c * b.col_stride;
    for (index_t k = 0; k < kc; ++k) out[k * NR + c] = convert<Acc>(src[k * b.row_stride]);
  }
}

/// tile[MR][NR] = Σ_k a[k][0..MR) ⊗ b[k][0..NR) over kc steps of the packed slivers; with
/// RowsOfA, A is not packed but read in place: MR rows lda elements apart, each kc long. With
/// ToC the tile goes straight to C instead: rows ldc apart, each scale · product (+ bias[0..NR)
/// when bias is not null), the epilogue's values for a one-panel product.
template <int MR, int NV, bool RowsOfA = false, bool ToC = false, class Acc>
void micro_kernel(index_t kc, const Acc* EINLM_RESTRICT a, const Acc* EINLM_RESTRICT b, Acc* EINLM_RESTRICT tile,
                  [[maybe_unused]] index_t lda = 0, [[maybe_unused]] index_t ldc = 0,
                  [[maybe_unused]] Acc scale = Acc(1), [[maybe_unused]] const Acc* EINLM_RESTRICT bias = nullptr) {
  using vec = cpu_vec<Acc>;
  using V = typename vec::type;
  constexpr int W = vec::width, NR = NV * W;
  V acc[MR][NV];
  EINLM_UNROLL
  for (int r = 0; r < MR; ++r) {
    EINLM_UNROLL
    for (int v = 0; v < NV; ++v) acc[r][v] = V(Acc(0));
  }
  for (index_t k = 0; k < kc; ++k) {
    V bv[NV];
    EINLM_UNROLL
    for (int v = 0; v < NV; ++v) bv[v] = vec::load(b + v * W);
    EINLM_UNROLL
    for (int r = 0; r < MR; ++r) {
      const V av = vec::splat(RowsOfA ? a[r * lda + k] : a[r]);
      EINLM_UNROLL
      for (int v = 0; v < NV; ++v) acc[r][v] = acc[r][v] + av * bv[v];
    }
    if constexpr (!RowsOfA) a += MR;
    b += NR;
  }
  if constexpr (ToC) {
    const V scale_v = vec::splat(scale);
    EINLM_UNROLL
    for (int r = 0; r < MR; ++r) {
      EINLM_UNROLL
      for (int v = 0; v < NV; ++v) {
        V x = scale_v * acc[r][v];
        if (bias) x = x + vec::load(bias + v * W);
        vec::store(tile + r * ldc + v * W, x);
      }
    }
  } else {
    EINLM_UNROLL
    for (int r = 0; r < MR; ++r) {
      EINLM_UNROLL
      for (int v = 0; v < NV; ++v) vec::store(tile + r * NR + v * W, acc[r][v]);
    }
  }
}

template <class Acc>
void cpu_gemm_tiles<Acc>::kernel(index_t kc, const Acc* a, const Acc* b, Acc* tile) {
  micro_kernel<MR, NV>(kc, a, b, tile);
}
template <class Acc>
template <bool RowsOfA, bool ToC>
void cpu_gemm_tiles<Acc>::kernel_with(index_t kc, const Acc* a, index_t lda, const Acc* b, Acc* out, index_t ldc,
                                      Acc scale, const Acc* bias) {
  micro_kernel<MR, NV, RowsOfA, ToC>(kc, a, b, out, lda, ldc, scale, bias);
}

#if EINLM_HAS_PACKETS && defined(__x86_64__) && !defined(__AVX512F__)
// Builds for an x86-64 below AVX-512 (the default -march=x86-64 has 16-byte SSE2 vectors and no
// FMA) also carry micro-kernels for AVX-512 and AVX2+FMA, chosen at run time from the CPU (as
// BLAS libraries do); packing and the epilogue stay on the build's packets.

/// The micro-kernel on GNU vectors of Bytes bytes; always inlined into the target-specific
/// wrappers below, so that it is compiled with their instruction sets.
template <int Bytes, int MR, int NR, bool RowsOfA, bool ToC, class Acc>
__attribute__((always_inline)) inline void micro_kernel_x86(index_t kc, const Acc* EINLM_RESTRICT a,
                                                           const Acc* EINLM_RESTRICT b, Acc* EINLM_RESTRICT tile,
                                                           [[maybe_unused]] index_t lda, [[maybe_unused]] index_t ldc,
                                                           [[maybe_unused]] Acc scale,
                                                           [[maybe_unused]] const Acc* EINLM_RESTRICT bias) {
  typedef Acc vec __attribute__((vector_size(Bytes)));
  constexpr int W = Bytes / static_cast<int>(sizeof(Acc)), NV = NR / W;
  vec acc[MR][NV];
  EINLM_UNROLL
  for (int r = 0; r < MR; ++r) {
    EINLM_UNROLL
    for (int v = 0; v < NV; ++v) acc[r][v] = vec{};
  }
  for (index_t k = 0; k < kc; ++k) {
    vec bv[NV];
    EINLM_UNROLL
    for (int v = 0; v < NV; ++v) std::memcpy(&bv[v], b + v * W, sizeof(vec));
    EINLM_UNROLL
    for (int r = 0; r < MR; ++r) {
      const vec av = (RowsOfA ? a[r * lda + k] : a[r]) - vec{};  // a broadcast (x − 0 is x for every x)
      EINLM_UNROLL
      for (int v = 0; v < NV; ++v) acc[r][v] += av * bv[v];
    }
    if constexpr (!RowsOfA) a += MR;
    b += NR;
  }
  if constexpr (ToC) {
    const vec scale_v = scale - vec{};
    EINLM_UNROLL
    for (int r = 0; r < MR; ++r) {
      EINLM_UNROLL
      for (int v = 0; v < NV; ++v) {
        vec x = scale_v * acc[r][v];
        if (bias) {
          vec bv;
          std::memcpy(&bv, bias + v * W, sizeof(vec));
          x += bv;
        }
        std::memcpy(tile + r * ldc + v * W, &x, sizeof(vec));
      }
    }
  } else {
    EINLM_UNROLL
    for (int r = 0; r < MR; ++r) {
      EINLM_UNROLL
      for (int v = 0; v < NV; ++v) std::memcpy(tile + r * NR + v * W, &acc[r][v], sizeof(vec));
    }
  }
}

/// Tiles for 64-byte vectors (AVX-512: 24 of 32 registers accumulate) and 32-byte ones (AVX2:
/// 12 of 16).
template <class Acc, int Bytes>
struct cpu_gemm_tiles_x86 {
  static constexpr int NR = 2 * Bytes / static_cast<int>(sizeof(Acc));  // two registers per row
  static constexpr int MR = Bytes == 64 ? 12 : 6;
  /// K steps per panel. With AVX-512, 512 rather than 256: products with K of 384 or 512 (a
  /// model's second FFN projection, its backward passes) then take one panel, each tile stored
  /// once (straight from the registers when nothing follows the product), instead of two panels
  /// whose partial sums go back through C; 9–13 % faster there (2048 × 128 × 512,
  /// 2048 × 128 × 384, 512³), the same elsewhere. The B sliver (64 KiB) outgrows L1 and streams
  /// from L2, which the prefetchers keep up with. AVX2 keeps 256 (not measured).
  static constexpr index_t KC = Bytes == 64 ? 512 : 256;
  static constexpr index_t MC = MR * 12;
  static constexpr index_t NC = NR * (4096 / NR);
  using packed = Acc;
  static constexpr int k_group = 1;
  static void kernel(index_t kc, const Acc* a, const Acc* b, Acc* tile);
  template <bool RowsOfA, bool ToC>
  static void kernel_with(index_t kc, const Acc* a, index_t lda, const Acc* b, Acc* out, index_t ldc, Acc scale,
                          const Acc* bias);
};

template <bool RowsOfA, bool ToC, class Acc>
__attribute__((target("avx512f,fma"))) void micro_kernel_avx512(index_t kc, const Acc* a, const Acc* b, Acc* out,
                                                                 index_t lda, index_t ldc, Acc scale, const Acc* bias) {
  micro_kernel_x86<64, cpu_gemm_tiles_x86<Acc, 64>::MR, cpu_gemm_tiles_x86<Acc, 64>::NR, RowsOfA, ToC>(
      kc, a, b, out, lda, ldc, scale, bias);
}
template <bool RowsOfA, bool ToC, class Acc>
__attribute__((target("avx2,fma"))) void micro_kernel_avx2(index_t kc, const Acc* a, const Acc* b, Acc* out,
                                                           index_t lda, index_t ldc, Acc scale, const Acc* bias) {
  micro_kernel_x86<32, cpu_gemm_tiles_x86<Acc, 32>::MR, cpu_gemm_tiles_x86<Acc, 32>::NR, RowsOfA, ToC>(
      kc, a, b, out, lda, ldc, scale, bias);
}
template <class Acc, int Bytes>
template <bool RowsOfA, bool ToC>
void cpu_gemm_tiles_x86<Acc, Bytes>::kernel_with(index_t kc, const Acc* a, index_t lda, const Acc* b, Acc* out,
                                                 index_t ldc, Acc scale, const Acc* bias) {
  if constexpr (Bytes == 64) micro_kernel_avx512<RowsOfA, ToC, Acc>(kc, a, b, out, lda, ldc, scale, bias);
  else micro_kernel_avx2<RowsOfA, ToC, Acc>(kc, a, b, out, lda, ldc, scale, bias);
}
template <class Acc, int Bytes>
void cpu_gemm_tiles_x86<Acc, Bytes>::kernel(index_t kc, const Acc* a, const Acc* b, Acc* tile) {
  kernel_with<false, false>(kc, a, 0, b, tile, 0, Acc(1), nullptr);
}

/// The widest vectors this CPU runs (64, 32) when wider than the build's, else 0.
inline int cpu_gemm_vector_bytes() {
  static const int bytes = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma")) return 64;
#if !(defined(__AVX2__) && defined(__FMA__))
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 32;
#endif
    return 0;
  }();
  return bytes;
}
#endif

#if EINLM_GEMM_HAS_BF16_DOT
// bf16 × bf16 with AVX-512 BF16 (Cooper Lake, Sapphire Rapids, Zen 4 and later), chosen at run time
// whatever the build's target. vdpbf16ps multiplies the two bf16 pairs in each 32-bit lane and adds
// both products to a float accumulator, so the operands stay bf16 — half the bytes of widened
// floats, and no conversion while packing: B interleaved in pairs along K, A row by row (the
// kernel broadcasts each row's next pair). The products are exact in float; each
// addition rounds to nearest even with denormal inputs and results taken as zero (bf16 denormals are
// below 1.2e-38), so results differ from the widening kernel only in the order of the additions.

/// Tiles of the bf16 pair kernel: 12 × 32 floats in 24 of the 32 vector registers. KC is large
/// (a 64 KiB sliver of B, read from L2 at 128 bytes per 24 instructions) so that the K of most
/// transformer projections fits one panel: a second panel costs a round trip of float partial
/// sums through memory. Packed operands are raw bf16 bits.
struct cpu_gemm_tiles_bf16_dot {
  static constexpr int MR = 12, NR = 32;
  static constexpr index_t KC = 1024;
  static constexpr index_t MC = MR * 12;
  static constexpr index_t NC = NR * (4096 / NR);
  using packed = std::uint16_t;
  static constexpr int k_group = 2;  // packed in pairs along K (an odd kc ends with a zero)
  static void kernel(index_t kc, const std::uint16_t* a, const std::uint16_t* b, float* tile);
  /// A whole tile of a one-panel product without epilogue stored straight from the registers:
  /// C rows c + r·ldc (r < MR), NR columns each, = scale · product, as float or bf16.
  template <class Out>
  static void store_kernel(index_t kc, const std::uint16_t* a, const std::uint16_t* b, Out* c, index_t ldc,
                           float scale);
};

/// acc[r][v] = Σ over the ⌈kc/2⌉ pairs q of row r's pair q (broadcast) · b's 32 column pairs; the
/// sliver of A holds its 12 rows one after another, each ⌈kc/2⌉·2 values long.
__attribute__((target("avx512f,avx512bf16"), always_inline)) inline void bf16_dot_accumulate(
    index_t kc, const std::uint16_t* EINLM_RESTRICT a, const std::uint16_t* EINLM_RESTRICT b,
    __m512 (&acc)[cpu_gemm_tiles_bf16_dot::MR][2]) {
  constexpr int MR = cpu_gemm_tiles_bf16_dot::MR, NR = cpu_gemm_tiles_bf16_dot::NR;
  EINLM_UNROLL
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  const index_t pairs = (kc + 1) / 2;
  for (index_t q = 0; q < pairs; ++q) {
    const __m512bh b0 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(b));       // columns 0..15
    const __m512bh b1 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(b + 32));  // columns 16..31
    EINLM_UNROLL
    for (int r = 0; r < MR; ++r) {
      std::int32_t pair;
      std::memcpy(&pair, a + r * 2 * pairs + 2 * q, sizeof(pair));
      const __m512bh av = reinterpret_cast<__m512bh>(_mm512_set1_epi32(pair));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, b0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, b1);
    }
    b += 2 * NR;
  }
}

/// tile[12][32] = the product of the packed slivers.
__attribute__((target("avx512f,avx512bf16"))) inline void micro_kernel_bf16_dot(
    index_t kc, const std::uint16_t* EINLM_RESTRICT a, const std::uint16_t* EINLM_RESTRICT b,
    float* EINLM_RESTRICT tile) {
  constexpr int MR = cpu_gemm_tiles_bf16_dot::MR, NR = cpu_gemm_tiles_bf16_dot::NR;
  __m512 acc[MR][2];
  bf16_dot_accumulate(kc, a, b, acc);
  EINLM_UNROLL
  for (int r = 0; r < MR; ++r) {
    _mm512_storeu_ps(tile + r * NR, acc[r][0]);
    _mm512_storeu_ps(tile + r * NR + 16, acc[r][1]);
  }
}

/// The product scaled and stored into C's rows as Out (see cpu_gemm_tiles_bf16_dot::store_kernel).
template <class Out>
__attribute__((target("avx512f,avx512bw,avx512bf16"))) void micro_kernel_bf16_dot_store(
    index_t kc, const std::uint16_t* EINLM_RESTRICT a, const std::uint16_t* EINLM_RESTRICT b, Out* EINLM_RESTRICT c,
    index_t ldc, float scale) {
  constexpr int MR = cpu_gemm_tiles_bf16_dot::MR;
  __m512 acc[MR][2];
  bf16_dot_accumulate(kc, a, b, acc);
  const __m512 s = _mm512_set1_ps(scale);
  EINLM_UNROLL
  for (int r = 0; r < MR; ++r) {
    EINLM_UNROLL
    for (int v = 0; v < 2; ++v) {
      const __m512 x = _mm512_mul_ps(acc[r][v], s);
      wide_f32 w;
      std::memcpy(&w, &x, sizeof(w));
      wide_store(c + r * ldc + 16 * v, w);
    }
  }
}

inline void cpu_gemm_tiles_bf16_dot::kernel(index_t kc, const std::uint16_t* a, const std::uint16_t* b, float* tile) {
  micro_kernel_bf16_dot(kc, a, b, tile);
}
template <class Out>
void cpu_gemm_tiles_bf16_dot::store_kernel(index_t kc, const std::uint16_t* a, const std::uint16_t* b, Out* c,
                                           index_t ldc, float scale) {
  micro_kernel_bf16_dot_store(kc, a, b, c, ldc, scale);
}

/// Whether this CPU runs the bf16 pair kernel.
inline bool cpu_has_bf16_dot() {
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
  }();
  return yes;
}

// bf16 × bf16 on AMX tiles (Sapphire Rapids, Emerald Rapids and later Xeons), chosen at run time
// before the pair kernel: one TDPBF16PS multiplies a 16 × 32 tile of A by a 32 × 16 tile of B
// (16 K pairs) into a 16 × 16 float tile — 16,384 flops, against 64 for one vdpbf16ps. The
// operands are packed as for the pair kernel (A row by row, B in pairs along K), with K padded
// with zeros to a multiple of 32: a packed A sliver is two A tiles per 32 K steps (row stride
// kcp), a packed B sliver two B tiles (row stride 2·NR values). Products are exact in float and
// each addition rounds to nearest even with denormals taken as zero, as the pair kernel's.

/// Tiles of the AMX kernel: 32 × 32 floats in four 16 × 16 tile registers (two of A and two of B
/// hold the operands).
struct cpu_gemm_tiles_bf16_amx {
  static constexpr int MR = 32, NR = 32;
  static constexpr index_t KC = 1024;
  static constexpr index_t MC = MR * 6;
  static constexpr index_t NC = NR * (4096 / NR);
  using packed = std::uint16_t;
  static constexpr int k_group = 32;  // K padded with zeros to whole tiles
  static void kernel(index_t kc, const std::uint16_t* a, const std::uint16_t* b, float* tile);
};

/// The tile configuration (palette 1): tiles 0–3 the 16 × 16 float accumulators, 4–5 A (16 rows of
/// 32 bf16), 6–7 B (16 K pairs of 16 columns): every tile 16 rows of 64 bytes.
struct alignas(64) amx_tile_config {
  std::uint8_t palette = 1, start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t bytes_per_row[16] = {64, 64, 64, 64, 64, 64, 64, 64};
  std::uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
};

/// tile[32][32] = the product of the packed slivers (K padded to a multiple of 32).
__attribute__((target("amx-tile,amx-bf16"))) inline void micro_kernel_bf16_amx(
    index_t kc, const std::uint16_t* EINLM_RESTRICT a, const std::uint16_t* EINLM_RESTRICT b,
    float* EINLM_RESTRICT tile) {
  constexpr int NR = cpu_gemm_tiles_bf16_amx::NR;
  static const amx_tile_config config{};
  _tile_loadconfig(&config);  // every call: another library on this thread may have its own
  const index_t kcp = (kc + 31) / 32 * 32;
  const long a_stride = static_cast<long>(kcp * 2), b_stride = 2 * NR * 2;  // bytes per tile row
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (index_t k = 0; k < kcp; k += 32) {
    _tile_loadd(4, a + k, a_stride);              // rows 0–15, K k .. k + 31
    _tile_loadd(5, a + 16 * kcp + k, a_stride);   // rows 16–31
    const std::uint16_t* bk = b + (k / 2) * 2 * NR;
    _tile_loadd(6, bk, b_stride);                 // pairs k/2 .. k/2 + 15, columns 0–15
    _tile_loadd(7, bk + 32, b_stride);            // columns 16–31
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, tile, NR * 4);
  _tile_stored(1, tile + 16, NR * 4);
  _tile_stored(2, tile + 16 * NR, NR * 4);
  _tile_stored(3, tile + 16 * NR + 16, NR * 4);
}

inline void cpu_gemm_tiles_bf16_amx::kernel(index_t kc, const std::uint16_t* a, const std::uint16_t* b, float* tile) {
  micro_kernel_bf16_amx(kc, a, b, tile);
}

/// Whether this CPU and system run the AMX kernel: AMX-TILE and AMX-BF16 (CPUID leaf 7), and on
/// Linux the permission to use tile data, which a process must request once (arch_prctl
/// ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA; refused by kernels older than 5.16).
inline bool cpu_has_amx_bf16() {
  static const bool yes = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
    const bool amx_bf16 = (edx >> 22) & 1, amx_tile = (edx >> 24) & 1;
    if (!amx_bf16 || !amx_tile) return false;
#if defined(__linux__) && defined(SYS_arch_prctl)
    constexpr long arch_req_xcomp_perm = 0x1023, xfeature_xtiledata = 18;
    return syscall(SYS_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata) == 0;
#else
    return false;
#endif
  }();
  return yes;
}

/// Packs rows [i0, i0 + mc) × columns [p0, p0 + kc) of bf16 A (batch b) row by row: row i0 + t at
/// dst + t·kcp, its kc values then zeros up to kcp (kc rounded up to a multiple of Group: 2 for
/// the pair kernel, 32 for AMX tiles); rows past the last of a sliver of MR are zero. The
/// micro-kernel reads each row's K pairs in place, so a row-major A is copied, not transposed.
template <int MR, int Group = 2>
void pack_a_pairs(std::uint16_t* EINLM_RESTRICT dst, const matrix_ref<const bf16>& a, index_t b, index_t i0,
                  index_t mc, index_t p0, index_t kc) {
  const bf16* base = a.data + b * a.batch_stride + i0 * a.row_stride + p0 * a.col_stride;
  const index_t kcp = (kc + Group - 1) / Group * Group;
  const index_t padded_rows = (mc + MR - 1) / MR * MR;
  if (a.col_stride == 1) {
    for (index_t t = 0; t < mc; ++t) std::memcpy(dst + t * kcp, base + t * a.row_stride, static_cast<std::size_t>(kc) * 2);
  } else {
    // Column-major (a transposed operand): transposed in 16 × 16 tiles, whose 16 source lines stay
    // in cache while each destination row's 32 bytes are written in order.
    for (index_t t0 = 0; t0 < mc; t0 += 16) {
      const index_t t1 = std::min(mc, t0 + 16);
      for (index_t k0 = 0; k0 < kc; k0 += 16) {
        const index_t k1 = std::min(kc, k0 + 16);
        for (index_t t = t0; t < t1; ++t) {
          const bf16* src = base + t * a.row_stride;
          std::uint16_t* out = dst + t * kcp;
          for (index_t k = k0; k < k1; ++k) out[k] = bits_of(src[k * a.col_stride]);
        }
      }
    }
  }
  if (kc < kcp)
    for (index_t t = 0; t < mc; ++t) std::fill(dst + t * kcp + kc, dst + (t + 1) * kcp, std::uint16_t(0));
  std::fill(dst + mc * kcp, dst + padded_rows * kcp, std::uint16_t(0));
}

/// Packs rows [p0, p0 + kc) × columns [j, j + cols) of bf16 B (batch `batch`) into one sliver of NR
/// columns of K pairs: for each pair q, the NR pairs (B[p0 + 2q, c], B[p0 + 2q + 1, c]) (zero past
/// the last column and past row p0 + kc, up to kc rounded up to a multiple of Group).
template <int NR, int Group = 2>
void pack_b_pairs(std::uint16_t* EINLM_RESTRICT out, const matrix_ref<const bf16>& b, index_t batch, index_t p0,
                  index_t kc, index_t j, index_t cols) {
  const bf16* base = b.data + batch * b.batch_stride + p0 * b.row_stride + j * b.col_stride;
  const index_t pairs = (kc + Group - 1) / Group * Group / 2;
  if (cols < NR || kc % Group) std::fill(out, out + 2 * pairs * NR, std::uint16_t(0));
  if (b.col_stride == 1) {
    // Row-major: interleave two rows of NR columns.
    for (index_t k = 0; k < kc; ++k) {
      const bf16* src = base + k * b.row_stride;
      std::uint16_t* o = out + (k / 2) * NR * 2 + (k & 1);
      for (index_t c = 0; c < cols; ++c) o[c * 2] = bits_of(src[c]);
    }
  } else if (b.row_stride == 1) {
    // Column-major (a transposed operand): each column's pairs are consecutive 32-bit words.
    const index_t full = kc / 2;
    for (index_t c = 0; c < cols; ++c) {
      const bf16* src = base + c * b.col_stride;
      for (index_t q = 0; q < full; ++q) std::memcpy(out + (q * NR + c) * 2, src + 2 * q, 4);
      if (kc % 2) out[(full * NR + c) * 2] = bits_of(src[2 * full]);
    }
  } else {
    for (index_t k = 0; k < kc; ++k)
      for (index_t c = 0; c < cols; ++c)
        out[((k / 2) * NR + c) * 2 + (k & 1)] = bits_of(base[k * b.row_stride + c * b.col_stride]);
  }
}
#endif

/// One thread's packed panels (at most KC × NC and MC × KC elements), kept for the thread's later
/// calls so that small GEMMs do not pay for allocating and faulting them in.
template <class Packed, class Acc>
struct cpu_gemm_workspace {
  std::vector<Packed> bp;  // packed B panel
  std::vector<Packed> ap;  // packed A block
  std::vector<Acc> tile;   // one MR × NR tile
  static cpu_gemm_workspace& of_this_thread() {
    static thread_local cpu_gemm_workspace w;
    return w;
  }
};

/// The own kernel. Work is cut into independent blocks of C, one per thread or more (whole
/// matrices of the batch, or row / column ranges of one matrix); each thread runs the blocked
/// loops serially on its blocks with its own packed panels, so no thread ever waits for another
/// (a team member descheduled on a busy machine delays only its own block).
template <class In, class Out, class Tiles = cpu_gemm_tiles<gemm_acc_t<In>>>
class cpu_gemm_own {
 public:
  using Acc = gemm_acc_t<In>;
  using tiles = Tiles;
  static constexpr int MR = tiles::MR, NR = tiles::NR;

  cpu_gemm_own(const matrix_ref<const In>& a, const matrix_ref<const In>& b, const matrix_ref<Out>& c,
               const epilogue<Out>& ep, int threads)
      : a_(a), b_(b), c_(c), epi_(c, ep), alpha_(static_cast<Acc>(ep.alpha)), threads_(threads) {
    M_ = c.rows;
    N_ = c.cols;
    K_ = a.cols;
    // Partial sums of several K panels live in C itself when it holds Acc contiguously.
    partial_in_c_ = std::is_same_v<Out, Acc> && c.col_stride == 1;
    // Whole tiles of alpha·A·B alone may be stored by the micro-kernel itself.
    direct_store_ = c.col_stride == 1 && ep.beta == 0.0 && !epi_.has_post();
    // Whole slivers of a row-major A of Acc are read in place by the micro-kernel, not packed.
    if constexpr (tiles_read_rows_of_a) a_in_place_ = a.col_stride == 1;
    // Whole tiles of a one-panel product in Acc, alone or plus a per-column bias, go from the
    // micro-kernel's registers straight to C.
    if constexpr (tiles_store_to_c) {
      const bool column_bias = !ep.bias.empty() && ep.bias_along == bias_axis::columns && ep.bias.stride == 1 &&
                               ep.bias.size == N_ && ep.act == activation::none && ep.residual.empty();
      to_c_ = direct_store_ || (c.col_stride == 1 && ep.beta == 0.0 && column_bias);
      if (column_bias) column_bias_ = ep.bias.data;
    }
  }

  void run() {
    if (M_ == 0 || N_ == 0 || c_.batch == 0) return;
    if (K_ == 0) return run_empty_k();
    const double flops = 2.0 * static_cast<double>(M_) * static_cast<double>(N_) * static_cast<double>(K_) *
                         static_cast<double>(c_.batch);
    const int team = flops < 4e6 ? 1 : threads_;
    // Blocks per matrix: enough for every thread — two per thread when they still have ≥ 256
    // rows (or columns), so that the threads balance their work — cut along the longer side of C
    // in whole micro-tiles. The other operand's panels are packed once per block: a small cost
    // next to a block's arithmetic.
    const bool by_rows = M_ / MR >= N_ / NR;
    const index_t unit = by_rows ? MR : NR, extent = by_rows ? M_ : N_;
    index_t per_matrix = c_.batch >= team ? 1 : (team + c_.batch - 1) / c_.batch;
    if (per_matrix > 1 && extent >= 2 * per_matrix * 256) per_matrix *= 2;
    const index_t steps = (extent + unit - 1) / unit;
    const index_t blocks = std::min<index_t>(per_matrix, steps);
    const index_t units = c_.batch * blocks;
    gemm_parallel(team, units, [&](index_t u) {
      const index_t b = u / blocks, k = u % blocks;
      const index_t lo = std::min(extent, steps * k / blocks * unit), hi = std::min(extent, steps * (k + 1) / blocks * unit);
      workspace& w = thread_workspace();
      if (by_rows) one_block(b, lo, hi, 0, N_, w);
      else one_block(b, 0, M_, lo, hi, w);
    }, units > team);
  }

 private:
  static index_t round_up(index_t x, index_t m) { return (x + m - 1) / m * m; }

  using packed = typename tiles::packed;
  static constexpr bool tiles_read_rows_of_a =
      std::is_same_v<In, Acc> &&
      requires(index_t n, const Acc* p, Acc* q, Acc x) { tiles::template kernel_with<true, true>(n, p, n, p, q, n, x, p); };
  static constexpr bool tiles_store_to_c = tiles_read_rows_of_a && std::is_same_v<Out, Acc>;
  using workspace = cpu_gemm_workspace<packed, Acc>;
  static workspace& thread_workspace() { return workspace::of_this_thread(); }

  template <class E>
  static E* sized(std::vector<E>& v, index_t n) {
    if (static_cast<index_t>(v.size()) < n) v.resize(static_cast<std::size_t>(n));
    return v.data();
  }

  /// C[b, i0:i1, j0:j1] on the calling thread: the BLIS loops jc (NC) → pc (KC, pack B) →
  /// ic (MC, pack A) → jr (NR) → ir (MR, micro-kernel, store through the epilogue).
  void one_block(index_t b, index_t i0, index_t i1, index_t j0, index_t j1, workspace& w) {
    const index_t ba = a_.batch == 1 ? 0 : b, bb = b_.batch == 1 ? 0 : b;
    const index_t rows = i1 - i0;
    const index_t nc_max = std::min<index_t>(tiles::NC, round_up(j1 - j0, NR));
    const index_t kc_max = round_up(std::min<index_t>(tiles::KC, K_), tiles::k_group);
    packed* bp = sized(w.bp, kc_max * nc_max);
    packed* ap = sized(w.ap, std::min<index_t>(tiles::MC, round_up(rows, MR)) * kc_max);
    Acc* tile = sized(w.tile, MR * NR);
    // Partial sums of several K panels, when they cannot live in C (freed after the block).
    std::vector<Acc> partial_sums(K_ > tiles::KC && !partial_in_c_ ? static_cast<std::size_t>(rows * nc_max) : 0);
    Acc* partial = partial_sums.data();
    for (index_t jc = j0; jc < j1; jc += tiles::NC) {
      const index_t nc = std::min<index_t>(tiles::NC, j1 - jc);
      for (index_t pc = 0; pc < K_; pc += tiles::KC) {
        const index_t kc = std::min<index_t>(tiles::KC, K_ - pc);
        const index_t kcp = round_up(kc, tiles::k_group);  // K steps as packed (with padding)
        const bool first = pc == 0, last = pc + kc == K_;
        for (index_t t = 0; t * NR < nc; ++t) pack_b(bp + t * kcp * NR, bb, pc, kc, jc + t * NR, std::min<index_t>(NR, nc - t * NR));
        for (index_t ic = i0; ic < i1; ic += tiles::MC) {
          const index_t mc = std::min<index_t>(tiles::MC, i1 - ic);
          // Read in place, whole slivers are not packed; a last partial one is, padded with zeros.
          const index_t in_place = a_in_place_ ? mc / MR * MR : 0;
          if (in_place < mc) pack_a(ap + in_place * kcp, ba, ic + in_place, mc - in_place, pc, kc);
          for (index_t jr = 0; jr < nc; jr += NR) {
            const index_t n = std::min<index_t>(NR, nc - jr);
            for (index_t ir = 0; ir < mc; ir += MR) {
              const index_t m = std::min<index_t>(MR, mc - ir);
#if EINLM_GEMM_HAS_BF16_DOT
              if constexpr (std::is_same_v<tiles, cpu_gemm_tiles_bf16_dot> &&
                            (std::is_same_v<Out, float> || std::is_same_v<Out, bf16>)) {
                if (direct_store_ && first && last && m == MR && n == NR) {
                  tiles::store_kernel(kc, ap + ir * kcp, bp + jr * kcp, &c_(b, ic + ir, jc + jr), c_.row_stride,
                                      alpha_);
                  continue;
                }
              }
#endif
              if constexpr (tiles_store_to_c) {
                if (to_c_ && first && last && m == MR && n == NR) {
                  Acc* to = &c_(b, ic + ir, jc + jr);
                  const Acc* bias = column_bias_ ? column_bias_ + jc + jr : nullptr;
                  if (ir < in_place)
                    tiles::template kernel_with<true, true>(kc, &a_(ba, ic + ir, pc), a_.row_stride, bp + jr * kcp, to,
                                                            c_.row_stride, alpha_, bias);
                  else
                    tiles::template kernel_with<false, true>(kc, ap + ir * kcp, 0, bp + jr * kcp, to, c_.row_stride,
                                                             alpha_, bias);
                  continue;
                }
              }
              if constexpr (tiles_read_rows_of_a) {
                if (ir < in_place)
                  tiles::template kernel_with<true, false>(kc, &a_(ba, ic + ir, pc), a_.row_stride, bp + jr * kcp, tile,
                                                           NR, Acc(1), nullptr);
                else
                  tiles::kernel(kc, ap + ir * kcp, bp + jr * kcp, tile);
              } else {
                tiles::kernel(kc, ap + ir * kcp, bp + jr * kcp, tile);
              }
              for (index_t r = 0; r < m; ++r) {
                const index_t i = ic + ir + r, j = jc + jr;
                Acc* part = nullptr;
                if (!(first && last)) {
                  if constexpr (std::is_same_v<Out, Acc>) part = partial_in_c_ ? &c_(b, i, j) : nullptr;
                  if (!part) part = partial + (i - i0) * nc_max + (j - jc);
                }
                epi_({b, i, j, n, tile + r * NR, 1, alpha_, first, first ? nullptr : part, last ? nullptr : part});
              }
            }
          }
        }
      }
    }
  }

  void pack_a(packed* dst, index_t b, index_t i0, index_t mc, index_t p0, index_t kc) const {
    if constexpr (tiles::k_group == 1) detail::pack_a<MR>(dst, a_, b, i0, mc, p0, kc);
#if EINLM_GEMM_HAS_BF16_DOT
    else detail::pack_a_pairs<MR, tiles::k_group>(dst, a_, b, i0, mc, p0, kc);
#endif
  }
  void pack_b(packed* dst, index_t b, index_t p0, index_t kc, index_t j, index_t cols) const {
    if constexpr (tiles::k_group == 1) pack_b_sliver<NR>(dst, b_, b, p0, kc, j, cols);
#if EINLM_GEMM_HAS_BF16_DOT
    else pack_b_pairs<NR, tiles::k_group>(dst, b_, b, p0, kc, j, cols);
#endif
  }

  /// K = 0: C = post(beta·C_old).
  void run_empty_k() {
    std::vector<Acc> zeros(static_cast<std::size_t>(N_), Acc(0));
    gemm_parallel(threads_, c_.batch * M_, [&](index_t u) {
      const index_t b = u / M_, i = u % M_;
      epi_({b, i, 0, N_, zeros.data(), 1, Acc(0), true, nullptr, nullptr});
    });
  }

  matrix_ref<const In> a_, b_;
  matrix_ref<Out> c_;
  cpu_epilogue<Acc, Out> epi_;
  Acc alpha_;
  int threads_;
  index_t M_ = 0, N_ = 0, K_ = 0;
  bool partial_in_c_ = false;
  bool direct_store_ = false;
  bool a_in_place_ = false;
  bool to_c_ = false;
  const Out* column_bias_ = nullptr;
};

template <class In, class Out>
void gemm_own_cpu(const matrix_ref<const In>& a, const matrix_ref<const In>& b, const matrix_ref<Out>& c,
                  const epilogue<Out>& ep, int threads) {
#if EINLM_GEMM_HAS_BF16_DOT
  if constexpr (std::is_same_v<In, bf16>) {
    if (cpu_has_amx_bf16()) return cpu_gemm_own<In, Out, cpu_gemm_tiles_bf16_amx>(a, b, c, ep, threads).run();
    if (cpu_has_bf16_dot()) return cpu_gemm_own<In, Out, cpu_gemm_tiles_bf16_dot>(a, b, c, ep, threads).run();
  }
#endif
#if EINLM_HAS_PACKETS && defined(__x86_64__) && !defined(__AVX512F__)
  using Acc = gemm_acc_t<In>;
  switch (cpu_gemm_vector_bytes()) {
    case 64: return cpu_gemm_own<In, Out, cpu_gemm_tiles_x86<Acc, 64>>(a, b, c, ep, threads).run();
#if !(defined(__AVX2__) && defined(__FMA__))
    case 32: return cpu_gemm_own<In, Out, cpu_gemm_tiles_x86<Acc, 32>>(a, b, c, ep, threads).run();
#endif
    default: break;
  }
#endif
  cpu_gemm_own<In, Out>(a, b, c, ep, threads).run();
}

/// The vector bytes of the own kernel's FMA micro-kernel on this CPU (64: AVX-512, 32: AVX2),
/// from the build's target or chosen at run time; 0 when it has none (no FMA).
inline int own_kernel_fma_bytes() {
#if EINLM_HAS_PACKETS && defined(__x86_64__) && defined(__AVX512F__)
  return 64;
#elif EINLM_HAS_PACKETS && defined(__x86_64__)
  if (const int wide = cpu_gemm_vector_bytes(); wide != 0) return wide;
#if defined(__AVX2__) && defined(__FMA__)
  return 32;
#else
  return 0;
#endif
#else
  return 0;
#endif
}

// ------------------------------------------------------------------------------------ BLAS

#if EINLM_HAS_BLAS
/// An operand as BLAS sees it in row-major order: a pointer per batch, a transpose flag and the
/// leading dimension; or nothing when its layout does not fit (then it is copied first).
struct blas_operand {
  bool fits = false;
  bool trans = false;
  index_t ld = 0;
};

template <class T>
blas_operand blas_layout(const matrix_ref<T>& m) {
  const index_t rows = std::max<index_t>(m.rows, 1), cols = std::max<index_t>(m.cols, 1);
  if (m.col_stride == 1 && m.row_stride >= cols && m.row_stride <= INT_MAX) return {true, false, m.row_stride};
  if (m.row_stride == 1 && m.col_stride >= rows && m.col_stride <= INT_MAX) return {true, true, m.col_stride};
  return {};
}

inline void blas_gemv(bool trans, index_t rows, index_t cols, float alpha, const float* a, index_t lda,
                      const float* x, index_t incx, float beta, float* y, index_t incy) {
  cblas_sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, static_cast<int>(rows), static_cast<int>(cols), alpha,
              a, static_cast<int>(lda), x, static_cast<int>(incx), beta, y, static_cast<int>(incy));
}
inline void blas_gemv(bool trans, index_t rows, index_t cols, double alpha, const double* a, index_t lda,
                      const double* x, index_t incx, double beta, double* y, index_t incy) {
  cblas_dgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, static_cast<int>(rows), static_cast<int>(cols), alpha,
              a, static_cast<int>(lda), x, static_cast<int>(incx), beta, y, static_cast<int>(incy));
}
inline void blas_gemm(bool ta, bool tb, index_t m, index_t n, index_t k, float alpha, const float* a, index_t lda,
                      const float* b, index_t ldb, float beta, float* c, index_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta,
              c, static_cast<int>(ldc));
}
inline void blas_gemm(bool ta, bool tb, index_t m, index_t n, index_t k, double alpha, const double* a, index_t lda,
                      const double* b, index_t ldb, double beta, double* c, index_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta,
              c, static_cast<int>(ldc));
}

/// Row-major C (m × n, ldc) = alpha·op(A)·op(B) + beta·C, op(A) m × k and op(B) k × n; A is stored
/// m × k (k × m when ta) with lda, B k × n (n × k when tb) with ldb. A product with one row or one
/// column is a matrix-vector product and goes to GEMV: a GEMM packs its whole matrix operand
/// first, which for one row (a decoded token through the LM head) costs as much as the product.
/// (With k = 0, GEMV would leave C unscaled, so GEMM keeps that case.)
template <class T>
void blas_call(bool ta, bool tb, index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda, const T* b,
               index_t ldb, T beta, T* c, index_t ldc) {
  if (k > 0 && m == 1) {
    // c[j] = Σ_p A(0, p)·B(p, j): x = A's row (stride lda when A is stored as a column).
    const index_t incx = ta ? lda : 1;
    if (tb) blas_gemv(false, n, k, alpha, b, ldb, a, incx, beta, c, 1);  // B stored n × k
    else blas_gemv(true, k, n, alpha, b, ldb, a, incx, beta, c, 1);      // B stored k × n
    return;
  }
  if (k > 0 && n == 1) {
    // c[i·ldc] = Σ_p A(i, p)·B(p, 0): x = B's column.
    const index_t incx = tb ? 1 : ldb;
    if (ta) blas_gemv(true, k, m, alpha, a, lda, b, incx, beta, c, ldc);  // A stored k × m
    else blas_gemv(false, m, k, alpha, a, lda, b, incx, beta, c, ldc);    // A stored m × k
    return;
  }
  blas_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/// A contiguous row-major copy of one matrix of the batch.
template <class T>
void copy_matrix(T* dst, const matrix_ref<const T>& m, index_t b, int team) {
  gemm_parallel(team, m.rows, [&](index_t i) {
    for (index_t j = 0; j < m.cols; ++j) dst[i * m.cols + j] = m(b, i, j);
  });
}

/// The kernels OpenBLAS chose for this CPU at load time (openblas_get_corename: "SkylakeX",
/// "Haswell", "Zen", …), or "" when the BLAS is not OpenBLAS.
inline std::string openblas_core() {
#if defined(OPENBLAS_VERSION)
  const char* name = openblas_get_corename();
  return name ? name : "";
#else
  return "";
#endif
}

/// True when the BLAS is an OpenBLAS that runs kernels older than this CPU: one whose table of
/// CPUs does not know this one (Debian 12's 0.3.21 on Sapphire or Emerald Rapids, say) falls back
/// to its "Prescott" SSE3 kernels, without FMA, about 4× slower than its AVX-512 ones. OpenBLAS's
/// FMA kernels are those of Haswell, Zen, SkylakeX, Cooperlake and SapphireRapids; when it runs
/// none of them and einlm's own kernel has FMA here, the own kernel is the faster one.
/// (OPENBLAS_CORETYPE=SkylakeX, set before the program starts, makes OpenBLAS take its AVX-512
/// kernels; this then returns false.)
inline bool blas_kernels_older_than_cpu() {
  static const bool older = [] {
    const std::string core = openblas_core();
    if (core.empty() || own_kernel_fma_bytes() == 0) return false;
    std::string lower;
    for (const char ch : core) lower += static_cast<char>(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch);
    for (const char* fma_core : {"haswell", "zen", "skylakex", "cooperlake", "sapphirerapids"})
      if (lower == fma_core) return false;
    return true;
  }();
  return older;
}

/// C (M × N, or Cᵀ stored when `trans`; rows ld apart) = the epilogue's bias, broadcast along
/// its axis, or zeros without one; over C's rows in memory on `team` threads.
template <class T, class Out>
void fill_with_bias(T* c, index_t ld, bool trans, index_t M, index_t N, const epilogue<Out>& ep, int team) {
  const index_t memory_rows = trans ? N : M, memory_cols = trans ? M : N;
  // The bias varies along memory's columns when it follows C's columns and C is stored by rows,
  // or follows C's rows and C is stored by columns; otherwise each memory row is one value.
  const bool along_memory_columns = (ep.bias_along == bias_axis::columns) != trans;
  gemm_parallel(team, memory_rows, [&](index_t r) {
    T* row = c + r * ld;
    if (ep.bias.empty()) {
      std::memset(static_cast<void*>(row), 0, static_cast<std::size_t>(memory_cols) * sizeof(T));
    } else if (along_memory_columns) {
      if constexpr (std::is_same_v<T, Out>)
        if (ep.bias.stride == 1) {
          std::memcpy(row, ep.bias.data, static_cast<std::size_t>(memory_cols) * sizeof(T));
          return;
        }
      for (index_t j = 0; j < memory_cols; ++j) row[j] = convert<T>(ep.bias[j]);
    } else {
      std::fill(row, row + memory_cols, convert<T>(ep.bias[r]));
    }
  });
}

/// BLAS for the product, then one fused pass for what BLAS cannot do.
template <class T, class Out>
void gemm_blas_cpu(matrix_ref<const T> a, matrix_ref<const T> b, const matrix_ref<Out>& c, const epilogue<Out>& ep,
                   int team) {
  const index_t M = c.rows, N = c.cols, K = a.cols;
  if (M == 0 || N == 0 || c.batch == 0) return;
  if (M > INT_MAX || N > INT_MAX || K > INT_MAX) return gemm_own_cpu(a, b, c, ep, team);
  const cpu_epilogue<T, Out> epi(c, ep);
  // C itself receives the product when it holds T with a layout BLAS takes (possibly as the
  // transposed problem Cᵀ = Bᵀ·Aᵀ); otherwise a row-major workspace does.
  blas_operand lc = std::is_same_v<Out, T> ? blas_layout(c) : blas_operand{};
  const bool in_c = lc.fits;
  blas_operand la = blas_layout(a), lb = blas_layout(b);
  buffer<T, host> a_copy(la.fits ? 0 : static_cast<std::size_t>(M * K));
  buffer<T, host> b_copy(lb.fits ? 0 : static_cast<std::size_t>(K * N));
  buffer<T, host> work(in_c ? 0 : static_cast<std::size_t>(M * N));
  if (!la.fits) la = {true, false, std::max<index_t>(K, 1)};
  if (!lb.fits) lb = {true, false, std::max<index_t>(N, 1)};
  const bool post_in_c = in_c && epi.has_post();
  // Threads of the passes over C before and after BLAS: one for a small C.
  const int pass_team = M * N < (1 << 15) ? 1 : team;
  // Before a product of some size with beta = 0 and no residual, C is filled with the bias (or
  // zeros), which BLAS then adds the product to (beta = 1): OpenBLAS would otherwise zero C in a
  // pass of its own first (its kernels accumulate into C), and the bias would take a pass after
  // it. What remains after BLAS is the activation's pass, if any. Bias-free products give the
  // same bits as before (0 + x = x); with a bias, for K beyond BLAS's panel depth the bias is
  // summed before the later panels rather than after them: the same value to rounding. Small
  // products keep beta = 0: OpenBLAS multiplies them with kernels that write C directly.
  const bool fill_first = in_c && K > 0 && std::min(M, N) > 1 && ep.beta == 0.0 && ep.residual.empty() &&
                          static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K) >= 1e6;
  // A batch of small products (attention's per-head GEMMs) runs one matrix per thread: BLAS
  // threads each small call poorly, and the OpenMP build of OpenBLAS runs single-threaded inside
  // a parallel region. Larger products keep BLAS's own threading.
  if (team > 1 && c.batch >= team && in_c && !a_copy.data() && !b_copy.data() &&
      static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K) < double(1 << 22)) {
    gemm_parallel(team, c.batch, [&](index_t bt) {
      const T* pa = a.data + (a.batch == 1 ? 0 : bt) * a.batch_stride;
      const T* pb = b.data + (b.batch == 1 ? 0 : bt) * b.batch_stride;
      T* pc = reinterpret_cast<T*>(c.data + bt * c.batch_stride);
      const T alpha = static_cast<T>(ep.alpha), beta = static_cast<T>(ep.beta);
      if (!lc.trans) blas_call(la.trans, lb.trans, M, N, K, alpha, pa, la.ld, pb, lb.ld, beta, pc, lc.ld);
      else blas_call(!lb.trans, !la.trans, N, M, K, alpha, pb, lb.ld, pa, la.ld, beta, pc, lc.ld);
      if (post_in_c)
        for (index_t i = 0; i < M; ++i) {
          const T* row = pc + i * (lc.trans ? 1 : lc.ld);
          epi({bt, i, 0, N, row, lc.trans ? lc.ld : 1, T(1), false, nullptr, nullptr});
        }
    });
    return;
  }
  for (index_t bt = 0; bt < c.batch; ++bt) {
    const index_t ba = a.batch == 1 ? 0 : bt, bb = b.batch == 1 ? 0 : bt;
    const T* pa = a.data + ba * a.batch_stride;
    const T* pb = b.data + bb * b.batch_stride;
    if (a_copy.data()) {
      if (bt == 0 || a.batch != 1) copy_matrix(a_copy.data(), a, ba, team);
      pa = a_copy.data();
    }
    if (b_copy.data()) {
      if (bt == 0 || b.batch != 1) copy_matrix(b_copy.data(), b, bb, team);
      pb = b_copy.data();
    }
    const T alpha = static_cast<T>(ep.alpha);
    if (in_c) {
      T* pc = reinterpret_cast<T*>(c.data + bt * c.batch_stride);
      T beta = static_cast<T>(ep.beta);
      // C's rows in memory: M rows of N (N rows of M when BLAS writes Cᵀ), lc.ld apart.
      const index_t memory_rows = lc.trans ? N : M, memory_cols = lc.trans ? M : N;
      if (fill_first) {
        fill_with_bias(pc, lc.ld, lc.trans, M, N, ep, pass_team);
        beta = T(1);
      }
      if (!lc.trans) {
        blas_call(la.trans, lb.trans, M, N, K, alpha, pa, la.ld, pb, lb.ld, beta, pc, lc.ld);
      } else {
        // Cᵀ (N × M, row-major with ld) = Bᵀ · Aᵀ.
        blas_call(!lb.trans, !la.trans, N, M, K, alpha, pb, lb.ld, pa, la.ld, beta, pc, lc.ld);
      }
      if (fill_first) {
        if (ep.act != activation::none)
          gemm_parallel(pass_team, memory_rows, [&](index_t r) {
            simd::dispatch<activation_kernel<T>>(memory_cols, pc + r * lc.ld, ep.act);
          });
      } else if (post_in_c) {
        gemm_parallel(pass_team, M, [&](index_t i) {
          const T* row = pc + i * (lc.trans ? 1 : lc.ld);
          epi({bt, i, 0, N, row, lc.trans ? lc.ld : 1, T(1), false, nullptr, nullptr});
        });
      }
    } else {
      blas_call(la.trans, lb.trans, M, N, K, alpha, pa, la.ld, pb, lb.ld, T(0), work.data(), std::max<index_t>(N, 1));
      gemm_parallel(pass_team, M, [&](index_t i) {
        epi({bt, i, 0, N, work.data() + i * N, 1, T(1), true, nullptr, nullptr});
      });
    }
  }
}
#endif

}  // namespace detail

/// True when this build calls a BLAS for float/double GEMMs on the CPU.
inline constexpr bool gemm_has_blas = EINLM_HAS_BLAS != 0;

/// What runs a float GEMM with the automatic backend on this machine, in words: "OpenBLAS 0.3.21
/// (SkylakeX kernels)", "einlm's own kernel (AVX-512); OpenBLAS 0.3.21 chose its Prescott
/// kernels, older than this CPU", or "einlm's own kernel (…)" without a BLAS.
inline std::string cpu_gemm_description() {
  [[maybe_unused]] const auto own = [] {
    const int bytes = detail::own_kernel_fma_bytes();
    return std::string("einlm's own kernel (") + (bytes == 64 ? "AVX-512" : bytes == 32 ? "AVX2" : "no FMA") + ")";
  };
#if EINLM_HAS_BLAS
#if defined(OPENBLAS_VERSION)
  std::string version = OPENBLAS_VERSION;
  while (!version.empty() && version.front() == ' ') version.erase(version.begin());
  while (!version.empty() && version.back() == ' ') version.pop_back();
  const std::string core = detail::openblas_core();
  if (detail::blas_kernels_older_than_cpu())
    return own() + "; " + version + " chose its " + core + " kernels, older than this CPU (it still runs GEMV)";
  return version + " (" + core + " kernels)";
#else
  return "the linked BLAS (cblas_sgemm)";
#endif
#else
  return own();
#endif
}

/// C = epilogue(alpha·A·B + beta·C) on host memory (einlm/linalg/gemm.hpp has the contract).
template <class TA, class TB, class Out>
void gemm_cpu(const matrix_ref<TA>& a_in, const matrix_ref<TB>& b_in, const matrix_ref<Out>& c_in,
              const epilogue<Out>& ep = {}, const gemm_options& options = {}) {
  using In = std::remove_const_t<TA>;
  const auto [ca, cb, cc] = detail::prepare_gemm(a_in, b_in, c_in, ep);
  const int team = detail::gemm_threads(options);
  constexpr bool blas_type = EINLM_HAS_BLAS && (std::is_same_v<In, float> || std::is_same_v<In, double>);
  switch (options.backend) {
    case gemm_backend::cublaslt:
      throw value_error("gemm: the cublaslt backend needs device memory; on the CPU use own or blas");
    case gemm_backend::blas:
      if constexpr (!blas_type)
        throw value_error(detail::concat("gemm: the blas backend ",
                                         EINLM_HAS_BLAS ? "takes float and double inputs only (these are "
                                                        : "is not compiled in (link einlm::blas, Debian: libopenblas-dev; inputs are ",
                                         dtype_traits<In>::name, ")"));
#if EINLM_HAS_BLAS
      else return detail::gemm_blas_cpu(ca, cb, cc, ep, team);
#endif
      [[fallthrough]];
    case gemm_backend::automatic:
#if EINLM_HAS_BLAS
      // BLAS, unless its kernels are older than this CPU; matrix-vector products stay with BLAS
      // even then (its GEMV is bound by memory, and the own kernel has no GEMV form).
      if constexpr (blas_type)
        if (!detail::blas_kernels_older_than_cpu() || ((cc.rows == 1 || cc.cols == 1) && ca.cols > 0))
          return detail::gemm_blas_cpu(ca, cb, cc, ep, team);
#endif
      [[fallthrough]];
    case gemm_backend::own:
      return detail::gemm_own_cpu(ca, cb, cc, ep, team);
  }
}

/// The host overload that gemm(a, b, c, …) on host tensors and views calls.
template <class In, class Out>
void gemm_on(host, const matrix_ref<const In>& a, const matrix_ref<const In>& b, const matrix_ref<Out>& c,
             const epilogue<Out>& ep, const gemm_options& options) {
  gemm_cpu(a, b, c, ep, options);
}

}  // namespace einlm
