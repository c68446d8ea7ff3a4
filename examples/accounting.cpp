// examples/accounting.cpp — what GPT-2 small/medium/large/XL and two Llama 3 shapes cost to train
// (CS336 lecture 2): one comparison table, then nn::report() for each model. Memory is for a batch
// of 8 sequences of 1024 tokens (GPT-2's context) with AdamW; FLOPs and time are for 20 tokens per
// parameter (Chinchilla) on one H100 (989 TFLOP/s bf16 dense) at 50 % MFU. Everything is computed
// from the configurations; nothing is allocated or run.
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>

#include "einlm/nn/accounting.hpp"

using namespace einlm;

// [snippet compile_time]
// A model whose shape is a template argument: its accounting is a set of constants.
template <nn::transformer_config C>
struct model_budget {
  static constexpr std::int64_t params = nn::param_count(C);
  static constexpr double flops_per_token = nn::flops_per_token(C, C.context_length);
  static constexpr auto memory =
      nn::training_memory(C, 8, C.context_length, nn::precision::bf16_mixed);
};

constexpr nn::transformer_config my_model{.vocab_size = 32'000,
                                          .context_length = 2048,
                                          .d_model = 2048,
                                          .num_layers = 24,
                                          .num_heads = 16,
                                          .num_kv_heads = 4};
static_assert(model_budget<my_model>::params < 2'000'000'000);
static_assert(model_budget<my_model>::memory.total() < 80LL * 1024 * 1024 * 1024,
              "does not fit in 80 GiB");
// [end snippet]

int main() {
  struct named {
    const char* name;
    nn::transformer_config config;
  };
  const named models[] = {
      {"GPT-2 small", nn::presets::gpt2_small()}, {"GPT-2 medium", nn::presets::gpt2_medium()},
      {"GPT-2 large", nn::presets::gpt2_large()}, {"GPT-2 XL", nn::presets::gpt2_xl()},
      {"Llama 3.2 1B", nn::presets::llama3_1b()}, {"Llama 3 8B", nn::presets::llama3_8b()}};
  constexpr std::int64_t batch = 8, seq = 1024;
  const nn::report_options options{};  // 20 tokens per parameter, 989 TFLOP/s, 50 % MFU

  std::printf(
      "Training cost, AdamW, batch %ld x %ld tokens; %.0f tokens per parameter on one "
      "accelerator of %.0f TFLOP/s at %.0f %% MFU\n\n",
      long(batch), long(seq), options.tokens_per_parameter, options.peak_flops / 1e12,
      options.mfu * 100);
  std::printf("%-14s %10s %10s %12s %12s %12s %12s %12s\n", "model", "params", "non-emb",
              "mem fp32", "mem bf16", "FLOPs/token", "train FLOPs", "time");
  for (const auto& [name, c] : models) {
    const double n = double(nn::param_count(c));
    const double tokens = options.tokens_per_parameter * n;
    const double flops = nn::training_flops(c, tokens, seq);
    std::printf("%-14s %10s %10s %12s %12s %12s %12s %12s\n", name,
                nn::detail::human_count(n).c_str(),
                nn::detail::human_count(double(nn::non_embedding_param_count(c))).c_str(),
                nn::detail::human_bytes(
                    double(nn::training_memory(c, batch, seq, nn::precision::fp32).total()))
                    .c_str(),
                nn::detail::human_bytes(
                    double(nn::training_memory(c, batch, seq, nn::precision::bf16_mixed).total()))
                    .c_str(),
                nn::detail::human_flops(nn::flops_per_token(c, seq)).c_str(),
                nn::detail::human_flops(flops).c_str(),
                nn::detail::human_time(flops / (options.peak_flops * options.mfu)).c_str());
  }

  for (const auto& [name, c] : models) {
    std::printf("\n=== %s ===\n", name);
    // [snippet report]
    std::cout << nn::report(c, /*batch=*/8, /*seq=*/1024);
    // [end snippet]
  }
  std::printf(
      "\nmy_model (compile-time checked): %s parameters, %s to train at batch 8 x %ld "
      "in bf16 mixed\n",
      nn::detail::human_count(double(model_budget<my_model>::params)).c_str(),
      nn::detail::human_bytes(double(model_budget<my_model>::memory.total())).c_str(),
      long(my_model.context_length));
  return 0;
}
