// einlm/nn/attention_rows.hpp — the arithmetic of the fused (flash-style) attention kernels, one
// row at a time, as host+device functions: the CUDA kernels (nn/cuda_attention.cuh) run them with
// a warp per row, and the tests run the same functions on the host, one thread per row, against
// nn::attention_forward / attention_backward.
//
//   forward_row          out_i = Σ_j softmax_j(s_ij) v_j and lse_i over the keys query i sees, in
//                        one pass over them: a running maximum m and sum l, the accumulator rescaled
//                        by e^{m_old − m_new} when the maximum grows (the online softmax); the
//                        scores and probabilities are never stored
//   backward_query_row   dq_i = scale · Σ_j dS_ij k_j with P_ij = e^{s_ij − lse_i} recomputed,
//                        dS_ij = P_ij (dO_i·v_j − δ_i), δ_i = dO_i·O_i (also returned, for the next)
//   backward_key_row     dk_j = scale · Σ_{h,i} dS_ij q_i and dv_j = Σ_{h,i} P_ij dO_i over the
//                        query heads h that share key head g and the queries i that see key j
//
// Grouped-query heads as in nn::attention_forward: H query heads, G key/value heads, query head h
// reads key head h / (H/G); k and v are never repeated. Keys may outnumber queries (Sk ≥ S, a KV
// cache): the queries are the last S positions, and with the causal mask query i sees keys
// 0 … Sk − S + i. Every sum runs in one fixed order, so the results are the same bits on every run;
// nothing is accumulated by atomics. Storage T is float or bf16; everything computes in float.
//
// A Team is the group of threads that computes one row: `lanes` threads, lane l holding elements
// l, l + lanes, … of the head dimension (at most PerLane of them), and `sum(x)` giving every lane
// the sum of x over the team. serial_team is one thread holding the whole row.
#pragma once

#include <cmath>
#include <cstdint>

#include "einlm/core/config.hpp"
#include "einlm/core/dtype.hpp"
#include "einlm/core/math.hpp"

namespace einlm::nn::detail::flash {

/// The largest head dimension the fused kernels take.
inline constexpr index_t max_head_dim = 256;

/// One attention call's sizes: B batches, H query heads, G key/value heads (H a multiple of G),
/// S queries, Sk keys (Sk ≥ S), head dimension D; scores are q·k times `scale`.
struct attention_shape {
  index_t B = 0, H = 0, G = 0, S = 0, Sk = 0, D = 0;
  float scale = 1.0f;
  bool causal = true;

