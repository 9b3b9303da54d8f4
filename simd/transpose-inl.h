// The 4x4 transpose of 128-bit vectors that the packing of both kernels uses
// (per target): op(B) panels in simd/matmul_tile-inl.h, K blocks and query
// tiles in simd/flash_packing-inl.h. Not defined on SCALAR, whose callers
// take their scalar path instead.

#if defined(ATTN_SIMD_TRANSPOSE_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ATTN_SIMD_TRANSPOSE_INL_H_
#undef ATTN_SIMD_TRANSPOSE_INL_H_
#else
#define ATTN_SIMD_TRANSPOSE_INL_H_
#endif

#include <stddef.h>

#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET != HWY_SCALAR
// Stores the transpose of the 4x4 block whose rows are r0..r3:
// dst[i * stride + k] = r_k[i] for i, k < 4. dst needs no alignment. Pure
// data movement (four 32-bit and four 64-bit interleaves): bits unchanged.
template <class D4, class V4 = hn::Vec<D4>>
HWY_INLINE void StoreTransposed4x4(D4 d4, V4 r0, V4 r1, V4 r2, V4 r3, float* HWY_RESTRICT dst,
                                   size_t stride) {
  const hn::Repartition<double, D4> d2;
  // t0 = r0[0] r1[0] r0[1] r1[1], t1 = r2[0] r3[0] r2[1] r3[1], t2 and t3
  // the same of the upper halves; then 64-bit interleaves gather the columns.
  const auto t0 = hn::BitCast(d2, hn::InterleaveLower(d4, r0, r1));
  const auto t1 = hn::BitCast(d2, hn::InterleaveLower(d4, r2, r3));
  const auto t2 = hn::BitCast(d2, hn::InterleaveUpper(d4, r0, r1));
  const auto t3 = hn::BitCast(d2, hn::InterleaveUpper(d4, r2, r3));
  hn::StoreU(hn::BitCast(d4, hn::InterleaveLower(d2, t0, t1)), d4, dst);
  hn::StoreU(hn::BitCast(d4, hn::InterleaveUpper(d2, t0, t1)), d4, dst + stride);
  hn::StoreU(hn::BitCast(d4, hn::InterleaveLower(d2, t2, t3)), d4, dst + 2 * stride);
  hn::StoreU(hn::BitCast(d4, hn::InterleaveUpper(d2, t2, t3)), d4, dst + 3 * stride);
}
#endif

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#endif  // ATTN_SIMD_TRANSPOSE_INL_H_
