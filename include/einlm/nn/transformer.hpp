// einlm/nn/transformer.hpp — the CS336 transformer language model on the host: named parameters,
// initialisation, forward (logits), and one fused forward + backward that returns the loss and
// accumulates every parameter's gradient.
//
//   nn::transformer_lm<float> model(config, /*seed=*/42);   // CS336 initialisation, Philox
//   auto logits = model.logits(tokens);                     // tokens (B, S) → (B, S, V)
//   auto cache = model.make_cache(B);                       // keys and values for decoding
//   auto next = model.logits(new_tokens, cache);            // (B, S_new) after cache.length tokens
//   model.zero_grad();
//   double loss = model.forward_backward(inputs, targets);  // mean cross-entropy (+ z-loss)
//   model.for_each_parameter_and_gradient([](const std::string& name, auto& weight, auto& grad) { … });
//
// The architecture is CS336's TransformerLM (pre-norm blocks; RMSNorm in fp32 with eps
// config.norm_eps; causal multi-head attention with RoPE on q and k — grouped-query when
// num_kv_heads < num_heads, optional per-head RMSNorm of q and k before RoPE; SwiGLU
// feed-forward; final RMSNorm; an untied or tied LM head). Weights are stored (out, in) and applied
// as x Wᵀ, under CS336's state-dict names (`token_embeddings.weight`, `layers.{i}.ln1.weight`,
// `layers.{i}.attn.{q,k,v,output}_proj.weight`, `layers.{i}.attn.{q,k}_norm.weight`,
// `layers.{i}.ln2.weight`, `layers.{i}.ffn.w{1,2,3}.weight`, `ln_final.weight`, `lm_head.weight`
// — absent when tied). GPT-2-style configurations (GELU MLP, learned positions, LayerNorm, biases)
// are for accounting only and are rejected here with a config_error.
//
// Mixture of experts: built from an nn::moe_config, the layers that config.is_moe_layer(i) names
// have an nn::moe_layer (nn/moe.hpp) in place of the dense FFN, with its parameters under
// `layers.{i}.ffn.router.weight`, `layers.{i}.ffn.router.bias` (sigmoid router),
// `layers.{i}.ffn.experts.{e}.w{1,2,3}.weight` and `layers.{i}.ffn.shared_experts.{s}.w{1,2,3}.weight`.
// Each sequence of the batch is one sequence for the sequence-wise balance loss. forward_backward
// returns the language-model loss and adds the gradients of the layers' weighted auxiliary losses
// (aux_loss()); routing_stats(i) holds layer i's loads, drops and losses; the selection biases are
// initialised to 0, skipped by for_each_parameter_and_gradient, and moved by update_router_biases().
//
// Every layer is written with einlm's own operators: projections are `einsum`s (one GEMM each on
// the BLAS path), heads are split and merged by `rearrange`, norms and activations are fused
// expressions, and the backward pass uses the einsum adjoints (one einsum per operand) and the
// functions of nn/backward.hpp. Activations kept for backward live in the model between the two
// halves of forward_backward; tokens must lie in [0, vocab_size) (value_error otherwise) and the
// sequence must not exceed context_length (shape_error).
//
// With a kv_cache, logits(tokens, cache) treats `tokens` as positions cache.length … cache.length +
// S − 1 of the sequences the cache holds: it computes only their keys, values and logits, attends to
// everything cached before them, and appends them to the cache — the same logits as a full pass
// over the whole sequence (a test), for the cost of the new positions. The cache holds
// context_length positions per sequence; going past that is a shape_error (generate() starts
// over with the most recent window instead).
//
// Initialisation (CS336 §3.4.1): linear weights 𝒩(0, 2/(d_in + d_out)) truncated at ±3σ,
// embeddings 𝒩(0, 1) truncated at ±3, norm gains 1. Parameter p draws from Philox stream p of the
// seed (in the order for_each_parameter visits them), so a model is a function of (config, seed).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "einlm/core/error.hpp"
#include "einlm/core/random.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/einops.hpp"
#include "einlm/expr.hpp"
#include "einlm/linalg/einsum.hpp"
#include "einlm/nn/accounting.hpp"
#include "einlm/nn/backward.hpp"
#include "einlm/nn/config.hpp"
#include "einlm/nn/functional.hpp"
#include "einlm/nn/moe.hpp"

namespace einlm::nn {

/// The weights of one transformer block.
template <class T>
struct block_parameters {
  tensor<T, dims<1>> ln1;                                   // (D,)
  tensor<T, dims<2>> q_proj, k_proj, v_proj, output_proj;   // (H·Dh, D), (K·Dh, D) twice, (D, D)
  tensor<T, dims<1>> q_norm, k_norm;                        // (Dh,) each, when qk_norm
  tensor<T, dims<1>> ln2;                                   // (D,)
  tensor<T, dims<2>> w1, w2, w3;                            // (F, D), (D, F), (F, D); empty in an MoE layer
  moe_parameters<T> moe;                                    // the mixture-of-experts FFN, when this layer has one

