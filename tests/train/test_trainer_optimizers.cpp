// Tests of train::fit's choice of optimizer (trainer_options::optimizer): AdamW, SGD with momentum
// and AdaGrad each lower the loss on a synthetic corpus; a fit step with SGD or AdaGrad equals the
// optimizer's own step on the same clipped gradients with the same no-decay groups (the trainer
// adds nothing); a resumed run equals an uninterrupted one bit for bit for each optimizer (SGD
// with Nesterov momentum, plain SGD, AdaGrad); resuming with another optimizer is an error naming
// both; bf16 mixed precision trains with SGD on the float masters and resumes bit for bit; the
// optimizer names parse and invalid options are rejected.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "einlm/core/safetensors.hpp"
#include "einlm/nn/transformer.hpp"
#include "einlm/optim/clip.hpp"
#include "einlm/train/trainer.hpp"
#include "support/training_data.hpp"

using namespace einlm;
using test::synthetic_bytes;
using test::same_parameters;

namespace {

std::string temp_dir(const std::string& name) { return test::fresh_temp_dir("trainer_optim_" + name); }

nn::transformer_config byte_config() {
  return {.vocab_size = 256, .context_length = 32, .d_model = 32, .num_layers = 2, .num_heads = 4,
          .num_kv_heads = 2, .d_ff = 64};
}

double mean(const std::vector<std::pair<std::int64_t, double>>& losses, std::size_t begin, std::size_t end) {
  double s = 0;
  for (std::size_t i = begin; i < end; ++i) s += losses[i].second;
  return s / static_cast<double>(end - begin);
}

/// The options of the resume and hand-run tests, for one optimizer.
train::trainer_options options_for(train::optimizer_kind kind) {
  train::trainer_options o{.steps = 6, .batch_size = 4, .context_length = 16, .max_lr = 3e-3, .warmup_steps = 2,
                           .seed = 5, .log_every = 100, .eval_every = 0};
  o.weight_decay = 0.05;
  o.optimizer = kind;
  if (kind == train::optimizer_kind::sgd) {
    // [snippet sgd_options]
    o.optimizer = train::optimizer_kind::sgd;  // adamw (the default), sgd or adagrad
    o.momentum = 0.9;
    o.nesterov = true;
    o.max_lr = 0.05;
    // [end snippet]
  } else if (kind == train::optimizer_kind::adagrad) {
    o.max_lr = 0.02;
    o.lr_decay = 0.01;
    o.initial_accumulator_value = 0.1;
  }
  return o;
}

}  // namespace

TEST_CASE("trainer optimizers: AdamW, SGD with momentum and AdaGrad each lower the loss") {
  const auto data = synthetic_bytes(20000);
  struct run {
    train::optimizer_kind kind;
    double lr;
  };
  for (const run r : {run{train::optimizer_kind::adamw, 1e-2}, run{train::optimizer_kind::sgd, 0.3},
                      run{train::optimizer_kind::adagrad, 0.03}}) {
    train::trainer_options o{.steps = 40, .batch_size = 8, .context_length = 16, .max_lr = r.lr, .min_lr = r.lr / 10,
                             .warmup_steps = 4, .log_every = 100, .eval_every = 0, .eval_batches = 4};
    o.optimizer = r.kind;
    o.momentum = r.kind == train::optimizer_kind::sgd ? 0.9 : 0.0;
    nn::transformer_lm<float> model(byte_config(), 1);
    std::ostringstream log;
    const auto result = train::fit(model, data, &data, o, log);
    const double first = mean(result.losses, 0, 5), last = mean(result.losses, 35, 40);
    MESSAGE(std::string(train::optimizer_name(r.kind)) << ": mean loss of steps 1-5 " << first << ", of steps 36-40 " << last
                                          << ", validation " << result.val_loss);
    CHECK(result.steps == 40);
    CHECK(last < first - 1.0);
    CHECK(result.val_loss < first - 1.0);
  }
}

