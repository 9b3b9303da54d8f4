// Per-target flash attention kernel; the contract is in simd/flash_attention.h.
// Included once per target by simd/flash_attention.cc (through
// foreach_target.h) and by tests/simd/flash_attention_test.cc, which calls
// FlashAttentionKernel of each target directly.
//
// Algorithm (one call = one (batch, head), a block of queries). For each
// block of kQueryBlock queries:
//   1. Pack what the block needs that earlier blocks did not: the keys it is
//      the first to see, K transposed into key blocks of kKeyBlock columns
//      (head_dim x kKeyBlock each, so that a row of scores is
//      kKeyBlock / N vectors of lanes), and V, unless read in place, into
//      contiguous rows of head_dim rounded up to whole vectors, zero-padded
//      (no tail handling in the P·V tile). Pack the block's queries times
//      scale, interleaved per tile (PackQueryTiles).
//   2. For each key block up to the diagonal, for each tile of kTileRows
//      queries that sees the key block:
//        S = (scale * Q_tile) · K_blockᵀ           (register tile, TileScores)
//        online softmax of each row of S: reference m (the running max,
//        raised only when a score exceeds it by kMaxLag), running sum l
//        (N per-lane partial sums), P = exp(S - m_new) in place of S,
//        alpha = exp(m_old - m_new), both as powers of 2 (SoftmaxBlockRow)
//        acc = alpha * acc + P · V_block           (register tile, TileAccumulate)
//      and between tiles, prefetch a few rows of the next key block, the
//      next query block and this block's outputs (RowPrefetcher).
//   3. out = acc / l per row                       (FinishRow)
// Causality is a loop bound: key blocks above a tile's diagonal are skipped,
// and in the diagonal block each row stops at its own last visible key.
// Every row goes through the same operations whatever the other rows of its
// tile or call are (key blocks start at multiples of kKeyBlock), so results
// are bitwise independent of how the parallel layer splits the queries.
//
// Cost at head_dim 64 on AVX3: per 16 visible scores, 128 FMAs (64 for S, 64
// for P·V) and about 14 other vector operations (exp2 10, max 1, exponent 2,
// sum 1), which share AVX-512's two FMA ports: about 90% of peak at best.
// Measured single-threaded, causal, head_dim 64, on a shared 2-core Xeon
// (Sapphire Rapids class, about 178 GFLOP/s FMA peak per core), before the last
// two softmax changes (about 5% together): T = 1024 about 126 GFLOP/s, T = 2048
// about 135, T = 256 105, the scalar reference 3.6; AVX2 about 65, SSE4 about
// 25; decoding 1 query over 1024 keys 11 (memory-bound). Profile at T = 1024
// now: the two FMA loops take 74% of the time, the exp2 loop 8%, the rest (max
// pass, row bookkeeping, packing, prefetching) 18%.

#if defined(ATTN_SIMD_FLASH_ATTENTION_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ATTN_SIMD_FLASH_ATTENTION_INL_H_
#undef ATTN_SIMD_FLASH_ATTENTION_INL_H_
#else
#define ATTN_SIMD_FLASH_ATTENTION_INL_H_
#endif

#include <stddef.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <new>

