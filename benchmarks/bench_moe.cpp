// bench_moe — CPU throughput of the mixture-of-experts layer (nn::moe_layer<float>): a training
// forward + backward (every gradient, the auxiliary losses included) and the forward pass alone,
// in tokens per second, for a smoke-sized case and the issue-sized one (d_model 256, 8 experts,
// top-2 softmax router, expert d_ff 512, 2048 tokens in 4 sequences, dropless). The FLOPs counter
// counts the router and the selected experts' three products (2·m·n·k each), backward 2 × forward.
// benchmarks/moe_peers.py runs this program beside the same layer in PyTorch eager (same threads)
// and prints the ratios.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "einlm/core/random.hpp"
#include "einlm/expr.hpp"
#include "einlm/nn/moe.hpp"

using namespace einlm;

namespace {

struct bench_case {
  nn::moe_layer_config config;
  index_t tokens, seq;
  const char* label;
};

bench_case make_case(int which) {
  if (which == 0)
    return {{.d_model = 64, .num_experts = 4, .top_k = 2, .expert_d_ff = 128}, 256, 64, "D64 E4 top2 F128 N256"};
  return {{.d_model = 256, .num_experts = 8, .top_k = 2, .expert_d_ff = 512}, 2048, 512, "D256 E8 top2 F512 N2048"};
}

/// Every parameter normal(0, 0.02²) (the router normal(0, 1/D) so that routing is not uniform).
nn::moe_parameters<float> make_parameters(const nn::moe_layer_config& c) {
  nn::moe_parameters<float> p(c);
  std::uint64_t stream = 0;
  p.for_each_parameter([&](const std::string& name, auto& w) {
    const double std = name == "router.weight" ? 1.0 / std::sqrt(static_cast<double>(c.d_model)) : 0.02;
    w = normal<float>(w.extents(), random_stream{5, stream++}, 0.0, std);
  });
  return p;
}

tensor<float, dims<2>> random_rows(index_t n, index_t d, std::uint64_t stream) {
  tensor<float, dims<2>> x(n, d);  // (N, D)
  x = normal<float>(x.extents(), random_stream{6, stream}, 0.0, 1.0);
  return x;
}

double flops_forward(const bench_case& b) {
  const auto& c = b.config;
  const double n = static_cast<double>(b.tokens), d = static_cast<double>(c.d_model), f = static_cast<double>(c.expert_d_ff);
  return 2 * n * d * static_cast<double>(c.num_experts) +
         n * static_cast<double>(c.top_k + c.num_shared_experts) * 3 * 2 * d * f;
}

void bm_moe_train(benchmark::State& state) {
  const auto b = make_case(static_cast<int>(state.range(0)));
  const auto p = make_parameters(b.config);
  nn::moe_parameters<float> grads(b.config);
  const auto x = random_rows(b.tokens, b.config.d_model, 0);   // (N, D)
  const auto dy = random_rows(b.tokens, b.config.d_model, 1);  // (N, D)
  nn::moe_layer<float> layer;
  for (auto _ : state) {
    benchmark::DoNotOptimize(layer.forward_train(p, x, b.seq));
    benchmark::DoNotOptimize(layer.backward(p, dy, grads));
  }
  state.counters["tokens_per_second"] =
      benchmark::Counter(static_cast<double>(b.tokens), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["flops"] = benchmark::Counter(3 * flops_forward(b), benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(b.label);
}

void bm_moe_forward(benchmark::State& state) {
  const auto b = make_case(static_cast<int>(state.range(0)));
  const auto p = make_parameters(b.config);
  const auto x = random_rows(b.tokens, b.config.d_model, 0);  // (N, D)
  for (auto _ : state) benchmark::DoNotOptimize(nn::moe_layer<float>::forward(p, x, b.seq));
  state.counters["tokens_per_second"] =
      benchmark::Counter(static_cast<double>(b.tokens), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["flops"] = benchmark::Counter(flops_forward(b), benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(b.label);
}

}  // namespace

BENCHMARK(bm_moe_train)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bm_moe_forward)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
