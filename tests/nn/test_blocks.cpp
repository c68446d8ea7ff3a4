// Tests of einlm/nn/blocks.hpp: a CS336 model and a small GPT-2 (gpt2_lm) spelled as types
// reproduce PyTorch goldens (logits, loss, every gradient) with static and with dynamic dimensions;
// learned positions against their definition (double and bf16) and their errors; the other
// combinators and leaves (post-norm and parallel residuals, a GPT-2-style block with LayerNorm,
// biases and a GELU MLP, a GPT-2 LM, the embedding) against central finite differences in double;
// the type-level accounting against nn/accounting.hpp (in static_asserts, GPT-2 small whole);
// run-time checks of dynamic shapes.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "einlm/core/safetensors.hpp"
#include "einlm/nn/accounting.hpp"
#include "einlm/nn/blocks.hpp"
#include "einlm/nn/transformer.hpp"
#include "support/check.hpp"
#include "support/max_abs_diff.hpp"

using namespace einlm;
using test::max_abs_diff;
namespace b = einlm::nn::blocks;

namespace {

/// Fills every weight of `m` from 𝒩(0, 0.3), gains around 1.
template <class M>
void randomise(M& m, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> dist(0.0, 0.3);
  m.for_each_parameter([&](const std::string& name, auto& w) {
    const bool gain = name.ends_with("norm.weight") || name.find("ln") != std::string::npos;
    for (index_t i = 0; i < w.size(); ++i) w.data()[i] = (gain ? 1.0 : 0.0) + dist(gen);
  });
}

tensor<double, dims<3>> random_activations(index_t B, index_t S, index_t D, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> dist(0.0, 1.0);
  tensor<double, dims<3>> x(B, S, D);  // (B, S, D)
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = dist(gen);
  return x;
}

tensor<std::int64_t, dims<2>> random_tokens(index_t B, index_t S, std::int64_t vocab, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  tensor<std::int64_t, dims<2>> t(B, S);  // (B, S)
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = static_cast<std::int64_t>(gen() % static_cast<std::uint64_t>(vocab));
  return t;
}

/// Σ y ⊙ r: a scalar loss of a block's output whose gradient is r.
template <class Y>
double dot(const Y& y, const tensor<double, dims<3>>& r) {
  double s = 0;
  for (index_t i = 0; i < r.size(); ++i) s += y.data()[i] * r.data()[i];
  return s;
}

/// Checks every parameter gradient (and the input gradient, for float inputs) of m at x against
/// central finite differences of Σ forward(x) ⊙ r; returns the worst relative error.
template <class M, class X>
double finite_difference_check(M& m, X& x, index_t out_width) {
  auto r = random_activations(x.extent(0), x.extent(1), out_width, 77);              // (B, S, Out)
  m.zero_grad();
  const auto y = m.forward_train(x);  // (B, S, Out)
  const auto dx = m.backward(r);
  // Each loss carries rounding of about a unit of the last place of Σ|y ⊙ r|; over 2h that is a
  // floor under any difference quotient: an exactly-zero gradient, such as a key bias's, reads as
  // up to half of it. The check allows it; the worst error reported is without it.
  double magnitude = 0;
  for (index_t i = 0; i < r.size(); ++i) magnitude += std::abs(y.data()[i] * r.data()[i]);
  const double h = 1e-5;
  const double rounding = std::numeric_limits<double>::epsilon() * magnitude / (2 * h);
  double worst = 0;
  int checked = 0;
  auto compare = [&](double numeric, double analytic) {
    const double scale = std::max(1e-3, std::abs(numeric));
    worst = std::max(worst, std::abs(numeric - analytic) / scale);
    CHECK(std::max(0.0, std::abs(numeric - analytic) - rounding) / scale < 1e-6);
    ++checked;
  };
  m.for_each_parameter_and_gradient([&](const std::string& name, auto& w, const auto& g) {
    CAPTURE(name);
    for (index_t i = 0; i < w.size(); i += std::max<index_t>(1, w.size() / 5)) {
      const double saved = w.data()[i];
      w.data()[i] = saved + h;
      const double up = dot(m.forward(x), r);
      w.data()[i] = saved - h;
      const double down = dot(m.forward(x), r);
      w.data()[i] = saved;
      compare((up - down) / (2 * h), g.data()[i]);
    }
  });
  if constexpr (std::is_floating_point_v<typename X::value_type>) {
    for (index_t i = 0; i < x.size(); i += std::max<index_t>(1, x.size() / 9)) {
      const double saved = x.data()[i];
      x.data()[i] = saved + h;
      const double up = dot(m.forward(x), r);
      x.data()[i] = saved - h;
      const double down = dot(m.forward(x), r);
      x.data()[i] = saved;
      compare((up - down) / (2 * h), dx.data()[i]);
    }
  }
  CHECK(checked > 10);
  return worst;
}

// [snippet cs336_type]
// CS336's TransformerLM as a type: vocabulary 37, d_model 16, 2 layers, 4 heads, SwiGLU width 24.
using mha_lm = b::cs336_lm<37, 16, 2, b::heads<4>, b::d_ff<24>>;
// Grouped-query attention (6 heads sharing 2 key/value heads) with a per-head RMSNorm of q and k.
using gqa_lm = b::cs336_lm<29, 24, 2, b::heads<6>, b::kv_heads<2>, b::qk_norm, b::d_ff<40>>;
// Every dimension given at run time (by a transformer_config or by the constructors).
using dynamic_lm = b::cs336_lm<dyn, dyn, dyn, b::heads<dyn>>;
using dynamic_qk_lm = b::cs336_lm<dyn, dyn, dyn, b::heads<dyn>, b::qk_norm>;
// [end snippet]

/// Loads a model from a golden file and checks its logits, loss and gradients; returns the
/// logits and the gradients' worst relative error, for comparing models with each other.
template <class M>
std::vector<double> check_against_golden(M& model, const safetensors_file& f, double z_loss) {
  model.for_each_parameter([&](const std::string& n, auto& w) { f.load_into(n, w); });
  const auto inputs = f.load<std::int64_t, dims<2>>("input_ids");   // (B, S)
  const auto targets = f.load<std::int64_t, dims<2>>("targets");    // (B, S)
  const auto expected_logits = f.load<double, dims<3>>("logits");   // (B, S, V)
  const auto expected_loss = f.load<double, extents<>>("loss");     // ()
  const auto logits = model.forward(inputs);                        // (B, S, V)
  const double logit_err = max_abs_diff(logits, expected_logits);
  CHECK(logit_err < 1e-10);
  model.zero_grad();
  const double loss = model.forward_backward(inputs, targets, z_loss);
  CHECK(loss == doctest::Approx(expected_loss()).epsilon(1e-12));
  double worst = 0;
  int n = 0;
  std::vector<double> out(logits.data(), logits.data() + logits.size());
  out.push_back(loss);
  model.for_each_parameter_and_gradient([&](const std::string& name, const auto&, const auto& g) {
    CAPTURE(name);
    std::remove_cvref_t<decltype(g)> expected(g.extents());
    f.load_into("grad." + name, expected);
    double scale = 0;
    for (index_t i = 0; i < expected.size(); ++i) scale = std::max(scale, std::abs(expected.data()[i]));
    const double err = max_abs_diff(g, expected);
    CHECK(err <= 1e-10 * std::max(scale, 1.0));
    worst = std::max(worst, err / std::max(scale, 1.0));
    out.insert(out.end(), g.data(), g.data() + g.size());
    ++n;
  });
  CHECK(n > 0);
  MESSAGE("logits off by " << logit_err << ", gradients by " << worst << " (relative to their largest entry)");
  return out;
}

nn::transformer_config golden_config(const safetensors_file& f) {
  auto number = [&](const std::string& key) { return std::stod(f.metadata().at(key)); };
  auto integer = [&](const std::string& key) { return static_cast<std::int64_t>(std::stoll(f.metadata().at(key))); };
  return {.vocab_size = integer("vocab_size"), .context_length = integer("context_length"), .d_model = integer("d_model"),
          .num_layers = integer("num_layers"), .num_heads = integer("num_heads"),
          .num_kv_heads = integer("num_kv_heads"), .d_ff = integer("d_ff"), .rope_theta = number("rope_theta"),
          .norm_eps = number("norm_eps"), .qk_norm = f.metadata().at("qk_norm") == "true"};
}

}  // namespace

