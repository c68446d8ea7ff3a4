// Tests of batched generation (einlm/nn/generate.hpp) and of the KV cache with one length per
// sequence that it runs on (einlm/nn/transformer.hpp): ragged logits against each sequence run
// alone (dense, grouped-query with qk-norm, and with experts), a cache whose sequences are
// started over or continued unevenly, generate_batch against generate for each prompt alone
// (greedy and sampled, a stop token that ends some sequences early, sequences longer than the
// context), the path without a cache, and the errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "einlm/nn/generate.hpp"
#include "einlm/nn/transformer.hpp"
#include "support/max_abs_diff.hpp"

using namespace einlm;
using test::max_abs_diff;

namespace {

nn::transformer_config small_config() {
  return {.vocab_size = 23, .context_length = 16, .d_model = 16, .num_layers = 2, .num_heads = 4,
          .num_kv_heads = 2, .d_ff = 24, .qk_norm = true};
}

/// n token ids below `vocab` from Philox stream `stream`.
std::vector<std::int64_t> random_ids(std::size_t n, std::int64_t vocab, std::uint64_t stream) {
  const random_stream g{4321, stream};
  std::vector<std::int64_t> ids(n);
  for (std::size_t i = 0; i < n; ++i)
    ids[i] = std::min<std::int64_t>(vocab - 1, static_cast<std::int64_t>(uniform_at<double>(g, i) * static_cast<double>(vocab)));
  return ids;
}

/// Logits (S, V) of one whole sequence, run alone without a cache.
template <class T>
tensor<T, dims<3>> alone(nn::transformer_lm<T>& model, const std::vector<std::int64_t>& ids) {
  tensor<std::int64_t, dims<2>> t(1, static_cast<index_t>(ids.size()));  // (1, S)
  std::copy(ids.begin(), ids.end(), t.data());
  return model.logits(t);  // (1, S, V)
}

/// The largest difference between sequence b's rows of packed logits (N, V), starting at row
/// `first`, and the logits of the whole sequence `ids` alone from position `from` on.
template <class T>
double packed_vs_alone(nn::transformer_lm<T>& model, const tensor<T, dims<2>>& packed, index_t first,
                       const std::vector<std::int64_t>& ids, index_t from) {
  const auto full = alone(model, ids);  // (1, S, V)
  const index_t V = packed.extent(1), n = static_cast<index_t>(ids.size()) - from;
  double worst = 0;
  for (index_t j = 0; j < n; ++j)
    for (index_t v = 0; v < V; ++v)
      worst = std::max(worst, std::abs(static_cast<double>(packed(first + j, v)) - static_cast<double>(full(0, from + j, v))));
  return worst;
}

/// A model with only config() and logits(tokens): generation runs it without a cache.
struct uncached {
  nn::transformer_lm<double>* model;
  const nn::transformer_config& config() const { return model->config(); }
  tensor<double, dims<3>> logits(const tensor<std::int64_t, dims<2>>& tokens) { return model->logits(tokens); }  // (1, S, V)
};

}  // namespace

