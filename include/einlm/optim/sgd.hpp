// einlm/optim/sgd.hpp — stochastic gradient descent with momentum, and AdaGrad: the updates of
// torch.optim.SGD and torch.optim.Adagrad.
//
//   SGD:      g ← g + λθ                                   (coupled weight decay)
//             b ← g on the first step, else μb + (1 − dampening)g    (momentum μ > 0)
//             g ← g + μb (nesterov) or b
//             θ ← θ − lr·g
//   AdaGrad:  g ← g + λθ;  s ← s + g²  (s starts at initial_accumulator_value)
//             θ ← θ − lr / (1 + (t − 1)·lr_decay) · g / (√s + ε)
//
//   optim::sgd opt({.momentum = 0.9, .weight_decay = 1e-4});
//   opt.begin_step(lr);                      // t ← t + 1
//   opt.update("layers.0.ffn.w1.weight", w1, grad_w1[, weight_decay]);
//
// The same interface and rules as optim::adamw (optim/adamw.hpp): host float or double
// parameters, contiguous; gradients of the same shape, any strides and floating type; the state
// (SGD's momentum buffer, AdaGrad's sum of squares) lives in the optimizer by parameter name, in
// the parameter's type, and state() exposes it. Options are checked on construction (value_error).
//
// Checkpoints (optim/state_io.hpp), as adamw's: write_state(w) puts metadata "optimizer" = "sgd" or
// "adagrad", "optimizer_step" and the options, and the buffers as "<name>.momentum_buffer" (SGD;
// none without momentum) or "<name>.sum" (AdaGrad) — torch.optim's state keys — into a
// safetensors_writer; read_state(f, params) replaces options, step and buffers with the file's for
// the parameters of `params` after checking everything (another optimizer's file, a missing
// buffer, another dtype or size: an error naming the file and the tensor; *this unchanged).
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include "einlm/core/error.hpp"
#include "einlm/core/safetensors.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/expr.hpp"
#include "einlm/optim/state_io.hpp"
#include "einlm/optim/update.hpp"

namespace einlm::optim {

namespace detail {

/// One flat (N,) state tensor per parameter name, in the parameter's type.
class named_buffers {
 public:
  using buffer = std::variant<tensor<float, dims<1>, host>, tensor<double, dims<1>, host>>;

  /// The buffer of `name` (created with `initial` on its first use); `fresh` tells whether it was.
  template <class T>
  tensor<T, dims<1>, host>& get(const char* who, const std::string& name, index_t n, double initial, bool& fresh) {
    auto it = buffers_.find(name);
    fresh = it == buffers_.end();
    if (fresh) {
      tensor<T, dims<1>, host> b{dims<1>(n)};  // (N,)
      b = static_cast<T>(initial);
      it = buffers_.emplace(name, std::move(b)).first;
    }
    auto* b = std::get_if<tensor<T, dims<1>, host>>(&it->second);
    if (!b || b->size() != n)
      throw shape_error(einlm::detail::concat(who, ": parameter '", name, "' changed its element type or size (", n,
                                              " elements now) since its first update"));
    return *b;
  }
  const std::map<std::string, buffer>& all() const { return buffers_; }
  std::map<std::string, buffer>& all() { return buffers_; }

  /// The buffers "<name><suffix>" of f for the parameters of `params` that f has one of, checked
  /// (read_buffer); nothing is kept when one does not fit.
  template <class Params>
  static named_buffers read(const safetensors_file& f, Params& params, const std::string& suffix) {
    named_buffers out;
    params.for_each_parameter([&](const std::string& name, const auto& t) {
      using T = typename std::remove_cvref_t<decltype(t)>::value_type;
      if (!f.contains(name + suffix)) return;  // never updated (frozen so far)
      out.buffers_.emplace(name, read_buffer<T>(f, name + suffix, name, t.size()));  // (N,)
    });
    return out;
  }

 private:
  std::map<std::string, buffer> buffers_;
};

/// The step counter and learning rate every optimizer keeps.
class step_counter {
 public:
  std::int64_t step() const { return step_; }
  double learning_rate() const { return lr_; }
  void set_step(std::int64_t step) { step_ = step; }
  void begin(const char* who, double lr) {
    if (!(lr >= 0) || !std::isfinite(lr))
      throw value_error(einlm::detail::concat(who, ": the learning rate must be finite and ≥ 0, got ", lr));
    lr_ = lr;
    ++step_;
  }

