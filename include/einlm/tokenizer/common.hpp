// einlm/tokenizer/common.hpp — what every tokenizer header shares: the error type, the token id
// type, and the small hashing and file helpers used by the encoder, the trainer and the loaders.
//
// Contract: every failure of the tokenizer layer (malformed file, unknown id, disallowed special
// token, bad option) throws einlm::tokenizer_error, derived from einlm::error; file errors name the
// file and the line (or byte offset) where reading stopped. Token ids are 32-bit unsigned.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>

#include "einlm/core/error.hpp"

namespace einlm {

/// Any error of the tokenizer layer: malformed vocabulary or merges file, unknown token id,
/// disallowed special token in the input, invalid training options.
class tokenizer_error : public error {
 public:
  using error::error;
};

namespace tokenizer {

/// A token id. Vocabularies hold at most 2^32 - 1 tokens.
using token_id = std::uint32_t;

/// The id that never names a token.
inline constexpr token_id no_token = 0xFFFFFFFFu;

namespace detail {

/// 64-bit hash of a short byte string: 8-byte words mixed with a multiply-xorshift. Good enough
/// for open-addressing tables keyed by pre-tokens and vocabulary entries; not for adversaries.
inline std::uint64_t hash_bytes(const char* p, std::size_t n) noexcept {
  constexpr std::uint64_t k = 0x9E3779B97F4A7C15ull;
  std::uint64_t h = 0x243F6A8885A308D3ull ^ (n * k);
  while (n >= 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * k;
    h ^= h >> 29;
    p += 8;
    n -= 8;
  }
  if (n > 0) {
    std::uint64_t w = 0;
    std::memcpy(&w, p, n);
    h = (h ^ w ^ (std::uint64_t(n) << 56)) * k;
    h ^= h >> 29;
  }
  h *= 0xBF58476D1CE4E5B9ull;
  return h ^ (h >> 32);
}

inline std::uint64_t hash_u64(std::uint64_t x) noexcept {
  x ^= x >> 33;
  x *= 0xFF51AFD7ED558CCDull;
  x ^= x >> 33;
  x *= 0xC4CEB9FE1A85EC53ull;
  return x ^ (x >> 33);
}

/// Smallest power of two >= max(n, 16).
inline std::size_t pow2_at_least(std::size_t n) noexcept {
  std::size_t c = 16;
  while (c < n) c <<= 1;
  return c;
}

/// Reads a whole file as bytes; throws tokenizer_error naming the file when it cannot be read.
inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw tokenizer_error(einlm::detail::concat(path, ": cannot open file for reading"));
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw tokenizer_error(einlm::detail::concat(path, ": read error"));
  return data;
}

/// Writes bytes to a file (replacing it); throws tokenizer_error naming the file on failure.
inline void write_file(const std::string& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw tokenizer_error(einlm::detail::concat(path, ": cannot open file for writing"));
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  out.flush();
  if (!out) throw tokenizer_error(einlm::detail::concat(path, ": write error"));
}

/// "\"ab\\x0a\"" — a byte string quoted for an error message: printable ASCII as is, other
/// bytes as \xNN, cut after `max` bytes.
inline std::string quote_bytes(std::string_view s, std::size_t max = 64) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string q = "\"";
  for (std::size_t i = 0; i < s.size() && i < max; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      q += '\\';
      q += static_cast<char>(c);
    } else if (c >= 0x20 && c < 0x7F) {
      q += static_cast<char>(c);
    } else {
      q += "\\x";
      q += hex[c >> 4];
      q += hex[c & 15];
    }
  }
  if (s.size() > max) q += "...";
  return q + "\"";
}

}  // namespace detail
}  // namespace tokenizer
}  // namespace einlm
