// Tests of the CPU GEMM (einlm/linalg/gemm_cpu.hpp) against a triple loop in double with error
// bounds derived from K and the precisions (tests/linalg/gemm_check.hpp): the own kernel for every
// input type, the BLAS path for float and double (when this build has a BLAS) and the two
// compared with each other; odd sizes, every layout and stride combination, batches, every
// epilogue option, output casts, the tensor interface, and the errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "einlm/einlm.hpp"
#include "einlm/linalg.hpp"
#include "linalg/gemm_check.hpp"
#include "support/check.hpp"

using namespace einlm;
using test::gemm_case;
using test::gemm_problem;

namespace {

/// Runs one backend on a copy of the problem's initial C and returns C's storage afterwards.
template <class In, class Out>
std::vector<Out> run_cpu(const gemm_problem<In, Out>& p, gemm_backend backend, int threads = 0) {
  std::vector<Out> out = p.initial_output();
  gemm_options options;
  options.backend = backend;
  options.threads = threads;
  gemm_cpu(matrix_ref<const In>(p.a.ref), matrix_ref<const In>(p.b.ref), p.c.template on<Out>(out.data()), p.ep,
           options);
  return out;
}

/// Fills a host tensor with numbers uniform in [lo, hi) from std::mt19937_64.
template <class T>
void fill_uniform(T& t, std::uint64_t seed, double lo, double hi) {
  const auto v = test::random_values<double>(static_cast<std::size_t>(t.size()), lo, hi, seed);
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = convert<typename T::value_type>(v[static_cast<std::size_t>(i)]);
}

template <class In, class Out>
void run_standard_cases(bool with_blas) {
  std::uint64_t seed = 1;
  for (const gemm_case& c : test::standard_cases()) {
    const gemm_problem<In, Out> p(c, seed++);
    const auto own = run_cpu(p, gemm_backend::own);
    p.check(own, std::string("own ") + dtype_traits<In>::name + " -> " + dtype_traits<Out>::name);
    if (with_blas) {
      const auto blas = run_cpu(p, gemm_backend::blas);
      p.check(blas, std::string("blas ") + dtype_traits<In>::name + " -> " + dtype_traits<Out>::name);
      p.check_agree(own, blas, "own and blas agree");
    }
  }
}

}  // namespace

TEST_CASE("own kernel and BLAS: float") { run_standard_cases<float, float>(gemm_has_blas); }
TEST_CASE("own kernel and BLAS: double") { run_standard_cases<double, double>(gemm_has_blas); }
TEST_CASE("own kernel: bf16 inputs, bf16 output") { run_standard_cases<bf16, bf16>(false); }
TEST_CASE("own kernel: fp16 inputs, float output") { run_standard_cases<fp16, float>(false); }

TEST_CASE("output casts: float inputs to bf16, fp16 and double; double to float; bf16 to fp16") {
  std::uint64_t seed = 100;
  for (const auto& c : test::standard_cases()) {
    if (c.M * c.N * c.K > 100000 && c.batch == 1) continue;  // the standard set is covered above
    {
      const gemm_problem<float, bf16> p(c, seed++);
      p.check(run_cpu(p, gemm_backend::own), "own float -> bf16");
      if (gemm_has_blas) p.check(run_cpu(p, gemm_backend::blas), "blas float -> bf16");
    }
    {
      const gemm_problem<float, fp16> p(c, seed++);
      p.check(run_cpu(p, gemm_backend::automatic), "automatic float -> fp16");
    }
    {
      const gemm_problem<float, double> p(c, seed++);
      p.check(run_cpu(p, gemm_backend::automatic), "automatic float -> double");
    }
    {
      const gemm_problem<double, float> p(c, seed++);
      p.check(run_cpu(p, gemm_backend::automatic), "automatic double -> float");
    }
    {
      const gemm_problem<bf16, fp16> p(c, seed++);
      p.check(run_cpu(p, gemm_backend::own), "own bf16 -> fp16");
    }
  }
}

