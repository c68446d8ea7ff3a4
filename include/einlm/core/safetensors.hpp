// einlm/core/safetensors.hpp — the safetensors format (Hugging Face): named host tensors in one
// file, as PyTorch's `safetensors.torch.save_file` writes them and `load_file` reads them.
//
//   safetensors_writer w;
//   w.add("layers.0.attn.q_proj.weight", q);     // a host tensor or view (any strides), copied
//   w.metadata["step"] = "1200";                   // string → string, stored under "__metadata__"
//   w.write(path);                                 // atomically: temporary file, fsync, rename
//
//   safetensors_file f(path);                      // maps the file; validates the whole header
//   f.names(), f.contains(name), f.info(name)      // dtype code ("F32"), shape, byte range
//   auto w = f.load<float, extents<64, 64>>(name); // dtype and shape checked against the file
//   f.load_into(name, existing_tensor_or_view);    // the same, into existing storage
//
// File layout: an 8-byte little-endian header length N, N bytes of JSON
// {"__metadata__": {...}, "<name>": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...},
// then the data: each tensor row-major, little-endian, at [8 + N + b, 8 + N + e).
// dtypes: F64 F32 F16 BF16 I64 I32 I16 I8 U64 U32 U16 U8 BOOL (F8_E4M3 / F8_E5M2 are read as
// entries but cannot be loaded into a typed tensor).
//
// Rejected with an io_error naming the file and the problem — nothing is half-loaded: a file
// shorter than its header, a header over 100 MB or not a JSON object of the form above, an unknown
// dtype, a tensor whose byte range does not match its shape and dtype, byte ranges that overlap,
// leave holes or do not end at the end of the file (truncated or trailing data), duplicate names.
// load() of a missing name lists the names the file has; a dtype or shape that differs from what
// the caller expects names the tensor, the expected and the found value. The writer rejects empty,
// duplicate and reserved ("__metadata__") names.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "einlm/core/dtype.hpp"
#include "einlm/core/error.hpp"
#include "einlm/core/extents.hpp"
#include "einlm/core/file_io.hpp"
#include "einlm/core/tensor.hpp"
#include "einlm/core/utf8.hpp"

namespace einlm {

/// One tensor of a safetensors file, as its header describes it.
struct safetensors_entry {
  std::string dtype;                // "F32", "BF16", …
  std::vector<index_t> shape;       // row-major
  std::size_t begin = 0, end = 0;   // byte range in the data section
};

namespace detail {

/// The safetensors code of T ("F32", …).
template <class T>
constexpr const char* safetensors_dtype() {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_same_v<U, double>) return "F64";
  else if constexpr (std::is_same_v<U, float>) return "F32";
  else if constexpr (std::is_same_v<U, fp16>) return "F16";
  else if constexpr (std::is_same_v<U, bf16>) return "BF16";
  else if constexpr (std::is_same_v<U, bool>) return "BOOL";
  else if constexpr (std::is_same_v<U, std::int64_t>) return "I64";
  else if constexpr (std::is_same_v<U, std::int32_t>) return "I32";
  else if constexpr (std::is_same_v<U, std::int16_t>) return "I16";
  else if constexpr (std::is_same_v<U, std::int8_t>) return "I8";
  else if constexpr (std::is_same_v<U, std::uint64_t>) return "U64";
  else if constexpr (std::is_same_v<U, std::uint32_t>) return "U32";
  else if constexpr (std::is_same_v<U, std::uint16_t>) return "U16";
  else if constexpr (std::is_same_v<U, std::uint8_t>) return "U8";
  else static_assert(sizeof(U) == 0, "safetensors: no dtype code for this element type");
}

/// Bytes per element of a dtype code; 0 when the code is unknown.
inline std::size_t safetensors_item_size(std::string_view code) {
  static constexpr std::pair<std::string_view, std::size_t> known[] = {
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8},     {"I32", 4},     {"I16", 2},
      {"I8", 1},  {"U64", 8}, {"U32", 4}, {"U16", 2},  {"U8", 1},      {"BOOL", 1},    {"F8_E4M3", 1},
      {"F8_E5M2", 1}};
  for (const auto& [name, size] : known)
    if (name == code) return size;
  return 0;
}

