// einlm/tokenizer/bpe.hpp — the byte-level BPE model and its encoder/decoder.
//
// Contract:
//   * bpe_model is plain data: the vocabulary (id -> bytes), the merges in priority order and the
//     special tokens. It is what the trainer produces and what the file formats load and save.
//   * bpe_tokenizer is built from a bpe_model, validates it, and is immutable afterwards: every
//     const member is safe to call from several threads at once.
//   * encode = split at special tokens (leftmost, longest match first) -> GPT-2 pre-tokenization of
//     each segment (pretokenize.hpp) -> byte-level BPE of each piece: repeatedly merge the adjacent
//     pair of lowest rank, the leftmost on ties. With merge_rule::merges the rank of a pair is the
//     line of its merge (GPT-2, HF, CS336); with merge_rule::ranks it is the rank of the
//     concatenated token (tiktoken's rank files; a piece that is itself a token is emitted whole).
//     Ids are identical to tiktoken's GPT-2 encoding and to HF tokenizers' byte-level BPE.
//   * Special tokens follow tiktoken's allowed/disallowed rules (encode_options). Encoding text that
//     contains a disallowed special token throws tokenizer_error naming it.
//   * Work is linear in the input: pieces shorter than 64 bytes are merged in a small array; longer
//     pieces use a heap over a linked list (each merge costs O(1) lookups and O(log n) heap work),
//     so "x" * 10^6 costs the same per byte as ordinary text. encode_stats counts the work.
//   * decode_bytes concatenates token bytes; decode also repairs invalid UTF-8 with U+FFFD like
//     Python's errors="replace". An id outside the vocabulary throws tokenizer_error naming it.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "einlm/tokenizer/common.hpp"
#include "einlm/tokenizer/pretokenize.hpp"
#include "einlm/tokenizer/utf8.hpp"

namespace einlm::tokenizer {

/// How a vocabulary decides which adjacent pair merges first.
enum class merge_rule : std::uint8_t {
  merges,  // the merges list: rank of (a, b) = index of its merge (GPT-2 merges.txt, HF, CS336)
  ranks,   // tiktoken: rank of (a, b) = id of the token a+b; no merges list
};

/// A byte-level BPE vocabulary as plain data.
struct bpe_model {
  std::vector<std::string> vocab;                              // id -> token bytes
  std::vector<std::pair<std::string, std::string>> merges;     // priority order (merge_rule::merges)
  std::vector<std::string> special_tokens;                     // their text; ids looked up in vocab
  merge_rule rule = merge_rule::merges;
};

/// A set of special-token texts, or "all of them".
class special_set {
 public:
  special_set() = default;
  special_set(std::initializer_list<std::string_view> tokens) : tokens_(tokens.begin(), tokens.end()) {}
  explicit special_set(std::vector<std::string> tokens) : tokens_(std::move(tokens)) {}
  static special_set all() {
    special_set s;
    s.all_ = true;
    return s;
  }
  static special_set none() { return {}; }
  bool is_all() const noexcept { return all_; }
  bool contains(std::string_view token) const noexcept {
    return all_ || std::find(tokens_.begin(), tokens_.end(), token) != tokens_.end();
  }
  const std::vector<std::string>& tokens() const noexcept { return tokens_; }

 private:
  std::vector<std::string> tokens_;
  bool all_ = false;
};

/// Which special tokens encode() recognises. The defaults treat every special token of the
/// tokenizer as special (CS336's Tokenizer.encode). tiktoken's defaults are
/// {.allowed = special_set::none(), .disallowed = special_set::all()}.
struct encode_options {
  special_set allowed = special_set::all();      // encoded as their single id
  special_set disallowed = special_set::none();  // all() = every special token not allowed
  unsigned threads = 1;                          // > 1: split long text across threads
};

/// Work done by an encode call (tests use it to assert linear time).
struct encode_stats {
  pretokenize_stats pretokenize;
  std::uint64_t pieces = 0;        // pre-tokens encoded
  std::uint64_t whole_hits = 0;    // pieces that were a token themselves
  std::uint64_t cache_hits = 0;    // pieces found in the per-thread cache
  std::uint64_t pair_lookups = 0;  // rank lookups during merging
  std::uint64_t heap_ops = 0;      // pushes and pops on the long-piece heap
  std::uint64_t merges = 0;        // merges applied
  void add(const encode_stats& o) noexcept {
    pretokenize.units += o.pretokenize.units;
    pretokenize.pieces += o.pretokenize.pieces;
    pieces += o.pieces;
    whole_hits += o.whole_hits;
    cache_hits += o.cache_hits;
    pair_lookups += o.pair_lookups;
    heap_ops += o.heap_ops;
    merges += o.merges;
  }
};

class stream_encoder;

namespace detail {

/// GPT-2's byte order: the 188 printable bytes in value order, then the other 68 in value order.
/// byte_rank()[b] is byte b's position (its GPT-2 token id); bytes_in_rank_order() the inverse.
struct gpt2_byte_order {
  std::uint8_t rank[256];
  std::uint8_t byte[256];
  constexpr gpt2_byte_order() : rank{}, byte{} {
    int n = 0;
    auto printable = [](int b) {
      return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    };
    for (int b = 0; b < 256; ++b)
      if (printable(b)) byte[n++] = static_cast<std::uint8_t>(b);
    for (int b = 0; b < 256; ++b)
      if (!printable(b)) byte[n++] = static_cast<std::uint8_t>(b);
    for (int i = 0; i < 256; ++i) rank[byte[i]] = static_cast<std::uint8_t>(i);
  }
};
inline constexpr gpt2_byte_order gpt2_bytes{};

/// Open-addressing map from a pair of token ids to (rank, merged id).
class pair_table {
 public:
  struct entry {
    std::uint64_t key;
    std::uint32_t rank;
    token_id id;
  };
  static constexpr std::uint64_t empty = ~std::uint64_t(0);

