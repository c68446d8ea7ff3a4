// einlm/tokenizer/stream.hpp — encoding a text that arrives in chunks (CS336's encode_iterable),
// and decoding ids that arrive in batches.
//
// Contract (stream_encoder): for every way of cutting a text into chunks (even inside a UTF-8 character or a
// special token), pushing the chunks and then calling finish() yields exactly the ids of
// bpe_tokenizer::encode on the whole text with the same options. Memory is O(chunk + longest
// pre-token + longest special token): a piece is emitted as soon as it cannot change, which is
// when at least two characters follow it (GPT-2's pattern never looks further; see
// docs/tokenizer.md, "Streaming"). Work is amortised linear: a held-back tail is re-scanned only
// after the buffer has doubled.
//
// Contract (stream_decoder): for every way of cutting an id sequence into batches, the text pieces
// it returns concatenate to bpe_tokenizer::decode of the whole sequence: a UTF-8 character split
// across tokens (an emoji over three GPT-2 tokens) is held back until it is complete, instead of
// turning into two U+FFFD (the classic streaming-generation bug).
#pragma once

#include <algorithm>
#include <cstddef>
#include <istream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "einlm/tokenizer/bpe.hpp"
#include "einlm/tokenizer/pretokenize.hpp"
#include "einlm/tokenizer/utf8.hpp"

namespace einlm::tokenizer {

class stream_encoder {
 public:
  /// Encodes with `tok` (which must outlive the encoder); options.threads is ignored.
  explicit stream_encoder(const bpe_tokenizer& tok, encode_options options = {})
      : tok_(&tok), options_(std::move(options)), allowed_(tok.allowed_mask(options_.allowed)) {
    for (std::size_t k = 0; k < allowed_.size(); ++k)
      if (allowed_[k]) max_allowed_ = std::max(max_allowed_, tok.specials_[k].first.size());
    if (options_.disallowed.is_all()) {
      for (const auto& [t, id] : tok.specials_)
        if (!options_.allowed.contains(t)) disallowed_.push_back(t);
    } else {
      disallowed_ = options_.disallowed.tokens();
    }
    for (const auto& t : disallowed_) max_disallowed_ = std::max(max_disallowed_, t.size());
  }

  /// Adds a chunk; appends to `out` the ids that no later chunk can change.
  void push(std::string_view chunk, std::vector<token_id>& out) {
    buf_ += chunk;
    if (buf_.size() >= next_scan_) process(false, out);
  }

  /// Ends the text: appends the ids of everything still held back. The encoder can then be reused.
  void finish(std::vector<token_id>& out) {
    process(true, out);
    recent_.clear();
    next_scan_ = 0;
    consumed_ = 0;
  }

  /// Bytes currently held back.
  std::size_t buffered() const noexcept { return buf_.size(); }
  /// Work done so far.
  const encode_stats& stats() const noexcept { return stats_; }

 private:
  void check_disallowed() {
    if (disallowed_.empty()) return;
    const std::string window = recent_ + buf_;
    for (const auto& t : disallowed_) {
      if (t.empty()) continue;
      if (const auto at = window.find(t); at != std::string::npos)
        detail::throw_disallowed(t, consumed_ - recent_.size() + at);
    }
  }

