// einlm/tokenizer/bpe_train.hpp — training a byte-level BPE vocabulary.
//
// Contract (train_options):
//   * The vocabulary is the 256 single bytes, then one token per merge, then the special tokens:
//     vocab_size counts all three. Ids: bytes in GPT-2's byte order (0..255, so a trained
//     vocabulary writes GPT-2-compatible vocab.json/merges.txt and tiktoken rank files), merged
//     tokens in creation order, special tokens last.
//   * Special tokens split the text before pre-tokenization (leftmost-longest match) and are never
//     counted or merged. Each text segment is split with the GPT-2 pre-tokenizer; the pieces are
//     counted as words (64-bit counts); a merge joins the most frequent adjacent pair of symbols
//     inside words, counting all windows (aaaa has three (a, a) pairs) and merging left to right.
//   * Ties on the count: tie_break::cs336 takes the lexicographically greatest pair of byte strings
//     (CS336's rule, Python's max over (bytes, bytes)); tie_break::hf takes the pair with the
//     smallest ids in HF tokenizers' numbering (bytes in GPT-2 order, then merges in creation
//     order), which reproduces HF's BpeTrainer given all 256 bytes as its initial alphabet.
//   * A merge whose result already exists as a token records the merge and reuses the token (HF's
//     policy): the vocabulary never holds the same bytes twice. Training stops when the
//     vocabulary has vocab_size tokens or no pair is left.
//   * The output does not depend on the thread count. Memory is O(distinct words + one block of
//     input), never the whole corpus: files are read in blocks and cut at special tokens or at
//     safe pre-token boundaries.
//   * Algorithm: words are deduplicated with counts (threads, per-thread tables merged); pair counts
//     are kept incrementally through a pair -> words index, and the best pair comes from a lazy
//     max-heap (a popped entry whose count is out of date is re-pushed with the current count).
//     A merge rescans only the words that contain its pair.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <atomic>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#if __has_include(<unistd.h>)
#include <unistd.h>
#define EINLM_TOKENIZER_HAS_ISATTY 1
#else
#define EINLM_TOKENIZER_HAS_ISATTY 0
#endif

#include "einlm/tokenizer/bpe.hpp"
#include "einlm/tokenizer/common.hpp"
#include "einlm/tokenizer/pretokenize.hpp"

namespace einlm::tokenizer {

/// How ties between equally frequent pairs are broken.
enum class tie_break : std::uint8_t {
  cs336,  // lexicographically greatest (bytes, bytes) pair
  hf,     // smallest (id, id) pair in HF tokenizers' id order
};

/// When to draw a progress bar on stderr.
enum class progress_mode : std::uint8_t { automatic /* when stderr is a terminal */, always, never };

struct train_options {
  std::size_t vocab_size = 0;               // 256 bytes + merges + special tokens
  std::vector<std::string> special_tokens;  // split the text; never merged; appended last
  unsigned threads = 0;                     // 0: hardware concurrency
  tie_break ties = tie_break::cs336;
  progress_mode progress = progress_mode::automatic;
  std::size_t block_bytes = std::size_t(32) << 20;  // input read per step
};

/// What training did and how long it took.
struct train_stats {
  std::uint64_t bytes = 0;           // input bytes
  std::uint64_t pieces = 0;          // pre-tokens counted
  std::uint64_t words = 0;           // distinct pre-tokens
  std::uint64_t merges = 0;          // merges made
  std::uint64_t reused_tokens = 0;   // merges whose result already existed
  std::uint64_t words_rescanned = 0; // word visits during merging (the incremental work)
  std::uint64_t heap_pushes = 0;
  double count_seconds = 0, merge_seconds = 0;
};

namespace detail {

/// Counts distinct byte strings: open addressing, keys stored back to back. Aligned to its own
/// cache lines, since each training thread fills one.
class alignas(128) word_counter {
 public:
  struct slot {
    std::uint64_t hash = 0;
    std::uint64_t offset = 0;
    std::uint64_t count = 0;  // 0: empty
    std::uint32_t length = 0;
  };