  void reserve(std::size_t n) {
    slots_.assign(pow2_at_least(n * 2), entry{empty, 0, 0});
    mask_ = slots_.size() - 1;
    size_ = 0;
  }
  static std::uint64_t key(token_id a, token_id b) noexcept { return std::uint64_t(a) << 32 | b; }
  /// Inserts or, when `overwrite`, replaces; keeps the existing entry otherwise.
  void insert(token_id a, token_id b, std::uint32_t rank, token_id id, bool overwrite) {
    if ((size_ + 1) * 2 > slots_.size()) grow();
    const auto k = key(a, b);
    for (std::size_t i = hash_u64(k) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == empty) {
        slots_[i] = {k, rank, id};
        ++size_;
        return;
      }
      if (slots_[i].key == k) {
        if (overwrite) slots_[i] = {k, rank, id};
        return;
      }
    }
  }
  const entry* find(token_id a, token_id b) const noexcept {
    const auto k = key(a, b);
    for (std::size_t i = hash_u64(k) & mask_;; i = (i + 1) & mask_) {
      const entry& e = slots_[i];
      if (e.key == k) return &e;
      if (e.key == empty) return nullptr;
    }
  }
  std::size_t size() const noexcept { return size_; }

 private:
  void grow() {
    auto old = std::move(slots_);
    reserve(std::max<std::size_t>(old.size(), 16));
    for (const auto& e : old)
      if (e.key != empty) insert(token_id(e.key >> 32), token_id(e.key), e.rank, e.id, true);
  }
  std::vector<entry> slots_{std::vector<entry>(16, entry{empty, 0, 0})};
  std::size_t mask_ = 15, size_ = 0;
};

/// Token bytes stored back to back; id -> view.
class token_store {
 public:
  void assign(const std::vector<std::string>& tokens) {
    bytes_.clear();
    offsets_.assign(1, 0);
    for (const auto& t : tokens) {
      bytes_ += t;
      offsets_.push_back(bytes_.size());
    }
  }
  std::size_t size() const noexcept { return offsets_.size() - 1; }
  std::string_view operator[](token_id id) const noexcept {
    return std::string_view(bytes_.data() + offsets_[id], offsets_[id + 1] - offsets_[id]);
  }

 private:
  std::string bytes_;
  std::vector<std::size_t> offsets_{0};
};

/// Open-addressing map from token bytes to id (keys live in a token_store). Each slot keeps the
/// first 8 bytes of its key, so most lookups touch one cache line; a flag bit per slot marks the
/// tokens the encoder may emit for a whole piece.
class token_index {
 public:
  static constexpr std::uint32_t whole_flag = 0x80000000u;

  void build(const token_store& store, const std::vector<std::uint8_t>& include) {
    slots_.assign(pow2_at_least(store.size() * 2), slot{0, no_token, 0});
    mask_ = slots_.size() - 1;
    for (token_id id = 0; id < store.size(); ++id) {
      if (!include[id]) continue;
      const auto s = store[id];
      std::size_t i = hash_bytes(s.data(), s.size()) & mask_;
      while (slots_[i].id != no_token) i = (i + 1) & mask_;
      slots_[i] = {head(s.data(), s.size()), id, static_cast<std::uint32_t>(s.size())};
    }
  }
  /// Marks token `id` (with bytes s) as emittable for a whole piece.
  void set_whole(std::string_view s, token_id id) noexcept {
    for (std::size_t i = hash_bytes(s.data(), s.size()) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].id == id) {
        slots_[i].len |= whole_flag;
        return;
      }
      if (slots_[i].id == no_token) return;
    }
  }
  token_id find(const token_store& store, const char* p, std::size_t n) const noexcept {
    const auto id = find(store, p, n, hash_bytes(p, n));
    return id == no_token ? no_token : (id & ~whole_flag_id);
  }
  /// The id, with whole_flag_id set when the token may stand for a whole piece; no_token if absent.
  token_id find(const token_store& store, const char* p, std::size_t n, std::uint64_t h) const noexcept {
    const auto key = head(p, n);
    for (std::size_t i = h & mask_;; i = (i + 1) & mask_) {
      const slot& s = slots_[i];
      if (s.id == no_token) return no_token;
      if ((s.len & ~whole_flag) == n && s.head == key &&
          (n <= 8 || std::memcmp(store[s.id].data() + 8, p + 8, n - 8) == 0))
        return s.id | ((s.len & whole_flag) ? whole_flag_id : 0);
    }
  }
  static constexpr token_id whole_flag_id = 0x80000000u;  // ids stay below 2^31 in a vocabulary

 private:
  static std::uint64_t head(const char* p, std::size_t n) noexcept {
    std::uint64_t h = 0;
    std::memcpy(&h, p, n < 8 ? n : 8);
    return h;
  }
  struct slot {
    std::uint64_t head;
    token_id id;
    std::uint32_t len;  // key length, | whole_flag
  };
  std::vector<slot> slots_{std::vector<slot>(16, slot{0, no_token, 0})};
  std::size_t mask_ = 15;
};