  bool is_moe() const { return moe.config.num_experts > 0; }
};

/// Every weight of a transformer_lm, by CS336 name. Also used for the gradients.
template <class T>
struct transformer_parameters {
  transformer_config config;
  tensor<T, dims<2>> token_embeddings;                      // (V, D)
  std::vector<block_parameters<T>> layers;
  tensor<T, dims<1>> ln_final;                              // (D,)
  tensor<T, dims<2>> lm_head;                               // (V, D); empty when tied

  transformer_parameters() = default;

  /// All tensors allocated for a dense model `config` and filled with zeros.
  explicit transformer_parameters(const transformer_config& c) : transformer_parameters(moe_config{.base = c}) {}

  /// All tensors allocated for `m` (its MoE layers with routers and experts) and filled with zeros.
  explicit transformer_parameters(const moe_config& m) : config(m.base) {
    const transformer_config& c = m.base;
    const index_t V = c.vocab_size, D = c.d_model, H = c.num_heads, K = c.kv_heads(), Dh = c.head_dim(),
                  F = c.ffn_dim();
    token_embeddings = tensor<T, dims<2>>(V, D);
    layers.resize(static_cast<std::size_t>(c.num_layers));
    for (std::size_t i = 0; i < layers.size(); ++i) {
      auto& l = layers[i];
      l.ln1 = tensor<T, dims<1>>(D);
      l.q_proj = tensor<T, dims<2>>(H * Dh, D);
      l.k_proj = tensor<T, dims<2>>(K * Dh, D);
      l.v_proj = tensor<T, dims<2>>(K * Dh, D);
      l.output_proj = tensor<T, dims<2>>(D, H * Dh);
      if (c.qk_norm) {
        l.q_norm = tensor<T, dims<1>>(Dh);
        l.k_norm = tensor<T, dims<1>>(Dh);
      }
      l.ln2 = tensor<T, dims<1>>(D);
      if (m.is_moe_layer(static_cast<std::int64_t>(i))) {
        l.moe = moe_parameters<T>(moe_layer_config::of(m));
      } else {
        l.w1 = tensor<T, dims<2>>(F, D);
        l.w2 = tensor<T, dims<2>>(D, F);
        l.w3 = tensor<T, dims<2>>(F, D);
      }
    }
    ln_final = tensor<T, dims<1>>(D);
    if (!c.tied_embeddings) lm_head = tensor<T, dims<2>>(V, D);
    for_each_parameter([](const std::string&, auto& t) { t = T(0); });
  }

  /// f(name, tensor) for every parameter, in a fixed order (the checkpoint and optimizer order).
  template <class F>
  void for_each_parameter(F&& f) {
    visit(*this, f);
  }
  template <class F>
  void for_each_parameter(F&& f) const {
    visit(*this, f);
  }

  /// Number of scalars over all parameters.
  std::int64_t size() const {
    std::int64_t n = 0;
    for_each_parameter([&](const std::string&, const auto& t) { n += t.size(); });
    return n;
  }

