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

#include <algorithm>
#include <limits>

#include "hwy/highway.h"
#include "simd/kv_int8.h"
#include "simd/softmax-inl.h"
#include "simd/softmax.h"
#include "simd/thread_scratch.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

// Lanes(d) int8 values at p, converted to floats.
template <class DF>
HWY_INLINE hn::Vec<DF> LoadInt8AsFloat(DF df, const int8_t* HWY_RESTRICT p) {
  const hn::Rebind<int8_t, DF> d8;
  const hn::Rebind<int32_t, DF> di;
  return hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(d8, p)));
}

// Vectors across the 16 keys of a tile: at most 16 lanes.
using TileTag = hn::CappedTag<float, simd::kKvInt8TileTokens>;

// The scores of R <= 4 quantized queries against the 16 keys of one tile,
// unscaled: s_r[lane] for lane = 0..15. Query r: its int8 values as floats
// at qf + r * qf_stride (4 * Q, zeros past head_dim), its block scales at
// qs + r * qs_stride. Each quad of the tile is loaded once as 32-bit lanes
// (one key's 4 dimensions each), its 4 bytes sign-extended by shifts and
// converted; the sums of a block are integers below 2^24, exact in any
// order; each block's sum is then multiplied by the 16 keys' block scales
// times the query's.
template <size_t R>
HWY_INLINE void TileScores(const float* HWY_RESTRICT qf, size_t qf_stride,
                           const float* HWY_RESTRICT qs, size_t qs_stride, size_t head_dim,
                           const uint8_t* HWY_RESTRICT tile, float* HWY_RESTRICT s0, size_t lds) {
  const TileTag d;
  const hn::Rebind<int32_t, TileTag> di;
  const size_t N = hn::Lanes(d);
  const size_t blocks = simd::KvInt8Blocks(head_dim), quads = simd::KvInt8Quads(head_dim);
  constexpr size_t kTile = simd::kKvInt8TileTokens;
  constexpr size_t kQuadsPerBlock = simd::kKvInt8Block / 4;
  const float* HWY_RESTRICT scales = reinterpret_cast<const float*>(tile);
  const int32_t* HWY_RESTRICT values = reinterpret_cast<const int32_t*>(tile + 4 * blocks * kTile);
  for (size_t lane = 0; lane < kTile; lane += N) {
    auto t0 = hn::Zero(d), t1 = hn::Zero(d), t2 = hn::Zero(d), t3 = hn::Zero(d);
    for (size_t b = 0; b < blocks; ++b) {
      const size_t end = HWY_MIN(quads, (b + 1) * kQuadsPerBlock);
      auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
      for (size_t c = b * kQuadsPerBlock; c < end; ++c) {
        const auto w = hn::LoadU(di, values + c * kTile + lane);
        const auto k0 = hn::ConvertTo(d, hn::ShiftRight<24>(hn::ShiftLeft<24>(w)));
        const auto k1 = hn::ConvertTo(d, hn::ShiftRight<24>(hn::ShiftLeft<16>(w)));
        const auto k2 = hn::ConvertTo(d, hn::ShiftRight<24>(hn::ShiftLeft<8>(w)));
        const auto k3 = hn::ConvertTo(d, hn::ShiftRight<24>(w));
        const float* HWY_RESTRICT q = qf + 4 * c;
        if (R == 1) {  // one query: four chains, not one
          a0 = hn::MulAdd(hn::Set(d, q[0]), k0, a0);
          a1 = hn::MulAdd(hn::Set(d, q[1]), k1, a1);
          a2 = hn::MulAdd(hn::Set(d, q[2]), k2, a2);
          a3 = hn::MulAdd(hn::Set(d, q[3]), k3, a3);
          continue;
        }
        a0 = hn::MulAdd(hn::Set(d, q[0]), k0, a0);
        a0 = hn::MulAdd(hn::Set(d, q[1]), k1, a0);
        a0 = hn::MulAdd(hn::Set(d, q[2]), k2, a0);
        a0 = hn::MulAdd(hn::Set(d, q[3]), k3, a0);
        q += qf_stride;
        a1 = hn::MulAdd(hn::Set(d, q[0]), k0, a1);
        a1 = hn::MulAdd(hn::Set(d, q[1]), k1, a1);
        a1 = hn::MulAdd(hn::Set(d, q[2]), k2, a1);
        a1 = hn::MulAdd(hn::Set(d, q[3]), k3, a1);
        if (R > 2) {
          q += qf_stride;
          a2 = hn::MulAdd(hn::Set(d, q[0]), k0, a2);
          a2 = hn::MulAdd(hn::Set(d, q[1]), k1, a2);
          a2 = hn::MulAdd(hn::Set(d, q[2]), k2, a2);
          a2 = hn::MulAdd(hn::Set(d, q[3]), k3, a2);
        }
        if (R > 3) {
          q += qf_stride;
          a3 = hn::MulAdd(hn::Set(d, q[0]), k0, a3);
          a3 = hn::MulAdd(hn::Set(d, q[1]), k1, a3);
          a3 = hn::MulAdd(hn::Set(d, q[2]), k2, a3);
          a3 = hn::MulAdd(hn::Set(d, q[3]), k3, a3);
        }
      }
      if (R == 1) a0 = hn::Add(hn::Add(a0, a1), hn::Add(a2, a3));
      const auto kscale = hn::LoadU(d, scales + b * kTile + lane);
      t0 = hn::MulAdd(a0, hn::Mul(kscale, hn::Set(d, qs[b])), t0);
      if (R > 1) t1 = hn::MulAdd(a1, hn::Mul(kscale, hn::Set(d, qs[qs_stride + b])), t1);
      if (R > 2) t2 = hn::MulAdd(a2, hn::Mul(kscale, hn::Set(d, qs[2 * qs_stride + b])), t2);
      if (R > 3) t3 = hn::MulAdd(a3, hn::Mul(kscale, hn::Set(d, qs[3 * qs_stride + b])), t3);
    }
    hn::StoreU(t0, d, s0 + lane);
    if (R > 1) hn::StoreU(t1, d, s0 + lds + lane);
    if (R > 2) hn::StoreU(t2, d, s0 + 2 * lds + lane);
    if (R > 3) hn::StoreU(t3, d, s0 + 3 * lds + lane);
  }
}

