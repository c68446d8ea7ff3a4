// Tests of einlm/nn/sampling.hpp: greedy choice and its tie rule; determinism and the exact
// inverse-CDF rule (recomputed here from uniform_at); empirical frequencies over 20,000 draws
// against the softmax at temperatures 1 and 0.5 (a chi-square statistic); top_k (1 = greedy, 2 =
// only the two best, renormalised); top_p's nucleus and its boundary convention ("the smallest
// set with cumulative probability ≥ top_p"); tokens of probability 0 never drawn; a 50,257-token
// vocabulary; the workspace overload; the errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "einlm/nn/sampling.hpp"
#include "support/check.hpp"

using namespace einlm;

namespace {

constexpr int draws = 20'000;

/// Softmax of logits / temperature, in double.
std::vector<double> softmax(const std::vector<double>& logits, double temperature) {
  const double m = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  for (std::size_t i = 0; i < p.size(); ++i) p[i] = std::exp((logits[i] - m) / temperature);
  const double z = std::accumulate(p.begin(), p.end(), 0.0);
  for (auto& x : p) x /= z;
  return p;
}

/// How often each token comes out of `draws` draws (draw indices 0, 1, …).
template <class T>
std::vector<int> histogram(const std::vector<T>& logits, const nn::sampling_options& o, const random_stream& g) {
  std::vector<int> counts(logits.size(), 0);
  nn::sampling_workspace ws;
  for (int i = 0; i < draws; ++i) ++counts[static_cast<std::size_t>(nn::sample_token(std::span<const T>(logits), o, g, static_cast<std::uint64_t>(i), ws))];
  return counts;
}

/// Pearson's chi-square statistic of the counts against probabilities p (bins with p = 0 must be
/// empty: they count as infinite).
double chi_square(const std::vector<int>& counts, const std::vector<double>& p) {
  double stat = 0;
  for (std::size_t i = 0; i < p.size(); ++i) {
    const double expected = p[i] * draws;
    if (expected == 0) {
      if (counts[i] != 0) return std::numeric_limits<double>::infinity();
      continue;
    }
    stat += (counts[i] - expected) * (counts[i] - expected) / expected;
  }
  return stat;
}

/// The statistic has mean dof and standard deviation √(2 dof); dof + 5√(2 dof) + 10 lies beyond its
/// 99.99th percentile for 1 ≤ dof ≤ 40 (15.1 at dof 1, 25.7 at 5, 81 at 39). The draws are
/// deterministic, so this is a fixed pass, not a flaky one. Getting the distribution wrong, e.g.
/// ignoring the temperature, costs thousands.
double chi_square_bound(std::size_t bins) {
  const double dof = static_cast<double>(bins - 1);
  return dof + 5 * std::sqrt(2 * dof) + 10;
}

const std::vector<double> six_logits = {1.0, 0.5, -0.3, 2.0, 0.0, -1.0};

}  // namespace

TEST_CASE("temperature 0 is greedy: the largest logit, the lowest index on ties") {
  const random_stream g{1, 2};
  const nn::sampling_options greedy{.temperature = 0};
  const std::vector<float> logits = {0.5f, 3.0f, -1.0f, 3.0f, 2.0f};
  CHECK(nn::sample_token(logits, greedy, g, 0) == 1);
  for (std::uint64_t i = 0; i < 100; ++i) CHECK(nn::sample_token(logits, greedy, g, i) == 1);
  // top_k and top_p play no part; −inf logits are allowed.
  const nn::sampling_options greedy_cut{.temperature = 0, .top_k = 3, .top_p = 0.1};
  const float ninf = -std::numeric_limits<float>::infinity();
  const std::vector<float> masked = {ninf, -5.0f, ninf, -2.0f};
  CHECK(nn::sample_token(masked, greedy_cut, g, 0) == 3);
  const std::vector<double> one = {-7.0};
  CHECK(nn::sample_token(one, greedy, g, 0) == 0);
  CHECK(nn::sample_token(one, nn::sampling_options{}, g, 5) == 0);
}

