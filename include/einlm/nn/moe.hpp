// einlm/nn/moe.hpp — the mixture-of-experts feed-forward layer on the host: its configuration,
// its named parameters, a forward pass for inference, and a training forward + backward that
// accumulates every gradient, including the router's through the gates and the auxiliary losses.
//
//   nn::moe_layer_config c{.d_model = 256, .num_experts = 8, .top_k = 2, .expert_d_ff = 512};
//   nn::moe_parameters<float> p(c), grads(c);                  // zeros; load or initialise p
//   auto y = nn::moe_layer<float>::forward(p, x);              // x (N, D) → y (N, D)
//   nn::moe_layer<float> layer;
//   auto y2 = layer.forward_train(p, x, /*seq_len=*/S);        // keeps what backward needs
//   auto dx = layer.backward(p, dy, grads);                    // dy (N, D) → dx (N, D); += grads
//   nn::update_router_bias(p, layer.stats());                  // sigmoid router: DeepSeek-V3 balancing
//
// Contract. x is (N, D): N tokens, made of N / seq_len sequences of seq_len consecutive rows
// (seq_len = 0: one sequence of N); a width other than d_model, or N not a multiple of seq_len, is
// a shape_error. The configuration is checked on construction of moe_parameters (config_error
// naming the field). Every weight is stored (out, in) and applied as x Wᵀ, like the dense FFN.
//
// Routing, per token n (logits = x routerᵀ, (N, E)):
//   softmax router: p = softmax(logits); the top_k experts by p (ties: lower expert index first);
//     gates = the selected p renormalised over the selected experts when top_k > 1 (Mixtral), the
//     selected p itself when top_k = 1 (Switch). Balance probabilities q = p.
//   sigmoid router (DeepSeek-V3): s = sigmoid(logits); the top_k experts by s + router_bias (the
//     bias affects selection only); gates = s_selected / Σ s_selected (so top_k = 1 gives gate 1).
//     Balance probabilities q = s / Σ_e s_e over all experts.
//   y_n = Σ_selected gate·expert_e(x_n) + Σ_shared expert_s(x_n), expert(x) = w2(silu(w1 x) ⊙ w3 x).
//
// Capacity: capacity_factor c > 0 gives each expert at most ceil(c · N · top_k / E) token-slots,
// taken in slot order (token n's j-th choice is slot n·top_k + j; earlier tokens first). A slot
// over capacity is dropped: it contributes 0 (the residual outside the layer carries the token),
// its gate keeps its value (gates are normalised over the selected experts before dropping) and
// gets no gradient, and it is counted in moe_stats::dropped_slots. c = 0 is dropless.
//
// Losses (raw values in moe_stats; f counts slots before capacity and is a constant, q is
// differentiated):
//   balance (Switch / GShard form):  L_bal = E · Σ_e f_e · P_e,  f_e = count_e / (N · top_k),
//                                    P_e = mean over the N tokens of q_e  (1 when perfectly uniform)
//   router z-loss (ST-MoE):          L_z   = mean over tokens of logsumexp(logits)²  (both routers)
//   sequence-wise (DeepSeek-V3):     L_seq = mean over sequences of E · Σ_e f_e · P_e with f and P
//                                    computed over the sequence's seq_len tokens only
// The training objective is main + aux_loss_coef·L_bal + z_loss_coef·L_z + seq_aux_loss_coef·L_seq;
// moe_stats::aux_loss holds the weighted sum, and backward(dy) adds the gradients of those weighted
// terms (dy being the main loss's gradient with respect to y) to the router weight and to dx.
//
// router_bias is a parameter (visited, so it is checkpointed) that no gradient trains: its gradient
// stays zero, and moe_parameters::trainable(name) is false for it, so that an optimizer loop skips
// it (AdamW's weight decay would otherwise shrink it). update_router_bias moves it instead:
// bias_e += γ · sign(mean_load − load_e), load = slots routed to e before capacity.
//
// Dispatch: the kept slots are grouped by expert with a counting sort (histogram, exclusive scan,
// stable scatter); each expert gathers its rows of x into one contiguous block and runs its SwiGLU
// as three einsums (GEMMs on the BLAS path, threaded there); the gate-weighted outputs are
// scatter-added back. Experts run in parallel, one per OpenMP thread (each expert's GEMMs then
// run on its thread), and their outputs are added back in expert order, so results do not
// depend on the number of threads and the scatter needs no atomics. Backward
// reverses this: gate gradient = ⟨dy_n, expert_out⟩ per kept slot, then through the renormalisation
// and the softmax or sigmoid to the logits. Router arithmetic (probabilities, gates, losses, their
// gradients) is in double for every T; the experts compute in T.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "einlm/core/error.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/expr.hpp"
#include "einlm/linalg/einsum.hpp"
#include "einlm/nn/backward.hpp"
#include "einlm/nn/config.hpp"
#include "einlm/nn/moe_accounting.hpp"

