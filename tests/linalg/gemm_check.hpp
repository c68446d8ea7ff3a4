// Shared pieces of the GEMM tests: problems with chosen layouts and random data, an independent
// reference (a triple loop in double, activations from <cmath>), and an error bound per element
// derived from K and the precisions involved.
//
// Bound (|·| elementwise, u = unit roundoff): the product's accumulation in the accumulator type
// errs by at most (K + 3)·u_acc·|alpha|·Σ_k|a_ik·b_kj| (a dot product of K terms, then the scale),
// plus 2·u_acc for each of beta·C_old and the bias added to it; the activations have |f'| ≤ 1.13
// and are computed within 4 ulps (CPU polynomials and CUDA's libm alike); the residual add rounds
// once more; the output cast rounds to u_out (or, for results in the subnormal range, half the
// smallest subnormal). Inputs are drawn already rounded to their type, so the reference sees
// exactly the values the kernels see.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "einlm/linalg/gemm.hpp"

namespace einlm::test {

/// How the operands of a test problem sit in memory.
struct gemm_layout {
  bool a_col_major = false;  // A's rows contiguous (A stored transposed)
  bool b_col_major = false;  // B's rows (k) contiguous
  bool c_col_major = false;  // C's rows contiguous
  index_t pad = 0;           // extra elements after each contiguous run (leading dimension > extent)
  bool a_shared = false;     // A has batch 1, shared by every batch of C
  bool b_shared = false;
  bool a_gapped = false;     // A's elements 2 apart along its contiguous axis: neither stride is 1
  bool a_reversed = false;   // A's rows in reverse order (a negative row stride)
  index_t misalign = 0;      // elements added in front of every allocation (breaks 16-byte alignment)
};

struct gemm_case {
  index_t batch = 1, M = 1, N = 1, K = 1;
  gemm_layout layout{};
  double alpha = 1.0, beta = 0.0;
  bool bias = false;
  bias_axis bias_along = bias_axis::columns;
  activation act = activation::none;
  bool residual = false;

  std::string describe() const {
    return detail::concat("batch ", batch, " M ", M, " N ", N, " K ", K, " layout a", layout.a_col_major ? "T" : "N",
                          layout.b_col_major ? "T" : "N", layout.c_col_major ? " cT" : " cN", " pad ", layout.pad,
                          layout.a_shared ? " a-shared" : "", layout.b_shared ? " b-shared" : "",
                          layout.a_gapped ? " a-gapped" : "", layout.a_reversed ? " a-reversed" : "",
                          layout.misalign ? " misaligned" : "", " alpha ", alpha, " beta ", beta,
                          bias ? (bias_along == bias_axis::columns ? " bias/col" : " bias/row") : "", " act ",
                          activation_name(act), residual ? " residual" : "");
  }
};

/// Storage (with padding) and the matrix_ref that describes the matrix inside it.
template <class T>
struct stored_matrix {
  std::vector<T> storage;
  matrix_ref<T> ref;
  /// The same matrix_ref moved onto another copy of the storage (a device copy).
  template <class U>
  matrix_ref<U> on(U* base) const {
    matrix_ref<U> r(base + (ref.data - storage.data()), ref.batch, ref.rows, ref.cols, ref.batch_stride,
                    ref.row_stride, ref.col_stride);
    return r;
  }
};

/// A (batch, rows, cols) matrix: rows contiguous when col_major, columns otherwise; `gap` apart
/// along the contiguous axis; `pad` extra elements per run; rows reversed when asked.
template <class T>
stored_matrix<T> make_matrix(index_t batch, index_t rows, index_t cols, bool col_major, index_t pad, index_t gap,
                             bool reversed, index_t misalign) {
  const index_t inner = col_major ? rows : cols, outer = col_major ? cols : rows;
  const index_t ld = inner * gap + pad;
  const index_t per_batch = ld * outer;
  stored_matrix<T> m;
  m.storage.assign(static_cast<std::size_t>(misalign + per_batch * batch + 1), convert<T>(0.0));
  T* base = m.storage.data() + misalign;
  index_t rs = col_major ? gap : ld, cs = col_major ? ld : gap;
  if (reversed && rows > 0) {
    base += (rows - 1) * rs;
    rs = -rs;
  }
  m.ref = matrix_ref<T>(base, batch, rows, cols, per_batch, rs, cs);
  return m;
}

/// Unit roundoff of a type (half the distance from 1 to the next value).
template <class T>
constexpr double unit_roundoff() {
  if constexpr (std::is_same_v<T, double>) return 0x1p-53;
  else if constexpr (std::is_same_v<T, float>) return 0x1p-24;
  else if constexpr (std::is_same_v<T, bf16>) return 0x1p-8;
  else return 0x1p-11;
}

/// Half the smallest subnormal of a type: the absolute rounding error of tiny results.
template <class T>
constexpr double tiny_rounding() {
  if constexpr (std::is_same_v<T, double>) return 0x1p-1074;  // (not halved: the smallest double)
  else if constexpr (std::is_same_v<T, float>) return 0x1p-150;
  else if constexpr (std::is_same_v<T, bf16>) return 0x1p-134;
  else return 0x1p-25;
}

inline double reference_activation(activation act, double x) {
  switch (act) {
    case activation::none: return x;
    case activation::relu: return x < 0 ? 0.0 : x;
    case activation::gelu: return 0.5 * x * std::erfc(-x / std::sqrt(2.0));
    case activation::gelu_tanh:
      return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
    case activation::silu: return x / (1.0 + std::exp(-x));
  }
  return x;
}

/// A test problem: operands, old C, bias and residual with random values; the reference result
/// and the error bound of every element of C (in (b, i, j) order).
template <class In, class Out>
struct gemm_problem {
  using Acc = detail::gemm_acc_t<In>;
  gemm_case cs;
  stored_matrix<In> a, b;
  stored_matrix<Out> c, residual;
  std::vector<Out> bias, c_initial;
  epilogue<Out> ep;
  std::vector<double> ref, bound;

