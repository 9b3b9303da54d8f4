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

// The deleter of std::unique_ptr<float[], FloatsDeleter> for AllocateFloats.
struct FloatsDeleter {
  void operator()(float* p) const { FreeFloats(p); }
};

}  // namespace simd
}  // namespace attn
