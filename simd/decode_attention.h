// Attention of a few query positions over float32 keys and values read in
// place: KV-cache decoding's shape (one or a few new tokens against many
// cached ones). Same arguments and contract as simd::FlashAttention
// (simd/flash_attention.h: layouts, masks, aliasing, special values), with
// simd::FlashAttentionReference as its reference; core/attention_core.cc
// calls it instead of the flash kernel when a problem has at most
// kDecodeMaxPositions query positions.
//
// The flash kernel packs K transposed and V for each call, which pays for
// itself over a block of queries; for one query it is a copy of the whole
// cache per step. This kernel reads each K and V row where it is, in blocks
// of keys of about 16 KiB: per query row (scaled once, copied to scratch
// first, so out may be q), the scores of four keys at a time (four
// independent dot products, then a sum of lanes each), every row of the call
// on one block before the next block (the block stays in L1 for the rows
// after the first: a group's query heads read K from memory once), then
// simd::MaskedSoftmax's kernel over the visible scores, then the V rows
// weighted into up to four query heads of one position at a time, all their
// columns in registers on targets with 32 vector registers (each V row read
// once per position, whole). Groups of four query heads prefetch the K rows
// ahead, rows of several query heads the V rows. Scratch: this thread's
// kFlashAttention slot, num_queries * (num_keys + head_dim) floats. Each
// row's result is bitwise the same whichever other rows share its call.
// Tuned on AVX-512 (Zen 4) for head_dim 64, groups of 1 and 4.
#pragma once

#include <cstddef>

#include "simd/flash_attention.h"

namespace attn {
namespace simd {

// Query positions up to which core/attention_core.cc uses DecodeAttention.
constexpr size_t kDecodeMaxPositions = 4;

// Argument checks as simd::FlashAttention's (ShapeError), then the kernel of
// the best target of this CPU.
void DecodeAttention(const FlashAttentionArgs& args);

}  // namespace simd
}  // namespace attn