TEST_CASE("every micro-kernel of this build: the packets', and those chosen at run time") {
  // gemm_backend::own runs the widest kernel the CPU has; each is checked here directly.
  const auto run_with = [](auto tiles, const auto& p, const char* what) {
    using P = std::remove_cvref_t<decltype(p)>;
    using In = std::remove_cv_t<std::remove_reference_t<decltype(*p.a.ref.data)>>;
    using Out = std::remove_cv_t<std::remove_reference_t<decltype(*p.c.ref.data)>>;
    static_assert(std::is_same_v<P, gemm_problem<In, Out>>);
    auto out = p.initial_output();
    detail::cpu_gemm_own<In, Out, decltype(tiles)>(matrix_ref<const In>(p.a.ref), matrix_ref<const In>(p.b.ref),
                                                     p.c.template on<Out>(out.data()), p.ep, 2)
        .run();
    p.check(out, what);
  };
  std::uint64_t seed = 500;
  for (const auto& c : test::standard_cases()) {
    const gemm_problem<float, float> pf(c, seed++);
    const gemm_problem<double, double> pd(c, seed++);
    run_with(detail::cpu_gemm_tiles<float>{}, pf, "packet kernel, float");
    run_with(detail::cpu_gemm_tiles<double>{}, pd, "packet kernel, double");
#if EINLM_HAS_PACKETS && defined(__x86_64__) && !defined(__AVX512F__)
    if (detail::cpu_gemm_vector_bytes() == 64) {
      run_with(detail::cpu_gemm_tiles_x86<float, 64>{}, pf, "AVX-512 kernel, float");
      run_with(detail::cpu_gemm_tiles_x86<double, 64>{}, pd, "AVX-512 kernel, double");
    }
#if !(defined(__AVX2__) && defined(__FMA__))
    if (detail::cpu_gemm_vector_bytes() >= 32) {
      run_with(detail::cpu_gemm_tiles_x86<float, 32>{}, pf, "AVX2 kernel, float");
      run_with(detail::cpu_gemm_tiles_x86<double, 32>{}, pd, "AVX2 kernel, double");
    }
#endif
#endif
    // bf16: the widening kernel (packets), and the bf16 pair kernel where the CPU has AVX-512 BF16.
    const gemm_problem<bf16, bf16> pb(c, seed++);
    const gemm_problem<bf16, float> pbf(c, seed++);
    run_with(detail::cpu_gemm_tiles<float>{}, pb, "packet kernel, bf16");
#if EINLM_GEMM_HAS_BF16_DOT
    if (detail::cpu_has_bf16_dot()) {
      run_with(detail::cpu_gemm_tiles_bf16_dot{}, pb, "bf16 pair kernel, bf16 output");
      run_with(detail::cpu_gemm_tiles_bf16_dot{}, pbf, "bf16 pair kernel, float output");
    }
    if (detail::cpu_has_amx_bf16()) {
      run_with(detail::cpu_gemm_tiles_bf16_amx{}, pb, "AMX kernel, bf16 output");
      run_with(detail::cpu_gemm_tiles_bf16_amx{}, pbf, "AMX kernel, float output");
    }
#endif
  }
}

TEST_CASE("large problems: several K panels, several row blocks and column groups, both threads") {
  gemm_case c;
  c.batch = 1;
  c.M = 301;
  c.N = 4100;  // past one NC panel (4096)
  c.K = 530;   // K panels: two of the AVX-512 kernel (KC 512), three of the others (256)
  c.alpha = 0.5;
  c.beta = 0.25;
  c.bias = true;
  c.act = activation::gelu;
  c.residual = true;
  const gemm_problem<float, float> p(c, 7);
  const auto own = run_cpu(p, gemm_backend::own);
  p.check(own, "own float, large");
  if (gemm_has_blas) p.check_agree(own, run_cpu(p, gemm_backend::blas), "own and blas agree, large");
  const gemm_problem<bf16, bf16> q(c, 8);
  q.check(run_cpu(q, gemm_backend::own), "own bf16, large");
}

