// einlm/nn/moe_layer_cuda.cuh — the mixture-of-experts layer's forward pass on the GPU, assembled
// from the device pieces of einlm/nn/moe_cuda.cuh and the grouped GEMM. nvcc only; bf16, on the
// default CUDA executor's stream.
//
//   auto p = nn::moe_device_parameters<bf16>::from_host(host_params);  // stacked per expert
//   auto r = nn::moe_forward_cuda(p, x);                               // x (N, D) → r.y (N, D)
//
// Contract: what nn::moe_layer<T>::forward computes (nn/moe.hpp), for inference:
//   logits = x routerᵀ (einsum; rounded to T) → moe_route_cuda (affinities, top_k, gates) →
//   moe_dispatch_cuda (grouping by expert, the capacity ceil(capacity_factor · N · top_k / E) when
//   capacity_factor > 0, else dropless) → moe_permute_cuda → h1 = xs w1ᵀ and h3 = xs w3ᵀ for every
//   expert in one grouped GEMM each → g = silu(h1) ⊙ h3 → out = g w2ᵀ (grouped) →
//   moe_unpermute_cuda (the gate-weighted sum of each token's kept outputs) → plus every shared
//   expert's w2(silu(w1 x) ⊙ w3 x) (einsums over all tokens).
// GEMMs accumulate in float and round to T; the element-wise steps compute in float. The result
// also holds the routing (the slots' experts and gates, the affinities) and the dispatch (kept
// and dropped counts per expert), from which the balance statistics follow. d_model and
// expert_d_ff must be multiples of 8 (the tensor-core loads). It synchronises once, in the
// dispatch. The backward pass is not on the GPU yet.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include <cuda_runtime_api.h>

#include "einlm/core/error.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/expr.hpp"
#include "einlm/linalg/einsum.hpp"
#include "einlm/linalg/gemm_cuda.cuh"
#include "einlm/nn/moe.hpp"
#include "einlm/nn/moe_cuda.cuh"

static_assert(EINLM_HAS_CUDA, "einlm/nn/moe_layer_cuda.cuh must be compiled by nvcc");

namespace einlm::nn {

/// An MoE layer's weights on the device: the routed experts' matrices stacked (expert first), as
/// the grouped GEMM reads them; the shared experts' kept one by one.
template <class T>
struct moe_device_parameters {
  static_assert(std::is_same_v<T, bf16>, "moe_device_parameters: bf16 weights (the grouped GEMM's tensor cores)");
  moe_layer_config config;
  tensor<T, dims<2>, device> router;       // (E, D)
  tensor<T, dims<1>, device> router_bias;  // (E,) sigmoid router only
  tensor<T, dims<3>, device> w1, w3;       // (E, F, D) each
  tensor<T, dims<3>, device> w2;           // (E, D, F)
  std::vector<tensor<T, dims<2>, device>> shared_w1, shared_w2, shared_w3;  // (F, D), (D, F), (F, D) per shared expert