  gemm_problem(const gemm_case& c_, std::uint64_t seed) : cs(c_) {
    const auto& L = cs.layout;
    a = make_matrix<In>(L.a_shared ? 1 : cs.batch, cs.M, cs.K, L.a_col_major, L.pad, L.a_gapped ? 2 : 1, L.a_reversed,
                        L.misalign);
    b = make_matrix<In>(L.b_shared ? 1 : cs.batch, cs.K, cs.N, L.b_col_major, L.pad, 1, false, L.misalign);
    c = make_matrix<Out>(cs.batch, cs.M, cs.N, L.c_col_major, L.pad, 1, false, L.misalign);
    residual = make_matrix<Out>(cs.batch, cs.M, cs.N, false, 0, 1, false, 0);
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> dist(-1.0, 1.0);
    const auto fill = [&](auto& m) {
      for (index_t bt = 0; bt < m.ref.batch; ++bt)
        for (index_t i = 0; i < m.ref.rows; ++i)
          for (index_t j = 0; j < m.ref.cols; ++j)
            m.ref(bt, i, j) = convert<std::remove_cvref_t<decltype(m.ref(0, 0, 0))>>(dist(rng));
    };
    fill(a);
    fill(b);
    fill(c);
    fill(residual);
    bias.resize(static_cast<std::size_t>(cs.bias_along == bias_axis::columns ? cs.N : cs.M));
    for (auto& x : bias) x = convert<Out>(dist(rng));
    c_initial = c.storage;
    ep.alpha = cs.alpha;
    ep.beta = cs.beta;
    if (cs.bias) ep.bias = vector_ref<Out>(bias.data(), static_cast<index_t>(bias.size()));
    ep.bias_along = cs.bias_along;
    ep.act = cs.act;
    if (cs.residual) ep.residual = residual.ref;
    compute_reference();
  }

  void compute_reference() {
    const double ua = unit_roundoff<Acc>(), uo = unit_roundoff<Out>();
    ref.assign(static_cast<std::size_t>(cs.batch * cs.M * cs.N), 0.0);
    bound = ref;
    for (index_t bt = 0; bt < cs.batch; ++bt)
      for (index_t i = 0; i < cs.M; ++i)
        for (index_t j = 0; j < cs.N; ++j) {
          double sum = 0, abs_sum = 0;
          for (index_t k = 0; k < cs.K; ++k) {
            const double p = convert<double>(a.ref(a.ref.batch == 1 ? 0 : bt, i, k)) *
                             convert<double>(b.ref(b.ref.batch == 1 ? 0 : bt, k, j));
            sum += p;
            abs_sum += std::abs(p);
          }
          double v = cs.alpha * sum;
          double err = (static_cast<double>(cs.K) + 3.0) * ua * std::abs(cs.alpha) * abs_sum;
          if (cs.beta != 0.0) {
            const double old = cs.beta * convert<double>(c.ref(bt, i, j));
            v += old;
            err += 2 * ua * (std::abs(old) + std::abs(v));
          }
          if (cs.bias) {
            v += convert<double>(bias[static_cast<std::size_t>(cs.bias_along == bias_axis::columns ? j : i)]);
            err += 2 * ua * std::abs(v);
          }
          v = reference_activation(cs.act, v);
          err = (cs.act == activation::none ? 1.0 : 1.13) * err + 8 * ua * std::abs(v);  // ≤ 4 ulp
          if (cs.residual) {
            v += convert<double>(residual.ref(bt, i, j));
            err += 2 * ua * std::abs(v);
          }
          const auto e = static_cast<std::size_t>((bt * cs.M + i) * cs.N + j);
          ref[e] = v;
          bound[e] = err + uo * std::abs(v) + tiny_rounding<Out>() + tiny_rounding<Acc>();
        }
  }

