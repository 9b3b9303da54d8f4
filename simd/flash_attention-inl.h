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
// sum 1), which share AVX-512's two FMA ports: about 90% of peak at best. In
// a profile at T = 1024 the two FMA loops take 74% of the time, the exp2 loop
// 8%, the rest (max pass, row bookkeeping, packing, prefetching) 18%.
//
// Code: PlanHead cuts the thread's scratch for the call; QueryBlockStep does
// steps 1-3 for one query block (PackNewKeys, PackQueries, TileStep per tile
// and key block, FinishRow).

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

using simd::FirstVisibleKey;
using simd::OutRow;
using simd::QueryRow;
using simd::VisibleKeys;

// The (tile, key block) steps of the query block [i0, i0 + rows): tile t
// runs for the key blocks from its first row's first key to its last row's
// last (earlier rows see no later keys, later rows no earlier ones).
// These are the Step calls of the prefetchers between its tiles.
HWY_INLINE size_t TileSteps(const simd::FlashAttentionArgs& a, size_t i0, size_t rows) {
  size_t steps = 0;
  for (size_t r0 = 0; r0 < rows; r0 += kTileRows) {
    const size_t end = VisibleKeys(a, i0 + std::min(r0 + kTileRows, rows) - 1);
    const size_t first_block = FirstVisibleKey(a, i0 + r0) / kKeyBlock;
    const size_t end_block = hwy::DivCeil(end, kKeyBlock);
    steps += end_block > first_block ? end_block - first_block : 0;
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

// What one call works with besides its arguments: this thread's scratch cut
// into the packed operands and the per-row state, how many key blocks are
// packed, and the prefetchers that run between tiles. Every part of the
// scratch is a multiple of N floats, so each starts vector-aligned.
struct HeadPlan {
  size_t key_end = 0;      // keys the last row sees: the most any row reads (>= 1)
  size_t first_block = 0;  // the key block of the first key any row reads
  size_t num_blocks = 0;   // key blocks up to key_end (from block 0)
  size_t ld_acc = 0;       // head_dim rounded up to whole vectors: row stride of acc, vp
  bool pack_values = false;
  // K transposed per key block (PackKeyBlocks), from first_block to num_blocks.
  float* kt = nullptr;
  // V packed (PackValues), rows first_block * kKeyBlock to key_end, ld_acc
  // floats each; only with pack_values.
  float* vp = nullptr;
  float* acc = nullptr;      // the query block's accumulators, kQueryBlock x ld_acc
  float* qp = nullptr;       // the query block's queries times scale (PackQueryTiles)
  float* s = nullptr;        // a tile's scores, then its weights: kTileRows x kKeyBlock
  float* l = nullptr;        // the query block's running sums, N partial sums per row
  size_t ld_values = 0;      // row stride of V as the tiles read it (ValuesAt)
  size_t packed_blocks = 0;  // key blocks whose K (and V) are already packed
  RowPrefetcher<> prefetch_k, prefetch_v, prefetch_q;
  RowPrefetcher</*kWrite=*/true> prefetch_out;
};

// Sizes the scratch of a call whose rows read keys [key_begin, key_end)
// (key_end > key_begin) with N lanes per vector and cuts this thread's
// scratch into the parts.
HWY_INLINE HeadPlan PlanHead(const simd::FlashAttentionArgs& a, size_t key_begin, size_t key_end,
                             size_t N) {
  HeadPlan plan;
  const size_t head_dim = a.head_dim;
  plan.key_end = key_end;
  plan.first_block = key_begin / kKeyBlock;
  plan.num_blocks = hwy::DivCeil(key_end, kKeyBlock);
  plan.ld_acc = hwy::RoundUpTo(head_dim, N);
  // V is read in place when its rows are whole vectors and either contiguous
  // or read by a single tile (decoding): packing would only add a copy then.
  // Otherwise it is packed: rows that are not whole vectors get padded, and
  // rows far apart (a fused QKV layout, 9 KiB per row in GPT-2) would land in
  // a few L1 sets and on 64 pages per key block (measured 20% slower at
  // T = 1024 in place than packed).
  plan.pack_values = plan.ld_acc != head_dim || (a.ldv != head_dim && a.num_queries > kTileRows);
  const size_t kt_size = (plan.num_blocks - plan.first_block) * head_dim * kKeyBlock;
  const size_t vp_size =
      plan.pack_values ? (key_end - plan.first_block * kKeyBlock) * plan.ld_acc : 0;
  const size_t acc_size = kQueryBlock * plan.ld_acc;
  const size_t qp_size = kQueryBlock * head_dim;  // a multiple of N (kQueryBlock is)
  const size_t s_size = kTileRows * kKeyBlock;
  const size_t l_size = kQueryBlock * N;
  // The thread's scratch: reused across calls (the parallel layer makes one
  // per (batch, head)) instead of a malloc of 0.54 MB each with fresh pages
  // to fault in (measured: 1-4% of the attention core at B=8, T=1024).
  plan.kt = simd::detail::ThreadScratch(simd::detail::ScratchSlot::kFlashAttention,
                                        kt_size + vp_size + acc_size + qp_size + s_size + l_size);
  plan.vp = plan.kt + kt_size;
  plan.acc = plan.vp + vp_size;
  plan.qp = plan.acc + acc_size;
  plan.s = plan.qp + qp_size;
  plan.l = plan.s + s_size;
  plan.ld_values = plan.pack_values ? plan.ld_acc : a.ldv;
  plan.packed_blocks = plan.first_block;  // the blocks before are never read
  return plan;
}

// V rows from key j0 on (in a block the call reads), as the tiles read them.
HWY_INLINE const float* ValuesAt(const simd::FlashAttentionArgs& a, const HeadPlan& plan,
                                 size_t j0) {
  if (!plan.pack_values) return a.v + j0 * a.ldv;
  return plan.vp + (j0 - plan.first_block * kKeyBlock) * plan.ld_acc;
}

// The key block of key j0 in the packed K.
HWY_INLINE const float* KeyBlockAt(const simd::FlashAttentionArgs& a, const HeadPlan& plan,
                                   size_t j0) {
  return plan.kt + (j0 / kKeyBlock - plan.first_block) * a.head_dim * kKeyBlock;
}

// Packs the key blocks (and values) that the query block at i0, whose rows
// read keys [0, block_key_end), is the first to see, and spreads the
// prefetch of the next key block over the tiles until it is packed (in
// causal self-attention, the next kKeyBlock / kQueryBlock query blocks).
// Keys are packed when first seen, not all up front: the cache misses of
// the next key block's rows (a page apart in the QKV layout) then overlap
// the tiles' work instead of stalling the packing (9% of the attention core
// at T = 1024 when every key was packed up front).
HWY_INLINE void PackNewKeys(const simd::FlashAttentionArgs& a, size_t i0, size_t block_key_end,
                            HeadPlan& plan) {
  const size_t need_blocks = hwy::DivCeil(block_key_end, kKeyBlock);
  if (need_blocks <= plan.packed_blocks) return;
  PackKeyBlocks(a.k, a.ldk, plan.key_end, a.head_dim, plan.first_block, plan.packed_blocks,
                need_blocks, plan.kt);
  if (plan.pack_values) {
    // PackValues writes row j at vp + j * ld_acc: shift v and the rows so
    // that row first_block * kKeyBlock lands at vp.
    const size_t base = plan.first_block * kKeyBlock;
    PackValues(a.v + base * a.ldv, a.ldv, plan.packed_blocks * kKeyBlock - base,
               std::min(need_blocks * kKeyBlock, plan.key_end) - base, a.head_dim, plan.vp,
               plan.ld_acc);
  }
  plan.packed_blocks = need_blocks;
  if (plan.packed_blocks < plan.num_blocks) {
    const size_t next = plan.packed_blocks * kKeyBlock;
    const size_t count = std::min(kKeyBlock, plan.key_end - next);
    const size_t steps = StepsUntilPacking(a, i0, plan.packed_blocks);
    plan.prefetch_k.Start(a.k + next * a.ldk, a.ldk, count, a.head_dim, steps);
    plan.prefetch_v.Start(a.v + next * a.ldv, a.ldv, count, a.head_dim, steps);
  }
}

// Packs the queries [i0, i0 + rows) times scale, and spreads the prefetch
// of the next query block's rows and of this block's outputs over its tiles.
// Grouped queries (group_size G > 1) are prefetched per position: the G rows
// of a position span (G - 1) * ldq_group + head_dim floats.
HWY_INLINE void PackQueries(const simd::FlashAttentionArgs& a, size_t i0, size_t rows,
                            HeadPlan& plan) {
  PackQueryTiles(a, i0, rows, plan.qp);
  const size_t steps = TileSteps(a, i0, rows);
  const size_t next_rows = std::min(kQueryBlock, a.num_queries - i0 - rows);
  const size_t G = std::max<size_t>(a.group_size, 1);
  const size_t q_width = G > 1 ? (G - 1) * a.ldq_group + a.head_dim : a.head_dim;
  const size_t o_width = G > 1 ? (G - 1) * a.ldo_group + a.head_dim : a.head_dim;
  // Positions whose rows the next block and this block hold (G = 1: rows).
  const size_t next_positions =
      next_rows > 0 ? (i0 + rows + next_rows - 1) / G - (i0 + rows) / G + 1 : 0;
  const size_t positions = (i0 + rows - 1) / G - i0 / G + 1;
  // (No pointer past the last row is formed: the last block has no next.)
  plan.prefetch_q.Start(next_rows > 0 ? a.q + ((i0 + rows) / G) * a.ldq : a.q, a.ldq,
                        next_positions, q_width, steps);
  plan.prefetch_out.Start(a.out + (i0 / G) * a.ldo, a.ldo, a.out == a.q ? 0 : positions, o_width,
                          steps);
}

// One tile (queries i0 + r0 + [0, kTileRows) of the block at i0, which has
// `rows` queries) over the key block at j0: scores, online softmax (m: the
// block's running references) and acc += P·V. Rows of a partial last tile
// repeat its last query (results unused). Returns without work when no row
// of the tile sees a key of the block (above the diagonal, or before the
// window). started: whether the tile's accumulators hold anything yet.
// row_first, row_end: the visible keys [row_first[r], row_end[r]) of the
// block's rows (QueryBlockStep; partial tiles repeat their last row).
template <class D>
HWY_INLINE void TileStep(D d, const simd::FlashAttentionArgs& a, size_t r0, size_t j0,
                         const size_t* row_first, const size_t* row_end, HeadPlan& plan,
                         float* HWY_RESTRICT m, bool& started) {
  const size_t N = hn::Lanes(d);
  // Row r sees keys j0 + [begin[r], end[r]) of the block; both are
  // non-decreasing in r (the last row sees the most keys, the first the
  // earliest ones).
  size_t begin[kTileRows], end[kTileRows];
  bool any = false;
  for (size_t r = 0; r < kTileRows; ++r) {
    const size_t lim = row_end[r0 + r], first = row_first[r0 + r];
    end[r] = lim > j0 ? std::min(kKeyBlock, lim - j0) : 0;
    begin[r] = std::min(first > j0 ? first - j0 : 0, end[r]);
    any = any || begin[r] < end[r];
  }
  if (!any) return;
  const size_t n = end[kTileRows - 1];
  plan.prefetch_q.Step();
  plan.prefetch_out.Step();
  plan.prefetch_k.Step();
  plan.prefetch_v.Step();
  TileScores(d, plan.qp + r0 * a.head_dim, a.head_dim, KeyBlockAt(a, plan, j0), n, plan.s);
  float alpha[kTileRows];
  for (size_t r = 0; r < kTileRows; ++r) {
    alpha[r] = 1.0f;
    if (begin[r] == end[r]) continue;
    float* HWY_RESTRICT s_row = plan.s + r * kKeyBlock;
    // Keys before the row's window get weight 0 in its softmax; they are
    // left out of its P·V (TileAccumulate) like keys past the diagonal.
    std::fill(s_row, s_row + begin[r], -std::numeric_limits<float>::infinity());
    alpha[r] = SoftmaxBlockRow(d, s_row, end[r], m[r0 + r], plan.l + (r0 + r) * N);
  }
  TileAccumulate(d, plan.s, begin, end, alpha, !started, ValuesAt(a, plan, j0), plan.ld_values,
                 plan.acc + r0 * plan.ld_acc, plan.ld_acc);
  started = true;
}

// The query block [i0, i0 + min(kQueryBlock, num_queries - i0)): packs what
// it needs, runs its tiles over every key block up to its diagonal, and
// writes its output rows.
template <class D>
HWY_INLINE void QueryBlockStep(D d, const simd::FlashAttentionArgs& a, size_t i0, HeadPlan& plan) {
  const size_t N = hn::Lanes(d);
  const size_t rows = std::min(kQueryBlock, a.num_queries - i0);
  float m[kQueryBlock];
  std::fill(m, m + kQueryBlock, -std::numeric_limits<float>::infinity());
  std::fill(plan.l, plan.l + kQueryBlock * N, 0.0f);
  const size_t block_key_end = VisibleKeys(a, i0 + rows - 1);
  const size_t block_key_begin = FirstVisibleKey(a, i0);
  PackNewKeys(a, i0, block_key_end, plan);
  PackQueries(a, i0, rows, plan);
  bool started[kQueryBlock / kTileRows] = {};
  size_t row_first[kQueryBlock], row_end[kQueryBlock];
  for (size_t r = 0; r < kQueryBlock; ++r) {
    const size_t i = i0 + std::min(r, rows - 1);
    row_first[r] = FirstVisibleKey(a, i);
    row_end[r] = VisibleKeys(a, i);
  }
  for (size_t j0 = block_key_begin / kKeyBlock * kKeyBlock; j0 < block_key_end; j0 += kKeyBlock) {
    for (size_t r0 = 0; r0 < rows; r0 += kTileRows) {
      TileStep(d, a, r0, j0, row_first, row_end, plan, m, started[r0 / kTileRows]);
    }
  }
  for (size_t r = 0; r < rows; ++r) {
    // A row that saw no key (its sum is 0) finishes as NaN without reading acc.
    FinishRow(d, plan.acc + r * plan.ld_acc, plan.l + r * N, a.head_dim, OutRow(a, i0 + r));
  }
}

}  // namespace flash_detail

// The kernel for this target: the contract of simd::FlashAttention, without
// argument checks (the dispatching wrapper does them).
inline void FlashAttentionKernel(const simd::FlashAttentionArgs& a) {
  using namespace flash_detail;  // NOLINT(build/namespaces)
  if (a.num_queries == 0 || a.head_dim == 0) return;
  const size_t key_end = VisibleKeys(a, a.num_queries - 1);  // the most any row reads
  const size_t key_begin = FirstVisibleKey(a, 0);            // the first any row reads
  if (key_end <= key_begin) {
    // No row sees a key (num_keys == 0, or every window ends before the
    // keys): the softmax of nothing is NaN.
    for (size_t i = 0; i < a.num_queries; ++i) {
      std::fill(OutRow(a, i), OutRow(a, i) + a.head_dim, std::numeric_limits<float>::quiet_NaN());
    }
    return;
  }
  const hn::ScalableTag<float> d;
  HeadPlan plan = PlanHead(a, key_begin, key_end, hn::Lanes(d));
  for (size_t i0 = 0; i0 < a.num_queries; i0 += kQueryBlock) QueryBlockStep(d, a, i0, plan);
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#endif  // ATTN_SIMD_FLASH_ATTENTION_INL_H_
