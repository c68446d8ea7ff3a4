// einlm/tokenizer/formats.hpp — reading and writing BPE vocabularies in the formats other tools use.
//
//   GPT-2   vocab.json ({"token": id}) + merges.txt ("a b" per line, optional "#version" first
//           line); tokens are spelled with GPT-2's byte -> unicode map (bytes_to_unicode()).
//   tiktoken  ".tiktoken" rank files: "base64(token bytes) rank" per line; no merges, no specials
//           (merge_rule::ranks); special tokens are passed separately and appended.
//   HF      tokenizer.json of a byte-level BPE (model.type "BPE", ByteLevel pre-tokenizer without
//           prefix space); merges as "a b" strings or ["a", "b"] pairs on load, pairs on save;
//           added_tokens become the special tokens.
//
// Contract: every loader reads the whole file into temporaries and returns a bpe_model only when
// everything is valid, so nothing half-loaded survives an error; bpe_tokenizer::load_* replace a
// tokenizer only after the new one is fully built. A malformed file throws tokenizer_error whose
// message starts with "FILE:LINE:" (or "FILE:LINE:COLUMN:" for JSON). Writers produce files that
// tiktoken and HF tokenizers load to identical encodings (tools/check_formats.py checks it).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "einlm/tokenizer/bpe.hpp"
#include "einlm/tokenizer/common.hpp"
#include "einlm/tokenizer/json.hpp"
#include "einlm/tokenizer/utf8.hpp"

namespace einlm::tokenizer {

// ============================================================ GPT-2's byte <-> unicode map

/// The printable code point GPT-2 uses for byte b: 188 bytes map to themselves, the other 68
/// (controls, space, 0x7F-0xA0, 0xAD) to U+0100 + n in byte order (space -> U+0120 'Ġ').
constexpr char32_t byte_to_unicode(unsigned char b) noexcept {
  const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
  if (printable) return b;
  unsigned n = 0;
  for (unsigned x = 0; x < b; ++x) {
    const bool p = (x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE;
    n += !p;
  }
  return 0x100 + n;
}

/// Token bytes spelled in GPT-2's alphabet (UTF-8).
inline std::string bytes_to_unicode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char c : bytes) utf8_append(out, byte_to_unicode(static_cast<unsigned char>(c)));
  return out;
}

namespace detail {
struct unicode_to_byte_table {
  std::int16_t byte[0x144];  // code points below U+0144; -1: not in the alphabet
  constexpr unicode_to_byte_table() : byte{} {
    for (auto& b : byte) b = -1;
    for (unsigned b = 0; b < 256; ++b) byte[byte_to_unicode(static_cast<unsigned char>(b))] = std::int16_t(b);
  }
};
inline constexpr unicode_to_byte_table unicode_to_byte{};
}  // namespace detail

/// The bytes spelled by a GPT-2-alphabet string; false when a character is outside the alphabet.
inline bool unicode_to_bytes(std::string_view text, std::string& out) {
  out.clear();
  auto p = reinterpret_cast<const unsigned char*>(text.data());
  const auto end = p + text.size();
  while (p < end) {
    const auto n = utf8_sequence_length(p, end);
    if (n == 0) return false;
    const char32_t cp = utf8_decode(p, n);
    if (cp >= 0x144 || detail::unicode_to_byte.byte[cp] < 0) return false;
    out += static_cast<char>(detail::unicode_to_byte.byte[cp]);
    p += n;
  }
  return true;
}

namespace detail {

/// Splits a text file into lines ("\n" or "\r\n"); the last line may lack its newline.
inline std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    auto nl = text.find('\n', start);
    if (nl == std::string_view::npos) nl = text.size();
    auto line = text.substr(start, nl - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    start = nl + 1;
  }
  return lines;
}

[[noreturn]] inline void file_error(std::string_view name, std::size_t line, const std::string& what) {
  throw tokenizer_error(einlm::detail::concat(name, ":", line, ": ", what));
}

