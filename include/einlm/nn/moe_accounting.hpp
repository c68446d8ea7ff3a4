// einlm/nn/moe_accounting.hpp — what a mixture-of-experts transformer costs: total and active
// parameters, FLOPs with the selected experts only, memory (CS336 lecture 4), computed from its
// moe_config alone.
//
//   constexpr auto cfg = nn::presets::mixtral_8x7b();
//   static_assert(nn::moe_param_count(cfg) == 46'702'792'704);
//   static_assert(nn::moe_active_param_count(cfg) == 12'879'925'248);
//   std::cout << nn::moe_report(cfg, /*batch=*/1, /*seq=*/4096);
//
// Contract: as in nn/accounting.hpp, every function except moe_report() and problem() is
// constexpr and pure arithmetic on the configuration; nothing validates it (call cfg.validate()
// first when it comes from outside). A moe_config with num_experts = 0 is the dense model `base`,
// and every count equals nn/accounting.hpp's for it.
//
// The model: `base` (a transformer_config) gives the vocabulary, widths, layers, heads, the FFN
// kind, positions, norms and tying. Layers 0 … first_dense_layers−1 keep a dense FFN of width
// base.ffn_dim(); after them, every moe_layer_step-th layer (1: all; Switch: 2, the second of each
// pair) has an MoE FFN instead, the others a dense one. An MoE FFN is a router (a D × E matrix,
// plus E selection biases with the sigmoid router — DeepSeek-V3's auxiliary-loss-free balancing bias,
// stored in the checkpoint, never trained by gradient), num_experts routed experts and
// num_shared_experts shared experts, each an FFN of base.ffn's kind and width expert_dim()
// (expert_d_ff, or base.ffn_dim() when 0). Each token goes through top_k routed experts and every
// shared expert (dropless routing: no token is dropped, none is padded).
//
// Attention is the base's (MHA/GQA/MQA, with its biases and qk_norm), or, when mla.kv_lora_rank is
// not 0, DeepSeek's Multi-head Latent Attention, counted as in DeepSeek-V2/V3's code: q_a_proj
// D·q_lora_rank, its RMSNorm q_lora_rank, q_b_proj q_lora_rank·H·(nope + rope) (or one q_proj
// D·H·(nope + rope) when q_lora_rank = 0); kv_a_proj_with_mqa D·(kv_lora_rank + rope), its
// RMSNorm kv_lora_rank; kv_b_proj kv_lora_rank·H·(nope + v); o_proj H·v·D. MLA's projections are
// never biased and base.qk_norm does not apply to it; its two norms are counted with the norms.
//
// Parameters: as nn/accounting.hpp counts them (a tied lm_head once). Active parameters, per
// token: everything except the routed experts a token does not use, i.e. top_k of num_experts per
// MoE layer; the token embedding is included. Published "active" figures differ on that: Mixtral's
// 12.9B includes it (12,879,925,248; without it 12.75B), DeepSeek's 37B leaves it out (36.6B
// without, 37.55B with; the same convention fits DeepSeek-V2's 21B and V2-Lite's 2.4B: 20.85B
// and 2.45B), hence moe_param_breakdown::active_non_embedding_input().
//
// FLOPs: 2·m·n·k per matrix product, as nn/accounting.hpp, with the MoE layers' products: the
// router D·E, top_k routed experts and every shared expert per token. Attention scores are
// 2·S·H·(qk head dim) and 2·S·H·(v head dim) per token per layer (the base: head_dim both), over
// the full S×S square unless flops_options::causal_savings. Gating, top-k, permutation and the
// weighted sum are element-wise and not counted. Training is 3 × forward.
//
// Activations kept for backward, per token, in elements: in every layer the block input D, the
// first norm's output D, the attention's tensors (base: q, k after RoPE D + kv_dim, v kv_dim, with
// qk_norm q and k before it D + kv_dim; MLA: the q latent and its norm 2·q_lora_rank when
// q_lora_rank ≠ 0, the kv latent with its RoPE key kv_lora_rank + rope and its norm kv_lora_rank,
// q and k H·(nope + rope) each, v H·v), the attention output (D, or H·v for MLA), the residual
// after attention D and the second norm's output D; the FFN: a dense one as nn/accounting.hpp
// (SwiGLU 3·F, MLP 2·F); an MoE one the router's probabilities E, for each of the top_k selected
// experts the gathered input D, its hidden state (3·Fe or 2·Fe) and its output D (the gate's
// gradient needs it), and each shared expert's hidden state. Per layer and sequence the attention
// probabilities H·S², and after the last layer 2·D + V, as in nn/accounting.hpp.
//
// Training memory: AdamW on all parameters (every expert has gradients and moments, whichever
// tokens it saw), as nn::training_memory.
#pragma once