inline std::string json_quote(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20) {
      static constexpr char hex[] = "0123456789abcdef";
      out += "\\u00";
      out += hex[u >> 4];
      out += hex[u & 15];
    } else {
      out += c;
    }
  }
  return out + '"';
}

/// A strict reader of the safetensors header: a JSON object whose members are "__metadata__"
/// (an object of strings) and tensor entries {"dtype", "shape", "data_offsets"}.
class safetensors_header_parser {
 public:
  safetensors_header_parser(std::string_view text, const std::string& file) : s_(text), file_(file) {}

  void parse(std::map<std::string, safetensors_entry>& entries, std::map<std::string, std::string>& metadata) {
    expect('{');
    if (peek() == '}') {
      ++i_;
    } else {
      while (true) {
        const std::string key = string();
        expect(':');
        if (key == "__metadata__") {
          metadata = string_map();
        } else {
          if (entries.count(key)) fail(concat("the tensor name '", key, "' appears twice"));
          entries.emplace(key, entry(key));
        }
        if (peek() == ',') {
          ++i_;
          continue;
        }
        expect('}');
        break;
      }
    }
    skip_space();
    if (i_ != s_.size()) fail("unexpected text after the header's JSON object");
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw io_error(concat(file_, ": malformed safetensors header: ", what, " (at byte ", i_, " of the header)"));
  }
  void skip_space() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  char peek() {
    skip_space();
    if (i_ >= s_.size()) fail("unexpected end");
    return s_[i_];
  }
  void expect(char c) {
    if (peek() != c) fail(concat("expected '", c, "'"));
    ++i_;
  }
  std::uint32_t hex4() {
    if (i_ + 4 > s_.size()) fail("truncated \\u escape");
    std::uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s_[i_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= static_cast<std::uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<std::uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<std::uint32_t>(c - 'A' + 10);
      else fail("bad \\u escape");
    }
    return v;
  }
  std::string string() {
    expect('"');
    std::string out;
    while (true) {
      if (i_ >= s_.size()) fail("unterminated string");
      const char c = s_[i_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) fail("unterminated escape");
      switch (const char e = s_[i_++]) {
        case '"': case '\\': case '/': out += e; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          std::uint32_t cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {
            if (i_ + 2 > s_.size() || s_[i_] != '\\' || s_[i_ + 1] != 'u') fail("unpaired surrogate");
            i_ += 2;
            const std::uint32_t lo = hex4();
            if (lo < 0xDC00 || lo >= 0xE000) fail("unpaired surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            fail("unpaired surrogate");
          }
          utf8_append(out, static_cast<char32_t>(cp));
          break;
        }
        default: fail("unknown escape");
      }
    }
  }
  std::uint64_t integer() {
    skip_space();
    const std::size_t start = i_;
    std::uint64_t v = 0;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
      const auto d = static_cast<std::uint64_t>(s_[i_++] - '0');
      if (v > (UINT64_MAX - d) / 10) fail("integer out of range");
      v = v * 10 + d;
    }
    if (i_ == start) fail("expected a non-negative integer");
    if (i_ - start > 1 && s_[start] == '0') fail("integer with a leading zero");
    return v;
  }
  std::vector<std::uint64_t> integers() {
    expect('[');
    std::vector<std::uint64_t> out;
    if (peek() == ']') {
      ++i_;
      return out;
    }
    while (true) {
      out.push_back(integer());
      if (peek() == ',') {
        ++i_;
        continue;
      }
      expect(']');
      return out;
    }
  }
  std::map<std::string, std::string> string_map() {
    std::map<std::string, std::string> out;
    expect('{');
    if (peek() == '}') {
      ++i_;
      return out;
    }
    while (true) {
      std::string key = string();
      expect(':');
      if (peek() != '"') fail(concat("__metadata__ values must be strings ('", key, "' is not)"));
      out[std::move(key)] = string();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      expect('}');
      return out;
    }
  }
  safetensors_entry entry(const std::string& name) {
    safetensors_entry e;
    bool has_dtype = false, has_shape = false, has_offsets = false;
    expect('{');
    while (true) {
      const std::string key = string();
      expect(':');
      if (key == "dtype") {
        e.dtype = string();
        has_dtype = true;
      } else if (key == "shape") {
        for (const auto v : integers()) {
          if (v > static_cast<std::uint64_t>(INT64_MAX)) fail(concat("tensor '", name, "': extent out of range"));
          e.shape.push_back(static_cast<index_t>(v));
        }
        has_shape = true;
      } else if (key == "data_offsets") {
        const auto o = integers();
        if (o.size() != 2) fail(concat("tensor '", name, "': data_offsets must be [begin, end]"));
        e.begin = static_cast<std::size_t>(o[0]);
        e.end = static_cast<std::size_t>(o[1]);
        has_offsets = true;
      } else {
        fail(concat("tensor '", name, "': unknown field '", key, "'"));
      }
      if (peek() == ',') {
        ++i_;
        continue;
      }
      expect('}');
      break;
    }
    if (!has_dtype || !has_shape || !has_offsets)
      fail(concat("tensor '", name, "' lacks ", !has_dtype ? "dtype" : !has_shape ? "shape" : "data_offsets"));
    return e;
  }

  std::string_view s_;
  const std::string& file_;
  std::size_t i_ = 0;
};