#include "hwy/aligned_allocator.h"
#include "hwy/highway.h"
#include "simd/flash_attention.h"
#include "simd/flash_packing-inl.h"
#include "simd/flash_softmax-inl.h"
#include "simd/flash_tiles-inl.h"
#include "simd/thread_scratch.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {
namespace flash_detail {

// Number of keys that query row i sees (the end of vis(i)).
HWY_INLINE size_t VisibleKeys(const simd::FlashAttentionArgs& a, size_t i) {
  if (!a.causal) return a.num_keys;
  const size_t pos = a.q_begin + i;
  return pos < a.num_keys ? pos + 1 : a.num_keys;
}

// The (tile, key block) steps of the query block [i0, i0 + rows): tile t
// runs for the key blocks its last row sees (earlier rows see no more).
// These are the Step calls of the prefetchers between its tiles.
HWY_INLINE size_t TileSteps(const simd::FlashAttentionArgs& a, size_t i0, size_t rows) {
  size_t steps = 0;
  for (size_t r0 = 0; r0 < rows; r0 += kTileRows) {
    steps += hwy::DivCeil(VisibleKeys(a, i0 + std::min(r0 + kTileRows, rows) - 1), kKeyBlock);
  }
  return steps;
}

// The steps from the query block at i0 until (not including) the first later
// block that needs more than packed_blocks key blocks: the time left to
// prefetch the next key block before it is packed.
HWY_INLINE size_t StepsUntilPacking(const simd::FlashAttentionArgs& a, size_t i0,
                                    size_t packed_blocks) {
  size_t steps = 0;
  for (size_t i = i0; i < a.num_queries; i += kQueryBlock) {
    const size_t rows = std::min(kQueryBlock, a.num_queries - i);
    if (i > i0 && hwy::DivCeil(VisibleKeys(a, i + rows - 1), kKeyBlock) > packed_blocks) break;
    steps += TileSteps(a, i, rows);
  }
  return steps;
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
  const size_t qp_size = kQueryBlock * head_dim;  // a multiple of N (kQueryBlock is)
  const size_t s_size = kTileRows * kKeyBlock;
  const size_t l_size = kQueryBlock * N;
  // Every part is a multiple of N floats, so each starts vector-aligned.
  // The thread's scratch: reused across calls (the parallel layer makes one
  // per (batch, head)) instead of a malloc of 0.54 MB each with fresh pages
  // to fault in (measured: 1-4% of the attention core at B=8, T=1024).
  float* HWY_RESTRICT kt =
      simd::detail::ThreadScratch(simd::detail::ScratchSlot::kFlashAttention,
                                  kt_size + vp_size + acc_size + qp_size + s_size + l_size);
  float* HWY_RESTRICT vp = kt + kt_size;
  float* HWY_RESTRICT acc = vp + vp_size;
  float* HWY_RESTRICT qp = acc + acc_size;
  float* HWY_RESTRICT s = qp + qp_size;
  float* HWY_RESTRICT l = s + s_size;  // N partial sums per query row
  const float* HWY_RESTRICT values = pack_values ? vp : a.v;
  const size_t ld_values = pack_values ? ld_acc : a.ldv;
  size_t packed_blocks = 0;  // key blocks whose K (and V) are packed so far
  RowPrefetcher<> prefetch_k, prefetch_v, prefetch_q;
  RowPrefetcher</*kWrite=*/true> prefetch_out;

  float m[kQueryBlock];
  for (size_t i0 = 0; i0 < num_queries; i0 += kQueryBlock) {
    const size_t rows = std::min(kQueryBlock, num_queries - i0);
    const size_t num_tiles = hwy::DivCeil(rows, kTileRows);
    std::fill(m, m + kQueryBlock, -std::numeric_limits<float>::infinity());
    std::fill(l, l + l_size, 0.0f);
    const size_t block_key_end = VisibleKeys(a, i0 + rows - 1);
    // Keys are packed when a query block first sees them. The rows of the
    // next key block, of the next query block and of this block's outputs
    // are prefetched between this block's tiles: their cache misses (rows a
    // page apart in the QKV layout) overlap the tiles' work instead of
    // stalling the packing (9% of the attention core at T = 1024 when every
    // key was packed up front).
    const size_t need_blocks = hwy::DivCeil(block_key_end, kKeyBlock);
    if (need_blocks > packed_blocks) {
      PackKeyBlocks(a.k, a.ldk, key_end, head_dim, packed_blocks, need_blocks, kt);
      if (pack_values) {
        PackValues(a.v, a.ldv, packed_blocks * kKeyBlock,
                   std::min(need_blocks * kKeyBlock, key_end), head_dim, vp, ld_acc);
      }
      packed_blocks = need_blocks;
      if (packed_blocks < num_blocks) {
        // Spread over the tiles until the next block is packed: in causal
        // self-attention, the next kKeyBlock / kQueryBlock query blocks.
        const size_t next = packed_blocks * kKeyBlock, count = std::min(kKeyBlock, key_end - next);
        const size_t steps = StepsUntilPacking(a, i0, packed_blocks);
        prefetch_k.Start(a.k + next * a.ldk, a.ldk, count, head_dim, steps);
        prefetch_v.Start(a.v + next * a.ldv, a.ldv, count, head_dim, steps);
      }
    }
    PackQueryTiles(a.q + i0 * a.ldq, a.ldq, rows, head_dim, a.scale, qp);
    // The next query block's rows and this block's outputs, spread over this
    // block's tiles.
    const size_t steps = TileSteps(a, i0, rows);
    const size_t next_rows = std::min(kQueryBlock, num_queries - i0 - rows);
    // (No pointer past the last row is formed: the last block has no next.)
    prefetch_q.Start(next_rows > 0 ? a.q + (i0 + rows) * a.ldq : a.q, a.ldq, next_rows, head_dim,
                     steps);
    prefetch_out.Start(a.out + i0 * a.ldo, a.ldo, a.out == a.q ? 0 : rows, head_dim, steps);

    for (size_t j0 = 0; j0 < block_key_end; j0 += kKeyBlock) {
      const float* HWY_RESTRICT kt_block = kt + (j0 / kKeyBlock) * head_dim * kKeyBlock;
      const float* HWY_RESTRICT v_block = values + j0 * ld_values;
      for (size_t t = 0; t < num_tiles; ++t) {
        // Rows of a partial last tile repeat its last query (results unused).
        const size_t r0 = t * kTileRows;
        const size_t last = std::min(kTileRows, rows - r0) - 1;
        size_t n_row[kTileRows];
        for (size_t r = 0; r < kTileRows; ++r) {
          const size_t i = i0 + r0 + std::min(r, last);
          const size_t lim = VisibleKeys(a, i);
          n_row[r] = lim > j0 ? std::min(kKeyBlock, lim - j0) : 0;
        }
        // n_row is non-decreasing in r: the last row sees the most keys.
        const size_t n = n_row[kTileRows - 1];
        if (n == 0) continue;  // the key block is above this tile's diagonal
        prefetch_q.Step();
        prefetch_out.Step();
        prefetch_k.Step();
        prefetch_v.Step();
        TileScores(d, qp + r0 * head_dim, head_dim, kt_block, n, s);
        float alpha[kTileRows];
        for (size_t r = 0; r < kTileRows; ++r) {
          alpha[r] = n_row[r] == 0 ? 1.0f
                                   : SoftmaxBlockRow(d, s + r * kKeyBlock, n_row[r], m[r0 + r],
                                                     l + (r0 + r) * N);
        }
        TileAccumulate(d, s, n_row, alpha, j0 == 0, v_block, ld_values, acc + r0 * ld_acc, ld_acc);
      }
    }
    for (size_t r = 0; r < rows; ++r) {
      FinishRow(d, acc + r * ld_acc, l + r * N, head_dim, a.out + (i0 + r) * a.ldo);
    }
  }
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#endif  // ATTN_SIMD_FLASH_ATTENTION_INL_H_
