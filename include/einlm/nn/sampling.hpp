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
//   * otherwise every token gets the weight w = exp((logit − max) / temperature) (the argument in
//     double, the exponential in float: a relative error of a few 1e-7), and tokens are ranked by
//     descending logit, equal logits by lower index. The candidates are
//       1. the top_k first of that ranking (top_k = 0 or top_k ≥ V: all of them), then
//       2. the shortest prefix of that ranking whose weight reaches top_p of the candidates' total
//          ("the smallest set with cumulative probability ≥ top_p", as in Hugging Face's top-p;
//          always at least the most likely token; top_p = 1: no cut). "Reaches" allows a relative
//          1e-6 for the weights' rounding, so a boundary that is exact in real arithmetic
//          (0.5 + 0.3 ≥ 0.8) counts as reached.
//     u = uniform_at<double>(g, draw_index) in [0, 1) is then mapped through the inverse CDF of
//     the renormalised candidates in that ranking: the first candidate whose cumulative weight
//     exceeds u · total. A token with weight 0 (logit −inf, or one that underflows at a low
//     temperature) is never drawn. Sums are in double; their order (below) depends on the logits
//     only, so a draw differs from one summed in ranking order only when u · total falls within
//     rounding of a boundary.
//   Cost: the vocabulary is never sorted. One pass validates the logits and finds their range; a
//   top_k of at most V/8 is then selected in one more pass (a heap of k) and only the k are
//   weighed and sorted. Otherwise one pass weighs every token and drops it into one of up to 4096
//   buckets by logit (bucket sizes and weights summed), the cuts and the draw walk the buckets'
//   weights, and only the tokens of a bucket they land in are gathered and sorted: O(V) (logits
//   so skewed that one bucket holds most tokens cost a sort of them). Storage of about 6 bytes
//   per token, in the caller's sampling_workspace (nothing allocated once it has grown) or
//   allocated per call.
// Errors (value_error naming the option or the problem): empty logits, a NaN or +inf logit, every
// logit −inf, temperature negative, NaN or infinite, top_k negative, top_p outside (0, 1] or NaN.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "einlm/core/error.hpp"
#include "einlm/core/math.hpp"
#include "einlm/core/random.hpp"
#include "einlm/core/simd.hpp"

