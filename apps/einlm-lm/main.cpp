// einlm-lm — trains, evaluates and samples transformer language models from the command line.
//
// Subcommands: train, eval, generate, logits (see k_usage or --help). A model lives in a directory:
// DIR/config.json (a dense shape, or one with mixture-of-experts layers: nn::moe_config) and
// DIR/model.safetensors (CS336 tensor names; F32, F16 or BF16), plus optimizer.safetensors and
// state.safetensors when einlm-lm trained it. Errors go to stderr as "einlm-lm: error: ..." with
// exit status 1; usage errors exit with 2. A configuration that is one of the shapes compiled in
// (static_models.hpp) runs as that static block model, any other as the dynamic
// nn::transformer_lm (--model auto|static|dynamic; one line on stderr says which ran).
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "einlm/core/npy.hpp"
#include "einlm/core/safetensors.hpp"
#include "einlm/nn/accounting.hpp"
#include "einlm/nn/generate.hpp"
#include "einlm/nn/transformer.hpp"
#include "einlm/tokenizer.hpp"
#include "einlm/train/config_json.hpp"
#include "einlm/train/trainer.hpp"
#include "static_models.hpp"
#if EINLM_LM_CUDA
#include "train_cuda.hpp"
#endif

using namespace einlm;

namespace {

constexpr const char* k_usage = R"(usage: einlm-lm COMMAND [OPTIONS]

Transformer language models (CS336's architecture, or GPT-2's) on the CPU.

Commands:
  train --data TRAIN.u16 [--val VAL.u16 | --val-fraction F] --config config.json --out DIR
        [--steps N] [--batch B] [--context T] [--lr LR] [--min-lr LR] [--warmup N]
        [--weight-decay W] [--clip C] [--z-loss Z] [--seed S] [--resume DIR]
        [--log-every N] [--eval-every N] [--eval-batches N] [--checkpoint-every N]
        [--token-width u16|u32] [--peak-tflops X] [--progress auto|always|never] [--device cpu|cuda]
        [--precision fp32|bf16] [--optimizer adamw|sgd|adagrad] [--beta1 B] [--beta2 B] [--eps E]
        [--momentum M] [--dampening D] [--nesterov on|off] [--lr-decay X] [--initial-accumulator X]
      Trains a model of the shape in config.json (dense, or with mixture-of-experts layers:
      num_experts, top_k, num_shared_experts, moe_d_ff, router, first_dense_layers,
      capacity_factor, aux_loss_coef, z_loss_coef, bias_update_rate; see docs/moe.md) on a token
      file (flat little-endian uint16 or uint32 ids, as `einlm-tokenizer encode --format u16`
      writes) and keeps the latest checkpoint in DIR (config.json, model.safetensors, optimizer.safetensors, state.safetensors, and
      metrics.jsonl). --val-fraction F holds out the last fraction F of the data for validation.
      --resume DIR continues a run exactly where it stopped (the same DIR as --out is fine).
      Defaults: 1000 steps, batch 16, the model's context length, lr 1e-3 decaying to lr/10 by a
      cosine schedule after 100 warm-up steps, weight decay 0.1 (not on norms and embeddings),
      clip 1.0, seed 0. MFU is shown when --peak-tflops gives the machine's peak.
      --precision bf16 trains in mixed precision: bf16 weights, activations and gradients with
      float master weights and optimizer state (the checkpoint holds the float masters).
      --optimizer chooses the update (torch.optim's): adamw (default; --beta1 0.9, --beta2 0.95,
      --eps 1e-8, decoupled weight decay), sgd (--momentum M, default 0; --dampening D, default 0;
      --nesterov on|off, default off; weight decay added to the gradient) or adagrad (--lr-decay X,
      default 0; --initial-accumulator X, default 0; --eps E, default 1e-8). An option of another
      optimizer than the chosen one is a usage error. --resume continues with the optimizer and
      the settings the checkpoint was saved with; resuming with another --optimizer is an error.
      --device cuda runs every step on the GPU — forward, backward, clipping and the optimizer
      (dense models of CS336's architecture, dynamic type; fp32 or --precision bf16); the
      checkpoints are the CPU run's, and either device resumes the other's. It needs an einlm-lm
      built where CMake found nvcc, and a CUDA device.

  eval --checkpoint DIR --data FILE.u16 [--batch B] [--context T] [--batches N] [--token-width W]
       [--precision fp32|bf16] [--device cpu|cuda]
      Mean cross-entropy (nats per token) and perplexity over N fixed batches (default 16);
      --precision bf16 runs the model with its weights rounded to bf16. --device cuda runs it on
      the GPU (dense CS336 models, as train's).

  generate --checkpoint DIR --vocab vocab.json --merges merges.txt (--prompt TEXT... | --prompts FILE)
           [--max-tokens N] [--temperature T] [--top-p P] [--top-k K] [--seed S] [--special TOKEN]...
           [--cache on|off] [--stats] [--device cpu|cuda]
      Continues TEXT and streams the text to standard output as tokens arrive. Stops after
      <|endoftext|> when the vocabulary has it (or any --special token). Defaults: 200 tokens,
      temperature 0.8, top-p 0.95, no top-k, seed 0; temperature 0 is greedy. The KV cache is on
      by default (the same tokens either way); --stats prints tokens/s to standard error.
      Several prompts (--prompt given more than once, or --prompts FILE with one prompt per line,
      empty lines skipped) are generated together as one batch and printed when all are done, each
      under a header "=== sample I/N ===". Sample I draws from the seed's stream I − 1, so sample 1
      is what the first prompt alone gives, and with temperature 0 every sample is. --device cuda
      generates on the GPU with a device KV cache (dense CS336 models, as train's).

  logits --checkpoint DIR --ids "ID ID ..." --out FILE.npy
      Writes the logits of one sequence as float32 .npy of shape (sequence, vocab).

  upcycle --checkpoint DENSE_DIR --config moe.json --out DIR [--noise X] [--router-std X] [--seed S]
          [--optimizer adamw|sgd|adagrad and its options] [--weight-decay W]
      Sparse upcycling: a mixture-of-experts model of the shape in moe.json (whose dense fields
      must equal DENSE_DIR's config.json) whose experts are copies of DENSE_DIR's FFNs (times
      1 + 𝒩(0, X²) noise; default 0), with small routers (default σ 0.02). DIR receives a step-0
      checkpoint with a fresh optimizer of the chosen kind and settings (as train's; default
      AdamW): continue with `train --resume DIR --config DIR/config.json --out DIR ...` (and the
      same --optimizer).

Options:
  --model auto|static|dynamic
      Which model type runs (train, eval, generate, logits). auto (the default): the static type
      compiled for the configuration's shape when there is one (every field equal; the shapes
      are listed below), else the dynamic one (any shape). static: the compiled shape, an error
      when there is none. dynamic: the dynamic type. Both give the same results (the same layer
      code) and write and read the same checkpoints; one line on standard error says which ran.
      upcycle runs the dynamic type. A configuration of GPT-2's architecture (ffn "gelu_mlp",
      positions "learned", norm "layer_norm", linear_bias and tied_embeddings true) runs
      nn::blocks::gpt2_lm with its dimensions at run time (auto and dynamic; it has no static
      shape); no other architecture runs.
  -h, --help    this text
Exit status: 0 on success, 1 on an error (message on stderr), 2 on a usage error.

Compiled-in static shapes (apps/einlm-lm/static_models.hpp):
)";

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct args {
  std::string command;
  std::map<std::string, std::string> values;
  std::vector<std::string> specials;
  std::vector<std::string> prompts;  // every --prompt, in order
  bool has(const std::string& k) const { return values.count(k) != 0; }
  std::string get(const std::string& k) const {
    const auto it = values.find(k);
    if (it == values.end()) throw usage_error(einlm::detail::concat(command, " needs --", k));
    return it->second;
  }
  std::string get(const std::string& k, const std::string& fallback) const { return has(k) ? get(k) : fallback; }
  double number(const std::string& k, double fallback) const {
    if (!has(k)) return fallback;
    const std::string s = get(k);
    double v = 0;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || !std::isfinite(v))
      throw usage_error(einlm::detail::concat("--", k, " expects a number, got '", s, "'"));
    return v;
  }
  /// A number in [low, high] (high: no bound when infinite), else a usage error naming the option.
  double number_in(const std::string& k, double fallback, double low, double high, const char* rule) const {
    const double v = number(k, fallback);
    if (!(v >= low && v <= high))
      throw usage_error(einlm::detail::concat("--", k, " must be ", rule, ", got ", get(k)));
    return v;
  }
  std::int64_t integer(const std::string& k, std::int64_t fallback) const {
    if (!has(k)) return fallback;
    const std::string s = get(k);
    std::int64_t v = 0;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || v < 0)
      throw usage_error(einlm::detail::concat("--", k, " expects a non-negative integer, got '", s, "'"));
    return v;
  }
};

