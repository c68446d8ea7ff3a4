// GPU tests of train::fit_cuda (train/trainer_cuda.cuh): a run on the device follows the same run
// on the host (losses, final weights; fp32 and bf16 mixed precision; AdamW, SGD with momentum and
// AdaGrad, with clipping active), validation runs on the device, its checkpoint is the host
// trainer's (a CPU run resumes it), a run resumed on the device equals an uninterrupted one bit for
// bit, and a NaN stops it with the step named and the model as it was before that step. Exits
// with 77 (skipped) when no device is present.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "einlm/nn/transformer.hpp"
#include "einlm/train/trainer.hpp"
#include "einlm/train/trainer_cuda.cuh"
#include "support/training_data.hpp"

using namespace einlm;

namespace {

nn::transformer_config byte_config() {
  return {.vocab_size = 256, .context_length = 32, .d_model = 64, .num_layers = 2, .num_heads = 4, .num_kv_heads = 2,
          .d_ff = 96, .qk_norm = true};
}

/// max |a − b| over every weight of two models of one configuration.
double largest_difference(const nn::transformer_lm<float>& a, const nn::transformer_lm<float>& b) {
  std::vector<const float*> bs;
  b.for_each_parameter([&](const std::string&, const auto& t) { bs.push_back(t.data()); });
  std::size_t i = 0;
  double worst = 0;
  a.for_each_parameter([&](const std::string&, const auto& t) {
    const float* other = bs[i++];
    for (index_t e = 0; e < t.size(); ++e) worst = std::max(worst, static_cast<double>(std::abs(t.data()[e] - other[e])));
  });
  return worst;
}

}  // namespace

TEST_CASE("fit_cuda: a run on the GPU follows the same run on the host") {
  const auto data = test::synthetic_bytes(20000);
  const auto val = test::synthetic_bytes(4000);
  for (const auto precision : {nn::precision::fp32, nn::precision::bf16_mixed}) {
    INFO((precision == nn::precision::fp32 ? "fp32" : "bf16 mixed"));
    const train::trainer_options o{.steps = 8, .batch_size = 4, .context_length = 32, .max_lr = 1e-3, .warmup_steps = 2,
                                   .seed = 5, .log_every = 1, .eval_every = 4, .eval_batches = 2,
                                   .precision = precision};
    std::ostringstream host_log, gpu_log;
    nn::transformer_lm<float> host(byte_config(), 3), gpu(byte_config(), 3);
    const auto h = train::fit(host, data, &val, o, host_log);
    const auto g = train::fit_cuda(gpu, data, &val, o, gpu_log);
    REQUIRE(g.losses.size() == h.losses.size());
    // fp32: float rounding in other orders; bf16: one bf16 rounding of an activation that differs
    // between the two propagates through the step.
    const double tol = precision == nn::precision::fp32 ? 1e-4 : 2e-2;
    for (std::size_t i = 0; i < h.losses.size(); ++i) {
      INFO("step ", h.losses[i].first);
      CHECK(g.losses[i].second == doctest::Approx(h.losses[i].second).epsilon(tol));
    }
    REQUIRE(g.val_losses.size() == h.val_losses.size());
    for (std::size_t i = 0; i < h.val_losses.size(); ++i)
      CHECK(g.val_losses[i].second == doctest::Approx(h.val_losses[i].second).epsilon(tol));
    // AdamW moves each weight by about lr a step, so a weight whose gradient is within rounding of
    // 0 may move apart by up to 2·lr a step; the rest agree far more closely.
    CHECK(largest_difference(gpu, host) <= 2 * 1e-3 * static_cast<double>(o.steps));
    CHECK(gpu_log.str().find("step 8/8") != std::string::npos);
  }
}

TEST_CASE("fit_cuda: SGD with momentum and AdaGrad run on the device as on the host, clipping included") {
  const auto data = test::synthetic_bytes(20000);
  for (const auto kind : {train::optimizer_kind::sgd, train::optimizer_kind::adagrad}) {
    INFO(train::optimizer_name(kind));
    // A small clipping bound, so that every step scales its gradients.
    const train::trainer_options o{.steps = 6, .batch_size = 4, .context_length = 32, .max_lr = 1e-2, .warmup_steps = 1,
                                   .optimizer = kind, .momentum = 0.9, .weight_decay = 0.01, .grad_clip = 0.05,
                                   .seed = 2, .log_every = 1, .eval_every = 0};
    std::ostringstream log;
    nn::transformer_lm<float> host(byte_config(), 4), gpu(byte_config(), 4);
    const auto h = train::fit(host, data, nullptr, o, log);
    const auto g = train::fit_cuda(gpu, data, nullptr, o, log);
    REQUIRE(g.losses.size() == h.losses.size());
    for (std::size_t i = 0; i < h.losses.size(); ++i) CHECK(g.losses[i].second == doctest::Approx(h.losses[i].second).epsilon(1e-4));
    // SGD moves a weight by lr·(clipped gradient): the two agree to float rounding of those moves;
    // AdaGrad's first step moves every weight by about lr, as AdamW's does.
    CHECK(largest_difference(gpu, host) <= (kind == train::optimizer_kind::sgd ? 1e-5 : 2 * 1e-2 * static_cast<double>(o.steps)));
  }
}

