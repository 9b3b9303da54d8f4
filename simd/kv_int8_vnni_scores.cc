// The int8 KV cache's scores on AVX-512 VNNI (simd::detail::KvInt8ScoresVnni,
// simd/kv_int8.h; the weighted values: simd/kv_int8_vnni_values.cc), used by
// simd::KvInt8Attention when Int8VnniActive().
// Intrinsics compiled by target attributes, as simd/matmul_int8_vnni.cc
// (simd/vnni.h); elsewhere than x86-64 the entry points are stubs that are
// never reached.
//
// One quad of a key tile (16 keys x 4 dimensions, 64 bytes) is one
// vpdpbusd operand. vpdpbusd multiplies unsigned by signed bytes, so the
// keys are flipped to k + 128 (one xor) and each block's sum corrected by
// 128 * (the query's sum over the block):
//   sum (k + 128) * q = sum k * q + 128 * sum q
// which leaves the exact integer sum of the portable kernels, converted and
// multiplied by the same scales: the scores are the AVX3 target's, bit for
// bit. Per tile, two blocks at a time, up to four query heads (a group)
// share each key load. Tuned for head_dim 64
// and groups of 1 and 4 on an AMD EPYC with AVX-512 VNNI (about 8.3 G
// vpdpbusd zmm per second and core, two per cycle) and a Xeon (Emerald
// Rapids: one per cycle): one or two queries split their sums
// over twice the accumulators.

#include <stddef.h>
#include <stdint.h>

#include <algorithm>

#include "simd/kv_int8.h"
#include "simd/vnni.h"