inline std::string format_dims(const std::vector<index_t>& shape) {
  std::string s = "(";
  for (std::size_t r = 0; r < shape.size(); ++r) {
    if (r) s += ", ";
    s += std::to_string(shape[r]);
  }
  return s + (shape.size() == 1 ? ",)" : ")");
}

}  // namespace detail

/// A safetensors file, mapped read-only and validated when opened (see the file comment).
class safetensors_file {
 public:
  explicit safetensors_file(const std::string& path) : file_(path) {
    const std::uint8_t* p = file_.data();
    const std::size_t size = file_.size();
    auto bad = [&](const std::string& what) { return io_error(detail::concat(path, ": not a valid safetensors file: ", what)); };
    if (size < 8) throw bad(detail::concat("the file has ", size, " bytes, fewer than the 8-byte header length"));
    std::uint64_t n = 0;
    for (int i = 8; i-- > 0;) n = (n << 8) | p[i];
    if (n > max_header_bytes) throw bad(detail::concat("the header length ", n, " exceeds 100,000,000 bytes"));
    if (8 + n > size) throw bad(detail::concat("the header length ", n, " runs past the end of the file (", size, " bytes)"));
    const std::string_view header(reinterpret_cast<const char*>(p + 8), static_cast<std::size_t>(n));
    detail::safetensors_header_parser(header, path).parse(entries_, metadata_);
    data_ = p + 8 + n;
    data_size_ = size - 8 - static_cast<std::size_t>(n);
    // Every byte range must match its tensor, and the ranges must tile the data section exactly.
    // (begin, end, name): empty tensors sort before a tensor starting at the same byte.
    std::vector<std::tuple<std::size_t, std::size_t, const std::string*>> order;
    for (const auto& [name, e] : entries_) {
      const std::size_t item = detail::safetensors_item_size(e.dtype);
      if (item == 0) throw bad(detail::concat("tensor '", name, "' has the unknown dtype '", e.dtype, "'"));
      std::uint64_t count = 1;
      for (const index_t d : e.shape) {
        if (d != 0 && count > UINT64_MAX / static_cast<std::uint64_t>(d)) throw bad(detail::concat("tensor '", name, "' is too large"));
        count *= static_cast<std::uint64_t>(d);
      }
      if (e.end < e.begin || (count != 0 && count > UINT64_MAX / item) || e.end - e.begin != count * item)
        throw bad(detail::concat("tensor '", name, "' (", e.dtype, ", shape ", detail::format_dims(e.shape),
                                 ") needs ", count * item, " bytes but data_offsets [", e.begin, ", ", e.end,
                                 "] give ", e.end >= e.begin ? e.end - e.begin : 0));
      order.emplace_back(e.begin, e.end, &name);
    }
    std::sort(order.begin(), order.end());
    std::size_t expected = 0;
    for (const auto& [begin, end, name] : order) {
      if (begin != expected)
        throw bad(detail::concat("tensor '", *name, "' starts at byte ", begin, " of the data, expected ", expected,
                                 begin < expected ? " (it overlaps the previous tensor)" : " (a hole precedes it)"));
      expected = end;
    }
    if (expected != data_size_)
      throw bad(detail::concat("the tensors cover ", expected, " bytes of data but the file holds ", data_size_,
                               expected > data_size_ ? " (the file is truncated)" : " (trailing bytes)"));
  }

