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
    if (tile + simd::detail::kKvInt8PrefetchTiles < tile_end) {
      simd::detail::PrefetchKvInt8Tile(k + simd::detail::kKvInt8PrefetchTiles * tile_bytes,
                                       tile_bytes);
    }
    float* s = scores + tile * kTile;
    if (rows == 4) TileScores<4>(qf, qf_stride, qs, qs_stride, head_dim, k, s, lds);
    if (rows == 3) TileScores<3>(qf, qf_stride, qs, qs_stride, head_dim, k, s, lds);
    if (rows == 2) TileScores<2>(qf, qf_stride, qs, qs_stride, head_dim, k, s, lds);
    if (rows == 1) TileScores<1>(qf, qf_stride, qs, qs_stride, head_dim, k, s, lds);
  }
}

// w[r * ldw + j - 16 * tile_begin] = p_r[j] * vscale_b(j) for the tokens j
// of the tiles [tile_begin, tile_end) that lie in [begin, end), 0 for the
// others (whose weights and scales may be anything, NaN included), for R <=
// 4 queries (p_r = p0 + r * ldp) and block b.
template <size_t R>
HWY_INLINE void BlockWeights(const float* HWY_RESTRICT p0, size_t ldp, const uint8_t* values,
                             size_t tile_bytes, size_t b, size_t begin, size_t end,
                             float* HWY_RESTRICT w, size_t ldw) {
  const TileTag d;
  const hn::Rebind<int32_t, TileTag> di;
  const size_t N = hn::Lanes(d);
  constexpr size_t kTile = simd::kKvInt8TileTokens;
  const size_t tile_begin = begin / kTile;
  // Iota once: it goes through memory on some targets.
  const auto iota = hn::Iota(di, 0);
  const auto lo = hn::Set(di, static_cast<int32_t>(begin));
  const auto hi = hn::Set(di, static_cast<int32_t>(end));
  for (size_t tile = tile_begin; tile * kTile < end; ++tile) {
    if (b == 0 && (tile + simd::detail::kKvInt8PrefetchTiles) * kTile < end) {
      simd::detail::PrefetchKvInt8Tile(
          values + (tile + simd::detail::kKvInt8PrefetchTiles) * tile_bytes, tile_bytes);
    }
    const float* HWY_RESTRICT scales =
        reinterpret_cast<const float*>(values + tile * tile_bytes) + b * kTile;
    const size_t first = tile * kTile;
    const bool whole = first >= begin && first + kTile <= end;
    for (size_t lane = 0; lane < kTile; lane += N) {
      const auto j = hn::Add(iota, hn::Set(di, static_cast<int32_t>(first + lane)));
      const auto visible = hn::RebindMask(d, hn::And(hn::Not(hn::Lt(j, lo)), hn::Lt(j, hi)));
      const auto s = hn::LoadU(d, scales + lane);
      for (size_t r = 0; r < R; ++r) {
        const auto x = hn::Mul(hn::LoadU(d, p0 + r * ldp + first + lane), s);
        float* HWY_RESTRICT to = w + r * ldw + first - tile_begin * kTile + lane;
        hn::StoreU(whole ? x : hn::IfThenElseZero(visible, x), d, to);
      }
    }
  }
}

