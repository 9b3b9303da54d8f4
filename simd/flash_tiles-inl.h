// Register-tile building blocks of the flash attention kernel (per target):
// the tile and block constants with their derivation, S = Q·Kᵀ on a tile,
// acc += P·V on a tile, and the final normalization. The online softmax
// between the two is in simd/flash_softmax-inl.h. Included by
// simd/flash_attention-inl.h.

#if defined(ATTN_SIMD_FLASH_TILES_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ATTN_SIMD_FLASH_TILES_INL_H_
#undef ATTN_SIMD_FLASH_TILES_INL_H_
#else
#define ATTN_SIMD_FLASH_TILES_INL_H_
#endif

#include <stddef.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {
namespace flash_detail {

namespace hn = hwy::HWY_NAMESPACE;

// Queries per register tile. Every K (or V) vector loaded from L1 feeds
// kTileRows FMAs, and every broadcast query (or weight) element feeds
// kColVecs FMAs.
constexpr size_t kTileRows = 4;

// Register tile width in vectors, for both S = Q·Kᵀ (vectors of keys) and
// acc += P·V (vectors of head_dim). AVX-512 has 32 registers: 4 x 4 = 16
// accumulators + 4 loaded vectors + 1 broadcast, and per step 8 loads (4 of
// them broadcasts) for 16 FMAs, within the load ports. The 16-register
// targets use 4 x 3 = 12 accumulators + 3 loaded + 1 broadcast (measured 3%
// faster on AVX2 than 4 x 2).
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
constexpr size_t kColVecs = 4;
#else
constexpr size_t kColVecs = 3;
#endif
static_assert(kColVecs <= 4, "TileScores handles remainders of up to 3 vectors");

// Keys per block: a multiple of every target's lane count (<= 16). At
// head_dim 64 the packed K block (64 x 64 floats) and V block (64 x 64) take
// 16 KiB each, and together with the accumulators of a query block
// (kQueryBlock x 64 floats, 8 KiB) and the score tile (1 KiB) they stay in
// the 48 KiB L1D of Sapphire Rapids while kQueryBlock / kTileRows = 8 tiles
// reuse them. Larger head dimensions spill to L2, which still feeds 4 FMAs
// per loaded vector. (Measured: 128 keys and query blocks of 16 or 64 are
// within 3% at head_dim 64, 128 keys 7% slower at head_dim 128.)
constexpr size_t kKeyBlock = 64;

// Queries whose running max, sum and accumulator are live at once; a
// multiple of kTileRows (see kKeyBlock for the derivation).
constexpr size_t kQueryBlock = 32;
static_assert(kQueryBlock % kTileRows == 0, "whole tiles per query block");

// a[r][x] += sum_{k < steps} lhs[k * lhs_step + r * lhs_row] *
//             rhs[k * ld_rhs + x * N, k * ld_rhs + (x + 1) * N)
// for r < kTileRows and x < kCols: the FMA loop of both register tiles
// (TileScoresCols, TileAccumulateCols), in ascending k. Each loaded vector
// of rhs feeds kTileRows FMAs, each broadcast element of lhs kCols FMAs.
// Indices into the register arrays are compile-time constants only, so that
// they stay in registers. (Arrays of vectors are fine on x86, NEON and
// SCALAR; the scalable targets use TileMulAddVec instead.)
#if !HWY_HAVE_SCALABLE
template <size_t kCols, class D, class V = hn::Vec<D>>
HWY_INLINE void TileMulAdd(D d, const float* HWY_RESTRICT lhs, size_t lhs_step, size_t lhs_row,
                           const float* HWY_RESTRICT rhs, size_t ld_rhs, size_t steps,
                           V (&a)[kTileRows][kCols]) {
  const size_t N = hn::Lanes(d);
  for (size_t k = 0; k < steps; ++k) {
    V b[kCols];
    for (size_t x = 0; x < kCols; ++x) b[x] = hn::LoadU(d, rhs + k * ld_rhs + x * N);
    for (size_t r = 0; r < kTileRows; ++r) {
      const V e = hn::Set(d, lhs[k * lhs_step + r * lhs_row]);
      for (size_t x = 0; x < kCols; ++x) a[r][x] = hn::MulAdd(e, b[x], a[r][x]);
    }
  }
}
#else
// Written for Highway's SVE targets (SVE, SVE2, SVE_256, SVE2_128; RVV
// alike): their vectors are sizeless types, which cannot be array elements,
// so these targets keep one vector column x of the tile at a time, its
// kTileRows accumulators as named variables, and run the k loop once per x.
// Each element sees the same MulAdd sequence, in ascending k, as with
// TileMulAdd.
static_assert(kTileRows == 4, "TileMulAddVec names 4 accumulators");
template <class D, class V = hn::Vec<D>>
HWY_INLINE void TileMulAddVec(D d, const float* HWY_RESTRICT lhs, size_t lhs_step, size_t lhs_row,
                              const float* HWY_RESTRICT rhs, size_t ld_rhs, size_t steps, V& a0,
                              V& a1, V& a2, V& a3) {
  for (size_t k = 0; k < steps; ++k) {
    const V b = hn::LoadU(d, rhs + k * ld_rhs);
    const float* HWY_RESTRICT e = lhs + k * lhs_step;
    a0 = hn::MulAdd(hn::Set(d, e[0]), b, a0);
    a1 = hn::MulAdd(hn::Set(d, e[lhs_row]), b, a1);
    a2 = hn::MulAdd(hn::Set(d, e[2 * lhs_row]), b, a2);
    a3 = hn::MulAdd(hn::Set(d, e[3 * lhs_row]), b, a3);
  }
}
#endif  // !HWY_HAVE_SCALABLE

// s[r * kKeyBlock + x] = sum_c qt[c * kTileRows + r] * kt[c * kKeyBlock + x]
// for r < kTileRows and x < kCols * N: one register tile of scores. qt: the
// tile's queries, packed (PackQueryTiles: head_dim groups of kTileRows
// floats, already multiplied by the scale); kt: a column offset (a multiple
// of N) into a packed K block; s: the same offset into the score tile.
template <size_t kCols, class D>
HWY_INLINE void TileScoresCols(D d, const float* HWY_RESTRICT qt, size_t head_dim,
                               const float* HWY_RESTRICT kt, float* HWY_RESTRICT s) {
  using V = hn::Vec<D>;
  const size_t N = hn::Lanes(d);
#if HWY_HAVE_SCALABLE
  // SVE (sizeless vectors): one vector column at a time, see TileMulAddVec.
  for (size_t x = 0; x < kCols; ++x) {
    V a0 = hn::Zero(d), a1 = a0, a2 = a0, a3 = a0;
    TileMulAddVec(d, qt, kTileRows, 1, kt + x * N, kKeyBlock, head_dim, a0, a1, a2, a3);
    hn::Store(a0, d, s + x * N);
    hn::Store(a1, d, s + kKeyBlock + x * N);
    hn::Store(a2, d, s + 2 * kKeyBlock + x * N);
    hn::Store(a3, d, s + 3 * kKeyBlock + x * N);
  }
#else
  V acc[kTileRows][kCols];
  for (size_t r = 0; r < kTileRows; ++r) {
    for (size_t x = 0; x < kCols; ++x) acc[r][x] = hn::Zero(d);
  }
  TileMulAdd<kCols>(d, qt, kTileRows, 1, kt, kKeyBlock, head_dim, acc);
  for (size_t r = 0; r < kTileRows; ++r) {
    for (size_t x = 0; x < kCols; ++x) hn::Store(acc[r][x], d, s + r * kKeyBlock + x * N);
  }
#endif
}

// Scores of the tile's packed queries (qt) against the first n <= kKeyBlock
// keys of a packed K block (kt), into s (kTileRows x kKeyBlock), rounded up
// to whole vectors of keys.
template <class D>
HWY_INLINE void TileScores(D d, const float* HWY_RESTRICT qt, size_t head_dim,
                           const float* HWY_RESTRICT kt, size_t n, float* HWY_RESTRICT s) {
  const size_t N = hn::Lanes(d);
  const size_t num_vecs = hwy::DivCeil(n, N);
  size_t x = 0;
  for (; x + kColVecs <= num_vecs; x += kColVecs) {
    TileScoresCols<kColVecs>(d, qt, head_dim, kt + x * N, s + x * N);
  }
  // The diagonal block's remainder: one narrower tile.
  switch (num_vecs - x) {
    case 3:
      TileScoresCols<3>(d, qt, head_dim, kt + x * N, s + x * N);
      break;
    case 2:
      TileScoresCols<2>(d, qt, head_dim, kt + x * N, s + x * N);
      break;
    case 1:
      TileScoresCols<1>(d, qt, head_dim, kt + x * N, s + x * N);
      break;
    default:
      break;
  }
}

// What a tile's accumulator holds before acc += P·V (see TileAccumulateCols).
enum class AccStart { kZero, kKeep, kRescale };

// acc[r, x] = alpha[r] * acc[r, x] + sum_{j < n} p[r, j] * vp[j, x]
// for r < kTileRows and x < kCols * N: one register tile of the output
// accumulator. start says what acc holds: kZero, nothing yet (the first key
// block: acc is not read, as if it were 0); kKeep, every alpha is 1 (skip
// the multiply: alpha * acc = acc exactly); kRescale, the general case. p:
// the score tile (row stride kKeyBlock); vp: a column offset
// (a multiple of N) into the V rows of the key block (packed or in place, row
// stride ld_vp); acc: the same offset into the tile's accumulator rows (row
// stride ld_acc).
template <size_t kCols, class D>
HWY_INLINE void TileAccumulateCols(D d, const float* HWY_RESTRICT p, size_t n, const float* alpha,
                                   AccStart start, const float* HWY_RESTRICT vp, size_t ld_vp,
                                   float* HWY_RESTRICT acc, size_t ld_acc) {
  using V = hn::Vec<D>;
  const size_t N = hn::Lanes(d);
#if HWY_HAVE_SCALABLE
  // SVE (sizeless vectors): one vector column at a time, see TileMulAddVec;
  // the same operations per element as below.
  for (size_t x = 0; x < kCols; ++x) {
    float* HWY_RESTRICT ax = acc + x * N;
    V a0 = hn::Zero(d), a1 = a0, a2 = a0, a3 = a0;
    if (start != AccStart::kZero) {
      a0 = hn::Load(d, ax);
      a1 = hn::Load(d, ax + ld_acc);
      a2 = hn::Load(d, ax + 2 * ld_acc);
      a3 = hn::Load(d, ax + 3 * ld_acc);
    }
    if (start == AccStart::kRescale) {
      a0 = hn::Mul(a0, hn::Set(d, alpha[0]));
      a1 = hn::Mul(a1, hn::Set(d, alpha[1]));
      a2 = hn::Mul(a2, hn::Set(d, alpha[2]));
      a3 = hn::Mul(a3, hn::Set(d, alpha[3]));
    }
    TileMulAddVec(d, p, 1, kKeyBlock, vp + x * N, ld_vp, n, a0, a1, a2, a3);
    hn::Store(a0, d, ax);
    hn::Store(a1, d, ax + ld_acc);
    hn::Store(a2, d, ax + 2 * ld_acc);
    hn::Store(a3, d, ax + 3 * ld_acc);
  }
#else
  V a[kTileRows][kCols];
  for (size_t r = 0; r < kTileRows; ++r) {
    for (size_t x = 0; x < kCols; ++x) {
      a[r][x] = start == AccStart::kZero ? hn::Zero(d) : hn::Load(d, acc + r * ld_acc + x * N);
    }
  }
  if (start == AccStart::kRescale) {
    for (size_t r = 0; r < kTileRows; ++r) {
      const V va = hn::Set(d, alpha[r]);
      for (size_t x = 0; x < kCols; ++x) a[r][x] = hn::Mul(a[r][x], va);
    }
  }
  TileMulAdd<kCols>(d, p, 1, kKeyBlock, vp, ld_vp, n, a);
  for (size_t r = 0; r < kTileRows; ++r) {
    for (size_t x = 0; x < kCols; ++x) hn::Store(a[r][x], d, acc + r * ld_acc + x * N);
  }
#endif
}

// acc_row[0, width) += sum_{j_begin <= j < j_end} p_row[j] * vp[j, :] for
// one row: the keys of a block that only some rows of a tile see (at the
// diagonal and at the window's start, at most kTileRows - 1 keys each for
// consecutive positions).
template <class D>
HWY_INLINE void RowAccumulate(D d, const float* HWY_RESTRICT p_row, size_t j_begin, size_t j_end,
                              const float* HWY_RESTRICT vp, size_t ld_vp, size_t width,
                              float* HWY_RESTRICT acc_row) {
  const size_t N = hn::Lanes(d);
  for (size_t j = j_begin; j < j_end; ++j) {
    const auto pv = hn::Set(d, p_row[j]);
    for (size_t x = 0; x < width; x += N) {
      hn::Store(hn::MulAdd(pv, hn::LoadU(d, vp + j * ld_vp + x), hn::Load(d, acc_row + x)), d,
                acc_row + x);
    }
  }
}

// The tile's accumulators (kTileRows rows of ld_acc floats, a multiple of N)
// = alpha * acc + P · V_block, where row r of P has weights for the keys
// [begin[r], end[r]) of the block (both non-decreasing in r; a row may have
// none); vp: the V rows of the key block, packed or read in place, row
// stride ld_vp. first_block: acc holds nothing yet and is only written (as
// if it were 0). The keys every row sees, [begin of the last row, end of the
// first), go through the register tile; the rest row by row. Every row
// scales its accumulator, then adds its keys in ascending order with one
// MulAdd each, whichever rows share its tile: a row's result does not
// depend on the others. Rows only read their own keys.
template <class D>
HWY_INLINE void TileAccumulate(D d, const float* HWY_RESTRICT p, const size_t* begin,
                               const size_t* end, const float* alpha, bool first_block,
                               const float* HWY_RESTRICT vp, size_t ld_vp, float* HWY_RESTRICT acc,
                               size_t ld_acc) {
  const size_t N = hn::Lanes(d);
  const size_t num_vecs = ld_acc / N;
  const size_t common_begin = begin[kTileRows - 1];
  const size_t common_end = std::max(end[0], common_begin);
  const size_t n_common = common_end - common_begin;
  // (No pointer past the block is formed when no key is common.)
  const float* HWY_RESTRICT p_common = n_common > 0 ? p + common_begin : p;
  const float* HWY_RESTRICT v_common = n_common > 0 ? vp + common_begin * ld_vp : vp;
  AccStart start = first_block ? AccStart::kZero : AccStart::kKeep;
  for (size_t r = 0; r < kTileRows; ++r) {
    if (!first_block && alpha[r] != 1.0f) start = AccStart::kRescale;
  }
  if (begin[0] < common_begin) {
    // Rows whose window starts before the common keys (begin is
    // non-decreasing): scale each row and add those keys first.
    for (size_t r = 0; r < kTileRows; ++r) {
      float* HWY_RESTRICT row = acc + r * ld_acc;
      if (first_block || alpha[r] != 1.0f) {
        const auto va = hn::Set(d, first_block ? 0.0f : alpha[r]);
        for (size_t x = 0; x < ld_acc; x += N) {
          hn::Store(first_block ? hn::Zero(d) : hn::Mul(hn::Load(d, row + x), va), d, row + x);
        }
      }
      RowAccumulate(d, p + r * kKeyBlock, begin[r], std::min(end[r], common_begin), vp, ld_vp,
                    ld_acc, row);
    }
    start = AccStart::kKeep;
  }
  size_t x = 0;
  for (; x + kColVecs <= num_vecs; x += kColVecs) {
    TileAccumulateCols<kColVecs>(d, p_common, n_common, alpha, start, v_common + x * N, ld_vp,
                                 acc + x * N, ld_acc);
  }
  for (; x < num_vecs; ++x) {
    TileAccumulateCols<1>(d, p_common, n_common, alpha, start, v_common + x * N, ld_vp, acc + x * N,
                          ld_acc);
  }
  for (size_t r = 0; r < kTileRows; ++r) {
    RowAccumulate(d, p + r * kKeyBlock, std::max(begin[r], common_end), end[r], vp, ld_vp, ld_acc,
                  acc + r * ld_acc);
  }
}

// out[0, head_dim) = acc * (1 / sum of the N partial sums l), or NaN for a
// row whose sum is NaN (a NaN or +inf score) or 0 (no finite score).
template <class D>
HWY_INLINE void FinishRow(D d, const float* HWY_RESTRICT acc, const float* HWY_RESTRICT l,
                          size_t head_dim, float* HWY_RESTRICT out) {
  const auto vl = hn::SumOfLanes(d, hn::Load(d, l));
  const float sum = hn::GetLane(vl);
  if (!(sum > 0.0f)) {
    for (size_t c = 0; c < head_dim; ++c) out[c] = std::numeric_limits<float>::quiet_NaN();
    return;
  }
  // One division per row, not per vector (measured 1-2% of the kernel's
  // time at head_dim 64); acc * (1 / sum) is within 1.5 ULP of acc / sum.
  const size_t N = hn::Lanes(d);
  const auto inv = hn::Div(hn::Set(d, 1.0f), vl);
  const float inv_sum = hn::GetLane(inv);
  size_t c = 0;
  for (; c + N <= head_dim; c += N) hn::StoreU(hn::Mul(hn::Load(d, acc + c), inv), d, out + c);
  for (; c < head_dim; ++c) out[c] = acc[c] * inv_sum;
}

}  // namespace flash_detail
// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#endif  // ATTN_SIMD_FLASH_TILES_INL_H_
