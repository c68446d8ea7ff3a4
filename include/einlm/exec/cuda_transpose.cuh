// einlm/exec/cuda_transpose.cuh — the CUDA executor's strided copies: dst ← src where src is a
// plain strided array (a tensor, a view or a strided rearrangement of one, see
// einlm/exec/transpose.hpp) and dst's last axis is contiguous. nvcc only.
//
//   launch_strided_copy(dst, x, stream, sms)   false (nothing launched) when x is no such copy;
//                                               else one launch of
//   transpose_tiles_kernel<V>   src contiguous along an axis p that is not dst's last (the innermost
//                               axis moves: "a b -> b a", "b c h w -> b h w c"): 64 × 64 tiles of
//                               (p, last axis) through shared memory (rows padded by one element
//                               against bank conflicts); reads coalesced along p, writes along the
//                               last axis; V elements (16 bytes) per global access when the types
//                               agree and every pointer, stride and the two extents allow, one
//                               otherwise. The other axes (batch axes) enumerate the tiles' planes.
//   strided_rows_kernel<V>      src contiguous along dst's last axis too (only outer axes move:
//                               "b h s d -> b s h d"): rows copied V elements (16 bytes) at a time
//                               when alignment allows, one at a time otherwise.
// Template arguments are element types and integers (no pattern strings).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include <cuda_runtime_api.h>

#include "einlm/core/config.hpp"
#include "einlm/core/dtype.hpp"
#include "einlm/core/error.hpp"
#include "einlm/exec/transpose.hpp"
#include "einlm/expr/expression.hpp"

static_assert(EINLM_HAS_CUDA, "einlm/exec/cuda_transpose.cuh must be compiled by nvcc");

namespace einlm::detail {

/// A strided copy's operands: element (idx) of dst is at dst + Σ idx[r]·dst_strides[r], of src at
/// src + Σ idx[r]·src_strides[r]. `planes` holds the extents of the axes the kernel enumerates
/// (1 on the axes it walks itself).
template <class TD, class TS, std::size_t R>
struct strided_copy {
  TD* dst;
  const TS* src;
  index_array<R> dst_strides, src_strides, planes;
  index_t inner;  // extent of the last axis
  index_t along;  // extent of the transposed axis p (transposes only)
  int p;          // src's contiguous axis (transposes), or R − 1

  /// The offsets of plane number `plane` (row-major over `planes`).
  EINLM_DEVICE void plane_offsets(index_t plane, index_t& dst_offset, index_t& src_offset) const {
    dst_offset = 0;
    src_offset = 0;
    for (std::size_t r = R; r-- > 0;) {
      const index_t n = planes[r];
      if (n == 1) continue;
      const index_t i = plane % n;
      plane /= n;
      dst_offset += i * dst_strides[r];
      src_offset += i * src_strides[r];
    }
  }
};

inline constexpr int transpose_tile = 64;
inline constexpr int transpose_threads = 256;

template <int V, class TD, class TS, std::size_t R>
EINLM_KERNEL void __launch_bounds__(transpose_threads) transpose_tiles_kernel(strided_copy<TD, TS, R> c, index_t tiles_along,
                                                                            index_t tiles_inner, index_t units) {
  constexpr int tile = transpose_tile, per_row = tile / V;
  __shared__ TD block[tile][tile + 1];
  const index_t src_col = c.src_strides[R - 1], dst_row = c.dst_strides[static_cast<std::size_t>(c.p)];
  for (index_t u = blockIdx.x; u < units; u += gridDim.x) {
    index_t doff, soff;
    c.plane_offsets(u / (tiles_along * tiles_inner), doff, soff);
    const index_t t = u % (tiles_along * tiles_inner);
    const index_t p0 = (t / tiles_inner) * tile, l0 = (t % tiles_inner) * tile;
    // Read: consecutive threads along p (src's contiguous axis); block[j][i] = src(p0 + i, l0 + j).
    for (int q = static_cast<int>(threadIdx.x); q < tile * per_row; q += transpose_threads) {
      const int j = q / per_row, i = (q % per_row) * V;
      if (p0 + i < c.along && l0 + j < c.inner) {
        const TS* s = c.src + soff + (p0 + i) + (l0 + j) * src_col;
        if constexpr (V > 1) {
          const auto v = *reinterpret_cast<const aligned_block<TS, V>*>(s);
          EINLM_UNROLL
          for (int k = 0; k != V; ++k) block[j][i + k] = v.v[k];
        } else {
          block[j][i] = convert<TD>(*s);
        }
      }
    }
    __syncthreads();
    // Write: consecutive threads along the last axis (dst's contiguous one).
    for (int q = static_cast<int>(threadIdx.x); q < tile * per_row; q += transpose_threads) {
      const int i = q / per_row, j = (q % per_row) * V;
      if (p0 + i < c.along && l0 + j < c.inner) {
        TD* d = c.dst + doff + (p0 + i) * dst_row + (l0 + j);
        if constexpr (V > 1) {
          aligned_block<TD, V> v;
          EINLM_UNROLL
          for (int k = 0; k != V; ++k) v.v[k] = block[j + k][i];
          *reinterpret_cast<aligned_block<TD, V>*>(d) = v;
        } else {
          *d = block[j][i];
        }
      }
    }
    __syncthreads();  // block is reused by the next tile
  }
}

template <int V, class TD, class TS, std::size_t R>
EINLM_KERNEL void strided_rows_kernel(strided_copy<TD, TS, R> c, index_t vectors) {
  const index_t per_row = c.inner / V;
  const index_t step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t w = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; w < vectors; w += step) {
    index_t doff, soff;
    c.plane_offsets(w / per_row, doff, soff);
    const index_t j = (w % per_row) * V;
    if constexpr (V > 1) {
      *reinterpret_cast<aligned_block<TD, V>*>(c.dst + doff + j) =
          *reinterpret_cast<const aligned_block<TS, V>*>(c.src + soff + j);
    } else {
      c.dst[doff + j] = convert<TD>(c.src[soff + j]);
    }
  }
}

