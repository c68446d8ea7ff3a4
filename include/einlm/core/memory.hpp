// einlm/core/memory.hpp — memory spaces, allocators with statistics, and owning buffers.
//
// Spaces: `host` (ordinary memory, 64-byte aligned) and `device` (CUDA global memory). Device memory
// is only available where EINLM_HAS_CUDA is 1 (translation units compiled by nvcc).
//
// Device allocations go through a caching allocator, as in CUB's CachingDeviceAllocator and
// PyTorch's: a freed block is kept, binned by size, and handed out again instead of calling
// cudaFree/cudaMalloc. Blocks are stream-ordered: a block freed on stream S can be reused at once
// by S, and by other streams only after the work queued on S at the time of the free has finished
// (an event recorded at the free). The caching logic is a template over a backend so that it is
// tested on the CPU; memory_stats reports bytes in use, peak bytes in use, bytes cached, and counts.
//
//   host_memory_stats(), device_memory_stats()    statistics (host: live/peak bytes of einlm buffers)
//   reset_peak_host_memory(), reset_peak_device_memory()
//                                                 peak counter back to the current use
//   release_cached_device_memory()                cudaFree every cached block
//   release_cached_host_memory()                  free every cached host block
//
// Host blocks of 64 KiB and more are cached the same way (one stream, no events), since a
// training step frees and re-creates the same large activations every step. Smaller ones are
// rounded up to a power of two and kept on free lists per size class (up to 1 MiB a class), since
// a decoding step frees and re-creates the same small tensors every token.
//   buffer<T, Space>                              owning, move-only array of T in Space
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <type_traits>
#include <utility>

#include "einlm/core/config.hpp"
#include "einlm/core/error.hpp"

#if EINLM_HAS_CUDA
#include <cuda_runtime_api.h>
#endif

namespace einlm {

/// Memory space of ordinary (host) memory.
struct host {
  static constexpr const char* name = "host";
};
/// Memory space of CUDA device memory.
struct device {
  static constexpr const char* name = "device";
};

template <class S>
concept memory_space = std::is_same_v<S, host> || std::is_same_v<S, device>;

/// Counters of one allocator.
struct memory_stats {
  std::size_t bytes_in_use = 0;     ///< bytes handed out and not yet freed
  std::size_t peak_bytes_in_use = 0;
  std::size_t bytes_cached = 0;     ///< bytes freed by users but kept for reuse
  std::size_t allocations = 0;      ///< allocate() calls
  std::size_t backend_allocations = 0;  ///< calls that reached the backend (cudaMalloc)
  std::size_t cache_hits = 0;
};

/// Alignment of every host buffer (a cache line; enough for any SIMD load).
inline constexpr std::size_t host_alignment = 64;

namespace detail {

inline std::mutex& host_stats_mutex() {
  static std::mutex m;
  return m;
}
inline memory_stats& host_stats() {
  static memory_stats s;
  return s;
}

/// Size-binned, stream-ordered caching allocator over a backend (see the file comment).
///
/// Backend requirements (all called with the allocator's lock held):
///   void* allocate(size_t)            raw allocation; throws on failure
///   void  free(void*)                 raw release
///   using stream = …; using event = …;
///   event record(stream)              marks the work queued so far on the stream
///   bool  done(event)                 true once that work has finished
///   void  destroy(event)
template <class Backend>
class caching_allocator {
 public:
  using stream = typename Backend::stream;
  using event = typename Backend::event;

  explicit caching_allocator(Backend backend = {}) : backend_(std::move(backend)) {}
  caching_allocator(const caching_allocator&) = delete;
  caching_allocator& operator=(const caching_allocator&) = delete;
  ~caching_allocator() { release_cached(); }

  /// Bin size of a request: the next multiple of 512 bytes below 1 MiB, of 2 MiB above, so that
  /// small tensors share bins and large ones waste at most 2 MiB.
  static std::size_t bin_size(std::size_t bytes) {
    constexpr std::size_t small = 512, large = std::size_t{2} << 20;
    if (bytes <= (std::size_t{1} << 20)) return std::max<std::size_t>(small, (bytes + small - 1) / small * small);
    return (bytes + large - 1) / large * large;
  }

