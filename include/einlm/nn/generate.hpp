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
// `model` is any object with config() and logits(tokens (1, S)) → (1, S, V); the whole window is
// recomputed for every token (no KV cache yet: the cost per token grows with the window).
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
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
};

namespace detail {
struct no_callback {
  void operator()(std::int64_t) const {}
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
  for (std::int64_t n = 0; n < o.max_new_tokens; ++n) {
    const auto S = static_cast<index_t>(std::min<std::int64_t>(window, static_cast<std::int64_t>(tokens.size())));
    tensor<std::int64_t, dims<2>> input(1, S);                                    // (1, S)
    std::copy(tokens.end() - S, tokens.end(), input.data());
    const auto logits = model.logits(input);                                      // (1, S, V)
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
