// einlm/linalg/gemm_cuda.cuh — GEMM on the GPU: einlm's own kernels and cuBLASLt. nvcc only.
//
//   gemm_cuda(stream, a, b, c, epilogue, options)   matrix_refs in device memory (contract in
//                                                   einlm/linalg/gemm.hpp); gemm(a, b, c, …) on
//                                                   device tensors lands here (options.stream, or
//                                                   the default CUDA executor's stream)
//   grouped_gemm_cuda(a, w, c, rows, rows_device)   c[rows of g] = a[rows of g]·w[g]ᵀ for every
//                                                   group g in one tensor-core launch (the MoE
//                                                   experts; contract at the function)
//
// Backends:
//   own (bf16, fp16)   tensor cores: mma.sync.m16n8k16 with fp32 accumulators, ldmatrix fragments
//                      and a 4-stage cp.async pipeline; CTA tiles of 128×256×32 (8 warps) when
//                      the problem fills the GPU with them, else 128×128×32 (4 warps); warps of
//                      64×64 (geometry in einlm/linalg/gemm_tc_layout.hpp). One kernel per tile
//                      shape and (A k-major or not, B k-major or not); the epilogue is applied to
//                      the accumulators as they are stored. It needs each operand contiguous along k or along m/n, its other
//                      strides multiples of 8 elements and a 16-byte aligned pointer; any other
//                      operand is first copied into an aligned row-major workspace.
//   own (float, double) a SIMT kernel (64×64 tiles in shared memory, 4×4 outputs per thread), any
//                      strides, fp32 / fp64 accumulation.
//   cublaslt           cuBLASLt (when compiled with EINLM_HAS_CUBLASLT=1: CMake target
//                      einlm::cublaslt). Bias, relu and gelu_tanh run as cuBLASLt epilogues when C
//                      has the input type (or float for 16-bit inputs) and a unit stride; anything
//                      else (gelu, silu, residual, per-row bias on a row-major C, other output
//                      types) is one fused follow-up kernel over an fp32/fp64 product. Algorithms
//                      from cuBLASLt's heuristic are cached per problem.
// Every kernel is launched on the given stream; the calls return without synchronising.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <tuple>
#include <type_traits>
#include <vector>

#include <cuda_runtime_api.h>

#include "einlm/core/config.hpp"
#include "einlm/core/dtype.hpp"
#include "einlm/core/error.hpp"
#include "einlm/core/memory.hpp"
#include "einlm/exec/cuda.cuh"
#include "einlm/linalg/gemm.hpp"
#include "einlm/linalg/gemm_tc_layout.hpp"

#if EINLM_HAS_CUBLASLT
#include <cublasLt.h>
#endif

static_assert(EINLM_HAS_CUDA, "einlm/linalg/gemm_cuda.cuh must be compiled by nvcc");

