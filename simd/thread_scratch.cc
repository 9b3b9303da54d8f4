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

// A buffer larger than this is not kept once a request that fits under it
// comes (it is reallocated at the smaller size): a thread that once ran a
// very long context does not hold its scratch for good. 8 MiB covers the
// flash kernel's whole heads up to 8192 tokens at head_dim 64 and the GEMM's
// column blocks (about 1 MiB).
constexpr size_t kMaxKeptFloats = (size_t{8} << 20) / sizeof(float);

}  // namespace

float* ThreadScratch(ScratchSlot slot, size_t floats) {
  thread_local Scratch slots[kNumSlots];
  Scratch& s = slots[static_cast<size_t>(slot)];
  const bool shrink = s.capacity > kMaxKeptFloats && floats <= kMaxKeptFloats;
  if (floats > s.capacity || !s.buffer || shrink) {
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
