// The decode kernel's dot products of query rows with key rows (per
// target): four keys at a time for one query row (DecodeDot4) or four
// (DecodeDot4x4), one key (DecodeDot1), and the sums of lanes they end with.
// Included by simd/decode_attention-inl.h.

#if defined(ATTN_SIMD_DECODE_DOT_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ATTN_SIMD_DECODE_DOT_INL_H_
#undef ATTN_SIMD_DECODE_DOT_INL_H_
#else
#define ATTN_SIMD_DECODE_DOT_INL_H_
#endif

#include <stddef.h>

#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

#if !HWY_HAVE_SCALABLE && HWY_TARGET != HWY_SCALAR
// The sum of v's 128-bit blocks, as one block (fixed-size vectors).
template <class D>
HWY_INLINE hn::Vec<hn::Full128<float>> DecodeSumOfBlocks(D d, hn::Vec<D> v) {
  if constexpr (hn::MaxLanes(D()) > 4) {
    const hn::Half<D> dh;
    return DecodeSumOfBlocks(dh, hn::Add(hn::LowerHalf(dh, v), hn::UpperHalf(dh, v)));
  } else {
    (void)d;
    return v;
  }
}
#endif

// s[0..3] = the sums of lanes of a0..a3. With fixed-size vectors of whole
// 128-bit blocks: a 4x4 transpose-and-add within each block (two rounds of
// interleaving), then the blocks added: about a third of the instructions of
// four SumOfLanes. Elsewhere (SVE, SCALAR), SumOfLanes each.
template <class D, class V>
HWY_INLINE void DecodeSumOfLanes4(D d, V a0, V a1, V a2, V a3, float* HWY_RESTRICT s) {
#if !HWY_HAVE_SCALABLE && HWY_TARGET != HWY_SCALAR
  const auto s01 = hn::Add(hn::InterleaveLower(d, a0, a1), hn::InterleaveUpper(d, a0, a1));
  const auto s23 = hn::Add(hn::InterleaveLower(d, a2, a3), hn::InterleaveUpper(d, a2, a3));
  const hn::Repartition<uint64_t, D> d64;
  const auto w01 = hn::BitCast(d64, s01), w23 = hn::BitCast(d64, s23);
  const auto t = hn::Add(hn::BitCast(d, hn::InterleaveLower(d64, w01, w23)),
                         hn::BitCast(d, hn::InterleaveUpper(d64, w01, w23)));
  hn::StoreU(DecodeSumOfBlocks(d, t), hn::Full128<float>(), s);
#else
  s[0] = hn::GetLane(hn::SumOfLanes(d, a0));
  s[1] = hn::GetLane(hn::SumOfLanes(d, a1));
  s[2] = hn::GetLane(hn::SumOfLanes(d, a2));
  s[3] = hn::GetLane(hn::SumOfLanes(d, a3));
#endif
}

// s[0..3] = q · k_j for the four rows k0, k0 + ldk, ...: four independent
// chains over whole vectors, their sums of lanes, plus a scalar tail each
// (when head_dim is not a multiple of the vector length).
HWY_INLINE void DecodeDot4(const float* HWY_RESTRICT q, const float* HWY_RESTRICT k0, size_t ldk,
                           size_t head_dim, float* HWY_RESTRICT s) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  const float* HWY_RESTRICT k1 = k0 + ldk;
  const float* HWY_RESTRICT k2 = k1 + ldk;
  const float* HWY_RESTRICT k3 = k2 + ldk;
  auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
  size_t i = 0;
  for (; i + N <= head_dim; i += N) {
    const auto qv = hn::LoadU(d, q + i);
    a0 = hn::MulAdd(qv, hn::LoadU(d, k0 + i), a0);
    a1 = hn::MulAdd(qv, hn::LoadU(d, k1 + i), a1);
    a2 = hn::MulAdd(qv, hn::LoadU(d, k2 + i), a2);
    a3 = hn::MulAdd(qv, hn::LoadU(d, k3 + i), a3);
  }
  DecodeSumOfLanes4(d, a0, a1, a2, a3, s);
  if (i == head_dim) return;
  float t0 = 0.0f, t1 = 0.0f, t2 = 0.0f, t3 = 0.0f;
  for (; i < head_dim; ++i) {
    t0 += q[i] * k0[i];
    t1 += q[i] * k1[i];
    t2 += q[i] * k2[i];
    t3 += q[i] * k3[i];
  }
  s[0] += t0;
  s[1] += t1;
  s[2] += t2;
  s[3] += t3;
}