/// Per-thread cache of recently encoded pieces (direct-mapped, 64-byte slots).
struct piece_cache {
  static constexpr std::size_t slot_count = 16384;
  static constexpr std::size_t max_key = 22;
  static constexpr std::size_t max_ids = 8;
  struct slot {
    std::uint64_t hash;
    std::uint8_t len;
    std::uint8_t count;
    char key[max_key];
    token_id ids[max_ids];
  };
  std::vector<slot> slots;
  std::uint64_t owner = 0;

  void bind(std::uint64_t tokenizer_serial) {
    if (owner == tokenizer_serial && !slots.empty()) return;
    slots.assign(slot_count, slot{0, 0, 0, {}, {}});
    owner = tokenizer_serial;
  }
};

inline piece_cache& thread_piece_cache() {
  thread_local piece_cache cache;
  return cache;
}

[[noreturn]] inline void throw_disallowed(std::string_view token, std::size_t offset) {
  throw tokenizer_error(einlm::detail::concat(
      "encode: the text contains the disallowed special token ", quote_bytes(token), " at byte ",
      offset,
      "; to encode it as a special token, allow it (encode_options::allowed); to encode it as "
      "ordinary text, remove it from encode_options::disallowed"));
}

inline std::uint64_t next_tokenizer_serial() {
  static std::atomic<std::uint64_t> serial{0};
  return ++serial;
}

/// Finds special tokens in text: the leftmost match, and the longest one at that position.
class special_matcher {
 public:
  special_matcher() = default;
  explicit special_matcher(std::vector<std::string> tokens) : tokens_(std::move(tokens)) {
    first_.assign(256, 0);
    for (const auto& t : tokens_) {
      if (t.empty()) throw tokenizer_error("special token: the empty string cannot be a special token");
      if (!first_[static_cast<unsigned char>(t[0])]++) ++distinct_first_;
      single_first_ = static_cast<unsigned char>(t[0]);
      max_length_ = std::max(max_length_, t.size());
    }
  }
  std::size_t size() const noexcept { return tokens_.size(); }
  const std::string& operator[](std::size_t k) const noexcept { return tokens_[k]; }
  std::size_t max_length() const noexcept { return max_length_; }

  /// Index of the leftmost-longest token (among those with mask[k] != 0; null mask: all) in
  /// text[from, ...), or -1; sets pos to its offset (text.size() when none).
  int find(std::string_view text, std::size_t from, const std::uint8_t* mask,
           std::size_t& pos) const noexcept {
    pos = text.size();
    if (tokens_.empty()) return -1;
    for (std::size_t i = from; i < text.size(); ++i) {
      if (distinct_first_ == 1) {
        const void* hit = std::memchr(text.data() + i, single_first_, text.size() - i);
        if (!hit) return -1;
        i = static_cast<std::size_t>(static_cast<const char*>(hit) - text.data());
      } else if (!first_[static_cast<unsigned char>(text[i])]) {
        continue;
      }
      int best = -1;
      std::size_t best_len = 0;
      for (std::size_t k = 0; k < tokens_.size(); ++k) {
        const auto& t = tokens_[k];
        if ((mask && !mask[k]) || t.size() <= best_len || t.size() > text.size() - i) continue;
        if (std::memcmp(text.data() + i, t.data(), t.size()) == 0) {
          best = static_cast<int>(k);
          best_len = t.size();
        }
      }
      if (best >= 0) {
        pos = i;
        return best;
      }
    }
    return -1;
  }

  /// The first position p such that text[p, end) is a proper prefix of a (masked) token, i.e.
  /// where a token cut by the end of a chunk may begin; text.size() when there is none.
  std::size_t partial_suffix(std::string_view text, const std::uint8_t* mask) const noexcept {
    const std::size_t lo = text.size() > max_length_ ? text.size() - max_length_ + 1 : 0;
    for (std::size_t p = lo; p < text.size(); ++p) {
      if (!first_[static_cast<unsigned char>(text[p])]) continue;
      const auto tail = text.substr(p);
      for (std::size_t k = 0; k < tokens_.size(); ++k) {
        const auto& t = tokens_[k];
        if ((!mask || mask[k]) && t.size() > tail.size() && t.compare(0, tail.size(), tail) == 0)
          return p;
      }
    }
    return text.size();
  }

