// einlm/nn/blocks.hpp — language models as types: leaf blocks (embedding, learned positions,
// linear, norms, activations, SwiGLU, GELU MLP, attention, LM head) and combinators (sequential,
// repeat, the residual forms) whose static dimensions are template arguments and whose dynamic
// ones (`dyn`) are given at construction; cs336_lm and gpt2_lm compose whole models.
//
//   namespace b = nn::blocks;
//   using lm = b::cs336_lm<10'000, 512, 4, b::heads<16>>;            // all dimensions static
//   static_assert(lm{}.param_count() == nn::param_count(config));      // a constexpr fact
//   nn::blocks::model<lm, float> m;                                   // parameters, gradients
//   double loss = m.forward_backward(inputs, targets);                 // (B, S) token ids twice
//   auto cache = m.make_cache(B);                      // a KV cache, as transformer_lm's
//   auto last = m.last_logits(new_tokens, cache);      // (B, V), as nn::generate_batch(m, …) does
//   using tied = b::cs336_lm<10'000, 512, 4, b::heads<16>, b::tied_embeddings>;  // lm_head = E
//
// The blocks live in nn::blocks because their names are those of the functions they apply
// (nn::rms_norm, nn::silu, …). A block type is a shape: an object holding its dimensions (a literal
// type, so a static one is constexpr) with these members:
//   - in_width, out_width: the static widths of its input and output features (dyn if run-time);
//     in_dim(), out_dim(): the same at run time;
//   - params<T>, cache<T>: its weights (also its gradients) and what forward keeps for backward;
//     make_params<T>(): zero weights of the right shapes;
//   - visit(params, prefix, f): f(prefix + name, tensor) for every weight, in a fixed order;
//   - forward(params, x, cache*, ctx): (B, S, in) → (B, S, out), keeping activations when the
//     cache pointer is not null (linear and the activations also take x as an rvalue and keep it
//     without a copy; sequential and residual hand their intermediate results on as rvalues);
//     backward(params, grads, cache, dy, ctx): accumulates the weights' gradients and returns
//     d(input) (a block may also take dy as an rvalue, to release it and its
//     cache as soon as it is done: linear, lm_head, tied_lm and sequential do, and model's
//     forward_backward hands the loss gradient over); a combinator hands ctx to its children as
//     it is (in a cached pass it carries the KV cache and the rows' positions to the attention and
//     learned_positions blocks, the only ones that read positions);
//   - param_count(), forward_flops(batch, seq), activation_elements(batch, seq) and
//     activation_bytes(batch, seq, bytes_per_element): constexpr, the counts of nn/accounting.hpp.
// Composition checks static widths with static_asserts (an error names both widths) and run-time
// widths at construction (config_error); a forward input of the wrong width is a shape_error.
// Every block but linear is also constructible from a transformer_config (its fields give the
// dynamic dimensions and must equal the static ones, else config_error). Weights are stored
// (out, in) and applied as x Wᵀ; names are the CS336 state-dict names when composed as cs336_lm (a
// `named<"n", B>` block adds "n." to B's names, repeat adds "layers.{i}.", the other combinators
// add nothing). Activations (silu, gelu, relu) take any width and count no kept activations of
// their own (they do not know their width; gelu_mlp counts its gelu's input).
//
// blocks::model<Block, T> holds a block's weights, gradients and kept activations, and trains a
// token → logits model with cross_entropy_with_grad (train::fit takes it, in bf16 mixed precision
// too: rebind<bf16> is model<Block, bf16>, and convert_parameters / convert_gradients move the
// weights and gradients between two models of one block). Such a model also generates
// (nn/generate.hpp): context_length() (from the configuration or the context), logits(tokens),
// and a KV cache with transformer_lm's semantics — make_cache(B) (an nn::kv_cache, one length per
// sequence), ragged_logits / last_logits(new_tokens, cache) and logits(tokens, cache). A cached
// pass packs the sequences' new positions into one (1, N) input and hands the cache, the rows'
// positions and the sequences' lengths down in the context (detail::kv_step); each attention
// block takes the next layer of the cache in the order of the forward pass, learned_positions
// adds each row's own position, and for last_logits the LM head (lm_head, tied_lm) projects only
// the rows the context names; the other blocks need nothing for it. tied_lm<Embedding, Body>
// (cs336_lm's tied_embeddings option) is a model whose LM head is its token embedding: one table,
// visited and counted once, both gradients added into it; gpt2_lm is GPT-2 composed with it. The
// layer code itself — attention (GQA, qk-norm, RoPE, an optional KV cache), SwiGLU, embedding
// gather/scatter, linear with bias — is in nn::detail at the top of this file, shared with
// nn::transformer_lm. Element-wise work is done by nn/functional.hpp and nn/backward.hpp;
// projections are einsums; everything runs on the host.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "einlm/core/error.hpp"
#include "einlm/core/random.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/einops.hpp"
#include "einlm/expr.hpp"
#include "einlm/linalg/einsum.hpp"
#include "einlm/nn/backward.hpp"
#include "einlm/nn/config.hpp"
#include "einlm/nn/functional.hpp"
#include "einlm/pattern/fixed_string.hpp"

namespace einlm::nn {

namespace detail {

/// A new tensor of the given extents filled with zeros.
template <class T, class... I>
tensor<T, dims<sizeof...(I)>> zeros(I... n) {
  tensor<T, dims<sizeof...(I)>> t(static_cast<index_t>(n)...);  // (n…)
  t = T(0);
  return t;
}

/// (B, H, S, Dh) → (B, S, H·Dh): the heads side by side. Written through a (B, S, H, Dh) view of
/// the result, so that the copy is a permutation with contiguous rows of Dh (the executor's row
/// path) rather than an element-wise gather into a merged axis.
template <class T, class X>
tensor<T, dims<3>> merge_heads(const X& x) {
  const index_t B = x.extent(0), H = x.extent(1), S = x.extent(2), Dh = x.extent(3);
  tensor<T, dims<3>> out(B, S, H * Dh);                                    // (B, S, H·Dh)
  auto split = rearrange<"b s (h e) -> b s h e">(out, axis_size<"h">{H});  // (B, S, H, Dh) view
  assign(split, rearrange<"b h s e -> b s h e">(x));
  return out;
}

/// y = act(x Wᵀ + bias) for x (B, S, D) and W (O, D); the bias (O,) is skipped when null or
/// empty, act is none unless given. With a bias or an activation, and x an array whose batch and
/// sequence fold into one row axis (a tensor always does), this is one GEMM whose epilogue adds the
/// bias and applies act as it stores y (whole tiles straight from the registers when there is no
/// activation): the values of the GEMM followed by `y + bias` (the activation's within the few
/// units in the last place that fused multiply-adds change), with a pass over y fewer for each,
/// and for bf16 one rounding of y instead of up to three. Otherwise the einsum, then `y + bias`.
template <class T, class X>
tensor<T, dims<3>> linear_forward(const X& x, const tensor<T, dims<2>>& w,
                                  const std::type_identity_t<tensor<T, dims<1>>>* bias,
                                  einlm::activation act = einlm::activation::none) {
  const bool has_bias = bias && bias->size() > 0;
  const bool epilogue_work = has_bias || act != einlm::activation::none;
  const index_t O = w.extent(0);
  // The one GEMM, when x's rows fold and the shapes agree (else the einsum below names the
  // mismatch).
  const auto fused = [&](const auto& xv, tensor<T, dims<3>>& y) {
    const index_t B = xv.extent(0), S = xv.extent(1), D = xv.extent(2);
    const bool rows_fold = B == 1 || S == 1 || xv.stride(0) == S * xv.stride(1);
    if (!rows_fold || D != w.extent(1) || (has_bias && bias->size() != O)) return false;
    y = tensor<T, dims<3>>(B, S, O);  // (B, S, O)
    const index_t row_stride = S == 1 ? xv.stride(0) : xv.stride(1);
    const matrix_ref<const T> xm(xv.data(), 1, B * S, D, 0, row_stride, xv.stride(2));  // (B·S, D)
    const matrix_ref<const T> wt(w.data(), 1, D, O, 0, 1, D);                         // Wᵀ (D, O)
    const matrix_ref<T> ym(y.data(), B * S, O);                                       // (B·S, O)
    const epilogue<T> ep{.bias = has_bias ? vector_ref<T>(bias->data(), O) : vector_ref<T>{}, .act = act};
    const gemm_options options{};
    gemm_on(host{}, xm, wt, ym, ep, options);
    return true;
  };
  tensor<T, dims<3>> y;  // (B, S, O)
  if constexpr (array_like<X>) {
    if (epilogue_work && fused(as_view(x), y)) return y;
  }
  if (act != einlm::activation::none) {  // x is not such an array: a tensor of it, then the GEMM
    const auto e = x.extents();
    tensor<T, dims<3>> xt(e.extent(0), e.extent(1), e.extent(2));  // (B, S, D)
    assign(xt, x);
    if (fused(as_view(xt), y)) return y;
  }
  // No activation here: a shape that stopped the GEMM stops the einsum or `y + bias` too.
  y = einsum<"b s d, o d -> b s o">(x, w);  // (B, S, O)
  if (has_bias) y = y + *bias;              // (B, S, O)
  return y;
}

/// dW += dyᵀ x (one GEMM adding into dW: einsum_accumulate, no (O, D) temporary), and dbias +=
/// the rows of dy when there is a bias.
template <class T, class X>
void linear_weight_gradients(const X& x, const tensor<T, dims<3>>& dy, tensor<T, dims<2>>& dw,
                             std::type_identity_t<tensor<T, dims<1>>>* dbias) {
  einsum_accumulate<"b s o, b s d -> o d">(dw, dy, x);                                    // (O, D)
  if (dbias && dbias->size() > 0) accumulate(*dbias, sum_rows<T>(dy, dbias->extents()));  // (O,)
}

/// The adjoint of linear_forward: accumulates dW (and dbias), returns dx.
template <class T, class X>
tensor<T, dims<3>> linear_backward(const X& x, const tensor<T, dims<2>>& w,
                                   const tensor<T, dims<3>>& dy, tensor<T, dims<2>>& dw,
                                   std::type_identity_t<tensor<T, dims<1>>>* dbias) {
  linear_weight_gradients(x, dy, dw, dbias);
  return einsum<"b s o, o d -> b s d">(dy, w);  // (B, S, D)
}

/// The same, adding dx into `dx_sum` (B, S, D) instead of returning it: for inputs that feed
/// several projections (q, k, v; w1, w3).
template <class T, class X>
void linear_backward_add(const X& x, const tensor<T, dims<2>>& w, const tensor<T, dims<3>>& dy,
                         tensor<T, dims<2>>& dw, std::type_identity_t<tensor<T, dims<1>>>* dbias,
                         tensor<T, dims<3>>& dx_sum) {
  linear_weight_gradients(x, dy, dw, dbias);
  einsum_accumulate<"b s o, o d -> b s d">(dx_sum, dy, w);  // (B, S, D)
}

/// The ids of host token ids (B, S) in row-major order as int64, each checked to lie in [0, V):
/// a value_error "<who>: <what> id <id> at (b, s) is outside the vocabulary [0, V)" otherwise.
template <class I>
std::vector<std::int64_t> checked_token_ids(const I& tokens_in, index_t V, const char* who, const char* what = "token") {
  const auto tokens = as_view(tokens_in);
  static_assert(decltype(tokens)::rank() == 2, "einlm::nn: token ids are (batch, sequence)");
  static_assert(std::is_integral_v<typename decltype(tokens)::value_type>, "einlm::nn: token ids are integers");
  const index_t B = tokens.extent(0), S = tokens.extent(1);
  std::vector<std::int64_t> ids(static_cast<std::size_t>(B * S));
  for (index_t b = 0; b < B; ++b)
    for (index_t s = 0; s < S; ++s) {
      const auto id = static_cast<std::int64_t>(tokens(b, s));
      if (id < 0 || id >= V)
        throw value_error(einlm::detail::concat(who, ": ", what, " id ", id, " at (", b, ", ", s,
                                                ") is outside the vocabulary [0, ", V, ")"));
      ids[static_cast<std::size_t>(b * S + s)] = id;
    }
  return ids;
}

/// Copies the embedding rows of `tokens` (B, S) into a new (B, S, D) tensor and their ids into
/// `ids`; an id outside [0, V) is a value_error naming `who`.
template <class T, class I>
tensor<T, dims<3>> embedding_gather(const tensor<T, dims<2>>& table, const I& tokens_in,
                                    std::vector<std::int64_t>& ids, const char* who) {
  const auto tokens = as_view(tokens_in);
  ids = checked_token_ids(tokens, table.extent(0), who);
  const index_t B = tokens.extent(0), S = tokens.extent(1), D = table.extent(1);
  tensor<T, dims<3>> x(B, S, D);  // (B, S, D)
  for (index_t r = 0; r < B * S; ++r) {
    const T* row = table.data() + ids[static_cast<std::size_t>(r)] * D;
    std::copy(row, row + D, x.data() + r * D);
  }
  return x;
}

/// CS336's initialisation (§3.4.1) of one weight, chosen by its name and rank: a vector named
/// "….bias" is 0 and any other vector (a norm gain) 1; a matrix whose name ends in
/// "embeddings.weight" is 𝒩(0, 1) truncated at ±3; any other matrix (out, in) is
/// 𝒩(0, 2/(in + out)) truncated at ±3σ — drawn from Philox stream `g`.
template <class W>
void cs336_initialise(const std::string& name, W& w, const random_stream& g) {
  using T = typename W::value_type;
  auto ends_with = [&](const char* suffix) {
    const std::string s(suffix);
    return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
  };
  if (w.extents().rank() == 1) {
    w = ends_with(".bias") || name == "bias" ? T(0) : T(1);
  } else if (ends_with("embeddings.weight")) {
    w = truncated_normal<T>(w.extents(), g, 0.0, 1.0, -3.0, 3.0);
  } else {
    const double d_out = static_cast<double>(w.extent(0)), d_in = static_cast<double>(w.extent(1));
    const double sigma = std::sqrt(2.0 / (d_in + d_out));
    w = truncated_normal<T>(w.extents(), g, 0.0, sigma, -3.0 * sigma, 3.0 * sigma);
  }
}

/// The positions of token ids grouped by token: `order` holds the positions 0 … N − 1 stably
/// sorted by id (a token's positions stay in increasing order), and run u — the positions of one
/// token, ids[order[starts[u]]] — is order[starts[u]] … order[starts[u + 1] − 1]; starts has one
/// entry per distinct token plus a last one equal to N.
struct token_runs {
  std::vector<std::int64_t> order;   // (N,)
  std::vector<std::int64_t> starts;  // (U + 1,)
};

inline token_runs group_by_token(const std::vector<std::int64_t>& ids) {
  token_runs runs;
  runs.order.resize(ids.size());
  for (std::size_t r = 0; r < ids.size(); ++r) runs.order[r] = static_cast<std::int64_t>(r);
  std::stable_sort(runs.order.begin(), runs.order.end(), [&](std::int64_t a, std::int64_t b) {
    return ids[static_cast<std::size_t>(a)] < ids[static_cast<std::size_t>(b)];
  });
  for (std::size_t i = 0; i < runs.order.size(); ++i)
    if (i == 0 || ids[static_cast<std::size_t>(runs.order[i])] != ids[static_cast<std::size_t>(runs.order[i - 1])])
      runs.starts.push_back(static_cast<std::int64_t>(i));
  runs.starts.push_back(static_cast<std::int64_t>(ids.size()));
  return runs;
}

/// The adjoint of embedding_gather: adds each position's gradient to its token's row. For 16-bit
/// T the positions of one token are summed in float and the row is rounded once.
template <class T>
void embedding_scatter(tensor<T, dims<2>>& dtable, const std::vector<std::int64_t>& ids,
                       const tensor<T, dims<3>>& dx) {
  const index_t D = dtable.extent(1);
  T* demb = dtable.data();
  if constexpr (is_half_v<T>) {
    const auto runs = group_by_token(ids);
    std::vector<float> sum(static_cast<std::size_t>(D));  // (D,)
    for (std::size_t u = 0; u + 1 < runs.starts.size(); ++u) {
      const auto first = static_cast<std::size_t>(runs.starts[u]), last = static_cast<std::size_t>(runs.starts[u + 1]);
      T* row = demb + ids[static_cast<std::size_t>(runs.order[first])] * D;
      for (index_t d = 0; d < D; ++d) sum[static_cast<std::size_t>(d)] = convert<float>(row[d]);
      for (std::size_t i = first; i < last; ++i) {
        const T* src = dx.data() + runs.order[i] * D;
        for (index_t d = 0; d < D; ++d) sum[static_cast<std::size_t>(d)] += convert<float>(src[d]);
      }
      for (index_t d = 0; d < D; ++d) row[d] = convert<T>(sum[static_cast<std::size_t>(d)]);
    }
  } else {
    for (std::size_t r = 0; r < ids.size(); ++r) {
      T* row = demb + ids[r] * D;
      const T* src = dx.data() + static_cast<index_t>(r) * D;
      for (index_t d = 0; d < D; ++d) row[d] += src[d];
    }
  }
}

}  // namespace detail

/// The weights of one attention layer (gains and biases empty when absent).
template <class T>
struct attention_weights {
  tensor<T, dims<2>> q_proj, k_proj, v_proj, output_proj;  // (H·Dh, D), (K·Dh, D) twice, (D, H·Dh)
  tensor<T, dims<1>> q_bias, k_bias, v_bias, output_bias;  // (H·Dh,), (K·Dh,) twice, (D,); GPT-2
  tensor<T, dims<1>> q_norm, k_norm;                       // (Dh,) each, when qk_norm
};

/// The weights of a SwiGLU feed-forward network w2(silu(w1 x) ⊙ w3 x).
template <class T>
struct swiglu_weights {
  tensor<T, dims<2>> w1, w2, w3;  // (F, D), (D, F), (F, D)
};

namespace detail {

/// What an attention layer keeps from its forward pass.
template <class T>
struct attention_cache {
  tensor<T, dims<3>> a;             // (B, S, D) the layer input
  tensor<T, dims<4>> q_raw, k_raw;  // (B, H, S, Dh), (B, K, S, Dh) before the qk-norm (when on)
  tensor<T, dims<4>> q, k, v;       // (B, H, S, Dh), (B, K, S, Dh) twice: as attention reads them
  tensor<compute_t<T>, dims<3>> lse;  // (B, H, S) row log-sum-exp of the scores (float for bf16)
  tensor<T, dims<3>> o_merged;      // (B, S, H·Dh) attention output, heads merged
};

/// The shape and options of an attention layer at run time.
struct attention_spec {
  index_t heads = 0, kv_heads = 0;
  bool qk_norm = false;
  double theta = 10'000.0;  // 0: no rotary embedding
  double eps = 1e-5;
};

/// A KV cache: the keys and values of the positions before this call; the call writes its own
/// after them and attends to all.
///
/// Uniform (offsets empty): the input is (B, S, D), and every sequence b continues row b of the
/// cache after p0 positions.
/// Ragged (offsets of B + 1 entries): the input is the new positions of all sequences packed into
/// (1, N, D) — rows offsets[b] … offsets[b + 1] − 1 continue cache row b after its lengths[b]
/// positions (none: the sequence is skipped) — and each sequence attends to its own row only, so
/// no key slot of another length is ever read and nothing needs a mask.
template <class T>
struct attention_kv {
  tensor<T, dims<4>>* k = nullptr;    // (B, K, C, Dh)
  tensor<T, dims<4>>* v = nullptr;    // (B, K, C, Dh)
  index_t p0 = 0;                     // uniform: positions already cached in every row
  std::span<const index_t> lengths;   // ragged: positions already cached, per row (B,)
  std::span<const index_t> offsets;   // ragged: first packed row of each sequence's new positions (B + 1,)
};

}  // namespace detail

/// The keys and values of every attention layer for incremental decoding, shared by
/// nn::transformer_lm and blocks::model (see transformer.hpp's file comment). Each sequence (row)
/// has its own length: while they are all equal, `lengths` is empty and `length` is that length;
/// once they differ, `lengths` holds them (B entries, not all equal) and `length` is the shortest.
/// Every call that changes lengths returns the cache to this form. A block model's cache starts
/// with no layers (`sequences` and `positions` give its shape) and each attention layer adds its
/// own on its first cached pass, in the order of the forward pass. `Storage` is the tensor type
/// of one layer's keys or values: host tensors here (kv_cache<T>), device tensors for
/// nn::transformer_lm_cuda (device_kv_cache<T>, nn/transformer_cuda.cuh).
template <class Storage>
struct basic_kv_cache {
  std::vector<Storage> k, v;             // per attention layer (B, K, context_length, Dh) each
  index_t length = 0;                    // positions filled in every sequence
  std::vector<index_t> lengths;          // per sequence, when they differ; empty otherwise
  index_t sequences = 0, positions = 0;  // B and context_length while there are no layers yet

