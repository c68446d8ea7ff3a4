// Tests of tied embeddings and generation with the type-level models (einlm/nn/blocks.hpp): a tied
// cs336_lm against transformer_lm with tied_embeddings (weights from one seed, logits, loss and
// every gradient in double, the parameter count), the configuration checks of the tied and untied
// types, cached logits (ragged and uniform) against logits without a cache, last_logits of a prefill
// (the LM head on the last rows only, or the last rows picked), and generate_batch
// of block models with and without the cache against transformer_lm's (greedy and sampled,
// prompts of different lengths, sequences longer than the context); a GPT-2 (learned positions)
// with a KV cache, ragged and uniform, and in generation.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "einlm/nn/accounting.hpp"
#include "einlm/nn/blocks.hpp"
#include "einlm/nn/generate.hpp"
#include "einlm/nn/transformer.hpp"
#include "support/max_abs_diff.hpp"

using namespace einlm;
using test::max_abs_diff;
namespace b = einlm::nn::blocks;

namespace {

// [snippet tied_type]
// CS336's TransformerLM whose LM head is its token embedding (no lm_head.weight).
using tied_lm = b::cs336_lm<29, 16, 2, b::heads<4>, b::kv_heads<2>, b::d_ff<24>, b::tied_embeddings>;
// [end snippet]
using untied_lm = b::cs336_lm<29, 16, 2, b::heads<4>, b::kv_heads<2>, b::qk_norm, b::d_ff<24>>;
using dynamic_tied_lm = b::cs336_lm<dyn, dyn, dyn, b::heads<dyn>, b::tied_embeddings>;
using tied_model = b::model<tied_lm, double>;
using untied_model = b::model<untied_lm, double>;

constexpr nn::transformer_config tied_config{.vocab_size = 29, .context_length = 12, .d_model = 16, .num_layers = 2,
                                             .num_heads = 4, .num_kv_heads = 2, .d_ff = 24, .tied_embeddings = true};
constexpr nn::transformer_config untied_config{.vocab_size = 29, .context_length = 12, .d_model = 16, .num_layers = 2,
                                               .num_heads = 4, .num_kv_heads = 2, .d_ff = 24, .qk_norm = true};

/// n token ids below `vocab` from Philox stream `stream`.
std::vector<std::int64_t> random_ids(std::size_t n, std::int64_t vocab, std::uint64_t stream) {
  const random_stream g{99, stream};
  std::vector<std::int64_t> ids(n);
  for (std::size_t i = 0; i < n; ++i)
    ids[i] = std::min<std::int64_t>(vocab - 1, static_cast<std::int64_t>(uniform_at<double>(g, i) * static_cast<double>(vocab)));
  return ids;
}

tensor<std::int64_t, dims<2>> token_tensor(index_t B, index_t S, std::int64_t vocab, std::uint64_t stream) {
  const auto ids = random_ids(static_cast<std::size_t>(B * S), vocab, stream);
  tensor<std::int64_t, dims<2>> t(B, S);  // (B, S)
  std::copy(ids.begin(), ids.end(), t.data());
  return t;
}

/// Logits (1, S, V) of one whole sequence, run alone without a cache.
template <class M>
tensor<double, dims<3>> alone(const M& model, const std::vector<std::int64_t>& ids) {
  tensor<std::int64_t, dims<2>> t(1, static_cast<index_t>(ids.size()));  // (1, S)
  std::copy(ids.begin(), ids.end(), t.data());
  return model.logits(t);  // (1, S, V)
}

/// The largest difference between rows first … first + n − 1 of packed logits (N, V) and the
/// logits of the whole sequence `ids` alone from position `from` on.
template <class M>
double packed_vs_alone(const M& model, const tensor<double, dims<2>>& packed, index_t first,
                       const std::vector<std::int64_t>& ids, index_t from) {
  const auto full = alone(model, ids);  // (1, S, V)
  const index_t V = packed.extent(1), n = static_cast<index_t>(ids.size()) - from;
  double worst = 0;
  for (index_t j = 0; j < n; ++j)
    for (index_t v = 0; v < V; ++v) worst = std::max(worst, std::abs(packed(first + j, v) - full(0, from + j, v)));
  return worst;
}

/// Every (name, values) of a model's weights or gradients.
template <class M>
std::map<std::string, std::vector<double>> weights_of(M& model, bool gradients) {
  std::map<std::string, std::vector<double>> out;
  model.for_each_parameter_and_gradient([&](const std::string& name, const auto& w, const auto& g) {
    const auto& t = gradients ? g : w;
    out[name].assign(t.data(), t.data() + t.size());
  });
  return out;
}

double worst_difference(const std::map<std::string, std::vector<double>>& a,
                        const std::map<std::string, std::vector<double>>& r) {
  REQUIRE(a.size() == r.size());
  double worst = 0;
  for (const auto& [name, values] : a) {
    CAPTURE(name);
    REQUIRE(r.count(name) == 1);
    REQUIRE(values.size() == r.at(name).size());
    for (std::size_t i = 0; i < values.size(); ++i) worst = std::max(worst, std::abs(values[i] - r.at(name)[i]));
  }
  return worst;
}

/// Logits of `tokens` (B, S) in two cached calls, the first `split` positions then the rest (both
/// continuing `cache`, which must be empty), against one call without a cache: the largest difference.
template <class M>
double split_vs_whole(M& model, const tensor<std::int64_t, dims<2>>& tokens, index_t split, nn::kv_cache<double>& cache) {
  const index_t S = tokens.extent(1);
  const auto head = model.logits(tensor<std::int64_t, dims<2>>(slice(tokens, full_extent, range{0, split})), cache);  // (B, split, V)
  const auto tail = model.logits(tensor<std::int64_t, dims<2>>(slice(tokens, full_extent, range{split, S})), cache);  // (B, S − split, V)
  const auto whole = model.logits(tokens);                                                                        // (B, S, V)
  return std::max(max_abs_diff(head, tensor<double, dims<3>>(slice(whole, full_extent, range{0, split}, full_extent))),
                  max_abs_diff(tail, tensor<double, dims<3>>(slice(whole, full_extent, range{split, S}, full_extent))));
}

nn::generation_options greedy_options() { return {.max_new_tokens = 14, .sampling = {.temperature = 0.0}}; }

}  // namespace

