// einlm/train/checkpoint.hpp — training checkpoints in one directory, safe against a crash at any
// moment of a save.
//
//   train::save_checkpoint(dir, params, optimizer, state);     // state: step, seed, data draw, extras
//   train::trainer_state s = train::load_checkpoint(dir, params, &optimizer);
//
// `params` is any object with `for_each_parameter(f)` calling f(name, tensor) for each parameter
// (a host tensor of float or double; the names are the checkpoint's tensor names, CS336's
// state-dict convention). `optimizer` is an optim::adamw, optim::sgd or optim::adagrad — any type
// with write_state(safetensors_writer&) and read_state(const safetensors_file&, params): each
// optimizer stores and restores its own state (optim/state_io.hpp). Files in `dir`:
//   model.safetensors       the parameters under their names (loadable by PyTorch's safetensors)
//   optimizer.safetensors   the optimizer's state: metadata "optimizer" = "adamw", "sgd" or
//                           "adagrad", "optimizer_step" and its options; tensors "<name>.exp_avg"
//                           and "<name>.exp_avg_sq" (AdamW), "<name>.momentum_buffer" (SGD with
//                           momentum; none without) or "<name>.sum" (AdaGrad), one per parameter
//                           updated so far, in the parameter's dtype
//   state.safetensors       no tensors; the trainer state as metadata ("step", "seed", "data_draw",
//                           and any extra strings)
// Every file records the step it belongs to. A save writes each file atomically (temporary file,
// fsync, rename), first moving the previous version to "<file>.prev", and state.safetensors last.
// A load reads the step from state.safetensors and takes, for each other file, whichever of
// "<file>" and "<file>.prev" belongs to that step — so a crash at any point of a save leaves the
// previous checkpoint loadable, and once state.safetensors is replaced the new one is. A
// checkpoint whose files do not agree, a missing parameter or optimizer buffer, or a tensor of
// another shape or dtype is an io_error or shape_error naming the file and the tensor; loading
// into an optimizer of another kind than the one saved is an io_error naming both kinds; nothing
// is modified until every tensor has been checked. A `dir` that is missing or holds no
// state.safetensors is an io_error saying there is no checkpoint there.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "einlm/core/error.hpp"
#include "einlm/core/safetensors.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/optim/adamw.hpp"
#include "einlm/optim/sgd.hpp"

namespace einlm::train {

/// What a trainer needs besides the model and the optimizer to continue exactly where it stopped.
struct trainer_state {
  std::int64_t step = 0;          // optimizer steps taken
  std::uint64_t seed = 0;         // the run's random seed
  std::uint64_t data_draw = 0;    // the next get_batch draw
  std::map<std::string, std::string> extra = {};  // anything else, as strings
};

namespace detail {

using optim::detail::exact_text;
using optim::detail::metadata_number;

/// Writes `w` to dir/name, keeping the current dir/name as dir/name.prev.
inline void replace_keeping_previous(const safetensors_writer& w, const std::filesystem::path& dir, const std::string& name) {
  const auto path = dir / name, prev = dir / (name + ".prev");
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    std::filesystem::rename(path, prev, ec);
    if (ec) throw io_error(einlm::detail::concat(path.string(), ": cannot keep the previous version as ", prev.string(), " (",
                                                 ec.message(), ")"));
  }
  w.write(path.string());
}

/// dir/name or dir/name.prev, whichever belongs to `step`.
inline safetensors_file open_for_step(const std::filesystem::path& dir, const std::string& name, std::int64_t step) {
  std::string found;
  for (const std::string& candidate : {name, name + ".prev"}) {
    const auto path = dir / candidate;
    if (!std::filesystem::exists(path)) continue;
    safetensors_file f(path.string());
    const std::int64_t s = metadata_number<std::int64_t>(f, "step");
    if (s == step) return f;
    found += einlm::detail::concat(found.empty() ? "" : ", ", candidate, " has step ", s);
  }
  throw io_error(einlm::detail::concat(dir.string(), ": no ", name, " for step ", step, " (",
                                       found.empty() ? std::string("no such file") : found, ")"));
}

/// Throws an io_error naming `dir` unless it is a directory holding `required` (a checkpoint's state
/// file by default); `writer` names what writes that file, for the message.
inline void check_is_checkpoint(const std::filesystem::path& dir, std::string_view required = "state.safetensors",
                                std::string_view writer = "a training run") {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    throw io_error(einlm::detail::concat(dir.string(), ": no checkpoint there (",
                                         std::filesystem::exists(dir, ec) ? "not a directory" : "no such directory",
                                         ")"));
  if (!std::filesystem::exists(dir / required, ec))
    throw io_error(einlm::detail::concat(dir.string(), ": no checkpoint there (no ", required, "; ", writer,
                                         " writes one with its first checkpoint)"));
}

}  // namespace detail