/// vocab[] from {"token": id}; ids must be 0..n-1 without gaps or repeats.
inline std::vector<std::string> vocab_from_json(const json::value& obj, std::string_view name,
                                                std::string_view source) {
  if (obj.type != json::value::kind::object)
    throw tokenizer_error(einlm::detail::concat(json::where(name, source, obj.offset),
                                                ": the vocabulary must be a JSON object {\"token\": id}"));
  const std::size_t n = obj.members.size();
  std::vector<std::string> vocab(n);
  std::vector<std::uint8_t> seen(n, 0);
  std::string bytes;
  for (const auto& [key, v] : obj.members) {
    const auto id = json::as_index(v, name, source, "a token id");
    if (id >= n)
      throw tokenizer_error(einlm::detail::concat(
          json::where(name, source, v.offset), ": token id ", id, " of ", quote_bytes(key),
          " is not below the number of entries (", n, "); ids must be 0..", n - 1, " without gaps"));
    if (seen[id])
      throw tokenizer_error(einlm::detail::concat(json::where(name, source, v.offset), ": token id ", id,
                                                  " is used twice (again by ", quote_bytes(key), ")"));
    if (!unicode_to_bytes(key, bytes))
      throw tokenizer_error(einlm::detail::concat(
          json::where(name, source, v.offset), ": token ", quote_bytes(key),
          " is not spelled in GPT-2's byte-level alphabet"));
    seen[id] = 1;
    vocab[id] = bytes;
  }
  return vocab;
}

}  // namespace detail

// ============================================================ GPT-2 vocab.json + merges.txt

/// Parses GPT-2 vocab.json text; `name` is used in error messages.
inline std::vector<std::string> parse_gpt2_vocab(std::string_view text, const std::string& name) {
  const auto root = detail::json::parse(text, name);
  return detail::vocab_from_json(root, name, text);
}

/// Parses GPT-2 merges.txt text: an optional first line starting with "#version", then one merge
/// "a b" per line (two GPT-2-alphabet tokens separated by one space); empty lines are skipped.
inline std::vector<std::pair<std::string, std::string>> parse_gpt2_merges(std::string_view text,
                                                                          const std::string& name) {
  std::vector<std::pair<std::string, std::string>> merges;
  const auto lines = detail::split_lines(text);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const auto line = lines[i];
    if (line.empty()) continue;
    if (i == 0 && line.starts_with("#version")) continue;
    const auto sp = line.find(' ');
    if (sp == std::string_view::npos || sp == 0 || sp + 1 == line.size() ||
        line.find(' ', sp + 1) != std::string_view::npos)
      detail::file_error(name, i + 1, einlm::detail::concat("expected two tokens separated by one space, got ",
                                                            detail::quote_bytes(line)));
    std::string a, b;
    if (!unicode_to_bytes(line.substr(0, sp), a) || !unicode_to_bytes(line.substr(sp + 1), b))
      detail::file_error(name, i + 1, einlm::detail::concat("token not spelled in GPT-2's byte-level alphabet: ",
                                                            detail::quote_bytes(line)));
    merges.emplace_back(std::move(a), std::move(b));
  }
  return merges;
}

/// Loads GPT-2 vocab.json + merges.txt. Merge errors name the merges file and line.
inline bpe_model load_gpt2(const std::string& vocab_path, const std::string& merges_path,
                           std::vector<std::string> special_tokens = {}) {
  bpe_model m;
  m.vocab = parse_gpt2_vocab(detail::read_file(vocab_path), vocab_path);
  m.merges = parse_gpt2_merges(detail::read_file(merges_path), merges_path);
  m.special_tokens = std::move(special_tokens);
  return m;
}

/// vocab.json text (ids in ascending order, one entry per line).
inline std::string gpt2_vocab_json(const bpe_model& m) {
  std::string out = "{\n";
  for (std::size_t id = 0; id < m.vocab.size(); ++id) {
    out += "  ";
    detail::json::write_string(out, bytes_to_unicode(m.vocab[id]));
    out += ": " + std::to_string(id) + (id + 1 < m.vocab.size() ? ",\n" : "\n");
  }
  return out + "}\n";
}

