#include "tests/store/freed_scanner.h"

#include <execinfo.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>

namespace strongbox::testing_freed {
namespace {

constexpr int kMaxMarkers = 9;
constexpr size_t kMaxMarkerBytes = 64;
struct Marker {
  char bytes[kMaxMarkerBytes];
  size_t size = 0;
};
Marker g_markers[kMaxMarkers];
std::atomic<int> g_marker_count{0};

std::atomic<bool> g_scanning{false};
std::atomic<int> g_hits{0};
bool g_trace = false;
thread_local bool t_in_trace = false;

bool HoldsMarker(const void* p, size_t n) {
  const int count = g_marker_count.load(std::memory_order_acquire);
  for (int i = 0; i < count; ++i) {
    if (memmem(p, n, g_markers[i].bytes, g_markers[i].size) != nullptr) {
      return true;
    }
  }
  return false;
}

void SetFirstMarker() {
  if (g_marker_count.load() > 0) return;
  std::memcpy(g_markers[0].bytes, kMarker.data(), kMarker.size());
  g_markers[0].size = kMarker.size();
  g_marker_count.store(1, std::memory_order_release);
}

}  // namespace

void AddMarker(absl::string_view marker) {
  SetFirstMarker();
  const int i = g_marker_count.load();
  if (i >= kMaxMarkers || marker.empty() || marker.size() > kMaxMarkerBytes) {
    std::abort();
  }
  std::memcpy(g_markers[i].bytes, marker.data(), marker.size());
  g_markers[i].size = marker.size();
  g_marker_count.store(i + 1, std::memory_order_release);
}

void ClearMarkers() { g_marker_count.store(1, std::memory_order_release); }

FreedScan::FreedScan() {
  SetFirstMarker();
  g_trace = std::getenv("STRONGBOX_FREED_TRACE") != nullptr;
  g_hits.store(0);
  g_scanning.store(true);
}

FreedScan::~FreedScan() { g_scanning.store(false); }

int FreedScan::hits() const { return g_hits.load(); }

int FreedScan::Take() { return g_hits.exchange(0); }

// Called by every operator delete below.
void ScanFreed(void* p) {
  if (p == nullptr || !g_scanning.load(std::memory_order_relaxed)) return;
  if (!HoldsMarker(p, malloc_usable_size(p))) return;
  g_hits.fetch_add(1, std::memory_order_relaxed);
  if (g_trace && !t_in_trace) {
    t_in_trace = true;
    void* frames[32];
    const int depth = backtrace(frames, 32);
    static const char kSep[] = "---- freed block held a marker:\n";
    (void)!write(2, kSep, sizeof(kSep) - 1);
    backtrace_symbols_fd(frames, depth, 2);
    t_in_trace = false;
  }
}

}  // namespace strongbox::testing_freed

namespace {

void* Allocate(size_t n) {
  void* p = std::malloc(n == 0 ? 1 : n);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void* AllocateAligned(size_t n, std::align_val_t align) {
  void* p = nullptr;
  const size_t a = std::max(static_cast<size_t>(align), sizeof(void*));
  if (posix_memalign(&p, a, n == 0 ? 1 : n) != 0) throw std::bad_alloc();
  return p;
}

void Release(void* p) {
  strongbox::testing_freed::ScanFreed(p);
  std::free(p);
}

}  // namespace

void* operator new(size_t n) { return Allocate(n); }
void* operator new[](size_t n) { return Allocate(n); }
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  return std::malloc(n == 0 ? 1 : n);
}
void* operator new[](size_t n, const std::nothrow_t&) noexcept {
  return std::malloc(n == 0 ? 1 : n);
}
void* operator new(size_t n, std::align_val_t a) {
  return AllocateAligned(n, a);
}
void* operator new[](size_t n, std::align_val_t a) {
  return AllocateAligned(n, a);
}
void operator delete(void* p) noexcept { Release(p); }
void operator delete[](void* p) noexcept { Release(p); }
void operator delete(void* p, size_t) noexcept { Release(p); }
void operator delete[](void* p, size_t) noexcept { Release(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { Release(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { Release(p); }
void operator delete(void* p, std::align_val_t) noexcept { Release(p); }
void operator delete[](void* p, std::align_val_t) noexcept { Release(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { Release(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept {
  Release(p);
}