 private:
  std::vector<std::string> tokens_;
  std::vector<std::uint16_t> first_ = std::vector<std::uint16_t>(256, 0);
  unsigned distinct_first_ = 0;
  unsigned char single_first_ = 0;
  std::size_t max_length_ = 0;
};

/// A part of a text that can be pre-tokenized on its own: [begin, end), followed by the special
/// token `special` (-1: none). `final`: the text ends at `end` for the pre-tokenizer (end of text,
/// or a special token follows); otherwise `end` is a safe cut (find_safe_split).
struct text_task {
  std::size_t begin, end;
  bool final;
  int special;
};

/// Cuts `text` into tasks at special tokens (matcher/mask; null matcher: none) and, inside
/// segments longer than 2 * target bytes, at safe cuts about every `target` bytes.
inline void plan_tasks(std::string_view text, const special_matcher* matcher, const std::uint8_t* mask,
                       std::size_t target, std::vector<text_task>& tasks) {
  std::size_t pos = 0;
  while (true) {
    std::size_t at = text.size();
    const int k = matcher ? matcher->find(text, pos, mask, at) : -1;
    std::size_t a = pos;
    while (at - a > 2 * target) {
      const auto cut = find_safe_split(text.substr(0, at), a + target, 4 * target);
      if (cut >= at) break;
      tasks.push_back({a, cut, false, -1});
      a = cut;
    }
    tasks.push_back({a, at, true, k});
    if (k < 0) return;
    pos = at + (*matcher)[static_cast<std::size_t>(k)].size();
  }
}

/// Scratch buffers for merging long pieces.
struct merge_scratch {
  std::vector<token_id> ids;
  std::vector<std::int32_t> next, prev;
  std::vector<std::uint64_t> heap;  // rank << 32 | node: one integer compare orders both
};

inline merge_scratch& thread_merge_scratch() {
  thread_local merge_scratch s;
  return s;
}

}  // namespace detail

/// Byte-level BPE encoder/decoder.
class bpe_tokenizer {
 public:
  /// An empty tokenizer (no vocabulary); assign a loaded one to it.
  bpe_tokenizer() = default;

  /// Builds from a model; throws tokenizer_error when the model is inconsistent (a single byte
  /// missing, a duplicate token, a merge whose parts or result are not in the vocabulary).
  /// Special tokens missing from the vocabulary are appended to it (ids vocab.size(), ...).
  explicit bpe_tokenizer(bpe_model model) { build(std::move(model)); }

  // ------------------------------------------------------------------ vocabulary
  std::size_t vocab_size() const noexcept { return store_.size(); }
  const bpe_model& model() const noexcept { return model_; }
  merge_rule rule() const noexcept { return model_.rule; }

  /// The bytes of a token; throws tokenizer_error for an id outside the vocabulary.
  std::string_view token_bytes(token_id id) const {
    check_id(id, "token_bytes", 0);
    return store_[id];
  }
  /// The id of the (non-special) token with these bytes.
  std::optional<token_id> find_token(std::string_view bytes) const noexcept {
    const auto id = index_.find(store_, bytes.data(), bytes.size());
    return id == no_token ? std::nullopt : std::optional<token_id>(id);
  }
  /// The special tokens, in the order given, with their ids.
  const std::vector<std::pair<std::string, token_id>>& special_tokens() const noexcept {
    return specials_;
  }
  std::optional<token_id> special_id(std::string_view text) const noexcept {
    for (const auto& [t, id] : specials_)
      if (t == text) return id;
    return std::nullopt;
  }

  // ------------------------------------------------------------------ encoding
  /// Encodes text; specials per `options` (default: every special token of this tokenizer).
  std::vector<token_id> encode(std::string_view text, const encode_options& options = {},
                               encode_stats* stats = nullptr) const {
    std::vector<token_id> out;
    out.reserve(text.size() / 3 + 4);
    encode_append(text, out, options, stats);
    return out;
  }

  /// Encodes text with no special tokens at all: "<|endoftext|>" is ordinary text.
  std::vector<token_id> encode_ordinary(std::string_view text, encode_stats* stats = nullptr) const {
    return encode(text, {.allowed = special_set::none(), .disallowed = special_set::none()}, stats);
  }

  /// Appends the ids of `text` to `out`.
  void encode_append(std::string_view text, std::vector<token_id>& out,
                     const encode_options& options = {}, encode_stats* stats = nullptr) const;

  /// Encodes several texts, on `threads` threads (0: hardware concurrency); same ids as encode().
  std::vector<std::vector<token_id>> encode_batch(std::span<const std::string_view> texts,
                                                  const encode_options& options = {},
                                                  unsigned threads = 0) const;

  /// The ids of one pre-token (no pre-tokenization, no special tokens).
  std::vector<token_id> encode_piece(std::string_view piece) const {
    std::vector<token_id> out;
    encode_stats st;
    encode_piece_append(piece.data(), piece.size(), out, st, nullptr);
    return out;
  }

