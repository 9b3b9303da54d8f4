// Per-target int8 kernels behind simd/matmul_int8.h (included once per
// Highway target by simd/matmul_int8.cc and by
// tests/simd/matmul_int8_test.cc): the packed int8 GEMM for every target
// the AVX-512 VNNI kernel (simd/matmul_int8_vnni.cc) does not cover: AVX2,
// SSE4, SSSE3, SCALAR, NEON, SVE, and AVX3 on CPUs without VNNI. The
// register tile shape and the packed layout are in
// simd/matmul_int8_layout-inl.h, the activation quantization
// (QuantizeRowsKernel, AllFiniteKernel) in simd/matmul_int8_quantize-inl.h;
// this file includes both.
//
// Highway 1.0.3 has no 8-bit dot product, so this GEMM multiplies in int16:
// B is packed as int16 at QuantizeAndPackB time, each A micro-panel is
// widened to int16 as it is packed, and ReorderWidenMulAccumulate (int16 ->
// int32) multiplies and adds pairs of k (x86: one vpmaddwd for 2 k of 8 or
// 16 columns, plus the add; NEON: vmlal on the vector halves and a pairwise
// add at the end).
//
// Loop nest (the float32 GEMM's, simd/matmul-inl.h, without K blocks;
// simd::detail::ForEachInt8Tile, shared with the VNNI kernel):
//   for each column block of packed B       (~kMatMulInt8ColumnBlockBytes: stays in L2)
//     for each kMR rows of A
//       pack their A micro-panel, all of K  (kMR x K int16: in L1 for K up to ~2k)
//       for each kNR-column panel of the block
//         Tile: kMR x kNR int32 accumulators over all of K, then dequantize
// There are no K blocks: the dequantization needs each element's complete
// integer sum, so the sum stays in registers for all of K instead of
// going through memory between blocks. K above kInt8ChunkK is summed in
// int32 chunks that are added in int64, the zero-point correction in int64
// too (Tile's slow path, simd::detail::Int8TileInChunks); the fast path,
// K <= kInt8ChunkK, runs nothing extra: its int32 sums cannot overflow
// (simd/matmul_int8.h, "Exactness").
//
// Every element's integer sum is exact, so nothing depends on the tile, the
// split of C or the target: all kernels give the same bits as
// MatMulInt8Reference.
//
// Memory: A, B and bias are only read, C only written, inside their
// rectangles; edge tiles compute whole vectors and store the valid columns
// through an aligned stack buffer.

// Per-target section: re-included once per target (toggle guard).
#if defined(ATTN_SIMD_MATMUL_INT8_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ATTN_SIMD_MATMUL_INT8_INL_H_
#undef ATTN_SIMD_MATMUL_INT8_INL_H_
#else
#define ATTN_SIMD_MATMUL_INT8_INL_H_
#endif

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "hwy/highway.h"
#include "simd/matmul_int8.h"
#include "simd/matmul_int8_internal.h"
#include "simd/matmul_int8_layout-inl.h"
#include "simd/matmul_int8_quantize-inl.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

