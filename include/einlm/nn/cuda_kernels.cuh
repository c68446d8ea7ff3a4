// einlm/nn/cuda_kernels.cuh — fused CUDA kernels of the transformer's bandwidth-bound layers, on
// device tensors, on the default CUDA executor's stream (or a given one). nvcc only.
//
//   auto y = nn::fused_rms_norm(x, gain, eps);                        // x (…, D) → y (…, D)
//   auto [dx, dgain] = nn::fused_rms_norm_backward(x, gain, dy, eps); // (…, D), (D,)
//   auto [loss, dlogits] = nn::fused_cross_entropy_with_grad(logits, targets, z_loss);
//   auto q_rot = nn::fused_rope(q, positions, theta);                 // (…, S, Dh), positions (S,)
//   auto [da, db] = nn::fused_swiglu_backward(a, b, dh);              // h = silu(a) ⊙ b
//
// The same functions as nn::rms_norm, rms_norm_backward, cross_entropy_with_grad, rope,
// rope_backward and swiglu_backward (nn/functional.hpp, nn/backward.hpp), computed in float for
// float and bf16 storage:
//   fused_rms_norm              one warp per row: Σx² over the row, then y = x·rsqrt(mean + eps)·g;
//                               the row is read from DRAM once (the second pass hits L1/L2)
//   fused_rms_norm_backward     one warp per row: r, and Σ dy·g·x, then dx = r·(g·dy − x·r²·Σ/D);
//                               dgain = Σ_rows dy·x·r accumulates per warp in shared memory
//                               (each warp its own slice: no atomics), the warps of a block are
//                               added in order, and a second launch adds the blocks' partial rows
//                               in order — so dgain is the same bits on every run
//   fused_cross_entropy_with_grad
//                               one block per row: an online (max, Σexp) pass over the vocabulary,
//                               then dlogits = (softmax·(1 + 2·z_loss·lse) − onehot) / rows written
//                               in a second pass; the probabilities are never stored. The loss
//                               (a double, as on the host) is summed on the host from each row's
//                               lse and target logit, so the call synchronises its stream.
//   fused_rope / fused_rope_backward
//                               rotary embedding of interleaved pairs at positions (S,): a (S, D/2)
//                               table of cos and sin (angles in double, as on the host), then one
//                               thread per pair; the backward pass rotates by the negative angles
//   fused_swiglu_backward       {da, db} of h = silu(a) ⊙ b in one pass (the forward pass,
//                               silu(a) * b, is one executor launch already)
// Rows are read with 16-byte accesses when the row length is a multiple of 16 / sizeof(T) and
// the pointers are 16-byte aligned, element by element otherwise. Inputs are contiguous device
// tensors (any rank ≥ 1 for x and logits, the last axis the feature or vocabulary axis); a shape
// mismatch is a shape_error naming the function and both shapes, a target outside [0, V) a
// value_error naming its row (checked on the device, reported after the launch).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include <cuda_runtime_api.h>

#include "einlm/core/config.hpp"
#include "einlm/core/dtype.hpp"
#include "einlm/core/error.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/exec/cuda.cuh"

static_assert(EINLM_HAS_CUDA, "einlm/nn/cuda_kernels.cuh must be compiled by nvcc");

