// The int8 KV cache's weighted values on AVX-512 VNNI
// (simd::detail::KvInt8ValuesVnni, simd/kv_int8.h; the scores:
// simd/kv_int8_vnni_scores.cc), used by simd::KvInt8Attention when
// Int8VnniActive(). Intrinsics compiled by target attributes (simd/vnni.h);
// elsewhere than x86-64 the entry point is a stub that is never reached.
// The method: see Values below. Tuned for head_dim 64 and groups of 1 and 4
// on an AMD EPYC (two vpdpbusd zmm a cycle) and a Xeon (Emerald Rapids: one).

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>

#include "simd/kv_int8.h"
#include "simd/vnni.h"

namespace attn {
namespace simd {
namespace detail {

#if ATTN_HAVE_VNNI

ATTN_VNNI_DIAGNOSTICS_PUSH

namespace {

// Bits [0, n) of a 16-lane mask, n clamped to 16.
__mmask16 FirstLanes(size_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u);
}

// The visible lanes of `tile`: tokens in [begin, end).
ATTN_VNNI_INLINE __mmask16 VisibleLanes(size_t tile, size_t begin, size_t end) {
  const size_t first = tile * kKvInt8TileTokens;
  return static_cast<__mmask16>(FirstLanes(end - first) &
                                ~FirstLanes(begin > first ? begin - first : 0));
}

// VisibleLanes for a tile of [tile_begin, tile_end), the tiles of [begin,
// end): all 16 lanes but in the first and the last.
ATTN_VNNI_INLINE __mmask16 TileLanes(size_t tile, size_t tile_begin, size_t tile_end, size_t begin,
                                     size_t end) {
  return tile == tile_begin || tile + 1 == tile_end ? VisibleLanes(tile, begin, end)
                                                    : static_cast<__mmask16>(0xFFFF);
}

// The 16 tokens' scales of block b of a value tile.
ATTN_VNNI_INLINE __m512 BlockScales(const uint8_t* values, size_t tile, size_t tile_bytes,
                                    size_t b) {
  return _mm512_loadu_ps(reinterpret_cast<const float*>(values + tile * tile_bytes) +
                         b * kKvInt8TileTokens);
}

// Tiles whose int32 sums may be added before they are converted: each adds
// at most 16 * 65535 * 127 in magnitude, 16 of them stay below 2^31.
constexpr size_t kTilesPerChunk = kKvInt8ValuesChunkTiles;
static_assert(kTilesPerChunk <= 16, "int32 sums of a chunk must stay below 2^31");

// Blocks of dimensions whose weights Values rounds in one pass over the tiles
// (all of them up to head_dim 128).
constexpr size_t kValueBlocksAtOnce = 4;

// Prefetches `lines` lines from *next, not past `end`, advancing *next.
ATTN_VNNI_INLINE void PrefetchLines(const uint8_t** next, const uint8_t* end, size_t lines) {
  for (size_t i = 0; i < lines && *next < end; ++i, *next += 64) hwy::Prefetch(*next);
}

// Lines to prefetch per step to cover the `bytes` at `begin` in `steps` steps.
inline size_t LinesPerStep(size_t bytes, size_t steps) {
  const size_t lines = (bytes + 63) / 64;
  return steps == 0 ? lines : (lines + steps - 1) / steps;
}

// The weighted values of R (1..4) queries: KvInt8ValuesVnni. Per group of up
// to 4 blocks of 32 dimensions (two vectors each): (1) one pass over the
// tiles for each block's and query's largest weight p_j * vscale_j over the
// visible tokens (NaN if one is NaN: a non-finite value block, whose outputs
// become NaN as the float kernel's would); then per chunk of 16 tiles and
// block, (2) every weight rounded to u = round(w * 65535 / largest), 16 bits,
// its low and high bytes stored per tile in `bytes` (4 KiB for four queries,
// read back from L1), (3) per vector of dimensions, 4 loads per tile (one per
// group of 4 tokens) and 8 vpdpbusd per query, the int32 sums exact over the
// chunk, then converted and added in float into `out`; finally the outputs
// times largest / 65535. A chunk's tiles are read once per block, from L1 or
// L2 after the first: the next chunk is prefetched evenly over this chunk's
// blocks (the first one over pass (1), with the scales 4 tiles ahead), so
// that the loads from L3 or DRAM overlap all of the vpdpbusd rather than
// those of the first block.
template <size_t R>
ATTN_VNNI_TARGET void Values(const float* p0, size_t ldp, size_t head_dim, const uint8_t* values,
                             size_t begin, size_t end, float* out, uint8_t* bytes) {
  constexpr size_t kTile = kKvInt8TileTokens;
  const size_t blocks = KvInt8Blocks(head_dim), tile_bytes = KvInt8ValueTileBytes(head_dim);
  const size_t scale_bytes = 4 * blocks * kTile;
  const size_t tile_begin = begin / kTile, tile_end = (end + kTile - 1) / kTile;
  const float* p[R];
  for (size_t r = 0; r < R; ++r) p[r] = p0 + r * ldp;
  // Per query and tile, 64 bytes: in 128-bit lane g, the low bytes of the
  // weights of tokens 4g .. 4g+3, then their high bytes (one vpshufb).
  const __m512i split = _mm512_broadcast_i32x4(
      _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, -1, -1, -1, -1, -1, -1, -1, -1));
  // A lone query splits each sum over even and odd groups of tokens: 8
  // chains cover vpdpbusd's latency.
  constexpr size_t kSplit = R == 1 ? 2 : 1;
  const size_t group_bytes = 4 * head_dim;
  for (size_t b0 = 0; b0 < blocks; b0 += kValueBlocksAtOnce) {
    const size_t nb = std::min(kValueBlocksAtOnce, blocks - b0);
    // (1) The weights are >= 0 or NaN, so the largest is their largest bit
    // pattern as an unsigned integer, a NaN of either sign above every
    // number.
    __m512i largest_bits[kValueBlocksAtOnce][R];
    for (size_t b = 0; b < nb; ++b) {
      for (size_t r = 0; r < R; ++r) largest_bits[b][r] = _mm512_setzero_si512();
    }
    const uint8_t* next = values + tile_begin * tile_bytes;
    const uint8_t* next_end = values + std::min(tile_end, tile_begin + kTilesPerChunk) * tile_bytes;
    size_t lines = LinesPerStep(static_cast<size_t>(next_end - next), tile_end - tile_begin);
    for (size_t tile = tile_begin; tile < tile_end; ++tile) {
      if (tile + kKvInt8PrefetchTiles < tile_end) {
        PrefetchKvInt8Tile(values + (tile + kKvInt8PrefetchTiles) * tile_bytes, scale_bytes);
      }
      PrefetchLines(&next, next_end, lines);
      const __mmask16 visible = TileLanes(tile, tile_begin, tile_end, begin, end);
      for (size_t b = 0; b < nb; ++b) {
        const __m512 s = BlockScales(values, tile, tile_bytes, b0 + b);
        for (size_t r = 0; r < R; ++r) {
          const __m512 w = _mm512_maskz_mul_ps(visible, _mm512_loadu_ps(p[r] + tile * kTile), s);
          largest_bits[b][r] = _mm512_max_epu32(largest_bits[b][r], _mm512_castps_si512(w));
        }
      }
    }
    // Below 2^-100 (subnormal value scales), 65535 / largest would overflow:
    // the weights are first scaled by 2^64 (exactly), the outputs by 2^-64.
    float boost[kValueBlocksAtOnce][R], inv[kValueBlocksAtOnce][R], factor[kValueBlocksAtOnce][R];
    bool any_tiny = false;
    for (size_t b = 0; b < nb; ++b) {
      for (size_t r = 0; r < R; ++r) {
        const uint32_t bits = _mm512_reduce_max_epu32(largest_bits[b][r]);
        float largest;
        memcpy(&largest, &bits, sizeof(largest));
        const bool nan = bits > 0x7F800000u;
        const bool tiny = !nan && largest < 0x1p-100f;
        any_tiny = any_tiny || tiny;
        boost[b][r] = tiny ? 0x1p64f : 1.0f;
        largest *= boost[b][r];
        inv[b][r] = !nan && largest > 0.0f ? 65535.0f / largest : 0.0f;
        factor[b][r] = nan ? __builtin_nanf("") : largest / 65535.0f;
      }
    }
    for (size_t chunk = tile_begin; chunk < tile_end; chunk += kTilesPerChunk) {
      const size_t chunk_end = std::min(tile_end, chunk + kTilesPerChunk);
      next = values + chunk_end * tile_bytes;
      next_end = values + std::min(tile_end, chunk_end + kTilesPerChunk) * tile_bytes;
      lines = LinesPerStep(static_cast<size_t>(next_end - next), nb * (chunk_end - chunk));
      for (size_t b = 0; b < nb; ++b) {
        // (2) The chunk's weights of block b0 + b, rounded, into `bytes`.
        for (size_t tile = chunk; tile < chunk_end; ++tile) {
          const __mmask16 visible = TileLanes(tile, tile_begin, tile_end, begin, end);
          const __m512 s = BlockScales(values, tile, tile_bytes, b0 + b);
          for (size_t r = 0; r < R; ++r) {
            __m512 w = _mm512_maskz_mul_ps(visible, _mm512_loadu_ps(p[r] + tile * kTile), s);
            if (any_tiny) w = _mm512_mul_ps(w, _mm512_set1_ps(boost[b][r]));  // exact
            // u <= 65535 (w <= largest); a NaN w gives garbage bytes, and the
            // NaN factor the block's outputs.
            const __m512i u = _mm512_cvtps_epi32(_mm512_mul_ps(w, _mm512_set1_ps(inv[b][r])));
            _mm512_storeu_si512(bytes + ((tile - chunk) * R + r) * 64,
                                _mm512_shuffle_epi8(u, split));
          }
        }
        // (3) Its sums.
        const size_t c0 = (b0 + b) * kKvInt8Block;
        const size_t n = std::min(kKvInt8Block, head_dim - c0);
        const __mmask16 lanes0 = FirstLanes(n), lanes1 = FirstLanes(n > 16 ? n - 16 : 0);
        __m512i lo0[R][kSplit], hi0[R][kSplit], lo1[R][kSplit], hi1[R][kSplit];
        for (size_t r = 0; r < R; ++r) {
          for (size_t k = 0; k < kSplit; ++k) {
            lo0[r][k] = hi0[r][k] = lo1[r][k] = hi1[r][k] = _mm512_setzero_si512();
          }
        }
        const uint8_t* x = values + chunk * tile_bytes + scale_bytes + 4 * c0;
        const uint8_t* w = bytes;
        for (size_t tile = chunk; tile < chunk_end; ++tile, x += tile_bytes, w += R * 64) {
          PrefetchLines(&next, next_end, lines);
          for (size_t g = 0; g < kTile / 4; ++g) {
            const size_t k = g % kSplit;
            const __m512i x0 = _mm512_maskz_loadu_epi32(lanes0, x + g * group_bytes);
            const __m512i x1 = _mm512_maskz_loadu_epi32(lanes1, x + g * group_bytes + 64);
            for (size_t r = 0; r < R; ++r) {
              const __m512i wl = Broadcast4(w + r * 64, 4 * g),
                            wh = Broadcast4(w + r * 64, 4 * g + 1);
              lo0[r][k] = Dpbusd(lo0[r][k], wl, x0);
              hi0[r][k] = Dpbusd(hi0[r][k], wh, x0);
              lo1[r][k] = Dpbusd(lo1[r][k], wl, x1);
              hi1[r][k] = Dpbusd(hi1[r][k], wh, x1);
            }
          }
        }
        for (size_t r = 0; r < R; ++r) {
          float* o = out + r * head_dim + c0;
          __m512 acc0 =
              chunk == tile_begin ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(lanes0, o);
          __m512 acc1 =
              chunk == tile_begin ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(lanes1, o + 16);
          for (size_t k = 0; k < kSplit; ++k) {
            const __m512i s0 = _mm512_add_epi32(_mm512_slli_epi32(hi0[r][k], 8), lo0[r][k]);
            const __m512i s1 = _mm512_add_epi32(_mm512_slli_epi32(hi1[r][k], 8), lo1[r][k]);
            acc0 = _mm512_add_ps(acc0, _mm512_cvtepi32_ps(s0));
            acc1 = _mm512_add_ps(acc1, _mm512_cvtepi32_ps(s1));
          }
          _mm512_mask_storeu_ps(o, lanes0, acc0);
          _mm512_mask_storeu_ps(o + 16, lanes1, acc1);
        }
      }
    }
    // (4) The outputs times largest / 65535 (and 2^-64 where boosted).
    for (size_t b = 0; b < nb; ++b) {
      const size_t c0 = (b0 + b) * kKvInt8Block;
      const size_t n = std::min(kKvInt8Block, head_dim - c0);
      const __mmask16 lanes0 = FirstLanes(n), lanes1 = FirstLanes(n > 16 ? n - 16 : 0);
      for (size_t r = 0; r < R; ++r) {
        const __m512 f = _mm512_set1_ps(factor[b][r]);
        const __m512 u = _mm512_set1_ps(boost[b][r] == 1.0f ? 1.0f : 0x1p-64f);
        float* o = out + r * head_dim + c0;
        _mm512_mask_storeu_ps(o, lanes0,
                              _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(lanes0, o), f), u));
        _mm512_mask_storeu_ps(
            o + 16, lanes1,
            _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(lanes1, o + 16), f), u));
      }
    }
  }
}

}  // namespace

ATTN_VNNI_TARGET void KvInt8ValuesVnni(const float* p, size_t ldp, size_t rows, size_t head_dim,
                                       const uint8_t* values, size_t begin, size_t end, float* out,
                                       float* scratch) {
  uint8_t* rounded = reinterpret_cast<uint8_t*>(scratch);
  switch (rows) {
    case 1:
      return Values<1>(p, ldp, head_dim, values, begin, end, out, rounded);
    case 2:
      return Values<2>(p, ldp, head_dim, values, begin, end, out, rounded);
    case 3:
      return Values<3>(p, ldp, head_dim, values, begin, end, out, rounded);
    default:
      return Values<4>(p, ldp, head_dim, values, begin, end, out, rounded);
  }
}

ATTN_VNNI_DIAGNOSTICS_POP

#else  // !ATTN_HAVE_VNNI

void KvInt8ValuesVnni(const float*, size_t, size_t, size_t, const uint8_t*, size_t, size_t, float*,
                      float*) {}

#endif  // ATTN_HAVE_VNNI

}  // namespace detail
}  // namespace simd
}  // namespace attn
