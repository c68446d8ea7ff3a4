// Helpers shared by the tokenizer tests: where the fixtures and committed goldens are, digests
// that the tools/ scripts compute the same way, and a deterministic random generator.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "einlm/tokenizer.hpp"

namespace einlm_test {

namespace tk = einlm::tokenizer;

/// $EINLM_FIXTURES_DIR/cs336, or nullopt (the test then skips with a message).
inline std::optional<std::string> fixtures() {
  const char* d = std::getenv("EINLM_FIXTURES_DIR");
  if (!d || !*d) return std::nullopt;
  const auto p = std::filesystem::path(d) / "cs336";
  if (!std::filesystem::is_directory(p)) return std::nullopt;
  return p.string() + "/";
}

/// tests/data/tokenizer/ (committed goldens).
inline std::string data_dir() {
  const char* d = std::getenv("EINLM_TEST_DATA_DIR");
  REQUIRE_MESSAGE((d && *d), "EINLM_TEST_DATA_DIR is not set (run the tests through ctest)");
  return std::string(d) + "/tokenizer/";
}

#define EINLM_REQUIRE_FIXTURES(var)                                                         \
  const auto var##_opt = ::einlm_test::fixtures();                                          \
  if (!var##_opt) {                                                                         \
    MESSAGE("skipped: EINLM_FIXTURES_DIR is not set or has no cs336/ (reference fixtures)"); \
    return;                                                                                 \
  }                                                                                         \
  const std::string& var = *var##_opt

inline std::string read(const std::string& path) { return tk::detail::read_file(path); }

/// FNV-1a 64 over u32 little-endian values (tools/tokenizer_common.py: ids_digest).
inline std::uint64_t digest(std::span<const std::uint32_t> values) {
  std::uint64_t h = 0xCBF29CE484222325ull;
  for (auto v : values)
    for (int k = 0; k < 4; ++k) {
      h ^= (v >> (8 * k)) & 0xFF;
      h *= 0x100000001B3ull;
    }
  return h;
}

inline std::uint64_t fnv1a(std::string_view bytes) {
  std::uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001B3ull;
  }
  return h;
}

inline std::string hex64(std::uint64_t x) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(x));
  return buf;
}

/// splitmix64: deterministic random numbers for property tests.
struct rng {
  std::uint64_t s;
  explicit rng(std::uint64_t seed) : s(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  std::size_t below(std::size_t n) { return static_cast<std::size_t>(next() % n); }
};

/// The GPT-2 tokenizer from the fixtures, with <|endoftext|> as its special token (loaded once).
inline const tk::bpe_tokenizer& gpt2(const std::string& fx) {
  static const tk::bpe_tokenizer tok(
      tk::load_gpt2(fx + "gpt2_vocab.json", fx + "gpt2_merges.txt", {"<|endoftext|>"}));
  return tok;
}

/// Parses a committed JSON golden file.
inline tk::detail::json::value load_json(const std::string& path) {
  return tk::detail::json::parse(read(path), path);
}

inline std::vector<std::uint32_t> ids_of(const tk::detail::json::value& arr) {
  std::vector<std::uint32_t> out;
  for (const auto& v : arr.items) out.push_back(static_cast<std::uint32_t>(std::stoul(v.text)));
  return out;
}

}  // namespace einlm_test
