// einlm/nn/accounting.hpp — what a decoder-only transformer costs: parameters, FLOPs, memory
// (CS336 lecture 2), computed from its transformer_config alone.
//
//   constexpr auto cfg = nn::presets::gpt2_small();
//   static_assert(nn::param_count(cfg) == 124'439'808);
//   std::cout << nn::report(cfg, /*batch=*/8, /*seq=*/1024);
//
// Contract: every function except report() is constexpr and pure arithmetic on the configuration,
// so it can be evaluated in a static_assert or a `static constexpr` member of a model type
// `template <transformer_config C>`. Nothing here validates the configuration; call
// cfg.validate() first when it comes from outside.
//
// Parameters (param_counts): token embedding V·D; learned position table context·D (positions ==
// learned); per layer q_proj and output_proj D·D each, k_proj and v_proj D·(kv_heads·head_dim)
// each, plus their biases when linear_bias; the feed-forward network (SwiGLU: w1, w3 D·F and w2
// F·D, never biased; GELU MLP: fc1 D·F, fc2 F·D, plus F + D biases when linear_bias); two norms
// of D gains each (LayerNorm: plus D biases each); qk_norm: two gains of head_dim; the final norm;
// lm_head V·D unless tied (never biased). A tied lm_head is counted once, as HF's
// num_parameters() does, and the position table is included: GPT-2 small is 124,439,808.
// "Non-embedding" (Kaplan et al.) leaves out the token embedding, the position table and an
// untied lm_head.
//
// FLOPs: 2·m·n·k for every matrix product — the q/k/v/output projections, the attention scores
// Q·Kᵀ and probabilities·V, the feed-forward products and lm_head. Element-wise work (norms,
// RoPE, softmax, activations, biases, residual adds, the embedding lookup, the loss) is not
// counted: it is O(B·S·D) against O(B·S·D²) and memory-bound anyway. The two attention products
// are counted over the full S×S square (Chinchilla's appendix F convention, the default);
// flops_options::causal_savings halves them, as a causal kernel that skips the masked half does.
// The backward pass costs twice the forward (a gradient for the input and one for the weight per
// product), so training is 3 × forward — 6·N per token plus the attention term, with N the
// weights that take part in a product (embedding and position tables do not; a tied lm_head
// does). FLOPs are doubles: GPT-2 XL trained on 20 tokens per parameter is 2.9e20, beyond 64-bit
// integers; doubles are exact up to 2^53 ≈ 9e15, which covers every count of a small model.
//
// Activations (activation_bytes) — what a straightforward implementation keeps for backward, in
// elements, then multiplied by bytes_per_element. Per layer, per token:
//   the block input (residual stream, input of the first norm)  D
//   the first norm's output (input of q/k/v projections)         D
//   q and k after RoPE, v                                        D + 2·kv_heads·head_dim
//   q and k before qk_norm (only when qk_norm)                   D + kv_heads·head_dim
//   the attention output, heads concatenated (output_proj input) D
//   the residual after attention (input of the second norm)      D
//   the second norm's output (input of the FFN)                  D
//   FFN hidden: SwiGLU w1·x, w3·x and silu(w1·x)⊙w3·x            3·F
//               GELU MLP fc1·x and gelu(fc1·x)                   2·F
// plus, per layer and sequence, the attention probabilities B·num_heads·S² (the scores before
// softmax are not kept: softmax's backward needs only its output). After the last layer: the
// final norm's input D and output D, and the logits V per token (the loss's softmax is taken in
// place). Not counted: masks, RoPE tables, the token ids, temporary workspace.
//
// Training memory (training_memory): AdamW with two fp32 moments per parameter. fp32: parameters,
// gradients and activations in fp32 (4 + 4 + 8 bytes per parameter). bf16 mixed precision: bf16
// parameters, gradients and activations, plus fp32 master weights alongside the moments
// (2 + 2 + 12 bytes per parameter).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include "einlm/nn/config.hpp"

namespace einlm::nn {

// ---------------------------------------------------------------------------------------------
// Parameters

/// Parameter counts of a transformer_config by component; the per-layer fields are for one layer.
struct param_breakdown {
  std::int64_t token_embedding = 0;      // V·D
  std::int64_t position_embedding = 0;   // context·D for learned positions, else 0
  std::int64_t attention_per_layer = 0;  // q, k, v, output projections (+ biases)
  std::int64_t ffn_per_layer = 0;        // w1, w2, w3 or fc1, fc2 (+ biases)
  std::int64_t norms_per_layer = 0;      // two block norms (+ LayerNorm biases), qk_norm gains
  std::int64_t final_norm = 0;           // D (+ D for LayerNorm)
  std::int64_t lm_head = 0;              // V·D, or 0 when tied to the token embedding
  std::int64_t num_layers = 0;

