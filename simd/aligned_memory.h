// attn's one allocator of float buffers (internal, not installed): tensors
// (core/tensor.cc), packed weights (simd::PackedMatrix) and the per-thread
// scratch (simd/thread_scratch.h) all come from here.
#pragma once

#include <stddef.h>

namespace attn {
namespace simd {

// At least `count` floats (also for count 0: never null), not zeroed. 64-byte
// aligned (a cache line, an AVX-512 vector); from 4 MiB on, 2 MiB aligned
// and, on Linux, advised for transparent huge pages (MADV_HUGEPAGE), which
// makes the first touch of a large buffer several times cheaper. Throws
// std::bad_alloc when the memory is not there.
float* AllocateFloats(size_t count);

// Frees a buffer from AllocateFloats; nullptr is ignored.
void FreeFloats(float* p);

// For tests of attn's memory use: the bytes of AllocateFloats buffers held
// now (their usable sizes; tensors, packed weights, scratch), and the most
// held at once since the last ResetFloatsPeak() (or the start). Both 0 where
// the C library cannot tell a block's size (it is glibc's
// malloc_usable_size).
size_t FloatsBytesHeld();
size_t FloatsBytesPeak();
void ResetFloatsPeak();

// The deleter of std::unique_ptr<float[], FloatsDeleter> for AllocateFloats.
struct FloatsDeleter {
  void operator()(float* p) const { FreeFloats(p); }
};

}  // namespace simd
}  // namespace attn