namespace einlm::nn {

struct moe_layer_config {
  std::int64_t d_model = 0;
  std::int64_t num_experts = 0;         // routed experts E
  std::int64_t top_k = 1;               // routed experts per token
  std::int64_t num_shared_experts = 0;  // experts every token goes through
  std::int64_t expert_d_ff = 0;         // hidden width F of every expert
  router_kind router = router_kind::softmax;
  double capacity_factor = 0.0;         // 0: dropless
  double aux_loss_coef = 0.01;          // weight of L_bal in the objective
  double z_loss_coef = 1e-3;            // weight of L_z
  double seq_aux_loss_coef = 0.0;       // weight of L_seq
  double bias_update_rate = 0.0;        // γ of update_router_bias; sigmoid router only

  /// The first problem with this configuration, or an empty string.
  std::string problem() const {
    using einlm::detail::concat;
    if (d_model <= 0) return concat("d_model must be positive, got ", d_model);
    if (num_experts <= 0) return concat("num_experts must be positive, got ", num_experts);
    if (top_k <= 0 || top_k > num_experts)
      return concat("top_k must lie in [1, num_experts = ", num_experts, "], got ", top_k);
    if (num_shared_experts < 0) return concat("num_shared_experts must not be negative, got ", num_shared_experts);
    if (expert_d_ff <= 0) return concat("expert_d_ff must be positive, got ", expert_d_ff);
    if (!(capacity_factor >= 0) || !std::isfinite(capacity_factor))
      return concat("capacity_factor must be finite and not negative (0: dropless), got ", capacity_factor);
    if (!(aux_loss_coef >= 0)) return concat("aux_loss_coef must not be negative, got ", aux_loss_coef);
    if (!(z_loss_coef >= 0)) return concat("z_loss_coef must not be negative, got ", z_loss_coef);
    if (!(seq_aux_loss_coef >= 0)) return concat("seq_aux_loss_coef must not be negative, got ", seq_aux_loss_coef);
    if (!(bias_update_rate >= 0)) return concat("bias_update_rate must not be negative, got ", bias_update_rate);
    if (bias_update_rate != 0 && router != router_kind::sigmoid)
      return concat("bias_update_rate applies to the sigmoid router only, got ", bias_update_rate,
                    " with the softmax router");
    return {};
  }

  /// Throws config_error naming the first inconsistent field.
  void validate() const {
    if (auto p = problem(); !p.empty()) throw config_error("moe_layer_config: " + p);
  }

  /// The MoE layers of model `m` (router_kind from config.hpp, widths and settings from m).
  static moe_layer_config of(const moe_config& m) {
    return {.d_model = m.base.d_model,
            .num_experts = m.num_experts,
            .top_k = m.top_k,
            .num_shared_experts = m.num_shared_experts,
            .expert_d_ff = m.expert_dim(),
            .router = m.router,
            .capacity_factor = m.capacity_factor,
            .aux_loss_coef = m.aux_loss_coef,
            .z_loss_coef = m.z_loss_coef,
            .seq_aux_loss_coef = m.seq_aux_loss_coef,
            .bias_update_rate = m.bias_update_rate};
  }
};

/// One SwiGLU expert: y = w2(silu(w1 x) ⊙ w3 x).
template <class T>
struct expert_parameters {
  tensor<T, dims<2>> w1, w2, w3;  // (F, D), (D, F), (F, D)
};

/// The weights of an MoE layer, by name. Also used for the gradients.
template <class T>
struct moe_parameters {
  moe_layer_config config;
  tensor<T, dims<2>> router;       // (E, D)
  tensor<T, dims<1>> router_bias;  // (E,): sigmoid router only; selection bias, never trained by gradient
  std::vector<expert_parameters<T>> experts, shared_experts;

  moe_parameters() = default;

  /// All tensors allocated for `c` (validated) and filled with zeros.
  explicit moe_parameters(const moe_layer_config& c) : config(c) {
    c.validate();
    const index_t D = c.d_model, E = c.num_experts, F = c.expert_d_ff;
    router = tensor<T, dims<2>>(E, D);
    if (c.router == router_kind::sigmoid) router_bias = tensor<T, dims<1>>(E);
    const auto make = [&](std::vector<expert_parameters<T>>& v, std::int64_t n) {
      v.resize(static_cast<std::size_t>(n));
      for (auto& e : v) e = {tensor<T, dims<2>>(F, D), tensor<T, dims<2>>(D, F), tensor<T, dims<2>>(F, D)};
    };
    make(experts, E);
    make(shared_experts, c.num_shared_experts);
    for_each_parameter([](const std::string&, auto& t) { t = T(0); });
  }

