// GPU tests of nn::transformer_lm_cuda (nn/transformer_cuda.cuh) against the host model
// nn::transformer_lm on the same weights and random tokens: logits, loss and every gradient (float
// and bf16; grouped-query heads with QK-norm and an untied head, multi-head with a tied head,
// z-loss), the same bits on a second run, AdamW steps on the device against the host optimizer,
// the weights' round trip, and the errors. Generation: the device KV cache's logits against the
// host cache's through ragged prefill, decoding and restarts (float and bf16), generate_batch's
// tokens against the host's (greedy and sampled, with and without the cache), and the cache's
// errors. Exits with 77 (skipped) when no device is present.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "einlm/nn/generate.hpp"
#include "einlm/nn/transformer.hpp"
#include "einlm/nn/transformer_cuda.cuh"
#include "einlm/optim/adamw.hpp"
#include "einlm/optim/adamw_cuda.cuh"

using namespace einlm;

namespace {

nn::transformer_config gqa_config() {
  return {.vocab_size = 97, .context_length = 16, .d_model = 64, .num_layers = 2, .num_heads = 4, .num_kv_heads = 2,
          .d_ff = 96, .qk_norm = true};
}

nn::transformer_config tied_config() {
  return {.vocab_size = 61, .context_length = 12, .d_model = 48, .num_layers = 2, .num_heads = 3, .d_ff = 64,
          .tied_embeddings = true};
}

tensor<std::int64_t, dims<2>> random_tokens(index_t B, index_t S, index_t V, std::uint64_t seed) {
  tensor<std::int64_t, dims<2>> t(B, S);  // (B, S)
  const tensor<float, dims<2>> u = uniform<float>(dims<2>(B, S), {seed, 7}, 0.0, 1.0);  // (B, S)
  for (index_t b = 0; b < B; ++b)
    for (index_t s = 0; s < S; ++s) t(b, s) = std::min<std::int64_t>(V - 1, static_cast<std::int64_t>(u(b, s) * V));
  return t;
}

/// max |gpu − cpu| ≤ rel · max(|cpu|) + abs over one tensor.
template <class T, class E>
void check_tensor(const std::string& name, const tensor<T, E>& gpu, const tensor<T, E>& cpu, double rel, double abs) {
  INFO(name);
  REQUIRE(gpu.size() == cpu.size());
  double scale = 0, worst = 0;
  for (index_t i = 0; i < cpu.size(); ++i) scale = std::max(scale, std::abs(convert<double>(cpu.data()[i])));
  for (index_t i = 0; i < cpu.size(); ++i) {
    const double g = convert<double>(gpu.data()[i]), c = convert<double>(cpu.data()[i]);
    REQUIRE(std::isfinite(g));
    worst = std::max(worst, std::abs(g - c));
  }
  INFO("largest difference ", worst, " against a largest magnitude ", scale);
  CHECK(worst <= rel * scale + abs);
}

/// Forward and backward on the host and on the device from the same weights and tokens.
template <class T>
void check_against_host(const nn::transformer_config& config, double z_loss, double rel, double grad_rel) {
  nn::transformer_lm<T> host(config, 11);
  nn::transformer_lm_cuda<T> gpu(host);
  const auto inputs = random_tokens(3, config.context_length - 1, config.vocab_size, 1);   // (B, S)
  const auto targets = random_tokens(3, config.context_length - 1, config.vocab_size, 2);  // (B, S)

  const auto logits_cpu = host.logits(inputs);          // (B, S, V)
  const auto logits_gpu = to_host(gpu.logits(inputs));  // (B, S, V)
  check_tensor("logits", logits_gpu, logits_cpu, rel, 0);

  host.zero_grad();
  const double loss_cpu = host.forward_backward(inputs, targets, z_loss);
  const double loss_gpu = gpu.forward_backward(inputs, targets, z_loss);
  CHECK(loss_gpu == doctest::Approx(loss_cpu).epsilon(rel));
  CHECK(gpu.kept_activation_bytes() > logits_cpu.bytes());

  nn::transformer_lm<T> grads(config);
  gpu.store_gradients(grads);
  std::map<std::string, const tensor<T, dims<2>>*> matrices;
  std::map<std::string, const tensor<T, dims<1>>*> vectors;
  host.gradients().for_each_parameter([&](const std::string& name, const auto& g) {
    if constexpr (std::remove_cvref_t<decltype(g)>::rank() == 2) matrices[name] = &g;
    else vectors[name] = &g;
  });
  int visited = 0;
  grads.gradients().for_each_parameter([&](const std::string& name, const auto& g) {
    ++visited;
    if constexpr (std::remove_cvref_t<decltype(g)>::rank() == 2) check_tensor(name, g, *matrices.at(name), grad_rel, 0);
    else check_tensor(name, g, *vectors.at(name), grad_rel, 0);
  });
  CHECK(visited == static_cast<int>(matrices.size() + vectors.size()));
}

}  // namespace