TEST_CASE("trainer optimizers: a fit step is the optimizer's own step on the clipped gradients") {
  const auto data = synthetic_bytes(5000);
  for (const auto kind : {train::optimizer_kind::sgd, train::optimizer_kind::adagrad, train::optimizer_kind::adamw}) {
    const std::string name = train::optimizer_name(kind);
    CAPTURE(name);
    auto o = options_for(kind);
    o.steps = 2;
    o.warmup_steps = 0;
    o.grad_clip = 0.5;  // the gradients' norm is larger: clipping acts
    nn::transformer_lm<float> fitted(byte_config(), 3);
    std::ostringstream log;
    train::fit(fitted, data, nullptr, o, log);

    // The same two steps by hand, with the optimizer of the same options.
    nn::transformer_lm<float> by_hand(byte_config(), 3);
    auto opt = train::make_optimizer(o);
    const optim::cosine_schedule schedule{o.max_lr, o.min_lr, o.warmup_steps, o.steps};
    double first_norm = 0;
    for (std::int64_t step = 0; step < o.steps; ++step) {
      const auto batch = train::get_batch(data, o.batch_size, o.context_length, random_stream{o.seed, 0},
                                          static_cast<std::uint64_t>(step));
      by_hand.zero_grad();
      by_hand.forward_backward(batch.inputs, batch.targets, o.z_loss);
      const double norm = optim::clip_grad_norm_each(o.grad_clip, [&](auto&& f) {
        by_hand.for_each_parameter_and_gradient([&](const std::string&, auto&, auto& g) { f(g); });
      });
      if (step == 0) first_norm = norm;
      std::visit(
          [&](auto& opt) {
            opt.begin_step(schedule(step));
            by_hand.for_each_parameter_and_gradient([&](const std::string& name, auto& w, auto& g) {
              const bool no_decay = w.extents().rank() == 1 || name == "token_embeddings.weight";
              opt.update(name, w, g, no_decay ? 0.0 : o.weight_decay);
            });
          },
          opt);
    }
    CHECK(first_norm > o.grad_clip);
    CHECK(same_parameters(fitted, by_hand));
  }
}

TEST_CASE("trainer optimizers: resuming equals an uninterrupted run, bit for bit, for each optimizer") {
  const auto data = synthetic_bytes(5000);
  for (const auto kind : {train::optimizer_kind::sgd, train::optimizer_kind::adagrad}) {
    for (const bool plain : {false, true}) {
      if (plain && kind != train::optimizer_kind::sgd) continue;
      auto o = options_for(kind);
      if (plain) o.momentum = 0, o.nesterov = false;  // plain SGD: no buffers to save
      const std::string name = train::optimizer_name(kind);
      CAPTURE(name);
      CAPTURE(plain);
      std::ostringstream log;
      nn::transformer_lm<float> whole(byte_config(), 3);
      train::fit(whole, data, nullptr, o, log);

      const std::string dir = temp_dir(std::string(train::optimizer_name(kind)) + (plain ? "_plain" : ""));
      auto first = o;
      first.steps = 3;  // the schedules of 3 and 6 steps agree up to step 3 (warm-up 2, then max_lr)
      first.out_dir = dir;
      nn::transformer_lm<float> part(byte_config(), 3);
      train::fit(part, data, nullptr, first, log);
      const safetensors_file saved(dir + "/optimizer.safetensors");
      CHECK(saved.metadata().at("optimizer") == train::optimizer_name(kind));
      CHECK(saved.metadata().at("optimizer_step") == "3");
      const char* suffix = kind == train::optimizer_kind::sgd ? ".momentum_buffer" : ".sum";
      CHECK(saved.contains(std::string("layers.0.ffn.w1.weight") + suffix) == !plain);
      CHECK(saved.contains("ln_final.weight" + std::string(suffix)) == !plain);
      if (!plain) {
        CHECK(saved.info(std::string("layers.0.ffn.w1.weight") + suffix).dtype == "F32");
        CHECK(saved.info(std::string("layers.0.ffn.w1.weight") + suffix).shape == std::vector<index_t>{64 * 32});
      }

      nn::transformer_lm<float> resumed(byte_config(), 99);  // other weights: the checkpoint replaces them
      auto second = o;
      second.resume_dir = dir;
      second.out_dir = dir;
      const auto r = train::fit(resumed, data, nullptr, second, log);
      CHECK(r.steps == 6);
      CHECK(same_parameters(resumed, whole));
      CHECK(!same_parameters(resumed, part));
      std::filesystem::remove_all(dir);
    }
  }
}

