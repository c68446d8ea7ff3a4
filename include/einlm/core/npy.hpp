// einlm/core/npy.hpp — NumPy .npy and .npz files for host tensors (golden data, fixtures).
//
//   read_npy(path) → npy_array           any dtype and shape, as raw bytes plus metadata
//   load_npy<T, E>(path) → tensor        typed load; the dtype must be T's and the shape must fit E
//   save_npy(path, x)                    writes a host tensor or view (format 1.0, or 2.0 for long
//                                        headers); through a temporary file and a rename, so a
//                                        failed write leaves an existing file untouched
//   read_npz(path) → map name → npy_array   members of an uncompressed archive (np.savez)
//
// Accepted: format versions 1.0, 2.0 and 3.0; little- and big-endian data (swapped on load);
// fortran_order arrays (reordered to C order on load); the dtypes bool, int8…int64, uint8…uint64,
// float16, float32, float64. Everything else is rejected with an io_error naming the file and the
// problem: bad magic, unknown version, malformed header, unsupported dtype, a data size that does
// not match the shape (truncated or trailing bytes), compressed .npz members. bfloat16 has no NumPy
// dtype, so bf16 tensors are cast to float32 before saving.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "einlm/core/dtype.hpp"
#include "einlm/core/error.hpp"
#include "einlm/core/extents.hpp"
#include "einlm/core/file_io.hpp"
#include "einlm/core/tensor.hpp"

namespace einlm {

/// The content of a .npy file: dtype string as written ("<f4"), C-order shape, and the element
/// bytes in C order and little-endian (converted on load when the file had another layout).
struct npy_array {
  std::string descr;
  std::vector<index_t> shape;
  std::vector<std::uint8_t> data;

  index_t size() const {
    index_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
  /// True when the elements have type T.
  template <class T>
  bool holds() const {
    return descr == dtype_traits<T>::npy_descr;
  }
};

namespace detail {

inline std::size_t npy_item_size(std::string_view descr) {
  static constexpr std::pair<const char*, std::size_t> known[] = {
      {"b1", 1}, {"i1", 1}, {"u1", 1}, {"i2", 2}, {"u2", 2}, {"f2", 2},
      {"i4", 4}, {"u4", 4}, {"f4", 4}, {"i8", 8}, {"u8", 8}, {"f8", 8}};
  if (descr.size() != 3) return 0;
  for (auto [code, size] : known)
    if (descr.substr(1) == code) return size;
  return 0;
}

/// Minimal parser of the header dictionary: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
class npy_header_parser {
 public:
  npy_header_parser(std::string_view text, const std::string& file) : s_(text), file_(file) {}

  void parse(std::string& descr, bool& fortran, std::vector<index_t>& shape) {
    bool seen_descr = false, seen_fortran = false, seen_shape = false;
    skip();
    expect('{');
    while (true) {
      skip();
      if (peek() == '}') {
        ++i_;
        break;
      }
      const std::string key = string_literal();
      skip();
      expect(':');
      skip();
      if (key == "descr") {
        descr = string_literal();
        seen_descr = true;
      } else if (key == "fortran_order") {
        fortran = boolean();
        seen_fortran = true;
      } else if (key == "shape") {
        shape = tuple();
        seen_shape = true;
      } else {
        fail("unexpected key '" + key + "'");
      }
      skip();
      if (peek() == ',') ++i_;
    }
    if (!seen_descr || !seen_fortran || !seen_shape)
      fail("the header must give 'descr', 'fortran_order' and 'shape'");
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw io_error(concat(file_, ": malformed .npy header (", what, ") at offset ", i_, " of: ", std::string(s_)));
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void skip() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\t')) ++i_;
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++i_;
  }
  std::string string_literal() {
    const char q = peek();
    if (q != '\'' && q != '"') fail("expected a quoted string");
    const std::size_t end = s_.find(q, i_ + 1);
    if (end == std::string_view::npos) fail("unterminated string");
    std::string out(s_.substr(i_ + 1, end - i_ - 1));
    i_ = end + 1;
    return out;
  }
  bool boolean() {
    if (s_.substr(i_, 4) == "True") {
      i_ += 4;
      return true;
    }
    if (s_.substr(i_, 5) == "False") {
      i_ += 5;
      return false;
    }
    fail("expected True or False");
  }
  std::vector<index_t> tuple() {
    expect('(');
    std::vector<index_t> out;
    while (true) {
      skip();
      if (peek() == ')') {
        ++i_;
        return out;
      }
      if (peek() < '0' || peek() > '9') fail("expected a non-negative integer in the shape");
      index_t v = 0;
      while (peek() >= '0' && peek() <= '9') {
        v = v * 10 + (peek() - '0');
        if (v > (index_t{1} << 50)) fail("shape entry too large");
        ++i_;
      }
      if (peek() == 'L') ++i_;  // Python 2 longs
      out.push_back(v);
      skip();
      if (peek() == ',') ++i_;
      else if (peek() != ')') fail("expected ',' or ')' in the shape");
    }
  }

