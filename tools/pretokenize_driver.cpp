// tools/pretokenize_driver.cpp — runs einlm's GPT-2 pre-tokenizer over a batch of cases for the
// oracle comparison in tools/pretokenize_oracle.py.
//
// Input (file argv[1]): records of [u32 little-endian byte length][bytes].
// Output (file argv[2]): per record, [u32 piece count][u32 piece length]...
// Build: g++ -O2 -std=c++20 -Iinclude -I<cuda include dirs> tools/pretokenize_driver.cpp
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "einlm/tokenizer/common.hpp"
#include "einlm/tokenizer/pretokenize.hpp"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s CASES.bin PIECES.bin\n", argv[0]);
    return 2;
  }
  const std::string in = einlm::tokenizer::detail::read_file(argv[1]);
  std::vector<std::uint32_t> out;
  std::size_t pos = 0;
  while (pos + 4 <= in.size()) {
    std::uint32_t n;
    std::memcpy(&n, in.data() + pos, 4);
    pos += 4;
    const std::string_view text(in.data() + pos, n);
    pos += n;
    const auto pieces = einlm::tokenizer::pretokenize(text);
    out.push_back(static_cast<std::uint32_t>(pieces.size()));
    for (auto p : pieces) out.push_back(static_cast<std::uint32_t>(p.size()));
  }
  einlm::tokenizer::detail::write_file(
      argv[2], std::string_view(reinterpret_cast<const char*>(out.data()), out.size() * 4));
  return 0;
}
