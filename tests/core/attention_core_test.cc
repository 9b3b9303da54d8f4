// The flash path of the attention core against the materialized path, on
// the shapes the modules produce (strided heads inside a QKV buffer).
#include "core/attention_core.h"

#include "test_util.h"

namespace attn {
namespace {

struct CoreShape {
  size_t batch, heads, tokens, head_dim;
  bool causal;
};

// Runs the core on a (batch, tokens, 3 * heads * head_dim) QKV buffer laid out
// as MultiHeadAttention does, and returns (batch, tokens, heads * head_dim).
Tensor run_core(const CoreShape& s, const Tensor& qkv, bool materialize) {
  const size_t d = s.heads * s.head_dim;
  Tensor out({int64_t(s.batch), int64_t(s.tokens), int64_t(d)});
  detail::AttentionProblem p;
  p.batch = s.batch;
  p.heads = s.heads;
  p.tokens = s.tokens;
  p.head_dim = s.head_dim;
  float* base = const_cast<float*>(qkv.data());
  p.q = {base, s.tokens * 3 * d, s.head_dim, 3 * d};
  p.k = {base + d, s.tokens * 3 * d, s.head_dim, 3 * d};
  p.v = {base + 2 * d, s.tokens * 3 * d, s.head_dim, 3 * d};
  p.out = {out.data(), s.tokens * d, s.head_dim, d};
  p.scale = 1.0f / std::sqrt(float(s.head_dim));
  p.causal = s.causal;
  p.materialize = materialize;
  detail::attention(p);
  return out;
}

TEST(AttentionCore, FlashMatchesMaterialized) {
  const CoreShape shapes[] = {
      {1, 1, 1, 1, true},   {2, 3, 1, 7, true},     {1, 2, 63, 64, true},   {1, 2, 64, 64, true},
      {2, 1, 65, 64, true}, {1, 1, 130, 7, true},   {1, 2, 200, 128, true}, {3, 2, 17, 16, false},
      {1, 1, 257, 1, true}, {1, 1, 100, 64, false},
  };
  for (const CoreShape& s : shapes) {
    const int64_t width = int64_t(3 * s.heads * s.head_dim);
    const Tensor qkv = testing::random_tensor({int64_t(s.batch), int64_t(s.tokens), width},
                                              s.tokens * 31 + s.head_dim);
    const Tensor flash = run_core(s, qkv, false);
    const Tensor reference = run_core(s, qkv, true);
    SCOPED_TRACE(std::to_string(s.tokens) + " tokens, head_dim " + std::to_string(s.head_dim));
    EXPECT_TENSOR_NEAR(flash, reference, 2e-6);
  }
}

TEST(AttentionCore, FlashIsDeterministicAcrossThreads) {
  const CoreShape s{2, 4, 300, 64, true};
  const Tensor qkv = testing::random_tensor({2, 300, 3 * 4 * 64}, 77);
  set_num_threads(1);
  const Tensor one = run_core(s, qkv, false);
  set_num_threads(2);
  EXPECT_TENSOR_EQ(run_core(s, qkv, false), one);
  set_num_threads(5);
  EXPECT_TENSOR_EQ(run_core(s, qkv, false), one);
  set_num_threads(0);
}

}  // namespace
}  // namespace attn
