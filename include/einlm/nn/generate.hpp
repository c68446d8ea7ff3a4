// einlm/nn/generate.hpp — autoregressive generation from a language model, for one prompt or a
// batch of prompts of different lengths.
//
//   nn::generation_options o{.max_new_tokens = 200, .sampling = {.temperature = 0.8, .top_p = 0.95},
//                            .seed = 1, .stop_token = eos};
//   std::vector<std::int64_t> ids = nn::generate(model, prompt_ids, o, [&](std::int64_t id) { … });
//   auto all = nn::generate_batch(model, prompts, o, [&](std::size_t i, std::int64_t id) { … });
//
// generate appends up to max_new_tokens tokens to `prompt` (which must not be empty) and returns
// the whole sequence. Each new token is drawn by sample_token (nn/sampling.hpp) from the logits of
// the last position, with draw index = the number of tokens generated so far in the Philox stream
// (seed, stream) — so the text is a function of (model, prompt, options). Generation stops early
// after stop_token (kept in the output) when stop_token ≥ 0. The model sees at most its
// context_length most recent tokens. `on_token` (optional) is called with each new token as it is
// produced, so a caller can stream text.
//
// generate_batch does the same for several prompts at once and returns one sequence per prompt.
// Sequence i draws from the stream (seed, stream + i) with its own draw index, stops on its own
// stop token while the others go on, and sees its own most recent context_length tokens — so
// sequence i is the sequence generate returns for prompt i alone with `stream + i` (a test), and
// generate is generate_batch of one prompt. on_token(i, id) is called in sequence order at each
// step. An empty batch or an empty prompt is a value_error naming it; a model whose context length
// is not positive, a config_error.
//
// `model` is any object with context_length() or config().context_length, and logits(tokens
// (1, S)) → (1, S, V) (host or device: nn::transformer_lm_cuda's are copied back); each sequence is then run alone, the whole window at every step. When it
// also has make_cache() and last_logits(new_tokens, cache) (nn::transformer_lm,
// nn::transformer_lm_cuda and nn::blocks::model of a token → logits block: a KV cache with one
// length per sequence)
// and use_cache is set (the default), the batch shares one cache: each step runs, in one call,
// the prompts of sequences that start (prefill) and one position for each one that goes on
// (decode); a finished sequence is no longer computed. Once a sequence outgrows context_length, its
// row is started over with its most recent window at every step, exactly as without a cache — so
// the tokens are the same either way.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "einlm/core/error.hpp"
#include "einlm/core/random.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/expr.hpp"
#include "einlm/nn/config.hpp"
#include "einlm/nn/sampling.hpp"