TEST_CASE("a draw is a function of (logits, options, seed, stream, draw index): the inverse CDF of u") {
  const std::vector<double> logits = six_logits;
  const nn::sampling_options o{.temperature = 0.7};
  const auto p = softmax(logits, 0.7);
  // The ranking: descending probability (token 3, 0, 1, 4, 2, 5).
  std::vector<std::size_t> order(p.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return p[a] > p[b]; });
  CHECK(order == std::vector<std::size_t>{3, 0, 1, 4, 2, 5});
  const random_stream g{2026, 3};
  for (std::uint64_t i = 0; i < 200; ++i) {
    const double u = uniform_at<double>(g, i);
    double cumulative = 0;
    std::size_t expected = order.back();
    for (const std::size_t t : order)
      if ((cumulative += p[t]) > u) {
        expected = t;
        break;
      }
    // Only a u within rounding of a boundary could differ; none of these 200 is.
    CHECK(nn::sample_token(logits, o, g, i) == static_cast<std::int64_t>(expected));
    CHECK(nn::sample_token(logits, o, g, i) == nn::sample_token(logits, o, g, i));
  }
  // Another seed, stream or draw index gives other draws; float logits that equal the double ones
  // give the same draws.
  const std::vector<float> as_float(logits.begin(), logits.end());
  int differ_seed = 0, differ_stream = 0;
  for (std::uint64_t i = 0; i < 200; ++i) {
    const auto t = nn::sample_token(logits, o, g, i);
    differ_seed += t != nn::sample_token(logits, o, random_stream{2027, 3}, i);
    differ_stream += t != nn::sample_token(logits, o, random_stream{2026, 4}, i);
    CHECK(nn::sample_token(as_float, o, g, i) == t);
  }
  CHECK(differ_seed > 50);
  CHECK(differ_stream > 50);
}

TEST_CASE("frequencies over 20,000 draws match the softmax at temperatures 1 and 0.5") {
  const random_stream g{7, 11};
  for (const double temperature : {1.0, 0.5}) {
    CAPTURE(temperature);
    const auto counts = histogram(six_logits, {.temperature = temperature}, g);
    const auto p = softmax(six_logits, temperature);
    CHECK(chi_square(counts, p) < chi_square_bound(p.size()));
    // The test has power: the other temperature's probabilities are far off.
    const auto wrong = softmax(six_logits, temperature == 1.0 ? 0.5 : 1.0);
    CHECK(chi_square(counts, wrong) > 100 * chi_square_bound(p.size()));
  }
  // Float logits, a larger vocabulary, temperature 2.
  const auto values = test::random_values<float>(40, -3, 3, 99);
  const std::vector<double> as_double(values.begin(), values.end());
  const auto counts = histogram(values, {.temperature = 2.0}, g);
  CHECK(chi_square(counts, softmax(as_double, 2.0)) < chi_square_bound(values.size()));
}

TEST_CASE("top_k: 1 is greedy, 2 yields only the two best, renormalised") {
  const random_stream g{5, 0};
  for (std::uint64_t i = 0; i < 500; ++i)
    CHECK(nn::sample_token(six_logits, {.temperature = 1.5, .top_k = 1}, g, i) ==
          nn::sample_token(six_logits, {.temperature = 0}, g, i));
  const auto counts = histogram(six_logits, {.top_k = 2}, g);
  const auto full = softmax(six_logits, 1.0);
  std::vector<double> p(full.size(), 0.0);
  p[3] = full[3] / (full[3] + full[0]);
  p[0] = full[0] / (full[3] + full[0]);
  CHECK(counts[0] + counts[3] == draws);
  CHECK(chi_square(counts, p) < chi_square_bound(2));
  // top_k at or above V is no cut.
  for (std::uint64_t i = 0; i < 100; ++i)
    CHECK(nn::sample_token(six_logits, {.top_k = 6}, g, i) == nn::sample_token(six_logits, {.top_k = 1000}, g, i));
  for (std::uint64_t i = 0; i < 100; ++i)
    CHECK(nn::sample_token(six_logits, {.top_k = 6}, g, i) == nn::sample_token(six_logits, {}, g, i));
  // Ties at the k-th place go to the lower index.
  const std::vector<double> tied = {0.0, 1.0, 1.0, 1.0};
  for (std::uint64_t i = 0; i < 300; ++i) {
    const auto t = nn::sample_token(tied, {.top_k = 2}, g, i);
    CHECK((t == 1 || t == 2));
  }
}