namespace einlm::nn {

namespace detail::fused {

constexpr int warp_size = 32;

/// The sum over a warp, in every lane.
EINLM_DEVICE inline float warp_sum(float v) {
  for (int offset = warp_size / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

/// Elements of T in one 16-byte access.
template <class T>
inline constexpr int lanes16 = static_cast<int>(16 / sizeof(T));

/// Loads 16 bytes of T at p (16-byte aligned) as floats.
template <class T>
EINLM_DEVICE inline void load16(const T* p, float (&out)[lanes16<T>]) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int i = 0; i < lanes16<T>; ++i) out[i] = convert<float>(e[i]);
}

/// Stores floats as 16 bytes of T at p (16-byte aligned), rounding each once.
template <class T>
EINLM_DEVICE inline void store16(T* p, const float (&in)[lanes16<T>]) {
  uint4 raw;
  T* e = reinterpret_cast<T*>(&raw);
#pragma unroll
  for (int i = 0; i < lanes16<T>; ++i) e[i] = convert<T>(in[i]);
  *reinterpret_cast<uint4*>(p) = raw;
}

/// Calls f(j, value) for every element of a row of n, lane `lane` of a warp taking its share: 16
/// bytes at a time (Vec) or one element at a time.
template <bool Vec, class T, class F>
EINLM_DEVICE inline void for_row(const T* row, index_t n, int lane, F&& f) {
  if constexpr (Vec) {
    constexpr int L = lanes16<T>;
    for (index_t j = static_cast<index_t>(lane) * L; j < n; j += warp_size * L) {
      float v[L];
      load16(row + j, v);
#pragma unroll
      for (int k = 0; k < L; ++k) f(j + k, v[k]);
    }
  } else {
    for (index_t j = lane; j < n; j += warp_size) f(j, convert<float>(row[j]));
  }
}

template <class T, bool Vec>
__global__ void rms_norm_forward_kernel(const T* __restrict__ x, const T* __restrict__ gain, T* __restrict__ y,
                                        index_t rows, index_t D, float eps) {
  const int lane = static_cast<int>(threadIdx.x) % warp_size;
  const index_t warps = static_cast<index_t>(blockDim.x / warp_size) * gridDim.x;
  for (index_t row = static_cast<index_t>(blockIdx.x) * (blockDim.x / warp_size) + threadIdx.x / warp_size; row < rows;
       row += warps) {
    const T* xr = x + row * D;
    T* yr = y + row * D;
    float ss = 0;
    for_row<Vec>(xr, D, lane, [&](index_t, float v) { ss += v * v; });
    const float r = rsqrtf(warp_sum(ss) / static_cast<float>(D) + eps);
    if constexpr (Vec) {
      constexpr int L = lanes16<T>;
      for (index_t j = static_cast<index_t>(lane) * L; j < D; j += warp_size * L) {
        float v[L], g[L];
        load16(xr + j, v);
        load16(gain + j, g);
#pragma unroll
        for (int k = 0; k < L; ++k) v[k] = v[k] * r * g[k];
        store16(yr + j, v);
      }
    } else {
      for (index_t j = lane; j < D; j += warp_size)
        yr[j] = convert<T>(convert<float>(xr[j]) * r * convert<float>(gain[j]));
    }
  }
}

/// dx rows, and per block a partial dgain row (partial[block·D + j]) from warp slices in shared
/// memory (warps_per_block × D floats).
template <class T, bool Vec>
__global__ void rms_norm_backward_kernel(const T* __restrict__ x, const T* __restrict__ gain, const T* __restrict__ dy,
                                         T* __restrict__ dx, float* __restrict__ partial, index_t rows, index_t D,
                                         float eps) {
  extern __shared__ float slices[];  // (warps_per_block, D)
  const int lane = static_cast<int>(threadIdx.x) % warp_size;
  const int warp = static_cast<int>(threadIdx.x) / warp_size;
  const int warps_per_block = static_cast<int>(blockDim.x) / warp_size;
  float* mine = slices + static_cast<index_t>(warp) * D;
  for (index_t j = lane; j < D; j += warp_size) mine[j] = 0;
  __syncwarp();  // the 16-byte path gives the lanes other columns than the zeroing did
  const index_t warps = static_cast<index_t>(warps_per_block) * gridDim.x;
  for (index_t row = static_cast<index_t>(blockIdx.x) * warps_per_block + warp; row < rows; row += warps) {
    const T* xr = x + row * D;
    const T* dyr = dy + row * D;
    T* dxr = dx + row * D;
    float ss = 0, dot = 0;
    if constexpr (Vec) {
      constexpr int L = lanes16<T>;
      for (index_t j = static_cast<index_t>(lane) * L; j < D; j += warp_size * L) {
        float v[L], g[L], d[L];
        load16(xr + j, v);
        load16(gain + j, g);
        load16(dyr + j, d);
#pragma unroll
        for (int k = 0; k < L; ++k) {
          ss += v[k] * v[k];
          dot += d[k] * g[k] * v[k];
        }
      }
    } else {
      for (index_t j = lane; j < D; j += warp_size) {
        const float v = convert<float>(xr[j]), d = convert<float>(dyr[j]);
        ss += v * v;
        dot += d * convert<float>(gain[j]) * v;
      }
    }
    const float inv_d = 1.0f / static_cast<float>(D);
    const float r = rsqrtf(warp_sum(ss) * inv_d + eps);
    const float c = r * r * warp_sum(dot) * inv_d;
    // The slice columns a lane touches are the same in every row: no two lanes share one.
    if constexpr (Vec) {
      constexpr int L = lanes16<T>;
      for (index_t j = static_cast<index_t>(lane) * L; j < D; j += warp_size * L) {
        float v[L], g[L], d[L], out[L];
        load16(xr + j, v);
        load16(gain + j, g);
        load16(dyr + j, d);
#pragma unroll
        for (int k = 0; k < L; ++k) {
          out[k] = r * (g[k] * d[k] - v[k] * c);
          mine[j + k] += d[k] * v[k] * r;
        }
        store16(dxr + j, out);
      }
    } else {
      for (index_t j = lane; j < D; j += warp_size) {
        const float v = convert<float>(xr[j]), d = convert<float>(dyr[j]), g = convert<float>(gain[j]);
        dxr[j] = convert<T>(r * (g * d - v * c));
        mine[j] += d * v * r;
      }
    }
  }
  __syncthreads();
  for (index_t j = threadIdx.x; j < D; j += blockDim.x) {
    float s = 0;
    for (int w = 0; w < warps_per_block; ++w) s += slices[static_cast<index_t>(w) * D + j];
    partial[static_cast<index_t>(blockIdx.x) * D + j] = s;
  }
}

/// dgain[j] = Σ_b partial[b·D + j], in block order.
template <class T>
__global__ void sum_partials_kernel(const float* __restrict__ partial, T* __restrict__ dgain, index_t blocks, index_t D) {
  const index_t j = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= D) return;
  float s = 0;
  for (index_t b = 0; b < blocks; ++b) s += partial[b * D + j];
  dgain[j] = convert<T>(s);
}

/// (max, Σ exp(v − max)) pairs combined; an empty side (max −∞) contributes nothing.
struct max_sum {
  float m, s;
};
EINLM_DEVICE inline max_sum combine(max_sum a, max_sum b) {
  if (a.m == -INFINITY) return b;
  if (b.m == -INFINITY) return a;
  const float m = fmaxf(a.m, b.m);
  return {m, a.s * __expf(a.m - m) + b.s * __expf(b.m - m)};
}

constexpr int ce_threads = 256;

/// One block per row (grid-stride): lse[row] and target_logit[row], and the row of dlogits.
template <class T, bool Vec>
__global__ void cross_entropy_kernel(const T* __restrict__ logits, const std::int64_t* __restrict__ targets,
                                     T* __restrict__ dlogits, float* __restrict__ lse_out,
                                     float* __restrict__ target_logit, unsigned long long* __restrict__ bad_row,
                                     index_t rows, index_t V, float inv_rows, float two_z) {
  __shared__ max_sum parts[ce_threads / warp_size];
  __shared__ float row_lse;
  const int lane = static_cast<int>(threadIdx.x) % warp_size;
  const int warp = static_cast<int>(threadIdx.x) / warp_size;
  for (index_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* lr = logits + row * V;
    T* dr = dlogits + row * V;
    max_sum acc{-INFINITY, 0.0f};
    auto add = [&](float v) {
      if (v > acc.m) {
        acc.s = acc.s * __expf(acc.m - v) + 1.0f;  // exp(−∞) = 0 on the first element
        acc.m = v;
      } else {
        acc.s += __expf(v - acc.m);
      }
    };
    if constexpr (Vec) {
      constexpr int L = lanes16<T>;
      for (index_t j = static_cast<index_t>(threadIdx.x) * L; j < V; j += ce_threads * L) {
        float v[L];
        load16(lr + j, v);
#pragma unroll
        for (int k = 0; k < L; ++k) add(v[k]);
      }
    } else {
      for (index_t j = threadIdx.x; j < V; j += ce_threads) add(convert<float>(lr[j]));
    }
    for (int offset = warp_size / 2; offset > 0; offset /= 2) {
      const max_sum other{__shfl_xor_sync(0xffffffffu, acc.m, offset), __shfl_xor_sync(0xffffffffu, acc.s, offset)};
      acc = combine(acc, other);
    }
    if (lane == 0) parts[warp] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
      max_sum all = parts[0];
      for (int w = 1; w < ce_threads / warp_size; ++w) all = combine(all, parts[w]);
      row_lse = all.m + logf(all.s);
      const std::int64_t t = targets[row];
      lse_out[row] = row_lse;
      if (t < 0 || t >= V) {
        atomicMin(bad_row, static_cast<unsigned long long>(row));
        target_logit[row] = 0;
      } else {
        target_logit[row] = convert<float>(lr[t]);
      }
    }
    __syncthreads();
    const float lse = row_lse;
    const float scale = (1.0f + two_z * lse) * inv_rows;
    const std::int64_t t = targets[row];
    if constexpr (Vec) {
      constexpr int L = lanes16<T>;
      for (index_t j = static_cast<index_t>(threadIdx.x) * L; j < V; j += ce_threads * L) {
        float v[L];
        load16(lr + j, v);
#pragma unroll
        for (int k = 0; k < L; ++k) v[k] = __expf(v[k] - lse) * scale - (j + k == t ? inv_rows : 0.0f);
        store16(dr + j, v);
      }
    } else {
      for (index_t j = threadIdx.x; j < V; j += ce_threads)
        dr[j] = convert<T>(__expf(convert<float>(lr[j]) - lse) * scale - (j == t ? inv_rows : 0.0f));
    }
    __syncthreads();  // parts and row_lse are reused by the next row
  }
}

