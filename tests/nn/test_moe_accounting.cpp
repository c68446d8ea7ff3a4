// Tests of einlm/nn/moe_accounting.hpp: Mixtral 8×7B's and DeepSeek-V3's total and active
// parameters against the published figures (within 0.5 %, and exactly against a recount from
// their configuration files), the invariants against nn/accounting.hpp (a moe_config without
// experts is its dense base; one expert with top-1 is the dense model plus a D × 1 router), a tiny
// configuration checked term by term (parameters, FLOPs, activations, with GQA and with MLA),
// compile-time use, validation and the lines of moe_report().
//
// The exact counts were recomputed independently (python3) from the published configurations:
//   Mixtral (HF mistralai/Mixtral-8x7B-v0.1): per layer q, o 4096² each, k, v 4096·1024 each,
//     8 experts of 3·4096·14336, router 4096·8, two norms 4096; embedding and lm_head
//     32000·4096 each, final norm 4096:
//     32·1,451,270,144 + 262,144,000 + 4096 = 46,702,792,704 total (HF num_parameters());
//     with 2 of the 8 experts: 32·394,305,536 + 262,148,096 = 12,879,925,248 active.
//   DeepSeek-V3 (config.json, 61 layers, MTP module left out): MLA per layer
//     7168·1536 + 1536·128·192 + 7168·576 + 512·128·256 + 128·128·7168 = 187,105,280 plus its
//     norms 1536 + 512; dense layers 3 × (187,107,328 + 3·7168·18432 + 2·7168);
//     MoE layers 58 × (187,107,328 + 257·3·7168·2048 + 256·7168 + 256 + 2·7168);
//     embedding and lm_head 129280·7168 each, final norm 7168: 671,026,419,200 total;
//     active (8 routed + 1 shared): 37,552,297,472; without the token embedding 36,625,618,432.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "einlm/nn/moe_accounting.hpp"

using namespace einlm;
using nn::moe_config;
using nn::transformer_config;

namespace {

// The dense part: V=16, D=8, 3 layers, 2 heads sharing 1 key/value head (head dim 4), SwiGLU 16,
// RoPE, RMSNorm, untied.
constexpr transformer_config tiny_base{.vocab_size = 16,
                                       .context_length = 4,
                                       .d_model = 8,
                                       .num_layers = 3,
                                       .num_heads = 2,
                                       .num_kv_heads = 1,
                                       .d_ff = 16};

// Layer 0 dense; layers 1 and 2: 4 experts of width 4, top-2, 1 shared expert, selection bias.
constexpr moe_config tiny{.base = tiny_base,
                          .num_experts = 4,
                          .top_k = 2,
                          .num_shared_experts = 1,
                          .expert_d_ff = 4,
                          .first_dense_layers = 1,
                          .router = nn::router_kind::sigmoid};

// The same with MLA: q rank 4, kv rank 2, qk heads 2 + 2 (RoPE), v heads 2.
constexpr moe_config tiny_mla{.base = tiny_base,
                              .num_experts = 4,
                              .top_k = 2,
                              .num_shared_experts = 1,
                              .expert_d_ff = 4,
                              .first_dense_layers = 1,
                              .router = nn::router_kind::sigmoid,
                              .mla = {.q_lora_rank = 4,
                                      .kv_lora_rank = 2,
                                      .qk_nope_head_dim = 2,
                                      .qk_rope_head_dim = 2,
                                      .v_head_dim = 2}};

// One expert, top-1, no shared expert: the dense FFN behind a router of one column.
constexpr moe_config one_expert(const transformer_config& c) {
  return {.base = c, .num_experts = 1, .top_k = 1};
}

// A model type whose MoE shape is a template argument exposes its accounting as constants.
template <moe_config C>
struct moe_constants {
  static constexpr std::int64_t params = nn::moe_param_count(C);
  static constexpr std::int64_t active = nn::moe_active_param_count(C);
  static constexpr double flops_per_token = nn::moe_flops_per_token(C, 4096);
};

bool within(double value, double published, double tolerance) {
  return std::abs(value / published - 1) < tolerance;
}

}  // namespace

