// The int8 GEMM on AVX-512 VNNI (simd/matmul_int8.h's MatMulInt8 when
// Int8VnniActive()). Highway 1.0.3 has no 8-bit dot product, so this one
// kernel uses intrinsics: vpdpbusd multiplies 64 u8 (A) by 64 s8 (B) and
// adds each group of 4 products into one of 16 int32 lanes. The functions
// are compiled for AVX-512 F/BW/VL/VNNI by target attributes (the rest of
// the binary stays baseline x86-64) and only called after the run-time
// check CpuHasInt8Vnni(). Compiled on x86-64 only; elsewhere the entry
// points are stubs that are never reached.
//
// Packing (VnniInt8Layout()): B in panels of kNR = 32 columns; per group
// of 4 k, a panel holds 32 columns x 4 bytes (2 zmm: column j's 4 k in
// lane j of its vector), K padded with zeros to a multiple of 4. Each A
// micro-panel of kMR rows is packed per call as [K/4][kMR][4 bytes], so
// that one 4-byte broadcast feeds a row's 4 k to every column.
//
// Loop nest (shared with simd/matmul_int8-inl.h: ForEachInt8Tile in
// simd/matmul_int8_internal.h): column blocks of packed B of about
// kMatMulInt8ColumnBlockBytes (kept in L2), then kMR rows of A (their
// packed micro-panel kept in L1), then the panels of the block; each tile
// sums all of K in int32 registers, K above kInt8ChunkK in int32 chunks
// added in int64 and dequantized with the int64 column sums
// (Int8TileInChunks). vpdpbusd does not saturate: each lane adds 4
// products of at most 255 * 127, so a chunk's lane stays below 2^31
// (simd/matmul_int8.h, "Exactness").
//
// Register tile kMR x kNR = 12 x 32 (tuned on Sapphire Rapids: 32 zmm,
// vpdpbusd on ports 0 and 5, latency 5): 12 x 2 = 24 accumulators + 2 B
// + 1 A broadcast = 27 registers. Per group of 4 k: 2 loads + 12
// broadcasts (load-port uops only) per 24 vpdpbusd (12 cycles); 24
// independent chains cover the 5-cycle latency at 2 per cycle. At K = 768
// the A micro-panel (12 x 768 bytes) and the streaming B panel (768 x 32
// bytes) take 33 of the 48 KiB of L1 together. 32 columns divide 768 and
// 2304 (and 64, the head width). Single-threaded at 8192 x 2304 x 768 it
// runs at about 79% of the vpdpbusd peak (530 of 670 GOP/s per core, CPU
// time), 83% with B in L2; 14 x 2 and 9 x 3 measured the same within
// noise, 6 x 4 and 8 x 3 3-6% slower, and software prefetching of B 7%
// slower. A single row (decoding), which streams B once at memory speed,
// prefetches it 4 KiB ahead: GPT-2's decode projections (K = 768, N = 2304
// and 768) from L3 10% faster on Zen 4.

#include <stddef.h>
#include <stdint.h>

#include <algorithm>

#include "simd/matmul_int8.h"
#include "simd/matmul_int8_internal.h"
#include "simd/vnni.h"

namespace attn {
namespace simd {
namespace detail {

#ifndef ATTN_INT8_VNNI_ROWS
#define ATTN_INT8_VNNI_ROWS 12
#endif
#ifndef ATTN_INT8_VNNI_VECS
#define ATTN_INT8_VNNI_VECS 2
#endif

namespace {

constexpr size_t kMR = ATTN_INT8_VNNI_ROWS;  // rows of a register tile
constexpr size_t kNV = ATTN_INT8_VNNI_VECS;  // zmm of 16 int32 columns per tile row
constexpr size_t kNR = kNV * 16;             // columns of a panel
constexpr size_t kGroupBytes = kNR * 4;      // one group of 4 k of a panel
// Groups of 4 k per int32 chunk.
constexpr size_t kChunkGroups = kInt8ChunkK / 4;
// One-row tiles (a decoding step's projections: one pass over B, nothing to
// reuse) prefetch B this far ahead of the group they load.
constexpr size_t kRowPrefetchBytes = 4096;

}  // namespace

Int8Layout VnniInt8Layout() {
  Int8Layout layout;
  layout.id = kInt8VnniLayoutId;
  layout.panel_width = kNR;
  layout.k_step = 4;
  layout.elem_bytes = 1;
  return layout;
}

#if ATTN_HAVE_VNNI

bool CpuHasInt8Vnni() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  }();
  return has;
}

ATTN_VNNI_DIAGNOSTICS_PUSH

namespace {

// Bits [lo, hi) of a 16-lane mask, lo and hi relative to the vector and
// clamped to [0, 16].
__mmask16 LaneMask(size_t lo, size_t hi) {
  if (hi <= lo) return 0;
  const uint32_t upto_hi = hi >= 16 ? 0xFFFFu : (1u << hi) - 1u;
  const uint32_t below_lo = (1u << lo) - 1u;
  return static_cast<__mmask16>(upto_hi & ~below_lo);
}

// The upper 8 floats of v.
ATTN_VNNI_INLINE __m256 Upper256(__m512 v) {
  return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}

// float(double(s) * double(x) + double(b)) per lane (simd::DequantizeInt8):
// the double product is exact, the FMA rounds once.
ATTN_VNNI_INLINE __m512 MulAddExact(__m512 s, __m512 x, __m512 b) {
  const __m256 lo = _mm512_cvtpd_ps(_mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(s)),
                                                    _mm512_cvtps_pd(_mm512_castps512_ps256(x)),
                                                    _mm512_cvtps_pd(_mm512_castps512_ps256(b))));
  const __m256 hi = _mm512_cvtpd_ps(_mm512_fmadd_pd(
      _mm512_cvtps_pd(Upper256(s)), _mm512_cvtps_pd(Upper256(x)), _mm512_cvtps_pd(Upper256(b))));
  return _mm512_castpd_ps(
      _mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(lo)), _mm256_castps_pd(hi), 1));
}

