// tests/linalg/test_einsum.cpp — einsum against NumPy goldens (tools/make_einsum_goldens.py,
// tests/data/einops/einsum_contractions.npz): contractions run as GEMMs (every class of axis, axes
// that do not fold, broadcast ellipsis parts, sums split across GEMM calls, strided and dynamic
// inputs, bf16, lazy inputs), fused patterns, views, and the errors found at run time.
//
// Tolerances: a K-term float32 dot product of values in [-1, 1) is off by at most K·2^-24·Σ|aᵢbᵢ|
// ≤ K²·2^-24, which check_golden compares relative to max(1, |expected|); bf16 results add their
// own rounding, 2^-8 relative.
#include <doctest/doctest.h>

#include <cmath>
#include <type_traits>

#include "einlm/einops.hpp"
#include "einops/einops_check.hpp"

using namespace einlm;
using namespace einlm::test;

namespace {

constexpr const char* archive = "einsum_contractions";

template <class T, class E>
tensor<T, E> input(const std::string& member) {
  if constexpr (std::is_same_v<T, bf16> || std::is_same_v<T, double>) {
    const auto f = einops_input<float, E>(archive, member);
    tensor<T, E> t(f.extents());
    for (index_t i = 0; i < t.size(); ++i) t.data()[i] = convert<T>(f.data()[i]);  // exact: bf16 values stored
    return t;
  } else {
    return einops_input<T, E>(archive, member);
  }
}

constexpr double f32_tolerance(double k) { return k * k * 0x1p-24; }
constexpr double bf16_tolerance(double k) { return 0x1p-8 + k * k * 0x1p-24; }

}  // namespace

