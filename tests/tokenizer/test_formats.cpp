// Tests of einlm/tokenizer/formats.hpp: GPT-2 vocab.json/merges.txt (with and without #version),
// tiktoken rank files (byte-identical to tiktoken's own writer for GPT-2), HF tokenizer.json (both
// merge spellings), round trips, and malformed files rejected with file and line, all-or-nothing.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <set>

#include "support.hpp"

using namespace einlm_test;

namespace {

struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    path = std::filesystem::temp_directory_path() /
           ("einlm_formats_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    std::filesystem::create_directories(path);
  }
  ~temp_dir() { std::filesystem::remove_all(path); }
  std::string file(const std::string& name, std::string_view content = {}) const {
    const auto p = (path / name).string();
    if (!content.empty()) tk::detail::write_file(p, content);
    return p;
  }
  static int& counter() {
    static int n = 0;
    return n;
  }
};

tk::bpe_model tiny_model() {
  tk::bpe_model m;
  for (int i = 0; i < 256; ++i) m.vocab.emplace_back(1, static_cast<char>(tk::detail::gpt2_bytes.byte[i]));
  m.vocab.push_back(" t");
  m.vocab.push_back("he");
  m.vocab.push_back(" the");
  m.merges = {{" ", "t"}, {"h", "e"}, {" t", "he"}};
  m.vocab.push_back("<|endoftext|>");
  m.special_tokens = {"<|endoftext|>"};
  return m;
}

}  // namespace

TEST_CASE("formats: GPT-2's byte to unicode map") {
  CHECK(tk::byte_to_unicode(' ') == U'Ġ');
  CHECK(tk::byte_to_unicode('\n') == U'Ċ');
  CHECK(tk::byte_to_unicode('\t') == U'ĉ');
  CHECK(tk::byte_to_unicode(0xAD) == U'Ń');
  CHECK(tk::byte_to_unicode('A') == U'A');
  std::set<char32_t> seen;
  std::string all, back;
  for (int b = 0; b < 256; ++b) {
    seen.insert(tk::byte_to_unicode(static_cast<unsigned char>(b)));
    all += static_cast<char>(b);
  }
  CHECK(seen.size() == 256);
  CHECK(tk::unicode_to_bytes(tk::bytes_to_unicode(all), back));
  CHECK(back == all);
  CHECK_FALSE(tk::unicode_to_bytes("€", back));
}

TEST_CASE("formats: GPT-2 files load with and without a #version line, and round-trip") {
  const temp_dir d;
  const auto m = tiny_model();
  tk::save_gpt2(m, d.file("vocab.json"), d.file("merges.txt"));
  CHECK(read(d.file("merges.txt")).starts_with("#version: 0.2\n"));
  const auto loaded = tk::load_gpt2(d.file("vocab.json"), d.file("merges.txt"), {"<|endoftext|>"});
  CHECK(loaded.vocab == m.vocab);
  CHECK(loaded.merges == m.merges);
  const auto no_header = d.file("merges2.txt", "\xC4\xA0 t\r\nh e\n\n\xC4\xA0t he");  // CRLF, blank line, no final newline
  CHECK(tk::load_gpt2(d.file("vocab.json"), no_header).merges == m.merges);
  const tk::bpe_tokenizer tok(loaded);
  CHECK(tok.encode("the the<|endoftext|>") == std::vector<tk::token_id>{'t' - '!', 257, 258, 259});
}

