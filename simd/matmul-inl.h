// Per-target GEMM kernels behind simd/matmul.h (included once per Highway
// target by simd/matmul.cc and by tests/simd/matmul_test.cc).
//
// Algorithm (BLIS-like micro-kernel, A read in place, op(B) packed, C kept
// in cache across K blocks):
//   for each column block of op(B) whose packed K x nc  (jc: ~1 MiB, stays in L2)
//     pack op(B)[0..K, jc..] into K x kNR panels        (skipped for a PackedMatrix)
//     for each kMR rows of A                            (ir: C tile kMR x nc stays in L1/L2)
//       for each K block of kc <= kMaxKC steps          (pc: from K only; the A piece,
//                                                        kMR x kc, stays in L1 and the
//                                                        next one is prefetched meanwhile)
//         for each kNR-column panel of the block        (jr: panels stream from L2)
//           MicroTile: kMR x kNR accumulators += A[ir.., pc..] · panel[pc..]
//           store: C = scale * acc + (C if accumulate or pc > 0) + (bias if last pc)
//   (b_transposed with M <= simd::kMatMulDotRows: dot products instead, MatMulDot.)
//
// Tuned on Sapphire Rapids (AVX3, 48 KiB L1d, 2 MiB L2 per core): the 12 x 32
// AVX3 micro-kernel runs at ~97% of the FMA peak with operands in cache.
//
// Every C element is the sum over k in ascending order within each K block,
// with the blocks added to C in order. Nothing depends on M, on the position
// of the element in its tile or on which rows/columns a caller asks for (K
// blocks depend on K only), so any split of C over threads gives the same
// bits.
//
// Memory: A, op(B), C and bias are only read (written) inside their
// rectangles. Edge tiles use narrower register tiles (MicroTile<rows, vecs>)
// over zero-padded panels; partial columns are stored through an aligned
// stack buffer with the same vector arithmetic as full tiles.

// Per-target section: re-included once per target (toggle guard).
#if defined(ATTN_SIMD_MATMUL_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ATTN_SIMD_MATMUL_INL_H_
#undef ATTN_SIMD_MATMUL_INL_H_
#else
#define ATTN_SIMD_MATMUL_INL_H_
#endif

#include <stddef.h>

#include <algorithm>
#include <vector>

#include "hwy/highway.h"
#include "simd/matmul.h"
#include "simd/matmul_tile-inl.h"
#include "simd/thread_scratch.h"
#include "simd/tile_dispatch.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

