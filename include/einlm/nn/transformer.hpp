// einlm/nn/transformer.hpp — the CS336 transformer language model on the host: named parameters,
// initialisation, forward (logits), and one fused forward + backward that returns the loss and
// accumulates every parameter's gradient.
//
//   nn::transformer_lm<float> model(config, /*seed=*/42);   // CS336 initialisation, Philox
//   auto logits = model.logits(tokens);                     // tokens (B, S) → (B, S, V)
//   auto cache = model.make_cache(B);                       // keys and values for decoding
//   auto next = model.logits(new_tokens, cache);            // (B, S_new, V) after each sequence's length
//   auto last = model.last_logits(ragged_tokens, cache);    // (B, V): sequence b continues by ragged_tokens[b]
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
// functions of nn/backward.hpp; the attention, SwiGLU and embedding layers are those of the
// type-level blocks (nn/blocks.hpp, nn::detail). Activations kept for backward live in the model
// between the two halves of forward_backward; tokens must lie in [0, vocab_size) (value_error
// otherwise) and the sequence must not exceed context_length (shape_error).
//
// With a kv_cache, logits(tokens, cache) treats row b of `tokens` as positions L_b … L_b + S − 1 of
// sequence b of the cache, L_b its length: it computes only their keys, values and logits, attends
// to everything cached before them, and appends them to the cache — the same logits as a full pass
// over the whole sequence (a test), for the cost of the new positions. The cache holds
// context_length positions per sequence; going past that is a shape_error (generate() starts
// over with the most recent window instead).
//
// Precision: T is float, double or bf16. A bf16 model stores its weights, gradients and kept
// activations in bf16 and computes in float: GEMMs accumulate in float (one rounding per output),
// norms, softmax, attention (its saved log-sum-exp stays float) and the loss run in float, the
// embedding's scatter-add accumulates in float. It is the working copy of mixed-precision
// training: convert_parameters(master, work) refreshes it from float master weights and
// convert_gradients(work, master) hands its gradients back (train::fit with
// nn::precision::bf16_mixed).
// rebind<U> names the same model with U storage.
//
// Sequences of different lengths (design decision 29): the cache keeps one length per sequence
// (kv_cache::length while they are equal, kv_cache::lengths once they differ), and
// ragged_logits(new_tokens, cache) / last_logits(new_tokens, cache) continue each sequence b by
// its own new_tokens[b] (any number, none included). The new positions of all sequences are packed
// into one (1, N, D) input — no padding: every GEMM sees the N rows once — each row is rotated by
// RoPE at its own position, and attention runs per sequence over its own cache row (its filled
// slots and its new positions), so no unfilled or foreign slot is read and nothing needs a mask.
// A decode step of B sequences thus costs B positions. The training path does not use it.
//
// Initialisation (CS336 §3.4.1): linear weights 𝒩(0, 2/(d_in + d_out)) truncated at ±3σ,
// embeddings 𝒩(0, 1) truncated at ±3, norm gains 1. Parameter p draws from Philox stream p of the
// seed (in the order for_each_parameter visits them), so a model is a function of (config, seed).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
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
#include "einlm/nn/blocks.hpp"
#include "einlm/nn/config.hpp"
#include "einlm/nn/functional.hpp"
#include "einlm/nn/moe.hpp"

namespace einlm::nn {

/// The weights of one transformer block: the attention's (q_proj, k_proj, v_proj, output_proj
/// (H·Dh, D), (K·Dh, D) twice, (D, D); q_norm, k_norm (Dh,) each when qk_norm; no biases), the
/// SwiGLU network's (w1, w2, w3: (F, D), (D, F), (F, D)) and the two norms' gains.
template <class T>
struct block_parameters : attention_weights<T>, swiglu_weights<T> {
  tensor<T, dims<1>> ln1;                                   // (D,)
  tensor<T, dims<1>> ln2;                                   // (D,)
  moe_parameters<T> moe;                                    // the mixture-of-experts FFN, when this layer has one
                                                            // (w1, w2, w3 are then empty)

