// static_models.hpp — the model shapes einlm-lm is compiled with as static types
// (nn::blocks::cs336_lm), the lookup of a config.json's shape among them, GPT-2's architecture as
// one all-dyn block type (gpt2_any), and static_lm, a block model with the members einlm-lm's
// commands and train::fit use (config(), model_config()).
//
// A configuration runs on the static path when it equals one entry of static_shapes field for
// field (d_ff = 0 and num_kv_heads = 0 compare as the widths they stand for; dense: no experts, no
// MLA; CS336's architecture: SwiGLU, RoPE, RMSNorm, no biases). Any other CS336-architecture
// configuration runs on the dynamic nn::transformer_lm, and one of GPT-2's architecture on
// gpt2_any (is_gpt2); other architectures do not run. Each entry's type is checked against its
// configuration at compile time (parameter count and forward FLOPs, nn/accounting.hpp's) and at
// construction (the blocks' config_error). Every entry instantiates the layer code of one more
// model type for every command: keep the list short (compile time and memory of einlm-lm grow
// with it).
#pragma once

#include <cstdint>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "einlm/nn/accounting.hpp"
#include "einlm/nn/blocks.hpp"
#include "einlm/nn/moe_accounting.hpp"

namespace einlm_lm {

namespace b = einlm::nn::blocks;

/// One compiled-in shape: a name, the configuration it stands for and its block type.
template <class Block>
struct static_shape {
  using block = Block;
  const char* name;
  einlm::nn::transformer_config config;
};

// To add a shape, add one line (a name, the config.json fields, the cs336_lm type of that shape).
// [snippet static-shapes]
inline constexpr std::tuple static_shapes{
    // the tests' shape (tests/train/test_lm_cli.cpp)
    static_shape<b::cs336_lm<300, 32, 2, b::heads<4>, b::kv_heads<2>>>{
        "test", {.vocab_size = 300, .context_length = 32, .d_model = 32, .num_layers = 2, .num_heads = 4,
                 .num_kv_heads = 2}},
    // scripts/demo's model
    static_shape<b::cs336_lm<2048, 128, 4, b::heads<4>, b::d_ff<384>>>{
        "demo", {.vocab_size = 2048, .context_length = 128, .d_model = 128, .num_layers = 4, .num_heads = 4,
                 .d_ff = 384}},
    // CS336's TinyStories model
    static_shape<b::cs336_lm<10'000, 512, 4, b::heads<16>, b::d_ff<1344>>>{
        "tinystories", {.vocab_size = 10'000, .context_length = 256, .d_model = 512, .num_layers = 4,
                        .num_heads = 16, .d_ff = 1344, .rope_theta = 10'000.0}},
};
// [end snippet]

namespace detail {

/// c with d_ff and num_kv_heads spelled out (0 means the default width, as many as the heads).
constexpr einlm::nn::transformer_config normalised(einlm::nn::transformer_config c) {
  c.d_ff = c.ffn_dim();
  c.num_kv_heads = c.kv_heads();
  return c;
}

/// Whether every entry's type has its configuration's parameter count and forward FLOPs.
template <std::size_t... I>
constexpr bool types_match_configs(std::index_sequence<I...>) {
  return ((typename std::tuple_element_t<I, std::remove_cv_t<decltype(static_shapes)>>::block{}.param_count() ==
               einlm::nn::param_count(std::get<I>(static_shapes).config) &&
           typename std::tuple_element_t<I, std::remove_cv_t<decltype(static_shapes)>>::block{}.forward_flops(2, 3) ==
               einlm::nn::flops_forward(std::get<I>(static_shapes).config, 2, 3)) &&
          ...);
}
static_assert(types_match_configs(std::make_index_sequence<std::tuple_size_v<decltype(static_shapes)>>{}),
              "static_shapes: an entry's type is not the shape of its configuration");

}  // namespace detail

/// Whether `m` is the compiled-in shape `c`: dense, without MLA, and every field equal.
inline bool same_shape(const einlm::nn::moe_config& m, const einlm::nn::transformer_config& c) {
  return m.num_experts == 0 && !m.mla.enabled() && detail::normalised(m.base) == detail::normalised(c);
}

/// GPT-2's architecture, run by nn::blocks::gpt2_lm with every dimension given at run time.
using gpt2_any = b::gpt2_lm<einlm::dyn, einlm::dyn, einlm::dyn, einlm::dyn, einlm::dyn>;

/// Whether `m` has GPT-2's architecture (dense, without MLA or qk-norm; a GELU MLP, learned
/// positions, LayerNorm, biases and tied embeddings), which gpt2_any runs.
inline bool is_gpt2(const einlm::nn::moe_config& m) {
  const auto& c = m.base;
  return m.num_experts == 0 && !m.mla.enabled() && !c.qk_norm && c.ffn == einlm::nn::ffn_kind::gelu_mlp &&
         c.positions == einlm::nn::position_kind::learned && c.norm == einlm::nn::norm_kind::layer_norm &&
         c.linear_bias && c.tied_embeddings;
}

/// Whether `m` has CS336's architecture (SwiGLU, RoPE, RMSNorm, no biases), which
/// nn::transformer_lm and the static shapes run (dense or with experts).
inline bool is_cs336(const einlm::nn::moe_config& m) {
  const auto& c = m.base;
  return c.ffn == einlm::nn::ffn_kind::swiglu && c.positions == einlm::nn::position_kind::rope &&
         c.norm == einlm::nn::norm_kind::rms_norm && !c.linear_bias;
}

/// Calls f(shape) with the entry of static_shapes whose configuration `m` is; false if none is.
template <class F>
bool with_static_shape(const einlm::nn::moe_config& m, F&& f) {
  return std::apply([&](const auto&... shape) { return ((same_shape(m, shape.config) && (f(shape), true)) || ...); },
                    static_shapes);
}

/// The compiled-in shapes, one per line: "  name: vocab_size V, context_length T, …".
inline std::string static_shape_list() {
  std::string out;
  std::apply(
      [&](const auto&... shape) {
        ((out += einlm::detail::concat("  ", shape.name, ": vocab_size ", shape.config.vocab_size,
                                       ", context_length ", shape.config.context_length, ", d_model ",
                                       shape.config.d_model, ", num_layers ", shape.config.num_layers, ", num_heads ",
                                       shape.config.num_heads, ", num_kv_heads ", shape.config.kv_heads(), ", d_ff ",
                                       shape.config.ffn_dim(), ", rope_theta ", shape.config.rope_theta,
                                       ", norm_eps ", shape.config.norm_eps, "\n")),
         ...);
      },
      static_shapes);
  return out;
}

/// A block model of a compiled-in shape with what einlm-lm and train::fit ask of a model:
/// config(), model_config() (a dense moe_config: config.json is written the same as
/// transformer_lm's), and construction from a configuration (with CS336's initialisation from a
/// seed, which equals transformer_lm's). static_lm<Block, bf16> (rebind<bf16>) is the working copy
/// of mixed precision and of eval --precision bf16.
template <class Block, class T = float>
class static_lm : public b::model<Block, T> {
 public:
  using value_type = T;
  template <class U>
  using rebind = static_lm<Block, U>;
  explicit static_lm(const einlm::nn::moe_config& m) : b::model<Block, T>(m.base), config_(m.base) {}
  /// CS336's initialisation from `seed`, or GPT-2's for gpt2_any.
  static_lm(const einlm::nn::moe_config& m, std::uint64_t seed) : static_lm(m) {
    if constexpr (std::is_same_v<Block, gpt2_any>)
      this->initialise(seed, b::gpt2_initialisation{m.base.num_layers});
    else
      this->initialise(seed);
  }
  const einlm::nn::transformer_config& config() const { return config_; }
  einlm::nn::moe_config model_config() const { return {.base = config_}; }
  /// The number of parameters (the block's count).
  std::int64_t param_count() const { return this->block().param_count(); }

 private:
  einlm::nn::transformer_config config_;
};

}  // namespace einlm_lm
