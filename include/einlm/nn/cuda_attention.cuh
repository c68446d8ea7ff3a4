// einlm/nn/cuda_attention.cuh — fused grouped-query attention on the device, forward and
// backward, causal or unmasked (nvcc only):
//
//   auto [out, lse] = nn::fused_attention_forward(q, k, v, causal);        // (B, H, S, Dh), (B, H, S)
//   auto [dq, dk, dv] = nn::fused_attention_backward(q, k, v, out, lse, dout, causal);
//   auto [out, lse] = nn::fused_cached_attention(q, k_cache, v_cache, seq, pos);  // (1, H, N, Dh): decoding
//
// The same functions as nn::attention_forward / attention_backward (nn/backward.hpp) on device
// tensors: q (B, H, S, Dh), k and v (B, Hkv, Sk, Dh) with H a multiple of Hkv, query head h reading
// key head h / (H/Hkv) without k or v being repeated; lse (float) is the row log-sum-exp of the
// scaled, masked scores; the forward takes Sk ≥ S (a KV cache: the queries are the last S
// positions), the backward Sk = S. Storage float or bf16, arithmetic in float, Dh ≤ 256.
// fused_cached_attention is generation's form: N packed query rows of several sequences, each
// attending in place to its own sequence's rows of a (B, Hkv, capacity, Dh) cache up to its
// position.
//
// The kernels are flash-style: no score or probability is ever stored. One warp computes one row,
// its lanes holding the head dimension (lane l: elements l, l + 32, …) and adding their partial
// dot products by shuffles:
//   forward            a warp per query row: one pass over the keys it sees with the online
//                      softmax (nn/attention_rows.hpp, forward_row)
//   backward, first    a warp per query row: δ = dO·O, then dq from P recomputed from lse
//   backward, second   a warp per key row: dk and dv summed over the query heads of its group and
//                      the queries that see it — each gradient row written by one warp, in one
//                      order, so the results are the same bits on every run (no atomics)
// This is the correct-first form: plain FMA on the CUDA cores, k and v rows read by every query
// row from L2. The tensor-core form (tiles of queries and keys in shared memory, mma.sync)
// is the next step; docs/attention.md records where this one stands.
//
// A shape mismatch is a shape_error naming the function and the shapes; a head dimension above 256
// is a value_error.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include <cuda_runtime_api.h>

#include "einlm/core/config.hpp"
#include "einlm/core/dtype.hpp"
#include "einlm/core/error.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/exec/cuda.cuh"
#include "einlm/nn/attention_rows.hpp"

static_assert(EINLM_HAS_CUDA, "einlm/nn/cuda_attention.cuh must be compiled by nvcc");

namespace einlm::nn {

namespace detail::flash {

/// A warp computing one row.
struct warp_team {
  static constexpr int lanes = 32;
  int lane = 0;
  EINLM_DEVICE float sum(float x) const {
    for (int offset = lanes / 2; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
    return x;
  }
};

inline constexpr int warps_per_block = 4;

/// The row a warp computes (whole warps leave together past the last row).
EINLM_DEVICE inline index_t warp_row() {
  return (static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x) / warp_team::lanes;
}

template <int PerLane, class T>
EINLM_KERNEL void forward_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                                 T* __restrict__ out, float* __restrict__ lse, attention_shape n) {
  const index_t row = warp_row();  // (b, h, i)
  if (row >= n.B * n.H * n.S) return;
  const warp_team team{static_cast<int>(threadIdx.x % warp_team::lanes)};
  const index_t i = row % n.S, h = row / n.S % n.H, b = row / n.S / n.H;
  const index_t head = (b * n.G + h / n.group()) * n.Sk * n.D;  // the key head's (Sk, D) rows
  forward_row<warp_team, PerLane>(team, n, q + row * n.D, k + head, v + head, n.visible(i), out + row * n.D, lse + row);
}

/// One warp per (h, r) of N packed query rows (1, H, N, D): row r attends to its sequence seq[r]'s
/// cached keys 0 … pos[r] of the cache (B, G, Sk = capacity, D).
template <int PerLane, class T>
EINLM_KERNEL void cached_forward_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                                        const std::int64_t* __restrict__ seq, const std::int64_t* __restrict__ pos,
                                        T* __restrict__ out, float* __restrict__ lse, attention_shape n) {
  const index_t row = warp_row();  // (h, r)
  if (row >= n.H * n.S) return;
  const warp_team team{static_cast<int>(threadIdx.x % warp_team::lanes)};
  const index_t r = row % n.S, h = row / n.S;
  const index_t head = (seq[r] * n.G + h / n.group()) * n.Sk * n.D;  // the key head's (capacity, D) rows
  forward_row<warp_team, PerLane>(team, n, q + row * n.D, k + head, v + head, pos[r] + 1, out + row * n.D, lse + row);
}

template <int PerLane, class T>
EINLM_KERNEL void backward_query_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                                        const T* __restrict__ o, const T* __restrict__ dout, const float* __restrict__ lse,
                                        T* __restrict__ dq, float* __restrict__ delta, attention_shape n) {
  const index_t row = warp_row();  // (b, h, i)
  if (row >= n.B * n.H * n.S) return;
  const warp_team team{static_cast<int>(threadIdx.x % warp_team::lanes)};
  const index_t i = row % n.S, h = row / n.S % n.H, b = row / n.S / n.H;
  const index_t head = (b * n.G + h / n.group()) * n.Sk * n.D;
  backward_query_row<warp_team, PerLane>(team, n, q + row * n.D, k + head, v + head, o + row * n.D, dout + row * n.D,
                                         lse[row], n.visible(i), dq + row * n.D, delta + row);
}