#include <cstdint>
#include <string>

#include "einlm/nn/accounting.hpp"
#include "einlm/nn/config.hpp"

namespace einlm::nn {

/// Multi-head Latent Attention's ranks and head dimensions (DeepSeek-V2/V3). kv_lora_rank = 0:
/// ordinary attention (the base configuration's MHA/GQA).
struct mla_config {
  std::int64_t q_lora_rank = 0;       // 0: q projected directly from D
  std::int64_t kv_lora_rank = 0;      // 0: no MLA
  std::int64_t qk_nope_head_dim = 0;  // the part of a q/k head without RoPE
  std::int64_t qk_rope_head_dim = 0;  // the part with RoPE (the key's is shared by all heads)
  std::int64_t v_head_dim = 0;

  constexpr bool enabled() const { return kv_lora_rank != 0; }
  constexpr std::int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }

  friend constexpr bool operator==(const mla_config&, const mla_config&) = default;
};

/// A mixture-of-experts transformer: the dense shape `base`, whose FFNs past first_dense_layers
/// are (every moe_layer_step-th) MoE FFNs. num_experts = 0 is the dense model.
struct moe_config {
  transformer_config base;
  std::int64_t num_experts = 0;         // routed experts per MoE layer; 0: dense
  std::int64_t top_k = 1;               // routed experts per token
  std::int64_t num_shared_experts = 0;  // experts every token goes through
  std::int64_t expert_d_ff = 0;         // hidden width of each expert; 0: base.ffn_dim()
  std::int64_t first_dense_layers = 0;  // leading layers with a dense FFN of base.ffn_dim()
  std::int64_t moe_layer_step = 1;      // 1: every later layer is MoE; 2: every second one
  router_kind router = router_kind::softmax;  // sigmoid: with E selection biases (DeepSeek-V3)
  mla_config mla = {};
  // Training settings (they change no count here; nn/moe.hpp and the trainer read them).
  double capacity_factor = 0.0;    // 0: dropless; c > 0: at most ⌈c·N·top_k / E⌉ slots per expert
  double aux_loss_coef = 0.01;     // the Switch load-balancing loss's coefficient α
  double z_loss_coef = 1e-3;       // the ST-MoE router z-loss's coefficient
  double seq_aux_loss_coef = 0.0;  // DeepSeek-V3's sequence-wise balance loss's coefficient
  double bias_update_rate = 0.0;   // γ of the selection-bias update (sigmoid router)

  /// Whether the router has E selection biases (the sigmoid router's).
  constexpr bool router_bias() const { return router == router_kind::sigmoid; }

  constexpr std::int64_t expert_dim() const {
    return expert_d_ff != 0 ? expert_d_ff : base.ffn_dim();
  }
  /// Layers whose FFN is an MoE: (num_layers − first_dense_layers) / moe_layer_step.
  constexpr std::int64_t moe_layers() const {
    if (num_experts == 0 || moe_layer_step <= 0 || base.num_layers <= first_dense_layers) return 0;
    return (base.num_layers - first_dense_layers) / moe_layer_step;
  }
  constexpr std::int64_t dense_layers() const { return base.num_layers - moe_layers(); }
  /// Whether layer i (from 0) has an MoE FFN.
  constexpr bool is_moe_layer(std::int64_t i) const {
    if (num_experts == 0 || moe_layer_step <= 0 || i < first_dense_layers) return false;
    return (i - first_dense_layers) % moe_layer_step == moe_layer_step - 1;
  }

