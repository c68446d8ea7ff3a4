// Tests of einlm/train/checkpoint.hpp: resuming is bit-exact (N steps in one run equal k steps,
// save, load into fresh objects, N − k steps: parameters and AdamW moments identical to the bit);
// a save interrupted after any of its files leaves the previous checkpoint loadable; a checkpoint
// that lacks a parameter or holds another shape is rejected without modifying anything.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "einlm/einlm.hpp"
#include "einlm/optim/adamw.hpp"
#include "einlm/train/checkpoint.hpp"

using namespace einlm;

namespace {

std::string temp_dir(const std::string& name) {
  const auto d = std::filesystem::path(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") / ("einlm_test_ckpt_" + name);
  std::filesystem::remove_all(d);
  return d.string();
}

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

/// One AdamW step on a batch drawn from (seed, draw): squared error against a fixed target map.
void train_step(linear_model& m, optim::adamw& opt, std::uint64_t draw) {
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
  CHECK_THROWS_WITH_AS(train::load_checkpoint(temp_dir("empty"), m), doctest::Contains("cannot open for reading"), io_error);
  std::filesystem::remove_all(dir);
}