template <int PerLane, class T>
EINLM_KERNEL void backward_key_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                                      const T* __restrict__ dout, const float* __restrict__ lse,
                                      const float* __restrict__ delta, T* __restrict__ dk, T* __restrict__ dv,
                                      attention_shape n) {
  const index_t row = warp_row();  // (b, g, j)
  if (row >= n.B * n.G * n.Sk) return;
  const warp_team team{static_cast<int>(threadIdx.x % warp_team::lanes)};
  const index_t j = row % n.Sk, g = row / n.Sk % n.G, b = row / n.Sk / n.G;
  const index_t batch_rows = b * n.H * n.S;  // batch b's first (h, i) row
  backward_key_row<warp_team, PerLane>(team, n, q + batch_rows * n.D, dout + batch_rows * n.D, lse + batch_rows,
                                       delta + batch_rows, g, j, k + row * n.D, v + row * n.D, dk + row * n.D,
                                       dv + row * n.D);
}

/// Runs f.template operator()<PerLane>() with the fewest elements per lane that hold D.
template <class F>
void with_per_lane(index_t D, F&& f) {
  if (D <= 32) f.template operator()<1>();
  else if (D <= 64) f.template operator()<2>();
  else if (D <= 128) f.template operator()<4>();
  else f.template operator()<8>();
}

inline unsigned blocks_for_rows(index_t rows) {
  return static_cast<unsigned>((rows + warps_per_block - 1) / warps_per_block);
}

/// The sizes of q (B, H, S, Dh) and keys k (…, Hkv, Sk, Dh), with the scale 1/√Dh.
template <class T, class EQ, class EK>
attention_shape shape_of(const tensor<T, EQ, device>& q, const tensor<T, EK, device>& k, bool causal) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, bf16>, "einlm fused attention: storage is float or bf16");
  static_assert(EQ::rank() == 4 && EK::rank() == 4,
                "einlm fused attention: q, k and v are (batch, heads, sequence or capacity, head_dim)");
  attention_shape n;
  n.B = q.extent(0);
  n.H = q.extent(1);
  n.S = q.extent(2);
  n.D = q.extent(3);
  n.G = k.extent(1);
  n.Sk = k.extent(2);
  n.causal = causal;
  n.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(n.D == 0 ? 1 : n.D)));
  return n;
}

/// What every entry checks last: query heads a multiple of the key heads (shape_error), a head
/// dimension the kernels hold (value_error); shapes() describes the arguments.
template <class Shapes>
void check_heads(const char* who, const attention_shape& n, Shapes&& shapes) {
  if (n.G == 0 ? n.H != 0 : n.H % n.G != 0)
    throw shape_error(einlm::detail::concat(who, ": the query heads must be a multiple of the key/value heads", shapes()));
  if (n.D > max_head_dim)
    throw value_error(einlm::detail::concat(who, ": head dimension ", n.D, " is above the kernels' ", max_head_dim));
}