  // ------------------------------------------------------------------ decoding
  /// Concatenated token bytes; throws tokenizer_error for an unknown id.
  std::string decode_bytes(std::span<const token_id> ids) const {
    std::string out;
    decode_bytes_append(ids, out);
    return out;
  }
  void decode_bytes_append(std::span<const token_id> ids, std::string& out) const {
    // One pass: tokens of up to 12 bytes are copied as 16-byte blocks from a table indexed by id
    // (one load per id); longer ones from the token store. The string keeps 16 bytes of slack.
    std::size_t at = out.size();
    out.resize(at + ids.size() * 4 + 16);
    for (std::size_t i = 0; i < ids.size(); ++i) {
      const token_id id = ids[i];
      check_id(id, "decode", i);
      const auto& slot = short_tokens_[id];
      const std::size_t n = slot.len;
      if (at + std::max<std::size_t>(n, 16) + 16 > out.size()) out.resize(2 * out.size() + n + 16);
      if (n <= sizeof slot.bytes) std::memcpy(out.data() + at, &slot, sizeof slot);  // bytes first
      else std::memcpy(out.data() + at, store_[id].data(), n);
      at += n;
    }
    out.resize(at);
  }
  /// Text: the bytes with invalid UTF-8 replaced by U+FFFD (Python's errors="replace").
  std::string decode(std::span<const token_id> ids) const {
    auto bytes = decode_bytes(ids);
    return is_valid_utf8(bytes) ? bytes : to_valid_utf8(bytes);
  }

 private:
  friend class stream_encoder;

  struct special_entry {
    std::string text;
    token_id id;
  };

  void check_id(token_id id, const char* what, std::size_t position) const {
    if (id >= store_.size())
      throw tokenizer_error(einlm::detail::concat(
          what, ": token id ", id, " at position ", position, " is out of range (vocabulary size ",
          store_.size(), ")"));
  }

  void build(bpe_model model);

  // Leftmost-longest match of an allowed special token in text[from, ...); returns its index in
  // specials_ or -1, and sets `pos`.
  int find_special(std::string_view text, std::size_t from, const std::vector<std::uint8_t>& allowed,
                   std::size_t& pos) const noexcept {
    return matcher_.find(text, from, allowed.data(), pos);
  }
  std::vector<std::uint8_t> allowed_mask(const special_set& allowed) const;
  void check_disallowed(std::string_view text, const encode_options& options) const;

  // Encodes [begin, end) that holds no special token.
  void encode_ordinary_append(const char* begin, const char* end, bool end_is_final,
                              std::vector<token_id>& out, encode_stats& st) const;
  void encode_piece_append(const char* p, std::size_t n, std::vector<token_id>& out,
                           encode_stats& st, detail::piece_cache* cache) const;
  void merge_small(const char* p, std::size_t n, std::vector<token_id>& out, encode_stats& st) const;
  void merge_large(const char* p, std::size_t n, std::vector<token_id>& out, encode_stats& st) const;

  bpe_model model_;
  detail::token_store store_;
  detail::token_index index_;
  detail::pair_table pairs_;
  token_id byte_id_[256] = {};
  std::vector<std::pair<std::string, token_id>> specials_;
  detail::special_matcher matcher_;  // over specials_, same order
  struct short_token {
    char bytes[12];     // the token when it has at most 12 bytes
    std::uint32_t len;  // its length
  };
  std::vector<short_token> short_tokens_;  // by id, for decoding
  std::uint64_t serial_ = 0;
};

// ====================================================================== implementation