namespace einlm {

namespace detail {

// -------------------------------------------------------------------------- PTX (sm_80 and up)

EINLM_HD constexpr index_t min_of(index_t x, index_t y) { return x < y ? x : y; }
EINLM_HD constexpr index_t max_of(index_t x, index_t y) { return x > y ? x : y; }

namespace ptx {

EINLM_DEVICE inline unsigned smem_address(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

/// 16 bytes global → shared, bypassing L1; bytes past src_bytes are filled with zeros.
EINLM_DEVICE inline void cp_async_16(unsigned dst, const void* src, int src_bytes) {
  NV_IF_TARGET(NV_PROVIDES_SM_80,
               (asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes)
                             : "memory");),
               (__trap();))
}
EINLM_DEVICE inline void cp_async_commit() {
  NV_IF_TARGET(NV_PROVIDES_SM_80, (asm volatile("cp.async.commit_group;\n" ::: "memory");), (__trap();))
}
/// Waits until at most N committed groups of this thread are still in flight.
template <int N>
EINLM_DEVICE inline void cp_async_wait() {
  NV_IF_TARGET(NV_PROVIDES_SM_80, (asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");), (__trap();))
}

/// Four 8×8 matrices of 16-bit elements; lanes 8q … 8q+7 give the row addresses of matrix q.
template <bool Trans>
EINLM_DEVICE inline void ldmatrix_x4(unsigned (&r)[4], unsigned address) {
  if constexpr (Trans) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(address)
                 : "memory");
  } else {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(address)
                 : "memory");
  }
}

/// d += a·b for one 16×8×16 tile (A row-major 16×16, B column-major 16×8, fp32 accumulators).
template <class In>
EINLM_DEVICE inline void mma_16816(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
  if constexpr (std::is_same_v<In, bf16>) {
    NV_IF_TARGET(NV_PROVIDES_SM_80,
                 (asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                               "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));),
                 (__trap();))
  } else {
    static_assert(std::is_same_v<In, fp16>);
    NV_IF_TARGET(NV_PROVIDES_SM_80,
                 (asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                               "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));),
                 (__trap();))
  }
}

}  // namespace ptx

// ---------------------------------------------------------------------- tensor-core kernel

/// Arguments of the tensor-core kernel. `ld` is each operand's stride between its contiguous runs
/// (A: between rows when k-major, between k otherwise; B: between k when n-major, between
/// columns otherwise); batch strides are 0 for an operand shared by every batch.
template <class In, class Out>
struct tc_args {
  const In* a;
  index_t a_ld, a_batch_stride;
  const In* b;
  index_t b_ld, b_batch_stride;
  index_t M, N, K, batch;
  epilogue_op<float, Out> epi;
  // Grouped mode (grouped_gemm_cuda) when not null: `batch` groups, group g the rows
  // [group_rows[g], group_rows[g + 1]) of A and C (M is then the largest group) times B's batch g.
  const std::int64_t* group_rows = nullptr;
};

/// Issues the cp.async copies of one BK slice of an operand tile (rows row0 … of Rows along M or
/// N, k0 … along K) into the shared-memory tile at byte address `smem`; zero-fills outside the
/// matrix (rows ≥ extent, k ≥ K).
template <bool KMajor, int Rows, int Threads, class In>
EINLM_DEVICE inline void load_tile(unsigned smem, const In* base, index_t ld, index_t row0, index_t extent, index_t k0,
                                   index_t K, int tid) {
  constexpr int chunks = Rows * tc::BK / tc::CHUNK;
  static_assert(chunks % Threads == 0);
  EINLM_UNROLL
  for (int it = 0; it < chunks / Threads; ++it) {
    const tc::chunk_slot s = tc::tile_chunk<KMajor, Rows>(tid + it * Threads);
    const index_t mn = row0 + s.mn, k = k0 + s.k;
    index_t valid;  // elements of the chunk inside the matrix (the chunk runs along k or along mn)
    const In* src;
    if constexpr (KMajor) {
      valid = mn < extent ? min_of(max_of(K - k, 0), tc::CHUNK) : 0;
      src = base + mn * ld + k;
    } else {
      valid = k < K ? min_of(max_of(extent - mn, 0), tc::CHUNK) : 0;
      src = base + k * ld + mn;
    }
    ptx::cp_async_16(smem + static_cast<unsigned>(s.offset) * 2u, valid > 0 ? src : base,
                     static_cast<int>(valid) * 2);
  }
}

template <class Shape, class In, class Out, bool AK, bool BKM>
EINLM_KERNEL void __launch_bounds__(Shape::THREADS) tc_gemm_kernel(tc_args<In, Out> p) {
  using namespace tc;
  constexpr int BM = Shape::BM, BN = Shape::BN, WARPS_N = Shape::WARPS_N, THREADS = Shape::THREADS;
  constexpr int STAGE_BYTES = Shape::STAGE_BYTES, OUT_PITCH = Shape::OUT_PITCH;
  extern __shared__ __align__(128) unsigned char tc_smem[];
  const unsigned smem = ptx::smem_address(tc_smem);
  const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int wm = (warp / WARPS_N) * WM, wn = (warp % WARPS_N) * WN;
  const long long tiles_m = (p.M + BM - 1) / BM, tiles_n = (p.N + BN - 1) / BN;
  const tile_coord t = tile_of(static_cast<long long>(blockIdx.x), tiles_m, tiles_n);
  const index_t m0 = t.tm * BM, n0 = t.tn * BN;
  const index_t ktiles = (p.K + BK - 1) / BK;

  for (index_t b = blockIdx.z; b < p.batch; b += gridDim.z) {
    // Grouped mode: this group's rows of A and C; the tile lies past a smaller group's end.
    const index_t row0 = p.group_rows ? static_cast<index_t>(p.group_rows[b]) : 0;
    const index_t rows_m = p.group_rows ? static_cast<index_t>(p.group_rows[b + 1]) - row0 : p.M;
    if (m0 >= rows_m) continue;  // uniform over the CTA
    const In* a = p.group_rows ? p.a + row0 * (AK ? p.a_ld : 1) : p.a + b * p.a_batch_stride;
    const In* bm = p.b + b * p.b_batch_stride;
    float acc[MI][NI][4];
    EINLM_UNROLL
    for (int mi = 0; mi < MI; ++mi) {
      EINLM_UNROLL
      for (int ni = 0; ni < NI; ++ni) {
        EINLM_UNROLL
        for (int r = 0; r < 4; ++r) acc[mi][ni][r] = 0.0f;
      }
    }
    const auto load_stage = [&](int stage, index_t kt) {
      const unsigned s = smem + static_cast<unsigned>(stage * STAGE_BYTES);
      load_tile<AK, BM, THREADS>(s, a, p.a_ld, m0, rows_m, kt * BK, p.K, tid);
      load_tile<BKM, BN, THREADS>(s + Shape::A_ELEMS * 2, bm, p.b_ld, n0, p.N, kt * BK, p.K, tid);
    };
    // Prologue: STAGES − 1 slices in flight (a group is committed even when empty, so that the
    // count of pending groups stays the loop's invariant).
    EINLM_UNROLL
    for (int s = 0; s < STAGES - 1; ++s) {
      if (s < ktiles) load_stage(s, s);
      ptx::cp_async_commit();
    }
    for (index_t kt = 0; kt < ktiles; ++kt) {
      ptx::cp_async_wait<STAGES - 2>();  // slice kt has landed (for this thread) …
      __syncthreads();                   // … for every thread; and slice kt − 1 is consumed
      const index_t next = kt + STAGES - 1;
      if (next < ktiles) load_stage(static_cast<int>(next % STAGES), next);
      ptx::cp_async_commit();
      const unsigned sa = smem + static_cast<unsigned>((kt % STAGES) * STAGE_BYTES);
      const unsigned sb = sa + Shape::A_ELEMS * 2;
      EINLM_UNROLL
      for (int ks = 0; ks < BK; ks += 16) {
        unsigned af[MI][4], bf[NI][2];
        EINLM_UNROLL
        for (int mi = 0; mi < MI; ++mi)
          ptx::ldmatrix_x4<!AK>(af[mi], sa + static_cast<unsigned>(a_fragment_offset<AK, BM>(lane, wm, mi, ks)) * 2u);
        EINLM_UNROLL
        for (int pr = 0; pr < NI / 2; ++pr) {
          unsigned r[4];
          ptx::ldmatrix_x4<!BKM>(r, sb + static_cast<unsigned>(b_fragment_offset<BKM, BN>(lane, wn, pr, ks)) * 2u);
          bf[2 * pr][0] = r[0];
          bf[2 * pr][1] = r[1];
          bf[2 * pr + 1][0] = r[2];
          bf[2 * pr + 1][1] = r[3];
        }
        EINLM_UNROLL
        for (int mi = 0; mi < MI; ++mi) {
          EINLM_UNROLL
          for (int ni = 0; ni < NI; ++ni) ptx::mma_16816<In>(acc[mi][ni], af[mi], bf[ni]);
        }
      }
    }
    ptx::cp_async_wait<0>();
    __syncthreads();  // every warp is done with the operand tiles: reuse the memory for C
    // Accumulators → shared memory (float2 per register pair), then the epilogue element by
    // element along rows: coalesced global accesses, and its code exists once, not per register.
    float* out = reinterpret_cast<float*>(tc_smem);
    EINLM_UNROLL
    for (int mi = 0; mi < MI; ++mi) {
      EINLM_UNROLL
      for (int ni = 0; ni < NI; ++ni) {
        EINLM_UNROLL
        for (int h = 0; h < 2; ++h) {
          const int r = wm + mi * 16 + acc_row(lane, 2 * h), col = wn + ni * 8 + acc_col(lane, 2 * h);
          *reinterpret_cast<float2*>(out + r * OUT_PITCH + col) = make_float2(acc[mi][ni][2 * h], acc[mi][ni][2 * h + 1]);
        }
      }
    }
    __syncthreads();
    const int rows = static_cast<int>(min_of(BM, rows_m - m0)), cols = static_cast<int>(min_of(BN, p.N - n0));
    const index_t c_batch = p.group_rows ? 0 : b;
#pragma unroll 1
    for (int e = tid; e < BM * BN; e += THREADS) {
      const int r = e / BN, col = e % BN;
      if (r < rows && col < cols) p.epi.finish(c_batch, row0 + m0 + r, n0 + col, out[r * OUT_PITCH + col], p.epi.alpha);
    }
    __syncthreads();  // the memory is free for the next batch's pipeline
  }
}

// ---------------------------------------------------------------------------- SIMT kernel

inline constexpr int simt_tile = 64, simt_k = 16, simt_threads = 256;

/// C tile of 64×64 per CTA, 4×4 outputs per thread (rows ty + 16·r, columns tx + 16·c), operands
/// staged through shared memory in the accumulator type; any strides.
template <class In, class Out, class Acc>
EINLM_KERNEL void __launch_bounds__(simt_threads)
    simt_gemm_kernel(matrix_ref<const In> a, matrix_ref<const In> b, index_t M, index_t N, index_t K, index_t batch,
                     epilogue_op<Acc, Out> epi) {
  __shared__ Acc as[simt_k][simt_tile];
  __shared__ Acc bs[simt_k][simt_tile + 1];
  const int tid = static_cast<int>(threadIdx.x), tx = tid % 16, ty = tid / 16;
  const index_t tiles_n = (N + simt_tile - 1) / simt_tile;
  const index_t m0 = static_cast<index_t>(blockIdx.x) / tiles_n * simt_tile;
  const index_t n0 = static_cast<index_t>(blockIdx.x) % tiles_n * simt_tile;
  for (index_t bt = blockIdx.z; bt < batch; bt += gridDim.z) {
    const index_t ba = a.batch == 1 ? 0 : bt, bb = b.batch == 1 ? 0 : bt;
    Acc acc[4][4] = {};
    for (index_t k0 = 0; k0 < K; k0 += simt_k) {
      for (int e = tid; e < simt_k * simt_tile; e += simt_threads) {
        const int mm = e % simt_tile, kk = e / simt_tile;
        const index_t i = m0 + mm, k = k0 + kk, j = n0 + mm;
        as[kk][mm] = i < M && k < K ? convert<Acc>(a(ba, i, k)) : Acc(0);
        bs[kk][mm] = j < N && k < K ? convert<Acc>(b(bb, k, j)) : Acc(0);
      }
      __syncthreads();
      EINLM_UNROLL
      for (int kk = 0; kk < simt_k; ++kk) {
        Acc av[4], bv[4];
        EINLM_UNROLL
        for (int r = 0; r < 4; ++r) av[r] = as[kk][ty + 16 * r];
        EINLM_UNROLL
        for (int c = 0; c < 4; ++c) bv[c] = bs[kk][tx + 16 * c];
        EINLM_UNROLL
        for (int r = 0; r < 4; ++r) {
          EINLM_UNROLL
          for (int c = 0; c < 4; ++c) acc[r][c] = acc[r][c] + av[r] * bv[c];
        }
      }
      __syncthreads();
    }
    EINLM_UNROLL
    for (int r = 0; r < 4; ++r) {
      EINLM_UNROLL
      for (int c = 0; c < 4; ++c) {
        const index_t i = m0 + ty + 16 * r, j = n0 + tx + 16 * c;
        if (i < M && j < N) epi.finish(bt, i, j, acc[r][c], epi.alpha);
      }
    }
  }
}

// ------------------------------------------------------------------ element-wise helpers

/// C = post(scale·P + beta·C_old) for every element, P given in C's coordinates (or zero when P
/// is empty: the K = 0 case).
template <class Acc, class Out>
EINLM_KERNEL void finish_kernel(matrix_ref<const Acc> product, epilogue_op<Acc, Out> epi, index_t batch, index_t M,
                                index_t N, Acc scale) {
  const index_t n = batch * M * N;
  const index_t step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += step) {
    const index_t j = e % N, i = e / N % M, b = e / (M * N);
    epi.finish(b, i, j, product.empty() ? Acc(0) : product(b, i, j), scale);
  }
}

/// dst (batch, rows, cols), row-major with row stride ld and batch stride rows·ld ← src.
template <class T>
EINLM_KERNEL void pack_kernel(matrix_ref<const T> src, T* dst, index_t ld) {
  const index_t n = src.batch * src.rows * src.cols;
  const index_t step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += step) {
    const index_t j = e % src.cols, i = e / src.cols % src.rows, b = e / (src.rows * src.cols);
    dst[(b * src.rows + i) * ld + j] = src(b, i, j);
  }
}

