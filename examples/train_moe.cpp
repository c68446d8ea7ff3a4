// train_moe — a dense transformer and a mixture-of-experts transformer with the same active
// parameters, trained on the same tokens for the same number of steps; prints both validation
// losses, the unigram baseline and the MoE layers' expert loads, and writes both loss curves to one
// PNG.
//
//   train_moe TOKENS.u16 VOCAB_SIZE [STEPS] [OUT.png]
//
// TOKENS.u16 is a token file as `einlm-tokenizer encode --format u16` writes it (scripts/demo
// writes one: build/demo/corpus.u16, vocabulary 2048); the last 5 % are the validation tokens.
// The dense model: d_model 128, 4 layers, 4 heads, SwiGLU d_ff 384. The MoE model: the same, with
// every FFN after the first an MoE of 8 experts of d_ff 192, top-2 (2 · 192 = 384 active, as the
// dense FFN), softmax router, Switch balance loss 0.01, router z-loss 1e-3 — 4 × the FFN
// parameters, the same FLOPs per token apart from the router.
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <string>

#include "einlm/nn/moe_accounting.hpp"
#include "einlm/nn/transformer.hpp"
#include "einlm/train/plot.hpp"
#include "einlm/train/trainer.hpp"

using namespace einlm;

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: train_moe TOKENS.u16 VOCAB_SIZE [STEPS] [OUT.png]\n";
    return 2;
  }
  try {
    const std::int64_t vocab = std::atoll(argv[2]);
    const std::int64_t steps = argc > 3 ? std::atoll(argv[3]) : 300;
    const std::string png = argc > 4 ? argv[4] : "moe_vs_dense.png";
    const auto all = train::token_dataset::open(argv[1], train::token_width::u16);
    const auto [fit_data, val_data] = all.split(0.95);

    // [snippet dense_and_moe]
    const nn::transformer_config dense{.vocab_size = vocab, .context_length = 128, .d_model = 128,
                                       .num_layers = 4, .num_heads = 4, .d_ff = 384};
    const nn::moe_config moe{.base = dense,
                             .num_experts = 8,
                             .top_k = 2,
                             .expert_d_ff = 192,  // top-2 × 192 = the dense d_ff: the same active FFN
                             .first_dense_layers = 1,
                             .router = nn::router_kind::softmax,
                             .aux_loss_coef = 0.01,
                             .z_loss_coef = 1e-3};
    nn::transformer_lm<float> dense_model(dense, /*seed=*/1);
    nn::transformer_lm<float> moe_model(moe, /*seed=*/1);
    // [end snippet]
    std::cout << "dense: " << nn::param_count(dense) << " parameters\n"
              << "MoE:   " << nn::moe_param_count(moe) << " parameters, " << nn::moe_active_param_count(moe)
              << " active per token (dense: " << nn::param_count(dense) << ")\n";

    train::trainer_options o{.steps = steps, .batch_size = 16, .context_length = 128, .max_lr = 3e-3,
                             .warmup_steps = std::min<std::int64_t>(30, steps / 10), .log_every = 50,
                             .eval_every = std::max<std::int64_t>(1, steps / 6), .eval_batches = 8};
    std::cout << "\n=== dense\n";
    const auto d = train::fit(dense_model, fit_data, &val_data, o, std::cout);
    std::cout << "\n=== mixture of experts\n";
    const auto m = train::fit(moe_model, fit_data, &val_data, o, std::cout);

    std::cout << "\nvalidation loss after " << steps << " steps of " << o.batch_size << " × " << o.context_length
              << " tokens:\n  dense " << train::detail::format("%.4f", d.val_loss) << " ("
              << static_cast<long long>(d.tokens_per_second) << " tokens/s)\n  MoE   "
              << train::detail::format("%.4f", m.val_loss) << " (" << static_cast<long long>(m.tokens_per_second)
              << " tokens/s)\n";
    std::cout << "expert loads of the MoE model's last batch (token-slots per expert; " << o.batch_size * o.context_length * moe.top_k
              << " per layer):\n";
    for (std::int64_t i = 0; i < dense.num_layers; ++i) {
      const auto& stats = moe_model.routing_stats(static_cast<std::size_t>(i));
      if (stats.tokens_per_expert.empty()) continue;
      std::cout << "  layer " << i << ":";
      for (const auto n : stats.tokens_per_expert) std::cout << " " << n;
      std::cout << "  (router entropy " << train::detail::format("%.3f", stats.router_entropy) << " of ln 8 = "
                << train::detail::format("%.3f", std::log(8.0)) << ", balance loss "
                << train::detail::format("%.3f", stats.balance_loss) << ")\n";
    }
    train::write_loss_png(png,
                          {{"dense train", d.losses, 0x1f77b4},
                           {"dense validation", d.val_losses, 0x17becf},
                           {"MoE train", m.losses, 0xd62728},
                           {"MoE validation", m.val_losses, 0xff7f0e}},
                          {.title = "dense vs mixture of experts (same active parameters)"});
    std::cout << "loss curves: " << png << "\n";
  } catch (const std::exception& e) {
    std::cerr << "train_moe: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