  /// f(name, tensor) for every parameter in a fixed order: prefix + "router.weight", "router.bias"
  /// (sigmoid router only), "experts.{e}.w{1,2,3}.weight", "shared_experts.{s}.w{1,2,3}.weight".
  template <class F>
  void for_each_parameter(const std::string& prefix, F&& f) {
    visit(*this, prefix, f);
  }
  template <class F>
  void for_each_parameter(const std::string& prefix, F&& f) const {
    visit(*this, prefix, f);
  }
  template <class F>
  void for_each_parameter(F&& f) {
    visit(*this, std::string{}, f);
  }
  template <class F>
  void for_each_parameter(F&& f) const {
    visit(*this, std::string{}, f);
  }

  /// Whether an optimizer should update the parameter `name`: false for the router bias, which
  /// update_router_bias moves and whose gradient is always zero.
  static bool trainable(const std::string& name) {
    const std::string bias = "router.bias";
    return !(name.size() >= bias.size() && name.compare(name.size() - bias.size(), bias.size(), bias) == 0);
  }

 private:
  template <class Self, class F>
  static void visit(Self& self, const std::string& prefix, F& f) {
    f(prefix + "router.weight", self.router);
    if (self.config.router == router_kind::sigmoid) f(prefix + "router.bias", self.router_bias);
    const auto each = [&](auto& v, const char* group) {
      for (std::size_t i = 0; i < v.size(); ++i) {
        const std::string p = prefix + group + "." + std::to_string(i) + ".";
        f(p + "w1.weight", v[i].w1);
        f(p + "w2.weight", v[i].w2);
        f(p + "w3.weight", v[i].w3);
      }
    };
    each(self.experts, "experts");
    each(self.shared_experts, "shared_experts");
  }
};

/// What one forward pass routed and the auxiliary losses it produced.
struct moe_stats {
  std::vector<std::int64_t> routed_per_expert;  // (E,) slots selected for each expert, before capacity
  std::vector<std::int64_t> tokens_per_expert;  // (E,) slots each expert processed, after capacity
  std::int64_t capacity = 0;                    // slots per expert; 0: dropless
  std::int64_t dropped_slots = 0;               // slots over capacity
  double router_entropy = 0;                    // mean over tokens of −Σ_e q_e log q_e
  double balance_loss = 0;                      // L_bal, raw
  double z_loss = 0;                            // L_z, raw
  double seq_balance_loss = 0;                  // L_seq, raw
  double aux_loss = 0;                          // aux·L_bal + z·L_z + seq_aux·L_seq
};

namespace detail {

/// What one expert kept from its forward pass: its hidden states and its output.
template <class T>
struct moe_expert_activations {
  tensor<T, dims<2>> h1, h3, g, out;  // (n, F) three times, (n, D)
};

/// The routing of N tokens: choices, gates, kept slots grouped by expert, router probabilities.
struct moe_routing {
  index_t N = 0, S = 0, E = 0, K = 0;
  std::vector<std::int64_t> expert;   // (N·K) slot → expert
  std::vector<double> gate;           // (N·K) slot → gate
  std::vector<char> kept;             // (N·K) slot within capacity
  std::vector<std::int64_t> offset;   // (E + 1) start of each expert's block in order
  std::vector<std::int64_t> order;    // (kept slots) slot indices grouped by expert, in slot order
  std::vector<double> affinity;       // (N, E) p (softmax) or s (sigmoid)
  std::vector<double> q;              // (N, E) balance probabilities
  std::vector<double> lse;            // (N,) logsumexp of the logits
  std::vector<double> softmax;        // (N, E) softmax of the logits (the z-loss's gradient)
};

/// Row r of a row-major (rows, D) array.
template <class T>
T* row_of(T* base, index_t r, index_t D) {
  return base + r * D;
}

/// Runs f(e) for every expert e, one expert per OpenMP thread when there is enough work (the GEMMs
/// inside then run on that thread: BLAS does not nest). Each f(e) writes only expert e's own
/// outputs, so the results do not depend on the threads.
template <class F>
void for_each_expert(index_t experts, index_t work, F&& f) {
#if EINLM_HAS_OPENMP
  if (experts > 1 && work >= (index_t{1} << 16)) {
#pragma omp parallel for schedule(dynamic, 1)
    for (index_t e = 0; e < experts; ++e) f(e);
    return;
  }
#endif
  for (index_t e = 0; e < experts; ++e) f(e);
}

/// Rows `tokens` of x as a new (n, D) tensor.
template <class T>
tensor<T, dims<2>> gather_rows(const tensor<T, dims<2>>& x, const std::vector<std::int64_t>& tokens) {
  const index_t D = x.extent(1), n = static_cast<index_t>(tokens.size());
  tensor<T, dims<2>> out(n, D);  // (n, D)
  for (index_t i = 0; i < n; ++i) {
    const T* src = row_of(x.data(), tokens[static_cast<std::size_t>(i)], D);
    std::copy(src, src + D, row_of(out.data(), i, D));
  }
  return out;
}

/// An expert's forward on the rows x (n, D); keeps its activations.
template <class T>
moe_expert_activations<T> expert_forward(const expert_parameters<T>& w, const tensor<T, dims<2>>& x) {
  auto h1 = einsum<"n d, f d -> n f">(x, w.w1);   // (n, F)
  auto h3 = einsum<"n d, f d -> n f">(x, w.w3);   // (n, F)
  tensor<T, dims<2>> g = swiglu_hidden(h1, h3);   // (n, F)
  auto out = einsum<"n f, d f -> n d">(g, w.w2);  // (n, D)
  return {std::move(h1), std::move(h3), std::move(g), std::move(out)};
}

/// An expert's backward: accumulates its weight gradients, returns dx (n, D).
template <class T>
tensor<T, dims<2>> expert_backward(const expert_parameters<T>& w, const moe_expert_activations<T>& a,
                                   const tensor<T, dims<2>>& x, const tensor<T, dims<2>>& dy, expert_parameters<T>& gw) {
  einsum_accumulate<"n d, n f -> d f">(gw.w2, dy, a.g);         // (D, F)
  auto dg = einsum<"n d, d f -> n f">(dy, w.w2);                // (n, F)
  auto [dh1, dh3] = swiglu_backward(a.h1, a.h3, dg);            // (n, F) twice
  einsum_accumulate<"n f, n d -> f d">(gw.w1, dh1, x);          // (F, D)
  einsum_accumulate<"n f, n d -> f d">(gw.w3, dh3, x);          // (F, D)
  tensor<T, dims<2>> dx = einsum<"n f, f d -> n d">(dh1, w.w1);  // (n, D)
  einsum_accumulate<"n f, f d -> n d">(dx, dh3, w.w3);          // (n, D)
  return dx;
}

/// Indices of the k largest scores (ties: lower index first), in that order.
inline void top_k_of(const double* score, index_t E, index_t k, std::vector<std::int64_t>& idx) {
  idx.resize(static_cast<std::size_t>(E));
  std::iota(idx.begin(), idx.end(), std::int64_t{0});
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](std::int64_t a, std::int64_t b) {
    return score[a] > score[b] || (score[a] == score[b] && a < b);
  });
  idx.resize(static_cast<std::size_t>(k));
}

