// Per-target kernel of simd::KvInt8Attention; the contract is in
// simd/kv_int8.h. Included once per target by simd/kv_int8.cc and by
// tests/simd/kv_int8_test.cc.

#if defined(ATTN_SIMD_KV_INT8_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ATTN_SIMD_KV_INT8_INL_H_
#undef ATTN_SIMD_KV_INT8_INL_H_
#else
#define ATTN_SIMD_KV_INT8_INL_H_
#endif

#include <stddef.h>
#include <stdint.h>

#include "hwy/highway.h"
#include "simd/kv_int8.h"
#include "simd/softmax-inl.h"
#include "simd/softmax.h"
#include "simd/thread_scratch.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

// N int8 values at p, converted to N floats.
template <class DF>
HWY_INLINE hn::Vec<DF> LoadInt8AsFloat(DF df, const int8_t* HWY_RESTRICT p) {
  const hn::Rebind<int8_t, DF> d8;
  const hn::Rebind<int32_t, DF> di;
  return hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(d8, p)));
}

// q · k for one int8 row: per block, the dot product with the converted
// values, times the block's scale. Whole vectors inside each block (N divides
// 32 whenever N <= 32), then a scalar tail.
HWY_INLINE float KvInt8Dot(const float* HWY_RESTRICT q, const uint8_t* HWY_RESTRICT row,
                           size_t head_dim) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  const size_t blocks = simd::KvInt8Blocks(head_dim);
  const float* HWY_RESTRICT scales = reinterpret_cast<const float*>(row);
  const int8_t* HWY_RESTRICT values = reinterpret_cast<const int8_t*>(row + 4 * blocks);
  auto total = hn::Zero(df);
  float tail = 0.0f;
  for (size_t b = 0; b < blocks; ++b) {
    const size_t begin = b * simd::kKvInt8Block;
    const size_t len = head_dim - begin < simd::kKvInt8Block ? head_dim - begin : simd::kKvInt8Block;
    size_t i = 0;
    if (N <= simd::kKvInt8Block) {
      auto acc = hn::Zero(df);
      for (; i + N <= len; i += N) {
        acc = hn::MulAdd(hn::LoadU(df, q + begin + i), LoadInt8AsFloat(df, values + begin + i), acc);
      }
      total = hn::MulAdd(hn::Set(df, scales[b]), acc, total);
    }
    float partial = 0.0f;
    for (; i < len; ++i) partial += q[begin + i] * static_cast<float>(values[begin + i]);
    tail += scales[b] * partial;
  }
  return hn::GetLane(hn::SumOfLanes(df, total)) + tail;
}