/// Saves parameters, the optimizer's state and the trainer state to `dir` (created if missing).
template <class Params, class Optimizer>
void save_checkpoint(const std::string& dir, Params& params, const Optimizer& opt, const trainer_state& state) {
  const std::filesystem::path d(dir);
  std::error_code ec;
  std::filesystem::create_directories(d, ec);
  if (ec) throw io_error(einlm::detail::concat(dir, ": cannot create the checkpoint directory (", ec.message(), ")"));
  const std::string step = std::to_string(state.step);

  safetensors_writer model;
  model.metadata["format"] = "pt";
  model.metadata["step"] = step;
  params.for_each_parameter([&](const std::string& name, const auto& t) { model.add(name, t); });

  safetensors_writer optimizer;
  optimizer.metadata["step"] = step;
  opt.write_state(optimizer);  // "optimizer" = its kind, its options, step count and buffers

  safetensors_writer trainer;
  trainer.metadata = state.extra;
  trainer.metadata["step"] = step;
  trainer.metadata["seed"] = std::to_string(state.seed);
  trainer.metadata["data_draw"] = std::to_string(state.data_draw);

  detail::replace_keeping_previous(model, d, "model.safetensors");
  detail::replace_keeping_previous(optimizer, d, "optimizer.safetensors");
  trainer.write((d / "state.safetensors").string());  // the commit point
}

/// Loads the checkpoint in `dir` into params (and opt, when given: an optim::adamw, optim::sgd or
/// optim::adagrad of the kind the checkpoint was saved from); returns the trainer state.
template <class Params, class Optimizer = optim::adamw>
trainer_state load_checkpoint(const std::string& dir, Params& params, Optimizer* opt = nullptr) {
  const std::filesystem::path d(dir);
  detail::check_is_checkpoint(d);
  const safetensors_file state_file((d / "state.safetensors").string());
  trainer_state state;
  state.step = detail::metadata_number<std::int64_t>(state_file, "step");
  state.seed = detail::metadata_number<std::uint64_t>(state_file, "seed");
  state.data_draw = detail::metadata_number<std::uint64_t>(state_file, "data_draw");
  for (const auto& [k, v] : state_file.metadata())
    if (k != "step" && k != "seed" && k != "data_draw") state.extra[k] = v;

  const safetensors_file model = detail::open_for_step(d, "model.safetensors", state.step);
  // Check every parameter before changing any.
  params.for_each_parameter([&](const std::string& name, const auto& t) { model.check_fits(name, t); });
  if (opt) {
    const safetensors_file optimizer = detail::open_for_step(d, "optimizer.safetensors", state.step);
    opt->read_state(optimizer, params);  // checks all of its state before replacing *opt
  }
  params.for_each_parameter([&](const std::string& name, auto& t) { model.load_into(name, t); });
  return state;
}

/// The same without an optimizer (the parameters and the trainer state only).
template <class Params>
trainer_state load_checkpoint(const std::string& dir, Params& params, std::nullptr_t) {
  return load_checkpoint(dir, params, static_cast<optim::adamw*>(nullptr));
}

}  // namespace einlm::train
