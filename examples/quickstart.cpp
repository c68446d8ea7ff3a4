// examples/quickstart.cpp — the README's first taste of einlm, compiled and run by the demo.
#include <iostream>

#include "einlm/einlm.hpp"

int main() {
  // [snippet taste]
  using namespace einlm;
  const random_stream seed{2026, 0};
  tensor<float, extents<4, dyn>> x = normal<float>(extents<4, dyn>(8), seed);   // (4, 8): 8 known at run time
  tensor<float, extents<8>> bias = full<float>(extents<8>{}, 0.1f);             // (8,)

  // One fused pass: silu, scale, broadcast bias add, cast — no temporaries.
  tensor<bf16, extents<4, dyn>> y = cast<bf16>(silu(x) * 2.0f + bias);          // (4, 8)
  std::cout << y << "\n";

  // Shapes are checked: statically when both are static (a compile error), else at run time.
  try {
    tensor<float, dims<1>> wrong(dims<1>(3));
    auto z = x + wrong;  // (4, 8) and (3,)
    (void)z;
  } catch (const shape_error& e) {
    std::cout << e.what() << "\n";  // add: operands could not be broadcast together with shapes (4, 8) (3,)
  }
  // [end snippet]
  return 0;
}
