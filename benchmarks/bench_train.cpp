// bench_train — CPU training throughput of nn::transformer_lm: one step (zero_grad, forward +
// backward, AdamW update) and the forward pass alone, in tokens per second, for the demo model
// and issue-sized model (d_model 256, 4 layers, 8 heads, sequence 256, batch 8), and for GPT-2's
// architecture at the demo model's size (nn::blocks::gpt2_lm, case 2). The model FLOPs
// of each step (nn::flops_forward + flops_backward) give an achieved GFLOP/s counter.
// bm_train_step_bf16 is the same step in bf16 mixed precision, as train::fit runs it: the bf16
// working copy refreshed from the float masters, forward + backward in bf16, its gradients
// converted back, AdamW on the masters. bm_decode is generation's decode step on the demo model:
// one new token for each of B sequences of different lengths through the KV cache
// (last_logits), in generated tokens per second, for a batch of 1 and of 8; bm_decode_uniform is
// the same for sequences of one length through logits(tokens, cache). bm_cross_entropy times
// nn::cross_entropy_with_grad (the loss and its gradient, fused row by row) beside
// bm_cross_entropy_unfused, the same result from three einops expressions over the whole logits
// (row maximum, log-sum-exp, gradient), for the demo's, the d256 model's and GPT-2's vocabularies,
// in GB/s of logits read plus gradient written. bm_nn_kernel times the nn layers' element-wise
// kernels that simd::dispatch runs at the CPU's widest packets — GELU, the SwiGLU hidden, their
// gradients, and the exponential sums of causal attention rows (128 keys) — over a GPT-2 demo
// model's hidden (2048 tokens × 512), the second argument the packet width: 16 (the build's,
// the baseline) or 64 (AVX-512 where the CPU has it; else its widest), in elements per second.
// bm_norm times RMSNorm and LayerNorm, forward and backward, through their row kernels beside
// the einops expressions they replace on host tensors (the baseline), in elements per second.
// bm_attention times causal attention forward and backward, in blocks of query rows beside the
// whole square of scores they replaced (the baseline), in GFLOP/s of the causal half.
// bm_adamw times one AdamW update through its one-pass kernel beside the three executor passes
// it replaces (the baseline), in parameters per second; bm_sgd_adagrad the same for SGD with
// momentum (two passes before) and AdaGrad (two passes before).
// benchmarks/train_peers.py runs this program beside the same models in PyTorch eager (same
// threads, same update) and prints the ratios.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include "einlm/nn/accounting.hpp"
#include "einlm/nn/backward.hpp"
#include "einlm/nn/blocks.hpp"
#include "einlm/nn/transformer.hpp"
#include "einlm/optim/sgd.hpp"
#include "bench_lm_support.hpp"

using namespace einlm;