 private:
  template <class Self, class F>
  static void visit(Self& self, F& f) {
    f(std::string("token_embeddings.weight"), self.token_embeddings);
    for (std::size_t i = 0; i < self.layers.size(); ++i) {
      auto& l = self.layers[i];
      const std::string p = "layers." + std::to_string(i) + ".";
      f(p + "ln1.weight", l.ln1);
      f(p + "attn.q_proj.weight", l.q_proj);
      f(p + "attn.k_proj.weight", l.k_proj);
      f(p + "attn.v_proj.weight", l.v_proj);
      f(p + "attn.output_proj.weight", l.output_proj);
      if (self.config.qk_norm) {
        f(p + "attn.q_norm.weight", l.q_norm);
        f(p + "attn.k_norm.weight", l.k_norm);
      }
      f(p + "ln2.weight", l.ln2);
      if (l.is_moe()) {
        l.moe.for_each_parameter(p + "ffn.", f);
      } else {
        f(p + "ffn.w1.weight", l.w1);
        f(p + "ffn.w2.weight", l.w2);
        f(p + "ffn.w3.weight", l.w3);
      }
    }
    f(std::string("ln_final.weight"), self.ln_final);
    if (!self.config.tied_embeddings) f(std::string("lm_head.weight"), self.lm_head);
  }
};

namespace detail {

/// dst ← dst + src (same shape).
template <class D, class S>
void accumulate(D& dst, const S& src) {
  dst = dst + src;
}

/// (B, H, S, Dh) → (B, S, H·Dh): the heads side by side. Written through a (B, S, H, Dh) view of
/// the result, so that the copy is a permutation with contiguous rows of Dh (the executor's row
/// path) rather than an element-wise gather into a merged axis.
template <class T, class X>
tensor<T, dims<3>> merge_heads(const X& x) {
  const index_t B = x.extent(0), H = x.extent(1), S = x.extent(2), Dh = x.extent(3);
  tensor<T, dims<3>> out(B, S, H * Dh);                                            // (B, S, H·Dh)
  auto split = rearrange<"b s (h e) -> b s h e">(out, axis_size<"h">{H});          // (B, S, H, Dh) view
  assign(split, rearrange<"b h s e -> b s h e">(x));
  return out;
}

/// What a block keeps from its forward pass for its backward pass.
template <class T>
struct block_activations {
  tensor<T, dims<3>> x, a;                 // (B, S, D) block input, ln1(x)
  tensor<T, dims<4>> q_raw, k_raw;         // (B, H, S, Dh), (B, K, S, Dh) before the qk-norm (when on)
  tensor<T, dims<4>> q, k, v;              // (B, H, S, Dh), (B, K, S, Dh) twice: as attention reads them
  tensor<T, dims<3>> lse;                  // (B, H, S) row log-sum-exp of the scores
  tensor<T, dims<3>> o_merged, h, b;       // (B, S, D) attention output (heads merged), after the attention residual, ln2(h)
  tensor<T, dims<3>> f1, f3, g;            // (B, S, F) w1 b, w3 b, silu(f1)·f3
};

}  // namespace detail

/// The keys and values of every layer for incremental decoding (see the file comment).
template <class T>
struct kv_cache {
  std::vector<tensor<T, dims<4>>> k, v;  // per layer (B, K, context_length, Dh) each
  index_t length = 0;                    // positions filled
  index_t batch() const { return k.empty() ? 0 : k.front().extent(0); }
  void clear() { length = 0; }
};

template <class T = float>
class transformer_lm {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "transformer_lm: parameters are float or double (bf16 storage comes with mixed precision)");

 public:
  using value_type = T;

  /// A model of this shape with CS336's initialisation from `seed`.
  transformer_lm(const transformer_config& config, std::uint64_t seed) : transformer_lm(moe_config{.base = config}, seed) {}
  /// A mixture-of-experts model (num_experts = 0: dense) with CS336's initialisation from `seed`.
  transformer_lm(const moe_config& config, std::uint64_t seed) : transformer_lm(config) { initialise(seed); }

  /// A model of this shape with zero weights and gradients (to be loaded from a checkpoint).
  explicit transformer_lm(const transformer_config& config) : transformer_lm(moe_config{.base = config}) {}
  explicit transformer_lm(const moe_config& config)
      : model_config_(checked(config)), config_(model_config_.base), params_(model_config_), grads_(model_config_),
        moe_layers_(static_cast<std::size_t>(config_.num_layers)), moe_stats_(static_cast<std::size_t>(config_.num_layers)) {}

  /// The dense shape (for an MoE model, its base).
  const transformer_config& config() const { return config_; }
  /// The whole configuration, experts included (num_experts = 0: dense).
  const moe_config& model_config() const { return model_config_; }
  transformer_parameters<T>& parameters() { return params_; }
  const transformer_parameters<T>& parameters() const { return params_; }
  transformer_parameters<T>& gradients() { return grads_; }
  const transformer_parameters<T>& gradients() const { return grads_; }

  /// f(name, weight) for every parameter (what checkpoints save and load).
  template <class F>
  void for_each_parameter(F&& f) {
    params_.for_each_parameter(f);
  }
  template <class F>
  void for_each_parameter(F&& f) const {
    params_.for_each_parameter(f);
  }

  /// f(name, weight, gradient) for every trainable parameter (what an optimizer step visits): all
  /// but the routers' selection biases (`layers.{i}.ffn.router.bias`), which no gradient trains
  /// and update_router_biases() moves.
  template <class F>
  void for_each_parameter_and_gradient(F&& f) {
    // Weights and gradients have the same layout and are visited in the same order.
    std::vector<void*> grads;
    grads_.for_each_parameter([&](const std::string&, auto& g) { grads.push_back(&g); });
    std::size_t i = 0;
    params_.for_each_parameter([&](const std::string& name, auto& w) {
      auto& g = *static_cast<std::remove_reference_t<decltype(w)>*>(grads[i++]);
      if (moe_parameters<T>::trainable(name)) f(name, w, g);
    });
  }