TEST_CASE("the automatic backend: BLAS, or the own kernel where BLAS's kernels are older than the CPU") {
  const std::string said = cpu_gemm_description();
  MESSAGE("float GEMM on this machine: " << said);
  CHECK(!said.empty());
  // Which of the two ran is seen in the bits: the two backends round differently somewhere in
  // one of these products (their kernels and K panels differ; which product shows it depends on
  // the BLAS and the CPU). A matrix-vector product stays with BLAS.
  auto make = [](index_t M, index_t N, index_t K, std::uint64_t seed) {
    gemm_case c;
    c.M = M;
    c.N = N;
    c.K = K;
    return gemm_problem<float, float>(c, seed);
  };
  const auto vector = make(1, 96, 300, 32);
  for (const index_t K : {300, 1000, 2999}) {
    const auto matrix = make(64, 96, K, 31);
    const auto automatic = run_cpu(matrix, gemm_backend::automatic), own = run_cpu(matrix, gemm_backend::own);
    matrix.check(automatic, "automatic float");
    if (!gemm_has_blas) {
      CHECK(automatic == own);
      CHECK(said.rfind("einlm's own kernel", 0) == 0);
      return;
    }
    const auto blas = run_cpu(matrix, gemm_backend::blas);
    if (own == blas) {
      REQUIRE_MESSAGE(K != 2999, "the test needs backends that round differently");
      continue;
    }
    MESSAGE("own and BLAS round differently at K = " << K);
    const bool older = detail::blas_kernels_older_than_cpu();
    // ctest runs this case once more with OPENBLAS_CORETYPE=Prescott: on a CPU with FMA that is older.
    if (detail::openblas_core() == "Prescott" && detail::own_kernel_fma_bytes() > 0) CHECK(older);
    CHECK(automatic == (older ? own : blas));
    CHECK(run_cpu(vector, gemm_backend::automatic) == run_cpu(vector, gemm_backend::blas));
    if (older) CHECK(said.find("older than this CPU") != std::string::npos);
    if (!detail::openblas_core().empty()) CHECK(said.find(detail::openblas_core()) != std::string::npos);
    return;
  }
}

TEST_CASE("bf16 with K past one panel of every kernel, odd K, float and bf16 outputs") {
  // K = 2·1024 + 3: three panels of the bf16 pair and AMX kernels (KC 1024, the last one an odd 3,
  // padded to 32 for AMX) and nine of the widening kernel, with partial sums kept in C (float
  // output) or beside it (bf16).
  gemm_case c;
  c.batch = 2;
  c.M = 37;
  c.N = 45;
  c.K = 2051;
  c.beta = 0.5;
  c.bias = true;
  c.residual = true;
  std::uint64_t seed = 11;
  for (int layout = 0; layout < 4; ++layout) {  // A and B row- or column-major
    c.layout.a_col_major = layout & 1;
    c.layout.b_col_major = layout & 2;
    const gemm_problem<bf16, bf16> p(c, seed++);
    p.check(run_cpu(p, gemm_backend::own), "own bf16 -> bf16, K 2051");
    const gemm_problem<bf16, float> q(c, seed++);
    q.check(run_cpu(q, gemm_backend::own), "own bf16 -> float, K 2051");
    auto widened = q.initial_output();
    detail::cpu_gemm_own<bf16, float>(matrix_ref<const bf16>(q.a.ref), matrix_ref<const bf16>(q.b.ref),
                                      q.c.template on<float>(widened.data()), q.ep, 1)
        .run();
    q.check(widened, "widening kernel, bf16 -> float, K 2051");
#if EINLM_GEMM_HAS_BF16_DOT
    // Both bf16 kernels where the CPU has them (own runs AMX when it can, else the pair kernel).
    const auto run_tiles = [&](auto tiles, const char* what) {
      auto out = q.initial_output();
      detail::cpu_gemm_own<bf16, float, decltype(tiles)>(matrix_ref<const bf16>(q.a.ref),
                                                         matrix_ref<const bf16>(q.b.ref),
                                                         q.c.template on<float>(out.data()), q.ep, 2)
          .run();
      q.check(out, what);
    };
    if (detail::cpu_has_bf16_dot()) run_tiles(detail::cpu_gemm_tiles_bf16_dot{}, "pair kernel, bf16 -> float, K 2051");
    if (detail::cpu_has_amx_bf16()) run_tiles(detail::cpu_gemm_tiles_bf16_amx{}, "AMX kernel, bf16 -> float, K 2051");
#endif
  }
}