  index_t batch() const { return k.empty() ? sequences : k.front().extent(0); }
  /// Positions a sequence may hold (context_length).
  index_t capacity() const { return k.empty() ? positions : k.front().extent(2); }
  /// Whether the sequences have different lengths.
  bool ragged() const { return !lengths.empty(); }
  /// Positions filled in sequence b.
  index_t length_of(index_t b) const { return ragged() ? lengths[static_cast<std::size_t>(b)] : length; }
  /// Forgets every position of every sequence.
  void clear() {
    length = 0;
    lengths.clear();
  }
  /// Keeps only the first n positions of sequence b (n = 0: starts it over); n must not exceed
  /// its length.
  void truncate(index_t b, index_t n) {
    if (b < 0 || b >= batch())
      throw value_error(einlm::detail::concat("kv_cache: sequence ", b, " is outside a batch of ", batch()));
    if (n < 0 || n > length_of(b))
      throw value_error(einlm::detail::concat("kv_cache: cannot keep ", n, " positions of sequence ", b, ", which holds ",
                                              length_of(b)));
    std::vector<index_t> all = per_sequence();
    all[static_cast<std::size_t>(b)] = n;
    set_lengths(std::move(all));
  }
  /// Every sequence's length (B entries).
  std::vector<index_t> per_sequence() const {
    return ragged() ? lengths : std::vector<index_t>(static_cast<std::size_t>(batch()), length);
  }
  /// Sets every sequence's length (B entries), in the form described above.
  void set_lengths(std::vector<index_t> all) {
    if (all.empty()) return clear();
    length = *std::min_element(all.begin(), all.end());
    const bool equal = std::all_of(all.begin(), all.end(), [&](index_t n) { return n == length; });
    lengths = equal ? std::vector<index_t>{} : std::move(all);
  }
};

/// The KV cache of nn::transformer_lm<T> and blocks::model (host tensors).
template <class T>
using kv_cache = basic_kv_cache<tensor<T, dims<4>>>;

namespace detail {

/// The packed input of a ragged cached pass (transformer_lm's and blocks::model's): every
/// sequence's new positions in one (1, N) row, sequence after sequence, each at its own positions.
struct ragged_batch {
  std::vector<index_t> lengths;             // (B,) positions cached before the pass
  std::vector<index_t> offsets;             // (B + 1,) first packed row of each sequence
  std::vector<index_t> last_rows;           // the packed row of each sequence's last new position
  std::vector<index_t> last_sequence;       // … and its sequence (sequences with new tokens only)
  tensor<std::int64_t, dims<2>> ids;        // (1, N)
  tensor<std::int64_t, dims<1>> positions;  // (N,)
  index_t size() const { return offsets.back(); }
};

/// Packs new_tokens (one list per sequence of `cache`, any length, empty included) after each
/// sequence's cached length. Errors start with `who`: a list count other than the cache's batch or
/// a sequence grown past the cache's capacity is a shape_error, an id outside [0, vocab) a
/// value_error naming it by (sequence, new token).
template <class Storage>
ragged_batch pack_ragged(std::span<const std::vector<std::int64_t>> new_tokens,
                         const basic_kv_cache<Storage>& cache, index_t vocab, const char* who) {
  const index_t B = cache.batch();
  if (static_cast<index_t>(new_tokens.size()) != B)
    throw shape_error(einlm::detail::concat(who, ": a cache for ", B, " sequences was given tokens for ",
                                            new_tokens.size(), " sequences"));
  ragged_batch r;
  r.lengths = cache.per_sequence();
  r.offsets.assign(static_cast<std::size_t>(B) + 1, 0);
  for (std::size_t b = 0; b < new_tokens.size(); ++b) {
    const auto n = static_cast<index_t>(new_tokens[b].size());
    if (r.lengths[b] + n > cache.capacity())
      throw shape_error(einlm::detail::concat(who, ": sequence ", b, ": ", n, " new tokens after the cache's ",
                                              r.lengths[b], " exceed context_length ", cache.capacity()));
    r.offsets[b + 1] = r.offsets[b] + n;
    if (n > 0) {
      r.last_rows.push_back(r.offsets[b + 1] - 1);
      r.last_sequence.push_back(static_cast<index_t>(b));
    }
  }
  const index_t N = r.size();
  r.ids = tensor<std::int64_t, dims<2>>(1, N);          // (1, N)
  r.positions = tensor<std::int64_t, dims<1>>(N);       // (N,)
  for (std::size_t b = 0; b < new_tokens.size(); ++b)
    for (index_t j = 0; j < r.offsets[b + 1] - r.offsets[b]; ++j) {
      const std::int64_t id = new_tokens[b][static_cast<std::size_t>(j)];
      if (id < 0 || id >= vocab)
        throw value_error(einlm::detail::concat(who, ": token id ", id, " at (", b, ", ", j,
                                                ") is outside the vocabulary [0, ", vocab, ")"));
      r.ids(0, r.offsets[b] + j) = id;
      r.positions(r.offsets[b] + j) = r.lengths[b] + j;
    }
  return r;
}

/// Adds each sequence's new positions of `r` to the cache's lengths (after the pass).
template <class Storage>
void advance(basic_kv_cache<Storage>& cache, const ragged_batch& r) {
  std::vector<index_t> grown = r.lengths;
  for (std::size_t b = 0; b < grown.size(); ++b) grown[b] += r.offsets[b + 1] - r.offsets[b];
  cache.set_lengths(std::move(grown));
}

/// Rows `rows` of x (1, N, W), in that order: (1, R, W).
template <class T>
tensor<T, dims<3>> select_rows(const tensor<T, dims<3>>& x, std::span<const index_t> rows) {
  const index_t W = x.extent(2);
  tensor<T, dims<3>> out(1, static_cast<index_t>(rows.size()), W);  // (1, R, W)
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const T* row = x.data() + rows[r] * W;
    std::copy(row, row + W, out.data() + static_cast<index_t>(r) * W);
  }
  return out;
}

/// (B, V): row b holds the logits of sequence b's last new position — row r of `last` (1, R, V)
/// for r-th sequence with new tokens — and zeros for a sequence without any.
template <class T>
tensor<T, dims<2>> scatter_last(const tensor<T, dims<3>>& last, const ragged_batch& r) {
  const index_t V = last.extent(2);
  auto out = zeros<T>(static_cast<index_t>(r.lengths.size()), V);  // (B, V)
  for (std::size_t i = 0; i < r.last_sequence.size(); ++i)
    std::copy(last.data() + static_cast<index_t>(i) * V, last.data() + static_cast<index_t>(i + 1) * V,
              out.data() + r.last_sequence[i] * V);
  return out;
}

/// Copies every tensor that visit_from(f) hands to f(name, tensor) into the tensor visit_to(f)
/// hands at the same place (two models of one shape: the same names in the same order), converted
/// from U by convert<T>; another name or size at a place is a shape_error naming the tensor and
/// `who`.
template <class U, class T, class VisitFrom, class VisitTo>
void convert_tensors(VisitFrom&& visit_from, VisitTo&& visit_to, const char* who) {
  struct source {
    std::string name;
    const U* data;
    index_t size;
  };
  std::vector<source> sources;
  auto collect = [&](const std::string& name, const auto& t) { sources.push_back({name, t.data(), t.size()}); };
  visit_from(collect);
  std::size_t i = 0;
  auto convert_one = [&](const std::string& name, auto& t) {
    if (i >= sources.size() || sources[i].name != name || sources[i].size != t.size())
      throw shape_error(einlm::detail::concat(who, ": the models differ in shape at '", name, "'"));
    const U* src = sources[i++].data;
    T* dst = t.data();
    const index_t n = t.size();
#if EINLM_HAS_OPENMP
#pragma omp parallel for schedule(static) if (n >= (index_t{1} << 16))
#endif
    for (index_t j = 0; j < n; ++j) dst[j] = convert<T>(src[j]);
  };
  visit_to(convert_one);
  if (i != sources.size())
    throw shape_error(einlm::detail::concat(who, ": the models differ in their number of tensors"));
}

/// Runs f(b) for every sequence b, one sequence per OpenMP thread when there are several and enough
/// work (the einsums inside then run on that thread: BLAS and the executor do not nest). Each f(b)
/// writes only sequence b's own outputs, so the results do not depend on the threads.
template <class F>
void for_each_sequence(index_t sequences, index_t work, F&& f) {
#if EINLM_HAS_OPENMP
  if (sequences > 1 && work >= (index_t{1} << 14)) {
#pragma omp parallel for schedule(dynamic, 1)
    for (index_t b = 0; b < sequences; ++b) f(b);
    return;
  }
#endif
  for (index_t b = 0; b < sequences; ++b) f(b);
}

/// Ragged cached attention (see attention_kv): q (1, H, N, Dh), k and v (1, K, N, Dh) of the
/// packed new positions, roped at their own positions. Writes each sequence's keys and values into
/// its cache row and returns the attention output (1, H, N, Dh), one attention_forward per
/// sequence over that sequence's cached positions and its new ones (the sequences in parallel: a
/// decode step has one small attention per sequence, which would not be worth its own threads).
template <class T>
tensor<T, dims<4>> ragged_cached_attention(const tensor<T, dims<4>>& q, const tensor<T, dims<4>>& k,
                                           const tensor<T, dims<4>>& v, const attention_kv<T>& kv) {
  const index_t H = q.extent(1), N = q.extent(2), Dh = q.extent(3);
  const auto B = static_cast<index_t>(kv.lengths.size());
  tensor<T, dims<4>> o(1, H, N, Dh);  // (1, H, N, Dh)
  index_t work = 0;                   // multiply-adds of the scores, over all sequences
  for (std::size_t b = 0; b < kv.lengths.size(); ++b) {
    const index_t n = kv.offsets[b + 1] - kv.offsets[b];
    work += H * n * (kv.lengths[b] + n) * Dh;
  }
  for_each_sequence(B, work, [&](index_t b) {
    const auto ub = static_cast<std::size_t>(b);
    const index_t first = kv.offsets[ub], n = kv.offsets[ub + 1] - first, p0 = kv.lengths[ub];
    if (n == 0) return;
    const range rows{first, first + n}, fresh{p0, p0 + n}, seen{0, p0 + n}, row{b, b + 1};
    assign(slice(*kv.k, row, full_extent, fresh, full_extent),
           slice(k, full_extent, full_extent, rows, full_extent));  // (1, K, n, Dh)
    assign(slice(*kv.v, row, full_extent, fresh, full_extent),
           slice(v, full_extent, full_extent, rows, full_extent));  // (1, K, n, Dh)
    const auto q_b = slice(q, full_extent, full_extent, rows, full_extent);        // (1, H, n, Dh)
    const auto k_all = slice(*kv.k, row, full_extent, seen, full_extent);          // (1, K, p0 + n, Dh)
    const auto v_all = slice(*kv.v, row, full_extent, seen, full_extent);          // (1, K, p0 + n, Dh)
    const auto o_b = attention_forward(q_b, k_all, v_all, /*causal=*/true).out;    // (1, H, n, Dh)
    assign(slice(o, full_extent, full_extent, rows, full_extent), o_b);
  });
  return o;
}

/// Causal self-attention of a (B, S, D) at `positions` (S,) — with a ragged cache, of the packed
/// (1, N, D) at positions (N,): projections, heads split, optional per-head RMSNorm of q and k,
/// RoPE, attention_forward, heads merged, output projection.
/// (attention_layer_forward stores its input `a` in *keep; this part does everything else.)
template <class T>
tensor<T, dims<3>> attention_layer_forward_body(const attention_weights<T>& w, const attention_spec& s,
                                                const tensor<T, dims<3>>& a,
                                                const tensor<std::int64_t, dims<1>>& positions,
                                                attention_cache<T>* keep, attention_kv<T> kv) {
  if (keep && !kv.offsets.empty())
    throw value_error("einlm::nn attention: a ragged KV cache is for inference; nothing is kept for backward");
  const index_t H = s.heads, K = s.kv_heads;
  const auto q_flat = linear_forward(a, w.q_proj, &w.q_bias);  // (B, S, H·Dh)
  const auto k_flat = linear_forward(a, w.k_proj, &w.k_bias);  // (B, S, K·Dh)
  const auto v_flat = linear_forward(a, w.v_proj, &w.v_bias);  // (B, S, K·Dh)
  const auto q_heads = rearrange<"b s (h e) -> b h s e">(q_flat, axis_size<"h">{H});  // (B, H, S, Dh) view
  const auto k_heads = rearrange<"b s (h e) -> b h s e">(k_flat, axis_size<"h">{K});  // (B, K, S, Dh) view
  tensor<T, dims<4>> v =
      rearrange<"b s (h e) -> b h s e">(v_flat, axis_size<"h">{K});  // (B, K, S, Dh)
  // Without QK-norm, RoPE reads the heads straight from the projections (one pass each).
  const bool rope_from_projections = s.theta > 0 && !s.qk_norm;
  tensor<T, dims<4>> q = rope_from_projections ? nn::rope(q_heads, positions, s.theta)
                                               : tensor<T, dims<4>>(q_heads);  // (B, H, S, Dh)
  tensor<T, dims<4>> k = rope_from_projections ? nn::rope(k_heads, positions, s.theta)
                                               : tensor<T, dims<4>>(k_heads);  // (B, K, S, Dh)
  if (s.qk_norm) {
    tensor<T, dims<4>> qn = nn::rms_norm(q, w.q_norm, s.eps);  // (B, H, S, Dh)
    tensor<T, dims<4>> kn = nn::rms_norm(k, w.k_norm, s.eps);  // (B, K, S, Dh)
    if (keep) {
      keep->q_raw = std::move(q);
      keep->k_raw = std::move(k);
    }
    q = std::move(qn);
    k = std::move(kn);
  }
  if (s.theta > 0 && !rope_from_projections) {
    q = nn::rope(q, positions, s.theta);  // (B, H, S, Dh)
    k = nn::rope(k, positions, s.theta);  // (B, K, S, Dh)
  }
  if (kv.k && !kv.offsets.empty()) {  // ragged decoding (inference only: checked above)
    const auto o = ragged_cached_attention(q, k, v, kv);                // (1, H, N, Dh)
    const auto o_merged = merge_heads<T>(o);                            // (1, N, H·Dh)
    return linear_forward(o_merged, w.output_proj, &w.output_bias);     // (1, N, D)
  }
  auto [o, lse] = [&] {
    if (!kv.k) return attention_forward(q, k, v, /*causal=*/true);  // (B, H, S, Dh), (B, H, S)
    const index_t S = a.extent(1);
    const range fresh{kv.p0, kv.p0 + S}, seen{0, kv.p0 + S};
    assign(slice(*kv.k, full_extent, full_extent, fresh, full_extent), k);
    assign(slice(*kv.v, full_extent, full_extent, fresh, full_extent), v);
    const auto k_all =
        slice(*kv.k, full_extent, full_extent, seen, full_extent);  // (B, K, p0 + S, Dh)
    const auto v_all =
        slice(*kv.v, full_extent, full_extent, seen, full_extent);  // (B, K, p0 + S, Dh)
    return attention_forward(q, k_all, v_all, /*causal=*/true);     // (B, H, S, Dh), (B, H, S)
  }();
  auto o_merged = merge_heads<T>(o);                                   // (B, S, H·Dh)
  auto out = linear_forward(o_merged, w.output_proj, &w.output_bias);  // (B, S, D)
  if (keep) {
    keep->q = std::move(q);
    keep->k = std::move(k);
    keep->v = std::move(v);
    keep->lse = std::move(lse);
    keep->o_merged = std::move(o_merged);
  }
  return out;
}

template <class T>
tensor<T, dims<3>> attention_layer_forward(const attention_weights<T>& w, const attention_spec& s,
                                           const tensor<T, dims<3>>& a,
                                           const tensor<std::int64_t, dims<1>>& positions,
                                           attention_cache<T>* keep, attention_kv<T> kv = {}) {
  auto out = attention_layer_forward_body(w, s, a, positions, keep, kv);  // (B, S, D)
  if (keep) keep->a = a.clone();                                          // (B, S, D)
  return out;
}
/// The same for an input the caller gives away: kept without a copy.
template <class T>
tensor<T, dims<3>> attention_layer_forward(const attention_weights<T>& w, const attention_spec& s,
                                           tensor<T, dims<3>>&& a,
                                           const tensor<std::int64_t, dims<1>>& positions,
                                           attention_cache<T>* keep, attention_kv<T> kv = {}) {
  auto out = attention_layer_forward_body(w, s, a, positions, keep, kv);  // (B, S, D)
  if (keep) keep->a = std::move(a);                                       // (B, S, D)
  return out;
}

/// The adjoint of attention_layer_forward: accumulates the weights' gradients into g, returns da.
template <class T>
tensor<T, dims<3>> attention_layer_backward(const attention_weights<T>& w, attention_weights<T>& g,
                                            const attention_spec& s, const attention_cache<T>& c,
                                            const tensor<std::int64_t, dims<1>>& positions,
                                            const tensor<T, dims<3>>& dy) {
  const index_t H = s.heads;
  const auto do_merged = linear_backward(c.o_merged, w.output_proj, dy, g.output_proj,
                                         &g.output_bias);  // (B, S, H·Dh)
  const tensor<T, dims<4>> d_o =
      rearrange<"b s (h e) -> b h s e">(do_merged, axis_size<"h">{H});  // (B, H, S, Dh)
  const auto o_heads =
      rearrange<"b s (h e) -> b h s e">(c.o_merged, axis_size<"h">{H});  // (B, H, S, Dh) view
  auto [dq, dk, dv] = attention_backward(c.q, c.k, c.v, o_heads, c.lse, d_o,
                                         /*causal=*/true);  // (B, H, S, Dh), (B, K, S, Dh) twice
  // Without QK-norm, RoPE's adjoint writes dq and dk with their heads merged (one pass each).
  tensor<T, dims<3>> dq_flat, dk_flat;  // (B, S, H·Dh), (B, S, K·Dh)
  if (s.theta > 0 && !s.qk_norm) {
    const auto merged_rope_backward = [&](const tensor<T, dims<4>>& d) {
      tensor<T, dims<3>> flat(d.extent(0), d.extent(2), d.extent(1) * d.extent(3));  // (B, S, heads·Dh)
      rope_backward_into(d, positions, s.theta,
                         rearrange<"b s (h e) -> b h s e">(flat, axis_size<"h">{d.extent(1)})
                             .to_view());  // (B, heads, S, Dh) view
      return flat;
    };
    dq_flat = merged_rope_backward(dq);  // (B, S, H·Dh)
    dk_flat = merged_rope_backward(dk);  // (B, S, K·Dh)
  } else {
    tensor<T, dims<4>> dq_pre =
        s.theta > 0 ? rope_backward(dq, positions, s.theta) : std::move(dq);  // (B, H, S, Dh)
    tensor<T, dims<4>> dk_pre =
        s.theta > 0 ? rope_backward(dk, positions, s.theta) : std::move(dk);  // (B, K, S, Dh)
    if (s.qk_norm) {
      auto [dq_raw, dgq] =
          rms_norm_backward(c.q_raw, w.q_norm, dq_pre, s.eps);  // (B, H, S, Dh), (Dh,)
      auto [dk_raw, dgk] =
          rms_norm_backward(c.k_raw, w.k_norm, dk_pre, s.eps);  // (B, K, S, Dh), (Dh,)
      accumulate(g.q_norm, dgq);                                // (Dh,)
      accumulate(g.k_norm, dgk);                                // (Dh,)
      dq_pre = std::move(dq_raw);
      dk_pre = std::move(dk_raw);
    }
    dq_flat = merge_heads<T>(dq_pre);  // (B, S, H·Dh)
    dk_flat = merge_heads<T>(dk_pre);  // (B, S, K·Dh)
  }
  const auto dv_flat = merge_heads<T>(dv);                                       // (B, S, K·Dh)
  auto da = linear_backward(c.a, w.q_proj, dq_flat, g.q_proj, &g.q_bias);        // (B, S, D)
  linear_backward_add(c.a, w.k_proj, dk_flat, g.k_proj, &g.k_bias, da);         // (B, S, D) added into da
  linear_backward_add(c.a, w.v_proj, dv_flat, g.v_proj, &g.v_bias, da);         // (B, S, D) added into da
  return da;
}

/// What a SwiGLU network keeps from its forward pass.
template <class T>
struct swiglu_cache {
  tensor<T, dims<3>> x;          // (B, S, D) input
  tensor<T, dims<3>> f1, f3, g;  // (B, S, F) w1 x, w3 x, silu(w1 x)·w3 x
};

/// (swiglu_forward stores its input `x` in *keep; this part does everything else.)
template <class T>
tensor<T, dims<3>> swiglu_forward_body(const swiglu_weights<T>& w, const tensor<T, dims<3>>& x,
                                       swiglu_cache<T>* keep) {
  auto f1 = linear_forward(x, w.w1, nullptr);   // (B, S, F)
  auto f3 = linear_forward(x, w.w3, nullptr);   // (B, S, F)
  tensor<T, dims<3>> g = swiglu_hidden(f1, f3);  // (B, S, F)
  auto out = linear_forward(g, w.w2, nullptr);  // (B, S, D)
  if (keep) {
    keep->f1 = std::move(f1);
    keep->f3 = std::move(f3);
    keep->g = std::move(g);
  }
  return out;
}
template <class T>
tensor<T, dims<3>> swiglu_forward(const swiglu_weights<T>& w, const tensor<T, dims<3>>& x,
                                  swiglu_cache<T>* keep) {
  auto out = swiglu_forward_body(w, x, keep);  // (B, S, D)
  if (keep) keep->x = x.clone();               // (B, S, D)
  return out;
}
/// The same for an input the caller gives away: kept without a copy.
template <class T>
tensor<T, dims<3>> swiglu_forward(const swiglu_weights<T>& w, tensor<T, dims<3>>&& x, swiglu_cache<T>* keep) {
  auto out = swiglu_forward_body(w, x, keep);  // (B, S, D)
  if (keep) keep->x = std::move(x);            // (B, S, D)
  return out;
}

template <class T>
tensor<T, dims<3>> swiglu_layer_backward(const swiglu_weights<T>& w, swiglu_weights<T>& gw,
                                         const swiglu_cache<T>& c, const tensor<T, dims<3>>& dy) {
  const auto dg = linear_backward(c.g, w.w2, dy, gw.w2, nullptr);   // (B, S, F)
  auto [df1, df3] = swiglu_backward(c.f1, c.f3, dg);                // (B, S, F) twice
  auto dx = linear_backward(c.x, w.w1, df1, gw.w1, nullptr);        // (B, S, D)
  linear_backward_add(c.x, w.w3, df3, gw.w3, nullptr, dx);          // (B, S, D) added into dx
  return dx;
}

}  // namespace detail