  word_counter() { slots_.resize(1024); }

  void add(const char* p, std::size_t n, std::uint64_t count = 1) {
    add_hashed(p, n, hash_bytes(p, n), count);
  }

  void add_hashed(const char* p, std::size_t n, std::uint64_t h, std::uint64_t count) {
    if ((size_ + 1) * 4 > slots_.size() * 3) grow();
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t i = h & mask;; i = (i + 1) & mask) {
      slot& s = slots_[i];
      if (s.count == 0) {
        s = {h, keys_.size(), count, static_cast<std::uint32_t>(n)};
        keys_.append(p, n);
        ++size_;
        return;
      }
      if (s.hash == h && s.length == n && std::memcmp(keys_.data() + s.offset, p, n) == 0) {
        s.count += count;
        return;
      }
    }
  }

  /// The count stored for these bytes (0: absent).
  std::uint64_t find_hashed(const char* p, std::size_t n, std::uint64_t h) const noexcept {
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t i = h & mask;; i = (i + 1) & mask) {
      const slot& s = slots_[i];
      if (s.count == 0) return 0;
      if (s.hash == h && s.length == n && std::memcmp(keys_.data() + s.offset, p, n) == 0) return s.count;
    }
  }

  void merge_from(const word_counter& other) {
    for (const auto& s : other.slots_)
      if (s.count) add_hashed(other.keys_.data() + s.offset, s.length, s.hash, s.count);
  }

  template <class F>
  void for_each(F&& f) const {
    for (const auto& s : slots_)
      if (s.count) f(std::string_view(keys_.data() + s.offset, s.length), s.count);
  }

  std::size_t size() const noexcept { return size_; }
  std::size_t key_bytes() const noexcept { return keys_.size(); }

 private:
  void grow() {
    std::vector<slot> old(slots_.size() * 2);
    old.swap(slots_);
    const std::size_t mask = slots_.size() - 1;
    for (const auto& s : old) {
      if (!s.count) continue;
      std::size_t i = s.hash & mask;
      while (slots_[i].count) i = (i + 1) & mask;
      slots_[i] = s;
    }
  }
  std::vector<slot> slots_;
  std::string keys_;
  std::size_t size_ = 0;
};

/// A progress line on stderr, redrawn at most ten times a second.
class progress_line {
 public:
  explicit progress_line(bool on) : on_(on) {}
  template <class... Parts>
  void update(bool force, const Parts&... parts) {
    if (!on_) return;
    const auto now = std::chrono::steady_clock::now();
    if (!force && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    const std::string line = einlm::detail::concat(parts...);
    std::fprintf(stderr, "\r%-78s", line.c_str());
    std::fflush(stderr);
    drawn_ = true;
  }
  void done() {
    if (on_ && drawn_) std::fputc('\n', stderr);
    drawn_ = false;
  }

 private:
  bool on_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_{};
};

inline bool stderr_is_terminal() {
#if EINLM_TOKENIZER_HAS_ISATTY
  return ::isatty(2) != 0;
#else
  return false;
#endif
}

}  // namespace detail

/// Trains a byte-level BPE: add_text()/add_file() any number of times, then train().
class bpe_trainer {
 public:
  explicit bpe_trainer(train_options options) : options_(std::move(options)) {
    if (options_.threads == 0) options_.threads = std::max(1u, std::thread::hardware_concurrency());
    std::vector<std::string> specials;
    for (const auto& s : options_.special_tokens) {
      if (s.size() < 2)
        throw tokenizer_error(einlm::detail::concat(
            "train: special token ", detail::quote_bytes(s),
            " is shorter than two bytes (every single byte is already an ordinary token)"));
      if (std::find(specials.begin(), specials.end(), s) == specials.end()) specials.push_back(s);
    }
    options_.special_tokens = specials;
    if (options_.vocab_size < 256 + specials.size())
      throw tokenizer_error(einlm::detail::concat(
          "train: vocab_size ", options_.vocab_size, " is below 256 bytes + ", specials.size(),
          " special tokens = ", 256 + specials.size()));
    matcher_ = detail::special_matcher(std::move(specials));
    counters_.resize(options_.threads);
    const bool tty = options_.progress == progress_mode::always ||
                     (options_.progress == progress_mode::automatic && detail::stderr_is_terminal());
    progress_ = detail::progress_line(tty);
  }