TEST_CASE("einsum: contractions run as GEMMs and match NumPy") {
  SUBCASE("batched matmul") {
    const auto a = input<float, extents<3, 17, 33>>("bmm_in0");
    const auto b = input<float, extents<3, 33, 9>>("bmm_in1");
    auto r = einsum<"b i k, b k j -> b i j">(a, b);
    static_assert(tensor_like<decltype(r)>);
    static_assert(std::is_same_v<decltype(r)::extents_type, extents<3, 17, 9>>);
    check_golden(r, archive, "bmm_out", f32_tolerance(33));
  }
  SUBCASE("matmul, and its transposed layouts") {
    check_golden(einsum<"i k, k j -> i j">(input<float, extents<65, 70>>("mm_in0"), input<float, extents<70, 51>>("mm_in1")),
                 archive, "mm_out", f32_tolerance(70));
    check_golden(einsum<"i k, k j -> j i">(input<float, extents<20, 31>>("mm_out_t_in0"),
                                           input<float, extents<31, 12>>("mm_out_t_in1")),
                 archive, "mm_out_t_out", f32_tolerance(31));
    check_golden(einsum<"k i, k j -> i j">(input<float, extents<31, 20>>("mm_a_t_in0"),
                                           input<float, extents<31, 12>>("mm_a_t_in1")),
                 archive, "mm_a_t_out", f32_tolerance(31));
    check_golden(einsum<"i k, j k -> i j">(input<float, extents<20, 31>>("mm_b_t_in0"),
                                           input<float, extents<12, 31>>("mm_b_t_in1")),
                 archive, "mm_b_t_out", f32_tolerance(31));
  }
  SUBCASE("attention scores and outputs, in both head layouts") {
    check_golden(einsum<"b h i d, b h j d -> b h i j">(input<float, extents<2, 3, 10, 8>>("scores_in0"),
                                                       input<float, extents<2, 3, 12, 8>>("scores_in1")),
                 archive, "scores_out", f32_tolerance(8));
    // (b, h) does not fold into one stride in (B, S, H, D) inputs: a loop over b.
    check_golden(einsum<"b i h d, b j h d -> b h i j">(input<float, extents<2, 10, 3, 8>>("scores_bshd_in0"),
                                                       input<float, extents<2, 12, 3, 8>>("scores_bshd_in1")),
                 archive, "scores_bshd_out", f32_tolerance(8));
    check_golden(einsum<"b h i j, b j h d -> b i h d">(input<float, extents<2, 3, 10, 12>>("attn_out_in0"),
                                                       input<float, extents<2, 12, 3, 8>>("attn_out_in1")),
                 archive, "attn_out_out", f32_tolerance(12));
    check_golden(einsum<"batch seq_q dim, batch seq_k dim -> batch seq_k seq_q">(
                     input<float, extents<2, 5, 16>>("long_names_in0"), input<float, extents<2, 7, 16>>("long_names_in1")),
                 archive, "long_names_out", f32_tolerance(16));
  }
  SUBCASE("matrix-vector, vector-matrix, dot products") {
    check_golden(einsum<"i j, j -> i">(input<float, extents<37, 29>>("gemv_in0"), input<float, extents<29>>("gemv_in1")),
                 archive, "gemv_out", f32_tolerance(29));
    check_golden(einsum<"j, j i -> i">(input<float, extents<29>>("vecmat_in0"), input<float, extents<29, 37>>("vecmat_in1")),
                 archive, "vecmat_out", f32_tolerance(29));
    auto dot = einsum<"i, i ->">(input<float, extents<101>>("dot_in0"), input<float, extents<101>>("dot_in1"));
    static_assert(decltype(dot)::extents_type::rank() == 0);
    check_golden(dot, archive, "dot_out", f32_tolerance(101));
    check_golden(einsum<"i j, i j ->">(input<float, extents<13, 7>>("frobenius_in0"), input<float, extents<13, 7>>("frobenius_in1")),
                 archive, "frobenius_out", f32_tolerance(91));
    check_golden(einsum<"b i, b i -> b">(input<float, extents<7, 19>>("row_dot_in0"), input<float, extents<7, 19>>("row_dot_in1")),
                 archive, "row_dot_out", f32_tolerance(19));
  }
  SUBCASE("a weight shared across the batch; broadcast ellipsis parts") {
    check_golden(einsum<"b i k, k j -> b i j">(input<float, extents<4, 9, 16>>("shared_weight_in0"),
                                               input<float, extents<16, 11>>("shared_weight_in1")),
                 archive, "shared_weight_out", f32_tolerance(16));
    auto r = einsum<"... i k, ... k j -> ... i j">(input<float, extents<2, 1, 5, 6>>("ellipsis_broadcast_in0"),
                                                   input<float, extents<3, 6, 4>>("ellipsis_broadcast_in1"));
    static_assert(std::is_same_v<decltype(r)::extents_type, extents<2, 3, 5, 4>>);
    check_golden(r, archive, "ellipsis_broadcast_out", f32_tolerance(6));
  }
  SUBCASE("summed axes that do not fold: partial products accumulate") {
    check_golden(einsum<"a b c, c b d -> a d">(input<float, extents<5, 3, 4>>("k_split_in0"),
                                               input<float, extents<4, 3, 6>>("k_split_in1")),
                 archive, "k_split_out", f32_tolerance(12));
    check_golden(einsum<"x y z, z y -> x">(input<float, extents<6, 5, 4>>("k_transposed_in0"),
                                           input<float, extents<4, 5>>("k_transposed_in1")),
                 archive, "k_transposed_out", f32_tolerance(20));
  }
  SUBCASE("double and bf16 inputs") {
    auto d = einsum<"b i k, b k j -> b i j">(input<double, extents<3, 17, 33>>("bmm_in0"), input<double, extents<3, 33, 9>>("bmm_in1"));
    static_assert(std::is_same_v<decltype(d)::value_type, double>);
    check_golden(d, archive, "bmm_out", 1e-12);
    auto h = einsum<"b i k, b k j -> b i j">(input<bf16, extents<2, 19, 40>>("bmm_bf16_in0"),
                                             input<bf16, extents<2, 40, 13>>("bmm_bf16_in1"));
    static_assert(std::is_same_v<decltype(h)::value_type, bf16>);
    check_golden(h, archive, "bmm_bf16_out", bf16_tolerance(40));
    // fp32 accumulation: with bf16 accumulation a 1000-term sum would be off by far more than 2^-8.
    check_golden(einsum<"i k, k j -> i j">(input<bf16, extents<8, 1000>>("mm_bf16_big_k_in0"),
                                           input<bf16, extents<1000, 6>>("mm_bf16_big_k_in1")),
                 archive, "mm_bf16_big_k_out", 0x1p-8 + 1000 * 0x1p-24 * 40);
  }
}