// acc += one group of 4 k: kRows broadcasts of the packed A (4 bytes per
// row) times kVecs vectors of a packed B panel.
template <size_t kRows, size_t kVecs>
ATTN_VNNI_INLINE void GroupStep(const uint8_t* ap, const uint8_t* bp,
                                __m512i (&acc)[kRows][kVecs]) {
  __m512i bv[kVecs];
  for (size_t j = 0; j < kVecs; ++j) bv[j] = _mm512_load_si512(bp + j * 64);
  for (size_t i = 0; i < kRows; ++i) {
    const __m512i av = Broadcast4(ap, i);
    for (size_t j = 0; j < kVecs; ++j) acc[i][j] = Dpbusd(acc[i][j], av, bv[j]);
  }
}

// The int32 sums of kRows rows of the packed A micro-panel (kRows * 4 bytes
// per group) times the first kVecs vectors of one packed B panel
// (kGroupBytes per group) over `groups` groups of 4 k (at most
// kChunkGroups: exact in int32), then either dequantized into o (kRaw
// false; masked: only columns [o.col_lo, o.col_hi) of C and bias are
// touched) or stored as int32 into raw[kRows][kVecs * 16] (kRaw true). One
// function with its accumulators as locals, so that they stay in registers.
template <size_t kRows, size_t kVecs, bool kRaw>
ATTN_VNNI_TARGET __attribute__((noinline)) void TileSums(const uint8_t* ap, const uint8_t* bp,
                                                         size_t groups, const Int8TileOut& o,
                                                         int32_t* raw) {
  // Small tiles (few rows: decoding, edge tiles) have too few independent
  // vpdpbusd chains to cover its latency (5 cycles, 2 per cycle): they sum
  // kSplit interleaved groups into separate accumulators, added at the end
  // (integer sums: the same result in any order).
  constexpr size_t kSplit = kRows * kVecs >= 10 ? 1 : (kRows * kVecs >= 4 ? 2 : 4);
  __m512i acc[kRows][kVecs], acc1[kRows][kVecs], acc2[kRows][kVecs], acc3[kRows][kVecs];
  for (size_t i = 0; i < kRows; ++i) {
    for (size_t j = 0; j < kVecs; ++j) {
      acc[i][j] = acc1[i][j] = acc2[i][j] = acc3[i][j] = _mm512_setzero_si512();
    }
  }
  size_t g = 0;
  for (; g + kSplit <= groups; g += kSplit) {
    if constexpr (kRows == 1) {
      // An address, not a pointer: past the last panel it lies outside B
      // (a prefetch there is harmless).
      const uintptr_t ahead = reinterpret_cast<uintptr_t>(bp) + kRowPrefetchBytes;
      for (size_t x = 0; x < kSplit * kGroupBytes; x += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(ahead + x), _MM_HINT_T0);
      }
    }
    GroupStep<kRows, kVecs>(ap, bp, acc);
    if constexpr (kSplit > 1) GroupStep<kRows, kVecs>(ap + kRows * 4, bp + kGroupBytes, acc1);
    if constexpr (kSplit > 2) {
      GroupStep<kRows, kVecs>(ap + 2 * kRows * 4, bp + 2 * kGroupBytes, acc2);
      GroupStep<kRows, kVecs>(ap + 3 * kRows * 4, bp + 3 * kGroupBytes, acc3);
    }
    ap += kSplit * kRows * 4;
    bp += kSplit * kGroupBytes;
  }
  for (; g < groups; ++g) {  // fewer than kSplit groups left
    GroupStep<kRows, kVecs>(ap, bp, acc);
    ap += kRows * 4;
    bp += kGroupBytes;
  }
  for (size_t i = 0; i < kRows; ++i) {
    for (size_t j = 0; j < kVecs; ++j) {
      if constexpr (kSplit > 1) acc[i][j] = _mm512_add_epi32(acc[i][j], acc1[i][j]);
      if constexpr (kSplit > 2) {
        acc[i][j] = _mm512_add_epi32(acc[i][j], _mm512_add_epi32(acc2[i][j], acc3[i][j]));
      }
    }
  }
  if constexpr (kRaw) {
    for (size_t i = 0; i < kRows; ++i) {
      for (size_t j = 0; j < kVecs; ++j) {
        _mm512_storeu_si512(raw + (i * kVecs + j) * 16, acc[i][j]);
      }
    }
    return;
  }
  // Dequantize: groups <= kChunkGroups, so acc - a_zp * colsum (int32
  // column sums) cannot overflow int32. The columns of vector v to store.
  __mmask16 mask[kVecs];
  for (size_t v = 0; v < kVecs; ++v) {
    const size_t v0 = v * 16;
    mask[v] =
        LaneMask(std::max(o.col_lo, v0) - v0, std::min(o.col_hi, v0 + 16) - std::min(o.col_hi, v0));
  }
  for (size_t i = 0; i < kRows; ++i) {
    const __m512 vs = _mm512_set1_ps(o.a_scale[i]);
    const __m512i vzp = _mm512_set1_epi32(o.a_zp[i]);
    for (size_t j = 0; j < kVecs; ++j) {
      const __m512i x = _mm512_sub_epi32(
          acc[i][j], _mm512_mullo_epi32(vzp, _mm512_load_si512(o.colsum + j * 16)));
      const __m512 xf = _mm512_cvtepi32_ps(x);
      const __m512 s = _mm512_mul_ps(vs, _mm512_load_ps(o.w_scale + j * 16));
      const __m512 r = o.bias != nullptr
                           ? MulAddExact(s, xf, _mm512_maskz_loadu_ps(mask[j], o.bias + j * 16))
                           : _mm512_mul_ps(s, xf);
      _mm512_mask_storeu_ps(o.c + i * o.ldc + j * 16, mask[j], r);
    }
  }
}

