// examples/elementwise.cpp — a tour of tensors and fused element-wise expressions on the CPU.
//
// Prints shapes (static and dynamic), values of a few expressions, a broadcasting error, and the
// measured bandwidth of a fused chain y = silu(a)·b + c next to the same chain evaluated op by op.
// The [snippet …] markers delimit code that docs/ quotes (checked by tests/docs).
#include <chrono>
#include <cstdio>
#include <iostream>

#include "einlm/einlm.hpp"

using namespace einlm;

namespace {

template <class F>
double seconds(F&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main() {
  // [snippet shapes]
  tensor<float, extents<2, 3>> a;                    // (2, 3): both extents in the type
  tensor<float, extents<dyn, 3>> b(4);               // (?, 3): the first given at run time
  static_assert(decltype(a)::extents_type::static_extent(1) == 3);
  std::cout << "a: " << shape_string(a.extents()) << ", b: " << shape_string(b.extents())
            << " (type " << static_shape_string<decltype(b)::extents_type>() << ")\n";
  // [end snippet]

  // [snippet fused]
  a = arange<float>(a.extents(), -1.0, 0.5);                      // (2, 3): -1, -0.5, 0, …
  tensor<float, extents<3>> bias = full<float>(extents<3>{}, 0.25f);  // (3,)
  tensor<float, extents<2, 3>> y = silu(a) * 2.0f + bias;        // (2, 3), one pass
  std::cout << "y = silu(a) * 2 + bias =\n" << y << "\n";
  // [end snippet]

  // [snippet random]
  const random_stream init{/*seed*/ 42, /*stream*/ 0};
  tensor<bf16, extents<2, 4>> w = normal<bf16>(extents<2, 4>{}, init, 0.0, 0.02);  // (2, 4)
  std::cout << "w ~ N(0, 0.02²) in bf16 =\n" << w << "\n";
  // [end snippet]

  // [snippet errors]
  tensor<float, dims<2>> p(dims<2>(3, 4)), q(dims<2>(2, 4));
  try {
    auto bad = p + q;  // (3, 4) and (2, 4): checked when the expression is built
    (void)bad;
  } catch (const shape_error& e) {
    std::cout << "shape_error: " << e.what() << "\n";
  }
  // [end snippet]

  // Bandwidth of the fused chain against op-by-op evaluation (three materialised passes).
  const index_t n = index_t{16} << 20;
  tensor<float, dims<1>> x(n), u(n), v(n), out(n), t1(n), t2(n);
  x = uniform<float>(x.extents(), {1, 0}, -4.0, 4.0);
  u = uniform<float>(u.extents(), {1, 1});
  v = uniform<float>(v.extents(), {1, 2});
  out = 0.0f;
  t1 = 0.0f;
  t2 = 0.0f;
  auto& ex = default_cpu_executor();
  const double bytes = 4.0 * static_cast<double>(n) * sizeof(float);
  double fused = 1e30, unfused = 1e30;
  for (int r = 0; r < 5; ++r) {
    const auto before = ex.passes();
    fused = std::min(fused, seconds([&] { out = silu(x) * u + v; }));
    if (ex.passes() - before != 1) return 1;
    unfused = std::min(unfused, seconds([&] {
      t1 = silu(x);
      t2 = t1 * u;
      out = t2 + v;
    }));
  }
  std::printf("y = silu(a)*b + c over %lld floats on %d threads:\n", static_cast<long long>(n), ex.threads());
  std::printf("  fused     %7.2f ms  %6.2f GB/s  (1 pass)\n", fused * 1e3, bytes / fused / 1e9);
  std::printf("  op by op  %7.2f ms  %6.2f GB/s  (3 passes)  -> fused is %.2fx faster\n", unfused * 1e3,
              bytes / unfused / 1e9, unfused / fused);
  return 0;
}
