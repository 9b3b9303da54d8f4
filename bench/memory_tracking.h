// Heap accounting for the attention benchmark: the binary replaces malloc,
// free and friends (memory_tracking.cc) with thin wrappers around glibc's own
// allocator (__libc_malloc, ...) that add and subtract malloc_usable_size()
// of every block in one atomic counter and keep its high-water mark. Every
// allocation in the process goes through them: attn's tensors, C++ new,
// oneTBB's fallback allocator, Google Benchmark's own.
//
// Also the kernel's view: peak resident set growth (VmHWM after resetting it
// through /proc/self/clear_refs), the same measure the PyTorch peer uses.
#pragma once

#include <cstdint>

namespace attn_bench {

// Bytes currently allocated through malloc & co. (usable sizes).
int64_t HeapBytesInUse();

// Scope guard: PeakExtraBytes() is the highest HeapBytesInUse() reached
// since construction minus its value at construction. Not nestable; meant for
// one single-threaded caller at a time (the allocations themselves may come
// from any thread).
class HeapPeakScope {
 public:
  HeapPeakScope();
  int64_t PeakExtraBytes() const;

 private:
  int64_t baseline_;
};

// True when the replacement allocator is in use (a probe allocation moved
// the counter). False, e.g., under a sanitizer that brings its own malloc.
bool HeapTrackingWorks();

// Peak RSS growth: the constructor returns free heap pages to the kernel
// (malloc_trim), resets the kernel's VmHWM and records VmRSS;
// PeakGrowthBytes() is VmHWM minus that RSS, or -1 when /proc does not allow
// it. Pages still resident (heap fragments malloc_trim cannot release) are
// reused without growing RSS, so this is a lower bound on what a call touched.
class RssPeakScope {
 public:
  RssPeakScope();
  int64_t PeakGrowthBytes() const;

 private:
  int64_t baseline_rss_ = -1;
};

}  // namespace attn_bench