TEST_CASE("the own kernel's results do not depend on the number of threads") {
  gemm_case c;
  c.batch = 3;
  c.M = 150;
  c.N = 70;
  c.K = 600;  // two K panels or more, partial sums kept in C
  c.act = activation::silu;
  c.bias = true;
  for (const index_t batch : {3, 1}) {  // threads over the batch; threads within one matrix
    c.batch = batch;
    const gemm_problem<float, float> p(c, 11);
    const auto one = run_cpu(p, gemm_backend::own, 1);
    const auto two = run_cpu(p, gemm_backend::own, 2);
    const auto three = run_cpu(p, gemm_backend::own, 3);
    p.check(one, "own, one thread");
    CHECK(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)) == 0);
    CHECK(std::memcmp(one.data(), three.data(), one.size() * sizeof(float)) == 0);
  }
}

TEST_CASE("epilogue values equal the element-wise expressions'") {
  // With K = 1 and alpha = 1 the product is exact, so C must equal the expression's result bit for
  // bit: act(a·b + bias) + residual, evaluated by the expression engine. A build for a CPU with
  // fused multiply-adds (-march=native) lets the compiler fuse an activation's last product with
  // the residual's addition in one of the two and not in the other: there, within 4 ulp of the
  // larger of the result and the residual.
  const index_t M = 9, N = 37;
  tensor<float, dims<2>> a(M, 1), b(1, N), bias2(1, N), res(M, N), c(M, N), want(M, N);
  fill_uniform(a, 1, -4, 4);
  fill_uniform(b, 2, -4, 4);
  fill_uniform(bias2, 3, -4, 4);
  fill_uniform(res, 4, -4, 4);
  const auto bias = reshape(bias2, dims<1>(N));
  tensor<float, dims<2>> prod(M, N);
  for (index_t i = 0; i < M; ++i)
    for (index_t j = 0; j < N; ++j) prod(i, j) = a(i, 0) * b(0, j);
  // The largest difference in units of the last place of the result, or of the residual where
  // that is larger (adding it may cancel most of the activation's value).
  const auto worst_ulps = [&](bool with_residual) {
    double worst = 0;
    for (index_t i = 0; i < c.size(); ++i) {
      const float w = want.data()[i];
      const double r = with_residual ? std::abs(double(res.data()[i])) : 0.0;
      const double ulp = std::max({double(std::abs(w)), r, 0x1p-126}) * 0x1p-23;
      worst = std::max(worst, std::abs(double(c.data()[i]) - double(w)) / ulp);
    }
    return worst;
  };
#if defined(__FMA__)
  constexpr double fused_ulps = 4.0;
#else
  constexpr double fused_ulps = 0.0;
#endif
  for (const activation act :
       {activation::none, activation::relu, activation::gelu, activation::gelu_tanh, activation::silu}) {
    switch (act) {
      case activation::none: want = prod + bias2 + res; break;
      case activation::relu: want = relu(prod + bias2) + res; break;
      case activation::gelu: want = gelu(prod + bias2) + res; break;
      case activation::gelu_tanh: want = gelu_tanh(prod + bias2) + res; break;
      case activation::silu: want = silu(prod + bias2) + res; break;
    }
    for (const gemm_backend backend : {gemm_backend::own, gemm_backend::automatic}) {
      gemm(a, b, c, {.bias = bias, .act = act, .residual = res}, {.backend = backend});
      INFO(std::string(activation_name(act)), " ", std::string(backend_name(backend)));
      CHECK(worst_ulps(true) <= (act == activation::relu || act == activation::none ? 0.0 : fused_ulps));
    }
  }
  // Without a residual the activation runs over each stored run, on this CPU's widest packets
  // (simd::dispatch): the same functions, so within the rounding that fused multiply-adds change
  // (a few units in the last place; relu exactly).
  for (const activation act : {activation::relu, activation::gelu, activation::gelu_tanh, activation::silu}) {
    switch (act) {
      case activation::relu: want = relu(prod + bias2); break;
      case activation::gelu: want = gelu(prod + bias2); break;
      case activation::gelu_tanh: want = gelu_tanh(prod + bias2); break;
      default: want = silu(prod + bias2); break;
    }
    for (const gemm_backend backend : {gemm_backend::own, gemm_backend::automatic}) {
      c = 7.0f;
      gemm(a, b, c, {.bias = bias, .act = act}, {.backend = backend});
      INFO(std::string(activation_name(act)), " ", std::string(backend_name(backend)));
      CHECK(worst_ulps(false) <= (act == activation::relu ? 0.0 : 4.0));
    }
  }
}

