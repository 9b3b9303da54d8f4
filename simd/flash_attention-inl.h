// Per-target flash attention kernel; the contract is in simd/flash_attention.h.
// Included once per target by simd/flash_attention.cc (through
// foreach_target.h) and by tests/simd/flash_attention_test.cc, which calls
// FlashAttentionKernel of each target directly.
//
// Algorithm (one call = one (batch, head), a block of queries):
//   1. Pack the keys the last query can see: K transposed into key blocks of
//      kKeyBlock columns (head_dim x kKeyBlock each, so that a row of scores
//      is kKeyBlock / N vectors of lanes); V, unless read in place, into
//      contiguous rows of head_dim rounded up to whole vectors, zero-padded
//      (no tail handling in the P·V tile).
//   2. For each block of kQueryBlock queries, for each key block up to the
//      diagonal, for each tile of kTileRows queries that sees the key block:
//        S = scale * Q_tile · K_blockᵀ             (register tile, TileScores)
//        online softmax of each row of S: running max m, running sum l
//        (N per-lane partial sums), P = exp(S - m_new) in place of S,
//        alpha = exp(m_old - m_new)                (SoftmaxBlockRow)
//        acc = alpha * acc + P · V_block           (register tile, TileAccumulate)
//   3. out = acc / l per row                       (FinishRow)
// Causality is a loop bound: key blocks above a tile's diagonal are skipped,
// and in the diagonal block each row stops at its own last visible key.
// Every row goes through the same operations whatever the other rows of its
// tile or call are (key blocks start at multiples of kKeyBlock), so results
// are bitwise independent of how the parallel layer splits the queries.
//
// Cost at head_dim 64 on AVX3: per 16 visible scores, 128 FMAs (64 for S, 64
// for P·V) and about 30 other vector operations (exp, max, sums), which
// share AVX-512's two FMA ports: about 80% of peak at best. Measured
// single-threaded, causal, head_dim 64, on a shared 2-core Xeon (Sapphire
// Rapids class, 178 GFLOP/s FMA peak per core): T = 1024 about 120 GFLOP/s
// (140 at best), T = 2048 120-150, the scalar reference 3.6; AVX2 about 60,
// SSE4 about 28; decoding 1 query over 1024 keys 12 (memory-bound).

#if defined(ATTN_SIMD_FLASH_ATTENTION_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ATTN_SIMD_FLASH_ATTENTION_INL_H_
#undef ATTN_SIMD_FLASH_ATTENTION_INL_H_
#else
#define ATTN_SIMD_FLASH_ATTENTION_INL_H_
#endif

#include <stddef.h>
#include <string.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <new>

#include "hwy/aligned_allocator.h"
#include "hwy/highway.h"
#include "simd/flash_attention.h"

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

// Number of keys that query row i sees (the end of vis(i)).
HWY_INLINE size_t VisibleKeys(const simd::FlashAttentionArgs& a, size_t i) {
  if (!a.causal) return a.num_keys;
  const size_t pos = a.q_begin + i;
  return pos < a.num_keys ? pos + 1 : a.num_keys;
}

