// Tests of einlm/nn/transformer.hpp (and the configuration checks of nn/config.hpp): parameter
// names and shapes in CS336's convention; the CS336 initialisation's statistics and determinism;
// logits, loss and every gradient against an independent PyTorch implementation
// (tools/make_transformer_goldens.py, in double: MHA, GQA with qk-norm and z-loss, MQA); the
// gradient of a tied-embedding model against central finite differences; causality; float
// against double; a few AdamW steps overfit one batch; bad configurations and bad token ids.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "einlm/core/safetensors.hpp"
#include "einlm/nn/accounting.hpp"
#include "einlm/nn/transformer.hpp"
#include "einlm/optim/adamw.hpp"
#include "support/check.hpp"
#include "support/max_abs_diff.hpp"
#include "support/training_data.hpp"

using namespace einlm;
using test::max_abs_diff;

namespace {

/// Token ids (B, S) from Philox stream (1234, stream).
tensor<std::int64_t, dims<2>> random_tokens(index_t B, index_t S, std::int64_t vocab, std::uint64_t stream) {
  return test::random_tokens(B, S, vocab, 1234, stream);
}

nn::transformer_config small_config() {
  return {.vocab_size = 23, .context_length = 16, .d_model = 16, .num_layers = 2, .num_heads = 4,
          .num_kv_heads = 2, .d_ff = 24};
}

}  // namespace