  /// The first problem with this configuration, or an empty string.
  std::string problem() const {
    if (auto p = base.problem(); !p.empty()) return p;
    using einlm::detail::concat;
    if (num_experts < 0) return concat("num_experts must not be negative, got ", num_experts);
    if (num_experts > 0 && (top_k < 1 || top_k > num_experts))
      return concat("top_k must be in [1, num_experts = ", num_experts, "], got ", top_k);
    if (num_shared_experts < 0)
      return concat("num_shared_experts must not be negative, got ", num_shared_experts);
    if (expert_d_ff < 0) return concat("expert_d_ff must not be negative, got ", expert_d_ff);
    if (first_dense_layers < 0 || first_dense_layers > base.num_layers)
      return concat("first_dense_layers must be in [0, num_layers = ", base.num_layers, "], got ",
                    first_dense_layers);
    if (moe_layer_step < 1) return concat("moe_layer_step must be positive, got ", moe_layer_step);
    if (!(capacity_factor >= 0)) return concat("capacity_factor must not be negative, got ", capacity_factor);
    if (!(aux_loss_coef >= 0)) return concat("aux_loss_coef must not be negative, got ", aux_loss_coef);
    if (!(z_loss_coef >= 0)) return concat("z_loss_coef must not be negative, got ", z_loss_coef);
    if (!(seq_aux_loss_coef >= 0)) return concat("seq_aux_loss_coef must not be negative, got ", seq_aux_loss_coef);
    if (!(bias_update_rate >= 0)) return concat("bias_update_rate must not be negative, got ", bias_update_rate);
    if (bias_update_rate != 0 && router != router_kind::sigmoid)
      return concat("bias_update_rate applies to the sigmoid router only, got ", bias_update_rate,
                    " with the softmax router");
    if (mla.enabled()) {
      if (mla.kv_lora_rank < 0 || mla.q_lora_rank < 0 || mla.qk_nope_head_dim < 0 ||
          mla.qk_rope_head_dim < 0 || mla.v_head_dim <= 0 || mla.qk_head_dim() <= 0)
        return "mla: ranks and head dimensions must not be negative, and qk and v heads not empty";
      if (base.positions == position_kind::rope && mla.qk_rope_head_dim % 2 != 0)
        return concat("mla.qk_rope_head_dim = ", mla.qk_rope_head_dim,
                      " is odd; RoPE rotates pairs and needs it even");
    } else if (mla.q_lora_rank != 0 || mla.qk_nope_head_dim != 0 || mla.qk_rope_head_dim != 0 ||
               mla.v_head_dim != 0) {
      return "mla: kv_lora_rank is 0 (no MLA) but other MLA fields are set";
    }
    return {};
  }

  /// Throws config_error naming the first inconsistent field.
  void validate() const {
    if (auto p = problem(); !p.empty()) throw config_error("moe_config: " + p);
  }

  friend constexpr bool operator==(const moe_config&, const moe_config&) = default;
};

// ---------------------------------------------------------------------------------------------
// Parameters

/// Parameter counts of a moe_config by component, each summed over all layers.
struct moe_param_breakdown {
  std::int64_t token_embedding = 0;        // V·D
  std::int64_t position_embedding = 0;     // context·D for learned positions
  std::int64_t attention = 0;              // all layers' attention projections (+ biases)
  std::int64_t dense_ffn = 0;              // the FFNs of the dense layers
  std::int64_t routed_experts = 0;         // every routed expert of every MoE layer
  std::int64_t active_routed_experts = 0;  // top_k routed experts per MoE layer
  std::int64_t shared_experts = 0;
  std::int64_t routers = 0;  // D·E (+ E selection biases) per MoE layer
  std::int64_t norms = 0;    // block norms, qk_norm / MLA norms, the final norm
  std::int64_t lm_head = 0;  // V·D, or 0 when tied
  std::int64_t dense_layers = 0;
  std::int64_t moe_layers = 0;

  constexpr std::int64_t embeddings() const {
    return token_embedding + position_embedding + lm_head;
  }
  constexpr std::int64_t total() const {
    return embeddings() + attention + dense_ffn + routed_experts + shared_experts + routers + norms;
  }
  /// Per token: all but the routed experts that are not selected.
  constexpr std::int64_t active() const { return total() - routed_experts + active_routed_experts; }
  /// Kaplan et al.'s N: all but the token embedding, the position table and an untied lm_head.
  constexpr std::int64_t non_embedding() const { return total() - embeddings(); }
  /// Active parameters without the input tables (token embedding, position table), which are read,
  /// not multiplied: DeepSeek's convention for "activated parameters".
  constexpr std::int64_t active_non_embedding_input() const {
    return active() - token_embedding - position_embedding;
  }
};