TEST_CASE("blocks: a tied cs336_lm equals transformer_lm with tied embeddings") {
  static_assert(tied_lm{}.param_count() == nn::param_count(tied_config));
  static_assert(tied_lm{}.forward_flops(3, 12) == nn::flops_forward(tied_config, 3, 12));  // the head's product
  static_assert(tied_lm{}.activation_bytes(3, 12, 8) ==
                nn::activation_bytes(tied_config, 3, 12, 8, nn::attention_activations::log_sum_exp));
  static_assert(tied_lm{}.param_count() + 29 * 16 == untied_lm{}.param_count() - 2 * 2 * 4);  // lm_head; qk-norm gains
  const dynamic_tied_lm runtime(tied_config);
  CHECK(runtime.param_count() == nn::param_count(tied_config));
  CHECK(runtime.forward_flops(3, 12) == tied_lm{}.forward_flops(3, 12));

  b::model<tied_lm, double> typed(tied_config, /*seed=*/11);
  b::model<dynamic_tied_lm, double> dynamic(tied_config, 11);
  nn::transformer_lm<double> reference(tied_config, 11);
  std::vector<std::string> names;
  typed.for_each_parameter([&](const std::string& name, const auto&) { names.push_back(name); });
  CHECK(names.size() == 1 + 2 * 9 + 1);  // no lm_head.weight
  CHECK(names.front() == "token_embeddings.weight");
  CHECK(names.back() == "ln_final.weight");
  const auto w = weights_of(typed, false);
  CHECK(w == weights_of(reference, false));  // the same weights from the same seed, by name
  CHECK(w == weights_of(dynamic, false));

  const auto inputs = token_tensor(3, 9, 29, 1), targets = token_tensor(3, 9, 29, 2);  // (B, S) twice
  const auto logits = typed.logits(inputs);                                             // (B, S, V)
  CHECK(max_abs_diff(logits, reference.logits(inputs)) < 1e-12);
  CHECK(max_abs_diff(logits, dynamic.logits(inputs)) == 0.0);
  typed.zero_grad();
  reference.zero_grad();
  const double loss = typed.forward_backward(inputs, targets, 1e-3);
  CHECK(std::abs(loss - reference.forward_backward(inputs, targets, 1e-3)) < 1e-12);
  const auto g = weights_of(typed, true), r = weights_of(reference, true);
  CHECK(worst_difference(g, r) < 1e-12);
  // The embedding's gradient holds the head's and the scatter's: both non-zero.
  double head_only = 0;
  for (const double x : g.at("token_embeddings.weight")) head_only = std::max(head_only, std::abs(x));
  CHECK(head_only > 1e-3);
}