TEST_CASE("einsum: strided, reversed, dynamic and lazy inputs") {
  const auto a = input<float, extents<65, 70>>("mm_in0");
  const auto b = input<float, extents<70, 51>>("mm_in1");
  SUBCASE("a transposed view folds into the GEMM's strides") {
    const auto a_t = eval(transpose<1, 0>(a));                                  // (K, M) in memory
    check_golden(einsum<"i k, k j -> i j">(transpose<1, 0>(a_t), b), archive, "mm_out", f32_tolerance(70));
    check_golden(einsum<"k i, k j -> i j">(a_t, b), archive, "mm_out", f32_tolerance(70));
  }
  SUBCASE("reversed rows and columns") {
    // rev(a)[i, k] = a[64 - i, k]: multiplying rev(a) and reading the result reversed again is a·b.
    const auto a_rev = eval(slice(a, range{none, none, -1}, full_extent));     // a copy, reversed
    auto r = einsum<"i k, k j -> i j">(slice(a_rev, range{none, none, -1}, full_extent), b);
    check_golden(r, archive, "mm_out", f32_tolerance(70));
  }
  SUBCASE("dynamic extents") {
    tensor<float, dims<3>> ad(3, 17, 33), bd(3, 33, 9);
    const auto as = input<float, extents<3, 17, 33>>("bmm_in0");
    const auto bs = input<float, extents<3, 33, 9>>("bmm_in1");
    copy(as, ad);
    copy(bs, bd);
    auto r = einsum<"b i k, b k j -> b i j">(ad, bd);
    static_assert(std::is_same_v<decltype(r)::extents_type, dims<3>>);
    check_golden(r, archive, "bmm_out", f32_tolerance(33));
    auto mixed = einsum<"b i k, b k j -> b i j">(as, bd);  // static extents win where known
    static_assert(std::is_same_v<decltype(mixed)::extents_type, extents<3, 17, dyn>>);
    check_golden(mixed, archive, "bmm_out", f32_tolerance(33));
  }
  SUBCASE("lazy inputs are evaluated once, then contracted") {
    auto r = einsum<"i k, k j -> i j">(a * 2.0f, b);
    static_assert(tensor_like<decltype(r)>);
    const auto want = eval(einsum<"i k, k j -> i j">(a, b));
    for (index_t i = 0; i < r.size(); ++i) CHECK(r.data()[i] == doctest::Approx(2.0f * want.data()[i]).epsilon(1e-6));
  }
  SUBCASE("the GEMM backend can be chosen") {
    gemm_options own{};
    own.backend = gemm_backend::own;
    check_golden(einsum<"i k, k j -> i j">(own, a, b), archive, "mm_out", f32_tolerance(70));
  }
}

namespace {

/// A tensor of the given extents filled from test::random_values (uniform in [-1, 1)).
template <class T, class E>
tensor<T, E> random_tensor(E e, std::uint64_t seed) {
  tensor<T, E> t(e);
  const auto v = test::random_values<double>(static_cast<std::size_t>(t.size()), -1, 1, seed);
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = convert<T>(v[static_cast<std::size_t>(i)]);
  return t;
}

}  // namespace