TEST_CASE("blocks: a CS336 model as a type has CS336's parameter names") {
  b::model<mha_lm, float> m;
  std::vector<std::string> names;
  m.for_each_parameter([&](const std::string& name, const auto&) { names.push_back(name); });
  const std::vector<std::string> expected{
      "token_embeddings.weight", "layers.0.ln1.weight", "layers.0.attn.q_proj.weight", "layers.0.attn.k_proj.weight",
      "layers.0.attn.v_proj.weight", "layers.0.attn.output_proj.weight", "layers.0.ln2.weight",
      "layers.0.ffn.w1.weight", "layers.0.ffn.w2.weight", "layers.0.ffn.w3.weight", "layers.1.ln1.weight",
      "layers.1.attn.q_proj.weight", "layers.1.attn.k_proj.weight", "layers.1.attn.v_proj.weight",
      "layers.1.attn.output_proj.weight", "layers.1.ln2.weight", "layers.1.ffn.w1.weight", "layers.1.ffn.w2.weight",
      "layers.1.ffn.w3.weight", "ln_final.weight", "lm_head.weight"};
  CHECK(names == expected);
}

TEST_CASE("blocks: CS336's initialisation equals transformer_lm's for the same seed; biases start at 0") {
  const nn::transformer_config c{.vocab_size = 37, .context_length = 16, .d_model = 16, .num_layers = 2, .num_heads = 4,
                                 .d_ff = 24};
  // [snippet blocks_initialise]
  b::model<mha_lm, float> typed(c, /*seed=*/7);  // CS336's initialisation, as transformer_lm's
  // [end snippet]
  nn::transformer_lm<float> reference(c, 7);
  std::vector<std::vector<float>> a, r;
  typed.for_each_parameter([&](const std::string&, const auto& w) { a.emplace_back(w.data(), w.data() + w.size()); });
  reference.for_each_parameter([&](const std::string&, const auto& w) { r.emplace_back(w.data(), w.data() + w.size()); });
  CHECK(a == r);
  CHECK(a.front() != std::vector<float>(a.front().size(), 0.0f));  // drawn, not zero
  b::model<mha_lm, float> other(c, 8);
  std::vector<std::vector<float>> o;
  other.for_each_parameter([&](const std::string&, const auto& w) { o.emplace_back(w.data(), w.data() + w.size()); });
  CHECK(o != a);  // a function of the seed
  // A GPT-2-style block with biases: weights drawn, gains 1, biases 0.
  using mlp = b::gelu_mlp<16, 64, true>;
  b::model<mlp, double> m;
  m.initialise(3);
  int biases = 0, weights = 0;
  m.for_each_parameter([&](const std::string& name, const auto& w) {
    CAPTURE(name);
    if (w.extents().rank() == 1) {
      ++biases;
      for (index_t i = 0; i < w.size(); ++i) CHECK(w.data()[i] == 0.0);
    } else {
      ++weights;
      double sq = 0;
      for (index_t i = 0; i < w.size(); ++i) sq += w.data()[i] * w.data()[i];
      const double sigma = std::sqrt(2.0 / static_cast<double>(w.extent(0) + w.extent(1)));
      CHECK(std::sqrt(sq / static_cast<double>(w.size())) == doctest::Approx(sigma).epsilon(0.15));
    }
  });
  CHECK(biases == 2);
  CHECK(weights == 2);
}

