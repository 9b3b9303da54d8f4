// Per-target kernel of simd::DecodeAttention; the contract is in
// simd/decode_attention.h (and simd/flash_attention.h). Included once per
// target by simd/decode_attention.cc and by tests/simd/decode_attention_test.cc.

#if defined(ATTN_SIMD_DECODE_ATTENTION_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ATTN_SIMD_DECODE_ATTENTION_INL_H_
#undef ATTN_SIMD_DECODE_ATTENTION_INL_H_
#else
#define ATTN_SIMD_DECODE_ATTENTION_INL_H_
#endif

#include <stddef.h>

#include <algorithm>
#include <limits>

#include "hwy/highway.h"
#include "simd/flash_attention.h"
#include "simd/softmax-inl.h"
#include "simd/softmax.h"
#include "simd/thread_scratch.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

// s[0..3] = q · k_j for the four rows k0, k0 + ldk, ...: four independent
// chains over whole vectors, a scalar tail, then a sum of lanes each.
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
  float t0 = 0.0f, t1 = 0.0f, t2 = 0.0f, t3 = 0.0f;
  for (; i < head_dim; ++i) {
    t0 += q[i] * k0[i];
    t1 += q[i] * k1[i];
    t2 += q[i] * k2[i];
    t3 += q[i] * k3[i];
  }
  s[0] = hn::GetLane(hn::SumOfLanes(d, a0)) + t0;
  s[1] = hn::GetLane(hn::SumOfLanes(d, a1)) + t1;
  s[2] = hn::GetLane(hn::SumOfLanes(d, a2)) + t2;
  s[3] = hn::GetLane(hn::SumOfLanes(d, a3)) + t3;
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

// out_r[0, head_dim) = sum over j in [begin, end) of p_r[j] * v_j for R <= 4
// query rows of one position (p_r = p0 + r * ldp, out_r = OutRow(r0 + r)):
// R = 1 keeps four vectors of columns in registers; R > 1 one vector of
// columns for the R rows, each V row loaded once for them.
template <size_t R>
HWY_INLINE void DecodeWeightedValues(const float* HWY_RESTRICT p0, size_t ldp,
                                     const float* HWY_RESTRICT v, size_t ldv, size_t begin,
                                     size_t end, size_t head_dim, float* const* out) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  const float* HWY_RESTRICT p1 = p0 + ldp;
  const float* HWY_RESTRICT p2 = p1 + ldp;
  const float* HWY_RESTRICT p3 = p2 + ldp;
  size_t c = 0;
  if (R == 1) {
    for (; c + 4 * N <= head_dim; c += 4 * N) {
      auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
      for (size_t j = begin; j < end; ++j) {
        const float* row = v + j * ldv + c;
        const auto pj = hn::Set(d, p0[j]);
        a0 = hn::MulAdd(pj, hn::LoadU(d, row), a0);
        a1 = hn::MulAdd(pj, hn::LoadU(d, row + N), a1);
        a2 = hn::MulAdd(pj, hn::LoadU(d, row + 2 * N), a2);
        a3 = hn::MulAdd(pj, hn::LoadU(d, row + 3 * N), a3);
      }
      hn::StoreU(a0, d, out[0] + c);
      hn::StoreU(a1, d, out[0] + c + N);
      hn::StoreU(a2, d, out[0] + c + 2 * N);
      hn::StoreU(a3, d, out[0] + c + 3 * N);
    }
  }
  for (; c + N <= head_dim; c += N) {
    auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
    for (size_t j = begin; j < end; ++j) {
      const auto row = hn::LoadU(d, v + j * ldv + c);
      a0 = hn::MulAdd(hn::Set(d, p0[j]), row, a0);
      if (R > 1) a1 = hn::MulAdd(hn::Set(d, p1[j]), row, a1);
      if (R > 2) a2 = hn::MulAdd(hn::Set(d, p2[j]), row, a2);
      if (R > 3) a3 = hn::MulAdd(hn::Set(d, p3[j]), row, a3);
    }
    hn::StoreU(a0, d, out[0] + c);
    if (R > 1) hn::StoreU(a1, d, out[1] + c);
    if (R > 2) hn::StoreU(a2, d, out[2] + c);
    if (R > 3) hn::StoreU(a3, d, out[3] + c);
  }
  for (; c < head_dim; ++c) {
    for (size_t r = 0; r < R; ++r) {
      const float* p = p0 + r * ldp;
      float sum = 0.0f;
      for (size_t j = begin; j < end; ++j) sum += p[j] * v[j * ldv + c];
      out[r][c] = sum;
    }
  }
}