// q · k for four int8 rows at once (four independent chains: the sums of one
// row would otherwise wait on each other's latency).
HWY_INLINE void KvInt8Dot4(const float* HWY_RESTRICT q, const uint8_t* HWY_RESTRICT row0,
                           size_t row_bytes, size_t head_dim, float* HWY_RESTRICT dots) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  const size_t blocks = simd::KvInt8Blocks(head_dim);
  const uint8_t* HWY_RESTRICT row1 = row0 + row_bytes;
  const uint8_t* HWY_RESTRICT row2 = row1 + row_bytes;
  const uint8_t* HWY_RESTRICT row3 = row2 + row_bytes;
  const int8_t* HWY_RESTRICT v0 = reinterpret_cast<const int8_t*>(row0 + 4 * blocks);
  const int8_t* HWY_RESTRICT v1 = reinterpret_cast<const int8_t*>(row1 + 4 * blocks);
  const int8_t* HWY_RESTRICT v2 = reinterpret_cast<const int8_t*>(row2 + 4 * blocks);
  const int8_t* HWY_RESTRICT v3 = reinterpret_cast<const int8_t*>(row3 + 4 * blocks);
  const float* HWY_RESTRICT s0 = reinterpret_cast<const float*>(row0);
  const float* HWY_RESTRICT s1 = reinterpret_cast<const float*>(row1);
  const float* HWY_RESTRICT s2 = reinterpret_cast<const float*>(row2);
  const float* HWY_RESTRICT s3 = reinterpret_cast<const float*>(row3);
  auto t0 = hn::Zero(df), t1 = hn::Zero(df), t2 = hn::Zero(df), t3 = hn::Zero(df);
  float tail0 = 0.0f, tail1 = 0.0f, tail2 = 0.0f, tail3 = 0.0f;
  for (size_t b = 0; b < blocks; ++b) {
    const size_t begin = b * simd::kKvInt8Block;
    const size_t len = head_dim - begin < simd::kKvInt8Block ? head_dim - begin : simd::kKvInt8Block;
    size_t i = begin;
    if (N <= simd::kKvInt8Block) {
      auto a0 = hn::Zero(df), a1 = hn::Zero(df), a2 = hn::Zero(df), a3 = hn::Zero(df);
      for (; i + N <= begin + len; i += N) {
        const auto qv = hn::LoadU(df, q + i);
        a0 = hn::MulAdd(qv, LoadInt8AsFloat(df, v0 + i), a0);
        a1 = hn::MulAdd(qv, LoadInt8AsFloat(df, v1 + i), a1);
        a2 = hn::MulAdd(qv, LoadInt8AsFloat(df, v2 + i), a2);
        a3 = hn::MulAdd(qv, LoadInt8AsFloat(df, v3 + i), a3);
      }
      t0 = hn::MulAdd(hn::Set(df, s0[b]), a0, t0);
      t1 = hn::MulAdd(hn::Set(df, s1[b]), a1, t1);
      t2 = hn::MulAdd(hn::Set(df, s2[b]), a2, t2);
      t3 = hn::MulAdd(hn::Set(df, s3[b]), a3, t3);
    }
    float p0 = 0.0f, p1 = 0.0f, p2 = 0.0f, p3 = 0.0f;
    for (; i < begin + len; ++i) {
      p0 += q[i] * static_cast<float>(v0[i]);
      p1 += q[i] * static_cast<float>(v1[i]);
      p2 += q[i] * static_cast<float>(v2[i]);
      p3 += q[i] * static_cast<float>(v3[i]);
    }
    tail0 += s0[b] * p0;
    tail1 += s1[b] * p1;
    tail2 += s2[b] * p2;
    tail3 += s3[b] * p3;
  }
  dots[0] = hn::GetLane(hn::SumOfLanes(df, t0)) + tail0;
  dots[1] = hn::GetLane(hn::SumOfLanes(df, t1)) + tail1;
  dots[2] = hn::GetLane(hn::SumOfLanes(df, t2)) + tail2;
  dots[3] = hn::GetLane(hn::SumOfLanes(df, t3)) + tail3;
}