/// merges.txt text, with a "#version: 0.2" first line like OpenAI's file.
inline std::string gpt2_merges_txt(const bpe_model& m) {
  std::string out = "#version: 0.2\n";
  for (const auto& [a, b] : m.merges) out += bytes_to_unicode(a) + " " + bytes_to_unicode(b) + "\n";
  return out;
}

/// Writes vocab.json + merges.txt. Special tokens are vocabulary entries like any other.
inline void save_gpt2(const bpe_model& m, const std::string& vocab_path, const std::string& merges_path) {
  if (m.rule != merge_rule::merges)
    throw tokenizer_error("save_gpt2: a rank vocabulary (tiktoken) has no merges list; build one with "
                          "derive_merges() first");
  detail::write_file(vocab_path, gpt2_vocab_json(m));
  detail::write_file(merges_path, gpt2_merges_txt(m));
}

// ============================================================ tiktoken rank files

namespace detail {
inline constexpr char base64_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

inline std::string base64_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const std::uint32_t v = std::uint32_t(static_cast<unsigned char>(in[i])) << 16 |
                            std::uint32_t(static_cast<unsigned char>(in[i + 1])) << 8 |
                            static_cast<unsigned char>(in[i + 2]);
    for (int k = 3; k >= 0; --k) out += base64_chars[(v >> (6 * k)) & 63];
  }
  if (const auto rest = in.size() - i) {
    std::uint32_t v = std::uint32_t(static_cast<unsigned char>(in[i])) << 16;
    if (rest == 2) v |= std::uint32_t(static_cast<unsigned char>(in[i + 1])) << 8;
    out += base64_chars[(v >> 18) & 63];
    out += base64_chars[(v >> 12) & 63];
    out += rest == 2 ? base64_chars[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

/// Strict base64 (padding required); false on any other input.
inline bool base64_decode(std::string_view in, std::string& out) {
  out.clear();
  if (in.empty() || in.size() % 4 != 0) return false;
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  for (std::size_t i = 0; i < in.size(); i += 4) {
    const bool last = i + 4 == in.size();
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      if (last && k >= 2 && in[i + k] == '=') {
        v[k] = 0;
        ++pad;
        continue;
      }
      if (pad) return false;
      v[k] = val(in[i + k]);
      if (v[k] < 0) return false;
    }
    const std::uint32_t x = std::uint32_t(v[0]) << 18 | std::uint32_t(v[1]) << 12 |
                            std::uint32_t(v[2]) << 6 | std::uint32_t(v[3]);
    out += static_cast<char>(x >> 16);
    if (pad < 2) out += static_cast<char>((x >> 8) & 0xFF);
    if (pad < 1) out += static_cast<char>(x & 0xFF);
  }
  return true;
}
}  // namespace detail