TEST_CASE("top_p keeps the smallest set with cumulative probability >= top_p") {
  // Probabilities 0.5, 0.3, 0.15, 0.05 (listed out of order, so the ranking matters).
  const std::vector<double> logits = {std::log(0.15), std::log(0.5), std::log(0.05), std::log(0.3)};
  const random_stream g{8, 1};
  const auto kept = [&](nn::sampling_options o) {
    std::vector<int> counts = histogram(logits, o, g);
    std::vector<std::int64_t> tokens;
    for (std::size_t t = 0; t < counts.size(); ++t)
      if (counts[t] != 0) tokens.push_back(static_cast<std::int64_t>(t));
    return tokens;
  };
  // 0.5 + 0.3 = 0.8 reaches 0.8 exactly (up to rounding): the nucleus is the first two tokens.
  CHECK(kept({.top_p = 0.8}) == std::vector<std::int64_t>{1, 3});
  CHECK(kept({.top_p = 0.79}) == std::vector<std::int64_t>{1, 3});
  CHECK(kept({.top_p = 0.81}) == std::vector<std::int64_t>{0, 1, 3});
  CHECK(kept({.top_p = 0.5}) == std::vector<std::int64_t>{1});   // the boundary again: 0.5 ≥ 0.5
  CHECK(kept({.top_p = 0.51}) == std::vector<std::int64_t>{1, 3});
  CHECK(kept({.top_p = 1e-9}) == std::vector<std::int64_t>{1});  // at least the most likely token
  CHECK(kept({.top_p = 0.96}) == std::vector<std::int64_t>{0, 1, 2, 3});
  // Renormalised within the nucleus: 0.5 / 0.8 and 0.3 / 0.8.
  const auto counts = histogram(logits, {.top_p = 0.8}, g);
  CHECK(chi_square(counts, {0.0, 0.625, 0.0, 0.375}) < chi_square_bound(2));
  // top_p applies to the top_k set, renormalised: within {0.5, 0.3}, 0.5 is 0.625 ≥ 0.6.
  CHECK(kept({.top_k = 2, .top_p = 0.6}) == std::vector<std::int64_t>{1});
  CHECK(kept({.top_k = 3, .top_p = 0.9}) == std::vector<std::int64_t>{0, 1, 3});
  // The temperature applies first: at 0.5 the probabilities are ∝ 0.25, 0.09, … so token 1 alone
  // holds 0.25 / 0.365 = 0.68 ≥ 0.65.
  CHECK(kept({.temperature = 0.5, .top_p = 0.65}) == std::vector<std::int64_t>{1});
}

TEST_CASE("tokens of probability 0 are never drawn") {
  const double ninf = -std::numeric_limits<double>::infinity();
  const random_stream g{9, 9};
  const auto counts = histogram(std::vector<double>{ninf, 0.0, ninf, 0.0, ninf}, {}, g);
  CHECK(counts[0] + counts[2] + counts[4] == 0);
  CHECK(chi_square(counts, {0, 0.5, 0, 0.5, 0}) < chi_square_bound(2));
  // At a tiny temperature every weight but the largest underflows to 0: greedy in effect.
  const auto cold = histogram(std::vector<double>{1.0, 1.5, 1.25}, {.temperature = 1e-3}, g);
  CHECK(cold[1] == draws);
}