  constexpr std::int64_t per_layer() const {
    return attention_per_layer + ffn_per_layer + norms_per_layer;
  }
  constexpr std::int64_t attention() const { return num_layers * attention_per_layer; }
  constexpr std::int64_t ffn() const { return num_layers * ffn_per_layer; }
  /// Every norm's parameters: the blocks' (with qk_norm) and the final one.
  constexpr std::int64_t norms() const { return num_layers * norms_per_layer + final_norm; }
  constexpr std::int64_t embeddings() const {
    return token_embedding + position_embedding + lm_head;
  }
  constexpr std::int64_t total() const {
    return embeddings() + num_layers * per_layer() + final_norm;
  }
  /// Kaplan et al.'s N: everything but the token embedding, the position table and an untied
  /// lm_head.
  constexpr std::int64_t non_embedding() const { return total() - embeddings(); }
};

constexpr param_breakdown param_counts(const transformer_config& c) {
  const std::int64_t D = c.d_model, V = c.vocab_size, F = c.ffn_dim();
  const std::int64_t kv_dim = c.kv_heads() * c.head_dim();
  const bool bias = c.linear_bias;
  const std::int64_t norm_params = c.norm == norm_kind::layer_norm ? 2 * D : D;
  param_breakdown p;
  p.num_layers = c.num_layers;
  p.token_embedding = V * D;
  p.position_embedding = c.positions == position_kind::learned ? c.context_length * D : 0;
  p.attention_per_layer = 2 * D * D + 2 * D * kv_dim + (bias ? 2 * D + 2 * kv_dim : 0);
  p.ffn_per_layer = c.ffn == ffn_kind::swiglu ? 3 * D * F : 2 * D * F + (bias ? F + D : 0);
  p.norms_per_layer = 2 * norm_params + (c.qk_norm ? 2 * c.head_dim() : 0);
  p.final_norm = norm_params;
  p.lm_head = c.tied_embeddings ? 0 : V * D;
  return p;
}

/// All parameters, a tied lm_head counted once (HF's num_parameters()).
constexpr std::int64_t param_count(const transformer_config& c) { return param_counts(c).total(); }

constexpr std::int64_t non_embedding_param_count(const transformer_config& c) {
  return param_counts(c).non_embedding();
}

// ---------------------------------------------------------------------------------------------
// FLOPs

struct flops_options {
  /// Count the attention products Q·Kᵀ and probabilities·V over half the S×S square, as a causal
  /// kernel that skips masked tiles does. Off by default: the full square, as Chinchilla counts.
  bool causal_savings = false;
};

/// Forward-pass FLOPs of a batch by component (2·m·n·k per product), all layers summed.
struct flops_breakdown {
  double attention_projections = 0;  // q, k, v, output projections
  double attention_scores = 0;       // Q·Kᵀ and probabilities·V
  double ffn = 0;
  double lm_head = 0;

