// forward(x, &weights) again with the weights tensor of an earlier call holds
// no more memory at its peak than the first call did: the modules write into
// a weights tensor of the right shape, and free one of another shape before
// allocating the new one (was: the new weights were built while the old were
// still held, 962 MB instead of 578 MB at B = 8, T = 1024 for
// MultiHeadAttention). The results are those of a fresh tensor.
//
// Memory is attn's float buffers held at once (simd::FloatsBytesPeak():
// tensors, packed weights and scratch), which every call's weights are.
#include <cstdio>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "simd/aligned_memory.h"
#include "test_util.h"

namespace attn {
namespace {

using testing::random_tensor;
using testing::same_bits;

// The most memory fn() held at once beyond what was held when it started,
// or -1 when this build cannot measure it.
int64_t peak_growth(const std::function<void()>& fn) {
  simd::ResetFloatsPeak();
  const size_t before = simd::FloatsBytesHeld();
  fn();
  if (simd::FloatsBytesPeak() == 0) return -1;
  return static_cast<int64_t>(simd::FloatsBytesPeak() - before);
}

int64_t bytes_of(const Tensor& t) { return t.numel() * static_cast<int64_t>(sizeof(float)); }

using Forward = std::function<Tensor(const Tensor&, Tensor*)>;

// The peak of forward(x, &w) with w empty (after a warm-up call that grows
// the per-thread scratch buffers), against the peak of forward(x, &w) again
// with w from that call, or with w of shape `earlier` (counting w's bytes,
// held throughout the second call): equal within an eighth of the weights
// (a thread's scratch may grow in either call).
// The weights returned are the fresh call's, bit for bit.
void check_repeated_forward(const char* name, const Forward& forward, const Tensor& x,
                            const Tensor& x_earlier) {
  SCOPED_TRACE(name);
  {
    Tensor warm_up;
    forward(x, &warm_up);
  }
  Tensor w;
  Tensor out_first;
  const int64_t first = peak_growth([&] { out_first = forward(x, &w); });
  if (first < 0) GTEST_SKIP() << "peak memory not measurable here";
  const Tensor w_first = w;
  const int64_t tolerance = bytes_of(w) / 8;
  // The same tensor again: reused in place.
  Tensor out_again;
  const int64_t held = bytes_of(w);
  const int64_t again = held + peak_growth([&] { out_again = forward(x, &w); });
  EXPECT_LE(again, first + tolerance) << "first call " << first << " bytes, again " << again;
  EXPECT_TRUE(same_bits(out_again, out_first));
  EXPECT_TRUE(same_bits(w, w_first));
  // Weights of another shape: freed before the new ones are allocated.
  Tensor other;
  forward(x_earlier, &other);
  const int64_t held_other = bytes_of(other);
  const int64_t reshaped = held_other + peak_growth([&] { out_again = forward(x, &other); });
  EXPECT_LE(reshaped, first + tolerance)
      << "first call " << first << " bytes, after weights of another shape " << reshaped;
  EXPECT_TRUE(same_bits(other, w_first));
  std::printf("%s: peak MB, first call %.1f, again %.1f, after weights of another shape %.1f\n",
              name, first / 1e6, again / 1e6, reshaped / 1e6);
  // Garbage in a tensor of the right shape is overwritten everywhere.
  Tensor garbage(w_first.shape());
  for (int64_t i = 0; i < garbage.numel(); ++i) {
    garbage.data()[i] = std::numeric_limits<float>::quiet_NaN();
  }
  EXPECT_TRUE(same_bits(forward(x, &garbage), out_first));
  EXPECT_TRUE(same_bits(garbage, w_first));
}

// Weights of 16 to 25 MB each (T = 512 for the batched modules, 2048 for
// SelfAttention), the earlier call's at 7/8 of the tokens (77% of the bytes).
TEST(WeightsMemory, RepeatedForwardPeaksAsTheFirst) {
  manual_seed(1);
  MultiHeadAttention mha(64, 96, 512, 0.0, 12);
  MultiHeadAttentionWrapper wrapper(64, 8, 512, 0.0, 8);
  CausalAttention ca(64, 16, 512, 0.0);
  GroupedQueryAttention gqa(64, 64, 512, 8, 2);
  SelfAttentionV1 v1(32, 16);
  SelfAttentionV2 v2(32, 16);
  mha.eval();
  wrapper.eval();
  ca.eval();
  const Tensor x = random_tensor({2, 512, 64}, 1), x_earlier = random_tensor({2, 448, 64}, 2);
  check_repeated_forward(
      "MultiHeadAttention", [&](const Tensor& in, Tensor* w) { return mha.forward(in, w); }, x,
      x_earlier);
  check_repeated_forward(
      "MultiHeadAttentionWrapper",
      [&](const Tensor& in, Tensor* w) { return wrapper.forward(in, w); }, x, x_earlier);
  check_repeated_forward(
      "GroupedQueryAttention", [&](const Tensor& in, Tensor* w) { return gqa.forward(in, w); }, x,
      x_earlier);
  const Tensor x16 = random_tensor({16, 512, 64}, 3), x16_earlier = random_tensor({16, 448, 64}, 4);
  check_repeated_forward(
      "CausalAttention", [&](const Tensor& in, Tensor* w) { return ca.forward(in, w); }, x16,
      x16_earlier);
  const Tensor x2 = random_tensor({2048, 32}, 5), x2_earlier = random_tensor({1792, 32}, 6);
  check_repeated_forward(
      "SelfAttentionV1", [&](const Tensor& in, Tensor* w) { return v1.forward(in, w); }, x2,
      x2_earlier);
  check_repeated_forward(
      "SelfAttentionV2", [&](const Tensor& in, Tensor* w) { return v2.forward(in, w); }, x2,
      x2_earlier);
}

// forward(x, &x) where x has the weights' shape (d_in = num_tokens), so
// that its storage is reused for them: x is read before it is overwritten.
TEST(WeightsMemory, InputOfTheWeightsShapeMayBeTheOutput) {
  CausalAttention ca(6, 3, 8, 0.0);
  SelfAttentionV1 v1(6, 3);
  SelfAttentionV2 v2(6, 3);
  ca.eval();
  const Tensor x3 = random_tensor({2, 6, 6}, 7), x2 = random_tensor({6, 6}, 8);
  const std::vector<std::pair<std::string, Forward>> modules = {
      {"CausalAttention", [&](const Tensor& in, Tensor* w) { return ca.forward(in, w); }},
      {"SelfAttentionV1", [&](const Tensor& in, Tensor* w) { return v1.forward(in, w); }},
      {"SelfAttentionV2", [&](const Tensor& in, Tensor* w) { return v2.forward(in, w); }}};
  for (const auto& module : modules) {
    SCOPED_TRACE(module.first);
    const Tensor& x0 = module.first == "CausalAttention" ? x3 : x2;
    Tensor weights;
    const Tensor expected = module.second(x0, &weights);
    ASSERT_EQ(weights.shape(), x0.shape());
    Tensor x = x0;
    const float* storage = x.data();
    EXPECT_TRUE(same_bits(module.second(x, &x), expected));
    EXPECT_TRUE(same_bits(x, weights));
    EXPECT_EQ(x.data(), storage);  // reused in place
  }
}

}  // namespace
}  // namespace attn