  const std::string& path() const { return file_.path(); }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [name, e] : entries_) out.push_back(name);
    return out;
  }
  std::size_t size() const { return entries_.size(); }

  /// The header's entry for `name`; io_error listing the file's names when it has none.
  const safetensors_entry& info(const std::string& name) const {
    const auto it = entries_.find(name);
    if (it == entries_.end()) {
      std::string have;
      for (const auto& [n, e] : entries_) {
        if (!have.empty()) have += ", ";
        have += n;
      }
      throw io_error(detail::concat(path(), ": no tensor '", name, "' (the file has ",
                                    have.empty() ? std::string("no tensors") : have, ")"));
    }
    return it->second;
  }
  /// The raw little-endian bytes of `name`.
  const std::uint8_t* bytes(const std::string& name) const { return data_ + info(name).begin; }

  /// `name` as a new host tensor of element type T and extents E (dynamic extents from the file).
  template <dtype T, extents_like E>
  tensor<T, E, host> load(const std::string& name) const {
    const safetensors_entry& e = checked<T>(name);
    const E extents = check_extents<E>(e.shape, detail::concat(path(), ": tensor '", name, "'").c_str());
    tensor<T, E, host> t(extents);
    if (e.end > e.begin) std::memcpy(static_cast<void*>(t.data()), data_ + e.begin, e.end - e.begin);
    return t;
  }

  /// Copies `name` into an existing host tensor or view (any strides) of the same element type and
  /// shape.
  template <class Dst>
  void load_into(const std::string& name, Dst&& dst_in) const {
    auto dst = as_view(std::forward<Dst>(dst_in));
    using V = decltype(dst);
    using T = typename V::value_type;
    static_assert(std::is_same_v<typename V::space, host>, "safetensors: load into host memory, then copy to the device");
    static_assert(!std::is_const_v<typename V::element_type>, "safetensors: the destination is read-only");
    const safetensors_entry& e = check_fits(name, dst);
    using E = typename V::extents_type;
    view<const T, E, cuda::std::layout_right, host> src(reinterpret_cast<const T*>(data_ + e.begin), dst.extents());
    if (reinterpret_cast<std::uintptr_t>(data_ + e.begin) % alignof(T) == 0) {
      copy(src, dst);
    } else {  // a file written without padding can misalign elements: copy bytes first
      tensor<T, E, host> aligned(dst.extents());
      if (e.end > e.begin) std::memcpy(static_cast<void*>(aligned.data()), data_ + e.begin, e.end - e.begin);
      copy(aligned, dst);
    }
  }

  /// Checks that `name` has the element type and the shape of `dst` (a host tensor or view) and
  /// returns its entry; io_error (dtype) or shape_error (shape) naming the tensor otherwise.
  template <class Dst>
  const safetensors_entry& check_fits(const std::string& name, const Dst& dst) const {
    using V = std::remove_cvref_t<Dst>;
    const safetensors_entry& e = checked<typename V::value_type>(name);
    std::vector<index_t> want(V::extents_type::rank());
    for (std::size_t r = 0; r < want.size(); ++r) want[r] = static_cast<index_t>(dst.extent(r));
    if (want != e.shape)
      throw shape_error(detail::concat(path(), ": tensor '", name, "' has shape ", detail::format_dims(e.shape),
                                       ", expected ", detail::format_dims(want)));
    return e;
  }

  static constexpr std::uint64_t max_header_bytes = 100'000'000;

 private:
  template <class T>
  const safetensors_entry& checked(const std::string& name) const {
    const safetensors_entry& e = info(name);
    if (e.dtype != detail::safetensors_dtype<T>())
      throw io_error(detail::concat(path(), ": tensor '", name, "' has dtype ", e.dtype, ", expected ",
                                    detail::safetensors_dtype<T>(), " (", dtype_traits<T>::name, ")"));
    return e;
  }

  detail::mapped_file file_;
  std::map<std::string, safetensors_entry> entries_;
  std::map<std::string, std::string> metadata_;
  const std::uint8_t* data_ = nullptr;
  std::size_t data_size_ = 0;
};

/// Collects named host tensors and writes them as one safetensors file.
class safetensors_writer {
 public:
  /// String metadata, stored under "__metadata__" (omitted when empty).
  std::map<std::string, std::string> metadata;