namespace detail {

constexpr std::int64_t norm_params(const transformer_config& c, std::int64_t width) {
  return c.norm == norm_kind::layer_norm ? 2 * width : width;
}

/// One FFN of width F of the base's kind (SwiGLU: 3·D·F; MLP: 2·D·F + biases F + D).
constexpr std::int64_t ffn_params(const transformer_config& c, std::int64_t F) {
  const std::int64_t D = c.d_model;
  return c.ffn == ffn_kind::swiglu ? 3 * D * F : 2 * D * F + (c.linear_bias ? F + D : 0);
}

/// One layer's attention projections.
constexpr std::int64_t attention_params(const moe_config& m) {
  const transformer_config& c = m.base;
  const std::int64_t D = c.d_model, H = c.num_heads;
  if (!m.mla.enabled()) {
    const std::int64_t kv_dim = c.kv_heads() * c.head_dim();
    return 2 * D * D + 2 * D * kv_dim + (c.linear_bias ? 2 * D + 2 * kv_dim : 0);
  }
  const mla_config& a = m.mla;
  const std::int64_t q = a.q_lora_rank != 0
                             ? D * a.q_lora_rank + a.q_lora_rank * H * a.qk_head_dim()
                             : D * H * a.qk_head_dim();
  const std::int64_t kv = D * (a.kv_lora_rank + a.qk_rope_head_dim) +
                          a.kv_lora_rank * H * (a.qk_nope_head_dim + a.v_head_dim);
  return q + kv + H * a.v_head_dim * D;
}

/// One layer's norms: the two block norms and qk_norm's or MLA's.
constexpr std::int64_t layer_norm_params(const moe_config& m) {
  const transformer_config& c = m.base;
  std::int64_t n = 2 * norm_params(c, c.d_model);
  if (m.mla.enabled())
    n += norm_params(c, m.mla.kv_lora_rank) +
         (m.mla.q_lora_rank != 0 ? norm_params(c, m.mla.q_lora_rank) : 0);
  else if (c.qk_norm)
    n += 2 * c.head_dim();
  return n;
}

}  // namespace detail

constexpr moe_param_breakdown moe_param_counts(const moe_config& m) {
  const transformer_config& c = m.base;
  const std::int64_t D = c.d_model, V = c.vocab_size, L = c.num_layers;
  const std::int64_t expert = detail::ffn_params(c, m.expert_dim());
  moe_param_breakdown p;
  p.moe_layers = m.moe_layers();
  p.dense_layers = L - p.moe_layers;
  p.token_embedding = V * D;
  p.position_embedding = c.positions == position_kind::learned ? c.context_length * D : 0;
  p.attention = L * detail::attention_params(m);
  p.dense_ffn = p.dense_layers * detail::ffn_params(c, c.ffn_dim());
  p.routed_experts = p.moe_layers * m.num_experts * expert;
  p.active_routed_experts = p.moe_layers * m.top_k * expert;
  p.shared_experts = p.moe_layers * m.num_shared_experts * expert;
  p.routers = p.moe_layers * (D * m.num_experts + (m.router_bias() ? m.num_experts : 0));
  p.norms = L * detail::layer_norm_params(m) + detail::norm_params(c, D);
  p.lm_head = c.tied_embeddings ? 0 : V * D;
  return p;
}

/// All parameters, every expert included, a tied lm_head once.
constexpr std::int64_t moe_param_count(const moe_config& m) { return moe_param_counts(m).total(); }

/// Parameters a token goes through: all but the num_experts − top_k unselected routed experts of
/// each MoE layer (the token embedding included).
constexpr std::int64_t moe_active_param_count(const moe_config& m) {
  return moe_param_counts(m).active();
}

// ---------------------------------------------------------------------------------------------
// FLOPs