TEST_CASE("einsum_accumulate adds the result into an existing tensor or view") {
  SUBCASE("a matmul against NumPy: out = start + a·b") {
    const auto a = input<float, extents<65, 70>>("mm_in0");
    const auto b = input<float, extents<70, 51>>("mm_in1");
    const auto start = random_tensor<float>(extents<65, 51>{}, 1);  // (65, 51)
    tensor<float, extents<65, 51>> out(start.extents());
    copy(start, out);
    einsum_accumulate<"i k, k j -> i j">(out, a, b);
    check_golden(eval(out - start), archive, "mm_out", f32_tolerance(70) + 0x1p-22);
  }
  SUBCASE("a weight gradient in double: dw += Σ_b,s dy[b,s,o]·x[b,s,d], against the sum written out") {
    const index_t B = 3, S = 5, O = 7, D = 11;
    const auto dy = random_tensor<double>(dims<3>(B, S, O), 2);  // (B, S, O)
    const auto x = random_tensor<double>(dims<3>(B, S, D), 3);   // (B, S, D)
    auto dw = random_tensor<double>(dims<2>(O, D), 4);           // (O, D)
    const auto before = eval(dw * 1.0);                          // (O, D)
    // [snippet einsum_accumulate]
    einsum_accumulate<"b s o, b s d -> o d">(dw, dy, x);  // dw += Σ over b, s of dy ⊗ x: one GEMM, β = 1
    // [end snippet]
    einsum_accumulate<"b s o, b s d -> o d">(dw, dy, x);  // twice: before + 2·dyᵀx
    for (index_t o = 0; o < O; ++o)
      for (index_t d = 0; d < D; ++d) {
        double sum = 0;
        for (index_t bi = 0; bi < B; ++bi)
          for (index_t si = 0; si < S; ++si) sum += dy(bi, si, o) * x(bi, si, d);
        CHECK(std::abs(dw(o, d) - (before(o, d) + 2 * sum)) < 1e-13);
      }
  }
  SUBCASE("into a transposed view, and through the own GEMM backend") {
    const index_t M = 9, K = 13, N = 6;
    const auto a = random_tensor<double>(dims<2>(M, K), 5);  // (M, K)
    const auto b = random_tensor<double>(dims<2>(K, N), 6);  // (K, N)
    const auto want = eval(einsum<"i k, k j -> i j">(a, b));  // (M, N)
    tensor<double, dims<2>> out_t(N, M);                      // (N, M): the result stored transposed
    assign(out_t, full<double>(out_t.extents(), 0.5));
    einsum_accumulate<"i k, k j -> i j">(transpose<1, 0>(out_t), a, b);
    gemm_options own{};
    own.backend = gemm_backend::own;
    tensor<double, dims<2>> out(M, N);
    assign(out, full<double>(out.extents(), -1.0));
    einsum_accumulate<"i k, k j -> i j">(own, out, a, b);
    for (index_t i = 0; i < M; ++i)
      for (index_t j = 0; j < N; ++j) {
        CHECK(std::abs(out_t(j, i) - (0.5 + want(i, j))) < 1e-13);
        CHECK(std::abs(out(i, j) - (-1.0 + want(i, j))) < 1e-13);
      }
  }
  SUBCASE("bf16: accumulated in float, rounded once") {
    const auto a = random_tensor<bf16>(dims<2>(16, 40), 7);   // (M, K)
    const auto b = random_tensor<bf16>(dims<2>(40, 24), 8);   // (K, N)
    auto out = random_tensor<bf16>(dims<2>(16, 24), 9);       // (M, N)
    const auto before = eval(cast<double>(out));              // (M, N)
    einsum_accumulate<"i k, k j -> i j">(out, a, b);
    for (index_t i = 0; i < 16; ++i)
      for (index_t j = 0; j < 24; ++j) {
        double sum = before(i, j);
        for (index_t k = 0; k < 40; ++k) sum += static_cast<double>(a(i, k)) * static_cast<double>(b(k, j));
        CHECK(std::abs(static_cast<double>(out(i, j)) - sum) <= 0x1p-8 * std::abs(sum) + 40 * 0x1p-23);
      }
  }
  SUBCASE("a dot product into a rank-0 tensor") {
    const auto u = random_tensor<double>(dims<1>(33), 14);  // (33,)
    const auto v = random_tensor<double>(dims<1>(33), 15);  // (33,)
    tensor<double, extents<>> out;                          // ()
    out() = 0.25;
    einsum_accumulate<"i, i ->">(out, u, v);
    double dot = 0;
    for (index_t i = 0; i < 33; ++i) dot += u(i) * v(i);
    CHECK(std::abs(out() - (0.25 + dot)) < 1e-14);
  }
  SUBCASE("a pattern that is not a contraction: one fused pass") {
    const auto u = random_tensor<float>(dims<1>(5), 10);       // (5,)
    const auto v = random_tensor<float>(dims<1>(4), 11);       // (4,)
    tensor<float, dims<2>> out(5, 4);                          // (5, 4)
    assign(out, full<float>(out.extents(), 1.0f));
    einsum_accumulate<"i, j -> i j">(out, u, v);
    for (index_t i = 0; i < 5; ++i)
      for (index_t j = 0; j < 4; ++j) CHECK(out(i, j) == 1.0f + u(i) * v(j));
  }
  SUBCASE("an output of another shape is a shape_error naming both shapes") {
    const auto a = random_tensor<float>(dims<2>(3, 4), 12);  // (3, 4)
    const auto b = random_tensor<float>(dims<2>(4, 5), 13);  // (4, 5)
    tensor<float, dims<2>> wrong(5, 3);                       // (5, 3)
    assign(wrong, full<float>(wrong.extents(), 2.0f));
    CHECK_THROWS_WITH_AS(einsum_accumulate<"i k, k j -> i j">(wrong, a, b),
                         "einsum_accumulate \"i k, k j -> i j\": the output has shape (5, 3), the pattern gives (3, 5)",
                         shape_error);
    CHECK(wrong(0, 0) == 2.0f);  // untouched
  }
}

