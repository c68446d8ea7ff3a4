// Tests of einlm/train/checkpoint.hpp: resuming is bit-exact (N steps in one run equal k steps,
// save, load into fresh objects, N − k steps: parameters and optimizer state identical to the bit)
// for AdamW, SGD (plain, and with Nesterov momentum) and AdaGrad; a save interrupted after any of
// its files leaves the previous checkpoint loadable; a checkpoint that lacks a parameter or an
// optimizer buffer, holds another shape, or another optimizer's state is rejected without
// modifying anything.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "einlm/einlm.hpp"
#include "einlm/optim/adamw.hpp"
#include "einlm/optim/sgd.hpp"
#include "einlm/train/checkpoint.hpp"
#include "support/training_data.hpp"

using namespace einlm;

namespace {

std::string temp_dir(const std::string& name) { return test::fresh_temp_dir("ckpt_" + name); }

/// A linear model y = W x + b with CS336-style parameter names.
struct linear_model {
  tensor<float, extents<4, 16>> weight;  // (Out, In)
  tensor<float, extents<4>> bias;        // (Out,)
  explicit linear_model(std::uint64_t seed) {
    weight = normal<float>(extents<4, 16>{}, random_stream{seed, 0}, 0.0, 0.1);
    bias = 0.0f;
  }
  // [snippet for_each_parameter]
  template <class F>
  void for_each_parameter(F&& f) {
    f("layers.0.proj.weight", weight);
    f("layers.0.proj.bias", bias);
  }
  // [end snippet]
};

/// The linear model with one more input column.
struct wider_model {
  tensor<float, extents<4, 17>> weight;  // (Out, In + 1)
  tensor<float, extents<4>> bias;        // (Out,)
  template <class F>
  void for_each_parameter(F&& f) {
    f("layers.0.proj.weight", weight);
    f("layers.0.proj.bias", bias);
  }
};

/// A model with a parameter the checkpoint does not have.
struct extra_model {
  tensor<float, extents<4>> bias, gain;  // (Out,), (Out,)
  template <class F>
  void for_each_parameter(F&& f) {
    f("layers.0.proj.bias", bias);
    f("ln_final.weight", gain);
  }
};

/// One optimizer step on a batch drawn from (seed, draw): squared error against a fixed target map.
template <class Optimizer>
void train_step(linear_model& m, Optimizer& opt, std::uint64_t draw) {
  tensor<float, extents<8, 16>> x = normal<float>(extents<8, 16>{}, random_stream{99, draw});  // (N, In)
  tensor<float, extents<4, 16>> target_w = normal<float>(extents<4, 16>{}, random_stream{98, 0});  // (Out, In)
  tensor<float, extents<8, 4>> y = einsum<"n i, o i -> n o">(x, target_w);       // (N, Out)
  tensor<float, extents<8, 4>> r = einsum<"n i, o i -> n o">(x, m.weight);       // (N, Out)
  r = r + m.bias - y;
  tensor<float, extents<4, 16>> gw = einsum<"n o, n i -> o i">(r, x);            // (Out, In)
  gw = gw * (2.0f / 32);
  tensor<float, extents<4>> gb = reduce<"n o -> o", "sum">(r * (2.0f / 32));     // (Out,)
  opt.begin_step(1e-2);
  opt.update("layers.0.proj.weight", m.weight, gw);
  opt.update("layers.0.proj.bias", m.bias, gb, 0.0);
}

template <class A, class B>
bool same_bits(const A& a, const B& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.bytes())) == 0;
}

