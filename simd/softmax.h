// Row-wise masked softmax with the score scale fused in, as attention needs:
//
//   out[r, j] = exp(s*x[r,j] - m_r) / sum_{j' < valid(r)} exp(s*x[r,j'] - m_r)
//                                                     for j <  valid(r)
//   out[r, j] = 0                                     for valid(r) <= j < cols
//
// where m_r is the maximum of s*x[r, j] over the valid columns and
// valid(r) = cols without a mask, min(cols, r + causal_offset + 1) with the
// causal mask (causal_offset = number of keys before the first query; 0 for
// square self-attention). Masked columns are never read.
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
};

// The Highway kernel, dispatched to the best target of this CPU.
void MaskedSoftmax(const SoftmaxArgs& args);

// Scalar reference (double accumulation for the sum).
void MaskedSoftmaxReference(const SoftmaxArgs& args);

}  // namespace simd
}  // namespace attn