// R2 (1 or 2) queries' sums over the tiles [tile_begin, tile_end) for the N
// dimensions from c: per group of 4 tokens, N bytes at a time (N / 4
// dimensions x 4 tokens) sign-extended and converted once, times the 4
// tokens' weights repeated (LoadDup128); four vectors of lanes (dimension,
// token) per query, whose groups of 4 lanes are summed at the end.
template <size_t R2>
HWY_INLINE void GroupValues(const float* HWY_RESTRICT w, size_t ldw, const uint8_t* values,
                            size_t tile_bytes, size_t tile_begin, size_t tile_end, size_t offset,
                            size_t head_dim, float* HWY_RESTRICT out0) {
  const TileTag d;
  const size_t N = hn::Lanes(d);
  constexpr size_t kTile = simd::kKvInt8TileTokens;
  auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
  auto b0 = hn::Zero(d), b1 = hn::Zero(d), b2 = hn::Zero(d), b3 = hn::Zero(d);
  for (size_t tile = tile_begin; tile < tile_end; ++tile) {
    const int8_t* HWY_RESTRICT x =
        reinterpret_cast<const int8_t*>(values + tile * tile_bytes + offset);
    const float* HWY_RESTRICT wt = w + (tile - tile_begin) * kTile;
    for (size_t g = 0; g < kTile / 4; ++g, x += 4 * head_dim) {
      const auto x0 = LoadInt8AsFloat(d, x);
      const auto x1 = LoadInt8AsFloat(d, x + N);
      const auto x2 = LoadInt8AsFloat(d, x + 2 * N);
      const auto x3 = LoadInt8AsFloat(d, x + 3 * N);
      const auto w0 = hn::LoadDup128(d, wt + 4 * g);
      a0 = hn::MulAdd(w0, x0, a0);
      a1 = hn::MulAdd(w0, x1, a1);
      a2 = hn::MulAdd(w0, x2, a2);
      a3 = hn::MulAdd(w0, x3, a3);
      if (R2 > 1) {
        const auto w1 = hn::LoadDup128(d, wt + ldw + 4 * g);
        b0 = hn::MulAdd(w1, x0, b0);
        b1 = hn::MulAdd(w1, x1, b1);
        b2 = hn::MulAdd(w1, x2, b2);
        b3 = hn::MulAdd(w1, x3, b3);
      }
    }
  }
  HWY_ALIGN float lanes[4 * simd::kKvInt8TileTokens];
  for (size_t r = 0; r < R2; ++r) {
    hn::Store(r == 0 ? a0 : b0, d, lanes);
    hn::Store(r == 0 ? a1 : b1, d, lanes + N);
    hn::Store(r == 0 ? a2 : b2, d, lanes + 2 * N);
    hn::Store(r == 0 ? a3 : b3, d, lanes + 3 * N);
    for (size_t i = 0; i < N; ++i) {
      const float* l = lanes + 4 * i;
      out0[r * head_dim + i] = (l[0] + l[1]) + (l[2] + l[3]);
    }
  }
}

// out_r[0, head_dim) = sum over the tokens j in [begin, end) of p_r[j] *
// v_j, for R <= 4 queries (out_r = out0 + r * head_dim); w: scratch of 4 *
// (the tiles' tokens) floats, 16-byte aligned. Per block, the weights of
// every tile first (BlockWeights); then per N dimensions, the sums stay in
// registers over all the tiles (GroupValues, two queries at a time). The
// dimensions past the last whole N of a block, and every dimension on
// targets of fewer than 4 lanes, one at a time.
template <size_t R>
HWY_INLINE void WeightedValues(const float* HWY_RESTRICT p0, size_t ldp, const uint8_t* values,
                               size_t begin, size_t end, size_t head_dim, float* HWY_RESTRICT out0,
                               float* HWY_RESTRICT w) {
  const TileTag d;
  const size_t N = hn::Lanes(d);
  constexpr size_t kTile = simd::kKvInt8TileTokens;
  const size_t blocks = simd::KvInt8Blocks(head_dim);
  const size_t tile_bytes = simd::KvInt8ValueTileBytes(head_dim);
  const size_t tile_begin = begin / kTile, tile_end = (end + kTile - 1) / kTile;
  const size_t ldw = (tile_end - tile_begin) * kTile;
  for (size_t b = 0; b < blocks; ++b) {
    BlockWeights<R>(p0, ldp, values, tile_bytes, b, begin, end, w, ldw);
    const size_t block_end = HWY_MIN(head_dim, (b + 1) * simd::kKvInt8Block);
    size_t c = b * simd::kKvInt8Block;
    for (; N >= 4 && c + N <= block_end; c += N) {
      const size_t offset = 4 * blocks * kTile + 4 * c;
      for (size_t r = 0; r < R; r += 2) {
        if (r + 1 < R) {
          GroupValues<2>(w + r * ldw, ldw, values, tile_bytes, tile_begin, tile_end, offset,
                         head_dim, out0 + r * head_dim + c);
        } else {
          GroupValues<1>(w + r * ldw, ldw, values, tile_bytes, tile_begin, tile_end, offset,
                         head_dim, out0 + r * head_dim + c);
        }
      }
    }
    for (; c < block_end; ++c) {  // the last dimensions, scalar
      for (size_t r = 0; r < R; ++r) {
        float sum = 0.0f;
        for (size_t tile = tile_begin; tile < tile_end; ++tile) {
          const int8_t* HWY_RESTRICT bytes =
              reinterpret_cast<const int8_t*>(values + tile * tile_bytes + 4 * blocks * kTile);
          const float* HWY_RESTRICT wt = w + r * ldw + (tile - tile_begin) * kTile;
          for (size_t lane = 0; lane < kTile; ++lane) {
            sum += wt[lane] * static_cast<float>(bytes[lane / 4 * 4 * head_dim + 4 * c + lane % 4]);
          }
        }
        out0[r * head_dim + c] = sum;
      }
    }
  }
}