TEST_CASE("fit_cuda: resumed on the device, a run equals the uninterrupted run bit for bit") {
  const auto data = test::synthetic_bytes(20000);
  for (const auto precision : {nn::precision::fp32, nn::precision::bf16_mixed}) {
    INFO((precision == nn::precision::fp32 ? "fp32" : "bf16 mixed"));
    const std::string dir = test::fresh_temp_dir("trainer_cuda_bits");
    train::trainer_options o{.steps = 6, .batch_size = 4, .context_length = 32, .max_lr = 1e-3, .warmup_steps = 2,
                             .seed = 9, .log_every = 100, .eval_every = 0, .precision = precision};
    std::ostringstream log;
    nn::transformer_lm<float> whole(byte_config(), 6), split(byte_config(), 6), resumed(byte_config(), 77);
    const auto w = train::fit_cuda(whole, data, nullptr, o, log);
    auto first = o;
    first.steps = 3;
    first.out_dir = dir;
    train::fit_cuda(split, data, nullptr, first, log);
    auto second = o;
    second.resume_dir = dir;
    const auto r = train::fit_cuda(resumed, data, nullptr, second, log);
    REQUIRE(r.losses.size() == 3);
    for (std::size_t i = 0; i < 3; ++i) CHECK(r.losses[i].second == w.losses[i + 3].second);
    CHECK(largest_difference(resumed, whole) == 0.0);
  }
}

TEST_CASE("fit_cuda: its checkpoint is the host trainer's, and the host resumes it") {
  const auto data = test::synthetic_bytes(10000);
  const std::string dir = test::fresh_temp_dir("trainer_cuda_resume");
  train::trainer_options o{.steps = 3, .batch_size = 4, .context_length = 32, .max_lr = 1e-3, .warmup_steps = 1,
                           .seed = 7, .log_every = 100, .eval_every = 0, .out_dir = dir};
  std::ostringstream log;
  nn::transformer_lm<float> gpu(byte_config(), 1);
  train::fit_cuda(gpu, data, nullptr, o, log);
  for (const char* f : {"config.json", "model.safetensors", "optimizer.safetensors", "state.safetensors", "metrics.jsonl"})
    CHECK(std::filesystem::exists(std::filesystem::path(dir) / f));
  nn::transformer_lm<float> resumed(byte_config(), 99);
  auto more = o;
  more.steps = 5;
  more.resume_dir = dir;
  const auto r = train::fit(resumed, data, nullptr, more, log);
  CHECK(r.steps == 5);
  CHECK(log.str().find("resumed from ") != std::string::npos);
}

TEST_CASE("fit_cuda: a NaN stops training with the step named") {
  const auto data = test::synthetic_bytes(10000);
  train::trainer_options o{.steps = 3, .batch_size = 2, .context_length = 16, .max_lr = 1e-3, .log_every = 100,
                           .eval_every = 0};
  std::ostringstream log;
  nn::transformer_lm<float> model(byte_config(), 1), reference(byte_config(), 1);
  model.parameters().ln_final(0) = NAN;
  CHECK_THROWS_WITH_AS(train::fit_cuda(model, data, nullptr, o, log),
                       doctest::Contains("training stopped at step 1: the loss is "), train::training_error);
  // The model is the state before the failing step: its initial weights.
  const auto& a = model.parameters().token_embeddings;
  const auto& b = reference.parameters().token_embeddings;
  index_t differ = 0;
  for (index_t e = 0; e < a.size(); ++e) differ += a.data()[e] != b.data()[e];
  CHECK(differ == 0);
}

TEST_CASE("fit_cuda: a mixture of experts is refused") {
  const auto data = test::synthetic_bytes(10000);
  const train::trainer_options o{.steps = 1, .batch_size = 2, .context_length = 16, .log_every = 100, .eval_every = 0};
  std::ostringstream log;
  nn::transformer_lm<float> moe(nn::moe_config{.base = byte_config(), .num_experts = 4, .top_k = 2}, 1);
  CHECK_THROWS_AS(train::fit_cuda(moe, data, nullptr, o, log), nn::config_error);
}