// kt <- keys [0, num_keys) of k (row stride ldk), transposed per key block:
// element (key j, dim c) goes to kt[(j / kKeyBlock) * head_dim * kKeyBlock +
// c * kKeyBlock + j % kKeyBlock]. Keys from num_keys to the end of the last
// block are zero. Groups of 4 keys x 4 dims go through 4x4 transposes of
// 128-bit vectors (2.5x faster than element by element: this packing is
// most of the time of a single-query decoding step).
static_assert(kKeyBlock % 4 == 0, "PackKeys transposes groups of 4 keys");
HWY_INLINE void PackKeys(const float* HWY_RESTRICT k, size_t ldk, size_t num_keys, size_t head_dim,
                         float* HWY_RESTRICT kt) {
  const size_t num_blocks = hwy::DivCeil(num_keys, kKeyBlock);
  for (size_t b = 0; b < num_blocks; ++b) {
    float* HWY_RESTRICT block = kt + b * head_dim * kKeyBlock;
    for (size_t jj = 0; jj < kKeyBlock; jj += 4) {
      const size_t j = b * kKeyBlock + jj;
      size_t c = 0;
#if HWY_TARGET != HWY_SCALAR
      if (j + 4 <= num_keys) {
        const hn::Full128<float> d4;
        const float* HWY_RESTRICT row = k + j * ldk;
        for (; c + 4 <= head_dim; c += 4) {
          const auto k0 = hn::LoadU(d4, row + c), k1 = hn::LoadU(d4, row + ldk + c);
          const auto k2 = hn::LoadU(d4, row + 2 * ldk + c), k3 = hn::LoadU(d4, row + 3 * ldk + c);
          const auto k01_lo = hn::InterleaveLower(d4, k0, k1);  // k0[0] k1[0] k0[1] k1[1]
          const auto k23_lo = hn::InterleaveLower(d4, k2, k3);
          const auto k01_hi = hn::InterleaveUpper(d4, k0, k1);  // k0[2] k1[2] k0[3] k1[3]
          const auto k23_hi = hn::InterleaveUpper(d4, k2, k3);
          float* HWY_RESTRICT dst = block + c * kKeyBlock + jj;  // 16-byte aligned
          hn::Store(hn::ConcatLowerLower(d4, k23_lo, k01_lo), d4, dst);
          hn::Store(hn::ConcatUpperUpper(d4, k23_lo, k01_lo), d4, dst + kKeyBlock);
          hn::Store(hn::ConcatLowerLower(d4, k23_hi, k01_hi), d4, dst + 2 * kKeyBlock);
          hn::Store(hn::ConcatUpperUpper(d4, k23_hi, k01_hi), d4, dst + 3 * kKeyBlock);
        }
      }
#endif
      // The rest of the dims, or a group that reaches past num_keys.
      for (size_t q = 0; q < 4; ++q) {
        float* HWY_RESTRICT dst = block + jj + q;
        if (j + q < num_keys) {
          const float* HWY_RESTRICT row = k + (j + q) * ldk;
          for (size_t cc = c; cc < head_dim; ++cc) dst[cc * kKeyBlock] = row[cc];
        } else {
          for (size_t cc = c; cc < head_dim; ++cc) dst[cc * kKeyBlock] = 0.0f;
        }
      }
    }
  }
}

// vp <- rows [0, num_keys) of v (row stride ldv), row stride ld_vp >=
// head_dim, zero from head_dim to ld_vp.
HWY_INLINE void PackValues(const float* HWY_RESTRICT v, size_t ldv, size_t num_keys,
                           size_t head_dim, float* HWY_RESTRICT vp, size_t ld_vp) {
  for (size_t j = 0; j < num_keys; ++j) {
    memcpy(vp + j * ld_vp, v + j * ldv, head_dim * sizeof(float));
    memset(vp + j * ld_vp + head_dim, 0, (ld_vp - head_dim) * sizeof(float));
  }
}

// s[r * kKeyBlock + x] = scale * sum_c q_rows[r][c] * kt[c * kKeyBlock + x]
// for r < kTileRows and x < kCols * N: one register tile of scores.
// q_rows: kTileRows rows of head_dim floats (any alignment); kt: a column
// offset (a multiple of N) into a packed K block; s: the same offset into
// the score tile.
template <size_t kCols, class D>
HWY_INLINE void TileScoresCols(D d, const float* const* q_rows, size_t head_dim,
                               const float* HWY_RESTRICT kt, float scale, float* HWY_RESTRICT s) {
  using V = hn::Vec<D>;
  const size_t N = hn::Lanes(d);
  V acc[kTileRows][kCols];
  for (size_t r = 0; r < kTileRows; ++r) {
    for (size_t x = 0; x < kCols; ++x) acc[r][x] = hn::Zero(d);
  }
  for (size_t c = 0; c < head_dim; ++c) {
    V kv[kCols];
    for (size_t x = 0; x < kCols; ++x) kv[x] = hn::Load(d, kt + c * kKeyBlock + x * N);
    for (size_t r = 0; r < kTileRows; ++r) {
      const V qv = hn::Set(d, q_rows[r][c]);
      for (size_t x = 0; x < kCols; ++x) acc[r][x] = hn::MulAdd(qv, kv[x], acc[r][x]);
    }
  }
  const V vscale = hn::Set(d, scale);
  for (size_t r = 0; r < kTileRows; ++r) {
    for (size_t x = 0; x < kCols; ++x) {
      hn::Store(hn::Mul(acc[r][x], vscale), d, s + r * kKeyBlock + x * N);
    }
  }
}

