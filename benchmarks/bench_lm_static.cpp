// bench_lm_static — einlm-lm's two model types on the demo model (scripts/demo's config.json):
// the dynamic nn::transformer_lm<float> against the static block model einlm-lm dispatches to for
// that shape (apps/einlm-lm/static_models.hpp). The same work for each, in tokens per second: the
// forward pass (logits of 16 sequences of 128 tokens: logits and eval), a training step (zero_grad,
// forward + backward, AdamW: train) and a decode step through the KV cache (one new token for 1 and
// for 8 sequences: generate).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "../apps/einlm-lm/static_models.hpp"
#include "einlm/nn/transformer.hpp"
#include "einlm/optim/adamw.hpp"

using namespace einlm;

namespace {

constexpr auto demo = std::get<1>(einlm_lm::static_shapes);
static_assert(std::string_view(demo.name) == "demo");
using dynamic_lm = nn::transformer_lm<float>;
using static_lm = einlm_lm::static_lm<decltype(demo)::block>;

constexpr index_t batch = 16, seq = 128;

tensor<std::int64_t, dims<2>> tokens(index_t b, index_t s, std::uint64_t stream) {
  tensor<std::int64_t, dims<2>> t(b, s);  // (B, S)
  const random_stream g{7, stream};
  for (index_t i = 0; i < t.size(); ++i)
    t.data()[i] = static_cast<std::int64_t>(random_bits(g, static_cast<std::uint64_t>(i)) %
                                            static_cast<std::uint32_t>(demo.config.vocab_size));
  return t;
}

const char* label(const dynamic_lm*) { return "dynamic (transformer_lm)"; }
const char* label(const static_lm*) { return "static (cs336_lm)"; }

template <class Model>
void bm_forward(benchmark::State& state) {
  Model model(nn::moe_config{.base = demo.config}, 1);
  const auto inputs = tokens(batch, seq, 0);  // (B, S)
  for (auto _ : state) benchmark::DoNotOptimize(model.logits(inputs));
  state.counters["tokens_per_second"] =
      benchmark::Counter(static_cast<double>(batch * seq), benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(label(static_cast<const Model*>(nullptr)));
}

template <class Model>
void bm_train_step(benchmark::State& state) {
  Model model(nn::moe_config{.base = demo.config}, 1);
  optim::adamw opt({.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1});
  const auto inputs = tokens(batch, seq, 0);   // (B, S)
  const auto targets = tokens(batch, seq, 1);  // (B, S)
  for (auto _ : state) {
    model.zero_grad();
    benchmark::DoNotOptimize(model.forward_backward(inputs, targets));
    opt.begin_step(1e-3);
    model.for_each_parameter_and_gradient(
        [&](const std::string& name, auto& w, const auto& g) { opt.update(name, w, g); });
  }
  state.counters["tokens_per_second"] =
      benchmark::Counter(static_cast<double>(batch * seq), benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(label(static_cast<const Model*>(nullptr)));
}

/// One new token for each of B sequences (prompts of 8, 12, 16, … tokens) through the KV cache,
/// 64 steps before the sequences are cut back to their prompts.
template <class Model>
void bm_decode(benchmark::State& state) {
  const index_t B = state.range(0);
  Model model(nn::moe_config{.base = demo.config}, 1);
  auto cache = model.make_cache(B);
  std::vector<std::vector<std::int64_t>> prompts, step;
  for (index_t b = 0; b < B; ++b) {
    const auto t = tokens(1, 8 + 4 * b, static_cast<std::uint64_t>(b));  // (1, S)
    prompts.emplace_back(t.data(), t.data() + t.size());
    step.push_back({prompts.back().back()});
  }
  model.last_logits(prompts, cache);
  int decoded = 0;
  for (auto _ : state) {
    if (decoded++ == 64) {
      for (index_t b = 0; b < B; ++b)
        cache.truncate(b, static_cast<index_t>(prompts[static_cast<std::size_t>(b)].size()));
      decoded = 1;
    }
    benchmark::DoNotOptimize(model.last_logits(step, cache));  // (B, V)
  }
  state.counters["tokens_per_second"] =
      benchmark::Counter(static_cast<double>(B), benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string(label(static_cast<const Model*>(nullptr))) + ", batch " + std::to_string(B));
}

}  // namespace

BENCHMARK_TEMPLATE(bm_forward, dynamic_lm)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(bm_forward, static_lm)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(bm_train_step, dynamic_lm)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(bm_train_step, static_lm)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(bm_decode, dynamic_lm)->Arg(1)->Arg(8)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_TEMPLATE(bm_decode, static_lm)->Arg(1)->Arg(8)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_MAIN();