  constexpr double total() const {
    return attention_projections + attention_scores + ffn + lm_head;
  }
};

constexpr flops_breakdown flops_forward_counts(const transformer_config& c, std::int64_t batch,
                                               std::int64_t seq, const flops_options& opt = {}) {
  const double D = double(c.d_model), V = double(c.vocab_size), F = double(c.ffn_dim());
  const double kv_dim = double(c.kv_heads() * c.head_dim());
  const double L = double(c.num_layers), T = double(batch) * double(seq), S = double(seq);
  const double ffn_products = c.ffn == ffn_kind::swiglu ? 3 : 2;
  flops_breakdown f;
  f.attention_projections = L * 2 * T * (2 * D * D + 2 * D * kv_dim);
  // Per head: (S × hd)·(hd × S) and (S × S)·(S × hd), 2·S·S·hd FLOPs each; heads · hd = D.
  f.attention_scores = L * 2 * (2 * T * S * D) * (opt.causal_savings ? 0.5 : 1.0);
  f.ffn = L * ffn_products * 2 * T * D * F;
  f.lm_head = 2 * T * D * V;
  return f;
}

/// Forward-pass FLOPs of a batch of `batch` sequences of `seq` tokens.
constexpr double flops_forward(const transformer_config& c, std::int64_t batch, std::int64_t seq,
                               const flops_options& opt = {}) {
  return flops_forward_counts(c, batch, seq, opt).total();
}

/// Backward-pass FLOPs: two products (input gradient, weight gradient) per forward product.
constexpr double flops_backward(const transformer_config& c, std::int64_t batch, std::int64_t seq,
                                const flops_options& opt = {}) {
  return 2 * flops_forward(c, batch, seq, opt);
}

/// Training FLOPs (forward + backward) per token at sequence length `seq`: 6·N_matmul + the
/// attention term 12·num_layers·seq·d_model (half that with causal_savings).
constexpr double flops_per_token(const transformer_config& c, std::int64_t seq,
                                 const flops_options& opt = {}) {
  return 3 * flops_forward(c, 1, seq, opt) / double(seq);
}

/// Training FLOPs for `tokens` tokens in sequences of `seq`: flops_per_token · tokens.
constexpr double training_flops(const transformer_config& c, double tokens, std::int64_t seq,
                                const flops_options& opt = {}) {
  return flops_per_token(c, seq, opt) * tokens;
}

// ---------------------------------------------------------------------------------------------
// Memory

/// Elements of activations kept for backward (see the list at the top of this file).
constexpr std::int64_t activation_elements(const transformer_config& c, std::int64_t batch,
                                           std::int64_t seq) {
  const std::int64_t D = c.d_model, V = c.vocab_size, F = c.ffn_dim();
  const std::int64_t kv_dim = c.kv_heads() * c.head_dim();
  const std::int64_t T = batch * seq;
  const std::int64_t per_token = D                               // block input
                                 + D                             // first norm output
                                 + D + 2 * kv_dim                // q, k (after RoPE), v
                                 + (c.qk_norm ? D + kv_dim : 0)  // q, k before qk_norm
                                 + D                             // attention output
                                 + D                             // residual after attention
                                 + D                             // second norm output
                                 + (c.ffn == ffn_kind::swiglu ? 3 * F : 2 * F);
  const std::int64_t per_layer = T * per_token + batch * c.num_heads * seq * seq;
  return c.num_layers * per_layer + T * (2 * D + V);
}

/// Bytes of activations kept for backward when stored at bytes_per_element.
constexpr std::int64_t activation_bytes(const transformer_config& c, std::int64_t batch,
                                        std::int64_t seq, std::int64_t bytes_per_element) {
  return activation_elements(c, batch, seq) * bytes_per_element;
}

/// What attention keeps for its backward pass: its probabilities (B·H·S² per layer, the
/// straightforward way), or only the row log-sum-exp of its scores (B·H·S per layer; the
/// backward pass recomputes the probabilities — FlashAttention's way, and nn::transformer_lm's).
enum class attention_activations : std::uint8_t { probabilities, log_sum_exp };

/// activation_elements with the given attention activations.
constexpr std::int64_t activation_elements(const transformer_config& c, std::int64_t batch, std::int64_t seq,
                                           attention_activations kept) {
  const std::int64_t probabilities = c.num_layers * batch * c.num_heads * seq * seq;
  const std::int64_t lse = c.num_layers * batch * c.num_heads * seq;
  return activation_elements(c, batch, seq) - probabilities +
         (kept == attention_activations::log_sum_exp ? lse : probabilities);
}

/// activation_bytes with the given attention activations.
constexpr std::int64_t activation_bytes(const transformer_config& c, std::int64_t batch, std::int64_t seq,
                                        std::int64_t bytes_per_element, attention_activations kept) {
  return activation_elements(c, batch, seq, kept) * bytes_per_element;
}

/// fp32: everything in fp32. bf16_mixed: bf16 parameters, gradients and activations, fp32 master
/// weights and moments.
enum class precision : std::uint8_t { fp32, bf16_mixed };

/// Bytes needed to train with AdamW.
struct memory_breakdown {
  std::int64_t params = 0;
  std::int64_t grads = 0;
  std::int64_t optimizer_state = 0;  // AdamW's fp32 moments (+ fp32 master weights, bf16 mixed)
  std::int64_t activations = 0;

