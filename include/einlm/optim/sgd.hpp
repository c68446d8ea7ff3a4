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
// Each update is one pass over the parameter, its buffer and its gradient (detail::sgd_kernel,
// detail::adagrad_kernel: threaded, on the widest packets of this CPU), as AdamW's is; the
// expressions they replaced (detail::sgd_expressions, detail::adagrad_expressions) are kept as
// the reference the tests compare them with and the benchmarks' baseline.
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
#include "einlm/core/math.hpp"
#include "einlm/core/safetensors.hpp"
#include "einlm/core/simd.hpp"
#include "einlm/core/simd_dispatch.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/exec/cpu.hpp"
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

struct adagrad_options {
  double lr_decay = 0.0;
  double weight_decay = 0.0;
  double initial_accumulator_value = 0.0;
  double eps = 1e-10;
};

namespace detail {

/// One SGD step's scalars, in T, and which of its forms it takes.
template <class T>
struct sgd_coefficients {
  T lr, weight_decay, momentum, keep;  // keep = 1 − dampening
  bool has_momentum, first, nesterov;  // first: the buffer starts as the gradient
  static sgd_coefficients of(const sgd_options& o, double lr, double weight_decay, bool first) {
    return {static_cast<T>(lr),         static_cast<T>(weight_decay), static_cast<T>(o.momentum),
            static_cast<T>(1.0 - o.dampening), o.momentum != 0, first, o.nesterov};
  }
};

/// One SGD step over n contiguous elements, in place, in one pass, on packets of B bytes (b, the
/// momentum buffer, is unused without momentum):
///   d ← g + λθ;  b ← d (first step) or μb + (1 − dampening)d;  θ ← θ − lr·(d + μb if nesterov, else b)
/// (θ ← θ − lr·d without momentum), in the order of operations of sgd_expressions.
template <class T>
struct sgd_kernel {
  /// The step of one element or one packet X, with the coefficients as X.
  template <class X>
  static void element(const sgd_coefficients<T>& k, X lr, X wd, X mu, X keep, X g, X& p, X& b) {
    const X d = g + wd * p;
    if (!k.has_momentum) {
      p = p - lr * d;
      return;
    }
    b = k.first ? d : mu * b + keep * d;
    p = k.nesterov ? p - lr * (d + mu * b) : p - lr * b;
  }

