// Tests of einlm/train/trainer.hpp, train/config_json.hpp and nn/generate.hpp: a short run on
// corpus.en (bytes as tokens) brings the validation loss below the corpus' unigram entropy; a
// resumed run equals an uninterrupted one bit for bit; a NaN stops training with the step named
// and leaves the last checkpoint intact, as does a run that cannot start (bad options, too few
// tokens, ids outside the vocabulary); metrics.jsonl; config.json round trips, CS336's
// model_config.json loads, and malformed configurations name the field; generation is a function
// of the seed, greedy generation follows the argmax, and a stop token ends it.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "einlm/nn/generate.hpp"
#include "einlm/nn/transformer.hpp"
#include "einlm/train/config_json.hpp"
#include "einlm/train/trainer.hpp"
#include "support/check.hpp"
#include "support/training_data.hpp"

using namespace einlm;
using test::synthetic_bytes;
using test::same_parameters;

namespace {

std::string temp_dir(const std::string& name) { return test::fresh_temp_dir("trainer_" + name); }

nn::transformer_config byte_config() {
  return {.vocab_size = 256, .context_length = 32, .d_model = 32, .num_layers = 2, .num_heads = 4,
          .num_kv_heads = 2, .d_ff = 64};
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

TEST_CASE("trainer: a short run on corpus.en falls below the unigram entropy") {
  const auto fixtures = test::fixtures_dir();
  if (!fixtures) {
    MESSAGE("skipped: EINLM_FIXTURES_DIR is not set (reference fixtures)");
    return;
  }
  const std::string text = read_text(*fixtures + "/cs336/corpus.en");
  REQUIRE(text.size() > 100'000);
  std::vector<std::uint32_t> bytes(text.begin(), text.end());
  for (auto& b : bytes) b &= 0xFF;
  // The unigram baseline: the entropy (nats) of the byte frequencies.
  std::vector<double> counts(256, 0.0);
  for (auto b : bytes) counts[b] += 1;
  double unigram = 0;
  for (double c : counts)
    if (c > 0) unigram -= c / static_cast<double>(bytes.size()) * std::log(c / static_cast<double>(bytes.size()));
  const auto all = train::token_dataset::from_ids(bytes, "corpus.en");
  auto [fit_data, val_data] = all.split(0.9);
  nn::transformer_lm<float> model(byte_config(), 1);
  train::trainer_options o{.steps = 150, .batch_size = 16, .context_length = 32, .max_lr = 1e-2, .min_lr = 1e-3,
                           .warmup_steps = 10, .log_every = 50, .eval_every = 0, .eval_batches = 4};
  std::ostringstream log;
  const auto r = train::fit(model, fit_data, &val_data, o, log);
  MESSAGE("corpus.en bytes: unigram entropy " << unigram << " nats; validation loss after 150 steps " << r.val_loss
                                             << " (" << r.tokens_per_second << " tokens/s)");
  CHECK(r.steps == 150);
  CHECK(r.losses.front().second == doctest::Approx(std::log(256.0)).epsilon(0.1));
  CHECK(r.val_loss < unigram - 0.3);
  CHECK(log.str().find("step 150/150") != std::string::npos);
}

TEST_CASE("trainer: resuming equals an uninterrupted run, bit for bit") {
  const auto data = synthetic_bytes(5000);
  train::trainer_options o{.steps = 6, .batch_size = 4, .context_length = 16, .max_lr = 3e-3, .warmup_steps = 2,
                           .seed = 5, .log_every = 100, .eval_every = 0};
  std::ostringstream log;
  nn::transformer_lm<float> whole(byte_config(), 3);
  train::fit(whole, data, nullptr, o, log);

  const std::string dir = temp_dir("resume");
  auto first = o;
  first.steps = 3;
  first.out_dir = dir;
  // [snippet fit]
  nn::transformer_lm<float> part(byte_config(), /*seed=*/3);
  train::fit(part, data, /*validation=*/nullptr, first, log);  // checkpoints, config.json, metrics.jsonl in first.out_dir
  // [end snippet]
  CHECK(std::filesystem::exists(dir + "/config.json"));
  CHECK(std::filesystem::exists(dir + "/model.safetensors"));
  CHECK(train::load_config(dir + "/config.json") == byte_config());

  nn::transformer_lm<float> resumed(byte_config(), 99);  // other weights: the checkpoint replaces them
  auto second = o;
  second.resume_dir = dir;
  second.out_dir = dir;
  const auto r = train::fit(resumed, data, nullptr, second, log);
  CHECK(r.steps == 6);
  CHECK(same_parameters(resumed, whole));
  // metrics.jsonl holds the logged steps of both halves.
  const std::string metrics = read_text(dir + "/metrics.jsonl");
  CHECK(metrics.find("{\"step\": 3, \"loss\": ") != std::string::npos);
  CHECK(metrics.find("{\"step\": 6, \"loss\": ") != std::string::npos);
  // loss.png: the curves of both halves, a PNG.
  const std::string png = read_text(dir + "/loss.png");
  CHECK(png.size() > 1000);
  CHECK(png.substr(0, 8) == std::string("\x89PNG\r\n\x1a\n", 8));
}

TEST_CASE("trainer: a NaN stops training, names the step and keeps the last checkpoint") {
  const auto data = synthetic_bytes(4000);
  const std::string dir = temp_dir("nan");
  train::trainer_options o{.steps = 2, .batch_size = 2, .context_length = 8, .log_every = 100, .eval_every = 0,
                           .out_dir = dir};
  std::ostringstream log;
  nn::transformer_lm<float> model(byte_config(), 1);
  train::fit(model, data, nullptr, o, log);
  const std::string saved = read_text(dir + "/model.safetensors");
  model.parameters().layers[1].w2(0, 0) = NAN;
  o.steps = 4;
  o.resume_dir = {};
  CHECK_THROWS_WITH_AS(train::fit(model, data, nullptr, o, log),
                       doctest::Contains("training stopped at step 1: the loss is nan; the last checkpoint in"),
                       train::training_error);
  CHECK(read_text(dir + "/model.safetensors") == saved);
  nn::transformer_lm<float> reloaded(byte_config());
  CHECK(train::load_checkpoint(dir, reloaded).step == 2);
}

TEST_CASE("trainer: bad options are rejected") {
  const auto data = synthetic_bytes(1000);
  nn::transformer_lm<float> model(byte_config(), 1);
  std::ostringstream log;
  CHECK_THROWS_WITH_AS(train::fit(model, data, nullptr, {.context_length = 64}, log),
                       "trainer: the batch context length 64 exceeds the model's context_length 32", value_error);
  CHECK_THROWS_WITH_AS(train::fit(model, data, nullptr, {.batch_size = 0}, log),
                       "trainer: batch_size must be positive, got 0", value_error);
  CHECK_THROWS_WITH_AS(train::fit(model, data, nullptr, {.steps = -1}, log), "trainer: steps must be ≥ 0, got -1",
                       value_error);
  CHECK_THROWS_WITH_AS(train::fit(model, data, nullptr, {.context_length = 0}, log),
                       "trainer: context_length must be positive, got 0", value_error);
  CHECK_THROWS_WITH_AS(train::fit(model, data, nullptr, {.log_every = 0}, log),
                       "trainer: log_every must be positive, got 0", value_error);
  CHECK_THROWS_WITH_AS(train::fit(model, data, nullptr, {.eval_batches = -2}, log),
                       "trainer: eval_batches must be ≥ 0, got -2", value_error);
}

TEST_CASE("trainer: a run that cannot start leaves the checkpoint in out_dir as it was") {
  const auto data = synthetic_bytes(4000);
  const std::string dir = temp_dir("intact");
  const train::trainer_options first{.steps = 2, .batch_size = 2, .context_length = 8, .log_every = 100,
                                     .eval_every = 0, .out_dir = dir};
  std::ostringstream log;
  nn::transformer_lm<float> model(byte_config(), 1);
  train::fit(model, data, nullptr, first, log);
  auto files = [&] {
    std::vector<std::string> texts;
    for (const char* f : {"config.json", "model.safetensors", "optimizer.safetensors", "state.safetensors",
                          "metrics.jsonl"})
      texts.push_back(read_text(dir + "/" + f));
    return texts;
  };
  const auto before = files();
  // Another shape into the same directory, each failing before its first step.
  auto other = byte_config();
  other.d_model = 48;
  other.vocab_size = 100;  // below the letters' ids
  nn::transformer_lm<float> wider(other, 2);
  train::trainer_options o = first;
  o.steps = 3;
  CHECK_THROWS_WITH_AS(train::fit(wider, data, nullptr, o, log),
                       doctest::Contains("outside the model's vocabulary [0, 100)"), value_error);
  other.vocab_size = 256;
  nn::transformer_lm<float> wide(other, 2);
  const auto few = data.range(0, 8);
  CHECK_THROWS_WITH_AS(train::fit(wide, data, &few, o, log),
                       doctest::Contains("8 tokens are too few for context length 8"), value_error);
  o.max_lr = -1;
  CHECK_THROWS_AS(train::fit(wide, data, nullptr, o, log), value_error);
  CHECK(files() == before);
  nn::transformer_lm<float> reloaded(train::load_config(dir + "/config.json"));
  CHECK(train::load_checkpoint(dir, reloaded).step == 2);
  CHECK(same_parameters(reloaded, model));
}

TEST_CASE("config.json: round trip, CS336's model_config.json, and errors that name the field") {
  nn::transformer_config c = byte_config();
  c.qk_norm = true;
  c.rope_theta = 500000.0;
  c.norm_eps = 1e-6;
  CHECK(train::config_from_json(train::to_json(c), "c.json") == c);

  if (const auto fixtures = test::fixtures_dir()) {
    const auto cs336 = train::load_config(*fixtures + "/cs336/ts_tests/model_config.json");
    CHECK(cs336.vocab_size == 10000);
    CHECK(cs336.d_ff == 128);
    CHECK(cs336.num_kv_heads == 0);
  } else {
    MESSAGE("skipped CS336's model_config.json: EINLM_FIXTURES_DIR is not set");
  }
  const std::string base = R"("vocab_size": 100, "context_length": 16, "d_model": 32, "num_layers": 2)";
  auto error_of = [](const std::string& text) {
    try {
      train::config_from_json(text, "config.json");
    } catch (const nn::config_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(error_of("{" + base + R"(, "num_heads": 4})") == "no error");
  CHECK(error_of("{" + base + "}") == "config.json: the configuration lacks 'num_heads'");
  CHECK(error_of("{" + base + R"(, "num_heads": 3})") == "config.json: d_model (32) is not divisible by num_heads (3)");
  CHECK(error_of("{" + base + R"(, "num_heads": 4, "n_heads": 4})") == "config.json:1:102: unknown key 'n_heads'");
  CHECK(error_of("{" + base + R"(, "num_heads": "4"})") == "config.json:1:88: 'num_heads' must be an integer");
  CHECK(error_of("{" + base + R"(, "num_heads": 4, "use_post_norm": true})").find("'use_post_norm': true is not supported") !=
        std::string::npos);
  CHECK(error_of("{" + base).find("config.json:1:") == 0);  // malformed JSON: file, line, column
}

TEST_CASE("config.json: a mixture of experts round-trips, and its errors name the field") {
  nn::moe_config m{.base = byte_config(),
                   .num_experts = 4,
                   .top_k = 2,
                   .num_shared_experts = 1,
                   .expert_d_ff = 24,
                   .router = nn::router_kind::sigmoid,
                   .capacity_factor = 1.25,
                   .aux_loss_coef = 0.02,
                   .z_loss_coef = 0.0,
                   .bias_update_rate = 1e-3};
  CHECK(train::model_config_from_json(train::to_json(m), "c.json") == m);
  m.capacity_factor = 0.0;  // dropless: written as null
  CHECK(train::to_json(m).find("\"capacity_factor\": null") != std::string::npos);
  CHECK(train::model_config_from_json(train::to_json(m), "c.json") == m);
  // A dense configuration has no MoE keys, and reads back as num_experts = 0.
  CHECK(train::to_json(byte_config()).find("num_experts") == std::string::npos);
  CHECK(train::model_config_from_json(train::to_json(byte_config()), "c.json").num_experts == 0);

  const std::string base =
      R"({"vocab_size": 100, "context_length": 16, "d_model": 32, "num_layers": 2, "num_heads": 4, )";
  auto error_of = [](const std::string& text) {
    try {
      train::model_config_from_json(text, "config.json");
    } catch (const nn::config_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(error_of(base + R"("num_experts": 4, "top_k": 2})") == "no error");
  CHECK(error_of(base + R"("num_experts": 4, "top_k": 5})") == "config.json: top_k must be in [1, num_experts = 4], got 5");
  CHECK(error_of(base + R"("num_experts": 4, "router": "tanh"})").find("'router' must be \"softmax\" or \"sigmoid\"") !=
        std::string::npos);
  CHECK(error_of(base + R"("num_experts": 4, "capacity_factor": 0})") ==
        "config.json: capacity_factor must be positive (or null for dropless)");
  CHECK(error_of(base + R"("num_experts": 4, "aux_loss_coef": -1})") ==
        "config.json: aux_loss_coef must not be negative, got -1");
  // A caller that expects a dense model refuses experts.
  CHECK_THROWS_WITH_AS(train::config_from_json(base + R"("num_experts": 4})", "config.json"),
                       "config.json: num_experts = 4: a mixture of experts where a dense model is expected",
                       nn::config_error);
}

TEST_CASE("generate: deterministic with a seed, greedy follows the argmax, stops at the stop token") {
  nn::transformer_lm<float> model(byte_config(), 4);
  const std::vector<std::int64_t> prompt = {116, 104, 101};
  // [snippet generate]
  nn::generation_options o{.max_new_tokens = 20, .sampling = {.temperature = 1.0}, .seed = 7};
  const auto a = nn::generate(model, prompt, o);  // the prompt's ids followed by 20 new ones
  // [end snippet]
  const auto b = nn::generate(model, prompt, o);
  CHECK(a == b);
  CHECK(a.size() == 23);
  CHECK(std::equal(prompt.begin(), prompt.end(), a.begin()));
  o.seed = 8;
  CHECK(nn::generate(model, prompt, o) != a);

  // Greedy: each new token is the argmax of the logits of the sequence so far.
  o.sampling.temperature = 0;
  o.max_new_tokens = 40;  // beyond the context length of 32: the window slides
  std::vector<std::int64_t> streamed;
  const auto g = nn::generate(model, prompt, o, [&](std::int64_t id) { streamed.push_back(id); });
  CHECK(std::vector<std::int64_t>(g.begin() + 3, g.end()) == streamed);
  for (std::size_t n = 3; n < g.size(); n += 9) {
    const auto start = n > 32 ? n - 32 : 0;
    tensor<std::int64_t, dims<2>> in(1, static_cast<index_t>(n - start));  // (1, S)
    std::copy(g.begin() + static_cast<std::ptrdiff_t>(start), g.begin() + static_cast<std::ptrdiff_t>(n), in.data());
    const auto logits = model.logits(in);                                   // (1, S, V)
    const float* last = logits.data() + (in.extent(1) - 1) * 256;
    CHECK(g[n] == std::max_element(last, last + 256) - last);
  }
  o.stop_token = g[5];
  const auto stopped = nn::generate(model, prompt, o);
  CHECK(stopped.size() == 6);
  CHECK(stopped.back() == g[5]);
  CHECK_THROWS_AS(nn::generate(model, {}, o), value_error);
}

TEST_CASE("generate: the KV cache gives the same tokens, also past the context length") {
  nn::transformer_lm<double> model(byte_config(), 6);
  for (const double temperature : {0.0, 1.0}) {
    nn::generation_options o{.max_new_tokens = 45, .sampling = {.temperature = temperature}, .seed = 2};
    const auto cached = nn::generate(model, {104, 105, 33, 32}, o);
    o.use_cache = false;
    const auto recomputed = nn::generate(model, {104, 105, 33, 32}, o);
    CHECK(cached == recomputed);
    CHECK(cached.size() == 49);  // beyond the context length of 32
  }
}
