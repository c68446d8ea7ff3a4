// Tests of einlm/nn/attention_rows.hpp, the arithmetic of the fused CUDA attention kernels, run on
// the host: every query and key row through forward_row, backward_query_row and backward_key_row,
// against nn::attention_forward / attention_backward computed in double (an independent path: GEMMs
// over the whole square of scores). Rows are computed by one thread (serial_team) and by 4 or 32
// threads in lockstep that add their partial sums through a barrier — the warp's layout, lane l
// holding elements l, l + lanes, … of the head dimension — so the lane arithmetic the device runs
// is checked here.
// Shapes: multi-head, grouped and multi-query heads, causal and not, more keys than queries in the
// forward pass, head dimensions that fill the lanes and ones that do not.
#include <doctest/doctest.h>

#include <algorithm>
#include <barrier>
#include <cmath>
#include <thread>
#include <type_traits>
#include <vector>

#include "einlm/nn/attention_rows.hpp"
#include "einlm/nn/backward.hpp"
#include "support/check.hpp"

using namespace einlm;
namespace flash = einlm::nn::detail::flash;

namespace {

/// L host threads standing in for a warp's lanes: sum() adds every lane's value (in lane order)
/// and hands the total to all of them.
template <int L>
struct lockstep {
  std::barrier<> sync{L};
  float slot[L] = {};
};
template <int L>
struct thread_team {
  static constexpr int lanes = L;
  int lane = 0;
  lockstep<L>* shared = nullptr;
  float sum(float x) const {
    shared->slot[lane] = x;
    shared->sync.arrive_and_wait();
    float total = 0.0f;
    for (int l = 0; l < L; ++l) total += shared->slot[l];
    shared->sync.arrive_and_wait();  // every lane has read the slots before they are reused
    return total;
  }
};

/// Runs body(team, per_lane) on one thread (serial_team, Lanes = 1) or on Lanes threads in lockstep.
template <int Lanes, class Body>
void run_team(Body&& body) {
  constexpr int per_lane = static_cast<int>((flash::max_head_dim + Lanes - 1) / Lanes);
  if constexpr (Lanes == 1) {
    body(flash::serial_team{}, std::integral_constant<int, per_lane>{});
  } else {
    lockstep<Lanes> shared;
    std::vector<std::thread> threads;
    for (int l = 0; l < Lanes; ++l)
      threads.emplace_back([&, l] { body(thread_team<Lanes>{l, &shared}, std::integral_constant<int, per_lane>{}); });
    for (auto& t : threads) t.join();
  }
}

struct case_shape {
  index_t B, H, G, S, Sk, D;
  bool causal;
};

template <class T>
tensor<T, dims<4>> random_tensor(index_t a, index_t b, index_t c, index_t d, std::uint64_t seed) {
  const auto values = test::random_values<double>(static_cast<std::size_t>(a * b * c * d), -1.5, 1.5, seed);
  tensor<T, dims<4>> t(a, b, c, d);  // (a, b, c, d)
  for (std::size_t i = 0; i < values.size(); ++i) t.data()[i] = convert<T>(values[i]);
  return t;
}

template <class X>
tensor<double, dims<4>> as_double(const X& x) {
  tensor<double, dims<4>> d(x.extent(0), x.extent(1), x.extent(2), x.extent(3));  // same extents
  for (index_t i = 0; i < x.size(); ++i) d.data()[i] = convert<double>(x.data()[i]);
  return d;
}

/// |got − want| ≤ tol · (1 + |want|) for every element.
template <class G, class W>
void check_near(const char* what, const G* got, const W* want, index_t n, double tol) {
  double worst = 0;
  index_t at = 0;
  for (index_t i = 0; i < n; ++i) {
    const double w = convert<double>(want[i]);
    const double e = std::abs(convert<double>(got[i]) - w) / (1.0 + std::abs(w));
    if (!(e <= worst)) {
      worst = e;
      at = i;
    }
  }
  INFO(std::string(what), ": worst relative error ", worst, " at element ", at, " of ", n);
  CHECK(worst <= tol);
}

template <class T, int Lanes>
void check_case(const case_shape& c, std::uint64_t seed) {
  INFO("B ", c.B, " H ", c.H, " Hkv ", c.G, " S ", c.S, " Sk ", c.Sk, " Dh ", c.D, c.causal ? " causal" : " unmasked", ", ",
       Lanes, " lanes");
  const auto q = random_tensor<T>(c.B, c.H, c.S, c.D, seed);       // (B, H, S, Dh)
  const auto k = random_tensor<T>(c.B, c.G, c.Sk, c.D, seed + 1);  // (B, Hkv, Sk, Dh)
  const auto v = random_tensor<T>(c.B, c.G, c.Sk, c.D, seed + 2);  // (B, Hkv, Sk, Dh)
  flash::attention_shape n{c.B, c.H, c.G, c.S, c.Sk, c.D, static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.D))),
                           c.causal};
  const index_t rows = c.B * c.H * c.S;

  // Forward, every query row.
  tensor<T, dims<4>> out(c.B, c.H, c.S, c.D);  // (B, H, S, Dh)
  std::vector<float> lse(static_cast<std::size_t>(rows));
  run_team<Lanes>([&](auto team, auto per_lane) {
    for (index_t row = 0; row < rows; ++row) {
      const index_t i = row % c.S, h = row / c.S % c.H, b = row / c.S / c.H;
      const index_t head = (b * c.G + h / n.group()) * c.Sk * c.D;
      flash::forward_row<decltype(team), decltype(per_lane)::value>(team, n, q.data() + row * c.D, k.data() + head,
                                                                    v.data() + head, n.visible(i), out.data() + row * c.D,
                                                                    lse.data() + row);
    }
  });
  const auto qd = as_double(q), kd = as_double(k), vd = as_double(v);  // the same values in double
  const auto [out_ref, lse_ref] = nn::attention_forward(qd, kd, vd, c.causal);  // (B, H, S, Dh), (B, H, S)
  const double tol = std::is_same_v<T, float> ? 2e-6 : 1.0 / 128;
  check_near("out", out.data(), out_ref.data(), out.size(), tol);
  check_near("lse", lse.data(), lse_ref.data(), rows, tol);
  if (c.S != c.Sk) return;  // the backward pass takes k and v of q's length

  // Backward: the query rows (dq, δ), then the key rows (dk, dv).
  const auto dout = random_tensor<T>(c.B, c.H, c.S, c.D, seed + 3);  // (B, H, S, Dh)
  tensor<T, dims<4>> dq(c.B, c.H, c.S, c.D), dk(c.B, c.G, c.S, c.D), dv(c.B, c.G, c.S, c.D);  // like q, k, v
  std::vector<float> delta(static_cast<std::size_t>(rows));
  run_team<Lanes>([&](auto team, auto per_lane) {
    constexpr int P = decltype(per_lane)::value;
    for (index_t row = 0; row < rows; ++row) {
      const index_t i = row % c.S, h = row / c.S % c.H, b = row / c.S / c.H;
      const index_t head = (b * c.G + h / n.group()) * c.Sk * c.D;
      flash::backward_query_row<decltype(team), P>(team, n, q.data() + row * c.D, k.data() + head, v.data() + head,
                                                   out.data() + row * c.D, dout.data() + row * c.D, lse[row], n.visible(i),
                                                   dq.data() + row * c.D, delta.data() + row);
    }
  });
  run_team<Lanes>([&](auto team, auto per_lane) {
    constexpr int P = decltype(per_lane)::value;
    for (index_t row = 0; row < c.B * c.G * c.S; ++row) {
      const index_t j = row % c.S, g = row / c.S % c.G, b = row / c.S / c.G;
      const index_t first = b * c.H * c.S;
      flash::backward_key_row<decltype(team), P>(team, n, q.data() + first * c.D, dout.data() + first * c.D,
                                                 lse.data() + first, delta.data() + first, g, j, k.data() + row * c.D,
                                                 v.data() + row * c.D, dk.data() + row * c.D, dv.data() + row * c.D);
    }
  });
  const auto [dq_ref, dk_ref, dv_ref] =
      nn::attention_backward(qd, kd, vd, out_ref, lse_ref, as_double(dout), c.causal);  // (B, H, S, Dh), (B, Hkv, S, Dh) twice
  // Sums of up to S·H/Hkv terms of magnitude ~1 in float.
  const double gtol = std::is_same_v<T, float> ? 2e-5 : 1.0 / 64;
  check_near("dq", dq.data(), dq_ref.data(), dq.size(), gtol);
  check_near("dk", dk.data(), dk_ref.data(), dk.size(), gtol);
  check_near("dv", dv.data(), dv_ref.data(), dv.size(), gtol);
}

}  // namespace