  /// Counts the words of a text held in memory (cut at special tokens; the text ends at its end).
  void add_text(std::string_view text) {
    const auto t0 = std::chrono::steady_clock::now();
    count_block(text);
    stats_.bytes += text.size();
    stats_.count_seconds += seconds_since(t0);
  }

  /// Counts a pre-token directly, `count` times (for callers with their own pre-tokenization, and
  /// for the textbook examples that split on whitespace).
  void add_word(std::string_view word, std::uint64_t count = 1) {
    if (!word.empty() && count > 0) counters_[0].add(word.data(), word.size(), count);
  }

  /// Counts the words of a file, reading it in blocks of options.block_bytes.
  void add_file(const std::string& path) {
    const auto t0 = std::chrono::steady_clock::now();
    std::ifstream in(path, std::ios::binary);
    if (!in) throw tokenizer_error(einlm::detail::concat(path, ": cannot open file for reading"));
    in.seekg(0, std::ios::end);
    const auto total = static_cast<std::uint64_t>(in.tellg());
    in.seekg(0);
    std::string buf;
    std::uint64_t done = 0;
    std::vector<char> block(options_.block_bytes);
    while (true) {
      in.read(block.data(), static_cast<std::streamsize>(block.size()));
      const auto got = static_cast<std::size_t>(in.gcount());
      if (in.bad()) throw tokenizer_error(einlm::detail::concat(path, ": read error"));
      const bool last = got == 0 || in.eof();
      buf.append(block.data(), got);
      // Cut where nothing can straddle (at the end of the file: everything).
      std::size_t cut = buf.size();
      bool cut_final = true;  // the pre-tokenizer sees the text end at `cut`
      if (!last) std::tie(cut, cut_final) = block_cut(buf);
      if (cut > 0) {
        count_block(std::string_view(buf).substr(0, cut), !cut_final);
        buf.erase(0, cut);
      }
      done += got;
      stats_.bytes += got;
      progress_.update(false, "counting ", path, ": ", done >> 20, " / ", total >> 20, " MiB, ",
                       words_so_far(), " distinct words");
      if (last) break;
    }
    if (!buf.empty()) count_block(buf);
    progress_.update(true, "counting ", path, ": ", total >> 20, " MiB, ", words_so_far(), " distinct words");
    progress_.done();
    stats_.count_seconds += seconds_since(t0);
  }

  /// Runs the merges and returns the vocabulary. The trainer can be trained again after more input.
  bpe_model train();

  const train_stats& stats() const noexcept { return stats_; }
  const train_options& options() const noexcept { return options_; }

