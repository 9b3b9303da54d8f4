// The int8 KV cache's scores on AVX-512 VNNI (simd::detail::KvInt8ScoresVnni,
// simd/kv_int8.h), used by simd::KvInt8Attention when Int8VnniActive().
// Highway 1.0.3 has no 8-bit dot product, so this kernel uses intrinsics,
// compiled for AVX-512 F/BW/VL/VNNI by target attributes (the rest of the
// binary stays baseline x86-64), as simd/matmul_int8_vnni.cc does. Compiled
// on x86-64 only; elsewhere the entry point is a stub that is never reached.
//
// One quad of a key tile (16 keys x 4 dimensions, 64 bytes) is one
// vpdpbusd operand. vpdpbusd multiplies unsigned by signed bytes, so the
// keys are flipped to k + 128 (one xor) and each block's sum corrected by
// 128 * (the query's sum over the block):
//   sum (k + 128) * q = sum k * q + 128 * sum q
// which leaves the exact integer sum of the portable kernels, converted and
// multiplied by the same scales: the scores are the AVX3 target's, bit for
// bit. Per tile and block, up to four query heads (a group) share each key
// load. Tuned on Zen 4 (vpdpbusd zmm at one per cycle, latency 4) for
// head_dim 64: a lone query splits each block over two accumulators.

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>

#include "simd/kv_int8.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define ATTN_KV_INT8_HAVE_VNNI 1
#include <immintrin.h>
#else
#define ATTN_KV_INT8_HAVE_VNNI 0
#endif

namespace attn {
namespace simd {
namespace detail {

#if ATTN_KV_INT8_HAVE_VNNI

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#define ATTN_KV_VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#define ATTN_KV_VNNI_INLINE ATTN_KV_VNNI_TARGET __attribute__((always_inline)) inline

namespace {

// acc + vpdpbusd(a (u8), b (s8)); as inline asm, which GCC 12 keeps in
// registers (simd/matmul_int8_vnni.cc).
ATTN_KV_VNNI_INLINE __m512i Dpbusd(__m512i acc, __m512i a, __m512i b) {
#if defined(__GNUC__) && !defined(__clang__)
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
  return acc;
#else
  return _mm512_dpbusd_epi32(acc, a, b);
#endif
}

// The query's 4 bytes of quad c, in every 32-bit lane.
ATTN_KV_VNNI_INLINE __m512i QueryQuad(const int8_t* q8, size_t c) {
  int32_t four;
  memcpy(&four, q8 + 4 * c, sizeof(four));
  return _mm512_set1_epi32(four);
}

// R (1..4) queries against the tiles [tile_begin, tile_end).
template <size_t R>
ATTN_KV_VNNI_TARGET void Scores(const uint8_t* queries, size_t head_dim, const uint8_t* keys,
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
  for (size_t tile = tile_begin; tile < tile_end; ++tile) {
    const uint8_t* k = keys + tile * tile_bytes;
    const float* kscale = reinterpret_cast<const float*>(k);
    const uint8_t* kq = k + 4 * blocks * kTile;
    __m512 t[R];
    for (size_t r = 0; r < R; ++r) t[r] = _mm512_setzero_ps();
    for (size_t b = 0; b < blocks; ++b) {
      const size_t end = std::min(quads, (b + 1) * kQuadsPerBlock);
      __m512i acc[R], acc2 = _mm512_setzero_si512();
      int32_t qsum[R];
      for (size_t r = 0; r < R; ++r) {
        acc[r] = _mm512_setzero_si512();
        qsum[r] = 0;
      }
      size_t c = b * kQuadsPerBlock;
      if (R == 1) {  // two chains for a lone query
        for (; c + 2 <= end; c += 2) {
          const __m512i k0 = _mm512_xor_si512(_mm512_loadu_si512(kq + c * 64), flip);
          const __m512i k1 = _mm512_xor_si512(_mm512_loadu_si512(kq + c * 64 + 64), flip);
          acc[0] = Dpbusd(acc[0], k0, QueryQuad(q8[0], c));
          acc2 = Dpbusd(acc2, k1, QueryQuad(q8[0], c + 1));
        }
      }
      for (; c < end; ++c) {
        const __m512i kv = _mm512_xor_si512(_mm512_loadu_si512(kq + c * 64), flip);
        for (size_t r = 0; r < R; ++r) acc[r] = Dpbusd(acc[r], kv, QueryQuad(q8[r], c));
      }
      for (size_t r = 0; r < R; ++r) {
        for (size_t i = b * kKvInt8Block; i < end * 4; ++i) qsum[r] += q8[r][i];
      }
      const __m512 ks = _mm512_loadu_ps(kscale + b * kTile);
      for (size_t r = 0; r < R; ++r) {
        __m512i sum = acc[r];
        if (R == 1) sum = _mm512_add_epi32(sum, acc2);
        sum = _mm512_sub_epi32(sum, _mm512_set1_epi32(128 * qsum[r]));
        t[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum),
                               _mm512_mul_ps(ks, _mm512_set1_ps(qscale[r][b])), t[r]);
      }
    }
    for (size_t r = 0; r < R; ++r) _mm512_storeu_ps(scores + r * lds + tile * kTile, t[r]);
  }
}

}  // namespace

ATTN_KV_VNNI_TARGET void KvInt8ScoresVnni(const uint8_t* queries, size_t rows, size_t head_dim,
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

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#else  // !ATTN_KV_INT8_HAVE_VNNI

void KvInt8ScoresVnni(const uint8_t*, size_t, size_t, const uint8_t*, size_t, size_t, float*,
                      size_t) {}

#endif  // ATTN_KV_INT8_HAVE_VNNI

}  // namespace detail
}  // namespace simd
}  // namespace attn
