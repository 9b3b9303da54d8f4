// 2^x by a degree-5 polynomial for the softmax weights of the attention
// kernels (per target): exponents x <= 127.5 (weights exp(s - m) whose
// reference m is within a few units of the scores' maximum), no overflow
// handling, exactly 1 at x = 0 and exactly 0 below 2^-126. Used by the flash
// kernel's online softmax (simd/flash_softmax-inl.h) and simd::MaskedSoftmax
// (simd/softmax-inl.h).

#if defined(ATTN_SIMD_EXP2_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ATTN_SIMD_EXP2_INL_H_
#undef ATTN_SIMD_EXP2_INL_H_
#else
#define ATTN_SIMD_EXP2_INL_H_
#endif

#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

// Coefficients of 2^f ~ 1 + f (c1 + f (c2 + f (c3 + f (c4 + f c5)))) for
// |f| <= 1/2: a relative-error least-squares fit (refined towards minimax)
// in double, rounded to float. Evaluated in float its relative error is
// below 1.75e-7 (about 2 ULP) with FMA and 1.95e-7 without (every float in
// |f| in [1/4, 1/2] checked), and it is exactly 1 at f = 0.
constexpr float kExp2C1 = 0.6931470036506653f;
constexpr float kExp2C2 = 0.24022242426872253f;
constexpr float kExp2C3 = 0.05550733581185341f;
constexpr float kExp2C4 = 0.009671512991189957f;
constexpr float kExp2C5 = 0.001326472731307149f;

// log2(e): the softmax's weights are exp(s - m) = 2^((s - m) log2(e)).
constexpr float kLog2E = 1.44269504088896341f;

// Below this exponent, 2^x would leave float's normal range: such a weight is
// flushed to 0 (below 2^-126 times the row's reference m:
// simd/flash_softmax-inl.h's kMaxLag).
constexpr float kExp2Min = -126.0f;

// p * 2^n for n integral in [-126, 127], or 0 where x < kExp2Min (NaN x is
// not below it: its lane stays NaN). AVX-512: one compare (not-less-than,
// true for NaN) and scalef, zeroing the other lanes. Elsewhere the bits of
// 2^n ((n + 127) << 23) come from t = n + 1.5 * 2^23, whose low mantissa
// bits hold n, then a multiply and a blend; the lanes zeroed may hold
// anything before (the shift of a meaningless n included).
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
HWY_INLINE hn::Vec512<float> ScaleByPow2OrZero(hn::Full512<float> /*d*/, hn::Vec512<float> p,
                                               hn::Vec512<float> n, hn::Vec512<float> /*t*/,
                                               hn::Vec512<float> x) {
  const __mmask16 keep = _mm512_cmp_ps_mask(x.raw, _mm512_set1_ps(kExp2Min), _CMP_NLT_UQ);
  return hn::Vec512<float>{_mm512_maskz_scalef_ps(keep, p.raw, n.raw)};
}
#endif
template <class D, class V = hn::Vec<D>>
HWY_INLINE V ScaleByPow2OrZero(D d, V p, V /*n*/, V t, V x) {
  const hn::RebindToSigned<D> di;
  const V pow2n = hn::BitCast(d, hn::ShiftLeft<23>(hn::Add(hn::BitCast(di, t), hn::Set(di, 127))));
  return hn::IfThenZeroElse(hn::Lt(x, hn::Set(d, kExp2Min)), hn::Mul(p, pow2n));
}

// 2^x for x < 127.5, x = -inf included, NaN for NaN: the softmax's weights,
// whose exponents are x = (s - m) log2(e) <= kMaxLag log2(e). Round x to an
// integer n and evaluate 2^(x - n) by the polynomial above: relative error
// below 2e-7, exactly 1 at x = 0, exactly 0 for x < -126 (and at -inf). About
// 10 vector operations on AVX-512 (scalef), 14 elsewhere, against 18 for a
// natural-base exp with its two-constant reduction and 30 for hwy's Exp,
// which also handles large x > 0.
template <class D, class V = hn::Vec<D>>
HWY_INLINE V Exp2Below128(D d, V x) {
  // No clamp: lanes below kExp2Min (-inf included) are zeroed at the end,
  // whatever they compute before (NaN for -inf, a meaningless n below -2^22).
  // Adding 1.5 * 2^23 rounds to an integer n that lands in the low mantissa
  // bits: bits(t) = 0x4B400000 + n. (Two operations that either FMA port
  // runs; AVX-512's roundscale would be two on port 0 only.)
  const V kRound = hn::Set(d, 12582912.0f);
  const V t = hn::Add(x, kRound);
  const V n = hn::Sub(t, kRound);
  const V f = hn::Sub(x, n);  // exact, in [-1/2, 1/2] (kept lanes)
  V p = hn::Set(d, kExp2C5);
  p = hn::MulAdd(p, f, hn::Set(d, kExp2C4));
  p = hn::MulAdd(p, f, hn::Set(d, kExp2C3));
  p = hn::MulAdd(p, f, hn::Set(d, kExp2C2));
  p = hn::MulAdd(p, f, hn::Set(d, kExp2C1));
  p = hn::MulAdd(p, f, hn::Set(d, 1.0f));
  return ScaleByPow2OrZero(d, p, n, t, x);
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#endif  // ATTN_SIMD_EXP2_INL_H_