  bool is_moe() const { return moe.config.num_experts > 0; }
};

namespace detail {

/// f(name, tensor) for every tensor of `self` — a transformer_parameters, or a structure with the
/// same members (the device copy of nn/transformer_cuda.cuh, whose layers have no experts) — in
/// the checkpoint and optimizer order, under CS336's names.
template <class Self, class F>
void visit_transformer_parameters(Self& self, F& f) {
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
    if constexpr (requires { l.is_moe(); }) {
      if (l.is_moe()) {
        l.moe.for_each_parameter(p + "ffn.", f);
        continue;
      }
    }
    f(p + "ffn.w1.weight", l.w1);
    f(p + "ffn.w2.weight", l.w2);
    f(p + "ffn.w3.weight", l.w3);
  }
  f(std::string("ln_final.weight"), self.ln_final);
  if (!self.config.tied_embeddings) f(std::string("lm_head.weight"), self.lm_head);
}

/// The tensor type visit_side_by_side reads on the other side: the visited tensor's own type, or
/// (as_tensor_of<U, S>) its shape with element type U in memory space S.
struct same_tensor {
  template <class W>
  using type = W;
};
template <class U, class S>
struct as_tensor_of {
  template <class W>
  using type = tensor<U, typename W::extents_type, S>;
};

/// f(name, a, b) for every tensor a of `params` with the tensor b at the same place of `others`:
/// two parameter structures of one configuration, visited in the same order, whose tensors are
/// Rebind::type of each other's (weights and gradients; float masters and a bf16 or host copy).
/// `others` may be const; then so is b.
template <class Rebind, class Params, class Others, class F>
void visit_side_by_side(Params& params, Others& others, F&& f) {
  constexpr bool read_only = std::is_const_v<Others>;
  std::vector<std::conditional_t<read_only, const void*, void*>> at;
  others.for_each_parameter([&](const std::string&, auto& t) { at.push_back(&t); });
  std::size_t i = 0;
  params.for_each_parameter([&](const std::string& name, auto& a) {
    using B = typename Rebind::template type<std::remove_cvref_t<decltype(a)>>;
    f(name, a, *static_cast<std::conditional_t<read_only, const B*, B*>>(at[i++]));
  });
}

/// f(name, weight, gradient) for every weight of `params` with its gradient in `grads` (the same types).
template <class Params, class Grads, class F>
void visit_weights_and_gradients(Params& params, Grads& grads, F&& f) {
  visit_side_by_side<same_tensor>(params, grads, f);
}

}  // namespace detail

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
    detail::visit_transformer_parameters(*this, f);
  }
  template <class F>
  void for_each_parameter(F&& f) const {
    detail::visit_transformer_parameters(*this, f);
  }

  /// Number of scalars over all parameters.
  std::int64_t size() const {
    std::int64_t n = 0;
    for_each_parameter([&](const std::string&, const auto& t) { n += t.size(); });
    return n;
  }
};

namespace detail {

/// What a block keeps from its forward pass for its backward pass.
template <class T>
struct block_activations {
  tensor<T, dims<3>> x;                    // (B, S, D) block input
  attention_cache<T> attn;                 // ln1(x), q, k, v, lse, the merged attention output
  tensor<T, dims<3>> h;                    // (B, S, D) after the attention residual
  swiglu_cache<T> ffn;                     // ln2(h) and the (B, S, F) hiddens
};

}  // namespace detail

