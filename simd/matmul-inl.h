// Per-target GEMM kernels behind simd/matmul.h (included once per Highway
// target by simd/matmul.cc and by tests/simd/matmul_test.cc).
//
// Algorithm (BLIS-style, without packing A):
//   for each block of kNC columns of op(B)            (jc)
//     for each block of kKC steps of K                  (pc)
//       pack op(B)[pc.., jc..] into kKC x kNR panels    (skipped for PackedMatrix)
//       for each kMR rows of A                          (ir: A micro-panel stays in L1)
//         for each kNR-column panel of the block        (jr: B block streams from L2)
//           MicroTile: kMR x kNR accumulators += A[ir.., pc..] · panel
//           store: C = scale * acc + (C if accumulate or pc > 0) + (bias if last pc)
//
// Every C element is the sum over k in ascending order within each kKC block,
// with the blocks added to C in order. Nothing depends on M, on the position
// of the element in its tile or on which rows/columns a caller asks for, so
// any split of C over threads gives the same bits.
//
// Memory: A, op(B), C and bias are only read (written) inside their
// rectangles. Edge tiles (fewer than kMR rows: the missing rows repeat the
// last valid row of A; fewer than kNR columns: zero-padded panels) go through
// an aligned stack buffer with the same vector arithmetic as full tiles.

#ifndef ATTN_SIMD_MATMUL_INL_DECL_H_
#define ATTN_SIMD_MATMUL_INL_DECL_H_
#include <stddef.h>
namespace attn {
namespace simd {
namespace detail {
// This thread's 64-byte aligned scratch of at least `floats` floats, reused
// across calls (defined in simd/matmul.cc). Valid until the next call on the
// same thread.
float* MatMulScratch(size_t floats);
}  // namespace detail
}  // namespace simd
}  // namespace attn
#endif  // ATTN_SIMD_MATMUL_INL_DECL_H_

// Per-target section: re-included once per target (toggle guard).
#if defined(ATTN_SIMD_MATMUL_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ATTN_SIMD_MATMUL_INL_H_
#undef ATTN_SIMD_MATMUL_INL_H_
#else
#define ATTN_SIMD_MATMUL_INL_H_
#endif

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "hwy/highway.h"
#include "simd/matmul.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

namespace matmul_detail {

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// Register tile kMR x (kNV vectors), per target. Per k step the micro-kernel
// loads kNV vectors of B, broadcasts kMR floats of A and issues kMR * kNV
// MulAdd into independent accumulators, which must hide the FMA latency
// (4 cycles x 2 ports = 8 in flight) and fit the register file with the kNV
// B vectors and one broadcast:
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
// AVX-512 (tuned on Sapphire Rapids): 32 zmm. 12 x 2 = 24 accumulators
// + 2 B + 1 A broadcast = 27 registers; 2 loads + 12 broadcasts per 24 FMA
// (12 cycles at 2 FMA/cycle) stays below the 2-3 loads/cycle of the core.
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
#else
// 128-bit targets (SSE4/SSSE3 lack FMA: MulAdd is a Mul and an Add needing a
// temporary): 4 x 2 = 8 accumulators + 2 B + 1 A + 1 temporary.
constexpr size_t kMR = 4;
constexpr size_t kNV = 2;
#endif
constexpr size_t kLanes = hn::MaxLanes(DF());
constexpr size_t kNR = kNV * kLanes;  // columns of a panel
// K block: the A micro-panel (kMR x kKC floats: 12 KiB on AVX3) stays in the
// 48 KiB L1 while the B block is swept.
constexpr size_t kKC = 256;
// Column block: the packed B block, kKC x kNC floats = 1 MiB, stays in L2.
constexpr size_t kNC = 1024;
static_assert(kNC % kNR == 0, "column block must hold whole panels");
constexpr size_t kNCPanels = kNC / kNR;

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
  // B is N x K: column n of op(B) is row n of B. Walk k outermost so that
  // the writes are sequential; the cols source rows are read in parallel.
  const float* HWY_RESTRICT rows[kNR];
  for (size_t j = 0; j < cols; ++j) rows[j] = b + (n0 + j) * ldb + k0;
  for (size_t k = 0; k < kc; ++k) {
    float* HWY_RESTRICT out = dst + k * kNR;
    size_t j = 0;
    for (; j < cols; ++j) out[j] = rows[j][k];
    for (; j < kNR; ++j) out[j] = 0.0f;
  }
}

