// einlm/train/data.hpp — token datasets and language-model batches (CS336's get_batch).
//
//   auto train = token_dataset::open("train.u16", token_width::u16);   // mmap'ed, read-only
//   auto [fit, held_out] = train.split(0.9);                           // first 90 % / last 10 %
//   lm_batch b = get_batch(fit, 32, 256, random_stream{seed, 0}, step);
//   b.inputs, b.targets                                                // (B, T) int64, targets = inputs + 1 position
//
// Files: flat little-endian uint16 or uint32 token ids, no header (the format `einlm-tokenizer
// encode --format u16|u32` writes, nanoGPT's and llm.c's convention). A file whose size is not a
// multiple of the token width, or that cannot be opened, is an io_error naming it.
//
// get_batch: each of the B rows starts at an offset drawn uniformly from [0, n − T) (n tokens, T
// the context length), as CS336's torch.randint(0, n − T) does; inputs are tokens [s, s + T) and
// targets [s + 1, s + T + 1). Draws come from the Philox stream (seed, stream) at counter
// `draw`·B + row, so a batch is a pure function of (dataset, B, T, stream, draw): the same on
// every run, thread and machine, and a resumed run continues the same sequence of batches. A
// dataset with n ≤ T tokens is an error naming its size and the context length.
//
// check_lm_data(data, T, vocab_size) checks a dataset up front, as the trainer does before it
// touches its output directory: enough tokens for T, and no id outside the model's vocabulary.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "einlm/core/error.hpp"
#include "einlm/core/file_io.hpp"
#include "einlm/core/random.hpp"
#include "einlm/core/tensor.hpp"

namespace einlm::train {

enum class token_width : int { u16 = 2, u32 = 4 };

/// A read-only sequence of token ids: a mapped file, or ids held in memory; split() gives ranges.
class token_dataset {
 public:
  /// Maps a flat token file.
  static token_dataset open(const std::string& path, token_width width) {
    auto file = std::make_shared<const einlm::detail::mapped_file>(path);
    const std::size_t w = static_cast<std::size_t>(width);
    if (file->size() % w != 0)
      throw io_error(einlm::detail::concat(path, ": ", file->size(), " bytes is not a whole number of ", w * 8,
                                    "-bit tokens (is the token width right?)"));
    token_dataset d;
    d.name_ = path;
    d.width_ = width;
    d.bytes_ = file->data();
    d.size_ = file->size() / w;
    d.file_ = std::move(file);
    return d;
  }

  /// Ids held in memory (copied).
  static token_dataset from_ids(std::vector<std::uint32_t> ids, std::string name = "in-memory tokens") {
    auto owned = std::make_shared<const std::vector<std::uint32_t>>(std::move(ids));
    token_dataset d;
    d.name_ = std::move(name);
    d.width_ = token_width::u32;
    d.bytes_ = reinterpret_cast<const std::uint8_t*>(owned->data());
    d.size_ = owned->size();
    d.ids_ = std::move(owned);
    return d;
  }

  std::size_t size() const { return size_; }
  const std::string& name() const { return name_; }
  token_width width() const { return width_; }

  std::uint32_t operator[](std::size_t i) const {
    const std::uint8_t* p = bytes_ + (offset_ + i) * static_cast<std::size_t>(width_);
    if (width_ == token_width::u16) return static_cast<std::uint32_t>(p[0] | (p[1] << 8));
    return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
           static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
  }

  /// Tokens [begin, end) of this dataset, sharing its storage.
  token_dataset range(std::size_t begin, std::size_t end) const {
    if (begin > end || end > size_)
      throw value_error(einlm::detail::concat(name_, ": range [", begin, ", ", end, ") is outside its ", size_, " tokens"));
    token_dataset d = *this;
    d.offset_ = offset_ + begin;
    d.size_ = end - begin;
    return d;
  }

  /// The first `fraction` of the tokens and the rest (a train/validation split by position),
  /// named after this dataset and their token ranges ("train.u16 [0, 900)"), so that an error about
  /// a part says which part.
  std::pair<token_dataset, token_dataset> split(double fraction) const {
    if (!(fraction > 0 && fraction < 1))
      throw value_error(einlm::detail::concat("token_dataset::split: the fraction must be in (0, 1), got ", fraction));
    const auto cut = static_cast<std::size_t>(static_cast<double>(size_) * fraction);
    std::pair<token_dataset, token_dataset> parts{range(0, cut), range(cut, size_)};
    parts.first.name_ = einlm::detail::concat(name_, " [0, ", cut, ")");
    parts.second.name_ = einlm::detail::concat(name_, " [", cut, ", ", size_, ")");
    return parts;
  }