/// Checks q (B, H, S, Dh), k and v (B, Hkv, Sk, Dh) as nn::attention_forward does and returns the
/// sizes; `same_length`: Sk must equal S (the backward pass).
template <class T, class EQ, class EK, class EV>
attention_shape checked_shape(const char* who, const tensor<T, EQ, device>& q, const tensor<T, EK, device>& k,
                              const tensor<T, EV, device>& v, bool causal, bool same_length) {
  static_assert(EV::rank() == 4, "einlm fused attention: q, k and v are (batch, heads, sequence, head_dim)");
  attention_shape n = shape_of(q, k, causal);
  const auto shapes = [&] {
    return einlm::detail::concat(": q ", shape_string(q.extents()), ", k ", shape_string(k.extents()), ", v ",
                                 shape_string(v.extents()));
  };
  if (to_array(k.extents()) != to_array(v.extents()))
    throw shape_error(einlm::detail::concat(who, ": k and v differ", shapes()));
  if (k.extent(0) != n.B || k.extent(3) != n.D)
    throw shape_error(einlm::detail::concat(who, ": k and v need q's batch and head dimension", shapes()));
  if (same_length ? n.Sk != n.S : n.Sk < n.S)
    throw shape_error(einlm::detail::concat(who, same_length ? ": k and v need q's sequence length" :
                                                               ": k and v need at least q's sequence length", shapes()));
  check_heads(who, n, shapes);
  return n;
}

}  // namespace detail::flash

/// The output and row log-sum-exp of fused_attention_forward.
template <class T, class E>
struct fused_attention_result {
  tensor<T, E, device> out;             // (B, H, S, Dh)
  tensor<float, dims<3>, device> lse;   // (B, H, S)
};

/// The gradients of fused_attention_forward's out.
template <class T, class EQ, class EK, class EV>
struct fused_attention_grads {
  tensor<T, EQ, device> dq;  // (B, H, S, Dh)
  tensor<T, EK, device> dk;  // (B, Hkv, S, Dh)
  tensor<T, EV, device> dv;  // (B, Hkv, S, Dh)
};

/// softmax(q kᵀ/√Dh, causal mask) v and the row log-sum-exp, on the device — nn::attention_forward.
template <class T, class EQ, class EK, class EV>
fused_attention_result<T, EQ> fused_attention_forward(const tensor<T, EQ, device>& q, const tensor<T, EK, device>& k,
                                                      const tensor<T, EV, device>& v, bool causal = true,
                                                      cudaStream_t stream = default_cuda_executor().stream()) {
  const auto n = detail::flash::checked_shape("fused_attention_forward", q, k, v, causal, /*same_length=*/false);
  fused_attention_result<T, EQ> r{tensor<T, EQ, device>(q.extents()),
                                  tensor<float, dims<3>, device>(dims<3>(n.B, n.H, n.S))};
  const index_t rows = n.B * n.H * n.S;
  if (rows == 0) return r;
  detail::flash::with_per_lane(n.D, [&]<int P>() {
    detail::flash::forward_kernel<P, T><<<detail::flash::blocks_for_rows(rows),
                                          detail::flash::warps_per_block * detail::flash::warp_team::lanes, 0, stream>>>(
        q.data(), k.data(), v.data(), r.out.data(), r.lse.data(), n);
  });
  EINLM_CUDA_CHECK(cudaGetLastError());
  return r;
}

/// Attention of N packed query rows q (1, H, N, Dh) over a KV cache k, v (B, Hkv, C, Dh) — the
/// decoding step of generation: row r belongs to sequence seq[r] at position pos[r] and attends
/// to that sequence's cached positions 0 … pos[r] (its own included: the cache must already hold
/// the new rows' keys and values). seq and pos are device arrays of N ids; every pos[r] < C and
/// seq[r] < B is the caller's contract (transformer_lm_cuda checks them on the host). Returns out
/// (1, H, N, Dh) and lse (1, H, N) as fused_attention_forward does; the cache is read in place.
template <class T, class EQ, class EK>
fused_attention_result<T, EQ> fused_cached_attention(const tensor<T, EQ, device>& q, const tensor<T, EK, device>& k_cache,
                                                     const tensor<T, EK, device>& v_cache,
                                                     const tensor<std::int64_t, dims<1>, device>& seq,
                                                     const tensor<std::int64_t, dims<1>, device>& pos,
                                                     cudaStream_t stream = default_cuda_executor().stream()) {
  auto n = detail::flash::shape_of(q, k_cache, /*causal=*/false);  // q (1, H, N, Dh), the cache (B, Hkv, C, Dh)
  const auto shapes = [&] {
    return einlm::detail::concat(": q ", shape_string(q.extents()), ", cache ", shape_string(k_cache.extents()), " and ",
                                 shape_string(v_cache.extents()), ", ", seq.extent(0), " sequence ids, ", pos.extent(0),
                                 " positions");
  };
  if (q.extent(0) != 1 || to_array(k_cache.extents()) != to_array(v_cache.extents()) || k_cache.extent(3) != n.D ||
      seq.extent(0) != n.S || pos.extent(0) != n.S)
    throw shape_error(einlm::detail::concat("fused_cached_attention: q needs one batch of N rows, k and v equal caches of "
                                            "q's head dimension, and N sequence ids and positions",
                                            shapes()));
  detail::flash::check_heads("fused_cached_attention", n, shapes);
  fused_attention_result<T, EQ> r{tensor<T, EQ, device>(q.extents()), tensor<float, dims<3>, device>(dims<3>(1, n.H, n.S))};
  const index_t rows = n.H * n.S;
  if (rows == 0) return r;
  detail::flash::with_per_lane(n.D, [&]<int P>() {
    detail::flash::cached_forward_kernel<P, T><<<detail::flash::blocks_for_rows(rows),
                                                 detail::flash::warps_per_block * detail::flash::warp_team::lanes, 0, stream>>>(
        q.data(), k_cache.data(), v_cache.data(), seq.data(), pos.data(), r.out.data(), r.lse.data(), n);
  });
  EINLM_CUDA_CHECK(cudaGetLastError());
  return r;
}

