// GPU test of the mixture-of-experts layer's forward pass on the device (einlm/nn/moe_layer_cuda.cuh):
// for both routers, dropless and with a capacity that drops, with a shared expert, the device
// layer's output equals the host layer (nn::moe_layer<float>::forward) run on the same bf16-rounded
// weights and inputs, to bf16's resolution, token by token wherever the two chose the same experts
// (the device rounds the router logits to bf16, so a near-tie may go the other way; at most 2 % of
// the tokens may differ); the kept and dropped counts per expert equal the host's statistics
// where the routings agree everywhere. Exits with 77 (skipped) when no device is present.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "einlm/nn/moe_layer_cuda.cuh"
#include "support/cuda_compare.cuh"

using namespace einlm;

namespace {

/// Every parameter of p uniform in ±scale, rounded to bf16 (so that host and device read the same
/// weights).
void randomise_bf16(nn::moe_parameters<float>& p, std::uint64_t seed, double scale) {
  std::uint64_t stream = 0;
  p.for_each_parameter([&](const std::string&, auto& t) {
    t = tensor<float, std::remove_cvref_t<decltype(t.extents())>>(
        cast<float>(cast<bf16>(uniform<float>(t.extents(), {seed, stream++}, -scale, scale))));
  });
}

void check_layer(const nn::moe_layer_config& c, index_t N) {
  CAPTURE(c.num_experts);
  CAPTURE(c.top_k);
  CAPTURE(c.capacity_factor);
  nn::moe_parameters<float> p(c);
  randomise_bf16(p, 41, 0.2);
  const tensor<float, dims<2>> x(cast<float>(cast<bf16>(uniform<float>(dims<2>(N, c.d_model), {42, 0}, -1.0, 1.0))));  // (N, D)
  nn::moe_stats host_stats;
  const auto want = nn::moe_layer<float>::forward(p, x, 0, &host_stats);  // (N, D)
  const auto dp = nn::moe_device_parameters<bf16>::from_host(p);
  const auto got = nn::moe_forward_cuda(dp, to_device(tensor<bf16, dims<2>>(cast<bf16>(x))));
  const auto y = to_host(got.y);                          // (N, D)
  const auto experts = to_host(got.routing.expert);      // (N·K,)
  // The host's choices, from its own routing of the same tokens (float logits).
  const auto logits = einsum<"n d, e d -> n e">(x, p.router);  // (N, E)
  const index_t E = c.num_experts, K = c.top_k, D = c.d_model;
  index_t differ = 0;
  double worst = 0, scale = 0;
  for (index_t n = 0; n < N; ++n) {
    std::vector<std::pair<double, index_t>> score;
    for (index_t e = 0; e < E; ++e) {
      const double l = logits(n, e);
      const double a = c.router == nn::router_kind::sigmoid ? 1 / (1 + std::exp(-l)) : l;  // the softmax keeps the order
      score.emplace_back(-(a + (c.router == nn::router_kind::sigmoid ? p.router_bias(e) : 0.0)), e);
    }
    std::sort(score.begin(), score.end());
    bool same = true;
    for (index_t j = 0; j < K; ++j) same = same && experts(n * K + j) == score[static_cast<std::size_t>(j)].second;
    if (!same) {
      ++differ;
      continue;
    }
    for (index_t d = 0; d < D; ++d) {
      worst = std::max(worst, std::abs(static_cast<double>(convert<float>(y(n, d))) - want(n, d)));
      scale = std::max(scale, std::abs(static_cast<double>(want(n, d))));
    }
  }
  MESSAGE("device MoE layer: ", differ, " of ", N, " tokens routed otherwise; worst difference ", worst, " of ", scale);
  CHECK(differ <= N / 50);
  CHECK(worst <= scale / 64);  // a few bf16 roundings (logits, hiddens, outputs)
  if (differ == 0) {
    CHECK(got.dispatch.tokens_per_expert == host_stats.tokens_per_expert);
    CHECK(got.dispatch.routed_per_expert == host_stats.routed_per_expert);
  }
  if (c.capacity_factor > 0) CHECK(got.dispatch.dropped_slots > 0);
}

}  // namespace

TEST_CASE("moe_forward_cuda equals the host layer: routers, capacity, shared experts") {
  check_layer({.d_model = 64, .num_experts = 8, .top_k = 2, .expert_d_ff = 96}, 512);  // Mixtral-style, dropless
  check_layer({.d_model = 64, .num_experts = 8, .top_k = 1, .expert_d_ff = 32, .capacity_factor = 0.5}, 512);  // Switch, drops
  check_layer({.d_model = 128, .num_experts = 16, .top_k = 4, .num_shared_experts = 1, .expert_d_ff = 48,
               .router = nn::router_kind::sigmoid}, 300);  // DeepSeek-style: fine-grained, a shared expert
}

TEST_CASE("moe_forward_cuda: errors name the function") {
  nn::moe_parameters<float> p({.d_model = 12, .num_experts = 4, .top_k = 1, .expert_d_ff = 16});
  CHECK_THROWS_WITH_AS(nn::moe_device_parameters<bf16>::from_host(p),
                       "moe_device_parameters: d_model (12) and expert_d_ff (16) must be multiples of 8 on the GPU",
                       nn::config_error);
  nn::moe_parameters<float> q({.d_model = 16, .num_experts = 4, .top_k = 1, .expert_d_ff = 16});
  const auto dq = nn::moe_device_parameters<bf16>::from_host(q);
  tensor<bf16, dims<2>, device> wrong(dims<2>(5, 8));  // (5, 8)
  CHECK_THROWS_WITH_AS(nn::moe_forward_cuda(dq, wrong), "moe_forward_cuda: x of shape (5, 8) does not have d_model = 16 columns",
                       shape_error);
}