  /// C's storage as at the start; with beta = 0 its elements are NaN, which proves that every
  /// element is written and that C is not read.
  std::vector<Out> initial_output() const {
    std::vector<Out> s = c_initial;
    if (cs.beta == 0.0)
      for (index_t bt = 0; bt < cs.batch; ++bt)
        for (index_t i = 0; i < cs.M; ++i)
          for (index_t j = 0; j < cs.N; ++j)
            s[static_cast<std::size_t>(&c.ref(bt, i, j) - c.storage.data())] =
                convert<Out>(std::numeric_limits<float>::quiet_NaN());
    return s;
  }

  /// The values of an output (a copy of C's storage) in (b, i, j) order.
  std::vector<double> values(const std::vector<Out>& storage) const {
    std::vector<double> v;
    v.reserve(ref.size());
    for (index_t bt = 0; bt < cs.batch; ++bt)
      for (index_t i = 0; i < cs.M; ++i)
        for (index_t j = 0; j < cs.N; ++j)
          v.push_back(convert<double>(storage[static_cast<std::size_t>(&c.ref(bt, i, j) - c.storage.data())]));
    return v;
  }

  /// Checks an output against the reference within the bound plus `relative`·|reference| (for
  /// an implementation whose activation is an approximation); returns the worst error as a
  /// fraction of that.
  double check(const std::vector<Out>& storage, const std::string& what, double relative = 0.0) const {
    const auto v = values(storage);
    double worst = 0;
    std::size_t bad = 0, first_bad = 0;
    for (std::size_t e = 0; e < v.size(); ++e) {
      const double r = std::abs(v[e] - ref[e]) / (bound[e] + relative * std::abs(ref[e]));
      if (!(r <= 1.0)) {
        if (!bad) first_bad = e;
        ++bad;
      }
      if (r > worst || r != r) worst = r != r ? std::numeric_limits<double>::infinity() : r;
    }
    INFO(what, ": ", cs.describe());
    INFO("worst error / bound = ", worst, "; ", bad, " of ", v.size(), " elements out of bound");
    const std::string first = bad ? detail::concat("first at element ", first_bad, ": got ", v[first_bad], ", want ",
                                                   ref[first_bad], " ± ", bound[first_bad])
                                  : std::string();
    INFO(first);
    CHECK(bad == 0);
    return worst;
  }

