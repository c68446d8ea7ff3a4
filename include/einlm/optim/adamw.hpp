// einlm/optim/adamw.hpp — AdamW (Loshchilov & Hutter), the update of torch.optim.AdamW and CS336:
//
//   θ ← θ·(1 − lr·λ)                                 decoupled weight decay, first
//   m ← β₁m + (1 − β₁)g,   v ← β₂v + (1 − β₂)g²
//   θ ← θ − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)  bias-corrected step
//
//   adamw opt({.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1});
//   opt.begin_step(schedule(it));          // t ← t + 1; the learning rate of this step
//   opt.update("layers.0.ffn.w1.weight", w1, grad_w1);   // one call per parameter
//   opt.update("ln_final.weight", g, grad_g, 0.0);       // a per-parameter weight decay
//
// Parameters are host tensors or views of float or double with a contiguous layout; gradients are
// host arrays of the same shape (any strides, any floating type). The moments m and v live in the
// optimizer, one pair per parameter name, in float for float parameters and double for double
// ones; they are created (zero) on a name's first update, and a later update of the name with a
// different number of elements is an error naming it. Each update is one pass over the parameter,
// its moments and its gradient (detail::adamw_kernel: threaded, on the widest packets of this CPU;
// a second pass copies the gradient first when it is not a contiguous array of the moments'
// type). step() is the number of begin_step() calls; state() exposes the moments by name (with
// set_step() to restore the count).
//
// Checkpoints (optim/state_io.hpp): write_state(w) puts metadata "optimizer" = "adamw",
// "optimizer_step" and the options, and the tensors "<name>.exp_avg" / "<name>.exp_avg_sq", into a
// safetensors_writer; read_state(f, params) replaces options, step and moments with those of the
// file for the parameters of `params` (for_each_parameter(fn) calling fn(name, tensor)), after
// checking everything: another optimizer's file, a missing moment, another dtype or size is an
// error naming the file and the tensor, and the optimizer is then unchanged.
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
#include "einlm/expr.hpp"
#include "einlm/optim/state_io.hpp"
#include "einlm/optim/update.hpp"