namespace {

struct bench_case {
  nn::transformer_config config;
  index_t batch, seq;
};

bench_case make_case(int which) {
  if (which == 0)  // the demo model
    return {{.vocab_size = 2048, .context_length = 128, .d_model = 128, .num_layers = 4, .num_heads = 4, .d_ff = 384},
            16, 128};
  if (which == 2) {  // GPT-2's architecture at the demo model's size (d_ff 4·D)
    auto c = nn::presets::gpt2(128, 4, 4);
    c.vocab_size = 2048;
    c.context_length = 128;
    return {c, 16, 128};
  }
  return {{.vocab_size = 8192, .context_length = 256, .d_model = 256, .num_layers = 4, .num_heads = 8, .d_ff = 768},
          8, 256};
}

const char* case_label(int which) {
  return which == 0 ? "demo model" : which == 2 ? "GPT-2, demo-sized" : "d256 L4 H8 S256 B8";
}

/// GPT-2's architecture as nn::blocks::gpt2_lm, every dimension at run time (what einlm-lm runs).
template <class T>
using gpt2_model = nn::blocks::model<nn::blocks::gpt2_lm<dyn, dyn, dyn, dyn, dyn>, T>;

/// f(model, work) with the case's float model and a bf16 working copy of its type
/// (nn::transformer_lm for CS336's architecture, gpt2_model for GPT-2's).
template <class F>
void with_models(const bench_case& c, F&& f) {
  if (c.config.positions == nn::position_kind::learned) {
    gpt2_model<float> model(c.config);
    model.initialise(1, nn::blocks::gpt2_initialisation{.layers = c.config.num_layers});
    gpt2_model<bf16> work(c.config);
    f(model, work);
  } else {
    nn::transformer_lm<float> model(c.config, 1);
    nn::transformer_lm<bf16> work(c.config);
    f(model, work);
  }
}

using bench::random_tokens;

void bm_train_step(benchmark::State& state) {
  const auto c = make_case(static_cast<int>(state.range(0)));
  const auto inputs = random_tokens(c.batch, c.seq, c.config.vocab_size, 0);   // (B, S)
  const auto targets = random_tokens(c.batch, c.seq, c.config.vocab_size, 1);  // (B, S)
  with_models(c, [&](auto& model, auto&) { bench::adamw_steps(state, model, inputs, targets); });
  const double tokens_per_step = static_cast<double>(c.batch * c.seq);
  state.counters["tokens_per_second"] = benchmark::Counter(tokens_per_step, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["flops"] = benchmark::Counter(nn::flops_forward(c.config, c.batch, c.seq) +
                                                   nn::flops_backward(c.config, c.batch, c.seq),
                                               benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(case_label(static_cast<int>(state.range(0))));
}

void bm_train_step_bf16(benchmark::State& state) {
  const auto c = make_case(static_cast<int>(state.range(0)));
  const auto inputs = random_tokens(c.batch, c.seq, c.config.vocab_size, 0);   // (B, S)
  const auto targets = random_tokens(c.batch, c.seq, c.config.vocab_size, 1);  // (B, S)
  with_models(c, [&](auto& master, auto& work) { bench::adamw_steps(state, master, work, inputs, targets); });
  const double tokens_per_step = static_cast<double>(c.batch * c.seq);
  state.counters["tokens_per_second"] = benchmark::Counter(tokens_per_step, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["flops"] = benchmark::Counter(nn::flops_forward(c.config, c.batch, c.seq) +
                                                   nn::flops_backward(c.config, c.batch, c.seq),
                                               benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string(case_label(static_cast<int>(state.range(0)))) + ", bf16 mixed");
}

void bm_forward(benchmark::State& state) {
  const auto c = make_case(static_cast<int>(state.range(0)));
  const auto inputs = random_tokens(c.batch, c.seq, c.config.vocab_size, 0);  // (B, S)
  with_models(c, [&](auto& model, auto&) {
    for (auto _ : state) benchmark::DoNotOptimize(model.logits(inputs));
  });
  state.counters["tokens_per_second"] =
      benchmark::Counter(static_cast<double>(c.batch * c.seq), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["flops"] =
      benchmark::Counter(nn::flops_forward(c.config, c.batch, c.seq), benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(case_label(static_cast<int>(state.range(0))));
}

void bm_decode(benchmark::State& state) {
  const auto c = make_case(0);
  nn::transformer_lm<float> model(c.config, 1);
  bench::ragged_decode(state, model, state.range(0), c.config.vocab_size);
  state.SetLabel("demo model, batch " + std::to_string(state.range(0)));
}

/// The same step for B sequences of one length (20 + up to 64 tokens) through logits(tokens (B, 1),
/// cache): the batched path that sequences of equal lengths take, for comparison.
void bm_decode_uniform(benchmark::State& state) {
  const auto c = make_case(0);
  const index_t B = state.range(0);
  nn::transformer_lm<float> model(c.config, 1);
  auto cache = model.make_cache(B);
  const auto prompt = random_tokens(B, 20, c.config.vocab_size, 0);  // (B, 20)
  const auto step = random_tokens(B, 1, c.config.vocab_size, 1);     // (B, 1)
  model.logits(prompt, cache);
  int decoded = 0;
  for (auto _ : state) {
    if (decoded++ == 64) {
      cache.length = 20;
      decoded = 1;
    }
    benchmark::DoNotOptimize(model.logits(step, cache));  // (B, 1, V)
  }
  state.counters["tokens_per_second"] = benchmark::Counter(static_cast<double>(B), benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel("demo model, batch " + std::to_string(B) + ", one length");
}

/// Logits (rows, V) of case state.range(0) — 0: the demo's 2048 × 2048, 1: the d256 model's
/// 2048 × 8192, 2: 256 × GPT-2's 50257 — normal with standard deviation 2, and targets.
template <class T>
auto cross_entropy_inputs(benchmark::State& state) {
  const int which = static_cast<int>(state.range(0));
  const index_t rows = which == 2 ? 256 : 2048, V = which == 0 ? 2048 : which == 1 ? 8192 : 50257;
  tensor<T, dims<2>> logits(dims<2>(rows, V));  // (R, V)
  for (index_t i = 0; i < logits.size(); ++i)
    logits.data()[i] = convert<T>(static_cast<float>(2.0 * normal_at<double>(random_stream{3, 0}, static_cast<std::uint64_t>(i))));
  const auto targets = random_tokens(1, rows, V, 2);  // (1, R)
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(2 * logits.bytes()), benchmark::Counter::kIsIterationInvariantRate,
                                             benchmark::Counter::kIs1000);
  state.SetLabel(std::to_string(rows) + " x " + std::to_string(V) + (std::is_same_v<T, bf16> ? ", bf16" : ", float"));
  return std::pair{std::move(logits), tensor<std::int64_t, dims<1>>(rearrange<"o r -> (o r)">(targets))};
}

template <class T>
void bm_cross_entropy(benchmark::State& state) {
  const auto [logits, targets] = cross_entropy_inputs<T>(state);  // (R, V), (R,)
  for (auto _ : state) benchmark::DoNotOptimize(nn::cross_entropy_with_grad(logits, targets, 1e-4));
}

/// The same loss and gradient as three expressions over the whole logits (max, log-sum-exp,
/// gradient), and the one-hot part row by row.
template <class T>
void bm_cross_entropy_unfused(benchmark::State& state) {
  const auto [logits, targets] = cross_entropy_inputs<T>(state);  // (R, V), (R,)
  const index_t rows = logits.extent(0);
  for (auto _ : state) {
    const auto lc = cast<float>(logits);                                                        // (R, V)
    const auto row_max = eval(reduce<"r v -> r 1", "max">(lc));                                 // (R, 1)
    const auto lse = eval(row_max + log(reduce<"r v -> r 1", "sum">(exp(lc - row_max))));       // (R, 1)
    tensor<T, dims<2>> grad(eval(cast<T>(exp(lc - lse) * ((1.0f + 2e-4f * lse) / static_cast<float>(rows)))));  // (R, V)
    double loss = 0;
    for (index_t r = 0; r < rows; ++r) {
      const index_t t = targets(r);
      loss += static_cast<double>(lse(r, 0)) - static_cast<double>(convert<float>(logits(r, t)));
      grad(r, t) = convert<T>(convert<float>(grad(r, t)) - 1.0f / static_cast<float>(rows));
    }
    benchmark::DoNotOptimize(loss);
    benchmark::DoNotOptimize(grad.data());
  }
}

/// A float tensor of normal values (standard deviation `scale`) from Philox stream `stream`.
template <class E>
tensor<float, E> random_floats(E shape, double scale, std::uint64_t stream) {
  tensor<float, E> t(shape);  // like shape
  for (index_t i = 0; i < t.size(); ++i)
    t.data()[i] = static_cast<float>(scale * normal_at<double>(random_stream{5, stream}, static_cast<std::uint64_t>(i)));
  return t;
}

/// One element-wise nn kernel over (2048, 512) floats at packets of state.range(1) bytes:
/// 0 gelu, 1 silu(a)·b, 2 gelu_backward, 3 swiglu_backward, 4 softmax rows of causal attention
/// (exp_sum_row over the visible keys of 128-key rows, stored).
void bm_nn_kernel(benchmark::State& state) {
  const int which = static_cast<int>(state.range(0));
  const int bytes = simd::limit_dispatch_bytes(static_cast<int>(state.range(1)));
  const auto a = random_floats(dims<2>(2048, 512), 1.5, 1);  // (N, F)
  const auto b = random_floats(dims<2>(2048, 512), 1.0, 2);  // (N, F)
  tensor<float, dims<2>> rows(a.clone());                    // (N, F) as 8192 rows of 128 keys
  for (auto _ : state) {
    switch (which) {
      case 0: benchmark::DoNotOptimize(nn::detail::gelu_tensor(a).data()); break;
      case 1: benchmark::DoNotOptimize(nn::detail::swiglu_hidden(a, b).data()); break;
      case 2: benchmark::DoNotOptimize(nn::gelu_backward(a, b).data()); break;
      case 3: benchmark::DoNotOptimize(nn::swiglu_backward(a, b, b).da.data()); break;
      default:
        for (index_t r = 0; r < rows.size() / 128; ++r) {
          const index_t visible = r % 128 + 1;
          benchmark::DoNotOptimize(nn::detail::exp_sum_row<true>(a.data() + r * 128, rows.data() + r * 128, visible, 0.125f, 1.0f));
        }
    }
  }
  simd::limit_dispatch_bytes(64);
  const char* names[] = {"gelu", "silu(a) * b", "gelu_backward", "swiglu_backward", "causal softmax exp sums"};
  const double elements = which == 4 ? 2048.0 * 512 / 2 : 2048.0 * 512;
  state.counters["elements/s"] = benchmark::Counter(elements, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  state.SetLabel(std::string(names[which]) + ", " + std::to_string(bytes) + "-byte packets");
}

/// One norm over (rows, d) floats: state.range(0) the kernel (0 rms_norm, 1 rms_norm_backward,
/// 2 layer_norm, 3 layer_norm_backward), range(1) the path (0 the expressions, the baseline; 1
/// the row kernels that host tensors take), range(2) the shape (0: 2048 × 128, the demo models'
/// residual stream; 1: 1024 × 768, GPT-2 small's width), in elements per second.
void bm_norm(benchmark::State& state) {
  const int which = static_cast<int>(state.range(0));
  const bool rows_path = state.range(1) == 1;
  const index_t n = state.range(2) == 0 ? 2048 : 1024, d = state.range(2) == 0 ? 128 : 768;
  const auto x = random_floats(dims<2>(n, d), 1.0, 3);     // (N, D)
  const auto dy = random_floats(dims<2>(n, d), 1.0, 4);    // (N, D)
  auto gain = random_floats(dims<1>(d), 0.2, 5);           // (D,)
  for (index_t j = 0; j < d; ++j) gain.data()[j] += 1.0f;
  const auto bias = random_floats(dims<1>(d), 0.2, 6);     // (D,)
  const double eps = 1e-5;
  for (auto _ : state) {
    switch (which * 2 + (rows_path ? 1 : 0)) {
      case 0: benchmark::DoNotOptimize(nn::detail::rms_norm_expression(x, gain, eps).data()); break;
      case 1: benchmark::DoNotOptimize(nn::rms_norm(x, gain, eps).data()); break;
      case 2: benchmark::DoNotOptimize(nn::detail::rms_norm_backward_expression(x, gain, dy, eps).dx.data()); break;
      case 3: benchmark::DoNotOptimize(nn::rms_norm_backward(x, gain, dy, eps).dx.data()); break;
      case 4: benchmark::DoNotOptimize(nn::detail::layer_norm_expression(x, gain, bias, eps).data()); break;
      case 5: benchmark::DoNotOptimize(nn::layer_norm(x, gain, bias, eps).data()); break;
      case 6: benchmark::DoNotOptimize(nn::detail::layer_norm_backward_expression(x, gain, dy, eps).dx.data()); break;
      default: benchmark::DoNotOptimize(nn::layer_norm_backward(x, gain, dy, eps).dx.data());
    }
  }
  const char* names[] = {"rms_norm", "rms_norm_backward", "layer_norm", "layer_norm_backward"};
  state.counters["elements/s"] =
      benchmark::Counter(double(n * d), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  state.SetLabel(std::string(names[which]) + " " + std::to_string(n) + "x" + std::to_string(d) +
                 (rows_path ? ", row kernel" : ", expressions"));
}

/// Causal attention on float (B, H, S, Dh) heads: state.range(0) the pass (0 attention_forward, 1
/// attention_backward from the forward's out and lse), range(1) the path (0 the whole (S, S)
/// square of scores per head, the baseline; 1 blocks of 48 query rows over the keys each sees,
/// what attention_forward runs), range(2) the shape (0: 16 × 4 heads × 128 × 32, the demo model's
/// layer; 1: 8 × 8 × 256 × 32, the d256 model's; 2: 4 × 12 × 512 × 64 and 3: 2 × 12 × 1024 × 64,
/// GPT-2 small's heads). In GFLOP/s of the causal half (2·B·H·S²·Dh per product pair: the
/// forward's two products, the backward's four plus the recomputed scores counted as five).
void bm_attention(benchmark::State& state) {
  const bool backward = state.range(0) == 1, blocks = state.range(1) == 1;
  struct shape {
    index_t B, H, S, D;
  };
  const shape shapes[] = {{16, 4, 128, 32}, {8, 8, 256, 32}, {4, 12, 512, 64}, {2, 12, 1024, 64}};
  const shape c = shapes[state.range(2)];
  const auto q = random_floats(dims<4>(c.B, c.H, c.S, c.D), 1.0, 11);     // (B, H, S, Dh)
  const auto k = random_floats(dims<4>(c.B, c.H, c.S, c.D), 1.0, 12);     // (B, H, S, Dh)
  const auto v = random_floats(dims<4>(c.B, c.H, c.S, c.D), 1.0, 13);     // (B, H, S, Dh)
  const auto dout = random_floats(dims<4>(c.B, c.H, c.S, c.D), 1.0, 14);  // (B, H, S, Dh)
  const auto f = nn::detail::attention_forward_impl(q, k, v, true, blocks);
  for (auto _ : state) {
    if (backward)
      benchmark::DoNotOptimize(nn::detail::attention_backward_impl(q, k, v, f.out, f.lse, dout, true, blocks).dq.data());
    else
      benchmark::DoNotOptimize(nn::detail::attention_forward_impl(q, k, v, true, blocks).out.data());
  }
  const double half = 2.0 * double(c.B * c.H) * double(c.S) * double(c.S + 1) / 2 * double(c.D);  // one product
  state.counters["flops"] =
      benchmark::Counter(half * (backward ? 5 : 2), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  state.SetLabel(std::string(backward ? "attention_backward " : "attention_forward ") + std::to_string(c.B) + "x" +
                 std::to_string(c.H) + "x" + std::to_string(c.S) + "x" + std::to_string(c.D) +
                 (blocks ? ", query blocks" : ", whole square"));
}

/// One AdamW update of n float parameters: state.range(0) the path (0 the three expressions on the
/// CPU executor, the baseline; 1 the one-pass kernel adamw::update runs), range(1) the size (0:
/// 49,152, one FFN matrix of the demo model; 1: 2,359,296, one of GPT-2 small's), in parameters
/// per second.
void bm_adamw(benchmark::State& state) {
  const bool kernel = state.range(0) == 1;
  const index_t n = state.range(1) == 0 ? 49'152 : 2'359'296;
  auto p = random_floats(dims<1>(n), 0.02, 7);        // (N,)
  const auto g = random_floats(dims<1>(n), 1e-3, 8);  // (N,)
  tensor<float, dims<1>> m{dims<1>(n)}, v{dims<1>(n)};  // (N,) twice
  m = 0.0f;
  v = 0.0f;
  const optim::adamw_options options{.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
  const auto k = optim::detail::adamw_coefficients<float>::of(options, 1e-3, 0.1, 10);
  for (auto _ : state) {
    if (kernel) {
      float *pp = p.data(), *pm = m.data(), *pv = v.data();
      const float* pg = g.data();
      einlm::detail::for_each_unit(n, [&](index_t first, index_t count) {
        simd::dispatch<optim::detail::adamw_kernel<float>>(count, pp + first, pm + first, pv + first, pg + first, k);
      });
    } else {
      optim::detail::adamw_expressions(as_view(p), as_view(m), as_view(v), as_view(g), k);
    }
    benchmark::DoNotOptimize(p.data());
  }
  state.counters["params/s"] =
      benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  state.SetLabel(std::string(kernel ? "one-pass kernel" : "three expressions") + ", " + std::to_string(n) +
                 " parameters");
}

/// One SGD-with-momentum (range(0) = 0) or AdaGrad (1) update of n float parameters: range(1) the
/// path (0 the expressions on the CPU executor, the baseline; 1 the one-pass kernel), range(2) the
/// size as bm_adamw's, in parameters per second.
void bm_sgd_adagrad(benchmark::State& state) {
  const bool adagrad = state.range(0) == 1, kernel = state.range(1) == 1;
  const index_t n = state.range(2) == 0 ? 49'152 : 2'359'296;
  auto p = random_floats(dims<1>(n), 0.02, 7);        // (N,)
  const auto g = random_floats(dims<1>(n), 1e-3, 8);  // (N,)
  tensor<float, dims<1>> buffer{dims<1>(n)};           // (N,): the momentum or the sum of squares
  buffer = 0.1f;
  const auto sgd_k = optim::detail::sgd_coefficients<float>::of({.momentum = 0.9, .weight_decay = 1e-4}, 1e-3, 1e-4,
                                                                false);
  const optim::detail::adagrad_coefficients<float> adagrad_k{1e-3f, 1e-4f, 1e-10f};
  for (auto _ : state) {
    if (kernel && adagrad)
      optim::detail::run_threaded<optim::detail::adagrad_kernel<float>>(n, p.data(), buffer.data(), g.data(), adagrad_k);
    else if (kernel)
      optim::detail::run_threaded<optim::detail::sgd_kernel<float>>(n, p.data(), buffer.data(), g.data(), sgd_k);
    else if (adagrad)
      optim::detail::adagrad_expressions(as_view(p), as_view(buffer), as_view(g), adagrad_k);
    else
      optim::detail::sgd_expressions(as_view(p), as_view(buffer), as_view(g), sgd_k);
    benchmark::DoNotOptimize(p.data());
  }
  state.counters["params/s"] =
      benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  state.SetLabel(std::string(adagrad ? "AdaGrad, " : "SGD momentum, ") + (kernel ? "one-pass kernel" : "expressions") +
                 ", " + std::to_string(n) + " parameters");
}

}  // namespace

BENCHMARK(bm_cross_entropy<float>)->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bm_cross_entropy_unfused<float>)->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bm_cross_entropy<bf16>)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bm_cross_entropy_unfused<bf16>)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bm_train_step)->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bm_train_step_bf16)->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bm_forward)->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bm_nn_kernel)->ArgsProduct({{0, 1, 2, 3, 4}, {16, 64}})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(bm_norm)->ArgsProduct({{0, 1, 2, 3}, {0, 1}, {0, 1}})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(bm_attention)->ArgsProduct({{0, 1}, {0, 1}, {0, 1, 2, 3}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bm_adamw)->ArgsProduct({{0, 1}, {0, 1}})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(bm_sgd_adagrad)->ArgsProduct({{0, 1}, {0, 1}, {0, 1}})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(bm_decode)->Arg(1)->Arg(8)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(bm_decode_uniform)->Arg(1)->Arg(8)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_MAIN();