TEST_CASE("transformer_config: inconsistent configurations name the field") {
  auto message = [](nn::transformer_config c) {
    try {
      c.validate();
    } catch (const nn::config_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  auto c = small_config();
  CHECK(message(c) == "no error");
  c.d_model = 18;
  CHECK(message(c).find("d_model (18) is not divisible by num_heads (4)") != std::string::npos);
  c = small_config();
  c.num_kv_heads = 3;
  CHECK(message(c).find("num_heads (4) is not divisible by num_kv_heads (3)") != std::string::npos);
  c = small_config();
  c.d_model = 12;  // head dimension 3
  CHECK(message(c).find("head dimension d_model / num_heads = 3 is odd") != std::string::npos);
  c = small_config();
  c.vocab_size = 0;
  CHECK(message(c).find("vocab_size must be positive, got 0") != std::string::npos);
  c = small_config();
  c.num_layers = -1;
  CHECK(message(c).find("num_layers must be positive") != std::string::npos);
  c = small_config();
  c.ffn = nn::ffn_kind::gelu_mlp;
  CHECK_THROWS_WITH_AS(nn::transformer_lm<float>{c}, doctest::Contains("only the CS336 architecture"), nn::config_error);
  CHECK(nn::default_d_ff(768) == 2048);
  CHECK(nn::default_d_ff(512) == 1408);
}

TEST_CASE("transformer_lm: parameter names and shapes follow CS336's state dict") {
  auto c = small_config();
  c.qk_norm = true;
  nn::transformer_lm<float> model(c, 1);
  std::vector<std::string> names;
  std::map<std::string, std::vector<index_t>> shapes;
  model.for_each_parameter([&](const std::string& name, const auto& t) {
    names.push_back(name);
    std::vector<index_t> s;
    for (std::size_t r = 0; r < t.extents().rank(); ++r) s.push_back(t.extent(r));
    shapes[name] = s;
  });
  CHECK(names.size() == 1 + 2 * 11 + 2);  // 11 per block with the qk-norm gains
  CHECK(names.front() == "token_embeddings.weight");
  CHECK(names[1] == "layers.0.ln1.weight");
  CHECK(names.back() == "lm_head.weight");
  CHECK(shapes["token_embeddings.weight"] == std::vector<index_t>{23, 16});
  CHECK(shapes["layers.1.attn.q_proj.weight"] == std::vector<index_t>{16, 16});
  CHECK(shapes["layers.1.attn.k_proj.weight"] == std::vector<index_t>{8, 16});  // 2 kv heads of 4
  CHECK(shapes["layers.1.attn.v_proj.weight"] == std::vector<index_t>{8, 16});
  CHECK(shapes["layers.1.attn.output_proj.weight"] == std::vector<index_t>{16, 16});
  CHECK(shapes["layers.1.attn.q_norm.weight"] == std::vector<index_t>{4});
  CHECK(shapes["layers.0.ffn.w1.weight"] == std::vector<index_t>{24, 16});
  CHECK(shapes["layers.0.ffn.w2.weight"] == std::vector<index_t>{16, 24});
  CHECK(shapes["layers.0.ffn.w3.weight"] == std::vector<index_t>{24, 16});
  CHECK(shapes["ln_final.weight"] == std::vector<index_t>{16});
  CHECK(shapes["lm_head.weight"] == std::vector<index_t>{23, 16});
  std::int64_t total = 0;
  for (const auto& [name, s] : shapes) {
    std::int64_t n = 1;
    for (auto e : s) n *= e;
    total += n;
  }
  CHECK(model.parameters().size() == total);
  CHECK(model.parameters().size() == nn::param_count(c));  // the accounting agrees

  c.tied_embeddings = true;
  nn::transformer_lm<float> tied(c, 1);
  std::set<std::string> tied_names;
  tied.for_each_parameter([&](const std::string& name, const auto&) { tied_names.insert(name); });
  CHECK(tied_names.count("lm_head.weight") == 0);
  CHECK(tied_names.size() == names.size() - 1);
  CHECK(tied.parameters().size() == nn::param_count(c));
}

TEST_CASE("static_transformer_lm: the shape and the cost are constants of the type") {
  // [snippet static_model]
  using tiny = nn::static_transformer_lm<nn::transformer_config{.vocab_size = 23, .context_length = 16, .d_model = 16,
                                                                .num_layers = 2, .num_heads = 4, .num_kv_heads = 2,
                                                                .d_ff = 24}>;
  static_assert(tiny::param_count == 23 * 16 * 2 + 2 * (2 * 16 + 16 * 16 * 2 + 8 * 16 * 2 + 3 * 24 * 16) + 16);
  static_assert(tiny::flops_backward(4, 16) == 2 * tiny::flops_forward(4, 16));
  tiny model(/*seed=*/11);  // the same model as transformer_lm<float>(tiny::shape, 11)
  // [end snippet]
  nn::transformer_lm<float> dynamic(small_config(), 11);
  CHECK(model.parameters().size() == tiny::param_count);
  CHECK(max_abs_diff(model.parameters().layers[1].w3, dynamic.parameters().layers[1].w3) == 0.0);
  static_assert(tiny::shape == nn::transformer_config{.vocab_size = 23, .context_length = 16, .d_model = 16,
                                                      .num_layers = 2, .num_heads = 4, .num_kv_heads = 2, .d_ff = 24});
  static_assert(tiny::activation_bytes(4, 16) ==
                nn::activation_bytes(tiny::shape, 4, 16, 4, nn::attention_activations::log_sum_exp));
  // The accounting is what the model keeps: measured after a forward_backward of (4, 16) tokens.
  const auto inputs = random_tokens(4, 16, 23, 20), targets = random_tokens(4, 16, 23, 21);  // (B, S) twice
  model.forward_backward(inputs, targets);
  CHECK(static_cast<std::int64_t>(model.kept_activation_bytes()) == tiny::activation_bytes(4, 16));
  auto with_qk = small_config();
  with_qk.qk_norm = true;
  nn::transformer_lm<double> qk(with_qk, 1);
  qk.forward_backward(inputs, targets);
  CHECK(static_cast<std::int64_t>(qk.kept_activation_bytes()) ==
        nn::activation_bytes(with_qk, 4, 16, 8, nn::attention_activations::log_sum_exp));
}

TEST_CASE("transformer_lm: a training step's host memory is the accounting's activations plus a small workspace") {
  // A vocabulary large beside the rest, so that the logits dominate the activations.
  const nn::transformer_config c{.vocab_size = 4096, .context_length = 16, .d_model = 32, .num_layers = 2,
                                 .num_heads = 4, .d_ff = 64};
  constexpr index_t B = 8, S = 16;
  const auto inputs = random_tokens(B, S, 4096, 30), targets = random_tokens(B, S, 4096, 31);  // (B, S) twice
  nn::transformer_lm<float> model(c, 3);
  // [snippet step_memory]
  model.forward_backward(inputs, targets);  // the first step fills the caches
  const auto before = host_memory_stats();
  reset_peak_host_memory();
  model.forward_backward(inputs, targets);
  const auto after = host_memory_stats();
  // [end snippet]
  const auto kept = nn::activation_bytes(c, B, S, 4, nn::attention_activations::log_sum_exp);
  const auto logits_bytes = static_cast<std::int64_t>(B * S * c.vocab_size * 4);
  const auto peak = static_cast<std::int64_t>(after.peak_bytes_in_use - before.bytes_in_use);
  MESSAGE("step peak above the model: ", peak, " bytes; kept activations ", kept, ", of which logits ", logits_bytes);
  CHECK(static_cast<std::int64_t>(model.kept_activation_bytes()) == kept);
  CHECK(peak >= kept);
  // The loss gradient is written over the logits and freed after the LM head, so no second
  // logits-sized array is ever live, and the LM head's (V, D) gradient is added into gradients()
  // by its GEMM (einsum_accumulate), so no temporary of that size either: what the step adds is a
  // small workspace (measured: 16 KB), allowed an eighth of the head's gradient.
  const auto head_gradient_bytes = static_cast<std::int64_t>(c.vocab_size * c.d_model * 4);
  CHECK(peak <= kept + head_gradient_bytes / 8);
  // Once warm, every block comes from the host caches, and the step returns all it took.
  CHECK(after.backend_allocations == before.backend_allocations);
  CHECK(after.bytes_in_use == before.bytes_in_use);
}

TEST_CASE("transformer_lm: CS336 initialisation (truncated normals, unit gains, a function of the seed)") {
  nn::transformer_config c{.vocab_size = 1000, .context_length = 8, .d_model = 64, .num_layers = 1, .num_heads = 4,
                           .d_ff = 192};
  nn::transformer_lm<float> a(c, 7), b(c, 7), other(c, 8);
  auto stats = [](const auto& t) {
    double sum = 0, sq = 0, biggest = 0;
    for (index_t i = 0; i < t.size(); ++i) {
      const double v = t.data()[i];
      sum += v;
      sq += v * v;
      biggest = std::max(biggest, std::abs(v));
    }
    const double n = static_cast<double>(t.size());
    return std::array<double, 3>{sum / n, std::sqrt(sq / n - (sum / n) * (sum / n)), biggest};
  };
  const auto& p = a.parameters();
  const auto emb = stats(p.token_embeddings);
  CHECK(std::abs(emb[0]) < 0.02);
  CHECK(emb[1] == doctest::Approx(0.986).epsilon(0.02));  // σ of 𝒩(0, 1) truncated at ±3
  CHECK(emb[2] <= 3.0);
  const auto w1 = stats(p.layers[0].w1);  // (192, 64): σ = √(2 / 256)
  const double sigma = std::sqrt(2.0 / 256.0);
  CHECK(w1[1] == doctest::Approx(0.986 * sigma).epsilon(0.03));
  CHECK(w1[2] <= 3.0 * sigma + 1e-7);
  CHECK(stats(p.layers[0].ln1)[0] == 1.0);
  CHECK(stats(p.ln_final)[1] == 0.0);
  CHECK(max_abs_diff(a.parameters().layers[0].q_proj, b.parameters().layers[0].q_proj) == 0.0);
  CHECK(max_abs_diff(a.parameters().lm_head, other.parameters().lm_head) > 0.1);
}

TEST_CASE("transformer_lm: logits, loss and gradients equal PyTorch's") {
  for (const std::string name : {"mha", "gqa_qknorm", "mqa"}) {
    CAPTURE(name);
    const safetensors_file f(test::test_data_dir() + "/nn/transformer_" + name + ".safetensors");
    auto number = [&](const std::string& key) { return std::stod(f.metadata().at(key)); };
    auto integer = [&](const std::string& key) { return static_cast<std::int64_t>(std::stoll(f.metadata().at(key))); };
    const nn::transformer_config c{.vocab_size = integer("vocab_size"), .context_length = integer("context_length"),
                                   .d_model = integer("d_model"), .num_layers = integer("num_layers"),
                                   .num_heads = integer("num_heads"), .num_kv_heads = integer("num_kv_heads"),
                                   .d_ff = integer("d_ff"), .rope_theta = number("rope_theta"),
                                   .norm_eps = number("norm_eps"), .qk_norm = f.metadata().at("qk_norm") == "true"};
    const double z_loss = number("z_loss");
    nn::transformer_lm<double> model(c);
    model.for_each_parameter([&](const std::string& n, auto& w) { f.load_into(n, w); });
    const auto inputs = f.load<std::int64_t, dims<2>>("input_ids");   // (B, S)
    const auto targets = f.load<std::int64_t, dims<2>>("targets");    // (B, S)
    const auto expected_logits = f.load<double, dims<3>>("logits");   // (B, S, V)
    const auto expected_loss = f.load<double, extents<>>("loss");     // ()

    const auto logits = model.logits(inputs);                         // (B, S, V)
    CHECK(max_abs_diff(logits, expected_logits) < 1e-10);
    model.zero_grad();
    const double loss = model.forward_backward(inputs, targets, z_loss);
    CHECK(loss == doctest::Approx(expected_loss()).epsilon(1e-12));
    model.for_each_parameter_and_gradient([&](const std::string& n, const auto&, const auto& g) {
      CAPTURE(n);
      std::remove_cvref_t<decltype(g)> expected(g.extents());
      f.load_into("grad." + n, expected);
      double scale = 0;
      for (index_t i = 0; i < expected.size(); ++i) scale = std::max(scale, std::abs(expected.data()[i]));
      CHECK(max_abs_diff(g, expected) <= 1e-10 * std::max(scale, 1.0));
    });
  }
}

TEST_CASE("transformer_lm: tied-embedding gradients against central finite differences") {
  nn::transformer_config c{.vocab_size = 11, .context_length = 8, .d_model = 8, .num_layers = 2, .num_heads = 2,
                           .num_kv_heads = 1, .d_ff = 12, .tied_embeddings = true, .qk_norm = true};
  nn::transformer_lm<double> model(c, 3);
  // Move the gains away from 1 so their gradients are generic.
  model.for_each_parameter([&](const std::string&, auto& w) {
    if (w.extents().rank() == 1) w = w + normal<double>(w.extents(), random_stream{99, 0}, 0.0, 0.2);
  });
  const auto inputs = random_tokens(2, 6, c.vocab_size, 1);   // (B, S)
  const auto targets = random_tokens(2, 6, c.vocab_size, 2);  // (B, S)
  const double z_loss = 1e-2;
  model.zero_grad();
  model.forward_backward(inputs, targets, z_loss);
  auto loss_at = [&] {
    nn::transformer_lm<double> probe(c);
    // Copy the (perturbed) weights into a fresh model so the gradients under test stay untouched.
    std::vector<const double*> src;
    model.for_each_parameter([&](const std::string&, const auto& w) { src.push_back(w.data()); });
    std::size_t i = 0;
    probe.for_each_parameter([&](const std::string&, auto& w) {
      std::copy(src[i], src[i] + w.size(), w.data());
      ++i;
    });
    return probe.forward_backward(inputs, targets, z_loss);
  };
  double worst = 0;
  int checked = 0;
  model.for_each_parameter_and_gradient([&](const std::string& name, auto& w, const auto& g) {
    CAPTURE(name);
    for (index_t i = 0; i < w.size(); i += std::max<index_t>(1, w.size() / 7)) {
      const double saved = w.data()[i], h = 1e-5;
      w.data()[i] = saved + h;
      const double up = loss_at();
      w.data()[i] = saved - h;
      const double down = loss_at();
      w.data()[i] = saved;
      const double numeric = (up - down) / (2 * h);
      const double err = std::abs(numeric - g.data()[i]) / std::max(1e-3, std::abs(numeric));
      worst = std::max(worst, err);
      CHECK(err < 1e-6);
      ++checked;
    }
  });
  CHECK(checked > 100);
  MESSAGE("finite differences: worst relative error " << worst << " over " << checked << " entries");
}

TEST_CASE("transformer_lm: a position's logits depend only on earlier tokens") {
  nn::transformer_lm<double> model(small_config(), 5);
  auto a = random_tokens(1, 9, 23, 3);  // (1, S)
  const auto before = model.logits(a);  // (1, S, V)
  a(0, 6) = (a(0, 6) + 1) % 23;
  const auto after = model.logits(a);   // (1, S, V)
  for (index_t s = 0; s < 9; ++s) {
    double d = 0;
    for (index_t v = 0; v < 23; ++v) d = std::max(d, std::abs(before(0, s, v) - after(0, s, v)));
    if (s < 6) CHECK(d == 0.0);
    else CHECK(d > 1e-6);
  }
}

TEST_CASE("transformer_lm: logits with a KV cache equal logits without") {
  auto c = small_config();
  c.qk_norm = true;
  nn::transformer_lm<double> model(c, 13);
  const auto tokens = random_tokens(2, 12, 23, 10);  // (B, S)
  const auto full = model.logits(tokens);            // (B, S, V)
  auto cache = model.make_cache(2);
  index_t done = 0;
  double worst = 0;
  for (const index_t chunk : {5, 1, 1, 3, 1, 1}) {  // prefill, decode, a chunk, decode
    const auto piece = eval(slice(tokens, full_extent, range{done, done + chunk}));  // (B, chunk)
    const auto part = model.logits(piece, cache);                                    // (B, chunk, V)
    for (index_t b = 0; b < 2; ++b)
      for (index_t s = 0; s < chunk; ++s)
        for (index_t v = 0; v < 23; ++v) worst = std::max(worst, std::abs(part(b, s, v) - full(b, done + s, v)));
    done += chunk;
    CHECK(cache.length == done);
  }
  CHECK(worst < 1e-12);
  // The cache holds context_length (16) positions; a batch of another size does not fit.
  const auto five = random_tokens(2, 5, 23, 11);  // (B, 5)
  CHECK_THROWS_WITH_AS(model.logits(five, cache), "transformer_lm: 5 new tokens after the cache's 12 exceed context_length 16",
                       shape_error);
  const auto other = random_tokens(3, 1, 23, 12);  // (3, 1)
  CHECK_THROWS_AS(model.logits(other, cache), shape_error);
  cache.clear();
  CHECK(max_abs_diff(model.logits(five, cache), model.logits(five)) < 1e-12);
}

TEST_CASE("transformer_lm: float agrees with double") {
  nn::transformer_lm<double> d(small_config(), 9);
  nn::transformer_lm<float> f(small_config(), 9);  // same draws, rounded
  const auto inputs = random_tokens(3, 11, 23, 4), targets = random_tokens(3, 11, 23, 5);  // (B, S) twice
  d.zero_grad();
  f.zero_grad();
  const double ld = d.forward_backward(inputs, targets), lf = f.forward_backward(inputs, targets);
  CHECK(lf == doctest::Approx(ld).epsilon(1e-5));
  CHECK(max_abs_diff(d.logits(inputs), f.logits(inputs)) < 1e-4);
  CHECK(max_abs_diff(d.gradients().layers[0].w1, f.gradients().layers[0].w1) < 1e-5);
}

TEST_CASE("transformer_lm: AdamW overfits one batch") {
  const auto inputs = random_tokens(4, 12, 23, 6), targets = random_tokens(4, 12, 23, 7);  // (B, S) twice
  std::vector<double> losses;
  // [snippet train_step]
  const nn::transformer_config config{.vocab_size = 23, .context_length = 16, .d_model = 16, .num_layers = 2,
                                      .num_heads = 4, .num_kv_heads = 2, .d_ff = 24};
  nn::transformer_lm<float> model(config, /*seed=*/11);
  optim::adamw opt({.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.0});
  for (int step = 0; step < 60; ++step) {
    model.zero_grad();
    const double loss = model.forward_backward(inputs, targets);  // inputs, targets: (B, S) token ids
    opt.begin_step(1e-2);
    model.for_each_parameter_and_gradient([&](const std::string& name, auto& w, const auto& g) { opt.update(name, w, g); });
    losses.push_back(loss);
  }
  // [end snippet]
  const double first = losses.front(), last = losses.back();
  CHECK(first == doctest::Approx(std::log(23.0)).epsilon(0.15));
  CHECK(last < 0.3 * first);
}

TEST_CASE("transformer_lm: bad token ids and over-long sequences are rejected") {
  nn::transformer_lm<float> model(small_config(), 1);
  auto t = random_tokens(2, 4, 23, 8);  // (B, S)
  t(1, 2) = 23;
  CHECK_THROWS_WITH_AS(model.logits(t), "transformer_lm: token id 23 at (1, 2) is outside the vocabulary [0, 23)",
                       value_error);
  const auto long_seq = random_tokens(1, 17, 23, 9);  // (1, 17)
  CHECK_THROWS_WITH_AS(model.logits(long_seq), "transformer_lm: a sequence of 17 tokens exceeds context_length 16",
                       shape_error);
}
