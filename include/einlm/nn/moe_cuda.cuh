// einlm/nn/moe_cuda.cuh — the token permutation of the mixture-of-experts layer on the GPU:
// grouping the routed slots by expert, gathering their rows, and combining the experts' outputs
// back with the gates. nvcc only; device tensors, on the default CUDA executor's stream (or a
// given one).
//
//   auto d = nn::moe_dispatch_cuda(expert, num_experts, top_k, capacity);  // expert (N·K,) int32
//   auto xs = nn::moe_permute_cuda(x, d);           // x (N, D) → (M, D), M kept slots by expert
//   ... expert e computes rows [d.offset[e], d.offset[e + 1]) of xs ...
//   auto y = nn::moe_unpermute_cuda(out, d, gate);   // out (M, D), gate (N·K,) float → y (N, D)
//
//   auto r = nn::moe_route_cuda(logits, top_k, router_kind::softmax);  // logits (N, E) → r.expert, r.gate
//
// moe_route_cuda is the host layer's routing of router logits (N, E) (nn/moe.hpp, detail::route),
// in float, one warp per token: the affinities (softmax p, or sigmoid s for the sigmoid router),
// the row log-sum-exp (the router z-loss's), the top_k experts by affinity (plus the selection
// bias for the sigmoid router), ties to the lower expert index, listed in that ranking, and their
// gates (the softmax router's renormalised over the selected experts when top_k > 1; the sigmoid
// router's always). It launches once and does not synchronise. A token whose logits hold a NaN
// gets expert −1 in the slots it cannot rank (moe_dispatch_cuda then fails with a value_error).
//
// The same grouping as the host layer (nn/moe.hpp, detail::route): slot s = n·K + j is token n's
// j-th choice; the slots are sorted by expert with a stable radix sort (CUB's
// DeviceRadixSort::SortPairs over the expert's bits only), so within an expert they stay in slot
// order; with a capacity C > 0 an expert keeps its first C slots in that order and the rest are
// dropped (capacity 0: dropless). The result holds, on the device, `order` (M,) — the slot of each
// kept row, grouped by expert — and `row_of_slot` (N·K,) — each slot's kept row or −1; on the host,
// `offset` (E + 1) with expert e's rows at [offset[e], offset[e + 1]), and the routed (before
// capacity) and kept counts and the number of dropped slots: the routing statistics of
// nn::moe_stats. moe_dispatch_cuda synchronises its stream once, to read the E + 1 group
// boundaries that size the expert GEMMs.
//
// moe_permute_cuda gathers row order[j] / K of x into row j (one block per row, 16-byte accesses
// when D and the pointers allow). moe_unpermute_cuda computes y_n = Σ_j gate[n·K + j] ·
// out[row_of_slot[n·K + j]] over the kept slots, in slot order, in float (one block per token, no
// atomics: the same bits on every run). x and out are float or bf16; an expert id outside
// [0, E), detected on the device, is a value_error; shapes that do not match are a shape_error
// naming the function.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include <cub/device/device_radix_sort.cuh>
#include <cuda_runtime_api.h>

#include "einlm/core/config.hpp"
#include "einlm/core/dtype.hpp"
#include "einlm/core/error.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/exec/cuda.cuh"
#include "einlm/nn/config.hpp"

static_assert(EINLM_HAS_CUDA, "einlm/nn/moe_cuda.cuh must be compiled by nvcc");