TEST_CASE("transformer_lm_cuda: float logits, loss and gradients agree with the host model") {
  // Sums in other orders (GEMM tiles, the online softmax): float rounding, a few 1e-6 relative per
  // operation, through two layers (logits) and back (gradients).
  check_against_host<float>(gqa_config(), 0.0, 1e-4, 1e-3);
  check_against_host<float>(tied_config(), 1e-3, 1e-4, 1e-3);
}

TEST_CASE("transformer_lm_cuda: bf16 logits, loss and gradients agree with the host model") {
  // Both round every stored activation to bf16 (8 bits); where a rounding differs, that bit
  // propagates: a few 2^-8 relative to the tensor's largest element in the forward pass, more
  // through the backward pass's longer chains.
  check_against_host<bf16>(gqa_config(), 0.0, 3e-2, 1e-1);
  check_against_host<bf16>(tied_config(), 0.0, 3e-2, 1e-1);
}

TEST_CASE("transformer_lm_cuda: a step gives the same bits on every run") {
  const auto config = gqa_config();
  nn::transformer_lm<float> host(config, 5);
  nn::transformer_lm_cuda<float> gpu(host);
  const auto inputs = random_tokens(4, 16, config.vocab_size, 3);   // (B, S)
  const auto targets = random_tokens(4, 16, config.vocab_size, 4);  // (B, S)
  std::vector<std::vector<unsigned char>> runs;
  double losses[2] = {};
  for (int run = 0; run < 2; ++run) {
    gpu.zero_grad();
    losses[run] = gpu.forward_backward(inputs, targets);
    nn::transformer_lm<float> grads(config);
    gpu.store_gradients(grads);
    std::vector<unsigned char> bytes;
    grads.gradients().for_each_parameter([&](const std::string&, const auto& g) {
      const auto* p = reinterpret_cast<const unsigned char*>(g.data());
      bytes.insert(bytes.end(), p, p + g.bytes());
    });
    runs.push_back(std::move(bytes));
  }
  CHECK(losses[0] == losses[1]);
  CHECK(runs[0] == runs[1]);
}

TEST_CASE("transformer_lm_cuda: AdamW steps on the device follow the host's") {
  const auto config = gqa_config();
  nn::transformer_lm<float> host(config, 9);
  nn::transformer_lm_cuda<float> gpu(host);
  const optim::adamw_options options{.weight_decay = 0.1};
  optim::adamw host_opt(options);
  optim::adamw_cuda gpu_opt(options);
  const double lr = 1e-3;
  const int steps = 4;
  for (int step = 0; step < steps; ++step) {
    const auto inputs = random_tokens(2, 16, config.vocab_size, 10 + 2 * static_cast<std::uint64_t>(step));   // (B, S)
    const auto targets = random_tokens(2, 16, config.vocab_size, 11 + 2 * static_cast<std::uint64_t>(step));  // (B, S)
    host.zero_grad();
    gpu.zero_grad();
    const double loss_cpu = host.forward_backward(inputs, targets);
    const double loss_gpu = gpu.forward_backward(inputs, targets);
    CHECK(loss_gpu == doctest::Approx(loss_cpu).epsilon(1e-4));
    host_opt.begin_step(lr);
    host.for_each_parameter_and_gradient([&](const std::string& name, auto& w, auto& g) { host_opt.update(name, w, g); });
    gpu_opt.begin_step(lr);
    gpu.for_each_parameter_and_gradient([&](const std::string& name, auto& w, auto& g) { gpu_opt.update(name, w, g); });
    gpu_opt.end_step();
  }
  // Adam moves each weight by about lr a step whatever the gradient's size, so a gradient within
  // rounding of 0 may move the two copies apart by up to 2·lr a step; nearly all agree closely.
  nn::transformer_lm<float> back(config);
  gpu.store_parameters(back);
  std::vector<const tensor<float, dims<2>>*> m2;
  std::vector<const tensor<float, dims<1>>*> m1;
  host.for_each_parameter([&](const std::string&, const auto& w) {
    if constexpr (std::remove_cvref_t<decltype(w)>::rank() == 2) m2.push_back(&w);
    else m1.push_back(&w);
  });
  std::size_t i2 = 0, i1 = 0;
  index_t total = 0, apart = 0;
  double worst = 0;
  back.for_each_parameter([&](const std::string& name, const auto& w) {
    INFO(name);
    const float* ref = nullptr;
    if constexpr (std::remove_cvref_t<decltype(w)>::rank() == 2) ref = m2[i2++]->data();
    else ref = m1[i1++]->data();
    for (index_t e = 0; e < w.size(); ++e) {
      const double d = std::abs(static_cast<double>(w.data()[e]) - ref[e]);
      worst = std::max(worst, d);
      apart += d > 1e-5;
      ++total;
    }
  });
  INFO(apart, " of ", total, " weights differ by more than 1e-5; the largest difference ", worst);
  CHECK(worst <= 2 * steps * lr);
  CHECK(apart * 1000 <= total);
}