/// Forward-pass FLOPs of a batch by component (2·m·n·k per product), all layers summed.
struct moe_flops_breakdown {
  double attention_projections = 0;
  double attention_scores = 0;  // Q·Kᵀ and probabilities·V
  double dense_ffn = 0;         // the dense layers' FFNs
  double routed_experts = 0;    // top_k experts per token per MoE layer
  double shared_experts = 0;
  double routers = 0;  // the D × E router product
  double lm_head = 0;

  constexpr double total() const {
    return attention_projections + attention_scores + dense_ffn + routed_experts + shared_experts +
           routers + lm_head;
  }
};

constexpr moe_flops_breakdown moe_flops_forward_counts(const moe_config& m, std::int64_t batch,
                                                       std::int64_t seq,
                                                       const flops_options& opt = {}) {
  const transformer_config& c = m.base;
  const double D = double(c.d_model), V = double(c.vocab_size), H = double(c.num_heads);
  const double L = double(c.num_layers), T = double(batch) * double(seq), S = double(seq);
  const double moe_layers = double(m.moe_layers()), dense_layers = L - moe_layers;
  const double products = c.ffn == ffn_kind::swiglu ? 3 : 2;
  // Weights taking part in products, biases left out (counted as element-wise work).
  const double ffn_weights = products * D * double(c.ffn_dim());
  const double expert_weights = products * D * double(m.expert_dim());
  double attention_weights = 0, qk_dim = 0, v_dim = 0;
  if (m.mla.enabled()) {
    attention_weights = double(detail::attention_params(m));  // never biased
    qk_dim = double(m.mla.qk_head_dim());
    v_dim = double(m.mla.v_head_dim);
  } else {
    attention_weights = 2 * D * D + 2 * D * double(c.kv_heads() * c.head_dim());
    qk_dim = v_dim = double(c.head_dim());
  }
  moe_flops_breakdown f;
  f.attention_projections = L * 2 * T * attention_weights;
  f.attention_scores = L * 2 * T * S * H * (qk_dim + v_dim) * (opt.causal_savings ? 0.5 : 1.0);
  f.dense_ffn = dense_layers * 2 * T * ffn_weights;
  f.routed_experts = moe_layers * double(m.top_k) * 2 * T * expert_weights;
  f.shared_experts = moe_layers * double(m.num_shared_experts) * 2 * T * expert_weights;
  f.routers = moe_layers * 2 * T * D * double(m.num_experts);
  f.lm_head = 2 * T * D * V;
  return f;
}

/// Forward-pass FLOPs of `batch` sequences of `seq` tokens, each token through its top_k experts.
constexpr double moe_flops_forward(const moe_config& m, std::int64_t batch, std::int64_t seq,
                                   const flops_options& opt = {}) {
  return moe_flops_forward_counts(m, batch, seq, opt).total();
}

/// Training FLOPs (forward + backward = 3 × forward) per token at sequence length `seq`:
/// 6·N_active (without the input tables) plus the attention term.
constexpr double moe_flops_per_token(const moe_config& m, std::int64_t seq,
                                     const flops_options& opt = {}) {
  return 3 * moe_flops_forward(m, 1, seq, opt) / double(seq);
}

/// Training FLOPs for `tokens` tokens in sequences of `seq`.
constexpr double moe_training_flops(const moe_config& m, double tokens, std::int64_t seq,
                                    const flops_options& opt = {}) {
  return moe_flops_per_token(m, seq, opt) * tokens;
}

// ---------------------------------------------------------------------------------------------
// Memory

