// bench_lm_static — einlm-lm's two model types on the demo model (scripts/demo's config.json):
// the dynamic nn::transformer_lm<float> against the static block model einlm-lm dispatches to for
// that shape (apps/einlm-lm/static_models.hpp). The same work for each, in tokens per second: the
// forward pass (logits of 16 sequences of 128 tokens: logits and eval), a training step (zero_grad,
// forward + backward, AdamW: train; in fp32 and in bf16 mixed precision), a decode step through
// the KV cache (one new token for 1 and for 8 sequences: generate) and a prefill of 8 prompts (the
// last logits of each, or every position's).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "../apps/einlm-lm/static_models.hpp"
#include "bench_lm_support.hpp"
#include "einlm/nn/transformer.hpp"

using namespace einlm;

namespace {

constexpr auto demo = std::get<1>(einlm_lm::static_shapes);
static_assert(std::string_view(demo.name) == "demo");
using dynamic_lm = nn::transformer_lm<float>;
using static_lm = einlm_lm::static_lm<decltype(demo)::block>;

constexpr index_t batch = 16, seq = 128;

tensor<std::int64_t, dims<2>> tokens(index_t b, index_t s, std::uint64_t stream) {
  return bench::random_tokens(b, s, demo.config.vocab_size, stream);  // (B, S)
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
  const auto inputs = tokens(batch, seq, 0);   // (B, S)
  const auto targets = tokens(batch, seq, 1);  // (B, S)
  bench::adamw_steps(state, model, inputs, targets);
  state.counters["tokens_per_second"] =
      benchmark::Counter(static_cast<double>(batch * seq), benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(label(static_cast<const Model*>(nullptr)));
}

/// The same step in bf16 mixed precision (einlm-lm train --precision bf16): the type's
/// rebind<bf16> working copy, float masters.
template <class Model>
void bm_train_step_bf16(benchmark::State& state) {
  const nn::moe_config config{.base = demo.config};
  Model master(config, 1);
  typename Model::template rebind<bf16> work(config);
  const auto inputs = tokens(batch, seq, 0);   // (B, S)
  const auto targets = tokens(batch, seq, 1);  // (B, S)
  bench::adamw_steps(state, master, work, inputs, targets);
  state.counters["tokens_per_second"] =
      benchmark::Counter(static_cast<double>(batch * seq), benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string(label(static_cast<const Model*>(nullptr))) + ", bf16 mixed");
}

/// One new token for each of B sequences through the KV cache (bench::ragged_decode).
template <class Model>
void bm_decode(benchmark::State& state) {
  Model model(nn::moe_config{.base = demo.config}, 1);
  bench::ragged_decode(state, model, state.range(0), demo.config.vocab_size);
  state.SetLabel(std::string(label(static_cast<const Model*>(nullptr))) + ", batch " + std::to_string(state.range(0)));
}

/// A prefill of 8 prompts (24 … 80 tokens) keeping the last logits of each (range 0) or every
/// position's (range 1: what a last_logits of the block model cost before its LM head learnt to
/// project the last rows only).
template <class Model>
void bm_prefill(benchmark::State& state) {
  Model model(nn::moe_config{.base = demo.config}, 1);
  const bool last_only = state.range(0) == 0;
  bench::ragged_prefill(state, model, 8, demo.config.vocab_size, last_only);
  state.SetLabel(std::string(label(static_cast<const Model*>(nullptr))) +
                 (last_only ? ", last logits" : ", every position's logits"));
}

}  // namespace

BENCHMARK_TEMPLATE(bm_forward, dynamic_lm)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(bm_forward, static_lm)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(bm_train_step, dynamic_lm)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(bm_train_step, static_lm)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(bm_train_step_bf16, dynamic_lm)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(bm_train_step_bf16, static_lm)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(bm_decode, dynamic_lm)->Arg(1)->Arg(8)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_TEMPLATE(bm_decode, static_lm)->Arg(1)->Arg(8)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_TEMPLATE(bm_prefill, dynamic_lm)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(bm_prefill, static_lm)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