inline unsigned elementwise_grid(index_t n) {
  const index_t blocks = (n + 255) / 256;
  return static_cast<unsigned>(max_of(1, min_of(blocks, multiprocessor_count() * 32)));
}

/// A device buffer whose memory is returned to the allocator in the order of `stream`.
template <class T>
buffer<T, device> stream_buffer(std::size_t count, cudaStream_t stream) {
  buffer<T, device> b(count);
  b.set_stream(stream);
  return b;
}

/// A row-major copy of m (rows padded to a multiple of 8 elements): the layout every kernel takes.
template <class T>
matrix_ref<const T> packed_copy(const matrix_ref<const T>& m, buffer<T, device>& storage, cudaStream_t stream) {
  const index_t ld = (std::max<index_t>(m.cols, 1) + 7) / 8 * 8;
  storage = stream_buffer<T>(static_cast<std::size_t>(m.batch * m.rows * ld), stream);
  const index_t n = m.batch * m.rows * m.cols;
  if (n > 0) {
    pack_kernel<<<elementwise_grid(n), 256, 0, stream>>>(m, storage.data(), ld);
    EINLM_CUDA_CHECK(cudaGetLastError());
  }
  return matrix_ref<const T>(storage.data(), m.batch, m.rows, m.cols, m.batch == 1 ? 0 : m.rows * ld, ld, 1);
}

