// Tests of einlm/tokenizer/pretokenize.hpp against Python's `regex` module with GPT-2's pattern:
// hand-checked cases, a committed oracle sample (tools/pretokenize_oracle.py), digests of the
// fixture texts, the invalid-UTF-8 policy, safe cuts, and linear work on pathological inputs.
#include <doctest/doctest.h>

#include <sstream>

#include "support.hpp"

using namespace einlm_test;

namespace {
std::vector<std::string> pieces(std::string_view s) {
  std::vector<std::string> out;
  for (auto p : tk::pretokenize(s)) out.emplace_back(p);
  return out;
}
using v = std::vector<std::string>;
}  // namespace

TEST_CASE("pretokenize: the rules of GPT-2's pattern") {
  CHECK(pieces("Hello, how are you?") == v{"Hello", ",", " how", " are", " you", "?"});
  CHECK(pieces("a  b") == v{"a", " ", " b"});
  CHECK(pieces("a \nb") == v{"a", " ", "\n", "b"});
  CHECK(pieces("x  ") == v{"x", "  "});
  CHECK(pieces("a\n\nb") == v{"a", "\n", "\n", "b"});
  CHECK(pieces(" !!! ") == v{" !!!", " "});
  CHECK(pieces("3.14") == v{"3", ".", "14"});
  CHECK(pieces("a\u00a0b") == v{"a", "\u00a0", "b"});
  CHECK(pieces("'s'") == v{"'s", "'"});
  CHECK(pieces("DON'T") == v{"DON", "'", "T"});
  CHECK(pieces("don't") == v{"don", "'t"});
  CHECK(pieces("'sup") == v{"'s", "up"});
  CHECK(pieces("''s") == v{"''", "s"});
  CHECK(pieces("x.'ll") == v{"x", ".'", "ll"});
  CHECK(pieces(" 's") == v{" '", "s"});
  CHECK(pieces("\t\tx") == v{"\t", "\t", "x"});
  CHECK(pieces("e\u0301") == v{"e", "\u0301"});     // marks are not letters
  CHECK(pieces("日e") == v{"日e"});
  CHECK(pieces("x²½Ⅻ") == v{"x", "²½Ⅻ"});           // No and Nl are numbers
  CHECK(pieces("a\u200bb") == v{"a", "\u200b", "b"});  // ZWSP is not White_Space
  CHECK(pieces("a\u001cb") == v{"a", "\u001c", "b"});  // nor are U+001C..U+001F
  CHECK(pieces("hello <|endoftext|>") == v{"hello", " <|", "endoftext", "|>"});
  CHECK(pieces("").empty());
}

TEST_CASE("pretokenize: every White_Space code point, and only those, is \\s") {
  const char32_t ws[] = {0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000, 0x2001,
                         0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200A,
                         0x2028, 0x2029, 0x202F, 0x205F, 0x3000};
  int spaces = 0;
  for (char32_t cp = 0; cp < 0x110000; ++cp)
    if (tk::classify(cp) == tk::char_class::space) ++spaces;
  CHECK(spaces == 25);
  for (auto cp : ws) CHECK(tk::classify(cp) == tk::char_class::space);
  CHECK(std::string(tk::detail::unicode_tables_version) == "15.0.0");
}

TEST_CASE("pretokenize: identical to Python regex on the committed oracle sample") {
  const auto text = read(data_dir() + "pretokenize_cases.txt");
  std::istringstream in(text);
  std::string header;
  std::size_t cases = 0, same = 0;
  while (in.peek() == '#') std::getline(in, header);
  while (true) {
    std::size_t n;
    std::string lengths;
    if (!(in >> n >> lengths)) break;
    in.get();  // newline
    std::string s(n, '\0');
    in.read(s.data(), static_cast<std::streamsize>(n));
    in.get();
    std::vector<std::size_t> want;
    std::istringstream ls(lengths);
    for (std::string x; std::getline(ls, x, ',');) want.push_back(std::stoul(x));
    std::vector<std::size_t> got;
    for (auto p : tk::pretokenize(s)) got.push_back(p.size());
    ++cases;
    if (got == want) ++same;
    else FAIL_CHECK("differs on ", tk::detail::quote_bytes(s, 200));
  }
  CHECK(cases == 2500);
  CHECK(same == cases);
}