/// table[s·half + k] = (cos, sin)(±positions[s] · theta^(−2k/D)), the angle in double.
static __global__ void rope_table_kernel(const std::int64_t* __restrict__ positions, float2* __restrict__ table, index_t S,
                                  index_t half, double theta, double sign) {
  const index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= S * half) return;
  const index_t s = i / half, k = i % half;
  const double angle = sign * static_cast<double>(positions[s]) *
                       ::pow(theta, -2.0 * static_cast<double>(k) / static_cast<double>(2 * half));
  double sn = 0, cs = 0;
  ::sincos(angle, &sn, &cs);
  table[i] = make_float2(static_cast<float>(cs), static_cast<float>(sn));
}

/// out pair (a, b) of row r at sequence position r % S: (a·c − b·s, a·s + b·c).
template <class T>
__global__ void rope_kernel(const T* __restrict__ x, const float2* __restrict__ table, T* __restrict__ out, index_t pairs,
                            index_t S, index_t half) {
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < pairs;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t row = i / half, k = i % half;
    const float2 cs = table[(row % S) * half + k];
    const float a = convert<float>(x[2 * i]), b = convert<float>(x[2 * i + 1]);
    out[2 * i] = convert<T>(a * cs.x - b * cs.y);
    out[2 * i + 1] = convert<T>(a * cs.y + b * cs.x);
  }
}