TEST_CASE("blocks: CS336 models as types reproduce the PyTorch goldens, static and dynamic alike") {
  {
    const safetensors_file f(test::test_data_dir() + "/nn/transformer_mha.safetensors");
    const auto c = golden_config(f);
    b::model<mha_lm, double> fixed(c);      // static dimensions, checked against the configuration
    b::model<dynamic_lm, double> dynamic(c);  // the same dimensions, given at run time
    const auto a = check_against_golden(fixed, f, 0.0);
    const auto d = check_against_golden(dynamic, f, 0.0);
    CHECK(a == d);  // identical, to the bit
  }
  {
    const safetensors_file f(test::test_data_dir() + "/nn/transformer_gqa_qknorm.safetensors");
    const auto c = golden_config(f);
    const double z_loss = std::stod(f.metadata().at("z_loss"));
    b::model<gqa_lm, double> fixed(c);
    b::model<dynamic_qk_lm, double> dynamic(c);
    const auto a = check_against_golden(fixed, f, z_loss);
    const auto d = check_against_golden(dynamic, f, z_loss);
    CHECK(a == d);
  }
  {
    // Multi-query attention, every dimension at run time (kv_heads<dyn> defaults to heads<dyn>).
    const safetensors_file f(test::test_data_dir() + "/nn/transformer_mqa.safetensors");
    b::model<dynamic_lm, double> dynamic(golden_config(f));
    check_against_golden(dynamic, f, std::stod(f.metadata().at("z_loss")));
  }
}

// [snippet gpt2_tiny]
// A small GPT-2: vocabulary 29, 12 positions, d_model 16, 2 layers, 4 heads.
using gpt2_tiny = b::gpt2_lm<29, 12, 16, 2, 4>;
constexpr nn::transformer_config gpt2_tiny_config = [] {
  auto c = nn::presets::gpt2(/*d_model=*/16, /*num_layers=*/2, /*num_heads=*/4);
  c.vocab_size = 29;
  c.context_length = 12;
  return c;
}();
// [end snippet]

TEST_CASE("blocks: a GPT-2-shaped type reproduces the PyTorch golden, static and dynamic alike") {
  const safetensors_file f(test::test_data_dir() + "/nn/gpt2_tiny.safetensors");
  b::model<gpt2_tiny, double> fixed(gpt2_tiny_config);
  b::model<b::gpt2_lm<dyn, dyn, dyn, dyn, dyn>, double> dynamic(gpt2_tiny_config);
  const auto a = check_against_golden(fixed, f, 0.0);
  CHECK(a == check_against_golden(dynamic, f, 0.0));  // identical, to the bit
  std::vector<std::string> names;
  fixed.for_each_parameter([&](const std::string& name, const auto&) { names.push_back(name); });
  REQUIRE(names.size() == 36);
  CHECK(names[0] == "token_embeddings.weight");
  CHECK(names[1] == "position_embeddings.weight");
  CHECK(names[2] == "layers.0.ln_1.weight");
  CHECK(names.back() == "ln_final.bias");
}

/// The entries of a token embedding followed by learned positions, on random tokens, that differ
/// from the sum of the two tables' rows (token id, position) in the accumulator type, rounded once.
template <class T>
int position_sum_mismatches(std::uint64_t seed) {
  using embed = b::sequential<b::embedding<29, 16>, b::learned_positions<12, 16>>;
  using A = accumulator_t<T>;
  b::model<embed, T> m;
  m.initialise(seed);
  const auto tokens = random_tokens(3, 7, 29, seed);                 // (B, S)
  const auto y = m.forward(tokens);                                  // (B, S, D)
  const auto& table = std::get<0>(m.parameters().blocks).weight;      // (V, D)
  const auto& positions = std::get<1>(m.parameters().blocks).weight;  // (P, D)
  int wrong = 0;
  for (index_t i = 0; i < 3; ++i)
    for (index_t s = 0; s < 7; ++s)
      for (index_t d = 0; d < 16; ++d) {
        const T expected(static_cast<A>(table(tokens(i, s), d)) + static_cast<A>(positions(s, d)));
        wrong += static_cast<A>(y(i, s, d)) != static_cast<A>(expected);
      }
  return wrong;
}