  constexpr std::int64_t total() const { return params + grads + optimizer_state + activations; }
};

constexpr memory_breakdown training_memory(const transformer_config& c, std::int64_t batch,
                                           std::int64_t seq, precision p = precision::fp32) {
  const std::int64_t n = param_count(c);
  const std::int64_t width = p == precision::fp32 ? 4 : 2;
  memory_breakdown m;
  m.params = width * n;
  m.grads = width * n;
  m.optimizer_state = (p == precision::fp32 ? 8 : 12) * n;
  m.activations = activation_bytes(c, batch, seq, width);
  return m;
}

// ---------------------------------------------------------------------------------------------
// Presets

namespace presets {

/// GPT-2 (Radford et al. 2019, HF's gpt2 family): GELU MLP 4·D, learned positions, LayerNorm,
/// biases, lm_head tied to the token embedding.
constexpr transformer_config gpt2(std::int64_t d_model, std::int64_t num_layers,
                                  std::int64_t num_heads) {
  return {.vocab_size = 50257,
          .context_length = 1024,
          .d_model = d_model,
          .num_layers = num_layers,
          .num_heads = num_heads,
          .d_ff = 4 * d_model,
          .tied_embeddings = true,
          .ffn = ffn_kind::gelu_mlp,
          .positions = position_kind::learned,
          .norm = norm_kind::layer_norm,
          .linear_bias = true};
}
constexpr transformer_config gpt2_small() { return gpt2(768, 12, 12); }
constexpr transformer_config gpt2_medium() { return gpt2(1024, 24, 16); }
constexpr transformer_config gpt2_large() { return gpt2(1280, 36, 20); }
constexpr transformer_config gpt2_xl() { return gpt2(1600, 48, 25); }

/// Llama 3.2 1B's shape: 16 layers, D 2048, 32 heads sharing 8 key/value heads, SwiGLU 8192, RoPE
/// θ = 500000, RMSNorm, tied lm_head. 1,235,814,400 parameters.
constexpr transformer_config llama3_1b() {
  return {.vocab_size = 128256,
          .context_length = 8192,
          .d_model = 2048,
          .num_layers = 16,
          .num_heads = 32,
          .num_kv_heads = 8,
          .d_ff = 8192,
          .rope_theta = 500000.0,
          .tied_embeddings = true};
}

/// Llama 3 8B's shape: 32 layers, D 4096, 32 heads sharing 8 key/value heads, SwiGLU 14336, RoPE
/// θ = 500000, RMSNorm, untied lm_head. 8,030,261,248 parameters.
constexpr transformer_config llama3_8b() {
  return {.vocab_size = 128256,
          .context_length = 8192,
          .d_model = 4096,
          .num_layers = 32,
          .num_heads = 32,
          .num_kv_heads = 8,
          .d_ff = 14336,
          .rope_theta = 500000.0,
          .tied_embeddings = false};
}

}  // namespace presets

// ---------------------------------------------------------------------------------------------
// Report

struct report_options {
  /// Training tokens; 0 means tokens_per_parameter × param_count (Chinchilla: 20).
  double tokens = 0;
  double tokens_per_parameter = 20;
  /// Peak FLOP/s of one accelerator (default: H100 SXM, bf16 dense) and the fraction reached.
  double peak_flops = 989e12;
  double mfu = 0.5;
  flops_options flops = {};
};

namespace detail {

inline std::string format(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

/// 124.4M, 1.56B, 38.4K, 768.
inline std::string human_count(double n) {
  const char* suffix[] = {"", "K", "M", "B", "T"};
  int k = 0;
  while (n >= 1000 && k < 4) n /= 1000, ++k;
  if (k == 0) return format("%.0f", n);
  return format(n < 10 ? "%.2f" : "%.1f", n) + suffix[k];
}

/// 3.2 GiB, 474.7 MiB, 12.0 KiB, 512 B.
inline std::string human_bytes(double b) {
  const char* suffix[] = {" B", " KiB", " MiB", " GiB", " TiB"};
  int k = 0;
  while (b >= 1024 && k < 4) b /= 1024, ++k;
  return format(k == 0 ? "%.0f" : "%.1f", b) + suffix[k];
}

/// 1.23e18 (no '+', no leading zeros in the exponent).
inline std::string human_flops(double f) {
  if (f <= 0) return "0";
  int e = 0;
  while (f >= 10) f /= 10, ++e;
  while (f < 1) f *= 10, --e;
  if (format("%.2f", f) == "10.00") f /= 10, ++e;
  return format("%.2f", f) + "e" + std::to_string(e);
}

/// 42 s, 3.5 min, 7.2 h, 12.3 days.
inline std::string human_time(double s) {
  if (s < 60) return format("%.1f s", s);
  if (s < 3600) return format("%.1f min", s / 60);
  if (s < 86400 * 2) return format("%.1f h", s / 3600);
  return format("%.1f days", s / 86400);
}

/// 124,439,808.
inline std::string with_commas(std::int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n), out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

inline std::string pad(std::string s, std::size_t width, bool right = false) {
  if (s.size() >= width) return s;
  return right ? std::string(width - s.size(), ' ') + s : s + std::string(width - s.size(), ' ');
}

inline std::string row(const std::string& label, const std::string& a, const std::string& b = {}) {
  std::string line = "  " + pad(label, 36) + pad(a, 12, true);
  if (!b.empty()) line += pad(b, 14, true);
  return line + "\n";
}

inline std::string describe(const transformer_config& c) {
  std::string s = "V " + std::to_string(c.vocab_size) + ", ctx " +
                  std::to_string(c.context_length) + ", D " + std::to_string(c.d_model) + ", " +
                  std::to_string(c.num_layers) + " layers, " + std::to_string(c.num_heads) +
                  " heads";
  if (c.kv_heads() != c.num_heads) s += " (" + std::to_string(c.kv_heads()) + " kv)";
  s += ", head dim " + std::to_string(c.head_dim()) + ", d_ff " + std::to_string(c.ffn_dim()) +
       "\n  ";
  s += c.ffn == ffn_kind::swiglu ? "SwiGLU" : "GELU MLP";
  s += c.positions == position_kind::rope ? ", RoPE" : ", learned positions";
  s += c.norm == norm_kind::rms_norm ? ", RMSNorm" : ", LayerNorm";
  if (c.qk_norm) s += ", qk_norm";
  if (c.linear_bias) s += ", biases";
  s += c.tied_embeddings ? ", tied lm_head" : ", untied lm_head";
  return s + "\n";
}

}  // namespace detail

/// A table of parameters, training memory per precision and FLOPs for one model, training on
/// `batch` sequences of `seq` tokens (memory) for opt.tokens tokens (FLOPs and time).
inline std::string report(const transformer_config& c, std::int64_t batch, std::int64_t seq,
                          const report_options& opt = {}) {
  using namespace detail;
  const param_breakdown p = param_counts(c);
  const double n = double(p.total());
  std::string out = "  " + describe(c);

  out += "parameters\n";
  out += row("total", human_count(n), with_commas(p.total()));
  out += row("token embedding", human_count(double(p.token_embedding)));
  if (p.position_embedding != 0)
    out += row("position embedding", human_count(double(p.position_embedding)));
  out += row("attention (" + std::to_string(c.num_layers) + " layers)",
             human_count(double(p.attention())));
  out += row("feed-forward (" + std::to_string(c.num_layers) + " layers)",
             human_count(double(p.ffn())));
  out += row("norms", human_count(double(p.norms())));
  out += row("lm_head", p.lm_head == 0 ? std::string("tied") : human_count(double(p.lm_head)));
  out += row("non-embedding", human_count(double(p.non_embedding())));

  const memory_breakdown m32 = training_memory(c, batch, seq, precision::fp32);
  const memory_breakdown m16 = training_memory(c, batch, seq, precision::bf16_mixed);
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

  const double tokens = opt.tokens > 0 ? opt.tokens : opt.tokens_per_parameter * n;
  const double forward_per_token = flops_forward(c, 1, seq, opt.flops) / double(seq);
  const double train = training_flops(c, tokens, seq, opt.flops);
  const double seconds = train / (opt.peak_flops * opt.mfu);
  out += "FLOPs (seq " + std::to_string(seq) +
         (opt.flops.causal_savings ? ", causal savings" : "") + ")\n";
  out += row("forward per token", human_flops(forward_per_token));
  out += row("training per token (6N = " + human_flops(6 * n) + ")",
             human_flops(flops_per_token(c, seq, opt.flops)));
  out += row("training, " + human_count(tokens) + " tokens", human_flops(train));
  out += row("time at " + format("%.0f", opt.mfu * 100) + "% MFU of " +
                 format("%.0f", opt.peak_flops / 1e12) + " TFLOP/s",
             human_time(seconds));
  return out;
}

}  // namespace einlm::nn
