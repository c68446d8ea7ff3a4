// Tests of einlm/nn/functional.hpp against CS336: the literal cases of test_nn_utils.py and
// test_model.py (softmax also at +100, cross-entropy also at 1000×, SiLU) from
// derived/literal_tests_expected.json, and the snapshots of test_rmsnorm (with the recovered gain),
// test_rope, test_scaled_dot_product_attention and its 4-D variant, with CS336's tolerances (atol
// 1e-6; 2e-6 for the snapshots, see below; 1e-4 for cross-entropy). Without the fixtures those
// cases skip with a message; the properties below (rows sum to 1, log_softmax = log(softmax), rope preserves norms and is the
// identity at position 0, errors) run everywhere.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "einlm/core/npy.hpp"
#include "einlm/nn/functional.hpp"
#include "einlm/tokenizer/json.hpp"
#include "support/check.hpp"
#include "support/max_abs_diff.hpp"

using namespace einlm;
namespace json = einlm::tokenizer::detail::json;

namespace {

#define REQUIRE_FIXTURES(root)                                                 \
  const auto fixtures_root = test::fixtures_dir();                             \
  if (!fixtures_root) {                                                        \
    MESSAGE("skipped: EINLM_FIXTURES_DIR is not set (reference fixtures)");    \
    return;                                                                    \
  }                                                                            \
  const std::string root = *fixtures_root + "/cs336/"

json::value literal_tests(const std::string& root) {
  std::ifstream in(root + "derived/literal_tests_expected.json");
  std::stringstream text;
  text << in.rdbuf();
  static std::string keep;
  keep = text.str();
  return json::parse(keep, "literal_tests_expected.json");
}

std::vector<double> numbers(const json::value& v) {
  std::vector<double> out;
  if (v.type == json::value::kind::array) {
    for (const auto& item : v.items) {
      const auto inner = numbers(item);
      out.insert(out.end(), inner.begin(), inner.end());
    }
  } else {
    out.push_back(std::stod(v.text));
  }
  return out;
}

template <class E>
tensor<float, E> from_numbers(const std::vector<double>& values, double offset = 0, double scale = 1) {
  tensor<float, E> t;
  REQUIRE(static_cast<index_t>(values.size()) == t.size());
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = static_cast<float>(values[static_cast<std::size_t>(i)] * scale + offset);
  return t;
}

template <class A>
double max_abs_diff(const A& got, const npy_array& want) {
  REQUIRE(static_cast<index_t>(want.size()) == got.size());
  const float* w = reinterpret_cast<const float*>(want.data.data());
  double worst = 0;
  for (index_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(double(got.data()[i]) - w[i]));
  return worst;
}

npy_array snapshot(const std::string& root, const std::string& name) {
  return read_npz(root + "_snapshots/" + name + ".npz").at("array");
}

}  // namespace

TEST_CASE("softmax, cross-entropy and SiLU: CS336's literal cases") {
  REQUIRE_FIXTURES(root);
  const auto cases = literal_tests(root);
  const auto& sm = *cases.find("test_softmax_matches_pytorch");
  const auto expected = numbers(*sm.find("expected"));
  for (const double offset : {0.0, 100.0}) {
    const auto x = from_numbers<extents<3, 5>>(numbers(*sm.find("input")), offset);  // (3, 5)
    const auto p = nn::softmax(x);                                                     // (3, 5)
    for (index_t i = 0; i < 15; ++i) CHECK(std::abs(p.data()[i] - expected[static_cast<std::size_t>(i)]) <= 1e-6);
  }
  const auto& ce = *cases.find("test_cross_entropy");
  const auto targets_list = numbers(*ce.find("targets"));
  tensor<std::int64_t, extents<8>> targets;  // (N,)
  for (index_t i = 0; i < 8; ++i) targets(i) = static_cast<std::int64_t>(targets_list[static_cast<std::size_t>(i)]);
  const auto logits = from_numbers<extents<8, 5>>(numbers(*ce.find("inputs")));  // (N, V)
  CHECK(std::abs(nn::cross_entropy(logits, targets) - std::stod(ce.find("expected_mean_loss")->text)) <= 1e-4);
  const auto large = from_numbers<extents<8, 5>>(numbers(*ce.find("inputs")), 0, 1000);  // (N, V)
  CHECK(std::abs(nn::cross_entropy(large, targets) - std::stod(ce.find("expected_mean_loss_large")->text)) <= 1e-4);
  const auto& si = *cases.find("test_silu_matches_pytorch");
  const auto si_input = from_numbers<extents<2, 5>>(numbers(*si.find("input")));  // (2, 5)
  const auto s = eval(silu(si_input));                                               // (2, 5)
  const auto s_expected = numbers(*si.find("expected"));
  for (index_t i = 0; i < 10; ++i) CHECK(std::abs(s.data()[i] - s_expected[static_cast<std::size_t>(i)]) <= 1e-6);
}

