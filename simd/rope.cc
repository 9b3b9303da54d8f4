// Dispatch wrapper, argument checks and the scalar reference for
// simd/rope.h. The kernel is in simd/rope-inl.h; this file is compiled once
// per Highway target.

#include "simd/rope.h"

#include <stddef.h>

#include <string>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/rope.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "simd/rope-inl.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {

void ApplyRopeT(const simd::RopeArgs& args) { ApplyRopeKernel(args); }

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "attn/error.h"

namespace attn {
namespace simd {
namespace {

void CheckArgs(const RopeArgs& a, const char* caller) {
  std::string problem;
  const bool any = a.rows != 0 && a.heads != 0 && a.head_dim != 0;
  if (a.head_dim % 2 != 0) {
    problem = "head_dim must be even";
  } else if (any && a.ld_head < a.head_dim) {
    problem = "ld_head must be >= head_dim";
  } else if (any && (a.x == nullptr || a.cos == nullptr || a.sin == nullptr)) {
    problem = "x, cos and sin must not be null";
  }
  if (!problem.empty()) {
    throw ShapeError(std::string(caller) + ": " + problem + " (rows=" + std::to_string(a.rows) +
                     " heads=" + std::to_string(a.heads) + " head_dim=" +
                     std::to_string(a.head_dim) + " ld_head=" + std::to_string(a.ld_head) + ")");
  }
}

}  // namespace

HWY_EXPORT(ApplyRopeT);

void ApplyRope(const RopeArgs& args) {
  CheckArgs(args, "ApplyRope");
  if (args.rows == 0 || args.heads == 0 || args.head_dim == 0) return;
  HWY_DYNAMIC_DISPATCH(ApplyRopeT)(args);
}

void ApplyRopeReference(const RopeArgs& a) {
  CheckArgs(a, "ApplyRopeReference");
  const size_t half = a.head_dim / 2;
  for (size_t r = 0; r < a.rows; ++r) {
    for (size_t k = 0; k < a.heads; ++k) {
      float* x = a.x + r * a.ld_row + k * a.ld_head;
      for (size_t c = 0; c < half; ++c) {
        const float cos = a.cos[r * a.ld_table + c], sin = a.sin[r * a.ld_table + c];
        const float x1 = x[c], x2 = x[c + half];
        // Two rounded products, then the rounded sum (volatile keeps the
        // compiler from fusing them into one multiply-add).
        volatile float p1 = x1 * cos, p2 = x2 * sin, p3 = x2 * cos, p4 = x1 * sin;
        x[c] = p1 - p2;
        x[c + half] = p3 + p4;
      }
    }
  }
}

}  // namespace simd
}  // namespace attn
#endif  // HWY_ONCE