/// E · Σ_e f_e · P_e over tokens [n0, n1), and its gradient coefficients E·f_e/(n1 − n0) per q_e.
inline double balance_over(const moe_routing& r, index_t n0, index_t n1, std::vector<double>& dq_coef) {
  const index_t E = r.E, K = r.K, T = n1 - n0;
  std::vector<double> f(static_cast<std::size_t>(E), 0.0), P(static_cast<std::size_t>(E), 0.0);
  for (index_t n = n0; n < n1; ++n) {
    for (index_t j = 0; j < K; ++j) f[static_cast<std::size_t>(r.expert[static_cast<std::size_t>(n * K + j)])] += 1;
    for (index_t e = 0; e < E; ++e) P[static_cast<std::size_t>(e)] += r.q[static_cast<std::size_t>(n * E + e)];
  }
  double loss = 0;
  dq_coef.assign(static_cast<std::size_t>(E), 0.0);
  for (std::size_t e = 0; e < f.size(); ++e) {
    f[e] /= static_cast<double>(T * K);
    loss += f[e] * P[e] / static_cast<double>(T);
    dq_coef[e] = static_cast<double>(E) * f[e] / static_cast<double>(T);
  }
  return static_cast<double>(E) * loss;
}

/// Routes the tokens of x: router logits, selection, gates, capacity, the counting sort, the
/// losses and the statistics.
template <class T>
moe_routing route(const moe_parameters<T>& p, const tensor<T, dims<2>>& x, index_t seq_len, moe_stats& st) {
  const auto& c = p.config;
  moe_routing r;
  r.N = x.extent(0);
  r.E = c.num_experts;
  r.K = c.top_k;
  r.S = seq_len == 0 ? r.N : seq_len;
  const index_t N = r.N, E = r.E, K = r.K;
  const auto logits = einsum<"n d, e d -> n e">(x, p.router);  // (N, E)
  const bool sig = c.router == router_kind::sigmoid;
  r.affinity.resize(static_cast<std::size_t>(N * E));
  r.q.resize(static_cast<std::size_t>(N * E));
  r.softmax.resize(static_cast<std::size_t>(N * E));
  r.lse.resize(static_cast<std::size_t>(N));
  r.expert.resize(static_cast<std::size_t>(N * K));
  r.gate.resize(static_cast<std::size_t>(N * K));
  std::vector<double> score(static_cast<std::size_t>(E));
  std::vector<std::int64_t> chosen;
  double entropy = 0, z = 0;
  for (index_t n = 0; n < N; ++n) {
    const T* l = logits.data() + n * E;
    double* a = r.affinity.data() + n * E;
    double* q = r.q.data() + n * E;
    double* sm = r.softmax.data() + n * E;
    double m = -INFINITY;
    for (index_t e = 0; e < E; ++e) m = std::max(m, static_cast<double>(l[e]));
    double sum = 0;
    for (index_t e = 0; e < E; ++e) sum += (sm[e] = std::exp(static_cast<double>(l[e]) - m));
    for (index_t e = 0; e < E; ++e) sm[e] /= sum;
    const double lse = m + std::log(sum);
    r.lse[static_cast<std::size_t>(n)] = lse;
    z += lse * lse;
    double total = 0;
    for (index_t e = 0; e < E; ++e) {
      a[e] = sig ? 1.0 / (1.0 + std::exp(-static_cast<double>(l[e]))) : sm[e];
      score[static_cast<std::size_t>(e)] = a[e] + (sig ? static_cast<double>(p.router_bias(e)) : 0.0);
      total += a[e];
    }
    for (index_t e = 0; e < E; ++e) {
      q[e] = sig ? a[e] / total : a[e];
      if (q[e] > 0) entropy -= q[e] * std::log(q[e]);
    }
    top_k_of(score.data(), E, K, chosen);
    double selected = 0;
    for (index_t j = 0; j < K; ++j) selected += a[chosen[static_cast<std::size_t>(j)]];
    const bool renormalise = sig || K > 1;
    for (index_t j = 0; j < K; ++j) {
      const auto e = chosen[static_cast<std::size_t>(j)];
      r.expert[static_cast<std::size_t>(n * K + j)] = e;
      r.gate[static_cast<std::size_t>(n * K + j)] = renormalise ? a[e] / selected : a[e];
    }
  }
  // Capacity, then the counting sort of the kept slots by expert.
  st = {};
  st.routed_per_expert.assign(static_cast<std::size_t>(E), 0);
  st.tokens_per_expert.assign(static_cast<std::size_t>(E), 0);
  st.capacity = c.capacity_factor > 0
                    ? static_cast<std::int64_t>(std::ceil(c.capacity_factor * static_cast<double>(N * K) / static_cast<double>(E)))
                    : 0;
  r.kept.assign(static_cast<std::size_t>(N * K), 0);
  for (index_t s = 0; s < N * K; ++s) {
    const auto e = static_cast<std::size_t>(r.expert[static_cast<std::size_t>(s)]);
    ++st.routed_per_expert[e];
    if (st.capacity == 0 || st.tokens_per_expert[e] < st.capacity) {
      ++st.tokens_per_expert[e];
      r.kept[static_cast<std::size_t>(s)] = 1;
    } else {
      ++st.dropped_slots;
    }
  }
  r.offset.assign(static_cast<std::size_t>(E + 1), 0);
  std::partial_sum(st.tokens_per_expert.begin(), st.tokens_per_expert.end(), r.offset.begin() + 1);  // exclusive scan
  r.order.assign(static_cast<std::size_t>(r.offset.back()), 0);
  std::vector<std::int64_t> cursor(r.offset.begin(), r.offset.end() - 1);
  for (index_t s = 0; s < N * K; ++s)
    if (r.kept[static_cast<std::size_t>(s)])
      r.order[static_cast<std::size_t>(cursor[static_cast<std::size_t>(r.expert[static_cast<std::size_t>(s)])]++)] = s;
  // Losses.
  std::vector<double> unused;
  st.router_entropy = entropy / static_cast<double>(N);
  st.z_loss = z / static_cast<double>(N);
  st.balance_loss = balance_over(r, 0, N, unused);
  for (index_t b = 0; b < N / r.S; ++b) st.seq_balance_loss += balance_over(r, b * r.S, (b + 1) * r.S, unused);
  st.seq_balance_loss /= static_cast<double>(N / r.S);
  st.aux_loss = c.aux_loss_coef * st.balance_loss + c.z_loss_coef * st.z_loss + c.seq_aux_loss_coef * st.seq_balance_loss;
  return r;
}