  /// Sets every gradient to zero.
  void zero_grad() {
    grads_.for_each_parameter([](const std::string&, auto& g) { g = T(0); });
  }

  /// CS336 initialisation from `seed` (see the file comment).
  void initialise(std::uint64_t seed) {
    std::uint64_t stream = 0;
    params_.for_each_parameter([&](const std::string& name, auto& w) {
      const random_stream g{seed, stream++};
      if (!moe_parameters<T>::trainable(name)) {
        w = T(0);  // selection biases
      } else if (w.extents().rank() == 1) {
        w = T(1);  // norm gains
      } else if (name == "token_embeddings.weight") {
        w = truncated_normal<T>(w.extents(), g, 0.0, 1.0, -3.0, 3.0);
      } else {
        const double d_out = static_cast<double>(w.extent(0)), d_in = static_cast<double>(w.extent(1));
        const double sigma = std::sqrt(2.0 / (d_in + d_out));
        w = truncated_normal<T>(w.extents(), g, 0.0, sigma, -3.0 * sigma, 3.0 * sigma);
      }
    });
  }

  /// Next-token logits for token ids (B, S), as a new (B, S, V) tensor.
  template <class I>
  tensor<T, dims<3>> logits(const I& tokens) {
    return forward(tokens, /*keep=*/false);
  }

  /// An empty KV cache for `batch` sequences of up to context_length positions.
  kv_cache<T> make_cache(index_t batch) const {
    kv_cache<T> c;
    for (std::int64_t i = 0; i < config_.num_layers; ++i) {
      c.k.emplace_back(batch, config_.kv_heads(), config_.context_length, config_.head_dim());  // (B, K, C, Dh)
      c.v.emplace_back(batch, config_.kv_heads(), config_.context_length, config_.head_dim());  // (B, K, C, Dh)
    }
    return c;
  }

  /// Logits (B, S, V) of `tokens` (B, S) continuing the sequences in `cache`, which they extend.
  template <class I>
  tensor<T, dims<3>> logits(const I& tokens, kv_cache<T>& cache) {
    return forward(tokens, /*keep=*/false, &cache);
  }

  /// Bytes of the activations the last forward_backward kept for its backward pass (the logits
  /// included): for a dense model nn::activation_bytes(config, B, S, sizeof(T),
  /// attention_activations::log_sum_exp); an MoE layer adds what its moe_layer keeps.
  std::size_t kept_activation_bytes() const { return kept_bytes_; }

  /// Mean cross-entropy of the next-token predictions for `inputs` (B, S) against `targets`
  /// (B, S), plus z_loss · mean(logsumexp²); accumulates into gradients() the gradient of that
  /// loss plus aux_loss() (the MoE layers' weighted balance, router z- and sequence losses).
  template <class I, class J>
  double forward_backward(const I& inputs, const J& targets, double z_loss = 0.0) {
    auto logits = forward(inputs, /*keep=*/true);                                  // (B, S, V)
    kept_bytes_ = logits.bytes() + final_x_.bytes() + final_n_.bytes();
    for (const auto& l : moe_layers_) kept_bytes_ += l.kept_bytes();
    for (const auto& a : acts_)
      for (const auto* t : {&a.x, &a.a, &a.o_merged, &a.h, &a.b, &a.f1, &a.f3, &a.g, &a.lse}) kept_bytes_ += t->bytes();
    for (const auto& a : acts_)
      for (const auto* t : {&a.q_raw, &a.k_raw, &a.q, &a.k, &a.v}) kept_bytes_ += t->bytes();
    auto [loss, dlogits] = cross_entropy_with_grad(logits, targets, z_loss);       // (B, S, V)
    backward(dlogits);
    return loss;
  }

  /// The MoE layers' weighted auxiliary losses of the last forward pass, summed (0 when dense).
  double aux_loss() const {
    double total = 0;
    for (std::size_t i = 0; i < moe_stats_.size(); ++i)
      if (params_.layers[i].is_moe()) total += moe_stats_[i].aux_loss;
    return total;
  }

  /// Routing statistics of layer i's MoE FFN in the last forward pass (empty for a dense layer).
  const moe_stats& routing_stats(std::size_t i) const { return moe_stats_.at(i); }

  /// DeepSeek-V3's auxiliary-loss-free balancing after an optimizer step: every sigmoid router's
  /// selection bias moves by ±bias_update_rate toward the mean load of the last forward pass.
  void update_router_biases() {
    if (model_config_.router != router_kind::sigmoid || model_config_.bias_update_rate == 0) return;
    for (std::size_t i = 0; i < params_.layers.size(); ++i)
      if (params_.layers[i].is_moe() && !moe_stats_[i].routed_per_expert.empty())
        update_router_bias(params_.layers[i].moe, moe_stats_[i]);
  }