/// Parses a tiktoken rank file: "base64 rank" per line; ranks must be 0..n-1, each once.
inline bpe_model parse_tiktoken(std::string_view text, const std::string& name,
                                std::vector<std::string> special_tokens = {}) {
  const auto lines = detail::split_lines(text);
  std::vector<std::pair<std::uint64_t, std::string>> entries;
  entries.reserve(lines.size());
  std::string bytes;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const auto line = lines[i];
    if (line.empty()) continue;
    const auto sp = line.find(' ');
    if (sp == std::string_view::npos)
      detail::file_error(name, i + 1, "expected \"<base64 token> <rank>\"");
    if (!detail::base64_decode(line.substr(0, sp), bytes))
      detail::file_error(name, i + 1, einlm::detail::concat("invalid base64 token ",
                                                            detail::quote_bytes(line.substr(0, sp))));
    const auto digits = line.substr(sp + 1);
    std::uint64_t rank = 0;
    bool ok = !digits.empty() && digits.size() <= 10;
    for (char c : digits) {
      ok = ok && c >= '0' && c <= '9';
      rank = rank * 10 + std::uint64_t(c - '0');
    }
    if (!ok || rank >= 0xFFFFFFFFull)
      detail::file_error(name, i + 1, einlm::detail::concat("invalid rank ", detail::quote_bytes(digits)));
    entries.emplace_back(rank, bytes);
  }
  bpe_model m;
  m.rule = merge_rule::ranks;
  m.vocab.resize(entries.size());
  std::vector<std::size_t> line_of(entries.size(), 0);
  std::size_t k = 0;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].empty()) continue;
    auto& [rank, tok] = entries[k++];
    if (rank >= entries.size())
      detail::file_error(name, i + 1, einlm::detail::concat("rank ", rank, " is not below the number of "
                                                            "entries (", entries.size(), "); ranks must be "
                                                            "0..n-1 without gaps"));
    if (line_of[rank])
      detail::file_error(name, i + 1, einlm::detail::concat("rank ", rank, " already given on line ",
                                                            line_of[rank]));
    line_of[rank] = i + 1;
    m.vocab[rank] = std::move(tok);
  }
  m.special_tokens = std::move(special_tokens);
  return m;
}

inline bpe_model load_tiktoken(const std::string& path, std::vector<std::string> special_tokens = {}) {
  return parse_tiktoken(detail::read_file(path), path, std::move(special_tokens));
}

/// tiktoken file text. Special tokens are left out (tiktoken takes them in code); they must come
/// after every ordinary token. A merges vocabulary is written when tiktoken's rank rule gives the
/// same encodings: each merge makes a distinct token, and merge results have increasing ids.
inline std::string tiktoken_text(const bpe_model& m) {
  std::vector<std::uint8_t> special(m.vocab.size(), 0);
  for (const auto& s : m.special_tokens)
    for (std::size_t id = 0; id < m.vocab.size(); ++id)
      if (m.vocab[id] == s) special[id] = 1;
  std::size_t ordinary = 0;
  while (ordinary < m.vocab.size() && !special[ordinary]) ++ordinary;
  for (std::size_t id = ordinary; id < m.vocab.size(); ++id)
    if (!special[id])
      throw tokenizer_error(einlm::detail::concat(
          "tiktoken export: ordinary token ", id, " comes after special token ", ordinary,
          "; a tiktoken file holds ranks 0..n-1 of ordinary tokens only"));
  if (m.rule == merge_rule::merges) {
    const bpe_tokenizer tok(m);
    std::vector<std::uint8_t> made(m.vocab.size(), 0);
    std::int64_t last = -1;
    for (std::size_t r = 0; r < m.merges.size(); ++r) {
      const auto id = *tok.find_token(m.merges[r].first + m.merges[r].second);
      if (made[id])
        throw tokenizer_error(einlm::detail::concat(
            "tiktoken export: merge ", r + 1, " makes token ", id, " again; a rank file cannot express "
            "two merges with the same result"));
      if (std::int64_t(id) < last)
        throw tokenizer_error(einlm::detail::concat(
            "tiktoken export: merge ", r + 1, " makes token ", id, " after token ", last,
            "; ranks must follow the merge order"));
      made[id] = 1;
      last = id;
    }
  }
  std::string out;
  for (std::size_t id = 0; id < ordinary; ++id)
    out += detail::base64_encode(m.vocab[id]) + " " + std::to_string(id) + "\n";
  return out;
}

inline void save_tiktoken(const bpe_model& m, const std::string& path) {
  detail::write_file(path, tiktoken_text(m));
}

// ============================================================ HF tokenizer.json