// out[0, head_dim) = sum over j in [begin, end) of p[j] * v_j, the rows v_j
// `row_bytes` apart from `values`: tiles of four vectors of the output held in
// registers across all keys, then single vectors, then a scalar tail.
HWY_INLINE void KvInt8WeightedSum(const float* HWY_RESTRICT p, const uint8_t* HWY_RESTRICT rows,
                                  size_t row_bytes, size_t begin, size_t end, size_t head_dim,
                                  float* HWY_RESTRICT out) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  const size_t blocks = simd::KvInt8Blocks(head_dim);
  const size_t block = simd::kKvInt8Block;
  size_t c = 0;
  if (N <= block) {
    for (; c + 4 * N <= head_dim; c += 4 * N) {
      const size_t b0 = c / block, b1 = (c + N) / block, b2 = (c + 2 * N) / block,
                   b3 = (c + 3 * N) / block;
      auto a0 = hn::Zero(df), a1 = hn::Zero(df), a2 = hn::Zero(df), a3 = hn::Zero(df);
      for (size_t j = begin; j < end; ++j) {
        const uint8_t* row = rows + j * row_bytes;
        const float* scales = reinterpret_cast<const float*>(row);
        const int8_t* values = reinterpret_cast<const int8_t*>(row + 4 * blocks) + c;
        const float pj = p[j];
        a0 = hn::MulAdd(hn::Set(df, pj * scales[b0]), LoadInt8AsFloat(df, values), a0);
        a1 = hn::MulAdd(hn::Set(df, pj * scales[b1]), LoadInt8AsFloat(df, values + N), a1);
        a2 = hn::MulAdd(hn::Set(df, pj * scales[b2]), LoadInt8AsFloat(df, values + 2 * N), a2);
        a3 = hn::MulAdd(hn::Set(df, pj * scales[b3]), LoadInt8AsFloat(df, values + 3 * N), a3);
      }
      hn::StoreU(a0, df, out + c);
      hn::StoreU(a1, df, out + c + N);
      hn::StoreU(a2, df, out + c + 2 * N);
      hn::StoreU(a3, df, out + c + 3 * N);
    }
    for (; c + N <= head_dim; c += N) {
      const size_t b = c / block;
      auto a = hn::Zero(df);
      for (size_t j = begin; j < end; ++j) {
        const uint8_t* row = rows + j * row_bytes;
        const float scale = reinterpret_cast<const float*>(row)[b];
        const int8_t* values = reinterpret_cast<const int8_t*>(row + 4 * blocks) + c;
        a = hn::MulAdd(hn::Set(df, p[j] * scale), LoadInt8AsFloat(df, values), a);
      }
      hn::StoreU(a, df, out + c);
    }
  }
  for (; c < head_dim; ++c) {
    float sum = 0.0f;
    for (size_t j = begin; j < end; ++j) {
      const uint8_t* row = rows + j * row_bytes;
      const float scale = reinterpret_cast<const float*>(row)[c / block];
      sum += p[j] * scale * static_cast<float>(reinterpret_cast<const int8_t*>(row + 4 * blocks)[c]);
    }
    out[c] = sum;
  }
}

// simd::KvInt8Attention for this target, without argument checks.
inline void KvInt8AttentionKernel(const simd::KvInt8AttentionArgs& a) {
  const size_t rows = a.tokens * a.group, hd = a.head_dim;
  if (rows == 0 || hd == 0) return;
  const size_t row_bytes = simd::KvInt8RowBytes(hd);
  float* const scores =
      simd::detail::ThreadScratch(simd::detail::ScratchSlot::kFlashAttention, rows * a.num_keys);
  // Scores and softmax of every query first: out may be q.
  for (size_t t = 0; t < a.tokens; ++t) {
    size_t begin, end;
    simd::KvInt8VisibleKeys(a, t, &begin, &end);
    for (size_t g = 0; g < a.group; ++g) {
      const float* q = a.q + t * a.ldq + g * hd;
      float* s = scores + (t * a.group + g) * a.num_keys;
      size_t j = begin;
      for (; j + 4 <= end; j += 4) KvInt8Dot4(q, a.keys + j * row_bytes, row_bytes, hd, s + j);
      for (; j < end; ++j) s[j] = KvInt8Dot(q, a.keys + j * row_bytes, hd);
      simd::SoftmaxArgs softmax;
      softmax.in = softmax.out = s;
      softmax.ld_in = softmax.ld_out = a.num_keys;
      softmax.rows = 1;
      softmax.cols = end;
      softmax.scale = a.scale;
      softmax.causal = true;
      softmax.causal_offset = end - 1;
      softmax.window = end - begin;
      MaskedSoftmaxKernel(softmax);  // this target's
    }
  }
  for (size_t t = 0; t < a.tokens; ++t) {
    size_t begin, end;
    simd::KvInt8VisibleKeys(a, t, &begin, &end);
    for (size_t g = 0; g < a.group; ++g) {
      KvInt8WeightedSum(scores + (t * a.group + g) * a.num_keys, a.values, row_bytes, begin, end,
                        hd, a.out + t * a.ldo + g * hd);
    }
  }
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#endif  // ATTN_SIMD_KV_INT8_INL_H_