 private:
  static const moe_config& checked(const moe_config& m) {
    m.validate();
    if (m.mla.enabled())
      throw config_error("transformer_lm: Multi-head Latent Attention (mla) is for accounting only");
    if (m.base.ffn != ffn_kind::swiglu && m.num_experts > 0)
      throw config_error("transformer_lm: experts are SwiGLU FFNs; ffn must be \"swiglu\"");
    checked(m.base);
    return m;
  }
  static const transformer_config& checked(const transformer_config& c) {
    c.validate();
    if (c.ffn != ffn_kind::swiglu || c.positions != position_kind::rope || c.norm != norm_kind::rms_norm ||
        c.linear_bias)
      throw config_error(
          "transformer_lm: only the CS336 architecture (SwiGLU, RoPE, RMSNorm, no biases) runs; GPT-2-style "
          "configurations are for accounting");
    return c;
  }

  /// The embedding rows of `tokens` (B, S), checking ids and length.
  template <class I>
  tensor<T, dims<3>> embed(const I& tokens_in, index_t offset) {
    const auto tokens = as_view(tokens_in);
    static_assert(decltype(tokens)::rank() == 2, "transformer_lm: token ids are (batch, sequence)");
    static_assert(std::is_integral_v<typename decltype(tokens)::value_type>, "transformer_lm: token ids are integers");
    const index_t B = tokens.extent(0), S = tokens.extent(1), D = config_.d_model;
    if (offset + S > config_.context_length)
      throw shape_error(offset == 0 ? einlm::detail::concat("transformer_lm: a sequence of ", S,
                                                            " tokens exceeds context_length ", config_.context_length)
                                    : einlm::detail::concat("transformer_lm: ", S, " new tokens after the cache's ", offset,
                                                            " exceed context_length ", config_.context_length));
    tensor<T, dims<3>> x(B, S, D);                                                 // (B, S, D)
    tokens_.assign(static_cast<std::size_t>(B * S), 0);
    for (index_t b = 0; b < B; ++b)
      for (index_t s = 0; s < S; ++s) {
        const auto id = static_cast<std::int64_t>(tokens(b, s));
        if (id < 0 || id >= config_.vocab_size)
          throw value_error(einlm::detail::concat("transformer_lm: token id ", id, " at (", b, ", ", s,
                                                  ") is outside the vocabulary [0, ", config_.vocab_size, ")"));
        tokens_[static_cast<std::size_t>(b * S + s)] = id;
        const T* row = params_.token_embeddings.data() + id * D;
        std::copy(row, row + D, x.data() + (b * S + s) * D);
      }
    return x;
  }

  const tensor<T, dims<2>>& head_weight() const {
    return config_.tied_embeddings ? params_.token_embeddings : params_.lm_head;
  }

