// attn's allocator (simd/aligned_memory.h) and per-thread scratch
// (simd/thread_scratch.h): alignment, growth to the largest request, reuse,
// give-back above 8 MiB, and independence of slots and of threads. Each
// scratch test runs in a fresh thread, so that it starts with empty slots
// whatever the other tests of the binary did on the main thread.

#include "simd/thread_scratch.h"

#include <stddef.h>
#include <stdint.h>

#include <memory>
#include <new>
#include <thread>

#include "gtest/gtest.h"
#include "simd/aligned_memory.h"

namespace attn {
namespace simd {
namespace {

using detail::ScratchSlot;
using detail::ThreadScratch;
using detail::ThreadScratchCapacity;

constexpr size_t kFloatsPerMiB = (size_t{1} << 20) / sizeof(float);

uintptr_t Address(const float* p) { return reinterpret_cast<uintptr_t>(p); }

// Runs body on a thread of its own and waits for it.
template <class Body>
void OnFreshThread(const Body& body) {
  std::thread thread(body);
  thread.join();
}

TEST(AllocateFloatsTest, AlignedAndWritable) {
  for (size_t count : {size_t{0}, size_t{1}, size_t{17}, size_t{1000}, 5 * kFloatsPerMiB}) {
    std::unique_ptr<float[], FloatsDeleter> p(AllocateFloats(count));
    ASSERT_NE(p.get(), nullptr) << count;
    EXPECT_EQ(Address(p.get()) % 64, 0u) << count;
    if (count > 0) {
      p[0] = 1.0f;
      p[count - 1] = 2.0f;
    }
  }
  FreeFloats(nullptr);
}

TEST(AllocateFloatsTest, LargeBuffersAreHugePageAligned) {
  std::unique_ptr<float[], FloatsDeleter> p(AllocateFloats(4 * kFloatsPerMiB));
  EXPECT_EQ(Address(p.get()) % (size_t{2} << 20), 0u);
}

TEST(AllocateFloatsTest, ImpossibleSizeThrows) {
  EXPECT_THROW(AllocateFloats(~size_t{0} / 2), std::bad_alloc);
}

TEST(ThreadScratchTest, GrowsToTheLargestRequestAndReusesIt) {
  OnFreshThread([] {
    EXPECT_EQ(ThreadScratchCapacity(ScratchSlot::kScores), 0u);
    float* small = ThreadScratch(ScratchSlot::kScores, 100);
    EXPECT_EQ(ThreadScratchCapacity(ScratchSlot::kScores), 100u);
    EXPECT_EQ(Address(small) % 64, 0u);
    float* big = ThreadScratch(ScratchSlot::kScores, 5000);
    EXPECT_EQ(ThreadScratchCapacity(ScratchSlot::kScores), 5000u);
    big[4999] = 3.0f;
    // Smaller and equal requests get the same buffer, contents kept.
    EXPECT_EQ(ThreadScratch(ScratchSlot::kScores, 10), big);
    EXPECT_EQ(ThreadScratch(ScratchSlot::kScores, 5000), big);
    EXPECT_EQ(big[4999], 3.0f);
    EXPECT_EQ(ThreadScratchCapacity(ScratchSlot::kScores), 5000u);
    // Zero floats: a valid pointer too.
    EXPECT_NE(ThreadScratch(ScratchSlot::kMatMul, 0), nullptr);
  });
}

TEST(ThreadScratchTest, KeepsLargeBuffersForEqualRequests) {
  // A repeated forward at the same size reuses its buffer (no fresh pages),
  // also above 8 MiB.
  OnFreshThread([] {
    float* qkv = ThreadScratch(ScratchSlot::kForwardQkv, 20 * kFloatsPerMiB);
    EXPECT_EQ(Address(qkv) % (size_t{2} << 20), 0u);
    EXPECT_EQ(ThreadScratch(ScratchSlot::kForwardQkv, 20 * kFloatsPerMiB), qkv);
    EXPECT_EQ(ThreadScratch(ScratchSlot::kForwardQkv, 9 * kFloatsPerMiB), qkv);
    EXPECT_EQ(ThreadScratchCapacity(ScratchSlot::kForwardQkv), 20 * kFloatsPerMiB);
  });
}

TEST(ThreadScratchTest, GivesBackAbove8MiBAfter16SmallRequestsInARow) {
  OnFreshThread([] {
    float* big = ThreadScratch(ScratchSlot::kForwardContext, 9 * kFloatsPerMiB);
    EXPECT_EQ(ThreadScratchCapacity(ScratchSlot::kForwardContext), 9 * kFloatsPerMiB);
    for (int i = 1; i < 16; ++i) {
      EXPECT_EQ(ThreadScratch(ScratchSlot::kForwardContext, 1000), big) << "request " << i;
    }
    ThreadScratch(ScratchSlot::kForwardContext, 1000);
    EXPECT_EQ(ThreadScratchCapacity(ScratchSlot::kForwardContext), 1000u);
    // Up to 8 MiB a buffer is kept whatever the later requests.
    ThreadScratch(ScratchSlot::kForwardContext, 8 * kFloatsPerMiB);
    ThreadScratch(ScratchSlot::kForwardContext, 1000);
    EXPECT_EQ(ThreadScratchCapacity(ScratchSlot::kForwardContext), 8 * kFloatsPerMiB);
  });
}

TEST(ThreadScratchTest, KeepsLargeBuffersWhenLargeAndSmallRequestsAlternate) {
  // Prefill, 15 decoding steps, prefill, ...: the large buffer stays, and its
  // pages with it.
  OnFreshThread([] {
    float* prefill = ThreadScratch(ScratchSlot::kForwardQkv, 9 * kFloatsPerMiB);
    for (int round = 0; round < 3; ++round) {
      for (int step = 0; step < 15; ++step) ThreadScratch(ScratchSlot::kForwardQkv, 2304);
      EXPECT_EQ(ThreadScratch(ScratchSlot::kForwardQkv, 9 * kFloatsPerMiB), prefill);
    }
    EXPECT_EQ(ThreadScratchCapacity(ScratchSlot::kForwardQkv), 9 * kFloatsPerMiB);
  });
}

TEST(ThreadScratchTest, SlotsAreIndependent) {
  OnFreshThread([] {
    float* qkv = ThreadScratch(ScratchSlot::kForwardQkv, 1000);
    qkv[0] = 1.0f;
    // The slots a forward's callees take while it holds kForwardQkv.
    float* flash = ThreadScratch(ScratchSlot::kFlashAttention, 2000);
    float* matmul = ThreadScratch(ScratchSlot::kMatMul, 3000);
    float* scores = ThreadScratch(ScratchSlot::kScores, 4000);
    float* context = ThreadScratch(ScratchSlot::kForwardContext, 5000);
    flash[0] = matmul[0] = scores[0] = context[0] = 2.0f;
    EXPECT_EQ(ThreadScratch(ScratchSlot::kForwardQkv, 1000), qkv);
    EXPECT_EQ(qkv[0], 1.0f);
    EXPECT_EQ(ThreadScratchCapacity(ScratchSlot::kForwardQkv), 1000u);
    EXPECT_EQ(ThreadScratchCapacity(ScratchSlot::kFlashAttention), 2000u);
    EXPECT_EQ(ThreadScratchCapacity(ScratchSlot::kMatMul), 3000u);
    EXPECT_EQ(ThreadScratchCapacity(ScratchSlot::kScores), 4000u);
    EXPECT_EQ(ThreadScratchCapacity(ScratchSlot::kForwardContext), 5000u);
  });
}

TEST(ThreadScratchTest, ThreadsAreIndependent) {
  OnFreshThread([] {
    float* mine = ThreadScratch(ScratchSlot::kFlashAttention, 1000);
    mine[999] = 1.0f;
    uintptr_t other = 0;
    OnFreshThread([&other] {
      EXPECT_EQ(ThreadScratchCapacity(ScratchSlot::kFlashAttention), 0u);
      float* p = ThreadScratch(ScratchSlot::kFlashAttention, 2000);
      p[999] = 2.0f;
      other = Address(p);
    });
    // The other thread had its own buffer (freed when it exited); this
    // thread's is untouched.
    EXPECT_NE(other, Address(mine));
    EXPECT_EQ(ThreadScratch(ScratchSlot::kFlashAttention, 1000), mine);
    EXPECT_EQ(mine[999], 1.0f);
    EXPECT_EQ(ThreadScratchCapacity(ScratchSlot::kFlashAttention), 1000u);
  });
}

}  // namespace
}  // namespace simd
}  // namespace attn
