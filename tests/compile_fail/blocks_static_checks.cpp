// Compile-fail cases of nn/blocks.hpp: static dimensions that do not fit stop compilation with the
// sentence tests/compile_fail/CMakeLists.txt expects. EINLM_CASE=0 compiles.
#include "einlm/nn/blocks.hpp"

using namespace einlm;
namespace b = einlm::nn::blocks;

int main() {
#if EINLM_CASE == 0
  using block = b::residual<b::rms_norm<256>, b::swiglu<256>>;
  static_assert(block{}.param_count() == 256 + 3 * 256 * 704);
  using lm = b::cs336_lm<1000, 64, 2, b::heads<4>, b::kv_heads<2>>;
  static_assert(lm{}.param_count() > 0);
  using tied = b::cs336_lm<1000, 64, 2, b::heads<4>, b::tied_embeddings>;
  static_assert(tied{}.param_count() + 1000 * 64 == b::cs336_lm<1000, 64, 2, b::heads<4>>{}.param_count());
#elif EINLM_CASE == 1
  using block = b::residual<b::rms_norm<256>, b::swiglu<128>>;  // the norm is 256 wide, the body 128
  static_assert(block{}.param_count() > 0);
#elif EINLM_CASE == 2
  using model = b::sequential<b::embedding<1000, 64>, b::rms_norm<64>, b::lm_head<32, 1000>>;  // 64 into 32
  static_assert(model{}.param_count() > 0);
#elif EINLM_CASE == 3
  using attn = b::attention<100, b::heads<8>>;  // 100 is not a multiple of 8 heads
  static_assert(attn{}.param_count() > 0);
#elif EINLM_CASE == 4
  using attn = b::attention<64, b::heads<8>, b::kv_heads<3>>;  // 8 heads do not share 3 kv heads evenly
  static_assert(attn{}.param_count() > 0);
#elif EINLM_CASE == 5
  using attn = b::attention<64, b::kv_heads<2>>;  // no heads<H>
  static_assert(attn{}.param_count() > 0);
#elif EINLM_CASE == 6
  using model = b::tied_lm<b::embedding<1000, 64>, b::rms_norm<32>>;  // a body 32 wide on a 64-wide table
  static_assert(model{}.param_count() > 0);
#endif
}