  /// The host layer's weights (any element type), converted to T and copied to the device.
  template <class U>
  static moe_device_parameters from_host(const moe_parameters<U>& p) {
    const auto& c = p.config;
    c.validate();
    const index_t D = c.d_model, E = c.num_experts, F = c.expert_d_ff;
    if (D % 8 != 0 || F % 8 != 0)
      throw config_error(einlm::detail::concat("moe_device_parameters: d_model (", D, ") and expert_d_ff (", F,
                                               ") must be multiples of 8 on the GPU"));
    moe_device_parameters d;
    d.config = c;
    d.router = to_device(tensor<T, dims<2>>(cast<T>(p.router)));  // (E, D)
    if (c.router == router_kind::sigmoid) d.router_bias = to_device(tensor<T, dims<1>>(cast<T>(p.router_bias)));  // (E,)
    tensor<T, dims<3>> w1(E, F, D), w3(E, F, D), w2(E, D, F);  // (E, F, D), (E, F, D), (E, D, F)
    for (index_t e = 0; e < E; ++e) {
      const auto& x = p.experts[static_cast<std::size_t>(e)];
      for (index_t i = 0; i < F * D; ++i) {
        w1.data()[e * F * D + i] = convert<T>(x.w1.data()[i]);
        w3.data()[e * F * D + i] = convert<T>(x.w3.data()[i]);
        w2.data()[e * D * F + i] = convert<T>(x.w2.data()[i]);
      }
    }
    d.w1 = to_device(w1);
    d.w3 = to_device(w3);
    d.w2 = to_device(w2);
    for (const auto& s : p.shared_experts) {
      d.shared_w1.push_back(to_device(tensor<T, dims<2>>(cast<T>(s.w1))));  // (F, D)
      d.shared_w2.push_back(to_device(tensor<T, dims<2>>(cast<T>(s.w2))));  // (D, F)
      d.shared_w3.push_back(to_device(tensor<T, dims<2>>(cast<T>(s.w3))));  // (F, D)
    }
    return d;
  }
};

/// What moe_forward_cuda returns: the output and how the tokens went.
template <class T>
struct moe_forward_device {
  tensor<T, dims<2>, device> y;  // (N, D)
  moe_route_device routing;      // experts, gates, affinities, lse per token
  moe_dispatch_device dispatch;  // grouping, routed and kept counts, dropped slots
};

/// The layer's forward pass on x (N, D) (see the file comment).
template <class T>
moe_forward_device<T> moe_forward_cuda(const moe_device_parameters<T>& p, const tensor<T, dims<2>, device>& x) {
  const cudaStream_t stream = default_cuda_executor().stream();
  const auto& c = p.config;
  const index_t N = x.extent(0), D = c.d_model, E = c.num_experts, K = c.top_k, F = c.expert_d_ff;
  if (x.extent(1) != D)
    throw shape_error(einlm::detail::concat("moe_forward_cuda: x of shape (", N, ", ", x.extent(1), ") does not have d_model = ", D,
                                            " columns"));
  if (N == 0) throw shape_error("moe_forward_cuda: x has no tokens");
  moe_forward_device<T> r;
  const tensor<T, dims<2>, device> logits = einsum<"n d, e d -> n e">(x, p.router);  // (N, E)
  r.routing = moe_route_cuda(logits, K, c.router, c.router == router_kind::sigmoid ? &p.router_bias : nullptr, stream);
  const std::int64_t capacity =
      c.capacity_factor > 0 ? static_cast<std::int64_t>(std::ceil(c.capacity_factor * static_cast<double>(N * K) / static_cast<double>(E)))
                            : 0;
  r.dispatch = moe_dispatch_cuda(r.routing.expert, E, K, capacity, stream);
  const index_t M = r.dispatch.kept_rows();
  const auto xs = moe_permute_cuda(x, r.dispatch, stream);  // (M, D) grouped by expert
  tensor<std::int64_t, dims<1>> bounds(dims<1>(E + 1));     // (E + 1,)
  for (index_t e = 0; e <= E; ++e) bounds(e) = r.dispatch.offset[static_cast<std::size_t>(e)];
  const auto bounds_device = to_device(bounds);             // (E + 1,)
  tensor<T, dims<2>, device> h1(dims<2>(M, F)), h3(dims<2>(M, F)), out(dims<2>(M, D));  // (M, F), (M, F), (M, D)
  if (M > 0) {
    grouped_gemm_cuda(xs, p.w1, h1, r.dispatch.offset, bounds_device, stream);
    grouped_gemm_cuda(xs, p.w3, h3, r.dispatch.offset, bounds_device, stream);
    const tensor<T, dims<2>, device> g = cast<T>(silu(cast<float>(h1)) * cast<float>(h3));  // (M, F)
    grouped_gemm_cuda(g, p.w2, out, r.dispatch.offset, bounds_device, stream);
  }
  r.y = moe_unpermute_cuda(out, r.dispatch, r.routing.gate, stream);  // (N, D)
  for (std::size_t s = 0; s < p.shared_w1.size(); ++s) {
    const tensor<T, dims<2>, device> s1 = einsum<"n d, f d -> n f">(x, p.shared_w1[s]);  // (N, F)
    const tensor<T, dims<2>, device> s3 = einsum<"n d, f d -> n f">(x, p.shared_w3[s]);  // (N, F)
    const tensor<T, dims<2>, device> sg = cast<T>(silu(cast<float>(s1)) * cast<float>(s3));  // (N, F)
    const tensor<T, dims<2>, device> so = einsum<"n f, d f -> n d">(sg, p.shared_w2[s]);  // (N, D)
    r.y = tensor<T, dims<2>, device>(cast<T>(cast<float>(r.y) + cast<float>(so)));      // (N, D)
  }
  // bounds_device and the temporaries are freed on the executor's stream (the caching allocator
  // orders their reuse after the queued work).
  return r;
}

}  // namespace einlm::nn
