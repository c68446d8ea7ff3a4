// einlm/tokenizer/json.hpp — the small JSON reader and writer behind vocab.json and tokenizer.json.
//
// Contract: parse() accepts RFC 8259 JSON (UTF-8, \uXXXX escapes with surrogate pairs, nesting up to
// 256 levels) and returns a tree; every value remembers its byte offset, so the loaders can report
// "FILE:LINE:COLUMN: message" for semantic errors too. Any syntax error throws tokenizer_error with
// the file name, line and column. Numbers keep their text; as_index() reads non-negative integers
// exactly. Duplicate object keys are kept (the loaders decide). Internal to the tokenizer layer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "einlm/tokenizer/common.hpp"
#include "einlm/tokenizer/utf8.hpp"

namespace einlm::tokenizer::detail::json {

struct value {
  enum class kind : std::uint8_t { null, boolean, number, string, array, object };
  kind type = kind::null;
  bool boolean = false;
  std::string text;  // string contents, or the number's spelling
  std::vector<value> items;
  std::vector<std::pair<std::string, value>> members;
  std::size_t offset = 0;  // byte offset of the value in the source

  const value* find(std::string_view key) const noexcept {
    for (const auto& [k, v] : members)
      if (k == key) return &v;
    return nullptr;
  }
  bool is_null() const noexcept { return type == kind::null; }
};

/// "name:LINE:COL" for a byte offset in `source`.
inline std::string where(std::string_view name, std::string_view source, std::size_t offset) {
  std::size_t line = 1, col = 1;
  for (std::size_t i = 0; i < offset && i < source.size(); ++i) {
    if (source[i] == '\n') {
      ++line;
      col = 1;
    } else if ((static_cast<unsigned char>(source[i]) & 0xC0) != 0x80) {
      ++col;
    }
  }
  return einlm::detail::concat(name, ":", line, ":", col);
}

class parser {
 public:
  parser(std::string_view source, std::string name) : s_(source), name_(std::move(name)) {}

  value parse() {
    skip_ws();
    value v = parse_value(0);
    skip_ws();
    if (p_ != s_.size()) fail("unexpected text after the JSON value");
    return v;
  }