TEST_CASE("blocks: GPT-2's initialisation: 0.02, the residual projections scaled by 1/sqrt(2L), gains 1, biases 0") {
  b::model<b::gpt2_lm<300, 64, 64, 3, 4>, float> m;
  m.initialise(7, b::gpt2_initialisation{.layers = 3});
  int matrices = 0, scaled = 0, vectors = 0;
  m.for_each_parameter([&](const std::string& name, const auto& w) {
    CAPTURE(name);
    if (w.extents().rank() == 1) {
      ++vectors;
      for (index_t i = 0; i < w.size(); ++i) CHECK(w.data()[i] == (name.ends_with(".bias") ? 0.0f : 1.0f));
      return;
    }
    const bool residual = name.ends_with("output_proj.weight") || name.ends_with("fc2.weight");
    const double sigma = residual ? 0.02 / std::sqrt(6.0) : 0.02;
    double sq = 0, largest = 0;
    for (index_t i = 0; i < w.size(); ++i) {
      sq += double(w.data()[i]) * double(w.data()[i]);
      largest = std::max(largest, std::abs(double(w.data()[i])));
    }
    // A normal truncated at ±3σ has a standard deviation of 0.986σ.
    CHECK(std::sqrt(sq / static_cast<double>(w.size())) == doctest::Approx(0.986 * sigma).epsilon(0.05));
    CHECK(largest <= 3 * sigma + 1e-9);
    ++(residual ? scaled : matrices);
  });
  CHECK(matrices == 2 + 3 * 4);  // the two tables; q, k, v and fc1 per layer
  CHECK(scaled == 3 * 2);
  CHECK(vectors == 3 * 10 + 2);  // 2 LayerNorms and 6 biases per layer; the final LayerNorm
}

TEST_CASE("blocks: learned positions add the table's row of each position, and reject the rest") {
  CHECK(position_sum_mismatches<double>(13) == 0);
  CHECK(position_sum_mismatches<bf16>(14) == 0);
  // A sequence longer than the table, and a configuration with rotary positions.
  using short_table = b::gpt2_lm<29, 8, 16, 2, 4>;
  b::model<short_table, double> lm(short_table{}, {.context_length = 12});
  CHECK_THROWS_WITH_AS(lm.forward(random_tokens(1, 10, 29, 15)),
                       "learned_positions: position 8 of row (0, 8) is past the table's 8 positions", value_error);
  auto rotary = gpt2_tiny_config;
  rotary.positions = nn::position_kind::rope;
  CHECK_THROWS_WITH_AS(b::model<gpt2_tiny>{rotary},
                       "learned_positions: the configuration's positions are rotary; the type adds a learned table",
                       nn::config_error);
  CHECK_THROWS_WITH_AS((b::learned_positions<dyn, 16>(0, 16)), "learned_positions: positions must be positive, got 0",
                       nn::config_error);
}

TEST_CASE("blocks: group_by_token lists each token's positions in order, tokens ascending") {
  const std::vector<std::int64_t> ids{5, 2, 5, 9, 2, 2, 0, 5};
  const auto runs = nn::detail::group_by_token(ids);
  CHECK(runs.order == std::vector<std::int64_t>{6, 1, 4, 5, 0, 2, 7, 3});
  CHECK(runs.starts == std::vector<std::int64_t>{0, 1, 4, 7, 8});
  const auto none = nn::detail::group_by_token({});
  CHECK(none.order.empty());
  CHECK(none.starts == std::vector<std::int64_t>{0});
  // Every position once, each run one token, the runs' tokens increasing.
  std::vector<std::int64_t> many(1000);
  for (std::size_t i = 0; i < many.size(); ++i) many[i] = static_cast<std::int64_t>((i * 7919) % 97);
  const auto r = nn::detail::group_by_token(many);
  CHECK(r.starts.size() == 98);
  std::vector<int> seen(many.size(), 0);
  for (std::size_t u = 0; u + 1 < r.starts.size(); ++u)
    for (auto i = r.starts[u]; i < r.starts[u + 1]; ++i) {
      const auto pos = static_cast<std::size_t>(r.order[static_cast<std::size_t>(i)]);
      ++seen[pos];
      CHECK(many[pos] == static_cast<std::int64_t>(u));
      if (i > r.starts[u]) CHECK(r.order[static_cast<std::size_t>(i)] > r.order[static_cast<std::size_t>(i - 1)]);
    }
  CHECK(std::count(seen.begin(), seen.end(), 1) == static_cast<long>(many.size()));
}