TEST_CASE("transformer_lm_cuda: weights round-trip between host and device") {
  const auto config = tied_config();
  nn::transformer_lm<float> host(config, 3), other(config, 4), back(config);
  nn::transformer_lm_cuda<float> gpu(host);
  gpu.store_parameters(back);
  std::vector<std::vector<unsigned char>> bytes(2);
  const auto collect = [](const nn::transformer_lm<float>& m, std::vector<unsigned char>& out) {
    m.for_each_parameter([&](const std::string&, const auto& w) {
      const auto* p = reinterpret_cast<const unsigned char*>(w.data());
      out.insert(out.end(), p, p + w.bytes());
    });
  };
  collect(host, bytes[0]);
  collect(back, bytes[1]);
  CHECK(bytes[0] == bytes[1]);
  gpu.load_parameters(other);
  const auto inputs = random_tokens(2, 8, config.vocab_size, 5);  // (B, S)
  check_tensor("logits after load_parameters", to_host(gpu.logits(inputs)), other.logits(inputs), 1e-4, 0);

  // Another configuration: refused, and nothing copied.
  nn::transformer_lm<float> different(gqa_config(), 6);
  std::vector<unsigned char> before, after;
  collect(different, before);
  CHECK_THROWS_AS(gpu.store_parameters(different), shape_error);
  collect(different, after);
  CHECK(before == after);
}

TEST_CASE("transformer_lm_cuda: bad tokens, lengths and configurations are refused") {
  const auto config = gqa_config();
  nn::transformer_lm<float> host(config, 1);
  nn::transformer_lm_cuda<float> gpu(host);
  auto inputs = random_tokens(2, 8, config.vocab_size, 1);  // (B, S)
  inputs(1, 3) = config.vocab_size;
  CHECK_THROWS_WITH_AS(gpu.logits(inputs),
                       "transformer_lm_cuda: token id 97 at (1, 3) is outside the vocabulary [0, 97)", value_error);
  const auto targets = random_tokens(2, 8, config.vocab_size, 2);  // (B, S)
  inputs(1, 3) = 0;
  auto bad_targets = random_tokens(2, 8, config.vocab_size, 2);  // (B, S)
  bad_targets(0, 0) = -1;
  CHECK_THROWS_WITH_AS(gpu.forward_backward(inputs, bad_targets),
                       "transformer_lm_cuda: target id -1 at (0, 0) is outside the vocabulary [0, 97)", value_error);
  CHECK_THROWS_AS(gpu.forward_backward(inputs, random_tokens(2, 7, config.vocab_size, 2)), shape_error);
  CHECK_THROWS_WITH_AS(gpu.logits(random_tokens(1, 17, config.vocab_size, 1)),
                       "transformer_lm_cuda: a sequence of 17 tokens exceeds context_length 16", shape_error);
  CHECK(std::isfinite(gpu.forward_backward(inputs, targets)));  // the model is still usable

  nn::moe_config moe{.base = config, .num_experts = 4, .top_k = 2};
  nn::transformer_lm<float> moe_host(moe, 1);
  CHECK_THROWS_AS(nn::transformer_lm_cuda<float>{moe_host}, nn::config_error);
}

