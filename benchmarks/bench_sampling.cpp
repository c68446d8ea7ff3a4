// bench_sampling — nn::sample_token at GPT-2's vocabulary (V = 50,257), the per-token cost of
// generation outside the model, beside bm_sample_full_sort: the same rule computed by sorting the
// whole vocabulary first (what Hugging Face's top-k/top-p warpers and most samplers do), which
// draws the same tokens. Each case times one draw from the same logits with a new draw index:
//   logits   0: "peaked", N(0, 3²) (a trained model's spread), 1: "flat", N(0, 0.3²) (an untrained
//            model's, where the draw lands deep in the ranking);
//   options  0: temperature 1, no cut; 1: top_k 50, temperature 0.8; 2: top_p 0.95;
//            3: top_k 50 and top_p 0.95, temperature 0.8; 4: greedy (temperature 0).
// benchmarks/sampling_peers.py times PyTorch's samplers on the same cases.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

#include "einlm/core/random.hpp"
#include "einlm/nn/sampling.hpp"
#include "bench_support.hpp"

using namespace einlm;

namespace {

constexpr std::size_t vocabulary = 50257;

std::vector<float> make_logits(int spread) {
  const double sigma = spread == 0 ? 3.0 : 0.3;
  std::vector<float> logits(vocabulary);  // (V,)
  const random_stream g{2024, 11};
  for (std::size_t i = 0; i < vocabulary; ++i) logits[i] = normal_at<float>(g, i, 0.0, sigma);
  return logits;
}

nn::sampling_options make_options(int which) {
  switch (which) {
    case 0: return {.temperature = 1.0};
    case 1: return {.temperature = 0.8, .top_k = 50};
    case 2: return {.temperature = 1.0, .top_p = 0.95};
    case 3: return {.temperature = 0.8, .top_k = 50, .top_p = 0.95};
    default: return {.temperature = 0.0};
  }
}

const char* label(int spread, int which) {
  static const char* names[2][5] = {
      {"peaked, full", "peaked, top_k 50", "peaked, top_p 0.95", "peaked, top_k+top_p", "peaked, greedy"},
      {"flat, full", "flat, top_k 50", "flat, top_p 0.95", "flat, top_k+top_p", "flat, greedy"}};
  return names[spread][which];
}

/// The rule of nn::sample_token, computed the textbook way: every token weighted (the library's
/// weight function), the whole vocabulary sorted by the ranking, then top_k, top_p and the
/// inverse CDF over the sorted list, summed in ranking order.
std::int64_t sample_full_sort(std::span<const float> logits, const nn::sampling_options& o, const random_stream& g,
                              std::uint64_t draw_index, std::vector<nn::detail::sampling_candidate>& c) {
  if (o.temperature == 0)
    return std::max_element(logits.begin(), logits.end()) - logits.begin();
  const double max_logit = *std::max_element(logits.begin(), logits.end());
  c.resize(logits.size());
  for (std::size_t i = 0; i < logits.size(); ++i)
    c[i] = {logits[i], nn::detail::sampling_weight(logits[i], max_logit, o.temperature), static_cast<std::uint32_t>(i)};
  std::sort(c.begin(), c.end(), nn::detail::ranks_before);
  std::size_t n = c.size();
  if (o.top_k > 0 && static_cast<std::size_t>(o.top_k) < n) n = static_cast<std::size_t>(o.top_k);
  double total = 0;
  for (std::size_t i = 0; i < n; ++i) total += c[i].weight;
  if (o.top_p < 1) {
    const double threshold = o.top_p * total * (1 - nn::detail::top_p_slack);
    double cumulative = 0;
    std::size_t kept = 0;
    while (kept < n) {
      cumulative += c[kept++].weight;
      if (cumulative >= threshold) break;
    }
    n = kept;
    total = cumulative;
  }
  const double target = uniform_at<double>(g, draw_index) * total;
  double cumulative = 0;
  std::int64_t last_positive = c[0].index;  // the rule's fallback when rounding leaves u·total unreached
  for (std::size_t i = 0; i < n && c[i].weight > 0; ++i) {
    cumulative += c[i].weight;
    last_positive = c[i].index;
    if (cumulative > target) return c[i].index;
  }
  return last_positive;
}

void set_counters(benchmark::State& state, int spread, int which) {
  state.SetLabel(label(spread, which));
  state.SetItemsProcessed(state.iterations());  // tokens drawn
}

void bm_sample_token(benchmark::State& state) {
  const int spread = static_cast<int>(state.range(0)), which = static_cast<int>(state.range(1));
  const auto logits = make_logits(spread);  // (V,)
  const auto options = make_options(which);
  const random_stream g{7, 0};
  nn::sampling_workspace workspace;
  std::uint64_t draw = 0;
  std::int64_t checksum = 0;
  for (auto _ : state) checksum += nn::sample_token(std::span<const float>(logits), options, g, draw++, workspace);
  benchmark::DoNotOptimize(checksum);
  set_counters(state, spread, which);
}

void bm_sample_full_sort(benchmark::State& state) {
  const int spread = static_cast<int>(state.range(0)), which = static_cast<int>(state.range(1));
  const auto logits = make_logits(spread);  // (V,)
  const auto options = make_options(which);
  const random_stream g{7, 0};
  std::vector<nn::detail::sampling_candidate> c;
  std::uint64_t draw = 0;
  std::int64_t checksum = 0;
  for (auto _ : state) checksum += sample_full_sort(logits, options, g, draw++, c);
  benchmark::DoNotOptimize(checksum);
  set_counters(state, spread, which);
}

/// Before timing: both ways draw the same tokens for the first 50 draw indices of every case.
bool same_draws() {
  std::vector<nn::detail::sampling_candidate> c;
  nn::sampling_workspace workspace;
  const random_stream g{7, 0};
  for (int spread = 0; spread < 2; ++spread) {
    const auto logits = make_logits(spread);  // (V,)
    for (int which = 0; which < 5; ++which)
      for (std::uint64_t d = 0; d < 50; ++d) {
        const auto o = make_options(which);
        const auto a = nn::sample_token(std::span<const float>(logits), o, g, d, workspace);
        const auto b = sample_full_sort(logits, o, g, d, c);
        if (a != b) {
          std::fprintf(stderr, "bench_sampling: %s, draw %llu: sample_token gave %lld, the full sort %lld\n",
                       label(spread, which), static_cast<unsigned long long>(d), static_cast<long long>(a),
                       static_cast<long long>(b));
          return false;
        }
      }
  }
  return true;
}

void cases(benchmark::internal::Benchmark* b) {
  for (int spread = 0; spread < 2; ++spread)
    for (int which = 0; which < 5; ++which) b->Args({spread, which});
  b->Unit(benchmark::kMicrosecond);
}

}  // namespace

BENCHMARK(bm_sample_token)->Apply(cases);
BENCHMARK(bm_sample_full_sort)->Apply(cases);

int main(int argc, char** argv) {
  if (!same_draws()) return 1;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