namespace einlm::nn {

struct generation_options {
  std::int64_t max_new_tokens = 100;
  sampling_options sampling = {};
  std::uint64_t seed = 0;
  std::uint64_t stream = 0;       // Philox stream of the (first) sequence; sequence i of a batch uses stream + i
  std::int64_t stop_token = -1;   // < 0: none
  bool use_cache = true;          // decode with a KV cache when the model has one
};

namespace detail {
struct no_callback {
  void operator()(std::int64_t) const {}
};
struct no_batch_callback {
  void operator()(std::size_t, std::int64_t) const {}
};

/// Logits as a host array of float or double: a device tensor (a model on the GPU,
/// nn::transformer_lm_cuda) is copied back, and bf16 widened to float, for sampling.
template <class L>
auto host_logits(L logits) {
  using T = typename L::value_type;
  if constexpr (std::is_same_v<typename L::space, host> && (std::is_same_v<T, float> || std::is_same_v<T, double>)) {
    return logits;
  } else if constexpr (std::is_same_v<typename L::space, host>) {
    return tensor<float, typename L::extents_type>(cast<float>(logits));
  } else {
#if EINLM_HAS_CUDA
    return host_logits(to_host(logits));
#else
    static_assert(sizeof(L) == 0, "generate: a model whose logits are in device memory needs nvcc");
#endif
  }
}

/// The cache type of a model with make_cache(batch).
template <class M>
using cache_of = decltype(std::declval<M&>().make_cache(index_t{1}));

/// A model with make_cache(batch) and last_logits(new tokens per sequence, cache) → (B, V).
template <class M>
concept batch_cached_model =
    requires(M& m, std::span<const std::vector<std::int64_t>> tokens, cache_of<M>& cache) { m.last_logits(tokens, cache); };

inline void check_generation(const char* who, const std::vector<std::vector<std::int64_t>>& prompts,
                             const generation_options& o) {
  if (prompts.empty()) throw value_error(einlm::detail::concat(who, ": the batch is empty; give at least one prompt"));
  for (std::size_t i = 0; i < prompts.size(); ++i)
    if (prompts[i].empty())
      throw value_error(einlm::detail::concat(who, ": prompt ", i, " is empty; each prompt must contain at least one token"));
  if (o.max_new_tokens < 0)
    throw value_error(einlm::detail::concat(who, ": max_new_tokens must be ≥ 0, got ", o.max_new_tokens));
}
}  // namespace detail

/// Generates up to max_new_tokens tokens after each prompt, as one batch (see the file comment).
template <class Model, class OnToken = detail::no_batch_callback>
std::vector<std::vector<std::int64_t>> generate_batch(Model& model, std::vector<std::vector<std::int64_t>> prompts,
                                                      const generation_options& o, OnToken&& on_token = {}) {
  detail::check_generation("generate_batch", prompts, o);
  auto& tokens = prompts;  // each grows into its sequence
  const std::size_t B = tokens.size();
  const std::int64_t window = nn::context_length_of(model);
  if (window <= 0)
    throw config_error(einlm::detail::concat("generate_batch: the model's context_length must be positive, got ", window));
  std::vector<std::int64_t> generated(B, 0);
  std::vector<char> live(B, o.max_new_tokens > 0 ? 1 : 0);
  sampling_workspace workspace;  // shared by the sequences, which sample one after another
  // Samples sequence b's next token from its row of logits and hands it on; the sequence is done
  // after its stop token or its max_new_tokens-th token.
  auto take = [&](std::size_t b, const auto* row, index_t V) {
    const random_stream g{o.seed, o.stream + b};
    const std::span<const std::remove_cvref_t<decltype(*row)>> last(row, static_cast<std::size_t>(V));
    const std::int64_t next = sample_token(last, o.sampling, g, static_cast<std::uint64_t>(generated[b]), workspace);
    tokens[b].push_back(next);
    on_token(b, next);
    ++generated[b];
    live[b] = generated[b] < o.max_new_tokens && !(o.stop_token >= 0 && next == o.stop_token);
  };
  auto window_of = [&](std::size_t b) {
    const auto N = static_cast<std::int64_t>(tokens[b].size());
    return std::min(window, N);
  };
  auto any_live = [&] { return std::any_of(live.begin(), live.end(), [](char l) { return l != 0; }); };
  if constexpr (detail::batch_cached_model<Model>) {
    if (o.use_cache) {
      auto cache = model.make_cache(static_cast<index_t>(B));
      std::vector<std::vector<std::int64_t>> input(B);
      while (any_live()) {
        for (std::size_t b = 0; b < B; ++b) {
          input[b].clear();
          if (!live[b]) continue;
          const auto N = static_cast<std::int64_t>(tokens[b].size());
          if (N <= window && cache.length_of(static_cast<index_t>(b)) == N - 1) {
            input[b].push_back(tokens[b].back());  // decode: one new position
          } else {
            cache.truncate(static_cast<index_t>(b), 0);  // prefill (again) with the window
            input[b].assign(tokens[b].end() - window_of(b), tokens[b].end());
          }
        }
        const auto logits = detail::host_logits(model.last_logits(input, cache));  // (B, V)
        const index_t V = logits.extent(1);
        for (std::size_t b = 0; b < B; ++b)
          if (live[b]) take(b, logits.data() + static_cast<index_t>(b) * V, V);
      }
      return prompts;
    }
  }
  while (any_live()) {
    for (std::size_t b = 0; b < B; ++b) {
      if (!live[b]) continue;
      const auto S = static_cast<index_t>(window_of(b));
      tensor<std::int64_t, dims<2>> input(1, S);                                   // (1, S)
      std::copy(tokens[b].end() - S, tokens[b].end(), input.data());
      const auto logits = detail::host_logits(model.logits(input));               // (1, S, V)
      const index_t V = logits.extent(2);
      take(b, logits.data() + (S - 1) * V, V);
    }
  }
  return prompts;
}

/// Generates up to max_new_tokens tokens after `tokens` (see the file comment): generate_batch of
/// one prompt, drawing from the stream (seed, o.stream).
template <class Model, class OnToken = detail::no_callback>
std::vector<std::int64_t> generate(Model& model, std::vector<std::int64_t> tokens, const generation_options& o,
                                   OnToken&& on_token = {}) {
  if (tokens.empty()) throw value_error("generate: the prompt must contain at least one token");
  std::vector<std::vector<std::int64_t>> one;
  one.push_back(std::move(tokens));
  detail::check_generation("generate", one, o);
  auto all = generate_batch(model, std::move(one), o, [&](std::size_t, std::int64_t id) { on_token(id); });
  return std::move(all.front());
}

}  // namespace einlm::nn
