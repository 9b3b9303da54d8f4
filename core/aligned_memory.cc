#include "core/aligned_memory.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace attn {
namespace detail {
namespace {

constexpr size_t kAlignment = 64;
constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kHugeThreshold = size_t{4} << 20;  // bytes

// Released scratch buffers kept for reuse: at most kPoolBuffers of them,
// kPoolBytes in all. A release into a full pool evicts the buffers released
// longest ago (back to the system): the buffers a caller is cycling through
// now stay, whatever it used before.
constexpr size_t kPoolBuffers = 4;
constexpr size_t kPoolBytes = size_t{512} << 20;
// Smaller buffers come from malloc's own free lists cheaply: not pooled.
constexpr size_t kPoolMinBytes = size_t{1} << 20;

struct Pool {
  std::mutex mutex;
  // (data, capacity in floats), the most recently released last.
  std::vector<std::pair<float*, size_t>> buffers;
  size_t bytes = 0;
};

Pool& pool() {
  static Pool* p = [] {
    Pool* created = new Pool;  // never destroyed: buffers may be released at exit
    // Room for a full pool plus the buffer being released, so that a release
    // (a destructor) never allocates.
    created->buffers.reserve(kPoolBuffers + 1);
    return created;
  }();
  return *p;
}

}  // namespace

float* allocate_floats(size_t count) {
  size_t bytes = std::max<size_t>(count, 1) * sizeof(float);
  const bool huge = bytes >= kHugeThreshold;
  const size_t alignment = huge ? kHugePage : kAlignment;
  bytes = (bytes + alignment - 1) / alignment * alignment;  // aligned_alloc's rule
  void* p = std::aligned_alloc(alignment, bytes);
  if (p == nullptr) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (huge) madvise(p, bytes, MADV_HUGEPAGE);  // advice only: failure is harmless
#endif
  return static_cast<float*>(p);
}

void free_floats(float* p) { std::free(p); }

ScratchBuffer::ScratchBuffer(size_t count) : data_(nullptr), capacity_(0) {
  {
    Pool& p = pool();
    std::lock_guard<std::mutex> lock(p.mutex);
    // The smallest pooled buffer that is large enough.
    auto best = p.buffers.end();
    for (auto it = p.buffers.begin(); it != p.buffers.end(); ++it) {
      if (it->second >= count && (best == p.buffers.end() || it->second < best->second)) best = it;
    }
    if (best != p.buffers.end()) {
      data_ = best->first;
      capacity_ = best->second;
      p.bytes -= capacity_ * sizeof(float);
      p.buffers.erase(best);
      return;
    }
  }
  data_ = allocate_floats(count);
  capacity_ = count;
}

ScratchBuffer::~ScratchBuffer() {
  Pool& p = pool();
  const size_t bytes = capacity_ * sizeof(float);
  if (bytes < kPoolMinBytes || bytes > kPoolBytes) {
    free_floats(data_);
    return;
  }
  std::array<float*, kPoolBuffers> evicted;  // no allocation in a destructor
  size_t oldest = 0;
  {
    std::lock_guard<std::mutex> lock(p.mutex);
    while (p.buffers.size() - oldest >= kPoolBuffers || p.bytes + bytes > kPoolBytes) {
      evicted[oldest] = p.buffers[oldest].first;
      p.bytes -= p.buffers[oldest].second * sizeof(float);
      ++oldest;
    }
    p.buffers.erase(p.buffers.begin(), p.buffers.begin() + static_cast<std::ptrdiff_t>(oldest));
    p.buffers.emplace_back(data_, capacity_);  // within the reserved capacity
    p.bytes += bytes;
  }
  for (size_t i = 0; i < oldest; ++i) free_floats(evicted[i]);  // outside the lock
}

void ScratchBuffer::release_pooled() {
  Pool& p = pool();
  std::array<float*, kPoolBuffers> released;
  size_t count = 0;
  {
    std::lock_guard<std::mutex> lock(p.mutex);
    for (const auto& buffer : p.buffers) released[count++] = buffer.first;
    p.buffers.clear();
    p.bytes = 0;
  }
  for (size_t i = 0; i < count; ++i) free_floats(released[i]);
}

size_t ScratchBuffer::pooled_buffers() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mutex);
  return p.buffers.size();
}

}  // namespace detail
}  // namespace attn