TEST_CASE("transformer_lm: ragged logits equal each sequence alone") {
  nn::transformer_lm<double> model(small_config(), 3);
  std::vector<std::vector<std::int64_t>> seqs = {random_ids(13, 23, 1), random_ids(4, 23, 2), random_ids(16, 23, 3)};
  auto cache = model.make_cache(3);
  // Prefill of three prompts of 5, 1 and 9 tokens in one call.
  std::vector<std::vector<std::int64_t>> step = {{seqs[0].begin(), seqs[0].begin() + 5}, {seqs[1][0]},
                                                 {seqs[2].begin(), seqs[2].begin() + 9}};
  const auto prefill = model.ragged_logits(step, cache);  // (15, V)
  REQUIRE(prefill.extent(0) == 15);
  CHECK(packed_vs_alone(model, prefill, 0, step[0], 0) < 1e-12);
  CHECK(packed_vs_alone(model, prefill, 5, step[1], 0) < 1e-12);
  CHECK(packed_vs_alone(model, prefill, 6, step[2], 0) < 1e-12);
  CHECK(cache.ragged());
  CHECK(cache.lengths == std::vector<index_t>{5, 1, 9});
  CHECK(cache.length == 1);  // the shortest
  // Uneven continuations: 3, 0 and 1 tokens, then one each through the (B, S) interface.
  step = {{seqs[0].begin() + 5, seqs[0].begin() + 8}, {}, {seqs[2][9]}};
  const auto more = model.ragged_logits(step, cache);  // (4, V)
  REQUIRE(more.extent(0) == 4);
  CHECK(packed_vs_alone(model, more, 0, {seqs[0].begin(), seqs[0].begin() + 8}, 5) < 1e-12);
  CHECK(packed_vs_alone(model, more, 3, {seqs[2].begin(), seqs[2].begin() + 10}, 9) < 1e-12);
  CHECK(cache.lengths == std::vector<index_t>{8, 1, 10});
  tensor<std::int64_t, dims<2>> one(3, 1);  // (B, 1)
  one(0, 0) = seqs[0][8];
  one(1, 0) = seqs[1][1];
  one(2, 0) = seqs[2][10];
  const auto decoded = model.logits(one, cache);  // (B, 1, V)
  const std::vector<std::size_t> ends = {9, 2, 11};
  for (std::size_t b = 0; b < 3; ++b) {
    const auto full = alone(model, {seqs[b].begin(), seqs[b].begin() + static_cast<std::ptrdiff_t>(ends[b])});  // (1, S, V)
    double worst = 0;
    for (index_t v = 0; v < 23; ++v)
      worst = std::max(worst, std::abs(decoded(static_cast<index_t>(b), 0, v) - full(0, static_cast<index_t>(ends[b]) - 1, v)));
    CHECK(worst < 1e-12);
  }
  // last_logits: only each sequence's last new position; a sequence without new tokens gets 0.
  // Sequence 0 is started over with other tokens; sequence 2 fills its row to context_length.
  cache.truncate(0, 0);
  const auto restart = random_ids(6, 23, 4);
  step = {restart, {}, {seqs[2].begin() + 11, seqs[2].end()}};
  const auto last = model.last_logits(step, cache);  // (B, V)
  REQUIRE(last.extent(0) == 3);
  const auto full0 = alone(model, restart);  // (1, 6, V)
  const auto full2 = alone(model, seqs[2]);  // (1, 16, V)
  double worst = 0, zero = 0;
  for (index_t v = 0; v < 23; ++v) {
    worst = std::max({worst, std::abs(last(0, v) - full0(0, 5, v)), std::abs(last(2, v) - full2(0, 15, v))});
    zero = std::max(zero, std::abs(last(1, v)));
  }
  CHECK(worst < 1e-12);
  CHECK(zero == 0.0);
  CHECK(cache.lengths == std::vector<index_t>{6, 2, 16});
  // Nothing new at all: no rows, the cache unchanged.
  CHECK(model.ragged_logits(std::vector<std::vector<std::int64_t>>(3), cache).extent(0) == 0);
  // Sequence 2 is full; the batch must match the cache.
  CHECK_THROWS_WITH_AS(model.ragged_logits(std::vector<std::vector<std::int64_t>>{{}, {}, {1}}, cache),
                       "transformer_lm: sequence 2: 1 new tokens after the cache's 16 exceed context_length 16", shape_error);
  CHECK_THROWS_WITH_AS(model.ragged_logits(std::vector<std::vector<std::int64_t>>{{1}, {2}}, cache),
                       "transformer_lm: a cache for 3 sequences was given tokens for 2 sequences", shape_error);
  CHECK_THROWS_WITH_AS(cache.truncate(1, 3), "kv_cache: cannot keep 3 positions of sequence 1, which holds 2", value_error);
  // Once every sequence has one length again, the cache is uniform.
  cache.truncate(0, 2);
  cache.truncate(2, 2);
  CHECK(!cache.ragged());
  CHECK(cache.length == 2);
}

TEST_CASE("transformer_lm: ragged logits of longer sequences (attention over the sequences in parallel)") {
  // Enough attention work for one sequence per OpenMP thread (nn::detail::for_each_sequence).
  const nn::transformer_config c{.vocab_size = 31, .context_length = 64, .d_model = 64, .num_layers = 2, .num_heads = 4,
                                 .num_kv_heads = 2, .d_ff = 96};
  nn::transformer_lm<double> model(c, 21);
  const std::vector<std::vector<std::int64_t>> seqs = {random_ids(50, 31, 31), random_ids(27, 31, 32),
                                                       random_ids(64, 31, 33), random_ids(12, 31, 34)};
  const std::vector<std::size_t> prompt = {40, 25, 63, 11};
  std::vector<std::vector<std::int64_t>> step, next;
  for (std::size_t b = 0; b < 4; ++b) {
    step.emplace_back(seqs[b].begin(), seqs[b].begin() + static_cast<std::ptrdiff_t>(prompt[b]));
    next.emplace_back(seqs[b].begin() + static_cast<std::ptrdiff_t>(prompt[b]), seqs[b].begin() + static_cast<std::ptrdiff_t>(prompt[b] + 1));
  }
  auto cache = model.make_cache(4);
  const auto prefill = model.ragged_logits(step, cache);  // (139, V)
  const auto decoded = model.ragged_logits(next, cache);  // (4, V): one new position each
  index_t first = 0;
  for (std::size_t b = 0; b < 4; ++b) {
    CHECK(packed_vs_alone(model, prefill, first, step[b], 0) < 1e-12);
    CHECK(packed_vs_alone(model, decoded, static_cast<index_t>(b), {seqs[b].begin(), seqs[b].begin() + static_cast<std::ptrdiff_t>(prompt[b] + 1)},
                          static_cast<index_t>(prompt[b])) < 1e-12);
    first += static_cast<index_t>(prompt[b]);
  }
}