namespace einlm::nn {

/// The grouping of one batch's routed slots by expert (see the file comment).
struct moe_dispatch_device {
  index_t num_tokens = 0, top_k = 0, num_experts = 0;
  tensor<std::int32_t, dims<1>, device> order;        // (M,) the slot of each kept row, grouped by expert
  tensor<std::int32_t, dims<1>, device> row_of_slot;  // (N·K,) each slot's kept row, −1 when dropped
  std::vector<std::int64_t> offset;                   // (E + 1) expert e's rows: [offset[e], offset[e + 1])
  std::vector<std::int64_t> routed_per_expert;        // (E) slots routed to e, before capacity
  std::vector<std::int64_t> tokens_per_expert;        // (E) slots kept for e
  std::int64_t dropped_slots = 0;
  index_t kept_rows() const { return offset.empty() ? 0 : static_cast<index_t>(offset.back()); }
};

/// The routing of one batch's tokens (see the file comment).
struct moe_route_device {
  index_t num_tokens = 0, top_k = 0, num_experts = 0;
  tensor<std::int32_t, dims<1>, device> expert;  // (N·K,) slot n·K + j: token n's j-th expert in the ranking
  tensor<float, dims<1>, device> gate;           // (N·K,) that slot's gate
  tensor<float, dims<2>, device> affinity;       // (N, E) softmax probabilities, or sigmoid scores
  tensor<float, dims<1>, device> lse;            // (N,) logsumexp of each token's logits
};

namespace detail::moe_device {

/// The routing's ranking: (score a, expert ia) before (b, ib) when a > b, or a = b and ia < ib.
__device__ inline bool ranks_before(float a, std::int32_t ia, float b, std::int32_t ib) {
  return a > b || (a == b && ia < ib);
}

/// One warp per token: affinities, lse, the top_k ranked experts and their gates.
template <class T>
__global__ void route_tokens(const T* __restrict__ logits, const T* __restrict__ bias, index_t tokens, std::int32_t E,
                             std::int32_t K, bool sigmoid_router, float* __restrict__ affinity, float* __restrict__ lse,
                             std::int32_t* __restrict__ expert, float* __restrict__ gate) {
  const unsigned full = 0xffffffffu;
  const int lane = static_cast<int>(threadIdx.x % 32);
  const index_t n = static_cast<index_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (n >= tokens) return;  // the whole warp: n is the same for its lanes
  const T* l = logits + n * E;
  float* a = affinity + n * E;
  float m = -INFINITY;
  for (std::int32_t e = lane; e < E; e += 32) m = fmaxf(m, convert<float>(l[e]));
  for (int off = 16; off > 0; off /= 2) m = fmaxf(m, __shfl_xor_sync(full, m, off));
  float sum = 0.0f;
  for (std::int32_t e = lane; e < E; e += 32) sum += expf(convert<float>(l[e]) - m);
  for (int off = 16; off > 0; off /= 2) sum += __shfl_xor_sync(full, sum, off);
  for (std::int32_t e = lane; e < E; e += 32) {
    const float x = convert<float>(l[e]);
    a[e] = sigmoid_router ? 1.0f / (1.0f + expf(-x)) : expf(x - m) / sum;
  }
  if (lane == 0) lse[n] = m + logf(sum);
  // k rounds of a warp arg-max, each over the experts ranked after the previous round's choice.
  float prev_score = INFINITY;
  std::int32_t prev_expert = -1;
  float selected = 0.0f;
  for (std::int32_t j = 0; j < K; ++j) {
    float best = -INFINITY;
    std::int32_t best_expert = 0x7fffffff;
    for (std::int32_t e = lane; e < E; e += 32) {
      const float score = a[e] + (bias ? convert<float>(bias[e]) : 0.0f);
      if (ranks_before(prev_score, prev_expert, score, e) && ranks_before(score, e, best, best_expert)) {
        best = score;
        best_expert = e;
      }
    }
    for (int off = 16; off > 0; off /= 2) {
      const float other = __shfl_xor_sync(full, best, off);
      const std::int32_t other_expert = __shfl_xor_sync(full, best_expert, off);
      if (ranks_before(other, other_expert, best, best_expert)) {
        best = other;
        best_expert = other_expert;
      }
    }
    if (best_expert >= E) {  // no expert left to rank: NaN affinities (a NaN logit)
      if (lane == 0)
        for (std::int32_t i = j; i < K; ++i) {
          expert[n * K + i] = -1;  // moe_dispatch_cuda rejects it
          gate[n * K + i] = NAN;
        }
      return;
    }
    prev_score = best;
    prev_expert = best_expert;
    // Every lane reads the winner's affinity: it was written by its own lane in this warp.
    __syncwarp();
    const float chosen = a[best_expert];
    selected += chosen;
    if (lane == 0) {
      expert[n * K + j] = best_expert;
      gate[n * K + j] = chosen;
    }
  }
  if (lane == 0 && (sigmoid_router || K > 1))
    for (std::int32_t j = 0; j < K; ++j) gate[n * K + j] /= selected;
}

/// values[s] = s; flags a key outside [0, E) in *bad.
static __global__ void init_slots(const std::int32_t* __restrict__ expert, std::int32_t* __restrict__ slots, index_t count,
                           std::int32_t num_experts, int* __restrict__ bad) {
  const index_t s = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (s >= count) return;
  slots[s] = static_cast<std::int32_t>(s);
  if (expert[s] < 0 || expert[s] >= num_experts) *bad = 1;
}

/// bounds[e] = the first sorted position whose expert is ≥ e, for e in [0, E].
static __global__ void group_bounds(const std::int32_t* __restrict__ sorted_expert, index_t count, std::int32_t num_experts,
                             std::int64_t* __restrict__ bounds) {
  const std::int32_t e = static_cast<std::int32_t>(blockIdx.x * blockDim.x + threadIdx.x);
  if (e > num_experts) return;
  index_t lo = 0, hi = count;
  while (lo < hi) {
    const index_t mid = lo + (hi - lo) / 2;
    if (sorted_expert[mid] < e) lo = mid + 1;
    else hi = mid;
  }
  bounds[e] = lo;
}

/// The kept slots of each expert (its first kept[e] in sorted order) into order and row_of_slot.
static __global__ void place_kept(const std::int32_t* __restrict__ sorted_expert, const std::int32_t* __restrict__ sorted_slot,
                           index_t count, const std::int64_t* __restrict__ routed_offset,
                           const std::int64_t* __restrict__ kept_offset, std::int32_t* __restrict__ order,
                           std::int32_t* __restrict__ row_of_slot) {
  const index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  const std::int32_t e = sorted_expert[i];
  const index_t rank = i - routed_offset[e];
  const index_t kept = kept_offset[e + 1] - kept_offset[e];
  const std::int32_t slot = sorted_slot[i];
  if (rank < kept) {
    const auto row = static_cast<std::int32_t>(kept_offset[e] + rank);
    order[row] = slot;
    row_of_slot[slot] = row;
  } else {
    row_of_slot[slot] = -1;
  }
}

/// Row j of out = row order[j] / K of x; one block per row.
template <class T>
__global__ void gather_rows(const T* __restrict__ x, const std::int32_t* __restrict__ order, index_t rows, index_t width,
                            std::int32_t top_k, T* __restrict__ out, bool vector16) {
  const index_t j = blockIdx.x;
  if (j >= rows) return;
  const T* src = x + static_cast<index_t>(order[j] / top_k) * width;
  T* dst = out + j * width;
  if (vector16) {
    constexpr index_t lanes = 16 / sizeof(T);
    for (index_t c = threadIdx.x * lanes; c < width; c += blockDim.x * lanes)
      *reinterpret_cast<uint4*>(dst + c) = *reinterpret_cast<const uint4*>(src + c);
  } else {
    for (index_t c = threadIdx.x; c < width; c += blockDim.x) dst[c] = src[c];
  }
}

/// y_n = Σ_j gate[n·K + j] · out[row_of_slot[n·K + j]] over the kept slots, in slot order; one
/// block per token.
template <class T>
__global__ void combine_rows(const T* __restrict__ out, const std::int32_t* __restrict__ row_of_slot,
                             const float* __restrict__ gate, index_t tokens, index_t width, std::int32_t top_k,
                             T* __restrict__ y) {
  const index_t n = blockIdx.x;
  if (n >= tokens) return;
  for (index_t c = threadIdx.x; c < width; c += blockDim.x) {
    float acc = 0.0f;
    for (std::int32_t j = 0; j < top_k; ++j) {
      const index_t s = n * top_k + j;
      const std::int32_t row = row_of_slot[s];
      if (row >= 0) acc += gate[s] * convert<float>(out[static_cast<index_t>(row) * width + c]);
    }
    y[n * width + c] = convert<T>(acc);
  }
}

inline unsigned blocks_for(index_t count, unsigned threads) {
  return static_cast<unsigned>((count + threads - 1) / threads);
}

}  // namespace detail::moe_device

/// Routes tokens by their router logits (N, E), float or bf16 (see the file comment). The sigmoid
/// router may take a selection bias (E,); without one it is zero.
template <class T>
moe_route_device moe_route_cuda(const tensor<T, dims<2>, device>& logits, index_t top_k, router_kind router,
                                const tensor<T, dims<1>, device>* selection_bias = nullptr,
                                cudaStream_t stream = default_cuda_executor().stream()) {
  const index_t N = logits.extent(0), E = logits.extent(1);
  if (E < 1 || E > (index_t{1} << 30))
    throw shape_error(einlm::detail::concat("moe_route_cuda: logits of shape (", N, ", ", E, ") need 1 to 2^30 experts"));
  if (top_k < 1 || top_k > E)
    throw value_error(einlm::detail::concat("moe_route_cuda: top_k must lie in [1, num_experts = ", E, "], got ", top_k));
  if (selection_bias && router != router_kind::sigmoid)
    throw value_error("moe_route_cuda: the selection bias applies to the sigmoid router only");
  if (selection_bias && selection_bias->extent(0) != E)
    throw shape_error(einlm::detail::concat("moe_route_cuda: a selection bias of shape (", selection_bias->extent(0),
                                            ") for ", E, " experts"));
  moe_route_device r;
  r.num_tokens = N;
  r.top_k = top_k;
  r.num_experts = E;
  r.expert = tensor<std::int32_t, dims<1>, device>(dims<1>(N * top_k));  // (N·K,)
  r.gate = tensor<float, dims<1>, device>(dims<1>(N * top_k));           // (N·K,)
  r.affinity = tensor<float, dims<2>, device>(dims<2>(N, E));            // (N, E)
  r.lse = tensor<float, dims<1>, device>(dims<1>(N));                    // (N,)
  if (N == 0) return r;
  constexpr unsigned threads = 256, tokens_per_block = threads / 32;
  detail::moe_device::route_tokens<T><<<detail::moe_device::blocks_for(N, tokens_per_block), threads, 0, stream>>>(
      logits.data(), selection_bias ? selection_bias->data() : nullptr, N, static_cast<std::int32_t>(E),
      static_cast<std::int32_t>(top_k), router == router_kind::sigmoid, r.affinity.data(), r.lse.data(), r.expert.data(),
      r.gate.data());
  EINLM_CUDA_CHECK(cudaGetLastError());
  return r;
}

/// Groups the N·K routed slots of `expert` (N·K,) by expert (see the file comment); capacity 0 is
/// dropless.
inline moe_dispatch_device moe_dispatch_cuda(const tensor<std::int32_t, dims<1>, device>& expert, index_t num_experts,
                                             index_t top_k, std::int64_t capacity = 0,
                                             cudaStream_t stream = default_cuda_executor().stream()) {
  using namespace detail::moe_device;
  if (num_experts < 1 || num_experts > (index_t{1} << 30) || top_k < 1)
    throw value_error(einlm::detail::concat("moe_dispatch_cuda: needs num_experts ≥ 1 and top_k ≥ 1, got ", num_experts, " and ",
                                            top_k));
  if (capacity < 0) throw value_error(einlm::detail::concat("moe_dispatch_cuda: capacity must be ≥ 0, got ", capacity));
  const index_t slots = expert.size();
  if (slots % top_k != 0)
    throw shape_error(einlm::detail::concat("moe_dispatch_cuda: ", slots, " routed slots are not a whole number of tokens of top_k ",
                                            top_k));
  if (slots > index_t{0x7fffffff}) throw shape_error("moe_dispatch_cuda: more than 2^31 - 1 routed slots");
  moe_dispatch_device d;
  d.num_tokens = slots / top_k;
  d.top_k = top_k;
  d.num_experts = num_experts;
  const auto E = static_cast<std::int32_t>(num_experts);
  const index_t sort_count = std::max<index_t>(slots, 1);
  tensor<std::int32_t, dims<1>, device> slot_in{dims<1>(sort_count)}, slot_out{dims<1>(sort_count)},
      expert_out{dims<1>(sort_count)};                                         // (N·K,) each
  tensor<std::int64_t, dims<1>, device> bounds(dims<1>(num_experts + 1));      // (E + 1,)
  tensor<int, dims<1>, device> bad(dims<1>(1));                                // (1,)
  EINLM_CUDA_CHECK(cudaMemsetAsync(bad.data(), 0, sizeof(int), stream));
  constexpr unsigned threads = 256;
  if (slots > 0) init_slots<<<blocks_for(slots, threads), threads, 0, stream>>>(expert.data(), slot_in.data(), slots, E, bad.data());
  // The stable radix sort over the bits that hold an expert id.
  int end_bit = 1;
  while (end_bit < 31 && (std::int64_t{1} << end_bit) < num_experts) ++end_bit;
  std::size_t temp_bytes = 0;
  EINLM_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, expert.data(), expert_out.data(), slot_in.data(),
                                                   slot_out.data(), static_cast<int>(slots), 0, end_bit, stream));
  tensor<unsigned char, dims<1>, device> temp(dims<1>(static_cast<index_t>(std::max<std::size_t>(temp_bytes, 1))));  // (bytes,)
  EINLM_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.data(), temp_bytes, expert.data(), expert_out.data(), slot_in.data(),
                                                   slot_out.data(), static_cast<int>(slots), 0, end_bit, stream));
  group_bounds<<<blocks_for(num_experts + 1, threads), threads, 0, stream>>>(expert_out.data(), slots, E, bounds.data());
  EINLM_CUDA_CHECK(cudaGetLastError());
  std::vector<std::int64_t> routed_offset(static_cast<std::size_t>(num_experts + 1));
  int bad_host = 0;
  EINLM_CUDA_CHECK(cudaMemcpyAsync(routed_offset.data(), bounds.data(), routed_offset.size() * sizeof(std::int64_t),
                                   cudaMemcpyDeviceToHost, stream));
  EINLM_CUDA_CHECK(cudaMemcpyAsync(&bad_host, bad.data(), sizeof(int), cudaMemcpyDeviceToHost, stream));
  EINLM_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (bad_host)
    throw value_error(einlm::detail::concat("moe_dispatch_cuda: an expert id is outside [0, ", num_experts, ")"));
  // Capacity on the host: E counts.
  d.routed_per_expert.resize(static_cast<std::size_t>(num_experts));
  d.tokens_per_expert.resize(static_cast<std::size_t>(num_experts));
  d.offset.assign(static_cast<std::size_t>(num_experts + 1), 0);
  for (std::size_t e = 0; e < d.routed_per_expert.size(); ++e) {
    const std::int64_t routed = routed_offset[e + 1] - routed_offset[e];
    const std::int64_t kept = capacity > 0 ? std::min(routed, capacity) : routed;
    d.routed_per_expert[e] = routed;
    d.tokens_per_expert[e] = kept;
    d.dropped_slots += routed - kept;
    d.offset[e + 1] = d.offset[e] + kept;
  }
  d.order = tensor<std::int32_t, dims<1>, device>(dims<1>(d.kept_rows()));  // (M,)
  d.row_of_slot = tensor<std::int32_t, dims<1>, device>(dims<1>(slots));    // (N·K,)
  if (slots > 0) {
    // Both offset tables in one upload: routed, then kept.
    std::vector<std::int64_t> tables(routed_offset);
    tables.insert(tables.end(), d.offset.begin(), d.offset.end());
    tensor<std::int64_t, dims<1>, device> device_tables(dims<1>(static_cast<index_t>(tables.size())));  // (2·(E + 1),)
    EINLM_CUDA_CHECK(cudaMemcpyAsync(device_tables.data(), tables.data(), tables.size() * sizeof(std::int64_t),
                                     cudaMemcpyHostToDevice, stream));
    place_kept<<<blocks_for(slots, threads), threads, 0, stream>>>(expert_out.data(), slot_out.data(), slots, device_tables.data(),
                                                                   device_tables.data() + num_experts + 1, d.order.data(),
                                                                   d.row_of_slot.data());
    EINLM_CUDA_CHECK(cudaGetLastError());
    // `tables` and the temporaries must outlive the copy and the kernel that read them.
    EINLM_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
  return d;
}

