// Dispatch wrapper and the scalar reference for simd/softmax.h. The kernel is
// in simd/softmax-inl.h; this file is compiled once per Highway target.

#include "simd/softmax.h"

#include <stddef.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/softmax.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "simd/softmax-inl.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {

void MaskedSoftmaxT(const simd::SoftmaxArgs& args) { MaskedSoftmaxKernel(args); }

}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace attn {
namespace simd {

HWY_EXPORT(MaskedSoftmaxT);

void MaskedSoftmax(const SoftmaxArgs& args) { HWY_DYNAMIC_DISPATCH(MaskedSoftmaxT)(args); }

void MaskedSoftmaxReference(const SoftmaxArgs& args) {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> y(args.cols);
  for (size_t r = 0; r < args.rows; ++r) {
    const size_t valid = args.causal ? std::min(args.cols, r + args.causal_offset + 1) : args.cols;
    const size_t first = std::min(SoftmaxFirstColumn(args, r), valid);
    const float* in = args.in + r * args.ld_in;
    float* out = args.out + r * args.ld_out;
    // The scaled logits, rounded to float as the kernel sees them.
    bool nan = first == valid;
    double m = -inf;
    for (size_t j = first; j < valid; ++j) {
      y[j] = static_cast<double>(args.scale * in[j]);
      nan |= std::isnan(y[j]);
      m = std::max(m, y[j]);
    }
    if (first == valid) {
      std::fill(out, out + args.cols, std::numeric_limits<float>::quiet_NaN());
      continue;
    }
    if (nan || m == inf || m == -inf) {
      std::fill(out + first, out + valid, std::numeric_limits<float>::quiet_NaN());
    } else {
      double sum = 0.0;
      for (size_t j = first; j < valid; ++j) {
        y[j] = std::exp(y[j] - m);
        sum += y[j];
      }
      for (size_t j = first; j < valid; ++j) out[j] = static_cast<float>(y[j] / sum);
    }
    std::fill(out, out + first, 0.0f);
    std::fill(out + valid, out + args.cols, 0.0f);
  }
}

}  // namespace simd
}  // namespace attn
#endif  // HWY_ONCE