TEST_CASE("trainer optimizers: resuming with another optimizer is an error naming both") {
  const auto data = synthetic_bytes(4000);
  const std::string dir = temp_dir("mismatch");
  auto o = options_for(train::optimizer_kind::adagrad);
  o.steps = 2;
  o.out_dir = dir;
  nn::transformer_lm<float> model(byte_config(), 1);
  std::ostringstream log;
  train::fit(model, data, nullptr, o, log);
  const std::vector<float> before(model.parameters().layers[0].w1.data(), model.parameters().layers[0].w1.data() + 8);

  auto resume = options_for(train::optimizer_kind::sgd);
  resume.steps = 4;
  resume.resume_dir = dir;
  resume.out_dir = dir;
  nn::transformer_lm<float> other(byte_config(), 2);
  const std::vector<float> other_before(other.parameters().layers[0].w1.data(), other.parameters().layers[0].w1.data() + 8);
  CHECK_THROWS_WITH_AS(train::fit(other, data, nullptr, resume, log),
                       doctest::Contains("the checkpoint holds the state of the optimizer 'adagrad', not of 'sgd'"),
                       io_error);
  CHECK(std::equal(other_before.begin(), other_before.end(), other.parameters().layers[0].w1.data()));
  resume.optimizer = train::optimizer_kind::adamw;
  CHECK_THROWS_WITH_AS(train::fit(other, data, nullptr, resume, log),
                       doctest::Contains("the checkpoint holds the state of the optimizer 'adagrad', not of 'adamw'"),
                       io_error);
  resume.optimizer = train::optimizer_kind::adagrad;
  CHECK(train::fit(other, data, nullptr, resume, log).steps == 4);  // the right one resumes
  std::filesystem::remove_all(dir);
}

TEST_CASE("trainer optimizers: bf16 mixed precision with SGD updates the float masters and resumes bit for bit") {
  const auto data = synthetic_bytes(20000);
  auto o = options_for(train::optimizer_kind::sgd);
  o.steps = 30;
  o.batch_size = 8;
  o.context_length = 32;
  o.max_lr = 0.3;
  o.min_lr = 0.3;  // constant after the warm-up: a run cut at step 12 follows the same schedule
  o.nesterov = false;
  o.warmup_steps = 3;
  o.precision = nn::precision::bf16_mixed;
  std::ostringstream log;
  nn::transformer_lm<float> whole(byte_config(), 4);
  const auto r = train::fit(whole, data, nullptr, o, log);
  CHECK(mean(r.losses, 25, 30) < mean(r.losses, 0, 5) - 0.5);

  const std::string dir = temp_dir("bf16_sgd");
  auto first = o;
  first.steps = 12;
  first.out_dir = dir;
  nn::transformer_lm<float> part(byte_config(), 4);
  train::fit(part, data, nullptr, first, log);
  const safetensors_file saved(dir + "/optimizer.safetensors");
  CHECK(saved.metadata().at("optimizer") == "sgd");
  CHECK(saved.info("layers.1.attn.q_proj.weight.momentum_buffer").dtype == "F32");  // the masters' type
  auto second = o;
  second.resume_dir = dir;
  nn::transformer_lm<float> resumed(byte_config(), 8);
  train::fit(resumed, data, nullptr, second, log);
  CHECK(same_parameters(resumed, whole));
  std::filesystem::remove_all(dir);
}

TEST_CASE("trainer optimizers: names parse, and invalid options are rejected") {
  CHECK(train::optimizer_from_string("adamw") == train::optimizer_kind::adamw);
  CHECK(train::optimizer_from_string("sgd") == train::optimizer_kind::sgd);
  CHECK(train::optimizer_from_string("adagrad") == train::optimizer_kind::adagrad);
  CHECK_THROWS_WITH_AS(train::optimizer_from_string("adam"),
                       "optimizer must be \"adamw\", \"sgd\" or \"adagrad\", got \"adam\"", value_error);
  CHECK(train::trainer_options{}.optimizer == train::optimizer_kind::adamw);

  const auto data = synthetic_bytes(1000);
  nn::transformer_lm<float> model(byte_config(), 1);
  std::ostringstream log;
  auto o = options_for(train::optimizer_kind::sgd);
  o.momentum = 0;  // Nesterov without momentum
  CHECK_THROWS_WITH_AS(train::fit(model, data, nullptr, o, log), "sgd: nesterov needs a momentum > 0 and zero dampening",
                       value_error);
  o = options_for(train::optimizer_kind::adagrad);
  o.lr_decay = -1;
  CHECK_THROWS_WITH_AS(train::fit(model, data, nullptr, o, log), "adagrad: lr_decay must be ≥ 0, got -1", value_error);
}
