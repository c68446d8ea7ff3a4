// einlm/linalg/gemm.hpp — the backend-neutral interface of matrix multiplication (GEMM).
//
// A strided batched GEMM with a fused epilogue: for every b < batch, i < M, j < N
//
//   v          = alpha · Σ_k A[b,i,k] · B[b,k,j]  (+ beta · C[b,i,j], the old value, when beta ≠ 0)
//   v          = v + bias[j]            (bias_axis::columns, length N)  or  + bias[i] (rows, length M)
//   v          = act(v)                 none, relu, gelu (erf form), gelu_tanh, silu
//   v          = v + residual[b,i,j]
//   C[b,i,j]   = convert<Out>(v)        (the output cast)
//
// computed in the accumulator type: float for float, bf16 and fp16 inputs, double for double. The
// activations are einlm::math's, so values equal the element-wise expressions' (relu keeps NaN).
//
// Operands are matrix_ref: a pointer and (batch, rows, cols) extents with a stride each, in
// elements; any strides (negative and zero for inputs too: an einsum planner folds rearranges and
// transposes into them). A and B have one element type; C, bias and residual have the output
// type. An operand whose batch is 1 is broadcast over C's batch. C must not overlap A, B, the bias
// or the residual (for C += A·B use beta = 1). Sizes that disagree, or a C that writes one element
// twice, throw shape_error / value_error naming the operation and the sizes.
//
// Backends (gemm_options::backend):
//   automatic   CPU: BLAS for float/double when compiled in (EINLM_HAS_BLAS), own kernel otherwise
//               — and also when the BLAS is an OpenBLAS running kernels older than this CPU
//               (matrix-vector products excepted; gemm_cpu.hpp, cpu_gemm_description())
//               CUDA: own tensor-core kernel for bf16/fp16; cuBLASLt for float/double when compiled
//               in (EINLM_HAS_CUBLASLT), own SIMT kernel otherwise
//   own         einlm's own kernel (CPU: blocked SIMD micro-kernel; CUDA: mma.sync tensor cores for
//               bf16/fp16, SIMT for float/double)
//   blas        CPU only: cblas_sgemm / cblas_dgemm plus one fused epilogue pass
//   cublaslt    CUDA only: cuBLASLt, with its own epilogue where it has one
//
// Entry points:
//   gemm(a, b, c, epilogue, options)      tensors or views (rank 2, or rank 3 = batched; a rank-2 A
//                                          or B is shared by every batch); the memory space of the
//                                          views picks the CPU (einlm/linalg/gemm_cpu.hpp) or the
//                                          CUDA implementation (einlm/linalg/gemm_cuda.cuh)
//   gemm_cpu(a, b, c, …), gemm_cuda(stream, a, b, c, …)   the same on matrix_refs
// einlm/linalg.hpp includes all of them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>

#include "einlm/core/config.hpp"
#include "einlm/core/dtype.hpp"
#include "einlm/core/error.hpp"
#include "einlm/core/extents.hpp"
#include "einlm/core/math.hpp"
#include "einlm/core/tensor.hpp"

namespace einlm {

/// The activation of the epilogue (applied after the bias, before the residual).
enum class activation { none, relu, gelu, gelu_tanh, silu };

/// Whether the bias has one value per output column (length N) or per output row (length M).
enum class bias_axis { columns, rows };

/// Which implementation runs a GEMM (see the file comment).
enum class gemm_backend { automatic, own, blas, cublaslt };

inline const char* activation_name(activation a) {
  switch (a) {
    case activation::none: return "none";
    case activation::relu: return "relu";
    case activation::gelu: return "gelu";
    case activation::gelu_tanh: return "gelu_tanh";
    case activation::silu: return "silu";
  }
  return "?";
}

inline const char* backend_name(gemm_backend b) {
  switch (b) {
    case gemm_backend::automatic: return "automatic";
    case gemm_backend::own: return "own";
    case gemm_backend::blas: return "blas";
    case gemm_backend::cublaslt: return "cublaslt";
  }
  return "?";
}

/// A batch of matrices in memory: element (b, i, j) is data[b·batch_stride + i·row_stride +
/// j·col_stride]. Built from a pointer and numbers, or from a rank-2 or rank-3 tensor or view.
template <class T>
struct matrix_ref {
  T* data = nullptr;
  index_t batch = 1, rows = 0, cols = 0;
  index_t batch_stride = 0, row_stride = 0, col_stride = 1;