  /// word -> count of everything counted so far (for tests and inspection).
  std::vector<std::pair<std::string, std::uint64_t>> word_counts() const {
    detail::word_counter all;
    for (const auto& c : counters_) all.merge_from(c);
    std::vector<std::pair<std::string, std::uint64_t>> out;
    all.for_each([&](std::string_view w, std::uint64_t n) { out.emplace_back(std::string(w), n); });
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  static double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  std::size_t words_so_far() const {
    std::size_t n = 0;
    for (const auto& c : counters_) n = std::max(n, c.size());
    return n;
  }

  // Where to cut a block that more input follows: after the last special token that is certainly
  // complete, or at a safe pre-token boundary after it (find_safe_split; the second value is then
  // false: the text does not end there for the pre-tokenizer). Special tokens are matched from the
  // block start, as count_block will, and nothing from the first position that may begin a special
  // token cut by the block end is consumed. (0, true): keep everything for the next block.
  std::pair<std::size_t, bool> block_cut(std::string_view buf) const {
    const std::size_t h = matcher_.partial_suffix(buf, nullptr);
    std::size_t segment = 0;  // start of the text after the last special token before h
    for (std::size_t pos = 0, at = 0; matcher_.size() > 0;) {
      const int k = matcher_.find(buf, pos, nullptr, at);
      if (k < 0 || at >= h) break;
      pos = at + matcher_[static_cast<std::size_t>(k)].size();
      segment = pos;
    }
    if (segment < h) {
      const auto head = buf.substr(0, h);
      const std::size_t near_end = h - std::min<std::size_t>(h - segment, std::size_t(1) << 16);
      std::size_t safe = find_safe_split(head, near_end);
      if (safe >= h && near_end > segment) safe = find_safe_split(head, segment);
      if (safe < h) return {safe, false};
    }
    return {segment, true};
  }

  // Counts the pieces of one block. `cut_inside`: the block was cut at a safe boundary (not final).
  void count_block(std::string_view text, bool cut_inside = false) {
    std::vector<detail::text_task> tasks;
    detail::plan_tasks(text, matcher_.size() ? &matcher_ : nullptr, nullptr, std::size_t(1) << 20, tasks);
    if (cut_inside) tasks.back().final = false;
    std::atomic<std::size_t> next{0};
    std::vector<std::uint64_t> pieces(options_.threads, 0);
    auto worker = [&](unsigned w) {
      auto& counter = counters_[w];
      std::uint64_t n_pieces = 0;  // a local count: a shared array would bounce between cores
      for (std::size_t t; (t = next.fetch_add(1)) < tasks.size();) {
        const auto& tk = tasks[t];
        detail::split_gpt2(text.data() + tk.begin, text.data() + tk.end, tk.final,
                           [&](const char* p, std::size_t n) {
                             counter.add(p, n);
                             ++n_pieces;
                           });
      }
      pieces[w] = n_pieces;
    };
    const unsigned n = static_cast<unsigned>(std::min<std::size_t>(options_.threads, tasks.size()));
    std::vector<std::thread> pool;
    for (unsigned w = 1; w < n; ++w) pool.emplace_back(worker, w);
    worker(0);
    for (auto& th : pool) th.join();
    for (auto p : pieces) stats_.pieces += p;
  }

  train_options options_;
  detail::special_matcher matcher_;
  std::vector<detail::word_counter> counters_;
  detail::progress_line progress_{false};
  train_stats stats_;
};

// ====================================================================== the merge loop

inline bpe_model bpe_trainer::train() {
  const auto t0 = std::chrono::steady_clock::now();
  // ---- words: symbols (token ids) back to back, with counts
  detail::word_counter all;
  if (counters_.size() == 1) {
    all = counters_[0];
  } else {
    for (const auto& c : counters_) all.merge_from(c);
  }
  struct word {
    std::uint64_t offset;
    std::uint32_t length;
    std::uint64_t count;
  };
  std::vector<word> words;
  words.reserve(all.size());
  std::vector<token_id> syms;
  syms.reserve(all.key_bytes());
  all.for_each([&](std::string_view w, std::uint64_t n) {
    words.push_back({syms.size(), static_cast<std::uint32_t>(w.size()), n});
    for (const char c : w) syms.push_back(static_cast<unsigned char>(c));
  });
  stats_.words = words.size();
  all = detail::word_counter();

  // ---- tokens: internal id = byte value for single bytes, then creation order
  std::vector<std::string> tokens(256);
  for (int b = 0; b < 256; ++b) tokens[b] = std::string(1, static_cast<char>(b));
  std::vector<std::uint32_t> hf_order(256);  // HF id order of each token
  for (int b = 0; b < 256; ++b) hf_order[b] = detail::gpt2_bytes.rank[b];
  detail::word_counter token_ids;  // bytes -> internal id + 1 (reuses the counter table)

  const std::size_t target = options_.vocab_size - matcher_.size();  // ordinary tokens wanted
  std::size_t distinct = 256;

  // ---- pairs: key -> index; per pair: count and the words that contain it
  struct pair_info {
    token_id a, b;
    std::int64_t count;
    std::vector<std::uint32_t> where;
    std::uint64_t stamp;  // merge number of the last increase
  };
  std::vector<pair_info> pairs;
  detail::pair_table index;  // (a, b) -> pair number in .id
  index.reserve(1 << 16);
  auto pair_of = [&](token_id a, token_id b) -> std::uint32_t {
    if (const auto* e = index.find(a, b)) return e->id;
    const auto n = static_cast<std::uint32_t>(pairs.size());
    index.insert(a, b, 0, n, false);
    pairs.push_back({a, b, 0, {}, 0});
    return n;
  };
  for (std::uint32_t w = 0; w < words.size(); ++w) {
    const token_id* s = syms.data() + words[w].offset;
    for (std::uint32_t i = 0; i + 1 < words[w].length; ++i) {
      auto& p = pairs[pair_of(s[i], s[i + 1])];
      p.count += static_cast<std::int64_t>(words[w].count);
      if (p.where.empty() || p.where.back() != w) p.where.push_back(w);
    }
  }

  // ---- the heap: (count, pair), best on top
  const bool cs336 = options_.ties == tie_break::cs336;
  auto better = [&](std::uint32_t x, std::uint32_t y) {  // true when pair x beats pair y on a tie
    const auto& px = pairs[x];
    const auto& py = pairs[y];
    if (cs336) {
      const int c = tokens[px.a].compare(tokens[py.a]);
      if (c != 0) return c > 0;
      return tokens[px.b].compare(tokens[py.b]) > 0;
    }
    if (hf_order[px.a] != hf_order[py.a]) return hf_order[px.a] < hf_order[py.a];
    return hf_order[px.b] < hf_order[py.b];
  };
  struct entry {
    std::int64_t count;
    std::uint32_t pair;
  };
  // std heap functions keep the "largest" on top: a < b when b should be popped first.
  auto less = [&](const entry& x, const entry& y) {
    if (x.count != y.count) return x.count < y.count;
    return better(y.pair, x.pair);
  };
  std::vector<entry> heap;
  heap.reserve(pairs.size());
  for (std::uint32_t i = 0; i < pairs.size(); ++i)
    if (pairs[i].count > 0) heap.push_back({pairs[i].count, i});
  std::make_heap(heap.begin(), heap.end(), less);

  bpe_model model;
  std::vector<token_id> merged_ids;  // internal id of each merge's result
  std::vector<std::uint32_t> grown;  // pairs whose count rose during this merge
  std::uint64_t merge_no = 0;
  const auto tm = std::chrono::steady_clock::now();

  while (distinct < target && !heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), less);
    const entry top = heap.back();
    heap.pop_back();
    auto& best = pairs[top.pair];
    if (top.count != best.count) {
      if (top.count > best.count && best.count > 0) {  // decreased: re-queue at the current count
        heap.push_back({best.count, top.pair});
        std::push_heap(heap.begin(), heap.end(), less);
        ++stats_.heap_pushes;
      }
      continue;  // (an increase was queued when it happened)
    }
    if (best.count <= 0) continue;
    ++merge_no;
    const token_id A = best.a, B = best.b;
    // The result: an existing token with the same bytes, or a new one.
    const std::string bytes = tokens[A] + tokens[B];
    token_id C = no_token;
    {
      const auto h = detail::hash_bytes(bytes.data(), bytes.size());
      if (const std::uint64_t found = token_ids.find_hashed(bytes.data(), bytes.size(), h)) {
        C = static_cast<token_id>(found - 1);
        ++stats_.reused_tokens;
      } else {
        C = static_cast<token_id>(tokens.size());
        tokens.push_back(bytes);
        hf_order.push_back(C);
        token_ids.add_hashed(bytes.data(), bytes.size(), h, std::uint64_t(C) + 1);
        ++distinct;
      }
    }
    model.merges.emplace_back(tokens[A], tokens[B]);
    merged_ids.push_back(C);
    ++stats_.merges;