namespace blocks {

namespace detail {
struct kv_step;
}

/// Run-time settings of a forward or backward pass.
struct context {
  double norm_eps = 1e-5;           // every RMSNorm and LayerNorm (the qk-norm included)
  std::int64_t context_length = 0;  // a model's longest sequence (logits, KV cache); 0: none given
  detail::kv_step* kv = nullptr;    // set by blocks::model's cached passes (see detail::kv_step)
};

/// The input "width" of a block that reads token ids.
inline constexpr std::size_t token_ids = dyn - 1;

/// The weights (or gradients) and the kept activations of a block B in T.
template <class B, class T>
using params_t = typename B::template params<T>;
template <class B, class T>
using cache_t = typename B::template cache<T>;

/// What a block reading token ids returns as its input gradient.
struct no_gradient {};

namespace detail {

using einlm::nn::detail::accumulate;

/// Two widths that may meet: equal, or one of them known only at run time.
constexpr bool fits(std::size_t a, std::size_t b) {
  if (a == token_ids || b == token_ids) return a == b;
  return a == dyn || b == dyn || a == b;
}

/// Instantiated for each composed pair, so that a mismatch names both widths.
template <std::size_t Out, std::size_t In>
constexpr bool check_widths() {
  static_assert(fits(Out, In),
                "einlm::nn::blocks: a block's output width (Out) differs from the width the next "
                "block reads (In)");
  return true;
}

/// A run-time dimension: `given` when the static one is dyn, else both must agree.
constexpr index_t dim(std::size_t fixed, std::int64_t given, const char* block, const char* what) {
  if (given <= 0)
    throw config_error(einlm::detail::concat(block, ": ", what, " must be positive, got ", given));
  if (fixed != dyn && static_cast<std::int64_t>(fixed) != given)
    throw config_error(einlm::detail::concat(block, ": ", what, " is ", fixed, " in the type but ",
                                             given, " at construction"));
  return static_cast<index_t>(given);
}

inline void require_width(const char* block, index_t expected, index_t got) {
  if (expected != got)
    throw shape_error(einlm::detail::concat(block, ": the input has ", got,
                                            " features, the block reads ", expected));
}

inline void require_fit(const char* combinator, index_t out, index_t in) {
  if (out != in)
    throw config_error(einlm::detail::concat(combinator, ": a block's output width (", out,
                                             ") differs from the width the next block reads (", in,
                                             ")"));
}

constexpr std::size_t static_or(std::size_t d, std::size_t f) { return d == dyn ? dyn : f; }

/// What a cached pass of blocks::model gives its attention layers through the context: the
/// sequences' new positions packed into one (1, N, ·) input, as nn::detail::attention_kv's ragged
/// form describes (each sequence's cached length and first packed row), the positions of the
/// packed rows, and the cache, a kv_cache<T> of the model's T. Each attention layer takes the next
/// layer of the cache in the order of the forward pass (allocating it on the first pass). When
/// only some rows' logits are wanted (last_logits), head_rows names them and the LM head
/// (lm_head, tied_lm) projects those rows only, returning (1, R, V).
struct kv_step {
  void* cache = nullptr;                    // kv_cache<T>*
  tensor<std::int64_t, dims<1>> positions;  // (N,)
  std::span<const index_t> lengths;         // (B,)
  std::span<const index_t> offsets;         // (B + 1,)
  std::size_t next_layer = 0;               // the cache layer of the next attention layer
  std::span<const index_t> head_rows;       // the rows whose logits are wanted; empty: all rows
};

}  // namespace detail

// ------------------------------------------------------------------------------------- leaves

/// Token embedding: ids (B, S) → rows (B, S, D) of a (V, D) table, named "weight".
template <std::size_t Vocab, std::size_t D>
struct embedding {
  static constexpr std::size_t in_width = token_ids, out_width = D, vocab_width = Vocab;
  index_t vocab = static_cast<index_t>(Vocab), d = static_cast<index_t>(D);

