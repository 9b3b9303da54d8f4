// Per-target masked softmax behind simd/softmax.h (included once per Highway
// target by simd/softmax.cc and by tests/simd/softmax_test.cc).
//
// Per row, three passes over the valid(r) columns only (SoftmaxExpRow is the
// first two, for callers that fold the normalization into later work):
//   pass 1: m = max_j s*x[j], and whether any s*x[j] is NaN
//   pass 2: out[j] = exp(s*x[j] - m) = 2^((s*x[j] - m) log2(e)),
//           sum += out[j]     (simd/exp2-inl.h's Exp2Below128: relative error
//           below 2e-7 plus the rounding of the exponent, 0 below 2^-126)
//   pass 3: out[j] *= 1 / sum
// then out[valid(r) .. cols) = 0. Masked columns are never read. A row with a
// NaN, a +inf (m = +inf) or only -inf (m = -inf) among s*x becomes all NaN,
// as in PyTorch (NaN is checked explicitly in pass 1).
// Row tails shorter than a vector go through an aligned stack buffer; nothing
// outside [0, valid(r)) of the input row or [0, cols) of the output row is
// touched. out may equal in: each pass reads element j before writing it.

#if defined(ATTN_SIMD_SOFTMAX_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ATTN_SIMD_SOFTMAX_INL_H_
#undef ATTN_SIMD_SOFTMAX_INL_H_
#else
#define ATTN_SIMD_SOFTMAX_INL_H_
#endif

#include <stddef.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "hwy/highway.h"
#include "simd/exp2-inl.h"
#include "simd/softmax.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

namespace softmax_detail {

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;
constexpr size_t kMaxLanes = hn::MaxLanes(DF());

// Loads the `count` < Lanes floats at p (scaled by vscale) into a vector whose
// other lanes are -inf.
HWY_INLINE VF LoadTailScaled(DF d, const float* HWY_RESTRICT p, size_t count, VF vscale) {
  HWY_ALIGN float buf[kMaxLanes] = {};
  for (size_t i = 0; i < count; ++i) buf[i] = p[i];
  const VF y = hn::Mul(vscale, hn::Load(d, buf));
  return hn::IfThenElse(hn::FirstN(d, count), y,
                        hn::Set(d, -std::numeric_limits<float>::infinity()));
}

// exp(y - m) for y <= m (m the row's maximum, finite; y = -inf included).
HWY_INLINE VF SoftmaxExp(DF d, VF y, VF vmax) {
  return Exp2Below128(d, hn::Mul(hn::Sub(y, vmax), hn::Set(d, kLog2E)));
}

// x[0, n) *= factor.
HWY_INLINE void ScaleRow(float* HWY_RESTRICT x, size_t n, float factor) {
  const DF d;
  const size_t N = hn::Lanes(d);
  const VF f = hn::Set(d, factor);
  size_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::Mul(hn::LoadU(d, x + i), f), d, x + i);
  for (; i < n; ++i) x[i] *= factor;
}

