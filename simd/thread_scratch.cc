// Per-thread scratch buffers (see simd/thread_scratch.h).

#include "simd/thread_scratch.h"

#include <new>

#include "hwy/aligned_allocator.h"

namespace attn {
namespace simd {
namespace detail {

namespace {

struct Scratch {
  hwy::AlignedFreeUniquePtr<float[]> buffer;
  size_t capacity = 0;  // in floats; 0 whenever buffer is empty
};

constexpr size_t kNumSlots = 2;

}  // namespace

float* ThreadScratch(ScratchSlot slot, size_t floats) {
  thread_local Scratch slots[kNumSlots];
  Scratch& s = slots[static_cast<size_t>(slot)];
  if (floats > s.capacity || !s.buffer) {
    s.buffer.reset();
    s.capacity = 0;
    s.buffer = hwy::AllocateAligned<float>(floats == 0 ? 1 : floats);
    if (!s.buffer) throw std::bad_alloc();
    s.capacity = floats;
  }
  return s.buffer.get();
}

}  // namespace detail
}  // namespace simd
}  // namespace attn