/// The token rows of expert e's kept slots.
inline std::vector<std::int64_t> tokens_of(const moe_routing& r, index_t e) {
  std::vector<std::int64_t> t;
  for (auto i = r.offset[static_cast<std::size_t>(e)]; i < r.offset[static_cast<std::size_t>(e + 1)]; ++i)
    t.push_back(r.order[static_cast<std::size_t>(i)] / r.K);
  return t;
}

}  // namespace detail

/// The MoE layer: forward for inference (static), forward_train + backward for training. An
/// instance holds the activations of its last forward_train until backward.
template <class T>
class moe_layer {
 public:
  /// y (N, D) for x (N, D) made of sequences of seq_len tokens (0: one sequence); fills *stats
  /// when given.
  static tensor<T, dims<2>> forward(const moe_parameters<T>& p, const tensor<T, dims<2>>& x, index_t seq_len = 0,
                                    moe_stats* stats = nullptr) {
    moe_layer layer;
    auto y = layer.run(p, x, seq_len, /*keep=*/false);  // (N, D)
    if (stats) *stats = std::move(layer.stats_);
    return y;
  }

  /// The forward pass, keeping what backward needs (x is copied).
  tensor<T, dims<2>> forward_train(const moe_parameters<T>& p, const tensor<T, dims<2>>& x, index_t seq_len = 0) {
    return run(p, x, seq_len, /*keep=*/true);  // (N, D)
  }