// Scores of the tile's queries against the first n <= kKeyBlock keys of a
// packed K block (kt), into s (kTileRows x kKeyBlock), rounded up to whole
// vectors of keys.
template <class D>
HWY_INLINE void TileScores(D d, const float* const* q_rows, size_t head_dim,
                           const float* HWY_RESTRICT kt, float scale, size_t n,
                           float* HWY_RESTRICT s) {
  const size_t N = hn::Lanes(d);
  const size_t num_vecs = hwy::DivCeil(n, N);
  size_t x = 0;
  for (; x + kColVecs <= num_vecs; x += kColVecs) {
    TileScoresCols<kColVecs>(d, q_rows, head_dim, kt + x * N, scale, s + x * N);
  }
  // The diagonal block's remainder: one narrower tile.
  switch (num_vecs - x) {
    case 3:
      TileScoresCols<3>(d, q_rows, head_dim, kt + x * N, scale, s + x * N);
      break;
    case 2:
      TileScoresCols<2>(d, q_rows, head_dim, kt + x * N, scale, s + x * N);
      break;
    case 1:
      TileScoresCols<1>(d, q_rows, head_dim, kt + x * N, scale, s + x * N);
      break;
    default:
      break;
  }
}

// exp(x) for x <= 0 or x = -inf (not NaN), as the softmax needs it
// (x = score - max):
// Cephes' expf reduction and polynomial, relative error below 1.2e-7 (about
// 1 ULP) on every target, exactly 1 at 0, and exactly 0 below ln(2^-126) =
// -87.34 where exp leaves the normal range (such a weight is below 2^-126
// times the row's largest one, so flushing it changes no output by more than
// that). About 18 vector operations, against about 30 for hwy's Exp, which
// also handles x > 0; that saves about 5% of the kernel's time.
template <class D, class V = hn::Vec<D>>
HWY_INLINE V ExpNonPositive(D d, V x) {
  const hn::RebindToSigned<D> di;
  const V kMin = hn::Set(d, -87.33654f);
  // Adding 1.5 * 2^23 rounds to an integer n that lands in the low mantissa
  // bits: bits(t) = 0x4B400000 + n.
  const V kRound = hn::Set(d, 12582912.0f);
  const V xc = hn::Max(x, kMin);
  const V t = hn::MulAdd(xc, hn::Set(d, 1.44269504088896341f), kRound);
  const V n = hn::Sub(t, kRound);  // round(xc / ln 2), in [-126, 0]
  // r = xc - n ln 2 in [-ln2/2, ln2/2]; n * 0.693359375 is exact.
  V r = hn::NegMulAdd(n, hn::Set(d, 0.693359375f), xc);
  r = hn::NegMulAdd(n, hn::Set(d, -2.12194440e-4f), r);
  V p = hn::Set(d, 1.9875691500e-4f);
  p = hn::MulAdd(p, r, hn::Set(d, 1.3981999507e-3f));
  p = hn::MulAdd(p, r, hn::Set(d, 8.3334519073e-3f));
  p = hn::MulAdd(p, r, hn::Set(d, 4.1665795894e-2f));
  p = hn::MulAdd(p, r, hn::Set(d, 1.6666665459e-1f));
  p = hn::MulAdd(p, r, hn::Set(d, 5.0000001201e-1f));
  p = hn::MulAdd(p, hn::Mul(r, r), hn::Add(r, hn::Set(d, 1.0f)));  // e^r
  // 2^n = bits (n + 127) << 23; the 0x4B400000 of t shifts out.
  const V pow2n = hn::BitCast(d, hn::ShiftLeft<23>(hn::Add(hn::BitCast(di, t), hn::Set(di, 127))));
  return hn::IfThenZeroElse(hn::Lt(x, kMin), hn::Mul(p, pow2n));
}