TEST_CASE("tensor interface: ranks 2 and 3, transposed views, static shapes") {
  // [snippet gemm-tensors]
  tensor<float, extents<64, 32>> x;           // (S, D)
  tensor<float, extents<48, 32>> w;           // (F, D), as nn.Linear stores its weight
  tensor<float, extents<48>> b;               // (F,)
  tensor<float, extents<64, 48>> y;           // (S, F)
  // … fill x, w, b …
  // [end snippet]
  fill_uniform(x, 1, -1, 1);
  fill_uniform(w, 2, -1, 1);
  fill_uniform(b, 3, -1, 1);
  // [snippet gemm-linear]
  gemm(x, transpose<1, 0>(w), y, {.bias = b, .act = activation::gelu});  // y = gelu(x·wᵀ + b)
  // [end snippet]
  for (index_t i = 0; i < 64; ++i)
    for (index_t j = 0; j < 48; ++j) {
      double s = b(j);
      for (index_t k = 0; k < 32; ++k) s += static_cast<double>(x(i, k)) * w(j, k);
      CHECK(std::abs(y(i, j) - test::reference_activation(activation::gelu, s)) <= 40 * 0x1p-24 * (1 + std::abs(s)));
    }

  // Batched: (B, M, K)·(K, N) with B shared, into a strided view of a bigger tensor.
  tensor<bf16, dims<3>> q(2, 5, 16), out(2, 5, 24);
  tensor<bf16, dims<2>> kt(16, 12);
  for (index_t i = 0; i < q.size(); ++i) q.data()[i] = convert<bf16>(0.01 * static_cast<double>(i % 97));
  for (index_t i = 0; i < kt.size(); ++i) kt.data()[i] = convert<bf16>(0.02 * static_cast<double>(i % 31) - 0.3);
  auto half = slice(out, full_extent, full_extent, range{0, 24, 2});  // (2, 5, 12), column stride 2
  gemm(q, kt, half, {.alpha = 2.0});
  for (index_t bt = 0; bt < 2; ++bt)
    for (index_t i = 0; i < 5; ++i)
      for (index_t j = 0; j < 12; ++j) {
        double s = 0;
        for (index_t k = 0; k < 16; ++k) s += convert<double>(q(bt, i, k)) * convert<double>(kt(k, j));
        CHECK(std::abs(convert<double>(half(bt, i, j)) - 2 * s) <= 0x1p-8 * std::abs(2 * s) + 1e-4);
      }
}