  /// Adds a copy of x (a host tensor or view, any strides) under `name`.
  template <class X>
  void add(const std::string& name, const X& x) {
    auto v = as_view(x);
    using V = decltype(v);
    using T = typename V::value_type;
    static_assert(std::is_same_v<typename V::space, host>, "safetensors: copy device tensors to the host first");
    check_name(name);
    item it;
    it.name = name;
    it.entry.dtype = detail::safetensors_dtype<T>();
    for (std::size_t r = 0; r < V::rank(); ++r) it.entry.shape.push_back(static_cast<index_t>(v.extent(r)));
    // Row-major into the item's own bytes (operator new aligns them for any element type).
    it.bytes.resize(static_cast<std::size_t>(v.size()) * sizeof(T));
    copy(v, view<T, typename V::extents_type, cuda::std::layout_right, host>(reinterpret_cast<T*>(it.bytes.data()), v.extents()));
    items_.push_back(std::move(it));
  }

  /// Adds raw little-endian bytes with a dtype code and shape (checked against each other).
  void add_bytes(const std::string& name, const std::string& dtype_code, const std::vector<index_t>& shape,
                 std::vector<std::uint8_t> bytes) {
    check_name(name);
    const std::size_t item_size = detail::safetensors_item_size(dtype_code);
    if (item_size == 0) throw value_error(detail::concat("safetensors: unknown dtype '", dtype_code, "' for tensor '", name, "'"));
    std::size_t count = 1;
    for (const index_t d : shape) {
      if (d < 0) throw shape_error(detail::concat("safetensors: negative extent in the shape of tensor '", name, "'"));
      count *= static_cast<std::size_t>(d);
    }
    if (count * item_size != bytes.size())
      throw shape_error(detail::concat("safetensors: tensor '", name, "' (", dtype_code, ", shape ",
                                       detail::format_dims(shape), ") needs ", count * item_size, " bytes, got ",
                                       bytes.size()));
    items_.push_back({name, {dtype_code, shape, 0, 0}, std::move(bytes)});
  }

  std::size_t size() const { return items_.size(); }

  /// Writes the file atomically; on failure an existing file at `path` is unchanged.
  void write(const std::string& path) const {
    std::string header = "{";
    bool first = true;
    if (!metadata.empty()) {
      header += "\"__metadata__\":{";
      for (const auto& [k, v] : metadata) {
        if (!first) header += ',';
        header += detail::json_quote(k);
        header += ':';
        header += detail::json_quote(v);
        first = false;
      }
      header += '}';
      first = false;
    }
    std::size_t offset = 0;
    for (const item& it : items_) {
      if (!first) header += ',';
      first = false;
      header += detail::json_quote(it.name);
      header += ":{\"dtype\":\"";
      header += it.entry.dtype;
      header += "\",\"shape\":[";
      for (std::size_t r = 0; r < it.entry.shape.size(); ++r) {
        if (r) header += ',';
        header += std::to_string(it.entry.shape[r]);
      }
      header += detail::concat("],\"data_offsets\":[", offset, ",", offset + it.bytes.size(), "]}");
      offset += it.bytes.size();
    }
    header += '}';
    // Pad with spaces so that the data starts at a multiple of 8 bytes, as safetensors does.
    header.append((8 - header.size() % 8) % 8, ' ');
    std::uint8_t length[8];
    for (int i = 0; i < 8; ++i) length[i] = static_cast<std::uint8_t>(static_cast<std::uint64_t>(header.size()) >> (8 * i));
    std::vector<detail::byte_span> parts{{length, 8}, {header.data(), header.size()}};
    for (const item& it : items_) parts.push_back({it.bytes.data(), it.bytes.size()});
    detail::write_file_atomically(path, parts);
  }

 private:
  struct item {
    std::string name;
    safetensors_entry entry;
    std::vector<std::uint8_t> bytes;
  };
  void check_name(const std::string& name) const {
    if (name.empty()) throw value_error("safetensors: a tensor name must not be empty");
    if (name == "__metadata__") throw value_error("safetensors: '__metadata__' is reserved and cannot name a tensor");
    for (const item& it : items_)
      if (it.name == name) throw value_error(detail::concat("safetensors: the tensor name '", name, "' is used twice"));
  }
  std::vector<item> items_;
};

}  // namespace einlm