  template <class I>
  tensor<T, dims<3>> forward(const I& tokens, bool keep, kv_cache<T>* cache = nullptr) {
    const double eps = config_.norm_eps, theta = config_.rope_theta;
    const index_t H = config_.num_heads, K = config_.kv_heads();
    const index_t p0 = cache ? cache->length : 0;                                  // positions already cached
    auto x = embed(tokens, p0);                                                    // (B, S, D)
    const index_t B = x.extent(0), S = x.extent(1);
    if (cache && (cache->batch() != B || static_cast<std::int64_t>(cache->k.size()) != config_.num_layers))
      throw shape_error(einlm::detail::concat("transformer_lm: a cache for ", cache->batch(),
                                              " sequences was given tokens of batch ", B));
    positions_ = tensor<std::int64_t, dims<1>>(S);                                 // (S,)
    for (index_t s = 0; s < S; ++s) positions_(s) = p0 + s;
    acts_.clear();
    if (keep) acts_.resize(params_.layers.size());
    for (std::size_t i = 0; i < params_.layers.size(); ++i) {
      const auto& w = params_.layers[i];
      detail::block_activations<T> act;
      auto a = rms_norm(x, w.ln1, eps);                                            // (B, S, D)
      auto q_flat = einsum<"b s d, o d -> b s o">(a, w.q_proj);                    // (B, S, H·Dh)
      auto k_flat = einsum<"b s d, o d -> b s o">(a, w.k_proj);                    // (B, S, K·Dh)
      auto v_flat = einsum<"b s d, o d -> b s o">(a, w.v_proj);                    // (B, S, K·Dh)
      tensor<T, dims<4>> q = rearrange<"b s (h e) -> b h s e">(q_flat, axis_size<"h">{H});  // (B, H, S, Dh)
      tensor<T, dims<4>> k = rearrange<"b s (h e) -> b h s e">(k_flat, axis_size<"h">{K});  // (B, K, S, Dh)
      tensor<T, dims<4>> v = rearrange<"b s (h e) -> b h s e">(v_flat, axis_size<"h">{K});  // (B, K, S, Dh)
      if (config_.qk_norm) {
        act.q_raw = std::move(q);
        act.k_raw = std::move(k);
        q = rope(rms_norm(act.q_raw, w.q_norm, eps), positions_, theta);           // (B, H, S, Dh)
        k = rope(rms_norm(act.k_raw, w.k_norm, eps), positions_, theta);           // (B, K, S, Dh)
      } else {
        q = rope(q, positions_, theta);                                            // (B, H, S, Dh)
        k = rope(k, positions_, theta);                                            // (B, K, S, Dh)
      }
      auto [o, lse] = [&] {
        if (!cache) return attention_forward(q, k, v, /*causal=*/true);           // (B, H, S, Dh), (B, H, S)
        const range fresh{p0, p0 + S}, seen{0, p0 + S};
        assign(slice(cache->k[i], full_extent, full_extent, fresh, full_extent), k);
        assign(slice(cache->v[i], full_extent, full_extent, fresh, full_extent), v);
        const auto k_all = slice(cache->k[i], full_extent, full_extent, seen, full_extent);  // (B, K, p0 + S, Dh)
        const auto v_all = slice(cache->v[i], full_extent, full_extent, seen, full_extent);  // (B, K, p0 + S, Dh)
        return attention_forward(q, k_all, v_all, /*causal=*/true);               // (B, H, S, Dh), (B, H, S)
      }();
      auto o_merged = detail::merge_heads<T>(o);                                   // (B, S, D)
      const auto attn_out = einsum<"b s e, d e -> b s d">(o_merged, w.output_proj);  // (B, S, D)
      tensor<T, dims<3>> h = x + attn_out;                                         // (B, S, D)
      auto bn = rms_norm(h, w.ln2, eps);                                           // (B, S, D)
      tensor<T, dims<3>> f1, f3, g, out;                                           // (B, S, F) three times, (B, S, D)
      if (w.is_moe()) {
        const tensor<T, dims<2>> rows = rearrange<"b s d -> (b s) d">(bn);         // (B·S, D)
        auto& layer = moe_layers_[i];
        const auto y = keep ? layer.forward_train(w.moe, rows, S)                  // (B·S, D)
                            : moe_layer<T>::forward(w.moe, rows, S, &moe_stats_[i]);
        if (keep) moe_stats_[i] = layer.stats();
        out = tensor<T, dims<3>>(h + rearrange<"(b s) d -> b s d">(y, axis_size<"b">{B}));  // (B, S, D)
      } else {
        f1 = tensor<T, dims<3>>(einsum<"b s d, f d -> b s f">(bn, w.w1));          // (B, S, F)
        f3 = tensor<T, dims<3>>(einsum<"b s d, f d -> b s f">(bn, w.w3));          // (B, S, F)
        g = tensor<T, dims<3>>(silu(f1) * f3);                                     // (B, S, F)
        const auto ffn_out = einsum<"b s f, d f -> b s d">(g, w.w2);               // (B, S, D)
        out = tensor<T, dims<3>>(h + ffn_out);                                     // (B, S, D)
      }
      if (keep) {
        act.x = std::move(x);
        act.a = std::move(a);
        act.q = std::move(q);
        act.k = std::move(k);
        act.v = std::move(v);
        act.lse = std::move(lse);
        act.o_merged = std::move(o_merged);
        act.h = std::move(h);
        act.b = std::move(bn);
        act.f1 = std::move(f1);
        act.f3 = std::move(f3);
        act.g = std::move(g);
        acts_[i] = std::move(act);
      }
      x = std::move(out);
    }
    if (cache) cache->length = p0 + S;
    auto n = rms_norm(x, params_.ln_final, eps);                                   // (B, S, D)
    auto logits = einsum<"b s d, v d -> b s v">(n, head_weight());                 // (B, S, V)
    if (keep) {
      final_x_ = std::move(x);
      final_n_ = std::move(n);
    }
    return logits;
  }