namespace matmul_detail {

// K = 0: C = bias (+ C when accumulate), columns [n_begin, n_end).
inline void MatMulEmptyK(float* HWY_RESTRICT c, size_t ldc, size_t m, size_t n_begin, size_t n_end,
                         const float* HWY_RESTRICT bias, bool accumulate) {
  for (size_t i = 0; i < m; ++i) {
    for (size_t j = n_begin; j < n_end; ++j) {
      const float base = accumulate ? c[i * ldc + j] : 0.0f;
      c[i * ldc + j] = base + (bias != nullptr ? bias[j] : 0.0f);
    }
  }
}

// Small M with B stored N x K (b_transposed): packing op(B) would transpose
// all of B for a few rows of A, so C is computed as dot products of rows
// instead, reading B once per kDotRows rows of A. Tile: kRows rows of A x
// kCols rows of B (at most 4 x 4 = 16 accumulators, with 4 + 4 loads per 16
// MulAdd). Each element: lane-wise MulAdd over K in vectors, SumOfLanes,
// then the K tail in scalar order, then scale / C / bias; the same
// operations whatever the tile, so any split over columns gives the same
// bits.
#if HWY_HAVE_SCALABLE
// The SVE targets' DotTile (sizeless vectors, no arrays of them; see DF in
// simd/matmul_tile-inl.h): one element at a time, the same operations.
template <size_t kRows, size_t kCols>
HWY_NOINLINE void DotTile(const float* HWY_RESTRICT a, size_t lda, const float* HWY_RESTRICT b,
                          size_t ldb, size_t k, float* HWY_RESTRICT c, size_t ldc,
                          const float* HWY_RESTRICT bias, float scale, bool accumulate) {
  const DF d;
  for (size_t i = 0; i < kRows; ++i) {
    for (size_t j = 0; j < kCols; ++j) {
      VF acc = hn::Zero(d);
      size_t p = 0;
      for (; p + kLanes <= k; p += kLanes) {
        acc = hn::MulAdd(hn::LoadU(d, a + i * lda + p), hn::LoadU(d, b + j * ldb + p), acc);
      }
      float sum = hn::GetLane(hn::SumOfLanes(d, acc));
      for (size_t q = p; q < k; ++q) sum += a[i * lda + q] * b[j * ldb + q];
      float r = scale * sum;
      if (accumulate) r += c[i * ldc + j];
      if (bias != nullptr) r += bias[j];
      c[i * ldc + j] = r;
    }
  }
}
#else
template <size_t kRows, size_t kCols>
HWY_NOINLINE void DotTile(const float* HWY_RESTRICT a, size_t lda, const float* HWY_RESTRICT b,
                          size_t ldb, size_t k, float* HWY_RESTRICT c, size_t ldc,
                          const float* HWY_RESTRICT bias, float scale, bool accumulate) {
  const DF d;
  VF acc[kRows][kCols];
  for (size_t i = 0; i < kRows; ++i) {
    for (size_t j = 0; j < kCols; ++j) acc[i][j] = hn::Zero(d);
  }
  size_t p = 0;
  for (; p + kLanes <= k; p += kLanes) {
    VF bv[kCols];
    for (size_t j = 0; j < kCols; ++j) bv[j] = hn::LoadU(d, b + j * ldb + p);
    for (size_t i = 0; i < kRows; ++i) {
      const VF av = hn::LoadU(d, a + i * lda + p);
      for (size_t j = 0; j < kCols; ++j) acc[i][j] = hn::MulAdd(av, bv[j], acc[i][j]);
    }
  }
  for (size_t i = 0; i < kRows; ++i) {
    for (size_t j = 0; j < kCols; ++j) {
      float sum = hn::GetLane(hn::SumOfLanes(d, acc[i][j]));
      for (size_t q = p; q < k; ++q) sum += a[i * lda + q] * b[j * ldb + q];
      float r = scale * sum;
      if (accumulate) r += c[i * ldc + j];
      if (bias != nullptr) r += bias[j];
      c[i * ldc + j] = r;
    }
  }
}
#endif  // HWY_HAVE_SCALABLE

// DotTile<kRows, cols> for a run-time cols in [1, kCols].
template <size_t kRows, size_t kCols>
HWY_INLINE void DotTileCols(size_t cols, const float* HWY_RESTRICT a, size_t lda,
                            const float* HWY_RESTRICT b, size_t ldb, size_t k,
                            float* HWY_RESTRICT c, size_t ldc, const float* HWY_RESTRICT bias,
                            float scale, bool accumulate) {
  if (kCols == 1 || cols == kCols) {
    DotTile<kRows, kCols>(a, lda, b, ldb, k, c, ldc, bias, scale, accumulate);
  } else {
    DotTileCols<kRows, (kCols > 1 ? kCols - 1 : 1)>(cols, a, lda, b, ldb, k, c, ldc, bias, scale,
                                                    accumulate);
  }
}

// DotTile<rows, cols> for run-time rows in [1, kRows] and cols in [1, 4].
template <size_t kRows>
HWY_INLINE void DotTileRows(size_t rows, size_t cols, const float* HWY_RESTRICT a, size_t lda,
                            const float* HWY_RESTRICT b, size_t ldb, size_t k,
                            float* HWY_RESTRICT c, size_t ldc, const float* HWY_RESTRICT bias,
                            float scale, bool accumulate) {
  if (kRows == 1 || rows == kRows) {
    DotTileCols<kRows, 4>(cols, a, lda, b, ldb, k, c, ldc, bias, scale, accumulate);
  } else {
    DotTileRows<(kRows > 1 ? kRows - 1 : 1)>(rows, cols, a, lda, b, ldb, k, c, ldc, bias, scale,
                                             accumulate);
  }
}

// C = scale * A · Bᵀ (+ C) (+ bias) by dot products (b_transposed, any M,
// used for M <= simd::kMatMulDotRows).
inline void MatMulDot(const simd::MatMulArgs& args) {
  constexpr size_t kDotRows = 4, kDotCols = 4;
  for (size_t i0 = 0; i0 < args.m; i0 += kDotRows) {
    const size_t rows = std::min(kDotRows, args.m - i0);
    for (size_t j0 = 0; j0 < args.n; j0 += kDotCols) {
      const size_t cols = std::min(kDotCols, args.n - j0);
      DotTileRows<kDotRows>(rows, cols, args.a + i0 * args.lda, args.lda, args.b + j0 * args.ldb,
                            args.ldb, args.k, args.c + i0 * args.ldc + j0, args.ldc,
                            args.bias != nullptr ? args.bias + j0 : nullptr, args.scale,
                            args.accumulate);
    }
  }
}

// The loop nest for columns [n_begin, n_end) of C (see the top of this
// file). For each column block whose whole K x nc packed B fits kL2Bytes,
// each row group runs all K blocks back to back, so that its C tile (kMR x
// nc) stays in L1/L2 between K blocks and C goes to memory once, not once per
// K block (A is read once per column block instead; measured on SPR: equal
// for the projections, +8% for weights.V, against a loop over K blocks
// outside the rows). get_block(p0, p1) returns the K x kNR panels p0..p1,
// panel p at block + (p - p0) * k * kNR.
template <class GetBlock>
HWY_INLINE void GemmLoops(const float* HWY_RESTRICT a, size_t lda, float* HWY_RESTRICT c,
                          size_t ldc, size_t m, size_t n_begin, size_t n_end, size_t k,
                          const float* HWY_RESTRICT bias, float scale, bool accumulate,
                          const GetBlock& get_block) {
  const size_t p_begin = n_begin / kNR;
  const size_t p_end = (n_end + kNR - 1) / kNR;
  const size_t kc_max = KBlock(k);
  const size_t nc_panels = ColumnBlockPanels(k);
  for (size_t jc = p_begin; jc < p_end; jc += nc_panels) {
    const size_t jc_end = std::min(p_end, jc + nc_panels);
    const float* block = get_block(jc, jc_end);
    for (size_t i0 = 0; i0 < m; i0 += kMR) {
      const size_t mr = std::min(kMR, m - i0);
      const size_t next_rows = std::min(kMR, m - std::min(m, i0 + kMR));
      for (size_t pc = 0; pc < k; pc += kc_max) {
        const size_t kc = std::min(kc_max, k - pc);
        const bool load_c = accumulate || pc != 0;
        const float* bias_now = (pc + kc == k) ? bias : nullptr;
        // The first tile prefetches the A piece used next: the next K block
        // of these rows, or the first K block of the next row group.
        const bool last_pc = pc + kc == k;
        const float* next_a =
            last_pc ? (next_rows != 0 ? a + (i0 + kMR) * lda : nullptr) : a + i0 * lda + pc + kc;
        const size_t pf_rows = last_pc ? next_rows : mr;
        const size_t pf_kc = last_pc ? std::min(kc_max, k) : std::min(kc_max, k - pc - kc);
        for (size_t p = jc; p < jc_end; ++p) {
#if !HWY_HAVE_SCALABLE
          // One row: four whole panels at a time (more independent chains).
          if (m == 1 && p + 4 <= jc_end && p * kNR >= n_begin && (p + 4) * kNR <= n_end) {
            const float* panels[4];
            for (size_t q = 0; q < 4; ++q) panels[q] = block + (p + q - jc) * k * kNR + pc * kNR;
            RowTimesFourPanels(a + pc, panels, kNR, kc, c + p * kNR,
                               bias_now != nullptr ? bias_now + p * kNR : nullptr, scale, load_c);
            p += 3;
            continue;
          }
#endif
          const size_t col0 = p * kNR;
          const size_t lo = std::max(n_begin, col0) - col0;
          const size_t hi = std::min(n_end, col0 + kNR) - col0;
          const float* tile_bias = bias_now != nullptr ? bias_now + col0 : nullptr;
          const float* tile_next_a = p == jc ? next_a : nullptr;
          // MicroTile<mr, vecs>: vecs vectors cover the columns below hi.
          simd::detail::DispatchTile<kMR, kNV>(
              mr, (hi + kLanes - 1) / kLanes, [&](auto rows, auto vecs) HWY_ATTR {
                MicroTile<rows, vecs>(a + i0 * lda + pc, lda, block + (p - jc) * k * kNR + pc * kNR,
                                      kNR, kc, c + i0 * ldc + col0, ldc, tile_bias, scale, load_c,
                                      lo, hi, tile_next_a, pf_rows, pf_kc);
              });
        }
      }
    }
  }
}

}  // namespace matmul_detail