inline bool aligned_16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

/// True when the tensor-core kernel reads m as it is: contiguous along one axis (the other stride
/// a positive multiple of 8), batch stride a multiple of 8, 16-byte aligned.
template <class T>
bool tc_ready(const matrix_ref<const T>& m) {
  const index_t ld = m.col_stride == 1 ? m.row_stride : m.row_stride == 1 ? m.col_stride : 0;
  return (m.col_stride == 1 || m.row_stride == 1) && ld > 0 && ld % 8 == 0 && m.batch_stride >= 0 &&
         m.batch_stride % 8 == 0 && aligned_16(m.data);
}

template <class Shape, class In, class Out, bool AK, bool BKM>
void launch_tc_shape(const tc_args<In, Out>& args, cudaStream_t stream) {
  auto kernel = tc_gemm_kernel<Shape, In, Out, AK, BKM>;
  EINLM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Shape::SMEM_BYTES));
  const index_t tiles = ((args.M + Shape::BM - 1) / Shape::BM) * ((args.N + Shape::BN - 1) / Shape::BN);
  const dim3 grid(static_cast<unsigned>(tiles), 1, static_cast<unsigned>(min_of(args.batch, 65535)));
  kernel<<<grid, Shape::THREADS, Shape::SMEM_BYTES, stream>>>(args);
  EINLM_CUDA_CHECK(cudaGetLastError());
}

/// The 128×256 tile when it still gives every multiprocessor a CTA (it moves half the bytes per
/// flop of the 128×128 one: the larger problems are bound by L2 bandwidth), else 128×128.
template <class In, class Out, bool AK, bool BKM>
void launch_tc(const tc_args<In, Out>& args, cudaStream_t stream) {
  const index_t wide_tiles = ((args.M + 127) / 128) * ((args.N + 255) / 256) * args.batch;
  if (wide_tiles >= multiprocessor_count()) launch_tc_shape<tc::tile_128x256, In, Out, AK, BKM>(args, stream);
  else launch_tc_shape<tc::tile_128x128, In, Out, AK, BKM>(args, stream);
}

/// The own tensor-core path (bf16/fp16 inputs).
template <class In, class Out>
void gemm_tc(cudaStream_t stream, matrix_ref<const In> a, matrix_ref<const In> b, const matrix_ref<Out>& c,
             const epilogue<Out>& ep) {
  buffer<In, device> a_copy, b_copy;
  if (!tc_ready(a)) a = packed_copy(a, a_copy, stream);
  if (!tc_ready(b)) b = packed_copy(b, b_copy, stream);
  const bool ak = a.col_stride == 1, bk = b.row_stride == 1 && b.col_stride != 1;
  tc_args<In, Out> args{a.data, ak ? a.row_stride : a.col_stride, a.batch == 1 ? 0 : a.batch_stride,
                        b.data, bk ? b.col_stride : b.row_stride, b.batch == 1 ? 0 : b.batch_stride,
                        c.rows, c.cols, a.cols, c.batch, epilogue_op<float, Out>(c, ep)};
  if (ak && bk) launch_tc<In, Out, true, true>(args, stream);
  else if (ak) launch_tc<In, Out, true, false>(args, stream);
  else if (bk) launch_tc<In, Out, false, true>(args, stream);
  else launch_tc<In, Out, false, false>(args, stream);
}

