// Packing and prefetching of the flash attention kernel (per target): K
// transposed per key block, V into padded contiguous rows, the queries of a
// block scaled and interleaved per register tile, and prefetches spread
// between tiles for rows the hardware prefetchers do not follow. Included by
// simd/flash_attention-inl.h.

#if defined(ATTN_SIMD_FLASH_PACKING_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ATTN_SIMD_FLASH_PACKING_INL_H_
#undef ATTN_SIMD_FLASH_PACKING_INL_H_
#else
#define ATTN_SIMD_FLASH_PACKING_INL_H_
#endif

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>

#include "hwy/highway.h"
#include "simd/flash_attention.h"
#include "simd/flash_tiles-inl.h"
#include "simd/transpose-inl.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {
namespace flash_detail {

namespace hn = hwy::HWY_NAMESPACE;

// Brings the cache lines of x[0, width) into L2 ahead of use (for writing
// when kWrite).
template <bool kWrite = false>
HWY_INLINE void PrefetchRow(const float* x, size_t width) {
  const uintptr_t end = reinterpret_cast<uintptr_t>(x + width);
  for (uintptr_t line = reinterpret_cast<uintptr_t>(x) & ~uintptr_t{63}; line < end; line += 64) {
    __builtin_prefetch(reinterpret_cast<const void*>(line), kWrite ? 1 : 0, 2);
  }
}

// Rows only this far apart or more are prefetched: rows of the QKV layout (9
// KiB apart in GPT-2) are each on their own page, beyond what the hardware
// prefetchers follow; nearer rows stream by themselves.
constexpr size_t kPrefetchMinStride = 256;  // floats

// Prefetches rows [0, rows) of x (row stride ld, width floats each) evenly
// over `steps` calls of Step (between tiles): each prefetch holds a line fill
// buffer until its line arrives from memory, so a burst of hundreds would
// stall the loads of the work around it.
template <bool kWrite = false>
class RowPrefetcher {
 public:
  void Start(const float* x, size_t ld, size_t rows, size_t width, size_t steps) {
    x_ = x;
    ld_ = ld;
    width_ = width;
    next_ = 0;
    rows_ = ld >= kPrefetchMinStride ? rows : 0;
    per_step_ = hwy::DivCeil(rows_, std::max<size_t>(steps, 1));
  }
  void Step() {
    const size_t end = std::min(rows_, next_ + per_step_);
    for (; next_ < end; ++next_) PrefetchRow<kWrite>(x_ + next_ * ld_, width_);
  }

