// Per-target activation quantization behind simd/matmul_int8.h's
// QuantizeRows and AllFinite (included by simd/matmul_int8-inl.h, once per
// Highway target): QuantizeRowsKernel and AllFiniteKernel, with the vector
// types of simd/matmul_int8_layout-inl.h (the SVE targets on the first 128
// bits of each vector).
//
// QuantizeRowsKernel: a is m x k floats at row stride lda, aq m x k bytes
// at row stride ldaq, scale and zero_point m entries each; a is only read,
// aq, scale and zero_point only written, inside those rectangles, and aq
// may not overlap a. AllFiniteKernel reads x[0, count). Any alignment and
// any k: whole vectors are loaded and stored unaligned, tails element by
// element.
//
// The parameters of a row come from simd::detail::ActivationRowParams and
// every value is quantized by the same float operations as
// simd::detail::QuantizeActivation (simd/matmul_int8_internal.h), so every
// target gives the bits of simd::QuantizeRowsReference.

// Per-target section: re-included once per target (toggle guard).
#if defined(ATTN_SIMD_MATMUL_INT8_QUANTIZE_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ATTN_SIMD_MATMUL_INT8_QUANTIZE_INL_H_
#undef ATTN_SIMD_MATMUL_INT8_QUANTIZE_INL_H_
#else
#define ATTN_SIMD_MATMUL_INT8_QUANTIZE_INL_H_
#endif

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "hwy/highway.h"
#include "simd/matmul_int8_internal.h"
#include "simd/matmul_int8_layout-inl.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// simd::QuantizeRows for this target: per row a min/max/finiteness pass and
// a quantization pass, whole vectors then a scalar tail with the same
// arithmetic (float product, round to nearest even, saturate to [0, 255]).
inline void QuantizeRowsKernel(const float* HWY_RESTRICT a, size_t lda, size_t m, size_t k,
                               uint8_t* HWY_RESTRICT aq, size_t ldaq, float* HWY_RESTRICT scale,
                               int32_t* HWY_RESTRICT zero_point) {
  using int8_detail::kLanes;
  for (size_t i = 0; i < m; ++i) {
    const float* HWY_RESTRICT x = a + i * lda;
    uint8_t* HWY_RESTRICT q = aq + i * ldaq;
    float lo = std::numeric_limits<float>::infinity();
    float hi = -lo;
    bool finite = true;
    size_t j = 0;
#if HWY_TARGET != HWY_SCALAR
    const int8_detail::DF df;
    if (k >= kLanes) {
      // x - x is 0 for finite x and NaN otherwise; the sum says whether any
      // lane was not finite.
      // Two vectors per step, each with its own min, max and sum chains (one
      // chain's 4-cycle latency would bound the loop).
      auto vmin = hn::Set(df, lo);
      auto vmax = hn::Set(df, hi);
      auto vbad = hn::Zero(df);
      auto vmin1 = vmin, vmax1 = vmax, vbad1 = vbad;
      for (; j + 2 * kLanes <= k; j += 2 * kLanes) {
        const auto v0 = hn::LoadU(df, x + j);
        const auto v1 = hn::LoadU(df, x + j + kLanes);
        vmin = hn::Min(vmin, v0);
        vmax = hn::Max(vmax, v0);
        vbad = hn::Add(vbad, hn::Sub(v0, v0));
        vmin1 = hn::Min(vmin1, v1);
        vmax1 = hn::Max(vmax1, v1);
        vbad1 = hn::Add(vbad1, hn::Sub(v1, v1));
      }
      for (; j + kLanes <= k; j += kLanes) {
        const auto v = hn::LoadU(df, x + j);
        vmin = hn::Min(vmin, v);
        vmax = hn::Max(vmax, v);
        vbad = hn::Add(vbad, hn::Sub(v, v));
      }
      vmin = hn::Min(vmin, vmin1);
      vmax = hn::Max(vmax, vmax1);
      vbad = hn::Add(vbad, vbad1);
      lo = hn::GetLane(hn::MinOfLanes(df, vmin));
      hi = hn::GetLane(hn::MaxOfLanes(df, vmax));
      finite = hn::GetLane(hn::SumOfLanes(df, vbad)) == 0.0f;
    }
#endif
    for (; j < k; ++j) {
      lo = std::min(lo, x[j]);
      hi = std::max(hi, x[j]);
      finite = finite && std::isfinite(x[j]);
    }
    const simd::detail::RowQuant rq = simd::detail::ActivationRowParams(lo, hi, finite);
    scale[i] = rq.scale;
    zero_point[i] = rq.zero_point;
    if (!finite) {
      memset(q, 0, k);
      continue;
    }
    j = 0;
#if HWY_TARGET != HWY_SCALAR
    // (HWY_SCALAR's NearestInt rounds 0.49999997 up; the tail's nearbyint
    // is exact, so that target quantizes in the tail loop only.)
    const int8_detail::DI32 di;
    const hn::Rebind<uint8_t, int8_detail::DI32> du8;
    const auto vinv = hn::Set(df, rq.inv_scale);
    const auto vzp = hn::Set(di, rq.zero_point);
    for (; j + kLanes <= k; j += kLanes) {
      const auto qi = hn::Add(hn::NearestInt(hn::Mul(hn::LoadU(df, x + j), vinv)), vzp);
      hn::StoreU(hn::DemoteTo(du8, qi), du8, q + j);
    }
#endif
    for (; j < k; ++j) q[j] = simd::detail::QuantizeActivation(x[j], rq.inv_scale, rq.zero_point);
  }
}

// simd::AllFinite for this target.
inline bool AllFiniteKernel(const float* HWY_RESTRICT x, size_t count) {
  size_t j = 0;
#if HWY_TARGET != HWY_SCALAR
  using int8_detail::kLanes;
  const int8_detail::DF df;
  // Blocks of 1024 floats: x - x is NaN exactly for non-finite x.
  while (j + kLanes <= count) {
    const size_t end = j + std::min<size_t>(1024, (count - j) / kLanes * kLanes);
    auto vbad = hn::Zero(df);
    for (; j < end; j += kLanes) {
      const auto v = hn::LoadU(df, x + j);
      vbad = hn::Add(vbad, hn::Sub(v, v));
    }
    if (!(hn::GetLane(hn::SumOfLanes(df, vbad)) == 0.0f)) return false;
  }
#endif
  for (; j < count; ++j) {
    if (!std::isfinite(x[j])) return false;
  }
  return true;
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#endif  // ATTN_SIMD_MATMUL_INT8_QUANTIZE_INL_H_
