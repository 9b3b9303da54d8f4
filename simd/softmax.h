// Row-wise masked softmax with the score scale fused in, as attention needs:
//
//   out[r, j] = exp(s*x[r,j] - m_r) / sum_{j' < valid(r)} exp(s*x[r,j'] - m_r)
//                                                     for j <  valid(r)
//   out[r, j] = 0                                     for valid(r) <= j < cols
//
// where m_r is the maximum of s*x[r, j] over the valid columns and
// valid(r) = cols without a mask, min(cols, r + causal_offset + 1) with the
// causal mask (causal_offset = number of keys before the first query; 0 for
// square self-attention). With a sliding window W > 0 the valid columns are
// [first(r), valid(r)), first(r) = max(0, r + causal_offset + 1 - W), and the
// columns before first(r) are 0 too (a row with no valid column is NaN).
// Masked columns are never read.
//
// Special values follow PyTorch's softmax: a NaN among the valid inputs, a
// +inf, or a row whose valid inputs are all -inf gives a row of NaN.
#pragma once

#include <cstddef>
#include <cstdint>

namespace attn {
namespace simd {

struct SoftmaxArgs {
  const float* in = nullptr;  // rows x cols, row stride ld_in >= cols
  size_t ld_in = 0;
  float* out = nullptr;  // rows x cols, row stride ld_out >= cols; may equal `in`
  size_t ld_out = 0;     // (in place) but must not partially overlap it
  size_t rows = 0, cols = 0;
  float scale = 1.0f;  // multiplies the inputs before the max/exp
  bool causal = false;
  size_t causal_offset = 0;  // only with causal
  size_t window = 0;         // > 0: row r sees only the last `window` valid columns
};

// The first valid column of row r (0 without a window).
inline size_t SoftmaxFirstColumn(const SoftmaxArgs& args, size_t r) {
  const size_t pos = r + args.causal_offset;
  return args.window > 0 && pos + 1 > args.window ? pos + 1 - args.window : 0;
}

// The Highway kernel, dispatched to the best target of this CPU.
void MaskedSoftmax(const SoftmaxArgs& args);

// Scalar reference (double accumulation for the sum).
void MaskedSoftmaxReference(const SoftmaxArgs& args);

}  // namespace simd
}  // namespace attn
