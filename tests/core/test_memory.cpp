// Tests of einlm/core/memory.hpp: the caching allocator's reuse rules and statistics, driven by a
// fake backend whose "streams" and "events" are plain numbers, and host buffers.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include "einlm/core/memory.hpp"

namespace {

struct fake_backend {
  using stream = int;
  using event = int;
  std::vector<void*>* live;
  std::set<int>* pending;  // events whose work has not finished
  int* next_event;
  std::size_t* limit;      // bytes the fake device holds
  std::size_t* used;
  std::map<void*, std::size_t>* sizes;

  void* allocate(std::size_t bytes) {
    if (*used + bytes > *limit) throw std::bad_alloc();
    *used += bytes;
    void* p = std::malloc(bytes);
    live->push_back(p);
    (*sizes)[p] = bytes;
    return p;
  }
  void free(void* p) {
    *used -= (*sizes)[p];
    std::free(p);
    for (auto& q : *live)
      if (q == p) q = nullptr;
  }
  event record(stream) {
    pending->insert(*next_event);
    return (*next_event)++;
  }
  bool done(event e) { return pending->count(e) == 0; }
  void destroy(event) {}
};

struct fixture {
  std::vector<void*> live;
  std::set<int> pending;
  int next_event = 0;
  std::size_t limit = std::size_t{64} << 20;
  std::size_t used = 0;
  std::map<void*, std::size_t> sizes;
  einlm::detail::caching_allocator<fake_backend> alloc{fake_backend{&live, &pending, &next_event, &limit, &used, &sizes}};
};

}  // namespace

TEST_CASE("bins") {
  using A = einlm::detail::caching_allocator<fake_backend>;
  CHECK(A::bin_size(1) == 512);
  CHECK(A::bin_size(513) == 1024);
  CHECK(A::bin_size(1 << 20) == (1 << 20));
  CHECK(A::bin_size((1 << 20) + 1) == (2 << 20));
  CHECK(A::bin_size((5 << 20) + 3) == (6 << 20));
}

TEST_CASE("a freed block is reused by the same stream at once, by others after its work ends") {
  fixture f;
  void* a = f.alloc.allocate(1000, /*stream*/ 1);
  CHECK(f.alloc.stats().bytes_in_use == 1024);
  f.alloc.deallocate(a, 1);
  CHECK(f.alloc.stats().bytes_in_use == 0);
  CHECK(f.alloc.stats().bytes_cached == 1024);
  // Another stream may not take it while the event recorded at the free is pending.
  void* b = f.alloc.allocate(900, 2);
  CHECK(b != a);
  CHECK(f.alloc.stats().backend_allocations == 2);
  // The same stream may.
  void* c = f.alloc.allocate(1000, 1);
  CHECK(c == a);
  CHECK(f.alloc.stats().cache_hits == 1);
  f.alloc.deallocate(c, 1);
  // Once the work finishes, any stream may.
  f.pending.clear();
  void* d = f.alloc.allocate(1024, 3);
  CHECK(d == a);
  const auto s = f.alloc.stats();
  CHECK(s.allocations == 4);
  CHECK(s.peak_bytes_in_use == 2048);
  f.alloc.deallocate(b, 2);
  f.alloc.deallocate(d, 3);
  f.alloc.release_cached();
  CHECK(f.alloc.stats().bytes_cached == 0);
  for (void* p : f.live) CHECK(p == nullptr);
}

TEST_CASE("out of memory releases the cache and retries") {
  fixture f;
  f.limit = std::size_t{6} << 20;
  void* a = f.alloc.allocate(std::size_t{4} << 20, 1);
  f.alloc.deallocate(a, 1);
  f.pending.clear();
  // A 4 MiB bin is cached; a 6 MiB request does not fit beside it, so the cache goes back first.
  void* b = f.alloc.allocate(std::size_t{6} << 20, 1);
  CHECK(b != nullptr);
  CHECK(f.alloc.stats().bytes_cached == 0);
  // Beyond the device, the backend's error reaches the caller.
  CHECK_THROWS_AS(f.alloc.allocate(std::size_t{8} << 20, 1), std::bad_alloc);
  f.alloc.deallocate(b, 1);
}

TEST_CASE("host buffers are 64-byte aligned and counted") {
  const auto before = einlm::host_memory_stats().bytes_in_use;
  {
    einlm::buffer<float, einlm::host> b(1001);
    CHECK(reinterpret_cast<std::uintptr_t>(b.data()) % 64 == 0);
    CHECK(einlm::host_memory_stats().bytes_in_use == before + 1001 * sizeof(float));
    einlm::buffer<float, einlm::host> moved(std::move(b));
    CHECK(b.data() == nullptr);
    CHECK(moved.size() == 1001);
  }
  CHECK(einlm::host_memory_stats().bytes_in_use == before);
  CHECK(einlm::host_memory_stats().peak_bytes_in_use >= before + 1001 * sizeof(float));
}

