// Tests of einlm/train/data.hpp: token files of both widths read back, rejected sizes, ranges and
// splits, and get_batch with CS336's test_get_batch checks (np.arange(100), context 7, batch 32,
// 1000 draws: shapes, targets = inputs + 1, every start in 0..92 and each start's count within
// μ ± 5σ), determinism per (stream, draw), and the error for a dataset too short; split's part
// names and check_lm_data's errors (a short set, an id planted at a random place past the
// vocabulary) on files of both widths.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "einlm/train/data.hpp"

using namespace einlm;
using namespace einlm::train;

namespace {

std::string temp_path(const std::string& name) {
  return std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") + "/einlm_test_data_" + name;
}

template <class T>
void write_tokens(const std::string& path, const std::vector<T>& ids) {
  std::ofstream out(path, std::ios::binary);
  for (const T id : ids)
    for (std::size_t b = 0; b < sizeof(T); ++b) out.put(static_cast<char>((static_cast<std::uint64_t>(id) >> (8 * b)) & 0xff));
}

}  // namespace

TEST_CASE("token files of 16 and 32 bits") {
  const std::string p16 = temp_path("tokens.u16"), p32 = temp_path("tokens.u32");
  write_tokens<std::uint16_t>(p16, {0, 1, 50256, 65535, 7});
  write_tokens<std::uint32_t>(p32, {0, 100000, 4294967295u});
  const auto d16 = token_dataset::open(p16, token_width::u16);
  CHECK(d16.size() == 5);
  CHECK(d16[2] == 50256);
  CHECK(d16[3] == 65535);
  const auto d32 = token_dataset::open(p32, token_width::u32);
  CHECK(d32.size() == 3);
  CHECK(d32[1] == 100000);
  CHECK(d32[2] == 4294967295u);
  CHECK_THROWS_WITH_AS(token_dataset::open(p16, token_width::u32),
                       doctest::Contains("10 bytes is not a whole number of 32-bit tokens"), io_error);
  CHECK_THROWS_AS(token_dataset::open(temp_path("missing.u16"), token_width::u16), io_error);
  const auto [head, tail] = d16.split(0.6);
  CHECK(head.size() == 3);
  CHECK(tail.size() == 2);
  CHECK(tail[0] == 65535);
  CHECK_THROWS_AS(d16.range(2, 9), value_error);
  std::filesystem::remove(p16);
  std::filesystem::remove(p32);
}

TEST_CASE("get_batch: CS336's checks on np.arange(100)") {
  std::vector<std::uint32_t> ids(100);
  for (std::uint32_t i = 0; i < 100; ++i) ids[i] = i;
  const auto data = token_dataset::from_ids(ids);
  const index_t batch = 32, context = 7;
  std::vector<int> counts(100, 0);
  for (std::uint64_t draw = 0; draw < 1000; ++draw) {
    // [snippet get_batch]
    const lm_batch b = get_batch(data, batch, context, random_stream{1234, 0}, draw);  // (B, T) twice
    // [end snippet]
    REQUIRE(b.inputs.extent(0) == batch);
    REQUIRE(b.inputs.extent(1) == context);
    for (index_t r = 0; r < batch; ++r) {
      for (index_t t = 0; t < context; ++t) CHECK(b.targets(r, t) == b.inputs(r, t) + 1);
      ++counts[static_cast<std::size_t>(b.inputs(r, 0))];
    }
  }
  // Starts cover exactly 0..92, each about 32000 / 93 times.
  const double n = 1000.0 * batch, k = 100 - context, mean = n / k, sigma = std::sqrt(n * (1 / k) * (1 - 1 / k));
  for (int s = 0; s < 100; ++s) {
    if (s <= 92) {
      CHECK(counts[static_cast<std::size_t>(s)] > mean - 5 * sigma);
      CHECK(counts[static_cast<std::size_t>(s)] < mean + 5 * sigma);
    } else {
      CHECK(counts[static_cast<std::size_t>(s)] == 0);
    }
  }
}

