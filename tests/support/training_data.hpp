// Helpers the model and training tests share: an emptied scratch directory, random token ids,
// a deterministic byte pseudo-text, and bit-for-bit comparison of two models' parameters.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "einlm/core/random.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/train/data.hpp"

namespace einlm::test {

/// $TMPDIR/einlm_test_<name> (or /tmp/…), removed first; the caller creates what it needs.
inline std::string fresh_temp_dir(const std::string& name) {
  const char* tmp = std::getenv("TMPDIR");
  const auto d = std::filesystem::path(tmp ? tmp : "/tmp") / ("einlm_test_" + name);
  std::filesystem::remove_all(d);
  return d.string();
}

/// Token ids (B, S) in [0, vocab), uniform, from Philox stream (seed, stream).
inline tensor<std::int64_t, dims<2>> random_tokens(index_t B, index_t S, std::int64_t vocab, std::uint64_t seed,
                                                   std::uint64_t stream) {
  tensor<std::int64_t, dims<2>> t(B, S);  // (B, S)
  const random_stream g{seed, stream};
  for (index_t i = 0; i < B * S; ++i)
    t.data()[i] = std::min<std::int64_t>(vocab - 1, static_cast<std::int64_t>(uniform_at<double>(g, static_cast<std::uint64_t>(i)) * vocab));
  return t;
}

/// n bytes of a deterministic pseudo-text of ten short words (for runs that need no fixtures).
inline train::token_dataset synthetic_bytes(std::size_t n) {
  std::vector<std::uint32_t> ids(n);
  const char* words[] = {"the ", "cat ", "sat ", "on ", "a ", "mat ", "and ", "dog ", "ran ", ". "};
  std::size_t i = 0, w = 0;
  while (i < n) {
    for (const char* c = words[(w * 7 + w / 3) % 10]; *c && i < n; ++c) ids[i++] = static_cast<unsigned char>(*c);
    ++w;
  }
  return train::token_dataset::from_ids(std::move(ids), "synthetic");
}

/// Whether two float models' parameters are equal to the bit, in for_each_parameter's order.
template <class A, class B>
bool same_parameters(const A& a, const B& b) {
  std::vector<std::vector<float>> x, y;
  a.for_each_parameter([&](const std::string&, const auto& t) { x.emplace_back(t.data(), t.data() + t.size()); });
  b.for_each_parameter([&](const std::string&, const auto& t) { y.emplace_back(t.data(), t.data() + t.size()); });
  return x.size() == y.size() && std::equal(x.begin(), x.end(), y.begin(), [](const auto& u, const auto& v) {
           return u.size() == v.size() && std::memcmp(u.data(), v.data(), u.size() * sizeof(float)) == 0;
         });
}

}  // namespace einlm::test
