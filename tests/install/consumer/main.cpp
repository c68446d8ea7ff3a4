// A program outside the einlm tree that uses it the way a user does: one include, a fused
// expression, a check of the result. Built by tests/install/run_consumer.cmake three ways.
#include <einlm/einlm.hpp>

#include <cmath>
#include <cstdio>

int main() {
  using namespace einlm;
  tensor<float, extents<4, 8>> x = arange<float>(extents<4, 8>{}, -1.0, 0.0625);
  tensor<float, extents<8>> bias = full<float>(extents<8>{}, 0.5f);
  tensor<float, extents<4, 8>> y = silu(x) * 2.0f + bias;
  const double want = 2.0 * 0.9375 / (1.0 + std::exp(-0.9375)) + 0.5;
  if (std::abs(y(3, 7) - want) > 1e-5) {
    std::printf("consumer: wrong value %f (want %f)\n", static_cast<double>(y(3, 7)), want);
    return 1;
  }
  std::printf("consumer: ok\n");
  return 0;
}
