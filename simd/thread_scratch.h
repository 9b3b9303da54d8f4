// Per-thread scratch buffers: attn's one mechanism for temporary float
// buffers (internal, not installed). The single-threaded kernels (simd/) and
// the forward passes (core/) take their working memory here instead of
// allocating it per call.
//
// Memory behaviour: each thread that takes a slot keeps that slot's buffer,
// grown to the largest request it has made, until the thread exits, so that
// a kernel called many times (once per task of a parallel loop) neither pays
// a malloc per call nor faults in fresh pages, and a module's repeated
// forward reuses its intermediates (72 MiB of Q, K, V at B = 8, T = 1024 for
// GPT-2's width). A buffer above 8 MiB is given back (reallocated at the
// smaller size) at the 16th request in a row for the slot that fits under 8
// MiB: a thread that once ran a very long context does not keep its memory
// for good, and one that alternates long prefills with one-token decoding
// steps does not fault its large buffer in again at every prefill. Concurrent forwards from several
// threads each use their own buffers; the workers of the parallel loops keep theirs (the kernels'
// slots, at most a few MiB each) for the process's lifetime.
#pragma once

#include <stddef.h>

namespace attn {
namespace simd {
namespace detail {

// Who a buffer belongs to. A slot's buffer is valid until the next request
// for the same slot on the same thread, so a slot must never be used twice
// at once on one thread: each user below holds its slot only while nothing
// it calls on that thread can take the same slot.
enum class ScratchSlot {
  // simd::MatMul: a packed column block of op(B); simd::MatMulInt8: its
  // packed A rows. Leaf kernels (neither calls the other).
  kMatMul,
  // simd::FlashAttention: K transposed, V packed, a query block's state.
  // Leaf kernel.
  kFlashAttention,
  // The materialized attention path's score block of one task
  // (core/attention_core.cc); held across simd::MatMul (kMatMul) and the
  // softmax. Also a prompt's dequantized keys and values of one task over an
  // int8 cache (core/kv_int8_attention.cc); held across simd::FlashAttention
  // (kFlashAttention).
  kScores,
  // A module forward's fused Q, K, V projections (core/multi_head_attention.cc);
  // held across the parallel projections and attention, whose tasks (run on
  // this thread too while it waits) take only the slots above.
  kForwardQkv,
  // A module forward's concatenated head outputs on the materialized path;
  // held like kForwardQkv.
  kForwardContext,
};
constexpr size_t kNumScratchSlots = 5;

// This thread's 64-byte aligned scratch for `slot` (from simd::AllocateFloats,
// so 2 MiB aligned and huge-page advised from 4 MiB on), at least `floats`
// floats, contents undefined: grown when `floats` exceeds its capacity, given
// back and reallocated smaller when its capacity is above 8 MiB and this is
// the 16th request in a row of at most 8 MiB, else reused as it is. Valid until the next request
// for the same slot on the same thread. Throws std::bad_alloc when growing fails (the slot is empty
// then).
float* ThreadScratch(ScratchSlot slot, size_t floats);

// The capacity in floats of this thread's buffer for `slot` (0 before its
// first request): for tests.
size_t ThreadScratchCapacity(ScratchSlot slot);

}  // namespace detail
}  // namespace simd
}  // namespace attn
