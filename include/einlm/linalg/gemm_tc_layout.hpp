// einlm/linalg/gemm_tc_layout.hpp — the geometry of the tensor-core GEMM kernel
// (einlm/linalg/gemm_cuda.cuh): tile sizes, the shared-memory swizzle, which elements each cp.async
// chunk carries, the shared-memory address each lane gives ldmatrix, and which output element each
// accumulator register holds.
//
// Host+device constexpr functions with no CUDA in them, so that the CPU tests replay the kernel's
// data movement (tests/linalg/test_gemm_tc_layout.cpp: every swizzle is a bijection without bank
// conflicts, and emulated warps compute the right product through these addresses).
//
// The kernel: a CTA computes a BM×BN tile of C with WARPS_M × WARPS_N warps, each a WM×WN = 64×64
// tile made of MI×NI = 4×8 mma.sync.m16n8k16 tiles (fp32 accumulators). K advances BK = 32 at a
// time through STAGES shared-memory buffers filled by cp.async. Each operand tile is stored as
// the operand is laid out in global memory ("k-major": k contiguous, [rows][BK]; otherwise
// [BK][rows]); ldmatrix (k-major) or ldmatrix.trans (otherwise) turns either into mma fragments.
// Two shapes: tc_tile_128x128 (4 warps; small problems, more CTAs) and tc_tile_128x256 (8 warps;
// half the L2 traffic per flop of A, for problems that fill the GPU).
#pragma once

#include "einlm/core/config.hpp"