// Online softmax step of one query row over the scores s[0, n) (n >= 1) of
// one key block: updates the running max m and the running sum, kept as N
// per-lane partial sums in l (reduced once, in FinishRow), overwrites s[0, n)
// with p = exp(s - m_new) (and the rest of the last vector with 0), and
// returns alpha = exp(m_old - m_new), the factor for the row's accumulator.
// A NaN or +inf score sets bad (the row's result is NaN whatever follows);
// scores that are all -inf so far leave m = -inf, l = 0 and give p = 0.
template <class D>
HWY_INLINE float SoftmaxBlockRow(D d, float* HWY_RESTRICT s, size_t n, float& m,
                                 float* HWY_RESTRICT l, bool& bad) {
  using V = hn::Vec<D>;
  const size_t N = hn::Lanes(d);
  const float kInf = std::numeric_limits<float>::infinity();
  const V vneg_inf = hn::Set(d, -kInf);
  const V vinf = hn::Set(d, kInf);

  // Pass 1: block max, and whether every score is below +inf (not NaN).
  V vmax = vneg_inf;
  auto finite = hn::Lt(vneg_inf, vinf);  // all true
  size_t j = 0;
  for (; j + N <= n; j += N) {
    const V x = hn::Load(d, s + j);
    vmax = hn::Max(vmax, x);
    finite = hn::And(finite, hn::Lt(x, vinf));
  }
  if (j < n) {
    const V x = hn::IfThenElse(hn::FirstN(d, n - j), hn::Load(d, s + j), vneg_inf);
    vmax = hn::Max(vmax, x);
    finite = hn::And(finite, hn::Lt(x, vinf));
  }
  if (!hn::AllTrue(d, finite)) {
    bad = true;
    return 1.0f;  // s is garbage now; the row's output becomes NaN anyway.
  }
  const float m_new = std::max(m, hn::GetLane(hn::MaxOfLanes(d, vmax)));
  if (m_new == -kInf) {  // every visible score so far is -inf: weights 0
    for (j = 0; j < n; j += N) hn::Store(hn::Zero(d), d, s + j);
    return 1.0f;
  }
  // m = -inf (first finite block) gives alpha = 0; acc and l are 0 then.
  const float alpha = (m == m_new) ? 1.0f : hn::GetLane(ExpNonPositive(d, hn::Set(d, m - m_new)));

  // Pass 2: p = exp(s - m_new) and its sum.
  const V vm = hn::Set(d, m_new);
  V vsum = hn::Zero(d);
  for (j = 0; j + N <= n; j += N) {
    const V p = ExpNonPositive(d, hn::Sub(hn::Load(d, s + j), vm));
    hn::Store(p, d, s + j);
    vsum = hn::Add(vsum, p);
  }
  if (j < n) {
    const V p = hn::IfThenElseZero(hn::FirstN(d, n - j),
                                   ExpNonPositive(d, hn::Sub(hn::Load(d, s + j), vm)));
    hn::Store(p, d, s + j);
    vsum = hn::Add(vsum, p);
  }
  hn::Store(hn::MulAdd(hn::Load(d, l), hn::Set(d, alpha), vsum), d, l);
  m = m_new;
  return alpha;
}

// acc[r, x] = alpha[r] * acc[r, x] + sum_{j < n} p[r, j] * vp[j, x]
// for r < kTileRows and x < kCols * N: one register tile of the output
// accumulator. p: the score tile (row stride kKeyBlock); vp: a column offset
// (a multiple of N) into the V rows of the key block (packed or in place, row
// stride ld_vp); acc: the same offset into the tile's accumulator rows (row
// stride ld_acc). Indices into the register arrays are compile-time constants
// only, so that they stay in registers. (Arrays of vectors are fine on x86
// and SCALAR, the targets this project compiles; SVE/RVV would need them
// unrolled by hand.)
template <size_t kCols, class D>
HWY_INLINE void TileAccumulateCols(D d, const float* HWY_RESTRICT p, size_t n, const float* alpha,
                                   const float* HWY_RESTRICT vp, size_t ld_vp,
                                   float* HWY_RESTRICT acc, size_t ld_acc) {
  using V = hn::Vec<D>;
  const size_t N = hn::Lanes(d);
  V a[kTileRows][kCols];
  for (size_t r = 0; r < kTileRows; ++r) {
    const V va = hn::Set(d, alpha[r]);
    for (size_t x = 0; x < kCols; ++x) {
      a[r][x] = hn::Mul(hn::Load(d, acc + r * ld_acc + x * N), va);
    }
  }
  for (size_t j = 0; j < n; ++j) {
    V vv[kCols];
    for (size_t x = 0; x < kCols; ++x) vv[x] = hn::LoadU(d, vp + j * ld_vp + x * N);
    for (size_t r = 0; r < kTileRows; ++r) {
      const V pv = hn::Set(d, p[r * kKeyBlock + j]);
      for (size_t x = 0; x < kCols; ++x) a[r][x] = hn::MulAdd(pv, vv[x], a[r][x]);
    }
  }
  for (size_t r = 0; r < kTileRows; ++r) {
    for (size_t x = 0; x < kCols; ++x) hn::Store(a[r][x], d, acc + r * ld_acc + x * N);
  }
}

