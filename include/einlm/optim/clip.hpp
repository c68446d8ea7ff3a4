// einlm/optim/clip.hpp — gradient clipping by the global L2 norm (CS336 semantics, as
// torch.nn.utils.clip_grad_norm_).
//
//   double norm = global_l2_norm(g1, g2, …);             √(Σ over every element of every gᵢ of g²)
//   double norm = clip_grad_norm(max_norm, g1, g2, …);   the norm before clipping; when it exceeds
//                                                        max_norm every gᵢ is scaled in place by
//                                                        max_norm / (norm + 1e-6)
//   double norm = clip_grad_norm_each(max_norm, each);   the same over a run-time list: each(f)
//                                                        calls f(g) for every gradient g
// Arguments: host tensors or views (any strides) of float, double, bf16 or fp16; pass only the
// gradients that exist (a frozen parameter has none and is left alone). Sums of squares accumulate
// in double, each tensor in one threaded pass; the scaling is one fused pass per tensor. A NaN or
// infinite gradient gives a NaN or infinite norm and no scaling (the trainer stops on it).
#pragma once

#include <cmath>
#include <type_traits>
#include <utility>

#include "einlm/core/error.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/einops.hpp"
#include "einlm/expr.hpp"

namespace einlm::optim {

/// eps of the clipping scale, as CS336 and PyTorch use it.
inline constexpr double clip_eps = 1e-6;

namespace detail {

template <class G>
double sum_of_squares(const G& g) {
  auto v = as_view(g);
  using V = decltype(v);
  static_assert(std::is_same_v<typename V::space, host>, "clip_grad_norm: gradients must be in host memory");
  static_assert(is_floating_v<typename V::value_type>, "clip_grad_norm: gradients must be floating-point");
  if (v.size() == 0) return 0.0;
  const auto d = cast<double>(v);  // (…)
  return eval(reduce<"... -> ", "sum">(d * d))();
}

}  // namespace detail

/// √(Σ g²) over all the gradients.
template <class... G>
double global_l2_norm(const G&... grads) {
  return std::sqrt((0.0 + ... + detail::sum_of_squares(grads)));
}

/// Scales the gradients in place so that their global L2 norm is at most max_norm; returns the
/// norm before clipping.
template <class... G>
double clip_grad_norm(double max_norm, G&&... grads) {
  if (!(max_norm > 0)) throw value_error(einlm::detail::concat("clip_grad_norm: max_norm must be > 0, got ", max_norm));
  const double norm = global_l2_norm(grads...);
  if (norm > max_norm) {
    const double scale = max_norm / (norm + clip_eps);
    (
        [&](auto&& g) {
          auto v = as_view(g);
          using T = typename decltype(v)::value_type;
          using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
          assign(v, cast<T>(cast<C>(v) * static_cast<C>(scale)));
        }(grads),
        ...);
  }
  return norm;
}

/// clip_grad_norm over a run-time list of gradients: `each(f)` calls f(g) for every gradient g.
template <class Each>
double clip_grad_norm_each(double max_norm, Each&& each) {
  if (!(max_norm > 0)) throw value_error(einlm::detail::concat("clip_grad_norm: max_norm must be > 0, got ", max_norm));
  double sum = 0.0;
  each([&](const auto& g) { sum += detail::sum_of_squares(g); });
  const double norm = std::sqrt(sum);
  if (norm > max_norm) {
    const double scale = max_norm / (norm + clip_eps);
    each([&](auto& g) {
      auto v = as_view(g);
      using T = typename decltype(v)::value_type;
      using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
      assign(v, cast<T>(cast<C>(v) * static_cast<C>(scale)));
    });
  }
  return norm;
}

}  // namespace einlm::optim
