// einlm/optim/update.hpp — what every optimizer's per-parameter update shares: the checks of a
// parameter and its gradient, and the gradient as a flat (N,) array of the parameter's type.
//
//   const index_t n = detail::check_update("sgd", name, param_view, grad_view, step);
//   detail::with_flat_gradient<T>(grad_view, n, [&](const auto& flat_g) { … });   // (N,)
//
// check_update: parameters are host arrays of float or double with a contiguous layout, not
// read-only; gradients host arrays of the same shape (any strides, any floating type); begin_step
// must have been called (step > 0). Violations are value_error / shape_error naming the
// optimizer and the parameter. with_flat_gradient reads a contiguous gradient of T in place and
// copies any other one (strided, or of another type) into a flat tensor of T first.
#pragma once

#include <string>
#include <type_traits>

#include "einlm/core/error.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/expr.hpp"

namespace einlm::optim::detail {

/// Checks one update's parameter and gradient views; returns the number of elements.
template <class PV, class GV>
index_t check_update(const char* who, const std::string& name, const PV& p, const GV& g, std::int64_t step) {
  using T = typename PV::value_type;
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "optimizer: parameters must be float or double (bf16 training keeps float master weights)");
  static_assert(std::is_same_v<typename PV::space, host> && std::is_same_v<typename GV::space, host>,
                "optimizer: parameters and gradients must be in host memory");
  static_assert(!std::is_const_v<typename PV::element_type>, "optimizer: the parameter is read-only");
  if (step == 0) throw value_error(einlm::detail::concat(who, ": call begin_step(lr) before update()"));
  if (to_array(p.extents()) != to_array(g.extents()))
    throw shape_error(einlm::detail::concat(who, ": parameter '", name, "' has shape ", shape_string(p.extents()),
                                            " but its gradient has shape ", shape_string(g.extents())));
  if (!p.is_contiguous()) throw shape_error(einlm::detail::concat(who, ": parameter '", name, "' must be contiguous"));
  return p.size();
}

/// Calls f with the gradient as a flat (N,) array of T: in place when it is a contiguous array of
/// T, otherwise a converted copy.
template <class T, class GV, class F>
void with_flat_gradient(const GV& g, index_t n, F&& f) {
  if constexpr (std::is_same_v<typename GV::value_type, T>) {
    if (g.is_contiguous()) return f(reshape(g, dims<1>(n)));  // (N,)
  }
  tensor<T, dims<1>, host> flat{dims<1>(n)};  // (N,)
  if (g.is_contiguous()) {
    assign(flat, cast<T>(reshape(g, dims<1>(n))));
  } else {
    tensor<typename GV::value_type, typename GV::extents_type, host> dense(g.extents());
    copy(g, dense);
    assign(flat, cast<T>(reshape(dense, dims<1>(n))));
  }
  f(flat);
}

}  // namespace einlm::optim::detail
