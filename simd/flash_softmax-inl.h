// Online softmax of the flash attention kernel (per target): the weights'
// exponentials by simd/exp2-inl.h's Exp2Below128 (no overflow handling:
// scores exceed the row's reference by at most kMaxLag), the update of the
// row's reference (within kMaxLag of its running max), and the step of one
// query row over one key block (SoftmaxBlockRow). Included by
// simd/flash_attention-inl.h.

#if defined(ATTN_SIMD_FLASH_SOFTMAX_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ATTN_SIMD_FLASH_SOFTMAX_INL_H_
#undef ATTN_SIMD_FLASH_SOFTMAX_INL_H_
#else
#define ATTN_SIMD_FLASH_SOFTMAX_INL_H_
#endif

#include <stddef.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "hwy/highway.h"
#include "simd/exp2-inl.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {
namespace flash_detail {

namespace hn = hwy::HWY_NAMESPACE;

// How far a row's scores may exceed its reference m before m is raised (in
// score units; weights up to exp(5.5) ~ 245, 2^7.9). A row's first finite
// block sets m to its exact max; a later block raises m to its own max only
// when some score exceeds m + kMaxLag (the online softmax result does not
// depend on which m is used, only on m being the same for the weights and
// the sum). With the exact running max, m grows in about 1 in 5 of the
// later (row, key block) steps on random scores, each time paying a
// cross-lane max, the exponential of alpha and a rescaled accumulator tile
// (over 4% of the kernel's time in a profile at T = 1024); with the lag,
// almost only in a row's first block. The price: unnormalized sums up to
// 245 times larger (simd/flash_attention.h).
constexpr float kMaxLag = 5.5f;

// The softmax weights exp(s - m) = 2^((s - m) log2(e)) of scores
// s <= m + kMaxLag (m: the row's reference): the difference first (see
// SoftmaxBlockRow).
template <class D, class V = hn::Vec<D>>
HWY_INLINE V SoftmaxWeight(D d, V s, V vm) {
  return Exp2Below128(d, hn::Mul(hn::Sub(s, vm), hn::Set(d, kLog2E)));
}

// The row's new reference: m while every lane of vmax is within kMaxLag of
// it (NaN lanes included), else max(m, the largest lane of vmax), never NaN.
// The cross-lane reduction (a chain of shuffles on the FMA ports, 5% of the
// kernel's time when done for every row and block) only runs then.
template <class D>
HWY_INLINE float NewRunningMax(D d, hn::Vec<D> vmax, float m) {
  if (hn::AllFalse(d, hn::Gt(vmax, hn::Set(d, m + kMaxLag)))) return m;
  return std::max(m, hn::GetLane(hn::MaxOfLanes(d, vmax)));
}

// Online softmax step of one query row over the scores s[0, n) (n >= 1) of
// one key block: updates the row's reference m (NewRunningMax: within
// kMaxLag of the running max) and the running sum, kept as N per-lane
// partial sums in l (reduced once, in FinishRow), overwrites s[0, n) with
// p = exp(s - m_new) (and the rest of the last vector with 0), and returns
// alpha = exp(m_old - m_new), the factor for the row's accumulator (1 when m
// stays).
// Both are powers of 2 with exponents (x - m) log2(e): the difference first,
// exact near the max, so that no rounding of a large m log2(e) enters them
// (folding log2(e) into one FMA, x log2(e) - m log2(e), would save one
// operation per 16 scores but carries an absolute error of |m| 2^-24 into
// every exponent: garbage weights for scores around 1e8 and beyond).
// While every score of the row up to this block is -inf, m stays -inf, l 0
// and p 0.
// A NaN or +inf score makes the row's sum NaN, and so its result (FinishRow),
// without a test per score: a NaN score gives a NaN weight (Exp2Below128
// keeps NaN); +inf makes m_new = +inf, and its own weight exp(inf - inf) is
// NaN; a NaN that hides among -inf scores is looked for on that rare path.
template <class D>
HWY_INLINE float SoftmaxBlockRow(D d, float* HWY_RESTRICT s, size_t n, float& m,
                                 float* HWY_RESTRICT l) {
  using V = hn::Vec<D>;
  const size_t N = hn::Lanes(d);
  const float kInf = std::numeric_limits<float>::infinity();
  const V vneg_inf = hn::Set(d, -kInf);

  // Pass 1: block max (a NaN lane may or may not survive hn::Max; pass 2
  // sees the NaN score either way).
  V vmax = vneg_inf;
  size_t j = 0;
  for (; j + N <= n; j += N) vmax = hn::Max(vmax, hn::Load(d, s + j));
  if (j < n) {
    vmax = hn::Max(vmax, hn::IfThenElse(hn::FirstN(d, n - j), hn::Load(d, s + j), vneg_inf));
  }
  const float m_new = NewRunningMax(d, vmax, m);
  if (m_new == -kInf) {  // every visible score up to this block is -inf or NaN
    bool any_nan = false;
    for (j = 0; j < n; ++j) any_nan |= std::isnan(s[j]);
    if (any_nan) hn::Store(hn::Set(d, std::numeric_limits<float>::quiet_NaN()), d, l);
    for (j = 0; j < n; j += N) hn::Store(hn::Zero(d), d, s + j);
    return 1.0f;
  }
  // Pass 2: p = exp(s - m_new) and its sum; m = -inf (first finite block)
  // gives alpha = 0, and acc and l are 0 then.
  const V vm = hn::Set(d, m_new);
  const float alpha = m == m_new ? 1.0f : hn::GetLane(SoftmaxWeight(d, hn::Set(d, m), vm));
  V vsum = hn::Zero(d);
  for (j = 0; j + N <= n; j += N) {
    const V p = SoftmaxWeight(d, hn::Load(d, s + j), vm);
    hn::Store(p, d, s + j);
    vsum = hn::Add(vsum, p);
  }
  if (j < n) {
    const V p = hn::IfThenElseZero(hn::FirstN(d, n - j), SoftmaxWeight(d, hn::Load(d, s + j), vm));
    hn::Store(p, d, s + j);
    vsum = hn::Add(vsum, p);
  }
  hn::Store(hn::MulAdd(hn::Load(d, l), hn::Set(d, alpha), vsum), d, l);
  m = m_new;
  return alpha;
}

}  // namespace flash_detail
// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#endif  // ATTN_SIMD_FLASH_SOFTMAX_INL_H_
