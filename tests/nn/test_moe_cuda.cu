// GPU tests of the mixture-of-experts token permutation (einlm/nn/moe_cuda.cuh): the device
// grouping equals the host's stable counting sort (slot order within an expert, the first
// `capacity` slots kept), dropless and with a capacity that drops, for E = 1, 8 and 64; the
// gather and the gate-weighted combine equal host loops, in float and bf16; bad expert ids and
// mismatched shapes are errors naming the function. Exits with 77 (skipped) when no device is
// present.
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

}  // namespace

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