// acc_row[0, width) += sum_{j_begin <= j < j_end} p_row[j] * vp[j, :] for
// one row: the keys of the diagonal block that only some rows of a tile see
// (at most kTileRows - 1 of them).
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
// = alpha * acc + P · V_block, where row r of P has n_row[r] weights
// (non-decreasing in r); vp: the packed V block, row stride ld_acc. Rows only
// read their own keys.
template <class D>
HWY_INLINE void TileAccumulate(D d, const float* HWY_RESTRICT p, const size_t* n_row,
                               const float* alpha, const float* HWY_RESTRICT vp, size_t ld_vp,
                               float* HWY_RESTRICT acc, size_t ld_acc) {
  const size_t N = hn::Lanes(d);
  const size_t num_vecs = ld_acc / N;
  const size_t n_common = n_row[0];
  size_t x = 0;
  for (; x + kColVecs <= num_vecs; x += kColVecs) {
    TileAccumulateCols<kColVecs>(d, p, n_common, alpha, vp + x * N, ld_vp, acc + x * N, ld_acc);
  }
  for (; x < num_vecs; ++x) {
    TileAccumulateCols<1>(d, p, n_common, alpha, vp + x * N, ld_vp, acc + x * N, ld_acc);
  }
  for (size_t r = 1; r < kTileRows; ++r) {
    RowAccumulate(d, p + r * kKeyBlock, n_common, n_row[r], vp, ld_vp, ld_acc, acc + r * ld_acc);
  }
}

// out[0, head_dim) = acc / (sum of the N partial sums l), or NaN for a bad
// row or one without weight.
template <class D>
HWY_INLINE void FinishRow(D d, const float* HWY_RESTRICT acc, const float* HWY_RESTRICT l, bool bad,
                          size_t head_dim, float* HWY_RESTRICT out) {
  const auto vl = hn::SumOfLanes(d, hn::Load(d, l));
  const float sum = hn::GetLane(vl);
  if (bad || !(sum > 0.0f)) {
    for (size_t c = 0; c < head_dim; ++c) out[c] = std::numeric_limits<float>::quiet_NaN();
    return;
  }
  const size_t N = hn::Lanes(d);
  size_t c = 0;
  for (; c + N <= head_dim; c += N) hn::StoreU(hn::Div(hn::Load(d, acc + c), vl), d, out + c);
  for (; c < head_dim; ++c) out[c] = acc[c] / sum;
}

}  // namespace flash_detail

