// benchmarks/compile_time/common.hpp — what the pattern TU and the baseline TU of the compile-time
// benchmark share: the input tensors, and keep(), which evaluates a result and records a
// checksum of it.
//
// Compiled by g++ (.cpp) the inputs live in host memory and results run through the CPU executor;
// compiled by nvcc (.cu) they live in device memory, so every operation instantiates a CUDA
// kernel. Both TUs print one line per operation ("op N: checksum"); measure.py --verify runs the
// two g++ builds and requires identical lines, so the baseline provably does the same work.
#pragma once

#include <cstdio>

#include "einlm/einops.hpp"

namespace compile_bench {

using namespace einlm;

#if EINLM_HAS_CUDA
using space = device;
#else
using space = host;
#endif

template <class E>
using input = tensor<float, E, space>;

/// The inputs of the 50 operations, filled with uniform numbers in [0.5, 1.5).
struct inputs {
  input<extents<2, 3, 4, 6>> x;          // (B, C, H, W)
  input<dims<4>> x_dynamic{2, 3, 4, 6};  // (B, C, H, W), extents known at run time
  input<extents<2, 5, 24>> seq;          // (B, S, D)
  input<extents<2, 12, 2, 3>> deep;      // (B, C·4, H, W)
  input<extents<2, 1, 6>> unit;          // (B, 1, D)
  input<extents<6, 8>> m;                // (R, C)
  input<dims<2>> m_dynamic{6, 8};        // (R, C), extents known at run time
  input<extents<6, 2, 3>> cube;          // (R, 2, 3)
  input<extents<24>> flat;               // (24,)
  input<extents<144>> flat144;           // (144,): as many elements as x
  input<extents<6, 14>> packed;          // (R, 8 + 2·3)
  input<extents<11, 24>> packed_rows;    // (2·5 + 1, D)
  input<extents<24, 8>> weight;          // (D, E)
  input<extents<6, 6>> square;           // (R, R)
  input<extents<8>> scale;               // (C,)
  inputs() {
    std::uint64_t stream = 0;
    auto fill = [&](auto& t) { t = uniform<float>(t.extents(), {2026, stream++}, 0.5, 1.5); };
    fill(x);
    fill(x_dynamic);
    fill(seq);
    fill(deep);
    fill(unit);
    fill(m);
    fill(m_dynamic);
    fill(cube);
    fill(flat);
    fill(flat144);
    fill(packed);
    fill(packed_rows);
    fill(weight);
    fill(square);
    fill(scale);
  }
};

/// A checksum that changes when elements move: Σ x[i] · (i mod 13 + 1) over the row-major order.
template <class T, class E, class S>
double checksum(const tensor<T, E, S>& t) {
#if EINLM_HAS_CUDA
  const auto h = to_host(t);
#else
  const auto& h = t;
#endif
  double s = 0;
  for (index_t i = 0; i != h.size(); ++i)
    s += convert<double>(h.data()[i]) * static_cast<double>(i % 13 + 1);
  return s;
}

/// Evaluates the result of operation `op` (a tensor, a view or a lazy expression) into a new
/// tensor and prints its checksum.
template <class X>
void keep(int op, const X& result) {
  std::printf("op %2d: %.9g\n", op, checksum(eval(result)));
}

/// Prints the checksum of a list of axis lengths (parse_shape's results).
inline void keep_lengths(int op, std::initializer_list<index_t> lengths) {
  double s = 0, w = 1;
  for (const index_t l : lengths) s += static_cast<double>(l) * w++;
  std::printf("op %2d: %.9g\n", op, s);
}

void run(const inputs& in);

}  // namespace compile_bench

int main() {
  const compile_bench::inputs in;
  compile_bench::run(in);
  return 0;
}