// simd/matmul.h's MatMul contract for this target: tiled GEMM, or dot
// products for b_transposed with M <= simd::kMatMulDotRows. Shapes and
// strides as in MatMulArgs; C must not overlap A, B or bias. Uses this
// thread's scratch (one kc x nc block, about kL2Bytes) to pack op(B) block
// by block.
inline void MatMulKernel(const simd::MatMulArgs& args) {
  using namespace matmul_detail;
  if (args.m == 0 || args.n == 0) return;
  if (args.k == 0) {
    MatMulEmptyK(args.c, args.ldc, args.m, 0, args.n, args.bias, args.accumulate);
    return;
  }
  if (args.b_transposed && args.m <= simd::kMatMulDotRows) {
    MatMulDot(args);
    return;
  }
  const size_t nc_panels = ColumnBlockPanels(args.k);
  float* scratch =
      simd::detail::ThreadScratch(simd::detail::ScratchSlot::kMatMul, args.k * nc_panels * kNR);
  auto get_block = [&](size_t p0, size_t p1) HWY_ATTR {
    for (size_t p = p0; p < p1; ++p) {
      const size_t n0 = p * kNR;
      PackPanel(args.b, args.ldb, args.b_transposed, 0, args.k, n0, std::min(kNR, args.n - n0),
                scratch + (p - p0) * args.k * kNR);
    }
    return static_cast<const float*>(scratch);
  };
  GemmLoops(args.a, args.lda, args.c, args.ldc, args.m, 0, args.n, args.k, args.bias, args.scale,
            args.accumulate, get_block);
}