// The store of one tile: C = scale * acc (+ C when load_c) (+ bias). `c` has
// row stride ldc and kMR x kNR valid floats; bias is kNR floats or nullptr.
// Full and edge tiles both go through this function, so that the arithmetic
// per element is the same.
HWY_INLINE void StoreTile(const VF (&acc)[kMR][kNV], float* HWY_RESTRICT c, size_t ldc,
                          const float* HWY_RESTRICT bias, float scale, bool load_c) {
  const DF d;
  const VF vscale = hn::Set(d, scale);
  for (size_t i = 0; i < kMR; ++i) {
    float* HWY_RESTRICT crow = c + i * ldc;
    for (size_t j = 0; j < kNV; ++j) {
      VF r = load_c ? hn::MulAdd(vscale, acc[i][j], hn::LoadU(d, crow + j * kLanes))
                    : hn::Mul(vscale, acc[i][j]);
      if (bias != nullptr) r = hn::Add(r, hn::LoadU(d, bias + j * kLanes));
      hn::StoreU(r, d, crow + j * kLanes);
    }
  }
}

// One register tile: rows [0, mr) of A (row stride lda, kc columns read)
// times one packed panel (kc x kNR), stored into C columns [col_lo, col_hi)
// of the tile (c, bias point at the tile's column 0). mr <= kMR,
// col_lo < col_hi <= kNR.
HWY_INLINE void MicroTile(const float* HWY_RESTRICT a, size_t lda, const float* HWY_RESTRICT panel,
                          size_t kc, float* HWY_RESTRICT c, size_t ldc,
                          const float* HWY_RESTRICT bias, float scale, bool load_c, size_t mr,
                          size_t col_lo, size_t col_hi) {
  const DF d;
  // Missing rows repeat the last valid row: always in bounds, never stored.
  const float* HWY_RESTRICT arow[kMR];
  for (size_t i = 0; i < kMR; ++i) arow[i] = a + std::min(i, mr - 1) * lda;

  VF acc[kMR][kNV];
  for (size_t i = 0; i < kMR; ++i) {
    for (size_t j = 0; j < kNV; ++j) acc[i][j] = hn::Zero(d);
  }
  for (size_t k = 0; k < kc; ++k) {
    const float* HWY_RESTRICT bk = panel + k * kNR;
    VF bv[kNV];
    for (size_t j = 0; j < kNV; ++j) bv[j] = hn::Load(d, bk + j * kLanes);
    for (size_t i = 0; i < kMR; ++i) {
      const VF av = hn::Set(d, arow[i][k]);
      for (size_t j = 0; j < kNV; ++j) acc[i][j] = hn::MulAdd(av, bv[j], acc[i][j]);
    }
  }

  if (mr == kMR && col_lo == 0 && col_hi == kNR) {
    StoreTile(acc, c, ldc, bias, scale, load_c);
    return;
  }
  // Edge tile: through an aligned buffer, same arithmetic.
  HWY_ALIGN float tile[kMR * kNR];
  HWY_ALIGN float tile_bias[kNR];
  for (size_t i = 0; i < kMR * kNR; ++i) tile[i] = 0.0f;
  if (load_c) {
    for (size_t i = 0; i < mr; ++i) {
      for (size_t j = col_lo; j < col_hi; ++j) tile[i * kNR + j] = c[i * ldc + j];
    }
  }
  if (bias != nullptr) {
    for (size_t j = 0; j < kNR; ++j) tile_bias[j] = (j >= col_lo && j < col_hi) ? bias[j] : 0.0f;
  }
  StoreTile(acc, tile, kNR, bias != nullptr ? tile_bias : nullptr, scale, load_c);
  for (size_t i = 0; i < mr; ++i) {
    for (size_t j = col_lo; j < col_hi; ++j) c[i * ldc + j] = tile[i * kNR + j];
  }
}

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

