// examples/cuda_layers.cu — the transformer's bandwidth-bound layers as fused CUDA kernels
// (einlm/nn/cuda_kernels.cuh), causal attention forward and backward (einlm/nn/cuda_attention.cuh), AdamW and SGD steps in one launch each (einlm/optim/adamw_cuda.cuh,
// sgd_cuda.cuh), the MoE router and token permutation (einlm/nn/moe_cuda.cuh) and the experts'
// grouped GEMM (einlm/linalg/gemm_cuda.cuh), each checked
// against the host function on the same bf16 inputs: prints the largest difference and exits 1
// when one exceeds bf16's resolution. Without a CUDA device it says so and exits 0.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include <cuda_runtime_api.h>

#include "einlm/einlm.hpp"
#include "einlm/linalg.hpp"
#include "einlm/nn/backward.hpp"
#include "einlm/nn/cuda_attention.cuh"
#include "einlm/nn/cuda_kernels.cuh"
#include "einlm/nn/functional.hpp"
#include "einlm/nn/moe_cuda.cuh"
#include "einlm/optim/adamw.hpp"
#include "einlm/optim/adamw_cuda.cuh"
#include "einlm/optim/sgd.hpp"
#include "einlm/optim/sgd_cuda.cuh"

using namespace einlm;

namespace {

/// max |device − host| / max(1, |host|).
template <class D, class H>
double worst(const D& device_result, const H& host_result) {
  const auto d = to_host(device_result);
  double w = 0;
  for (index_t i = 0; i < d.size(); ++i) {
    const double h = convert<double>(host_result.data()[i]);
    w = std::max(w, std::abs(convert<double>(d.data()[i]) - h) / std::max(1.0, std::abs(h)));
  }
  return w;
}

}  // namespace

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("cuda_layers: no CUDA device here; nothing to run\n");
    return 0;
  }
  constexpr index_t B = 4, S = 128, D = 256, H = 4, V = 2048;
  // [snippet cuda_layers]
  tensor<bf16, dims<3>> x(B, S, D);  // (B, S, D) the residual stream
  x = normal<bf16>(x.extents(), {1, 0});
  tensor<bf16, dims<1>> gain(D);  // (D,)
  gain = uniform<bf16>(gain.extents(), {1, 1}, 0.5, 1.5);
  const auto x_gpu = to_device(x);       // (B, S, D)
  const auto gain_gpu = to_device(gain);  // (D,)

  const auto normed = nn::fused_rms_norm(x_gpu, gain_gpu, 1e-5);                   // (B, S, D)
  const auto [dx, dgain] = nn::fused_rms_norm_backward(x_gpu, gain_gpu, x_gpu);     // (B, S, D), (D,)
  const auto heads = to_device(tensor<bf16, dims<4>>(rearrange<"b s (h e) -> b h s e">(x, axis_size<"h">{H})));  // (B, H, S, Dh)
  tensor<std::int64_t, dims<1>> positions(S);  // (S,)
  for (index_t s = 0; s < S; ++s) positions(s) = s;
  const auto rotated = nn::fused_rope(heads, to_device(positions), 10'000.0);       // (B, H, S, Dh)
  // [end snippet]

  std::printf("fused_rms_norm           worst relative difference to the host: %.2e\n", worst(normed, nn::rms_norm(x, gain, 1e-5)));
  const auto host_grads = nn::rms_norm_backward(x, gain, x, 1e-5);
  std::printf("fused_rms_norm_backward  dx %.2e, dgain %.2e\n", worst(dx, host_grads.dx), worst(dgain, host_grads.dgain));
  const tensor<bf16, dims<4>> heads_host = rearrange<"b s (h e) -> b h s e">(x, axis_size<"h">{H});  // (B, H, S, Dh)
  const double rope_err = worst(rotated, nn::rope(heads_host, positions, 10'000.0));
  std::printf("fused_rope               %.2e\n", rope_err);

  // Causal attention of the heads with themselves as q, k and v: forward, then backward of a
  // gradient equal to the output, against the host's blocked attention.
  // [snippet fused_attention]
  const auto attn = nn::fused_attention_forward(rotated, heads, heads);  // .out (B, H, S, Dh), .lse (B, H, S)
  const auto attn_grads =
      nn::fused_attention_backward(rotated, heads, heads, attn.out, attn.lse, attn.out);  // .dq, .dk, .dv like q, k, v
  // [end snippet]
  const auto rotated_host = to_host(rotated);                                                     // (B, H, S, Dh)
  const auto attn_host = nn::attention_forward(rotated_host, heads_host, heads_host, true);        // (B, H, S, Dh), (B, H, S)
  const auto out_host = to_host(attn.out);                                                        // (B, H, S, Dh)
  const auto attn_grads_host =
      nn::attention_backward(rotated_host, heads_host, heads_host, out_host, to_host(attn.lse), out_host, true);
  const double attn_err = std::max({worst(attn.out, attn_host.out), worst(attn_grads.dq, attn_grads_host.dq),
                                    worst(attn_grads.dk, attn_grads_host.dk), worst(attn_grads.dv, attn_grads_host.dv)});
  std::printf("fused_attention          out %.2e, lse %.2e; backward dq, dk, dv within %.2e\n", worst(attn.out, attn_host.out),
              worst(attn.lse, attn_host.lse), attn_err);

  tensor<bf16, dims<3>> logits(B, S, V);  // (B, S, V)
  logits = normal<bf16>(logits.extents(), {1, 2}, 0.0, 2.0);
  tensor<std::int64_t, dims<2>> targets(B, S);  // (B, S)
  for (index_t i = 0; i < targets.size(); ++i) targets.data()[i] = (i * 131) % V;
  const auto ce = nn::fused_cross_entropy_with_grad(to_device(logits), to_device(targets), 1e-4);
  const auto ce_host = nn::cross_entropy_with_grad(logits, targets, 1e-4);
  std::printf("fused_cross_entropy      loss %.6f (host %.6f), dlogits %.2e\n", ce.loss, ce_host.loss,
              worst(ce.dlogits, ce_host.dlogits));

  // One AdamW step over two parameters, one launch.
  tensor<float, dims<2>> w(D, D);  // (D, D)
  w = normal<float>(w.extents(), {1, 3}, 0.0, 0.05);
  tensor<float, dims<2>> g(D, D);  // (D, D)
  g = normal<float>(g.extents(), {1, 4}, 0.0, 0.01);
  auto w_gpu = to_device(w);
  auto gain_master = to_device(tensor<float, dims<1>>(cast<float>(gain)));  // (D,)
  optim::adamw_cuda opt({.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1});
  opt.begin_step(1e-3);
  opt.update("w", w_gpu, to_device(g));
  opt.update("gain", gain_master, dgain, 0.0);  // a bf16 gradient
  opt.end_step();
  optim::adamw host_opt({.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1});
  host_opt.begin_step(1e-3);
  host_opt.update("w", w, g);
  const double adamw_err = worst(w_gpu, w);
  std::printf("adamw_cuda               %.2e after one step (%llu launch)\n", adamw_err,
              static_cast<unsigned long long>(opt.launches()));

  // SGD with Nesterov momentum, one launch; the same step on the host.
  auto w_sgd = to_device(w);
  optim::sgd_cuda sgd_gpu({.momentum = 0.9, .nesterov = true});
  sgd_gpu.begin_step(1e-2);
  sgd_gpu.update("w", w_sgd, to_device(g));
  sgd_gpu.end_step();
  tensor<float, dims<2>> w_sgd_host = w.clone();  // (D, D)
  optim::sgd sgd_host({.momentum = 0.9, .nesterov = true});
  sgd_host.begin_step(1e-2);
  sgd_host.update("w", w_sgd_host, g);
  const double sgd_err = worst(w_sgd, w_sgd_host);
  std::printf("sgd_cuda (nesterov)      %.2e after one step (%llu launch)\n", sgd_err,
              static_cast<unsigned long long>(sgd_gpu.launches()));

  // The MoE token permutation: each token of the residual stream routed to 2 of 8 experts with
  // gates ½ and ½; unpermuting the permuted rows themselves gives the rows back exactly.
  const index_t tokens = B * S, top_k = 2, experts = 8;
  tensor<std::int32_t, dims<1>> expert(tokens * top_k);  // (N·K,)
  for (index_t s = 0; s < expert.size(); ++s) expert(s) = static_cast<std::int32_t>((s * 5 + s / top_k) % experts);
  tensor<float, dims<1>> half(tokens * top_k);  // (N·K,)
  half = 0.5f;
  const auto rows = to_device(tensor<bf16, dims<2>>(reshape(x, dims<2>(tokens, D))));   // (N, D)
  const auto dispatch = nn::moe_dispatch_cuda(to_device(expert), experts, top_k);
  const auto grouped = nn::moe_permute_cuda(rows, dispatch);                            // (N·K, D) by expert
  const auto back = nn::moe_unpermute_cuda(grouped, dispatch, to_device(half));          // (N, D)
  const double moe_err = worst(back, tensor<bf16, dims<2>>(reshape(x, dims<2>(tokens, D))));
  std::printf("moe permute + unpermute  %.2e (%lld rows in 8 groups)\n", moe_err, static_cast<long long>(dispatch.kept_rows()));
  // The experts' first projection over the grouped rows: one launch for all 8 groups.
  constexpr index_t F = 64;
  tensor<bf16, dims<3>> w_experts(experts, F, D);  // (E, F, D) one (out, in) weight per expert
  w_experts = normal<bf16>(w_experts.extents(), {1, 5}, 0.0, 0.05);
  tensor<std::int64_t, dims<1>> bounds(experts + 1);  // (E + 1,)
  for (index_t e = 0; e <= experts; ++e) bounds(e) = dispatch.offset[static_cast<std::size_t>(e)];
  tensor<float, dims<2>, device> hidden(dispatch.kept_rows(), F);  // (M, F)
  grouped_gemm_cuda(grouped, to_device(w_experts), hidden, dispatch.offset, to_device(bounds));
  const auto grouped_host = to_host(grouped);  // (M, D)
  const auto order_host = to_host(dispatch.order);  // (M,)
  tensor<float, dims<2>> hidden_host(dispatch.kept_rows(), F);  // (M, F)
  for (index_t e = 0; e < experts; ++e)
    for (auto r = dispatch.offset[static_cast<std::size_t>(e)]; r < dispatch.offset[static_cast<std::size_t>(e + 1)]; ++r)
      for (index_t f = 0; f < F; ++f) {
        float acc = 0;
        for (index_t k = 0; k < D; ++k) acc += convert<float>(grouped_host(r, k)) * convert<float>(w_experts(e, f, k));
        hidden_host(r, f) = acc;
      }
  const double grouped_err = worst(hidden, hidden_host);
  std::printf("grouped_gemm_cuda        %.2e (%lld rows, 8 experts, one launch; first row from token %d)\n", grouped_err,
              static_cast<long long>(dispatch.kept_rows()), order_host(0) / static_cast<int>(top_k));

  // The router: logits of the rows against 8 router vectors by einsum, then each token's top-2
  // experts and their renormalised gates, against the host's ranking of the same float logits.
  tensor<bf16, dims<2>> router(experts, D);  // (E, D)
  router = normal<bf16>(router.extents(), {1, 6}, 0.0, 0.05);
  const tensor<bf16, dims<2>, device> router_logits = einsum<"n d, e d -> n e">(rows, to_device(router));  // (N, E)
  const auto route = nn::moe_route_cuda(router_logits, top_k, nn::router_kind::softmax);
  const auto logits_host = to_host(router_logits);  // (N, E)
  const auto chosen = to_host(route.expert);         // (N·K,)
  const auto gates = to_host(route.gate);            // (N·K,)
  index_t route_mismatches = 0;
  double gate_sum_err = 0;
  for (index_t n = 0; n < tokens; ++n) {
    // The host's top-2 by logit (the softmax keeps the order), ties to the lower expert.
    index_t first = 0, second = -1;
    for (index_t e = 1; e < experts; ++e)
      if (convert<float>(logits_host(n, e)) > convert<float>(logits_host(n, first))) first = e;
    for (index_t e = 0; e < experts; ++e)
      if (e != first && (second < 0 || convert<float>(logits_host(n, e)) > convert<float>(logits_host(n, second)))) second = e;
    route_mismatches += chosen(n * top_k) != first || chosen(n * top_k + 1) != second;
    gate_sum_err = std::max(gate_sum_err, std::abs(static_cast<double>(gates(n * top_k) + gates(n * top_k + 1)) - 1.0));
  }
  std::printf("moe_route_cuda           %lld of %lld tokens routed unlike the host; gates sum to 1 within %.1e\n",
              static_cast<long long>(route_mismatches), static_cast<long long>(tokens), gate_sum_err);

  const double limit = 1.0 / 64;  // a few bf16 roundings
  const bool ok = worst(normed, nn::rms_norm(x, gain, 1e-5)) < limit && worst(dx, host_grads.dx) < limit && rope_err < limit &&
                  attn_err < limit && worst(attn.lse, attn_host.lse) < 1e-4 &&
                  std::abs(ce.loss - ce_host.loss) < 1e-4 && adamw_err < 1e-6 &&
                  sgd_err < 1e-6 && moe_err == 0 && grouped_err < 1e-4 && route_mismatches == 0 && gate_sum_err < 1e-6;
  std::printf("%s\n", ok ? "all within bf16 resolution" : "a difference exceeds bf16 resolution");
  return ok ? 0 : 1;
}