/// dst ← x in one launch when x is a plain strided array and dst's last axis is contiguous
/// (see the file comment); false, launching nothing, otherwise.
template <class DstV, class X>
bool launch_strided_copy(const DstV& dst, const X& x, cudaStream_t stream, int multiprocessors) {
  constexpr std::size_t R = DstV::extents_type::rank();
  if constexpr (R < 2 || !strided_source<X>::available) {
    return false;
  } else {
    using TS = typename strided_source<X>::element;
    using TD = typename DstV::value_type;
    strided_copy<TD, TS, R> c{};
    if (!strided_source<X>::get(x, c.src, c.src_strides)) return false;
    c.dst = dst.data();
    c.dst_strides = strides_of(dst.mapping());
    c.planes = to_array(dst.extents());
    c.inner = c.planes[R - 1];
    if (c.dst_strides[R - 1] != 1 && c.inner > 1) return false;
    const int p = x.contiguous_axis();
    const bool rows = p == static_cast<int>(R) - 1 || c.inner == 1;
    if (!rows && (p < 0 || c.src_strides[static_cast<std::size_t>(p)] != 1 || dst.extent(static_cast<std::size_t>(p)) <= 1))
      return false;
    c.p = rows ? static_cast<int>(R) - 1 : p;
    c.along = c.planes[static_cast<std::size_t>(c.p)];
    // 16-byte accesses: same element type, and every address a kernel forms a multiple of V.
    constexpr int V = std::is_same_v<TD, TS> && sizeof(TD) <= 16 ? static_cast<int>(16 / sizeof(TD)) : 1;
    bool vector = V > 1 && reinterpret_cast<std::uintptr_t>(c.dst) % 16 == 0 &&
                  reinterpret_cast<std::uintptr_t>(c.src) % 16 == 0 && c.inner % V == 0 && c.along % V == 0;
    for (std::size_t r = 0; r != R; ++r) {
      if (r == R - 1) continue;
      vector = vector && c.dst_strides[r] % V == 0;
      if (static_cast<int>(r) != c.p) vector = vector && c.src_strides[r] % V == 0;
    }
    if (!rows) vector = vector && c.src_strides[R - 1] % V == 0;
    const index_t max_blocks = static_cast<index_t>(multiprocessors) * 32;
    if (rows) {
      if (!(c.inner == 1 || c.src_strides[R - 1] == 1)) return false;
      c.planes[R - 1] = 1;
      const index_t n = dst.size();
      const int v = vector ? V : 1;
      const auto grid = static_cast<unsigned>(std::max<index_t>(1, std::min((n / v + 255) / 256, max_blocks)));
      if (vector) strided_rows_kernel<V><<<grid, 256, 0, stream>>>(c, n / V);
      else strided_rows_kernel<1><<<grid, 256, 0, stream>>>(c, n);
    } else {
      c.planes[static_cast<std::size_t>(c.p)] = 1;
      c.planes[R - 1] = 1;
      index_t planes = 1;
      for (auto e : c.planes) planes *= e;
      const index_t ta = (c.along + transpose_tile - 1) / transpose_tile, ti = (c.inner + transpose_tile - 1) / transpose_tile;
      const index_t units = planes * ta * ti;
      const auto grid = static_cast<unsigned>(std::max<index_t>(1, std::min(units, max_blocks)));
      if (vector) transpose_tiles_kernel<V><<<grid, transpose_threads, 0, stream>>>(c, ta, ti, units);
      else transpose_tiles_kernel<1><<<grid, transpose_threads, 0, stream>>>(c, ta, ti, units);
    }
    EINLM_CUDA_CHECK(cudaGetLastError());
    return true;
  }
}

}  // namespace einlm::detail