template <class T = float>
class transformer_lm {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, bf16>,
                "transformer_lm: parameters are float, double or bf16");

 public:
  using value_type = T;
  /// The same model with U storage (mixed precision's working copy: rebind<bf16>).
  template <class U>
  using rebind = transformer_lm<U>;

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
    detail::visit_weights_and_gradients(params_, grads_, [&](const std::string& name, auto& w, auto& g) {
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
      if (!moe_parameters<T>::trainable(name)) w = T(0);  // selection biases
      else detail::cs336_initialise(name, w, g);          // gains 1, embeddings 𝒩(0, 1), matrices 𝒩(0, 2/(in + out))
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
    c.sequences = batch;
    c.positions = config_.context_length;
    for (std::int64_t i = 0; i < config_.num_layers; ++i) {
      c.k.emplace_back(batch, config_.kv_heads(), config_.context_length, config_.head_dim());  // (B, K, C, Dh)
      c.v.emplace_back(batch, config_.kv_heads(), config_.context_length, config_.head_dim());  // (B, K, C, Dh)
    }
    return c;
  }

  /// Logits (B, S, V) of `tokens` (B, S) continuing the sequences in `cache`, which they extend:
  /// each sequence by S positions after its own length.
  template <class I>
  tensor<T, dims<3>> logits(const I& tokens, kv_cache<T>& cache) {
    if (!cache.ragged()) return forward(tokens, /*keep=*/false, &cache);
    const auto t = as_view(tokens);
    static_assert(decltype(t)::rank() == 2, "transformer_lm: token ids are (batch, sequence)");
    const index_t B = t.extent(0), S = t.extent(1);
    std::vector<std::vector<std::int64_t>> rows(static_cast<std::size_t>(B));
    for (index_t b = 0; b < B; ++b)
      for (index_t s = 0; s < S; ++s) rows[static_cast<std::size_t>(b)].push_back(static_cast<std::int64_t>(t(b, s)));
    const auto packed = forward_ragged(rows, cache, /*last_only=*/false);           // (B·S, V)
    return tensor<T, dims<3>>(rearrange<"(b s) v -> b s v">(packed, axis_size<"b">{B}));  // (B, S, V)
  }

  /// Logits of sequences that each continue by their own number of tokens: new_tokens[b] (possibly
  /// empty) continues sequence b of `cache` (new_tokens.size() == cache.batch()) after its own
  /// length. Returns the packed logits (N, V), N the total of new tokens: row o_b + j is token j
  /// of sequence b, o_b the number of new tokens of the sequences before b. The same logits as
  /// running each sequence alone (a test), for the cost of the new positions.
  tensor<T, dims<2>> ragged_logits(std::span<const std::vector<std::int64_t>> new_tokens, kv_cache<T>& cache) {
    return forward_ragged(new_tokens, cache, /*last_only=*/false);  // (N, V)
  }

  /// The same, but only each sequence's last new position (B, V) — what generation needs; the row
  /// of a sequence without new tokens is 0. The LM head runs on those B rows only.
  tensor<T, dims<2>> last_logits(std::span<const std::vector<std::int64_t>> new_tokens, kv_cache<T>& cache) {
    return forward_ragged(new_tokens, cache, /*last_only=*/true);  // (B, V)
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
      for (const auto* t : {&a.x, &a.attn.a, &a.attn.o_merged, &a.h, &a.ffn.x, &a.ffn.f1, &a.ffn.f3, &a.ffn.g})
        kept_bytes_ += t->bytes();
    for (const auto& a : acts_) kept_bytes_ += a.attn.lse.bytes();  // float for bf16
    for (const auto& a : acts_)
      for (const auto* t : {&a.attn.q_raw, &a.attn.k_raw, &a.attn.q, &a.attn.k, &a.attn.v}) kept_bytes_ += t->bytes();
    // The gradient is written over the logits, and backward frees it after the head: the step's
    // peak is the kept activations, logits included.
    auto [loss, dlogits] = cross_entropy_with_grad(std::move(logits), targets, z_loss);  // (B, S, V)
    backward(std::move(dlogits));
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
  /// Every layer's routing statistics of the last forward pass (one entry per layer).
  const std::vector<moe_stats>& routing_stats() const { return moe_stats_; }

  /// DeepSeek-V3's auxiliary-loss-free balancing after an optimizer step: every sigmoid router's
  /// selection bias moves by ±bias_update_rate toward the mean load of the last forward pass.
  void update_router_biases() { update_router_biases(moe_stats_); }
  /// The same from the loads another copy of this model observed (`stats`, one entry per layer, as
  /// routing_stats() gives), which become this model's routing_stats(): how the float master
  /// weights of mixed-precision training follow the bf16 working copy's routing.
  void update_router_biases(const std::vector<moe_stats>& stats) {
    if (stats.size() != params_.layers.size())
      throw shape_error(einlm::detail::concat("update_router_biases: ", stats.size(), " layers of statistics for a model of ",
                                              params_.layers.size(), " layers"));
    if (&stats != &moe_stats_) moe_stats_ = stats;
    if (model_config_.router != router_kind::sigmoid || model_config_.bias_update_rate == 0) return;
    for (std::size_t i = 0; i < params_.layers.size(); ++i)
      if (params_.layers[i].is_moe() && !stats[i].routed_per_expert.empty())
        update_router_bias(params_.layers[i].moe, stats[i]);
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
    const index_t S = tokens.extent(1);
    if (offset + S > config_.context_length)
      throw shape_error(offset == 0 ? einlm::detail::concat("transformer_lm: a sequence of ", S,
                                                            " tokens exceeds context_length ", config_.context_length)
                                    : einlm::detail::concat("transformer_lm: ", S, " new tokens after the cache's ", offset,
                                                            " exceed context_length ", config_.context_length));
    return detail::embedding_gather(params_.token_embeddings, tokens, tokens_, "transformer_lm");  // (B, S, D)
  }

  const tensor<T, dims<2>>& head_weight() const {
    return config_.tied_embeddings ? params_.token_embeddings : params_.lm_head;
  }

  template <class I>
  tensor<T, dims<3>> forward(const I& tokens, bool keep, kv_cache<T>* cache = nullptr) {
    const index_t p0 = cache ? cache->length : 0;                                  // positions already cached
    auto x = embed(tokens, p0);                                                    // (B, S, D)
    const index_t B = x.extent(0), S = x.extent(1);
    if (cache && (cache->batch() != B || static_cast<std::int64_t>(cache->k.size()) != config_.num_layers))
      throw shape_error(einlm::detail::concat("transformer_lm: a cache for ", cache->batch(),
                                              " sequences was given tokens of batch ", B));
    positions_ = tensor<std::int64_t, dims<1>>(S);                                 // (S,)
    for (index_t s = 0; s < S; ++s) positions_(s) = p0 + s;
    x = run_blocks(std::move(x), keep, [&](std::size_t i) {
      return cache ? detail::attention_kv<T>{&cache->k[i], &cache->v[i], p0, {}, {}} : detail::attention_kv<T>{};
    });                                                                            // (B, S, D)
    if (cache) cache->length = p0 + S;
    auto n = rms_norm(x, params_.ln_final, config_.norm_eps);                                 // (B, S, D)
    auto logits = einsum<"b s d, v d -> b s v">(n, head_weight());                 // (B, S, V)
    if (keep) {
      final_x_ = std::move(x);
      final_n_ = std::move(n);
    }
    return logits;
  }

  /// The ragged forward of ragged_logits and last_logits: every sequence's new positions packed
  /// into one (1, N, D) input, RoPE'd at their own positions, each attending to its own cache row.
  tensor<T, dims<2>> forward_ragged(std::span<const std::vector<std::int64_t>> new_tokens, kv_cache<T>& cache,
                                    bool last_only) {
    const index_t V = config_.vocab_size;
    if (static_cast<std::int64_t>(cache.k.size()) != config_.num_layers)
      throw shape_error(einlm::detail::concat("transformer_lm: the KV cache has ", cache.k.size(),
                                              " layers, the model ", config_.num_layers));
    auto packed = detail::pack_ragged(new_tokens, cache, V, "transformer_lm");
    if (packed.size() == 0) return detail::zeros<T>(last_only ? cache.batch() : 0, V);  // (B, V) or (0, V)
    auto x = detail::embedding_gather(params_.token_embeddings, packed.ids, tokens_, "transformer_lm");  // (1, N, D)
    positions_ = std::move(packed.positions);                                     // (N,)
    x = run_blocks(std::move(x), /*keep=*/false, [&](std::size_t i) {
      return detail::attention_kv<T>{&cache.k[i], &cache.v[i], 0, packed.lengths, packed.offsets};
    });                                                                            // (1, N, D)
    detail::advance(cache, packed);
    if (!last_only) {
      const auto n = rms_norm(x, params_.ln_final, config_.norm_eps);                         // (1, N, D)
      const auto logits = einsum<"b s d, v d -> b s v">(n, head_weight());         // (1, N, V)
      return tensor<T, dims<2>>(rearrange<"b s v -> (b s) v">(logits));            // (N, V)
    }
    // The norm and the head on each sequence's last new position only.
    const auto last = detail::select_rows(x, packed.last_rows);                    // (1, R, D)
    const auto n = rms_norm(last, params_.ln_final, config_.norm_eps);             // (1, R, D)
    return detail::scatter_last(einsum<"b s d, v d -> b s v">(n, head_weight()), packed);  // (B, V)
  }

  /// The blocks over x (B, S, D) at positions_, layer i attending through kv_of(i); keeps the
  /// activations for backward when `keep`.
  template <class KV>
  tensor<T, dims<3>> run_blocks(tensor<T, dims<3>> x, bool keep, KV&& kv_of) {
    const double eps = config_.norm_eps;
    const detail::attention_spec spec{config_.num_heads, config_.kv_heads(), config_.qk_norm, config_.rope_theta, eps};
    const index_t B = x.extent(0), S = x.extent(1);
    acts_.clear();
    if (keep) acts_.resize(params_.layers.size());
    for (std::size_t i = 0; i < params_.layers.size(); ++i) {
      const auto& w = params_.layers[i];
      detail::block_activations<T> act;
      tensor<T, dims<3>> a = rms_norm(x, w.ln1, eps);                              // (B, S, D)
      const detail::attention_kv<T> kv = kv_of(i);
      const auto attn_out = detail::attention_layer_forward(w, spec, std::move(a), positions_, keep ? &act.attn : nullptr, kv);  // (B, S, D)
      tensor<T, dims<3>> h = x + attn_out;                                         // (B, S, D)
      tensor<T, dims<3>> bn = rms_norm(h, w.ln2, eps);                             // (B, S, D)
      tensor<T, dims<3>> out;                                                      // (B, S, D)
      if (w.is_moe()) {
        const tensor<T, dims<2>> rows = rearrange<"b s d -> (b s) d">(bn);         // (B·S, D)
        auto& layer = moe_layers_[i];
        const auto y = keep ? layer.forward_train(w.moe, rows, S)                  // (B·S, D)
                            : moe_layer<T>::forward(w.moe, rows, S, &moe_stats_[i]);
        if (keep) moe_stats_[i] = layer.stats();
        out = tensor<T, dims<3>>(h + rearrange<"(b s) d -> b s d">(y, axis_size<"b">{B}));  // (B, S, D)
      } else {
        const auto ffn_out = detail::swiglu_forward(w, std::move(bn), keep ? &act.ffn : nullptr);  // (B, S, D)
        out = tensor<T, dims<3>>(h + ffn_out);                                     // (B, S, D)
      }
      if (keep) {
        act.x = std::move(x);
        act.h = std::move(h);
        acts_[i] = std::move(act);
      }
      x = std::move(out);
    }
    return x;
  }

  void backward(tensor<T, dims<3>> dlogits) {
    const double eps = config_.norm_eps;
    const detail::attention_spec spec{config_.num_heads, config_.kv_heads(), config_.qk_norm, config_.rope_theta, eps};
    // LM head and final norm.
    auto& dhead = config_.tied_embeddings ? grads_.token_embeddings : grads_.lm_head;
    einsum_accumulate<"b s v, b s d -> v d">(dhead, dlogits, final_n_);           // (V, D)
    auto dn = einsum<"b s v, v d -> b s d">(dlogits, head_weight());               // (B, S, D)
    dlogits = {};
    final_n_ = {};
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
        db = tensor<T, dims<3>>(rearrange<"(b s) d -> b s d">(drows, axis_size<"b">{dx.extent(0)}));  // (B, S, D)
      } else {
        // Feed-forward: out = h + w2(silu(w1 b) ⊙ w3 b), b = ln2(h).
        db = tensor<T, dims<3>>(detail::swiglu_layer_backward(w, gw, act.ffn, dx));  // (B, S, D)
      }
      auto [dh_norm, dgain2] = rms_norm_backward(act.h, w.ln2, db, eps);         // (B, S, D), (D,)
      detail::accumulate(gw.ln2, dgain2);
      tensor<T, dims<3>> dh = dx + dh_norm;                                       // (B, S, D)
      // Attention: h = x + attention(ln1(x)).
      const auto da = detail::attention_layer_backward(w, gw, spec, act.attn, positions_, dh);  // (B, S, D)
      auto [dx_norm, dgain1] = rms_norm_backward(act.x, w.ln1, da, eps);         // (B, S, D), (D,)
      detail::accumulate(gw.ln1, dgain1);
      dx = dh + dx_norm;                                                          // (B, S, D)
      act = {};  // release this block's activations
    }
    // Embedding: scatter-add each position's gradient into its token's row.
    detail::embedding_scatter(grads_.token_embeddings, tokens_, dx);
    acts_.clear();
    final_x_ = {};
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

namespace detail {

/// Copies every tensor of `from` into the tensor of `to` at the same place (the same names in the
/// same order), converted by convert<T>; a size mismatch is a shape_error naming the tensor.
template <class T, class U>
void convert_each(const transformer_parameters<U>& from, transformer_parameters<T>& to, const char* who) {
  convert_tensors<U, T>([&](auto& f) { from.for_each_parameter(f); }, [&](auto& f) { to.for_each_parameter(f); },
                        who);
}

}  // namespace detail

/// Sets `to`'s weights to `from`'s, converted (to bf16: rounded to nearest even). The models must
/// have the same configuration (shape_error otherwise).
template <class T, class U>
void convert_parameters(const transformer_lm<U>& from, transformer_lm<T>& to) {
  detail::convert_each(from.parameters(), to.parameters(), "convert_parameters");
}

/// Sets `to`'s gradients to `from`'s, converted (bf16 → float is exact).
template <class T, class U>
void convert_gradients(const transformer_lm<U>& from, transformer_lm<T>& to) {
  detail::convert_each(from.gradients(), to.gradients(), "convert_gradients");
}

/// How upcycle() initialises what the dense model does not have.
struct upcycle_options {
  double expert_noise = 0.0;  // each expert weight w ← w · (1 + ε), ε ~ 𝒩(0, expert_noise²), per element
  double router_std = 0.02;   // router weights ~ 𝒩(0, router_std²) truncated at ±3σ: near-uniform routing
  std::uint64_t seed = 0;     // Philox seed of the noise and the router
};

/// Sparse upcycling (Komatsuzaki et al. 2022): a mixture-of-experts model of shape `m` from the
/// dense model `dense`, whose shape must be m.base. Every tensor the two share by name is copied;
/// in each MoE layer every routed and every shared expert is a copy of that layer's dense FFN
/// (times 1 + noise when expert_noise > 0), the router is drawn small, and the selection biases
/// are 0. Without noise and with top_k > 1 gates that sum to 1 (softmax: renormalised; sigmoid:
/// always) and no shared experts, the upcycled model computes the dense model's function (a test).
/// A shape mismatch is a config_error.
template <class T>
transformer_lm<T> upcycle(const transformer_lm<T>& dense, const moe_config& m, const upcycle_options& o = {}) {
  if (!(dense.config() == m.base))
    throw config_error("upcycle: the MoE configuration's base is not the dense model's shape");
  if (dense.model_config().num_experts != 0) throw config_error("upcycle: the model to upcycle is not dense");
  if (!(o.expert_noise >= 0) || !(o.router_std >= 0))
    throw config_error("upcycle: expert_noise and router_std must not be negative");
  transformer_lm<T> moe(m);
  const auto& from = dense.parameters();
  auto& to = moe.parameters();
  // The shared tensors, by name.
  std::vector<std::pair<std::string, const tensor<T, dims<1>>*>> vectors;
  std::vector<std::pair<std::string, const tensor<T, dims<2>>*>> matrices;
  from.for_each_parameter([&](const std::string& name, const auto& t) {
    if constexpr (std::remove_cvref_t<decltype(t)>::extents_type::rank() == 1) vectors.emplace_back(name, &t);
    else matrices.emplace_back(name, &t);
  });
  to.for_each_parameter([&](const std::string& name, auto& t) {
    auto copy_from = [&](const auto& list) {
      for (const auto& [n, src] : list)
        if (n == name) {
          std::copy(src->data(), src->data() + src->size(), t.data());
          return true;
        }
      return false;
    };
    if constexpr (std::remove_cvref_t<decltype(t)>::extents_type::rank() == 1) copy_from(vectors);
    else copy_from(matrices);
  });
  std::uint64_t stream = 0;
  auto expert_from = [&](expert_parameters<T>& e, const block_parameters<T>& d) {
    for (auto [dst, src] : {std::pair{&e.w1, &d.w1}, std::pair{&e.w2, &d.w2}, std::pair{&e.w3, &d.w3}}) {
      const random_stream g{o.seed, stream++};
      for (index_t i = 0; i < dst->size(); ++i) {
        const double eps = o.expert_noise > 0 ? normal_at<double>(g, static_cast<std::uint64_t>(i), 0.0, o.expert_noise) : 0.0;
        dst->data()[i] = static_cast<T>(static_cast<double>(src->data()[i]) * (1.0 + eps));
      }
    }
  };
  for (std::size_t i = 0; i < to.layers.size(); ++i) {
    auto& layer = to.layers[i];
    if (!layer.is_moe()) continue;
    for (auto& e : layer.moe.experts) expert_from(e, from.layers[i]);
    for (auto& e : layer.moe.shared_experts) expert_from(e, from.layers[i]);
    const random_stream g{o.seed, stream++};
    const double sd = o.router_std;
    for (index_t j = 0; j < layer.moe.router.size(); ++j)
      layer.moe.router.data()[j] =
          sd > 0 ? truncated_normal_at<T>(g, static_cast<std::uint64_t>(j), 0.0, sd, -3 * sd, 3 * sd) : T(0);
    if (layer.moe.router_bias.size() > 0) layer.moe.router_bias = T(0);
  }
  return moe;
}

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
