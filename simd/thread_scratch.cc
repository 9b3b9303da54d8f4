// Per-thread scratch buffers (see simd/thread_scratch.h).

#include "simd/thread_scratch.h"

#include <memory>

#include "simd/aligned_memory.h"

namespace attn {
namespace simd {
namespace detail {

namespace {

struct Scratch {
  std::unique_ptr<float[], FloatsDeleter> buffer;
  size_t capacity = 0;  // in floats; 0 whenever buffer is empty
  // Requests in a row that fit under kMaxKeptFloats while capacity is above.
  unsigned small_in_a_row = 0;
};

// A buffer larger than this is not kept once a request that fits under it
// comes. 8 MiB covers the flash kernel's whole heads up to 8192 tokens at
// head_dim 64, the GEMM's column blocks (about 1 MiB) and a 64-row score
// block up to 32768 keys.
constexpr size_t kMaxKeptFloats = (size_t{8} << 20) / sizeof(float);

// A buffer above kMaxKeptFloats is given back at the kGiveBackAfter-th
// request in a row that fits under it: a thread that alternates a long
// prefill with one-token decoding steps keeps its large buffer (no page
// faults per prefill), one that has gone on to small work releases it.
constexpr unsigned kGiveBackAfter = 16;

static_assert(static_cast<size_t>(ScratchSlot::kForwardContext) + 1 == kNumScratchSlots,
              "one buffer per slot");

Scratch& SlotOfThisThread(ScratchSlot slot) {
  thread_local Scratch slots[kNumScratchSlots];
  return slots[static_cast<size_t>(slot)];
}

}  // namespace

float* ThreadScratch(ScratchSlot slot, size_t floats) {
  Scratch& s = SlotOfThisThread(slot);
  const bool holds_large = s.capacity > kMaxKeptFloats;
  s.small_in_a_row = holds_large && floats <= kMaxKeptFloats ? s.small_in_a_row + 1 : 0;
  const bool shrink = s.small_in_a_row >= kGiveBackAfter;
  if (floats > s.capacity || !s.buffer || shrink) {
    // The old buffer goes first: growing never holds both.
    s.buffer.reset();
    s.capacity = 0;
    s.small_in_a_row = 0;
    s.buffer.reset(AllocateFloats(floats));
    s.capacity = floats;
  }
  return s.buffer.get();
}

size_t ThreadScratchCapacity(ScratchSlot slot) { return SlotOfThisThread(slot).capacity; }

}  // namespace detail
}  // namespace simd
}  // namespace attn
