// Per-target building blocks of the GEMM (see simd/matmul-inl.h for the loop
// nest): the register tile and cache-blocking constants with their
// derivation, packing of op(B) into K x kNR panels, and the kMR x kNR
// micro-kernel with its edge variants. Included by simd/matmul-inl.h.

#if defined(ATTN_SIMD_MATMUL_TILE_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ATTN_SIMD_MATMUL_TILE_INL_H_
#undef ATTN_SIMD_MATMUL_TILE_INL_H_
#else
#define ATTN_SIMD_MATMUL_TILE_INL_H_
#endif

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>

#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "simd/matmul.h"
#include "simd/transpose-inl.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

namespace matmul_detail {

#if HWY_HAVE_SCALABLE
// SVE (SVE, SVE2, SVE_256, SVE2_128): vectors are sizeless (no arrays of
// them) and their length may be known only at run time, so the GEMM works on
// their first 128 bits (a capped tag: a compile-time panel width, as in the
// int8 kernel) with the tile's accumulators as named variables, one vector
// column at a time (MicroTile, DotTile).
using DF = hn::CappedTag<float, 4>;
#else
using DF = hn::ScalableTag<float>;
#endif
using VF = hn::Vec<DF>;

// Register tile kMR x (kNV vectors), per target. Per k step the micro-kernel
// loads kNV vectors of B, broadcasts kMR floats of A and issues kMR * kNV
// MulAdd into independent accumulators, which must hide the FMA latency
// (4 cycles x 2 ports = 8 in flight) and fit the register file with the kNV
// B vectors and one broadcast:
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
// AVX-512 (tuned on Sapphire Rapids): 32 zmm. 12 x 2 = 24 accumulators
// + 2 B + 1 A broadcast = 27 registers; 2 loads + 12 broadcasts per 24 FMA
// (12 cycles at 2 FMA/cycle) stays below the 2-3 loads/cycle of the core,
// and 32 columns divide the attention widths (64, 1024) and 768/2304.
// (8 x 3 would need fewer loads but wastes 2/3 of a panel at N = 64.)
constexpr size_t kMR = 12;
constexpr size_t kNV = 2;
#elif HWY_ARCH_X86 && HWY_TARGET == HWY_AVX2
// AVX2: 16 ymm. 6 x 2 = 12 accumulators + 2 B + 1 A = 15 registers.
constexpr size_t kMR = 6;
constexpr size_t kNV = 2;
#elif HWY_TARGET == HWY_SCALAR
// One lane: 4 x 4 = 16 independent scalar accumulators.
constexpr size_t kMR = 4;
constexpr size_t kNV = 4;
#elif HWY_HAVE_SCALABLE
// SVE (see DF): 4 rows x 2 vectors of 4 columns, one vector column at a time.
constexpr size_t kMR = 4;
constexpr size_t kNV = 2;
#else
// 128-bit targets (SSE4/SSSE3 lack FMA: MulAdd is a Mul and an Add needing a
// temporary): 4 x 2 = 8 accumulators + 2 B + 1 A + 1 temporary.
constexpr size_t kMR = 4;
constexpr size_t kNV = 2;
#endif
constexpr size_t kLanes = hn::MaxLanes(DF());
constexpr size_t kNR = kNV * kLanes;  // columns of a panel
// Cache blocking (depends on K only, so that every split of C over rows or
// columns sees the same K blocks and gives the same bits):
// - K blocks: K is cut into equal blocks of at most kMaxKC, so that the A
//   micro-panel (kMR x kc floats: 12 KiB at kc = 256 on AVX3) and the
//   panel streaming through (kc x kNR: 32 KiB) fit the 48 KiB L1 together.
//   (Measured on SPR: 256 beats 192, 384, 512 and 768 by 2-15%; fewer K
//   blocks save C traffic but let B evict A from L1.)
// - column blocks: the packed B block (kc x nc floats) takes about kL2Bytes,
//   half the 2 MiB L2, leaving room for the A and C lines streaming through.
constexpr size_t kMaxKC = 256;
constexpr size_t kL2Bytes = simd::kMatMulColumnBlockBytes;

// K block length: K cut into equal blocks of at most kMaxKC.
inline size_t KBlock(size_t k) {
  const size_t blocks = (k + kMaxKC - 1) / kMaxKC;
  return std::max<size_t>(1, (k + blocks - 1) / blocks);
}

// Column block, in panels: the K x nc packed B block takes about kL2Bytes.
inline size_t ColumnBlockPanels(size_t k) {
  return std::max<size_t>(1, kL2Bytes / (std::max<size_t>(1, k) * kNR * sizeof(float)));
}

// Copies op(B)[k0 .. k0 + kc, n0 .. n0 + cols) into dst (kc rows of kNR
// floats, 64-byte aligned), zero-filling columns cols..kNR. cols <= kNR.
inline void PackPanel(const float* HWY_RESTRICT b, size_t ldb, bool b_transposed, size_t k0,
                      size_t kc, size_t n0, size_t cols, float* HWY_RESTRICT dst) {
  const DF d;
  if (!b_transposed) {
    for (size_t k = 0; k < kc; ++k) {
      const float* HWY_RESTRICT src = b + (k0 + k) * ldb + n0;
      float* HWY_RESTRICT out = dst + k * kNR;
      if (cols == kNR) {
        for (size_t j = 0; j < kNR; j += kLanes) hn::Store(hn::LoadU(d, src + j), d, out + j);
      } else {
        size_t j = 0;
        for (; j < cols; ++j) out[j] = src[j];
        for (; j < kNR; ++j) out[j] = 0.0f;
      }
    }
    return;
  }
  // B is N x K: column n of op(B) is row n of B, so this is a transpose.
  // Chunks of 64 k keep both the 32 source row pieces and the kc x kNR
  // destination piece in L1; inside, 4 x 4 blocks go through registers.
  constexpr size_t kChunk = 64;
  for (size_t kb = 0; kb < kc; kb += kChunk) {
    const size_t kb_end = std::min(kc, kb + kChunk);
    size_t j = 0;
#if HWY_TARGET != HWY_SCALAR
    for (; j + 4 <= cols; j += 4) {
      const float* HWY_RESTRICT src = b + (n0 + j) * ldb + k0;
      size_t k = kb;
      for (; k + 4 <= kb_end; k += 4) {
        const hn::Full128<float> d4;
        StoreTransposed4x4(d4, hn::LoadU(d4, src + k), hn::LoadU(d4, src + ldb + k),
                           hn::LoadU(d4, src + 2 * ldb + k), hn::LoadU(d4, src + 3 * ldb + k),
                           dst + k * kNR + j, kNR);
      }
      for (; k < kb_end; ++k) {
        for (size_t t = 0; t < 4; ++t) dst[k * kNR + j + t] = src[t * ldb + k];
      }
    }
#endif
    for (; j < cols; ++j) {
      const float* HWY_RESTRICT src = b + (n0 + j) * ldb + k0;
      for (size_t k = kb; k < kb_end; ++k) dst[k * kNR + j] = src[k];
    }
    for (; j < kNR; ++j) {
      for (size_t k = kb; k < kb_end; ++k) dst[k * kNR + j] = 0.0f;
    }
  }
}

#if HWY_HAVE_SCALABLE
// Written for the SVE targets (sizeless vectors, see DF): StoreTile's store
// of one vector, row i and vector j of the tile, with the same arithmetic.
HWY_INLINE void StoreTileVec(VF acc, size_t i, size_t j, float* HWY_RESTRICT c, size_t ldc,
                             const float* HWY_RESTRICT bias, float scale, bool load_c) {
  const DF d;
  const VF vscale = hn::Set(d, scale);
  float* HWY_RESTRICT cv = c + i * ldc + j * kLanes;
  VF r = load_c ? hn::MulAdd(vscale, acc, hn::LoadU(d, cv)) : hn::Mul(vscale, acc);
  if (bias != nullptr) r = hn::Add(r, hn::LoadU(d, bias + j * kLanes));
  hn::StoreU(r, d, cv);
}

// MicroTile's contract (see below) for the SVE targets: no arrays of their
// sizeless vectors, so the kRows <= 4 accumulators of one vector column are
// named variables and the k loop runs once per column; no prefetching. Each
// element is the same sequence of MulAdd, in ascending k, as in full tiles.
template <size_t kRows, size_t kVecs>
HWY_NOINLINE void MicroTile(const float* HWY_RESTRICT a, size_t lda,
                            const float* HWY_RESTRICT panel, size_t ldp, size_t kc,
                            float* HWY_RESTRICT c, size_t ldc, const float* HWY_RESTRICT bias,
                            float scale, bool load_c, size_t col_lo, size_t col_hi,
                            const float* HWY_RESTRICT /*next_a*/, size_t /*next_rows*/,
                            size_t /*next_kc*/) {
  static_assert(kRows <= 4, "four named accumulators");
  constexpr size_t kWidth = kVecs * kLanes;
  const DF d;
  const bool full = col_lo == 0 && col_hi == kWidth;
  // Edge tile: through an aligned buffer, same arithmetic.
  HWY_ALIGN float tile[kRows * kWidth] = {};
  HWY_ALIGN float tile_bias[kWidth] = {};
  float* out = c;
  size_t ld_out = ldc;
  const float* out_bias = bias;
  if (!full) {
    if (load_c) {
      for (size_t i = 0; i < kRows; ++i) {
        for (size_t j = col_lo; j < col_hi; ++j) tile[i * kWidth + j] = c[i * ldc + j];
      }
    }
    if (bias != nullptr) {
      for (size_t j = col_lo; j < col_hi; ++j) tile_bias[j] = bias[j];
    }
    out = tile;
    ld_out = kWidth;
    out_bias = bias != nullptr ? tile_bias : nullptr;
  }
  for (size_t j = 0; j < kVecs; ++j) {
    VF a0 = hn::Zero(d), a1 = a0, a2 = a0, a3 = a0;
    for (size_t k = 0; k < kc; ++k) {
      const VF bv = hn::LoadU(d, panel + k * ldp + j * kLanes);
      a0 = hn::MulAdd(hn::Set(d, a[k]), bv, a0);
      if constexpr (kRows > 1) a1 = hn::MulAdd(hn::Set(d, a[lda + k]), bv, a1);
      if constexpr (kRows > 2) a2 = hn::MulAdd(hn::Set(d, a[2 * lda + k]), bv, a2);
      if constexpr (kRows > 3) a3 = hn::MulAdd(hn::Set(d, a[3 * lda + k]), bv, a3);
    }
    StoreTileVec(a0, 0, j, out, ld_out, out_bias, scale, load_c);
    if constexpr (kRows > 1) StoreTileVec(a1, 1, j, out, ld_out, out_bias, scale, load_c);
    if constexpr (kRows > 2) StoreTileVec(a2, 2, j, out, ld_out, out_bias, scale, load_c);
    if constexpr (kRows > 3) StoreTileVec(a3, 3, j, out, ld_out, out_bias, scale, load_c);
  }
  if (!full) {
    for (size_t i = 0; i < kRows; ++i) {
      for (size_t j = col_lo; j < col_hi; ++j) c[i * ldc + j] = tile[i * kWidth + j];
    }
  }
}
#else
// The store of one tile of kRows x kVecs vectors: C = scale * acc (+ C when
// load_c) (+ bias). `c` has row stride ldc and kRows x kVecs * kLanes valid
// floats; bias is kVecs * kLanes floats or nullptr. Full and edge tiles both
// go through this function, so that the arithmetic per element is the same.
template <size_t kRows, size_t kVecs>
HWY_INLINE void StoreTile(const VF (&acc)[kRows][kVecs], float* HWY_RESTRICT c, size_t ldc,
                          const float* HWY_RESTRICT bias, float scale, bool load_c) {
  const DF d;
  const VF vscale = hn::Set(d, scale);
  for (size_t i = 0; i < kRows; ++i) {
    float* HWY_RESTRICT crow = c + i * ldc;
    for (size_t j = 0; j < kVecs; ++j) {
      VF r = load_c ? hn::MulAdd(vscale, acc[i][j], hn::LoadU(d, crow + j * kLanes))
                    : hn::Mul(vscale, acc[i][j]);
      if (bias != nullptr) r = hn::Add(r, hn::LoadU(d, bias + j * kLanes));
      hn::StoreU(r, d, crow + j * kLanes);
    }
  }
}

// One register tile: kRows rows of A (row stride lda, kc columns read) times
// the first kVecs vectors of one panel of op(B) (kc rows at a stride of ldp
// floats: kNR when packed), stored into C columns [col_lo, col_hi) of the
// tile (c, bias point at the tile's column 0). col_lo < col_hi <= kVecs *
// kLanes. Every element is the same sequence of MulAdd whatever kRows, kVecs
// and the column range, so edge tiles give the same bits as full ones.
template <size_t kRows, size_t kVecs>
HWY_NOINLINE void MicroTile(const float* HWY_RESTRICT a, size_t lda,
                            const float* HWY_RESTRICT panel, size_t ldp, size_t kc,
                            float* HWY_RESTRICT c, size_t ldc, const float* HWY_RESTRICT bias,
                            float scale, bool load_c, size_t col_lo, size_t col_hi,
                            const float* HWY_RESTRICT next_a, size_t next_rows, size_t next_kc) {
  constexpr size_t kWidth = kVecs * kLanes;
  const DF d;
  const bool full = col_lo == 0 && col_hi == kWidth;
  if (full) {
    // The C tile arrives in cache while the FMAs run.
    for (size_t i = 0; i < kRows; ++i) {
      hwy::Prefetch(c + i * ldc);
      hwy::Prefetch(c + i * ldc + kWidth - 1);
    }
  }
  VF acc[kRows][kVecs];
  for (size_t i = 0; i < kRows; ++i) {
    for (size_t j = 0; j < kVecs; ++j) acc[i][j] = hn::Zero(d);
  }
  // A is addressed as groups of three rows from one pointer each: row 3g+t
  // is ag[g] + t * lda, which x86 encodes as base + lda * {0, 4, 8} bytes.
  // Twelve rows thus need 4 + 1 general registers instead of 12, which
  // leaves no spills in the loop (a spill reload costs a p0/p5 slot that
  // the FMAs need). GCC keeps this shape only without unrolling k.
  constexpr size_t kGroups = (kRows + 2) / 3;
  const float* HWY_RESTRICT ag[kGroups];
  for (size_t g = 0; g < kGroups; ++g) ag[g] = a + 3 * g * lda;
  const float* HWY_RESTRICT bk = panel;
  // Per 64-byte line of A (16 k steps), one line of each row of the next A
  // micro-panel is prefetched: by the end of the tile all of it is on its
  // way, spread evenly instead of in a burst that fills the line buffers.
  constexpr size_t kLineFloats = 64 / sizeof(float);
  for (size_t k0 = 0; k0 < kc; k0 += kLineFloats) {
    if (next_a != nullptr && k0 < next_kc) {
      for (size_t r = 0; r < next_rows; ++r) hwy::Prefetch(next_a + r * lda + k0);
    }
    const size_t k1 = std::min(kc, k0 + kLineFloats);
    for (size_t k = k0; k < k1; ++k) {
      VF bv[kVecs];
      for (size_t j = 0; j < kVecs; ++j) bv[j] = hn::LoadU(d, bk + j * kLanes);
      for (size_t i = 0; i < kRows; ++i) {
        const VF av = hn::Set(d, ag[i / 3][(i % 3) * lda]);
        for (size_t j = 0; j < kVecs; ++j) acc[i][j] = hn::MulAdd(av, bv[j], acc[i][j]);
      }
      for (size_t g = 0; g < kGroups; ++g) ag[g] += 1;
      bk += ldp;
    }
  }

  if (full) {
    StoreTile<kRows, kVecs>(acc, c, ldc, bias, scale, load_c);
    return;
  }
  // Edge tile: through an aligned buffer, same arithmetic.
  HWY_ALIGN float tile[kRows * kWidth] = {};
  HWY_ALIGN float tile_bias[kWidth] = {};
  if (load_c) {
    for (size_t i = 0; i < kRows; ++i) {
      for (size_t j = col_lo; j < col_hi; ++j) tile[i * kWidth + j] = c[i * ldc + j];
    }
  }
  if (bias != nullptr) {
    for (size_t j = col_lo; j < col_hi; ++j) tile_bias[j] = bias[j];
  }
  StoreTile<kRows, kVecs>(acc, tile, kWidth, bias != nullptr ? tile_bias : nullptr, scale, load_c);
  for (size_t i = 0; i < kRows; ++i) {
    for (size_t j = col_lo; j < col_hi; ++j) c[i * ldc + j] = tile[i * kWidth + j];
  }
}

// One row of A (kc floats at a) times four whole panels of op(B) (panel q at
// panels[q], kc rows at a stride of ldp floats) into C columns [q * kNR,
// (q + 1) * kNR) of c (bias likewise, or nullptr): the GEMV shape (M = 1),
// where MicroTile<1, kNV> has kNV independent chains per panel, too few to
// hide the FMA latency or keep enough loads in flight. Each element is the
// same sequence of MulAdd and the same StoreTile as in MicroTile<1, kNV>, so
// the bits are the same.
inline HWY_NOINLINE void RowTimesFourPanels(const float* HWY_RESTRICT a, const float* const* panels,
                                            size_t ldp, size_t kc, float* HWY_RESTRICT c,
                                            const float* HWY_RESTRICT bias, float scale,
                                            bool load_c) {
  const DF d;
  VF acc[4][1][kNV];
  for (size_t q = 0; q < 4; ++q) {
    for (size_t j = 0; j < kNV; ++j) acc[q][0][j] = hn::Zero(d);
  }
  const float* HWY_RESTRICT p0 = panels[0];
  const float* HWY_RESTRICT p1 = panels[1];
  const float* HWY_RESTRICT p2 = panels[2];
  const float* HWY_RESTRICT p3 = panels[3];
  for (size_t k = 0; k < kc; ++k) {
    const VF av = hn::Set(d, a[k]);
    for (size_t j = 0; j < kNV; ++j) {
      acc[0][0][j] = hn::MulAdd(av, hn::LoadU(d, p0 + k * ldp + j * kLanes), acc[0][0][j]);
      acc[1][0][j] = hn::MulAdd(av, hn::LoadU(d, p1 + k * ldp + j * kLanes), acc[1][0][j]);
      acc[2][0][j] = hn::MulAdd(av, hn::LoadU(d, p2 + k * ldp + j * kLanes), acc[2][0][j]);
      acc[3][0][j] = hn::MulAdd(av, hn::LoadU(d, p3 + k * ldp + j * kLanes), acc[3][0][j]);
    }
  }
  for (size_t q = 0; q < 4; ++q) {
    StoreTile<1, kNV>(acc[q], c + q * kNR, 0, bias != nullptr ? bias + q * kNR : nullptr, scale,
                      load_c);
  }
}

#endif  // HWY_HAVE_SCALABLE

}  // namespace matmul_detail
// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#endif  // ATTN_SIMD_MATMUL_TILE_INL_H_