TEST_CASE("large host buffers are cached and reused") {
  einlm::release_cached_host_memory();
  const void* first = nullptr;
  {
    einlm::buffer<float, einlm::host> big(std::size_t{1} << 20);  // 4 MiB
    first = big.data();
    CHECK(reinterpret_cast<std::uintptr_t>(first) % 64 == 0);
  }
  CHECK(einlm::host_memory_stats().bytes_cached >= (std::size_t{4} << 20));
  {
    einlm::buffer<float, einlm::host> again(std::size_t{1} << 20);  // the same bin: the same block
    CHECK(again.data() == first);
    CHECK(einlm::host_memory_stats().bytes_cached == 0);
  }
  einlm::buffer<float, einlm::host> small(1000);  // below the threshold: a small block
  einlm::release_cached_host_memory();
  CHECK(einlm::host_memory_stats().bytes_cached == 0);
}

TEST_CASE("small host buffers are reused by size class, up to a bound per class") {
  using einlm::buffer;
  using einlm::host;
  einlm::release_cached_host_memory();
  CHECK(einlm::detail::small_block_class(1) == 0);
  CHECK(einlm::detail::small_block_class(64) == 0);
  CHECK(einlm::detail::small_block_class(65) == 1);
  CHECK(einlm::detail::small_block_class(4096) == 6);
  CHECK(einlm::detail::small_block_class(einlm::detail::host_cache_threshold - 1) == 10);
  const auto before = einlm::host_memory_stats();
  const void* first = nullptr;
  {
    buffer<float, host> b(100);  // 400 bytes: the 512-byte class
    first = b.data();
    CHECK(reinterpret_cast<std::uintptr_t>(first) % 64 == 0);
    CHECK(einlm::host_memory_stats().bytes_in_use == before.bytes_in_use + 400);  // bytes asked for
  }
  CHECK(einlm::host_memory_stats().bytes_cached == 512);
  {
    buffer<std::uint8_t, host> other_type(300);  // the same class: the same block
    CHECK(other_type.data() == static_cast<const void*>(first));
    CHECK(einlm::host_memory_stats().bytes_cached == 0);
    buffer<float, host> other_class(200);  // 800 bytes: the 1024-byte class, a fresh block
    CHECK(other_class.data() != static_cast<const void*>(first));
    CHECK(reinterpret_cast<std::uintptr_t>(other_class.data()) % 64 == 0);
  }
  CHECK(einlm::host_memory_stats().bytes_cached == 512 + 1024);
  const auto after_reuse = einlm::host_memory_stats();
  CHECK(after_reuse.cache_hits == before.cache_hits + 1);
  CHECK(after_reuse.allocations == before.allocations + 3);
  CHECK(after_reuse.backend_allocations == before.backend_allocations + 2);
  // A class keeps at most 1 MiB: of 20 freed 64 KiB-class blocks, 16 stay.
  {
    std::vector<buffer<std::uint8_t, host>> blocks;
    for (int i = 0; i < 20; ++i) blocks.emplace_back(40000);
    for (auto& b : blocks) std::fill(b.data(), b.data() + b.size(), std::uint8_t{7});
  }
  CHECK(einlm::host_memory_stats().bytes_cached == 512 + 1024 + einlm::detail::small_class_cache_bytes);
  einlm::release_cached_host_memory();
  CHECK(einlm::host_memory_stats().bytes_cached == 0);
  CHECK(einlm::host_memory_stats().bytes_in_use == before.bytes_in_use);
}

TEST_CASE("small host buffers may be freed on another thread than the one that allocated them") {
  const auto before = einlm::host_memory_stats().bytes_in_use;
  std::vector<einlm::buffer<double, einlm::host>> made(64);
  std::thread producer([&] {
    for (std::size_t i = 0; i < made.size(); ++i) {
      made[i] = einlm::buffer<double, einlm::host>(1 + 37 * i);
      for (std::size_t j = 0; j < made[i].size(); ++j) made[i].data()[j] = static_cast<double>(i + j);
    }
  });
  producer.join();
  std::vector<std::thread> consumers;
  for (int t = 0; t < 4; ++t)
    consumers.emplace_back([&, t] {
      for (std::size_t i = static_cast<std::size_t>(t); i < made.size(); i += 4) {
        CHECK(made[i].data()[made[i].size() - 1] == static_cast<double>(i + made[i].size() - 1));
        made[i].reset();
        einlm::buffer<double, einlm::host> again(1 + 37 * i);  // reuses a block freed by any thread
        again.data()[0] = 1.0;
      }
    });
  for (auto& c : consumers) c.join();
  CHECK(einlm::host_memory_stats().bytes_in_use == before);
  einlm::release_cached_host_memory();
}
