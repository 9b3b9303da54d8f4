// Peak heap growth during one call, through the sanitizer allocator's hooks
// (the harnesses run under ASan): the memory bound of the safetensors reader
// is checked on every input, not only the allocations large enough for
// libFuzzer's -malloc_limit_mb to notice.
#pragma once

#include <sanitizer/allocator_interface.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace attn_fuzz {

inline std::atomic<bool> g_counting{false};
inline std::atomic<int64_t> g_current{0};
inline std::atomic<int64_t> g_peak{0};

inline void on_malloc(const volatile void*, size_t size) {
  if (!g_counting.load(std::memory_order_relaxed)) return;
  const int64_t now = g_current.fetch_add(static_cast<int64_t>(size)) + static_cast<int64_t>(size);
  int64_t peak = g_peak.load();
  while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
  }
}

inline void on_free(const volatile void* p) {
  if (!g_counting.load(std::memory_order_relaxed) || p == nullptr) return;
  g_current.fetch_sub(static_cast<int64_t>(__sanitizer_get_allocated_size(const_cast<void*>(p))));
}

// Runs f() and returns the largest number of heap bytes it held at once.
template <typename F>
int64_t heap_peak(F&& f) {
  static const bool installed = __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free) != 0;
  (void)installed;
  g_current = 0;
  g_peak = 0;
  g_counting = true;
  try {
    f();
  } catch (...) {
    g_counting = false;
    throw;
  }
  g_counting = false;
  return g_peak.load();
}

}  // namespace attn_fuzz