/// Whether two optimizers' per-parameter buffers (SGD's or AdaGrad's state()) are equal to the bit.
template <class Map>
bool same_buffers(const Map& a, const Map& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [name, x] : a) {
    const auto it = b.find(name);
    if (it == b.end() || x.index() != it->second.index()) return false;
    const bool same = std::visit(
        [&](const auto& u) { return same_bits(u, std::get<std::remove_cvref_t<decltype(u)>>(it->second)); }, x);
    if (!same) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("resuming is bit-exact") {
  const std::string dir = temp_dir("resume");
  linear_model straight(1);
  optim::adamw straight_opt({.weight_decay = 0.05});
  for (std::uint64_t s = 0; s < 30; ++s) train_step(straight, straight_opt, s);

  linear_model first(1);
  optim::adamw first_opt({.weight_decay = 0.05});
  for (std::uint64_t s = 0; s < 12; ++s) train_step(first, first_opt, s);
  // [snippet save_load]
  train::save_checkpoint(dir, first, first_opt, {.step = 12, .seed = 1, .data_draw = 12, .extra = {{"note", "run 1"}}});

  linear_model resumed(777);  // other initial values: all are overwritten
  optim::adamw resumed_opt;
  const train::trainer_state state = train::load_checkpoint(dir, resumed, &resumed_opt);
  // [end snippet]
  CHECK(state.step == 12);
  CHECK(state.data_draw == 12);
  CHECK(state.extra.at("note") == "run 1");
  CHECK(resumed_opt.step() == 12);
  CHECK(resumed_opt.options().weight_decay == 0.05);
  for (std::uint64_t s = state.data_draw; s < 30; ++s) train_step(resumed, resumed_opt, s);

  CHECK(same_bits(resumed.weight, straight.weight));
  CHECK(same_bits(resumed.bias, straight.bias));
  const auto& a = std::get<optim::adamw_moments<float>>(resumed_opt.state().at("layers.0.proj.weight"));
  const auto& b = std::get<optim::adamw_moments<float>>(straight_opt.state().at("layers.0.proj.weight"));
  CHECK(same_bits(a.m, b.m));
  CHECK(same_bits(a.v, b.v));
  // The model file is a plain safetensors file with the parameters' names.
  const safetensors_file model((std::filesystem::path(dir) / "model.safetensors").string());
  CHECK(model.names() == std::vector<std::string>{"layers.0.proj.bias", "layers.0.proj.weight"});
  std::filesystem::remove_all(dir);
}

TEST_CASE("a save interrupted after any file leaves the previous checkpoint loadable") {
  const std::string dir = temp_dir("crash");
  linear_model m(2);
  optim::adamw opt;
  for (std::uint64_t s = 0; s < 5; ++s) train_step(m, opt, s);
  train::save_checkpoint(dir, m, opt, {.step = 5, .seed = 2, .data_draw = 5});
  train_step(m, opt, 5);
  train::save_checkpoint(dir, m, opt, {.step = 6, .seed = 2, .data_draw = 6});
  tensor<float, extents<4, 16>> weight_at_6;  // (Out, In)
  copy(m.weight, weight_at_6);
  train_step(m, opt, 6);

  // A save of step 7 that stops after the model file, then after the optimizer file: what is on
  // disk is step 6's state plus newer files, and loading gives step 6 exactly.
  for (int written = 1; written <= 2; ++written) {
    safetensors_writer model;
    model.metadata["step"] = "7";
    m.for_each_parameter([&](const std::string& name, const auto& t) { model.add(name, t); });
    train::detail::replace_keeping_previous(model, dir, "model.safetensors");
    if (written == 2) {
      safetensors_writer optimizer;
      optimizer.metadata["step"] = "7";
      train::detail::replace_keeping_previous(optimizer, dir, "optimizer.safetensors");
    }
    linear_model loaded(3);
    optim::adamw loaded_opt;
    const auto state = train::load_checkpoint(dir, loaded, &loaded_opt);
    CHECK(state.step == 6);
    CHECK(same_bits(loaded.weight, weight_at_6));
    CHECK(loaded_opt.step() == 6);
    // Restore the directory to a clean step-6 checkpoint for the next round.
    train::save_checkpoint(dir, loaded, loaded_opt, state);
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("a checkpoint that does not fit is rejected and nothing is modified") {
  const std::string dir = temp_dir("mismatch");
  linear_model m(4);
  optim::adamw opt;
  train_step(m, opt, 0);
  train::save_checkpoint(dir, m, opt, {.step = 1});

  wider_model wider;
  wider.weight = 5.0f;
  wider.bias = 5.0f;
  CHECK_THROWS_WITH_AS(train::load_checkpoint(dir, wider),
                       doctest::Contains("tensor 'layers.0.proj.weight' has shape (4, 16), expected (4, 17)"), shape_error);
  CHECK(wider.bias(0) == 5.0f);  // untouched: the weight was checked before anything loaded

  extra_model extra;
  extra.bias = 5.0f;
  CHECK_THROWS_WITH_AS(train::load_checkpoint(dir, extra),
                       doctest::Contains("no tensor 'ln_final.weight' (the file has layers.0.proj.bias, layers.0.proj.weight)"),
                       io_error);
  CHECK(extra.bias(0) == 5.0f);
  const std::string empty = temp_dir("empty");
  std::filesystem::create_directories(empty);
  CHECK_THROWS_WITH_AS(train::load_checkpoint(empty, m),
                       doctest::Contains("empty: no checkpoint there (no state.safetensors;"), io_error);
  CHECK_THROWS_WITH_AS(train::load_checkpoint(empty + "/nowhere", m),
                       doctest::Contains("nowhere: no checkpoint there (no such directory)"), io_error);
  std::filesystem::remove_all(empty);
  std::filesystem::remove_all(dir);
}

TEST_CASE("SGD and AdaGrad resume bit-exactly, with their options and buffers") {
  const std::string dir = temp_dir("resume_sgd_adagrad");
  auto check_resume = [&](auto make) {
    linear_model straight(1);
    auto straight_opt = make();
    for (std::uint64_t s = 0; s < 20; ++s) train_step(straight, straight_opt, s);

    linear_model first(1);
    auto first_opt = make();
    for (std::uint64_t s = 0; s < 7; ++s) train_step(first, first_opt, s);
    train::save_checkpoint(dir, first, first_opt, {.step = 7, .seed = 1, .data_draw = 7});
    const safetensors_file saved((std::filesystem::path(dir) / "optimizer.safetensors").string());
    CHECK(saved.metadata().at("optimizer") == decltype(make())::kind);
    CHECK(saved.metadata().at("optimizer_step") == "7");

    linear_model resumed(777);
    decltype(make()) resumed_opt;  // default options: the checkpoint's replace them
    const auto state = train::load_checkpoint(dir, resumed, &resumed_opt);
    CHECK(resumed_opt.step() == 7);
    CHECK(same_buffers(resumed_opt.state(), first_opt.state()));
    for (std::uint64_t s = state.data_draw; s < 20; ++s) train_step(resumed, resumed_opt, s);
    CHECK(same_bits(resumed.weight, straight.weight));
    CHECK(same_bits(resumed.bias, straight.bias));
    CHECK(same_buffers(resumed_opt.state(), straight_opt.state()));
    return resumed_opt;
  };
  SUBCASE("SGD with Nesterov momentum") {
    const auto restored = check_resume([] { return optim::sgd({.momentum = 0.9, .weight_decay = 0.01, .nesterov = true}); });
    CHECK(restored.options().momentum == 0.9);
    CHECK(restored.options().nesterov);
    CHECK(restored.state().size() == 2);
  }
  SUBCASE("SGD with dampening") {
    const auto restored = check_resume([] { return optim::sgd({.momentum = 0.8, .dampening = 0.25}); });
    CHECK(restored.options().dampening == 0.25);
  }
  SUBCASE("plain SGD has no buffers") {
    const auto restored = check_resume([] { return optim::sgd({.weight_decay = 0.02}); });
    CHECK(restored.state().empty());
    const safetensors_file saved((std::filesystem::path(dir) / "optimizer.safetensors").string());
    CHECK(saved.size() == 0);
  }
  SUBCASE("AdaGrad") {
    const auto restored = check_resume(
        [] { return optim::adagrad({.lr_decay = 0.05, .weight_decay = 0.01, .initial_accumulator_value = 0.1, .eps = 1e-9}); });
    CHECK(restored.options().lr_decay == 0.05);
    CHECK(restored.options().initial_accumulator_value == 0.1);
    CHECK(restored.options().eps == 1e-9);
    const safetensors_file saved((std::filesystem::path(dir) / "optimizer.safetensors").string());
    CHECK(saved.names() == std::vector<std::string>{"layers.0.proj.bias.sum", "layers.0.proj.weight.sum"});
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("an optimizer of another kind, or a missing or misshapen buffer, is rejected and nothing is modified") {
  const std::string dir = temp_dir("optimizer_mismatch");
  linear_model m(4);
  optim::sgd opt({.momentum = 0.9});
  train_step(m, opt, 0);
  train::save_checkpoint(dir, m, opt, {.step = 1});

  linear_model other(5);
  optim::adamw adamw;
  train_step(other, adamw, 0);
  const float other_before = other.weight(0, 0);
  CHECK_THROWS_WITH_AS(train::load_checkpoint(dir, other, &adamw),
                       doctest::Contains("the checkpoint holds the state of the optimizer 'sgd', not of 'adamw'"), io_error);
  optim::adagrad adagrad;
  CHECK_THROWS_WITH_AS(train::load_checkpoint(dir, other, &adagrad),
                       doctest::Contains("the checkpoint holds the state of the optimizer 'sgd', not of 'adagrad'"), io_error);
  CHECK(adamw.step() == 1);
  CHECK(other.weight(0, 0) == other_before);  // the parameters were not loaded either

  // A momentum buffer of the wrong size, then one of another dtype: named, and nothing changes. (A
  // parameter without a buffer is one not updated yet, as for AdamW.)
  auto rewrite = [&](auto add_buffers) {
    safetensors_writer w;
    w.metadata["step"] = "1";
    w.metadata["optimizer"] = "sgd";
    w.metadata["optimizer_step"] = "1";
    w.metadata["momentum"] = "0.9";
    w.metadata["dampening"] = "0";
    w.metadata["weight_decay"] = "0";
    w.metadata["nesterov"] = "false";
    add_buffers(w);
    w.write((std::filesystem::path(dir) / "optimizer.safetensors").string());
  };
  optim::sgd target({.momentum = 0.5});
  linear_model loaded(6);
  train_step(loaded, target, 0);
  train_step(loaded, target, 1);
  const float before = loaded.weight(0, 0);
  rewrite([&](safetensors_writer& w) {
    w.add("layers.0.proj.weight.momentum_buffer", tensor<float, dims<1>>(dims<1>(64)));  // (64,)
    w.add("layers.0.proj.bias.momentum_buffer", tensor<float, dims<1>>(dims<1>(3)));     // (3,): one short
  });
  CHECK_THROWS_WITH_AS(train::load_checkpoint(dir, loaded, &target),
                       doctest::Contains("tensor 'layers.0.proj.bias.momentum_buffer' has shape (3,), expected (4,)"),
                       shape_error);
  rewrite([&](safetensors_writer& w) {
    w.add("layers.0.proj.weight.momentum_buffer", tensor<double, dims<1>>(dims<1>(64)));  // (64,): another dtype
  });
  CHECK_THROWS_WITH_AS(train::load_checkpoint(dir, loaded, &target),
                       doctest::Contains("tensor 'layers.0.proj.weight.momentum_buffer' has dtype F64, expected F32"),
                       io_error);
  CHECK(target.step() == 2);
  CHECK(target.options().momentum == 0.5);
  CHECK(loaded.weight(0, 0) == before);

  // AdamW: a second moment missing.
  optim::adamw adamw_saved;
  train_step(m, adamw_saved, 1);
  train::save_checkpoint(dir, m, adamw_saved, {.step = 1});
  {
    const safetensors_file full((std::filesystem::path(dir) / "optimizer.safetensors").string());
    safetensors_writer w;
    w.metadata = full.metadata();
    w.add("layers.0.proj.weight.exp_avg", full.load<float, dims<1>>("layers.0.proj.weight.exp_avg"));        // (64,)
    w.add("layers.0.proj.weight.exp_avg_sq", full.load<float, dims<1>>("layers.0.proj.weight.exp_avg_sq"));  // (64,)
    w.add("layers.0.proj.bias.exp_avg", full.load<float, dims<1>>("layers.0.proj.bias.exp_avg"));            // (4,)
    w.write((std::filesystem::path(dir) / "optimizer.safetensors").string());
  }
  CHECK_THROWS_WITH_AS(train::load_checkpoint(dir, loaded, &adamw), doctest::Contains("no tensor 'layers.0.proj.bias.exp_avg_sq'"),
                       io_error);
  CHECK(adamw.step() == 1);
  CHECK(loaded.weight(0, 0) == before);

  // AdaGrad: metadata missing.
  optim::adagrad ada;
  train::save_checkpoint(dir, m, ada, {.step = 1});
  safetensors_writer w;
  w.metadata["step"] = "1";
  w.metadata["optimizer"] = "adagrad";
  w.metadata["optimizer_step"] = "1";
  w.write((std::filesystem::path(dir) / "optimizer.safetensors").string());
  CHECK_THROWS_WITH_AS(train::load_checkpoint(dir, loaded, &ada), doctest::Contains("the checkpoint metadata lacks 'lr_decay'"),
                       io_error);
  std::filesystem::remove_all(dir);
}