TEST_CASE("einsum: patterns without a shared summed axis are one fused pass") {
  SUBCASE("outer product") {
    const auto a = input<float, extents<5>>("outer_in0");  // named: the result is lazy and reads them
    const auto b = input<float, extents<7>>("outer_in1");
    auto r = einsum<"i, j -> i j">(a, b);
    static_assert(!tensor_like<decltype(r)>);
    check_golden(r, archive, "outer_out", 1e-6);
  }
  SUBCASE("a diagonal times a vector") {
    check_golden(einsum<"i i, i -> i">(input<float, extents<6, 6>>("diag_mul_in0"), input<float, extents<6>>("diag_mul_in1")),
                 archive, "diag_mul_out", 1e-6);
  }
  SUBCASE("three inputs") {
    check_golden(einsum<"a b, b c, c d -> a d">(input<float, extents<3, 4>>("three_way_in0"),
                                                input<float, extents<4, 5>>("three_way_in1"),
                                                input<float, extents<5, 2>>("three_way_in2")),
                 archive, "three_way_out", f32_tolerance(20));
  }
  SUBCASE("integers are summed exactly") {
    const auto a = input<std::int32_t, extents<9, 12>>("mm_int_in0");
    const auto b = input<std::int32_t, extents<12, 5>>("mm_int_in1");
    auto r = einsum<"i k, k j -> i j">(a, b);
    static_assert(!tensor_like<decltype(r)>);
    check_golden(r, archive, "mm_int_out", 0);
  }
  SUBCASE("mixed element types promote, as in NumPy") {
    const auto a = input<float, extents<3, 17, 33>>("bmm_in0");
    const auto b = input<double, extents<3, 33, 9>>("bmm_in1");
    auto r = einsum<"b i k, b k j -> b i j">(a, b);
    static_assert(std::is_same_v<decltype(r)::value_type, double>);
    check_golden(r, archive, "bmm_out", 1e-6);
  }
}