args parse_args(int argc, char** argv) {
  static const std::set<std::string> known = {
      "data", "val", "val-fraction", "config", "out", "steps", "batch", "context", "lr", "min-lr", "warmup",
      "weight-decay", "clip", "z-loss", "seed", "resume", "log-every", "eval-every", "eval-batches",
      "checkpoint-every", "token-width", "peak-tflops", "progress", "device", "checkpoint", "batches", "vocab",
      "merges", "prompts", "max-tokens", "temperature", "top-p", "top-k", "ids", "cache", "noise", "router-std",
      "precision", "optimizer", "beta1", "beta2", "eps", "momentum", "dampening", "nesterov", "lr-decay",
      "initial-accumulator", "model"};
  args a;
  if (argc < 2) throw usage_error("no command given");
  a.command = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string f = argv[i];
    if (f == "-h" || f == "--help") {
      a.command = "help";
      continue;
    }
    if (f == "--stats") {
      a.values["stats"] = "1";
      continue;
    }
    if (f.rfind("--", 0) != 0) throw usage_error("unexpected argument '" + f + "'");
    const std::string key = f.substr(2);
    if (key != "special" && key != "prompt" && !known.count(key)) throw usage_error("unknown option " + f);
    if (i + 1 >= argc) throw usage_error(f + " needs a value");
    if (key == "special") a.specials.push_back(argv[++i]);
    else if (key == "prompt") a.prompts.push_back(argv[++i]);
    else a.values[key] = argv[++i];
  }
  return a;
}

