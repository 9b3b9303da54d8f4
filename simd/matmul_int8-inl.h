// Per-target int8 kernels behind simd/matmul_int8.h (included once per
// Highway target by simd/matmul_int8.cc and by
// tests/simd/matmul_int8_test.cc): the activation quantization and the
// packed int8 GEMM for every target the AVX-512 VNNI kernel
// (simd/matmul_int8_vnni.cc) does not cover: AVX2, SSE4, SSSE3, SCALAR,
// NEON, and AVX3 on CPUs without VNNI.
//
// Highway 1.0.3 has no 8-bit dot product, so this GEMM multiplies in int16:
// B is packed as int16 at QuantizeAndPackB time, each A micro-panel is
// widened to int16 as it is packed, and ReorderWidenMulAccumulate (int16 ->
// int32) multiplies and adds pairs of k (x86: one vpmaddwd for 2 k of 8 or
// 16 columns, plus the add; NEON: vmlal on the vector halves and a pairwise
// add at the end).
//
// Loop nest (the float32 GEMM's, simd/matmul-inl.h, without K blocks):
//   for each column block of packed B       (~kMatMulInt8ColumnBlockBytes: stays in L2)
//     for each kMR rows of A
//       pack their A micro-panel, all of K  (kMR x K int16: in L1 for K up to ~2k)
//       for each kNR-column panel of the block
//         Tile: kMR x kNR int32 accumulators over all of K, then dequantize
// There are no K blocks: the dequantization needs each element's complete
// integer sum, so the sum stays in registers for all of K instead of
// going through memory between blocks. K above kInt8ChunkK is summed in
// int32 chunks that are added in int64 (Tile's slow path).
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

#include <algorithm>
#include <cmath>
#include <limits>

#include "hwy/highway.h"
#include "simd/matmul_int8.h"
#include "simd/matmul_int8_internal.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