  /// dx (N, D) for dy (N, D), the main loss's gradient with respect to the last forward_train's y;
  /// adds to `grads` the gradients of main + the weighted auxiliary losses (router.bias: none).
  /// `p` must be the parameters of that forward_train, unchanged.
  tensor<T, dims<2>> backward(const moe_parameters<T>& p, const tensor<T, dims<2>>& dy, moe_parameters<T>& grads) {
    const auto& c = p.config;
    const auto& r = routing_;
    if (!ready_)
      throw value_error("moe_layer::backward: no forward_train to go back through");
    const index_t N = r.N, D = c.d_model, E = r.E, K = r.K;
    if (dy.extent(0) != N || dy.extent(1) != D)
      throw shape_error(einlm::detail::concat("moe_layer::backward: dy of shape (", dy.extent(0), ", ", dy.extent(1),
                                              ") does not match y of shape (", N, ", ", D, ")"));
    if (grads.experts.size() != p.experts.size() || grads.shared_experts.size() != p.shared_experts.size())
      throw shape_error("moe_layer::backward: the gradients are not shaped like the parameters");
    tensor<T, dims<2>> dx(N, D);  // (N, D)
    dx = T(0);
    // Shared experts: every token, weight 1.
    for (std::size_t s = 0; s < p.shared_experts.size(); ++s)
      detail::accumulate(dx, detail::expert_backward(p.shared_experts[s], shared_[s], x_, dy, grads.shared_experts[s]));
    // Routed experts: dy scaled by the gate in, ⟨dy, out⟩ per slot out to the gate.
    // Each expert in parallel (it writes its own gradients, its own slots' dgate and its own dx
    // rows), then the rows added into dx in expert order.
    std::vector<double> dgate(static_cast<std::size_t>(N * K), 0.0);
    std::vector<tensor<T, dims<2>>> dx_of(static_cast<std::size_t>(E));  // per expert (n, D)
    detail::for_each_expert(E, N * D * c.expert_d_ff * K, [&](index_t e) {
      const auto tokens = detail::tokens_of(r, e);
      if (tokens.empty()) return;
      const auto& act = experts_[static_cast<std::size_t>(e)];
      const auto n = static_cast<index_t>(tokens.size());
      tensor<T, dims<2>> dye(n, D);  // (n, D)
      for (index_t i = 0; i < n; ++i) {
        const auto slot = static_cast<std::size_t>(r.order[static_cast<std::size_t>(r.offset[static_cast<std::size_t>(e)] + i)]);
        const T* src = detail::row_of(dy.data(), tokens[static_cast<std::size_t>(i)], D);
        const T* out = detail::row_of(act.out.data(), i, D);
        T* dst = detail::row_of(dye.data(), i, D);
        const T gate = static_cast<T>(r.gate[slot]);
        double dot = 0;
        for (index_t d = 0; d < D; ++d) {
          dst[d] = gate * src[d];
          dot += static_cast<double>(src[d]) * static_cast<double>(out[d]);
        }
        dgate[slot] = dot;
      }
      const auto xe = detail::gather_rows(x_, tokens);  // (n, D)
      dx_of[static_cast<std::size_t>(e)] = detail::expert_backward(p.experts[static_cast<std::size_t>(e)], act, xe, dye,
                                                                   grads.experts[static_cast<std::size_t>(e)]);  // (n, D)
    });
    for (index_t e = 0; e < E; ++e) {
      const auto tokens = detail::tokens_of(r, e);
      const auto& dxe = dx_of[static_cast<std::size_t>(e)];  // (n, D)
      for (std::size_t i = 0; i < tokens.size(); ++i) {
        T* dst = detail::row_of(dx.data(), tokens[i], D);
        const T* src = detail::row_of(dxe.data(), static_cast<index_t>(i), D);
        for (index_t d = 0; d < D; ++d) dst[d] += src[d];
      }
    }
    // The router: gates and auxiliary losses → d affinity, d q → d logits.
    const bool sig = c.router == router_kind::sigmoid;
    std::vector<double> bal_coef, seq_coef;
    detail::balance_over(r, 0, N, bal_coef);
    const double B = static_cast<double>(N / r.S);
    tensor<T, dims<2>> dlogits(N, E);  // (N, E)
    std::vector<double> da(static_cast<std::size_t>(E)), dq(static_cast<std::size_t>(E));
    for (index_t n = 0; n < N; ++n) {
      if (n % r.S == 0) detail::balance_over(r, n, n + r.S, seq_coef);
      const double* a = r.affinity.data() + n * E;
      const double* q = r.q.data() + n * E;
      const double* sm = r.softmax.data() + n * E;
      std::fill(da.begin(), da.end(), 0.0);
      // Gates: g_j = a_j (softmax, top-1) or a_j / Σ_sel a.
      const double* dg = dgate.data() + n * K;
      const double* g = r.gate.data() + n * K;
      const std::int64_t* ex = r.expert.data() + n * K;
      if (!sig && K == 1) {
        da[static_cast<std::size_t>(ex[0])] += dg[0];
      } else {
        double selected = 0, dot = 0;
        for (index_t j = 0; j < K; ++j) {
          selected += a[ex[j]];
          dot += dg[j] * g[j];
        }
        for (index_t j = 0; j < K; ++j) da[static_cast<std::size_t>(ex[j])] += (dg[j] - dot) / selected;
      }
      // Balance losses: d/dq_e = coef · E·f_e / tokens.
      double dq_dot = 0;
      for (index_t e = 0; e < E; ++e) {
        const auto i = static_cast<std::size_t>(e);
        dq[i] = c.aux_loss_coef * bal_coef[i] + c.seq_aux_loss_coef * seq_coef[i] / B;
        dq_dot += dq[i] * q[e];
      }
      if (sig) {
        double total = 0;
        for (index_t e = 0; e < E; ++e) total += a[e];
        for (index_t e = 0; e < E; ++e) da[static_cast<std::size_t>(e)] += (dq[static_cast<std::size_t>(e)] - dq_dot) / total;
      } else {
        for (index_t e = 0; e < E; ++e) da[static_cast<std::size_t>(e)] += dq[static_cast<std::size_t>(e)];
      }
      // Through the softmax or the sigmoid, plus the z-loss: d/dlogit = 2·coef·lse·softmax / N.
      double da_dot = 0;
      if (!sig)
        for (index_t e = 0; e < E; ++e) da_dot += da[static_cast<std::size_t>(e)] * a[e];
      const double dz = 2.0 * c.z_loss_coef * r.lse[static_cast<std::size_t>(n)] / static_cast<double>(N);
      T* dl = dlogits.data() + n * E;
      for (index_t e = 0; e < E; ++e) {
        const double dai = da[static_cast<std::size_t>(e)];
        const double through = sig ? dai * a[e] * (1.0 - a[e]) : a[e] * (dai - da_dot);
        dl[e] = static_cast<T>(through + dz * sm[e]);
      }
    }
    einsum_accumulate<"n e, n d -> e d">(grads.router, dlogits, x_);  // (E, D)
    einsum_accumulate<"n e, e d -> n d">(dx, dlogits, p.router);      // (N, D)
    clear();
    return dx;
  }

