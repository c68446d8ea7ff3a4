// Tests of einlm/nn/accounting.hpp: parameter counts against the published ones (GPT-2 exactly as
// HF's num_parameters() counts them — tied lm_head once, position table included; Llama 3 within
// 0.5 % of the rounded published figures and exactly against HF's counts), a tiny configuration
// checked term by term against hand computation (parameters, FLOPs, activations), training FLOPs
// against an independent 6·N·tokens + attention formula, CS336 assignment 1's GPT-2 XL-shaped
// model, compile-time use, and the lines of report().
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "einlm/nn/accounting.hpp"

using namespace einlm;
using nn::transformer_config;

namespace {

// V=16, D=8, 2 layers, 2 heads sharing 1 key/value head (head dim 4), SwiGLU 16, RoPE, RMSNorm,
// untied.
constexpr transformer_config tiny{.vocab_size = 16,
                                  .context_length = 4,
                                  .d_model = 8,
                                  .num_layers = 2,
                                  .num_heads = 2,
                                  .num_kv_heads = 1,
                                  .d_ff = 16};

// The same sizes with GPT-2's choices: GELU MLP, learned positions, LayerNorm, biases, tied; MHA.
constexpr transformer_config tiny_gpt2{.vocab_size = 16,
                                       .context_length = 4,
                                       .d_model = 8,
                                       .num_layers = 2,
                                       .num_heads = 2,
                                       .d_ff = 16,
                                       .tied_embeddings = true,
                                       .ffn = nn::ffn_kind::gelu_mlp,
                                       .positions = nn::position_kind::learned,
                                       .norm = nn::norm_kind::layer_norm,
                                       .linear_bias = true};

// CS336 assignment 1 (transformer_accounting): GPT-2 XL's shape with the CS336 architecture.
constexpr transformer_config cs336_gpt2_xl{.vocab_size = 50257,
                                           .context_length = 1024,
                                           .d_model = 1600,
                                           .num_layers = 48,
                                           .num_heads = 25,
                                           .d_ff = 6400};

// A model type whose dimensions are a template argument exposes its accounting as constants.
template <transformer_config C>
struct model_constants {
  static constexpr std::int64_t param_count = nn::param_count(C);
  static constexpr double flops_per_sequence = nn::flops_forward(C, 1, C.context_length);
};

}  // namespace

// Compile-time use.
static_assert(nn::param_count(nn::presets::gpt2_small()) == 124'439'808);
static_assert(nn::param_count(tiny) == 1448);
static_assert(nn::flops_forward(tiny, 2, 3) == 16512.0);
static_assert(nn::activation_bytes(tiny, 2, 3, 4) == 6048);
static_assert(nn::training_memory(tiny, 2, 3, nn::precision::bf16_mixed).total() ==
              16 * 1448 + 2 * 1512);
