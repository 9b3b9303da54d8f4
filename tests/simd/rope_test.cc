// RoPE: every compiled target's kernel against the scalar reference, bit for
// bit, over half-head sizes around the vector width, padded and misaligned
// heads with guards, and hostile values (huge, inf, NaN); plus the rotation
// itself on known angles.

#include "simd/rope.h"

#include <stddef.h>
#include <stdint.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "tests/simd/rope_test.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "simd/rope-inl.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {
namespace rope_test {

constexpr float kGuard = -777.0f;

struct RopeProblem {
  size_t rows = 1, heads = 1, head_dim = 2, head_pad = 0, row_pad = 0, misalign = 0;
  std::vector<float> x, cos, sin;

  size_t ld_head() const { return head_dim + head_pad; }
  size_t ld_row() const { return heads * ld_head() + row_pad; }
  size_t half() const { return head_dim / 2; }

  void Fill(uint32_t seed, bool hostile) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(-3.0f, 3.0f);
    x.assign(misalign + rows * ld_row(), kGuard);
    for (size_t r = 0; r < rows; ++r) {
      for (size_t k = 0; k < heads; ++k) {
        for (size_t c = 0; c < head_dim; ++c)
          x[misalign + r * ld_row() + k * ld_head() + c] = dist(rng);
      }
    }
    cos.resize(misalign + rows * half());
    sin.resize(misalign + rows * half());
    for (size_t i = 0; i < rows * half(); ++i) {
      const float angle = dist(rng) * 100.0f;
      cos[misalign + i] = static_cast<float>(std::cos(static_cast<double>(angle)));
      sin[misalign + i] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
    if (hostile && rows * heads * head_dim >= 4) {
      const float inf = std::numeric_limits<float>::infinity();
      x[misalign] = 3e38f;
      x[misalign + 1] = std::numeric_limits<float>::quiet_NaN();
      x[misalign + ld_head() * (heads - 1) + head_dim - 1] = -inf;
      x[misalign + (rows - 1) * ld_row()] = 1e-40f;  // denormal
    }
  }

  simd::RopeArgs Args(float* data) const {
    simd::RopeArgs a;
    a.x = data + misalign;
    a.ld_row = ld_row();
    a.rows = rows;
    a.heads = heads;
    a.head_dim = head_dim;
    a.ld_head = ld_head();
    a.cos = cos.data() + misalign;
    a.sin = sin.data() + misalign;
    a.ld_table = half();
    return a;
  }
};

void ExpectBitwiseEqual(const RopeProblem& p) {
  std::vector<float> got = p.x, want = p.x;
  ApplyRopeKernel(p.Args(got.data()));
  simd::ApplyRopeReference(p.Args(want.data()));
  ASSERT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0)
      << hwy::TargetName(HWY_TARGET) << ": rows=" << p.rows << " heads=" << p.heads
      << " head_dim=" << p.head_dim << " pads=" << p.head_pad << "," << p.row_pad
      << " misalign=" << p.misalign;
  for (size_t i = 0; i < got.size(); ++i) {
    const bool outside = i < p.misalign || (i - p.misalign) % p.ld_row() >= p.heads * p.ld_head() ||
                         (i - p.misalign) % p.ld_row() % p.ld_head() >= p.head_dim;
    if (outside) {
      ASSERT_EQ(got[i], kGuard) << "guard overwritten at " << i;
    }
  }
}

void TestRopeSizes() {
  const size_t N = hn::Lanes(hn::ScalableTag<float>());
  uint32_t seed = 1;
  for (size_t half = 1; half <= 2 * N + 3; ++half) {
    for (size_t heads : {size_t{1}, size_t{3}}) {
      for (size_t misalign : {size_t{0}, size_t{1}}) {
        RopeProblem p;
        p.rows = 3;
        p.heads = heads;
        p.head_dim = 2 * half;
        p.head_pad = misalign;
        p.row_pad = 2 * misalign;
        p.misalign = misalign;
        p.Fill(seed++, false);
        ExpectBitwiseEqual(p);
      }
    }
  }
  for (size_t head_dim : {size_t{64}, size_t{128}}) {
    RopeProblem p;
    p.rows = 5;
    p.heads = 40;
    p.head_dim = head_dim;
    p.Fill(seed++, false);
    ExpectBitwiseEqual(p);
  }
}

void TestRopeHostileValues() {
  for (size_t head_dim : {size_t{2}, size_t{8}, size_t{34}, size_t{64}}) {
    RopeProblem p;
    p.rows = 2;
    p.heads = 2;
    p.head_dim = head_dim;
    p.Fill(static_cast<uint32_t>(head_dim), true);
    ExpectBitwiseEqual(p);
  }
}

// cos = 1, sin = 0 leaves x as it is; cos = 0, sin = 1 maps (x1, x2) to
// (-x2, x1).
void TestRopeKnownAngles() {
  RopeProblem p;
  p.rows = 2;
  p.heads = 2;
  p.head_dim = 38;
  p.Fill(9, false);
  const size_t half = p.half();
  for (size_t c = 0; c < half; ++c) {
    p.cos[c] = 1.0f;
    p.sin[c] = 0.0f;
    p.cos[half + c] = 0.0f;
    p.sin[half + c] = 1.0f;
  }
  std::vector<float> y = p.x;
  ApplyRopeKernel(p.Args(y.data()));
  for (size_t k = 0; k < p.heads; ++k) {
    for (size_t c = 0; c < half; ++c) {
      const size_t r0 = k * p.ld_head() + c, r1 = p.ld_row() + k * p.ld_head() + c;
      EXPECT_EQ(y[r0], p.x[r0]);
      EXPECT_EQ(y[r0 + half], p.x[r0 + half]);
      EXPECT_EQ(y[r1], -p.x[r1 + half]);
      EXPECT_EQ(y[r1 + half], p.x[r1]);
    }
  }
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace rope_test
void TestRopeSizes() { rope_test::TestRopeSizes(); }
void TestRopeHostileValues() { rope_test::TestRopeHostileValues(); }
void TestRopeKnownAngles() { rope_test::TestRopeKnownAngles(); }
// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "attn/error.h"
#include "hwy/tests/hwy_gtest.h"

namespace attn {

HWY_BEFORE_TEST(RopeTest);
HWY_EXPORT_AND_TEST_P(RopeTest, TestRopeSizes);
HWY_EXPORT_AND_TEST_P(RopeTest, TestRopeHostileValues);
HWY_EXPORT_AND_TEST_P(RopeTest, TestRopeKnownAngles);

TEST(RopeDispatchTest, MatchesReferenceAndRejectsBadArguments) {
  std::vector<float> x(16, 1.5f), y(16, 1.5f), cos(4, 0.6f), sin(4, 0.8f);
  simd::RopeArgs a;
  a.x = x.data();
  a.ld_row = 8;
  a.rows = 2;
  a.heads = 1;
  a.head_dim = 8;
  a.ld_head = 8;
  a.cos = cos.data();
  a.sin = sin.data();
  a.ld_table = 0;  // every row rotated by the same angles
  simd::ApplyRope(a);
  a.x = y.data();
  simd::ApplyRopeReference(a);
  EXPECT_EQ(x, y);
  a.head_dim = 7;
  EXPECT_THROW(simd::ApplyRope(a), ShapeError);
  a.head_dim = 8;
  a.ld_head = 6;
  EXPECT_THROW(simd::ApplyRope(a), ShapeError);
  a.ld_head = 8;
  a.cos = nullptr;
  EXPECT_THROW(simd::ApplyRope(a), ShapeError);
}

}  // namespace attn
#endif  // HWY_ONCE
