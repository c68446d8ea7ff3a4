// Compile-fail cases of nn::static_transformer_lm: an inconsistent shape fixed at compile time
// stops compilation with the sentence tests/compile_fail/CMakeLists.txt expects. EINLM_CASE=0
// compiles.
#include "einlm/nn/transformer.hpp"

using namespace einlm;

constexpr nn::transformer_config ok{.vocab_size = 64, .context_length = 16, .d_model = 32, .num_layers = 1,
                                    .num_heads = 4};

int main() {
#if EINLM_CASE == 0
  using model = nn::static_transformer_lm<ok>;
  static_assert(model::param_count > 0);
#elif EINLM_CASE == 1
  constexpr auto bad = [] { auto c = ok; c.d_model = 30; return c; }();
  nn::static_transformer_lm<bad> model(1);  // 30 is not a multiple of 4 heads
#elif EINLM_CASE == 2
  constexpr auto bad = [] { auto c = ok; c.num_kv_heads = 3; return c; }();
  nn::static_transformer_lm<bad> model(1);
#elif EINLM_CASE == 3
  constexpr auto bad = [] { auto c = ok; c.d_model = 24; c.num_heads = 8; return c; }();  // head dim 3
  nn::static_transformer_lm<bad> model(1);
#endif
}