/// Parses an HF tokenizer.json holding a byte-level BPE; other configurations are refused with a
/// message naming the field.
inline bpe_model parse_hf_json(std::string_view text, const std::string& name) {
  using detail::json::value;
  const auto root = detail::json::parse(text, name);
  auto at = [&](const value& v) { return detail::json::where(name, text, v.offset); };
  auto fail = [&](const value& v, const std::string& what) -> void {
    throw tokenizer_error(einlm::detail::concat(at(v), ": ", what));
  };
  if (root.type != value::kind::object) fail(root, "expected a JSON object");
  const value* model = root.find("model");
  if (!model || model->type != value::kind::object) fail(root, "no \"model\" object");
  const value* type = model->find("type");
  if (type && !(type->type == value::kind::string && type->text == "BPE"))
    fail(*type, "model.type must be \"BPE\"");
  auto must_be_off = [&](const value& obj, const char* key, const char* why) {
    const value* v = obj.find(key);
    if (!v || v->is_null()) return;
    if (v->type == value::kind::boolean && !v->boolean) return;
    if (v->type == value::kind::string && v->text.empty()) return;
    fail(*v, einlm::detail::concat(key, " is not supported (", why, ")"));
  };
  must_be_off(*model, "dropout", "encoding must be deterministic");
  must_be_off(*model, "unk_token", "a byte-level BPE needs no unknown token");
  must_be_off(*model, "continuing_subword_prefix", "not a byte-level BPE");
  must_be_off(*model, "end_of_word_suffix", "not a byte-level BPE");
  must_be_off(*model, "byte_fallback", "not a byte-level BPE");
  must_be_off(*model, "ignore_merges", "only the GPT-2 merge rule is implemented");
  must_be_off(root, "normalizer", "the text must reach the pre-tokenizer unchanged");
  if (const value* pre = root.find("pre_tokenizer"); pre && !pre->is_null()) {
    const value* t = pre->find("type");
    if (!t || t->text != "ByteLevel") fail(*pre, "pre_tokenizer must be ByteLevel (GPT-2 pattern)");
    must_be_off(*pre, "add_prefix_space", "GPT-2 adds no prefix space");
    if (const value* r = pre->find("use_regex"); r && r->type == value::kind::boolean && !r->boolean)
      fail(*r, "use_regex false is not supported (GPT-2 pattern only)");
  }
  const value* vocab = model->find("vocab");
  if (!vocab) fail(*model, "model.vocab is missing");
  bpe_model m;
  // Added tokens first: their content is raw text, not byte-level spelled.
  std::vector<std::pair<std::uint32_t, std::string>> added;
  if (const value* list = root.find("added_tokens"); list && !list->is_null()) {
    if (list->type != value::kind::array) fail(*list, "added_tokens must be an array");
    for (const auto& t : list->items) {
      const value* id = t.find("id");
      const value* content = t.find("content");
      if (!id || !content || content->type != value::kind::string)
        fail(t, "an added token needs \"id\" and \"content\"");
      for (const char* flag : {"single_word", "lstrip", "rstrip"}) must_be_off(t, flag, "not implemented");
      added.emplace_back(detail::json::as_index(*id, name, text, "added_tokens id"), content->text);
    }
  }
  // The vocabulary: byte-level spelled entries; an added token may also appear in it.
  if (vocab->type != value::kind::object) fail(*vocab, "model.vocab must be an object");
  std::size_t n = vocab->members.size();
  for (const auto& [id, content] : added) n = std::max<std::size_t>(n, id + 1);
  m.vocab.assign(n, std::string());
  std::vector<std::uint8_t> seen(n, 0);
  std::string bytes;
  for (const auto& [id, content] : added) {
    if (seen[id]) fail(root, einlm::detail::concat("added token id ", id, " is used twice"));
    seen[id] = 1;
    m.vocab[id] = content;
    m.special_tokens.push_back(content);
  }
  for (const auto& [key, v] : vocab->members) {
    const auto id = detail::json::as_index(v, name, text, "a token id");
    if (id >= n) fail(v, einlm::detail::concat("token id ", id, " leaves a gap in the vocabulary"));
    const bool is_added = std::any_of(added.begin(), added.end(), [&](const auto& a) {
      return a.first == id && a.second == key;
    });
    if (is_added) continue;
    if (seen[id]) fail(v, einlm::detail::concat("token id ", id, " is used twice"));
    if (!unicode_to_bytes(key, bytes))
      fail(v, einlm::detail::concat("token ", detail::quote_bytes(key), " is not spelled in GPT-2's byte-level alphabet"));
    seen[id] = 1;
    m.vocab[id] = bytes;
  }
  for (std::size_t id = 0; id < n; ++id)
    if (!seen[id]) fail(*vocab, einlm::detail::concat("token id ", id, " is missing from the vocabulary"));
  const value* merges = model->find("merges");
  if (merges && !merges->is_null()) {
    if (merges->type != value::kind::array) fail(*merges, "model.merges must be an array");
    for (const auto& item : merges->items) {
      std::string_view a, b;
      if (item.type == value::kind::string) {  // legacy "a b"
        const auto sp = item.text.find(' ');
        if (sp == std::string::npos || item.text.find(' ', sp + 1) != std::string::npos)
          fail(item, "a merge string must be two tokens separated by one space");
        a = std::string_view(item.text).substr(0, sp);
        b = std::string_view(item.text).substr(sp + 1);
      } else if (item.type == value::kind::array && item.items.size() == 2 &&
                 item.items[0].type == value::kind::string && item.items[1].type == value::kind::string) {
        a = item.items[0].text;
        b = item.items[1].text;
      } else {
        fail(item, "a merge must be \"a b\" or [\"a\", \"b\"]");
      }
      std::string ba, bb;
      if (!unicode_to_bytes(a, ba) || !unicode_to_bytes(b, bb))
        fail(item, "merge token not spelled in GPT-2's byte-level alphabet");
      m.merges.emplace_back(std::move(ba), std::move(bb));
    }
  }
  return m;
}

