// examples/gpt2_blocks.cpp — GPT-2 spelled as a type (nn::blocks::gpt2_lm). First GPT-2 small: its
// parameter count, forward FLOPs and activation memory are constants of the type (the count is
// checked against nn/accounting.hpp at compile time), and nothing is allocated. Then a small GPT-2
// on bytes (learned positions, LayerNorm, GELU MLP, tied LM head; GPT-2's initialisation) is
// trained with AdamW on one sentence until it knows it, and recites it from a short prompt by
// greedy generation with a KV cache.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "einlm/nn/accounting.hpp"
#include "einlm/nn/blocks.hpp"
#include "einlm/nn/generate.hpp"
#include "einlm/optim/adamw.hpp"

using namespace einlm;
namespace b = einlm::nn::blocks;

// GPT-2 small: vocabulary 50257, 1024 positions, d_model 768, 12 layers of 12 heads.
using gpt2_small = b::gpt2_lm<50257, 1024, 768, 12, 12>;
constexpr gpt2_small gpt2_small_shape{};
static_assert(gpt2_small_shape.param_count() == 124'439'808);  // HF's gpt2, position table included
static_assert(gpt2_small_shape.param_count() == nn::param_count(nn::presets::gpt2_small()));

int main() {
  std::printf("GPT-2 small as a type (nothing allocated):\n");
  std::printf("  parameters                      %lld\n",
              static_cast<long long>(gpt2_small_shape.param_count()));
  std::printf("  forward FLOPs, 8 x 1024 tokens  %.4g\n", gpt2_small_shape.forward_flops(8, 1024));
  const double gib = 1024.0 * 1024.0 * 1024.0;
  std::printf("  kept activations, bf16          %.2f GiB\n",
              static_cast<double>(gpt2_small_shape.activation_bytes(8, 1024, 2)) / gib);

  // [snippet train_and_recite]
  // A small GPT-2 over bytes: 128 symbols, 64 positions, d_model 32, 2 layers of 4 heads.
  using small_gpt2 = b::gpt2_lm<128, 64, 32, 2, 4>;
  auto config = nn::presets::gpt2(/*d_model=*/32, /*num_layers=*/2, /*num_heads=*/4);
  config.vocab_size = 128;
  config.context_length = 64;
  b::model<small_gpt2, float> model(config);
  model.initialise(/*seed=*/1, b::gpt2_initialisation{.layers = 2});  // 𝒩(0, 0.02²), …

  const std::string text = "a small gpt-2 learns one sentence by heart.";
  const auto S = static_cast<index_t>(text.size()) - 1;
  tensor<std::int64_t, dims<2>> inputs(1, S), targets(1, S);  // (B, S) twice
  for (index_t s = 0; s < S; ++s) {
    inputs(0, s) = text[static_cast<std::size_t>(s)];
    targets(0, s) = text[static_cast<std::size_t>(s) + 1];
  }
  optim::adamw opt({.weight_decay = 0.0});
  for (int step = 0; step <= 150; ++step) {
    model.zero_grad();
    const double loss = model.forward_backward(inputs, targets);
    if (step % 30 == 0) std::printf("step %3d  loss %.4f\n", step, loss);
    opt.begin_step(/*lr=*/1e-2);
    model.for_each_parameter_and_gradient(
        [&](const std::string& name, auto& w, const auto& g) { opt.update(name, w, g); });
  }

  const std::string prompt = "a small";
  std::vector<std::int64_t> ids(prompt.begin(), prompt.end());
  std::printf("recited: %s", prompt.c_str());
  const nn::generation_options greedy{.max_new_tokens = S + 1 - static_cast<index_t>(prompt.size()),
                                      .sampling = {.temperature = 0.0}};
  nn::generate(model, ids, greedy, [](std::int64_t id) { std::printf("%c", static_cast<char>(id)); });
  std::printf("\n");
  // [end snippet]
}
