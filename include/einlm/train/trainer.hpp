// einlm/train/trainer.hpp — the training loop of a language model: batches, forward + backward,
// NaN/inf stop, global-norm clipping, AdamW, SGD with momentum or AdaGrad with a cosine schedule
// and parameter groups, validation, progress, JSONL metrics and checkpoints (with resume).
//
//   train::trainer_options o{.steps = 2000, .batch_size = 32, .context_length = 256, .max_lr = 1e-3,
//                            .out_dir = "runs/tiny"};
//   train::fit_result r = train::fit(model, train_tokens, &val_tokens, o, std::cerr);
//
// `model` is any object with zero_grad(), forward_backward(inputs, targets, z_loss),
// logits(inputs), for_each_parameter(f), for_each_parameter_and_gradient(f) and a context length
// (config().context_length or context_length(): nn::context_length_of; 0 means none) — as
// nn::transformer_lm and nn::blocks::model have. config.json is written when the model has
// model_config() or config(). Each step: batch `draw` of get_batch(train, B, T, (seed, 0)); gradients
// zeroed; loss; a loss or gradient norm that is NaN or infinite stops training with a
// training_error naming the step, before the parameters are touched, so the last checkpoint in
// out_dir stays the last good state; gradients clipped to grad_clip (global L2 norm, CS336
// semantics; 0 = no clipping, the norm is still reported); one step of the optimizer chosen by
// `optimizer` (optim::adamw, default; optim::sgd; optim::adagrad — each with its options from
// trainer_options; make_optimizer(o) builds it fresh) at the learning rate of
// cosine_schedule{max_lr, min_lr, warmup_steps,
// steps}(step), with weight_decay (AdamW's decoupled decay, SGD's and AdaGrad's L2 term) except on
// vectors (norm gains, biases) and embedding tables (names ending in "embeddings.weight": token
// and learned position tables) unless decay_all is set. The trainer adds nothing to the update: a step
// equals the optimizer's own begin_step(lr) and update(name, w, g, decay) on the clipped gradients.
//
// Every log_every steps (and at the last) a line goes to `log`: step, loss, learning rate,
// gradient norm, tokens/s, MFU (when flops_per_step and peak_flops are given) and ETA — drawn
// over itself when progress_bar is set (a terminal). Every eval_every steps, and at the end, the
// mean loss of eval_batches fixed validation batches (stream (seed, 1), draws 0, 1, …). With
// out_dir set: metrics.jsonl (one JSON object per logged step and per validation), a checkpoint
// (train/checkpoint.hpp) every checkpoint_every steps and at the end, config.json with the first
// of them (not before, so a run that fails early leaves the directory's checkpoint whole), and at
// the end loss.png, the training and validation curves of metrics.jsonl (the whole run, resumes
// included; train/plot.hpp). With resume_dir set, training continues from that checkpoint: the
// step, the data draw, the seed and the optimizer's state (its options and step count included:
// the checkpoint's settings win over trainer_options') are restored, so the continued run equals
// an uninterrupted one (bit for bit on the CPU). Resuming with another optimizer than the one the
// checkpoint was saved from is an io_error naming both.
//
// Before anything is written the options, the context length against the model's and the data
// are checked (check_lm_data: enough tokens in the training and validation sets, every id inside
// the model's vocabulary when config() or model_config() gives it), each with a value_error naming
// what is wrong.
//
// Precision (trainer_options::precision): fp32 trains `model` itself. bf16_mixed is mixed precision:
// `model` (float) holds the master weights, and a working copy Model::rebind<bf16> (as
// nn::transformer_lm and blocks::model have; built from model_config(), or from block() and ctx())
// runs forward and backward with bf16 weights, activations and gradients,
// computing in float. Each step the working copy's weights are refreshed from the masters
// (rounded to nearest even), its gradients are converted back into `model`'s (exact), and the
// loss check, clipping and the optimizer (any of the three; its state is float) act on the
// masters — so updates smaller than a bf16 ulp are not lost. Validation runs the working copy (the model as trained);
// checkpoints hold the float masters, so a run resumes bit for bit in either precision and
// every einlm-lm command loads the result. A model without rebind<bf16> is a value_error.
//
// The loop (detail::fit_loop) asks each step's arithmetic of an engine — detail::host_engine here;
// train/trainer_cuda.cuh's runs the whole step on the GPU — so both devices share one body.
//
// A mixture-of-experts model (one with aux_loss() and update_router_biases(), as transformer_lm
// has) trains the same way: its gradients include the weighted auxiliary losses, the logged line
// and metrics.jsonl show aux_loss, a non-finite auxiliary loss stops training like the loss, the
// selection biases move after each optimizer step, and config.json holds model_config().
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <string>
#include <variant>
#include <vector>