  matrix_ref() = default;
  EINLM_HD constexpr matrix_ref(T* p, index_t batch_, index_t rows_, index_t cols_, index_t batch_stride_,
                                index_t row_stride_, index_t col_stride_)
      : data(p), batch(batch_), rows(rows_), cols(cols_), batch_stride(batch_stride_), row_stride(row_stride_),
        col_stride(col_stride_) {}
  /// One row-major contiguous matrix (rows, cols).
  EINLM_HD constexpr matrix_ref(T* p, index_t rows_, index_t cols_)
      : data(p), batch(1), rows(rows_), cols(cols_), batch_stride(rows_ * cols_), row_stride(cols_), col_stride(1) {}
  /// A rank-2 (rows, cols) or rank-3 (batch, rows, cols) tensor or view (host or device).
  template <array_like X>
    requires(std::remove_cvref_t<X>::extents_type::rank() == 2 || std::remove_cvref_t<X>::extents_type::rank() == 3)
  matrix_ref(X&& x) {  // NOLINT(google-explicit-constructor): views convert implicitly
    const auto v = as_view(std::forward<X>(x));
    static_assert(std::is_convertible_v<std::remove_reference_t<decltype(*v.data())>*, T*>,
                  "matrix_ref: the tensor's element type differs (or a const tensor is used as output)");
    data = v.data();
    constexpr std::size_t R = decltype(v)::extents_type::rank();
    if constexpr (R == 3) {
      batch = v.extent(0);
      batch_stride = v.stride(0);
    } else {
      batch = 1;
      batch_stride = 0;
    }
    rows = v.extent(R - 2);
    cols = v.extent(R - 1);
    row_stride = v.stride(R - 2);
    col_stride = v.stride(R - 1);
  }
  /// Adds const.
  template <class U>
    requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>)
  EINLM_HD constexpr matrix_ref(const matrix_ref<U>& m)
      : data(m.data), batch(m.batch), rows(m.rows), cols(m.cols), batch_stride(m.batch_stride),
        row_stride(m.row_stride), col_stride(m.col_stride) {}

  EINLM_HD constexpr T& operator()(index_t b, index_t i, index_t j) const {
    return data[b * batch_stride + i * row_stride + j * col_stride];
  }
  EINLM_HD constexpr bool empty() const { return data == nullptr; }
  /// The transposed matrices (rows and columns swapped; no data moves).
  EINLM_HD constexpr matrix_ref transposed() const {
    return matrix_ref(data, batch, cols, rows, batch_stride, col_stride, row_stride);
  }
};

/// A vector in memory: element i is data[i·stride]. Built from a pointer and numbers, or from a
/// rank-1 tensor or view.
template <class T>
struct vector_ref {
  const T* data = nullptr;
  index_t size = 0;
  index_t stride = 1;

  vector_ref() = default;
  EINLM_HD constexpr vector_ref(const T* p, index_t n, index_t s = 1) : data(p), size(n), stride(s) {}
  template <array_like X>
    requires(std::remove_cvref_t<X>::extents_type::rank() == 1)
  vector_ref(const X& x) {  // NOLINT(google-explicit-constructor)
    const auto v = as_view(x);
    static_assert(std::is_same_v<std::remove_cv_t<std::remove_reference_t<decltype(*v.data())>>, T>,
                  "vector_ref: the bias's element type must be the output's element type");
    data = v.data();
    size = v.extent(0);
    stride = v.stride(0);
  }
  EINLM_HD constexpr const T& operator[](index_t i) const { return data[i * stride]; }
  EINLM_HD constexpr bool empty() const { return data == nullptr; }
};