TEST_CASE("a 50,257-token vocabulary; the workspace overload gives the same draws") {
  constexpr std::size_t V = 50'257;
  const auto logits = test::random_values<float>(V, -8, 8, 2026);
  std::vector<std::size_t> order(V);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  const random_stream g{31, 4};
  CHECK(nn::sample_token(logits, {.temperature = 0}, g, 0) == static_cast<std::int64_t>(order[0]));
  // [snippet sampling]
  const random_stream stream{2026, 7};     // one stream per generated sequence
  const nn::sampling_options options{.temperature = 0.8, .top_k = 40, .top_p = 0.95};
  nn::sampling_workspace workspace;        // reused: no allocation after the first token
  std::vector<std::int64_t> tokens;
  for (std::uint64_t step = 0; step < 64; ++step)
    tokens.push_back(nn::sample_token(logits, options, stream, /*draw_index=*/step, workspace));
  // [end snippet]
  for (std::uint64_t step = 0; step < 64; ++step) {
    const auto token = tokens[step];
    CHECK(std::find(order.begin(), order.begin() + 40, static_cast<std::size_t>(token)) != order.begin() + 40);
    CHECK(token == nn::sample_token(logits, options, stream, step));
  }
  // No cut: any token may come out, and the draws follow the inverse CDF of the full ranking.
  std::vector<double> p(V);
  double z = 0;
  for (std::size_t t = 0; t < V; ++t) z += p[t] = std::exp(static_cast<double>(logits[t]) - logits[order[0]]);
  for (std::uint64_t i = 0; i < 20; ++i) {
    const double target = uniform_at<double>(g, i) * z;
    double cumulative = 0;
    std::size_t expected = order.back();
    for (const std::size_t t : order)
      if ((cumulative += p[t]) > target) {
        expected = t;
        break;
      }
    const auto token = nn::sample_token(logits, {}, g, i, workspace);
    // The library's weights are float exponentials, within a few 1e-7 of these, and its sums run
    // over buckets of the ranking: only a u that close to a boundary could differ; none does.
    CHECK(token == static_cast<std::int64_t>(expected));
    CHECK(token == nn::sample_token(logits, {}, g, i));
  }
}