TEST_CASE("transformer_lm with experts: ragged logits equal each sequence alone") {
  const nn::moe_config m{.base = {.vocab_size = 13, .context_length = 8, .d_model = 8, .num_layers = 3, .num_heads = 2,
                                  .num_kv_heads = 1, .d_ff = 12},
                         .num_experts = 4, .top_k = 2, .num_shared_experts = 1, .expert_d_ff = 6, .first_dense_layers = 1};
  nn::transformer_lm<double> model(m, 9);
  const std::vector<std::vector<std::int64_t>> prompts = {random_ids(7, 13, 5), random_ids(2, 13, 6)};
  auto cache = model.make_cache(2);
  const auto packed = model.ragged_logits(prompts, cache);  // (9, V)
  CHECK(packed_vs_alone(model, packed, 0, prompts[0], 0) < 1e-12);
  CHECK(packed_vs_alone(model, packed, 7, prompts[1], 0) < 1e-12);
}

TEST_CASE("generate_batch: each sequence is what generate gives its prompt alone") {
  nn::transformer_lm<double> model(small_config(), 5);
  // Prompts of 3, 1, 7 and 12 tokens; with 20 new tokens every sequence outgrows the context (16).
  const std::vector<std::vector<std::int64_t>> prompts = {random_ids(3, 23, 11), random_ids(1, 23, 12),
                                                          random_ids(7, 23, 13), random_ids(12, 23, 14)};
  for (const double temperature : {0.0, 1.0}) {
    nn::generation_options o{.max_new_tokens = 20, .sampling = {.temperature = temperature, .top_k = 10}, .seed = 17};
    auto expect_alone = [&](const std::vector<std::vector<std::int64_t>>& batch, nn::generation_options one) {
      const std::uint64_t first = one.stream;
      for (std::size_t i = 0; i < prompts.size(); ++i) {
        one.stream = first + i;
        CHECK(nn::generate(model, prompts[i], one) == batch[i]);
      }
    };
    std::vector<std::vector<std::int64_t>> streamed(prompts.size());
    const auto batch = nn::generate_batch(model, prompts, o, [&](std::size_t i, std::int64_t id) { streamed[i].push_back(id); });
    REQUIRE(batch.size() == 4);
    for (std::size_t i = 0; i < 4; ++i) {
      CHECK(batch[i].size() == prompts[i].size() + 20);
      CHECK(std::equal(prompts[i].begin(), prompts[i].end(), batch[i].begin()));
      CHECK(std::vector<std::int64_t>(batch[i].begin() + static_cast<std::ptrdiff_t>(prompts[i].size()), batch[i].end()) ==
            streamed[i]);
    }
    expect_alone(batch, o);
    // generate draws from stream (seed, stream): the first sequence of the batch, and another
    // stream gives another text.
    CHECK(nn::generate(model, prompts[0], o) == batch[0]);
    if (temperature > 0) CHECK(nn::generate(model, prompts[1], o) != batch[1]);
    // Without a cache, and through a model that has none: the same tokens.
    o.use_cache = false;
    CHECK(nn::generate_batch(model, prompts, o) == batch);
    uncached plain{&model};
    CHECK(nn::generate_batch(plain, prompts, o) == batch);
    o.use_cache = true;

    // A stop token that ends some sequences early and not others (on the streams (seed, 5 + i)):
    // the third new token of one sequence that another sequence never generates. Each sequence
    // is then the run without a stop token cut after its first stop token.
    o.stream = 5;
    const auto free_run = nn::generate_batch(model, prompts, o);
    std::int64_t stop = -1;
    std::size_t goes_on = 0;
    for (std::size_t i = 0; i < 4 && stop < 0; ++i) {
      const std::int64_t t = free_run[i][prompts[i].size() + 2];
      for (std::size_t j = 0; j < 4; ++j)
        if (std::find(free_run[j].begin() + static_cast<std::ptrdiff_t>(prompts[j].size()), free_run[j].end(), t) ==
            free_run[j].end()) {
          stop = t;
          goes_on = j;
        }
    }
    REQUIRE(stop >= 0);
    o.stop_token = stop;
    std::vector<std::size_t> emitted(4, 0);
    const auto stopped = nn::generate_batch(model, prompts, o, [&](std::size_t i, std::int64_t) { ++emitted[i]; });
    std::size_t early = 0;
    for (std::size_t i = 0; i < 4; ++i) {
      auto expected = free_run[i];
      const auto first_stop = std::find(expected.begin() + static_cast<std::ptrdiff_t>(prompts[i].size()), expected.end(), stop);
      if (first_stop != expected.end()) {
        expected.erase(first_stop + 1, expected.end());
        ++early;
      }
      CHECK(stopped[i] == expected);
      CHECK(emitted[i] == stopped[i].size() - prompts[i].size());
    }
    CHECK(early >= 1);
    CHECK(stopped[goes_on] == free_run[goes_on]);  // this one goes on to max_new_tokens
    expect_alone(stopped, o);
  }
  // No new tokens: the prompts back.
  CHECK(nn::generate_batch(model, prompts, {.max_new_tokens = 0}) == prompts);
}