train::token_width width_of(const args& a) {
  const std::string w = a.get("token-width", "u16");
  if (w == "u16") return train::token_width::u16;
  if (w == "u32") return train::token_width::u32;
  throw usage_error("--token-width must be u16 or u32, got '" + w + "'");
}

std::string shape_text(const std::vector<index_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

/// DIR/config.json.
nn::moe_config load_checkpoint_config(const std::string& dir) {
  train::detail::check_is_checkpoint(dir, "config.json", einlm::detail::concat("`einlm-lm train --out ", dir, "`"));
  return train::load_model_config((std::filesystem::path(dir) / "config.json").string());
}

/// Loads DIR/model.safetensors (F32, F16 or BF16 tensors) into a float model of DIR/config.json's
/// shape, by parameter name (for_each_parameter): nn::transformer_lm or a static block model.
template <class Model>
void load_weights(const std::string& dir, Model& model) {
  const safetensors_file f((std::filesystem::path(dir) / "model.safetensors").string());
  // Check every tensor before loading any.
  model.for_each_parameter([&](const std::string& name, auto& w) {
    if (!f.contains(name)) throw io_error(einlm::detail::concat(f.path(), ": the model has no tensor '", name, "'"));
    const auto& info = f.info(name);
    std::vector<index_t> expected;
    for (std::size_t r = 0; r < w.extents().rank(); ++r) expected.push_back(w.extent(r));
    if (info.shape != expected)
      throw shape_error(einlm::detail::concat(f.path(), ": tensor '", name, "' has shape ", shape_text(info.shape),
                                              "; config.json implies ", shape_text(expected)));
    if (info.dtype != "F32" && info.dtype != "BF16" && info.dtype != "F16")
      throw io_error(einlm::detail::concat(f.path(), ": tensor '", name, "' has dtype ", info.dtype,
                                           "; expected F32, BF16 or F16"));
  });
  model.for_each_parameter([&](const std::string& name, auto& w) {
    using E = typename std::remove_cvref_t<decltype(w)>::extents_type;
    const std::string& dtype = f.info(name).dtype;
    if (dtype == "F32") {
      f.load_into(name, w);
    } else if (dtype == "BF16") {
      const auto half = f.load<bf16, E>(name);
      w = cast<float>(half);
    } else {
      const auto half = f.load<fp16, E>(name);
      w = cast<float>(half);
    }
  });
}

/// train::to_json(m) on one line: {"vocab_size": V, "context_length": T, …}.
std::string one_line_json(const nn::moe_config& m) {
  std::string out;
  for (const char c : train::to_json(m)) {
    if (c == '\n') continue;
    if (c == ' ' && (out.empty() || out.back() == '{' || out.back() == ' ' || out.back() == ',')) continue;
    if (c == '"' && !out.empty() && out.back() == ',') out += ' ';
    out += c;
  }
  return out;
}

/// Calls run(std::type_identity<M>{}) with M the model type that runs configuration `m` (read
/// from `where`) on the path --model chooses: einlm_lm::static_lm of the compiled-in shape `m` is
/// (auto, static), else nn::transformer_lm<float> (auto, dynamic); a configuration of GPT-2's
/// architecture runs einlm_lm::static_lm<gpt2_any> (auto, dynamic). One line on stderr says which
/// type runs. --model static without a compiled-in shape for `m` is an error naming the
/// configuration and listing the shapes; an architecture that is neither CS336's nor GPT-2's is a
/// config_error naming both.
template <class Run>
int with_model_type(const args& a, const nn::moe_config& m, const std::string& where, Run&& run) {
  const std::string path = a.get("model", "auto");
  if (path != "auto" && path != "static" && path != "dynamic")
    throw usage_error("--model must be auto, static or dynamic, got '" + path + "'");
  if (!einlm_lm::is_cs336(m) && !einlm_lm::is_gpt2(m))
    throw nn::config_error(einlm::detail::concat(
        where, ": einlm-lm runs CS336's architecture (ffn \"swiglu\", positions \"rope\", norm \"rms_norm\", no "
        "linear_bias) or GPT-2's (ffn \"gelu_mlp\", positions \"learned\", norm \"layer_norm\", linear_bias and "
        "tied_embeddings true, no qk_norm, no experts); this configuration is neither"));
  if (einlm_lm::is_gpt2(m) && path != "static") {
    std::fprintf(stderr, "einlm-lm: model: dynamic GPT-2 (blocks::gpt2_lm)\n");
    return run(std::type_identity<einlm_lm::static_lm<einlm_lm::gpt2_any>>{});
  }
  if (path != "dynamic") {
    int status = 0;
    const bool found = einlm_lm::with_static_shape(m, [&](const auto& shape) {
      using block = typename std::remove_cvref_t<decltype(shape)>::block;
      std::fprintf(stderr, "einlm-lm: model: static (compiled-in shape '%s')\n", shape.name);
      status = run(std::type_identity<einlm_lm::static_lm<block>>{});
    });
    if (found) return status;
    if (path == "static")
      throw value_error(einlm::detail::concat("--model static: no compiled-in static shape is the configuration of ",
                                              where, " ", one_line_json(m), "; the compiled-in shapes are\n",
                                              einlm_lm::static_shape_list(), "(apps/einlm-lm/static_models.hpp)"));
  }
  std::fprintf(stderr, "einlm-lm: model: dynamic (transformer_lm)\n");
  return run(std::type_identity<nn::transformer_lm<float>>{});
}

/// The model's number of parameters (scalars).
template <class Model>
std::int64_t parameter_total(Model& model) {
  if constexpr (requires { model.param_count(); }) return model.param_count();
  else return model.parameters().size();
}

/// Cross-entropy (nats per token) of `val` under the add-one-smoothed token frequencies of
/// `fit`: the loss of a model that ignores context, the baseline a language model must beat.
double unigram_baseline(const train::token_dataset& fit, const train::token_dataset& val, std::int64_t vocab) {
  std::vector<double> counts(static_cast<std::size_t>(vocab), 1.0);
  for (std::size_t i = 0; i < fit.size(); ++i)
    if (fit[i] < counts.size()) counts[fit[i]] += 1;
  const double total = static_cast<double>(fit.size()) + static_cast<double>(vocab);
  double loss = 0;
  for (std::size_t i = 0; i < val.size(); ++i)
    loss -= std::log((val[i] < counts.size() ? counts[val[i]] : 1.0) / total);
  return val.size() ? loss / static_cast<double>(val.size()) : NAN;
}

/// --precision fp32|bf16 (default fp32).
nn::precision precision_of(const args& a) {
  try {
    return train::precision_from_string(a.get("precision", "fp32"));
  } catch (const value_error& e) {
    throw usage_error(einlm::detail::concat("--", e.what()));
  }
}

/// --optimizer and the options of the chosen optimizer into o; an option of another optimizer is a
/// usage error.
void optimizer_options(const args& a, train::trainer_options& o) {
  try {
    o.optimizer = train::optimizer_from_string(a.get("optimizer", "adamw"));
  } catch (const value_error& e) {
    throw usage_error(einlm::detail::concat("--", e.what()));
  }
  const std::string name = train::optimizer_name(o.optimizer);
  const std::map<std::string, std::vector<std::string>> owners = {
      {"beta1", {"adamw"}}, {"beta2", {"adamw"}}, {"eps", {"adamw", "adagrad"}}, {"momentum", {"sgd"}},
      {"dampening", {"sgd"}}, {"nesterov", {"sgd"}}, {"lr-decay", {"adagrad"}}, {"initial-accumulator", {"adagrad"}}};
  for (const auto& [option, users] : owners)
    if (a.has(option) && std::find(users.begin(), users.end(), name) == users.end())
      throw usage_error(einlm::detail::concat("--", option, " is an option of --optimizer ", users.front(),
                                              users.size() > 1 ? " or " + users.back() : std::string(),
                                              ", not of ", name));
  o.beta1 = a.number("beta1", o.beta1);
  o.beta2 = a.number("beta2", o.beta2);
  o.eps = a.number("eps", o.eps);
  o.momentum = a.number("momentum", 0.0);
  o.dampening = a.number("dampening", 0.0);
  const std::string nesterov = a.get("nesterov", "off");
  if (nesterov != "on" && nesterov != "off") throw usage_error("--nesterov must be on or off, got '" + nesterov + "'");
  o.nesterov = nesterov == "on";
  o.lr_decay = a.number("lr-decay", 0.0);
  o.initial_accumulator_value = a.number("initial-accumulator", 0.0);
}

/// Whether --device asks for the GPU (cuda) rather than the CPU (cpu, the default); a usage error
/// for another value, or for cuda where this einlm-lm was built without nvcc.
bool on_gpu_of(const args& a) {
  const std::string device_name = a.get("device", "cpu");
  if (device_name != "cpu" && device_name != "cuda")
    throw usage_error("--device must be cpu or cuda, got '" + device_name + "'");
#if !EINLM_LM_CUDA
  if (device_name == "cuda")
    throw usage_error("--device cuda: this einlm-lm was built without CUDA (CMake found no nvcc when it was configured)");
#endif
  return device_name == "cuda";
}

/// The arguments with_model_type reads for configuration `m` (from the file `where`): `a` itself
/// on the CPU; on the GPU (train, eval) `a` with the dynamic type, after checking that `m` is a
/// dense CS336 configuration and that --model static was not asked for.
args model_args(const args& a, bool on_gpu, const nn::moe_config& m, const std::string& where) {
  if (!on_gpu) return a;
  if (!einlm_lm::is_cs336(m) || m.num_experts > 0)
    throw usage_error("--device cuda runs dense models of CS336's architecture (ffn \"swiglu\", positions \"rope\", "
                      "norm \"rms_norm\", no experts); " + where + " is not one");
  if (a.get("model", "auto") == "static")
    throw usage_error("--device cuda runs the dynamic model type; --model static is for the CPU");
  args dynamic = a;
  dynamic.values["model"] = "dynamic";
  return dynamic;
}

int cmd_train(const args& a) {
  const bool on_gpu = on_gpu_of(a);
  const auto moe = train::load_model_config(a.get("config"));
  const nn::transformer_config& config = moe.base;
  const args type_args = model_args(a, on_gpu, moe, a.get("config"));
  const std::uint64_t seed = static_cast<std::uint64_t>(a.integer("seed", 0));
  const auto all = train::token_dataset::open(a.get("data"), width_of(a));
  std::optional<train::token_dataset> fit_data, val_data;
  if (a.has("val") && a.has("val-fraction")) throw usage_error("give --val or --val-fraction, not both");
  if (a.has("val")) {
    fit_data = all;
    val_data = train::token_dataset::open(a.get("val"), width_of(a));
  } else if (a.has("val-fraction")) {
    const double fraction = a.number("val-fraction", 0.1);
    if (!(fraction > 0 && fraction < 1))
      throw usage_error(einlm::detail::concat("--val-fraction must be between 0 and 1 (exclusive), got ",
                                              a.get("val-fraction")));
    auto [x, y] = all.split(1.0 - fraction);
    fit_data = x;
    val_data = y;
  } else {
    fit_data = all;
  }
  train::trainer_options o;
  o.steps = a.integer("steps", 1000);
  o.batch_size = a.integer("batch", 16);
  if (o.batch_size == 0) throw usage_error("--batch must be positive, got 0");
  o.context_length = a.integer("context", config.context_length);
  if (o.context_length == 0) throw usage_error("--context must be positive, got 0");
  o.max_lr = a.number_in("lr", 1e-3, 0, INFINITY, "≥ 0");
  o.min_lr = a.number_in("min-lr", o.max_lr / 10, 0, INFINITY, "≥ 0");
  o.warmup_steps = a.integer("warmup", std::min<std::int64_t>(100, o.steps / 10));
  o.weight_decay = a.number("weight-decay", 0.1);
  o.grad_clip = a.number("clip", 1.0);
  o.z_loss = a.number("z-loss", 0.0);
  o.seed = seed;
  o.log_every = std::max<std::int64_t>(1, a.integer("log-every", 10));
  o.eval_every = a.integer("eval-every", 100);
  o.eval_batches = a.integer("eval-batches", 8);
  o.checkpoint_every = a.integer("checkpoint-every", 0);
  o.out_dir = a.get("out");
  o.resume_dir = a.get("resume", "");
  if (!o.resume_dir.empty()) train::detail::check_is_checkpoint(o.resume_dir);  // before the model is built
  // Training FLOPs: 3 × forward, with the selected experts only for a mixture of experts.
  o.flops_per_step = 3 * nn::moe_flops_forward(moe, o.batch_size, o.context_length);
  o.peak_flops = a.number("peak-tflops", 0.0) * 1e12;
  const std::string progress = a.get("progress", "auto");
  if (progress != "auto" && progress != "always" && progress != "never")
    throw usage_error("--progress must be auto, always or never");
  o.progress_bar = progress == "always" || (progress == "auto" && isatty(STDERR_FILENO));
  o.precision = precision_of(a);
  optimizer_options(a, o);
  // The data against the model's shape, before anything is built or written.
  train::check_lm_data(*fit_data, o.context_length, config.vocab_size);
  if (val_data) train::check_lm_data(*val_data, o.context_length, config.vocab_size);
#if EINLM_LM_CUDA
  std::string gpu_name;
  if (on_gpu) gpu_name = einlm_lm::cuda_device_name();  // a cuda_error before anything is built or written
#endif
  return with_model_type(
      type_args, moe, a.get("config"),
      [&]<class Model>(std::type_identity<Model>) {
        Model model(moe, seed);
        std::cerr << "model: " << parameter_total(model) << " parameters, " << config.num_layers << " layers, d_model "
                  << config.d_model << ", " << config.num_heads << " heads (" << config.kv_heads() << " kv), vocab "
                  << config.vocab_size;
        if (moe.num_experts > 0)
          std::cerr << "; " << moe.moe_layers() << " MoE layers of " << moe.num_experts << " experts (d_ff "
                    << moe.expert_dim() << "), top-" << moe.top_k << ", " << moe.num_shared_experts << " shared, "
                    << (moe.router == nn::router_kind::softmax ? "softmax" : "sigmoid") << " router; "
                    << nn::moe_active_param_count(moe) << " active parameters";
        if (o.precision == nn::precision::bf16_mixed) std::cerr << "; bf16 mixed precision (float master weights)";
        if (o.optimizer != train::optimizer_kind::adamw)
          std::cerr << "; optimizer " << train::optimizer_name(o.optimizer);
        std::cerr << "; data: " << fit_data->size() << " training tokens"
                  << (val_data ? einlm::detail::concat(", ", val_data->size(), " validation tokens") : std::string())
                  << "\n";
#if EINLM_LM_CUDA
        if (on_gpu)
          std::cerr << "device: " << gpu_name << " (every step on the device; checkpoints in the CPU trainer's format)\n";
        else
#endif
          std::cerr << "matrix products: " << cpu_gemm_description() << "\n";
        double baseline = NAN;
        if (val_data) {
          baseline = unigram_baseline(*fit_data, *val_data, config.vocab_size);
          std::cerr << "unigram baseline: " << train::detail::format("%.4f", baseline)
                    << " nats/token on the validation tokens (token frequencies alone, no context)\n";
        }
        const auto* val_set = val_data ? &*val_data : nullptr;
        train::fit_result r;
#if EINLM_LM_CUDA
        if constexpr (std::is_same_v<Model, nn::transformer_lm<float>>) {
          if (on_gpu) r = einlm_lm::fit_cuda(model, *fit_data, val_set, o, std::cerr);
        }
        if (!on_gpu)
#endif
          r = train::fit(model, *fit_data, val_set, o, std::cerr);
        if (r.losses.empty())
          std::cerr << "no training step to take: step " << r.steps << " of " << o.steps;
        else
          std::cerr << "trained to step " << r.steps << " in " << train::detail::duration_text(r.seconds) << ", "
                    << static_cast<long long>(r.tokens_per_second) << " tokens/s; final loss " << r.loss;
        if (std::isfinite(r.val_loss))
          std::cerr << ", validation loss " << train::detail::format("%.4f", r.val_loss) << " (unigram baseline "
                    << train::detail::format("%.4f", baseline) << ")";
        std::cerr << "\n";
        if constexpr (requires { model.routing_stats(std::size_t{0}); })
          for (std::int64_t i = 0; i < config.num_layers; ++i) {
            const auto& stats = model.routing_stats(static_cast<std::size_t>(i));
            if (stats.tokens_per_expert.empty()) continue;
            std::cerr << "layer " << i << ": tokens per expert in the last batch";
            for (const auto n : stats.tokens_per_expert) std::cerr << " " << n;
            std::cerr << " (dropped " << stats.dropped_slots << "), router entropy "
                      << train::detail::format("%.3f", stats.router_entropy) << "\n";
          }
        std::cerr << "checkpoint: " << o.out_dir << "\n";
        return 0;
      });
}

int cmd_eval(const args& a) {
  const std::string dir = a.get("checkpoint");
  const auto config = load_checkpoint_config(dir);
  const auto data = train::token_dataset::open(a.get("data"), width_of(a));
  const auto batch = a.integer("batch", 16), context = a.integer("context", config.base.context_length);
  if (batch == 0) throw usage_error("--batch must be positive, got 0");
  if (context == 0) throw usage_error("--context must be positive, got 0");
  const auto batches = a.integer("batches", 16);
  if (batches == 0) throw usage_error("--batches must be positive, got 0");
  train::check_lm_data(data, context, config.base.vocab_size);
  const bool rounded_bf16 = precision_of(a) == nn::precision::bf16_mixed;
  const bool on_gpu = on_gpu_of(a);
  const args type_args = model_args(a, on_gpu, config, dir + "/config.json");
#if EINLM_LM_CUDA
  if (on_gpu) std::fprintf(stderr, "einlm-lm: device: %s\n", einlm_lm::cuda_device_name().c_str());
#endif
  return with_model_type(
      type_args, config, dir + "/config.json",
      [&]<class Model>(std::type_identity<Model>) {
        Model model(config);
        load_weights(dir, model);
        const auto loss_on_cpu = [&] {
          if (!rounded_bf16) return train::evaluate(model, data, batch, context, batches, 0);
          typename Model::template rebind<bf16> rounded(model.model_config());  // the weights rounded to bf16
          convert_parameters(model, rounded);  // nn:: or nn::blocks:: (ADL)
          return train::evaluate(rounded, data, batch, context, batches, 0);
        };
        double loss = 0;
#if EINLM_LM_CUDA
        if constexpr (std::is_same_v<Model, nn::transformer_lm<float>>)
          loss = on_gpu ? einlm_lm::evaluate_cuda(model, data, batch, context, batches, rounded_bf16) : loss_on_cpu();
        else
          loss = loss_on_cpu();
#else
        loss = loss_on_cpu();
#endif
        std::printf("loss %.4f nats/token, perplexity %.2f\n", loss, std::exp(loss));
        return 0;
      });
}

int cmd_generate(const args& a) {
  nn::generation_options o;
  o.max_new_tokens = a.integer("max-tokens", 200);
  o.sampling.temperature = a.number_in("temperature", 0.8, 0, INFINITY, "≥ 0");
  o.sampling.top_p = a.number_in("top-p", 0.95, 0, 1, "in (0, 1]");
  if (o.sampling.top_p == 0) throw usage_error("--top-p must be in (0, 1], got " + a.get("top-p"));
  o.sampling.top_k = a.integer("top-k", 0);
  o.seed = static_cast<std::uint64_t>(a.integer("seed", 0));
  const std::string dir = a.get("checkpoint");
  const auto config = load_checkpoint_config(dir);
  tokenizer::bpe_model m = tokenizer::load_gpt2(a.get("vocab"), a.get("merges"));
  std::vector<std::string> specials = a.specials;
  if (specials.empty()) specials.push_back("<|endoftext|>");
  for (const auto& s : specials)
    if (std::find(m.special_tokens.begin(), m.special_tokens.end(), s) == m.special_tokens.end())
      m.special_tokens.push_back(s);
  const tokenizer::bpe_tokenizer tok(std::move(m));
  if (static_cast<std::int64_t>(tok.vocab_size()) > config.base.vocab_size)
    throw value_error(einlm::detail::concat("the tokenizer has ", tok.vocab_size(), " tokens, the model's vocabulary ",
                                            config.base.vocab_size));
  // The prompts: every --prompt, or the non-empty lines of --prompts FILE.
  std::vector<std::string> prompts = a.prompts;
  if (a.has("prompts")) {
    if (!prompts.empty()) throw usage_error("give --prompt or --prompts, not both");
    std::ifstream in(a.get("prompts"), std::ios::binary);
    if (!in) throw io_error(einlm::detail::concat(a.get("prompts"), ": cannot open the prompts file"));
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!line.empty()) prompts.push_back(line);
    }
    if (prompts.empty()) throw usage_error("--prompts " + a.get("prompts") + " holds no prompt");
  }
  if (prompts.empty()) throw usage_error("generate needs --prompt or --prompts");
  std::vector<std::vector<std::int64_t>> ids;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    const auto encoded = tok.encode(prompts[i]);
    if (encoded.empty())
      throw usage_error(prompts.size() == 1 ? std::string("--prompt must not be empty")
                                            : einlm::detail::concat("prompt ", i + 1, " is empty"));
    ids.emplace_back(encoded.begin(), encoded.end());
  }
  if (const auto eos = tok.special_id(specials.front())) o.stop_token = *eos;
  const std::string cache = a.get("cache", "on");
  if (cache != "on" && cache != "off") throw usage_error("--cache must be on or off");
  o.use_cache = cache == "on";
  const std::size_t B = prompts.size();
  // Text of each sequence: one stream_decoder each (it holds back a character split across tokens).
  std::vector<tokenizer::stream_decoder> decoders(B, tokenizer::stream_decoder(tok));
  std::vector<std::string> texts = prompts;
  std::string piece;
  auto decode = [&](std::size_t i, std::int64_t id) {
    if (id == o.stop_token) return;
    const tokenizer::token_id t = static_cast<tokenizer::token_id>(id);
    piece.clear();
    decoders[i].push(std::span<const tokenizer::token_id>(&t, 1), piece);
    texts[i] += piece;
  };
  const bool on_gpu = on_gpu_of(a);
  const args type_args = model_args(a, on_gpu, config, dir + "/config.json");