#include "einlm/core/error.hpp"
#include "einlm/nn/accounting.hpp"
#include "einlm/nn/functional.hpp"
#include "einlm/optim/adamw.hpp"
#include "einlm/optim/clip.hpp"
#include "einlm/optim/schedule.hpp"
#include "einlm/optim/sgd.hpp"
#include "einlm/train/checkpoint.hpp"
#include "einlm/train/config_json.hpp"
#include "einlm/train/data.hpp"
#include "einlm/train/plot.hpp"
#include "einlm/tokenizer/json.hpp"

namespace einlm::train {

/// Training stopped because the loss or the gradient stopped being finite.
struct training_error : value_error {
  using value_error::value_error;
};

/// "fp32" (or "float32") and "bf16" (or "bfloat16", "bf16_mixed") as an nn::precision; anything
/// else is a value_error.
inline nn::precision precision_from_string(const std::string& s) {
  if (s == "fp32" || s == "float32") return nn::precision::fp32;
  if (s == "bf16" || s == "bfloat16" || s == "bf16_mixed") return nn::precision::bf16_mixed;
  throw value_error(einlm::detail::concat("precision must be \"fp32\" or \"bf16\", got \"", s, "\""));
}

/// The optimizer train::fit runs.
enum class optimizer_kind { adamw, sgd, adagrad };

/// "adamw", "sgd" or "adagrad" (the names checkpoints record).
inline const char* optimizer_name(optimizer_kind k) {
  switch (k) {
    case optimizer_kind::sgd: return optim::sgd::kind;
    case optimizer_kind::adagrad: return optim::adagrad::kind;
    default: return optim::adamw::kind;
  }
}

/// "adamw", "sgd" or "adagrad" as an optimizer_kind; anything else is a value_error.
inline optimizer_kind optimizer_from_string(const std::string& s) {
  for (const auto k : {optimizer_kind::adamw, optimizer_kind::sgd, optimizer_kind::adagrad})
    if (s == optimizer_name(k)) return k;
  throw value_error(einlm::detail::concat("optimizer must be \"adamw\", \"sgd\" or \"adagrad\", got \"", s, "\""));
}

struct trainer_options {
  std::int64_t steps = 1000;             // total optimizer steps (a resumed run continues to it)
  index_t batch_size = 16;
  index_t context_length = 128;
  double max_lr = 1e-3;
  double min_lr = 1e-4;
  std::int64_t warmup_steps = 100;
  optimizer_kind optimizer = optimizer_kind::adamw;
  double beta1 = 0.9, beta2 = 0.95;      // AdamW
  double eps = 1e-8;                     // AdamW's and AdaGrad's ε
  double momentum = 0.0, dampening = 0.0;  // SGD (torch.optim.SGD's meaning; 0: plain SGD)
  bool nesterov = false;                 // SGD: Nesterov momentum (momentum > 0, no dampening)
  double lr_decay = 0.0, initial_accumulator_value = 0.0;  // AdaGrad
  double weight_decay = 0.1;             // AdamW: decoupled; SGD, AdaGrad: added to the gradient
  bool decay_all = false;                // also decay norm gains, biases and embedding tables
  double grad_clip = 1.0;                // 0: no clipping
  double z_loss = 0.0;
  std::uint64_t seed = 0;
  std::int64_t log_every = 10;
  std::int64_t eval_every = 100;         // 0: only at the end
  std::int64_t eval_batches = 8;
  std::int64_t checkpoint_every = 0;     // 0: only at the end
  std::string out_dir = {};              // empty: no files
  std::string resume_dir = {};           // empty: start fresh
  double flops_per_step = 0;             // model FLOPs of one step (forward + backward), for MFU
  double peak_flops = 0;                 // the hardware's peak FLOP/s, for MFU
  bool progress_bar = false;             // redraw one line (a terminal) instead of printing lines
  nn::precision precision = nn::precision::fp32;  // bf16_mixed: see the file comment
};

struct fit_result {
  std::int64_t steps = 0;                // the step reached
  double loss = 0;                       // the last training loss
  double val_loss = NAN;                 // the last validation loss (NaN without validation data)
  double tokens_per_second = 0;          // over this run's steps
  double seconds = 0;
  std::vector<std::pair<std::int64_t, double>> losses = {};     // (step, loss) of this run
  std::vector<std::pair<std::int64_t, double>> val_losses = {}; // (step, loss) of this run
};

namespace detail {

inline std::string duration_text(double s) {
  char buf[32];
  if (!(s >= 0) || s > 1e8) return "?";
  const auto t = static_cast<long long>(s + 0.5);
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%lldh%02lldm", t / 3600, t / 60 % 60);
  else if (t >= 60) std::snprintf(buf, sizeof buf, "%lldm%02llds", t / 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%llds", t);
  return buf;
}

inline std::string format(const char* fmt, double v) {
  char buf[48];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

/// Plots metrics.jsonl (training loss and validation loss against the step) as `png`.
inline void plot_metrics(const std::string& jsonl, const std::string& png) {
  namespace json = tokenizer::detail::json;
  std::ifstream in(jsonl);
  std::vector<std::pair<std::int64_t, double>> train_points, val_points;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const auto v = json::parse(line, jsonl);
    const auto* step = v.find("step");
    if (!step || step->type != json::value::kind::number) continue;
    const auto s = static_cast<std::int64_t>(std::stoll(step->text));
    if (const auto* l = v.find("loss"); l && l->type == json::value::kind::number) train_points.emplace_back(s, std::stod(l->text));
    if (const auto* l = v.find("val_loss"); l && l->type == json::value::kind::number) val_points.emplace_back(s, std::stod(l->text));
  }
  std::vector<plot_series> curves;
  if (!train_points.empty()) curves.push_back({"training", train_points, 0x1f77b4});
  if (!val_points.empty()) curves.push_back({"validation", val_points, 0xd62728});
  if (!curves.empty()) write_loss_png(png, curves, {.title = "loss (nats/token) by step"});
}

}  // namespace detail

/// Mean loss of `batches` fixed batches of `data` (stream (seed, 1), draws 0 … batches − 1): the
/// model's own loss(inputs, targets) when it has one (a model on the GPU, whose logits stay
/// there), else the cross-entropy of its logits.
template <class Model>
double evaluate(Model& model, const token_dataset& data, index_t batch_size, index_t context_length,
                std::int64_t batches, std::uint64_t seed) {
  double total = 0;
  for (std::int64_t i = 0; i < batches; ++i) {
    const auto b = get_batch(data, batch_size, context_length, random_stream{seed, 1}, static_cast<std::uint64_t>(i));
    if constexpr (requires { model.loss(b.inputs, b.targets); })
      total += model.loss(b.inputs, b.targets);
    else
      total += nn::cross_entropy(model.logits(b.inputs), b.targets);
  }
  return batches > 0 ? total / static_cast<double>(batches) : NAN;
}

/// The optimizer of a run, one of the three.
using any_optimizer = std::variant<optim::adamw, optim::sgd, optim::adagrad>;

/// A fresh optimizer of the kind `o` asks for, with its options and weight decay (value_error for
/// invalid ones): what fit starts with, and what a step-0 checkpoint holds (einlm-lm upcycle).
inline any_optimizer make_optimizer(const trainer_options& o) {
  switch (o.optimizer) {
    case optimizer_kind::sgd:
      return optim::sgd({.momentum = o.momentum, .dampening = o.dampening, .weight_decay = o.weight_decay,
                         .nesterov = o.nesterov});
    case optimizer_kind::adagrad:
      return optim::adagrad({.lr_decay = o.lr_decay, .weight_decay = o.weight_decay,
                             .initial_accumulator_value = o.initial_accumulator_value, .eps = o.eps});
    default:
      return optim::adamw({.beta1 = o.beta1, .beta2 = o.beta2, .eps = o.eps, .weight_decay = o.weight_decay});
  }
}

namespace detail {

/// Mixed precision's bf16 working copy of `model` (its weights are set before the first step):
/// from its configuration (nn::transformer_lm), or from its block and context (a blocks::model).
template <class Model>
auto working_copy(const Model& model) {
  using work_type = typename Model::template rebind<bf16>;
  if constexpr (requires { model.model_config(); })
    return work_type(model.model_config());
  else
    return work_type(model.block(), model.ctx());
}

/// The trainer's counts, each checked with its name: value_error for the first one out of range.
inline void check_counts(const trainer_options& o) {
  auto require = [](bool ok, const char* name, std::int64_t v, const char* rule) {
    if (!ok) throw value_error(einlm::detail::concat("trainer: ", name, " must be ", rule, ", got ", v));
  };
  require(o.steps >= 0, "steps", o.steps, "≥ 0");
  require(o.batch_size > 0, "batch_size", o.batch_size, "positive");
  require(o.context_length > 0, "context_length", o.context_length, "positive");
  require(o.log_every > 0, "log_every", o.log_every, "positive");
  require(o.eval_batches >= 0, "eval_batches", o.eval_batches, "≥ 0");
}

/// A model's vocabulary size, from model_config() or config(); 0 when it has neither (a block
/// model, whose embedding checks each id as it runs).
template <class Model>
std::int64_t vocab_size_of(const Model& model) {
  if constexpr (requires { model.model_config().base.vocab_size; })
    return model.model_config().base.vocab_size;
  else if constexpr (requires { model.config().vocab_size; })
    return model.config().vocab_size;
  else
    return 0;
}

/// The weight decay fit applies to parameter `name` of rank `rank`: none for vectors (norm gains,
/// biases) and embedding tables unless decay_all is set.
inline double weight_decay_for(const std::string& name, std::size_t rank, const trainer_options& o) {
  const bool exempt = !o.decay_all && (rank == 1 || name.ends_with("embeddings.weight"));
  return exempt ? 0.0 : o.weight_decay;
}

/// How fit_loop's steps run on the host. `work` runs forward and backward: `model` itself (fp32),
/// or its bf16 working copy whose weights follow `model`'s (mixed precision); the clipping and
/// the optimizer act on `model`'s float gradients and weights.
///
/// An engine is what fit_loop asks of a step's arithmetic (trainer_cuda.cuh has the GPU's):
///   evaluator()                     the model validation runs, its weights current
///   forward_backward(batch, z_loss) the loss, with the step's gradients where clip() sees them
///   aux_loss()                      a mixture of experts' weighted auxiliary losses (else 0)
///   clip(max_norm)                  the global gradient norm, gradients scaled to max_norm (INFINITY: none)
///   update(optimizer, lr, options)  one optimizer step (and what follows it: router biases)
///   resumed(optimizer)              `model` and `optimizer` were loaded from a checkpoint
///   sync_to_host(optimizer)         make `model` and `optimizer` current (before a checkpoint, at the end)
template <class Model, class Work>
class host_engine {
  static constexpr bool mixed = !std::is_same_v<Model, Work>;