/// da = dh·b·σ(a)(1 + a(1 − σ(a))), db = dh·silu(a), element by element.
template <class T>
__global__ void swiglu_backward_kernel(const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ dh,
                                       T* __restrict__ da, T* __restrict__ db, index_t n) {
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const float av = convert<float>(a[i]), bv = convert<float>(b[i]), d = convert<float>(dh[i]);
    const float sig = 1.0f / (1.0f + __expf(-av));
    da[i] = convert<T>(d * bv * sig * (1.0f + av * (1.0f - sig)));
    db[i] = convert<T>(d * av * sig);
  }
}

/// Blocks of 256 threads for n independent items: enough to fill the device, at most one per 256.
inline unsigned elementwise_blocks(index_t n) {
  return static_cast<unsigned>(std::max<index_t>(1, std::min<index_t>((n + 255) / 256, index_t{32} * einlm::detail::multiprocessor_count())));
}

inline bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

template <class T>
constexpr void check_storage() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, bf16>, "einlm fused kernels: storage is float or bf16");
}

template <class E>
index_t last_extent(const E& e) {
  return E::rank() == 0 ? 1 : e.extent(E::rank() - 1);
}

/// The feature length D of x (…, D), after checking that the gain (D,) matches it.
template <class T, class E>
index_t checked_features(const char* who, const tensor<T, E, device>& x, const tensor<T, dims<1>, device>& gain) {
  static_assert(E::rank() >= 1, "einlm fused RMSNorm: x needs a feature axis (…, D)");
  const index_t D = last_extent(x.extents());
  if (gain.extent(0) != D)
    throw shape_error(einlm::detail::concat(who, ": gain of shape ", shape_string(gain.extents()), " does not match x of shape ",
                                            shape_string(x.extents())));
  return D;
}

}  // namespace detail::fused