// The snapshots were computed from CS336's original inputs; the fixtures' inputs are regenerated
// (derived/) and reproduce the snapshots only to 1.5e-6 (RoPE), 1.3e-6 (RMSNorm with the recovered
// gain) and 9.9e-7 (attention) in float64 (fixtures README). CS336's atol of 1e-6 therefore becomes
// 2e-6 here; an error in the formulas (the half-split RoPE layout, a missing 1/√d, eps inside or
// outside the root) costs 1e-3 or more.
constexpr double snapshot_atol = 2e-6;

TEST_CASE("rms_norm, rope and attention: CS336's snapshots") {
  REQUIRE_FIXTURES(root);
  const auto x = load_npy<float, extents<4, 12, 64>>(root + "derived/in_embeddings.npy");                    // (B, S, D)
  const auto gain = load_npy<float, extents<64>>(root + "derived/rmsnorm_gain_layers.1.ln1.weight_recovered.npy");  // (D,)
  CHECK(max_abs_diff(nn::rms_norm(x, gain), snapshot(root, "test_rmsnorm")) <= snapshot_atol);

  // [snippet rope]
  tensor<std::int64_t, extents<12>> positions = arange<std::int64_t>(extents<12>{});  // (S,)
  const auto rotated = nn::rope(x, positions, 10000.0);                                 // (B, S, D)
  // [end snippet]
  CHECK(max_abs_diff(rotated, snapshot(root, "test_rope")) <= snapshot_atol);

  const auto q = load_npy<float, extents<4, 12, 64>>(root + "derived/q.npy");  // (B, Sq, D)
  const auto k = load_npy<float, extents<4, 16, 64>>(root + "derived/k.npy");  // (B, Sk, D)
  const auto v = load_npy<float, extents<4, 16, 64>>(root + "derived/v.npy");  // (B, Sk, D)
  const auto mask = load_npy<bool, extents<4, 12, 16>>(root + "derived/mask.npy");  // (B, Sq, Sk)
  // [snippet attention]
  const auto out = nn::scaled_dot_product_attention(q, k, v, mask);  // (B, Sq, D)
  // [end snippet]
  CHECK(max_abs_diff(out, snapshot(root, "test_scaled_dot_product_attention")) <= snapshot_atol);
  // 4-D: the same tensors as (b h) s d -> b h s d with h = 2.
  const auto q4 = rearrange<"(b h) s d -> b h s d">(q, axis<"h", 2>{});      // (B/2, 2, Sq, D)
  const auto k4 = rearrange<"(b h) s d -> b h s d">(k, axis<"h", 2>{});      // (B/2, 2, Sk, D)
  const auto v4 = rearrange<"(b h) s d -> b h s d">(v, axis<"h", 2>{});      // (B/2, 2, Sk, D)
  const auto m4 = rearrange<"(b h) q k -> b h q k">(mask, axis<"h", 2>{});   // (B/2, 2, Sq, Sk)
  const auto out4 = nn::scaled_dot_product_attention(q4, k4, v4, m4);        // (B/2, 2, Sq, D)
  CHECK(max_abs_diff(out4, snapshot(root, "test_4d_scaled_dot_product_attention")) <= snapshot_atol);
}

TEST_CASE("rope reads strided inputs where they lie, with the results of their contiguous copies") {
  // A projection's output (B, S, H·Dh) split into heads is a strided view (B, H, S, Dh): rope
  // reads it in place. So does a slice; a view whose last axis is not contiguous is copied first.
  tensor<float, extents<2, 6, 24>> y = normal<float>(extents<2, 6, 24>{}, random_stream{5, 0});  // (B, S, H·Dh)
  tensor<std::int64_t, extents<6>> positions;                                                     // (S,)
  for (index_t s = 0; s < 6; ++s) positions(s) = 7 * s + 2;
  const auto heads = rearrange<"b s (h e) -> b h s e">(y, axis_size<"h">{3});  // (B, H, S, Dh) view
  REQUIRE(heads.is_strided());
  const auto from_view = nn::rope(heads, positions, 10000.0);    // (B, H, S, Dh)
  const auto from_copy = nn::rope(eval(heads), positions, 10000.0);  // (B, H, S, Dh)
  CHECK(test::max_abs_diff(from_view, from_copy) == 0.0);
  CHECK(test::max_abs_diff(from_view, nn::rope(y, positions, 10000.0)) > 0.0);  // a different layout, different values

  tensor<std::int64_t, extents<2, 3, 4>> per_row;  // (B, H, S) positions of the sliced heads
  for (index_t b = 0; b < 2; ++b)
    for (index_t h = 0; h < 3; ++h)
      for (index_t s = 0; s < 4; ++s) per_row(b, h, s) = 11 * b + 5 * h + s;
  const auto sliced = slice(heads.to_view(), full_extent, full_extent, range{1, 5}, full_extent);  // (B, H, 4, Dh)
  CHECK(test::max_abs_diff(nn::rope(sliced, per_row, 500.0), nn::rope(eval(sliced), per_row, 500.0)) == 0.0);

  // Written into a strided destination: heads merged into (B, S, H·Dh) as it rotates.
  tensor<float, dims<3>> merged(2, 6, 24);  // (B, S, H·Dh)
  nn::detail::rope_into(from_copy, positions, 10000.0,
                        rearrange<"b s (h e) -> b h s e">(merged, axis_size<"h">{3}).to_view());
  const auto roped = nn::rope(from_copy, positions, 10000.0);                                // (B, H, S, Dh)
  const tensor<float, dims<3>> merged_copy = rearrange<"b h s e -> b s (h e)">(roped);  // (B, S, H·Dh)
  CHECK(test::max_abs_diff(merged, merged_copy) == 0.0);
  tensor<float, dims<3>> wrong(2, 6, 25);  // (B, S, 25)
  CHECK_THROWS_AS(nn::detail::rope_into(y, positions, 10000.0, view<float, dims<3>, layout_strided, host>(wrong.view())),
                  shape_error);

  tensor<float, extents<2, 4, 6>> z = normal<float>(extents<2, 4, 6>{}, random_stream{5, 1});  // (B, D, S)
  const auto transposed = rearrange<"b d s -> b s d">(z);                                      // (B, S, D) view
  CHECK(test::max_abs_diff(nn::rope(transposed, positions, 10000.0), nn::rope(eval(transposed), positions, 10000.0)) ==
        0.0);
}