template <class In, class Out>
void gemm_simt(cudaStream_t stream, const matrix_ref<const In>& a, const matrix_ref<const In>& b,
               const matrix_ref<Out>& c, const epilogue<Out>& ep) {
  using Acc = gemm_acc_t<In>;
  const index_t tiles = ((c.rows + simt_tile - 1) / simt_tile) * ((c.cols + simt_tile - 1) / simt_tile);
  const dim3 grid(static_cast<unsigned>(tiles), 1, static_cast<unsigned>(min_of(c.batch, 65535)));
  simt_gemm_kernel<In, Out, Acc><<<grid, simt_threads, 0, stream>>>(a, b, c.rows, c.cols, a.cols, c.batch,
                                                                     epilogue_op<Acc, Out>(c, ep));
  EINLM_CUDA_CHECK(cudaGetLastError());
}

template <class Acc, class Out>
void launch_finish(cudaStream_t stream, const matrix_ref<const Acc>& product, const matrix_ref<Out>& c,
                   const epilogue<Out>& ep, Acc scale) {
  const index_t n = c.batch * c.rows * c.cols;
  if (n == 0) return;
  finish_kernel<<<elementwise_grid(n), 256, 0, stream>>>(product, epilogue_op<Acc, Out>(c, ep), c.batch, c.rows,
                                                        c.cols, scale);
  EINLM_CUDA_CHECK(cudaGetLastError());
}

// ---------------------------------------------------------------------------------- cuBLASLt

#if EINLM_HAS_CUBLASLT
inline void cublas_check(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw cuda_error(static_cast<int>(status), concat("gemm (cublaslt): ", what, " failed: ",
                                                       cublasLtGetStatusName(status), " (",
                                                       cublasLtGetStatusString(status), ")"));
}

/// One cuBLASLt handle per device, created on first use and kept for the process.
inline cublasLtHandle_t cublaslt_handle() {
  static std::mutex mutex;
  static cublasLtHandle_t handles[64] = {};
  int dev = 0;
  EINLM_CUDA_CHECK(cudaGetDevice(&dev));
  std::lock_guard<std::mutex> lock(mutex);
  if (!handles[dev]) cublas_check(cublasLtCreate(&handles[dev]), "cublasLtCreate");
  return handles[dev];
}

template <class T>
inline constexpr cudaDataType_t cuda_type_v = std::is_same_v<T, float>    ? CUDA_R_32F
                                              : std::is_same_v<T, double> ? CUDA_R_64F
                                              : std::is_same_v<T, bf16>   ? CUDA_R_16BF
                                                                          : CUDA_R_16F;

/// A matrix as cuBLASLt (column-major) stores it: the stored rows × cols, its leading dimension,
/// and whether the operation reads it transposed.
struct lt_operand {
  const void* data;
  cudaDataType_t type;
  std::uint64_t rows, cols;
  std::int64_t ld, batch_stride;
  cublasOperation_t op;
};

/// x (logical rows × cols) as a cuBLASLt operand: column-major when its rows are contiguous,
/// otherwise its transpose is column-major and the operation transposes it back.
template <class T>
lt_operand lt_describe(const matrix_ref<T>& x) {
  using U = std::remove_const_t<T>;
  if (x.row_stride == 1)
    return {x.data, cuda_type_v<U>, static_cast<std::uint64_t>(x.rows), static_cast<std::uint64_t>(x.cols),
            std::max<std::int64_t>(x.col_stride, std::max<index_t>(x.rows, 1)), x.batch_stride, CUBLAS_OP_N};
  return {x.data, cuda_type_v<U>, static_cast<std::uint64_t>(x.cols), static_cast<std::uint64_t>(x.rows),
          std::max<std::int64_t>(x.row_stride, std::max<index_t>(x.cols, 1)), x.batch_stride, CUBLAS_OP_T};
}

/// True when cuBLASLt takes x in place: a unit stride, a leading dimension covering the stored
/// rows, a non-negative batch stride, and (to stay on its common algorithms) a 16-byte aligned
/// pointer, leading dimension and batch stride.
template <class T>
bool lt_ready(const matrix_ref<T>& x) {
  const index_t rows = std::max<index_t>(x.rows, 1), cols = std::max<index_t>(x.cols, 1);
  const bool layout = (x.row_stride == 1 && x.col_stride >= rows) || (x.col_stride == 1 && x.row_stride >= cols);
  const index_t ld = x.row_stride == 1 ? x.col_stride : x.row_stride;
  const auto bytes = static_cast<index_t>(sizeof(T));
  return layout && x.batch_stride >= 0 && aligned_16(x.data) && (ld * bytes) % 16 == 0 &&
         (x.batch_stride * bytes) % 16 == 0;
}

/// Largest power of two (≤ 256) dividing the address and the batch stride in bytes.
inline std::uint32_t lt_alignment(const void* p, std::int64_t batch_stride_bytes) {
  std::uint32_t a = 256;
  while (a > 1 && (reinterpret_cast<std::uintptr_t>(p) % a != 0 || batch_stride_bytes % a != 0)) a /= 2;
  return a;
}

/// The heuristic's choice, cached per problem description.
struct lt_key {
  std::tuple<int, int, int, int, int, int, int, std::uint64_t, std::uint64_t, std::uint64_t, std::int64_t, std::int64_t,
             std::int64_t, int, int, std::uint32_t, std::uint32_t, std::uint32_t, int>
      fields;
  bool operator<(const lt_key& o) const { return fields < o.fields; }
};

inline constexpr std::size_t lt_workspace_bytes = std::size_t{32} << 20;

