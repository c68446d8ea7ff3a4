// einlm/nn/generate.hpp — autoregressive generation from a language model.
//
//   nn::generation_options o{.max_new_tokens = 200, .sampling = {.temperature = 0.8, .top_p = 0.95},
//                            .seed = 1, .stop_token = eos};
//   std::vector<std::int64_t> ids = nn::generate(model, prompt_ids, o, [&](std::int64_t id) { … });
//
// Appends up to max_new_tokens tokens to `prompt` (which must not be empty) and returns the whole
// sequence. Each new token is drawn by sample_token (nn/sampling.hpp) from the logits of the last
// position, with draw index = the number of tokens generated so far in the Philox stream
// (seed, 0) — so the text is a function of (model, prompt, options). Generation stops early after
// stop_token (kept in the output) when stop_token ≥ 0. The model sees at most its context_length
// most recent tokens. `on_token` (optional) is called with each new token as it is produced, so a
// caller can stream text.
//
// `model` is any object with config() and logits(tokens (1, S)) → (1, S, V). When it also has
// make_cache() and logits(tokens, cache) (nn::transformer_lm) and use_cache is set (the default),
// the prompt is run once (prefill) and each new token then costs one position (decode); once the
// sequence outgrows context_length, each token re-runs the most recent window, exactly as without
// a cache — so the tokens are the same either way.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "einlm/core/error.hpp"
#include "einlm/core/random.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/nn/sampling.hpp"

namespace einlm::nn {

struct generation_options {
  std::int64_t max_new_tokens = 100;
  sampling_options sampling = {};
  std::uint64_t seed = 0;
  std::int64_t stop_token = -1;  // < 0: none
  bool use_cache = true;          // decode with a KV cache when the model has one
};

namespace detail {
struct no_callback {
  void operator()(std::int64_t) const {}
};

/// The cache type of a model with make_cache(batch).
template <class M>
using cache_of = decltype(std::declval<M&>().make_cache(index_t{1}));

/// A model with make_cache(batch) and logits(tokens, cache).
template <class M>
concept cached_model = requires(M& m, tensor<std::int64_t, dims<2>>& tokens, cache_of<M>& cache) {
  m.logits(tokens, cache);
};
}  // namespace detail

template <class Model, class OnToken = detail::no_callback>
std::vector<std::int64_t> generate(Model& model, std::vector<std::int64_t> tokens, const generation_options& o,
                                   OnToken&& on_token = {}) {
  if (tokens.empty()) throw value_error("generate: the prompt must contain at least one token");
  if (o.max_new_tokens < 0)
    throw value_error(einlm::detail::concat("generate: max_new_tokens must be ≥ 0, got ", o.max_new_tokens));
  const std::int64_t window = model.config().context_length;
  const random_stream g{o.seed, 0};
  constexpr bool has_cache = detail::cached_model<Model>;
  auto cache = [&] {
    if constexpr (has_cache) return model.make_cache(1);
    else return 0;
  }();
  for (std::int64_t n = 0; n < o.max_new_tokens; ++n) {
    const auto N = static_cast<std::int64_t>(tokens.size());
    auto S = static_cast<index_t>(std::min(window, N));                           // positions to run
    bool cached = false;
    if constexpr (has_cache) {
      cached = o.use_cache;
      if (cached) {
        if (N <= window && cache.length == N - 1) S = 1;  // decode: one new position
        else cache.clear();                               // prefill (again) with the window
      }
    }
    tensor<std::int64_t, dims<2>> input(1, S);                                    // (1, S)
    std::copy(tokens.end() - S, tokens.end(), input.data());
    const auto logits = [&] {
      if constexpr (has_cache)
        if (cached) return model.logits(input, cache);                            // (1, S, V)
      return model.logits(input);                                                 // (1, S, V)
    }();
    const index_t V = logits.extent(2);
    using T = typename std::remove_cvref_t<decltype(logits)>::value_type;
    const std::span<const T> last(logits.data() + (S - 1) * V, static_cast<std::size_t>(V));
    const std::int64_t next = sample_token(last, o.sampling, g, static_cast<std::uint64_t>(n));
    tokens.push_back(next);
    on_token(next);
    if (o.stop_token >= 0 && next == o.stop_token) break;
  }
  return tokens;
}

}  // namespace einlm::nn
