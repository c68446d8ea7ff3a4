// Tests of einlm/tokenizer/bpe.hpp: the CS336 tokenizer tests with the fixtures, tiktoken GPT-2
// goldens (tools/make_tokenizer_goldens.py), round trips, special tokens, pathological inputs
// (linear work asserted by counting), decoding errors, threads, and the tiktoken rank rule.
#include <doctest/doctest.h>

#include "support.hpp"

using namespace einlm_test;

namespace {

tk::bpe_tokenizer gpt2_with(const std::string& fx, std::vector<std::string> specials) {
  return tk::bpe_tokenizer(tk::load_gpt2(fx + "gpt2_vocab.json", fx + "gpt2_merges.txt", std::move(specials)));
}

std::string repeat(std::string_view s, std::size_t n) {
  std::string out;
  out.reserve(s.size() * n);
  for (std::size_t i = 0; i < n; ++i) out += s;
  return out;
}

std::string lcg_letters(std::size_t n) {  // tools/make_tokenizer_goldens.py: lcg_letters
  std::uint64_t x = 12345;
  std::string out;
  for (std::size_t i = 0; i < n; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    out += static_cast<char>('a' + (x >> 33) % 26);
  }
  return out;
}

const tk::encode_options tiktoken_defaults{.allowed = tk::special_set::none(),
                                           .disallowed = tk::special_set::all()};

}  // namespace

TEST_CASE("bpe: every CS336 tokenizer test input gives the expected ids (identical to tiktoken)") {
  EINLM_REQUIRE_FIXTURES(fx);
  const auto cases = load_json(fx + "derived/tokenizer_expected_ids.json");
  int n = 0;
  for (const auto& c : cases.items) {
    std::vector<std::string> specials;
    for (const auto& s : c.find("special_tokens")->items) specials.push_back(s.text);
    const auto tok = gpt2_with(fx, specials);
    const std::string text = c.find("input_file") ? read(fx + c.find("input_file")->text)
                                                  : c.find("input_text")->text;
    const auto want = ids_of(*c.find("expected_ids"));
    INFO(c.find("test")->text);
    const auto ids = tok.encode(text);
    CHECK(ids == want);
    CHECK(tok.decode(ids) == text);  // test_*_roundtrip
    ++n;
  }
  CHECK(n == 12);
}

TEST_CASE("bpe: the overlapping special tokens resolve to the longest match") {
  EINLM_REQUIRE_FIXTURES(fx);
  const auto tok = gpt2_with(fx, {"<|endoftext|>", "<|endoftext|><|endoftext|>"});
  const auto ids = tok.encode("Hello, how <|endoftext|><|endoftext|> are you?<|endoftext|>");
  CHECK(std::count(ids.begin(), ids.end(), 50256) == 1);
  CHECK(std::count(ids.begin(), ids.end(), 50257) == 1);
  CHECK(tok.token_bytes(50257) == "<|endoftext|><|endoftext|>");
}

TEST_CASE("bpe: identical to tiktoken's GPT-2 encoding on the committed goldens") {
  EINLM_REQUIRE_FIXTURES(fx);
  const auto& tok = gpt2(fx);
  const auto cases = load_json(data_dir() + "gpt2_goldens.json");
  int checked = 0;
  for (const auto& c : cases.items) {
    INFO(c.find("name")->text);
    if (const auto* ids = c.find("ids")) {
      const auto& text = c.find("text")->text;
      const auto got = c.find("allowed_special") ? tok.encode(text) : tok.encode_ordinary(text);
      CHECK(got == ids_of(*ids));
      CHECK(tok.decode(got) == text);
    } else {
      std::string text;
      if (c.find("lcg_letters")) text = lcg_letters(std::stoul(c.find("lcg_letters")->text));
      else if (c.find("fixture")) text = read(fx + c.find("fixture")->text);
      else text = c.find("prefix")->text + repeat(c.find("repeat")->text, std::stoul(c.find("count")->text)) +
                  c.find("suffix")->text;
      tk::encode_stats st;
      const auto got = tok.encode_ordinary(text, &st);
      CHECK(got.size() == std::stoul(c.find("n_ids")->text));
      CHECK(hex64(digest(got)) == c.find("digest")->text);
      CHECK(tok.decode_bytes(got) == text);
      // Linear work: a bounded number of lookups and heap operations per byte.
      CHECK(st.pair_lookups <= 8 * text.size() + 16);
      CHECK(st.heap_ops <= 8 * text.size() + 16);
    }
    ++checked;
  }
  CHECK(checked > 450);
}