// s[r][j + x] = q_r · k_x for four query rows q_r = q + r * head_dim (rows of
// one position) and the four keys k_x = k0 + x * ldk: the same chains, sums
// and tails as DecodeDot4 (bitwise the same scores), with each K vector loaded
// once for the four rows. 16 accumulators: targets with 32 registers.
HWY_INLINE void DecodeDot4x4(const float* HWY_RESTRICT q, const float* HWY_RESTRICT k0, size_t ldk,
                             size_t head_dim, float* const* s, size_t j) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  const float* HWY_RESTRICT k1 = k0 + ldk;
  const float* HWY_RESTRICT k2 = k1 + ldk;
  const float* HWY_RESTRICT k3 = k2 + ldk;
  const float* HWY_RESTRICT q0 = q;
  const float* HWY_RESTRICT q1 = q0 + head_dim;
  const float* HWY_RESTRICT q2 = q1 + head_dim;
  const float* HWY_RESTRICT q3 = q2 + head_dim;
  auto a00 = hn::Zero(d), a01 = hn::Zero(d), a02 = hn::Zero(d), a03 = hn::Zero(d);
  auto a10 = hn::Zero(d), a11 = hn::Zero(d), a12 = hn::Zero(d), a13 = hn::Zero(d);
  auto a20 = hn::Zero(d), a21 = hn::Zero(d), a22 = hn::Zero(d), a23 = hn::Zero(d);
  auto a30 = hn::Zero(d), a31 = hn::Zero(d), a32 = hn::Zero(d), a33 = hn::Zero(d);
  size_t i = 0;
  for (; i + N <= head_dim; i += N) {
    const auto v0 = hn::LoadU(d, k0 + i), v1 = hn::LoadU(d, k1 + i);
    const auto v2 = hn::LoadU(d, k2 + i), v3 = hn::LoadU(d, k3 + i);
    const auto w0 = hn::LoadU(d, q0 + i);
    a00 = hn::MulAdd(w0, v0, a00);
    a01 = hn::MulAdd(w0, v1, a01);
    a02 = hn::MulAdd(w0, v2, a02);
    a03 = hn::MulAdd(w0, v3, a03);
    const auto w1 = hn::LoadU(d, q1 + i);
    a10 = hn::MulAdd(w1, v0, a10);
    a11 = hn::MulAdd(w1, v1, a11);
    a12 = hn::MulAdd(w1, v2, a12);
    a13 = hn::MulAdd(w1, v3, a13);
    const auto w2 = hn::LoadU(d, q2 + i);
    a20 = hn::MulAdd(w2, v0, a20);
    a21 = hn::MulAdd(w2, v1, a21);
    a22 = hn::MulAdd(w2, v2, a22);
    a23 = hn::MulAdd(w2, v3, a23);
    const auto w3 = hn::LoadU(d, q3 + i);
    a30 = hn::MulAdd(w3, v0, a30);
    a31 = hn::MulAdd(w3, v1, a31);
    a32 = hn::MulAdd(w3, v2, a32);
    a33 = hn::MulAdd(w3, v3, a33);
  }
  DecodeSumOfLanes4(d, a00, a01, a02, a03, s[0] + j);
  DecodeSumOfLanes4(d, a10, a11, a12, a13, s[1] + j);
  DecodeSumOfLanes4(d, a20, a21, a22, a23, s[2] + j);
  DecodeSumOfLanes4(d, a30, a31, a32, a33, s[3] + j);
  if (i == head_dim) return;
  const float* HWY_RESTRICT k[4] = {k0, k1, k2, k3};
  const float* HWY_RESTRICT qr[4] = {q0, q1, q2, q3};
  for (size_t r = 0; r < 4; ++r) {
    float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (size_t c = i; c < head_dim; ++c) {
      for (size_t x = 0; x < 4; ++x) t[x] += qr[r][c] * k[x][c];
    }
    for (size_t x = 0; x < 4; ++x) s[r][j + x] += t[x];
  }
}

HWY_INLINE float DecodeDot1(const float* HWY_RESTRICT q, const float* HWY_RESTRICT k,
                            size_t head_dim) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  auto a = hn::Zero(d);
  size_t i = 0;
  for (; i + N <= head_dim; i += N) a = hn::MulAdd(hn::LoadU(d, q + i), hn::LoadU(d, k + i), a);
  float t = 0.0f;
  for (; i < head_dim; ++i) t += q[i] * k[i];
  return hn::GetLane(hn::SumOfLanes(d, a)) + t;
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#endif  // ATTN_SIMD_DECODE_DOT_INL_H_