/// The kept rows of x (N, D) in the dispatch's order: (M, D).
template <class T>
tensor<T, dims<2>, device> moe_permute_cuda(const tensor<T, dims<2>, device>& x, const moe_dispatch_device& d,
                                            cudaStream_t stream = default_cuda_executor().stream()) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, bf16>, "moe_permute_cuda: x is float or bf16");
  if (x.extent(0) != d.num_tokens)
    throw shape_error(einlm::detail::concat("moe_permute_cuda: x has ", x.extent(0), " rows but the dispatch routed ", d.num_tokens,
                                            " tokens"));
  const index_t rows = d.kept_rows(), width = x.extent(1);
  tensor<T, dims<2>, device> out(rows, width);  // (M, D)
  if (rows == 0 || width == 0) return out;
  constexpr index_t lanes = 16 / sizeof(T);
  const bool vector16 = width % lanes == 0 && reinterpret_cast<std::uintptr_t>(x.data()) % 16 == 0 &&
                        reinterpret_cast<std::uintptr_t>(out.data()) % 16 == 0;
  detail::moe_device::gather_rows<T><<<static_cast<unsigned>(rows), 128, 0, stream>>>(x.data(), d.order.data(), rows, width,
                                                                                       static_cast<std::int32_t>(d.top_k), out.data(),
                                                                                       vector16);
  EINLM_CUDA_CHECK(cudaGetLastError());
  return out;
}