// The unscaled scores of `rows` (1..4) quantized queries against key tiles
// [tile_begin, tile_end), as simd::detail::KvInt8ScoresFn; qf: the queries'
// int8 values as floats, 4 * Q per query.
inline void TileRangeScores(const uint8_t* queries, const float* qf, size_t rows, size_t head_dim,
                            const uint8_t* keys, size_t tile_begin, size_t tile_end, float* scores,
                            size_t lds) {
  const size_t tile_bytes = simd::KvInt8KeyTileBytes(head_dim);
  const size_t qf_stride = 4 * simd::KvInt8Quads(head_dim);
  const size_t qs_stride = simd::KvInt8QueryBytes(head_dim) / 4;
  const float* qs = reinterpret_cast<const float*>(queries);
  constexpr size_t kTile = simd::kKvInt8TileTokens;
  for (size_t tile = tile_begin; tile < tile_end; ++tile) {
    const uint8_t* k = keys + tile * tile_bytes;
    float* s = scores + tile * kTile;
    if (rows == 4) TileScores<4>(qf, qf_stride, qs, qs_stride, head_dim, k, s, lds);
    if (rows == 3) TileScores<3>(qf, qf_stride, qs, qs_stride, head_dim, k, s, lds);
    if (rows == 2) TileScores<2>(qf, qf_stride, qs, qs_stride, head_dim, k, s, lds);
    if (rows == 1) TileScores<1>(qf, qf_stride, qs, qs_stride, head_dim, k, s, lds);
  }
}

