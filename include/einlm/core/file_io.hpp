// einlm/core/file_io.hpp — the file primitives behind einlm's readers and writers (.npy, .npz,
// safetensors). Host only, POSIX.
//
//   detail::read_file_bytes(path)               the whole file, or io_error naming it
//   detail::mapped_file f(path)                 a read-only memory map (f.data(), f.size())
//   detail::write_file_atomically(path, parts)  writes the byte ranges `parts` (a vector or a braced
//                                               list of byte_span) to a temporary file
//                                               in path's directory, fsyncs it, renames it over
//                                               path and fsyncs the directory
// Contract of the atomic write: when it throws (cannot create, write or sync the temporary file, or
// rename it), the temporary file is removed and a file already at `path` is untouched; when it
// returns, `path` holds the new bytes durably. Readers see the old file or the new one, never a mix.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "einlm/core/error.hpp"

namespace einlm::detail {

/// A byte range to write.
struct byte_span {
  const void* data;
  std::size_t size;
};

inline std::vector<std::uint8_t> read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw io_error(concat(path, ": cannot open for reading"));
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) throw io_error(concat(path, ": cannot determine the file size"));
  in.seekg(0, std::ios::beg);
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size)) throw io_error(concat(path, ": read failed"));
  return bytes;
}

/// A read-only, private memory map of a whole file (an empty file maps to nothing).
class mapped_file {
 public:
  explicit mapped_file(const std::string& path) : path_(path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw io_error(concat(path, ": cannot open for reading (", std::strerror(errno), ")"));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int e = errno;
      ::close(fd);
      throw io_error(concat(path, ": cannot determine the file size (", std::strerror(e), ")"));
    }
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        const int e = errno;
        ::close(fd);
        throw io_error(concat(path, ": cannot map the file (", std::strerror(e), ")"));
      }
      data_ = static_cast<const std::uint8_t*>(p);
    }
    ::close(fd);
  }
  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  mapped_file(mapped_file&& o) noexcept
      : path_(std::move(o.path_)), data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  mapped_file& operator=(mapped_file&& o) noexcept {
    if (this != &o) {
      unmap();
      path_ = std::move(o.path_);
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  ~mapped_file() { unmap(); }

  const std::uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void unmap() {
    if (data_) ::munmap(const_cast<std::uint8_t*>(data_), size_);
    data_ = nullptr;
  }
  std::string path_;
  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

/// Writes `parts`, in order, to `path` atomically (see the file comment).
inline void write_file_atomically(const std::string& path, const std::vector<byte_span>& parts) {
  const std::size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  std::string tmp = path + ".tmp.XXXXXX";
  const int fd = ::mkstemp(tmp.data());
  if (fd < 0)
    throw io_error(concat(path, ": cannot create a temporary file in ", dir, " (", std::strerror(errno),
                          "); the previous file, if any, is unchanged"));
  auto fail = [&](const char* what, int err) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw io_error(concat(path, ": ", what, " failed (", std::strerror(err), "); the previous file, if any, is unchanged"));
  };
  for (const byte_span& part : parts) {
    const char* p = static_cast<const char*>(part.data);
    std::size_t left = part.size;
    while (left > 0) {
      const ::ssize_t n = ::write(fd, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) fail("writing the temporary file", n < 0 ? errno : EIO);
      p += n;
      left -= static_cast<std::size_t>(n);
    }
  }
  if (::fchmod(fd, 0644) != 0) fail("setting the file mode", errno);
  if (::fsync(fd) != 0) fail("syncing the temporary file", errno);
  if (::close(fd) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    throw io_error(concat(path, ": closing the temporary file failed (", std::strerror(e),
                          "); the previous file, if any, is unchanged"));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    throw io_error(concat(path, ": cannot replace the file (", std::strerror(e), "); the previous file, if any, is unchanged"));
  }
  // Make the rename itself durable. A directory that cannot be opened or synced (some file systems)
  // leaves the new file in place, so this is best effort.
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

inline void write_file_atomically(const std::string& path, std::initializer_list<byte_span> parts) {
  write_file_atomically(path, std::vector<byte_span>(parts));
}

}  // namespace einlm::detail
