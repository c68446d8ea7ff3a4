// einlm/nn/sampling.hpp — choosing the next token from a row of logits: greedy, temperature,
// top-k and nucleus (top-p) sampling, drawn from einlm's counter-based random numbers.
//
//   nn::sampling_options opts{.temperature = 0.8, .top_k = 50, .top_p = 0.95};
//   std::int64_t token = nn::sample_token(logits, opts, random_stream{seed, stream}, step);
//
// Contract. sample_token(logits, options, g, draw_index) is a deterministic function of the
// logits, the options, g = (seed, stream) and draw_index:
//   * temperature 0: greedy, the index of the largest logit (the lowest such index on ties);
//     top_k and top_p are then validated but play no part. O(V), no allocation.
//   * otherwise every token gets the weight w = exp((logit − max) / temperature) (in double), and
//     tokens are ranked by descending weight, equal weights by lower index. The candidates are
//       1. the top_k first of that ranking (top_k = 0 or top_k ≥ V: all of them), then
//       2. the shortest prefix of that ranking whose weight reaches top_p of the candidates' total
//          ("the smallest set with cumulative probability ≥ top_p", as in Hugging Face's top-p;
//          always at least the most likely token; top_p = 1: no cut). "Reaches" allows a relative
//          1e-12 for rounding, so a boundary that is exact in real arithmetic (0.5 + 0.3 ≥ 0.8)
//          counts as reached.
//     u = uniform_at<double>(g, draw_index) in [0, 1) is then mapped through the inverse CDF of
//     the renormalised candidates in that ranking: the first candidate whose cumulative weight
//     exceeds u · total. A token with weight 0 (logit −inf, or one that underflows at a low
//     temperature) is never drawn.
//   Cost: O(V) exponentials plus a selection (std::nth_element) of the prefix that is needed and
//   a sort of that prefix only, widened by doubling when top_k is off; one allocation of V
//   entries, or none with the overload that takes a caller's sampling_workspace.
// Errors (value_error naming the option or the problem): empty logits, a NaN or +inf logit, every
// logit −inf, temperature negative, NaN or infinite, top_k negative, top_p outside (0, 1] or NaN.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "einlm/core/error.hpp"
#include "einlm/core/random.hpp"