TEST_CASE("blocks: the accounting of a type is nn/accounting.hpp's, in static_asserts") {
  // [snippet accounting]
  constexpr nn::transformer_config config{.vocab_size = 37, .context_length = 7, .d_model = 16, .num_layers = 2,
                                          .num_heads = 4, .d_ff = 24};
  constexpr mha_lm shape{};
  static_assert(shape.param_count() == nn::param_count(config));
  static_assert(shape.forward_flops(2, 7) == nn::flops_forward(config, 2, 7));
  static_assert(shape.activation_bytes(2, 7, /*bytes_per_element=*/8) ==
                nn::activation_bytes(config, 2, 7, 8, nn::attention_activations::log_sum_exp));
  // [end snippet]
  constexpr nn::transformer_config gqa{.vocab_size = 29, .context_length = 12, .d_model = 24, .num_layers = 2,
                                       .num_heads = 6, .num_kv_heads = 2, .d_ff = 40, .qk_norm = true};
  static_assert(gqa_lm{}.param_count() == nn::param_count(gqa));
  static_assert(gqa_lm{}.forward_flops(3, 12) == nn::flops_forward(gqa, 3, 12));
  static_assert(gqa_lm{}.activation_elements(3, 12) ==
                nn::activation_elements(gqa, 3, 12, nn::attention_activations::log_sum_exp));
  // A model of the default SwiGLU width and with dimensions at run time counts the same.
  constexpr nn::transformer_config wide{.vocab_size = 1000, .context_length = 64, .d_model = 128, .num_layers = 3,
                                        .num_heads = 8, .num_kv_heads = 2};
  static_assert(b::cs336_lm<1000, 128, 3, b::heads<8>, b::kv_heads<2>>{}.param_count() == nn::param_count(wide));
  const dynamic_lm runtime(wide);
  CHECK(runtime.param_count() == nn::param_count(wide));
  CHECK(runtime.forward_flops(4, 64) == nn::flops_forward(wide, 4, 64));
  CHECK(runtime.activation_bytes(4, 64) == nn::activation_bytes(wide, 4, 64, 4, nn::attention_activations::log_sum_exp));
}

// [snippet gpt2_block]
// GPT-2's block: pre-norm LayerNorm, attention with biases and no rotary embedding (GPT-2 adds
// learned positions to the embeddings instead), a GELU MLP of width 4·D with biases.
template <std::size_t D, std::size_t H>
using gpt2_block = b::sequential<
    b::residual<b::named<"ln_1", b::layer_norm<D>>, b::named<"attn", b::attention<D, b::heads<H>, b::proj_bias, b::rope<0>>>>,
    b::residual<b::named<"ln_2", b::layer_norm<D>>, b::named<"mlp", b::gelu_mlp<D>>>>;
// [end snippet]
static_assert(std::is_same_v<gpt2_block<768, 12>, b::gpt2_block<768, 12>>, "the library's block is this composition");

// [snippet gpt2_lm]
// GPT-2 small as a type: token embedding plus 1024 learned positions, 12 GPT-2 blocks, a final
// LayerNorm, the LM head tied to the token embedding. Its counts are nn/accounting.hpp's.
using gpt2_small = b::gpt2_lm<50257, 1024, 768, 12, 12>;
static_assert(gpt2_small{}.param_count() == nn::param_count(nn::presets::gpt2_small()));  // 124,439,808
static_assert(gpt2_small{}.forward_flops(8, 1024) == nn::flops_forward(nn::presets::gpt2_small(), 8, 1024));
// [end snippet]

TEST_CASE("blocks: a GPT-2-small-shaped stack counts as nn/accounting.hpp's GPT-2 small") {
  constexpr auto cfg = nn::presets::gpt2_small();
  constexpr auto per_layer = nn::param_counts(cfg);
  using layers = b::repeat<12, gpt2_block<768, 12>>;
  static_assert(layers{}.param_count() == per_layer.num_layers * per_layer.per_layer());
  // The whole model: embedding, 1024 × 768 learned positions, blocks, final LayerNorm, tied head.
  static_assert(gpt2_small{}.param_count() == nn::param_count(cfg));
  static_assert(gpt2_small{}.activation_elements(2, 1024) ==
                nn::activation_elements(cfg, 2, 1024, nn::attention_activations::log_sum_exp));
  // From the preset, every dimension at run time: the same counts.
  const b::gpt2_lm<dyn, dyn, dyn, dyn, dyn> runtime(cfg);
  CHECK(runtime.param_count() == 124'439'808);
  CHECK(runtime.forward_flops(8, 1024) == nn::flops_forward(cfg, 8, 1024));
  constexpr auto flops = nn::flops_forward_counts(cfg, 8, 1024);
  static_assert(layers{}.forward_flops(8, 1024) == flops.attention_projections + flops.attention_scores + flops.ffn);
  static_assert(b::lm_head<768, 50257>{}.forward_flops(8, 1024) == flops.lm_head);
  static_assert(layers{}.activation_elements(2, 1024) ==
                nn::activation_elements(cfg, 2, 1024, nn::attention_activations::log_sum_exp) - 2 * 1024 * (2 * 768 + 50257));
}