  void process(bool final, std::vector<token_id>& out) {
    check_disallowed();
    const std::string_view b(buf_);
    // h: the first position whose suffix could still grow into an allowed special token.
    const std::size_t h =
        (final || max_allowed_ == 0) ? b.size() : tok_->matcher_.partial_suffix(b, allowed_.data());
    // Special tokens that start before h are final (no longer or earlier match can appear).
    std::size_t pos = 0;
    while (max_allowed_ > 0) {
      std::size_t at = 0;
      const int k = tok_->find_special(b, pos, allowed_, at);
      if (k < 0 || at >= h) break;
      tok_->encode_ordinary_append(b.data() + pos, b.data() + at, true, out, stats_);
      out.push_back(tok_->specials_[k].second);
      pos = at + tok_->specials_[k].first.size();
    }
    std::size_t keep_from = pos;
    if (final) {
      tok_->encode_ordinary_append(b.data() + pos, b.data() + b.size(), true, out, stats_);
      keep_from = b.size();
    } else if (pos < h) {
      // Text [pos, t): pieces that end at least two characters (<= 8 bytes) before t are final.
      const std::size_t t = h - utf8_incomplete_tail(b.substr(pos, h - pos));
      const std::size_t limit = t >= pos + 8 ? t - 8 : pos;
      std::size_t committed = pos;
      auto& cache = detail::thread_piece_cache();
      cache.bind(tok_->serial_);
      detail::split_gpt2(
          b.data() + pos, b.data() + t, true,
          [&](const char* p, std::size_t n) {
            const auto end = static_cast<std::size_t>(p - b.data()) + n;
            if (end > limit || committed != static_cast<std::size_t>(p - b.data())) return;
            tok_->encode_piece_append(p, n, out, stats_, &cache);
            committed = end;
          },
          &stats_.pretokenize);
      keep_from = committed;
    }
    // Remember the tail of the consumed text, to find disallowed tokens across the cut.
    if (max_disallowed_ > 1) {
      recent_ += b.substr(0, keep_from);
      if (recent_.size() > max_disallowed_ - 1) recent_.erase(0, recent_.size() - (max_disallowed_ - 1));
    }
    buf_.erase(0, keep_from);
    consumed_ += keep_from;
    next_scan_ = std::max<std::size_t>(2 * buf_.size(), buf_.size() + 1);
  }

  const bpe_tokenizer* tok_;
  encode_options options_;
  std::vector<std::uint8_t> allowed_;
  std::vector<std::string> disallowed_;
  std::size_t max_allowed_ = 0, max_disallowed_ = 0;
  std::string buf_, recent_;
  std::size_t next_scan_ = 0;
  std::size_t consumed_ = 0;  // bytes of the text already encoded
  encode_stats stats_;
};

class stream_decoder {
 public:
  /// Decodes with `tok` (which must outlive the decoder).
  explicit stream_decoder(const bpe_tokenizer& tok) : tok_(&tok) {}

  /// Appends to `out` the text of `ids` that no later id can change; throws tokenizer_error for an
  /// unknown id.
  void push(std::span<const token_id> ids, std::string& out) {
    tok_->decode_bytes_append(ids, pending_);
    const std::size_t keep = utf8_incomplete_tail(pending_);
    emit(std::string_view(pending_).substr(0, pending_.size() - keep), out);
    pending_.erase(0, pending_.size() - keep);
  }

  /// Ends the sequence: appends what is held back (an incomplete character becomes U+FFFD).
  void finish(std::string& out) {
    emit(pending_, out);
    pending_.clear();
  }

 private:
  static void emit(std::string_view bytes, std::string& out) {
    if (is_valid_utf8(bytes)) out += bytes;
    else out += to_valid_utf8(bytes);
  }
  const bpe_tokenizer* tok_;
  std::string pending_;
};

/// Encodes a whole stream in chunks of `chunk_bytes`, passing each batch of final ids to
/// sink(std::span<const token_id>). Memory stays O(chunk_bytes + longest pre-token).
template <class Sink>
void encode_stream(const bpe_tokenizer& tok, std::istream& in, Sink&& sink,
                   const encode_options& options = {}, std::size_t chunk_bytes = 1 << 16) {
  stream_encoder enc(tok, options);
  std::string chunk(chunk_bytes, '\0');
  std::vector<token_id> ids;
  while (in) {
    in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    const auto got = static_cast<std::size_t>(in.gcount());
    if (got == 0) break;
    enc.push(std::string_view(chunk.data(), got), ids);
    if (!ids.empty()) {
      sink(std::span<const token_id>(ids));
      ids.clear();
    }
  }
  if (in.bad()) throw tokenizer_error("encode_stream: read error");
  enc.finish(ids);
  if (!ids.empty()) sink(std::span<const token_id>(ids));
}

}  // namespace einlm::tokenizer