TEST_CASE("einsum: with nothing to sum, one tensor gives a view") {
  // [snippet einsum_views]
  const auto x = iota<float, extents<2, 3, 4>>();     // (I, J, K)
  auto t = einsum<"i j k -> j i k">(x);                // (J, I, K): a strided view of x
  static_assert(view_like<decltype(t)>);
  CHECK(t(2, 1, 3) == x(1, 2, 3));
  const auto m = iota<float, extents<4, 4>>();        // (N, N)
  auto d = einsum<"i i -> i">(m);                      // (N,): the diagonal, a view with stride 5
  static_assert(view_like<decltype(d)>);
  auto trace = einsum<"i i ->">(m);                    // (): a lazy reduction over the diagonal
  CHECK(eval(trace)() == 0 + 5 + 10 + 15);
  // [end snippet]
  static_assert(std::is_same_v<decltype(t)::extents_type, extents<3, 2, 4>>);
  CHECK(t.data() == x.data());
  for (index_t i = 0; i < 4; ++i) CHECK(d(i) == m(i, i));
}

TEST_CASE("einsum: length-1 axes broadcast against the same name, as in NumPy") {
  const auto a = iota<float, extents<1, 4>>(1);
  const auto b = iota<float, extents<3, 4>>();
  auto r = eval(einsum<"i k, i k -> i">(a, b));  // a's row is used for every i
  static_assert(std::is_same_v<decltype(r)::extents_type, extents<3>>);
  for (index_t i = 0; i < 3; ++i) {
    float want = 0;
    for (index_t k = 0; k < 4; ++k) want += a(0, k) * b(i, k);
    CHECK(r(i) == want);
  }
}

TEST_CASE("einsum: shape errors of dynamic extents are shape_errors naming the axis") {
  tensor<float, dims<2>> a(3, 4), b(5, 6), sq(3, 4);
  CHECK_THROWS_WITH_AS(einsum<"i k, k j -> i j">(a, b),
                       doctest::Contains("operands could not be broadcast together: axis 'k' has lengths 4 and 5"),
                       shape_error);
  CHECK_THROWS_WITH_AS(einsum<"i i -> i">(sq), doctest::Contains("collapsing index 'i' don't match (3 != 4)"), shape_error);
  CHECK_THROWS_WITH_AS(einsum<"i k, k j -> i j">(a, b), doctest::Contains("einsum \"i k, k j -> i j\" on inputs of shapes (3, 4), (5, 6)"),
                       shape_error);
}

TEST_CASE("einsum: the pattern's structure, at compile time") {
  using pattern::error_code;
  constexpr auto p = pattern::parse_einsum("b h i d, b h j d -> b h i j");
  static_assert(p.ok() && p.n_inputs == 2 && p.n_names == 5);
  constexpr int ranks[] = {4, 4};
  constexpr auto l = pattern::layout_einsum(p, ranks, 2);
  static_assert(l.ok() && l.n_out == 4 && l.n_joint == 5);  // b h i j, then d summed
  static_assert(l.joint_of[1][2] == 3 && l.joint_of[0][3] == 4);
  static_assert(pattern::parse_einsum("a b -> a -> b").error == error_code::missing_arrow);
  constexpr auto wide = pattern::parse_einsum("a b c d e f g h, i j k l m n o p q -> a");
  static_assert(wide.ok() && wide.n_names == 17);
  constexpr int wide_ranks[] = {8, 9};
  static_assert(pattern::layout_einsum(wide, wide_ranks, 2).error == error_code::einsum_capacity);  // 17 joint axes
  constexpr int one[] = {3};
  static_assert(pattern::layout_einsum(pattern::parse_einsum("... i -> i"), one, 1).error == error_code::einsum_output_ellipsis);
  static_assert(pattern::layout_einsum(pattern::parse_einsum("i j -> i"), one, 1).error == error_code::einsum_too_few_subscripts);
  static_assert(pattern::layout_einsum(pattern::parse_einsum("i j k l -> i"), one, 1).error ==
                error_code::einsum_too_many_subscripts);
  static_assert(pattern::parse_einsum("i, (...) -> i").error == error_code::einsum_composition);
  static_assert(pattern::parse_einsum("_ i -> _").ok());
}