// simd::KvInt8Attention for this target, without argument checks; the
// scores and the weighted values by `vnni_scores` and `vnni_values` where
// given (simd::detail::KvInt8ScoresVnni, KvInt8ValuesVnni), else by this
// target's TileScores and WeightedValues.
inline void KvInt8AttentionKernel(const simd::KvInt8AttentionArgs& a,
                                  simd::detail::KvInt8ScoresFn vnni_scores = nullptr,
                                  simd::detail::KvInt8ValuesFn vnni_values = nullptr) {
  const size_t rows = a.tokens * a.group, hd = a.head_dim;
  if (rows == 0 || hd == 0) return;
  constexpr size_t kTile = simd::kKvInt8TileTokens;
  const size_t lds = (a.num_keys + kTile - 1) / kTile * kTile;
  const size_t qbytes = simd::KvInt8QueryBytes(hd), qf_stride = 4 * simd::KvInt8Quads(hd);
  // [scores: rows x lds][quantized queries: rows x qbytes][their values as
  // floats: 4 x qf_stride][1 / the rows' sums of exponentials: rows][weights
  // of one block: 4 x (lds + 16), or VNNI's rounded weights of one chunk of
  // tiles]
  const size_t weight_floats =
      HWY_MAX(4 * (lds + kTile), simd::detail::KvInt8ValuesScratch(4, lds / kTile + 1));
  float* const scores = simd::detail::ThreadScratch(
      simd::detail::ScratchSlot::kFlashAttention,
      rows * (lds + qbytes / 4 + 1) + 4 * qf_stride + 16 + weight_floats);
  uint8_t* const queries = reinterpret_cast<uint8_t*>(scores + rows * lds);
  float* const qf = scores + rows * (lds + qbytes / 4);
  float* const inv_sums = qf + 4 * qf_stride;
  // 64-byte aligned (the scratch is): LoadDup128 of 4 weights.
  float* const weights = scores + (rows * (lds + qbytes / 4 + 1) + 4 * qf_stride + 15) / 16 * 16;
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
    // The exponentials only: each row's 1 / sum scales its outputs below.
    if (begin == end) continue;
    for (size_t g = 0; g < a.group; ++g) {
      float* s = scores + (t * a.group + g) * lds + begin;
      inv_sums[t * a.group + g] = 1.0f / softmax_detail::SoftmaxExpRow(s, s, end - begin, a.scale);
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
    for (size_t g = 0; g < a.group; g += 4) {
      const size_t r = HWY_MIN(size_t{4}, a.group - g);
      const float* p = scores + (t * a.group + g) * lds;
      float* out = a.out + t * a.ldo + g * hd;
      if (vnni_values != nullptr) {
        vnni_values(p, lds, r, hd, a.values, begin, end, out, weights);
      } else if (r == 4) {
        WeightedValues<4>(p, lds, a.values, begin, end, hd, out, weights);
      } else if (r == 3) {
        WeightedValues<3>(p, lds, a.values, begin, end, hd, out, weights);
      } else if (r == 2) {
        WeightedValues<2>(p, lds, a.values, begin, end, hd, out, weights);
      } else {
        WeightedValues<1>(p, lds, a.values, begin, end, hd, out, weights);
      }
      for (size_t i = 0; i < r; ++i) {
        softmax_detail::ScaleRow(out + i * hd, hd, inv_sums[t * a.group + g + i]);
      }
    }
  }
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#endif  // ATTN_SIMD_KV_INT8_INL_H_