  constexpr embedding() requires(Vocab != dyn && D != dyn) = default;
  constexpr embedding(std::int64_t v, std::int64_t dm)
      : vocab(detail::dim(Vocab, v, "embedding", "vocab")),
        d(detail::dim(D, dm, "embedding", "d_model")) {}
  explicit constexpr embedding(const transformer_config& c) : embedding(c.vocab_size, c.d_model) {}
  constexpr index_t in_dim() const { return 0; }
  constexpr index_t out_dim() const { return d; }

  template <class T>
  struct params {
    tensor<T, dims<2>> weight;  // (V, D)
  };
  template <class T>
  struct cache {
    std::vector<std::int64_t> ids;  // B·S token ids
  };
  template <class T>
  params<T> make_params() const {
    return {nn::detail::zeros<T>(vocab, d)};  // (V, D)
  }
  template <class P, class F>
  void visit(P& p, const std::string& prefix, F& f) const {
    f(prefix + "weight", p.weight);
  }
  template <class T, class I>
  tensor<T, dims<3>> forward(const params<T>& p, const I& tokens, std::type_identity_t<cache<T>>* c,
                             const context&) const {
    std::vector<std::int64_t> ids;
    auto x = nn::detail::embedding_gather(p.weight, tokens, ids, "embedding");  // (B, S, D)
    if (c) c->ids = std::move(ids);
    return x;
  }
  template <class T>
  no_gradient backward(const params<T>&, params<T>& g, cache<T>& c, const tensor<T, dims<3>>& dy,
                       const context&) const {
    nn::detail::embedding_scatter(g.weight, c.ids, dy);
    return {};
  }
  constexpr std::int64_t param_count() const { return vocab * d; }
  constexpr double forward_flops(std::int64_t, std::int64_t) const { return 0; }
  constexpr std::int64_t activation_elements(std::int64_t, std::int64_t) const { return 0; }
  constexpr std::int64_t activation_bytes(std::int64_t b, std::int64_t s,
                                          std::int64_t bytes = 4) const {
    return activation_elements(b, s) * bytes;
  }
};

/// Learned absolute positions (GPT-2's wpe): (B, S, D) → x + P[position], with P a (Positions, D)
/// table named "weight". A plain pass puts row s at position s; a cached pass (the context's
/// kv_step) puts each packed row at its sequence's own position, so the KV cache works as with
/// rotary embeddings. A position past the table is a value_error naming it. From a
/// transformer_config: context_length positions of d_model, and the configuration must ask for
/// learned positions.
template <std::size_t Positions, std::size_t D>
struct learned_positions {
  static constexpr std::size_t in_width = D, out_width = D;
  index_t positions = static_cast<index_t>(Positions), d = static_cast<index_t>(D);

  constexpr learned_positions() requires(Positions != dyn && D != dyn) = default;
  constexpr learned_positions(std::int64_t p, std::int64_t dm)
      : positions(detail::dim(Positions, p, "learned_positions", "positions")),
        d(detail::dim(D, dm, "learned_positions", "d_model")) {}
  explicit constexpr learned_positions(const transformer_config& c)
      : learned_positions(c.context_length, c.d_model) {
    if (c.positions != position_kind::learned)
      throw config_error(
          "learned_positions: the configuration's positions are rotary; the type adds a learned "
          "table");
  }
  constexpr index_t in_dim() const { return d; }
  constexpr index_t out_dim() const { return d; }

  template <class T>
  struct params {
    tensor<T, dims<2>> weight;  // (P, D)
  };
  template <class T>
  struct cache {
    std::vector<std::int64_t> rows;  // B·S: the table row added to each input row
  };
  template <class T>
  params<T> make_params() const {
    return {nn::detail::zeros<T>(positions, d)};  // (P, D)
  }
  template <class P, class F>
  void visit(P& p, const std::string& prefix, F& f) const {
    f(prefix + "weight", p.weight);
  }
  template <class T>
  tensor<T, dims<3>> forward(const params<T>& p, const tensor<T, dims<3>>& x,
                             std::type_identity_t<cache<T>>* c, const context& ctx) const {
    detail::require_width("learned_positions", d, x.extent(2));
    const index_t B = x.extent(0), S = x.extent(1);
    std::vector<std::int64_t> rows(static_cast<std::size_t>(B * S));
    for (index_t b = 0; b < B; ++b)
      for (index_t s = 0; s < S; ++s) {
        const std::int64_t at = ctx.kv ? ctx.kv->positions(s) : s;  // cached: (1, N) packed rows
        if (at >= positions)
          throw value_error(einlm::detail::concat("learned_positions: position ", at, " of row (", b,
                                                  ", ", s, ") is past the table's ", positions,
                                                  " positions"));
        rows[static_cast<std::size_t>(b * S + s)] = at;
      }
    using A = accumulator_t<T>;
    tensor<T, dims<3>> y(B, S, d);  // (B, S, D)
    const T* in = x.data();
    T* out = y.data();
    for (std::size_t r = 0; r < rows.size(); ++r) {
      const T* row = p.weight.data() + rows[r] * d;
      for (index_t j = 0; j < d; ++j)
        out[static_cast<index_t>(r) * d + j] =
            static_cast<T>(static_cast<A>(in[static_cast<index_t>(r) * d + j]) + static_cast<A>(row[j]));
    }
    if (c) c->rows = std::move(rows);
    return y;
  }
  /// The table's gradient: each row's dy added to its position's row (summed over the batch, as
  /// the embedding's scatter does); d(input) is dy.
  template <class T>
  tensor<T, dims<3>> backward(const params<T>&, params<T>& g, cache<T>& c,
                              const tensor<T, dims<3>>& dy, const context&) const {
    nn::detail::embedding_scatter(g.weight, c.rows, dy);
    return dy.clone();  // (B, S, D)
  }
  constexpr std::int64_t param_count() const { return positions * d; }
  constexpr double forward_flops(std::int64_t, std::int64_t) const { return 0; }
  constexpr std::int64_t activation_elements(std::int64_t, std::int64_t) const { return 0; }
  constexpr std::int64_t activation_bytes(std::int64_t b, std::int64_t s,
                                          std::int64_t bytes = 4) const {
    return activation_elements(b, s) * bytes;
  }
};

/// y = x Wᵀ (+ b): W (Out, In) named "weight", b (Out,) named "bias".
template <std::size_t In, std::size_t Out, bool Bias = false>
struct linear {
  static constexpr std::size_t in_width = In, out_width = Out;
  index_t in = static_cast<index_t>(In), out = static_cast<index_t>(Out);

  constexpr linear() requires(In != dyn && Out != dyn) = default;
  constexpr linear(std::int64_t i, std::int64_t o)
      : in(detail::dim(In, i, "linear", "in")), out(detail::dim(Out, o, "linear", "out")) {}
  constexpr index_t in_dim() const { return in; }
  constexpr index_t out_dim() const { return out; }

  template <class T>
  struct params {
    tensor<T, dims<2>> weight;  // (Out, In)
    tensor<T, dims<1>> bias;    // (Out,) when Bias
  };
  template <class T>
  struct cache {
    tensor<T, dims<3>> x;  // (B, S, In)
  };
  template <class T>
  params<T> make_params() const {
    return {nn::detail::zeros<T>(out, in),
            nn::detail::zeros<T>(Bias ? out : 0)};  // (Out, In), (Out,) or (0,)
  }
  template <class P, class F>
  void visit(P& p, const std::string& prefix, F& f) const {
    f(prefix + "weight", p.weight);
    if constexpr (Bias) f(prefix + "bias", p.bias);
  }
  template <class T>
  tensor<T, dims<3>> forward(const params<T>& p, const tensor<T, dims<3>>& x,
                             std::type_identity_t<cache<T>>* c, const context&) const {
    detail::require_width("linear", in, x.extent(2));
    if (c) c->x = x.clone();                                  // (B, S, In)
    return nn::detail::linear_forward(x, p.weight, &p.bias);  // (B, S, Out)
  }
  /// The same, taking x over: it becomes the kept input, with no copy.
  template <class T>
  tensor<T, dims<3>> forward(const params<T>& p, tensor<T, dims<3>>&& x, std::type_identity_t<cache<T>>* c,
                             const context&) const {
    detail::require_width("linear", in, x.extent(2));
    auto y = nn::detail::linear_forward(x, p.weight, &p.bias);  // (B, S, Out)
    if (c) c->x = std::move(x);                                 // (B, S, In)
    return y;
  }
  template <class T>
  tensor<T, dims<3>> backward(const params<T>& p, params<T>& g, cache<T>& c,
                              const tensor<T, dims<3>>& dy, const context&) const {
    return nn::detail::linear_backward(c.x, p.weight, dy, g.weight, &g.bias);  // (B, S, In)
  }
  /// The same, taking dy over: dy and the cached input are released once dW and dx are computed
  /// (an LM head's dy is the logits' gradient, the largest array of a step).
  template <class T>
  tensor<T, dims<3>> backward(const params<T>& p, params<T>& g, cache<T>& c, tensor<T, dims<3>>&& dy,
                              const context& ctx) const {
    auto dx = backward(p, g, c, std::as_const(dy), ctx);  // (B, S, In)
    dy = {};
    c.x = {};
    return dx;
  }
  constexpr std::int64_t param_count() const { return in * out + (Bias ? out : 0); }
  constexpr double forward_flops(std::int64_t b, std::int64_t s) const {
    return 2.0 * double(b) * double(s) * double(in) * double(out);
  }
  constexpr std::int64_t activation_elements(std::int64_t b, std::int64_t s) const {
    return b * s * in;
  }
  constexpr std::int64_t activation_bytes(std::int64_t b, std::int64_t s,
                                          std::int64_t bytes = 4) const {
    return activation_elements(b, s) * bytes;
  }
};

/// The LM head: logits = x Wᵀ, W (Vocab, D) named "weight". It also counts the logits it returns
/// among the activations (the loss reads them). Its weight is its own (tied_lm ties the head to
/// the token embedding instead).
template <std::size_t D, std::size_t Vocab>
struct lm_head : linear<D, Vocab, false> {
  using base = linear<D, Vocab, false>;
  using base::base;
  constexpr lm_head() requires(D != dyn && Vocab != dyn) = default;
  /// From the configuration, whose embeddings must not be tied.
  explicit constexpr lm_head(const transformer_config& c) : base(c.d_model, c.vocab_size) {
    if (c.tied_embeddings)
      throw config_error(
          "lm_head: the configuration ties the embeddings; the type has an lm_head of its own "
          "(give cs336_lm the tied_embeddings option)");
  }
  /// linear's, except in a cached pass that names its head_rows: then only those rows of x
  /// (1, N, D) are projected, (1, R, Vocab).
  template <class T>
  tensor<T, dims<3>> forward(const typename base::template params<T>& p, const tensor<T, dims<3>>& x,
                             std::type_identity_t<typename base::template cache<T>>* c,
                             const context& ctx) const {
    if (ctx.kv && !ctx.kv->head_rows.empty())
      return base::forward(p, nn::detail::select_rows(x, ctx.kv->head_rows), c, ctx);  // (1, R, V)
    return base::forward(p, x, c, ctx);  // (B, S, V)
  }
  constexpr std::int64_t activation_elements(std::int64_t b, std::int64_t s) const {
    return b * s * (this->in + this->out);
  }
  constexpr std::int64_t activation_bytes(std::int64_t b, std::int64_t s,
                                          std::int64_t bytes = 4) const {
    return activation_elements(b, s) * bytes;
  }
};

namespace detail {

/// What the two norms share: a width D, a gain (and a bias), the input kept for backward.
template <std::size_t D, bool HasBias>
struct norm_base {
  static constexpr std::size_t in_width = D, out_width = D;
  index_t d = static_cast<index_t>(D);

  constexpr norm_base() requires(D != dyn) = default;
  explicit constexpr norm_base(std::int64_t dm) : d(dim(D, dm, "norm", "d_model")) {}
  explicit constexpr norm_base(const transformer_config& c) : norm_base(c.d_model) {}
  constexpr index_t in_dim() const { return d; }
  constexpr index_t out_dim() const { return d; }