/// Elements of activations kept for backward (see the list at the top of this file).
constexpr std::int64_t moe_activation_elements(const moe_config& m, std::int64_t batch,
                                               std::int64_t seq) {
  const transformer_config& c = m.base;
  const std::int64_t D = c.d_model, V = c.vocab_size, H = c.num_heads, T = batch * seq;
  const std::int64_t hidden = c.ffn == ffn_kind::swiglu ? 3 : 2;
  std::int64_t attention = 0;
  if (m.mla.enabled()) {
    const mla_config& a = m.mla;
    attention = (a.q_lora_rank != 0 ? 2 * a.q_lora_rank : 0)  // q latent, its norm
                + a.kv_lora_rank + a.qk_rope_head_dim         // kv latent, RoPE key
                + a.kv_lora_rank                              // its norm
                + 2 * H * a.qk_head_dim() + H * a.v_head_dim  // q, k, v
                + H * a.v_head_dim;                           // attention output
  } else {
    const std::int64_t kv_dim = c.kv_heads() * c.head_dim();
    attention = D + 2 * kv_dim                  // q, k (after RoPE), v
                + (c.qk_norm ? D + kv_dim : 0)  // q, k before qk_norm
                + D;                            // attention output
  }
  const std::int64_t common = D + D + attention + D + D;  // block input, norms, residual
  const std::int64_t dense_ffn = hidden * c.ffn_dim();
  const std::int64_t Fe = m.expert_dim();
  const std::int64_t moe_ffn = m.num_experts                          // router probabilities
                               + m.top_k * (D + hidden * Fe + D)      // selected experts
                               + m.num_shared_experts * hidden * Fe;  // shared experts
  const std::int64_t moe_layers = m.moe_layers(), dense_layers = c.num_layers - moe_layers;
  const std::int64_t probabilities = batch * H * seq * seq;
  return c.num_layers * (T * common + probabilities) + dense_layers * T * dense_ffn +
         moe_layers * T * moe_ffn + T * (2 * D + V);
}

constexpr std::int64_t moe_activation_bytes(const moe_config& m, std::int64_t batch,
                                            std::int64_t seq, std::int64_t bytes_per_element) {
  return moe_activation_elements(m, batch, seq) * bytes_per_element;
}