TEST_CASE("errors name the operation and the sizes") {
  std::vector<float> buf(1000, 1.0f), out(1000, 0.0f);
  const matrix_ref<const float> a(buf.data(), 4, 5), b(buf.data(), 6, 3), b_ok(buf.data(), 5, 3);
  const matrix_ref<float> c(out.data(), 4, 3);
  CHECK_THROWS_WITH_AS(gemm_cpu(a, b, c), doctest::Contains("gemm: A has 5 columns but B has 6 rows (K must agree)"),
                       shape_error);
  CHECK_THROWS_WITH_AS(gemm_cpu(a, b_ok, matrix_ref<float>(out.data(), 3, 3)),
                       doctest::Contains("gemm: A has 4 rows but C has 3 (M must agree)"), shape_error);
  CHECK_THROWS_WITH_AS(gemm_cpu(a, b_ok, matrix_ref<float>(out.data(), 4, 4)),
                       doctest::Contains("gemm: B has 3 columns but C has 4 (N must agree)"), shape_error);
  CHECK_THROWS_WITH_AS(gemm_cpu(matrix_ref<const float>(buf.data(), 2, 4, 5, 20, 5, 1), b_ok,
                                matrix_ref<float>(out.data(), 3, 4, 3, 12, 3, 1)),
                       doctest::Contains("the batch of A and of B must be C's (3) or 1"), shape_error);
  epilogue<float> ep;
  ep.bias = vector_ref<float>(buf.data() + 500, 4);
  CHECK_THROWS_WITH_AS(gemm_cpu(a, b_ok, c, ep), doctest::Contains("the bias has 4 elements but C has 3 columns"),
                       shape_error);
  ep.bias = {};
  ep.residual = matrix_ref<const float>(buf.data(), 3, 4);
  CHECK_THROWS_WITH_AS(gemm_cpu(a, b_ok, c, ep), doctest::Contains("the residual has shape (1, 3, 4) but C has (1, 4, 3)"),
                       shape_error);
  CHECK_THROWS_WITH_AS(gemm_cpu(a, b_ok, matrix_ref<float>(out.data(), 1, 4, 3, 0, 0, 1)),
                       doctest::Contains("reach some element twice"), value_error);
  CHECK_THROWS_WITH_AS(gemm_cpu(a, b_ok, matrix_ref<float>(buf.data() + 10, 4, 3)), doctest::Contains("C overlaps A or B"),
                       value_error);
  ep.residual = matrix_ref<const float>(out.data(), 4, 3);
  CHECK_THROWS_WITH_AS(gemm_cpu(a, b_ok, c, ep), doctest::Contains("C overlaps the residual; for C += A·B use beta = 1"),
                       value_error);
  CHECK_THROWS_WITH_AS(gemm_cpu(a, b_ok, c, {}, {.backend = gemm_backend::cublaslt}),
                       doctest::Contains("the cublaslt backend needs device memory"), value_error);
  std::vector<bf16> hb(100, convert<bf16>(1.0));
  CHECK_THROWS_WITH_AS(gemm_cpu(matrix_ref<const bf16>(hb.data(), 4, 5), matrix_ref<const bf16>(hb.data(), 5, 3), c, {},
                                {.backend = gemm_backend::blas}),
                       doctest::Contains("the blas backend"), value_error);
  if (!gemm_has_blas)
    CHECK_THROWS_WITH_AS(gemm_cpu(a, b_ok, c, {}, {.backend = gemm_backend::blas}),
                         doctest::Contains("is not compiled in"), value_error);
  // Empty problems are fine and touch nothing.
  CHECK_NOTHROW(gemm_cpu(matrix_ref<const float>(buf.data(), 0, 5), b_ok, matrix_ref<float>(out.data(), 0, 3)));
}
