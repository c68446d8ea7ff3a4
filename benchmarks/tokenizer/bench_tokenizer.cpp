// bench_tokenizer — encode/decode/pre-tokenize/train throughput of einlm's byte-level BPE, with a
// same-run baseline: the textbook GPT-2 encoder (a rank map keyed by byte-string pairs, merging
// the lowest-ranked pair until none is left, as in OpenAI's encoder.py) on the same pre-tokens.
// The peers (tiktoken, HF tokenizers) run from benchmarks/tokenizer/peers.py, which also runs
// this program and prints the ratios; see docs/performance.md.
//
// Environment:
//   EINLM_BENCH_CORPUS  text file to encode (default: the fixtures' corpus.en repeated to 4 MB)
//   EINLM_FIXTURES_DIR  cs336 fixtures: GPT-2 vocab.json/merges.txt (without them, a 2,000-token
//                       vocabulary is trained on the corpus first)
//   EINLM_BENCH_SMOKE   set by ctest: a 64 KB corpus, so the smoke run takes milliseconds
// The corpus is cut into ~10 KB documents at newlines (as peers.py does); the label of the encode
// benchmarks is the FNV-1a digest of all ids, so peers.py can check that every tool agrees.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "einlm/tokenizer.hpp"

namespace tk = einlm::tokenizer;

namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return (v && *v) ? v : nullptr;
}

std::string fixtures() {
  const char* d = env("EINLM_FIXTURES_DIR");
  if (!d) return {};
  const auto p = std::filesystem::path(d) / "cs336";
  return std::filesystem::is_directory(p) ? p.string() + "/" : std::string();
}

struct bench_data {
  std::string corpus;
  std::vector<std::string_view> docs;
  tk::bpe_tokenizer tok;
  std::string vocab_name;
};

const bench_data& data() {
  static const bench_data d = [] {
    bench_data b;
    const auto fx = fixtures();
    if (const char* path = env("EINLM_BENCH_CORPUS")) {
      b.corpus = tk::detail::read_file(path);
    } else if (!fx.empty()) {
      const auto base = tk::detail::read_file(fx + "corpus.en");
      while (b.corpus.size() < (std::size_t(4) << 20)) b.corpus += base;
    } else {
      for (int i = 0; b.corpus.size() < (std::size_t(4) << 20); ++i)
        b.corpus += "The tokenizer's " + std::to_string(i) + "th sentence isn't long; it has words, numbers (" +
                    std::to_string(i * 7919) + ") and\n  whitespace.\n";
    }
    if (env("EINLM_BENCH_SMOKE")) b.corpus.resize(std::min<std::size_t>(b.corpus.size(), 1 << 16));
    // ~10 KB documents, cut after a newline (peers.py cuts the same bytes).
    for (std::size_t i = 0; i < b.corpus.size();) {
      auto j = b.corpus.find('\n', i + 10000);
      j = (j == std::string::npos) ? b.corpus.size() : j + 1;
      b.docs.emplace_back(b.corpus.data() + i, j - i);
      i = j;
    }
    if (!fx.empty()) {
      b.tok = tk::bpe_tokenizer(tk::load_gpt2(fx + "gpt2_vocab.json", fx + "gpt2_merges.txt", {"<|endoftext|>"}));
      b.vocab_name = "GPT-2";
    } else {
      tk::train_options o;
      o.vocab_size = 2000;
      o.progress = tk::progress_mode::never;
      tk::bpe_trainer t(o);
      t.add_text(std::string_view(b.corpus).substr(0, 1 << 20));
      b.tok = tk::bpe_tokenizer(t.train());
      b.vocab_name = "trained-2000";
    }
    return b;
  }();
  return d;
}

std::string digest_label(const std::vector<std::vector<tk::token_id>>& ids) {
  std::uint64_t h = 0xCBF29CE484222325ull;
  std::size_t n = 0;
  for (const auto& doc : ids)
    for (auto v : doc) {
      ++n;
      for (int k = 0; k < 4; ++k) {
        h ^= (v >> (8 * k)) & 0xFF;
        h *= 0x100000001B3ull;
      }
    }
  char buf[96];
  std::snprintf(buf, sizeof buf, "%s ids=%zu fnv=%016llx", data().vocab_name.c_str(), n,
                static_cast<unsigned long long>(h));
  return buf;
}

const tk::encode_options ordinary{.allowed = tk::special_set::none(), .disallowed = tk::special_set::none()};

// ours: documents on T threads (tiktoken's encode_ordinary_batch, HF's encode_batch)
void BM_encode(benchmark::State& state) {
  const auto& d = data();
  const auto threads = static_cast<unsigned>(state.range(0));
  std::vector<std::vector<tk::token_id>> ids;
  for (auto _ : state) {
    ids = d.tok.encode_batch(d.docs, ordinary, threads);
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * d.corpus.size()));
  state.SetLabel(digest_label(ids));
}
BENCHMARK(BM_encode)->Arg(1)->Arg(2)->ArgName("threads")->Unit(benchmark::kMillisecond)->UseRealTime();

