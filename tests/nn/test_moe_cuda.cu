// GPU tests of the mixture-of-experts token permutation (einlm/nn/moe_cuda.cuh): the device
// grouping equals the host's stable counting sort (slot order within an expert, the first
// `capacity` slots kept), dropless and with a capacity that drops, for E = 1, 8 and 64; the
// gather and the gate-weighted combine equal host loops, in float and bf16; bad expert ids and
// mismatched shapes are errors naming the function. moe_route_cuda's affinities, lse, ranked
// experts and gates equal the routing written from the host layer's contract in double, for both
// routers, k = 1, 2, 8 and E = 8, 64, 160, float and bf16 logits. Exits with 77 (skipped) when no
// device is present.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "einlm/nn/moe_cuda.cuh"
#include "support/cuda_compare.cuh"

using namespace einlm;

namespace {

// The host grouping, written from the contract: slots by expert, slot order within an expert.
struct host_grouping {
  std::vector<std::int32_t> order, row_of_slot;
  std::vector<std::int64_t> offset, routed;
  std::int64_t dropped = 0;
};

host_grouping group_on_host(const std::vector<std::int32_t>& expert, index_t E, std::int64_t capacity) {
  host_grouping g;
  g.routed.assign(static_cast<std::size_t>(E), 0);
  g.row_of_slot.assign(expert.size(), -1);
  std::vector<std::vector<std::int32_t>> kept(static_cast<std::size_t>(E));
  for (std::size_t s = 0; s < expert.size(); ++s) {
    const auto e = static_cast<std::size_t>(expert[s]);
    ++g.routed[e];
    if (capacity == 0 || static_cast<std::int64_t>(kept[e].size()) < capacity) kept[e].push_back(static_cast<std::int32_t>(s));
    else ++g.dropped;
  }
  g.offset.assign(1, 0);
  for (const auto& k : kept) {
    for (const auto s : k) {
      g.row_of_slot[static_cast<std::size_t>(s)] = static_cast<std::int32_t>(g.order.size());
      g.order.push_back(s);
    }
    g.offset.push_back(static_cast<std::int64_t>(g.order.size()));
  }
  return g;
}

template <class T>
std::vector<T> device_values(const tensor<T, dims<1>, device>& t) {
  const auto h = to_host(t);
  return std::vector<T>(h.data(), h.data() + h.size());
}

template <class T>
void check_permutation(index_t N, index_t K, index_t E, std::int64_t capacity, index_t D) {
  CAPTURE(N);
  CAPTURE(K);
  CAPTURE(E);
  CAPTURE(capacity);
  // Skewed routing: expert e drawn with weight ∝ (e + 1), so that a capacity drops slots.
  std::vector<std::int32_t> expert(static_cast<std::size_t>(N * K));
  const auto u = uniform<double>(dims<1>(N * K), {21, static_cast<std::uint64_t>(E)}, 0.0, 1.0);  // (N·K,)
  const tensor<double, dims<1>> draws(u);                                                         // (N·K,)
  for (std::size_t s = 0; s < expert.size(); ++s)
    expert[s] = static_cast<std::int32_t>(std::min<double>(static_cast<double>(E) - 1, std::sqrt(draws(static_cast<index_t>(s))) * E));
  tensor<std::int32_t, dims<1>> expert_host(dims<1>(N * K));  // (N·K,)
  std::copy(expert.begin(), expert.end(), expert_host.data());
  const auto d = nn::moe_dispatch_cuda(to_device(expert_host), E, K, capacity);
  const auto ref = group_on_host(expert, E, capacity);
  CHECK(d.offset == ref.offset);
  CHECK(d.routed_per_expert == ref.routed);
  CHECK(d.dropped_slots == ref.dropped);
  CHECK(device_values(d.order) == ref.order);
  CHECK(device_values(d.row_of_slot) == ref.row_of_slot);
  if (capacity > 0) CHECK(d.dropped_slots > 0);  // the skew makes the capacity bite

  // Gather and combine against host loops.
  const tensor<T, dims<2>> x(cast<T>(uniform<float>(dims<2>(N, D), {22, 0}, -1.0, 1.0)));  // (N, D)
  const auto xs = to_host(nn::moe_permute_cuda(to_device(x), d));                          // (M, D)
  REQUIRE(xs.extent(0) == static_cast<index_t>(ref.order.size()));
  int wrong = 0;
  for (std::size_t j = 0; j < ref.order.size(); ++j)
    for (index_t c = 0; c < D; ++c)
      wrong += convert<float>(xs(static_cast<index_t>(j), c)) != convert<float>(x(ref.order[j] / K, c));
  CHECK(wrong == 0);
  const tensor<T, dims<2>> out(cast<T>(uniform<float>(dims<2>(xs.extent(0), D), {23, 0}, -1.0, 1.0)));  // (M, D)
  const tensor<float, dims<1>> gate(uniform<float>(dims<1>(N * K), {24, 0}, 0.0, 1.0));                  // (N·K,)
  const auto y = nn::moe_unpermute_cuda(to_device(out), d, to_device(gate));                            // (N, D)
  tensor<float, dims<2>> expected(N, D);  // (N, D)
  for (index_t n = 0; n < N; ++n)
    for (index_t c = 0; c < D; ++c) {
      float acc = 0.0f;
      for (index_t j = 0; j < K; ++j) {
        const auto row = ref.row_of_slot[static_cast<std::size_t>(n * K + j)];
        if (row >= 0) acc += gate(n * K + j) * convert<float>(out(row, c));
      }
      expected(n, c) = acc;
    }
  test::check_device_close(y, cast<T>(expected), std::is_same_v<T, float> ? 1e-6 : 1.0 / 128);
}

/// The routing of one token from its logits, in double (nn/moe.hpp's contract): affinities, lse,
/// the ranked top-k by affinity + bias (ties: lower expert), gates, and the margin between the
/// k-th and the next score (how far the choice is from a tie).
struct host_route {
  std::vector<double> affinity, gate;
  std::vector<std::int32_t> expert;
  double lse = 0, margin = 0;
};

host_route route_on_host(const float* l, const float* bias, index_t E, index_t K, bool sigmoid_router) {
  host_route r;
  double m = -INFINITY, sum = 0;
  for (index_t e = 0; e < E; ++e) m = std::max(m, static_cast<double>(l[e]));
  for (index_t e = 0; e < E; ++e) sum += std::exp(l[e] - m);
  r.lse = m + std::log(sum);
  std::vector<double> score(static_cast<std::size_t>(E));
  for (index_t e = 0; e < E; ++e) {
    r.affinity.push_back(sigmoid_router ? 1 / (1 + std::exp(-static_cast<double>(l[e]))) : std::exp(l[e] - m) / sum);
    score[static_cast<std::size_t>(e)] = r.affinity.back() + (bias ? bias[e] : 0.0);
  }
  std::vector<std::int32_t> idx(static_cast<std::size_t>(E));
  for (index_t e = 0; e < E; ++e) idx[static_cast<std::size_t>(e)] = static_cast<std::int32_t>(e);
  std::stable_sort(idx.begin(), idx.end(), [&](std::int32_t a, std::int32_t b) { return score[a] > score[b]; });
  r.margin = K < E ? score[idx[K - 1]] - score[idx[K]] : INFINITY;
  double selected = 0;
  for (index_t j = 0; j < K; ++j) selected += r.affinity[idx[j]];
  for (index_t j = 0; j < K; ++j) {
    r.expert.push_back(idx[j]);
    r.gate.push_back(sigmoid_router || K > 1 ? r.affinity[idx[j]] / selected : r.affinity[idx[j]]);
  }
  return r;
}

template <class T>
void check_route(index_t N, index_t E, index_t K, nn::router_kind router, bool with_bias) {
  CAPTURE(N);
  CAPTURE(E);
  CAPTURE(K);
  CAPTURE(with_bias);
  const bool sigmoid_router = router == nn::router_kind::sigmoid;
  // Logits as a router GEMM gives them (spread 3), in T; the reference reads the same values.
  const tensor<T, dims<2>> logits(cast<T>(uniform<float>(dims<2>(N, E), {31, static_cast<std::uint64_t>(E)}, -3.0, 3.0)));  // (N, E)
  const tensor<float, dims<2>> logits_f(cast<float>(logits));                                                            // (N, E)
  const tensor<T, dims<1>> bias(cast<T>(uniform<float>(dims<1>(E), {32, 0}, -0.05, 0.05)));                              // (E,)
  const tensor<float, dims<1>> bias_f(cast<float>(bias));                                                                // (E,)
  const auto bias_device = to_device(bias);
  const auto r = nn::moe_route_cuda(to_device(logits), K, router, with_bias ? &bias_device : nullptr);
  CHECK(r.num_tokens == N);
  const auto affinity = to_host(r.affinity);  // (N, E)
  const auto lse = to_host(r.lse);            // (N,)
  const auto expert = to_host(r.expert);      // (N·K,)
  const auto gate = to_host(r.gate);          // (N·K,)
  double worst_affinity = 0, worst_lse = 0, worst_gate = 0;
  int compared = 0, wrong_experts = 0;
  for (index_t n = 0; n < N; ++n) {
    const auto h = route_on_host(logits_f.data() + n * E, with_bias ? bias_f.data() : nullptr, E, K, sigmoid_router);
    for (index_t e = 0; e < E; ++e)
      worst_affinity = std::max(worst_affinity, std::abs(affinity(n, e) - h.affinity[static_cast<std::size_t>(e)]));
    worst_lse = std::max(worst_lse, std::abs(lse(n) - h.lse) / std::max(1.0, std::abs(h.lse)));
    if (h.margin < 1e-5) continue;  // within float rounding of a tie: either choice is right
    ++compared;
    for (index_t j = 0; j < K; ++j) {
      wrong_experts += expert(n * K + j) != h.expert[static_cast<std::size_t>(j)];
      worst_gate = std::max(worst_gate, std::abs(gate(n * K + j) - h.gate[static_cast<std::size_t>(j)]));
    }
  }
  CHECK(compared > N * 9 / 10);
  CHECK(wrong_experts == 0);
  CHECK(worst_affinity <= 1e-6);
  CHECK(worst_lse <= 1e-6);
  CHECK(worst_gate <= 2e-6);
}

}  // namespace