inline bpe_model load_hf_json(const std::string& path) {
  return parse_hf_json(detail::read_file(path), path);
}

/// tokenizer.json text for a byte-level BPE, in the layout HF tokenizers 0.23 writes.
inline std::string hf_json_text(const bpe_model& m) {
  if (m.rule != merge_rule::merges)
    throw tokenizer_error("HF export: a rank vocabulary (tiktoken) has no merges list");
  using detail::json::write_string;
  std::vector<std::uint8_t> special(m.vocab.size(), 0);
  std::string out = "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [";
  bool first = true;
  for (const auto& s : m.special_tokens) {
    for (std::size_t id = 0; id < m.vocab.size(); ++id) {
      if (m.vocab[id] != s || special[id]) continue;
      special[id] = 1;
      out += first ? "\n    " : ",\n    ";
      first = false;
      out += "{\"id\": " + std::to_string(id) + ", \"content\": ";
      write_string(out, s);
      out += ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, "
             "\"special\": true}";
      break;
    }
  }
  out += first ? "],\n" : "\n  ],\n";
  out +=
      "  \"normalizer\": null,\n"
      "  \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, "
      "\"use_regex\": true},\n"
      "  \"post_processor\": null,\n"
      "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, "
      "\"use_regex\": true},\n"
      "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
      "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n"
      "    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"ignore_merges\": false,\n"
      "    \"vocab\": {";
  first = true;
  for (std::size_t id = 0; id < m.vocab.size(); ++id) {
    out += first ? "\n      " : ",\n      ";
    first = false;
    write_string(out, special[id] ? m.vocab[id] : bytes_to_unicode(m.vocab[id]));
    out += ": " + std::to_string(id);
  }
  out += "\n    },\n    \"merges\": [";
  first = true;
  for (const auto& [a, b] : m.merges) {
    out += first ? "\n      [" : ",\n      [";
    first = false;
    write_string(out, bytes_to_unicode(a));
    out += ", ";
    write_string(out, bytes_to_unicode(b));
    out += "]";
  }
  out += "\n    ]\n  }\n}\n";
  return out;
}

inline void save_hf_json(const bpe_model& m, const std::string& path) {
  detail::write_file(path, hf_json_text(m));
}

}  // namespace einlm::tokenizer