// One register tile: TileSums dequantized into o; K above kInt8ChunkK in
// int32 chunks added in int64, dequantized per element by the reference's
// formula.
template <size_t kRows, size_t kVecs>
__attribute__((noinline)) void Tile(const uint8_t* ap, const uint8_t* bp, size_t groups,
                                    const Int8TileOut& o) {
  if (groups <= kChunkGroups) {
    TileSums<kRows, kVecs, false>(ap, bp, groups, o, nullptr);
    return;
  }
  Int8TileInChunks<kRows, kVecs * 16>(
      groups, kChunkGroups, o, [&](size_t g0, size_t count, int32_t* part) {
        TileSums<kRows, kVecs, true>(ap + g0 * kRows * 4, bp + g0 * kGroupBytes, count, o, part);
      });
}

}  // namespace

void MatMulInt8Vnni(const uint8_t* aq, size_t ldaq, const float* a_scale, const int32_t* a_zp,
                    size_t m, const QuantizedMatrix& b, float* c, size_t ldc, size_t n_begin,
                    size_t n_end, const float* bias) {
  ForEachInt8Tile<kMR, kNV, 16, 4, uint8_t>(
      aq, ldaq, a_scale, a_zp, m, b, c, ldc, n_begin, n_end, bias,
      [](auto rows, auto vecs, const uint8_t* ap, const uint8_t* bp, size_t groups,
         const Int8TileOut& o) { Tile<rows, vecs>(ap, bp, groups, o); });
}

ATTN_VNNI_DIAGNOSTICS_POP

#else  // !ATTN_HAVE_VNNI

bool CpuHasInt8Vnni() { return false; }

void MatMulInt8Vnni(const uint8_t*, size_t, const float*, const int32_t*, size_t,
                    const QuantizedMatrix&, float*, size_t, size_t, size_t, const float*) {}

#endif  // ATTN_HAVE_VNNI

}  // namespace detail
}  // namespace simd
}  // namespace attn