inline void bpe_tokenizer::build(bpe_model model) {
  using einlm::detail::concat;
  // Special tokens: look them up in the vocabulary, else append them.
  std::vector<std::pair<std::string, token_id>> specials;
  {
    detail::token_store tmp;
    tmp.assign(model.vocab);
    detail::token_index idx;
    idx.build(tmp, std::vector<std::uint8_t>(model.vocab.size(), 1));
    for (const auto& s : model.special_tokens) {
      if (s.empty()) throw tokenizer_error("special token: the empty string cannot be a special token");
      bool dup = false;
      for (const auto& [t, id] : specials) dup = dup || t == s;
      if (dup) continue;
      auto id = idx.find(tmp, s.data(), s.size());
      if (id == no_token) {
        id = static_cast<token_id>(model.vocab.size());
        model.vocab.push_back(s);
      }
      specials.emplace_back(s, id);
    }
  }
  if (model.vocab.size() >= detail::token_index::whole_flag_id)
    throw tokenizer_error("vocabulary: more than 2^31 - 1 tokens");
  std::vector<std::uint8_t> is_special(model.vocab.size(), 0);
  for (const auto& [t, id] : specials) is_special[id] = 1;

  detail::token_store store;
  store.assign(model.vocab);
  std::vector<std::uint8_t> ordinary(model.vocab.size());
  for (std::size_t i = 0; i < ordinary.size(); ++i) ordinary[i] = !is_special[i];
  detail::token_index index;
  index.build(store, ordinary);
  // Duplicates among ordinary tokens make the byte -> id map ambiguous.
  for (token_id id = 0; id < store.size(); ++id) {
    if (!ordinary[id]) continue;
    const auto s = store[id];
    if (s.empty()) throw tokenizer_error(concat("vocabulary: token ", id, " is empty"));
    const auto first = index.find(store, s.data(), s.size());
    if (first != id)
      throw tokenizer_error(concat("vocabulary: tokens ", first, " and ", id, " have the same bytes ",
                                   tokenizer::detail::quote_bytes(s)));
  }
  token_id byte_id[256];
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    byte_id[b] = index.find(store, &c, 1);
    if (byte_id[b] == no_token)
      throw tokenizer_error(concat("vocabulary: the single byte ", tokenizer::detail::quote_bytes({&c, 1}),
                                   " is missing (a byte-level vocabulary has all 256)"));
  }

  detail::pair_table pairs;
  if (model.rule == merge_rule::merges) {
    pairs.reserve(model.merges.size());
    for (std::size_t r = 0; r < model.merges.size(); ++r) {
      const auto& [a, b] = model.merges[r];
      const auto ia = index.find(store, a.data(), a.size());
      const auto ib = index.find(store, b.data(), b.size());
      if (ia == no_token || ib == no_token)
        throw tokenizer_error(concat("merge ", r + 1, " (", tokenizer::detail::quote_bytes(a), " ",
                                     tokenizer::detail::quote_bytes(b), "): ",
                                     tokenizer::detail::quote_bytes(ia == no_token ? a : b),
                                     " is not in the vocabulary"));
      const std::string ab = a + b;
      const auto iab = index.find(store, ab.data(), ab.size());
      if (iab == no_token)
        throw tokenizer_error(concat("merge ", r + 1, " (", tokenizer::detail::quote_bytes(a), " ",
                                     tokenizer::detail::quote_bytes(b), "): the result ",
                                     tokenizer::detail::quote_bytes(ab), " is not in the vocabulary"));
      pairs.insert(ia, ib, static_cast<std::uint32_t>(r), iab, /*overwrite=*/true);  // last wins
    }
  } else {
    if (!model.merges.empty())
      throw tokenizer_error("bpe_model: merge_rule::ranks takes no merges list");
    // Every split of every token into two tokens is a merge of that token's rank.
    pairs.reserve(store.size() * 2);
    for (token_id id = 0; id < store.size(); ++id) {
      if (!ordinary[id]) continue;
      const auto s = store[id];
      for (std::size_t k = 1; k < s.size(); ++k) {
        const auto l = index.find(store, s.data(), k);
        if (l == no_token) continue;
        const auto r = index.find(store, s.data() + k, s.size() - k);
        if (r == no_token) continue;
        pairs.insert(l, r, id, id, false);
      }
    }
  }

  // Commit: nothing above touched *this.
  model_ = std::move(model);
  store_ = std::move(store);
  index_ = std::move(index);
  pairs_ = std::move(pairs);
  std::copy(std::begin(byte_id), std::end(byte_id), byte_id_);
  specials_ = std::move(specials);
  std::vector<std::string> texts;
  for (const auto& [t, id] : specials_) texts.push_back(t);
  matcher_ = detail::special_matcher(std::move(texts));
  serial_ = detail::next_tokenizer_serial();
  short_tokens_.assign(store_.size(), short_token{{}, 0});
  for (token_id id = 0; id < store_.size(); ++id) {
    const auto t = store_[id];
    short_tokens_[id].len = static_cast<std::uint32_t>(t.size());
    std::memcpy(short_tokens_[id].bytes, t.data(), std::min(t.size(), sizeof short_tokens_[id].bytes));
  }
  // Whole-piece shortcut: tiktoken emits any piece that is a token (part of its semantics). With
  // a merges list only tokens that BPE rebuilds from their own bytes qualify; checking them here
  // keeps the shortcut exact for any vocabulary.
  std::vector<token_id> tmp;
  encode_stats st;
  for (token_id id = 0; id < store_.size(); ++id) {
    if (!ordinary[id]) continue;
    const auto s = store_[id];
    bool whole = model_.rule == merge_rule::ranks || s.size() == 1;
    if (!whole) {
      tmp.clear();
      if (s.size() < 64) merge_small(s.data(), s.size(), tmp, st);
      else merge_large(s.data(), s.size(), tmp, st);
      whole = tmp.size() == 1 && tmp[0] == id;
    }
    if (whole) index_.set_whole(s, id);
  }
}

