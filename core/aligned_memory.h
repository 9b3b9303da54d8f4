// Float buffers for tensors and forward-pass scratch: 64-byte aligned; large
// ones (>= 4 MiB) 2 MiB aligned and advised for transparent huge pages on
// Linux, which makes first touch of a big buffer several times cheaper.
// Internal to attn.
#pragma once

#include <cstddef>

namespace attn {
namespace detail {

// At least `count` floats (never null: throws std::bad_alloc). Not zeroed.
float* allocate_floats(size_t count);
void free_floats(float* p);

// A scratch buffer for one forward pass, taken from a small process-wide
// pool of released buffers when one is large enough (the smallest such), so
// that repeated forward calls do not pay page faults for their big
// intermediates. Buffers of 1 MiB to 512 MiB are pooled on release; the pool
// keeps at most 4 of them and 512 MiB in all, evicting the buffers released
// longest ago. Thread-safe; contents unspecified on acquisition.
class ScratchBuffer {
 public:
  explicit ScratchBuffer(size_t count);
  ~ScratchBuffer();
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;

  float* data() const { return data_; }

  // How many released buffers the pool holds now (for tests).
  static size_t pooled_buffers();
  // Frees every pooled buffer (for tests, and for a caller that wants the
  // memory back after its last forward).
  static void release_pooled();

 private:
  float* data_;
  size_t capacity_;
};

}  // namespace detail
}  // namespace attn