/// The gradients of fused_rms_norm.
template <class T, class E>
struct fused_rms_norm_grads {
  tensor<T, E, device> dx;       // (…, D)
  tensor<T, dims<1>, device> dgain;  // (D,)
};

/// The loss and the gradient of fused_cross_entropy_with_grad.
template <class T, class E>
struct fused_loss_with_grad {
  double loss;
  tensor<T, E, device> dlogits;  // (…, V)
};

/// RMSNorm over the last axis of a device tensor: x·rsqrt(mean(x²) + eps)·gain, in float.
template <class T, class E>
tensor<T, E, device> fused_rms_norm(const tensor<T, E, device>& x, const tensor<T, dims<1>, device>& gain, double eps = 1e-5,
                                    cudaStream_t stream = default_cuda_executor().stream()) {
  detail::fused::check_storage<T>();
  const index_t D = detail::fused::checked_features("fused_rms_norm", x, gain);
  tensor<T, E, device> y(x.extents());  // (…, D)
  const index_t rows = D == 0 ? 0 : x.size() / D;
  if (rows == 0) return y;
  constexpr int threads = 256, warps = threads / detail::fused::warp_size;
  const index_t blocks = std::min<index_t>((rows + warps - 1) / warps, index_t{8} * einlm::detail::multiprocessor_count());
  const bool vec = D % detail::fused::lanes16<T> == 0 && detail::fused::aligned16(x.data()) &&
                   detail::fused::aligned16(gain.data()) && detail::fused::aligned16(y.data());
  const auto f = static_cast<float>(eps);
  if (vec)
    detail::fused::rms_norm_forward_kernel<T, true><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(x.data(), gain.data(), y.data(), rows, D, f);
  else
    detail::fused::rms_norm_forward_kernel<T, false><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(x.data(), gain.data(), y.data(), rows, D, f);
  EINLM_CUDA_CHECK(cudaGetLastError());
  return y;
}