TEST_CASE("bpe: long pieces cost linear work; doubling the input doubles the work") {
  EINLM_REQUIRE_FIXTURES(fx);
  const auto& tok = gpt2(fx);
  for (const std::string unit : {"x", "^", "0", " ", "'s", "ab", "\n", "🙃"}) {
    std::uint64_t work[2];
    for (int k = 0; k < 2; ++k) {
      const auto text = repeat(unit, std::size_t(100000) << k) + "x";
      tk::encode_stats st;
      const auto ids = tok.encode_ordinary(text, &st);
      CHECK(tok.decode_bytes(ids) == text);
      work[k] = st.pair_lookups + st.heap_ops + st.pretokenize.units;
    }
    INFO("unit ", tk::detail::quote_bytes(unit));
    CHECK(double(work[1]) / double(work[0]) < 2.15);
  }
}

TEST_CASE("bpe: round trips on random text and arbitrary bytes") {
  EINLM_REQUIRE_FIXTURES(fx);
  const auto& tok = gpt2(fx);
  rng r(42);
  const std::vector<std::string> atoms = {"a", "b", "the", " ", "  ", "\n", "'s", "'", "0", "12",
                                          "é", "日本", "🙃", "\u00a0", "\t", "!", "<|endoftext|>", "x"};
  for (int t = 0; t < 2000; ++t) {
    std::string s;
    for (std::size_t n = r.below(12); n > 0; --n) s += atoms[r.below(atoms.size())];
    CHECK(tok.decode(tok.encode(s)) == s);
    CHECK(tok.decode(tok.encode_ordinary(s)) == s);
    std::string b;
    for (std::size_t n = r.below(16); n > 0; --n) b += static_cast<char>(r.below(256));
    const auto ids = tok.encode_ordinary(b);
    CHECK(tok.decode_bytes(ids) == b);
    CHECK(tok.decode(ids) == tk::to_valid_utf8(b));
  }
}

TEST_CASE("bpe: allowed and disallowed special tokens follow tiktoken") {
  EINLM_REQUIRE_FIXTURES(fx);
  const auto& tok = gpt2(fx);
  const std::string text = "hello <|endoftext|>";
  // tiktoken: encode(text) raises; encode(text, allowed_special="all") -> [31373, 220, 50256]
  CHECK_THROWS_WITH_AS(tok.encode(text, tiktoken_defaults),
                       doctest::Contains("disallowed special token \"<|endoftext|>\" at byte 6"),
                       einlm::tokenizer_error);
  CHECK(tok.encode(text, {.allowed = tk::special_set::all(), .disallowed = tk::special_set::all()}) ==
        std::vector<tk::token_id>{31373, 220, 50256});
  CHECK(tok.encode(text, {.allowed = {"<|endoftext|>"}}) == std::vector<tk::token_id>{31373, 220, 50256});
  // disallowed_special=() : ordinary text
  CHECK(tok.encode(text, {.allowed = tk::special_set::none(), .disallowed = tk::special_set::none()}) ==
        std::vector<tk::token_id>{31373, 1279, 91, 437, 1659, 5239, 91, 29});
  CHECK(tok.encode_ordinary(text) == tok.encode(text, {.allowed = tk::special_set::none()}));
  // An explicit disallowed list may name any text.
  CHECK_THROWS_AS(tok.encode("a secret", {.disallowed = {"secret"}}), einlm::tokenizer_error);
  CHECK_THROWS_AS(tok.encode_batch(std::vector<std::string_view>{"ok", text}, tiktoken_defaults),
                  einlm::tokenizer_error);
}

TEST_CASE("bpe: decoding checks ids and repairs UTF-8") {
  EINLM_REQUIRE_FIXTURES(fx);
  const auto& tok = gpt2(fx);
  CHECK_THROWS_WITH_AS(tok.decode(std::vector<tk::token_id>{31373, 60000}),
                       doctest::Contains("token id 60000 at position 1 is out of range (vocabulary size 50257)"),
                       einlm::tokenizer_error);
  // 🙃 is [8582, 247, 225]; the first token alone is half a character.
  CHECK(tok.decode(std::vector<tk::token_id>{8582}) == "\xEF\xBF\xBD");
  CHECK(tok.decode_bytes(std::vector<tk::token_id>{8582}) == "\xF0\x9F");
  CHECK(tok.decode(std::vector<tk::token_id>{8582, 247, 225}) == "🙃");
}