namespace int8_detail {

#if HWY_HAVE_SCALABLE
// SVE: vectors are sizeless (no arrays of them) and their length is only
// known at run time, so the kernel works on their first 128 bits (a capped
// tag: 4 int32 columns, a compile-time panel width) with a one-vector tile
// of named accumulators (TileSums).
using DI32 = hn::CappedTag<int32_t, 4>;
using DF = hn::CappedTag<float, 4>;
#else
using DI32 = hn::ScalableTag<int32_t>;
using DF = hn::ScalableTag<float>;
#endif
using VI32 = hn::Vec<DI32>;
using VF = hn::Vec<DF>;
#if HWY_TARGET == HWY_SCALAR
// One lane: one k per step, a plain int16 product.
using DI16 = hn::Rebind<int16_t, DI32>;
constexpr size_t kKStep = 1;
#else
// Two int16 per int32 lane: ReorderWidenMulAccumulate sums pairs of k.
using DI16 = hn::Repartition<int16_t, DI32>;
constexpr size_t kKStep = 2;
#endif
using VI16 = hn::Vec<DI16>;
// ReorderWidenMulAccumulate followed by RearrangeToOddPlusEven adds the
// products of int16 lanes 2j and 2j + 1 into int32 lane j on every target
// (x86: vpmaddwd; NEON: vmlal on the halves, then a pairwise add; SVE: even
// and odd lanes): a column's two k are adjacent in B, and A's pair is one
// broadcast int32.

// Register tile kMR x (kNV vectors of int32). Per step (kKStep k) the tile
// loads kNV vectors of B, broadcasts kMR pairs of A and issues kMR * kNV
// multiply-adds (x86: vpmaddwd into a temporary, then vpaddd), which must
// fit the register file with the kNV B vectors, the broadcast and the
// temporary:
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
// AVX-512 without VNNI: 12 x 2 = 24 accumulators + 2 B + 1 A + 1 = 28 zmm.
constexpr size_t kMR = 12;
constexpr size_t kNV = 2;
#elif HWY_ARCH_X86 && HWY_TARGET == HWY_AVX2
// AVX2: 4 x 2 = 8 accumulators + 2 B + 1 A + 1 temporary = 12 of 16 ymm.
// Per step 8 vpmaddwd (16 products each, on two ALU ports) and 8 vpaddd
// (on three): at best 128 multiply-adds per 5.3 cycles, 1.5x float32's 16
// FMA lanes per cycle. Measured on SPR (AVX3 disabled), GOP/s per core:
// 4 x 2 and 3 x 3 105, 5 x 2 95, 6 x 2 83 (16 ymm: GCC spills), 2 x 4 84.
constexpr size_t kMR = 4;
constexpr size_t kNV = 2;
#elif HWY_TARGET == HWY_SCALAR
// One lane: 4 x 4 = 16 independent scalar accumulators.
constexpr size_t kMR = 4;
constexpr size_t kNV = 4;
#elif HWY_HAVE_SCALABLE
// SVE (see DI32): 4 rows x 1 vector of 4 columns, named accumulators.
constexpr size_t kMR = 4;
constexpr size_t kNV = 1;
#elif HWY_ARCH_ARM_A64
// NEON, 32 registers, two accumulators per output vector (the lower- and
// upper-half sums): 6 x 2 x 2 = 24 + 2 B + 1 A = 27.
constexpr size_t kMR = 6;
constexpr size_t kNV = 2;
#else
// 128-bit x86 (SSE4/SSSE3: destructive two-operand instructions need
// copies): 4 x 2 = 8 accumulators + 2 B + 1 A + 1 temporary.
constexpr size_t kMR = 4;
constexpr size_t kNV = 2;
#endif
constexpr size_t kLanes = hn::MaxLanes(DI32());
constexpr size_t kNR = kNV * kLanes;  // columns of a panel
// Steps per int32 chunk of K.
constexpr size_t kChunkSteps = simd::kInt8ChunkK / kKStep;

// This target's packing (simd::Int8Layout).
inline simd::Int8Layout LayoutKernel() {
  simd::Int8Layout layout;
  layout.id = HWY_TARGET;
  layout.panel_width = kNR;
  layout.k_step = kKStep;
  layout.elem_bytes = sizeof(int16_t);
  return layout;
}

inline size_t DivCeil(size_t a, size_t b) { return (a + b - 1) / b; }

// The A micro-panel of `rows` rows of aq (row stride ldaq, k bytes each),
// widened to int16 in steps of kKStep k: dst[(s * rows + r) * kKStep + t] =
// aq[r][s * kKStep + t], 0 past k (steps * kKStep >= k).
inline void PackA(const uint8_t* HWY_RESTRICT aq, size_t ldaq, size_t rows, size_t k, size_t steps,
                  int16_t* HWY_RESTRICT dst) {
  const size_t full = k / kKStep;
  for (size_t r = 0; r < rows; ++r) {
    const uint8_t* HWY_RESTRICT src = aq + r * ldaq;
    int16_t* HWY_RESTRICT out = dst + r * kKStep;
    size_t s = 0;
    for (; s < full; ++s) {
      for (size_t t = 0; t < kKStep; ++t) out[s * rows * kKStep + t] = src[s * kKStep + t];
    }
    for (; s < steps; ++s) {
      for (size_t t = 0; t < kKStep; ++t) {
        const size_t kk = s * kKStep + t;
        out[s * rows * kKStep + t] = kk < k ? src[kk] : 0;
      }
    }
  }
}

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

// Where a tile's results go and what dequantizes them: c, bias, w_scale
// and colsum point at the tile's column 0 (w_scale, colsum: the packed
// matrix's padded, aligned arrays), a_scale and a_zp at its row 0; columns
// [col_lo, col_hi) of the tile are stored.
struct TileOut {
  float* c;
  size_t ldc;
  const float* a_scale;
  const int32_t* a_zp;
  const float* w_scale;
  const int32_t* colsum;
  const float* bias;
  size_t col_lo, col_hi;
};

// Dequantizes one vector of int32 sums (row i, vector j of the tile) into
// c[i * ldc + j * kLanes ...] (bias at bias + j * kLanes, or nullptr).
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
  constexpr size_t kWidth = kVecs * kLanes;
  int64_t total[kRows][kWidth] = {};
  int32_t part[kRows * kWidth];
  for (size_t s0 = 0; s0 < steps; s0 += kChunkSteps) {
    TileSums<kRows, kVecs, true>(ap + s0 * kRows * kKStep, bp + s0 * kNR * kKStep,
                                 std::min(kChunkSteps, steps - s0), o, part);
    for (size_t i = 0; i < kRows; ++i) {
      for (size_t j = 0; j < kWidth; ++j) total[i][j] += part[i * kWidth + j];
    }
  }
  for (size_t i = 0; i < kRows; ++i) {
    for (size_t j = o.col_lo; j < o.col_hi; ++j) {
      o.c[i * o.ldc + j] =
          simd::DequantizeInt8(total[i][j], o.a_zp[i], o.colsum[j], o.a_scale[i], o.w_scale[j],
                               o.bias != nullptr ? o.bias + j : nullptr);
    }
  }
}