/// What happens to alpha·A·B before it is stored (see the file comment); Out is C's element type.
template <class Out>
struct epilogue {
  double alpha = 1.0;
  double beta = 0.0;
  vector_ref<Out> bias{};
  bias_axis bias_along = bias_axis::columns;
  activation act = activation::none;
  matrix_ref<const Out> residual{};
};

/// How a GEMM runs.
struct gemm_options {
  gemm_backend backend = gemm_backend::automatic;
  /// CPU: threads of the own kernel and of the epilogue pass (0: OpenMP's default team).
  int threads = 0;
  /// CUDA: the stream (a cudaStream_t); null: the default CUDA executor's stream.
  void* stream = nullptr;
};

namespace detail {

/// The accumulator of a GEMM with inputs of type In: double for double, float otherwise.
template <class In>
using gemm_acc_t = std::conditional_t<std::is_same_v<In, double>, double, float>;

template <class T>
inline constexpr bool is_gemm_input_v =
    std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, bf16> || std::is_same_v<T, fp16>;

/// act(x) for a scalar or a CPU packet, with einlm::math's functions (the element-wise
/// expressions' values).
EINLM_EXEC_CHECK_DISABLE
template <class V>
EINLM_HD V apply_activation(activation act, V x) {
  using S = simd::scalar_t<V>;
  switch (act) {
    case activation::none: return x;
    case activation::relu: return math::detail::select(x < V(S(0)), V(S(0)), x);
    case activation::gelu: return math::gelu(x);
    case activation::gelu_tanh: return math::gelu_tanh(x);
    case activation::silu: return math::silu(x);
  }
  return x;
}

/// The epilogue of single elements with its scalars in the accumulator type Acc: what every
/// backend computes per element (the CPU's vector path is the same formula lane by lane).
template <class Acc, class Out>
struct epilogue_op {
  matrix_ref<Out> c;
  vector_ref<Out> bias;
  matrix_ref<const Out> residual;
  Acc alpha, beta;
  activation act;
  bias_axis bias_along;

  epilogue_op(const matrix_ref<Out>& c_, const epilogue<Out>& ep)
      : c(c_), bias(ep.bias), residual(ep.residual), alpha(static_cast<Acc>(ep.alpha)),
        beta(static_cast<Acc>(ep.beta)), act(ep.act), bias_along(ep.bias_along) {}