/// Bytes needed to train with AdamW: every parameter has a gradient and moments.
constexpr memory_breakdown moe_training_memory(const moe_config& m, std::int64_t batch,
                                               std::int64_t seq, precision p = precision::fp32) {
  const std::int64_t n = moe_param_count(m);
  const std::int64_t width = p == precision::fp32 ? 4 : 2;
  memory_breakdown r;
  r.params = width * n;
  r.grads = width * n;
  r.optimizer_state = (p == precision::fp32 ? 8 : 12) * n;
  r.activations = moe_activation_bytes(m, batch, seq, width);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Presets

namespace presets {

/// A decoder-only model with Switch-Base's layer shapes (Fedus et al. 2021; HF
/// google/switch-base-E): D 768, 12 heads, ReLU MLP of 3072 without biases (counted as gelu_mlp),
/// T5's vocabulary of 32128, tied embeddings, RMSNorm, 12 layers of which every second has an MoE
/// of `num_experts` experts (8 … 256) with top-1 routing. Switch-Base itself is an
/// encoder-decoder (24 layers, cross-attention, relative position biases): its published totals
/// (619M for 8 experts, 7.4B for 128) are not this model's. Positions: RoPE, no parameters.
constexpr moe_config switch_base(std::int64_t num_experts) {
  return {.base = {.vocab_size = 32128,
                   .context_length = 512,
                   .d_model = 768,
                   .num_layers = 12,
                   .num_heads = 12,
                   .d_ff = 3072,
                   .norm_eps = 1e-6,
                   .tied_embeddings = true,
                   .ffn = ffn_kind::gelu_mlp},
          .num_experts = num_experts,
          .top_k = 1,
          .moe_layer_step = 2};
}

/// Mixtral 8×7B (Jiang et al. 2024; HF mistralai/Mixtral-8x7B-v0.1): Mistral 7B's shape — 32
/// layers, D 4096, 32 heads sharing 8 key/value heads, RoPE θ = 1e6, RMSNorm, untied — with every
/// FFN an MoE of 8 SwiGLU experts of 14336, top-2, softmax router without bias.
/// 46,702,792,704 parameters, 12,879,925,248 active.
constexpr moe_config mixtral_8x7b() {
  return {.base = {.vocab_size = 32000,
                   .context_length = 32768,
                   .d_model = 4096,
                   .num_layers = 32,
                   .num_heads = 32,
                   .num_kv_heads = 8,
                   .d_ff = 14336,
                   .rope_theta = 1e6,
                   .tied_embeddings = false},
          .num_experts = 8,
          .top_k = 2,
          .expert_d_ff = 14336};
}

/// DeepSeek-V3 (DeepSeek-AI 2024, arXiv:2412.19437; HF deepseek-ai/DeepSeek-V3 config.json): 61
/// layers, D 7168, 128 heads of MLA (q rank 1536, kv rank 512, qk heads 128 + 64 RoPE, v heads
/// 128), the first 3 layers dense with SwiGLU 18432, the other 58 with 256 routed SwiGLU experts
/// of 2048, 1 shared expert, top-8, sigmoid router with selection bias; RMSNorm, untied,
/// vocabulary 129280. The multi-token-prediction module (layer 61 of the checkpoint, 14B, used in
/// training only) is not included: 671,026,419,200 parameters (the published 671B),
/// 37,552,297,472 active, 36,625,618,432 without the token embedding (the published 37B).
constexpr moe_config deepseek_v3() {
  return {.base = {.vocab_size = 129280,
                   .context_length = 163840,
                   .d_model = 7168,
                   .num_layers = 61,
                   .num_heads = 128,
                   .d_ff = 18432,
                   .norm_eps = 1e-6,
                   .tied_embeddings = false},
          .num_experts = 256,
          .top_k = 8,
          .num_shared_experts = 1,
          .expert_d_ff = 2048,
          .first_dense_layers = 3,
          .router = router_kind::sigmoid,
          .mla = {.q_lora_rank = 1536,
                  .kv_lora_rank = 512,
                  .qk_nope_head_dim = 128,
                  .qk_rope_head_dim = 64,
                  .v_head_dim = 128}};
}

}  // namespace presets

// ---------------------------------------------------------------------------------------------
// Report

namespace detail {

inline std::string describe(const moe_config& m) {
  const transformer_config& c = m.base;
  std::string s = "V " + std::to_string(c.vocab_size) + ", ctx " +
                  std::to_string(c.context_length) + ", D " + std::to_string(c.d_model) + ", " +
                  std::to_string(c.num_layers) + " layers, " + std::to_string(c.num_heads) +
                  " heads";
  if (m.mla.enabled()) {
    s += ", MLA (q rank " + std::to_string(m.mla.q_lora_rank) + ", kv rank " +
         std::to_string(m.mla.kv_lora_rank) + ", qk head " +
         std::to_string(m.mla.qk_nope_head_dim) + "+" + std::to_string(m.mla.qk_rope_head_dim) +
         ", v head " + std::to_string(m.mla.v_head_dim) + ")";
  } else {
    if (c.kv_heads() != c.num_heads) s += " (" + std::to_string(c.kv_heads()) + " kv)";
    s += ", head dim " + std::to_string(c.head_dim());
  }
  s += "\n  ";
  if (m.moe_layers() == 0) {
    s += "dense, d_ff " + std::to_string(c.ffn_dim());
  } else {
    if (m.dense_layers() != 0)
      s += std::to_string(m.dense_layers()) +
           (m.dense_layers() == 1 ? " dense layer (d_ff " : " dense layers (d_ff ") +
           std::to_string(c.ffn_dim()) + "), ";
    s += std::to_string(m.moe_layers()) + (m.moe_layers() == 1 ? " MoE layer: " : " MoE layers: ") +
         std::to_string(m.num_experts) + " experts of d_ff " + std::to_string(m.expert_dim()) +
         ", top-" + std::to_string(m.top_k);
    if (m.num_shared_experts != 0) s += ", " + std::to_string(m.num_shared_experts) + " shared";
    if (m.router_bias()) s += ", selection bias";
  }
  s += "\n  ";
  s += c.ffn == ffn_kind::swiglu ? "SwiGLU" : "MLP";
  s += c.positions == position_kind::rope ? ", RoPE" : ", learned positions";
  s += c.norm == norm_kind::rms_norm ? ", RMSNorm" : ", LayerNorm";
  if (c.qk_norm && !m.mla.enabled()) s += ", qk_norm";
  if (c.linear_bias) s += ", biases";
  s += c.tied_embeddings ? ", tied lm_head" : ", untied lm_head";
  return s + "\n";
}

}  // namespace detail

/// A table of total and active parameters, memory (bf16 weights; AdamW training on `batch`
/// sequences of `seq` tokens) and FLOPs per token for one MoE model. Training FLOPs and time are
/// printed only when opt.tokens is set (no tokens-per-parameter rule is assumed for MoE models).
inline std::string moe_report(const moe_config& m, std::int64_t batch, std::int64_t seq,
                              const report_options& opt = {}) {
  using namespace detail;
  // Wider than report()'s rows: counts of hundreds of billions with commas.
  const auto row = [](const std::string& label, const std::string& a, const std::string& b = {}) {
    std::string line = "  " + pad(label, 40) + pad(a, 12, true);
    if (!b.empty()) line += pad(b, 18, true);
    return line + "\n";
  };
  const moe_param_breakdown p = moe_param_counts(m);
  const auto layers_text = [](std::int64_t n) {
    return std::to_string(n) + (n == 1 ? " layer" : " layers");
  };
  const std::string layers = layers_text(p.moe_layers);
  std::string out = "  " + describe(m);

  out += "parameters\n";
  out += row("total", human_count(double(p.total())), with_commas(p.total()));
  out += row("active per token", human_count(double(p.active())), with_commas(p.active()));
  out += row("active without the token embedding",
             human_count(double(p.active_non_embedding_input())));
  out += row("token embedding", human_count(double(p.token_embedding)));
  if (p.position_embedding != 0)
    out += row("position embedding", human_count(double(p.position_embedding)));
  out +=
      row("attention (" + layers_text(m.base.num_layers) + ")", human_count(double(p.attention)));
  if (p.dense_ffn != 0)
    out += row("dense FFN (" + layers_text(p.dense_layers) + ")", human_count(double(p.dense_ffn)));
  if (p.moe_layers != 0) {
    out += row("routed experts (" + layers + ")", human_count(double(p.routed_experts)));
    out += row("  of which active (top-" + std::to_string(m.top_k) + ")",
               human_count(double(p.active_routed_experts)));
    if (p.shared_experts != 0)
      out += row("shared experts (" + layers + ")", human_count(double(p.shared_experts)));
    out += row("routers (" + layers + ")", human_count(double(p.routers)));
  }
  out += row("norms", human_count(double(p.norms)));
  out += row("lm_head", p.lm_head == 0 ? std::string("tied") : human_count(double(p.lm_head)));

  const memory_breakdown m32 = moe_training_memory(m, batch, seq, precision::fp32);
  const memory_breakdown m16 = moe_training_memory(m, batch, seq, precision::bf16_mixed);
  out += "memory\n";
  out += row("bf16 weights (inference)", human_bytes(2.0 * double(p.total())));
  out += row("bf16 active weights per token", human_bytes(2.0 * double(p.active())));
  out += "training memory, AdamW (batch " + std::to_string(batch) + " x seq " +
         std::to_string(seq) + ")\n";
  out += row("", "fp32", "bf16 mixed");
  out += row("parameters", human_bytes(double(m32.params)), human_bytes(double(m16.params)));
  out += row("gradients", human_bytes(double(m32.grads)), human_bytes(double(m16.grads)));
  out += row("optimizer state", human_bytes(double(m32.optimizer_state)),
             human_bytes(double(m16.optimizer_state)));
  out += row("activations", human_bytes(double(m32.activations)),
             human_bytes(double(m16.activations)));
  out += row("total", human_bytes(double(m32.total())), human_bytes(double(m16.total())));

  const moe_flops_breakdown f = moe_flops_forward_counts(m, 1, seq, opt.flops);
  const double per_token = moe_flops_per_token(m, seq, opt.flops);
  out += "FLOPs (seq " + std::to_string(seq) +
         (opt.flops.causal_savings ? ", causal savings" : "") + ")\n";
  out += row("forward per token", human_flops(f.total() / double(seq)));
  out += row("  experts and routers",
             human_flops((f.routed_experts + f.shared_experts + f.routers) / double(seq)));
  out += row("training per token (6N_active = " +
                 human_flops(6 * double(p.active_non_embedding_input())) + ")",
             human_flops(per_token));
  if (opt.tokens > 0) {
    const double train = per_token * opt.tokens;
    out += row("training, " + human_count(opt.tokens) + " tokens", human_flops(train));
    out += row("time at " + format("%.0f", opt.mfu * 100) + "% MFU of " +
                   format("%.0f", opt.peak_flops / 1e12) + " TFLOP/s",
               human_time(train / (opt.peak_flops * opt.mfu)));
  }
  return out;
}

}  // namespace einlm::nn