#if EINLM_LM_CUDA
  if (on_gpu) std::fprintf(stderr, "einlm-lm: device: %s\n", einlm_lm::cuda_device_name().c_str());
#endif
  // Runs generate_all(on_token) — nn::generate_batch of the prompts on one device or the other —
  // and prints the samples: one prompt streamed as it is produced (generate_batch of one prompt is
  // nn::generate), a batch when every sequence is done.
  auto run = [&](auto&& generate_all) {
    const auto start = std::chrono::steady_clock::now();
    std::size_t generated = 0, prompt_tokens = 0;
    if (B == 1) {
      std::fwrite(prompts[0].data(), 1, prompts[0].size(), stdout);
      const auto all = generate_all([&](std::size_t, std::int64_t id) {
        const std::size_t before = texts[0].size();
        decode(0, id);
        std::fwrite(texts[0].data() + before, 1, texts[0].size() - before, stdout);
        std::fflush(stdout);
      })[0];
      piece.clear();
      decoders[0].finish(piece);
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fputc('\n', stdout);
      generated = all.size() - ids[0].size();
      prompt_tokens = ids[0].size();
    } else {
      const auto all = generate_all(decode);
      for (std::size_t i = 0; i < B; ++i) {
        piece.clear();
        decoders[i].finish(piece);
        texts[i] += piece;
        std::printf("=== sample %zu/%zu ===\n", i + 1, B);
        std::fwrite(texts[i].data(), 1, texts[i].size(), stdout);
        std::fputc('\n', stdout);
        generated += all[i].size() - ids[i].size();
        prompt_tokens += ids[i].size();
      }
    }
    if (a.has("stats")) {
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::fprintf(stderr, "%s%zu prompt tokens, %zu generated in %.3f s: %.1f tokens/s (KV cache %s)\n",
                   B == 1 ? "" : einlm::detail::concat(B, " prompts, ").c_str(), prompt_tokens, generated, seconds,
                   seconds > 0 ? static_cast<double>(generated) / seconds : 0.0, cache.c_str());
    }
    return 0;
  };
  return with_model_type(type_args, config, dir + "/config.json", [&]<class Model>(std::type_identity<Model>) {
    Model model(config);
    load_weights(dir, model);
#if EINLM_LM_CUDA
    if constexpr (std::is_same_v<Model, nn::transformer_lm<float>>)
      if (on_gpu)
        return run([&](const std::function<void(std::size_t, std::int64_t)>& on_token) {
          return einlm_lm::generate_cuda(model, ids, o, on_token);
        });
#endif
    return run([&](auto&& on_token) { return nn::generate_batch(model, ids, o, on_token); });
  });
}

