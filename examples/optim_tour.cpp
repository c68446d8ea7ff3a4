// examples/optim_tour.cpp — the training pieces that exist so far: a linear model fitted with
// AdamW under a cosine schedule with warm-up and gradient clipping, and next-token batches drawn
// from a token dataset. The model's forward and gradient are einsums. Exits 1 when the fit does
// not converge.
#include <cmath>
#include <cstdio>
#include <vector>

#include "einlm/einlm.hpp"
#include "einlm/optim/adamw.hpp"
#include "einlm/optim/clip.hpp"
#include "einlm/optim/schedule.hpp"
#include "einlm/train/data.hpp"

int main() {
  using namespace einlm;
  constexpr index_t N = 256, In = 16, Out = 4;

  // Data from a hidden linear map plus noise.
  tensor<float, extents<Out, In>> w_true = normal<float>(extents<Out, In>{}, random_stream{11, 0});  // (Out, In)
  tensor<float, extents<N, In>> x = normal<float>(extents<N, In>{}, random_stream{11, 1});            // (N, In)
  tensor<float, extents<N, Out>> noise = normal<float>(extents<N, Out>{}, random_stream{11, 2}, 0.0, 0.01);  // (N, Out)
  tensor<float, extents<N, Out>> y = einsum<"n i, o i -> n o">(x, w_true);                           // (N, Out)
  y = y + noise;

  // [snippet training_step]
  tensor<float, extents<Out, In>> w = normal<float>(extents<Out, In>{}, random_stream{11, 3}, 0.0, 0.1);  // (Out, In)
  optim::adamw opt({.beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.0});
  const optim::cosine_schedule schedule{.max_lr = 0.05, .min_lr = 0.001, .warmup_iters = 20, .cosine_cycle_iters = 400};
  double loss = 0;
  for (std::int64_t it = 0; it < 400; ++it) {
    tensor<float, extents<N, Out>> residual = einsum<"n i, o i -> n o">(x, w);  // (N, Out)
    residual = residual - y;
    loss = eval(reduce<"n o -> ", "mean">(residual * residual))();
    // d loss / d W = 2/(N·Out) · residualᵀ x
    tensor<float, extents<Out, In>> grad = einsum<"n o, n i -> o i">(residual, x);  // (Out, In)
    grad = grad * (2.0f / (N * Out));
    const double grad_norm = optim::clip_grad_norm(1.0, grad);
    opt.begin_step(schedule(it));
    opt.update("w", w, grad);
    if (it % 50 == 0) std::printf("step %3ld  lr %.4f  loss %.6f  |grad| %.4f\n", long(it), schedule(it), loss, grad_norm);
  }
  // [end snippet]
  std::printf("final loss %.6f (the noise alone gives about %.6f)\n", loss, 1e-4);

  // Batches of next-token prediction from a token dataset (here ids in memory; files are mapped).
  std::vector<std::uint32_t> ids(1000);
  for (std::uint32_t i = 0; i < ids.size(); ++i) ids[i] = (i * 31u) % 97u;
  const auto [fit, held_out] = train::token_dataset::from_ids(ids).split(0.9);
  const train::lm_batch b = train::get_batch(fit, 2, 8, random_stream{5, 0}, 0);  // (2, 8) inputs and targets
  std::printf("batch from offset %zu: inputs", b.starts[0]);
  for (index_t t = 0; t < 8; ++t) std::printf(" %ld", long(b.inputs(0, t)));
  std::printf("\n                          targets");
  for (index_t t = 0; t < 8; ++t) std::printf(" %ld", long(b.targets(0, t)));
  std::printf("\n%zu tokens to fit, %zu held out\n", fit.size(), held_out.size());
  return loss < 1e-3 ? 0 : 1;
}