TEST_CASE("blocks: post-norm and parallel residuals, a GPT-2-style block and the embedding against finite differences") {
  constexpr std::size_t D = 8;
  SUBCASE("post_norm_residual") {
    using block = b::post_norm_residual<b::rms_norm<D>, b::swiglu<D, 12>>;
    b::model<block, double> m;
    randomise(m, 1);
    auto x = random_activations(2, 5, D, 2);  // (B, S, D)
    MESSAGE("post_norm_residual: worst relative error " << finite_difference_check(m, x, D));
  }
  SUBCASE("parallel_residual") {
    // [snippet parallel]
    using block = b::parallel_residual<b::layer_norm<D>, b::attention<D, b::heads<2>, b::kv_heads<1>>, b::gelu_mlp<D, 16>>;
    // [end snippet]
    b::model<block, double> m;
    randomise(m, 3);
    auto x = random_activations(2, 5, D, 4);  // (B, S, D)
    MESSAGE("parallel_residual: worst relative error " << finite_difference_check(m, x, D));
  }
  SUBCASE("GPT-2-style block: LayerNorm, attention with biases, GELU MLP, then a linear with a bias") {
    using block = b::sequential<gpt2_block<D, 2>, b::relu, b::linear<D, 5, true>>;
    b::model<block, double> m;
    randomise(m, 5);
    auto x = random_activations(2, 6, D, 6);  // (B, S, D)
    MESSAGE("GPT-2-style block: worst relative error " << finite_difference_check(m, x, 5));
  }
  SUBCASE("a GPT-2 language model: learned positions, blocks, tied head") {
    b::model<gpt2_tiny, double> m(gpt2_tiny_config);
    randomise(m, 9);
    auto tokens = random_tokens(2, 7, 29, 10);  // (B, S)
    MESSAGE("GPT-2 LM: worst relative error " << finite_difference_check(m, tokens, 29));
  }
  SUBCASE("embedding, silu, qk-norm attention with all dimensions at run time") {
    using block = b::sequential<b::embedding<dyn, dyn>, b::silu, b::attention<dyn, b::heads<dyn>, b::qk_norm>>;
    b::model<block, double> m(block(b::embedding<dyn, dyn>(11, D), b::silu{}, b::attention<dyn, b::heads<dyn>, b::qk_norm>(D, 4, 2)));
    randomise(m, 7);
    auto tokens = random_tokens(2, 6, 11, 8);  // (B, S)
    MESSAGE("embedding: worst relative error " << finite_difference_check(m, tokens, D));
  }
}

// [snippet new_block]
// A new leaf: y = x ⊙ scale, one learned scale per feature (named "scale"). A block is a literal
// type holding its dimensions, with params, cache, make_params, visit, forward, backward and the
// three counts; the combinators need nothing else.
template <std::size_t D>
struct feature_scale {
  static constexpr std::size_t in_width = D, out_width = D;
  index_t d = static_cast<index_t>(D);
  constexpr index_t in_dim() const { return d; }
  constexpr index_t out_dim() const { return d; }
  template <class T>
  struct params {
    tensor<T, dims<1>> scale;  // (D,)
  };
  template <class T>
  struct cache {
    tensor<T, dims<3>> x;  // (B, S, D)
  };
  template <class T>
  params<T> make_params() const {
    return {nn::detail::zeros<T>(d)};
  }
  template <class P, class F>
  void visit(P& p, const std::string& prefix, F& f) const {
    f(prefix + "scale", p.scale);
  }
  template <class T>
  tensor<T, dims<3>> forward(const params<T>& p, const tensor<T, dims<3>>& x, std::type_identity_t<cache<T>>* c,
                             const b::context&) const {
    if (c) c->x = x.clone();
    return x * p.scale;  // (B, S, D)
  }
  template <class T>
  tensor<T, dims<3>> backward(const params<T>& p, params<T>& g, cache<T>& c, const tensor<T, dims<3>>& dy,
                              const b::context&) const {
    g.scale = g.scale + reduce<"b s d -> d", "sum">(dy * c.x);  // (D,)
    return dy * p.scale;                                         // (B, S, D)
  }
  constexpr std::int64_t param_count() const { return d; }
  constexpr double forward_flops(std::int64_t, std::int64_t) const { return 0; }
  constexpr std::int64_t activation_elements(std::int64_t b, std::int64_t s) const { return b * s * d; }
  constexpr std::int64_t activation_bytes(std::int64_t b, std::int64_t s, std::int64_t bytes = 4) const {
    return activation_elements(b, s) * bytes;
  }
};
// [end snippet]

namespace {

/// act(x Wᵀ + bias) in double from the definitions (GELU: x·Φ(x) through erfc), for the
/// floats of x (B, S, D), W (O, D) and bias (O,) or empty.
template <class X>
std::vector<double> linear_reference(const X& x, const tensor<float, dims<2>>& w, const tensor<float, dims<1>>& bias,
                                     bool gelu) {
  const index_t B = x.extent(0), S = x.extent(1), D = x.extent(2), O = w.extent(0);
  std::vector<double> y;
  for (index_t b = 0; b < B; ++b)
    for (index_t s = 0; s < S; ++s)
      for (index_t o = 0; o < O; ++o) {
        double v = bias.size() > 0 ? double(bias(o)) : 0.0;
        for (index_t d = 0; d < D; ++d) v += double(x(b, s, d)) * double(w(o, d));
        y.push_back(gelu ? 0.5 * v * std::erfc(-v / std::sqrt(2.0)) : v);
      }
  return y;
}

tensor<float, dims<2>> random_matrix(index_t rows, index_t cols, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  tensor<float, dims<2>> m(rows, cols);  // (rows, cols)
  for (index_t i = 0; i < m.size(); ++i) m.data()[i] = dist(gen);
  return m;
}

}  // namespace