TEST_CASE("fused attention rows on one lane equal attention computed over the whole square, in double") {
  const case_shape cases[] = {
      {2, 4, 4, 19, 19, 16, true},    // multi-head
      {2, 4, 2, 23, 23, 40, true},    // grouped-query
      {1, 6, 1, 17, 17, 64, true},    // multi-query
      {2, 4, 2, 21, 21, 24, false},   // no mask
      {2, 4, 2, 9, 30, 32, true},     // a KV cache: more keys than queries (forward only)
      {1, 2, 1, 7, 12, 8, false},
  };
  std::uint64_t seed = 11;
  for (const auto& c : cases) check_case<float, 1>(c, seed += 10);
}

TEST_CASE("fused attention rows on lanes in lockstep (the warp's layout) give the same results") {
  // 4 lanes: elements split as on the device, with some lanes holding one element fewer.
  std::uint64_t seed = 101;
  check_case<float, 4>({1, 2, 1, 5, 5, 10, true}, seed += 10);
  check_case<float, 4>({1, 1, 1, 3, 5, 7, false}, seed += 10);
  // 32 lanes, as a warp: eight elements a lane with the last partly past Dh; fewer elements than
  // lanes; more keys than queries.
  check_case<float, 32>({1, 2, 1, 3, 3, 200, true}, seed += 10);
  check_case<float, 32>({1, 1, 1, 3, 3, 5, false}, seed += 10);
  check_case<float, 32>({1, 1, 1, 2, 3, 33, true}, seed += 10);
}

TEST_CASE("fused attention rows read bf16 storage and compute in float") {
  check_case<bf16, 1>({2, 4, 2, 15, 15, 32, true}, 7);
}

TEST_CASE("an empty key axis gives zeros and a log-sum-exp of minus infinity") {
  flash::attention_shape n{1, 1, 1, 1, 0, 4, 0.5f, false};
  const float q[4] = {1, 2, 3, 4};
  float out[4] = {9, 9, 9, 9}, lse = 0;
  flash::forward_row<flash::serial_team, 4>(flash::serial_team{}, n, q, q, q, n.visible(0), out, &lse);
  for (float o : out) CHECK(o == 0.0f);
  CHECK(std::isinf(lse));
  CHECK(lse < 0);
}