TEST_CASE("pretokenize: identical to Python regex on the fixture texts") {
  EINLM_REQUIRE_FIXTURES(fx);
  std::istringstream in(read(data_dir() + "pretokenize_fixtures.txt"));
  std::string line;
  int files = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ls(line);
    std::string name, hash;
    std::size_t count;
    ls >> name >> count >> hash;
    const auto text = read(fx + name);
    std::vector<std::uint32_t> lengths;
    std::string joined;
    for (auto p : tk::pretokenize(text)) {
      lengths.push_back(static_cast<std::uint32_t>(p.size()));
      joined += p;
    }
    INFO(name);
    CHECK(lengths.size() == count);
    CHECK(hex64(digest(lengths)) == hash);
    CHECK(joined == text);
    ++files;
  }
  CHECK(files == 6);
}

TEST_CASE("pretokenize: invalid UTF-8 bytes are pieces of their own and end the text around them") {
  CHECK(pieces("ab\xFF" "cd") == v{"ab", "\xFF", "cd"});
  CHECK(pieces(" \xFF") == v{" ", "\xFF"});
  CHECK(pieces("a  \xFFx") == v{"a", "  ", "\xFF", "x"});  // the run ends the text before it
  CHECK(pieces("\xE2\x82" "a") == v{"\xE2", "\x82", "a"});  // each byte of a cut sequence
  CHECK(pieces("\xED\xA0\x80") == v{"\xED", "\xA0", "\x80"});
  rng r(5);
  for (int t = 0; t < 2000; ++t) {
    std::string s;
    for (std::size_t n = r.below(20); n > 0; --n) s += static_cast<char>(r.below(256));
    std::string joined;
    for (auto p : tk::pretokenize(s)) joined += p;
    CHECK(joined == s);
  }
}

TEST_CASE("pretokenize: cutting at find_safe_split gives the pieces of the whole") {
  EINLM_REQUIRE_FIXTURES(fx);
  const auto text = read(fx + "corpus.en") + read(data_dir() + "extra_text.txt");
  const auto whole = tk::pretokenize(text);
  rng r(11);
  for (int t = 0; t < 300; ++t) {
    const auto cut = tk::find_safe_split(text, r.below(text.size()));
    std::vector<std::string_view> parts;
    tk::detail::split_gpt2(text.data(), text.data() + cut, cut == text.size(),
                           [&](const char* p, std::size_t n) { parts.emplace_back(p, n); });
    tk::for_each_piece(std::string_view(text).substr(cut), [&](std::string_view p) { parts.push_back(p); });
    REQUIRE(parts.size() == whole.size());
    CHECK(std::equal(parts.begin(), parts.end(), whole.begin()));
  }
}

TEST_CASE("pretokenize: work is linear on pathological inputs (counted, not timed)") {
  for (const std::string unit : {"x", "^", "0", " ", "\n", "'s", " x", "\u3000", "é"}) {
    std::uint64_t units[2];
    for (int k = 0; k < 2; ++k) {
      std::string s;
      const std::size_t n = std::size_t(250000) << k;
      for (std::size_t i = 0; i < n; ++i) s += unit;
      s += "x";
      tk::pretokenize_stats st;
      std::size_t total = 0;
      tk::for_each_piece(s, [&](std::string_view p) { total += p.size(); }, &st);
      CHECK(total == s.size());
      CHECK(st.units <= 3 * s.size());
      units[k] = st.units;
    }
    INFO("unit ", tk::detail::quote_bytes(unit));
    CHECK(double(units[1]) / double(units[0]) < 2.1);
  }
}