  void* allocate(std::size_t bytes, stream s) {
    if (bytes == 0) return nullptr;
    const std::size_t bin = bin_size(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    ++stats_.allocations;
    void* p = take_cached(bin, s);
    if (p) {
      ++stats_.cache_hits;
      stats_.bytes_cached -= bin;
    } else {
      try {
        p = backend_.allocate(bin);
      } catch (...) {
        // Out of memory: give the cache back to the backend and try once more.
        release_cached_locked();
        p = backend_.allocate(bin);
      }
      ++stats_.backend_allocations;
    }
    live_.emplace(p, live_block{bin, s});
    stats_.bytes_in_use += bin;
    stats_.peak_bytes_in_use = std::max(stats_.peak_bytes_in_use, stats_.bytes_in_use);
    return p;
  }

  /// Returns a block to the cache. Work queued on `s` (the stream that last used the block) may still
  /// read or write it; other streams wait for that work before reusing the block.
  void deallocate(void* p, stream s) noexcept {
    if (!p) return;
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = live_.find(p);
    if (it == live_.end()) return;  // not ours; nothing sensible to do in a noexcept path
    const std::size_t bin = it->second.bin;
    live_.erase(it);
    stats_.bytes_in_use -= bin;
    stats_.bytes_cached += bin;
    cached_.emplace(bin, cached_block{p, s, backend_.record(s)});
  }

  /// Gives every cached block back to the backend.
  void release_cached() {
    std::lock_guard<std::mutex> lock(mutex_);
    release_cached_locked();
  }

  memory_stats stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

  /// Resets the peak to the current use (for measuring one phase).
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.peak_bytes_in_use = stats_.bytes_in_use;
  }

 private:
  struct live_block {
    std::size_t bin;
    stream s;
  };
  struct cached_block {
    void* p;
    stream s;
    event ready;
  };

  void* take_cached(std::size_t bin, stream s) {
    auto [first, last] = cached_.equal_range(bin);
    // Same stream first (no wait needed), then any block whose free has completed.
    for (auto it = first; it != last; ++it)
      if (it->second.s == s) return take(it);
    for (auto it = first; it != last; ++it)
      if (backend_.done(it->second.ready)) return take(it);
    return nullptr;
  }

  void* take(typename std::multimap<std::size_t, cached_block>::iterator it) {
    void* p = it->second.p;
    backend_.destroy(it->second.ready);
    cached_.erase(it);
    return p;
  }

  void release_cached_locked() {
    for (auto& [bin, block] : cached_) {
      backend_.destroy(block.ready);
      backend_.free(block.p);
    }
    cached_.clear();
    stats_.bytes_cached = 0;
  }