  template <class T>
  struct params {
    tensor<T, dims<1>> weight;  // (D,) gain
    tensor<T, dims<1>> bias;    // (D,) LayerNorm only
  };
  template <class T>
  struct cache {
    tensor<T, dims<3>> x;  // (B, S, D)
  };
  template <class T>
  params<T> make_params() const {
    return {nn::detail::zeros<T>(d), nn::detail::zeros<T>(HasBias ? d : 0)};  // (D,), (D,) or (0,)
  }
  template <class P, class F>
  void visit(P& p, const std::string& prefix, F& f) const {
    f(prefix + "weight", p.weight);
    if constexpr (HasBias) f(prefix + "bias", p.bias);
  }
  constexpr std::int64_t param_count() const { return HasBias ? 2 * d : d; }
  constexpr double forward_flops(std::int64_t, std::int64_t) const { return 0; }
  constexpr std::int64_t activation_elements(std::int64_t b, std::int64_t s) const {
    return b * s * d;
  }
  constexpr std::int64_t activation_bytes(std::int64_t b, std::int64_t s,
                                          std::int64_t bytes = 4) const {
    return activation_elements(b, s) * bytes;
  }
};

}  // namespace detail

/// RMSNorm over the features, in fp32 or wider, eps from the context; gain named "weight".
template <std::size_t D>
struct rms_norm : detail::norm_base<D, false> {
  using detail::norm_base<D, false>::norm_base;
  template <class T>
  using params = typename detail::norm_base<D, false>::template params<T>;
  template <class T>
  using cache = typename detail::norm_base<D, false>::template cache<T>;
  template <class T>
  tensor<T, dims<3>> forward(const params<T>& p, const tensor<T, dims<3>>& x,
                             std::type_identity_t<cache<T>>* c, const context& ctx) const {
    detail::require_width("rms_norm", this->d, x.extent(2));
    if (c) c->x = x.clone();                         // (B, S, D)
    return nn::rms_norm(x, p.weight, ctx.norm_eps);  // (B, S, D)
  }
  template <class T>
  tensor<T, dims<3>> backward(const params<T>& p, std::type_identity_t<params<T>>& g,
                              std::type_identity_t<cache<T>>& c, const tensor<T, dims<3>>& dy,
                              const context& ctx) const {
    auto [dx, dgain] = rms_norm_backward(c.x, p.weight, dy, ctx.norm_eps);  // (B, S, D), (D,)
    detail::accumulate(g.weight, dgain);                                    // (D,)
    return std::move(dx);
  }
};

/// LayerNorm over the features (gain "weight", bias "bias"), in fp32 or wider, eps from the
/// context.
template <std::size_t D>
struct layer_norm : detail::norm_base<D, true> {
  using detail::norm_base<D, true>::norm_base;
  template <class T>
  using params = typename detail::norm_base<D, true>::template params<T>;
  template <class T>
  using cache = typename detail::norm_base<D, true>::template cache<T>;
  template <class T>
  tensor<T, dims<3>> forward(const params<T>& p, const tensor<T, dims<3>>& x,
                             std::type_identity_t<cache<T>>* c, const context& ctx) const {
    detail::require_width("layer_norm", this->d, x.extent(2));
    if (c) c->x = x.clone();                                   // (B, S, D)
    return nn::layer_norm(x, p.weight, p.bias, ctx.norm_eps);  // (B, S, D)
  }
  template <class T>
  tensor<T, dims<3>> backward(const params<T>& p, std::type_identity_t<params<T>>& g,
                              std::type_identity_t<cache<T>>& c, const tensor<T, dims<3>>& dy,
                              const context& ctx) const {
    auto [dx, dgain, dbias] =
        layer_norm_backward(c.x, p.weight, dy, ctx.norm_eps);  // (B, S, D), (D,) twice
    detail::accumulate(g.weight, dgain);                       // (D,)
    detail::accumulate(g.bias, dbias);                         // (D,)
    return std::move(dx);
  }
};

namespace detail {

struct silu_fn {
  static constexpr const char* name = "silu";
  template <class X>
  static auto apply(const X& x) {
    return einlm::silu(x);
  }
  template <class X, class DY>
  static auto gradient(const X& x, const DY& dy) {
    using T = typename X::value_type;
    const auto s = sigmoid(x);                      // (B, S, F)
    return eval(dy * s * (T(1) + x * (T(1) - s)));  // (B, S, F)
  }
};
struct gelu_fn {
  static constexpr const char* name = "gelu";
  template <class X>
  static auto apply(const X& x) {
    return nn::detail::gelu_tensor(x);  // (B, S, F)
  }
  template <class X, class DY>
  static auto gradient(const X& x, const DY& dy) {
    return gelu_backward(x, dy);
  }  // (B, S, F)
};
struct relu_fn {
  static constexpr const char* name = "relu";
  template <class X>
  static auto apply(const X& x) {
    return einlm::relu(x);
  }
  template <class X, class DY>
  static auto gradient(const X& x, const DY& dy) {
    return relu_backward(x, dy);
  }  // (B, S, F)
};

/// An element-wise activation of any width; it keeps its input.
template <class Fn>
struct activation {
  static constexpr std::size_t in_width = dyn, out_width = dyn;
  constexpr activation() = default;
  explicit constexpr activation(const transformer_config&) {}
  constexpr index_t in_dim() const { return 0; }  // 0: any width
  constexpr index_t out_dim() const { return 0; }
  template <class T>
  struct params {};
  template <class T>
  struct cache {
    tensor<T, dims<3>> x;  // (B, S, F)
  };
  template <class T>
  params<T> make_params() const {
    return {};
  }
  template <class P, class F>
  void visit(P&, const std::string&, F&) const {}
  template <class T>
  tensor<T, dims<3>> forward(const params<T>&, const tensor<T, dims<3>>& x,
                             std::type_identity_t<cache<T>>* c, const context&) const {
    if (c) c->x = x.clone();  // (B, S, F)
    return Fn::apply(x);      // (B, S, F)
  }
  /// The same, taking x over: it becomes the kept input, with no copy.
  template <class T>
  tensor<T, dims<3>> forward(const params<T>&, tensor<T, dims<3>>&& x, std::type_identity_t<cache<T>>* c,
                             const context&) const {
    tensor<T, dims<3>> y = Fn::apply(x);  // (B, S, F)
    if (c) c->x = std::move(x);           // (B, S, F)
    return y;
  }
  template <class T>
  tensor<T, dims<3>> backward(const params<T>&, params<T>&, cache<T>& c,
                              const tensor<T, dims<3>>& dy, const context&) const {
    return Fn::gradient(c.x, dy);  // (B, S, F)
  }
  constexpr std::int64_t param_count() const { return 0; }
  constexpr double forward_flops(std::int64_t, std::int64_t) const { return 0; }
  /// Its kept input has a width it does not know: 0 here, counted by the enclosing block where that
  /// one knows it (gelu_mlp does).
  constexpr std::int64_t activation_elements(std::int64_t, std::int64_t) const { return 0; }
  constexpr std::int64_t activation_bytes(std::int64_t, std::int64_t, std::int64_t = 4) const {
    return 0;
  }
};

}  // namespace detail

/// Element-wise activations: silu(x) = x·σ(x), gelu (erf form), relu. They keep their input.
using silu = detail::activation<detail::silu_fn>;
using gelu = detail::activation<detail::gelu_fn>;
using relu = detail::activation<detail::relu_fn>;

/// SwiGLU's default hidden width: 8/3 · D rounded up to a multiple of 64 (dyn when D is).
constexpr std::size_t swiglu_width(std::size_t d) {
  return d == dyn ? dyn : static_cast<std::size_t>(default_d_ff(static_cast<std::int64_t>(d)));
}

/// SwiGLU feed-forward network w2(silu(w1 x) ⊙ w3 x): w1, w3 (Dff, D), w2 (D, Dff), named
/// "w1.weight", "w2.weight", "w3.weight".
template <std::size_t D, std::size_t Dff = swiglu_width(D)>
struct swiglu {
  static constexpr std::size_t in_width = D, out_width = D;
  index_t d = static_cast<index_t>(D), f = static_cast<index_t>(Dff);

  constexpr swiglu() requires(D != dyn && Dff != dyn) = default;
  constexpr swiglu(std::int64_t dm, std::int64_t ff)
      : d(detail::dim(D, dm, "swiglu", "d_model")), f(detail::dim(Dff, ff, "swiglu", "d_ff")) {}
  explicit constexpr swiglu(const transformer_config& c) : swiglu(c.d_model, c.ffn_dim()) {}
  constexpr index_t in_dim() const { return d; }
  constexpr index_t out_dim() const { return d; }

  template <class T>
  using params = nn::swiglu_weights<T>;
  template <class T>
  using cache = nn::detail::swiglu_cache<T>;
  template <class T>
  params<T> make_params() const {
    return {nn::detail::zeros<T>(f, d), nn::detail::zeros<T>(d, f),
            nn::detail::zeros<T>(f, d)};  // (F, D), (D, F), (F, D)
  }
  template <class P, class F>
  void visit(P& p, const std::string& prefix, F& fn) const {
    fn(prefix + "w1.weight", p.w1);
    fn(prefix + "w2.weight", p.w2);
    fn(prefix + "w3.weight", p.w3);
  }
  template <class T>
  tensor<T, dims<3>> forward(const params<T>& p, const tensor<T, dims<3>>& x,
                             std::type_identity_t<cache<T>>* c, const context&) const {
    detail::require_width("swiglu", d, x.extent(2));
    return nn::detail::swiglu_forward(p, x, c);  // (B, S, D)
  }
  template <class T>
  tensor<T, dims<3>> backward(const params<T>& p, std::type_identity_t<params<T>>& g,
                              std::type_identity_t<cache<T>>& c, const tensor<T, dims<3>>& dy,
                              const context&) const {
    return nn::detail::swiglu_layer_backward(p, g, c, dy);  // (B, S, D)
  }
  constexpr std::int64_t param_count() const { return 3 * d * f; }
  constexpr double forward_flops(std::int64_t b, std::int64_t s) const {
    return 3 * 2.0 * double(b) * double(s) * double(d) * double(f);
  }
  /// Its input, w1 x, w3 x and silu(w1 x)·w3 x.
  constexpr std::int64_t activation_elements(std::int64_t b, std::int64_t s) const {
    return b * s * (d + 3 * f);
  }
  constexpr std::int64_t activation_bytes(std::int64_t b, std::int64_t s,
                                          std::int64_t bytes = 4) const {
    return activation_elements(b, s) * bytes;
  }
};

// ------------------------------------------------------------------------------------ attention

/// Options of attention (and transformer_block), in any order.
struct attention_options {
  std::size_t heads = 0, kv_heads = 0;  // 0: not given (kv_heads: as many as heads)
  bool qk_norm = false, bias = false;
  std::size_t theta = 10'000;  // 0: no rotary embedding
  std::size_t d_ff = 0;        // transformer_block's SwiGLU width; 0: the default
  bool tied_embeddings = false;  // cs336_lm's LM head is its token embedding
};
/// H query heads (dyn: given at construction).
template <std::size_t H>
struct heads {
  static constexpr void apply(attention_options& o) { o.heads = H; }
};
/// K key/value heads sharing the queries: K = H multi-head, 1 multi-query, else grouped-query.
template <std::size_t K>
struct kv_heads {
  static constexpr void apply(attention_options& o) { o.kv_heads = K; }
};
/// Per-head RMSNorm of q and k before the rotary embedding (gains "q_norm.weight",
/// "k_norm.weight").
struct qk_norm {
  static constexpr void apply(attention_options& o) { o.qk_norm = true; }
};
/// Biases on the four projections (GPT-2): "q_proj.bias", ….
struct proj_bias {
  static constexpr void apply(attention_options& o) { o.bias = true; }
};
/// Rotary embedding with base Theta (an integer; the default is 10000). rope<0>: none.
template <std::size_t Theta>
struct rope {
  static constexpr void apply(attention_options& o) { o.theta = Theta; }
};
/// transformer_block's feed-forward width.
template <std::size_t F>
struct d_ff {
  static constexpr void apply(attention_options& o) { o.d_ff = F; }
};

/// cs336_lm's LM head is its token embedding (no lm_head.weight; see tied_lm).
struct tied_embeddings {
  static constexpr void apply(attention_options& o) { o.tied_embeddings = true; }
};

template <class... Options>
constexpr attention_options make_options() {
  attention_options o;
  (Options::apply(o), ...);
  if (o.kv_heads == 0) o.kv_heads = o.heads;
  return o;
}

/// Causal self-attention over D features with the given options (heads<H> required): q_proj
/// (H·Dh, D), k_proj and v_proj (K·Dh, D), output_proj (D, H·Dh), Dh = D / H, named
/// "q_proj.weight", "k_proj.weight", "v_proj.weight", "output_proj.weight" (+ ".bias",
/// "q_norm.weight", "k_norm.weight" with those options).
template <std::size_t D, class... Options>
struct attention {
  static constexpr attention_options options = make_options<Options...>();
  static constexpr std::size_t H = options.heads, K = options.kv_heads;
  static_assert(H != 0,
                "attention: give the number of heads, heads<H> (heads<dyn> for a run-time number)");
  static_assert(H == 0 || D == dyn || H == dyn || D % H == 0,
                "attention: d_model is not divisible by heads");
  static_assert(H == 0 || H == dyn || K == dyn || H % K == 0,
                "attention: heads is not divisible by kv_heads");
  static_assert(H == 0 || D == dyn || H == dyn || options.theta == 0 || (D / H) % 2 == 0,
                "attention: the head dimension is odd; RoPE rotates pairs");
  static constexpr std::size_t in_width = D, out_width = D;
  index_t d = static_cast<index_t>(D), h = static_cast<index_t>(H), k = static_cast<index_t>(K);
  double theta = static_cast<double>(options.theta);

  constexpr attention() requires(D != dyn && H != dyn && K != dyn) = default;
  constexpr attention(std::int64_t dm, std::int64_t nh, std::int64_t nkv)
      : d(detail::dim(D, dm, "attention", "d_model")),
        h(detail::dim(H, nh, "attention", "heads")),
        k(detail::dim(K, nkv, "attention", "kv_heads")) {
    if (d % h != 0)
      throw config_error(einlm::detail::concat("attention: d_model (", d,
                                               ") is not divisible by heads (", h, ")"));
    if (h % k != 0)
      throw config_error(einlm::detail::concat("attention: heads (", h,
                                               ") is not divisible by kv_heads (", k, ")"));
    if (theta > 0 && (d / h) % 2 != 0)
      throw config_error(einlm::detail::concat("attention: the head dimension ", d / h,
                                               " is odd; RoPE rotates pairs"));
  }
  /// From the configuration: its d_model, heads, kv heads (which must match the type) and
  /// rope_theta.
  explicit constexpr attention(const transformer_config& c)
      : attention(c.d_model, c.num_heads, c.kv_heads()) {
    if (c.qk_norm != options.qk_norm || c.linear_bias != options.bias)
      throw config_error(
          "attention: the configuration's qk_norm or linear_bias differs from the type's options");
    if (options.theta != 0) theta = c.rope_theta;
  }
  constexpr index_t in_dim() const { return d; }
  constexpr index_t out_dim() const { return d; }
  constexpr index_t head_dim() const { return d / h; }