    // Rewrite every word that holds (A, B); apply the count changes of its neighbours. The list
    // may name a word twice (a pair can reappear in a word): sorting dedupes it and walks the
    // word arrays in memory order.
    auto where = std::move(best.where);
    best.where = {};
    std::sort(where.begin(), where.end());
    where.erase(std::unique(where.begin(), where.end()), where.end());
    auto change = [&](token_id x, token_id y, std::int64_t delta, std::uint32_t w) {
      const auto pi = pair_of(x, y);
      auto& p = pairs[pi];
      p.count += delta;
      if (delta > 0) {
        if (p.where.empty() || p.where.back() != w) p.where.push_back(w);
        if (p.stamp != merge_no) {
          p.stamp = merge_no;
          grown.push_back(pi);
        }
      }
    };
    for (const std::uint32_t w : where) {
      ++stats_.words_rescanned;
      auto& wd = words[w];
      token_id* s = syms.data() + wd.offset;
      const auto n = static_cast<std::int64_t>(wd.count);
      std::uint32_t r = 0, out = 0;
      const std::uint32_t len = wd.length;
      while (r < len) {
        if (r + 1 < len && s[r] == A && s[r + 1] == B) {
          if (out > 0) {
            change(s[out - 1], A, -n, w);
            change(s[out - 1], C, n, w);
          }
          if (r + 2 < len) {
            change(B, s[r + 2], -n, w);
            change(C, s[r + 2], n, w);
          }
          s[out++] = C;
          r += 2;
        } else {
          s[out++] = s[r++];
        }
      }
      wd.length = out;
    }
    pairs[top.pair].count = 0;
    for (const auto pi : grown) {
      if (pairs[pi].count > 0) {
        heap.push_back({pairs[pi].count, pi});
        std::push_heap(heap.begin(), heap.end(), less);
        ++stats_.heap_pushes;
      }
    }
    grown.clear();
    // Compact the heap when stale entries pile up.
    if (heap.size() > 4 * pairs.size() + 1024) {
      std::vector<entry> fresh;
      for (std::uint32_t i = 0; i < pairs.size(); ++i)
        if (pairs[i].count > 0) fresh.push_back({pairs[i].count, i});
      heap.swap(fresh);
      std::make_heap(heap.begin(), heap.end(), less);
    }
    const double secs = seconds_since(tm);
    progress_.update(false, "merging: ", distinct, " / ", target, " tokens, ", stats_.merges, " merges, ",
                     static_cast<std::uint64_t>(secs > 0 ? double(stats_.merges) / secs : 0.0), " merges/s");
  }
  progress_.update(true, "merging: ", distinct, " / ", target, " tokens, ", stats_.merges, " merges");
  progress_.done();

  // ---- output ids: bytes in GPT-2 order, merged tokens in creation order, then the specials
  model.vocab.reserve(tokens.size() + matcher_.size());
  for (int i = 0; i < 256; ++i) model.vocab.push_back(tokens[detail::gpt2_bytes.byte[i]]);
  for (std::size_t t = 256; t < tokens.size(); ++t) model.vocab.push_back(tokens[t]);
  for (std::size_t k = 0; k < matcher_.size(); ++k) {
    model.vocab.push_back(matcher_[k]);
    model.special_tokens.push_back(matcher_[k]);
  }
  stats_.merge_seconds = seconds_since(tm);
  stats_.count_seconds += std::chrono::duration<double>(tm - t0).count();  // building the index
  return model;
}

/// Trains on files (CS336's train_bpe): returns the vocabulary and merges.
inline bpe_model train_bpe(const std::vector<std::string>& paths, const train_options& options,
                           train_stats* stats = nullptr) {
  bpe_trainer trainer(options);
  for (const auto& p : paths) trainer.add_file(p);
  auto model = trainer.train();
  if (stats) *stats = trainer.stats();
  return model;
}

}  // namespace einlm::tokenizer