TEST_CASE("get_batch: the same (stream, draw) gives the same batch; others differ") {
  std::vector<std::uint32_t> ids(5000);
  for (std::uint32_t i = 0; i < 5000; ++i) ids[i] = (i * 7919u) % 50257u;
  const auto data = token_dataset::from_ids(ids);
  const auto a = get_batch(data, 4, 16, random_stream{9, 1}, 17);
  const auto b = get_batch(data, 4, 16, random_stream{9, 1}, 17);
  const auto c = get_batch(data, 4, 16, random_stream{9, 1}, 18);
  const auto d = get_batch(data, 4, 16, random_stream{9, 2}, 17);
  CHECK(a.starts == b.starts);
  CHECK(a.starts != c.starts);
  CHECK(a.starts != d.starts);
  for (index_t t = 0; t < 16; ++t) CHECK(a.inputs(2, t) == ids[a.starts[2] + static_cast<std::size_t>(t)]);
}

TEST_CASE("get_batch: a dataset too short for the context is an error naming both") {
  const auto data = token_dataset::from_ids({1, 2, 3, 4, 5, 6, 7}, "tiny");
  CHECK_THROWS_WITH_AS(get_batch(data, 2, 7, random_stream{1, 0}, 0),
                       "tiny: 7 tokens are too few for context length 7 (a batch needs at least 8)", value_error);
  CHECK_NOTHROW(get_batch(data, 2, 6, random_stream{1, 0}, 0));
  CHECK_THROWS_AS(get_batch(data, 0, 3, random_stream{1, 0}, 0), value_error);
}

TEST_CASE("split names its parts; check_lm_data finds a short set and the first id outside the vocabulary") {
  // Random ids below 1000 in files of both widths, with one id ≥ 1000 planted at a random place.
  std::mt19937 rng(20261130);
  std::vector<std::uint32_t> ids(3000);
  for (auto& id : ids) id = static_cast<std::uint32_t>(rng() % 1000);
  const std::size_t planted = 1000 + rng() % 1500;
  ids[planted] = 1000 + static_cast<std::uint32_t>(rng() % 60000);
  const std::string p16 = temp_path("vocab.u16"), p32 = temp_path("vocab.u32");
  write_tokens<std::uint16_t>(p16, std::vector<std::uint16_t>(ids.begin(), ids.end()));
  write_tokens<std::uint32_t>(p32, ids);
  for (const auto& [path, width] : {std::pair{p16, token_width::u16}, std::pair{p32, token_width::u32}}) {
    const auto data = token_dataset::open(path, width);
    CHECK(data.find_id_not_below(1000) == planted);
    CHECK(data.find_id_not_below(ids[planted] + 1) == std::nullopt);
    CHECK(data.find_id_not_below(0) == std::size_t{0});
    CHECK_NOTHROW(check_lm_data(data, 64, ids[planted] + 1));
    CHECK_NOTHROW(check_lm_data(data, 64));  // no vocabulary: ids not checked
    CHECK_THROWS_WITH_AS(check_lm_data(data, 64, 1000),
                         (path + ": the token at position " + std::to_string(planted) + " has id " +
                          std::to_string(ids[planted]) +
                          ", outside the model's vocabulary [0, 1000) (encoded by another tokenizer, or read "
                          "with the wrong token width?)")
                             .c_str(),
                         value_error);
    // The parts of a split say which part they are, and find positions within themselves.
    const auto [head, tail] = data.split(0.5);
    CHECK(head.name() == path + " [0, 1500)");
    CHECK(tail.name() == path + " [1500, 3000)");
    const auto& holder = planted < 1500 ? head : tail;
    CHECK(holder.find_id_not_below(1000) == planted - (planted < 1500 ? 0 : 1500));
    CHECK((planted < 1500 ? tail : head).find_id_not_below(1000) == std::nullopt);
    CHECK_THROWS_WITH_AS(check_lm_data(data.range(0, 10).split(0.5).second, 5),
                         (path + " [5, 10): 5 tokens are too few for context length 5 (a batch needs at least 6)").c_str(),
                         value_error);
  }
  CHECK_THROWS_WITH_AS(check_lm_data(token_dataset::from_ids({4}, "one"), 1),
                       "one: 1 token is too few for context length 1 (a batch needs at least 2)", value_error);
  CHECK_THROWS_AS(check_lm_data(token_dataset::from_ids({4, 5, 6}, "three"), 0), value_error);
  std::filesystem::remove(p16);
  std::filesystem::remove(p32);
}