namespace einlm::optim {

struct adamw_options {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;
};

/// The moments of one parameter, flattened.
template <class S>
struct adamw_moments {
  tensor<S, dims<1>, host> m, v;  // (N,), (N,)
};

namespace detail {

/// One step's scalars of the update, in T: β₁, 1 − β₁, β₂, 1 − β₂, the decay factor 1 − lr·λ,
/// the step size lr/(1 − β₁ᵗ), 1/√(1 − β₂ᵗ) and ε.
template <class T>
struct adamw_coefficients {
  T b1, one_minus_b1, b2, one_minus_b2, decay, step_size, inv_sqrt_bc2, eps;
  static adamw_coefficients of(const adamw_options& o, double lr, double weight_decay, std::int64_t step) {
    const double t = static_cast<double>(step);
    const T b1 = static_cast<T>(o.beta1), b2 = static_cast<T>(o.beta2);
    return {b1,
            T(1) - b1,
            b2,
            T(1) - b2,
            static_cast<T>(1.0 - lr * weight_decay),
            static_cast<T>(lr / (1.0 - std::pow(o.beta1, t))),
            static_cast<T>(1.0 / std::sqrt(1.0 - std::pow(o.beta2, t))),
            static_cast<T>(o.eps)};
  }
};

/// One AdamW step over n contiguous elements, in place, in one pass, on packets of B bytes:
///   m ← β₁m + (1 − β₁)g,   v ← β₂v + (1 − β₂)g·g,   p ← p·decay − step_size·m / (√v·c + ε)
/// in the order of operations of adamw_expressions (equal up to FMA contraction).
template <class T>
struct adamw_kernel {
  template <int B>
  static void run(index_t n, T* p, T* m, T* v, const T* g, const adamw_coefficients<T>& k) {
    index_t i = 0;
#if EINLM_HAS_PACKETS
    using V = simd::packet<T, B>;
    const V b1 = simd::broadcast<V>(k.b1), c1 = simd::broadcast<V>(k.one_minus_b1);
    const V b2 = simd::broadcast<V>(k.b2), c2 = simd::broadcast<V>(k.one_minus_b2);
    const V decay = simd::broadcast<V>(k.decay), step_size = simd::broadcast<V>(k.step_size);
    const V inv_sqrt_bc2 = simd::broadcast<V>(k.inv_sqrt_bc2), eps = simd::broadcast<V>(k.eps);
    for (; i + V::size <= n; i += V::size) {
      const V gi = simd::load<T, B>(g + i);
      const V mi = b1 * simd::load<T, B>(m + i) + c1 * gi;
      const V vi = b2 * simd::load<T, B>(v + i) + c2 * gi * gi;
      simd::store(m + i, mi);
      simd::store(v + i, vi);
      simd::store(p + i, simd::load<T, B>(p + i) * decay - step_size * mi / (math::sqrt(vi) * inv_sqrt_bc2 + eps));
    }
#endif
    for (; i < n; ++i) {
      m[i] = k.b1 * m[i] + k.one_minus_b1 * g[i];
      v[i] = k.b2 * v[i] + k.one_minus_b2 * g[i] * g[i];
      p[i] = p[i] * k.decay - k.step_size * m[i] / (math::sqrt(v[i]) * k.inv_sqrt_bc2 + k.eps);
    }
  }
};

/// The same step as three expressions on the CPU executor (the update before adamw_kernel): the
/// reference the kernel is tested against and benchmarked beside.
template <class T, class PV, class MV, class GV>
void adamw_expressions(const PV& flat_p, const MV& m, const MV& v, const GV& flat_g, const adamw_coefficients<T>& k) {
  assign(m, k.b1 * m + k.one_minus_b1 * flat_g);                                               // (N,)
  assign(v, k.b2 * v + k.one_minus_b2 * flat_g * flat_g);                                      // (N,)
  assign(flat_p, flat_p * k.decay - k.step_size * m / (sqrt(v) * k.inv_sqrt_bc2 + k.eps));    // (N,)
}

}  // namespace detail

class adamw {
 public:
  using moments = std::variant<adamw_moments<float>, adamw_moments<double>>;
  /// The name of this optimizer in checkpoints (metadata "optimizer").
  static constexpr const char* kind = "adamw";

  explicit adamw(const adamw_options& options = {}) : options_(options) {
    auto bad = [](const char* what, double value) {
      throw value_error(einlm::detail::concat("adamw: ", what, ", got ", value));
    };
    if (!(options.beta1 >= 0 && options.beta1 < 1)) bad("beta1 must be in [0, 1)", options.beta1);
    if (!(options.beta2 >= 0 && options.beta2 < 1)) bad("beta2 must be in [0, 1)", options.beta2);
    if (!(options.eps >= 0)) bad("eps must be ≥ 0", options.eps);
    if (!(options.weight_decay >= 0)) bad("weight_decay must be ≥ 0", options.weight_decay);
  }

  const adamw_options& options() const { return options_; }
  std::int64_t step() const { return step_; }
  double learning_rate() const { return lr_; }

  /// Starts step t + 1 with learning rate lr.
  void begin_step(double lr) {
    if (!(lr >= 0) || !std::isfinite(lr))
      throw value_error(einlm::detail::concat("adamw: the learning rate must be finite and ≥ 0, got ", lr));
    lr_ = lr;
    ++step_;
  }

  /// Updates one parameter in place from its gradient, with the options' weight decay.
  template <class P, class G>
  void update(const std::string& name, P&& param, const G& grad) {
    update(name, std::forward<P>(param), grad, options_.weight_decay);
  }