namespace {

/// Each sequence's last-new-position logits from the device cache and the host cache, step after
/// step: ragged prefill, decoding some sequences while others wait, a chunk, a restarted sequence.
template <class T>
void check_cached_decoding(const nn::transformer_config& config, double rel) {
  nn::transformer_lm<T> host(config, 5);
  nn::transformer_lm_cuda<T> gpu(host);
  auto host_cache = host.make_cache(3);
  auto gpu_cache = gpu.make_cache(3);
  const std::vector<std::vector<std::vector<std::int64_t>>> steps = {
      {{5, 1, 7}, {2}, {9, 9, 4, 1, 3}},  // prefill, three lengths
      {{8}, {}, {6}},                     // decode two, the middle one waits
      {{}, {4, 4}, {}},                   // a chunk of two for the middle one
      {{3}, {1}, {2}},                    // all decode
  };
  for (std::size_t i = 0; i < steps.size(); ++i) {
    INFO("step ", i);
    const tensor<float, dims<2>> gpu_logits = gpu.last_logits(steps[i], gpu_cache);  // (B, V)
    const auto host_logits = host.last_logits(steps[i], host_cache);                  // (B, V)
    const tensor<float, dims<2>> host_float(cast<float>(host_logits));                // (B, V)
    check_tensor("last logits", gpu_logits, host_float, rel, 0);
    for (index_t b = 0; b < 3; ++b) CHECK(gpu_cache.length_of(b) == host_cache.length_of(b));
  }
  // A sequence started over (what generation does past the context length) refills from 0.
  gpu_cache.truncate(0, 0);
  host_cache.truncate(0, 0);
  const std::vector<std::vector<std::int64_t>> again = {{7, 7, 7, 7}, {}, {}};
  const tensor<float, dims<2>> g = gpu.last_logits(again, gpu_cache);  // (B, V)
  const auto h = host.last_logits(again, host_cache);                  // (B, V)
  const tensor<float, dims<2>> hf(cast<float>(h));                     // (B, V)
  check_tensor("restarted sequence", g, hf, rel, 0);
}

}  // namespace

TEST_CASE("transformer_lm_cuda: decoding with the device KV cache gives the host cache's logits") {
  check_cached_decoding<float>(gqa_config(), 1e-4);
  check_cached_decoding<float>(tied_config(), 1e-4);
  check_cached_decoding<bf16>(gqa_config(), 5e-2);  // bf16 activations rounded at other places
}

TEST_CASE("transformer_lm_cuda: generation on the device draws the host's tokens") {
  nn::transformer_lm<float> host(gqa_config(), 8);
  nn::transformer_lm_cuda<float> gpu(host);
  const std::vector<std::vector<std::int64_t>> prompts = {{5, 1, 7}, {2}, {9, 9, 4, 1, 3}};
  // Past the context length (16), so every sequence is also restarted with its window.
  for (const double temperature : {0.0, 0.9}) {
    INFO("temperature ", temperature);
    const nn::generation_options o{.max_new_tokens = 20, .sampling = {.temperature = temperature}, .seed = 3};
    const auto a = nn::generate_batch(host, prompts, o);
    const auto b = nn::generate_batch(gpu, prompts, o);
    auto uncached = o;
    uncached.use_cache = false;
    const auto c = nn::generate_batch(gpu, prompts, uncached);
    // Float logits agree to ~1e-6 of their scale; a draw differs only when u falls that close to a
    // boundary of the cumulative weights, or two logits tie that closely — not with these seeds.
    CHECK(b == a);
    CHECK(c == a);
  }
}

TEST_CASE("transformer_lm_cuda: the device cache refuses what the host cache refuses") {
  nn::transformer_lm<float> host(gqa_config(), 2);
  nn::transformer_lm_cuda<float> gpu(host);
  auto cache = gpu.make_cache(2);
  const std::vector<std::vector<std::int64_t>> one = {{1}};
  CHECK_THROWS_WITH_AS(gpu.last_logits(one, cache), "transformer_lm_cuda: a cache for 2 sequences was given tokens for 1 sequences",
                       shape_error);
  const std::vector<std::vector<std::int64_t>> bad = {{1}, {97}};
  CHECK_THROWS_WITH_AS(gpu.last_logits(bad, cache),
                       "transformer_lm_cuda: token id 97 at (1, 0) is outside the vocabulary [0, 97)", value_error);
  const std::vector<std::vector<std::int64_t>> too_long = {std::vector<std::int64_t>(17, 1), {}};
  CHECK_THROWS_WITH_AS(gpu.last_logits(too_long, cache), doctest::Contains("exceed context_length 16"), shape_error);
  CHECK(cache.length_of(0) == 0);  // nothing was computed
  auto other = nn::transformer_lm_cuda<float>(nn::transformer_lm<float>(tied_config(), 1)).make_cache(2);
  CHECK_THROWS_WITH_AS(gpu.last_logits(std::vector<std::vector<std::int64_t>>{{1}, {1}}, other),
                       "transformer_lm_cuda: the KV cache's layer 0 holds (2, 3, 12, 16), the model needs (2, 2, 16, 16)",
                       shape_error);
}
