// attn's allocator of float buffers (see simd/aligned_memory.h).

#include "simd/aligned_memory.h"

#include <stdlib.h>

#include <algorithm>
#include <new>

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace attn {
namespace simd {
namespace {

constexpr size_t kAlignment = 64;
constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kHugeThreshold = size_t{4} << 20;  // bytes

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
  return static_cast<float*>(p);
}

void FreeFloats(float* p) { free(p); }

}  // namespace simd
}  // namespace attn