inline void bpe_tokenizer::merge_small(const char* p, std::size_t n, std::vector<token_id>& out,
                                       encode_stats& st) const {
  // ids[i]: the current symbols; rank[i]/res[i]: the merge of (ids[i], ids[i+1]), if any.
  constexpr std::uint32_t none = 0xFFFFFFFFu;
  token_id ids[64];
  std::uint32_t rank[64];
  token_id res[64];
  std::size_t m = n;
  for (std::size_t i = 0; i < n; ++i) ids[i] = byte_id_[static_cast<unsigned char>(p[i])];
  auto look = [&](std::size_t i) {
    ++st.pair_lookups;
    const auto* e = pairs_.find(ids[i], ids[i + 1]);
    rank[i] = e ? e->rank : none;
    res[i] = e ? e->id : no_token;
  };
  for (std::size_t i = 0; i + 1 < m; ++i) look(i);
  while (m > 1) {
    std::size_t best = 0;
    std::uint32_t best_rank = none;
    for (std::size_t i = 0; i + 1 < m; ++i)
      if (rank[i] < best_rank) {
        best_rank = rank[i];
        best = i;
      }
    if (best_rank == none) break;
    ++st.merges;
    ids[best] = res[best];
    for (std::size_t i = best + 1; i + 1 < m; ++i) {
      ids[i] = ids[i + 1];
      rank[i] = rank[i + 1];
      res[i] = res[i + 1];
    }
    --m;
    if (best > 0) look(best - 1);
    if (best + 1 < m) look(best);
  }
  out.insert(out.end(), ids, ids + m);
}

inline void bpe_tokenizer::merge_large(const char* p, std::size_t n, std::vector<token_id>& out,
                                       encode_stats& st) const {
  auto& s = detail::thread_merge_scratch();
  s.ids.resize(n);
  s.next.resize(n);
  s.prev.resize(n);
  s.heap.clear();
  for (std::size_t i = 0; i < n; ++i) {
    s.ids[i] = byte_id_[static_cast<unsigned char>(p[i])];
    s.next[i] = (i + 1 < n) ? static_cast<std::int32_t>(i + 1) : -1;
    s.prev[i] = static_cast<std::int32_t>(i) - 1;
  }
  // Min-heap on (rank, node): the lowest rank first, the leftmost node on ties.
  const std::greater<std::uint64_t> greater;
  auto push = [&](std::int32_t i) {
    if (i < 0 || s.next[i] < 0) return;
    ++st.pair_lookups;
    if (const auto* e = pairs_.find(s.ids[i], s.ids[s.next[i]])) {
      ++st.heap_ops;
      s.heap.push_back(std::uint64_t(e->rank) << 32 | static_cast<std::uint32_t>(i));
      std::push_heap(s.heap.begin(), s.heap.end(), greater);
    }
  };
  for (std::size_t i = 0; i + 1 < n; ++i) {
    ++st.pair_lookups;
    if (const auto* e = pairs_.find(s.ids[i], s.ids[i + 1]))
      s.heap.push_back(std::uint64_t(e->rank) << 32 | static_cast<std::uint32_t>(i));
  }
  std::make_heap(s.heap.begin(), s.heap.end(), greater);
  st.heap_ops += s.heap.size();
  while (!s.heap.empty()) {
    std::pop_heap(s.heap.begin(), s.heap.end(), greater);
    const auto r = static_cast<std::uint32_t>(s.heap.back() >> 32);
    const auto node = static_cast<std::uint32_t>(s.heap.back());
    s.heap.pop_back();
    ++st.heap_ops;
    const auto i = static_cast<std::int32_t>(node);
    const auto j = s.next[i];
    if (j < 0 || s.prev[i] == -2) continue;  // removed, or no right neighbour any more
    ++st.pair_lookups;
    const auto* e = pairs_.find(s.ids[i], s.ids[j]);
    if (!e || e->rank != r) continue;  // stale entry
    ++st.merges;
    s.ids[i] = e->id;
    s.next[i] = s.next[j];
    if (s.next[j] >= 0) s.prev[s.next[j]] = i;
    s.prev[j] = -2;  // mark removed
    s.next[j] = -1;
    push(s.prev[i]);
    push(i);
  }
  for (std::int32_t i = 0; i >= 0; i = s.next[i]) out.push_back(s.ids[i]);
}

inline void bpe_tokenizer::encode_piece_append(const char* p, std::size_t n,
                                               std::vector<token_id>& out, encode_stats& st,
                                               detail::piece_cache* cache) const {
  ++st.pieces;
  if (n == 1) {
    ++st.whole_hits;
    out.push_back(byte_id_[static_cast<unsigned char>(*p)]);
    return;
  }
  const auto h = detail::hash_bytes(p, n);
  const auto whole = index_.find(store_, p, n, h);
  if (whole != no_token && (whole & detail::token_index::whole_flag_id)) {
    ++st.whole_hits;
    out.push_back(whole & ~detail::token_index::whole_flag_id);
    return;
  }
  detail::piece_cache::slot* slot = nullptr;
  if (cache && n <= detail::piece_cache::max_key) {
    slot = &cache->slots[h & (detail::piece_cache::slot_count - 1)];
    if (slot->hash == h && slot->len == n && std::memcmp(slot->key, p, n) == 0) {
      ++st.cache_hits;
      out.insert(out.end(), slot->ids, slot->ids + slot->count);
      return;
    }
  }
  const auto before = out.size();
  if (n < 64) merge_small(p, n, out, st);
  else merge_large(p, n, out, st);
  const auto produced = out.size() - before;
  if (slot && produced <= detail::piece_cache::max_ids) {
    slot->hash = h;
    slot->len = static_cast<std::uint8_t>(n);
    slot->count = static_cast<std::uint8_t>(produced);
    std::memcpy(slot->key, p, n);
    std::copy(out.begin() + static_cast<std::ptrdiff_t>(before), out.end(), slot->ids);
  }
}

