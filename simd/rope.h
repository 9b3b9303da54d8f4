// Rotary position embeddings (RoPE) applied in place, the book's apply_rope
// in its rotate-half layout: for each head of each row, with h = head_dim / 2,
//
//   x[c]     <- x[c] * cos[c] - x[c + h] * sin[c]       for c < h
//   x[c + h] <- x[c + h] * cos[c] + x[c] * sin[c]
//
// where cos and sin are the row's tables (the angles of its position, one per
// pair of rotated dimensions). Each product is rounded before the sum or
// difference, as PyTorch's x * cos + rotate_half(x) * sin computes it, so the
// result is bitwise PyTorch's for the same tables (no fused multiply-add).
//
//   x     : rows x (heads heads of head_dim floats): head k of row r starts at
//           x + r * ld_row + k * ld_head (ld_head >= head_dim; the heads of a
//           row may not overlap). head_dim must be even.
//   cos, sin : rows x (head_dim / 2), row stride ld_table; not aliasing x.
//
// Misaligned pointers and strides are fine; nothing outside the heads is
// written. Tuned for nothing in particular: it is a memory-bound pass over
// the queries and keys once per token (AVX3 at head_dim 64: 2 vectors per
// half).
#pragma once

#include <cstddef>

namespace attn {
namespace simd {

struct RopeArgs {
  float* x = nullptr;
  size_t ld_row = 0;
  size_t rows = 0, heads = 0, head_dim = 0;
  size_t ld_head = 0;
  const float* cos = nullptr;
  const float* sin = nullptr;
  size_t ld_table = 0;
};

// The Highway kernel, dispatched to the best target of this CPU. Throws
// attn::ShapeError for an odd head_dim, ld_head < head_dim, or null
// pointers with nonzero sizes.
void ApplyRope(const RopeArgs& args);

// Scalar reference: the same contract and the same bits.
void ApplyRopeReference(const RopeArgs& args);

}  // namespace simd
}  // namespace attn