TEST_CASE("blocks: linear_forward adds the bias and applies the activation as the GEMM stores y") {
  constexpr index_t B = 3, S = 7, D = 37, O = 70;  // 21 rows: whole and partial tiles
  const auto x2 = random_matrix(B * S, D, 1);
  tensor<float, dims<3>> x(B, S, D);  // (B, S, D)
  std::copy(x2.data(), x2.data() + x2.size(), x.data());
  const auto w = random_matrix(O, D, 2);  // (O, D)
  const auto bias2 = random_matrix(1, O, 3);
  tensor<float, dims<1>> bias(O), no_bias(0);  // (O,), (0,)
  std::copy(bias2.data(), bias2.data() + O, bias.data());
  // Float rounding of a D-term sum of products of normal values: a few units of 2^-24 · Σ|x·w|.
  const double tolerance = 1e-5 * std::sqrt(double(D)) * 4;
  auto check_close = [&](const tensor<float, dims<3>>& y, const std::vector<double>& ref) {
    REQUIRE(y.size() == static_cast<index_t>(ref.size()));
    double worst = 0;
    for (index_t i = 0; i < y.size(); ++i) worst = std::max(worst, std::abs(double(y.data()[i]) - ref[std::size_t(i)]));
    CHECK(worst < tolerance);
    CHECK(worst > 0);  // float, not a copy of the reference
  };
  const auto act_gelu = einlm::activation::gelu;
  SUBCASE("bias only: the values of the einsum followed by y + bias, bit for bit") {
    const auto fused = nn::detail::linear_forward(x, w, &bias);  // (B, S, O)
    const tensor<float, dims<3>> product = einsum<"b s d, o d -> b s o">(x, w);  // (B, S, O)
    const tensor<float, dims<3>> separate = product + bias;                      // (B, S, O)
    CHECK(max_abs_diff(fused, separate) == 0);
    check_close(fused, linear_reference(x, w, bias, false));
  }
  SUBCASE("bias and GELU, GELU alone") {
    check_close(nn::detail::linear_forward(x, w, &bias, act_gelu), linear_reference(x, w, bias, true));
    check_close(nn::detail::linear_forward(x, w, &no_bias, act_gelu), linear_reference(x, w, no_bias, true));
    check_close(nn::detail::linear_forward(x, w, nullptr, act_gelu), linear_reference(x, w, no_bias, true));
  }
  SUBCASE("a view whose batch and sequence do not fold into rows, and an expression") {
    tensor<float, dims<3>> wide(B, 2 * S, D);  // (B, 2S, D)
    for (index_t i = 0; i < wide.size(); ++i) wide.data()[i] = float(i % 13) - 6.0f;
    assign(slice(wide, full_extent, range{S, 2 * S}, full_extent), x);
    const auto xs = slice(wide, full_extent, range{S, 2 * S}, full_extent);  // (B, S, D) view, stride 2S·D
    check_close(nn::detail::linear_forward(xs, w, &bias), linear_reference(x, w, bias, false));
    check_close(nn::detail::linear_forward(xs, w, &bias, act_gelu), linear_reference(x, w, bias, true));
    check_close(nn::detail::linear_forward(x * 1.0f, w, &bias, act_gelu), linear_reference(x, w, bias, true));
  }
  SUBCASE("wrong shapes still name the mismatch") {
    const auto w_short = random_matrix(O, D - 1, 4);
    CHECK_THROWS_AS(nn::detail::linear_forward(x, w_short, &bias, act_gelu), shape_error);
    tensor<float, dims<1>> bias_short(O - 1);  // (O − 1,)
    bias_short = 0.5f;
    CHECK_THROWS_AS(nn::detail::linear_forward(x, w, &bias_short), shape_error);
    CHECK_THROWS_AS(nn::detail::linear_forward(x, w, &bias_short, act_gelu), shape_error);
  }
  SUBCASE("gelu_mlp without a cache (GELU in fc1's epilogue) agrees with its training forward") {
    b::model<b::gelu_mlp<D, 96, true>, float> m;
    m.initialise(5);
    m.for_each_parameter([&](const std::string& name, auto& p) {
      if (name.ends_with("bias"))
        for (index_t i = 0; i < p.size(); ++i) p.data()[i] = 0.1f * float(i % 7) - 0.3f;
    });
    const auto inference = m.forward(x);     // (B, S, D)
    const auto training = m.forward_train(x);  // (B, S, D)
    double worst = 0, scale = 0;
    for (index_t i = 0; i < training.size(); ++i) {
      worst = std::max(worst, std::abs(double(inference.data()[i]) - double(training.data()[i])));
      scale = std::max(scale, std::abs(double(training.data()[i])));
    }
    CHECK(scale > 0.1);
    CHECK(worst <= 1e-6 * scale);
  }
}

TEST_CASE("blocks: a block written outside the library composes with the others") {
  // [snippet new_block_use]
  using block = b::residual<b::rms_norm<8>, b::sequential<b::named<"gate", feature_scale<8>>, b::swiglu<8, 16>>>;
  static_assert(block{}.param_count() == 8 + 8 + 3 * 8 * 16);
  b::model<block, double> m;
  // [end snippet]
  std::vector<std::string> names;
  m.for_each_parameter([&](const std::string& name, const auto&) { names.push_back(name); });
  CHECK(names == std::vector<std::string>{"weight", "gate.scale", "w1.weight", "w2.weight", "w3.weight"});
  randomise(m, 11);
  auto x = random_activations(2, 3, 8, 12);  // (B, S, D)
  MESSAGE("feature_scale: worst relative error " << finite_difference_check(m, x, 8));
}