// Passes 1 and 2 of a row: out[j] = exp(s * in[j] - m) for j < valid (>= 1),
// returning their sum (>= 1); a row that the softmax makes all NaN gets out
// all NaN and returns NaN. For callers that fold the 1 / sum into later work.
HWY_INLINE float SoftmaxExpRow(const float* in, float* out, size_t valid, float scale) {
  const DF d;
  const size_t N = hn::Lanes(d);
  const VF vscale = hn::Set(d, scale);

  // Pass 1: maximum and NaN check. Two accumulators for ILP.
  VF vmax0 = hn::Set(d, -std::numeric_limits<float>::infinity());
  VF vmax1 = vmax0;
  auto nan = hn::FirstN(d, 0);  // all false
  size_t i = 0;
  for (; i + 2 * N <= valid; i += 2 * N) {
    const VF y0 = hn::Mul(vscale, hn::LoadU(d, in + i));
    const VF y1 = hn::Mul(vscale, hn::LoadU(d, in + i + N));
    vmax0 = hn::Max(vmax0, y0);
    vmax1 = hn::Max(vmax1, y1);
    nan = hn::Or(nan, hn::Or(hn::IsNaN(y0), hn::IsNaN(y1)));
  }
  for (; i + N <= valid; i += N) {
    const VF y = hn::Mul(vscale, hn::LoadU(d, in + i));
    vmax0 = hn::Max(vmax0, y);
    nan = hn::Or(nan, hn::IsNaN(y));
  }
  if (i < valid) {
    const VF y = LoadTailScaled(d, in + i, valid - i, vscale);
    vmax0 = hn::Max(vmax0, y);
    nan = hn::Or(nan, hn::IsNaN(y));
  }
  const float m = hn::GetLane(hn::MaxOfLanes(d, hn::Max(vmax0, vmax1)));
  if (!hn::AllFalse(d, nan) || m == std::numeric_limits<float>::infinity() ||
      m == -std::numeric_limits<float>::infinity()) {
    std::fill(out, out + valid, std::numeric_limits<float>::quiet_NaN());
    return std::numeric_limits<float>::quiet_NaN();
  }

  // Pass 2: exponentials into out, and their sum.
  const VF vmax = hn::Set(d, m);
  VF sum0 = hn::Zero(d);
  VF sum1 = hn::Zero(d);
  i = 0;
  for (; i + 2 * N <= valid; i += 2 * N) {
    const VF e0 = SoftmaxExp(d, hn::Mul(vscale, hn::LoadU(d, in + i)), vmax);
    const VF e1 = SoftmaxExp(d, hn::Mul(vscale, hn::LoadU(d, in + i + N)), vmax);
    hn::StoreU(e0, d, out + i);
    hn::StoreU(e1, d, out + i + N);
    sum0 = hn::Add(sum0, e0);
    sum1 = hn::Add(sum1, e1);
  }
  for (; i + N <= valid; i += N) {
    const VF e = SoftmaxExp(d, hn::Mul(vscale, hn::LoadU(d, in + i)), vmax);
    hn::StoreU(e, d, out + i);
    sum0 = hn::Add(sum0, e);
  }
  if (i < valid) {
    // Padding lanes are -inf, so exp gives 0 there.
    const VF e = SoftmaxExp(d, LoadTailScaled(d, in + i, valid - i, vscale), vmax);
    HWY_ALIGN float buf[kMaxLanes];
    hn::Store(e, d, buf);
    for (size_t j = 0; j < valid - i; ++j) out[i + j] = buf[j];
    sum0 = hn::Add(sum0, e);
  }
  // sum >= 1: the maximum contributes exp(0).
  return hn::GetLane(hn::SumOfLanes(d, hn::Add(sum0, sum1)));
}

// Softmax of s * in[0, valid) into out[0, valid); valid >= 1.
HWY_INLINE void SoftmaxRow(const float* in, float* out, size_t valid, float scale) {
  const float sum = SoftmaxExpRow(in, out, valid, scale);
  if (std::isnan(sum)) return;  // all NaN already

  ScaleRow(out, valid, 1.0f / sum);  // pass 3: normalise
}

}  // namespace softmax_detail

// simd/softmax.h's MaskedSoftmax for this target: rows x cols, row strides
// ld_in / ld_out, out == in allowed (no partial overlap).
inline void MaskedSoftmaxKernel(const simd::SoftmaxArgs& args) {
  if (args.cols == 0) return;
  for (size_t r = 0; r < args.rows; ++r) {
    const size_t valid = args.causal ? std::min(args.cols, r + args.causal_offset + 1) : args.cols;
    const size_t first = simd::SoftmaxFirstColumn(args, r);
    const float* in = args.in + r * args.ld_in;
    float* out = args.out + r * args.ld_out;
    if (first >= valid) {  // every column masked: PyTorch's softmax gives NaN
      std::fill(out, out + args.cols, std::numeric_limits<float>::quiet_NaN());
      continue;
    }
    softmax_detail::SoftmaxRow(in + first, out + first, valid - first, args.scale);
    std::fill(out, out + first, 0.0f);
    std::fill(out + valid, out + args.cols, 0.0f);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#endif  // ATTN_SIMD_SOFTMAX_INL_H_