/// D = alpha·op(A)·op(B) + beta·C with D = C in place, `batch` strided matrices, and the given
/// cuBLASLt epilogue. Returns the heuristic's status when it found no algorithm (nothing is run
/// then; CUBLAS_STATUS_NOT_SUPPORTED when it answered with none), CUBLAS_STATUS_SUCCESS otherwise.
template <class Scalar>
cublasStatus_t lt_matmul(cudaStream_t stream, const lt_operand& A, const lt_operand& B, const lt_operand& D, std::uint64_t m,
               std::uint64_t n, std::uint64_t k, int batch, Scalar alpha, Scalar beta, cublasLtEpilogue_t epilogue,
               const void* bias, cudaDataType_t bias_type) {
  const cublasLtHandle_t handle = cublaslt_handle();
  const cublasComputeType_t compute = std::is_same_v<Scalar, double> ? CUBLAS_COMPUTE_64F : CUBLAS_COMPUTE_32F;
  const cudaDataType_t scale_type = std::is_same_v<Scalar, double> ? CUDA_R_64F : CUDA_R_32F;
  struct guard {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulPreference_t pref = nullptr;
    ~guard() {
      if (pref) cublasLtMatmulPreferenceDestroy(pref);
      if (d) cublasLtMatrixLayoutDestroy(d);
      if (b) cublasLtMatrixLayoutDestroy(b);
      if (a) cublasLtMatrixLayoutDestroy(a);
      if (op) cublasLtMatmulDescDestroy(op);
    }
  } g;
  cublas_check(cublasLtMatmulDescCreate(&g.op, compute, scale_type), "cublasLtMatmulDescCreate");
  cublas_check(cublasLtMatmulDescSetAttribute(g.op, CUBLASLT_MATMUL_DESC_TRANSA, &A.op, sizeof(A.op)), "set TRANSA");
  cublas_check(cublasLtMatmulDescSetAttribute(g.op, CUBLASLT_MATMUL_DESC_TRANSB, &B.op, sizeof(B.op)), "set TRANSB");
  cublas_check(cublasLtMatmulDescSetAttribute(g.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)),
               "set EPILOGUE");
  if (bias) {
    cublas_check(cublasLtMatmulDescSetAttribute(g.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)),
                 "set BIAS_POINTER");
    const std::int32_t bt = bias_type;
    cublas_check(cublasLtMatmulDescSetAttribute(g.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof(bt)),
                 "set BIAS_DATA_TYPE");
  }
  const auto layout = [&](cublasLtMatrixLayout_t& l, const lt_operand& x) {
    cublas_check(cublasLtMatrixLayoutCreate(&l, x.type, x.rows, x.cols, x.ld), "cublasLtMatrixLayoutCreate");
    if (batch > 1) {
      const std::int32_t count = batch;
      cublas_check(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)),
                   "set BATCH_COUNT");
      cublas_check(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &x.batch_stride,
                                                    sizeof(x.batch_stride)),
                   "set STRIDED_BATCH_OFFSET");
    }
  };
  layout(g.a, A);
  layout(g.b, B);
  layout(g.d, D);
  const auto element_bytes = [](cudaDataType_t t) { return t == CUDA_R_64F ? 8 : t == CUDA_R_32F ? 4 : 2; };
  const std::uint32_t align_a = lt_alignment(A.data, A.batch_stride * element_bytes(A.type));
  const std::uint32_t align_b = lt_alignment(B.data, B.batch_stride * element_bytes(B.type));
  const std::uint32_t align_d = lt_alignment(D.data, D.batch_stride * element_bytes(D.type));

  int dev = 0;
  EINLM_CUDA_CHECK(cudaGetDevice(&dev));
  const lt_key key{{dev, static_cast<int>(A.type), static_cast<int>(D.type), static_cast<int>(A.op),
                    static_cast<int>(B.op), static_cast<int>(epilogue), static_cast<int>(bias_type), m, n, k, A.ld,
                    B.ld, D.ld, batch, bias != nullptr, align_a, align_b, align_d, static_cast<int>(compute)}};
  static std::mutex cache_mutex;
  static std::map<lt_key, cublasLtMatmulAlgo_t> cache;
  cublasLtMatmulAlgo_t algo{};
  bool found = false;
  {
    std::lock_guard<std::mutex> lock(cache_mutex);
    const auto it = cache.find(key);
    if (it != cache.end()) {
      algo = it->second;
      found = true;
    }
  }
  if (!found) {
    cublas_check(cublasLtMatmulPreferenceCreate(&g.pref), "cublasLtMatmulPreferenceCreate");
    const std::uint64_t ws = lt_workspace_bytes;
    cublas_check(cublasLtMatmulPreferenceSetAttribute(g.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)),
                 "set MAX_WORKSPACE_BYTES");
    const std::pair<cublasLtMatmulPreferenceAttributes_t, std::uint32_t> aligns[] = {
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_a},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_b},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_d},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_d}};
    for (const auto& [attr, value] : aligns)
      cublas_check(cublasLtMatmulPreferenceSetAttribute(g.pref, attr, &value, sizeof(value)), "set MIN_ALIGNMENT");
    cublasLtMatmulHeuristicResult_t result{};
    int count = 0;
    const cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(handle, g.op, g.a, g.b, g.d, g.d, g.pref, 1, &result, &count);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    if (count == 0) return CUBLAS_STATUS_NOT_SUPPORTED;
    algo = result.algo;
    std::lock_guard<std::mutex> lock(cache_mutex);
    cache.emplace(key, algo);
  }
  auto workspace = stream_buffer<unsigned char>(lt_workspace_bytes, stream);
  cublas_check(cublasLtMatmul(handle, g.op, &alpha, A.data, g.a, B.data, g.b, &beta, D.data, g.d,
                              const_cast<void*>(D.data), g.d, &algo, workspace.data(), lt_workspace_bytes, stream),
               "cublasLtMatmul");
  return CUBLAS_STATUS_SUCCESS;
}