  template <class T>
  using params = nn::attention_weights<T>;
  template <class T>
  using cache = nn::detail::attention_cache<T>;
  template <class T>
  params<T> make_params() const {
    const index_t dh = head_dim(), b = options.bias ? 1 : 0, n = options.qk_norm ? 1 : 0;
    return {nn::detail::zeros<T>(h * dh, d),
            nn::detail::zeros<T>(k * dh, d),  // (H·Dh, D), (K·Dh, D)
            nn::detail::zeros<T>(k * dh, d),
            nn::detail::zeros<T>(d, h * dh),  // (K·Dh, D), (D, H·Dh)
            nn::detail::zeros<T>(b * h * dh),
            nn::detail::zeros<T>(b * k * dh),  // biases or (0,)
            nn::detail::zeros<T>(b * k * dh),
            nn::detail::zeros<T>(b * d),  // biases or (0,)
            nn::detail::zeros<T>(n * dh),
            nn::detail::zeros<T>(n * dh)};  // qk-norm gains (Dh,) or (0,)
  }
  template <class P, class F>
  void visit(P& p, const std::string& prefix, F& f) const {
    f(prefix + "q_proj.weight", p.q_proj);
    if constexpr (options.bias) f(prefix + "q_proj.bias", p.q_bias);
    f(prefix + "k_proj.weight", p.k_proj);
    if constexpr (options.bias) f(prefix + "k_proj.bias", p.k_bias);
    f(prefix + "v_proj.weight", p.v_proj);
    if constexpr (options.bias) f(prefix + "v_proj.bias", p.v_bias);
    f(prefix + "output_proj.weight", p.output_proj);
    if constexpr (options.bias) f(prefix + "output_proj.bias", p.output_bias);
    if constexpr (options.qk_norm) {
      f(prefix + "q_norm.weight", p.q_norm);
      f(prefix + "k_norm.weight", p.k_norm);
    }
  }
  nn::detail::attention_spec spec(const context& ctx) const {
    return {h, k, options.qk_norm, theta, ctx.norm_eps};
  }
  static tensor<std::int64_t, dims<1>> positions(index_t S) {
    tensor<std::int64_t, dims<1>> p(S);  // (S,)
    for (index_t s = 0; s < S; ++s) p(s) = s;
    return p;
  }
  template <class T>
  tensor<T, dims<3>> forward(const params<T>& p, const tensor<T, dims<3>>& x,
                             std::type_identity_t<cache<T>>* c, const context& ctx) const {
    detail::require_width("attention", d, x.extent(2));
    if (ctx.kv) return cached_forward(p, x, c, *ctx.kv, ctx);  // (1, N, D)
    return nn::detail::attention_layer_forward(p, spec(ctx), x, positions(x.extent(1)),
                                               c);  // (B, S, D)
  }
  /// A cached pass (see detail::kv_step): x (1, N, D) packs the sequences' new positions; their
  /// keys and values go into this layer's row of the cache, allocated on the first pass.
  template <class T>
  tensor<T, dims<3>> cached_forward(const params<T>& p, const tensor<T, dims<3>>& x, cache<T>* c,
                                    detail::kv_step& step, const context& ctx) const {
    auto& kv = *static_cast<kv_cache<T>*>(step.cache);
    const std::size_t layer = step.next_layer++;
    if (layer == kv.k.size()) {
      kv.k.push_back(nn::detail::zeros<T>(kv.batch(), k, kv.capacity(), head_dim()));  // (B, K, C, Dh)
      kv.v.push_back(nn::detail::zeros<T>(kv.batch(), k, kv.capacity(), head_dim()));  // (B, K, C, Dh)
    } else if (layer > kv.k.size() || kv.k[layer].extent(1) != k ||
               kv.k[layer].extent(3) != head_dim()) {
      throw shape_error(einlm::detail::concat(
          "attention: the KV cache's layer ", layer, " was not made for this attention layer (",
          k, " key/value heads of ", head_dim(), ")"));
    }
    const nn::detail::attention_kv<T> rows{&kv.k[layer], &kv.v[layer], 0, step.lengths,
                                           step.offsets};
    return nn::detail::attention_layer_forward(p, spec(ctx), x, step.positions, c,
                                               rows);  // (1, N, D)
  }
  template <class T>
  tensor<T, dims<3>> backward(const params<T>& p, std::type_identity_t<params<T>>& g,
                              std::type_identity_t<cache<T>>& c, const tensor<T, dims<3>>& dy,
                              const context& ctx) const {
    return nn::detail::attention_layer_backward(p, g, spec(ctx), c, positions(dy.extent(1)),
                                                dy);  // (B, S, D)
  }
  constexpr std::int64_t kv_dim() const { return k * head_dim(); }
  constexpr std::int64_t param_count() const {
    return 2 * d * d + 2 * d * kv_dim() + (options.bias ? 2 * d + 2 * kv_dim() : 0) +
           (options.qk_norm ? 2 * head_dim() : 0);
  }
  /// The four projections and the two attention products over the full S × S square
  /// (nn/accounting.hpp's convention).
  constexpr double forward_flops(std::int64_t b, std::int64_t s) const {
    const double T = double(b) * double(s), D_ = double(d);
    return 2 * T * (2 * D_ * D_ + 2 * D_ * double(kv_dim())) + 2 * (2 * T * double(s) * D_);
  }
  /// Its input, q, k, v (after RoPE), q and k before the qk-norm, the merged output, and the row
  /// log-sum-exp of the scores (B·H·S).
  constexpr std::int64_t activation_elements(std::int64_t b, std::int64_t s) const {
    const std::int64_t per_token = d + d + 2 * kv_dim() + (options.qk_norm ? d + kv_dim() : 0) + d;
    return b * s * per_token + b * h * s;
  }
  constexpr std::int64_t activation_bytes(std::int64_t b, std::int64_t s,
                                          std::int64_t bytes = 4) const {
    return activation_elements(b, s) * bytes;
  }
};

// ---------------------------------------------------------------------------------- combinators

/// B with its weights' names prefixed by Name + ".".
template <fixed_string Name, class B>
struct named : B {
  using B::B;
  constexpr named() = default;
  constexpr named(const B& b) : B(b) {}
  template <class P, class F>
  void visit(P& p, const std::string& prefix, F& f) const {
    B::visit(p, prefix + std::string(Name.view()) + ".", f);
  }
};

/// Blocks applied one after the other; each one's output width must be the next one's input width.
template <class... Blocks>
struct sequential {
  static_assert(sizeof...(Blocks) > 0, "sequential: give at least one block");
  static constexpr std::size_t count = sizeof...(Blocks);
  static constexpr std::size_t ins[] = {Blocks::in_width...}, outs[] = {Blocks::out_width...};
  static constexpr bool widths_checked = [] {
    return [&]<std::size_t... I>(std::index_sequence<I...>) {
      return (detail::check_widths<outs[I], ins[I + 1]>() && ... && true);
    }
    (std::make_index_sequence<count - 1>{});
  }();
  static_assert(widths_checked,
                "sequential: a block's output width differs from the next block's input width");
  static constexpr std::size_t in_width = ins[0], out_width = outs[count - 1];
  std::tuple<Blocks...> blocks;

  constexpr sequential() = default;
  constexpr explicit sequential(Blocks... b) : blocks(std::move(b)...) { check(); }
  explicit constexpr sequential(const transformer_config& c) : blocks(Blocks(c)...) { check(); }
  constexpr index_t in_dim() const { return std::get<0>(blocks).in_dim(); }
  constexpr index_t out_dim() const { return std::get<count - 1>(blocks).out_dim(); }

  template <class T>
  struct params {
    std::tuple<params_t<Blocks, T>...> blocks;
  };
  template <class T>
  struct cache {
    std::tuple<cache_t<Blocks, T>...> blocks;
  };
  template <class T>
  params<T> make_params() const {
    return std::apply([](const auto&... b) { return params<T>{{b.template make_params<T>()...}}; },
                      blocks);
  }
  template <class P, class F>
  void visit(P& p, const std::string& prefix, F& f) const {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (std::get<I>(blocks).visit(std::get<I>(p.blocks), prefix, f), ...);
    }
    (std::make_index_sequence<count>{});
  }
  template <class T, class X>
  auto forward(const params<T>& p, X&& x, std::type_identity_t<cache<T>>* c, const context& ctx) const {
    return forward_from<0>(p, std::forward<X>(x), c, ctx);  // (B, S, out)
  }
  template <class T>
  auto backward(const params<T>& p, std::type_identity_t<params<T>>& g,
                std::type_identity_t<cache<T>>& c, const tensor<T, dims<3>>& dy,
                const context& ctx) const {
    return backward_from<count - 1>(p, g, c, dy, ctx);  // (B, S, in), or no_gradient for token ids
  }
  /// The same, taking dy over: the last block may release it once it is done with it.
  template <class T>
  auto backward(const params<T>& p, std::type_identity_t<params<T>>& g,
                std::type_identity_t<cache<T>>& c, tensor<T, dims<3>>&& dy, const context& ctx) const {
    return backward_from<count - 1>(p, g, c, std::move(dy), ctx);  // (B, S, in), or no_gradient
  }
  constexpr std::int64_t param_count() const {
    return std::apply([](const auto&... b) { return (b.param_count() + ...); }, blocks);
  }
  constexpr double forward_flops(std::int64_t bt, std::int64_t s) const {
    return std::apply([&](const auto&... b) { return (b.forward_flops(bt, s) + ...); }, blocks);
  }
  constexpr std::int64_t activation_elements(std::int64_t bt, std::int64_t s) const {
    return std::apply([&](const auto&... b) { return (b.activation_elements(bt, s) + ...); },
                      blocks);
  }
  constexpr std::int64_t activation_bytes(std::int64_t b, std::int64_t s,
                                          std::int64_t bytes = 4) const {
    return activation_elements(b, s) * bytes;
  }

 private:
  constexpr void check() const {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (check_pair(std::get<I>(blocks).out_dim(), std::get<I + 1>(blocks).in_dim()), ...);
    }
    (std::make_index_sequence<count - 1>{});
  }
  static constexpr void check_pair(index_t out, index_t in) {
    if (out != 0 && in != 0)
      detail::require_fit("sequential", out, in);  // 0: an activation, any width
  }
  /// Block I's forward, then those after it; each output goes on to the next block as an rvalue,
  /// so a block that keeps its input (linear, an activation) takes it over instead of copying it.
  template <std::size_t I, class T, class X>
  auto forward_from(const params<T>& p, X&& x, cache<T>* c, const context& ctx) const {
    auto y = std::get<I>(blocks).forward(std::get<I>(p.blocks), std::forward<X>(x),
                                         c ? &std::get<I>(c->blocks) : nullptr, ctx);  // (B, S, ·)
    if constexpr (I + 1 == count)
      return y;
    else
      return forward_from<I + 1>(p, std::move(y), c, ctx);  // (B, S, out)
  }
  /// Block I's backward, then those before it. When dy was handed over (an rvalue), so is each
  /// block's d(input) to the block before, and a block that can release it early does.
  template <std::size_t I, class T, class DY>
  auto backward_from(const params<T>& p, params<T>& g, cache<T>& c, DY&& dy, const context& ctx) const {
    auto dx = std::get<I>(blocks).backward(std::get<I>(p.blocks), std::get<I>(g.blocks),
                                           std::get<I>(c.blocks), std::forward<DY>(dy), ctx);  // (B, S, ·)
    if constexpr (I == 0)
      return dx;
    else if constexpr (std::is_lvalue_reference_v<DY>)
      return backward_from<I - 1>(p, g, c, std::as_const(dx), ctx);  // (B, S, in)
    else
      return backward_from<I - 1>(p, g, c, std::move(dx), ctx);  // (B, S, in)
  }
};

/// N copies of Block, each with its own weights, named "layers.{i}.". N may be dyn.
template <std::size_t N, class Block>
struct repeat {
  static_assert(detail::check_widths<Block::out_width, Block::in_width>(),
                "repeat: a block is fed its own output");
  static constexpr std::size_t in_width = Block::in_width, out_width = Block::out_width;
  index_t n = static_cast<index_t>(N);
  Block block;

  constexpr repeat() requires(N != dyn) = default;
  constexpr repeat(std::int64_t layers, Block b)
      : n(detail::dim(N, layers, "repeat", "num_layers")), block(std::move(b)) {
    detail::require_fit("repeat", block.out_dim(), block.in_dim());
  }
  explicit constexpr repeat(const transformer_config& c) : repeat(c.num_layers, Block(c)) {}
  constexpr index_t in_dim() const { return block.in_dim(); }
  constexpr index_t out_dim() const { return block.out_dim(); }

  template <class T>
  struct params {
    std::vector<params_t<Block, T>> layers;
  };
  template <class T>
  struct cache {
    std::vector<cache_t<Block, T>> layers;
  };
  template <class T>
  params<T> make_params() const {
    params<T> p;
    for (index_t i = 0; i < n; ++i) p.layers.push_back(block.template make_params<T>());
    return p;
  }
  template <class P, class F>
  void visit(P& p, const std::string& prefix, F& f) const {
    for (std::size_t i = 0; i < p.layers.size(); ++i)
      block.visit(p.layers[i], prefix + "layers." + std::to_string(i) + ".", f);
  }
  template <class T>
  tensor<T, dims<3>> forward(const params<T>& p, const tensor<T, dims<3>>& x,
                             std::type_identity_t<cache<T>>* c, const context& ctx) const {
    if (c) c->layers.resize(p.layers.size());
    tensor<T, dims<3>> y = x.clone();  // (B, S, D)
    for (std::size_t i = 0; i < p.layers.size(); ++i)
      y = block.forward(p.layers[i], y, c ? &c->layers[i] : nullptr, ctx);  // (B, S, D)
    return y;
  }
  template <class T>
  tensor<T, dims<3>> backward(const params<T>& p, std::type_identity_t<params<T>>& g,
                              std::type_identity_t<cache<T>>& c, const tensor<T, dims<3>>& dy,
                              const context& ctx) const {
    tensor<T, dims<3>> dx = dy.clone();  // (B, S, D)
    for (std::size_t i = p.layers.size(); i-- > 0;) {
      dx = block.backward(p.layers[i], g.layers[i], c.layers[i], dx, ctx);  // (B, S, D)
      c.layers[i] = {};  // release this layer's activations
    }
    return dx;
  }
  constexpr std::int64_t param_count() const { return n * block.param_count(); }
  constexpr double forward_flops(std::int64_t b, std::int64_t s) const {
    return double(n) * block.forward_flops(b, s);
  }
  constexpr std::int64_t activation_elements(std::int64_t b, std::int64_t s) const {
    return n * block.activation_elements(b, s);
  }
  constexpr std::int64_t activation_bytes(std::int64_t b, std::int64_t s,
                                          std::int64_t bytes = 4) const {
    return activation_elements(b, s) * bytes;
  }
};

namespace detail {

/// What the residual forms share: two blocks, their weights and caches side by side.
template <class A, class B>
struct pair_base {
  A first;
  B second;
  constexpr pair_base() = default;
  constexpr pair_base(A a, B b) : first(std::move(a)), second(std::move(b)) {}
  template <class T>
  struct params {
    params_t<A, T> first;
    params_t<B, T> second;
  };
  template <class T>
  struct cache {
    cache_t<A, T> first;
    cache_t<B, T> second;
  };
  template <class T>
  params<T> make_params() const {
    return {first.template make_params<T>(), second.template make_params<T>()};
  }
  template <class P, class F>
  void visit(P& p, const std::string& prefix, F& f) const {
    first.visit(p.first, prefix, f);
    second.visit(p.second, prefix, f);
  }
  constexpr std::int64_t param_count() const { return first.param_count() + second.param_count(); }
  constexpr double forward_flops(std::int64_t b, std::int64_t s) const {
    return first.forward_flops(b, s) + second.forward_flops(b, s);
  }
  constexpr std::int64_t activation_elements(std::int64_t b, std::int64_t s) const {
    return first.activation_elements(b, s) + second.activation_elements(b, s);
  }
  constexpr std::int64_t activation_bytes(std::int64_t b, std::int64_t s,
                                          std::int64_t bytes = 4) const {
    return activation_elements(b, s) * bytes;
  }
};

}  // namespace detail

/// Pre-norm residual x + body(norm(x)) (CS336, Llama): the norm's width is the body's input and
/// output width.
template <class Norm, class Body>
struct residual : detail::pair_base<Norm, Body> {
  static_assert(detail::check_widths<Norm::out_width, Body::in_width>() &&
                    detail::check_widths<Body::out_width, Norm::in_width>(),
                "residual: the norm's width differs from the body's");
  static constexpr std::size_t in_width = Norm::in_width, out_width = Norm::in_width;
  using base = detail::pair_base<Norm, Body>;
  template <class T>
  using params = typename base::template params<T>;
  template <class T>
  using cache = typename base::template cache<T>;