 private:
  std::int64_t step_ = 0;
  double lr_ = 0;
};

}  // namespace detail

struct sgd_options {
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};

class sgd {
 public:
  /// The name of this optimizer in checkpoints (metadata "optimizer").
  static constexpr const char* kind = "sgd";

  explicit sgd(const sgd_options& options = {}) : options_(options) {
    auto bad = [](const char* what, double value) { throw value_error(einlm::detail::concat("sgd: ", what, ", got ", value)); };
    if (!(options.momentum >= 0)) bad("momentum must be ≥ 0", options.momentum);
    if (!(options.dampening >= 0 && options.dampening <= 1)) bad("dampening must be in [0, 1]", options.dampening);
    if (!(options.weight_decay >= 0)) bad("weight_decay must be ≥ 0", options.weight_decay);
    if (options.nesterov && (options.momentum == 0 || options.dampening != 0))
      throw value_error("sgd: nesterov needs a momentum > 0 and zero dampening");
  }

  const sgd_options& options() const { return options_; }
  std::int64_t step() const { return counter_.step(); }
  double learning_rate() const { return counter_.learning_rate(); }
  void begin_step(double lr) { counter_.begin("sgd", lr); }
  void set_step(std::int64_t step) { counter_.set_step(step); }
  /// The momentum buffers by parameter name.
  const std::map<std::string, detail::named_buffers::buffer>& state() const { return momentum_.all(); }

  /// Writes the kind, the options, the step count and the momentum buffers into w.
  void write_state(safetensors_writer& w) const {
    w.metadata["optimizer"] = kind;
    w.metadata["optimizer_step"] = std::to_string(step());
    w.metadata["momentum"] = detail::exact_text(options_.momentum);
    w.metadata["dampening"] = detail::exact_text(options_.dampening);
    w.metadata["weight_decay"] = detail::exact_text(options_.weight_decay);
    w.metadata["nesterov"] = options_.nesterov ? "true" : "false";
    detail::write_buffers(w, momentum_.all(), ".momentum_buffer");
  }

  /// Replaces options, step count and momentum buffers with f's; *this is unchanged when f does
  /// not fit the parameters of `params`.
  template <class Params>
  void read_state(const safetensors_file& f, Params& params) {
    detail::check_kind(f, kind);
    sgd restored({.momentum = detail::metadata_number<double>(f, "momentum"),
                  .dampening = detail::metadata_number<double>(f, "dampening"),
                  .weight_decay = detail::metadata_number<double>(f, "weight_decay"),
                  .nesterov = detail::metadata_flag(f, "nesterov")});
    restored.set_step(detail::metadata_number<std::int64_t>(f, "optimizer_step"));
    restored.momentum_ = detail::named_buffers::read(f, params, ".momentum_buffer");
    *this = std::move(restored);
  }

  template <class P, class G>
  void update(const std::string& name, P&& param, const G& grad) {
    update(name, std::forward<P>(param), grad, options_.weight_decay);
  }

  template <class P, class G>
  void update(const std::string& name, P&& param, const G& grad, double weight_decay) {
    auto p = as_view(std::forward<P>(param));
    const index_t n = detail::check_update("sgd", name, p, as_view(grad), step());
    using T = typename decltype(p)::value_type;
    const auto flat_p = reshape(p, dims<1>(n));  // (N,)
    const T lr = static_cast<T>(learning_rate()), wd = static_cast<T>(weight_decay);
    const T mu = static_cast<T>(options_.momentum), keep = static_cast<T>(1.0 - options_.dampening);
    detail::with_flat_gradient<T>(as_view(grad), n, [&](const auto& flat_g) {  // (N,)
      if (options_.momentum == 0) {
        assign(flat_p, flat_p - lr * (flat_g + wd * flat_p));
        return;
      }
      bool fresh = false;
      auto& b = momentum_.get<T>("sgd", name, n, 0.0, fresh);  // (N,)
      if (fresh) assign(b, flat_g + wd * flat_p);
      else assign(b, mu * b + keep * (flat_g + wd * flat_p));
      if (options_.nesterov) assign(flat_p, flat_p - lr * (flat_g + wd * flat_p + mu * b));
      else assign(flat_p, flat_p - lr * b);
    });
  }

