// Per-target RoPE kernel; the contract is in simd/rope.h. Included once per
// target by simd/rope.cc and by tests/simd/rope_test.cc.

#if defined(ATTN_SIMD_ROPE_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ATTN_SIMD_ROPE_INL_H_
#undef ATTN_SIMD_ROPE_INL_H_
#else
#define ATTN_SIMD_ROPE_INL_H_
#endif

#include <stddef.h>

#include "hwy/highway.h"
#include "simd/rope.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

// simd::ApplyRope for this target, without argument checks. Whole vectors
// of the half-head, then a scalar tail with the same two roundings.
inline void ApplyRopeKernel(const simd::RopeArgs& a) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  const size_t half = a.head_dim / 2;
  for (size_t r = 0; r < a.rows; ++r) {
    const float* HWY_RESTRICT cos = a.cos + r * a.ld_table;
    const float* HWY_RESTRICT sin = a.sin + r * a.ld_table;
    for (size_t k = 0; k < a.heads; ++k) {
      float* HWY_RESTRICT x1 = a.x + r * a.ld_row + k * a.ld_head;
      float* HWY_RESTRICT x2 = x1 + half;
      size_t c = 0;
      for (; c + N <= half; c += N) {
        const auto v1 = hn::LoadU(d, x1 + c), v2 = hn::LoadU(d, x2 + c);
        const auto vc = hn::LoadU(d, cos + c), vs = hn::LoadU(d, sin + c);
        hn::StoreU(hn::Sub(hn::Mul(v1, vc), hn::Mul(v2, vs)), d, x1 + c);
        hn::StoreU(hn::Add(hn::Mul(v2, vc), hn::Mul(v1, vs)), d, x2 + c);
      }
      for (; c < half; ++c) {
        const float v1 = x1[c], v2 = x2[c];
        const float p1 = v1 * cos[c], p2 = v2 * sin[c], p3 = v2 * cos[c], p4 = v1 * sin[c];
        x1[c] = p1 - p2;
        x2[c] = p3 + p4;
      }
    }
  }
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#endif  // ATTN_SIMD_ROPE_INL_H_