namespace einlm::nn {

/// How sample_token chooses; the defaults sample from the full softmax.
struct sampling_options {
  double temperature = 1.0;   // 0: greedy; otherwise logits are divided by it
  std::int64_t top_k = 0;     // 0: off; otherwise keep only the top_k most likely tokens
  double top_p = 1.0;         // 1: off; otherwise keep the smallest set with probability ≥ top_p
};

namespace detail {

/// A token, its logit and its unnormalised probability.
struct sampling_candidate {
  double logit;
  float weight;
  std::uint32_t index;
};

/// The ranking: descending logit, then ascending index (a strict total order).
struct ranking_order {
  bool operator()(const sampling_candidate& a, const sampling_candidate& b) const {
    return a.logit > b.logit || (a.logit == b.logit && a.index < b.index);
  }
};
inline constexpr ranking_order ranks_before{};

}  // namespace detail

/// Reusable storage for sample_token, so that repeated calls (one per generated token) allocate
/// nothing once it has grown to the vocabulary size. Not shared between threads.
struct sampling_workspace {
  // internal
  std::vector<float> weights;                          // (V,) every token's weight
  std::vector<std::uint16_t> buckets;                  // (V,) every token's bucket
  std::vector<double> bucket_weights;                  // (B,) the weight of each bucket
  std::vector<std::uint32_t> bucket_sizes;             // (B,) the tokens in each bucket
  std::vector<detail::sampling_candidate> candidates;  // a bucket's tokens, or top_k's, ranked
  std::size_t candidates_bucket = 0;                   // which bucket candidates holds
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

/// The greedy choice and the range of the finite logits.
struct logit_scan {
  std::int64_t argmax;
  double max, min;  // min: the smallest finite logit
};

/// Validates the logits (no NaN, no +inf, not all −inf) and scans them: one pass of packet
/// maxima and minima over two interleaved accumulators, which also catches NaN and +inf; a scalar
/// pass naming the first bad logit when there is one; and the first index holding the maximum.
template <class T>
logit_scan scan_logits(std::span<const T> logits) {
  if (logits.empty()) throw value_error("sample_token: logits are empty");
  const T* x = logits.data();
  const std::size_t n = logits.size();
  constexpr T inf = std::numeric_limits<T>::infinity();
  T hi = -inf, lo = inf;
  bool bad = false;  // a NaN or +inf somewhere
  std::size_t j = 0;
#if EINLM_HAS_PACKETS
  if (n >= 2 * static_cast<std::size_t>(simd::width)) {
    using P = simd::packet<T>;
    P hi0(-inf), hi1(-inf), lo0(inf), lo1(inf), worst(T(0));  // worst: NaN once a NaN or +inf is seen
    const P top(inf), bottom(-inf), nan(std::numeric_limits<T>::quiet_NaN());
    for (; j + 2 * simd::width <= n; j += 2 * simd::width) {
      const P a = simd::load<T>(x + j), b = simd::load<T>(x + j + simd::width);
      hi0 = simd::select(a > hi0, a, hi0);
      hi1 = simd::select(b > hi1, b, hi1);
      lo0 = simd::select((a < lo0) & (a > bottom), a, lo0);
      lo1 = simd::select((b < lo1) & (b > bottom), b, lo1);
      worst = simd::select((a < top) & (b < top), worst, nan);
    }
    for (int l = 0; l < simd::width; ++l) {
      hi = std::max({hi, hi0[l], hi1[l]});
      lo = std::min({lo, lo0[l], lo1[l]});
      bad |= worst[l] != worst[l];
    }
  }
#endif
  for (; j < n; ++j) {
    hi = x[j] > hi ? x[j] : hi;
    lo = x[j] < lo && x[j] > -inf ? x[j] : lo;
    bad |= !(x[j] < inf);
  }
  if (bad)
    for (std::size_t i = 0; i < n; ++i) {
      if (std::isnan(x[i])) throw value_error(einlm::detail::concat("sample_token: logit ", i, " is NaN"));
      if (x[i] == inf) throw value_error(einlm::detail::concat("sample_token: logit ", i, " is +inf"));
    }
  if (hi == -inf) throw value_error("sample_token: every logit is -inf");
  std::size_t best = 0;
  while (x[best] != hi) ++best;
  return {static_cast<std::int64_t>(best), static_cast<double>(hi), static_cast<double>(lo)};
}

/// How far below top_p · total a prefix may fall and still count as reaching it: the weights'
/// relative rounding (a few 1e-7) with a margin, so that a boundary exact in real arithmetic
/// (0.5 + 0.3 ≥ 0.8) counts as reached.
inline constexpr double top_p_slack = 1e-6;

/// The weight of a logit: exp((logit − max) / temperature), the argument in double, the
/// exponential in float (math::exp, whose packets and scalars give the same bits; a relative
/// error of a few 1e-7 at most, and 0 below e^-104, a probability no draw could reach).
inline float sampling_weight(double logit, double max_logit, double temperature) {
  return math::exp(static_cast<float>((logit - max_logit) / temperature));
}

/// The k best-ranked logits into c[0, k), ranked: one pass over the logits keeping a heap of the
/// k best, whose worst sets the bar a logit must clear, then a sort of the k. For k much smaller
/// than the vocabulary. Weights are not set.
template <class T>
void select_top_logits(const T* x, std::size_t n, std::size_t k, sampling_candidate* c) {
  for (std::size_t i = 0; i < k; ++i) c[i] = {static_cast<double>(x[i]), 0.0f, static_cast<std::uint32_t>(i)};
  std::make_heap(c, c + k, ranks_before);  // c[0]: the worst of the k kept
  double bar = c[0].logit;
  for (std::size_t i = k; i < n; ++i) {
    // Later indices lose ties, so only a strictly larger logit displaces the worst.
    if (!(static_cast<double>(x[i]) > bar)) continue;
    std::pop_heap(c, c + k, ranks_before);
    c[k - 1] = {static_cast<double>(x[i]), 0.0f, static_cast<std::uint32_t>(i)};
    std::push_heap(c, c + k, ranks_before);
    bar = c[0].logit;
  }
  std::sort_heap(c, c + k, ranks_before);
}

/// top_p and the draw over n candidates in ranking order, summed in that order.
inline std::int64_t draw_from_ranked(const sampling_candidate* c, std::size_t n, double total, const sampling_options& o,
                                     double u) {
  if (o.top_p < 1) {
    const double threshold = o.top_p * total * (1 - top_p_slack);
    double cumulative = 0;
    std::size_t kept = 0;
    while (kept < n)
      if ((cumulative += c[kept++].weight) >= threshold) break;
    n = kept;
    total = cumulative;
  }
  const double target = u * total;
  double cumulative = 0;
  std::int64_t last_positive = c[0].index;  // the most likely token has weight 1
  for (std::size_t i = 0; i < n && c[i].weight > 0; ++i) {
    cumulative += c[i].weight;
    last_positive = c[i].index;
    if (cumulative > target) return c[i].index;
  }
  return last_positive;  // target ≥ the summed weight through rounding
}

/// The ranking of the whole vocabulary without sorting it: tokens fall into B buckets by logit,
/// bucket 0 holding the largest, each bucket's weight is summed, and only the tokens of a bucket
/// that a cut or the draw lands in are gathered and sorted. The bucket of a logit is
/// ⌊(max − logit) · (B − 1)/(max − min)⌋ (−inf: B − 1), non-decreasing down the ranking.
class bucket_ranking {
 public:
  template <class T>
  bucket_ranking(const T* x, std::size_t n, const logit_scan& scan, double temperature, sampling_workspace& w)
      : w_(w), n_(n), buckets_(std::max<std::size_t>(1, std::min<std::size_t>(4096, n / 8))) {
    const double max_logit = scan.max, range = scan.max - scan.min;
    scale_ = range > 0 && !std::isinf(range) ? static_cast<double>(buckets_ - 1) / range : 0.0;
    max_ = max_logit;
    w.weights.resize(n);
    w.buckets.resize(n);
    w.bucket_weights.assign(buckets_, 0.0);
    w.bucket_sizes.assign(buckets_, 0);
    w.candidates_bucket = buckets_;  // none gathered yet
    std::size_t j = 0;
#if EINLM_HAS_PACKETS
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>);
    using P = simd::packet<double>;
    const P shift(max_logit), divisor(temperature);
    for (; j + simd::width <= n; j += simd::width) {
      const P v = simd::convert_packet<double>(simd::load<T>(x + j));
      const simd::packet<float> e = math::exp(simd::convert_packet<float>((v - shift) / divisor));
      simd::store(w.weights.data() + j, e);
      for (int l = 0; l < simd::width; ++l) add(j + l, v[l], e[l]);
    }
#endif
    for (; j < n; ++j) {
      const float e = sampling_weight(static_cast<double>(x[j]), max_logit, temperature);
      w.weights[j] = e;
      add(j, static_cast<double>(x[j]), e);
    }
  }

