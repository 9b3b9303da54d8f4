// attn's allocator of float buffers (see simd/aligned_memory.h).

#include "simd/aligned_memory.h"

#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <new>

#ifdef __linux__
#include <sys/mman.h>
#endif
#ifdef __GLIBC__
#include <malloc.h>
#endif

namespace attn {
namespace simd {
namespace {

constexpr size_t kAlignment = 64;
constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kHugeThreshold = size_t{4} << 20;  // bytes

// FloatsBytesHeld() and FloatsBytesPeak().
std::atomic<size_t> g_held{0};
std::atomic<size_t> g_peak{0};

size_t usable_size(void* p) {
#ifdef __GLIBC__
  return malloc_usable_size(p);
#else
  (void)p;
  return 0;
#endif
}

}  // namespace

float* AllocateFloats(size_t count) {
  if (count > (~size_t{0} - kHugePage) / sizeof(float)) throw std::bad_alloc();
  size_t bytes = std::max<size_t>(count, 1) * sizeof(float);
  const bool huge = bytes >= kHugeThreshold;
  const size_t alignment = huge ? kHugePage : kAlignment;
  bytes = (bytes + alignment - 1) / alignment * alignment;  // aligned_alloc's rule
  void* p = aligned_alloc(alignment, bytes);
  if (p == nullptr) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (huge) madvise(p, bytes, MADV_HUGEPAGE);  // advice only: failure is harmless
#endif
  const size_t size = usable_size(p);
  const size_t held = g_held.fetch_add(size, std::memory_order_relaxed) + size;
  size_t peak = g_peak.load(std::memory_order_relaxed);
  while (held > peak && !g_peak.compare_exchange_weak(peak, held, std::memory_order_relaxed)) {
  }
  return static_cast<float*>(p);
}

void FreeFloats(float* p) {
  if (p == nullptr) return;
  g_held.fetch_sub(usable_size(p), std::memory_order_relaxed);
  free(p);
}

size_t FloatsBytesHeld() { return g_held.load(std::memory_order_relaxed); }
size_t FloatsBytesPeak() { return g_peak.load(std::memory_order_relaxed); }
void ResetFloatsPeak() { g_peak.store(g_held.load(std::memory_order_relaxed)); }

}  // namespace simd
}  // namespace attn