TEST_CASE("blocks: the tied and untied types check the configuration's tied_embeddings") {
  nn::transformer_config untied = tied_config;
  untied.tied_embeddings = false;
  CHECK_THROWS_WITH_AS(tied_model{untied},
                       "tied_lm: the configuration does not tie the embeddings; the type's LM head is its token "
                       "embedding",
                       nn::config_error);
  nn::transformer_config no_qk_norm = untied_config;
  no_qk_norm.qk_norm = false;
  CHECK_THROWS_AS(untied_model{no_qk_norm}, nn::config_error);  // as any other field
  CHECK_NOTHROW(untied_model{untied_config});
  nn::transformer_config tied_qk = untied_config;
  tied_qk.tied_embeddings = true;
  CHECK_THROWS_WITH_AS(untied_model{tied_qk},
                       "lm_head: the configuration ties the embeddings; the type has an lm_head of its own (give "
                       "cs336_lm the tied_embeddings option)",
                       nn::config_error);
}

TEST_CASE("blocks: logits with a KV cache equal logits without") {
  b::model<untied_lm, double> model(untied_config, 5);
  const std::vector<std::vector<std::int64_t>> seqs = {random_ids(11, 29, 1), random_ids(3, 29, 2), random_ids(12, 29, 3)};
  // [snippet blocks_cache]
  auto cache = model.make_cache(3);  // 3 sequences of up to context_length positions
  // Prompts of 5, 1 and 8 tokens in one packed call: (14, V), sequence after sequence.
  std::vector<std::vector<std::int64_t>> step = {{seqs[0].begin(), seqs[0].begin() + 5}, {seqs[1][0]},
                                                 {seqs[2].begin(), seqs[2].begin() + 8}};
  const auto prefill = model.ragged_logits(step, cache);  // (14, V)
  // [end snippet]
  REQUIRE(prefill.extent(0) == 14);
  CHECK(packed_vs_alone(model, prefill, 0, step[0], 0) < 1e-12);
  CHECK(packed_vs_alone(model, prefill, 5, step[1], 0) < 1e-12);
  CHECK(packed_vs_alone(model, prefill, 6, step[2], 0) < 1e-12);
  CHECK(cache.k.size() == 2);  // one per attention layer, made by the first pass
  CHECK(cache.per_sequence() == std::vector<index_t>{5, 1, 8});
  // Continued unevenly: 6, 2 and 0 new tokens, then the last position of each (decode).
  step = {{seqs[0].begin() + 5, seqs[0].begin() + 11}, {seqs[1].begin() + 1, seqs[1].end()}, {}};
  const auto more = model.ragged_logits(step, cache);  // (8, V)
  REQUIRE(more.extent(0) == 8);
  CHECK(packed_vs_alone(model, more, 0, seqs[0], 5) < 1e-12);
  CHECK(packed_vs_alone(model, more, 6, seqs[1], 1) < 1e-12);
  step = {{}, {}, {seqs[2][8]}};
  const auto last = model.last_logits(step, cache);  // (3, V)
  const auto full = alone(model, std::vector<std::int64_t>(seqs[2].begin(), seqs[2].begin() + 9));  // (1, 9, V)
  double worst = 0, others = 0;
  for (index_t v = 0; v < 29; ++v) {
    worst = std::max(worst, std::abs(last(2, v) - full(0, 8, v)));
    others = std::max({others, std::abs(last(0, v)), std::abs(last(1, v))});
  }
  CHECK(worst < 1e-12);
  CHECK(others == 0.0);  // no new tokens: zeros
  CHECK(cache.per_sequence() == std::vector<index_t>{11, 3, 9});
  // The uniform form: a (B, S) batch continuing every sequence by S positions, after a truncation.
  b::model<tied_lm, double> tied(tied_config, 6);
  const auto tokens = token_tensor(2, 10, 29, 4);  // (B, S)
  auto uniform = tied.make_cache(2);
  CHECK(split_vs_whole(tied, tokens, 4, uniform) < 1e-12);
  // Errors: past the context, a batch of another size, a model without a context length.
  CHECK_THROWS_AS(tied.logits(tokens, uniform), shape_error);
  CHECK_THROWS_WITH_AS(tied.logits(token_tensor(1, 13, 29, 5)), "blocks::model: a sequence of 13 tokens exceeds context_length 12",
                       shape_error);
  const std::vector<std::vector<std::int64_t>> one = {{1}};
  CHECK_THROWS_AS(tied.last_logits(one, uniform), shape_error);
  b::model<tied_lm, double> no_context;
  CHECK_THROWS_AS(no_context.make_cache(1), nn::config_error);
  CHECK_THROWS_WITH_AS(nn::generate(no_context, {1, 2}, {}),
                       "generate_batch: the model's context_length must be positive, got 0", nn::config_error);
}