TEST_CASE("formats: the GPT-2 fixture loads, and its tiktoken file is byte-identical to tiktoken's") {
  EINLM_REQUIRE_FIXTURES(fx);
  const auto m = tk::load_gpt2(fx + "gpt2_vocab.json", fx + "gpt2_merges.txt");
  CHECK(m.vocab.size() == 50257);
  CHECK(m.merges.size() == 50000);
  CHECK(m.vocab[220] == " ");
  CHECK(m.vocab[198] == "\n");
  auto ordinary = m;
  ordinary.vocab.pop_back();  // <|endoftext|>: tiktoken keeps it out of the rank file
  const auto text = tk::tiktoken_text(ordinary);
  const auto digests = load_json(data_dir() + "formats_digests.json");
  const auto* want = digests.find("gpt2.tiktoken");
  REQUIRE(want != nullptr);
  CHECK(text.size() == std::stoul(want->find("bytes")->text));
  CHECK(hex64(fnv1a(text)) == want->find("fnv1a64")->text);
  // ... and loads back to the same encodings under the rank rule.
  const temp_dir d;
  tk::detail::write_file(d.file("gpt2.tiktoken"), text);
  const tk::bpe_tokenizer ranks(tk::load_tiktoken(d.file("gpt2.tiktoken"), {"<|endoftext|>"}));
  const auto& merges = gpt2(fx);
  const auto sample = read(fx + "tinystories_sample.txt");
  CHECK(ranks.encode(sample) == merges.encode(sample));
}

TEST_CASE("formats: HF tokenizer.json round-trips; legacy \"a b\" merges load too") {
  const temp_dir d;
  const auto m = tiny_model();
  tk::save_hf_json(m, d.file("tokenizer.json"));
  const auto loaded = tk::load_hf_json(d.file("tokenizer.json"));
  CHECK(loaded.vocab == m.vocab);
  CHECK(loaded.merges == m.merges);
  CHECK(loaded.special_tokens == m.special_tokens);
  auto legacy = read(d.file("tokenizer.json"));
  const auto at = legacy.find("\"merges\": [");
  REQUIRE(at != std::string::npos);
  legacy = legacy.substr(0, at) + "\"merges\": [\"\xC4\xA0 t\", \"h e\", \"\xC4\xA0t he\"]\n  }\n}\n";
  CHECK(tk::parse_hf_json(legacy, "legacy.json").merges == m.merges);
}

TEST_CASE("formats: tiktoken files round-trip; unrepresentable vocabularies are refused") {
  const temp_dir d;
  const auto m = tiny_model();
  tk::save_tiktoken(m, d.file("tiny.tiktoken"));
  const tk::bpe_tokenizer a(m), b(tk::load_tiktoken(d.file("tiny.tiktoken"), {"<|endoftext|>"}));
  for (const char* s : {"the the", " then", "<|endoftext|> the", "hello"}) CHECK(a.encode(s) == b.encode(s));
  auto special_first = m;
  special_first.vocab.insert(special_first.vocab.begin(), special_first.vocab.back());
  special_first.vocab.pop_back();
  CHECK_THROWS_WITH_AS(tk::tiktoken_text(special_first), doctest::Contains("comes after special token 0"),
                       einlm::tokenizer_error);
  auto duplicate = m;  // two merges making " the"
  duplicate.vocab.insert(duplicate.vocab.end() - 1, " th");
  duplicate.merges.push_back({" t", "h"});
  duplicate.merges.push_back({" th", "e"});
  CHECK_THROWS_WITH_AS(tk::tiktoken_text(duplicate), doctest::Contains("makes token 258 again"), einlm::tokenizer_error);
}

