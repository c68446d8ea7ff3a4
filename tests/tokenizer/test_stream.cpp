// Tests of einlm/tokenizer/stream.hpp: for random chunkings (inside characters, inside special
// tokens, inside whitespace runs), streaming gives exactly the ids of whole-text encoding, and the
// buffer stays small.
#include <doctest/doctest.h>

#include <sstream>

#include "support.hpp"

using namespace einlm_test;

namespace {

std::vector<tk::token_id> streamed(const tk::bpe_tokenizer& tok, std::string_view text,
                                   const std::vector<std::size_t>& cuts, const tk::encode_options& o,
                                   std::size_t* max_buffer = nullptr) {
  tk::stream_encoder enc(tok, o);
  std::vector<tk::token_id> out;
  std::size_t prev = 0;
  for (auto c : cuts) {
    enc.push(text.substr(prev, c - prev), out);
    if (max_buffer) *max_buffer = std::max(*max_buffer, enc.buffered());
    prev = c;
  }
  enc.push(text.substr(prev), out);
  enc.finish(out);
  return out;
}

std::vector<std::size_t> random_cuts(rng& r, std::size_t size, std::size_t count) {
  std::vector<std::size_t> cuts;
  for (std::size_t i = 0; i < count; ++i) cuts.push_back(r.below(size + 1));
  std::sort(cuts.begin(), cuts.end());
  return cuts;
}

}  // namespace

TEST_CASE("stream: every chunking gives the ids of the whole text") {
  EINLM_REQUIRE_FIXTURES(fx);
  const auto tok = tk::bpe_tokenizer(tk::load_gpt2(fx + "gpt2_vocab.json", fx + "gpt2_merges.txt",
                                                   {"<|endoftext|>", "<|endoftext|><|endoftext|>"}));
  const std::string texts[] = {
      read(fx + "tinystories_sample.txt"),
      read(data_dir() + "extra_text.txt"),
      "a \n\n\nb  c'll 'd 're\t\t x<|endoftext|><|endoftext|><|endoftext|>\n\n  <|endoftext|",
      "Héllò hôw <|endoftext|><|endoftext|> are ü? 🙃<|endoftext|>   ",
  };
  rng r(7);
  for (const auto& text : texts) {
    for (const auto& o : {tk::encode_options{}, tk::encode_options{.allowed = tk::special_set::none()}}) {
      const auto want = tok.encode(text, o);
      for (int t = 0; t < 300; ++t) {
        const auto cuts = random_cuts(r, text.size(), 1 + r.below(t < 150 ? 8 : 200));
        CHECK(streamed(tok, text, cuts, o) == want);
      }
      // Byte by byte: the hardest case.
      std::vector<std::size_t> every(text.size());
      for (std::size_t i = 0; i < text.size(); ++i) every[i] = i;
      CHECK(streamed(tok, text, every, o) == want);
    }
  }
}

TEST_CASE("stream: random text from a small alphabet of tricky atoms") {
  EINLM_REQUIRE_FIXTURES(fx);
  const auto tok = tk::bpe_tokenizer(tk::load_gpt2(fx + "gpt2_vocab.json", fx + "gpt2_merges.txt",
                                                   {"<|endoftext|>", "<|x|>", "\n<|y|>"}));
  const std::vector<std::string> atoms = {" ", "  ", "\n", "\r\n", "'", "s", "ll", "re", "a", "1",
                                          "é", "\xE2\x82\xAC", "\xF0\x9F\x99\x83", "\u3000", "<|", "|>",
                                          "<|endoftext|>", "<|x|>", "\n<|y|>", "!", "\xFF"};
  rng r(99);
  for (int t = 0; t < 3000; ++t) {
    std::string text;
    for (std::size_t n = 1 + r.below(30); n > 0; --n) text += atoms[r.below(atoms.size())];
    const auto cuts = random_cuts(r, text.size(), 1 + r.below(10));
    INFO(tk::detail::quote_bytes(text, 200));
    CHECK(streamed(tok, text, cuts, {}) == tok.encode(text));
  }
}