  std::size_t buckets() const { return buckets_; }
  double weight(std::size_t b) const { return w_.bucket_weights[b]; }
  std::size_t size(std::size_t b) const { return w_.bucket_sizes[b]; }

  /// The tokens of bucket b, ranked (the last bucket gathered is kept).
  template <class T>
  const sampling_candidate* members(const T* x, std::size_t b) {
    if (w_.candidates_bucket != b) {
      auto& c = w_.candidates;
      c.clear();
      const std::uint16_t* id = w_.buckets.data();
      for (std::size_t i = 0; i < n_; ++i)
        if (id[i] == b) c.push_back({static_cast<double>(x[i]), w_.weights[i], static_cast<std::uint32_t>(i)});
      std::sort(c.begin(), c.end(), ranks_before);
      w_.candidates_bucket = b;
    }
    return w_.candidates.data();
  }

 private:
  void add(std::size_t i, double logit, float e) {
    const double t = (max_ - logit) * scale_;  // NaN for −inf · 0, +inf for −inf: the last bucket
    const std::size_t b = t < static_cast<double>(buckets_ - 1) ? static_cast<std::size_t>(t) : buckets_ - 1;
    w_.buckets[i] = static_cast<std::uint16_t>(b);
    w_.bucket_weights[b] += e;
    ++w_.bucket_sizes[b];
  }