// simd::DecodeAttention for this target, without argument checks.
inline void DecodeAttentionKernel(const simd::FlashAttentionArgs& a) {
  const size_t rows = a.num_queries, hd = a.head_dim;
  if (rows == 0 || hd == 0) return;
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  const size_t lds = a.num_keys;
  // Scores (rows x num_keys), then the scaled queries (rows x head_dim).
  float* const scores =
      simd::detail::ThreadScratch(simd::detail::ScratchSlot::kFlashAttention, rows * (lds + hd));
  float* const queries = scores + rows * lds;
  for (size_t i = 0; i < rows; ++i) {
    const float* q = simd::QueryRow(a, i);
    float* dst = queries + i * hd;
    size_t c = 0;
    for (; c + N <= hd; c += N) {
      hn::StoreU(hn::Mul(hn::Set(d, a.scale), hn::LoadU(d, q + c)), d, dst + c);
    }
    for (; c < hd; ++c) dst[c] = a.scale * q[c];
  }
  for (size_t i = 0; i < rows; ++i) {
    const size_t begin = simd::FirstVisibleKey(a, i), end = simd::VisibleKeys(a, i);
    const float* q = queries + i * hd;
    float* s = scores + i * lds;
    size_t j = begin;
    for (; j + 4 <= end; j += 4) DecodeDot4(q, a.k + j * a.ldk, a.ldk, hd, s + j);
    for (; j < end; ++j) s[j] = DecodeDot1(q, a.k + j * a.ldk, hd);
    if (begin == end) continue;
    simd::SoftmaxArgs softmax;
    softmax.in = softmax.out = s;
    softmax.ld_in = softmax.ld_out = lds;
    softmax.rows = 1;
    softmax.cols = end;
    softmax.causal = true;
    softmax.causal_offset = end - 1;
    softmax.window = end - begin;
    MaskedSoftmaxKernel(softmax);  // this target's
  }
  // Rows of one position see the same keys: up to four share each V row.
  const size_t group = a.group_size > 1 ? a.group_size : 1;
  for (size_t i = 0; i < rows;) {
    const size_t begin = simd::FirstVisibleKey(a, i), end = simd::VisibleKeys(a, i);
    const size_t left_in_position = group - i % group;
    const size_t r = std::min<size_t>({size_t{4}, left_in_position, rows - i});
    float* out[4];
    for (size_t x = 0; x < r; ++x) out[x] = simd::OutRow(a, i + x);
    if (begin == end) {  // no visible key: NaN, the softmax of nothing
      for (size_t x = 0; x < r; ++x) {
        std::fill(out[x], out[x] + hd, std::numeric_limits<float>::quiet_NaN());
      }
    } else if (r == 4) {
      DecodeWeightedValues<4>(scores + i * lds, lds, a.v, a.ldv, begin, end, hd, out);
    } else {
      for (size_t x = 0; x < r; ++x) {
        DecodeWeightedValues<1>(scores + (i + x) * lds, lds, a.v, a.ldv, begin, end, hd, out + x);
      }
    }
    i += r;
  }
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#endif  // ATTN_SIMD_DECODE_ATTENTION_INL_H_
