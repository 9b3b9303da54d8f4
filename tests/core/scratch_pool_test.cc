// The pool of released forward-pass scratch buffers (core/aligned_memory.h):
// released buffers are reused, and a buffer released into a full pool is
// kept while the oldest one goes.

#include <cstddef>
#include <memory>
#include <vector>

#include "core/aligned_memory.h"
#include "gtest/gtest.h"

namespace attn {
namespace {

using detail::ScratchBuffer;

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kFloatsPerMiB = kMiB / sizeof(float);

// Fills the pool with `count` released buffers of `mib` MiB each (held at
// the same time first, so that they are distinct).
void ReleaseBuffers(size_t count, size_t mib) {
  std::vector<std::unique_ptr<ScratchBuffer>> held;
  for (size_t i = 0; i < count; ++i) {
    held.push_back(std::make_unique<ScratchBuffer>(mib * kFloatsPerMiB));
    held.back()->data()[0] = 1.0f;  // usable
  }
}

// Each test starts from an empty pool (tests may run in one process).
class ScratchPoolTest : public ::testing::Test {
 protected:
  void SetUp() override { ScratchBuffer::release_pooled(); }
  void TearDown() override { ScratchBuffer::release_pooled(); }
};

TEST_F(ScratchPoolTest, ReleasedBufferIsReused) {
  float* first = nullptr;
  {
    ScratchBuffer a(9 * kFloatsPerMiB);
    first = a.data();
  }
  const size_t pooled = ScratchBuffer::pooled_buffers();
  ScratchBuffer b(9 * kFloatsPerMiB);
  EXPECT_EQ(b.data(), first);
  EXPECT_EQ(ScratchBuffer::pooled_buffers(), pooled - 1);
}

TEST_F(ScratchPoolTest, FullPoolKeepsTheNewestRelease) {
  ReleaseBuffers(6, 2);  // more than the pool holds
  const size_t full = ScratchBuffer::pooled_buffers();
  ASSERT_EQ(full, 4u);
  float* newest = nullptr;
  {
    ScratchBuffer big(7 * kFloatsPerMiB);  // none of the pooled ones fits
    EXPECT_EQ(ScratchBuffer::pooled_buffers(), full);
    newest = big.data();
  }
  // Released into a full pool: kept, the oldest 2 MiB buffer went.
  EXPECT_EQ(ScratchBuffer::pooled_buffers(), full);
  ScratchBuffer again(7 * kFloatsPerMiB);
  EXPECT_EQ(ScratchBuffer::pooled_buffers(), full - 1);
  EXPECT_EQ(again.data(), newest);
}

TEST_F(ScratchPoolTest, SmallAndHugeBuffersAreNotPooled) {
  { ScratchBuffer small(1000); }
  EXPECT_EQ(ScratchBuffer::pooled_buffers(), 0u);
  // Above the pool's 512 MiB in all (never written: only address space).
  { ScratchBuffer huge(600 * kFloatsPerMiB); }
  EXPECT_EQ(ScratchBuffer::pooled_buffers(), 0u);
}

TEST_F(ScratchPoolTest, PoolKeepsAtMost512MiB) {
  ReleaseBuffers(3, 200);  // 600 MiB released: the oldest 200 MiB goes
  EXPECT_EQ(ScratchBuffer::pooled_buffers(), 2u);
  ScratchBuffer::release_pooled();
  EXPECT_EQ(ScratchBuffer::pooled_buffers(), 0u);
}

}  // namespace
}  // namespace attn