  /// The same with this parameter's own weight decay (0 for norms and embeddings, say).
  template <class P, class G>
  void update(const std::string& name, P&& param, const G& grad, double weight_decay) {
    auto p = as_view(std::forward<P>(param));
    const index_t n = detail::check_update("adamw", name, p, as_view(grad), step_);
    using T = typename decltype(p)::value_type;
    auto it = state_.find(name);
    if (it == state_.end()) {
      adamw_moments<T> fresh{tensor<T, dims<1>, host>(dims<1>(n)), tensor<T, dims<1>, host>(dims<1>(n))};
      fresh.m = T(0);
      fresh.v = T(0);
      it = state_.emplace(name, std::move(fresh)).first;
    }
    auto* mom = std::get_if<adamw_moments<T>>(&it->second);
    if (!mom || mom->m.size() != n)
      throw shape_error(einlm::detail::concat("adamw: parameter '", name, "' changed its element type or size (",
                                              n, " elements now) since its first update"));
    const auto flat_p = reshape(p, dims<1>(n));  // (N,)
    detail::with_flat_gradient<T>(as_view(grad), n, [&](const auto& flat_g) {  // (N,)
      step_moments_and_parameter(flat_p, *mom, flat_g, weight_decay);
    });
  }

 private:
  /// m, v and the parameter (flat, (N,)) from the flat gradient g of the current step: one pass
  /// (detail::adamw_kernel), threaded, on the widest packets of this CPU.
  template <class PV, class T, class GF>
  void step_moments_and_parameter(const PV& flat_p, adamw_moments<T>& mom, const GF& flat_g, double weight_decay) const {
    const auto k = detail::adamw_coefficients<T>::of(options_, lr_, weight_decay, step_);
    const index_t n = mom.m.size();
    T* p = flat_p.data();
    T* m = mom.m.data();
    T* v = mom.v.data();
    const T* g = flat_g.data();
    einlm::detail::for_each_unit(n, [&](index_t first, index_t count) {
      simd::dispatch<detail::adamw_kernel<T>>(count, p + first, m + first, v + first, g + first, k);
    });
  }

 public:
  /// The moments by parameter name (for checkpoints and tests).
  const std::map<std::string, moments>& state() const { return state_; }
  std::map<std::string, moments>& state() { return state_; }
  /// Restores the step count (after loading the moments from a checkpoint).
  void set_step(std::int64_t step) { step_ = step; }

  /// Writes the kind, the options, the step count and the moments into w (see the file comment).
  void write_state(safetensors_writer& w) const {
    w.metadata["optimizer"] = kind;
    w.metadata["optimizer_step"] = std::to_string(step_);
    w.metadata["beta1"] = detail::exact_text(options_.beta1);
    w.metadata["beta2"] = detail::exact_text(options_.beta2);
    w.metadata["eps"] = detail::exact_text(options_.eps);
    w.metadata["weight_decay"] = detail::exact_text(options_.weight_decay);
    for (const auto& [name, moments] : state_)
      std::visit(
          [&, &name = name](const auto& m) {
            w.add(name + ".exp_avg", m.m);      // (N,)
            w.add(name + ".exp_avg_sq", m.v);   // (N,)
          },
          moments);
  }

  /// Replaces options, step count and moments with f's, for the parameters of `params` that f has
  /// moments of (a parameter never updated has none); *this is unchanged when f does not fit.
  template <class Params>
  void read_state(const safetensors_file& f, Params& params) {
    detail::check_kind(f, kind);
    adamw restored({.beta1 = detail::metadata_number<double>(f, "beta1"),
                    .beta2 = detail::metadata_number<double>(f, "beta2"),
                    .eps = detail::metadata_number<double>(f, "eps"),
                    .weight_decay = detail::metadata_number<double>(f, "weight_decay")});
    restored.set_step(detail::metadata_number<std::int64_t>(f, "optimizer_step"));
    params.for_each_parameter([&](const std::string& name, const auto& t) {
      using T = typename std::remove_cvref_t<decltype(t)>::value_type;
      if (!f.contains(name + ".exp_avg")) return;  // never updated (frozen so far)
      adamw_moments<T> m{detail::read_buffer<T>(f, name + ".exp_avg", name, t.size()),      // (N,)
                         detail::read_buffer<T>(f, name + ".exp_avg_sq", name, t.size())};  // (N,)
      restored.state_.emplace(name, std::move(m));
    });
    *this = std::move(restored);
  }

 private:
  adamw_options options_;
  std::int64_t step_ = 0;
  double lr_ = 0;
  std::map<std::string, moments> state_;
};

}  // namespace einlm::optim