 public:
  host_engine(Model& model, Work& work) : model_(model), work_(work) {}

  Work& evaluator() {
    refresh();
    return work_;
  }

  double forward_backward(const lm_batch& batch, double z_loss) {
    refresh();
    work_.zero_grad();
    const double loss = work_.forward_backward(batch.inputs, batch.targets, z_loss);
    if constexpr (mixed) convert_gradients(work_, model_);  // bf16 → float, exact (ADL: nn::convert_gradients)
    return loss;
  }

  double aux_loss() {
    if constexpr (requires { work_.aux_loss(); })
      return work_.aux_loss();
    else
      return 0.0;
  }

  double clip(double max_norm) {
    return optim::clip_grad_norm_each(max_norm, [&](auto&& f) {
      model_.for_each_parameter_and_gradient([&](const std::string&, auto&, auto& g) { f(g); });
    });
  }

  void update(any_optimizer& optimizer, double lr, const trainer_options& o) {
    std::visit(
        [&](auto& opt) {
          opt.begin_step(lr);
          model_.for_each_parameter_and_gradient([&](const std::string& name, auto& w, auto& g) {
            opt.update(name, w, g, weight_decay_for(name, w.extents().rank(), o));
          });
        },
        optimizer);
    if constexpr (mixed) {
      if constexpr (requires { model_.update_router_biases(work_.routing_stats()); })
        model_.update_router_biases(work_.routing_stats());
      work_current_ = false;
    } else if constexpr (requires { model_.update_router_biases(); }) {
      model_.update_router_biases();
    }
  }