int cmd_upcycle(const args& a) {
  const std::string dir = a.get("checkpoint");
  // A fresh optimizer of the kind and settings train would start with (--optimizer and its
  // options, --weight-decay); a resumed run keeps the checkpoint's.
  train::trainer_options o;
  o.weight_decay = a.number("weight-decay", 0.1);
  optimizer_options(a, o);
  const auto fresh = train::make_optimizer(o);  // value_error for invalid settings
  const auto dense_config = load_checkpoint_config(dir);
  if (a.get("model", "auto") == "static") throw usage_error("--model static: upcycle runs the dynamic model only");
  std::fprintf(stderr, "einlm-lm: model: dynamic (transformer_lm)\n");
  nn::transformer_lm<float> dense(dense_config);
  load_weights(dir, dense);
  const auto moe_config = train::load_model_config(a.get("config"));
  if (moe_config.num_experts == 0) throw usage_error("upcycle: " + a.get("config") + " has no experts (num_experts is 0)");
  const std::uint64_t seed = static_cast<std::uint64_t>(a.integer("seed", 0));
  auto moe = nn::upcycle(dense, moe_config,
                         {.expert_noise = a.number("noise", 0.0), .router_std = a.number("router-std", 0.02), .seed = seed});
  const std::string out = a.get("out");
  std::visit([&](const auto& opt) { train::save_checkpoint(out, moe, opt, {.step = 0, .seed = seed, .data_draw = 0}); },
             fresh);
  train::save_config((std::filesystem::path(out) / "config.json").string(), moe.model_config());
  std::cerr << "upcycled " << dense.parameters().size() << " dense parameters to " << moe.parameters().size() << " ("
            << nn::moe_active_param_count(moe_config) << " active): " << moe_config.moe_layers() << " MoE layers of "
            << moe_config.num_experts << " experts; step-0 checkpoint with a fresh " << train::optimizer_name(o.optimizer)
            << " in " << out << "\n";
  return 0;
}