// ours: the whole corpus as one text on T threads (cut at safe pre-token boundaries)
void BM_encode_one_text(benchmark::State& state) {
  const auto& d = data();
  tk::encode_options o = ordinary;
  o.threads = static_cast<unsigned>(state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(d.tok.encode(d.corpus, o).data());
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * d.corpus.size()));
}
BENCHMARK(BM_encode_one_text)->Arg(1)->Arg(2)->ArgName("threads")->Unit(benchmark::kMillisecond)->UseRealTime();

// ours, pre-tokenization alone
void BM_pretokenize(benchmark::State& state) {
  const auto& d = data();
  for (auto _ : state) {
    std::size_t n = 0;
    tk::for_each_piece(d.corpus, [&](std::string_view) { ++n; });
    benchmark::DoNotOptimize(n);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * d.corpus.size()));
}
BENCHMARK(BM_pretokenize)->Unit(benchmark::kMillisecond);

// baseline: the textbook GPT-2 merge loop (encoder.py's bpe() without its cache) on our pre-tokens
void BM_encode_baseline_textbook(benchmark::State& state) {
  const auto& d = data();
  static const auto ranks = [&] {
    std::map<std::pair<std::string, std::string>, std::size_t> r;
    const auto& merges = d.tok.model().merges;
    for (std::size_t i = 0; i < merges.size(); ++i) r[merges[i]] = i;
    return r;
  }();
  const std::string_view text = std::string_view(d.corpus).substr(0, std::min<std::size_t>(d.corpus.size(), 1 << 20));
  for (auto _ : state) {
    std::size_t n_ids = 0;
    tk::for_each_piece(text, [&](std::string_view piece) {
      std::vector<std::string> word;
      for (char c : piece) word.emplace_back(1, c);
      while (word.size() > 1) {
        std::size_t best = ranks.size(), at = 0;
        for (std::size_t i = 0; i + 1 < word.size(); ++i) {
          const auto it = ranks.find({word[i], word[i + 1]});
          if (it != ranks.end() && it->second < best) {
            best = it->second;
            at = i;
          }
        }
        if (best == ranks.size()) break;
        word[at] += word[at + 1];
        word.erase(word.begin() + static_cast<std::ptrdiff_t>(at) + 1);
      }
      for (const auto& w : word) n_ids += d.tok.find_token(w).has_value();
    });
    benchmark::DoNotOptimize(n_ids);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_encode_baseline_textbook)->Unit(benchmark::kMillisecond);

// ours on worst cases for BPE and for regex engines: one unit repeated to 10^6 bytes (+ "x")
const std::pair<const char*, const char*> k_pathological[] = {
    {"x", "x"}, {"^", "^"}, {"0", "0"}, {" ", "space"}, {"\n", "newline"}, {"'s", "'s"}, {"ab", "ab"}};

void BM_encode_pathological(benchmark::State& state) {
  const auto& d = data();
  const auto& [unit, name] = k_pathological[state.range(0)];
  std::string text;
  while (text.size() < (env("EINLM_BENCH_SMOKE") ? 1000u : 1000000u)) text += unit;
  text += "x";
  for (auto _ : state) benchmark::DoNotOptimize(d.tok.encode_ordinary(text).data());
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
  state.SetLabel(name);
}
BENCHMARK(BM_encode_pathological)->DenseRange(0, std::size(k_pathological) - 1)->Unit(benchmark::kMillisecond);

void BM_decode(benchmark::State& state) {
  const auto& d = data();
  const auto ids = d.tok.encode_ordinary(d.corpus);
  for (auto _ : state) benchmark::DoNotOptimize(d.tok.decode(ids).data());
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * d.corpus.size()));
}
BENCHMARK(BM_decode)->Unit(benchmark::kMillisecond);

// CS336's test_train_bpe_speed case: corpus.en, vocabulary 500 (limit 1.5 s, reference 0.38 s)
void BM_train_corpus_en_500(benchmark::State& state) {
  const auto fx = fixtures();
  if (fx.empty()) {
    state.SkipWithError("needs EINLM_FIXTURES_DIR (corpus.en)");
    return;
  }
  tk::train_options o;
  o.vocab_size = 500;
  o.special_tokens = {"<|endoftext|>"};
  o.threads = 1;
  o.progress = tk::progress_mode::never;
  for (auto _ : state) benchmark::DoNotOptimize(tk::train_bpe({fx + "corpus.en"}, o).merges.size());
}
BENCHMARK(BM_train_corpus_en_500)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