namespace int8_detail {

// The kKStep A values of one row and step (p[0..kKStep)) in every pair of
// int16 lanes.
HWY_INLINE VI16 BroadcastA(const int16_t* HWY_RESTRICT p) {
  const DI16 d16;
#if HWY_TARGET == HWY_SCALAR
  return hn::Set(d16, p[0]);
#else
  // (p[0], p[1]) as one little-endian int32, broadcast: one load uop.
  int32_t pair;
  memcpy(&pair, p, sizeof(pair));
  return hn::BitCast(d16, hn::Set(DI32(), pair));
#endif
}

// float(double(s) * double(x) + double(b)) per lane: the double product is
// exact, so a fused multiply-add or not gives the same bits (see
// simd::DequantizeInt8).
HWY_INLINE VF MulAddExact(VF s, VF x, VF b) {
  const DF df;
#if HWY_TARGET == HWY_SCALAR
  return hn::Set(df, static_cast<float>(static_cast<double>(hn::GetLane(s)) *
                                            static_cast<double>(hn::GetLane(x)) +
                                        static_cast<double>(hn::GetLane(b))));
#else
  const hn::Half<DF> dh;
  const hn::Repartition<double, DF> dd;
  const auto lo =
      hn::MulAdd(hn::PromoteTo(dd, hn::LowerHalf(dh, s)), hn::PromoteTo(dd, hn::LowerHalf(dh, x)),
                 hn::PromoteTo(dd, hn::LowerHalf(dh, b)));
  const auto hi =
      hn::MulAdd(hn::PromoteTo(dd, hn::UpperHalf(dh, s)), hn::PromoteTo(dd, hn::UpperHalf(dh, x)),
                 hn::PromoteTo(dd, hn::UpperHalf(dh, b)));
  return hn::Combine(df, hn::DemoteTo(dh, hi), hn::DemoteTo(dh, lo));
#endif
}

// Where a tile's results go and what dequantizes them (columns
// [col_lo, col_hi) of the tile are stored).
using TileOut = simd::detail::Int8TileOut;

// Dequantizes one vector of int32 sums (row i, vector j of the tile) into
// c[i * ldc + j * kLanes ...] (bias at bias + j * kLanes, or nullptr). Only
// for K <= kInt8ChunkK: acc, a_zp * colsum (column_sums32) and their
// difference are then at most 255 * 127 * 65536 < 2^31 in magnitude.
HWY_INLINE void StoreVec(VI32 acc, size_t i, size_t j, const TileOut& o, float* HWY_RESTRICT c,
                         size_t ldc, const float* HWY_RESTRICT bias) {
  const DF df;
  const DI32 di;
  const VI32 x = hn::Sub(acc, hn::Mul(hn::Set(di, o.a_zp[i]), hn::Load(di, o.colsum + j * kLanes)));
  const VF xf = hn::ConvertTo(df, x);
  const VF s = hn::Mul(hn::Set(df, o.a_scale[i]), hn::Load(df, o.w_scale + j * kLanes));
  const VF r =
      bias != nullptr ? MulAddExact(s, xf, hn::LoadU(df, bias + j * kLanes)) : hn::Mul(s, xf);
  hn::StoreU(r, df, c + i * ldc + j * kLanes);
}

// Stores or dequantizes one vector of a tile's sums (see TileSums): raw
// int32 into raw[kRows][kVecs * kLanes], else dequantized into `c` (the
// tile's C, or an aligned buffer for an edge tile).
template <size_t kVecs, bool kRaw>
HWY_INLINE void FinishVec(VI32 acc, size_t i, size_t j, const TileOut& o, float* HWY_RESTRICT c,
                          size_t ldc, const float* HWY_RESTRICT bias, int32_t* HWY_RESTRICT raw) {
  if constexpr (kRaw) {
    hn::StoreU(acc, DI32(), raw + (i * kVecs + j) * kLanes);
  } else {
    StoreVec(acc, i, j, o, c, ldc, bias);
  }
}

// The int32 sums of kRows rows of the packed A micro-panel (kRows * kKStep
// int16 per step) times the first kVecs vectors of one packed B panel
// (kNR * kKStep int16 per step) over `steps` steps (at most kChunkSteps:
// exact in int32), then either dequantized into o (kRaw false) or stored
// as int32 into raw[kRows][kVecs * kLanes] (kRaw true). One function with
// its accumulators as locals, so that they stay in registers.
template <size_t kRows, size_t kVecs, bool kRaw>
HWY_NOINLINE void TileSums(const int16_t* HWY_RESTRICT ap, const int16_t* HWY_RESTRICT bp,
                           size_t steps, const TileOut& o, int32_t* HWY_RESTRICT raw) {
  constexpr size_t kWidth = kVecs * kLanes;
  const DI32 d32;
  const DI16 d16;
  // Edge tiles (not all columns stored) go through an aligned buffer with
  // the same arithmetic.
  const bool full = kRaw || (o.col_lo == 0 && o.col_hi == kWidth);
  HWY_ALIGN float tile[kRows * kWidth];
  HWY_ALIGN float tile_bias[kWidth] = {};
  float* c = full ? o.c : tile;
  const size_t ldc = full ? o.ldc : kWidth;
  const float* bias = o.bias;
  if (!full && o.bias != nullptr) {
    for (size_t j = o.col_lo; j < o.col_hi; ++j) tile_bias[j] = o.bias[j];
    bias = tile_bias;
  }
#if HWY_HAVE_SCALABLE
  // One vector per row, named accumulators (sizeless vectors); sum1 holds
  // the odd-lane products until RearrangeToOddPlusEven.
  static_assert(kVecs == 1 && kRows <= 4, "SVE tile is at most 4 x 1");
  VI32 s0 = hn::Zero(d32), s1 = s0, s2 = s0, s3 = s0;
  VI32 t0 = s0, t1 = s0, t2 = s0, t3 = s0;
  for (size_t s = 0; s < steps; ++s) {
    const VI16 bv = hn::Load(d16, bp);
    s0 = hn::ReorderWidenMulAccumulate(d32, BroadcastA(ap), bv, s0, t0);
    if constexpr (kRows > 1)
      s1 = hn::ReorderWidenMulAccumulate(d32, BroadcastA(ap + 2), bv, s1, t1);
    if constexpr (kRows > 2)
      s2 = hn::ReorderWidenMulAccumulate(d32, BroadcastA(ap + 4), bv, s2, t2);
    if constexpr (kRows > 3)
      s3 = hn::ReorderWidenMulAccumulate(d32, BroadcastA(ap + 6), bv, s3, t3);
    ap += kRows * kKStep;
    bp += kNR * kKStep;
  }
  FinishVec<kVecs, kRaw>(hn::RearrangeToOddPlusEven(s0, t0), 0, 0, o, c, ldc, bias, raw);
  if constexpr (kRows > 1) {
    FinishVec<kVecs, kRaw>(hn::RearrangeToOddPlusEven(s1, t1), 1, 0, o, c, ldc, bias, raw);
  }
  if constexpr (kRows > 2) {
    FinishVec<kVecs, kRaw>(hn::RearrangeToOddPlusEven(s2, t2), 2, 0, o, c, ldc, bias, raw);
  }
  if constexpr (kRows > 3) {
    FinishVec<kVecs, kRaw>(hn::RearrangeToOddPlusEven(s3, t3), 3, 0, o, c, ldc, bias, raw);
  }
#else
  VI32 acc[kRows][kVecs];
  // The other half of each sum where the target keeps one (NEON); unused
  // (and optimized away) on x86, where RearrangeToOddPlusEven returns acc.
  VI32 acc1[kRows][kVecs];
  for (size_t i = 0; i < kRows; ++i) {
    for (size_t j = 0; j < kVecs; ++j) {
      acc[i][j] = hn::Zero(d32);
      acc1[i][j] = hn::Zero(d32);
    }
  }
  for (size_t s = 0; s < steps; ++s) {
    VI16 bv[kVecs];
    for (size_t j = 0; j < kVecs; ++j) bv[j] = hn::Load(d16, bp + j * kLanes * kKStep);
    for (size_t i = 0; i < kRows; ++i) {
      const VI16 av = BroadcastA(ap + i * kKStep);
      for (size_t j = 0; j < kVecs; ++j) {
        acc[i][j] = hn::ReorderWidenMulAccumulate(d32, av, bv[j], acc[i][j], acc1[i][j]);
      }
    }
    ap += kRows * kKStep;
    bp += kNR * kKStep;
  }
  for (size_t i = 0; i < kRows; ++i) {
    for (size_t j = 0; j < kVecs; ++j) {
      FinishVec<kVecs, kRaw>(hn::RearrangeToOddPlusEven(acc[i][j], acc1[i][j]), i, j, o, c, ldc,
                             bias, raw);
    }
  }
#endif
  if (!full) {
    for (size_t i = 0; i < kRows; ++i) {
      for (size_t j = o.col_lo; j < o.col_hi; ++j) o.c[i * o.ldc + j] = tile[i * kWidth + j];
    }
  }
}

// One register tile: TileSums dequantized into o; K above kInt8ChunkK in
// int32 chunks added in int64, dequantized per element by the reference's
// formula.
template <size_t kRows, size_t kVecs>
HWY_NOINLINE void Tile(const int16_t* HWY_RESTRICT ap, const int16_t* HWY_RESTRICT bp, size_t steps,
                       const TileOut& o) {
  if (steps <= kChunkSteps) {
    TileSums<kRows, kVecs, false>(ap, bp, steps, o, nullptr);
    return;
  }
  simd::detail::Int8TileInChunks<kRows, kVecs * kLanes>(
      steps, kChunkSteps, o, [&](size_t s0, size_t count, int32_t* part) HWY_ATTR {
        TileSums<kRows, kVecs, true>(ap + s0 * kRows * kKStep, bp + s0 * kNR * kKStep, count, o,
                                     part);
      });
}

}  // namespace int8_detail

// simd::MatMulInt8's contract for a matrix packed in this target's layout
// (b.layout() == int8_detail::LayoutKernel(); the caller checks). Uses this
// thread's Int8PanelScratch for the A micro-panel (kMR x K int16).
inline void MatMulInt8Kernel(const uint8_t* aq, size_t ldaq, const float* a_scale,
                             const int32_t* a_zp, size_t m, const simd::QuantizedMatrix& b,
                             float* c, size_t ldc, size_t n_begin, size_t n_end,
                             const float* bias) {
  using namespace int8_detail;
  simd::detail::ForEachInt8Tile<kMR, kNV, kLanes, kKStep, int16_t>(
      aq, ldaq, a_scale, a_zp, m, b, c, ldc, n_begin, n_end, bias,
      [](auto rows, auto vecs, const int16_t* ap, const int16_t* bp, size_t steps, const TileOut& o)
          HWY_ATTR { Tile<rows, vecs>(ap, bp, steps, o); });
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#endif  // ATTN_SIMD_MATMUL_INT8_INL_H_