// Compile-time use.
static_assert(moe_constants<nn::presets::mixtral_8x7b()>::params == 46'702'792'704);
static_assert(moe_constants<nn::presets::mixtral_8x7b()>::active == 12'879'925'248);
static_assert(moe_constants<nn::presets::deepseek_v3()>::params == 671'026'419'200);
static_assert(moe_constants<nn::presets::deepseek_v3()>::active == 37'552'297'472);
static_assert(moe_constants<nn::presets::deepseek_v3()>::flops_per_token == 3 * 93'717'397'504.0);
static_assert(nn::moe_param_count(tiny) == 2304);
static_assert(nn::moe_active_param_count(tiny) == 1920);
static_assert(nn::moe_flops_forward(tiny, 2, 3) == 22464.0);
static_assert(nn::moe_activation_elements(tiny, 2, 3) == 2460);
static_assert(nn::moe_training_memory(tiny, 2, 3, nn::precision::bf16_mixed).total() ==
              16 * 2304 + 2 * 2460);
static_assert(nn::moe_param_count(moe_config{.base = tiny_base}) == nn::param_count(tiny_base));
static_assert(nn::presets::deepseek_v3().moe_layers() == 58);
static_assert(nn::presets::switch_base(8).is_moe_layer(1) &&
              !nn::presets::switch_base(8).is_moe_layer(0));

TEST_CASE("Mixtral 8x7B: 46.7B parameters, 12.9B active") {
  const auto c = nn::presets::mixtral_8x7b();
  const auto p = nn::moe_param_counts(c);
  CHECK(within(double(p.total()), 46.7e9, 0.005));
  CHECK(within(double(p.active()), 12.9e9, 0.005));
  CHECK(p.total() == 46'702'792'704);   // HF num_parameters()
  CHECK(p.active() == 12'879'925'248);  // 2 of 8 experts, the token embedding included
  CHECK(p.moe_layers == 32);
  CHECK(p.dense_layers == 0);
  CHECK(p.dense_ffn == 0);
  CHECK(p.attention == 32LL * (2 * 4096 * 4096 + 2 * 4096 * 1024));
  CHECK(p.routed_experts == 32LL * 8 * 3 * 4096 * 14336);
  CHECK(p.active_routed_experts == 32LL * 2 * 3 * 4096 * 14336);
  CHECK(p.shared_experts == 0);
  CHECK(p.routers == 32LL * 4096 * 8);
  CHECK(p.norms == 32LL * 2 * 4096 + 4096);
  CHECK(p.token_embedding == 32000LL * 4096);
  CHECK(p.lm_head == 32000LL * 4096);
  // Mistral 7B's shape is Mixtral's with one expert and no router.
  const transformer_config mistral_7b = c.base;
  CHECK(nn::param_count(mistral_7b) == 7'241'732'096);
  CHECK(p.total() == nn::param_count(mistral_7b) + 32LL * 7 * 3 * 4096 * 14336 + p.routers);
}

TEST_CASE("DeepSeek-V3: 671B parameters, 37B active (without the MTP module)") {
  const auto c = nn::presets::deepseek_v3();
  const auto p = nn::moe_param_counts(c);
  CHECK(within(double(p.total()), 671e9, 0.005));
  CHECK(p.total() == 671'026'419'200);
  CHECK(p.active() == 37'552'297'472);
  // DeepSeek's "activated" leaves out the token embedding (a lookup): 36.6B, which rounds to the
  // published 37B; with it, 37.55B would round to 38B. The same convention gives DeepSeek-V2's
  // published 21B and V2-Lite's 2.4B (below).
  CHECK(p.active_non_embedding_input() == 36'625'618'432);
  CHECK(std::abs(double(p.active_non_embedding_input()) - 37e9) < 0.5e9);
  CHECK(p.dense_layers == 3);
  CHECK(p.moe_layers == 58);
  CHECK(p.attention == 61LL * 187'105'280);
  CHECK(p.attention ==
        61LL * (7168 * 1536 + 1536 * 128 * 192 + 7168 * 576 + 512 * 128 * 256 + 128 * 128 * 7168));
  CHECK(p.dense_ffn == 3LL * 3 * 7168 * 18432);
  CHECK(p.routed_experts == 58LL * 256 * 3 * 7168 * 2048);
  CHECK(p.active_routed_experts == 58LL * 8 * 3 * 7168 * 2048);
  CHECK(p.shared_experts == 58LL * 3 * 7168 * 2048);
  CHECK(p.routers == 58LL * (256 * 7168 + 256));
  CHECK(p.norms == 61LL * (2 * 7168 + 1536 + 512) + 7168);
  CHECK(p.lm_head == 129280LL * 7168);

  // Forward FLOPs per token at 4096 tokens: 2 per weight in a product (36,624,596,992: the active
  // parameters without token embedding, norms and selection biases) and 2·S·H·(192 + 128) per
  // layer for attention.
  const double weights = 36'624'596'992.0;
  CHECK(weights == double(p.active_non_embedding_input() - p.norms - 58 * 256));
  const double forward = 2 * weights + 61.0 * 2 * 4096 * 128 * (192 + 128);
  CHECK(forward == 93'717'397'504.0);
  CHECK(nn::moe_flops_forward(c, 1, 4096) == 4096 * forward);
  CHECK(nn::moe_flops_per_token(c, 4096) == 3 * forward);
  CHECK(nn::moe_flops_forward(c, 1, 4096, {.causal_savings = true}) ==
        4096 * (forward - 61.0 * 4096 * 128 * (192 + 128)));
}

TEST_CASE("DeepSeek-V2 and V2-Lite: the same convention for activated parameters") {
  // HF deepseek-ai/DeepSeek-V2: 60 layers, D 5120, 128 heads, MLA q rank 1536, kv rank 512, first
  // layer dense (12288), then 160 experts of 1536, 2 shared, top-6, no selection bias; 236B / 21B.
  const moe_config v2{.base = {.vocab_size = 102400,
                               .context_length = 4096,
                               .d_model = 5120,
                               .num_layers = 60,
                               .num_heads = 128,
                               .d_ff = 12288},
                      .num_experts = 160,
                      .top_k = 6,
                      .num_shared_experts = 2,
                      .expert_d_ff = 1536,
                      .first_dense_layers = 1,
                      .mla = {.q_lora_rank = 1536,
                              .kv_lora_rank = 512,
                              .qk_nope_head_dim = 128,
                              .qk_rope_head_dim = 64,
                              .v_head_dim = 128}};
  // V2-Lite: 27 layers, D 2048, 16 heads, q projected directly (no q rank), first layer dense
  // (10944), then 64 experts of 1408, 2 shared, top-6; 15.7B / 2.4B.
  moe_config lite = v2;
  lite.base.d_model = 2048;
  lite.base.num_layers = 27;
  lite.base.num_heads = 16;
  lite.base.d_ff = 10944;
  lite.num_experts = 64;
  lite.expert_d_ff = 1408;
  lite.mla.q_lora_rank = 0;
  CHECK(v2.problem().empty());
  CHECK(lite.problem().empty());
  const auto p2 = nn::moe_param_counts(v2), pl = nn::moe_param_counts(lite);
  CHECK(within(double(p2.total()), 236e9, 0.005));
  CHECK(std::abs(double(p2.active_non_embedding_input()) - 21e9) < 0.5e9);
  CHECK(within(double(pl.total()), 15.7e9, 0.005));
  CHECK(std::abs(double(pl.active_non_embedding_input()) - 2.4e9) < 0.1e9);
  CHECK(pl.active() > 2.6e9);  // with the token embedding it would not be 2.4B
  CHECK(pl.attention == 27LL * (2048 * 16 * 192 + 2048 * 576 + 512 * 16 * 256 + 16 * 128 * 2048));
}

TEST_CASE("Switch-Base-style: every second layer an MoE, top-1") {
  // Recount: 6 dense layers of 4·768² + 2·768·3072 + 2·768, 6 MoE layers with E experts of
  // 2·768·3072 and a router 768·E, the tied embedding 32128·768 and the final norm 768.
  const auto s8 = nn::moe_param_counts(nn::presets::switch_base(8));
  const auto s128 = nn::moe_param_counts(nn::presets::switch_base(128));
  CHECK(s8.moe_layers == 6);
  CHECK(s8.total() == 307'845'888);
  CHECK(s8.active() == 109'665'024);
  CHECK(s128.total() == 3'705'785'088);
  CHECK(s128.active() == 110'217'984);  // only the routers grow with the experts
  CHECK(s128.active() - s8.active() == 6 * 768 * 120);
  CHECK(s8.lm_head == 0);
  // Forward FLOPs per token at 512 tokens: 2 per weight in a product, lm_head included, and
  // 4·S·D per layer for attention.
  CHECK(nn::moe_flops_forward(nn::presets::switch_base(8), 1, 512) == 512 * 238'166'016.0);
  CHECK(nn::moe_flops_forward(nn::presets::switch_base(128), 1, 512) == 512 * 239'271'936.0);
}

TEST_CASE("a tiny configuration, term by term") {
  const auto p = nn::moe_param_counts(tiny);
  CHECK(p.token_embedding == 16 * 8);
  CHECK(p.position_embedding == 0);
  CHECK(p.attention == 3 * (64 + 32 + 32 + 64));   // q, k, v (1 kv head of 4), output
  CHECK(p.dense_ffn == 1 * 3 * 8 * 16);            // layer 0
  CHECK(p.routed_experts == 2 * 4 * (3 * 8 * 4));  // layers 1, 2: 4 experts of 96
  CHECK(p.active_routed_experts == 2 * 2 * (3 * 8 * 4));
  CHECK(p.shared_experts == 2 * 1 * (3 * 8 * 4));
  CHECK(p.routers == 2 * (8 * 4 + 4));  // weight and selection bias
  CHECK(p.norms == 3 * 2 * 8 + 8);
  CHECK(p.lm_head == 16 * 8);
  CHECK(p.total() == 128 + 576 + 384 + 768 + 192 + 72 + 56 + 128);
  CHECK(p.total() == 2304);
  CHECK(p.active() == 2304 - 768 + 384);
  CHECK(p.active_non_embedding_input() == 1920 - 128);
  CHECK(p.non_embedding() == 2304 - 256);

  // batch 2, seq 3: 6 tokens.
  const auto f = nn::moe_flops_forward_counts(tiny, 2, 3);
  CHECK(f.attention_projections == 3 * 2 * 6 * 192);
  CHECK(f.attention_scores == 3 * 2 * 6 * 3 * 2 * (4 + 4));  // L·2·T·S·H·(qk + v head dims)
  CHECK(f.dense_ffn == 1 * 2 * 6 * 384);
  CHECK(f.routed_experts == 2 * 2 * (2 * 6 * 96));  // 2 layers, top-2
  CHECK(f.shared_experts == 2 * 1 * (2 * 6 * 96));
  CHECK(f.routers == 2 * (2 * 6 * 8 * 4));
  CHECK(f.lm_head == 2 * 6 * 8 * 16);
  CHECK(f.total() == 6912 + 1728 + 4608 + 4608 + 2304 + 768 + 1536);
  CHECK(f.total() == 22464);
  CHECK(nn::moe_flops_per_token(tiny, 3) == 3 * nn::moe_flops_forward(tiny, 1, 3) / 3);

  // Per token: every layer 8 + 8 + (8 + 4 + 4) + 8 + 8 + 8 = 56; the dense FFN 3·16 = 48; an MoE
  // FFN 4 router probabilities + 2·(8 + 3·4 + 8) selected + 3·4 shared = 72. Probabilities
  // 2·2·3·3 = 36 per layer; after the last layer 8 + 8 + 16.
  CHECK(nn::moe_activation_elements(tiny, 2, 3) ==
        3 * (6 * 56 + 36) + 1 * 6 * 48 + 2 * 6 * 72 + 6 * (8 + 8 + 16));
  CHECK(nn::moe_activation_elements(tiny, 2, 3) == 2460);
  const auto m16 = nn::moe_training_memory(tiny, 2, 3, nn::precision::bf16_mixed);
  CHECK(m16.params == 2 * 2304);  // every expert, not only the active ones
  CHECK(m16.grads == 2 * 2304);
  CHECK(m16.optimizer_state == 12 * 2304);
  CHECK(m16.activations == 2 * 2460);
}

TEST_CASE("a tiny configuration with MLA, term by term") {
  const auto p = nn::moe_param_counts(tiny_mla);
  // q_a 8·4, q_b 4·2·(2+2), kv_a 8·(2+2), kv_b 2·2·(2+2), o 2·2·8.
  CHECK(p.attention == 3 * (32 + 32 + 32 + 16 + 32));
  CHECK(p.norms == 3 * (2 * 8 + 4 + 2) + 8);  // block norms, q and kv latent norms, final
  CHECK(p.total() == 2304 - 576 + 3 * 144 + 3 * 6);
  const auto f = nn::moe_flops_forward_counts(tiny_mla, 2, 3);
  CHECK(f.attention_projections == 3 * 2 * 6 * 144);
  CHECK(f.attention_scores == 3 * 2 * 6 * 3 * 2 * (4 + 2));
  // Attention per token: q latent and norm 2·4, kv latent + RoPE key 2 + 2, its norm 2, q and k
  // 2·2·4, v 2·2, output 2·2: 8 + 4 + 2 + 16 + 4 + 4 = 38, against 24 with GQA.
  CHECK(nn::moe_activation_elements(tiny_mla, 2, 3) == 2460 + 3 * 6 * (38 - 24));
  // Without the q rank: one q_proj 8·2·4.
  moe_config direct = tiny_mla;
  direct.mla.q_lora_rank = 0;
  CHECK(nn::moe_param_counts(direct).attention == 3 * (64 + 32 + 16 + 32));
  CHECK(nn::moe_param_counts(direct).norms == 3 * (2 * 8 + 2) + 8);
}

TEST_CASE("without experts, the counts are the dense accounting's") {
  for (const transformer_config& c :
       {tiny_base, nn::presets::gpt2_small(), nn::presets::llama3_8b(), nn::presets::llama3_1b()}) {
    const moe_config m{.base = c};
    CHECK(m.moe_layers() == 0);
    CHECK(nn::moe_param_count(m) == nn::param_count(c));
    CHECK(nn::moe_active_param_count(m) == nn::param_count(c));
    CHECK(nn::moe_param_counts(m).non_embedding() == nn::non_embedding_param_count(c));
    CHECK(nn::moe_flops_forward(m, 2, 64) == nn::flops_forward(c, 2, 64));
    CHECK(nn::moe_flops_per_token(m, 64, {.causal_savings = true}) ==
          nn::flops_per_token(c, 64, {.causal_savings = true}));
    CHECK(nn::moe_activation_elements(m, 2, 64) == nn::activation_elements(c, 2, 64));
    CHECK(nn::moe_training_memory(m, 2, 64).total() == nn::training_memory(c, 2, 64).total());
  }
}

TEST_CASE("one expert with top-1 is the dense FFN behind a one-column router") {
  for (transformer_config c : {tiny_base, nn::presets::gpt2_small(), nn::presets::llama3_8b()}) {
    c.qk_norm = true;
    const moe_config m = one_expert(c);
    const std::int64_t D = c.d_model, L = c.num_layers, T = 2 * 64;
    const auto p = nn::moe_param_counts(m);
    const auto d = nn::param_counts(c);
    CHECK(p.routed_experts == d.ffn());  // same width, same biases
    CHECK(p.attention == d.attention());
    CHECK(p.norms == d.norms());
    CHECK(p.embeddings() == d.embeddings());
    CHECK(p.routers == L * D);
    CHECK(p.total() == d.total() + L * D);
    CHECK(p.active() == p.total());
    const auto f = nn::moe_flops_forward_counts(m, 2, 64);
    const auto g = nn::flops_forward_counts(c, 2, 64);
    CHECK(f.routed_experts == g.ffn);
    CHECK(f.attention_projections == g.attention_projections);
    CHECK(f.attention_scores == g.attention_scores);
    CHECK(f.total() == g.total() + double(L) * 2 * double(T) * double(D));
    // Kept: one router probability, the gathered input and the expert's output.
    CHECK(nn::moe_activation_elements(m, 2, 64) ==
          nn::activation_elements(c, 2, 64) + L * T * (1 + 2 * D));
  }
}

TEST_CASE("moe_config::problem names the first inconsistent field") {
  CHECK(nn::presets::mixtral_8x7b().problem().empty());
  CHECK(nn::presets::deepseek_v3().problem().empty());
  CHECK(nn::presets::switch_base(128).problem().empty());
  CHECK(tiny.problem().empty());
  CHECK(tiny_mla.problem().empty());
  moe_config c = tiny;
  c.top_k = 5;
  CHECK(c.problem().find("top_k") != std::string::npos);
  CHECK_THROWS_AS(c.validate(), nn::config_error);
  c = tiny;
  c.first_dense_layers = 4;
  CHECK(c.problem().find("first_dense_layers") != std::string::npos);
  c = tiny;
  c.moe_layer_step = 0;
  CHECK(c.problem().find("moe_layer_step") != std::string::npos);
  c = tiny;
  c.mla.v_head_dim = 2;
  CHECK(c.problem().find("mla") != std::string::npos);
  c = tiny_mla;
  c.mla.qk_rope_head_dim = 3;
  CHECK(c.problem().find("qk_rope_head_dim") != std::string::npos);
  c = tiny;
  c.base.num_heads = 3;
  CHECK(c.problem().find("num_heads") != std::string::npos);
}

TEST_CASE("moe_report() prints total and active parameters, memory and FLOPs") {
  const std::string r = nn::moe_report(nn::presets::mixtral_8x7b(), 1, 4096);
  INFO(r);
  CHECK(r.find("46,702,792,704") != std::string::npos);
  CHECK(r.find("12,879,925,248") != std::string::npos);
  CHECK(r.find("46.7B") != std::string::npos);
  CHECK(r.find("12.9B") != std::string::npos);
  CHECK(r.find("32 heads (8 kv)") != std::string::npos);
  CHECK(r.find("32 MoE layers: 8 experts of d_ff 14336, top-2") != std::string::npos);
  CHECK(r.find("untied lm_head") != std::string::npos);
  CHECK(r.find("bf16 weights (inference)") != std::string::npos);
  CHECK(r.find("87.0 GiB") != std::string::npos);  // 46,702,792,704 · 2 bytes
  CHECK(r.find("forward per token") != std::string::npos);
  CHECK(r.find("training, ") == std::string::npos);  // no token budget given

  const std::string d = nn::moe_report(nn::presets::deepseek_v3(), 1, 4096, {.tokens = 14.8e12});
  INFO(d);
  CHECK(d.find("671,026,419,200") != std::string::npos);
  CHECK(d.find("MLA (q rank 1536, kv rank 512, qk head 128+64, v head 128)") != std::string::npos);
  CHECK(d.find("3 dense layers (d_ff 18432), 58 MoE layers: 256 experts of d_ff 2048, top-8, "
               "1 shared, selection bias") != std::string::npos);
  CHECK(d.find("active without the token embedding") != std::string::npos);
  CHECK(d.find("36.6B") != std::string::npos);
  CHECK(d.find("training, 14.8T tokens") != std::string::npos);
  CHECK(d.find("days") != std::string::npos);

  const std::string s = nn::moe_report(moe_config{.base = tiny_base}, 1, 4);
  INFO(s);
  CHECK(s.find("dense, d_ff 16") != std::string::npos);
  CHECK(s.find("routed experts") == std::string::npos);
}