  Backend backend_;
  mutable std::mutex mutex_;
  std::multimap<std::size_t, cached_block> cached_;
  std::map<void*, live_block> live_;
  memory_stats stats_;
};

/// Host blocks at least this large are cached (see host_allocate).
inline constexpr std::size_t host_cache_threshold = std::size_t{64} << 10;

/// aligned_alloc / free as a caching_allocator backend (one "stream"; every free is complete).
struct host_backend {
  using stream = int;
  using event = int;
  void* allocate(std::size_t bytes) {
    void* p = std::aligned_alloc(host_alignment, bytes);
    if (!p) throw std::bad_alloc();
    return p;
  }
  void free(void* p) { std::free(p); }
  event record(stream) { return 0; }
  bool done(event) { return true; }
  void destroy(event) {}
};

/// The cache of large host blocks. Never destroyed, so that buffers freed during static
/// destruction still find it.
inline caching_allocator<host_backend>& host_cache() {
  static auto* cache = new caching_allocator<host_backend>();
  return *cache;
}

/// Host blocks below host_cache_threshold, kept for reuse in power-of-two size classes (64 B,
/// 128 B, …, 64 KiB) as singly linked free lists threaded through the blocks themselves. A
/// decoding step allocates and frees the same few hundred small tensors each token, and
/// aligned_alloc/free cost about a tenth of it. The lists live under host_stats_mutex, which every
/// allocation already takes for its counters, and each class keeps at most
/// small_class_cache_bytes.
struct small_block_cache {
  static constexpr int classes = 11;
  struct free_block {
    free_block* next;
  };
  free_block* heads[classes] = {};
  std::size_t bytes[classes] = {};
  std::size_t total_bytes = 0;
};
inline constexpr std::size_t small_class_cache_bytes = std::size_t{1} << 20;

/// The size class of a block below host_cache_threshold: the smallest c with 64·2^c ≥ bytes.
inline int small_block_class(std::size_t bytes) {
  int c = 0;
  while ((host_alignment << c) < bytes) ++c;
  return c;
}

/// The cache of small host blocks (guarded by host_stats_mutex). Never destroyed, like host_cache.
inline small_block_cache& small_cache() {
  static auto* cache = new small_block_cache();
  return *cache;
}

/// Adds an allocation of `bytes` to the host counters (host_stats_mutex held) and returns them.
inline memory_stats& count_host_allocation(std::size_t bytes) {
  auto& s = host_stats();
  s.bytes_in_use += bytes;
  s.peak_bytes_in_use = std::max(s.peak_bytes_in_use, s.bytes_in_use);
  ++s.allocations;
  return s;
}

/// Host memory for einlm buffers, 64-byte aligned. Blocks of host_cache_threshold bytes and more
/// come from a size-binned cache: a training step frees and re-creates the same large
/// activations every step, and fresh pages from the system cost a page fault and a zeroing each
/// (8 % of a CPU training step, measured). Smaller blocks are rounded up to a power of two and
/// reused from small_cache, or come from aligned_alloc.
inline void* host_allocate(std::size_t bytes) {
  if (bytes == 0) return nullptr;
  if (bytes >= host_cache_threshold) {
    const std::size_t rounded = (bytes + host_alignment - 1) / host_alignment * host_alignment;
    void* p = host_cache().allocate(rounded, 0);  // counts its own cache hits and system allocations
    std::lock_guard<std::mutex> lock(host_stats_mutex());
    count_host_allocation(bytes);
    return p;
  }
  const int c = small_block_class(bytes);
  {
    std::lock_guard<std::mutex> lock(host_stats_mutex());
    auto& s = count_host_allocation(bytes);
    auto& cache = small_cache();
    if (auto* block = cache.heads[c]) {
      cache.heads[c] = block->next;
      cache.bytes[c] -= host_alignment << c;
      cache.total_bytes -= host_alignment << c;
      ++s.cache_hits;
      return block;
    }
    ++s.backend_allocations;
  }
  void* p = std::aligned_alloc(host_alignment, host_alignment << c);
  if (!p) {
    std::lock_guard<std::mutex> lock(host_stats_mutex());
    host_stats().bytes_in_use -= bytes;
    throw std::bad_alloc();
  }
  return p;
}

inline void host_free(void* p, std::size_t bytes) noexcept {
  if (!p) return;
  if (bytes >= host_cache_threshold) {
    host_cache().deallocate(p, 0);
    std::lock_guard<std::mutex> lock(host_stats_mutex());
    host_stats().bytes_in_use -= bytes;
    return;
  }
  const int c = small_block_class(bytes);
  {
    std::lock_guard<std::mutex> lock(host_stats_mutex());
    host_stats().bytes_in_use -= bytes;
    auto& cache = small_cache();
    if (cache.bytes[c] + (host_alignment << c) <= small_class_cache_bytes) {
      auto* block = static_cast<small_block_cache::free_block*>(p);
      block->next = cache.heads[c];
      cache.heads[c] = block;
      cache.bytes[c] += host_alignment << c;
      cache.total_bytes += host_alignment << c;
      return;
    }
  }
  std::free(p);
}

/// Frees every cached small host block.
inline void release_small_blocks() {
  small_block_cache::free_block* lists[small_block_cache::classes];
  {
    std::lock_guard<std::mutex> lock(host_stats_mutex());
    auto& cache = small_cache();
    for (int c = 0; c < small_block_cache::classes; ++c) {
      lists[c] = cache.heads[c];
      cache.heads[c] = nullptr;
      cache.bytes[c] = 0;
    }
    cache.total_bytes = 0;
  }
  for (auto* block : lists) {
    while (block) {
      auto* next = block->next;
      std::free(block);
      block = next;
    }
  }
}

#if EINLM_HAS_CUDA
/// cudaMalloc/cudaFree backend of the caching allocator; events mark stream positions.
struct cuda_backend {
  using stream = cudaStream_t;
  using event = cudaEvent_t;
  void* allocate(std::size_t bytes) {
    void* p = nullptr;
    EINLM_CUDA_CHECK(cudaMalloc(&p, bytes));
    return p;
  }
  void free(void* p) { cudaFree(p); }
  event record(stream s) {
    cudaEvent_t e = nullptr;
    if (cudaEventCreateWithFlags(&e, cudaEventDisableTiming) != cudaSuccess) return nullptr;
    cudaEventRecord(e, s);
    return e;
  }
  bool done(event e) { return e == nullptr || cudaEventQuery(e) == cudaSuccess; }
  void destroy(event e) {
    if (e) cudaEventDestroy(e);
  }
};

/// The process-wide device allocator (one per device).
inline caching_allocator<cuda_backend>& device_allocator() {
  static caching_allocator<cuda_backend> allocators[64];
  int dev = 0;
  EINLM_CUDA_CHECK(cudaGetDevice(&dev));
  return allocators[dev];
}
#endif

}  // namespace detail

/// Statistics of host buffers allocated by einlm (bytes_cached: blocks, large and small, kept for
/// reuse; cache_hits: blocks reused; backend_allocations: blocks that came from the system).
inline memory_stats host_memory_stats() {
  memory_stats s;
  std::size_t small_cached = 0;
  {
    std::lock_guard<std::mutex> lock(detail::host_stats_mutex());
    s = detail::host_stats();
    small_cached = detail::small_cache().total_bytes;
  }
  const memory_stats large = detail::host_cache().stats();
  s.bytes_cached = large.bytes_cached + small_cached;
  s.cache_hits += large.cache_hits;
  s.backend_allocations += large.backend_allocations;
  return s;
}

/// Resets the host peak counter to the current use (for measuring one phase, e.g. one step).
inline void reset_peak_host_memory() {
  std::lock_guard<std::mutex> lock(detail::host_stats_mutex());
  detail::host_stats().peak_bytes_in_use = detail::host_stats().bytes_in_use;
}

/// Returns the cached host blocks, large and small, to the system.
inline void release_cached_host_memory() {
  detail::host_cache().release_cached();
  detail::release_small_blocks();
}

#if EINLM_HAS_CUDA
/// Statistics of the current device's caching allocator.
inline memory_stats device_memory_stats() { return detail::device_allocator().stats(); }
/// Returns the current device's cached blocks to the driver.
inline void release_cached_device_memory() { detail::device_allocator().release_cached(); }
/// Resets the current device's peak counter to its current use.
inline void reset_peak_device_memory() { detail::device_allocator().reset_peak(); }
#endif

/// Owning, move-only array of `count` elements of T in memory space S. Host buffers are 64-byte
/// aligned; device buffers come from the caching allocator and remember the stream they are used on.
template <class T, memory_space S>
class buffer {
 public:
  buffer() = default;
  explicit buffer(std::size_t count) : count_(count) {
    if constexpr (std::is_same_v<S, host>) {
      data_ = static_cast<T*>(detail::host_allocate(count * sizeof(T)));
    } else {
#if EINLM_HAS_CUDA
      data_ = static_cast<T*>(detail::device_allocator().allocate(count * sizeof(T), stream()));
#else
      static_assert(sizeof(T) == 0, "device buffers need a translation unit compiled by nvcc");
#endif
    }
  }
  buffer(buffer&& other) noexcept { swap(other); }
  buffer& operator=(buffer&& other) noexcept {
    buffer(std::move(other)).swap(*this);
    return *this;
  }
  buffer(const buffer&) = delete;
  buffer& operator=(const buffer&) = delete;
  ~buffer() { reset(); }

  void reset() noexcept {
    if (!data_) return;
    if constexpr (std::is_same_v<S, host>) {
      detail::host_free(data_, count_ * sizeof(T));
    } else {
#if EINLM_HAS_CUDA
      detail::device_allocator().deallocate(data_, stream());
#endif
    }
    data_ = nullptr;
    count_ = 0;
  }

  void swap(buffer& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(count_, other.count_);
    std::swap(stream_, other.stream_);
  }

  T* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return count_; }

#if EINLM_HAS_CUDA
  /// The stream whose work last used this buffer; its free waits for that work (device only).
  cudaStream_t stream() const noexcept { return static_cast<cudaStream_t>(stream_); }
  void set_stream(cudaStream_t s) noexcept { stream_ = s; }
#endif

 private:
  T* data_ = nullptr;
  std::size_t count_ = 0;
  void* stream_ = nullptr;  // a cudaStream_t; kept in every build so that the layout never differs
};

}  // namespace einlm