  void backward(const tensor<T, dims<3>>& dlogits) {
    const double eps = config_.norm_eps, theta = config_.rope_theta;
    const index_t B = dlogits.extent(0), S = dlogits.extent(1), D = config_.d_model;
    const index_t H = config_.num_heads;
    // LM head and final norm.
    auto& dhead = config_.tied_embeddings ? grads_.token_embeddings : grads_.lm_head;
    detail::accumulate(dhead, einsum<"b s v, b s d -> v d">(dlogits, final_n_));  // (V, D)
    auto dn = einsum<"b s v, v d -> b s d">(dlogits, head_weight());               // (B, S, D)
    auto [dx, dgain_final] = rms_norm_backward(final_x_, params_.ln_final, dn, eps);  // (B, S, D), (D,)
    detail::accumulate(grads_.ln_final, dgain_final);
    for (std::size_t i = params_.layers.size(); i-- > 0;) {
      const auto& w = params_.layers[i];
      auto& gw = grads_.layers[i];
      auto& act = acts_[i];
      tensor<T, dims<3>> db;                                                      // (B, S, D)
      if (w.is_moe()) {
        // Mixture of experts: out = h + moe(b), through the layer's own backward.
        const tensor<T, dims<2>> dy = rearrange<"b s d -> (b s) d">(dx);          // (B·S, D)
        const auto drows = moe_layers_[i].backward(w.moe, dy, gw.moe);            // (B·S, D)
        db = tensor<T, dims<3>>(rearrange<"(b s) d -> b s d">(drows, axis_size<"b">{B}));  // (B, S, D)
      } else {
        // Feed-forward: out = h + w2(silu(w1 b) ⊙ w3 b).
        detail::accumulate(gw.w2, einsum<"b s d, b s f -> d f">(dx, act.g));      // (D, F)
        auto dg = einsum<"b s d, d f -> b s f">(dx, w.w2);                        // (B, S, F)
        auto [df1, df3] = swiglu_backward(act.f1, act.f3, dg);                    // (B, S, F) twice
        detail::accumulate(gw.w1, einsum<"b s f, b s d -> f d">(df1, act.b));     // (F, D)
        detail::accumulate(gw.w3, einsum<"b s f, b s d -> f d">(df3, act.b));     // (F, D)
        db = tensor<T, dims<3>>(einsum<"b s f, f d -> b s d">(df1, w.w1));        // (B, S, D)
        detail::accumulate(db, einsum<"b s f, f d -> b s d">(df3, w.w3));
      }
      auto [dh_norm, dgain2] = rms_norm_backward(act.h, w.ln2, db, eps);         // (B, S, D), (D,)
      detail::accumulate(gw.ln2, dgain2);
      tensor<T, dims<3>> dh = dx + dh_norm;                                       // (B, S, D)
      // Attention: h = x + output_proj(merge(attention(rope(q), rope(k), v))).
      detail::accumulate(gw.output_proj, einsum<"b s d, b s e -> d e">(dh, act.o_merged));  // (D, D)
      auto do_merged = einsum<"b s d, d e -> b s e">(dh, w.output_proj);          // (B, S, D)
      tensor<T, dims<4>> d_o = rearrange<"b s (h e) -> b h s e">(do_merged, axis_size<"h">{H});  // (B, H, S, Dh)
      const auto o_heads = rearrange<"b s (h e) -> b h s e">(act.o_merged, axis_size<"h">{H});  // (B, H, S, Dh) view
      auto [dq, dk, dv] = attention_backward(act.q, act.k, act.v, o_heads, act.lse, d_o, /*causal=*/true);
      tensor<T, dims<4>> dq_pre = rope_backward(dq, positions_, theta);           // (B, H, S, Dh)
      tensor<T, dims<4>> dk_pre = rope_backward(dk, positions_, theta);           // (B, K, S, Dh)
      if (config_.qk_norm) {
        auto [dq_raw, dgq] = rms_norm_backward(act.q_raw, w.q_norm, dq_pre, eps);  // (B, H, S, Dh), (Dh,)
        auto [dk_raw, dgk] = rms_norm_backward(act.k_raw, w.k_norm, dk_pre, eps);  // (B, K, S, Dh), (Dh,)
        detail::accumulate(gw.q_norm, dgq);
        detail::accumulate(gw.k_norm, dgk);
        dq_pre = std::move(dq_raw);
        dk_pre = std::move(dk_raw);
      }
      const auto dq_flat = detail::merge_heads<T>(dq_pre);                         // (B, S, H·Dh)
      const auto dk_flat = detail::merge_heads<T>(dk_pre);                         // (B, S, K·Dh)
      const auto dv_flat = detail::merge_heads<T>(dv);                             // (B, S, K·Dh)
      detail::accumulate(gw.q_proj, einsum<"b s o, b s d -> o d">(dq_flat, act.a));  // (H·Dh, D)
      detail::accumulate(gw.k_proj, einsum<"b s o, b s d -> o d">(dk_flat, act.a));  // (K·Dh, D)
      detail::accumulate(gw.v_proj, einsum<"b s o, b s d -> o d">(dv_flat, act.a));  // (K·Dh, D)
      tensor<T, dims<3>> da = einsum<"b s o, o d -> b s d">(dq_flat, w.q_proj);   // (B, S, D)
      detail::accumulate(da, einsum<"b s o, o d -> b s d">(dk_flat, w.k_proj));
      detail::accumulate(da, einsum<"b s o, o d -> b s d">(dv_flat, w.v_proj));
      auto [dx_norm, dgain1] = rms_norm_backward(act.x, w.ln1, da, eps);         // (B, S, D), (D,)
      detail::accumulate(gw.ln1, dgain1);
      dx = dh + dx_norm;                                                          // (B, S, D)
      act = {};  // release this block's activations
    }
    // Embedding: scatter-add each position's gradient into its token's row.
    T* demb = grads_.token_embeddings.data();
    for (index_t r = 0; r < B * S; ++r) {
      T* row = demb + tokens_[static_cast<std::size_t>(r)] * D;
      const T* src = dx.data() + r * D;
      for (index_t d = 0; d < D; ++d) row[d] += src[d];
    }
    acts_.clear();
    final_x_ = {};
    final_n_ = {};
  }