TEST_CASE("formats: malformed files are rejected with the file name and line") {
  const temp_dir d;
  const auto m = tiny_model();
  tk::save_gpt2(m, d.file("vocab.json"), d.file("merges.txt"));
  const auto vocab = d.file("vocab.json");
  const auto merges = d.file("merges.txt");
  struct bad {
    const char* name;
    const char* content;
    const char* message;
    bool is_merges;
  };
  const bad cases[] = {
      {"m1.txt", "#version: 0.2\n\xC4\xA0 t\nh e x\n", "m1.txt:3: expected two tokens separated by one space", true},
      {"m2.txt", "\xC4\xA0 t\nhe\n", "m2.txt:2: expected two tokens", true},
      {"m3.txt", "\xC4\xA0 t\n\xE2\x82\xAC e\n", "m3.txt:2: token not spelled in GPT-2's byte-level alphabet", true},
      {"v1.json", "{\"a\": 0,\n \"b\": 0}", "v1.json:2:7: token id 0 is used twice", false},
      {"v2.json", "{\"a\": 0,\n \"b\": 5}", "v2.json:2:7: token id 5 of \"b\" is not below the number of entries", false},
      {"v3.json", "{\"a\": 0,\n \"b\" 1}", "v3.json:2:6: expected ':' after an object key", false},
      {"v4.json", "{\"a\": -1}", "v4.json:1:7: a token id must be a non-negative integer", false},
      {"v5.json", "[1, 2]", "v5.json:1:1: the vocabulary must be a JSON object", false},
      {"v6.json", "{\"a\": 0, \"\\uD800\": 1}", "v6.json:1:11: lone high surrogate", false},
      {"v7.json", "{\"a\": 0", "v7.json:1:8: expected ',' or '}' in an object", false},
  };
  for (const auto& c : cases) {
    const auto path = d.file(c.name, c.content);
    INFO(std::string(c.name));
    if (c.is_merges)
      CHECK_THROWS_WITH_AS(tk::load_gpt2(vocab, path), doctest::Contains(c.message), einlm::tokenizer_error);
    else
      CHECK_THROWS_WITH_AS(tk::load_gpt2(path, merges), doctest::Contains(c.message), einlm::tokenizer_error);
  }
  const auto t1 = d.file("t1.tiktoken", "IQ== 0\nIg== 1\nIw== x\n");
  CHECK_THROWS_WITH_AS(tk::load_tiktoken(t1), doctest::Contains("t1.tiktoken:3: invalid rank \"x\""), einlm::tokenizer_error);
  const auto t2 = d.file("t2.tiktoken", "IQ== 0\nI@== 1\n");
  CHECK_THROWS_WITH_AS(tk::load_tiktoken(t2), doctest::Contains("t2.tiktoken:2: invalid base64"), einlm::tokenizer_error);
  const auto t3 = d.file("t3.tiktoken", "IQ== 0\nIg== 0\n");
  CHECK_THROWS_WITH_AS(tk::load_tiktoken(t3), doctest::Contains("t3.tiktoken:2: rank 0 already given on line 1"),
                       einlm::tokenizer_error);
  const auto h1 = d.file("h1.json", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}");
  CHECK_THROWS_WITH_AS(tk::load_hf_json(h1), doctest::Contains("h1.json:1:20: model.type must be \"BPE\""),
                       einlm::tokenizer_error);
  const auto h2 = d.file("h2.json",
                         "{\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true},\n"
                         " \"model\": {\"type\": \"BPE\", \"vocab\": {}}}");
  CHECK_THROWS_WITH_AS(tk::load_hf_json(h2), doctest::Contains("h2.json:1:61: add_prefix_space is not supported"),
                       einlm::tokenizer_error);
  CHECK_THROWS_WITH_AS(tk::load_gpt2(d.file("missing.json"), merges), doctest::Contains("missing.json: cannot open"),
                       einlm::tokenizer_error);
  // A merge whose parts are not in the vocabulary: the tokenizer names the merge.
  const auto m4 = d.file("m4.txt", "\xC4\xA0 t\nq z\n");
  CHECK_THROWS_WITH_AS(tk::bpe_tokenizer(tk::load_gpt2(vocab, m4)), doctest::Contains("merge 2 (\"q\" \"z\"): the result \"qz\""),
                       einlm::tokenizer_error);
}

TEST_CASE("formats: a failed load leaves the existing tokenizer untouched") {
  const temp_dir d;
  const auto m = tiny_model();
  tk::save_gpt2(m, d.file("vocab.json"), d.file("merges.txt"));
  tk::bpe_tokenizer tok(tk::load_gpt2(d.file("vocab.json"), d.file("merges.txt"), {"<|endoftext|>"}));
  const auto before = tok.encode("the the<|endoftext|>");
  const auto broken = d.file("broken.txt", "\xC4\xA0 t\nh e\n\xC4\xA0t\n");
  CHECK_THROWS_AS(tok = tk::bpe_tokenizer(tk::load_gpt2(d.file("vocab.json"), broken)), einlm::tokenizer_error);
  CHECK(tok.vocab_size() == 260);
  CHECK(tok.encode("the the<|endoftext|>") == before);
}