TEST_CASE("bpe: batch and multi-threaded encoding give the same ids as one thread") {
  EINLM_REQUIRE_FIXTURES(fx);
  const auto& tok = gpt2(fx);
  std::string big;
  const auto corpus = read(fx + "corpus.en");
  const auto stories = read(fx + "tinystories_sample.txt");
  while (big.size() < (std::size_t(3) << 20)) big += corpus + stories + "  \n\n" + repeat("x", 3000) + "\n\n";
  const auto one = tok.encode(big);
  for (unsigned threads : {2u, 3u}) CHECK(tok.encode(big, {.threads = threads}) == one);
  std::vector<std::string_view> docs = {corpus, stories, "", "hello <|endoftext|> world",
                                       std::string_view(big).substr(100, 5000)};
  const auto batch = tok.encode_batch(docs, {}, 2);
  REQUIRE(batch.size() == docs.size());
  for (std::size_t i = 0; i < docs.size(); ++i) CHECK(batch[i] == tok.encode(docs[i]));
}

TEST_CASE("bpe: GPT-2 as a tiktoken rank vocabulary encodes the same (rank rule == merges rule)") {
  EINLM_REQUIRE_FIXTURES(fx);
  const auto& merges = gpt2(fx);
  auto model = merges.model();
  model.merges.clear();
  model.rule = tk::merge_rule::ranks;
  model.vocab.pop_back();  // <|endoftext|>: tiktoken keeps special tokens out of the ranks
  const tk::bpe_tokenizer ranks(model);
  CHECK(ranks.vocab_size() == 50257);
  CHECK(ranks.special_id("<|endoftext|>") == 50256u);
  for (const char* f : {"corpus.en", "german.txt", "address.txt", "tinystories_sample.txt"}) {
    const auto text = read(fx + f);
    CHECK(ranks.encode(text) == merges.encode(text));
  }
  CHECK(ranks.encode(read(data_dir() + "extra_text.txt")) == merges.encode(read(data_dir() + "extra_text.txt")));
}

TEST_CASE("bpe: a model is validated before use") {
  tk::bpe_model m;
  for (int b = 0; b < 256; ++b) m.vocab.emplace_back(1, static_cast<char>(b));
  m.vocab.push_back("ab");
  m.merges = {{"a", "b"}};
  const tk::bpe_tokenizer ok(m);
  CHECK(ok.encode("abab") == std::vector<tk::token_id>{256, 256});
  auto bad = m;
  bad.merges = {{"a", "c"}};
  CHECK_THROWS_WITH_AS(tk::bpe_tokenizer{bad}, doctest::Contains("merge 1 (\"a\" \"c\"): the result \"ac\" is not in the vocabulary"),
                       einlm::tokenizer_error);
  bad = m;
  bad.vocab.push_back("ab");
  CHECK_THROWS_WITH_AS(tk::bpe_tokenizer{bad}, doctest::Contains("tokens 256 and 257 have the same bytes \"ab\""),
                       einlm::tokenizer_error);
  bad = m;
  bad.vocab[97] = "zz";
  CHECK_THROWS_WITH_AS(tk::bpe_tokenizer{bad}, doctest::Contains("the single byte \"a\" is missing"), einlm::tokenizer_error);
  // A token that BPE cannot rebuild from its bytes is never emitted by the whole-piece shortcut.
  auto unreachable = m;
  unreachable.vocab.push_back("xyz");
  const tk::bpe_tokenizer t2(unreachable);
  CHECK(t2.encode("xyz") == std::vector<tk::token_id>{'x', 'y', 'z'});
  // ... but under tiktoken's rank rule any piece that is a token is emitted whole.
  unreachable.merges.clear();
  unreachable.rule = tk::merge_rule::ranks;
  CHECK(tk::bpe_tokenizer(unreachable).encode("xyz") == std::vector<tk::token_id>{257});
}