/// The gradients of fused_rms_norm (the same as nn::rms_norm_backward), dgain bit-reproducible.
template <class T, class E>
fused_rms_norm_grads<T, E> fused_rms_norm_backward(const tensor<T, E, device>& x, const tensor<T, dims<1>, device>& gain,
                                                   const tensor<T, E, device>& dy, double eps = 1e-5,
                                                   cudaStream_t stream = default_cuda_executor().stream()) {
  detail::fused::check_storage<T>();
  const index_t D = detail::fused::checked_features("fused_rms_norm_backward", x, gain);
  if (to_array(dy.extents()) != to_array(x.extents()))
    throw shape_error(einlm::detail::concat("fused_rms_norm_backward: dy of shape ", shape_string(dy.extents()),
                                            " does not match x of shape ", shape_string(x.extents())));
  fused_rms_norm_grads<T, E> g{tensor<T, E, device>(x.extents()), tensor<T, dims<1>, device>(dims<1>(D))};
  const index_t rows = D == 0 ? 0 : x.size() / D;
  if (D == 0) return g;
  if (rows == 0) {
    EINLM_CUDA_CHECK(cudaMemsetAsync(g.dgain.data(), 0, g.dgain.bytes(), stream));
    return g;
  }
  // Warps per block: as many slices of D floats as fit in 48 KiB, 1 to 8; one slice beyond that
  // (opting in to more shared memory, up to what the device allows).
  const std::size_t slice = static_cast<std::size_t>(D) * sizeof(float);
  const int warps = static_cast<int>(std::clamp<std::size_t>((48u << 10) / slice, 1, 8));
  const std::size_t shared = slice * static_cast<std::size_t>(warps);
  const bool vec = D % detail::fused::lanes16<T> == 0 && detail::fused::aligned16(x.data()) &&
                   detail::fused::aligned16(gain.data()) && detail::fused::aligned16(dy.data()) &&
                   detail::fused::aligned16(g.dx.data());
  auto kernel = vec ? detail::fused::rms_norm_backward_kernel<T, true> : detail::fused::rms_norm_backward_kernel<T, false>;
  if (shared > (48u << 10)) {
    int dev = 0, limit = 0;
    EINLM_CUDA_CHECK(cudaGetDevice(&dev));
    EINLM_CUDA_CHECK(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    if (shared > static_cast<std::size_t>(limit))
      throw value_error(einlm::detail::concat("fused_rms_norm_backward: a row of ", D, " features needs ", shared,
                                              " bytes of shared memory; the device allows ", limit));
    EINLM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared)));
  }
  const index_t blocks = std::min<index_t>((rows + warps - 1) / warps, index_t{2} * einlm::detail::multiprocessor_count());
  tensor<float, dims<2>, device> partial(dims<2>(blocks, D));  // (blocks, D)
  kernel<<<static_cast<unsigned>(blocks), static_cast<unsigned>(warps * detail::fused::warp_size), shared, stream>>>(
      x.data(), gain.data(), dy.data(), g.dx.data(), partial.data(), rows, D, static_cast<float>(eps));
  EINLM_CUDA_CHECK(cudaGetLastError());
  detail::fused::sum_partials_kernel<T><<<static_cast<unsigned>((D + 255) / 256), 256, 0, stream>>>(partial.data(), g.dgain.data(),
                                                                                                  blocks, D);
  EINLM_CUDA_CHECK(cudaGetLastError());
  EINLM_CUDA_CHECK(cudaStreamSynchronize(stream));  // `partial` is released on return
  return g;
}