inline void bpe_tokenizer::encode_ordinary_append(const char* begin, const char* end,
                                                  bool end_is_final, std::vector<token_id>& out,
                                                  encode_stats& st) const {
  auto& cache = detail::thread_piece_cache();
  cache.bind(serial_);
  detail::split_gpt2(
      begin, end, end_is_final,
      [&](const char* p, std::size_t n) { encode_piece_append(p, n, out, st, &cache); },
      &st.pretokenize);
}

inline std::vector<std::uint8_t> bpe_tokenizer::allowed_mask(const special_set& allowed) const {
  std::vector<std::uint8_t> mask(specials_.size());
  for (std::size_t i = 0; i < specials_.size(); ++i) mask[i] = allowed.contains(specials_[i].first);
  return mask;
}

inline void bpe_tokenizer::check_disallowed(std::string_view text,
                                            const encode_options& options) const {
  std::vector<std::string> bad;
  if (options.disallowed.is_all()) {
    for (const auto& [t, id] : specials_)
      if (!options.allowed.contains(t)) bad.push_back(t);
  } else {
    bad = options.disallowed.tokens();
  }
  if (bad.empty()) return;
  std::size_t best_pos = std::string_view::npos;
  std::string_view best;
  for (const auto& t : bad) {
    if (t.empty()) continue;
    const auto at = text.find(t);
    if (at == std::string_view::npos) continue;
    if (at < best_pos || (at == best_pos && t.size() > best.size())) {
      best_pos = at;
      best = t;
    }
  }
  if (best_pos != std::string_view::npos) detail::throw_disallowed(best, best_pos);
}

inline void bpe_tokenizer::encode_append(std::string_view text, std::vector<token_id>& out,
                                         const encode_options& options, encode_stats* stats) const {
  check_disallowed(text, options);
  encode_stats st;
  const auto allowed = allowed_mask(options.allowed);
  const bool any_allowed = std::find(allowed.begin(), allowed.end(), 1) != allowed.end();

  if (options.threads > 1 && text.size() >= (std::size_t(1) << 20)) {
    // Cut into tasks at special tokens and at safe cuts; encode them in parallel.
    std::vector<detail::text_task> tasks;
    detail::plan_tasks(text, any_allowed ? &matcher_ : nullptr, allowed.data(), std::size_t(1) << 18,
                       tasks);
    std::vector<std::vector<token_id>> parts(tasks.size());
    std::vector<encode_stats> part_stats(options.threads);
    std::atomic<std::size_t> next{0};
    auto worker = [&](unsigned w) {
      for (std::size_t t; (t = next.fetch_add(1)) < tasks.size();) {
        const auto& tk = tasks[t];
        parts[t].reserve((tk.end - tk.begin) / 3 + 4);
        encode_ordinary_append(text.data() + tk.begin, text.data() + tk.end, tk.final, parts[t],
                               part_stats[w]);
        if (tk.special >= 0) parts[t].push_back(specials_[static_cast<std::size_t>(tk.special)].second);
      }
    };
    std::vector<std::thread> pool;
    for (unsigned w = 1; w < options.threads; ++w) pool.emplace_back(worker, w);
    worker(0);
    for (auto& th : pool) th.join();
    std::size_t total = 0;
    for (const auto& p : parts) total += p.size();
    out.reserve(out.size() + total);
    for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
    for (const auto& s : part_stats) st.add(s);
  } else {
    std::size_t pos = 0;
    while (true) {
      std::size_t at = text.size();
      const int k = any_allowed ? find_special(text, pos, allowed, at) : -1;
      encode_ordinary_append(text.data() + pos, text.data() + at, true, out, st);
      if (k < 0) break;
      out.push_back(specials_[k].second);
      pos = at + specials_[k].first.size();
    }
  }
  if (stats) stats->add(st);
}

inline std::vector<std::vector<token_id>> bpe_tokenizer::encode_batch(
    std::span<const std::string_view> texts, const encode_options& options, unsigned threads) const {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::vector<token_id>> out(texts.size());
  for (const auto& t : texts) check_disallowed(t, options);  // fail before any work
  encode_options one = options;
  one.threads = 1;
  one.disallowed = special_set::none();  // checked above
  std::atomic<std::size_t> next{0};
  auto worker = [&] {
    for (std::size_t i; (i = next.fetch_add(1)) < texts.size();) encode_append(texts[i], out[i], one);
  };
  std::vector<std::thread> pool;
  for (unsigned w = 1; w < threads && w < texts.size(); ++w) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
  return out;
}

}  // namespace einlm::tokenizer