/// The cuBLASLt path: see the file comment.
template <class In, class Out>
void gemm_cublaslt(cudaStream_t stream, matrix_ref<const In> a, matrix_ref<const In> b, const matrix_ref<Out>& c,
                   const epilogue<Out>& ep) {
  using Acc = gemm_acc_t<In>;
  buffer<In, device> a_copy, b_copy;
  if (!lt_ready(a)) a = packed_copy(a, a_copy, stream);
  if (!lt_ready(b)) b = packed_copy(b, b_copy, stream);
  // Column-major: D = C when C's rows are contiguous; otherwise Dᵀ = Cᵀ = Bᵀ·Aᵀ.
  const bool swap = c.row_stride != 1;
  const auto A = swap ? b.transposed() : a;  // m' × k
  const auto B = swap ? a.transposed() : b;  // k × n'
  const index_t m = swap ? c.cols : c.rows, n = swap ? c.rows : c.cols, k = a.cols;
  // One strided batch when every operand has C's batch; a loop when A or B is shared.
  const bool shared = c.batch > 1 && (a.batch == 1 || b.batch == 1);
  const index_t calls = shared ? c.batch : 1;
  const int batch = shared ? 1 : static_cast<int>(c.batch);
  if (c.batch > (index_t{1} << 30)) throw value_error("gemm (cublaslt): batch too large");
  const lt_operand la = lt_describe(A), lb = lt_describe(B);

  // Direct: cuBLASLt writes C and applies what it can.
  constexpr bool out_ok = std::is_same_v<Out, In> || (std::is_same_v<Out, float> && is_half_v<In>);
  const bool bias_ok = ep.bias.empty() || (ep.bias.stride == 1 && (ep.bias_along == bias_axis::columns) == swap);
  const bool act_ok = ep.act == activation::none || ep.act == activation::relu || ep.act == activation::gelu_tanh;
  const matrix_ref<Out> cd = swap ? c.transposed() : c;  // m × n, rows contiguous
  if (out_ok && lt_ready(c) && cd.row_stride == 1 && bias_ok && act_ok && ep.residual.empty()) {
    cublasLtEpilogue_t e = CUBLASLT_EPILOGUE_DEFAULT;
    const bool with_bias = !ep.bias.empty();
    if (ep.act == activation::relu) e = with_bias ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_RELU;
    else if (ep.act == activation::gelu_tanh) e = with_bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU;
    else if (with_bias) e = CUBLASLT_EPILOGUE_BIAS;
    bool ok = true;
    for (index_t call = 0; call < calls && ok; ++call) {
      lt_operand xa = la, xb = lb, xd = lt_describe(cd);
      if (shared) {
        xa.data = A.data + (A.batch == 1 ? 0 : call * A.batch_stride);
        xb.data = B.data + (B.batch == 1 ? 0 : call * B.batch_stride);
        xd.data = cd.data + call * cd.batch_stride;
      }
      ok = lt_matmul<Acc>(stream, xa, xb, xd, static_cast<std::uint64_t>(m), static_cast<std::uint64_t>(n),
                          static_cast<std::uint64_t>(k), batch, static_cast<Acc>(ep.alpha), static_cast<Acc>(ep.beta),
                          e, with_bias ? static_cast<const void*>(ep.bias.data) : nullptr,
                          cuda_type_v<Out>) == CUBLAS_STATUS_SUCCESS;
      if (!ok && call > 0) throw error("gemm (cublaslt): an algorithm vanished between batches");
    }
    if (ok) return;
  }
  // Otherwise: P = alpha·A·B in the accumulator type (column-major m × n), then one fused pass.
  const index_t ldw = (std::max<index_t>(m, 1) + 7) / 8 * 8;  // 16-byte aligned columns
  auto work = stream_buffer<Acc>(static_cast<std::size_t>(c.batch * ldw * n), stream);
  const matrix_ref<Acc> wd(work.data(), c.batch, m, n, ldw * n, 1, ldw);
  for (index_t call = 0; call < calls; ++call) {
    lt_operand xa = la, xb = lb, xd = lt_describe(wd);
    if (shared) {
      xa.data = A.data + (A.batch == 1 ? 0 : call * A.batch_stride);
      xb.data = B.data + (B.batch == 1 ? 0 : call * B.batch_stride);
      xd.data = wd.data + call * wd.batch_stride;
    }
    cublas_check(lt_matmul<Acc>(stream, xa, xb, xd, static_cast<std::uint64_t>(m), static_cast<std::uint64_t>(n),
                                static_cast<std::uint64_t>(k), batch, static_cast<Acc>(ep.alpha), Acc(0),
                                CUBLASLT_EPILOGUE_DEFAULT, nullptr, cuda_type_v<Acc>),
                 "finding an algorithm (cublasLtMatmulAlgoGetHeuristic)");
  }
  const matrix_ref<const Acc> product = swap ? matrix_ref<const Acc>(wd.transposed()) : matrix_ref<const Acc>(wd);
  launch_finish<Acc>(stream, product, c, ep, Acc(1));
}
#endif

}  // namespace detail

/// True when this build can run the cublaslt backend.
inline constexpr bool gemm_has_cublaslt = EINLM_HAS_CUBLASLT != 0;

