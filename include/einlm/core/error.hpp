// einlm/core/error.hpp — the exception hierarchy and the CUDA call check.
//
// Contract: every error einlm raises on the host derives from einlm::error (itself a
// std::runtime_error) and its message names the operation and the offending shapes or values,
// e.g. "add: shapes (2, 3) and (4,) cannot be broadcast together". Compile-time errors are
// static_asserts instead; see the headers that check them.
//
//   error
//   ├── shape_error    extents that do not match, cannot broadcast, or are out of range
//   ├── value_error    an argument outside its domain (negative size, empty range, bad option)
//   ├── io_error       a file that cannot be read/written or whose content is malformed
//   └── cuda_error     a failed CUDA runtime call (file, line, call, CUDA's error string)
// Later layers add their own (pattern_error, tokenizer_error, …), all derived from error.
#pragma once

#include <initializer_list>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "einlm/core/config.hpp"

#if EINLM_HAS_CUDA
#include <cuda_runtime_api.h>
#endif

namespace einlm {

/// Base of every exception einlm throws.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Extents that do not match, cannot be broadcast together, or an index out of range.
class shape_error : public error {
 public:
  using error::error;
};

/// An argument outside its domain.
class value_error : public error {
 public:
  using error::error;
};

/// A file that cannot be opened, read or written, or whose content is malformed.
class io_error : public error {
 public:
  using error::error;
};

/// A CUDA runtime call that failed; carries the CUDA error code.
class cuda_error : public error {
 public:
  cuda_error(int code, const std::string& what) : error(what), code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

namespace detail {

/// Concatenates the streamable arguments into one message string.
template <class... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

/// "(2, 3, 4)" — the NumPy spelling of a shape given as a range of numbers; "()" for rank 0.
template <class Range>
std::string format_shape(const Range& extents) {
  std::string s = "(";
  std::size_t n = 0;
  for (auto e : extents) {
    if (n++) s += ", ";
    s += std::to_string(e);
  }
  if (n == 1) s += ",";
  s += ")";
  return s;
}

inline std::string format_shape(std::initializer_list<index_t> extents) {
  return format_shape<std::initializer_list<index_t>>(extents);
}

#if EINLM_HAS_CUDA
[[noreturn]] inline void throw_cuda_error(cudaError_t code, const char* call, const char* file,
                                          int line) {
  throw cuda_error(static_cast<int>(code),
                   concat(file, ":", line, ": CUDA call `", call, "` failed: ",
                          cudaGetErrorName(code), " (", cudaGetErrorString(code), ")"));
}
#endif

}  // namespace detail
}  // namespace einlm

#if EINLM_HAS_CUDA
/// Evaluates a CUDA runtime call and throws einlm::cuda_error naming the file, line, call and CUDA's
/// error string when it does not return cudaSuccess.
#define EINLM_CUDA_CHECK(call)                                                     \
  do {                                                                             \
    const cudaError_t einlm_cuda_status_ = (call);                                 \
    if (einlm_cuda_status_ != cudaSuccess)                                         \
      ::einlm::detail::throw_cuda_error(einlm_cuda_status_, #call, __FILE__, __LINE__); \
  } while (0)
#endif
