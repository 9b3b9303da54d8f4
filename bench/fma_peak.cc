#include "bench/fma_peak.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "bench/fma_peak.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace attn_bench {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

float FmaChainsT(size_t iters, float seed) {
  const hn::ScalableTag<float> d;
  const auto mul = hn::Set(d, 0.999999f);
  const auto add = hn::Set(d, 1e-7f);
  auto a0 = hn::Set(d, seed), a1 = hn::Add(a0, add), a2 = hn::Add(a1, add);
  auto a3 = hn::Add(a2, add), a4 = hn::Add(a3, add), a5 = hn::Add(a4, add);
  auto a6 = hn::Add(a5, add), a7 = hn::Add(a6, add), a8 = hn::Add(a7, add);
  auto a9 = hn::Add(a8, add), a10 = hn::Add(a9, add), a11 = hn::Add(a10, add);
  for (size_t i = 0; i < iters; ++i) {
    a0 = hn::MulAdd(a0, mul, add);
    a1 = hn::MulAdd(a1, mul, add);
    a2 = hn::MulAdd(a2, mul, add);
    a3 = hn::MulAdd(a3, mul, add);
    a4 = hn::MulAdd(a4, mul, add);
    a5 = hn::MulAdd(a5, mul, add);
    a6 = hn::MulAdd(a6, mul, add);
    a7 = hn::MulAdd(a7, mul, add);
    a8 = hn::MulAdd(a8, mul, add);
    a9 = hn::MulAdd(a9, mul, add);
    a10 = hn::MulAdd(a10, mul, add);
    a11 = hn::MulAdd(a11, mul, add);
  }
  const auto s = hn::Add(
      hn::Add(hn::Add(hn::Add(a0, a1), hn::Add(a2, a3)), hn::Add(hn::Add(a4, a5), hn::Add(a6, a7))),
      hn::Add(hn::Add(a8, a9), hn::Add(a10, a11)));
  return hn::GetLane(hn::SumOfLanes(d, s));
}

static size_t FloatLanesT() { return hn::Lanes(hn::ScalableTag<float>()); }

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn_bench
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace attn_bench {

HWY_EXPORT(FmaChainsT);
HWY_EXPORT(FloatLanesT);

float FmaChains(size_t iters, float seed) { return HWY_DYNAMIC_DISPATCH(FmaChainsT)(iters, seed); }

double FmaChainsFlops(size_t iters) {
  return static_cast<double>(iters) * kFmaChains * 2.0 *
         static_cast<double>(HWY_DYNAMIC_DISPATCH(FloatLanesT)());
}

}  // namespace attn_bench
#endif  // HWY_ONCE