  std::string_view s_;
  const std::string& file_;
  std::size_t i_ = 0;
};

inline void byteswap_items(std::vector<std::uint8_t>& data, std::size_t item) {
  if (item == 1) return;
  for (std::size_t i = 0; i + item <= data.size(); i += item) std::reverse(data.begin() + i, data.begin() + i + item);
}

/// Parses the bytes of a .npy file; `name` is used in messages.
inline npy_array parse_npy(const std::uint8_t* bytes, std::size_t size, const std::string& name) {
  static constexpr char magic[] = "\x93NUMPY";
  if (size < 10 || std::memcmp(bytes, magic, 6) != 0)
    throw io_error(concat(name, ": not a .npy file (the magic string \\x93NUMPY is missing)"));
  const int major = bytes[6], minor = bytes[7];
  std::size_t header_len = 0, offset = 0;
  if (major == 1 && minor == 0) {
    header_len = bytes[8] | (std::size_t{bytes[9]} << 8);
    offset = 10;
  } else if ((major == 2 || major == 3) && minor == 0) {
    if (size < 12) throw io_error(concat(name, ": truncated .npy header"));
    header_len = bytes[8] | (std::size_t{bytes[9]} << 8) | (std::size_t{bytes[10]} << 16) | (std::size_t{bytes[11]} << 24);
    offset = 12;
  } else {
    throw io_error(concat(name, ": unsupported .npy format version ", major, ".", minor));
  }
  if (offset + header_len > size)
    throw io_error(concat(name, ": truncated .npy header (", header_len, " bytes announced, ", size - offset, " present)"));
  const std::string_view header(reinterpret_cast<const char*>(bytes + offset), header_len);

  npy_array out;
  bool fortran = false;
  npy_header_parser(header, name).parse(out.descr, fortran, out.shape);
  const std::size_t item = npy_item_size(out.descr);
  const char order = out.descr.empty() ? '?' : out.descr[0];
  if (item == 0 || (order != '<' && order != '>' && order != '|' && order != '='))
    throw io_error(concat(name, ": unsupported dtype '", out.descr,
                          "' (supported: bool, int8-64, uint8-64, float16, float32, float64)"));
  if (order == '|' && item != 1) throw io_error(concat(name, ": dtype '", out.descr, "' lacks a byte order"));
  const std::size_t expected = static_cast<std::size_t>(out.size()) * item;
  const std::size_t present = size - offset - header_len;
  if (present < expected)
    throw io_error(concat(name, ": truncated data: shape ", format_shape(out.shape), " of ", out.descr, " needs ",
                          expected, " bytes, the file holds ", present));
  if (present > expected)
    throw io_error(concat(name, ": ", present - expected, " unexpected bytes after the data of shape ",
                          format_shape(out.shape)));
  out.data.assign(bytes + offset + header_len, bytes + size);
  if (order == '>') byteswap_items(out.data, item);
  out.descr = std::string(item == 1 ? "|" : "<") + out.descr.substr(1);
  if (fortran && out.shape.size() > 1) {
    // Column-major file: element (i0, …, ik) sits at Σ i_r · Π_{s<r} n_s. Reorder into C order.
    std::vector<std::uint8_t> c_order(out.data.size());
    const std::size_t rank = out.shape.size();
    std::vector<index_t> idx(rank, 0);
    for (index_t i = 0, n = out.size(); i < n; ++i) {
      index_t f = 0, stride = 1;
      for (std::size_t r = 0; r < rank; ++r) {
        f += idx[r] * stride;
        stride *= out.shape[r];
      }
      std::memcpy(&c_order[static_cast<std::size_t>(i) * item], &out.data[static_cast<std::size_t>(f) * item], item);
      for (std::size_t r = rank; r-- > 0;) {
        if (++idx[r] < out.shape[r]) break;
        idx[r] = 0;
      }
    }
    out.data.swap(c_order);
  }
  return out;
}

inline std::uint64_t read_le(const std::uint8_t* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = bytes; i-- > 0;) v = (v << 8) | p[i];
  return v;
}

}  // namespace detail

/// Reads any supported .npy file.
inline npy_array read_npy(const std::string& path) {
  const auto bytes = detail::read_file_bytes(path);
  return detail::parse_npy(bytes.data(), bytes.size(), path);
}

/// Reads the members of an uncompressed .npz archive (np.savez), keyed by name without ".npy".
inline std::map<std::string, npy_array> read_npz(const std::string& path) {
  using detail::read_le;
  const auto z = detail::read_file_bytes(path);
  auto bad = [&](const std::string& what) { return io_error(detail::concat(path, ": malformed .npz archive: ", what)); };
  // End of central directory: the last "PK\5\6" record.
  if (z.size() < 22) throw bad("too short for a ZIP file");
  std::size_t eocd = z.size() - 22;
  while (true) {
    if (read_le(&z[eocd], 4) == 0x06054b50) break;
    if (eocd == 0 || z.size() - eocd > 22 + 65535) throw bad("no end-of-central-directory record");
    --eocd;
  }
  std::uint64_t entries = read_le(&z[eocd + 10], 2);
  std::uint64_t cd_offset = read_le(&z[eocd + 16], 4);
  if ((entries == 0xffff || cd_offset == 0xffffffff) && eocd >= 20 && read_le(&z[eocd - 20], 4) == 0x07064b50) {
    const std::uint64_t z64 = read_le(&z[eocd - 20 + 8], 8);
    if (z64 + 56 > z.size() || read_le(&z[z64], 4) != 0x06064b50) throw bad("bad ZIP64 end record");
    entries = read_le(&z[z64 + 32], 8);
    cd_offset = read_le(&z[z64 + 48], 8);
  }
  std::map<std::string, npy_array> out;
  std::size_t p = cd_offset;
  for (std::uint64_t e = 0; e < entries; ++e) {
    if (p + 46 > z.size() || read_le(&z[p], 4) != 0x02014b50) throw bad("bad central directory entry");
    const auto method = read_le(&z[p + 10], 2);
    std::uint64_t csize = read_le(&z[p + 20], 4), usize = read_le(&z[p + 24], 4);
    const auto name_len = read_le(&z[p + 28], 2), extra_len = read_le(&z[p + 30], 2), comment_len = read_le(&z[p + 32], 2);
    std::uint64_t local = read_le(&z[p + 42], 4);
    if (p + 46 + name_len + extra_len > z.size()) throw bad("truncated central directory");
    std::string name(reinterpret_cast<const char*>(&z[p + 46]), name_len);
    // ZIP64 extra field: the 64-bit values of the fields set to 0xffffffff, in order.
    for (std::size_t x = p + 46 + name_len; x + 4 <= p + 46 + name_len + extra_len;) {
      const auto id = read_le(&z[x], 2), len = read_le(&z[x + 2], 2);
      if (id == 0x0001) {
        std::size_t f = x + 4;
        if (usize == 0xffffffff) { usize = read_le(&z[f], 8); f += 8; }
        if (csize == 0xffffffff) { csize = read_le(&z[f], 8); f += 8; }
        if (local == 0xffffffff) { local = read_le(&z[f], 8); }
      }
      x += 4 + len;
    }
    if (method != 0)
      throw io_error(detail::concat(path, ": member '", name, "' is compressed (method ", method,
                                    "); only uncompressed archives (np.savez, not np.savez_compressed) are supported"));
    if (local + 30 > z.size() || read_le(&z[local], 4) != 0x04034b50) throw bad("bad local header of '" + name + "'");
    const std::size_t data = local + 30 + read_le(&z[local + 26], 2) + read_le(&z[local + 28], 2);
    if (data + usize > z.size()) throw bad("member '" + name + "' runs past the end of the file");
    if (name.size() > 4 && name.compare(name.size() - 4, 4, ".npy") == 0) name.resize(name.size() - 4);
    out.emplace(name, detail::parse_npy(&z[data], usize, path + "[" + name + "]"));
    p += 46 + name_len + extra_len + comment_len;
  }
  return out;
}

/// A typed tensor from an npy_array: the dtype must be T's and the shape must fit E.
template <dtype T, extents_like E>
tensor<T, E, host> to_tensor(const npy_array& a, const std::string& name = "npy") {
  static_assert(!std::is_same_v<T, bf16>, "NumPy has no bfloat16 dtype; load float32 and cast");
  if (!a.holds<T>())
    throw io_error(detail::concat(name, ": dtype '", a.descr, "' does not match the requested ", dtype_traits<T>::name,
                                  " ('", dtype_traits<T>::npy_descr, "')"));
  const E e = check_extents<E>(a.shape, name.c_str());
  tensor<T, E, host> t(e);
  if (!a.data.empty()) std::memcpy(static_cast<void*>(t.data()), a.data.data(), a.data.size());
  return t;
}

/// Loads a .npy file into a typed host tensor (dtype and shape checked).
template <dtype T, extents_like E>
tensor<T, E, host> load_npy(const std::string& path) {
  return to_tensor<T, E>(read_npy(path), path);
}

/// Saves a host tensor or view (any strides) as a .npy file, atomically.
template <array_like X>
void save_npy(const std::string& path, const X& x) {
  auto v = as_view(x);
  using V = decltype(v);
  using T = typename V::value_type;
  static_assert(std::is_same_v<typename V::space, host>, "save_npy: copy device tensors to the host first");
  static_assert(!std::is_same_v<T, bf16>, "save_npy: NumPy has no bfloat16 dtype; cast to float32 first");
  tensor<T, typename V::extents_type, host> contiguous(v.extents());
  copy(v, contiguous);
  std::string dict = "{'descr': '" + std::string(dtype_traits<T>::npy_descr) + "', 'fortran_order': False, 'shape': (";
  for (std::size_t r = 0; r < V::rank(); ++r) dict += std::to_string(v.extent(r)) + (V::rank() == 1 ? ",)" : (r + 1 < V::rank() ? ", " : ")"));
  if (V::rank() == 0) dict += ")";
  dict += ", }";
  // Pad with spaces so that the data starts at a multiple of 64 bytes; end the header with '\n'.
  const bool v2 = dict.size() + 11 > 65535;
  const std::size_t prefix = v2 ? 12 : 10;
  const std::size_t total = (prefix + dict.size() + 1 + 63) / 64 * 64;
  dict.append(total - prefix - dict.size() - 1, ' ');
  dict += '\n';
  std::string header("\x93NUMPY", 6);
  header += static_cast<char>(v2 ? 2 : 1);
  header += '\0';
  const std::size_t len = dict.size();
  header += static_cast<char>(len & 0xff);
  header += static_cast<char>((len >> 8) & 0xff);
  if (v2) {
    header += static_cast<char>((len >> 16) & 0xff);
    header += static_cast<char>((len >> 24) & 0xff);
  }
  header += dict;
  detail::write_file_atomically(path, {{header.data(), header.size()}, {contiguous.data(), contiguous.bytes()}});
}

}  // namespace einlm