 private:
  const float* x_ = nullptr;
  size_t ld_ = 0, width_ = 0, rows_ = 0, next_ = 0, per_step_ = 0;
};

// Key blocks [b_begin, b_end) of k (row stride ldk; keys from num_keys on
// are zero) into kt, whose first block is key block b_base <= b_begin,
// transposed per key block: element (key j, dim c) goes to
// kt[(j / kKeyBlock - b_base) * head_dim * kKeyBlock + c * kKeyBlock + j %
// kKeyBlock]. Groups of 4 keys x 4 dims go through 4x4 transposes of
// 128-bit vectors (2.5x faster than element by element: this packing is
// most of the time of a single-query decoding step). The rows of each next
// block are prefetched while a block is packed.
static_assert(kKeyBlock % 4 == 0, "PackKeyBlocks transposes groups of 4 keys");
HWY_INLINE void PackKeyBlocks(const float* HWY_RESTRICT k, size_t ldk, size_t num_keys,
                              size_t head_dim, size_t b_base, size_t b_begin, size_t b_end,
                              float* HWY_RESTRICT kt) {
  RowPrefetcher<> prefetch;
  for (size_t b = b_begin; b < b_end; ++b) {
    if (b + 1 < b_end) {
      const size_t next = (b + 1) * kKeyBlock;
      prefetch.Start(k + next * ldk, ldk, std::min(kKeyBlock, num_keys - next), head_dim,
                     kKeyBlock / 4);
    }
    float* HWY_RESTRICT block = kt + (b - b_base) * head_dim * kKeyBlock;
    for (size_t jj = 0; jj < kKeyBlock; jj += 4) {
      prefetch.Step();
      const size_t j = b * kKeyBlock + jj;
      size_t c = 0;
#if HWY_TARGET != HWY_SCALAR
      if (j + 4 <= num_keys) {
        const hn::Full128<float> d4;
        const float* HWY_RESTRICT row = k + j * ldk;
        for (; c + 4 <= head_dim; c += 4) {
          StoreTransposed4x4(d4, hn::LoadU(d4, row + c), hn::LoadU(d4, row + ldk + c),
                             hn::LoadU(d4, row + 2 * ldk + c), hn::LoadU(d4, row + 3 * ldk + c),
                             block + c * kKeyBlock + jj, kKeyBlock);
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

// qp <- query rows [i0, i0 + rows) of a (QueryRow) times a.scale, in tiles of
// kTileRows queries: element (query t * kTileRows + r, dim c) goes to
// qp[(t * head_dim + c) * kTileRows + r], so that the kTileRows query
// elements a step of TileScoresCols broadcasts are adjacent. A partial last
// tile repeats its last query (results unused). Packing also takes the query
// rows out of the QKV layout, where rows 9 KiB apart (GPT-2) share a few L1
// sets with each other and with the packed K and V blocks. 4 dims x 4
// queries at a time go through 4x4 transposes of 128-bit vectors.
static_assert(kTileRows == 4, "PackQueryTiles transposes 4 queries at a time");
HWY_INLINE void PackQueryTiles(const simd::FlashAttentionArgs& a, size_t i0, size_t rows,
                               float* HWY_RESTRICT qp) {
  const size_t head_dim = a.head_dim;
  const float scale = a.scale;
  for (size_t r0 = 0; r0 < rows; r0 += kTileRows) {
    float* HWY_RESTRICT tile = qp + r0 * head_dim;
    const float* row[kTileRows];
    for (size_t r = 0; r < kTileRows; ++r) {
      row[r] = simd::QueryRow(a, i0 + std::min(r0 + r, rows - 1));
    }
    size_t c = 0;
#if HWY_TARGET != HWY_SCALAR
    const hn::Full128<float> d4;
    const auto vscale = hn::Set(d4, scale);
    for (; c + 4 <= head_dim; c += 4) {
      StoreTransposed4x4(
          d4, hn::Mul(hn::LoadU(d4, row[0] + c), vscale),
          hn::Mul(hn::LoadU(d4, row[1] + c), vscale), hn::Mul(hn::LoadU(d4, row[2] + c), vscale),
          hn::Mul(hn::LoadU(d4, row[3] + c), vscale), tile + c * kTileRows, kTileRows);
    }
#endif
    for (; c < head_dim; ++c) {
      for (size_t r = 0; r < kTileRows; ++r) tile[c * kTileRows + r] = scale * row[r][c];
    }
  }
}

// Rows [j_begin, j_end) of v (row stride ldv) into the same rows of vp (row
// stride ld_vp >= head_dim), zero from head_dim to ld_vp.
HWY_INLINE void PackValues(const float* HWY_RESTRICT v, size_t ldv, size_t j_begin, size_t j_end,
                           size_t head_dim, float* HWY_RESTRICT vp, size_t ld_vp) {
  for (size_t j = j_begin; j < j_end; ++j) {
    memcpy(vp + j * ld_vp, v + j * ldv, head_dim * sizeof(float));
    if (ld_vp > head_dim) memset(vp + j * ld_vp + head_dim, 0, (ld_vp - head_dim) * sizeof(float));
  }
}

}  // namespace flash_detail
// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#endif  // ATTN_SIMD_FLASH_PACKING_INL_H_