  constexpr residual() = default;
  constexpr residual(Norm n, Body b) : base(std::move(n), std::move(b)) { check(); }
  explicit constexpr residual(const transformer_config& c) : base(Norm(c), Body(c)) { check(); }
  constexpr index_t in_dim() const { return this->first.in_dim(); }
  constexpr index_t out_dim() const { return this->first.in_dim(); }

  template <class T>
  tensor<T, dims<3>> forward(const params<T>& p, const tensor<T, dims<3>>& x,
                             std::type_identity_t<cache<T>>* c, const context& ctx) const {
    auto n = this->first.forward(p.first, x, c ? &c->first : nullptr, ctx);                      // (B, S, D)
    const auto y = this->second.forward(p.second, std::move(n), c ? &c->second : nullptr, ctx);  // (B, S, D)
    return x + y;                                                                                // (B, S, D)
  }
  template <class T>
  tensor<T, dims<3>> backward(const params<T>& p, std::type_identity_t<params<T>>& g,
                              std::type_identity_t<cache<T>>& c, const tensor<T, dims<3>>& dy,
                              const context& ctx) const {
    const auto dn = this->second.backward(p.second, g.second, c.second, dy, ctx);  // (B, S, D)
    const auto dx = this->first.backward(p.first, g.first, c.first, dn, ctx);      // (B, S, D)
    return dy + dx;                                                                // (B, S, D)
  }

 private:
  constexpr void check() const {
    detail::require_fit("residual", this->first.out_dim(), this->second.in_dim());
    detail::require_fit("residual", this->second.out_dim(), this->first.in_dim());
  }
};

/// Post-norm residual norm(x + body(x)) (the original transformer, BERT).
template <class Norm, class Body>
struct post_norm_residual : detail::pair_base<Norm, Body> {
  static_assert(detail::check_widths<Body::out_width, Body::in_width>() &&
                    detail::check_widths<Body::out_width, Norm::in_width>(),
                "post_norm_residual: the norm's width differs from the body's");
  static constexpr std::size_t in_width = Body::in_width, out_width = Norm::out_width;
  using base = detail::pair_base<Norm, Body>;
  template <class T>
  using params = typename base::template params<T>;
  template <class T>
  using cache = typename base::template cache<T>;

  constexpr post_norm_residual() = default;
  constexpr post_norm_residual(Norm n, Body b) : base(std::move(n), std::move(b)) { check(); }
  explicit constexpr post_norm_residual(const transformer_config& c) : base(Norm(c), Body(c)) {
    check();
  }
  constexpr index_t in_dim() const { return this->second.in_dim(); }
  constexpr index_t out_dim() const { return this->first.out_dim(); }

  template <class T>
  tensor<T, dims<3>> forward(const params<T>& p, const tensor<T, dims<3>>& x,
                             std::type_identity_t<cache<T>>* c, const context& ctx) const {
    const auto y = this->second.forward(p.second, x, c ? &c->second : nullptr, ctx);  // (B, S, D)
    const tensor<T, dims<3>> h = x + y;                                               // (B, S, D)
    return this->first.forward(p.first, h, c ? &c->first : nullptr, ctx);             // (B, S, D)
  }
  template <class T>
  tensor<T, dims<3>> backward(const params<T>& p, std::type_identity_t<params<T>>& g,
                              std::type_identity_t<cache<T>>& c, const tensor<T, dims<3>>& dy,
                              const context& ctx) const {
    const auto dh = this->first.backward(p.first, g.first, c.first, dy, ctx);      // (B, S, D)
    const auto dx = this->second.backward(p.second, g.second, c.second, dh, ctx);  // (B, S, D)
    return dh + dx;                                                                // (B, S, D)
  }

 private:
  constexpr void check() const {
    detail::require_fit("post_norm_residual", this->second.out_dim(), this->second.in_dim());
    detail::require_fit("post_norm_residual", this->second.out_dim(), this->first.in_dim());
  }
};

/// Parallel residual x + a(norm(x)) + b(norm(x)) (GPT-J, PaLM): one norm feeds both branches.
template <class Norm, class A, class B>
struct parallel_residual : detail::pair_base<Norm, detail::pair_base<A, B>> {
  static_assert(detail::check_widths<Norm::out_width, A::in_width>() &&
                    detail::check_widths<Norm::out_width, B::in_width>() &&
                    detail::check_widths<A::out_width, Norm::in_width>() &&
                    detail::check_widths<B::out_width, Norm::in_width>(),
                "parallel_residual: the norm's width differs from a branch's");
  static constexpr std::size_t in_width = Norm::in_width, out_width = Norm::in_width;
  using branches = detail::pair_base<A, B>;
  using base = detail::pair_base<Norm, branches>;
  template <class T>
  using params = typename base::template params<T>;
  template <class T>
  using cache = typename base::template cache<T>;

  constexpr parallel_residual() = default;
  constexpr parallel_residual(Norm n, A a, B b)
      : base(std::move(n), branches(std::move(a), std::move(b))) {
    check();
  }
  explicit constexpr parallel_residual(const transformer_config& c)
      : base(Norm(c), branches(A(c), B(c))) {
    check();
  }
  constexpr index_t in_dim() const { return this->first.in_dim(); }
  constexpr index_t out_dim() const { return this->first.in_dim(); }

  template <class T>
  tensor<T, dims<3>> forward(const params<T>& p, const tensor<T, dims<3>>& x,
                             std::type_identity_t<cache<T>>* c, const context& ctx) const {
    const auto n = this->first.forward(p.first, x, c ? &c->first : nullptr, ctx);  // (B, S, D)
    const auto ya = this->second.first.forward(p.second.first, n, c ? &c->second.first : nullptr,
                                               ctx);  // (B, S, D)
    const auto yb = this->second.second.forward(p.second.second, n, c ? &c->second.second : nullptr,
                                                ctx);  // (B, S, D)
    return x + ya + yb;                                // (B, S, D)
  }
  template <class T>
  tensor<T, dims<3>> backward(const params<T>& p, std::type_identity_t<params<T>>& g,
                              std::type_identity_t<cache<T>>& c, const tensor<T, dims<3>>& dy,
                              const context& ctx) const {
    tensor<T, dims<3>> dn = this->second.first.backward(p.second.first, g.second.first,
                                                        c.second.first, dy, ctx);  // (B, S, D)
    detail::accumulate(dn, this->second.second.backward(p.second.second, g.second.second,
                                                        c.second.second, dy, ctx));  // (B, S, D)
    const auto dx = this->first.backward(p.first, g.first, c.first, dn, ctx);        // (B, S, D)
    return dy + dx;                                                                  // (B, S, D)
  }

 private:
  constexpr void check() const {
    for (const index_t w : {this->second.first.in_dim(), this->second.first.out_dim(),
                            this->second.second.in_dim(), this->second.second.out_dim()})
      if (w != 0) detail::require_fit("parallel_residual", this->first.in_dim(), w);
  }
};

// ------------------------------------------------------------------------------------- models

/// The GPT-2 MLP fc2(gelu(fc1 x)): fc1 (Dff, D), fc2 (D, Dff), with biases unless Bias = false;
/// named "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias". Dff defaults to 4·D.
template <std::size_t D, std::size_t Dff = detail::static_or(D, 4 * D), bool Bias = true>
struct gelu_mlp
    : sequential<named<"fc1", linear<D, Dff, Bias>>, gelu, named<"fc2", linear<Dff, D, Bias>>> {
  using base =
      sequential<named<"fc1", linear<D, Dff, Bias>>, gelu, named<"fc2", linear<Dff, D, Bias>>>;
  constexpr gelu_mlp() = default;
  constexpr gelu_mlp(std::int64_t d, std::int64_t f)
      : base(named<"fc1", linear<D, Dff, Bias>>(linear<D, Dff, Bias>(d, f)), gelu{},
             named<"fc2", linear<Dff, D, Bias>>(linear<Dff, D, Bias>(f, d))) {}
  explicit constexpr gelu_mlp(const transformer_config& c) : gelu_mlp(c.d_model, c.ffn_dim()) {}
  /// sequential's forward; without a cache (inference) fc1's GEMM applies gelu (math::gelu, as
  /// the gelu block) as it stores the hidden (B, S, Dff): one pass over the hidden fewer.
  template <class T, class X>
  tensor<T, dims<3>> forward(const typename base::template params<T>& p, X&& x,
                             std::type_identity_t<typename base::template cache<T>>* c,
                             const context& ctx) const {
    if (c) return base::forward(p, std::forward<X>(x), c, ctx);  // (B, S, D)
    const auto& fc1 = std::get<0>(this->blocks);
    const auto& w1 = std::get<0>(p.blocks);
    const auto& w2 = std::get<2>(p.blocks);
    detail::require_width("linear", fc1.in, x.extent(2));
    const auto h = nn::detail::linear_forward(x, w1.weight, &w1.bias, einlm::activation::gelu);  // (B, S, Dff)
    return nn::detail::linear_forward(h, w2.weight, &w2.bias);                                  // (B, S, D)
  }
  /// fc1's input, gelu's input (fc1 x, which the activation cannot count: it has no width) and
  /// fc2's input.
  constexpr std::int64_t activation_elements(std::int64_t b, std::int64_t s) const {
    return base::activation_elements(b, s) + b * s * std::get<0>(this->blocks).out_dim();
  }
  constexpr std::int64_t activation_bytes(std::int64_t b, std::int64_t s,
                                          std::int64_t bytes = 4) const {
    return activation_elements(b, s) * bytes;
  }
};

/// CS336's pre-norm block: x + attn(ln1(x)), then h + ffn(ln2(h)) with a SwiGLU network; Options
/// are attention's (heads<H>, kv_heads<K>, qk_norm, rope<Theta>) and d_ff<F>.
template <std::size_t D, class... Options>
using transformer_block =
    sequential<residual<named<"ln1", rms_norm<D>>, named<"attn", attention<D, Options...>>>,
               residual<named<"ln2", rms_norm<D>>,
                        named<"ffn", swiglu<D, make_options<Options...>().d_ff == 0
                                                   ? swiglu_width(D)
                                                   : make_options<Options...>().d_ff>>>>;

/// A language model whose LM head is its token embedding (tied embeddings, GPT-2 and Llama 3.2's
/// small models): logits = body(embed(tokens)) Eᵀ with E the embedding's (V, D) table, visited
/// once, under the embedding's name. The head's gradient and the embedding's scatter add into the
/// one gradient (the head's first, as transformer_lm's). Embedding is embedding<V, D> (or a named
/// one), Body a block of width D (the layers and the final norm). From a transformer_config, that
/// configuration must tie its embeddings (config_error otherwise).
template <class Embedding, class Body>
struct tied_lm {
  static_assert(Embedding::in_width == token_ids, "tied_lm: the first block reads token ids");
  static_assert(detail::check_widths<Embedding::out_width, Body::in_width>() &&
                    detail::check_widths<Body::out_width, Embedding::out_width>(),
                "tied_lm: the body's width differs from the embedding's");
  static constexpr std::size_t in_width = token_ids, out_width = Embedding::vocab_width;
  Embedding embedding;
  Body body;

  constexpr tied_lm() = default;
  constexpr tied_lm(Embedding e, Body b) : embedding(std::move(e)), body(std::move(b)) { check(); }
  explicit constexpr tied_lm(const transformer_config& c) : embedding(c), body(c) {
    if (!c.tied_embeddings)
      throw config_error(
          "tied_lm: the configuration does not tie the embeddings; the type's LM head is its "
          "token embedding");
    check();
  }
  constexpr index_t in_dim() const { return 0; }
  constexpr index_t out_dim() const { return embedding.vocab; }

  template <class T>
  struct params {
    params_t<Embedding, T> embedding;
    params_t<Body, T> body;
  };
  template <class T>
  struct cache {
    cache_t<Embedding, T> embedding;
    cache_t<Body, T> body;
    tensor<T, dims<3>> h;  // (B, S, D) the head's input
  };
  template <class T>
  params<T> make_params() const {
    return {embedding.template make_params<T>(), body.template make_params<T>()};
  }
  template <class P, class F>
  void visit(P& p, const std::string& prefix, F& f) const {
    embedding.visit(p.embedding, prefix, f);
    body.visit(p.body, prefix, f);
  }
  template <class T, class I>
  tensor<T, dims<3>> forward(const params<T>& p, const I& tokens, std::type_identity_t<cache<T>>* c,
                             const context& ctx) const {
    const auto x = embedding.forward(p.embedding, tokens, c ? &c->embedding : nullptr, ctx);  // (B, S, D)
    auto h = body.forward(p.body, x, c ? &c->body : nullptr, ctx);                            // (B, S, D)
    if (ctx.kv && !ctx.kv->head_rows.empty())  // a cached pass wanting some rows' logits (lm_head's)
      h = nn::detail::select_rows(h, ctx.kv->head_rows);                                      // (1, R, D)
    auto logits = einsum<"b s d, v d -> b s v">(h, p.embedding.weight);                       // (B, S, V)
    if (c) c->h = std::move(h);
    return logits;
  }
  template <class T>
  no_gradient backward(const params<T>& p, std::type_identity_t<params<T>>& g,
                       std::type_identity_t<cache<T>>& c, const tensor<T, dims<3>>& dy,
                       const context& ctx) const {
    return backward_releasing(p, g, c, dy, nullptr, ctx);
  }
  /// The same, taking dy (the logits' gradient) over: released once the head is done.
  template <class T>
  no_gradient backward(const params<T>& p, std::type_identity_t<params<T>>& g,
                       std::type_identity_t<cache<T>>& c, tensor<T, dims<3>>&& dy, const context& ctx) const {
    return backward_releasing(p, g, c, dy, &dy, ctx);
  }
  /// The tied table once.
  constexpr std::int64_t param_count() const {
    return embedding.param_count() + body.param_count();
  }

  /// The head's product included.
  constexpr double forward_flops(std::int64_t b, std::int64_t s) const {
    return embedding.forward_flops(b, s) + body.forward_flops(b, s) +
           2.0 * double(b) * double(s) * double(embedding.d) * double(embedding.vocab);
  }
  /// The head's input and the logits, as lm_head's.
  constexpr std::int64_t activation_elements(std::int64_t b, std::int64_t s) const {
    return embedding.activation_elements(b, s) + body.activation_elements(b, s) +
           b * s * (embedding.d + embedding.vocab);
  }
  constexpr std::int64_t activation_bytes(std::int64_t b, std::int64_t s,
                                          std::int64_t bytes = 4) const {
    return activation_elements(b, s) * bytes;
  }

 private:
  constexpr void check() const {
    detail::require_fit("tied_lm", embedding.out_dim(), body.in_dim());
    detail::require_fit("tied_lm", body.out_dim(), embedding.out_dim());
  }
  /// The head's gradient and d(h), then the body and the embedding; `owned` (dy itself, or null)
  /// is released once the head is done, with the head's input.
  template <class T>
  no_gradient backward_releasing(const params<T>& p, params<T>& g, cache<T>& c, const tensor<T, dims<3>>& dy,
                                 std::type_identity_t<tensor<T, dims<3>>>* owned, const context& ctx) const {
    einsum_accumulate<"b s v, b s d -> v d">(g.embedding.weight, dy, c.h);                // (V, D)
    const tensor<T, dims<3>> dh = einsum<"b s v, v d -> b s d">(dy, p.embedding.weight);  // (B, S, D)
    if (owned) *owned = {};
    c.h = {};
    const auto dx = body.backward(p.body, g.body, c.body, dh, ctx);  // (B, S, D)
    return embedding.backward(p.embedding, g.embedding, c.embedding, dx, ctx);
  }
};