TEST_CASE("moe_route_cuda routes as the host layer: both routers, k = 1, 2, 8") {
  check_route<float>(1000, 8, 1, nn::router_kind::softmax, false);   // Switch
  check_route<float>(1000, 8, 2, nn::router_kind::softmax, false);   // Mixtral
  check_route<bf16>(777, 64, 8, nn::router_kind::softmax, false);    // fine-grained, bf16 logits
  check_route<float>(1000, 64, 8, nn::router_kind::sigmoid, true);   // DeepSeek-V3 with a selection bias
  check_route<bf16>(500, 160, 2, nn::router_kind::sigmoid, false);   // E not a multiple of the warp
  check_route<float>(64, 8, 8, nn::router_kind::softmax, false);     // k = E: every expert, gates sum to 1
}

TEST_CASE("moe_route_cuda: errors name the function") {
  tensor<float, dims<2>, device> logits(dims<2>(4, 8));  // (4, 8)
  CHECK_THROWS_WITH_AS(nn::moe_route_cuda(logits, 9, nn::router_kind::softmax),
                       "moe_route_cuda: top_k must lie in [1, num_experts = 8], got 9", value_error);
  CHECK_THROWS_AS(nn::moe_route_cuda(logits, 0, nn::router_kind::softmax), value_error);
  tensor<float, dims<1>, device> bias(dims<1>(8)), short_bias(dims<1>(7));  // (8,), (7,)
  CHECK_THROWS_WITH_AS(nn::moe_route_cuda(logits, 2, nn::router_kind::softmax, &bias),
                       "moe_route_cuda: the selection bias applies to the sigmoid router only", value_error);
  CHECK_THROWS_WITH_AS(nn::moe_route_cuda(logits, 2, nn::router_kind::sigmoid, &short_bias),
                       "moe_route_cuda: a selection bias of shape (7) for 8 experts", shape_error);
  // A NaN logit: the token's slots get expert −1, which the dispatch rejects.
  tensor<float, dims<2>> with_nan(uniform<float>(dims<2>(4, 8), {33, 0}, -1.0, 1.0));  // (4, 8)
  with_nan(2, 5) = NAN;
  const auto routed = nn::moe_route_cuda(to_device(with_nan), 2, nn::router_kind::softmax);
  const auto experts = to_host(routed.expert);  // (8,)
  CHECK(experts(4) == -1);
  CHECK(experts(5) == -1);
  CHECK(experts(0) >= 0);
  CHECK_THROWS_WITH_AS(nn::moe_dispatch_cuda(routed.expert, 8, 2), "moe_dispatch_cuda: an expert id is outside [0, 8)",
                       value_error);
}