  /// True when bias, activation or residual remain to be applied after alpha·A·B + beta·C.
  EINLM_HD bool has_post() const { return !bias.empty() || act != activation::none || !residual.empty(); }
  /// act(v + bias) + residual at (b, i, j).
  EINLM_HD Acc post(Acc v, index_t b, index_t i, index_t j) const {
    if (!bias.empty()) v = v + convert<Acc>(bias[bias_along == bias_axis::columns ? j : i]);
    v = apply_activation(act, v);
    if (!residual.empty()) v = v + convert<Acc>(residual(residual.batch == 1 ? 0 : b, i, j));
    return v;
  }
  /// C[b,i,j] = convert(post(scale·product + beta·C_old)); C_old is read only when beta ≠ 0.
  EINLM_HD void finish(index_t b, index_t i, index_t j, Acc product, Acc scale) const {
    Acc v = scale * product;
    if (beta != Acc(0)) v = v + beta * convert<Acc>(c(b, i, j));
    c(b, i, j) = convert<Out>(post(v, b, i, j));
  }
};

/// "(2, 5, 7)": batch, rows, cols of a matrix_ref.
template <class T>
std::string matrix_shape(const matrix_ref<T>& m) {
  return format_shape({m.batch, m.rows, m.cols});
}

/// Lowest and one-past-highest element offsets a matrix_ref reaches (empty: {0, 0}).
template <class T>
std::pair<index_t, index_t> offset_span(const matrix_ref<T>& m) {
  if (m.batch == 0 || m.rows == 0 || m.cols == 0) return {0, 0};
  index_t lo = 0, hi = 0;
  // (Arrays, not range-for over braced lists: nvcc's host-code rewriting breaks those in templates.)
  const index_t n[3] = {m.batch, m.rows, m.cols}, s[3] = {m.batch_stride, m.row_stride, m.col_stride};
  for (int r = 0; r < 3; ++r) {
    const index_t d = (n[r] - 1) * s[r];
    (d < 0 ? lo : hi) += d;
  }
  return {lo, hi + 1};
}

/// True when the memory reached by x and y (of element sizes sx, sy) overlaps.
template <class X, class Y>
bool overlaps(const matrix_ref<X>& x, const matrix_ref<Y>& y) {
  if (!x.data || !y.data) return false;
  const auto [xl, xh] = offset_span(x);
  const auto [yl, yh] = offset_span(y);
  if (xl == xh || yl == yh) return false;
  const auto* xb = reinterpret_cast<const char*>(x.data);
  const auto* yb = reinterpret_cast<const char*>(y.data);
  const char* x0 = xb + xl * static_cast<index_t>(sizeof(X));
  const char* x1 = xb + xh * static_cast<index_t>(sizeof(X));
  const char* y0 = yb + yl * static_cast<index_t>(sizeof(Y));
  const char* y1 = yb + yh * static_cast<index_t>(sizeof(Y));
  return x0 < y1 && y0 < x1;
}

/// True when two distinct (b, i, j) of m reach the same element (tested for strides that are not
/// nested: the usual layouts answer in O(1); others are checked exactly on the sorted strides).
template <class T>
bool writes_twice(const matrix_ref<T>& m) {
  struct dim {
    index_t n, s;
  };
  dim d[3] = {{m.batch, m.batch_stride < 0 ? -m.batch_stride : m.batch_stride},
              {m.rows, m.row_stride < 0 ? -m.row_stride : m.row_stride},
              {m.cols, m.col_stride < 0 ? -m.col_stride : m.col_stride}};
  for (const auto& x : d)
    if (x.n == 0) return false;
  // Sort by stride; no element is reached twice when each stride exceeds the span of the smaller
  // ones (a sufficient condition; exact for every layout a tensor or view can have).
  std::sort(d, d + 3, [](const dim& a, const dim& b) { return a.s < b.s; });
  index_t span = 1;  // elements spanned by the smaller axes
  for (const auto& x : d) {
    if (x.n == 1) continue;
    if (x.s < span) return true;
    span = x.s * (x.n - 1) + span;
  }
  return false;
}

/// A copy of m with the strides of extent-1 axes made canonical (the stride of an axis of length
/// 1 is never used: BLAS and the kernels' layout tests then see the layout the data has).
template <class T>
EINLM_HD constexpr matrix_ref<T> canonical(matrix_ref<T> m) {
  if (m.cols == 1) m.col_stride = 1;
  if (m.rows == 1) m.row_stride = m.col_stride == 1 ? (m.cols > 0 ? m.cols : 1) : 1;
  if (m.rows == 1 && m.cols == 1) m.row_stride = 1;
  if (m.batch == 1) m.batch_stride = 0;
  return m;
}

/// Checks the sizes and strides of a GEMM and throws shape_error / value_error naming `op` and
/// the shapes. Returns C's batch count (every operand's batch is C's or 1).
template <class In, class Out>
void check_gemm(const matrix_ref<const In>& a, const matrix_ref<const In>& b, const matrix_ref<Out>& c,
                const epilogue<Out>& ep, const char* op) {
  const auto shapes = [&] {
    return concat("; A ", matrix_shape(a), ", B ", matrix_shape(b), ", C ", matrix_shape(c),
                  " (as batch, rows, cols)");
  };
  const index_t extents[] = {a.batch, a.rows, a.cols, b.batch, b.rows, b.cols, c.batch, c.rows, c.cols};
  for (const index_t n : extents)
    if (n < 0) throw shape_error(concat(op, ": negative extent", shapes()));
  if (a.rows != c.rows)
    throw shape_error(concat(op, ": A has ", a.rows, " rows but C has ", c.rows, " (M must agree)", shapes()));
  if (b.cols != c.cols)
    throw shape_error(concat(op, ": B has ", b.cols, " columns but C has ", c.cols, " (N must agree)", shapes()));
  if (a.cols != b.rows)
    throw shape_error(concat(op, ": A has ", a.cols, " columns but B has ", b.rows, " rows (K must agree)", shapes()));
  if ((a.batch != c.batch && a.batch != 1) || (b.batch != c.batch && b.batch != 1))
    throw shape_error(concat(op, ": the batch of A and of B must be C's (", c.batch, ") or 1", shapes()));
  const bool empty_c = c.batch == 0 || c.rows == 0 || c.cols == 0;
  if (!empty_c && !c.data) throw value_error(concat(op, ": C has no data pointer", shapes()));
  if (!empty_c && c.cols > 0 && a.cols > 0 && (!a.data || !b.data))
    throw value_error(concat(op, ": A or B has no data pointer", shapes()));
  if (writes_twice(c))
    throw value_error(concat(op, ": C's strides (", c.batch_stride, ", ", c.row_stride, ", ", c.col_stride,
                             ") reach some element twice", shapes()));
  if (!ep.bias.empty()) {
    const index_t want = ep.bias_along == bias_axis::columns ? c.cols : c.rows;
    if (ep.bias.size != want)
      throw shape_error(concat(op, ": the bias has ", ep.bias.size, " elements but C has ", want,
                               ep.bias_along == bias_axis::columns ? " columns" : " rows", shapes()));
  }
  if (!ep.residual.empty()) {
    const auto& r = ep.residual;
    if (r.rows != c.rows || r.cols != c.cols || (r.batch != c.batch && r.batch != 1))
      throw shape_error(concat(op, ": the residual has shape ", matrix_shape(r), " but C has ", matrix_shape(c),
                               " (its batch may also be 1)"));
  }
  if (!empty_c) {
    if (overlaps(matrix_ref<const Out>(c), matrix_ref<const In>(a)) || overlaps(matrix_ref<const Out>(c), b))
      throw value_error(concat(op, ": C overlaps A or B; write the product to another tensor", shapes()));
    if (overlaps(matrix_ref<const Out>(c), ep.residual))
      throw value_error(concat(op, ": C overlaps the residual; for C += A·B use beta = 1", shapes()));
    if (!ep.bias.empty()) {
      const matrix_ref<const Out> bias_m(ep.bias.data, 1, 1, ep.bias.size, 0, 0, ep.bias.stride);
      if (overlaps(matrix_ref<const Out>(c), bias_m)) throw value_error(concat(op, ": C overlaps the bias", shapes()));
    }
  }
}

/// The operands of a GEMM after its checks, with canonical strides.
template <class In, class Out>
struct gemm_operands {
  matrix_ref<const In> a, b;
  matrix_ref<Out> c;
};

/// What gemm_cpu and gemm_cuda do first: the element types (at compile time), the sizes and
/// strides (check_gemm), and canonical strides for axes of length 1.
template <class TA, class TB, class Out>
gemm_operands<std::remove_const_t<TA>, Out> prepare_gemm(const matrix_ref<TA>& a, const matrix_ref<TB>& b,
                                                         const matrix_ref<Out>& c, const epilogue<Out>& ep) {
  using In = std::remove_const_t<TA>;
  static_assert(std::is_same_v<In, std::remove_const_t<TB>>, "gemm: A and B must have the same element type");
  static_assert(is_gemm_input_v<In>, "gemm: inputs must be float, double, bf16 or fp16");
  static_assert(is_gemm_input_v<Out> && !std::is_const_v<Out>, "gemm: the output must be float, double, bf16 or fp16");
  const matrix_ref<const In> ac(a), bc(b);
  check_gemm(ac, bc, c, ep, "gemm");
  return {canonical(ac), canonical(bc), canonical(c)};
}

// ------------------------------------------------------------------ tensors and views

template <class X>
using gemm_value_t = typename std::remove_cvref_t<decltype(as_view(std::declval<X&>()))>::value_type;
template <class X>
using gemm_space_t = typename std::remove_cvref_t<decltype(as_view(std::declval<X&>()))>::space;
template <class X>
inline constexpr std::size_t gemm_rank_v = std::remove_cvref_t<decltype(as_view(std::declval<X&>()))>::extents_type::rank();

/// The I-th static extent of X's extents counted from the end (dyn when dynamic).
template <class X, std::size_t FromEnd>
inline constexpr std::size_t static_from_end_v = [] {
  using E = typename std::remove_cvref_t<decltype(as_view(std::declval<X&>()))>::extents_type;
  return E::static_extent(E::rank() - 1 - FromEnd);
}();

template <std::size_t X, std::size_t Y>
inline constexpr bool static_agree_v = X == dyn || Y == dyn || X == Y;

template <class S>
struct gemm_backend_missing : std::false_type {};

}  // namespace detail