namespace {

/// The rule computed the textbook way: the library's weights, the whole vocabulary sorted by the
/// ranking (descending logit, lower index first), top_k, top_p and the inverse CDF summed in
/// ranking order.
template <class T>
std::int64_t full_sort_reference(const std::vector<T>& logits, const nn::sampling_options& o, const random_stream& g,
                                 std::uint64_t draw_index) {
  std::vector<std::size_t> order(logits.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  if (o.temperature == 0) return static_cast<std::int64_t>(order[0]);
  const double max_logit = static_cast<double>(logits[order[0]]);
  std::size_t n = logits.size();
  if (o.top_k > 0 && static_cast<std::size_t>(o.top_k) < n) n = static_cast<std::size_t>(o.top_k);
  std::vector<double> w(n);
  double total = 0;
  for (std::size_t i = 0; i < n; ++i)
    total += w[i] = nn::detail::sampling_weight(static_cast<double>(logits[order[i]]), max_logit, o.temperature);
  if (o.top_p < 1) {
    double cumulative = 0;
    std::size_t kept = 0;
    while (kept < n)
      if ((cumulative += w[kept++]) >= o.top_p * total * (1 - nn::detail::top_p_slack)) break;
    n = kept;
    total = cumulative;
  }
  const double target = uniform_at<double>(g, draw_index) * total;
  double cumulative = 0;
  std::size_t last_positive = 0;
  for (std::size_t i = 0; i < n && w[i] > 0; ++i) {
    last_positive = i;
    if ((cumulative += w[i]) > target) return static_cast<std::int64_t>(order[i]);
  }
  return static_cast<std::int64_t>(order[last_positive]);
}

/// Logits of a kind that stresses the ranking: spread, ties, −inf, outliers.
template <class T>
std::vector<T> stress_logits(int kind, std::size_t V, std::uint64_t seed) {
  auto x = test::random_values<T>(V, -8, 8, seed);
  const T ninf = -std::numeric_limits<T>::infinity();
  switch (kind) {
    case 1:  // nearly flat: most of the vocabulary shares the mass
      for (auto& v : x) v = static_cast<T>(v * T(0.03));
      break;
    case 2:  // many exact ties
      for (auto& v : x) v = std::round(v * T(2)) / T(2);
      break;
    case 3:  // every other token masked
      for (std::size_t i = 0; i < V; i += 2) x[i] = ninf;
      x[V - 1] = T(1);  // at least one token left
      break;
    case 4:  // one far outlier below: the rest share one bucket
      x[V / 2] = T(-1e30);
      break;
    case 5:  // all equal
      std::fill(x.begin(), x.end(), T(0.25));
      break;
    default: break;
  }
  return x;
}

template <class T>
void check_against_full_sort(std::size_t V, int draws_per_case) {
  const random_stream g{77, V};
  const std::vector<nn::sampling_options> option_sets = {
      {.temperature = 1.0},
      {.temperature = 0.7, .top_k = 3},
      {.temperature = 1.0, .top_k = static_cast<std::int64_t>(V / 10 + 1)},
      {.temperature = 1.3, .top_k = static_cast<std::int64_t>(V / 2 + 1)},
      {.temperature = 1.0, .top_k = static_cast<std::int64_t>(V > 1 ? V - 1 : 1)},
      {.temperature = 1.0, .top_p = 0.3},
      {.temperature = 0.9, .top_p = 0.9},
      {.temperature = 3.0, .top_p = 0.999},
      {.temperature = 0.8, .top_k = static_cast<std::int64_t>(V / 3 + 1), .top_p = 0.95},
      {.temperature = 0.0},
  };
  nn::sampling_workspace workspace;
  for (int kind = 0; kind < 6; ++kind) {
    const auto logits = stress_logits<T>(kind, V, 1000 + static_cast<std::uint64_t>(kind));  // (V,)
    for (std::size_t s = 0; s < option_sets.size(); ++s)
      for (int d = 0; d < draws_per_case; ++d) {
        const auto i = static_cast<std::uint64_t>(d);
        const auto token = nn::sample_token(std::span<const T>(logits), option_sets[s], g, i, workspace);
        CAPTURE(V);
        CAPTURE(kind);
        CAPTURE(s);
        CAPTURE(d);
        CHECK(token == full_sort_reference(logits, option_sets[s], g, i));
        CHECK(logits[static_cast<std::size_t>(token)] > -std::numeric_limits<T>::infinity());
      }
  }
}

}  // namespace

TEST_CASE("the bucketed ranking draws what a full sort of the vocabulary draws") {
  // Without sorting, sample_token sums whole buckets of the ranking; it may differ from a full
  // sort only where u · total falls within rounding of a cumulative boundary, and none of these
  // draws does. Small vocabularies (one bucket), the heap path of small top_k, the buckets of a
  // large vocabulary, ties, masks, an outlier that puts almost all tokens in one bucket.
  for (const std::size_t V : {std::size_t{1}, std::size_t{2}, std::size_t{7}, std::size_t{100}, std::size_t{1000}}) {
    check_against_full_sort<float>(V, 40);
    check_against_full_sort<double>(V, 40);
  }
  check_against_full_sort<float>(50'257, 6);
  // Double logits whose range overflows: one bucket (scale 0), still the ranking.
  std::vector<double> wide = test::random_values<double>(500, -1e300, 1e300, 5);
  wide[7] = 1.7e308;
  wide[8] = -1.7e308;
  nn::sampling_workspace workspace;
  const random_stream g{3, 3};
  for (std::uint64_t i = 0; i < 50; ++i)
    for (const auto& o : {nn::sampling_options{.temperature = 1e300}, nn::sampling_options{.temperature = 1e300, .top_p = 0.5}})
      CHECK(nn::sample_token(std::span<const double>(wide), o, g, i, workspace) == full_sort_reference(wide, o, g, i));
}

TEST_CASE("when rounding leaves the draw's target unreached, the last-ranked token of positive weight") {
  // 64 logits in four bands; at temperature 0.01 the lowest band's weights underflow to 0, and
  // the last band is masked. The answer is the last token of the ranking with a positive weight.
  std::vector<float> x(64);
  for (std::size_t i = 0; i < 64; ++i) x[i] = 3.0f - static_cast<float>(i % 4) * 0.5f + static_cast<float>(i) * 1e-3f;
  for (std::size_t i = 3; i < 64; i += 4) x[i] = -std::numeric_limits<float>::infinity();
  for (std::size_t i = 2; i < 64; i += 4) x[i] = -20.0f;  // weight e^(−23 / 0.01) = 0
  nn::sampling_workspace w;
  const auto scan = nn::detail::scan_logits(std::span<const float>(x));
  nn::detail::bucket_ranking r(x.data(), x.size(), scan, 0.01, w);
  // Positive weights: the bands at 3.0 and 2.5; the last-ranked of them is the lowest logit of the
  // 2.5 band, 2.5 + 0.001 · 1 (token 1).
  const nn::detail::ranked_prefix all{r.buckets(), 0};
  CHECK(nn::detail::last_positive(r, x.data(), all, -1) == 1);
  // Within a prefix that stops inside the first band: its last member.
  const auto walk = nn::detail::walk_ranking(r, x.data(), all, 0.5, true);  // the first token reaches it
  CHECK(walk.reached);
  CHECK(nn::detail::last_positive(r, x.data(), walk.through, -1) == 60);   // the largest logit: 3.0 + 0.06
  // A target beyond the total is never reached, and the walk reports the whole ranking's weight.
  const auto beyond = nn::detail::walk_ranking(r, x.data(), all, 1e9, true);
  CHECK_FALSE(beyond.reached);
  CHECK(beyond.sum >= 1.0);
}

TEST_CASE("errors name the option or the problem") {
  const random_stream g{};
  const std::vector<float> logits = {0.0f, 1.0f};
  CHECK_THROWS_WITH_AS(nn::sample_token(logits, {.temperature = -0.5}, g, 0),
                       "sample_token: temperature must be finite and non-negative, got -0.5", value_error);
  CHECK_THROWS_AS(nn::sample_token(logits, {.temperature = std::nan("")}, g, 0), value_error);
  CHECK_THROWS_AS(nn::sample_token(logits, {.temperature = std::numeric_limits<double>::infinity()}, g, 0),
                  value_error);
  CHECK_THROWS_WITH_AS(nn::sample_token(logits, {.top_k = -1}, g, 0),
                       "sample_token: top_k must not be negative, got -1", value_error);
  CHECK_THROWS_WITH_AS(nn::sample_token(logits, {.top_p = 0.0}, g, 0),
                       "sample_token: top_p must be in (0, 1], got 0", value_error);
  CHECK_THROWS_WITH_AS(nn::sample_token(logits, {.top_p = 1.5}, g, 0),
                       "sample_token: top_p must be in (0, 1], got 1.5", value_error);
  CHECK_THROWS_AS(nn::sample_token(logits, {.top_p = std::nan("")}, g, 0), value_error);
  // Options are checked for greedy decoding too.
  CHECK_THROWS_AS(nn::sample_token(logits, {.temperature = 0, .top_k = -2}, g, 0), value_error);
  CHECK_THROWS_WITH_AS(nn::sample_token(std::vector<float>{}, {}, g, 0), "sample_token: logits are empty",
                       value_error);
  CHECK_THROWS_WITH_AS(nn::sample_token(std::vector<float>{0.0f, std::nanf(""), 1.0f}, {.temperature = 0}, g, 0),
                       "sample_token: logit 1 is NaN", value_error);
  CHECK_THROWS_WITH_AS(
      nn::sample_token(std::vector<double>{0.0, std::numeric_limits<double>::infinity()}, {}, g, 0),
      "sample_token: logit 1 is +inf", value_error);
  const double ninf = -std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH_AS(nn::sample_token(std::vector<double>{ninf, ninf}, {}, g, 0),
                       "sample_token: every logit is -inf", value_error);
}