/// C = epilogue(alpha·A·B + beta·C) on device memory, queued on `stream` (einlm/linalg/gemm.hpp
/// has the contract). Returns without synchronising.
template <class TA, class TB, class Out>
void gemm_cuda(cudaStream_t stream, const matrix_ref<TA>& a_in, const matrix_ref<TB>& b_in, const matrix_ref<Out>& c_in,
               const epilogue<Out>& ep = {}, const gemm_options& options = {}) {
  using In = std::remove_const_t<TA>;
  using Acc = detail::gemm_acc_t<In>;
  const auto [a, b, c] = detail::prepare_gemm(a_in, b_in, c_in, ep);
  if (c.batch == 0 || c.rows == 0 || c.cols == 0) return;
  if (a.cols == 0) return detail::launch_finish<Acc>(stream, matrix_ref<const Acc>{}, c, ep, Acc(0));
  constexpr bool half = is_half_v<In>;
  gemm_backend backend = options.backend;
  if (backend == gemm_backend::blas) throw value_error("gemm: the blas backend runs on host memory only (on the GPU: own, cublaslt)");
  if (backend == gemm_backend::automatic) backend = !half && gemm_has_cublaslt ? gemm_backend::cublaslt : gemm_backend::own;
  if (backend == gemm_backend::cublaslt) {
#if EINLM_HAS_CUBLASLT
    return detail::gemm_cublaslt(stream, a, b, c, ep);
#else
    throw value_error("gemm: the cublaslt backend is not compiled in (link the CMake target einlm::cublaslt, which "
                      "defines EINLM_HAS_CUBLASLT=1)");
#endif
  }
  if constexpr (half) detail::gemm_tc(stream, a, b, c, ep);
  else detail::gemm_simt(stream, a, b, c, ep);
}

/// Grouped GEMM on tensor cores, every group in one launch: for each group g, the rows
/// [group_rows[g], group_rows[g + 1]) of c (M, N) are those rows of a (M, K) times w[g]ᵀ, w (G, N, K)
/// — a mixture-of-experts layer's experts over its tokens grouped by expert, weights stored
/// (out, in). bf16 or fp16 inputs, float accumulation, c float or the input type; K a multiple of 8
/// and 16-byte aligned data (the tensor-core loads). The G + 1 boundaries come twice, on the host
/// (they size the launch: the grid covers the largest group, and a CTA past a smaller group's end
/// returns at once) and on the device (the kernel reads them); they must agree. Returns without
/// synchronising.
template <class In, class Out>
void grouped_gemm_cuda(const tensor<In, dims<2>, device>& a, const tensor<In, dims<3>, device>& w, tensor<Out, dims<2>, device>& c,
                       const std::vector<std::int64_t>& group_rows, const tensor<std::int64_t, dims<1>, device>& group_rows_device,
                       cudaStream_t stream = default_cuda_executor().stream()) {
  static_assert(is_half_v<In>, "grouped_gemm_cuda: the inputs are bf16 or fp16 (tensor cores)");
  static_assert(std::is_same_v<Out, float> || std::is_same_v<Out, In>, "grouped_gemm_cuda: c is float or the input type");
  const index_t M = a.extent(0), K = a.extent(1), G = w.extent(0), N = w.extent(1);
  if (w.extent(2) != K || c.extent(0) != M || c.extent(1) != N)
    throw shape_error(detail::concat("grouped_gemm_cuda: a ", shape_string(a.extents()), ", w ", shape_string(w.extents()), " and c ",
                                     shape_string(c.extents()), " do not fit (a (M, K), w (G, N, K), c (M, N))"));
  if (static_cast<index_t>(group_rows.size()) != G + 1 || group_rows_device.size() != G + 1)
    throw shape_error(detail::concat("grouped_gemm_cuda: ", G, " groups need ", G + 1, " row boundaries, got ", group_rows.size(),
                                     " on the host and ", group_rows_device.size(), " on the device"));
  index_t largest = 0;
  for (index_t g = 0; g < G; ++g) {
    const auto rows = group_rows[static_cast<std::size_t>(g + 1)] - group_rows[static_cast<std::size_t>(g)];
    if (rows < 0 || group_rows.front() != 0)
      throw value_error("grouped_gemm_cuda: the row boundaries must start at 0 and not decrease");
    largest = detail::max_of(largest, static_cast<index_t>(rows));
  }
  if (group_rows.back() != M)
    throw value_error(detail::concat("grouped_gemm_cuda: the row boundaries end at ", group_rows.back(), ", not at a's ", M, " rows"));
  if (K % 8 != 0 || !detail::aligned_16(a.data()) || !detail::aligned_16(w.data()))
    throw value_error(detail::concat("grouped_gemm_cuda: K = ", K, " must be a multiple of 8 and a, w 16-byte aligned"));
  if (M == 0 || N == 0 || G == 0) return;
  const matrix_ref<Out> c_ref(c.data(), M, N);
  detail::tc_args<In, Out> args{a.data(), K, 0, w.data(), K, N * K, largest, N, K, G, detail::epilogue_op<float, Out>(c_ref, epilogue<Out>{}),
                                group_rows_device.data()};
  if (largest == 0) return;
  detail::launch_tc<In, Out, true, true>(args, stream);
}

/// The device overload that gemm(a, b, c, …) on device tensors and views calls.
template <class In, class Out>
void gemm_on(device, const matrix_ref<const In>& a, const matrix_ref<const In>& b, const matrix_ref<Out>& c,
             const epilogue<Out>& ep, const gemm_options& options) {
  const cudaStream_t stream =
      options.stream ? static_cast<cudaStream_t>(options.stream) : default_cuda_executor().stream();
  gemm_cuda(stream, a, b, c, ep, options);
}

}  // namespace einlm
