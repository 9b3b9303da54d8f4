// Flash attention: the per-target kernel lives in flash_attention-inl.h; this
// file compiles it once per target, dispatches, checks the arguments and holds
// the scalar reference.

#include "simd/flash_attention.h"

#include <stddef.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/flash_attention.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "simd/flash_attention-inl.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {

// The exported entry point of this target (HWY_EXPORT needs a plain function).
void FlashAttentionT(const simd::FlashAttentionArgs& args) { FlashAttentionKernel(args); }

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "attn/error.h"

namespace attn {
namespace simd {
namespace {

std::string Describe(const FlashAttentionArgs& a) {
  return "num_queries=" + std::to_string(a.num_queries) +
         " num_keys=" + std::to_string(a.num_keys) + " head_dim=" + std::to_string(a.head_dim) +
         " ldq=" + std::to_string(a.ldq) + " ldk=" + std::to_string(a.ldk) +
         " ldv=" + std::to_string(a.ldv) + " ldo=" + std::to_string(a.ldo) +
         " group_size=" + std::to_string(a.group_size) +
         " ldq_group=" + std::to_string(a.ldq_group) + " ldo_group=" + std::to_string(a.ldo_group);
}

}  // namespace

void CheckFlashAttentionArgs(const FlashAttentionArgs& a, const char* caller) {
  const size_t hd = a.head_dim;
  const bool has_queries = a.num_queries != 0 && hd != 0;
  const bool has_keys = a.num_keys != 0 && hd != 0;
  std::string problem;
  if (a.group_size == 0) {
    problem = "group_size must be >= 1";
  } else if (has_queries && a.group_size > 1 && (a.ldq_group < hd || a.ldo_group < hd)) {
    problem = "ldq_group and ldo_group must be >= head_dim";
  } else if (has_queries && (a.q == nullptr || a.out == nullptr)) {
    problem = "q and out must not be null";
  } else if (has_queries && has_keys && (a.k == nullptr || a.v == nullptr)) {
    problem = "k and v must not be null";
  } else if (has_queries && (a.ldq < hd || a.ldo < hd)) {
    problem = "ldq and ldo must be >= head_dim";
  } else if (has_queries && has_keys && (a.ldk < hd || a.ldv < hd)) {
    problem = "ldk and ldv must be >= head_dim";
  }
  if (!problem.empty()) {
    throw ShapeError(std::string(caller) + ": " + problem + " (" + Describe(a) + ")");
  }
}

HWY_EXPORT(FlashAttentionT);

void FlashAttention(const FlashAttentionArgs& args) {
  CheckFlashAttentionArgs(args, "FlashAttention");
  HWY_DYNAMIC_DISPATCH(FlashAttentionT)(args);
}

void FlashAttentionReference(const FlashAttentionArgs& a) {
  CheckFlashAttentionArgs(a, "FlashAttentionReference");
  const size_t hd = a.head_dim;
  if (a.num_queries == 0 || hd == 0) return;
  const double kInf = std::numeric_limits<double>::infinity();
  std::vector<double> w(a.num_keys), acc(hd);
  for (size_t i = 0; i < a.num_queries; ++i) {
    const float* q = QueryRow(a, i);
    float* out = OutRow(a, i);
    const size_t first = FirstVisibleKey(a, i), visible = VisibleKeys(a, i);

    // Scores of the visible keys, their maximum, and PyTorch's special cases.
    bool nan_row = visible == first;
    double max_score = -kInf;
    for (size_t j = first; j < visible; ++j) {
      const float* k = a.k + j * a.ldk;
      double dot = 0.0;
      for (size_t c = 0; c < hd; ++c) dot += static_cast<double>(q[c]) * k[c];
      w[j] = static_cast<double>(a.scale) * dot;
      if (std::isnan(w[j]) || w[j] == kInf) nan_row = true;
      max_score = std::max(max_score, w[j]);
    }
    if (nan_row || max_score == -kInf) {
      std::fill(out, out + hd, std::numeric_limits<float>::quiet_NaN());
      continue;
    }

    double sum = 0.0;
    for (size_t j = first; j < visible; ++j) {
      w[j] = std::exp(w[j] - max_score);
      sum += w[j];
    }
    std::fill(acc.begin(), acc.end(), 0.0);
    for (size_t j = first; j < visible; ++j) {
      const float* v = a.v + j * a.ldv;
      for (size_t c = 0; c < hd; ++c) acc[c] += w[j] * v[c];
    }
    for (size_t c = 0; c < hd; ++c) out[c] = static_cast<float>(acc[c] / sum);
  }
}

}  // namespace simd
}  // namespace attn
#endif  // HWY_ONCE
