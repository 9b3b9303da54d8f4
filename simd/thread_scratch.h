// Per-thread scratch buffers of the single-threaded kernels (internal: used
// by simd/*-inl.h, not installed).
#pragma once

#include <stddef.h>

namespace attn {
namespace simd {
namespace detail {

// Which kernel a buffer belongs to: each has its own, so that one kernel's
// buffer stays valid while the same thread runs another.
enum class ScratchSlot { kMatMul, kFlashAttention };

// This thread's 64-byte aligned scratch for `slot`, at least `floats`
// floats, contents undefined. Grown to the largest request the thread has
// made and kept for the thread's lifetime, so that a kernel called many
// times (once per task of a parallel loop) neither pays a malloc per call
// nor faults in fresh pages; a buffer above 8 MiB is given back (reallocated
// smaller) at the next request that fits under 8 MiB. Valid until the next
// request for the same slot on the same thread. Throws std::bad_alloc when
// growing fails (the buffer is empty then).
float* ThreadScratch(ScratchSlot slot, size_t floats);

}  // namespace detail
}  // namespace simd
}  // namespace attn