/// Reached only when no backend for the memory space S is included (the backends' overloads are
/// more specialised).
template <class S, class... X>
void gemm_on(S, X&&...) {
  static_assert(detail::gemm_backend_missing<S>::value,
                "gemm: include einlm/linalg.hpp, or einlm/linalg/gemm_cpu.hpp for host memory and "
                "einlm/linalg/gemm_cuda.cuh (nvcc) for device memory");
}

/// C = epilogue(alpha·A·B + beta·C) for tensors or views of rank 2 (M, K)·(K, N) → (M, N), or
/// rank 3 (batch, M, K)·(batch, K, N) → (batch, M, N), where a rank-2 A or B is used for every
/// batch. Static extents are checked at compile time. The views' memory space picks the backend
/// family; include einlm/linalg.hpp (or gemm_cpu.hpp / gemm_cuda.cuh).
template <array_like A, array_like B, array_like C>
void gemm(const A& a, const B& b, C&& c, const epilogue<detail::gemm_value_t<C>>& ep = {},
          const gemm_options& options = {}) {
  using In = detail::gemm_value_t<A>;
  using Out = detail::gemm_value_t<C>;
  constexpr std::size_t ra = detail::gemm_rank_v<A>, rb = detail::gemm_rank_v<B>, rc = detail::gemm_rank_v<C>;
  static_assert(std::is_same_v<In, detail::gemm_value_t<B>>, "gemm: A and B must have the same element type");
  static_assert(detail::is_gemm_input_v<In>, "gemm: inputs must be float, double, bf16 or fp16");
  static_assert(detail::is_gemm_input_v<Out>, "gemm: the output must be float, double, bf16 or fp16");
  static_assert(rc == 2 || rc == 3, "gemm: C must have rank 2 (M, N) or rank 3 (batch, M, N)");
  static_assert((ra == 2 || ra == 3) && (rb == 2 || rb == 3) && ra <= rc && rb <= rc,
                "gemm: A and B must have rank 2, or rank 3 when C has (a batch)");
  static_assert(!std::is_const_v<std::remove_reference_t<decltype(*as_view(c).data())>>, "gemm: C is read-only");
  using S = detail::gemm_space_t<C>;
  static_assert(std::is_same_v<S, detail::gemm_space_t<A>> && std::is_same_v<S, detail::gemm_space_t<B>>,
                "gemm: A, B and C must be in the same memory space");
  static_assert(detail::static_agree_v<detail::static_from_end_v<A, 0>, detail::static_from_end_v<B, 1>>,
                "gemm: A's columns and B's rows (K) differ");
  static_assert(detail::static_agree_v<detail::static_from_end_v<A, 1>, detail::static_from_end_v<C, 1>>,
                "gemm: A's rows and C's rows (M) differ");
  static_assert(detail::static_agree_v<detail::static_from_end_v<B, 0>, detail::static_from_end_v<C, 0>>,
                "gemm: B's columns and C's columns (N) differ");
  auto cv = as_view(c);
  const matrix_ref<Out> cm(cv);
  const matrix_ref<const In> am(a), bm(b);
  gemm_on(S{}, am, bm, cm, ep, options);
}

}  // namespace einlm