// out_r[0, head_dim) = sum over j in [begin, end) of p_r[j] * v_j for R <= 4
// queries (p_r = p0 + r * ldp, out_r = out0 + r * head_dim), the value rows
// row_bytes apart: per row and vector of columns, its int8 values converted
// and scaled once for the R queries. R = 1 keeps four vectors of columns in
// registers (independent chains); a scalar tail takes the last columns.
template <size_t R>
HWY_INLINE void WeightedValues(const float* HWY_RESTRICT p0, size_t ldp,
                               const uint8_t* HWY_RESTRICT rows, size_t row_bytes, size_t begin,
                               size_t end, size_t head_dim, float* HWY_RESTRICT out0) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  const size_t blocks = simd::KvInt8Blocks(head_dim);
  const size_t block = simd::kKvInt8Block;
  const float* HWY_RESTRICT p1 = p0 + ldp;
  const float* HWY_RESTRICT p2 = p1 + ldp;
  const float* HWY_RESTRICT p3 = p2 + ldp;
  size_t c = 0;
  if (N <= block) {
    if (R == 1) {
      for (; c + 4 * N <= head_dim; c += 4 * N) {
        const size_t b0 = c / block, b1 = (c + N) / block, b2 = (c + 2 * N) / block,
                     b3 = (c + 3 * N) / block;
        auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
        if (b0 == b3) {  // N <= 8: the four vectors in one block, one weight
          for (size_t j = begin; j < end; ++j) {
            const uint8_t* row = rows + j * row_bytes;
            const int8_t* values = reinterpret_cast<const int8_t*>(row + 4 * blocks) + c;
            const auto w = hn::Set(d, p0[j] * reinterpret_cast<const float*>(row)[b0]);
            a0 = hn::MulAdd(w, LoadInt8AsFloat(d, values), a0);
            a1 = hn::MulAdd(w, LoadInt8AsFloat(d, values + N), a1);
            a2 = hn::MulAdd(w, LoadInt8AsFloat(d, values + 2 * N), a2);
            a3 = hn::MulAdd(w, LoadInt8AsFloat(d, values + 3 * N), a3);
          }
        } else if (b0 == b1 && b2 == b3) {  // N = 16: two blocks, two weights
          for (size_t j = begin; j < end; ++j) {
            const uint8_t* row = rows + j * row_bytes;
            const float* scales = reinterpret_cast<const float*>(row);
            const int8_t* values = reinterpret_cast<const int8_t*>(row + 4 * blocks) + c;
            const auto w01 = hn::Set(d, p0[j] * scales[b0]);
            const auto w23 = hn::Set(d, p0[j] * scales[b2]);
            a0 = hn::MulAdd(w01, LoadInt8AsFloat(d, values), a0);
            a1 = hn::MulAdd(w01, LoadInt8AsFloat(d, values + N), a1);
            a2 = hn::MulAdd(w23, LoadInt8AsFloat(d, values + 2 * N), a2);
            a3 = hn::MulAdd(w23, LoadInt8AsFloat(d, values + 3 * N), a3);
          }
        } else {
          for (size_t j = begin; j < end; ++j) {
            const uint8_t* row = rows + j * row_bytes;
            const float* scales = reinterpret_cast<const float*>(row);
            const int8_t* values = reinterpret_cast<const int8_t*>(row + 4 * blocks) + c;
            const float pj = p0[j];
            a0 = hn::MulAdd(hn::Set(d, pj * scales[b0]), LoadInt8AsFloat(d, values), a0);
            a1 = hn::MulAdd(hn::Set(d, pj * scales[b1]), LoadInt8AsFloat(d, values + N), a1);
            a2 = hn::MulAdd(hn::Set(d, pj * scales[b2]), LoadInt8AsFloat(d, values + 2 * N), a2);
            a3 = hn::MulAdd(hn::Set(d, pj * scales[b3]), LoadInt8AsFloat(d, values + 3 * N), a3);
          }
        }
        hn::StoreU(a0, d, out0 + c);
        hn::StoreU(a1, d, out0 + c + N);
        hn::StoreU(a2, d, out0 + c + 2 * N);
        hn::StoreU(a3, d, out0 + c + 3 * N);
      }
    }
    for (; c + N <= head_dim; c += N) {
      const size_t b = c / block;
      auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
      for (size_t j = begin; j < end; ++j) {
        const uint8_t* row = rows + j * row_bytes;
        const float scale = reinterpret_cast<const float*>(row)[b];
        const auto v =
            hn::Mul(LoadInt8AsFloat(d, reinterpret_cast<const int8_t*>(row + 4 * blocks) + c),
                    hn::Set(d, scale));
        a0 = hn::MulAdd(hn::Set(d, p0[j]), v, a0);
        if (R > 1) a1 = hn::MulAdd(hn::Set(d, p1[j]), v, a1);
        if (R > 2) a2 = hn::MulAdd(hn::Set(d, p2[j]), v, a2);
        if (R > 3) a3 = hn::MulAdd(hn::Set(d, p3[j]), v, a3);
      }
      hn::StoreU(a0, d, out0 + c);
      if (R > 1) hn::StoreU(a1, d, out0 + head_dim + c);
      if (R > 2) hn::StoreU(a2, d, out0 + 2 * head_dim + c);
      if (R > 3) hn::StoreU(a3, d, out0 + 3 * head_dim + c);
    }
  }
  for (; c < head_dim; ++c) {
    for (size_t r = 0; r < R; ++r) {
      const float* p = p0 + r * ldp;
      float sum = 0.0f;
      for (size_t j = begin; j < end; ++j) {
        const uint8_t* row = rows + j * row_bytes;
        const float scale = reinterpret_cast<const float*>(row)[c / block];
        sum += p[j] *
               (scale * static_cast<float>(reinterpret_cast<const int8_t*>(row + 4 * blocks)[c]));
      }
      out0[r * head_dim + c] = sum;
    }
  }
}