// Tile<rows, vecs> for run-time rows in [1, kRows] and vecs in [1, kVecs].
template <size_t kRows, size_t kVecs>
HWY_INLINE void TileFor(size_t rows, size_t vecs, const int16_t* HWY_RESTRICT ap,
                        const int16_t* HWY_RESTRICT bp, size_t steps, const TileOut& o) {
  if constexpr (kRows > 1) {
    if (rows != kRows) {
      TileFor<kRows - 1, kVecs>(rows, vecs, ap, bp, steps, o);
      return;
    }
  }
  if constexpr (kVecs > 1) {
    if (vecs != kVecs) {
      TileFor<kRows, kVecs - 1>(rows, vecs, ap, bp, steps, o);
      return;
    }
  }
  Tile<kRows, kVecs>(ap, bp, steps, o);
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
  n_end = std::min(n_end, b.n());
  if (m == 0 || n_begin >= n_end) return;
  const size_t k = b.k();
  const size_t steps = b.k_padded() / kKStep;
  const size_t p_begin = n_begin / kNR;
  const size_t p_end = DivCeil(n_end, kNR);
  const size_t nc_panels =
      std::max<size_t>(1, simd::kMatMulInt8ColumnBlockBytes / std::max<size_t>(1, b.panel_bytes()));
  int16_t* apanel = reinterpret_cast<int16_t*>(
      simd::detail::Int8PanelScratch(kMR * steps * kKStep * sizeof(int16_t)));
  for (size_t jc = p_begin; jc < p_end; jc += nc_panels) {
    const size_t jc_end = std::min(p_end, jc + nc_panels);
    for (size_t i0 = 0; i0 < m; i0 += kMR) {
      const size_t mr = std::min(kMR, m - i0);
      PackA(aq + i0 * ldaq, ldaq, mr, k, steps, apanel);
      for (size_t p = jc; p < jc_end; ++p) {
        const size_t col0 = p * kNR;
        TileOut o;
        o.c = c + i0 * ldc + col0;
        o.ldc = ldc;
        o.a_scale = a_scale + i0;
        o.a_zp = a_zp + i0;
        o.w_scale = b.scales() + col0;
        o.colsum = b.column_sums() + col0;
        o.bias = bias != nullptr ? bias + col0 : nullptr;
        o.col_lo = std::max(n_begin, col0) - col0;
        o.col_hi = std::min(n_end, col0 + kNR) - col0;
        TileFor<kMR, kNV>(mr, DivCeil(o.col_hi, kLanes), apanel,
                          reinterpret_cast<const int16_t*>(b.panel(p)), steps, o);
      }
    }
  }
}