  [[noreturn]] void fail(const std::string& what, std::size_t at) const {
    throw tokenizer_error(einlm::detail::concat(where(name_, s_, at), ": ", what));
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { fail(what, p_); }

  void skip_ws() {
    while (p_ < s_.size() && (s_[p_] == ' ' || s_[p_] == '\n' || s_[p_] == '\r' || s_[p_] == '\t'))
      ++p_;
  }

  value parse_value(int depth) {
    if (depth > 256) fail("JSON nested too deeply");
    if (p_ >= s_.size()) fail("unexpected end of file, expected a value");
    value v;
    v.offset = p_;
    const char c = s_[p_];
    if (c == '{') {
      v.type = value::kind::object;
      ++p_;
      skip_ws();
      if (p_ < s_.size() && s_[p_] == '}') {
        ++p_;
        return v;
      }
      while (true) {
        skip_ws();
        if (p_ >= s_.size() || s_[p_] != '"') fail("expected a string key");
        std::string key = parse_string();
        skip_ws();
        if (p_ >= s_.size() || s_[p_] != ':') fail("expected ':' after an object key");
        ++p_;
        skip_ws();
        v.members.emplace_back(std::move(key), parse_value(depth + 1));
        skip_ws();
        if (p_ < s_.size() && s_[p_] == ',') {
          ++p_;
          continue;
        }
        if (p_ < s_.size() && s_[p_] == '}') {
          ++p_;
          return v;
        }
        fail("expected ',' or '}' in an object");
      }
    }
    if (c == '[') {
      v.type = value::kind::array;
      ++p_;
      skip_ws();
      if (p_ < s_.size() && s_[p_] == ']') {
        ++p_;
        return v;
      }
      while (true) {
        skip_ws();
        v.items.push_back(parse_value(depth + 1));
        skip_ws();
        if (p_ < s_.size() && s_[p_] == ',') {
          ++p_;
          continue;
        }
        if (p_ < s_.size() && s_[p_] == ']') {
          ++p_;
          return v;
        }
        fail("expected ',' or ']' in an array");
      }
    }
    if (c == '"') {
      v.type = value::kind::string;
      v.text = parse_string();
      return v;
    }
    if (s_.substr(p_, 4) == "null") {
      p_ += 4;
      return v;
    }
    if (s_.substr(p_, 4) == "true") {
      p_ += 4;
      v.type = value::kind::boolean;
      v.boolean = true;
      return v;
    }
    if (s_.substr(p_, 5) == "false") {
      p_ += 5;
      v.type = value::kind::boolean;
      return v;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      v.type = value::kind::number;
      const auto start = p_;
      if (s_[p_] == '-') ++p_;
      auto digits = [&] {
        const auto d0 = p_;
        while (p_ < s_.size() && s_[p_] >= '0' && s_[p_] <= '9') ++p_;
        if (p_ == d0) fail("malformed number");
      };
      digits();
      if (p_ < s_.size() && s_[p_] == '.') {
        ++p_;
        digits();
      }
      if (p_ < s_.size() && (s_[p_] == 'e' || s_[p_] == 'E')) {
        ++p_;
        if (p_ < s_.size() && (s_[p_] == '+' || s_[p_] == '-')) ++p_;
        digits();
      }
      v.text = std::string(s_.substr(start, p_ - start));
      return v;
    }
    fail("expected a JSON value");
  }

  unsigned hex4() {
    if (p_ + 4 > s_.size()) fail("truncated \\u escape");
    unsigned x = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[p_++];
      x <<= 4;
      if (c >= '0' && c <= '9') x |= unsigned(c - '0');
      else if (c >= 'a' && c <= 'f') x |= unsigned(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') x |= unsigned(c - 'A' + 10);
      else fail("bad hex digit in a \\u escape", p_ - 1);
    }
    return x;
  }

  std::string parse_string() {
    ++p_;  // opening quote
    std::string out;
    while (true) {
      if (p_ >= s_.size()) fail("unterminated string");
      const auto c = static_cast<unsigned char>(s_[p_]);
      if (c == '"') {
        ++p_;
        return out;
      }
      if (c < 0x20) fail("control character in a string");
      if (c == '\\') {
        if (++p_ >= s_.size()) fail("unterminated string");
        const char e = s_[p_++];
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': {
            const auto at = p_ - 2;
            char32_t cp = hex4();
            if (cp >= 0xD800 && cp < 0xDC00) {
              if (s_.substr(p_, 2) != "\\u") fail("lone high surrogate in a \\u escape", at);
              p_ += 2;
              const unsigned lo = hex4();
              if (lo < 0xDC00 || lo >= 0xE000) fail("bad low surrogate in a \\u escape", at);
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp < 0xE000) {
              fail("lone low surrogate in a \\u escape", at);
            }
            utf8_append(out, cp);
            break;
          }
          default: fail("unknown escape in a string", p_ - 1);
        }
        continue;
      }
      if (c < 0x80) {
        out += static_cast<char>(c);
        ++p_;
        continue;
      }
      const auto b = reinterpret_cast<const unsigned char*>(s_.data());
      const auto n = utf8_sequence_length(b + p_, b + s_.size());
      if (n == 0) fail("invalid UTF-8 in a string");
      out.append(s_.data() + p_, n);
      p_ += n;
    }
  }

  std::string_view s_;
  std::string name_;
  std::size_t p_ = 0;
};

inline value parse(std::string_view source, const std::string& name) {
  return parser(source, name).parse();
}

/// A non-negative integer that fits in 32 bits, or throws naming the location.
inline std::uint32_t as_index(const value& v, std::string_view name, std::string_view source,
                              std::string_view what) {
  bool ok = v.type == value::kind::number && !v.text.empty() && v.text.size() <= 10;
  std::uint64_t x = 0;
  for (char c : v.text) {
    if (c < '0' || c > '9') ok = false;
    x = x * 10 + std::uint64_t(c - '0');
  }
  if (!ok || x >= 0xFFFFFFFFull)
    throw tokenizer_error(einlm::detail::concat(where(name, source, v.offset), ": ", what,
                                                " must be a non-negative integer below 2^32 - 1"));
  return static_cast<std::uint32_t>(x);
}

/// Appends s as a JSON string literal (UTF-8 kept; quotes, backslashes and controls escaped).
inline void write_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 15];
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

}  // namespace einlm::tokenizer::detail::json
