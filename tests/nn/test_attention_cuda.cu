// GPU tests of the fused attention kernels (einlm/nn/cuda_attention.cuh) against the host functions
// they replace (nn::attention_forward, attention_backward) on the same random inputs, float and
// bf16: multi-head, grouped and multi-query heads, causal and not, head dimensions of one to eight
// elements a lane (and ones that leave lanes empty), sequences past the host's 48-row blocks, more
// keys than queries in the forward pass; the same bits on a second run; shape errors. The
// allocator's cache is poisoned before each call, so an element a kernel forgets to write fails.
// Exits with 77 (skipped) when no device is present.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "einlm/nn/backward.hpp"
#include "einlm/nn/cuda_attention.cuh"
#include "support/cuda_compare.cuh"

using namespace einlm;

namespace {

using test::bytes_of;
using test::poison_cache;

template <class T>
tensor<T, dims<4>> random_host(index_t a, index_t b, index_t c, index_t d, std::uint64_t seed) {
  tensor<T, dims<4>> t(a, b, c, d);  // (a, b, c, d)
  t = uniform<T>(t.extents(), {seed, 0}, -1.5, 1.5);
  return t;
}

struct case_shape {
  index_t B, H, G, S, Sk, D;
  bool causal;
};

template <class T>
void check_attention(const case_shape& c, std::uint64_t seed) {
  INFO("B ", c.B, " H ", c.H, " Hkv ", c.G, " S ", c.S, " Sk ", c.Sk, " Dh ", c.D, c.causal ? " causal" : " unmasked");
  const auto q = random_host<T>(c.B, c.H, c.S, c.D, seed);       // (B, H, S, Dh)
  const auto k = random_host<T>(c.B, c.G, c.Sk, c.D, seed + 1);  // (B, Hkv, Sk, Dh)
  const auto v = random_host<T>(c.B, c.G, c.Sk, c.D, seed + 2);  // (B, Hkv, Sk, Dh)
  const auto qd = to_device(q), kd = to_device(k), vd = to_device(v);  // the same, on the device
  // Float results differ from the host's by the order of the sums; bf16 ones by one rounding.
  const double rel = std::is_same_v<T, float> ? 1e-5 : 1.0 / 128;
  const double abs_tol = std::is_same_v<T, float> ? 1e-5 : 1.0 / 128;

  const auto [out_cpu, lse_cpu] = nn::attention_forward(q, k, v, c.causal);  // (B, H, S, Dh), (B, H, S)
  poison_cache<T>(q.extents());
  poison_cache<float>(lse_cpu.extents());
  const auto f = nn::fused_attention_forward(qd, kd, vd, c.causal);  // .out (B, H, S, Dh), .lse (B, H, S)
  test::check_close(bytes_of(f.out), out_cpu.data(), out_cpu.size(),
                    std::vector<double>(static_cast<std::size_t>(out_cpu.size()), abs_tol), rel);
  test::check_close(bytes_of(f.lse), lse_cpu.data(), lse_cpu.size(),
                    std::vector<double>(static_cast<std::size_t>(lse_cpu.size()), 1e-5), 1e-5);
  const auto again = nn::fused_attention_forward(qd, kd, vd, c.causal);  // the same call again
  CHECK(bytes_of(again.out) == bytes_of(f.out));
  CHECK(bytes_of(again.lse) == bytes_of(f.lse));
  if (c.S != c.Sk) return;

  const auto dout = random_host<T>(c.B, c.H, c.S, c.D, seed + 3);  // (B, H, S, Dh)
  const auto dod = to_device(dout);                                 // (B, H, S, Dh)
  const auto out_host = to_host(f.out);                             // the device's out, as backward gets it
  const auto lse_host = to_host(f.lse);                             // (B, H, S)
  const auto [dq_cpu, dk_cpu, dv_cpu] =
      nn::attention_backward(q, k, v, out_host, lse_host, dout, c.causal);  // (B, H, S, Dh), (B, Hkv, S, Dh) twice
  poison_cache<T>(q.extents());
  poison_cache<T>(k.extents());
  const auto g = nn::fused_attention_backward(qd, kd, vd, f.out, f.lse, dod, c.causal);  // .dq, .dk, .dv
  // Gradients sum up to S·H/Hkv terms.
  const double gabs = abs_tol * 4;
  test::check_close(bytes_of(g.dq), dq_cpu.data(), dq_cpu.size(), std::vector<double>(static_cast<std::size_t>(dq_cpu.size()), gabs), rel * 4);
  test::check_close(bytes_of(g.dk), dk_cpu.data(), dk_cpu.size(), std::vector<double>(static_cast<std::size_t>(dk_cpu.size()), gabs), rel * 4);
  test::check_close(bytes_of(g.dv), dv_cpu.data(), dv_cpu.size(), std::vector<double>(static_cast<std::size_t>(dv_cpu.size()), gabs), rel * 4);
  const auto g2 = nn::fused_attention_backward(qd, kd, vd, f.out, f.lse, dod, c.causal);  // the same call again
  CHECK(bytes_of(g2.dq) == bytes_of(g.dq));
  CHECK(bytes_of(g2.dk) == bytes_of(g.dk));
  CHECK(bytes_of(g2.dv) == bytes_of(g.dv));
}

}  // namespace

