// Tests of einlm/tokenizer/utf8.hpp: strict decoding and Python-compatible U+FFFD repair.
#include <doctest/doctest.h>

#include "support.hpp"

using namespace einlm_test;

namespace {
std::string unhex(std::string_view h) {
  std::string out;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2) out += static_cast<char>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16));
  return out;
}
}  // namespace

TEST_CASE("utf8: well-formed sequences and their lengths") {
  auto len = [](std::string_view s) {
    auto p = reinterpret_cast<const unsigned char*>(s.data());
    return tk::utf8_sequence_length(p, p + s.size());
  };
  CHECK(len("a") == 1);
  CHECK(len("\xC3\xA9") == 2);
  CHECK(len("\xE2\x82\xAC") == 3);
  CHECK(len("\xF0\x9F\x99\x83") == 4);
  CHECK(len("\xC0\x80") == 0);          // overlong
  CHECK(len("\xE0\x80\x80") == 0);      // overlong
  CHECK(len("\xED\xA0\x80") == 0);      // surrogate
  CHECK(len("\xF4\x90\x80\x80") == 0);  // above U+10FFFF
  CHECK(len("\xE2\x82") == 0);          // truncated
  CHECK(tk::is_valid_utf8("Héllò 🙃"));
  CHECK_FALSE(tk::is_valid_utf8("\xFF"));
  std::string s;
  for (char32_t cp : {U'a', U'é', U'€', U'🙃', U'\U0010FFFF'}) tk::utf8_append(s, cp);
  CHECK(s == "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x99\x83\xF4\x8F\xBF\xBF");
}

TEST_CASE("utf8: repair replaces maximal subparts, byte-for-byte like Python's errors='replace'") {
  CHECK(tk::to_valid_utf8("a\xE2\x82" "b") == "a\xEF\xBF\xBD" "b");        // one U+FFFD for E2 82
  CHECK(tk::to_valid_utf8("\xED\xA0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // three
  const auto cases = load_json(data_dir() + "utf8_replace.json");
  REQUIRE(cases.items.size() >= 100);
  for (const auto& c : cases.items) {
    const auto in = unhex(c.find("bytes")->text);
    const auto want = unhex(c.find("replaced")->text);
    INFO("input ", c.find("bytes")->text);
    CHECK(tk::to_valid_utf8(in) == want);
  }
}

TEST_CASE("utf8: incomplete tails are what a chunk boundary can cut") {
  CHECK(tk::utf8_incomplete_tail("abc") == 0);
  CHECK(tk::utf8_incomplete_tail("ab\xE2\x82") == 2);
  CHECK(tk::utf8_incomplete_tail("ab\xE2\x82\xAC") == 0);
  CHECK(tk::utf8_incomplete_tail("\xF0\x9F\x99") == 3);
  CHECK(tk::utf8_incomplete_tail("\xF0") == 1);
  CHECK(tk::utf8_incomplete_tail("\xFF") == 0);       // never valid: not held back
  CHECK(tk::utf8_incomplete_tail("\xE0\x80") == 0);   // can no longer become valid
}