namespace detail {

template <std::size_t Vocab, std::size_t D, std::size_t Layers, bool Tied, class... Options>
struct cs336_lm_of {
  using type = sequential<named<"token_embeddings", embedding<Vocab, D>>,
                          repeat<Layers, transformer_block<D, Options...>>,
                          named<"ln_final", rms_norm<D>>, named<"lm_head", lm_head<D, Vocab>>>;
};
template <std::size_t Vocab, std::size_t D, std::size_t Layers, class... Options>
struct cs336_lm_of<Vocab, D, Layers, true, Options...> {
  using type = tied_lm<named<"token_embeddings", embedding<Vocab, D>>,
                       sequential<repeat<Layers, transformer_block<D, Options...>>,
                                  named<"ln_final", rms_norm<D>>>>;
};

}  // namespace detail

/// CS336's TransformerLM: token embedding, L transformer blocks, final RMSNorm, LM head — with
/// CS336's state-dict names. Options are transformer_block's, and tied_embeddings: the LM head is
/// then the token embedding (a tied_lm, without lm_head.weight).
template <std::size_t Vocab, std::size_t D, std::size_t Layers, class... Options>
using cs336_lm = typename detail::cs336_lm_of<Vocab, D, Layers,
                                              make_options<Options...>().tied_embeddings,
                                              Options...>::type;

/// GPT-2's block: x + attn(ln_1(x)) with biases on the projections and no rotary embedding, then
/// h + mlp(ln_2(h)) with a GELU MLP of width 4·D; names "ln_1", "attn", "ln_2", "mlp".
template <std::size_t D, std::size_t H>
using gpt2_block =
    sequential<residual<named<"ln_1", layer_norm<D>>,
                        named<"attn", attention<D, heads<H>, proj_bias, rope<0>>>>,
               residual<named<"ln_2", layer_norm<D>>, named<"mlp", gelu_mlp<D>>>>;

/// GPT-2's language model: token embedding plus learned positions (Context of them), L GPT-2
/// blocks, a final LayerNorm, and the LM head tied to the token embedding — named
/// "token_embeddings.weight", "position_embeddings.weight", "layers.{i}.…", "ln_final.…", so
/// CS336's initialisation draws both tables from 𝒩(0, 1). Its param_count() is
/// nn::param_count(nn::presets::gpt2_small()) for <50257, 1024, 768, 12, 12> (a static_assert in
/// the tests). From a transformer_config: one with learned positions, LayerNorm, a GELU MLP,
/// biases and tied embeddings (nn::presets::gpt2(…)).
template <std::size_t Vocab, std::size_t Context, std::size_t D, std::size_t Layers, std::size_t H>
using gpt2_lm = tied_lm<named<"token_embeddings", embedding<Vocab, D>>,
                        sequential<named<"position_embeddings", learned_positions<Context, D>>,
                                   repeat<Layers, gpt2_block<D, H>>,
                                   named<"ln_final", layer_norm<D>>>>;

/// GPT-2's initialisation (Radford et al. 2019, as HF's GPT2 and nanoGPT do it) as a rule for
/// model::initialise(seed, rule): every matrix and table 𝒩(0, 0.02²) (truncated at ±3σ, which
/// HF's is not), the projections into the residual stream ("….attn.output_proj.weight",
/// "….mlp.fc2.weight") 𝒩(0, (0.02/√(2·layers))²), norm gains 1, biases 0. The tied head then
/// starts with logits near 0 and a loss near ln V.
struct gpt2_initialisation {
  std::int64_t layers = 1;
  template <class W>
  void operator()(const std::string& name, W& w, const random_stream& g) const {
    using T = typename W::value_type;
    if (w.extents().rank() == 1) {
      w = name.ends_with(".bias") || name == "bias" ? T(0) : T(1);
      return;
    }
    const bool residual = name.ends_with("attn.output_proj.weight") || name.ends_with("mlp.fc2.weight");
    const double sigma = residual ? 0.02 / std::sqrt(2.0 * static_cast<double>(layers)) : 0.02;
    w = truncated_normal<T>(w.extents(), g, 0.0, sigma, -3.0 * sigma, 3.0 * sigma);
  }
};

/// A block with its weights, their gradients and its kept activations in T.
template <class Block, class T = float>
class model {
 public:
  using block_type = Block;
  using value_type = T;
  using params_type = params_t<Block, T>;
  /// The same block with U storage (mixed precision's working copy: rebind<bf16>).
  template <class U>
  using rebind = model<Block, U>;

  explicit model(Block b = Block{}, context ctx = {})
      : block_(std::move(b)),
        ctx_(ctx),
        params_(block_.template make_params<T>()),
        grads_(block_.template make_params<T>()) {}
  /// Dimensions, norm eps, RoPE θ and the context length from the configuration.
  explicit model(const transformer_config& c)
      : model(Block(c), context{.norm_eps = c.norm_eps, .context_length = c.context_length}) {}
  /// The same with CS336's initialisation from `seed` (see initialise()).
  model(const transformer_config& c, std::uint64_t seed) : model(c) { initialise(seed); }

  /// CS336's initialisation, as nn::transformer_lm's: parameter p (in for_each_parameter's order)
  /// draws from Philox stream p of `seed`; matrices 𝒩(0, 2/(in + out)) truncated at ±3σ, those
  /// named "…embeddings.weight" 𝒩(0, 1) truncated at ±3, norm gains 1, biases 0. A cs336_lm
  /// initialised from a seed equals transformer_lm(config, seed) (a test).
  void initialise(std::uint64_t seed) {
    initialise(seed, [](const std::string& name, auto& w, const random_stream& g) {
      nn::detail::cs336_initialise(name, w, g);
    });
  }
  /// Another initialisation: rule(name, weight, stream) for every parameter, parameter p (in
  /// for_each_parameter's order) with Philox stream p of `seed` (gpt2_initialisation, say).
  template <class Rule>
  void initialise(std::uint64_t seed, Rule&& rule) {
    std::uint64_t stream = 0;
    auto init = [&](const std::string& name, auto& w) { rule(name, w, random_stream{seed, stream++}); };
    block_.visit(params_, std::string{}, init);
  }

  const Block& block() const { return block_; }
  const context& ctx() const { return ctx_; }
  params_type& parameters() { return params_; }
  params_type& gradients() { return grads_; }
  const params_type& parameters() const { return params_; }
  const params_type& gradients() const { return grads_; }

  /// f(name, weight) for every parameter, in a fixed order.
  template <class F>
  void for_each_parameter(F&& f) {
    block_.visit(params_, std::string{}, f);
  }
  /// The same with every name prefixed by `prefix` (a model inside a larger one).
  template <class F>
  void for_each_parameter(const std::string& prefix, F&& f) {
    block_.visit(params_, prefix, f);
  }
  /// f(name, weight, gradient) for every parameter.
  template <class F>
  void for_each_parameter_and_gradient(F&& f) {
    std::vector<void*> grads;
    auto collect = [&](const std::string&, auto& g) { grads.push_back(&g); };
    block_.visit(grads_, std::string{}, collect);
    std::size_t i = 0;
    auto pair = [&](const std::string& name, auto& w) {
      f(name, w, *static_cast<std::remove_reference_t<decltype(w)>*>(grads[i++]));
    };
    block_.visit(params_, std::string{}, pair);
  }
  void zero_grad() {
    auto zero = [](const std::string&, auto& g) { g = T(0); };
    block_.visit(grads_, std::string{}, zero);
  }
  /// The output for x, keeping nothing.
  template <class X>
  auto forward(const X& x) const {
    return block_.forward(params_, x, nullptr, ctx_);  // (B, S, out)
  }
  /// The output for x, keeping what backward needs.
  template <class X>
  auto forward_train(const X& x) {
    cache_ = {};
    return block_.forward(params_, x, &cache_, ctx_);  // (B, S, out)
  }
  /// Accumulates the gradients for d(loss)/d(output) dy; returns d(loss)/d(input).
  auto backward(const tensor<T, dims<3>>& dy) {
    return block_.backward(params_, grads_, cache_, dy, ctx_);
  }  // (B, S, in)
  /// The same, taking dy over: the model's last block (an LM head) releases it once it is done,
  /// rather than at the end of the backward pass.
  auto backward(tensor<T, dims<3>>&& dy) {
    return block_.backward(params_, grads_, cache_, std::move(dy), ctx_);
  }  // (B, S, in)
  /// The longest sequence of logits and of the KV cache (context.context_length; 0: none given).
  std::int64_t context_length() const { return ctx_.context_length; }

  /// Next-token logits (B, S, V) of a token → logits block for token ids (B, S), keeping nothing;
  /// a sequence longer than context_length (when given) is a shape_error.
  template <class I>
  tensor<T, dims<3>> logits(const I& tokens) const
    requires(Block::in_width == token_ids)
  {
    const index_t S = as_view(tokens).extent(1);
    if (ctx_.context_length > 0 && S > ctx_.context_length)
      throw shape_error(einlm::detail::concat("blocks::model: a sequence of ", S,
                                              " tokens exceeds context_length ",
                                              ctx_.context_length));
    return block_.forward(params_, tokens, nullptr, ctx_);  // (B, S, V)
  }

  /// An empty KV cache for `batch` sequences of up to context_length positions (which must be
  /// given: config_error otherwise). Its layers are allocated by the first cached pass.
  kv_cache<T> make_cache(index_t batch) const
    requires(Block::in_width == token_ids)
  {
    if (ctx_.context_length <= 0)
      throw config_error("blocks::model: a KV cache needs a context_length (give it in the context)");
    if (batch <= 0)
      throw value_error(einlm::detail::concat("blocks::model: a KV cache for ", batch, " sequences"));
    kv_cache<T> c;
    c.sequences = batch;
    c.positions = static_cast<index_t>(ctx_.context_length);
    return c;
  }
  /// Logits (B, S, V) of `tokens` (B, S) continuing the sequences of `cache`, each by S positions
  /// after its own length, as transformer_lm's.
  template <class I>
  tensor<T, dims<3>> logits(const I& tokens_in, kv_cache<T>& cache) const
    requires(Block::in_width == token_ids)
  {
    const auto tokens = as_view(tokens_in);
    const index_t B = tokens.extent(0), S = tokens.extent(1);
    std::vector<std::vector<std::int64_t>> rows(static_cast<std::size_t>(B));
    for (index_t r = 0; r < B; ++r)
      for (index_t s = 0; s < S; ++s)
        rows[static_cast<std::size_t>(r)].push_back(static_cast<std::int64_t>(tokens(r, s)));
    const auto packed = cached_forward(rows, cache, /*last_only=*/false);  // (B·S, V)
    return tensor<T, dims<3>>(
        rearrange<"(b s) v -> b s v">(packed, axis_size<"b">{B}));  // (B, S, V)
  }
  /// Logits (N, V) of each sequence's new positions, packed in sequence order: new_tokens[b] (any
  /// number, none included) continues sequence b of `cache` after its own length.
  tensor<T, dims<2>> ragged_logits(std::span<const std::vector<std::int64_t>> new_tokens,
                                   kv_cache<T>& cache) const
    requires(Block::in_width == token_ids)
  {
    return cached_forward(new_tokens, cache, /*last_only=*/false);  // (N, V)
  }
  /// The same, keeping only each sequence's last new position: (B, V), zeros for a sequence
  /// without new tokens (what nn::generate_batch decodes with).
  tensor<T, dims<2>> last_logits(std::span<const std::vector<std::int64_t>> new_tokens,
                                 kv_cache<T>& cache) const
    requires(Block::in_width == token_ids)
  {
    return cached_forward(new_tokens, cache, /*last_only=*/true);  // (B, V)
  }

  /// Mean cross-entropy (+ z_loss · mean(lse²)) of a token → logits block; accumulates gradients.
  template <class I, class J>
  double forward_backward(const I& inputs, const J& targets, double z_loss = 0.0) {
    auto logits = forward_train(inputs);                                                 // (B, S, V)
    auto [loss, dlogits] = cross_entropy_with_grad(std::move(logits), targets, z_loss);  // (B, S, V), over the logits
    backward(std::move(dlogits));  // released after the LM head
    cache_ = {};
    return loss;
  }

 private:
  /// The packed pass of a KV cache (see detail::kv_step): every sequence's new positions in one
  /// (1, N) input, each at its own positions, each attention layer reading its own cache row. With
  /// last_only the LM head projects each sequence's last new row only (a block model without an
  /// lm_head or tied_lm returns every row, and the last ones are picked from them).
  tensor<T, dims<2>> cached_forward(std::span<const std::vector<std::int64_t>> new_tokens,
                                    kv_cache<T>& cache, bool last_only) const {
    const index_t V = block_.out_dim();
    auto packed = nn::detail::pack_ragged(new_tokens, cache, V, "blocks::model");
    const index_t N = packed.size(), R = static_cast<index_t>(packed.last_rows.size());
    if (N == 0) return nn::detail::zeros<T>(last_only ? cache.batch() : 0, V);  // (B, V) or (0, V)
    detail::kv_step step;
    step.positions = std::move(packed.positions);  // (N,)
    step.cache = &cache;
    step.lengths = packed.lengths;
    step.offsets = packed.offsets;
    if (last_only && R < N) step.head_rows = packed.last_rows;
    context ctx = ctx_;
    ctx.kv = &step;
    const auto logits = block_.forward(params_, packed.ids, nullptr, ctx);  // (1, N or R, V)
    if (step.next_layer != cache.k.size())
      throw shape_error(einlm::detail::concat("blocks::model: the KV cache has ", cache.k.size(),
                                              " attention layers, the model ", step.next_layer));
    nn::detail::advance(cache, packed);
    if (!last_only) return tensor<T, dims<2>>(rearrange<"b s v -> (b s) v">(logits));  // (N, V)
    if (logits.extent(1) == R) return nn::detail::scatter_last(logits, packed);    // (B, V)
    return nn::detail::scatter_last(nn::detail::select_rows(logits, packed.last_rows),
                                    packed);  // (B, V)
  }

  Block block_;
  context ctx_;
  params_type params_, grads_;
  cache_t<Block, T> cache_;
};

/// Sets `to`'s weights to `from`'s, converted (to bf16: rounded to nearest even): what train::fit
/// does each step with nn::precision::bf16_mixed. The blocks must have the same dimensions
/// (shape_error otherwise).
template <class Block, class T, class U>
void convert_parameters(const model<Block, U>& from, model<Block, T>& to) {
  nn::detail::convert_tensors<U, T>([&](auto& f) { from.block().visit(from.parameters(), std::string{}, f); },
                                    [&](auto& f) { to.block().visit(to.parameters(), std::string{}, f); },
                                    "convert_parameters");
}

/// Sets `to`'s gradients to `from`'s, converted (bf16 → float is exact).
template <class Block, class T, class U>
void convert_gradients(const model<Block, U>& from, model<Block, T>& to) {
  nn::detail::convert_tensors<U, T>([&](auto& f) { from.block().visit(from.gradients(), std::string{}, f); },
                                    [&](auto& f) { to.block().visit(to.gradients(), std::string{}, f); },
                                    "convert_gradients");
}

}  // namespace blocks

}  // namespace einlm::nn