/// {dq, dk, dv} of fused_attention_forward's out from the saved out and lse — nn::attention_backward.
/// k and v hold q's sequence length.
template <class T, class EQ, class EK, class EV, class EO, class EL, class ED>
fused_attention_grads<T, EQ, EK, EV> fused_attention_backward(const tensor<T, EQ, device>& q, const tensor<T, EK, device>& k,
                                                              const tensor<T, EV, device>& v, const tensor<T, EO, device>& out,
                                                              const tensor<float, EL, device>& lse,
                                                              const tensor<T, ED, device>& dout, bool causal = true,
                                                              cudaStream_t stream = default_cuda_executor().stream()) {
  const char* who = "fused_attention_backward";
  const auto n = detail::flash::checked_shape(who, q, k, v, causal, /*same_length=*/true);
  if (to_array(out.extents()) != to_array(q.extents()))
    throw shape_error(einlm::detail::concat(who, ": out of shape ", shape_string(out.extents()), " does not match q of shape ",
                                            shape_string(q.extents())));
  if (to_array(dout.extents()) != to_array(q.extents()))
    throw shape_error(einlm::detail::concat(who, ": dout of shape ", shape_string(dout.extents()), " does not match q of shape ",
                                            shape_string(q.extents())));
  static_assert(EL::rank() == 3, "fused_attention_backward: lse is (batch, heads, sequence)");
  if (lse.extent(0) != n.B || lse.extent(1) != n.H || lse.extent(2) != n.S)
    throw shape_error(einlm::detail::concat(who, ": lse of shape ", shape_string(lse.extents()), " does not match q of shape ",
                                            shape_string(q.extents())));
  fused_attention_grads<T, EQ, EK, EV> g{tensor<T, EQ, device>(q.extents()), tensor<T, EK, device>(k.extents()),
                                         tensor<T, EV, device>(v.extents())};
  const index_t query_rows = n.B * n.H * n.S, key_rows = n.B * n.G * n.Sk;
  if (query_rows == 0) return g;
  tensor<float, dims<3>, device> delta(dims<3>(n.B, n.H, n.S));  // (B, H, S): dO·O per query row
  constexpr unsigned threads = detail::flash::warps_per_block * detail::flash::warp_team::lanes;
  detail::flash::with_per_lane(n.D, [&]<int P>() {
    detail::flash::backward_query_kernel<P, T><<<detail::flash::blocks_for_rows(query_rows), threads, 0, stream>>>(
        q.data(), k.data(), v.data(), out.data(), dout.data(), lse.data(), g.dq.data(), delta.data(), n);
    detail::flash::backward_key_kernel<P, T><<<detail::flash::blocks_for_rows(key_rows), threads, 0, stream>>>(
        q.data(), k.data(), v.data(), dout.data(), lse.data(), delta.data(), g.dk.data(), g.dv.data(), n);
  });
  EINLM_CUDA_CHECK(cudaGetLastError());
  EINLM_CUDA_CHECK(cudaStreamSynchronize(stream));  // `delta` is released on return
  return g;
}

}  // namespace einlm::nn