namespace detail::fused {

template <class T, class E>
tensor<T, E, device> rope(const char* who, const tensor<T, E, device>& x, const tensor<std::int64_t, dims<1>, device>& positions,
                          double theta, double sign, cudaStream_t stream) {
  check_storage<T>();
  static_assert(E::rank() >= 2, "fused_rope: x needs a sequence and a feature axis (…, S, D)");
  const index_t D = x.extent(E::rank() - 1), S = x.extent(E::rank() - 2);
  if (D % 2 != 0) throw shape_error(einlm::detail::concat(who, ": the feature axis must be even, got ", D));
  if (positions.extent(0) != S)
    throw shape_error(einlm::detail::concat(who, ": positions of shape ", shape_string(positions.extents()),
                                            " do not match x of shape ", shape_string(x.extents())));
  tensor<T, E, device> out(x.extents());  // (…, S, D)
  const index_t half = D / 2, pairs = x.size() / 2;
  if (pairs == 0) return out;
  tensor<float, dims<2>, device> table(dims<2>(S, D));  // (S, D/2) (cos, sin) pairs
  auto* t2 = reinterpret_cast<float2*>(table.data());
  rope_table_kernel<<<static_cast<unsigned>((S * half + 255) / 256), 256, 0, stream>>>(positions.data(), t2, S, half, theta, sign);
  EINLM_CUDA_CHECK(cudaGetLastError());
  rope_kernel<T><<<elementwise_blocks(pairs), 256, 0, stream>>>(x.data(), t2, out.data(), pairs, S, half);
  EINLM_CUDA_CHECK(cudaGetLastError());
  EINLM_CUDA_CHECK(cudaStreamSynchronize(stream));  // `table` is released on return
  return out;
}

}  // namespace detail::fused

/// Rotary position embedding of interleaved pairs of x (…, S, D) at positions (S,) — nn::rope.
template <class T, class E>
tensor<T, E, device> fused_rope(const tensor<T, E, device>& x, const tensor<std::int64_t, dims<1>, device>& positions,
                                double theta, cudaStream_t stream = default_cuda_executor().stream()) {
  return detail::fused::rope("fused_rope", x, positions, theta, 1.0, stream);
}

/// The gradient of fused_rope: dy rotated by the negative angles — nn::rope_backward.
template <class T, class E>
tensor<T, E, device> fused_rope_backward(const tensor<T, E, device>& dy, const tensor<std::int64_t, dims<1>, device>& positions,
                                         double theta, cudaStream_t stream = default_cuda_executor().stream()) {
  return detail::fused::rope("fused_rope_backward", dy, positions, theta, -1.0, stream);
}

/// The gradients of h = silu(a) ⊙ b.
template <class T, class E>
struct fused_swiglu_grads {
  tensor<T, E, device> da;  // (…, F)
  tensor<T, E, device> db;  // (…, F)
};

/// {da, db} of h = silu(a) ⊙ b in one pass — nn::swiglu_backward.
template <class T, class E>
fused_swiglu_grads<T, E> fused_swiglu_backward(const tensor<T, E, device>& a, const tensor<T, E, device>& b,
                                               const tensor<T, E, device>& dh,
                                               cudaStream_t stream = default_cuda_executor().stream()) {
  detail::fused::check_storage<T>();
  for (const auto* other : {&b, &dh})
    if (to_array(other->extents()) != to_array(a.extents()))
      throw shape_error(einlm::detail::concat("fused_swiglu_backward: a of shape ", shape_string(a.extents()), " does not match ",
                                              other == &b ? "b" : "dh", " of shape ", shape_string(other->extents())));
  fused_swiglu_grads<T, E> g{tensor<T, E, device>(a.extents()), tensor<T, E, device>(a.extents())};
  const index_t n = a.size();
  if (n == 0) return g;
  detail::fused::swiglu_backward_kernel<T><<<detail::fused::elementwise_blocks(n), 256, 0, stream>>>(
      a.data(), b.data(), dh.data(), g.da.data(), g.db.data(), n);
  EINLM_CUDA_CHECK(cudaGetLastError());
  return g;
}