 private:
  sgd_options options_;
  detail::step_counter counter_;
  detail::named_buffers momentum_;
};

struct adagrad_options {
  double lr_decay = 0.0;
  double weight_decay = 0.0;
  double initial_accumulator_value = 0.0;
  double eps = 1e-10;
};

class adagrad {
 public:
  /// The name of this optimizer in checkpoints (metadata "optimizer").
  static constexpr const char* kind = "adagrad";

  explicit adagrad(const adagrad_options& options = {}) : options_(options) {
    auto bad = [](const char* what, double value) { throw value_error(einlm::detail::concat("adagrad: ", what, ", got ", value)); };
    if (!(options.lr_decay >= 0)) bad("lr_decay must be ≥ 0", options.lr_decay);
    if (!(options.weight_decay >= 0)) bad("weight_decay must be ≥ 0", options.weight_decay);
    if (!(options.initial_accumulator_value >= 0))
      bad("initial_accumulator_value must be ≥ 0", options.initial_accumulator_value);
    if (!(options.eps >= 0)) bad("eps must be ≥ 0", options.eps);
  }

  const adagrad_options& options() const { return options_; }
  std::int64_t step() const { return counter_.step(); }
  double learning_rate() const { return counter_.learning_rate(); }
  void begin_step(double lr) { counter_.begin("adagrad", lr); }
  void set_step(std::int64_t step) { counter_.set_step(step); }
  /// The sums of squared gradients by parameter name.
  const std::map<std::string, detail::named_buffers::buffer>& state() const { return sums_.all(); }

  /// Writes the kind, the options, the step count and the sums into w.
  void write_state(safetensors_writer& w) const {
    w.metadata["optimizer"] = kind;
    w.metadata["optimizer_step"] = std::to_string(step());
    w.metadata["lr_decay"] = detail::exact_text(options_.lr_decay);
    w.metadata["weight_decay"] = detail::exact_text(options_.weight_decay);
    w.metadata["initial_accumulator_value"] = detail::exact_text(options_.initial_accumulator_value);
    w.metadata["eps"] = detail::exact_text(options_.eps);
    detail::write_buffers(w, sums_.all(), ".sum");
  }

  /// Replaces options, step count and sums with f's; *this is unchanged when f does not fit the
  /// parameters of `params`.
  template <class Params>
  void read_state(const safetensors_file& f, Params& params) {
    detail::check_kind(f, kind);
    adagrad restored({.lr_decay = detail::metadata_number<double>(f, "lr_decay"),
                      .weight_decay = detail::metadata_number<double>(f, "weight_decay"),
                      .initial_accumulator_value = detail::metadata_number<double>(f, "initial_accumulator_value"),
                      .eps = detail::metadata_number<double>(f, "eps")});
    restored.set_step(detail::metadata_number<std::int64_t>(f, "optimizer_step"));
    restored.sums_ = detail::named_buffers::read(f, params, ".sum");
    *this = std::move(restored);
  }

  template <class P, class G>
  void update(const std::string& name, P&& param, const G& grad) {
    update(name, std::forward<P>(param), grad, options_.weight_decay);
  }

  template <class P, class G>
  void update(const std::string& name, P&& param, const G& grad, double weight_decay) {
    auto p = as_view(std::forward<P>(param));
    const index_t n = detail::check_update("adagrad", name, p, as_view(grad), step());
    using T = typename decltype(p)::value_type;
    const auto flat_p = reshape(p, dims<1>(n));  // (N,)
    bool fresh = false;
    auto& s = sums_.get<T>("adagrad", name, n, options_.initial_accumulator_value, fresh);  // (N,)
    const T clr = static_cast<T>(learning_rate() / (1.0 + static_cast<double>(step() - 1) * options_.lr_decay));
    const T wd = static_cast<T>(weight_decay), eps = static_cast<T>(options_.eps);
    detail::with_flat_gradient<T>(as_view(grad), n, [&](const auto& flat_g) {  // (N,)
      assign(s, s + (flat_g + wd * flat_p) * (flat_g + wd * flat_p));
      assign(flat_p, flat_p - clr * (flat_g + wd * flat_p) / (sqrt(s) + eps));
    });
  }

 private:
  adagrad_options options_;
  detail::step_counter counter_;
  detail::named_buffers sums_;
};

}  // namespace einlm::optim