// The kernel for this target: the contract of simd::FlashAttention, without
// argument checks (the dispatching wrapper does them).
inline void FlashAttentionKernel(const simd::FlashAttentionArgs& a) {
  using namespace flash_detail;  // NOLINT(build/namespaces)
  const size_t num_queries = a.num_queries, head_dim = a.head_dim;
  if (num_queries == 0 || head_dim == 0) return;
  const size_t key_end = VisibleKeys(a, num_queries - 1);  // the most any row reads
  if (key_end == 0) {
    // No row sees a key (num_keys == 0): the softmax of nothing is NaN.
    for (size_t i = 0; i < num_queries; ++i) {
      std::fill(a.out + i * a.ldo, a.out + i * a.ldo + head_dim,
                std::numeric_limits<float>::quiet_NaN());
    }
    return;
  }

  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  const size_t ld_acc = hwy::RoundUpTo(head_dim, N);  // also the row stride of vp
  const size_t num_blocks = hwy::DivCeil(key_end, kKeyBlock);
  const size_t kt_size = num_blocks * head_dim * kKeyBlock;
  // V is read in place when its rows are whole vectors and either contiguous
  // or read by a single tile (decoding): packing would only add a copy then.
  // Otherwise it is packed: rows that are not whole vectors get padded, and
  // rows far apart (a fused QKV layout, 9 KiB per row in GPT-2) would land in
  // a few L1 sets and on 64 pages per key block (measured 20% slower at
  // T = 1024 in place than packed).
  const bool pack_values = ld_acc != head_dim || (a.ldv != head_dim && num_queries > kTileRows);
  const size_t vp_size = pack_values ? key_end * ld_acc : 0;
  const size_t acc_size = kQueryBlock * ld_acc;
  const size_t s_size = kTileRows * kKeyBlock;
  const size_t l_size = kQueryBlock * N;
  // Every part is a multiple of N floats, so each starts vector-aligned.
  auto scratch = hwy::AllocateAligned<float>(kt_size + vp_size + acc_size + s_size + l_size);
  if (!scratch) throw std::bad_alloc();
  float* HWY_RESTRICT kt = scratch.get();
  float* HWY_RESTRICT vp = kt + kt_size;
  float* HWY_RESTRICT acc = vp + vp_size;
  float* HWY_RESTRICT s = acc + acc_size;
  float* HWY_RESTRICT l = s + s_size;  // N partial sums per query row
  PackKeys(a.k, a.ldk, key_end, head_dim, kt);
  const float* HWY_RESTRICT values = a.v;
  size_t ld_values = a.ldv;
  if (pack_values) {
    PackValues(a.v, a.ldv, key_end, head_dim, vp, ld_acc);
    values = vp;
    ld_values = ld_acc;
  }

  float m[kQueryBlock];
  bool bad[kQueryBlock];
  for (size_t i0 = 0; i0 < num_queries; i0 += kQueryBlock) {
    const size_t rows = std::min(kQueryBlock, num_queries - i0);
    const size_t num_tiles = hwy::DivCeil(rows, kTileRows);
    std::fill(m, m + kQueryBlock, -std::numeric_limits<float>::infinity());
    std::fill(l, l + l_size, 0.0f);
    std::fill(bad, bad + kQueryBlock, false);
    std::fill(acc, acc + acc_size, 0.0f);
    const size_t block_key_end = VisibleKeys(a, i0 + rows - 1);

    for (size_t j0 = 0; j0 < block_key_end; j0 += kKeyBlock) {
      const float* HWY_RESTRICT kt_block = kt + (j0 / kKeyBlock) * head_dim * kKeyBlock;
      const float* HWY_RESTRICT v_block = values + j0 * ld_values;
      for (size_t t = 0; t < num_tiles; ++t) {
        // Rows of a partial last tile repeat its last query (results unused).
        const size_t r0 = t * kTileRows;
        const size_t last = std::min(kTileRows, rows - r0) - 1;
        const float* q_rows[kTileRows];
        size_t n_row[kTileRows];
        for (size_t r = 0; r < kTileRows; ++r) {
          const size_t i = i0 + r0 + std::min(r, last);
          q_rows[r] = a.q + i * a.ldq;
          const size_t lim = VisibleKeys(a, i);
          n_row[r] = lim > j0 ? std::min(kKeyBlock, lim - j0) : 0;
        }
        // n_row is non-decreasing in r: the last row sees the most keys.
        const size_t n = n_row[kTileRows - 1];
        if (n == 0) continue;  // the key block is above this tile's diagonal
        TileScores(d, q_rows, head_dim, kt_block, a.scale, n, s);
        float alpha[kTileRows];
        for (size_t r = 0; r < kTileRows; ++r) {
          alpha[r] = n_row[r] == 0 ? 1.0f
                                   : SoftmaxBlockRow(d, s + r * kKeyBlock, n_row[r], m[r0 + r],
                                                     l + (r0 + r) * N, bad[r0 + r]);
        }
        TileAccumulate(d, s, n_row, alpha, v_block, ld_values, acc + r0 * ld_acc, ld_acc);
      }
    }
    for (size_t r = 0; r < rows; ++r) {
      FinishRow(d, acc + r * ld_acc, l + r * N, bad[r], head_dim, a.out + (i0 + r) * a.ldo);
    }
  }
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#endif  // ATTN_SIMD_FLASH_ATTENTION_INL_H_