/// Mean cross-entropy of logits (…, V) against targets (…) plus z_loss · mean(lse²), and its
/// gradient (the same as nn::cross_entropy_with_grad), on the device; synchronises the stream.
template <class T, class E, class EY>
fused_loss_with_grad<T, E> fused_cross_entropy_with_grad(const tensor<T, E, device>& logits,
                                                         const tensor<std::int64_t, EY, device>& targets, double z_loss = 0.0,
                                                         cudaStream_t stream = default_cuda_executor().stream()) {
  detail::fused::check_storage<T>();
  static_assert(E::rank() == EY::rank() + 1, "fused_cross_entropy_with_grad: logits need one more axis (the vocabulary) than targets");
  for (std::size_t r = 0; r < EY::rank(); ++r)
    if (logits.extent(r) != targets.extent(r))
      throw shape_error(einlm::detail::concat("fused_cross_entropy_with_grad: logits of shape ", shape_string(logits.extents()),
                                              " do not match targets of shape ", shape_string(targets.extents())));
  const index_t V = detail::fused::last_extent(logits.extents());
  const index_t rows = targets.size();
  fused_loss_with_grad<T, E> out{0.0, tensor<T, E, device>(logits.extents())};
  if (rows == 0 || V == 0) return out;
  tensor<float, dims<2>, device> per_row(dims<2>(2, rows));  // (2, rows): lse, target logit
  tensor<std::int64_t, dims<1>, device> bad(dims<1>(1));  // (1,): the first bad row, all ones when none
  auto* first_bad_row = reinterpret_cast<unsigned long long*>(bad.data());
  EINLM_CUDA_CHECK(cudaMemsetAsync(bad.data(), 0xff, bad.bytes(), stream));
  const bool vec = V % detail::fused::lanes16<T> == 0 && detail::fused::aligned16(logits.data()) &&
                   detail::fused::aligned16(out.dlogits.data());
  const index_t blocks = std::min<index_t>(rows, index_t{16} * einlm::detail::multiprocessor_count());
  const auto inv_rows = static_cast<float>(1.0 / static_cast<double>(rows));
  const auto two_z = static_cast<float>(2.0 * z_loss);
  constexpr int threads = detail::fused::ce_threads;
  if (vec)
    detail::fused::cross_entropy_kernel<T, true><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
        logits.data(), targets.data(), out.dlogits.data(), per_row.data(), per_row.data() + rows, first_bad_row, rows, V,
        inv_rows, two_z);
  else
    detail::fused::cross_entropy_kernel<T, false><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
        logits.data(), targets.data(), out.dlogits.data(), per_row.data(), per_row.data() + rows, first_bad_row, rows, V,
        inv_rows, two_z);
  EINLM_CUDA_CHECK(cudaGetLastError());
  std::vector<float> host(static_cast<std::size_t>(2 * rows));
  unsigned long long first_bad = 0;
  EINLM_CUDA_CHECK(cudaMemcpyAsync(host.data(), per_row.data(), per_row.bytes(), cudaMemcpyDeviceToHost, stream));
  EINLM_CUDA_CHECK(cudaMemcpyAsync(&first_bad, bad.data(), sizeof first_bad, cudaMemcpyDeviceToHost, stream));
  EINLM_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (first_bad != ~0ull) {
    std::int64_t target = 0;
    EINLM_CUDA_CHECK(cudaMemcpy(&target, targets.data() + first_bad, sizeof target, cudaMemcpyDeviceToHost));
    throw value_error(einlm::detail::concat("fused_cross_entropy_with_grad: target ", target, " of row ", first_bad,
                                            " is outside the vocabulary [0, ", V, ")"));
  }
  double total = 0, total_sq = 0;
  for (index_t r = 0; r < rows; ++r) {
    const double lse = host[static_cast<std::size_t>(r)];
    total += lse - static_cast<double>(host[static_cast<std::size_t>(rows + r)]);
    total_sq += lse * lse;
  }
  out.loss = (total + z_loss * total_sq) / static_cast<double>(rows);
  return out;
}

}  // namespace einlm::nn