  /// The routing statistics and loss values of the last forward pass.
  const moe_stats& stats() const { return stats_; }

  /// Bytes the last forward_train keeps for backward: x, every expert's hidden states and output,
  /// and the routing (slots, gates, per-token router probabilities).
  std::size_t kept_bytes() const {
    if (!ready_) return 0;
    std::size_t n = x_.bytes();
    for (const auto* group : {&experts_, &shared_})
      for (const auto& a : *group) n += a.h1.bytes() + a.h3.bytes() + a.g.bytes() + a.out.bytes();
    const auto& r = routing_;
    n += r.expert.size() * sizeof(std::int64_t) + r.gate.size() * sizeof(double) + r.kept.size() +
         r.offset.size() * sizeof(std::int64_t) + r.order.size() * sizeof(std::int64_t) +
         (r.affinity.size() + r.q.size() + r.lse.size() + r.softmax.size()) * sizeof(double);
    return n;
  }

 private:
  tensor<T, dims<2>> run(const moe_parameters<T>& p, const tensor<T, dims<2>>& x, index_t seq_len, bool keep) {
    const auto& c = p.config;
    const index_t N = x.extent(0), D = c.d_model;
    if (x.extent(1) != D)
      throw shape_error(einlm::detail::concat("moe_layer: x of shape (", N, ", ", x.extent(1),
                                              ") does not have d_model = ", D, " columns"));
    if (seq_len < 0 || (seq_len > 0 && N % seq_len != 0))
      throw shape_error(einlm::detail::concat("moe_layer: ", N, " tokens are not sequences of seq_len = ", seq_len));
    if (N == 0) throw shape_error("moe_layer: x has no tokens");
    clear();
    routing_ = detail::route(p, x, seq_len, stats_);
    const auto& r = routing_;
    tensor<T, dims<2>> y(N, D);  // (N, D)
    y = T(0);
    for (const auto& w : p.shared_experts) {
      auto act = detail::expert_forward(w, x);
      detail::accumulate(y, act.out);
      if (keep) shared_.push_back(std::move(act));
    }
    // The experts' blocks in parallel, then their gate-weighted outputs added in expert order.
    std::vector<detail::moe_expert_activations<T>> acts(static_cast<std::size_t>(r.E));
    detail::for_each_expert(r.E, N * D * c.expert_d_ff * c.top_k, [&](index_t e) {
      const auto tokens = detail::tokens_of(r, e);
      if (tokens.empty()) return;
      const auto xe = detail::gather_rows(x, tokens);  // (n, D)
      acts[static_cast<std::size_t>(e)] = detail::expert_forward(p.experts[static_cast<std::size_t>(e)], xe);
    });
    if (keep) experts_.resize(static_cast<std::size_t>(r.E));
    for (index_t e = 0; e < r.E; ++e) {
      const auto tokens = detail::tokens_of(r, e);
      if (tokens.empty()) continue;
      auto& act = acts[static_cast<std::size_t>(e)];
      for (std::size_t i = 0; i < tokens.size(); ++i) {
        const auto slot = static_cast<std::size_t>(r.order[static_cast<std::size_t>(r.offset[static_cast<std::size_t>(e)]) + i]);
        const T gate = static_cast<T>(r.gate[slot]);
        const T* src = detail::row_of(act.out.data(), static_cast<index_t>(i), D);
        T* dst = detail::row_of(y.data(), tokens[i], D);
        for (index_t d = 0; d < D; ++d) dst[d] += gate * src[d];
      }
      if (keep) experts_[static_cast<std::size_t>(e)] = std::move(act);
    }
    if (keep) {
      x_ = x.clone();
      ready_ = true;
    }
    return y;
  }