/// last_logits (B, V) of one prefill of prompts of the given lengths (0: none) against each prompt's
/// last position run alone; zero rows for empty prompts and the cache's lengths checked too.
template <class M>
double prefill_last_vs_alone(const M& model, const std::vector<std::size_t>& lengths) {
  auto cache = model.make_cache(static_cast<index_t>(lengths.size()));
  std::vector<std::vector<std::int64_t>> prompts;
  for (std::size_t b = 0; b < lengths.size(); ++b) prompts.push_back(random_ids(lengths[b], 29, 20 + b));
  const auto last = model.last_logits(prompts, cache);  // (B, V)
  REQUIRE(last.extent(0) == static_cast<index_t>(lengths.size()));
  REQUIRE(last.extent(1) == 29);
  double worst = 0;
  for (std::size_t b = 0; b < lengths.size(); ++b) {
    CHECK(cache.length_of(static_cast<index_t>(b)) == static_cast<index_t>(lengths[b]));
    const auto full = lengths[b] > 0 ? alone(model, prompts[b]) : tensor<double, dims<3>>(1, 1, 29);  // (1, S, V)
    for (index_t v = 0; v < 29; ++v) {
      const double expected = lengths[b] > 0 ? full(0, static_cast<index_t>(lengths[b]) - 1, v) : 0.0;
      worst = std::max(worst, std::abs(last(static_cast<index_t>(b), v) - expected));
    }
  }
  return worst;
}

TEST_CASE("blocks: last_logits of a prefill projects each sequence's last position only") {
  // lm_head and tied_lm project the last rows alone; a model whose head is a plain linear returns
  // every row and the last ones are picked from them. All three agree with the sequences run alone.
  const std::vector<std::size_t> lengths = {5, 0, 3, 1};
  const b::model<untied_lm, double> untied(untied_config, 7);
  CHECK(prefill_last_vs_alone(untied, lengths) < 1e-12);
  const b::model<tied_lm, double> tied(tied_config, 8);
  CHECK(prefill_last_vs_alone(tied, lengths) < 1e-12);
  using linear_head = b::sequential<b::embedding<29, 16>, b::residual<b::rms_norm<16>, b::attention<16, b::heads<4>>>,
                                    b::rms_norm<16>, b::linear<16, 29>>;
  b::model<linear_head, double> plain(linear_head{}, b::context{.context_length = 12});
  std::uint64_t stream = 0;
  plain.for_each_parameter([&](const std::string& name, auto& w) {
    nn::detail::cs336_initialise(name, w, random_stream{9, stream++});
  });
  CHECK(prefill_last_vs_alone(plain, lengths) < 1e-12);
  // A bad id is named by (sequence, new token) and leaves the cache as it was.
  auto cache = tied.make_cache(2);
  const std::vector<std::vector<std::int64_t>> first = {{1, 2}, {3}};
  tied.ragged_logits(first, cache);
  const std::vector<std::vector<std::int64_t>> bad = {{4}, {5, 29}};
  CHECK_THROWS_WITH_AS(tied.last_logits(bad, cache), "blocks::model: token id 29 at (1, 1) is outside the vocabulary [0, 29)",
                       value_error);
  CHECK(cache.per_sequence() == std::vector<index_t>{2, 1});
}

TEST_CASE("blocks: generate_batch of a block model, with and without the cache, equals transformer_lm's") {
  // Prompts of 3, 1, 7 and 10 tokens; with 14 new tokens every sequence outgrows the context (12).
  const std::vector<std::vector<std::int64_t>> prompts = {random_ids(3, 29, 11), random_ids(1, 29, 12),
                                                          random_ids(7, 29, 13), random_ids(10, 29, 14)};
  auto check = [&](auto& typed, nn::transformer_lm<double>& reference) {
    for (const double temperature : {0.0, 1.0}) {
      CAPTURE(temperature);
      nn::generation_options o{.max_new_tokens = 14, .sampling = {.temperature = temperature, .top_k = 8}, .seed = 3};
      const auto cached = nn::generate_batch(typed, prompts, o);
      for (std::size_t i = 0; i < prompts.size(); ++i) CHECK(cached[i].size() == prompts[i].size() + 14);
      CHECK(cached == nn::generate_batch(reference, prompts, o));
      o.use_cache = false;
      CHECK(cached == nn::generate_batch(typed, prompts, o));
      o.use_cache = true;
      o.stream = 1;
      CHECK(nn::generate(typed, prompts[1], o) == cached[1]);  // sequence i draws from stream i
    }
  };
  b::model<tied_lm, double> tied(tied_config, 21);
  nn::transformer_lm<double> tied_reference(tied_config, 21);
  check(tied, tied_reference);
  b::model<untied_lm, double> untied(untied_config, 22);
  nn::transformer_lm<double> untied_reference(untied_config, 22);
  check(untied, untied_reference);
  // [snippet blocks_generate]
  // A token → logits block model generates as transformer_lm does, through its KV cache. The
  // context length comes from the configuration, or from the context.
  b::model<tied_lm, double> lm(tied_config, /*seed=*/21);
  const auto texts = nn::generate_batch(lm, prompts, {.max_new_tokens = 14, .seed = 3});
  b::model<tied_lm, double> same(tied_lm{}, {.context_length = 12});
  same.initialise(21);
  CHECK(nn::generate_batch(same, prompts, {.max_new_tokens = 14, .seed = 3}) == texts);
  // [end snippet]
  CHECK(texts == nn::generate_batch(tied_reference, prompts, {.max_new_tokens = 14, .seed = 3}));
  // In float too, with and without the cache.
  b::model<tied_lm, float> single(tied_config, 21);
  auto greedy = greedy_options();
  const auto floats = nn::generate_batch(single, prompts, greedy);
  greedy.use_cache = false;
  CHECK(floats == nn::generate_batch(single, prompts, greedy));
  // A different model gives different text (the comparison can fail).
  b::model<tied_lm, double> other(tied_config, 23);
  CHECK(nn::generate_batch(other, prompts, greedy) != nn::generate_batch(tied_reference, prompts, greedy));
}