// The blocked loop nest for columns [n_begin, n_end) of C. get_block(p0, p1,
// pc, kc) returns the packed panels p0..p1 (kc x kNR each, at a stride of
// `panel_stride` floats) for K rows pc..pc+kc.
template <class GetBlock>
HWY_INLINE void GemmLoops(const float* HWY_RESTRICT a, size_t lda, float* HWY_RESTRICT c,
                          size_t ldc, size_t m, size_t n_begin, size_t n_end, size_t k,
                          const float* HWY_RESTRICT bias, float scale, bool accumulate,
                          const GetBlock& get_block) {
  const size_t p_begin = n_begin / kNR;
  const size_t p_end = (n_end + kNR - 1) / kNR;
  for (size_t jc = p_begin; jc < p_end; jc += kNCPanels) {
    const size_t jc_end = std::min(p_end, jc + kNCPanels);
    for (size_t pc = 0; pc < k; pc += kKC) {
      const size_t kc = std::min(kKC, k - pc);
      size_t panel_stride = 0;
      const float* block = get_block(jc, jc_end, pc, kc, &panel_stride);
      const bool load_c = accumulate || pc != 0;
      const float* bias_now = (pc + kc == k) ? bias : nullptr;
      for (size_t i0 = 0; i0 < m; i0 += kMR) {
        const size_t mr = std::min(kMR, m - i0);
        for (size_t p = jc; p < jc_end; ++p) {
          const size_t col0 = p * kNR;
          const size_t lo = std::max(n_begin, col0) - col0;
          const size_t hi = std::min(n_end, col0 + kNR) - col0;
          MicroTile(a + i0 * lda + pc, lda, block + (p - jc) * panel_stride, kc,
                    c + i0 * ldc + col0, ldc, bias_now != nullptr ? bias_now + col0 : nullptr,
                    scale, load_c, mr, lo, hi);
        }
      }
    }
  }
}

}  // namespace matmul_detail

// Tiled GEMM, simd/matmul.h's MatMul contract, for this target. Shapes and
// strides as in MatMulArgs; C must not overlap A, B or bias. Uses this
// thread's scratch (kKC x kNC floats) to pack op(B) block by block.
inline void MatMulKernel(const simd::MatMulArgs& args) {
  using namespace matmul_detail;
  if (args.m == 0 || args.n == 0) return;
  if (args.k == 0) {
    MatMulEmptyK(args.c, args.ldc, args.m, 0, args.n, args.bias, args.accumulate);
    return;
  }
  float* scratch = simd::detail::MatMulScratch(kKC * kNC);
  auto get_block = [&](size_t p0, size_t p1, size_t pc, size_t kc, size_t* panel_stride) HWY_ATTR {
    for (size_t p = p0; p < p1; ++p) {
      const size_t n0 = p * kNR;
      PackPanel(args.b, args.ldb, args.b_transposed, pc, kc, n0, std::min(kNR, args.n - n0),
                scratch + (p - p0) * kc * kNR);
    }
    *panel_stride = kc * kNR;
    return static_cast<const float*>(scratch);
  };
  GemmLoops(args.a, args.lda, args.c, args.ldc, args.m, 0, args.n, args.k, args.bias, args.scale,
            args.accumulate, get_block);
}

// Packs op(B) for this target (see simd::PackedMatrix for the layout).
inline simd::PackedMatrix PackBKernel(const float* b, size_t ldb, bool b_transposed, size_t k,
                                      size_t n) {
  using namespace matmul_detail;
  simd::PackedMatrix packed(k, n, kNR, HWY_TARGET);
  for (size_t p = 0; p < packed.num_panels(); ++p) {
    const size_t n0 = p * kNR;
    PackPanel(b, ldb, b_transposed, 0, k, n0, std::min(kNR, n - n0),
              packed.mutable_data() + p * k * kNR);
  }
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
  if (b.target() != HWY_TARGET || b.panel_width() != kNR) {
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
  auto get_block = [&](size_t p0, size_t /*p1*/, size_t pc, size_t /*kc*/, size_t* panel_stride)
                       HWY_ATTR {
                         *panel_stride = k * kNR;
                         return b.panel(p0) + pc * kNR;
                       };
  GemmLoops(a, lda, c, ldc, m, n_begin, n_end, k, bias, scale, accumulate, get_block);
}

}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#endif  // ATTN_SIMD_MATMUL_INL_H_