namespace attn {
namespace simd {
namespace detail {

#if ATTN_HAVE_VNNI

ATTN_VNNI_DIAGNOSTICS_PUSH

namespace {

// Blocks whose query corrections (128 * sum q) are computed at once.
constexpr size_t kBlocksAtOnce = 16;

// acc[r][x] += key quad c (its 64 bytes at kq + 64 c, flipped to u8) times
// query r's quad c, for R queries; the same line of kq_ahead prefetched.
template <size_t R, size_t S>
ATTN_VNNI_INLINE void AddQuad(const uint8_t* kq, const uint8_t* kq_ahead, __m512i flip,
                              const int8_t* const (&q8)[R], size_t c, size_t x,
                              __m512i (&acc)[R][S]) {
  hwy::Prefetch(kq_ahead + c * 64);
  const __m512i k = _mm512_xor_si512(_mm512_loadu_si512(kq + c * 64), flip);
  for (size_t r = 0; r < R; ++r) acc[r][x] = Dpbusd(acc[r][x], k, Broadcast4(q8[r], c));
}

// t[r] += (the sum of acc[r][...] - 128 * sum q_r) * kscale * qscale_r,b:
// block b's scores of R queries, their integer sums split over S chains.
template <size_t R, size_t S>
ATTN_VNNI_INLINE void AddBlockScores(const __m512i (&acc)[R][S],
                                     const __m512i (&correction)[R][kBlocksAtOnce], size_t slot,
                                     __m512 kscale, const float* const (&qscale)[R], size_t b,
                                     __m512 (&t)[R]) {
  for (size_t r = 0; r < R; ++r) {
    __m512i sum = acc[r][0];
    for (size_t x = 1; x < S; ++x) sum = _mm512_add_epi32(sum, acc[r][x]);
    sum = _mm512_sub_epi32(sum, correction[r][slot]);
    t[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum),
                           _mm512_mul_ps(kscale, _mm512_set1_ps(qscale[r][b])), t[r]);
  }
}

// R (1..4) queries against the tiles [tile_begin, tile_end).
template <size_t R>
ATTN_VNNI_TARGET void Scores(const uint8_t* queries, size_t head_dim, const uint8_t* keys,
                             size_t tile_begin, size_t tile_end, float* scores, size_t lds) {
  constexpr size_t kTile = kKvInt8TileTokens;
  constexpr size_t kQuadsPerBlock = kKvInt8Block / 4;
  const size_t blocks = KvInt8Blocks(head_dim), quads = KvInt8Quads(head_dim);
  const size_t qbytes = KvInt8QueryBytes(head_dim), tile_bytes = KvInt8KeyTileBytes(head_dim);
  const float* qscale[R];
  const int8_t* q8[R];
  for (size_t r = 0; r < R; ++r) {
    qscale[r] = reinterpret_cast<const float*>(queries + r * qbytes);
    q8[r] = reinterpret_cast<const int8_t*>(queries + r * qbytes + 4 * blocks);
  }
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  constexpr size_t kSplit = R <= 2 ? 2 : 1;
  // Blocks [b0, b1) at a time (all of them up to head_dim 512): each tile's
  // scores are stored after the first group of blocks, added after the others.
  for (size_t b0 = 0; b0 < blocks; b0 += kBlocksAtOnce) {
    const size_t b1 = std::min(blocks, b0 + kBlocksAtOnce);
    __m512i correction[R][kBlocksAtOnce];
    for (size_t r = 0; r < R; ++r) {
      for (size_t b = b0; b < b1; ++b) {
        int32_t sum = 0;
        for (size_t i = b * kKvInt8Block; i < std::min(4 * quads, (b + 1) * kKvInt8Block); ++i) {
          sum += q8[r][i];
        }
        correction[r][b - b0] = _mm512_set1_epi32(128 * sum);
      }
    }
    for (size_t tile = tile_begin; tile < tile_end; ++tile) {
      const uint8_t* k = keys + tile * tile_bytes;
      // The line of each load kKvInt8PrefetchTiles tiles ahead (this tile's
      // own lines, already loaded, near the end).
      const uint8_t* ahead =
          tile + kKvInt8PrefetchTiles < tile_end ? k + kKvInt8PrefetchTiles * tile_bytes : k;
      const float* kscale = reinterpret_cast<const float*>(k);
      const uint8_t* kq = k + 4 * blocks * kTile;
      const uint8_t* kq_ahead = ahead + 4 * blocks * kTile;
      __m512 t[R];
      for (size_t r = 0; r < R; ++r) {
        t[r] = b0 == 0 ? _mm512_setzero_ps() : _mm512_loadu_ps(scores + r * lds + tile * kTile);
      }
      // Two blocks at a time, each query's sum of a block split over kSplit
      // chains: 4 to 8 independent vpdpbusd chains; a block's chains of 8
      // quads alone (R of them) leave the unit waiting on its latency.
      for (size_t b = b0; b < b1; b += 2) {
        const bool pair = b + 1 < b1;
        const size_t first0 = b * kQuadsPerBlock, end0 = std::min(quads, first0 + kQuadsPerBlock);
        const size_t first1 = pair ? first0 + kQuadsPerBlock : 0;
        const size_t end1 = pair ? std::min(quads, first1 + kQuadsPerBlock) : 0;
        __m512i acc0[R][kSplit], acc1[R][kSplit];
        for (size_t r = 0; r < R; ++r) {
          for (size_t x = 0; x < kSplit; ++x) acc0[r][x] = acc1[r][x] = _mm512_setzero_si512();
        }
        size_t c = 0;
        for (; first1 + c + kSplit <= end1; c += kSplit) {  // both blocks
          for (size_t x = 0; x < kSplit; ++x) {
            AddQuad(kq, kq_ahead, flip, q8, first0 + c + x, x, acc0);
            AddQuad(kq, kq_ahead, flip, q8, first1 + c + x, x, acc1);
          }
        }
        for (; first1 + c < end1; ++c) {  // the second block's last quads
          AddQuad(kq, kq_ahead, flip, q8, first0 + c, 0, acc0);
          AddQuad(kq, kq_ahead, flip, q8, first1 + c, 0, acc1);
        }
        for (; first0 + c < end0; ++c) AddQuad(kq, kq_ahead, flip, q8, first0 + c, 0, acc0);
        hwy::Prefetch(ahead + b * 64);  // the blocks' 16 scales
        AddBlockScores(acc0, correction, b - b0, _mm512_loadu_ps(kscale + b * kTile), qscale, b, t);
        if (pair) {
          hwy::Prefetch(ahead + b * 64 + 64);
          AddBlockScores(acc1, correction, b + 1 - b0, _mm512_loadu_ps(kscale + (b + 1) * kTile),
                         qscale, b + 1, t);
        }
      }
      for (size_t r = 0; r < R; ++r) _mm512_storeu_ps(scores + r * lds + tile * kTile, t[r]);
    }
  }
}

}  // namespace

ATTN_VNNI_TARGET void KvInt8ScoresVnni(const uint8_t* queries, size_t rows, size_t head_dim,
                                       const uint8_t* keys, size_t tile_begin, size_t tile_end,
                                       float* scores, size_t lds) {
  switch (rows) {
    case 1:
      return Scores<1>(queries, head_dim, keys, tile_begin, tile_end, scores, lds);
    case 2:
      return Scores<2>(queries, head_dim, keys, tile_begin, tile_end, scores, lds);
    case 3:
      return Scores<3>(queries, head_dim, keys, tile_begin, tile_end, scores, lds);
    default:
      return Scores<4>(queries, head_dim, keys, tile_begin, tile_end, scores, lds);
  }
}

ATTN_VNNI_DIAGNOSTICS_POP

#else  // !ATTN_HAVE_VNNI

void KvInt8ScoresVnni(const uint8_t*, size_t, size_t, const uint8_t*, size_t, size_t, float*,
                      size_t) {}

#endif  // ATTN_HAVE_VNNI

}  // namespace detail
}  // namespace simd
}  // namespace attn