  /// The position of the first token id that is not below `limit` (a model's vocabulary size),
  /// if there is one: one pass over the tokens.
  std::optional<std::size_t> find_id_not_below(std::uint64_t limit) const {
    if (limit > 0xFFFFFFFFu) return std::nullopt;
    const std::uint32_t bound = static_cast<std::uint32_t>(limit);
    const std::uint8_t* p = bytes_ + offset_ * static_cast<std::size_t>(width_);
    if (width_ == token_width::u16) {
      if (bound > 0xFFFF) return std::nullopt;
      for (std::size_t i = 0; i < size_; ++i)
        if (static_cast<std::uint32_t>(p[2 * i] | (p[2 * i + 1] << 8)) >= bound) return i;
      return std::nullopt;
    }
    for (std::size_t i = 0; i < size_; ++i)
      if ((*this)[i] >= bound) return i;
    return std::nullopt;
  }

 private:
  std::string name_;
  token_width width_ = token_width::u32;
  const std::uint8_t* bytes_ = nullptr;
  std::size_t offset_ = 0, size_ = 0;
  std::shared_ptr<const einlm::detail::mapped_file> file_;
  std::shared_ptr<const std::vector<std::uint32_t>> ids_;
};

/// One batch of next-token prediction.
struct lm_batch {
  tensor<std::int64_t, dims<2>, host> inputs;   // (B, T)
  tensor<std::int64_t, dims<2>, host> targets;  // (B, T)
  std::vector<std::size_t> starts;              // (B,) the offsets drawn
};

namespace detail {

/// value_error unless `data` holds more than `context_length` tokens (a batch row's inputs and
/// targets).
inline void check_enough_tokens(const token_dataset& data, index_t context_length) {
  const auto T = static_cast<std::size_t>(context_length);
  if (data.size() <= T)
    throw value_error(einlm::detail::concat(data.name(), ": ", data.size(), data.size() == 1 ? " token is" : " tokens are",
                                            " too few for context length ", T,
                                            " (a batch needs at least ", T + 1, ")"));
}

/// A uniform integer in [0, range) from 64 random bits (Lemire's multiply-shift; the bias is below
/// range / 2^64).
inline std::uint64_t uniform_below(std::uint64_t bits, std::uint64_t range) {
  return static_cast<std::uint64_t>((static_cast<unsigned __int128>(bits) * range) >> 64);
}

}  // namespace detail

/// B rows of T tokens and their next tokens, at offsets drawn from (stream, draw); see the file
/// comment.
inline lm_batch get_batch(const token_dataset& data, index_t batch_size, index_t context_length, random_stream stream,
                          std::uint64_t draw) {
  if (batch_size <= 0 || context_length <= 0)
    throw value_error(einlm::detail::concat("get_batch: batch size and context length must be positive, got ", batch_size,
                                     " and ", context_length));
  detail::check_enough_tokens(data, context_length);
  const auto n = data.size();
  const auto T = static_cast<std::size_t>(context_length);
  lm_batch b{tensor<std::int64_t, dims<2>, host>(dims<2>(batch_size, context_length)),
             tensor<std::int64_t, dims<2>, host>(dims<2>(batch_size, context_length)),
             std::vector<std::size_t>(static_cast<std::size_t>(batch_size))};
  for (index_t row = 0; row < batch_size; ++row) {
    const auto r = einlm::detail::random_block(stream, draw * static_cast<std::uint64_t>(batch_size) + static_cast<std::uint64_t>(row));
    const std::uint64_t bits = static_cast<std::uint64_t>(r[0]) | static_cast<std::uint64_t>(r[1]) << 32;
    const std::size_t start = static_cast<std::size_t>(detail::uniform_below(bits, n - T));
    b.starts[static_cast<std::size_t>(row)] = start;
    std::int64_t* in = b.inputs.data() + row * context_length;
    std::int64_t* out = b.targets.data() + row * context_length;
    for (std::size_t t = 0; t < T; ++t) {
      in[t] = data[start + t];
      out[t] = data[start + t + 1];
    }
  }
  return b;
}

/// Checks, before any work, that `data` can feed a language model of `vocab_size` ids (0: ids not
/// checked) batches of `context_length` tokens: more than context_length tokens, and every id
/// below vocab_size (one pass over the tokens). A value_error names the dataset and, for an id,
/// its position and value.
inline void check_lm_data(const token_dataset& data, index_t context_length, std::int64_t vocab_size = 0) {
  if (context_length <= 0)
    throw value_error(einlm::detail::concat("check_lm_data: the context length must be positive, got ", context_length));
  detail::check_enough_tokens(data, context_length);
  if (vocab_size <= 0) return;
  if (const auto at = data.find_id_not_below(static_cast<std::uint64_t>(vocab_size)))
    throw value_error(einlm::detail::concat(data.name(), ": the token at position ", *at, " has id ", data[*at],
                                            ", outside the model's vocabulary [0, ", vocab_size,
                                            ") (encoded by another tokenizer, or read with the wrong token width?)"));
}

}  // namespace einlm::train
