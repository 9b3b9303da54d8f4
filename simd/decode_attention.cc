// Dispatch wrapper of simd/decode_attention.h. The kernel is in
// simd/decode_attention-inl.h; this file is compiled once per Highway target
// (with -ffp-contract=off, for the softmax it includes: see CMakeLists.txt).

#include "simd/decode_attention.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/decode_attention.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "simd/decode_attention-inl.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {

void DecodeAttentionT(const simd::FlashAttentionArgs& args) { DecodeAttentionKernel(args); }

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace attn {
namespace simd {

HWY_EXPORT(DecodeAttentionT);

void DecodeAttention(const FlashAttentionArgs& args) {
  CheckFlashAttentionArgs(args, "DecodeAttention");
  HWY_DYNAMIC_DISPATCH(DecodeAttentionT)(args);
}

}  // namespace simd
}  // namespace attn
#endif  // HWY_ONCE