TEST_CASE("properties that need no fixtures") {
  tensor<float, extents<3, 7>> x = normal<float>(extents<3, 7>{}, random_stream{4, 0}, 0.0, 5.0);  // (R, D)
  const auto p = nn::softmax(x);                                                                     // (R, D)
  const auto lp = nn::log_softmax(x);                                                                // (R, D)
  for (index_t r = 0; r < 3; ++r) {
    double sum = 0;
    for (index_t d = 0; d < 7; ++d) {
      sum += p(r, d);
      CHECK(std::log(double(p(r, d))) == doctest::Approx(lp(r, d)).epsilon(1e-5));
    }
    CHECK(sum == doctest::Approx(1.0).epsilon(1e-6));
  }
  // Cross-entropy of a row equals −log_softmax at its target.
  tensor<std::int32_t, extents<3>> t;
  t(0) = 6;
  t(1) = 0;
  t(2) = 3;
  CHECK(nn::cross_entropy(x, t) == doctest::Approx(-(lp(0, 6) + lp(1, 0) + lp(2, 3)) / 3).epsilon(1e-5));
  t(1) = 7;
  CHECK_THROWS_WITH_AS(nn::cross_entropy(x, t), "cross_entropy: target 7 of row 1 is outside the vocabulary [0, 7)",
                       value_error);
  // RoPE rotates pairs: norms of pairs are kept, position 0 is the identity.
  tensor<double, extents<2, 5, 8>> y = normal<double>(extents<2, 5, 8>{}, random_stream{4, 1});  // (B, S, D)
  tensor<std::int64_t, extents<2, 5>> pos;  // (B, S)
  for (index_t b = 0; b < 2; ++b)
    for (index_t s = 0; s < 5; ++s) pos(b, s) = b == 0 ? 0 : 3 * s + 1;
  const auto ry = nn::rope(y, pos, 10000.0);  // (B, S, D)
  for (index_t s = 0; s < 5; ++s)
    for (index_t d = 0; d < 8; d += 2) {
      CHECK(ry(0, s, d) == y(0, s, d));
      const double before = y(1, s, d) * y(1, s, d) + y(1, s, d + 1) * y(1, s, d + 1);
      const double after = ry(1, s, d) * ry(1, s, d) + ry(1, s, d + 1) * ry(1, s, d + 1);
      CHECK(after == doctest::Approx(before).epsilon(1e-12));
    }
  tensor<std::int64_t, extents<4>> short_pos;
  short_pos = std::int64_t{0};
  CHECK_THROWS_AS(nn::rope(y, short_pos, 10000.0), shape_error);
  // A fully masked-out key gets no weight; with every key allowed, attention over one key is v.
  tensor<float, extents<1, 2, 4>> q = normal<float>(extents<1, 2, 4>{}, random_stream{4, 2});  // (B, Sq, D)
  tensor<float, extents<1, 3, 4>> k = normal<float>(extents<1, 3, 4>{}, random_stream{4, 3});  // (B, Sk, D)
  tensor<float, extents<1, 3, 4>> v = normal<float>(extents<1, 3, 4>{}, random_stream{4, 4});  // (B, Sk, D)
  tensor<bool, extents<1, 2, 3>> only_second;  // (B, Sq, Sk)
  only_second = false;
  only_second(0, 0, 1) = true;
  only_second(0, 1, 1) = true;
  const auto o = nn::scaled_dot_product_attention(q, k, v, only_second);  // (B, Sq, D)
  for (index_t d = 0; d < 4; ++d) CHECK(o(0, 1, d) == doctest::Approx(v(0, 1, d)).epsilon(1e-6));
}
