// Online softmax of the flash attention kernel (per target): a cheap exp for
// non-positive arguments, the running-max update, and the step of one query
// row over one key block (SoftmaxBlockRow). Included by
// simd/flash_attention-inl.h.

#if defined(ATTN_SIMD_FLASH_SOFTMAX_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ATTN_SIMD_FLASH_SOFTMAX_INL_H_
#undef ATTN_SIMD_FLASH_SOFTMAX_INL_H_
#else
#define ATTN_SIMD_FLASH_SOFTMAX_INL_H_
#endif

#include <stddef.h>

#include <algorithm>
#include <limits>

#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {
namespace flash_detail {

namespace hn = hwy::HWY_NAMESPACE;

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

// max(m, the largest lane of vmax), without NaN. The cross-lane reduction (a
// chain of shuffles on the FMA port, 5% of the kernel's time when done for
// every row and block) only runs when some lane exceeds m: after the first
// few key blocks the running max rarely grows.
template <class D>
HWY_INLINE float NewRunningMax(D d, hn::Vec<D> vmax, float m) {
  if (hn::AllFalse(d, hn::Gt(vmax, hn::Set(d, m)))) return m;
  return std::max(m, hn::GetLane(hn::MaxOfLanes(d, vmax)));
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
  const float m_new = NewRunningMax(d, vmax, m);
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

}  // namespace flash_detail
// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#endif  // ATTN_SIMD_FLASH_SOFTMAX_INL_H_
