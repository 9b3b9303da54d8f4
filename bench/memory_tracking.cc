// malloc replacement for the attention benchmark (see memory_tracking.h).
//
// glibc supports replacing malloc by symbol interposition: a program that
// defines malloc, free, calloc, realloc (and the aligned variants) gets them
// called by every shared library, glibc included. Ours forward to glibc's
// allocator under its internal names (__libc_malloc, ...), so the heap itself
// is unchanged; they only count malloc_usable_size() of each block in and
// out. Counting usable sizes on both sides keeps the books balanced for any
// block, however it was allocated. reallocarray is replaced too because glibc
// implements it without going through realloc.

#include "bench/memory_tracking.h"

#include <errno.h>
#include <malloc.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <atomic>
#include <cstring>

// Sanitizers bring their own malloc; replacing it would break them. The
// counters then stay at zero and HeapTrackingWorks() reports false.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define ATTN_BENCH_REPLACE_MALLOC 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define ATTN_BENCH_REPLACE_MALLOC 0
#endif
#endif
#ifndef ATTN_BENCH_REPLACE_MALLOC
#define ATTN_BENCH_REPLACE_MALLOC 1
#endif

namespace {

// Constant-initialised, so usable before any constructor runs.
std::atomic<int64_t> g_in_use{0};
std::atomic<int64_t> g_peak{0};

}  // namespace

#if ATTN_BENCH_REPLACE_MALLOC

extern "C" {
void* __libc_malloc(size_t size) noexcept;
void __libc_free(void* ptr) noexcept;
void* __libc_calloc(size_t count, size_t size) noexcept;
void* __libc_realloc(void* ptr, size_t size) noexcept;
void* __libc_memalign(size_t alignment, size_t size) noexcept;
void* __libc_valloc(size_t size) noexcept;
void* __libc_pvalloc(size_t size) noexcept;
}

namespace {

void Added(void* ptr) {
  if (ptr == nullptr) return;
  const int64_t size = static_cast<int64_t>(malloc_usable_size(ptr));
  const int64_t now = g_in_use.fetch_add(size, std::memory_order_relaxed) + size;
  int64_t peak = g_peak.load(std::memory_order_relaxed);
  while (now > peak && !g_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

void Removed(void* ptr) {
  if (ptr == nullptr) return;
  g_in_use.fetch_sub(static_cast<int64_t>(malloc_usable_size(ptr)), std::memory_order_relaxed);
}

bool IsPowerOfTwo(size_t x) { return x != 0 && (x & (x - 1)) == 0; }

}  // namespace

extern "C" {

void* malloc(size_t size) noexcept {
  void* p = __libc_malloc(size);
  Added(p);
  return p;
}

void free(void* ptr) noexcept {
  Removed(ptr);
  __libc_free(ptr);
}

void* calloc(size_t count, size_t size) noexcept {
  void* p = __libc_calloc(count, size);
  Added(p);
  return p;
}

void* realloc(void* ptr, size_t size) noexcept {
  // Account for the old block first: glibc may free it (size 0) or move it.
  const int64_t old_size = ptr ? static_cast<int64_t>(malloc_usable_size(ptr)) : 0;
  void* p = __libc_realloc(ptr, size);
  if (p == nullptr && ptr != nullptr && size != 0) return nullptr;  // failed; old block intact
  g_in_use.fetch_sub(old_size, std::memory_order_relaxed);
  Added(p);
  return p;
}

void* reallocarray(void* ptr, size_t count, size_t size) noexcept {
  size_t bytes = 0;
  if (__builtin_mul_overflow(count, size, &bytes)) {
    errno = ENOMEM;
    return nullptr;
  }
  return realloc(ptr, bytes);
}

void* memalign(size_t alignment, size_t size) noexcept {
  void* p = __libc_memalign(alignment, size);
  Added(p);
  return p;
}

void* aligned_alloc(size_t alignment, size_t size) noexcept { return memalign(alignment, size); }

int posix_memalign(void** out, size_t alignment, size_t size) noexcept {
  if (!IsPowerOfTwo(alignment) || alignment % sizeof(void*) != 0) return EINVAL;
  void* p = __libc_memalign(alignment, size);
  if (p == nullptr) return ENOMEM;
  Added(p);
  *out = p;
  return 0;
}

void* valloc(size_t size) noexcept {
  void* p = __libc_valloc(size);
  Added(p);
  return p;
}

void* pvalloc(size_t size) noexcept {
  void* p = __libc_pvalloc(size);
  Added(p);
  return p;
}

}  // extern "C"

#endif  // ATTN_BENCH_REPLACE_MALLOC

namespace attn_bench {
namespace {

// Reads "<key>: <n> kB" from /proc/self/status; -1 when unavailable.
int64_t ProcStatusBytes(const char* key) {
  FILE* f = fopen("/proc/self/status", "r");
  if (f == nullptr) return -1;
  char line[256];
  int64_t result = -1;
  const size_t key_len = strlen(key);
  while (fgets(line, sizeof(line), f) != nullptr) {
    if (strncmp(line, key, key_len) == 0 && line[key_len] == ':') {
      result = strtoll(line + key_len + 1, nullptr, 10) * 1024;
      break;
    }
  }
  fclose(f);
  return result;
}

}  // namespace

int64_t HeapBytesInUse() { return g_in_use.load(std::memory_order_relaxed); }

HeapPeakScope::HeapPeakScope() : baseline_(HeapBytesInUse()) {
  g_peak.store(baseline_, std::memory_order_relaxed);
}

int64_t HeapPeakScope::PeakExtraBytes() const {
  return g_peak.load(std::memory_order_relaxed) - baseline_;
}

bool HeapTrackingWorks() {
  // Through a volatile pointer, so that the compiler cannot elide the pair.
  void* (*volatile alloc)(size_t) = malloc;
  const int64_t before = HeapBytesInUse();
  void* p = alloc(1 << 20);
  const bool moved = HeapBytesInUse() - before >= (1 << 20);
  free(p);
  return moved;
}

RssPeakScope::RssPeakScope() {
  // Give freed heap pages back to the kernel first, so that RSS grows again
  // when the call touches them.
  malloc_trim(0);
  FILE* f = fopen("/proc/self/clear_refs", "w");
  if (f == nullptr) return;
  const bool reset = fputs("5", f) >= 0;  // 5: reset the peak RSS (VmHWM)
  if (fclose(f) != 0 || !reset) return;
  baseline_rss_ = ProcStatusBytes("VmRSS");
}

int64_t RssPeakScope::PeakGrowthBytes() const {
  if (baseline_rss_ < 0) return -1;
  const int64_t hwm = ProcStatusBytes("VmHWM");
  return hwm < 0 ? -1 : hwm - baseline_rss_;
}

}  // namespace attn_bench