  template <int B>
  static void run(index_t n, T* p, T* b, const T* g, const sgd_coefficients<T>& k) {
    index_t i = 0;
#if EINLM_HAS_PACKETS
    using V = simd::packet<T, B>;
    const V lr = simd::broadcast<V>(k.lr), wd = simd::broadcast<V>(k.weight_decay);
    const V mu = simd::broadcast<V>(k.momentum), keep = simd::broadcast<V>(k.keep);
    for (; i + V::size <= n; i += V::size) {
      V pi = simd::load<T, B>(p + i);
      V bi = k.has_momentum && !k.first ? simd::load<T, B>(b + i) : V{};
      element(k, lr, wd, mu, keep, simd::load<T, B>(g + i), pi, bi);
      simd::store(p + i, pi);
      if (k.has_momentum) simd::store(b + i, bi);
    }
#endif
    for (; i < n; ++i) {
      T bi = k.has_momentum && !k.first ? b[i] : T(0);
      element(k, k.lr, k.weight_decay, k.momentum, k.keep, g[i], p[i], bi);
      if (k.has_momentum) b[i] = bi;
    }
  }
};

/// The same step as expressions on the CPU executor (the update before sgd_kernel): the reference
/// the kernel is tested against and benchmarked beside.
template <class T, class PV, class BV, class GV>
void sgd_expressions(const PV& flat_p, const BV& b, const GV& flat_g, const sgd_coefficients<T>& k) {
  const T lr = k.lr, wd = k.weight_decay, mu = k.momentum, keep = k.keep;
  if (!k.has_momentum) {
    assign(flat_p, flat_p - lr * (flat_g + wd * flat_p));  // (N,)
    return;
  }
  if (k.first) assign(b, flat_g + wd * flat_p);            // (N,)
  else assign(b, mu * b + keep * (flat_g + wd * flat_p));  // (N,)
  if (k.nesterov) assign(flat_p, flat_p - lr * (flat_g + wd * flat_p + mu * b));  // (N,)
  else assign(flat_p, flat_p - lr * b);                                           // (N,)
}

/// One AdaGrad step's scalars, in T: the decayed learning rate lr / (1 + (t − 1)·lr_decay), λ, ε.
template <class T>
struct adagrad_coefficients {
  T lr, weight_decay, eps;
};

/// One AdaGrad step over n contiguous elements, in place, in one pass, on packets of B bytes:
///   d ← g + λθ;  s ← s + d·d;  θ ← θ − lr·d / (√s + ε)
/// in the order of operations of adagrad_expressions.
template <class T>
struct adagrad_kernel {
  template <int B>
  static void run(index_t n, T* p, T* s, const T* g, const adagrad_coefficients<T>& k) {
    index_t i = 0;
#if EINLM_HAS_PACKETS
    using V = simd::packet<T, B>;
    const V lr = simd::broadcast<V>(k.lr), wd = simd::broadcast<V>(k.weight_decay), eps = simd::broadcast<V>(k.eps);
    for (; i + V::size <= n; i += V::size) {
      const V pi = simd::load<T, B>(p + i);
      const V d = simd::load<T, B>(g + i) + wd * pi;
      const V si = simd::load<T, B>(s + i) + d * d;
      simd::store(s + i, si);
      simd::store(p + i, pi - lr * d / (math::sqrt(si) + eps));
    }
#endif
    for (; i < n; ++i) {
      const T d = g[i] + k.weight_decay * p[i];
      s[i] = s[i] + d * d;
      p[i] = p[i] - k.lr * d / (math::sqrt(s[i]) + k.eps);
    }
  }
};

/// The same step as expressions on the CPU executor (the update before adagrad_kernel).
template <class T, class PV, class SV, class GV>
void adagrad_expressions(const PV& flat_p, const SV& s, const GV& flat_g, const adagrad_coefficients<T>& k) {
  const T lr = k.lr, wd = k.weight_decay, eps = k.eps;
  assign(s, s + (flat_g + wd * flat_p) * (flat_g + wd * flat_p));              // (N,)
  assign(flat_p, flat_p - lr * (flat_g + wd * flat_p) / (sqrt(s) + eps));      // (N,)
}

/// Runs Kernel over n elements of the flat arrays, threaded through for_each_unit: each pointer
/// argument is offset to the unit's first element, the last argument (the coefficients) is passed
/// as it is.
template <class Kernel, class T, class K>
void run_threaded(index_t n, T* p, T* buffer, const T* g, const K& k) {
  einlm::detail::for_each_unit(n, [&](index_t first, index_t count) {
    simd::dispatch<Kernel>(count, p + first, buffer ? buffer + first : nullptr, g + first, k);
  });
}

}  // namespace detail

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
  /// The momentum buffers by parameter name (set directly only to restore a saved state).
  const std::map<std::string, detail::named_buffers::buffer>& state() const { return momentum_.all(); }
  std::map<std::string, detail::named_buffers::buffer>& state() { return momentum_.all(); }

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
    bool fresh = false;
    T* b = options_.momentum == 0 ? nullptr : momentum_.get<T>("sgd", name, n, 0.0, fresh).data();  // (N,)
    const auto k = detail::sgd_coefficients<T>::of(options_, learning_rate(), weight_decay, fresh);
    detail::with_flat_gradient<T>(as_view(grad), n, [&](const auto& flat_g) {  // (N,)
      detail::run_threaded<detail::sgd_kernel<T>>(n, p.data(), b, flat_g.data(), k);
    });
  }

 private:
  sgd_options options_;
  detail::step_counter counter_;
  detail::named_buffers momentum_;
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
  /// The sums of squared gradients by parameter name (set directly only to restore a saved state).
  const std::map<std::string, detail::named_buffers::buffer>& state() const { return sums_.all(); }
  std::map<std::string, detail::named_buffers::buffer>& state() { return sums_.all(); }

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
    bool fresh = false;
    auto& s = sums_.get<T>("adagrad", name, n, options_.initial_accumulator_value, fresh);  // (N,)
    const detail::adagrad_coefficients<T> k{
        static_cast<T>(learning_rate() / (1.0 + static_cast<double>(step() - 1) * options_.lr_decay)),
        static_cast<T>(weight_decay), static_cast<T>(options_.eps)};
    detail::with_flat_gradient<T>(as_view(grad), n, [&](const auto& flat_g) {  // (N,)
      detail::run_threaded<detail::adagrad_kernel<T>>(n, p.data(), s.data(), flat_g.data(), k);
    });
  }

 private:
  adagrad_options options_;
  detail::step_counter counter_;
  detail::named_buffers sums_;
};

}  // namespace einlm::optim