// Uninitialised packed storage for op(B) (k x n) in this target's layout.
inline simd::PackedMatrix AllocatePackedBKernel(size_t k, size_t n) {
  return simd::PackedMatrix(k, n, matmul_detail::kNR, HWY_TARGET);
}

// Packs panels [p0, p1) of op(B) into `packed` (see simd::PackedMatrix for
// the layout). A matrix allocated by another target is packed in its own
// panel width, by scalar code.
inline void PackBPanelsKernel(const float* b, size_t ldb, bool b_transposed, size_t p0, size_t p1,
                              simd::PackedMatrix* packed) {
  using namespace matmul_detail;
  const size_t k = packed->k(), n = packed->n(), w = packed->panel_width();
  p1 = std::min(p1, packed->num_panels());
  for (size_t p = p0; p < p1; ++p) {
    const size_t n0 = p * w;
    const size_t cols = std::min(w, n - n0);
    float* dst = packed->mutable_data() + p * k * w;
    if (w == kNR) {
      PackPanel(b, ldb, b_transposed, 0, k, n0, cols, dst);
      continue;
    }
    for (size_t kk = 0; kk < k; ++kk) {
      for (size_t j = 0; j < w; ++j) {
        dst[kk * w + j] =
            j >= cols ? 0.0f : (b_transposed ? b[(n0 + j) * ldb + kk] : b[kk * ldb + n0 + j]);
      }
    }
  }
}

// Packs op(B) for this target (see simd::PackedMatrix for the layout).
inline simd::PackedMatrix PackBKernel(const float* b, size_t ldb, bool b_transposed, size_t k,
                                      size_t n) {
  simd::PackedMatrix packed = AllocatePackedBKernel(k, n);
  PackBPanelsKernel(b, ldb, b_transposed, 0, packed.num_panels(), &packed);
  return packed;
}

// MatMulPackedColumns for this target: columns [n_begin, n_end) of
// C = scale * (A · B) + bias (+ C), B packed by PackBKernel. A packed matrix
// from another target (other panel width) is unpacked into a dense copy.
inline void MatMulPackedKernel(const float* a, size_t lda, const simd::PackedMatrix& b, float* c,
                               size_t ldc, size_t m, size_t n_begin, size_t n_end,
                               const float* bias, float scale, bool accumulate) {
  using namespace matmul_detail;
  const size_t k = b.k();
  n_end = std::min(n_end, b.n());
  if (m == 0 || n_begin >= n_end) return;
  if (k == 0) {
    MatMulEmptyK(c, ldc, m, n_begin, n_end, bias, accumulate);
    return;
  }
  if (b.panel_width() != kNR) {
    // Slow path: dense K x (n_end - n_begin) copy of op(B).
    const size_t w = b.panel_width();
    const size_t cols = n_end - n_begin;
    std::vector<float> dense(k * cols);
    for (size_t kk = 0; kk < k; ++kk) {
      for (size_t j = 0; j < cols; ++j) {
        const size_t n = n_begin + j;
        dense[kk * cols + j] = b.panel(n / w)[kk * w + n % w];
      }
    }
    simd::MatMulArgs args;
    args.a = a;
    args.lda = lda;
    args.b = dense.data();
    args.ldb = cols;
    args.c = c + n_begin;
    args.ldc = ldc;
    args.m = m;
    args.n = cols;
    args.k = k;
    args.bias = bias != nullptr ? bias + n_begin : nullptr;
    args.scale = scale;
    args.accumulate = accumulate;
    MatMulKernel(args);
    return;
  }
  auto get_block = [&](size_t p0, size_t /*p1*/) { return b.panel(p0); };
  GemmLoops(a, lda, c, ldc, m, n_begin, n_end, k, bias, scale, accumulate, get_block);
}

}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#endif  // ATTN_SIMD_MATMUL_INL_H_