int cmd_logits(const args& a) {
  const std::string dir = a.get("checkpoint");
  const auto config = load_checkpoint_config(dir);
  std::vector<std::int64_t> ids;
  const std::string text = a.get("ids");
  for (std::size_t i = 0; i < text.size();) {
    while (i < text.size() && (text[i] == ' ' || text[i] == ',' || text[i] == '\t' || text[i] == '\n')) ++i;
    if (i == text.size()) break;
    std::int64_t v = 0;
    const auto [p, ec] = std::from_chars(text.data() + i, text.data() + text.size(), v);
    if (ec != std::errc()) throw usage_error("--ids expects integers separated by spaces or commas");
    ids.push_back(v);
    i = static_cast<std::size_t>(p - text.data());
  }
  if (ids.empty()) throw usage_error("--ids must hold at least one id");
  tensor<std::int64_t, dims<2>> input(1, static_cast<index_t>(ids.size()));  // (1, S)
  std::copy(ids.begin(), ids.end(), input.data());
  return with_model_type(a, config, dir + "/config.json", [&]<class Model>(std::type_identity<Model>) {
    Model model(config);
    load_weights(dir, model);
    const auto logits = model.logits(input);                        // (1, S, V)
    tensor<float, dims<2>> out(logits.extent(1), logits.extent(2));  // (S, V)
    std::copy(logits.data(), logits.data() + logits.size(), out.data());
    save_npy(a.get("out"), out);
    return 0;
  });
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const args a = parse_args(argc, argv);
    if (a.command == "help" || a.command == "-h" || a.command == "--help") {
      std::fputs(k_usage, stdout);
      std::fputs(einlm_lm::static_shape_list().c_str(), stdout);
      return 0;
    }
    if (a.has("device") && a.command != "train" && a.command != "eval" && a.command != "generate")
      throw usage_error("--device is an option of train, eval and generate; " + a.command + " runs on the CPU");
    if (a.command == "train") return cmd_train(a);
    if (a.command == "eval") return cmd_eval(a);
    if (a.command == "generate") return cmd_generate(a);
    if (a.command == "logits") return cmd_logits(a);
    if (a.command == "upcycle") return cmd_upcycle(a);
    throw usage_error("unknown command '" + a.command + "'");
  } catch (const usage_error& e) {
    std::fprintf(stderr, "einlm-lm: %s\nRun 'einlm-lm --help' for usage.\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "einlm-lm: error: %s\n", e.what());
    return 1;
  }
}