TEST_CASE("moe_dispatch_cuda groups slots as the host does; permute and unpermute move the rows") {
  check_permutation<float>(1000, 2, 8, 0, 256);
  check_permutation<float>(1000, 2, 8, 200, 256);  // mean load 250: the heavy experts drop
  check_permutation<bf16>(777, 8, 64, 0, 136);     // fine-grained; a width that is not a multiple of 8 × 16 bytes
  check_permutation<bf16>(777, 8, 64, 80, 100);    // rows of 200 bytes: element-wise copies
  check_permutation<float>(33, 1, 1, 0, 4);        // one expert
}

TEST_CASE("moe_dispatch_cuda and the permutation: errors name the function") {
  tensor<std::int32_t, dims<1>> expert(dims<1>(6));  // (6,)
  for (index_t s = 0; s < 6; ++s) expert(s) = static_cast<std::int32_t>(s % 3);
  const auto e = to_device(expert);
  CHECK_THROWS_WITH_AS(nn::moe_dispatch_cuda(e, 2, 2), "moe_dispatch_cuda: an expert id is outside [0, 2)", value_error);
  CHECK_THROWS_AS(nn::moe_dispatch_cuda(e, 3, 4), shape_error);  // 6 slots are not whole tokens of 4
  CHECK_THROWS_AS(nn::moe_dispatch_cuda(e, 3, 2, -1), value_error);
  const auto d = nn::moe_dispatch_cuda(e, 3, 2);
  CHECK(d.kept_rows() == 6);
  tensor<float, dims<2>, device> x(dims<2>(4, 8));  // (4, 8): one row too many
  CHECK_THROWS_WITH_AS(nn::moe_permute_cuda(x, d), "moe_permute_cuda: x has 4 rows but the dispatch routed 3 tokens", shape_error);
  tensor<float, dims<2>, device> out(dims<2>(6, 8));  // (6, 8)
  tensor<float, dims<1>, device> gate(dims<1>(5));    // (5,): one gate short
  CHECK_THROWS_WITH_AS(nn::moe_unpermute_cuda(out, d, gate), "moe_unpermute_cuda: gate has 5 entries for 6 routed slots", shape_error);
}
