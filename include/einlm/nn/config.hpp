// einlm/nn/config.hpp — the shape of a decoder-only transformer language model (CS336's
// TransformerLM: pre-norm RMSNorm blocks, causal attention with RoPE, SwiGLU feed-forward).
//
//   constexpr nn::transformer_config tiny{.vocab_size = 10'000, .context_length = 256,
//                                         .d_model = 512, .num_layers = 4, .num_heads = 16,
//                                         .d_ff = 1344};
//   tiny.validate();                    // throws config_error naming the first bad field
//
// A transformer_config is a structural aggregate, so it can be a template argument (a model whose
// dimensions are fixed at compile time) or a value read at run time (from config.json). It holds
// only the shape; accounting (parameters, FLOPs, memory) lives in nn/accounting.hpp, the model
// itself in nn/transformer.hpp. num_kv_heads = 0 means "as many as num_heads" (multi-head
// attention); 1 is multi-query attention; anything between that divides num_heads is grouped-query
// attention. d_ff = 0 means the default width: 8/3 · d_model rounded up to a multiple of 64 for
// SwiGLU, 4 · d_model for a GELU MLP. The defaults are CS336's architecture; GPT-2's (GELU MLP,
// learned positions, LayerNorm, biases, tied embeddings) can be described too, for accounting.
// context_length_of(model) reads a model's context length, whichever of the two forms it has.
#pragma once

#include <cstdint>
#include <string>

#include "einlm/core/error.hpp"

namespace einlm::nn {

/// A model configuration that is inconsistent; the message names the field.
struct config_error : value_error {
  using value_error::value_error;
};

/// SwiGLU's default hidden width for d_model: 8/3 · d_model rounded up to a multiple of 64.
constexpr std::int64_t default_d_ff(std::int64_t d_model) { return (8 * d_model / 3 + 63) / 64 * 64; }

/// The feed-forward network: SwiGLU (w2(silu(w1 x) ⊙ w3 x), the CS336/Llama choice) or a GELU MLP
/// (fc2(gelu(fc1 x)), GPT-2).
enum class ffn_kind : std::uint8_t { swiglu, gelu_mlp };
/// How positions enter: rotary embeddings on q and k, or a learned table added to the token
/// embeddings (GPT-2).
enum class position_kind : std::uint8_t { rope, learned };
/// The normalisation: RMSNorm with a gain, or LayerNorm with a gain and a bias (GPT-2).
enum class norm_kind : std::uint8_t { rms_norm, layer_norm };
/// A mixture-of-experts router: the top-k of a softmax over the experts (Switch, Mixtral), or
/// DeepSeek-V3's sigmoid scores with a per-expert selection bias (auxiliary-loss-free balancing).
enum class router_kind : std::uint8_t { softmax, sigmoid };

struct transformer_config {
  std::int64_t vocab_size = 0;
  std::int64_t context_length = 0;
  std::int64_t d_model = 0;
  std::int64_t num_layers = 0;
  std::int64_t num_heads = 0;
  std::int64_t num_kv_heads = 0;        // 0: num_heads (MHA); 1: MQA; a divisor of num_heads: GQA
  std::int64_t d_ff = 0;                // 0: default_d_ff(d_model)
  double rope_theta = 10'000.0;
  double norm_eps = 1e-5;
  bool tied_embeddings = false;         // lm_head.weight is token_embeddings.weight
  bool qk_norm = false;                 // RMSNorm of q and k per head before RoPE
  ffn_kind ffn = ffn_kind::swiglu;
  position_kind positions = position_kind::rope;
  norm_kind norm = norm_kind::rms_norm;
  bool linear_bias = false;             // biases on every projection (GPT-2: true)

  constexpr std::int64_t kv_heads() const { return num_kv_heads == 0 ? num_heads : num_kv_heads; }
  constexpr std::int64_t head_dim() const { return num_heads == 0 ? 0 : d_model / num_heads; }
  /// The hidden width of the feed-forward network; d_ff = 0 means SwiGLU's default, or 4·d_model
  /// for a GELU MLP.
  constexpr std::int64_t ffn_dim() const {
    return d_ff != 0 ? d_ff : ffn == ffn_kind::swiglu ? default_d_ff(d_model) : 4 * d_model;
  }

  /// The first problem with this configuration, or an empty string.
  std::string problem() const {
    auto positive = [](const char* field, std::int64_t v) {
      return v > 0 ? std::string{} : einlm::detail::concat(field, " must be positive, got ", v);
    };
    for (const auto& p : {positive("vocab_size", vocab_size), positive("context_length", context_length),
                          positive("d_model", d_model), positive("num_layers", num_layers),
                          positive("num_heads", num_heads)})
      if (!p.empty()) return p;
    if (num_kv_heads < 0) return einlm::detail::concat("num_kv_heads must not be negative, got ", num_kv_heads);
    if (d_ff < 0) return einlm::detail::concat("d_ff must not be negative, got ", d_ff);
    if (d_model % num_heads != 0)
      return einlm::detail::concat("d_model (", d_model, ") is not divisible by num_heads (", num_heads, ")");
    if (num_heads % kv_heads() != 0)
      return einlm::detail::concat("num_heads (", num_heads, ") is not divisible by num_kv_heads (", kv_heads(), ")");
    if (positions == position_kind::rope && head_dim() % 2 != 0)
      return einlm::detail::concat("the head dimension d_model / num_heads = ", head_dim(),
                                   " is odd; RoPE rotates pairs and needs it even");
    if (!(rope_theta > 0)) return einlm::detail::concat("rope_theta must be positive, got ", rope_theta);
    if (!(norm_eps > 0)) return einlm::detail::concat("norm_eps must be positive, got ", norm_eps);
    return {};
  }

  /// Throws config_error naming the first inconsistent field.
  void validate() const {
    if (auto p = problem(); !p.empty()) throw config_error("transformer_config: " + p);
  }

  friend constexpr bool operator==(const transformer_config&, const transformer_config&) = default;
};

/// The longest window a model sees: its context_length() (a block model's: 0 when its context
/// gives none), or its config().context_length (nn::transformer_lm's).
template <class M>
std::int64_t context_length_of(const M& model) {
  if constexpr (requires { model.context_length(); })
    return static_cast<std::int64_t>(model.context_length());
  else
    return model.config().context_length;
}

}  // namespace einlm::nn
