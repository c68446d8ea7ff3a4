// einlm/core/print.hpp — NumPy-style printing of host tensors and views.
//
//   std::cout << t;        tensor([[0.5, 1, 2],
//                                  [3, 4, 5]], dtype=float32, shape=(2, 3))
//   to_string(t, opts)     the same text; print_options sets the precision and the summarisation
//                          threshold (above it, each axis shows its first and last `edge_items`).
// Device tensors must be copied to the host first (to_host); printing them is a compile error.
#pragma once

#include <iomanip>
#include <ostream>
#include <sstream>
#include <string>
#include <type_traits>

#include "einlm/core/dtype.hpp"
#include "einlm/core/tensor.hpp"

namespace einlm {

struct print_options {
  int precision = 6;          ///< significant digits of floating values
  index_t threshold = 1000;   ///< summarise tensors with more elements than this
  index_t edge_items = 3;     ///< elements shown at each end of a summarised axis
};

namespace detail {

template <class T>
void print_value(std::ostream& out, const T& v, int precision) {
  if constexpr (std::is_same_v<T, bool>) {
    out << (v ? "True" : "False");
  } else if constexpr (is_floating_v<T>) {
    out << std::setprecision(precision) << convert<double>(v);
  } else if constexpr (sizeof(T) == 1) {
    out << static_cast<int>(v);
  } else {
    out << v;
  }
}

template <class V>
void print_axis(std::ostream& out, const V& v, index_array<V::extents_type::rank()>& idx, std::size_t axis,
                bool summarise, const print_options& opt, int indent) {
  constexpr std::size_t R = V::extents_type::rank();
  const index_t n = v.extent(axis);
  out << '[';
  for (index_t i = 0; i < n; ++i) {
    if (summarise && n > 2 * opt.edge_items && i == opt.edge_items) {
      out << "...";
      i = n - opt.edge_items - 1;
      if (axis + 1 < R) out << ",\n" << std::string(indent + 1, ' ');
      else out << ", ";
      continue;
    }
    idx[axis] = i;
    if (axis + 1 == R) {
      print_value(out, v(idx), opt.precision);
    } else {
      print_axis(out, v, idx, axis + 1, summarise, opt, indent + 1);
    }
    if (i + 1 < n) {
      if (axis + 1 < R) out << ',' << std::string(R - axis - 1, '\n') << std::string(indent + 1, ' ');
      else out << ", ";
    }
  }
  out << ']';
}

}  // namespace detail

/// The NumPy-style text of a host tensor or view.
template <array_like X>
std::string to_string(const X& x, const print_options& opt = {}) {
  auto v = as_view(x);
  using V = decltype(v);
  static_assert(std::is_same_v<typename V::space, host>, "printing needs host memory; copy with to_host() first");
  std::ostringstream out;
  out << "tensor(";
  constexpr std::size_t R = V::extents_type::rank();
  if constexpr (R == 0) {
    detail::print_value(out, *v.data(), opt.precision);
  } else {
    index_array<R> idx{};
    detail::print_axis(out, v, idx, 0, v.size() > opt.threshold, opt, 7);
  }
  out << ", dtype=" << dtype_traits<typename V::value_type>::name << ", shape=" << shape_string(v.extents()) << ')';
  return out.str();
}

template <array_like X>
std::ostream& operator<<(std::ostream& out, const X& x) {
  return out << to_string(x);
}

}  // namespace einlm
