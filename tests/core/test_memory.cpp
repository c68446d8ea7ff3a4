// Tests of einlm/core/memory.hpp: the caching allocator's reuse rules and statistics, driven by a
// fake backend whose "streams" and "events" are plain numbers, and host buffers.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstdlib>
#include <new>
#include <map>
#include <set>
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
  einlm::buffer<float, einlm::host> small(1000);  // below the threshold: not cached
  einlm::release_cached_host_memory();
  CHECK(einlm::host_memory_stats().bytes_cached == 0);
}
