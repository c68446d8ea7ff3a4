// examples/moe_accounting.cpp — what three mixture-of-experts models cost (CS336 lecture 4): a
// Switch-Base-style decoder (128 experts, top-1, every second layer), Mixtral 8×7B and
// DeepSeek-V3 (without its multi-token-prediction module). One comparison table of total and
// active parameters, then nn::moe_report() for each at a batch of one sequence of 4096 tokens
// (Switch: 512); DeepSeek-V3's report includes its published 14.8T training tokens on one H100 at
// 50 % MFU. Everything is computed from the configurations; nothing is allocated or run.
#include <cstdint>
#include <cstdio>
#include <iostream>

#include "einlm/nn/moe_accounting.hpp"

using namespace einlm;

// [snippet compile_time]
// A fine-grained MoE whose shape is a template argument: 64 experts of 1408, top-6, 2 shared,
// the first layer dense. Its budgets are checked when it compiles.
constexpr nn::moe_config my_moe{.base = {.vocab_size = 32'000,
                                         .context_length = 4096,
                                         .d_model = 2048,
                                         .num_layers = 24,
                                         .num_heads = 16,
                                         .num_kv_heads = 4,
                                         .d_ff = 8192},
                                .num_experts = 64,
                                .top_k = 6,
                                .num_shared_experts = 2,
                                .expert_d_ff = 1408,
                                .first_dense_layers = 1};
static_assert(nn::moe_param_count(my_moe) > 10'000'000'000);        // 10B+ stored
static_assert(nn::moe_active_param_count(my_moe) < 2'500'000'000);  // under 2.5B per token
static_assert(nn::moe_flops_per_token(my_moe, 4096) < 6 * 2.5e9);
// [end snippet]

int main() {
  struct named {
    const char* name;
    nn::moe_config config;
    std::int64_t seq;
  };
  const named models[] = {{"Switch-Base-128-style", nn::presets::switch_base(128), 512},
                          {"Mixtral 8x7B", nn::presets::mixtral_8x7b(), 4096},
                          {"DeepSeek-V3", nn::presets::deepseek_v3(), 4096},
                          {"my_moe", my_moe, 4096}};

  std::printf("%-22s %10s %10s %8s %14s %16s\n", "model", "params", "active", "active%",
              "FLOPs/token", "at seq");
  for (const auto& [name, c, seq] : models) {
    const auto p = nn::moe_param_counts(c);
    std::printf("%-22s %10s %10s %7.1f%% %14s %16ld\n", name,
                nn::detail::human_count(double(p.total())).c_str(),
                nn::detail::human_count(double(p.active())).c_str(),
                100.0 * double(p.active()) / double(p.total()),
                nn::detail::human_flops(nn::moe_flops_per_token(c, seq)).c_str(), long(seq));
  }

  for (const auto& [name, c, seq] : models) {
    std::printf("\n=== %s ===\n", name);
    nn::report_options options{};
    if (c == nn::presets::deepseek_v3()) options.tokens = 14.8e12;
    // [snippet report]
    std::cout << nn::moe_report(c, /*batch=*/1, seq, options);
    // [end snippet]
  }
  return 0;
}