  void clear() {
    ready_ = false;
    x_ = {};
    experts_.clear();
    shared_.clear();
  }

  moe_stats stats_;
  detail::moe_routing routing_;
  tensor<T, dims<2>> x_;  // (N, D) the last forward_train's input
  std::vector<detail::moe_expert_activations<T>> experts_, shared_;
  bool ready_ = false;  // a forward_train awaits its backward
};

/// DeepSeek-V3's auxiliary-loss-free balancing, after a step: bias_e += γ · sign(mean − load_e)
/// with load_e = stats.routed_per_expert[e] (slots before capacity) and mean = N·top_k / E; experts
/// below the mean go up, above it down, at it stay. γ = config.bias_update_rate. The softmax
/// router has no bias: config_error.
template <class T>
void update_router_bias(moe_parameters<T>& p, const moe_stats& stats) {
  if (p.config.router != router_kind::sigmoid)
    throw config_error("update_router_bias: the softmax router has no bias (router must be sigmoid)");
  const auto E = static_cast<std::size_t>(p.config.num_experts);
  if (stats.routed_per_expert.size() != E)
    throw shape_error("update_router_bias: the statistics are not of a forward pass of this layer");
  double mean = 0;
  for (auto l : stats.routed_per_expert) mean += static_cast<double>(l);
  mean /= static_cast<double>(E);
  const double gamma = p.config.bias_update_rate;
  for (std::size_t e = 0; e < E; ++e) {
    const double load = static_cast<double>(stats.routed_per_expert[e]);
    const double step = load < mean ? gamma : load > mean ? -gamma : 0.0;
    p.router_bias(static_cast<index_t>(e)) = static_cast<T>(static_cast<double>(p.router_bias(static_cast<index_t>(e))) + step);
  }
}

}  // namespace einlm::nn