TEST_CASE("generate_batch: bad input is a value_error naming it") {
  nn::transformer_lm<double> model(small_config(), 5);
  const nn::generation_options o{.max_new_tokens = 3};
  CHECK_THROWS_WITH_AS(nn::generate_batch(model, {}, o), "generate_batch: the batch is empty; give at least one prompt",
                       value_error);
  CHECK_THROWS_WITH_AS(nn::generate_batch(model, {{1, 2}, {}, {3}}, o),
                       "generate_batch: prompt 1 is empty; each prompt must contain at least one token", value_error);
  CHECK_THROWS_WITH_AS(nn::generate_batch(model, {{1}}, {.max_new_tokens = -1}),
                       "generate_batch: max_new_tokens must be ≥ 0, got -1", value_error);
  CHECK_THROWS_WITH_AS(nn::generate(model, {}, o), "generate: the prompt must contain at least one token", value_error);
  CHECK_THROWS_WITH_AS(nn::generate_batch(model, {{1, 2, 3}, {1, 99}}, o),
                       "transformer_lm: token id 99 at (1, 1) is outside the vocabulary [0, 23)", value_error);
}

TEST_CASE("generate_batch and the ragged cache: the documentation's examples") {
  nn::transformer_lm<float> model(small_config(), 1);
  // [snippet generate_batch]
  const std::vector<std::vector<std::int64_t>> prompts = {{5, 1, 7}, {2}, {9, 9, 4, 1, 3}};  // any lengths
  const nn::generation_options o{.max_new_tokens = 8, .sampling = {.temperature = 0.8}, .seed = 1};
  std::vector<std::size_t> counts(prompts.size());
  const auto out = nn::generate_batch(model, prompts, o, [&](std::size_t i, std::int64_t) { ++counts[i]; });
  // out[i]: prompts[i] and up to 8 new tokens — what generate gives prompts[i] alone with .stream = i
  // [end snippet]
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    auto alone_options = o;
    alone_options.stream = i;
    CHECK(out[i] == nn::generate(model, prompts[i], alone_options));
    CHECK(counts[i] == 8);
  }
  // [snippet ragged_cache]
  auto cache = model.make_cache(3);                       // (3, K, context_length, Dh) per layer
  auto next = model.last_logits(prompts, cache);          // (3, V): the three prompts, one call
  CHECK(cache.lengths == std::vector<index_t>{3, 1, 5});  // one length per sequence
  const std::vector<std::vector<std::int64_t>> step = {{11}, {}, {4}};
  next = model.last_logits(step, cache);                  // (3, V): sequences 0 and 2 go on; row 1 is 0
  cache.truncate(2, 0);                                   // sequence 2 starts over
  const auto all = model.ragged_logits(step, cache);      // (2, V): packed, the rows of sequences 0 and 2
  // [end snippet]
  CHECK(cache.lengths == std::vector<index_t>{5, 1, 1});
  CHECK(all.extent(0) == 2);
  CHECK(next.extent(0) == 3);
}