/// y (N, D): each token's kept expert outputs out (M, D) weighted by gate (N·K,) and added in slot
/// order.
template <class T>
tensor<T, dims<2>, device> moe_unpermute_cuda(const tensor<T, dims<2>, device>& out, const moe_dispatch_device& d,
                                              const tensor<float, dims<1>, device>& gate,
                                              cudaStream_t stream = default_cuda_executor().stream()) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, bf16>, "moe_unpermute_cuda: out is float or bf16");
  if (out.extent(0) != d.kept_rows())
    throw shape_error(einlm::detail::concat("moe_unpermute_cuda: out has ", out.extent(0), " rows but the dispatch kept ",
                                            d.kept_rows()));
  if (gate.size() != d.num_tokens * d.top_k)
    throw shape_error(einlm::detail::concat("moe_unpermute_cuda: gate has ", gate.size(), " entries for ", d.num_tokens * d.top_k,
                                            " routed slots"));
  const index_t width = out.extent(1);
  tensor<T, dims<2>, device> y(d.num_tokens, width);  // (N, D)
  if (d.num_tokens == 0 || width == 0) return y;
  detail::moe_device::combine_rows<T><<<static_cast<unsigned>(d.num_tokens), 128, 0, stream>>>(
      out.data(), d.row_of_slot.data(), gate.data(), d.num_tokens, width, static_cast<std::int32_t>(d.top_k), y.data());
  EINLM_CUDA_CHECK(cudaGetLastError());
  return y;
}

}  // namespace einlm::nn