TEST_CASE("stream: CS336 encode_iterable over the lines of a file; memory stays O(chunk)") {
  EINLM_REQUIRE_FIXTURES(fx);
  const auto tok = tk::bpe_tokenizer(tk::load_gpt2(fx + "gpt2_vocab.json", fx + "gpt2_merges.txt", {"<|endoftext|>"}));
  std::string text;
  while (text.size() < (std::size_t(1) << 20)) text += read(fx + "tinystories_sample.txt");
  std::vector<std::size_t> lines;
  for (std::size_t i = 0; i < text.size(); ++i)
    if (text[i] == '\n') lines.push_back(i + 1);
  std::size_t max_buffer = 0;
  CHECK(streamed(tok, text, lines, {}, &max_buffer) == tok.encode(text));
  CHECK(max_buffer < 2000);  // a line plus a held-back pre-token, never the text
  // encode_stream over an istream, 4 KiB chunks.
  std::istringstream in(text);
  std::vector<tk::token_id> ids;
  std::size_t batches = 0;
  tk::encode_stream(tok, in, [&](std::span<const tk::token_id> b) {
    ids.insert(ids.end(), b.begin(), b.end());
    ++batches;
  }, {}, 4096);
  CHECK(ids == tok.encode(text));
  CHECK(batches > 100);
}

TEST_CASE("stream: a long whitespace run is re-scanned amortised-linearly") {
  EINLM_REQUIRE_FIXTURES(fx);
  const auto& tok = gpt2(fx);
  std::uint64_t units[2];
  for (int k = 0; k < 2; ++k) {
    const std::string text = std::string(std::size_t(100000) << k, ' ') + "x";
    tk::stream_encoder enc(tok);
    std::vector<tk::token_id> out;
    for (char c : text) enc.push(std::string_view(&c, 1), out);
    enc.finish(out);
    CHECK(out == tok.encode(text));
    units[k] = enc.stats().pretokenize.units;
  }
  CHECK(double(units[1]) / double(units[0]) < 2.2);
}

TEST_CASE("stream: disallowed special tokens are found across chunk boundaries") {
  EINLM_REQUIRE_FIXTURES(fx);
  const auto& tok = gpt2(fx);
  tk::stream_encoder enc(tok, {.allowed = tk::special_set::none(), .disallowed = tk::special_set::all()});
  std::vector<tk::token_id> out;
  enc.push("hello <|endof", out);
  CHECK_THROWS_WITH_AS(enc.push("text|> world", out), doctest::Contains("at byte 6"), einlm::tokenizer_error);
}

TEST_CASE("stream: decoding in batches never splits a character") {
  EINLM_REQUIRE_FIXTURES(fx);
  const auto& tok = gpt2(fx);
  const std::string text = read(data_dir() + "extra_text.txt") + "🙃🙃 \xF0\x9F end \xE2\x82";
  const auto ids = tok.encode_ordinary(text);
  const auto whole = tok.decode(ids);
  rng r(17);
  for (int t = 0; t < 200; ++t) {
    tk::stream_decoder dec(tok);
    std::string out;
    for (std::size_t i = 0; i < ids.size();) {
      const std::size_t n = std::min(ids.size() - i, 1 + r.below(t < 100 ? 3 : 40));
      dec.push(std::span<const tk::token_id>(ids).subspan(i, n), out);
      i += n;
    }
    dec.finish(out);
    CHECK(out == whole);
  }
  // One token at a time: 🙃 is three GPT-2 tokens, and no U+FFFD appears on the way.
  tk::stream_decoder dec(tok);
  std::string out;
  for (const auto id : tok.encode("🙃")) {
    dec.push(std::span<const tk::token_id>(&id, 1), out);
    CHECK(out.find("\xEF\xBF\xBD") == std::string::npos);
  }
  dec.finish(out);
  CHECK(out == "🙃");
}
