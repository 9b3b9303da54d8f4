// The int8 KV cache (KVCacheType::kInt8, attn/kv_cache.h): prompt + decoded
// tokens against one forward through the same cache type, its accuracy
// against the float32 module with a float32 cache, its size, rewind and
// reset, its dequantized rows, and the NaN rules.
#include "every_target.h"
#include "test_util.h"

namespace attn {
namespace {

using testing::decode_in_chunks;
using testing::random_tensor;
using testing::relative_l2;
using testing::slice_tokens;

// A prompt, then single tokens: ones and a chunk after the prompt.
std::vector<int64_t> prompt_then_steps(int64_t prompt, int64_t steps) {
  std::vector<int64_t> chunks{prompt};
  for (int64_t i = 0; i < steps; ++i) chunks.push_back(1);
  return chunks;
}

RopeConfig llama3_rope(int64_t original_context) {
  RopeConfig rope;
  rope.enabled = true;
  rope.theta_base = 500000.0;
  rope.scaling_factor = 32.0;
  rope.low_freq_factor = 1.0;
  rope.high_freq_factor = 4.0;
  rope.original_context_length = original_context;
  return rope;
}

class KVCacheInt8EveryTarget : public testing::EveryTarget {};
INSTANTIATE_EVERY_TARGET(KVCacheInt8EveryTarget);

// Prompt + steps through an int8 cache equal one forward through an int8
// cache (to rounding): every token attends to the quantized keys and values
// with its query quantized alike. Decoding with AVX-512 VNNI also rounds the
// softmax weights to 16 bits per 16-token tile (each within 2^-17 of the
// tile's largest): 2.3e-6 measured, 1e-5 allowed.
TEST_P(KVCacheInt8EveryTarget, PromptThenStepsEqualOneForward) {
  for (bool bias : {false, true}) {
    manual_seed(7);
    MultiHeadAttention mha(24, 36, 40, 0.0, 3, bias);  // head_dim 12
    mha.eval();
    const Tensor x = random_tensor({2, 37, 24}, 11);
    KVCache whole = mha.make_cache(2, KVCacheType::kInt8);
    const Tensor expected = mha.forward(x, whole);
    KVCache steps = mha.make_cache(2, KVCacheType::kInt8);
    EXPECT_TENSOR_NEAR(decode_in_chunks(mha, steps, x, {20, 1, 1, 5, 10}), expected, 1e-5);
    EXPECT_EQ(steps.size(), 37);
  }
  for (int64_t window : {0, 1, 8}) {
    manual_seed(8);
    GroupedQueryAttention gqa(64, 64, 48, 4, 2, llama3_rope(16), window);  // head_dim 16
    gqa.eval();
    const Tensor x = random_tensor({2, 45, 64}, 12);
    KVCache whole = gqa.make_cache(2, KVCacheType::kInt8);
    const Tensor expected = gqa.forward(x, whole);
    KVCache steps = gqa.make_cache(2, KVCacheType::kInt8);
    SCOPED_TRACE("window " + std::to_string(window));
    EXPECT_TENSOR_NEAR(decode_in_chunks(gqa, steps, x, prompt_then_steps(40, 5)), expected, 1e-5);
  }
}

// head_dim around the 32-value blocks and the vector widths, group sizes
// 1..4: decoding through the int8 cache stays within the quantization error
// of the float32 cache.
TEST_P(KVCacheInt8EveryTarget, OddShapesStayCloseToFloat32) {
  for (int64_t head_dim : {1, 7, 31, 33, 64, 65}) {
    for (int64_t groups : {1, 2, 4}) {
      const int64_t heads = 4, d = heads * head_dim;
      manual_seed(9);
      RopeConfig no_rope;
      no_rope.enabled = false;  // head_dim may be odd
      GroupedQueryAttention gqa(d, d, 24, heads, groups, no_rope);
      gqa.eval();
      const Tensor x = random_tensor({1, 21, d}, 13);
      KVCache f = gqa.make_cache(1), q = gqa.make_cache(1, KVCacheType::kInt8);
      const Tensor y_f = decode_in_chunks(gqa, f, x, prompt_then_steps(17, 4));
      const Tensor y_q = decode_in_chunks(gqa, q, x, prompt_then_steps(17, 4));
      EXPECT_LT(relative_l2(y_q, y_f), 1e-2) << "head_dim " << head_dim << " groups " << groups;
    }
  }
}

// The accuracy target: 64 tokens decoded after a 960-token prompt,
// the int8 module with an int8 cache against the float32 module with a
// float32 cache, within 1.5e-2 relative L2 (the decoded tokens' outputs).
template <typename M>
void expect_decoding_accuracy(const M& module, const char* name, const Tensor& x) {
  const M quantized = quantize_dynamic(module);
  const std::vector<int64_t> chunks = prompt_then_steps(960, 64);
  KVCache f32 = module.make_cache(1), f32_int8 = module.make_cache(1, KVCacheType::kInt8);
  KVCache int8_f32 = quantized.make_cache(1),
          int8_int8 = quantized.make_cache(1, KVCacheType::kInt8);
  const auto decoded = [&](const M& m, KVCache& cache) {
    return slice_tokens(decode_in_chunks(m, cache, x, chunks), 960, 1024);
  };
  const Tensor reference = decoded(module, f32);
  const double cache_only = relative_l2(decoded(module, f32_int8), reference);
  const double weights_only = relative_l2(decoded(quantized, int8_f32), reference);
  const double both = relative_l2(decoded(quantized, int8_int8), reference);
  std::printf(
      "%s, 64 tokens after 960: rel L2 vs float32: int8 cache %.3g, int8 weights %.3g, "
      "both %.3g\n",
      name, cache_only, weights_only, both);
  EXPECT_LE(both, 1.5e-2);
  EXPECT_LE(cache_only, 5e-3);
}

TEST(KVCacheInt8, Gpt2DecodingAccuracy) {
  manual_seed(123);
  MultiHeadAttention mha(768, 768, 1024, 0.0, 12);
  mha.eval();
  expect_decoding_accuracy(mha, "GPT-2 small MultiHeadAttention", rand({1, 1024, 768}));
}

TEST(KVCacheInt8, LlamaLayerDecodingAccuracy) {
  manual_seed(123);
  GroupedQueryAttention gqa(2048, 2048, 1024, 32, 8, llama3_rope(8192));
  gqa.eval();
  expect_decoding_accuracy(gqa, "Llama 3.2 1B GroupedQueryAttention", rand({1, 1024, 2048}));
}

TEST(KVCacheInt8, BytesAndLayout) {
  const MultiHeadAttention mha(768, 768, 1024, 0.0, 12);
  const KVCache f32 = mha.make_cache(1), int8 = mha.make_cache(1, KVCacheType::kInt8);
  EXPECT_EQ(f32.type(), KVCacheType::kFloat32);
  EXPECT_EQ(int8.type(), KVCacheType::kInt8);
  EXPECT_EQ(f32.bytes(), 2 * 12 * 1024 * 64 * 4);
  EXPECT_EQ(int8.bytes(), 2 * 12 * 1024 * (2 * 4 + 64));  // two scales per 64 values
  EXPECT_LE(double(int8.bytes()) / double(f32.bytes()), 0.3);
  EXPECT_EQ(int8.keys().numel(), 0);  // no float32 tensors
  // One tile of 16 tokens: keys of 4 + 8 bytes (5 dimensions in 2 quads),
  // values of 4 + 5.
  EXPECT_EQ(KVCache(2, 3, 5, 7, KVCacheType::kInt8).bytes(), 2 * 3 * 16 * (12 + 9));
  EXPECT_STREQ(to_string(KVCacheType::kInt8), "int8");
  EXPECT_THROW(KVCache(1, 1, 1, 1, static_cast<KVCacheType>(7)), ArgumentError);
}

// Keys are quantized after RoPE: the int8 cache's dequantized keys are the
// float32 cache's (rotated) keys within half a block scale.
TEST(KVCacheInt8, DequantizedRowsMatchTheFloat32Cache) {
  manual_seed(5);
  GroupedQueryAttention gqa(128, 128, 32, 4, 2, llama3_rope(16));
  gqa.eval();
  const Tensor x = random_tensor({2, 13, 128}, 14);
  KVCache f = gqa.make_cache(2), q = gqa.make_cache(2, KVCacheType::kInt8);
  gqa.forward(x, f);
  gqa.forward(x, q);
  for (bool keys : {true, false}) {
    const Tensor exact = keys ? f.dequantized_keys() : f.dequantized_values();
    const Tensor approx = keys ? q.dequantized_keys() : q.dequantized_values();
    ASSERT_EQ(exact.shape(), (std::vector<int64_t>{2, 2, 13, 32}));
    ASSERT_EQ(approx.shape(), exact.shape());
    for (int64_t row = 0; row < exact.numel() / 32; ++row) {  // one 32-value block per row
      float amax = 0;
      for (int64_t i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(exact.data()[row * 32 + i]));
      for (int64_t i = 0; i < 32; ++i) {
        EXPECT_LE(std::fabs(approx.data()[row * 32 + i] - exact.data()[row * 32 + i]),
                  amax / 127.0f * 0.5f * 1.001f);
      }
    }
    // The float32 cache's copy is its keys/values tensor, cut to size().
    const Tensor& stored = keys ? f.keys() : f.values();
    EXPECT_EQ(0, std::memcmp(stored.data(), exact.data(), sizeof(float) * 13 * 32));
  }
}

TEST(KVCacheInt8, RewindAndReset) {
  manual_seed(6);
  MultiHeadAttention mha(32, 32, 24, 0.0, 2);
  mha.eval();
  const Tensor x = random_tensor({1, 15, 32}, 15);
  KVCache cache = mha.make_cache(1, KVCacheType::kInt8);
  const Tensor first = decode_in_chunks(mha, cache, x, {10, 1, 1, 1, 1, 1});
  cache.rewind(10);
  const Tensor again = decode_in_chunks(mha, cache, slice_tokens(x, 10, 15), {1, 1, 1, 1, 1});
  EXPECT_TENSOR_EQ(again, slice_tokens(first, 10, 15));
  cache.reset();
  EXPECT_EQ(cache.size(), 0);
  EXPECT_TENSOR_EQ(decode_in_chunks(mha, cache, x, {10, 1, 1, 1, 1, 1}), first);
  EXPECT_THROW(cache.rewind(16), ArgumentError);
}

// Either cache type works with a float32 module and its quantize_dynamic
// copy; a cache another module made is refused naming both and its type.
TEST(KVCacheInt8, ModulesAndCacheTypes) {
  manual_seed(4);
  MultiHeadAttention mha(16, 16, 12, 0.0, 2);
  mha.eval();
  const MultiHeadAttention quantized = quantize_dynamic(mha);
  const Tensor x = random_tensor({1, 5, 16}, 16);
  for (KVCacheType type : {KVCacheType::kFloat32, KVCacheType::kInt8}) {
    KVCache a = mha.make_cache(1, type), b = quantized.make_cache(1, type);
    EXPECT_NO_THROW(mha.forward(x, a));
    EXPECT_NO_THROW(quantized.forward(x, b));
    EXPECT_THROW_WITH(quantized.forward(x, a), ArgumentError, to_string(type),
                      "belongs to another module, a MultiHeadAttention",
                      "an int8 MultiHeadAttention (quantize_dynamic)");
  }
  const GroupedQueryAttention gqa(16, 16, 12, 4, 2);
  KVCache from_mha = mha.make_cache(1, KVCacheType::kInt8);
  EXPECT_THROW_WITH(gqa.forward(x, from_mha), ArgumentError,
                    "this int8 KVCache of batch 1, 2 heads of 8",
                    "a MultiHeadAttention, not to this one (a GroupedQueryAttention)");
}

// A NaN or inf in one token's input makes its keys and values non-finite:
// the queries that attend to it give NaN (or inf) with either cache type,
// the others are untouched (the earlier tokens, and with a window the tokens
// past it).
TEST(KVCacheInt8, NonFiniteTokensStayInTheirContribution) {
  for (float poison : {std::nanf(""), INFINITY}) {
    manual_seed(3);
    GroupedQueryAttention gqa(32, 32, 20, 4, 2, RopeConfig{}, /*sliding_window=*/3);
    gqa.eval();
    Tensor x = random_tensor({1, 12, 32}, 17);
    const Tensor clean_x = x;
    x.data()[5 * 32 + 7] = poison;  // token 5
    for (KVCacheType type : {KVCacheType::kFloat32, KVCacheType::kInt8}) {
      KVCache cache = gqa.make_cache(1, type), clean_cache = gqa.make_cache(1, type);
      const Tensor y = decode_in_chunks(gqa, cache, x, prompt_then_steps(4, 8));
      // One forward of the 12 tokens (the prompt path: dequantized rows, flash
      // kernel) poisons the same rows.
      KVCache whole_cache = gqa.make_cache(1, type);
      const Tensor whole = gqa.forward(x, whole_cache);
      for (int64_t i = 0; i < whole.numel(); ++i) {
        EXPECT_EQ(std::isfinite(whole.data()[i]), std::isfinite(y.data()[i]))
            << "element " << i << " type " << to_string(type);
      }
      const Tensor clean = decode_in_chunks(gqa, clean_cache, clean_x, prompt_then_steps(4, 8));
      for (int64_t t = 0; t < 12; ++t) {
        bool finite = true;
        for (int64_t i = 0; i < 32; ++i) finite &= std::isfinite(y.data()[t * 32 + i]);
        const bool sees_poison = t >= 5 && t < 5 + 3;
        EXPECT_EQ(finite, !sees_poison) << "token " << t << " type " << to_string(type);
        if (!sees_poison) {
          EXPECT_EQ(0, std::memcmp(y.data() + t * 32, clean.data() + t * 32, sizeof(float) * 32))
              << "token " << t << " type " << to_string(type);
        }
      }
    }
  }
}

}  // namespace
}  // namespace attn