TEST_CASE("fused attention equals the host's, float") {
  const case_shape cases[] = {
      {2, 4, 4, 100, 100, 64, true},   // multi-head, past the host's 48-row blocks
      {2, 8, 2, 77, 77, 128, true},    // grouped-query
      {1, 4, 1, 50, 50, 32, true},     // multi-query
      {2, 4, 2, 33, 33, 40, false},    // unmasked, lanes partly empty
      {1, 2, 1, 20, 20, 256, true},    // eight elements a lane
      {1, 2, 2, 17, 17, 5, true},      // fewer elements than lanes
      {2, 4, 2, 16, 70, 64, true},     // a KV cache: more keys than queries (forward only)
  };
  std::uint64_t seed = 3;
  for (const auto& c : cases) check_attention<float>(c, seed += 10);
}

TEST_CASE("fused attention equals the host's, bf16") {
  check_attention<bf16>({2, 4, 2, 64, 64, 64, true}, 5);
  check_attention<bf16>({1, 4, 4, 30, 30, 128, false}, 6);
}

TEST_CASE("fused attention rejects mismatched shapes, naming them") {
  tensor<float, dims<4>, device> q(1, 4, 8, 16), k(1, 2, 8, 16), v(1, 2, 8, 16), bad_heads(1, 3, 8, 16),
      short_k(1, 2, 4, 16), wide(1, 2, 8, 300), wide_q(1, 4, 8, 300), long_k(1, 2, 12, 16);
  CHECK_THROWS_WITH_AS(nn::fused_attention_forward(q, bad_heads, bad_heads), doctest::Contains("multiple of the key/value heads"),
                       shape_error);
  CHECK_THROWS_WITH_AS(nn::fused_attention_forward(q, k, short_k), doctest::Contains("k and v differ"), shape_error);
  CHECK_THROWS_WITH_AS(nn::fused_attention_forward(q, short_k, short_k), doctest::Contains("at least q's sequence length"),
                       shape_error);
  CHECK_THROWS_WITH_AS(nn::fused_attention_forward(wide_q, wide, wide), doctest::Contains("head dimension 300"), value_error);
  const auto f = nn::fused_attention_forward(q, k, v);  // .out (1, 4, 8, 16), .lse (1, 4, 8)
  CHECK_THROWS_WITH_AS(nn::fused_attention_backward(q, long_k, long_k, f.out, f.lse, f.out),
                       doctest::Contains("k and v need q's sequence length"), shape_error);
  CHECK_THROWS_WITH_AS(nn::fused_attention_backward(q, k, v, k, f.lse, f.out), doctest::Contains("out of shape"), shape_error);
}