// simd::QuantizeRows for this target: per row a min/max/finiteness pass and
// a quantization pass, whole vectors then a scalar tail with the same
// arithmetic (float product, round to nearest even, saturate to [0, 255]).
inline void QuantizeRowsKernel(const float* HWY_RESTRICT a, size_t lda, size_t m, size_t k,
                               uint8_t* HWY_RESTRICT aq, size_t ldaq, float* HWY_RESTRICT scale,
                               int32_t* HWY_RESTRICT zero_point) {
  using int8_detail::kLanes;
  for (size_t i = 0; i < m; ++i) {
    const float* HWY_RESTRICT x = a + i * lda;
    uint8_t* HWY_RESTRICT q = aq + i * ldaq;
    float lo = std::numeric_limits<float>::infinity();
    float hi = -lo;
    bool finite = true;
    size_t j = 0;
#if HWY_TARGET != HWY_SCALAR
    const int8_detail::DF df;
    if (k >= kLanes) {
      // x - x is 0 for finite x and NaN otherwise; the sum says whether any
      // lane was not finite.
      // Two vectors per step, each with its own min, max and sum chains (one
      // chain's 4-cycle latency would bound the loop).
      auto vmin = hn::Set(df, lo);
      auto vmax = hn::Set(df, hi);
      auto vbad = hn::Zero(df);
      auto vmin1 = vmin, vmax1 = vmax, vbad1 = vbad;
      for (; j + 2 * kLanes <= k; j += 2 * kLanes) {
        const auto v0 = hn::LoadU(df, x + j);
        const auto v1 = hn::LoadU(df, x + j + kLanes);
        vmin = hn::Min(vmin, v0);
        vmax = hn::Max(vmax, v0);
        vbad = hn::Add(vbad, hn::Sub(v0, v0));
        vmin1 = hn::Min(vmin1, v1);
        vmax1 = hn::Max(vmax1, v1);
        vbad1 = hn::Add(vbad1, hn::Sub(v1, v1));
      }
      for (; j + kLanes <= k; j += kLanes) {
        const auto v = hn::LoadU(df, x + j);
        vmin = hn::Min(vmin, v);
        vmax = hn::Max(vmax, v);
        vbad = hn::Add(vbad, hn::Sub(v, v));
      }
      vmin = hn::Min(vmin, vmin1);
      vmax = hn::Max(vmax, vmax1);
      vbad = hn::Add(vbad, vbad1);
      lo = hn::GetLane(hn::MinOfLanes(df, vmin));
      hi = hn::GetLane(hn::MaxOfLanes(df, vmax));
      finite = hn::GetLane(hn::SumOfLanes(df, vbad)) == 0.0f;
    }
#endif
    for (; j < k; ++j) {
      lo = std::min(lo, x[j]);
      hi = std::max(hi, x[j]);
      finite = finite && std::isfinite(x[j]);
    }
    const simd::detail::RowQuant rq = simd::detail::ActivationRowParams(lo, hi, finite);
    scale[i] = rq.scale;
    zero_point[i] = rq.zero_point;
    if (!finite) {
      memset(q, 0, k);
      continue;
    }
    j = 0;
#if HWY_TARGET != HWY_SCALAR
    // (HWY_SCALAR's NearestInt rounds 0.49999997 up; the tail's nearbyint
    // is exact, so that target quantizes in the tail loop only.)
    const int8_detail::DI32 di;
    const hn::Rebind<uint8_t, int8_detail::DI32> du8;
    const auto vinv = hn::Set(df, rq.inv_scale);
    const auto vzp = hn::Set(di, rq.zero_point);
    for (; j + kLanes <= k; j += kLanes) {
      const auto qi = hn::Add(hn::NearestInt(hn::Mul(hn::LoadU(df, x + j), vinv)), vzp);
      hn::StoreU(hn::DemoteTo(du8, qi), du8, q + j);
    }
#endif
    for (; j < k; ++j) q[j] = simd::detail::QuantizeActivation(x[j], rq.inv_scale, rq.zero_point);
  }
}

// simd::AllFinite for this target.
inline bool AllFiniteKernel(const float* HWY_RESTRICT x, size_t count) {
  size_t j = 0;
#if HWY_TARGET != HWY_SCALAR
  using int8_detail::kLanes;
  const int8_detail::DF df;
  // Blocks of 1024 floats: x - x is NaN exactly for non-finite x.
  while (j + kLanes <= count) {
    const size_t end = j + std::min<size_t>(1024, (count - j) / kLanes * kLanes);
    auto vbad = hn::Zero(df);
    for (; j < end; j += kLanes) {
      const auto v = hn::LoadU(df, x + j);
      vbad = hn::Add(vbad, hn::Sub(v, v));
    }
    if (!(hn::GetLane(hn::SumOfLanes(df, vbad)) == 0.0f)) return false;
  }
#endif
  for (; j < count; ++j) {
    if (!std::isfinite(x[j])) return false;
  }
  return true;
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#endif  // ATTN_SIMD_MATMUL_INT8_INL_H_