  /// Query heads per key head.
  EINLM_HD index_t group() const { return H / G; }
  /// How many keys (0 … visible(i) − 1) query i sees.
  EINLM_HD index_t visible(index_t i) const { return causal ? Sk - S + i + 1 : Sk; }
  /// The first query that sees key j.
  EINLM_HD index_t first_query(index_t j) const {
    const index_t first = j - (Sk - S);
    return causal && first > 0 ? first : 0;
  }
};

/// A team of one thread: the whole row in one lane.
struct serial_team {
  static constexpr int lanes = 1;
  int lane = 0;
  EINLM_HD float sum(float x) const { return x; }
};

/// x[lane + e·lanes] for e < PerLane, as floats (0 past D).
EINLM_EXEC_CHECK_DISABLE
template <class Team, int PerLane, class T>
EINLM_HD void load_row(const Team& team, const T* x, index_t D, float (&out)[PerLane]) {
  EINLM_UNROLL
  for (int e = 0; e < PerLane; ++e) {
    const index_t d = team.lane + static_cast<index_t>(e) * Team::lanes;
    out[e] = d < D ? convert<float>(x[d]) : 0.0f;
  }
}

/// The team's dot product of its row `a` (registers) with the row x in memory.
EINLM_EXEC_CHECK_DISABLE
template <class Team, int PerLane, class T>
EINLM_HD float dot_row(const Team& team, const float (&a)[PerLane], const T* x, index_t D) {
  float part = 0.0f;
  EINLM_UNROLL
  for (int e = 0; e < PerLane; ++e) {
    const index_t d = team.lane + static_cast<index_t>(e) * Team::lanes;
    if (d < D) part += a[e] * convert<float>(x[d]);
  }
  return team.sum(part);
}

/// acc += w · x for the team's elements of the row x in memory.
EINLM_EXEC_CHECK_DISABLE
template <class Team, int PerLane, class T>
EINLM_HD void add_scaled_row(const Team& team, float (&acc)[PerLane], float w, const T* x, index_t D) {
  EINLM_UNROLL
  for (int e = 0; e < PerLane; ++e) {
    const index_t d = team.lane + static_cast<index_t>(e) * Team::lanes;
    if (d < D) acc[e] += w * convert<float>(x[d]);
  }
}

/// y = scale · acc for the team's elements of the row y, rounded to T once.
EINLM_EXEC_CHECK_DISABLE
template <class Team, int PerLane, class T>
EINLM_HD void store_row(const Team& team, const float (&acc)[PerLane], float scale, T* y, index_t D) {
  EINLM_UNROLL
  for (int e = 0; e < PerLane; ++e) {
    const index_t d = team.lane + static_cast<index_t>(e) * Team::lanes;
    if (d < D) y[d] = convert<T>(acc[e] * scale);
  }
}

/// One query row: q (D,) against the first `keys` rows of its key head's k and v (Sk, D); writes
/// out (D,) and, from lane 0, *lse. No keys (an empty key axis) gives zeros and lse = −inf.
EINLM_EXEC_CHECK_DISABLE
template <class Team, int PerLane, class T>
EINLM_HD void forward_row(const Team& team, const attention_shape& n, const T* q, const T* k, const T* v, index_t keys,
                          T* out, float* lse) {
  const index_t D = n.D;
  float qv[PerLane], acc[PerLane];
  load_row(team, q, D, qv);
  EINLM_UNROLL
  for (int e = 0; e < PerLane; ++e) acc[e] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  for (index_t j = 0; j < keys; ++j) {
    const float s = dot_row(team, qv, k + j * D, D) * n.scale;
    if (s > m) {  // the same decision in every lane: s is the team's sum
      const float c = math::exp(m - s);  // 0 for the first key (m = −inf)
      l *= c;
      EINLM_UNROLL
      for (int e = 0; e < PerLane; ++e) acc[e] *= c;
      m = s;
    }
    const float p = math::exp(s - m);
    l += p;
    add_scaled_row(team, acc, p, v + j * D, D);
  }
  store_row(team, acc, keys > 0 ? 1.0f / l : 0.0f, out, D);
  if (team.lane == 0) *lse = keys > 0 ? m + math::log(l) : -INFINITY;
}

/// dq of one query row from q, o, dout (D,) and the row's lse, against the first `keys` rows of
/// its key head's k and v; from lane 0, *delta = dout·o (δ, which backward_key_row reads).
EINLM_EXEC_CHECK_DISABLE
template <class Team, int PerLane, class T>
EINLM_HD void backward_query_row(const Team& team, const attention_shape& n, const T* q, const T* k, const T* v,
                                 const T* o, const T* dout, float lse, index_t keys, T* dq, float* delta) {
  const index_t D = n.D;
  float qv[PerLane], dov[PerLane], acc[PerLane];
  load_row(team, q, D, qv);
  load_row(team, dout, D, dov);
  const float dsum = dot_row(team, dov, o, D);
  EINLM_UNROLL
  for (int e = 0; e < PerLane; ++e) acc[e] = 0.0f;
  for (index_t j = 0; j < keys; ++j) {
    const float p = math::exp(dot_row(team, qv, k + j * D, D) * n.scale - lse);
    const float ds = p * (dot_row(team, dov, v + j * D, D) - dsum);
    add_scaled_row(team, acc, ds, k + j * D, D);
  }
  store_row(team, acc, n.scale, dq, D);
  if (team.lane == 0) *delta = dsum;
}

/// dk and dv of key row j of key head g in batch b. q and dout point at batch b's (H, S, D)
/// rows, lse and delta at its (H, S) values; k_row and v_row are the key's rows (D,).
EINLM_EXEC_CHECK_DISABLE
template <class Team, int PerLane, class T>
EINLM_HD void backward_key_row(const Team& team, const attention_shape& n, const T* q, const T* dout, const float* lse,
                               const float* delta, index_t g, index_t j, const T* k_row, const T* v_row, T* dk, T* dv) {
  const index_t D = n.D, R = n.group();
  float kv[PerLane], vv[PerLane], dk_acc[PerLane], dv_acc[PerLane];
  load_row(team, k_row, D, kv);
  load_row(team, v_row, D, vv);
  EINLM_UNROLL
  for (int e = 0; e < PerLane; ++e) dk_acc[e] = dv_acc[e] = 0.0f;
  for (index_t r = 0; r < R; ++r) {
    const index_t h = g * R + r;
    for (index_t i = n.first_query(j); i < n.S; ++i) {
      const index_t row = h * n.S + i;
      const T* qi = q + row * D;
      const T* doi = dout + row * D;
      const float p = math::exp(dot_row(team, kv, qi, D) * n.scale - lse[row]);
      const float ds = p * (dot_row(team, vv, doi, D) - delta[row]);
      add_scaled_row(team, dv_acc, p, doi, D);
      add_scaled_row(team, dk_acc, ds, qi, D);
    }
  }
  store_row(team, dk_acc, n.scale, dk, D);
  store_row(team, dv_acc, 1.0f, dv, D);
}

}  // namespace einlm::nn::detail::flash
