// Shared pieces of the language-model benchmarks (bench_train, bench_lm_static): random token ids,
// AdamW training steps in fp32 and in bf16 mixed precision, and generation's prefill and decode
// steps through a KV cache, for any model with the members they call (nn::transformer_lm, a
// blocks::model, einlm-lm's static_lm).
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "einlm/core/random.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/optim/adamw.hpp"

namespace einlm::bench {

/// (b, s) token ids below `vocab`, from Philox stream `stream` of seed 7.
inline tensor<std::int64_t, dims<2>> random_tokens(index_t b, index_t s, std::int64_t vocab, std::uint64_t stream) {
  tensor<std::int64_t, dims<2>> t(b, s);  // (B, S)
  const random_stream g{7, stream};
  for (index_t i = 0; i < t.size(); ++i)
    t.data()[i] = static_cast<std::int64_t>(random_bits(g, static_cast<std::uint64_t>(i)) % static_cast<std::uint32_t>(vocab));
  return t;
}

/// Times one training step per iteration, as train::fit runs it: zero_grad, forward + backward of
/// (inputs, targets) on `work`, AdamW's update of `master` (β 0.9, 0.95, weight decay 0.1, learning
/// rate 1e-3). With a working copy of another type (bf16 mixed precision), its weights are
/// refreshed from the float masters before the pass and its gradients converted back after it.
template <class Master, class Work, class Tokens>
void adamw_steps(benchmark::State& state, Master& master, Work& work, const Tokens& inputs, const Tokens& targets) {
  constexpr bool mixed = !std::is_same_v<Master, Work>;
  optim::adamw opt({.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1});
  for (auto _ : state) {
    if constexpr (mixed) convert_parameters(master, work);  // nn:: or nn::blocks:: (argument-dependent lookup)
    work.zero_grad();
    benchmark::DoNotOptimize(work.forward_backward(inputs, targets));
    if constexpr (mixed) convert_gradients(work, master);
    opt.begin_step(1e-3);
    master.for_each_parameter_and_gradient([&](const std::string& name, auto& w, const auto& g) { opt.update(name, w, g); });
  }
}

/// The same step of one model in its own precision.
template <class Model, class Tokens>
void adamw_steps(benchmark::State& state, Model& model, const Tokens& inputs, const Tokens& targets) {
  adamw_steps(state, model, model, inputs, targets);
}

/// Times one decode step per iteration: a new token for each of `sequences` sequences (prompts of
/// 8, 12, 16, … tokens, prefilled once) through model.last_logits, with 64 steps before the
/// sequences are cut back to their prompts. Counts generated tokens per second.
template <class Model>
void ragged_decode(benchmark::State& state, Model& model, index_t sequences, std::int64_t vocab) {
  auto cache = model.make_cache(sequences);
  std::vector<std::vector<std::int64_t>> prompts, step;
  for (index_t b = 0; b < sequences; ++b) {
    const auto t = random_tokens(1, 8 + 4 * b, vocab, static_cast<std::uint64_t>(b));  // (1, S)
    prompts.emplace_back(t.data(), t.data() + t.size());
    step.push_back({prompts.back().back()});
  }
  model.last_logits(prompts, cache);
  int decoded = 0;
  for (auto _ : state) {
    if (decoded++ == 64) {
      for (index_t b = 0; b < sequences; ++b)
        cache.truncate(b, static_cast<index_t>(prompts[static_cast<std::size_t>(b)].size()));
      decoded = 1;
    }
    benchmark::DoNotOptimize(model.last_logits(step, cache));  // (B, V)
  }
  state.counters["tokens_per_second"] =
      benchmark::Counter(static_cast<double>(sequences), benchmark::Counter::kIsIterationInvariantRate);
}

/// Times one prefill per iteration: prompts of 24, 32, 40, … tokens for `sequences` sequences in
/// one packed pass through an emptied cache, keeping each prompt's last logits (last_logits: the
/// LM head on the last rows only) or every position's (ragged_logits). Counts prompt tokens per
/// second.
template <class Model>
void ragged_prefill(benchmark::State& state, Model& model, index_t sequences, std::int64_t vocab, bool last_only) {
  auto cache = model.make_cache(sequences);
  std::vector<std::vector<std::int64_t>> prompts;
  index_t total = 0;
  for (index_t b = 0; b < sequences; ++b) {
    const auto t = random_tokens(1, 24 + 8 * b, vocab, static_cast<std::uint64_t>(b));  // (1, S)
    prompts.emplace_back(t.data(), t.data() + t.size());
    total += t.size();
  }
  for (auto _ : state) {
    cache.clear();
    if (last_only)
      benchmark::DoNotOptimize(model.last_logits(prompts, cache));  // (B, V)
    else
      benchmark::DoNotOptimize(model.ragged_logits(prompts, cache));  // (N, V)
  }
  state.counters["tokens_per_second"] =
      benchmark::Counter(static_cast<double>(total), benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace einlm::bench