  void resumed(any_optimizer&) { work_current_ = !mixed; }
  void sync_to_host(any_optimizer&) {}

 private:
  void refresh() {
    if constexpr (mixed) {
      if (!work_current_) convert_parameters(model_, work_);  // found by ADL (nn::convert_parameters)
      work_current_ = true;
    }
  }

  Model& model_;
  Work& work_;
  bool work_current_ = !mixed;  // whether work's weights equal the masters'
};

/// The loop of fit, its steps run by `engine` (host_engine, or trainer_cuda.cuh's device engine);
/// `model` holds the weights checkpoints save and resume loads.
template <class Model, class Engine>
fit_result fit_loop(Model& model, Engine& engine, const token_dataset& train, const token_dataset* val,
                    const trainer_options& o, std::ostream& log) {
  // Everything is checked before out_dir is touched: a run that cannot start leaves a checkpoint
  // already there as it was.
  check_counts(o);
  if (const std::int64_t window = nn::context_length_of(model); window > 0 && o.context_length > window)
    throw value_error(einlm::detail::concat("trainer: the batch context length ", o.context_length,
                                            " exceeds the model's context_length ", window));
  check_lm_data(train, o.context_length, vocab_size_of(model));
  if (val && o.eval_batches > 0) check_lm_data(*val, o.context_length, vocab_size_of(model));
  const optim::cosine_schedule schedule{o.max_lr, o.min_lr, o.warmup_steps, std::max(o.steps, o.warmup_steps)};
  schedule.check();
  any_optimizer optimizer = make_optimizer(o);
  trainer_state state{.step = 0, .seed = o.seed, .data_draw = 0};
  if (!o.resume_dir.empty()) {
    state = std::visit([&](auto& opt) { return load_checkpoint(o.resume_dir, model, &opt); }, optimizer);
    engine.resumed(optimizer);
    log << "resumed from " << o.resume_dir << " at step " << state.step << "\n";
  }
  std::ofstream metrics;
  if (!o.out_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(o.out_dir, ec);
    if (ec) throw io_error(einlm::detail::concat(o.out_dir, ": cannot create the output directory (", ec.message(), ")"));
    const auto path = (std::filesystem::path(o.out_dir) / "metrics.jsonl").string();
    metrics.open(path, state.step > 0 ? std::ios::app : std::ios::trunc);
    if (!metrics) throw io_error(einlm::detail::concat(path, ": cannot open for writing"));
  }
  bool config_written = false;  // config.json goes with this run's first checkpoint, not before it
  auto checkpoint = [&] {
    if (o.out_dir.empty()) return;
    engine.sync_to_host(optimizer);
    if (!config_written) {
      if constexpr (requires { model.model_config(); })
        save_config((std::filesystem::path(o.out_dir) / "config.json").string(), model.model_config());
      else if constexpr (requires { model.config(); })
        save_config((std::filesystem::path(o.out_dir) / "config.json").string(), model.config());
      config_written = true;
    }
    std::visit([&](const auto& opt) { save_checkpoint(o.out_dir, model, opt, state); }, optimizer);
  };

  fit_result result;
  const auto start = std::chrono::steady_clock::now();
  auto window_start = start;
  std::int64_t window_steps = 0, run_steps = 0;
  const double tokens_per_step = static_cast<double>(o.batch_size * o.context_length);
  auto validate = [&] {
    if (!val) return;
    const double v = evaluate(engine.evaluator(), *val, o.batch_size, o.context_length, o.eval_batches, state.seed);
    result.val_loss = v;
    result.val_losses.emplace_back(state.step, v);
    if (o.progress_bar) log << "\n";
    log << "step " << state.step << ": validation loss " << detail::format("%.4f", v) << "\n";
    if (metrics) metrics << "{\"step\": " << state.step << ", \"val_loss\": " << detail::json_number(v) << "}\n" << std::flush;
  };

  while (state.step < o.steps) {
    const auto batch = get_batch(train, o.batch_size, o.context_length, random_stream{state.seed, 0}, state.data_draw);
    const double loss = engine.forward_backward(batch, o.z_loss);
    const double aux_loss = engine.aux_loss();  // a mixture of experts' weighted balance and router losses
    const double norm = engine.clip(o.grad_clip > 0 ? o.grad_clip : INFINITY);
    if (!std::isfinite(loss + aux_loss) || !std::isfinite(norm)) {
      if (o.progress_bar) log << "\n";
      engine.sync_to_host(optimizer);  // the state before this step
      throw training_error(einlm::detail::concat(
          "training stopped at step ", state.step + 1, ": the ",
          !std::isfinite(loss) ? "loss" : !std::isfinite(aux_loss) ? "auxiliary loss" : "gradient norm", " is ",
          !std::isfinite(loss) ? loss : !std::isfinite(aux_loss) ? aux_loss : norm,
          o.out_dir.empty() ? std::string() : einlm::detail::concat("; the last checkpoint in ", o.out_dir, " is intact")));
    }
    const double lr = schedule(state.step);
    engine.update(optimizer, lr, o);
    ++state.step;
    ++state.data_draw;
    ++window_steps;
    ++run_steps;
    result.loss = loss;
    result.losses.emplace_back(state.step, loss);

    if (state.step % o.log_every == 0 || state.step == o.steps) {
      const auto now = std::chrono::steady_clock::now();
      const double window = std::chrono::duration<double>(now - window_start).count();
      const double steps_per_second = window > 0 ? static_cast<double>(window_steps) / window : 0;
      const double tps = steps_per_second * tokens_per_step;
      const double mfu = o.flops_per_step > 0 && o.peak_flops > 0 ? steps_per_second * o.flops_per_step / o.peak_flops : NAN;
      const double eta = steps_per_second > 0 ? static_cast<double>(o.steps - state.step) / steps_per_second : NAN;
      std::string line;
      if (o.progress_bar) {
        const int width = 24, filled = static_cast<int>(width * state.step / std::max<std::int64_t>(o.steps, 1));
        line = "\r[" + std::string(static_cast<std::size_t>(filled), '#') + std::string(static_cast<std::size_t>(width - filled), '.') + "] ";
      }
      line += einlm::detail::concat("step ", state.step, "/", o.steps, "  loss ", detail::format("%.4f", loss), "  lr ",
                                    detail::format("%.2e", lr), "  |g| ", detail::format("%.3f", norm), "  ",
                                    detail::format("%.0f", tps), " tok/s");
      if (aux_loss != 0) line += "  aux " + detail::format("%.4f", aux_loss);
      if (std::isfinite(mfu)) line += "  MFU " + detail::format("%.2f%%", 100 * mfu);
      line += "  ETA " + detail::duration_text(eta);
      log << line << (o.progress_bar ? "   " : "\n") << std::flush;
      if (metrics)
        metrics << "{\"step\": " << state.step << ", \"loss\": " << detail::json_number(loss) << ", \"lr\": " << detail::json_number(lr)
                << ", \"grad_norm\": " << detail::json_number(norm) << ", \"tokens_per_second\": " << detail::json_number(tps)
                << ", \"mfu\": " << (std::isfinite(mfu) ? detail::json_number(mfu) : std::string("null"))
                << (aux_loss != 0 ? ", \"aux_loss\": " + detail::json_number(aux_loss) : std::string()) << "}\n"
                << std::flush;
      window_start = now;
      window_steps = 0;
    }
    if (o.eval_every > 0 && state.step % o.eval_every == 0 && state.step != o.steps) validate();
    if (o.checkpoint_every > 0 && state.step % o.checkpoint_every == 0 && state.step != o.steps) checkpoint();
  }
  if (o.progress_bar) log << "\n";
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.tokens_per_second = result.seconds > 0 ? static_cast<double>(run_steps) * tokens_per_step / result.seconds : 0;
  result.steps = state.step;
  validate();
  engine.sync_to_host(optimizer);
  checkpoint();
  if (metrics) {
    metrics.close();
    const auto dir = std::filesystem::path(o.out_dir);
    detail::plot_metrics((dir / "metrics.jsonl").string(), (dir / "loss.png").string());
  }
  return result;
}

}  // namespace detail

/// Trains `model` on `train` (validating on `val` when not null); see the file comment.
template <class Model>
fit_result fit(Model& model, const token_dataset& train, const token_dataset* val, const trainer_options& o,
               std::ostream& log) {
  if (o.precision == nn::precision::bf16_mixed) {
    if constexpr (requires { typename Model::template rebind<bf16>; }) {
      if constexpr (std::is_same_v<typename Model::value_type, float>) {
        auto work = detail::working_copy(model);  // Model::rebind<bf16>
        detail::host_engine engine(model, work);
        return detail::fit_loop(model, engine, train, val, o, log);
      } else {
        throw value_error("trainer: bf16 mixed precision keeps float master weights: train a float model");
      }
    } else {
      throw value_error("trainer: bf16 mixed precision needs a model type with a bf16 working copy (rebind<bf16>, as "
                        "nn::transformer_lm and blocks::model have)");
    }
  }
  detail::host_engine engine(model, model);
  return detail::fit_loop(model, engine, train, val, o, log);
}

}  // namespace einlm::train