static_assert(model_constants<cs336_gpt2_xl>::param_count == 2'127'057'600);
static_assert(model_constants<cs336_gpt2_xl>::flops_per_sequence == 4'513'336'524'800.0);
static_assert(nn::param_count(nn::presets::llama3_8b()) < 10'000'000'000);

TEST_CASE("GPT-2 parameter counts equal HF's num_parameters()") {
  // 12·D² + 13·D per layer, V·D + 1024·D embeddings, 2·D final LayerNorm, lm_head tied.
  CHECK(nn::param_count(nn::presets::gpt2_small()) == 124'439'808);
  CHECK(nn::param_count(nn::presets::gpt2_medium()) == 354'823'168);
  CHECK(nn::param_count(nn::presets::gpt2_large()) == 774'030'080);
  CHECK(nn::param_count(nn::presets::gpt2_xl()) == 1'557'611'200);

  const auto p = nn::param_counts(nn::presets::gpt2_small());
  CHECK(p.token_embedding == 50257 * 768);
  CHECK(p.position_embedding == 1024 * 768);
  CHECK(p.attention_per_layer == 4 * 768 * 768 + 4 * 768);
  CHECK(p.ffn_per_layer == 8 * 768 * 768 + 5 * 768);
  CHECK(p.norms_per_layer == 4 * 768);
  CHECK(p.final_norm == 2 * 768);
  CHECK(p.lm_head == 0);
  CHECK(nn::non_embedding_param_count(nn::presets::gpt2_small()) ==
        124'439'808 - 50257 * 768 - 1024 * 768);
  CHECK(nn::non_embedding_param_count(nn::presets::gpt2_small()) == 85'056'000);
}

TEST_CASE("Llama 3 shapes match the published parameter counts") {
  const double n1 = double(nn::param_count(nn::presets::llama3_1b()));
  const double n8 = double(nn::param_count(nn::presets::llama3_8b()));
  CHECK(std::abs(n1 / 1.24e9 - 1) < 0.005);
  CHECK(std::abs(n8 / 8.03e9 - 1) < 0.005);
  // HF's num_parameters() of meta-llama/Llama-3.2-1B (tied) and Meta-Llama-3-8B (untied).
  CHECK(nn::param_count(nn::presets::llama3_1b()) == 1'235'814'400);
  CHECK(nn::param_count(nn::presets::llama3_8b()) == 8'030'261'248);
  const auto p = nn::param_counts(nn::presets::llama3_8b());
  CHECK(p.attention_per_layer == 2 * 4096 * 4096 + 2 * 4096 * 1024);  // GQA: k, v are 4096 × 1024
  CHECK(p.lm_head == 128256 * 4096);
}

TEST_CASE("a tiny configuration, term by term") {
  const auto p = nn::param_counts(tiny);
  CHECK(p.token_embedding == 16 * 8);
  CHECK(p.position_embedding == 0);
  CHECK(p.attention_per_layer ==
        8 * 8 + 8 * 4 + 8 * 4 + 8 * 8);  // q, k, v (1 kv head of 4), output
  CHECK(p.ffn_per_layer == 3 * 8 * 16);  // w1, w3, w2
  CHECK(p.norms_per_layer == 2 * 8);
  CHECK(p.final_norm == 8);
  CHECK(p.lm_head == 16 * 8);
  CHECK(p.total() == 128 + 2 * (192 + 384 + 16) + 8 + 128);
  CHECK(p.total() == 1448);
  CHECK(p.non_embedding() == 1448 - 256);

  // batch 2, seq 3: 6 tokens.
  const auto f = nn::flops_forward_counts(tiny, 2, 3);
  CHECK(f.attention_projections ==
        2 * (768 + 384 + 384 + 768));            // 2·6·8·8, 2·6·8·4, 2·6·8·4, 2·6·8·8
  CHECK(f.attention_scores == 2 * (288 + 288));  // 2·(B·H)·S·S·hd = 2·4·3·3·4, twice
  CHECK(f.ffn == 2 * 3 * (2 * 6 * 8 * 16));
  CHECK(f.lm_head == 2 * 6 * 8 * 16);
  CHECK(f.total() == 16512);
  CHECK(nn::flops_backward(tiny, 2, 3) == 2 * 16512);
  CHECK(nn::flops_forward(tiny, 2, 3, {.causal_savings = true}) == 16512 - 2 * 288);

  // Per layer per token: 8 + 8 + (8 + 4 + 4) + 8 + 8 + 8 + 3·16 = 104; probabilities 2·2·3·3 = 36.
  CHECK(nn::activation_elements(tiny, 2, 3) == 2 * (6 * 104 + 36) + 6 * (8 + 8 + 16));
  CHECK(nn::activation_bytes(tiny, 2, 3, 4) == 4 * 1512);
  // Keeping attention's row log-sum-exp instead of its probabilities: 2 layers × 2 sequences × 2
  // heads × (3 instead of 3 × 3).
  CHECK(nn::activation_elements(tiny, 2, 3, nn::attention_activations::probabilities) == 1512);
  CHECK(nn::activation_elements(tiny, 2, 3, nn::attention_activations::log_sum_exp) == 1512 - 2 * 2 * 2 * 9 + 2 * 2 * 2 * 3);
  transformer_config with_qk_norm = tiny;
  with_qk_norm.qk_norm = true;
  CHECK(nn::param_count(with_qk_norm) == 1448 + 2 * 2 * 4);
  CHECK(nn::activation_elements(with_qk_norm, 2, 3) == 1512 + 2 * 6 * (8 + 4));

  const auto m32 = nn::training_memory(tiny, 2, 3, nn::precision::fp32);
  CHECK(m32.params == 4 * 1448);
  CHECK(m32.grads == 4 * 1448);
  CHECK(m32.optimizer_state == 8 * 1448);
  CHECK(m32.activations == 4 * 1512);
  const auto m16 = nn::training_memory(tiny, 2, 3, nn::precision::bf16_mixed);
  CHECK(m16.params == 2 * 1448);
  CHECK(m16.grads == 2 * 1448);
  CHECK(m16.optimizer_state == 12 * 1448);  // two fp32 moments and fp32 master weights
  CHECK(m16.activations == 2 * 1512);
}

TEST_CASE("a tiny GPT-2-style configuration, term by term") {
  const auto p = nn::param_counts(tiny_gpt2);
  CHECK(p.token_embedding == 128);
  CHECK(p.position_embedding == 4 * 8);
  CHECK(p.attention_per_layer == 4 * 64 + 4 * 8);  // weights and biases of q, k, v, output
  CHECK(p.ffn_per_layer == 2 * 128 + 16 + 8);      // fc1, fc2 and their biases
  CHECK(p.norms_per_layer == 2 * 16);              // LayerNorm: gain and bias, twice
  CHECK(p.final_norm == 16);
  CHECK(p.lm_head == 0);
  CHECK(p.total() == 1376);
  // Tied: lm_head still multiplies. Per token 2·(4·64 + 2·128) per layer, 2·128 for lm_head, and
  // 4·S·D per layer for attention.
  CHECK(nn::flops_forward(tiny_gpt2, 1, 4) ==
        4 * (2 * 2 * (256 + 256) + 2 * 128) + 2 * 4 * (4 * 4 * 8));
  // Per layer per token 8 + 8 + (8 + 8 + 8) + 8 + 8 + 8 + 2·16 = 96; probabilities 2·4·4 = 32.
  CHECK(nn::activation_elements(tiny_gpt2, 1, 4) == 2 * (4 * 96 + 32) + 4 * (16 + 16));
}

TEST_CASE("training FLOPs are 6·N·tokens plus the attention term") {
  // Independent formula (Kaplan/Chinchilla): N counts the weights that take part in a product.
  const transformer_config c = nn::presets::gpt2_small();
  const double L = 12, D = 768, V = 50257, S = 1024, tokens = 1e9;
  const double n_matmul = L * (4 * D * D + 2 * D * 4 * D) + V * D;  // 123,532,032
  CHECK(n_matmul == 123'532'032);
  // Forward: 2 FLOPs per weight and 2·2·S·D per layer for Q·Kᵀ and probabilities·V; training 3×.
  const double expected = 3 * (2 * n_matmul + L * 4 * S * D) * tokens;
  CHECK(nn::training_flops(c, tokens, 1024) == doctest::Approx(expected).epsilon(1e-12));
  CHECK(nn::training_flops(c, tokens, 1024) == doctest::Approx(8.544384e17).epsilon(1e-12));
  CHECK(nn::flops_per_token(c, 1024) ==
        doctest::Approx(6 * n_matmul + 12 * L * S * D).epsilon(1e-12));
  CHECK(nn::flops_per_token(c, 1024, {.causal_savings = true}) ==
        doctest::Approx(6 * n_matmul + 6 * L * S * D).epsilon(1e-12));
  // GPT-2 XL on 20 tokens per parameter: beyond 64-bit integers, hence doubles.
  const auto xl = nn::presets::gpt2_xl();
  CHECK(nn::training_flops(xl, 20.0 * double(nn::param_count(xl)), 1024) > 9.3e18);
  CHECK(nn::training_flops(xl, 20.0 * double(nn::param_count(xl)), 1024) ==
        doctest::Approx(3.2004379380541e20).epsilon(1e-12));
}

TEST_CASE("CS336 assignment 1: the GPT-2 XL-shaped model") {
  // Embedding and lm_head 2·50257·1600, per layer 4·1600² + 3·1600·6400 + 2·1600, final 1600.
  const auto p = nn::param_counts(cs336_gpt2_xl);
  CHECK(p.per_layer() == 40'963'200);
  CHECK(p.total() == 2 * 80'411'200 + 48 * 40'963'200 + 1600);
  CHECK(p.total() == 2'127'057'600);
  // fp32 parameters: 2,127,057,600 · 4 bytes ≈ 7.92 GiB.
  CHECK(nn::training_memory(cs336_gpt2_xl, 1, 1024).params == 8'508'230'400);
  // One forward pass of a 1024-token sequence: ≈ 4.51 TFLOPs, the FFN two thirds of it.
  const auto f = nn::flops_forward_counts(cs336_gpt2_xl, 1, 1024);
  CHECK(f.attention_projections == 1'006'632'960'000.0);
  CHECK(f.attention_scores == 322'122'547'200.0);
  CHECK(f.ffn == 3'019'898'880'000.0);
  CHECK(f.lm_head == 164'682'137'600.0);
  CHECK(f.total() == 4'513'336'524'800.0);
}

TEST_CASE("report() prints parameters, memory, FLOPs and time") {
  const std::string r = nn::report(nn::presets::gpt2_small(), 8, 1024);
  INFO(r);
  CHECK(r.find("124.4M") != std::string::npos);
  CHECK(r.find("124,439,808") != std::string::npos);
  CHECK(r.find("GELU MLP, learned positions, LayerNorm, biases, tied lm_head") !=
        std::string::npos);
  CHECK(r.find("lm_head") != std::string::npos);
  CHECK(r.find("tied") != std::string::npos);
  CHECK(r.find("non-embedding") != std::string::npos);
  CHECK(r.find("85.1M") != std::string::npos);
  CHECK(r.find("bf16 mixed") != std::string::npos);
  CHECK(r.find("optimizer state") != std::string::npos);
  CHECK(r.find("474.7 MiB") != std::string::npos);  // fp32 parameters: 124,439,808 · 4 bytes
  CHECK(r.find("training, 2.49B tokens") != std::string::npos);
  CHECK(r.find("50% MFU of 989 TFLOP/s") != std::string::npos);

  const std::string l = nn::report(nn::presets::llama3_8b(), 1, 8192, {.tokens = 15e12});
  INFO(l);
  CHECK(l.find("8,030,261,248") != std::string::npos);
  CHECK(l.find("32 heads (8 kv)") != std::string::npos);
  CHECK(l.find("untied lm_head") != std::string::npos);
  CHECK(l.find("training, 15.0T tokens") != std::string::npos);
  CHECK(l.find("days") != std::string::npos);
}

TEST_CASE("human-readable numbers") {
  CHECK(nn::detail::human_count(124'439'808) == "124.4M");
  CHECK(nn::detail::human_count(1'557'611'200) == "1.56B");
  CHECK(nn::detail::human_count(768) == "768");
  CHECK(nn::detail::human_bytes(3.2 * 1024 * 1024 * 1024) == "3.2 GiB");
  CHECK(nn::detail::human_flops(1.2e18) == "1.20e18");
  CHECK(nn::detail::human_flops(9.999e17) == "1.00e18");
  CHECK(nn::detail::human_time(7200) == "2.0 h");
  CHECK(nn::detail::human_time(86400 * 3) == "3.0 days");
  CHECK(nn::detail::with_commas(1'235'814'400) == "1,235,814,400");
}