TEST_CASE("blocks: GPT-2's learned positions with a KV cache, ragged and uniform, and in generation") {
  // The positions of a cached pass come from the cache: each packed row is at its sequence's own
  // position, so the cached logits equal those of the whole sequences run alone.
  using gpt2 = b::gpt2_lm<29, 12, 16, 2, 4>;
  auto config = nn::presets::gpt2(16, 2, 4);
  config.vocab_size = 29;
  config.context_length = 12;
  b::model<gpt2, double> model(config, 31);
  const std::vector<std::vector<std::int64_t>> seqs = {random_ids(9, 29, 31), random_ids(4, 29, 32)};
  auto cache = model.make_cache(2);
  std::vector<std::vector<std::int64_t>> step = {{seqs[0].begin(), seqs[0].begin() + 6}, {seqs[1][0]}};
  const auto prefill = model.ragged_logits(step, cache);  // (7, V)
  CHECK(packed_vs_alone(model, prefill, 0, step[0], 0) < 1e-12);
  CHECK(packed_vs_alone(model, prefill, 6, step[1], 0) < 1e-12);
  step = {{seqs[0].begin() + 6, seqs[0].end()}, {seqs[1].begin() + 1, seqs[1].end()}};
  const auto more = model.ragged_logits(step, cache);  // (6, V)
  CHECK(packed_vs_alone(model, more, 0, seqs[0], 6) < 1e-12);
  CHECK(packed_vs_alone(model, more, 3, seqs[1], 1) < 1e-12);
  // Uniform: (B, 5) then (B, 7) continuing every sequence.
  const auto tokens = token_tensor(2, 12, 29, 33);  // (B, S)
  auto uniform = model.make_cache(2);
  CHECK(split_vs_whole(model, tokens, 5, uniform) < 1e-12);
  // Without the cache's positions the tail would differ: run alone, its rows are at 0 … 6.
  const tensor<std::int64_t, dims<2>> tail(slice(tokens, full_extent, range{5, 12}));  // (B, 7)
  auto fresh = model.make_cache(2);
  model.logits(tensor<std::int64_t, dims<2>>(slice(tokens, full_extent, range{0, 5})), fresh);
  CHECK(max_abs_diff(model.logits(tail, fresh), model.logits(tail)) > 1e-3);
  // Generation past the context (prompts of 3 and 10 tokens, 14 new): cached equals uncached.
  const std::vector<std::vector<std::int64_t>> prompts = {random_ids(3, 29, 34), random_ids(10, 29, 35)};
  for (const double temperature : {0.0, 1.0}) {
    CAPTURE(temperature);
    nn::generation_options o{.max_new_tokens = 14, .sampling = {.temperature = temperature, .top_k = 8}, .seed = 5};
    const auto cached = nn::generate_batch(model, prompts, o);
    CHECK(cached[1].size() == 24);
    o.use_cache = false;
    CHECK(cached == nn::generate_batch(model, prompts, o));
  }
  b::model<gpt2, float> single(config, 31);
  auto greedy = greedy_options();
  const auto floats = nn::generate_batch(single, prompts, greedy);
  greedy.use_cache = false;
  CHECK(floats == nn::generate_batch(single, prompts, greedy));
}