namespace einlm::nn {

/// How sample_token chooses; the defaults sample from the full softmax.
struct sampling_options {
  double temperature = 1.0;   // 0: greedy; otherwise logits are divided by it
  std::int64_t top_k = 0;     // 0: off; otherwise keep only the top_k most likely tokens
  double top_p = 1.0;         // 1: off; otherwise keep the smallest set with probability ≥ top_p
};

namespace detail {

/// A token and its unnormalised probability.
struct sampling_candidate {
  double weight;
  std::int64_t index;
};

/// The ranking: descending weight, then ascending index (a strict total order).
inline bool ranks_before(const sampling_candidate& a, const sampling_candidate& b) {
  return a.weight > b.weight || (a.weight == b.weight && a.index < b.index);
}

}  // namespace detail

/// Reusable storage for sample_token, so that repeated calls (one per generated token) allocate
/// nothing once it has grown to the vocabulary size. Not shared between threads.
struct sampling_workspace {
  std::vector<detail::sampling_candidate> candidates;  // internal
};

namespace detail {

inline void check_sampling_options(const sampling_options& o) {
  if (!(o.temperature >= 0) || std::isinf(o.temperature))
    throw value_error(einlm::detail::concat("sample_token: temperature must be finite and non-negative, got ",
                                            o.temperature));
  if (o.top_k < 0) throw value_error(einlm::detail::concat("sample_token: top_k must not be negative, got ", o.top_k));
  if (!(o.top_p > 0 && o.top_p <= 1))
    throw value_error(einlm::detail::concat("sample_token: top_p must be in (0, 1], got ", o.top_p));
}

/// Validates the logits (no NaN, no +inf, not all −inf) and returns the greedy choice.
template <class T>
std::int64_t checked_argmax(std::span<const T> logits) {
  if (logits.empty()) throw value_error("sample_token: logits are empty");
  std::size_t best = 0;
  for (std::size_t i = 0; i < logits.size(); ++i) {
    const T x = logits[i];
    if (std::isnan(x)) throw value_error(einlm::detail::concat("sample_token: logit ", i, " is NaN"));
    if (std::isinf(x) && x > 0) throw value_error(einlm::detail::concat("sample_token: logit ", i, " is +inf"));
    if (x > logits[best]) best = i;
  }
  if (std::isinf(logits[best])) throw value_error("sample_token: every logit is -inf");
  return static_cast<std::int64_t>(best);
}

template <class T>
std::int64_t sample_token(std::span<const T> logits, const sampling_options& o, const random_stream& g,
                          std::uint64_t draw_index, std::vector<sampling_candidate>& c) {
  check_sampling_options(o);
  const std::int64_t argmax = checked_argmax(logits);
  if (o.temperature == 0) return argmax;

  // Weights in index order; their sum in index order is the total when top_k is off.
  const std::size_t V = logits.size();
  const double max_logit = static_cast<double>(logits[static_cast<std::size_t>(argmax)]);
  c.resize(V);
  double total = 0;
  for (std::size_t i = 0; i < V; ++i) {
    const double w = std::exp((static_cast<double>(logits[i]) - max_logit) / o.temperature);
    c[i] = {w, static_cast<std::int64_t>(i)};
    total += w;
  }

  // [0, sorted) of c holds the best `sorted` candidates in ranking order; extend_to(need) makes it
  // at least `need` long (and, when widening, at least twice as long) by selecting, then sorting,
  // only the next slice.
  std::size_t n = V, sorted = 0;
  auto extend_to = [&](std::size_t need, bool exact) {
    if (need <= sorted) return;
    std::size_t s = exact ? need : std::max({need, 2 * sorted, std::size_t{64}});
    s = std::min(s, n);
    const auto first = c.begin() + static_cast<std::ptrdiff_t>(sorted);
    const auto last = c.begin() + static_cast<std::ptrdiff_t>(n);
    const auto nth = c.begin() + static_cast<std::ptrdiff_t>(s - 1);
    if (s < n) std::nth_element(first, nth, last, ranks_before);
    std::sort(first, s < n ? nth : last, ranks_before);
    sorted = s;
  };

  // 1. top_k: the k best, sorted; their total is summed in ranking order.
  if (o.top_k > 0 && static_cast<std::uint64_t>(o.top_k) < V) {
    extend_to(static_cast<std::size_t>(o.top_k), true);
    n = sorted;
    total = 0;
    for (std::size_t i = 0; i < n; ++i) total += c[i].weight;
  }

  // 2. top_p: the shortest ranked prefix whose weight reaches top_p · total; it becomes the total.
  if (o.top_p < 1) {
    const double threshold = o.top_p * total * (1 - 1e-12);
    double cumulative = 0;
    std::size_t kept = 0;
    while (kept < n) {
      extend_to(kept + 1, false);
      cumulative += c[kept++].weight;
      if (cumulative >= threshold) break;
    }
    n = kept;
    total = cumulative;
  }

  // 3. Inverse CDF over the ranked candidates.
  const double target = uniform_at<double>(g, draw_index) * total;
  double cumulative = 0;
  std::int64_t last_positive = argmax;
  for (std::size_t i = 0; i < n; ++i) {
    extend_to(i + 1, false);
    if (c[i].weight == 0) break;  // the rest of the ranking has weight 0 as well
    cumulative += c[i].weight;
    last_positive = c[i].index;
    if (cumulative > target) return c[i].index;
  }
  return last_positive;  // target ≥ the summed weight through rounding
}

}  // namespace detail

/// The next token drawn from float logits (V,); see the file comment for the exact rule.
inline std::int64_t sample_token(std::span<const float> logits, const sampling_options& options,
                                 const random_stream& g, std::uint64_t draw_index) {
  std::vector<detail::sampling_candidate> c;
  return detail::sample_token(logits, options, g, draw_index, c);
}

/// The next token drawn from double logits (V,).
inline std::int64_t sample_token(std::span<const double> logits, const sampling_options& options,
                                 const random_stream& g, std::uint64_t draw_index) {
  std::vector<detail::sampling_candidate> c;
  return detail::sample_token(logits, options, g, draw_index, c);
}

/// The same, reusing the caller's workspace (no allocation once it holds V entries).
inline std::int64_t sample_token(std::span<const float> logits, const sampling_options& options,
                                 const random_stream& g, std::uint64_t draw_index, sampling_workspace& workspace) {
  return detail::sample_token(logits, options, g, draw_index, workspace.candidates);
}

inline std::int64_t sample_token(std::span<const double> logits, const sampling_options& options,
                                 const random_stream& g, std::uint64_t draw_index, sampling_workspace& workspace) {
  return detail::sample_token(logits, options, g, draw_index, workspace.candidates);
}

}  // namespace einlm::nn