  sampling_workspace& w_;
  std::size_t n_, buckets_;
  double max_ = 0, scale_ = 0;
};

/// A prefix of the ranking: every token of buckets [0, bucket), then the first `partial` of
/// bucket `bucket` (partial 0: none).
struct ranked_prefix {
  std::size_t bucket, partial;
};

/// Where a walk down the ranking stopped: the prefix through the token it stopped at, that
/// prefix's weight, and whether it reached the target.
struct ranked_walk {
  ranked_prefix through;
  double sum;
  bool reached;
};

/// Walks the ranking within `kept` from its top until the summed weight reaches `target` (> when
/// strict, ≥ otherwise): whole buckets by their weight, the bucket where it gets there token by
/// token.
template <class T>
ranked_walk walk_ranking(bucket_ranking& r, const T* x, ranked_prefix kept, double target, bool strict) {
  const auto reached = [&](double s) { return strict ? s > target : s >= target; };
  double sum = 0;
  for (std::size_t b = 0; b <= kept.bucket && b < r.buckets(); ++b) {
    const bool whole = b < kept.bucket;
    if (whole && (r.weight(b) == 0 || !reached(sum + r.weight(b)))) {
      sum += r.weight(b);
      continue;
    }
    const std::size_t n = whole ? r.size(b) : kept.partial;
    if (n == 0) break;
    const sampling_candidate* c = r.members(x, b);
    for (std::size_t i = 0; i < n; ++i)
      if (reached(sum += c[i].weight)) return {{b, i + 1}, sum, true};
  }
  return {kept, sum, false};
}

/// The last-ranked token of positive weight within `kept` (`otherwise` when there is none): the
/// draw's answer when rounding leaves u · total unreached. Gathers at most two buckets.
template <class T>
std::int64_t last_positive(bucket_ranking& r, const T* x, ranked_prefix kept, std::int64_t otherwise) {
  for (std::size_t b = std::min(kept.bucket, r.buckets() - 1) + 1; b-- > 0;) {
    if (r.weight(b) == 0) continue;  // no token of positive weight: nothing to gather
    const std::size_t n = b < kept.bucket ? r.size(b) : kept.partial;
    const sampling_candidate* c = r.members(x, b);
    for (std::size_t i = n; i-- > 0;)
      if (c[i].weight > 0) return c[i].index;
  }
  return otherwise;
}

template <class T>
std::int64_t sample_token(std::span<const T> logits, const sampling_options& o, const random_stream& g,
                          std::uint64_t draw_index, sampling_workspace& w) {
  check_sampling_options(o);
  const logit_scan scan = scan_logits(logits);
  const std::int64_t argmax = scan.argmax;
  if (o.temperature == 0) return argmax;

  const std::size_t V = logits.size();
  if (V > std::numeric_limits<std::uint32_t>::max())
    throw value_error(einlm::detail::concat("sample_token: ", V, " logits; at most 2^32 - 1 are supported"));
  const T* x = logits.data();
  const double max_logit = scan.max;
  const double u = uniform_at<double>(g, draw_index);
  const bool cut = o.top_k > 0 && static_cast<std::uint64_t>(o.top_k) < V;

  if (cut && static_cast<std::size_t>(o.top_k) * 8 <= V) {
    // top_k much smaller than V: select and rank the k, weigh only them.
    const auto k = static_cast<std::size_t>(o.top_k);
    w.candidates.resize(k);
    w.candidates_bucket = std::numeric_limits<std::size_t>::max();
    sampling_candidate* c = w.candidates.data();
    select_top_logits(x, V, k, c);
    double total = 0;
    for (std::size_t i = 0; i < k; ++i) total += c[i].weight = sampling_weight(c[i].logit, max_logit, o.temperature);
    return draw_from_ranked(c, k, total, o, u);
  }

  bucket_ranking r(x, V, scan, o.temperature, w);
  // 1. top_k: the buckets before the one that holds the k-th token, and its first tokens.
  ranked_prefix kept{r.buckets(), 0};
  if (cut) {
    std::size_t before = 0, b = 0;
    while (before + r.size(b) < static_cast<std::size_t>(o.top_k)) before += r.size(b++);
    kept = {b, static_cast<std::size_t>(o.top_k) - before};
  }
  const ranked_walk all = walk_ranking(r, x, kept, std::numeric_limits<double>::infinity(), false);
  double total = all.sum;
  // 2. top_p: the shortest prefix whose weight reaches top_p · total; it becomes the total.
  if (o.top_p < 1) {
    const ranked_walk nucleus = walk_ranking(r, x, kept, o.top_p * total * (1 - top_p_slack), false);
    kept = nucleus.through;
    total = nucleus.sum;
  }
  // 3. The inverse CDF.
  const ranked_walk drawn = walk_ranking(r, x, kept, u * total, true);
  if (drawn.reached) return r.members(x, drawn.through.bucket)[drawn.through.partial - 1].index;
  // u · total ≥ the summed weight through rounding: the last-ranked token of positive weight.
  return last_positive(r, x, kept, argmax);
}

}  // namespace detail

/// The next token drawn from float logits (V,); see the file comment for the exact rule.
inline std::int64_t sample_token(std::span<const float> logits, const sampling_options& options,
                                 const random_stream& g, std::uint64_t draw_index) {
  sampling_workspace workspace;
  return detail::sample_token(logits, options, g, draw_index, workspace);
}

/// The next token drawn from double logits (V,).
inline std::int64_t sample_token(std::span<const double> logits, const sampling_options& options,
                                 const random_stream& g, std::uint64_t draw_index) {
  sampling_workspace workspace;
  return detail::sample_token(logits, options, g, draw_index, workspace);
}

/// The same, reusing the caller's workspace (no allocation once it holds V entries).
inline std::int64_t sample_token(std::span<const float> logits, const sampling_options& options,
                                 const random_stream& g, std::uint64_t draw_index, sampling_workspace& workspace) {
  return detail::sample_token(logits, options, g, draw_index, workspace);
}

inline std::int64_t sample_token(std::span<const double> logits, const sampling_options& options,
                                 const random_stream& g, std::uint64_t draw_index, sampling_workspace& workspace) {
  return detail::sample_token(logits, options, g, draw_index, workspace);
}

}  // namespace einlm::nn