  /// Two outputs (two backends) agree within the sum of their bounds (plus `relative`·|ref|).
  void check_agree(const std::vector<Out>& x, const std::vector<Out>& y, const std::string& what,
                   double relative = 0.0) const {
    const auto vx = values(x), vy = values(y);
    std::size_t bad = 0;
    for (std::size_t e = 0; e < vx.size(); ++e)
      if (!(std::abs(vx[e] - vy[e]) <= 2 * bound[e] + relative * std::abs(ref[e]))) ++bad;
    INFO(what, ": ", cs.describe());
    CHECK(bad == 0);
  }
};

/// The cases every backend runs: odd sizes, each layout, batches, every epilogue option.
inline std::vector<gemm_case> standard_cases() {
  std::vector<gemm_case> cases;
  // Every layout of A, B and C (row- or column-major); with `padded_and_beta` also padded or not
  // (a padded column of one is a vector with a stride) and beta 0 or −0.5.
  const auto add_layouts = [&](index_t M, index_t N, index_t K, double alpha, bool padded_and_beta) {
    for (int lay = 0; lay < (padded_and_beta ? 32 : 8); ++lay) {
      gemm_case c;
      c.M = M;
      c.N = N;
      c.K = K;
      c.layout.a_col_major = lay & 1;
      c.layout.b_col_major = lay & 2;
      c.layout.c_col_major = lay & 4;
      c.layout.pad = (lay & 16) ? 3 : 0;
      c.alpha = alpha;
      c.beta = (lay & 8) ? -0.5 : 0.0;
      cases.push_back(c);
    }
  };
  // A batch of 3 with padding.
  const auto batched = [](index_t M, index_t N, index_t K) {
    gemm_case c;
    c.batch = 3;
    c.M = M;
    c.N = N;
    c.K = K;
    c.layout.pad = 8;
    return c;
  };
  // Sizes: 1, 7, 33, 129 and non-multiples of every tile; K past one K panel (256 or 512) and past
  // one BK slice; a wide N.
  const index_t sizes[][3] = {{1, 1, 1}, {7, 33, 129}, {33, 7, 1}, {129, 65, 600}, {40, 129, 33}, {3, 517, 64}};
  for (const auto& s : sizes) add_layouts(s[0], s[1], s[2], 0.75, false);
  // Batches, shared operands, padding.
  {
    gemm_case c = batched(37, 45, 70);
    cases.push_back(c);
    c.layout.a_shared = true;
    cases.push_back(c);
    c.layout.a_shared = false;
    c.layout.b_shared = true;
    c.layout.b_col_major = true;
    cases.push_back(c);
  }
  // Operands no fast path takes: gaps, reversed rows, misaligned pointers.
  {
    gemm_case c;
    c.M = 23;
    c.N = 41;
    c.K = 35;
    c.layout.a_gapped = true;
    cases.push_back(c);
    c.layout.a_gapped = false;
    c.layout.a_reversed = true;
    cases.push_back(c);
    c.layout.a_reversed = false;
    c.layout.misalign = 1;
    cases.push_back(c);
  }
  // Every epilogue option, on a batched problem that spans several K panels.
  for (const activation act :
       {activation::none, activation::relu, activation::gelu, activation::gelu_tanh, activation::silu})
    for (int opt = 0; opt < 4; ++opt) {
      gemm_case c;
      c.batch = 2;
      c.M = 33;
      c.N = 47;
      c.K = 260;
      c.alpha = 1.25;
      c.act = act;
      c.bias = opt != 0;
      c.bias_along = opt == 2 ? bias_axis::rows : bias_axis::columns;
      c.residual = opt >= 2;
      c.beta = opt == 3 ? -0.5 : 0.0;
      c.layout.c_col_major = opt == 1;
      cases.push_back(c);
    }
  // Products of a million multiply-adds and more with beta 0 and no residual, which the BLAS
  // backend writes into C filled with the bias (or zeros) first: no bias, a bias along either
  // axis, C stored by rows or by columns, with and without an activation, batched; K past one
  // K panel of either backend.
  for (const activation act : {activation::none, activation::gelu_tanh})
    for (int opt = 0; opt < 6; ++opt) {
      gemm_case c;
      c.batch = 2;
      c.M = 70;
      c.N = 90;
      c.K = 530;
      c.act = act;
      c.bias = opt >= 2;
      c.bias_along = opt >= 4 ? bias_axis::rows : bias_axis::columns;
      c.layout.c_col_major = (opt & 1) != 0;
      c.layout.pad = opt == 3 ? 3 : 0;
      cases.push_back(c);
    }
  // Whole tiles stored straight from the micro-kernel's registers: one K panel, beta 0, no bias or
  // a per-column one, row-major C; A row-major (read in place) or column-major (packed); ragged
  // edges beside whole tiles.
  for (int opt = 0; opt < 4; ++opt) {
    gemm_case c;
    c.batch = 2;
    c.M = 40;
    c.N = 70;
    c.K = 100;
    c.alpha = 1.25;
    c.bias = (opt & 1) != 0;
    c.bias_along = bias_axis::columns;
    c.layout.a_col_major = (opt & 2) != 0;
    cases.push_back(c);
  }
  // One row or one column (a decoded token; the BLAS backend calls GEMV for these), every layout,
  // padded or not, with and without beta; batched with a shared matrix; and K = 0.
  add_layouts(1, 45, 70, 1.5, true);
  add_layouts(45, 1, 70, 1.5, true);
  {
    gemm_case c = batched(1, 45, 70);
    c.layout.b_shared = true;
    c.layout.b_col_major = true;
    cases.push_back(c);
    c = batched(45, 1, 70);
    c.layout.a_shared = true;
    c.layout.b_col_major = true;
    cases.push_back(c);
    c.batch = 1;
    c.M = 1;
    c.K = 0;
    c.beta = 2.0;
    cases.push_back(c);
  }
  // K = 0: C = post(beta·C).
  {
    gemm_case c;
    c.M = 5;
    c.N = 6;
    c.K = 0;
    c.beta = 2.0;
    c.bias = true;
    c.act = activation::silu;
    cases.push_back(c);
  }
  return cases;
}

}  // namespace einlm::test