  moe_config model_config_;
  transformer_config config_;
  transformer_parameters<T> params_, grads_;
  std::vector<moe_layer<T>> moe_layers_;  // per layer: the MoE FFN's kept activations (MoE layers only)
  std::vector<moe_stats> moe_stats_;      // per layer: the last forward's routing statistics
  // Kept between the halves of forward_backward.
  std::vector<detail::block_activations<T>> acts_;
  tensor<T, dims<3>> final_x_, final_n_;                                          // (B, S, D) twice
  tensor<std::int64_t, dims<1>> positions_;                                       // (S,)
  std::vector<std::int64_t> tokens_;                                              // B·S ids
  std::size_t kept_bytes_ = 0;
};

/// A transformer_lm whose shape is fixed at compile time: the same model, with its configuration
/// checked by static_asserts and its cost as constants of the type.
///
///   using tiny = nn::static_transformer_lm<nn::transformer_config{.vocab_size = 10'000, …}>;
///   static_assert(tiny::param_count < 100'000'000);
///   constexpr double flops = tiny::flops_forward(32, 256);   // per batch of 32 × 256 tokens
///   tiny model(/*seed=*/1);
///
/// The dimensions are not yet used to specialise kernels: the model runs the run-time path.
template <transformer_config C, class T = float>
class static_transformer_lm : public transformer_lm<T> {
  static_assert(C.vocab_size > 0 && C.context_length > 0 && C.d_model > 0 && C.num_layers > 0 && C.num_heads > 0,
                "static_transformer_lm: vocab_size, context_length, d_model, num_layers and num_heads must be positive");
  static_assert(C.num_kv_heads >= 0 && C.d_ff >= 0, "static_transformer_lm: num_kv_heads and d_ff must not be negative");
  static_assert(C.d_model % C.num_heads == 0, "static_transformer_lm: d_model is not divisible by num_heads");
  static_assert(C.num_heads % C.kv_heads() == 0, "static_transformer_lm: num_heads is not divisible by num_kv_heads");
  static_assert(C.head_dim() % 2 == 0, "static_transformer_lm: the head dimension is odd; RoPE rotates pairs");
  static_assert(C.ffn == ffn_kind::swiglu && C.positions == position_kind::rope && C.norm == norm_kind::rms_norm &&
                    !C.linear_bias,
                "static_transformer_lm: only the CS336 architecture (SwiGLU, RoPE, RMSNorm, no biases) runs");

 public:
  static constexpr transformer_config shape = C;
  static constexpr std::int64_t param_count = nn::param_count(C);
  static constexpr std::int64_t non_embedding_param_count = nn::non_embedding_param_count(C);
  /// Model FLOPs of a forward (backward) pass over batch × seq tokens (nn/accounting.hpp).
  static constexpr double flops_forward(std::int64_t batch, std::int64_t seq) { return nn::flops_forward(C, batch, seq); }
  static constexpr double flops_backward(std::int64_t batch, std::int64_t seq) { return nn::flops_backward(C, batch, seq); }
  /// Bytes of the activations kept for backward over batch × seq tokens, in T (attention keeps
  /// its row log-sum-exp, not its probabilities).
  static constexpr std::int64_t activation_bytes(std::int64_t batch, std::int64_t seq) {
    return nn::activation_bytes(C, batch, seq, sizeof(T), attention_activations::log_sum_exp);
  }

  /// CS336's initialisation from `seed`.
  explicit static_transformer_lm(std::uint64_t seed) : transformer_lm<T>(C, seed) {}
  /// Zero weights (to be loaded from a checkpoint).
  static_transformer_lm() : transformer_lm<T>(C) {}
};

}  // namespace einlm::nn