namespace einlm::detail::tc {

inline constexpr int BK = 32;      // K per pipeline stage
inline constexpr int STAGES = 4;   // shared-memory pipeline depth
inline constexpr int CHUNK = 8;    // 16-bit elements per 16-byte chunk
inline constexpr int WM = 64, WN = 64;       // warp tile
inline constexpr int MI = WM / 16, NI = WN / 8;  // mma tiles per warp
inline constexpr int GROUP_M = 8;  // CTA raster: GROUP_M row tiles per column sweep

/// Element offset of (row, chunk) in a tile whose rows hold RowElems 16-bit elements (BK = 32:
/// 64-byte rows; 128 or 256: 256- or 512-byte rows). The 16-byte chunks of each row are permuted
/// by an XOR with bits of the row, so that the 8 rows one ldmatrix phase reads (same logical
/// chunk, consecutive rows) land in 8 different 16-byte bank groups.
template <int RowElems>
EINLM_HD constexpr int swizzled(int row, int chunk) {
  constexpr int chunks = RowElems / CHUNK;
  static_assert(chunks == 4 || chunks % 8 == 0, "swizzle defined for 64-byte rows and multiples of 128 bytes");
  const int x = chunks == 4 ? (row >> 1) & 3 : row & 7;
  return row * RowElems + ((chunk ^ x) * CHUNK);
}

/// Where cp.async chunk c (0 ≤ c < Rows·BK/8) of an operand tile goes: the tile coordinates of its
/// first element (mn along M or N, k along K) and its shared-memory element offset. The chunk
/// covers 8 elements along k (k-major) or along mn.
struct chunk_slot {
  int mn, k, offset;
};
template <bool KMajor, int Rows>
EINLM_HD constexpr chunk_slot tile_chunk(int c) {
  if constexpr (KMajor) {
    const int r = c / (BK / CHUNK), ch = c % (BK / CHUNK);
    return {r, ch * CHUNK, swizzled<BK>(r, ch)};
  } else {
    const int r = c / (Rows / CHUNK), ch = c % (Rows / CHUNK);
    return {ch * CHUNK, r, swizzled<Rows>(r, ch)};
  }
}

/// Shared-memory element offset that `lane` gives ldmatrix.x4 for the A fragment of mma tile mi
/// (rows wm + 16·mi …) at k step ks (0 or 16) of a tile with BM rows. Register j of the result is
/// the mma's A register j.
template <bool KMajor, int BM>
EINLM_HD constexpr int a_fragment_offset(int lane, int wm, int mi, int ks) {
  if constexpr (KMajor) {  // [BM][BK]: matrices (rows 0-7 | 8-15) × (k 0-7 | 8-15), non-transposed
    return swizzled<BK>(wm + mi * 16 + (lane & 15), (ks / CHUNK) + (lane >> 4));
  } else {  // [BK][BM]: 8 k-rows of 8 m each, transposed on load
    return swizzled<BM>(ks + (lane & 7) + ((lane >> 4) << 3), (wm + mi * 16 + (((lane >> 3) & 1) << 3)) / CHUNK);
  }
}

/// Shared-memory element offset that `lane` gives ldmatrix.x4 for the B fragments of the mma
/// tiles 2·pair and 2·pair + 1 (columns wn + 16·pair …) at k step ks of a tile with BN columns.
/// Registers 0, 1 are the first tile's B registers, 2, 3 the second's.
template <bool KMajor, int BN>
EINLM_HD constexpr int b_fragment_offset(int lane, int wn, int pair, int ks) {
  if constexpr (KMajor) {  // [BN][BK]: non-transposed
    return swizzled<BK>(wn + pair * 16 + (lane & 7) + ((lane >> 4) << 3), (ks / CHUNK) + ((lane >> 3) & 1));
  } else {  // [BK][BN]: transposed on load
    return swizzled<BN>(ks + (lane & 7) + (((lane >> 3) & 1) << 3), (wn + pair * 16 + ((lane >> 4) << 3)) / CHUNK);
  }
}

/// Row (within the 16×8 mma tile) of accumulator register r (0..3) of `lane`, and its column.
EINLM_HD constexpr int acc_row(int lane, int r) { return (lane >> 2) + (r >= 2 ? 8 : 0); }
EINLM_HD constexpr int acc_col(int lane, int r) { return (lane & 3) * 2 + (r & 1); }

/// The CTA's tile (row tile, column tile) for linear block id `pid`: GROUP_M row tiles are swept
/// column by column, so that concurrently running CTAs share A rows and B columns in L2.
struct tile_coord {
  long long tm, tn;
};
EINLM_HD constexpr tile_coord tile_of(long long pid, long long tiles_m, long long tiles_n) {
  const long long per_group = GROUP_M * tiles_n;
  const long long group = pid / per_group;
  const long long first_m = group * GROUP_M;
  const long long rows = tiles_m - first_m < GROUP_M ? tiles_m - first_m : GROUP_M;
  const long long in_group = pid % per_group;
  return {first_m + in_group % rows, in_group / rows};
}

/// A CTA tile shape and what follows from it.
template <int BM_, int BN_>
struct tile_shape {
  static constexpr int BM = BM_, BN = BN_;
  static constexpr int WARPS_M = BM / WM, WARPS_N = BN / WN, THREADS = 32 * WARPS_M * WARPS_N;
  static constexpr int A_ELEMS = BM * BK, B_ELEMS = BN * BK;   // operand tiles of one stage
  static constexpr int STAGE_BYTES = (A_ELEMS + B_ELEMS) * 2;  // 16-bit elements
  static constexpr int PIPE_BYTES = STAGES * STAGE_BYTES;
  /// The epilogue stages the fp32 accumulator tile through shared memory (reusing the
  /// pipeline's): rows of BN + 8 floats, so that the float2 stores of a warp (8 rows × 4 lanes)
  /// hit distinct banks, and reads along a row are contiguous.
  static constexpr int OUT_PITCH = BN + 8;
  static constexpr int OUT_BYTES = BM * OUT_PITCH * 4;
  static constexpr int SMEM_BYTES = PIPE_BYTES > OUT_BYTES ? PIPE_BYTES : OUT_BYTES;
  static_assert(A_ELEMS / CHUNK % THREADS == 0 && B_ELEMS / CHUNK % THREADS == 0, "whole chunks per thread");
  static_assert(SMEM_BYTES <= 227 * 1024, "fits one Hopper CTA's shared memory");
};

using tile_128x128 = tile_shape<128, 128>;  // 4 warps, 68 KiB of shared memory
using tile_128x256 = tile_shape<128, 256>;  // 8 warps, 132 KiB of shared memory

}  // namespace einlm::detail::tc