TEST_CASE("blocks: dynamic dimensions are checked at construction and at run time") {
  nn::transformer_config c{.vocab_size = 37, .context_length = 7, .d_model = 16, .num_layers = 2, .num_heads = 4,
                           .d_ff = 24};
  c.d_model = 32;
  CHECK_THROWS_WITH_AS(b::model<mha_lm>{c}, doctest::Contains("is 16 in the type but 32 at construction"), nn::config_error);
  CHECK_THROWS_WITH_AS((b::attention<dyn, b::heads<dyn>>(30, 4, 4)),
                       "attention: d_model (30) is not divisible by heads (4)", nn::config_error);
  CHECK_THROWS_WITH_AS((b::attention<dyn, b::heads<dyn>, b::kv_heads<dyn>>(32, 4, 3)),
                       "attention: heads (4) is not divisible by kv_heads (3)", nn::config_error);
  // [snippet dynamic]
  using norm_then_ffn = b::residual<b::rms_norm<dyn>, b::swiglu<dyn, dyn>>;
  const norm_then_ffn ok(b::rms_norm<dyn>(64), b::swiglu<dyn, dyn>(64, 192));  // widths given here
  CHECK(ok.param_count() == 64 + 3 * 64 * 192);
  CHECK_THROWS_WITH_AS(norm_then_ffn(b::rms_norm<dyn>(64), b::swiglu<dyn, dyn>(32, 96)),
                       "residual: a block's output width (64) differs from the width the next block reads (32)",
                       nn::config_error);
  // [end snippet]
  b::model<b::rms_norm<dyn>, float> norm(b::rms_norm<dyn>(8));
  const tensor<float, dims<3>> wrong(2, 3, 6);  // (B, S, 6)
  CHECK_THROWS_WITH_AS(norm.forward(wrong), "rms_norm: the input has 6 features, the block reads 8", shape_error);
  b::model<mha_lm, float> lm;
  auto t = random_tokens(1, 4, 37, 9);  // (B, S)
  t(0, 2) = 40;
  CHECK_THROWS_WITH_AS(lm.forward(t), "embedding: token id 40 at (0, 2) is outside the vocabulary [0, 37)", value_error);
}

namespace {

/// A warm training step's peak host memory above the model, in bytes.
template <class M>
std::int64_t step_peak(M& m, const tensor<std::int64_t, dims<2>>& inputs, const tensor<std::int64_t, dims<2>>& targets) {
  m.forward_backward(inputs, targets);  // the first step fills the caches
  const auto before = host_memory_stats();
  reset_peak_host_memory();
  m.forward_backward(inputs, targets);
  const auto after = host_memory_stats();
  CHECK(after.bytes_in_use == before.bytes_in_use);  // the step returns all it took
  return static_cast<std::int64_t>(after.peak_bytes_in_use - before.bytes_in_use);
}

}  // namespace

TEST_CASE("blocks: a training step holds the accounting's activations and no weight-sized temporary") {
  // A vocabulary large beside the rest: the logits and the head's (V, D) gradient dominate. The
  // loss gradient is written over the logits and handed to the LM head, which releases it; every
  // weight gradient is added into gradients() by its GEMM, so the head's gradient makes no
  // temporary (it did before: the peak was the accounting plus exactly V·D·4 bytes).
  constexpr index_t B = 8, S = 16, V = 4096, D = 32;
  const auto inputs = random_tokens(B, S, V, 40), targets = random_tokens(B, S, V, 41);  // (B, S) twice
  const std::int64_t head_gradient_bytes = V * D * 4;
  using untied = b::cs336_lm<V, D, 2, b::heads<4>, b::d_ff<64>>;
  using tied = b::gpt2_lm<V, S, D, 2, 4>;
  b::model<untied, float> cs336;
  b::model<tied, float> gpt2;
  const std::int64_t peak_cs336 = step_peak(cs336, inputs, targets), peak_gpt2 = step_peak(gpt2, inputs, targets);
  const std::int64_t acct_cs336 = untied{}.activation_bytes(B, S), acct_gpt2 = tied{}.activation_bytes(B, S);
  MESSAGE("cs336_lm: peak ", peak_cs336, " bytes, accounting ", acct_cs336, "; gpt2_lm: peak ", peak_gpt2,
          ", accounting ", acct_gpt2);
  CHECK(peak_cs336 >= B * S * V * 4);
  CHECK(peak_cs336 <= acct_cs336 + head_gradient_bytes / 8);
  CHECK(peak_gpt2 >= B * S * V * 4);
  CHECK(peak_gpt2 <= acct_gpt2 + head_gradient_bytes / 8);
}

TEST_CASE("blocks: backward(std::move(dy)) takes dy over and gives the gradients of backward(dy)") {
  b::model<mha_lm, double> m;
  m.initialise(5);
  const auto tokens = random_tokens(2, 6, 37, 6);     // (B, S)
  const auto r = random_activations(2, 6, 37, 7);     // (B, S, V)
  m.zero_grad();
  m.forward_train(tokens);
  m.backward(r);
  std::vector<tensor<double, dims<1>>> kept;          // every gradient, flattened
  m.for_each_parameter_and_gradient([&](const std::string&, auto&, auto& g) {
    kept.emplace_back(rearrange<"... -> (...)">(g));
  });
  m.zero_grad();
  m.forward_train(tokens);
  auto handed = r.clone();                            // (B, S, V)
  m.backward(std::move(handed));
  CHECK(handed.size() == 0);                          // released by the LM head
  std::size_t i = 0;
  m.for_each_parameter_and_gradient([&](const std::string& name, auto&, auto& g) {
    const tensor<double, dims<1>> flat = rearrange<"... -> (...)">(g);
    CAPTURE(name);
    bool same = flat.size() == kept[i].size();
    for (index_t k = 0; same && k < flat.size(); ++k) same = flat(k) == kept[i](k);
    CHECK(same);
    ++i;
  });
}