// simd::KvInt8Attention for this target, without argument checks; the
// scores by `vnni_scores` where given (simd::detail::KvInt8ScoresVnni),
// else by this target's TileScores.
inline void KvInt8AttentionKernel(const simd::KvInt8AttentionArgs& a,
                                  simd::detail::KvInt8ScoresFn vnni_scores = nullptr) {
  const size_t rows = a.tokens * a.group, hd = a.head_dim;
  if (rows == 0 || hd == 0) return;
  constexpr size_t kTile = simd::kKvInt8TileTokens;
  const size_t row_bytes = simd::KvInt8RowBytes(hd);
  const size_t lds = (a.num_keys + kTile - 1) / kTile * kTile;
  const size_t qbytes = simd::KvInt8QueryBytes(hd), qf_stride = 4 * simd::KvInt8Quads(hd);
  // [scores: rows x lds][quantized queries: rows x qbytes][their values as
  // floats: 4 x qf_stride]
  float* const scores = simd::detail::ThreadScratch(simd::detail::ScratchSlot::kFlashAttention,
                                                    rows * (lds + qbytes / 4) + 4 * qf_stride);
  uint8_t* const queries = reinterpret_cast<uint8_t*>(scores + rows * lds);
  float* const qf = scores + rows * (lds + qbytes / 4);
  // Every query is quantized (and its scores computed) before any output is
  // written: out may be q.
  for (size_t t = 0; t < a.tokens; ++t) {
    for (size_t g = 0; g < a.group; ++g) {
      simd::QuantizeKvQuery(a.q + t * a.ldq + g * hd, hd, queries + (t * a.group + g) * qbytes);
    }
  }
  // The query heads of one token see the same keys: up to four at a time
  // share each tile.
  for (size_t t = 0; t < a.tokens; ++t) {
    size_t begin, end;
    simd::KvInt8VisibleKeys(a, t, &begin, &end);
    const size_t tile_begin = begin / kTile, tile_end = (end + kTile - 1) / kTile;
    for (size_t g = 0; g < a.group; g += 4) {
      const size_t r = HWY_MIN(size_t{4}, a.group - g);
      const uint8_t* q = queries + (t * a.group + g) * qbytes;
      float* s = scores + (t * a.group + g) * lds;
      if (vnni_scores != nullptr) {
        vnni_scores(q, r, hd, a.keys, tile_begin, tile_end, s, lds);
        continue;
      }
      for (size_t i = 0; i < r; ++i) {
        const int8_t* q8 =
            reinterpret_cast<const int8_t*>(q + i * qbytes + 4 * simd::KvInt8Blocks(hd));
        for (size_t c = 0; c < qf_stride; ++c) qf[i * qf_stride + c] = static_cast<float>(q8[c]);
      }
      TileRangeScores(q, qf, r, hd, a.keys, tile_begin, tile_end, s, lds);
    }
    for (size_t g = 0; g < a.group; ++g) {
      simd::SoftmaxArgs softmax;
      softmax.in = softmax.out = scores + (t * a.group + g) * lds;
      softmax.ld_in = softmax.ld_out = lds;
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
    if (begin == end) {  // no key at all (num_keys = 0): NaN, the softmax of nothing
      std::fill(a.out + t * a.ldo, a.out + t * a.ldo + a.group * hd,
                std::numeric_limits<float>::quiet_NaN());
      continue;
    }
    size_t g = 0;
    for (; g + 4 <= a.group; g += 4) {
      WeightedValues<4>(scores + (t * a.group + g) * lds, lds, a.values, row_bytes, begin, end, hd,
                        a.out + t * a.ldo + g * hd);
    }
    for (; g < a.group; ++g) {
      WeightedValues<1>(scores + (t * a.group + g) * lds, lds, a.values, row_bytes, begin, end, hd,
                        a.out + t * a.ldo + g * hd);
    }
  }
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#endif  // ATTN_SIMD_KV_INT8_INL_H_
