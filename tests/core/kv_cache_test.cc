// KV-cache decoding against one full forward over all tokens.
#include "every_target.h"
#include "test_util.h"

namespace attn {
namespace {

using testing::decode_in_chunks;
using testing::random_tensor;
using testing::slice_tokens;

TEST(KVCache, PromptThenSingleTokensEqualsFullForward) {
  for (bool bias : {false, true}) {
    MultiHeadAttention mha(48, 64, 40, 0.0, 4, bias);
    const Tensor x = random_tensor({2, 40, 48}, bias ? 1 : 2);
    const Tensor full = mha.forward(x);
    KVCache cache = mha.make_cache(2);
    std::vector<int64_t> chunks = {33};  // a prompt, then 7 single tokens
    for (int i = 0; i < 7; ++i) chunks.push_back(1);
    EXPECT_TENSOR_NEAR(decode_in_chunks(mha, cache, x, chunks), full, 1e-5);
    EXPECT_EQ(cache.size(), 40);
    cache.reset();
    EXPECT_TENSOR_NEAR(decode_in_chunks(mha, cache, x, {1, 5, 16, 3, 15}), full, 1e-5);
  }
}

TEST(KVCache, GPT2ShapeDecodeOneTokenAfter1023) {
  MultiHeadAttention mha(768, 768, 1024, 0.0, 12);
  const Tensor x = random_tensor({1, 1024, 768}, 9);
  const Tensor full = mha.forward(x);
  KVCache cache = mha.make_cache(1);
  const Tensor out = decode_in_chunks(mha, cache, x, {1023, 1});
  EXPECT_TENSOR_NEAR(slice_tokens(out, 1023, 1024), slice_tokens(full, 1023, 1024), 1e-5);
}

TEST(KVCache, RewindAndReset) {
  MultiHeadAttention mha(8, 8, 16, 0.0, 2);
  const Tensor x = random_tensor({1, 12, 8}, 3);
  Tensor y = x;  // the same first 6 tokens, then different ones
  for (int64_t i = 6 * 8; i < y.numel(); ++i) y.data()[i] = -y.data()[i];
  KVCache cache = mha.make_cache(1);
  decode_in_chunks(mha, cache, x, {12});
  cache.rewind(6);
  EXPECT_EQ(cache.size(), 6);
  const Tensor tail = mha.forward(slice_tokens(y, 6, 12), cache);
  EXPECT_TENSOR_NEAR(tail, slice_tokens(mha.forward(y), 6, 12), 1e-5);
  EXPECT_THROW_WITH(cache.rewind(13), ArgumentError, "13", "12 tokens cached");
  EXPECT_THROW(cache.rewind(-1), ArgumentError);
  cache.reset();
  EXPECT_EQ(cache.size(), 0);
  EXPECT_TENSOR_NEAR(decode_in_chunks(mha, cache, y, {12}), mha.forward(y), 1e-5);
}

TEST(KVCache, Errors) {
  MultiHeadAttention mha(8, 8, 16, 0.0, 2);
  KVCache cache = mha.make_cache(1);
  mha.forward(random_tensor({1, 10, 8}, 1), cache);
  EXPECT_THROW_WITH(mha.forward(random_tensor({1, 7, 8}, 2), cache), ShapeError, "holds 10",
                    "(1, 7, 8)", "17 > context_length = 16");
  EXPECT_EQ(cache.size(), 10);  // unchanged by the failed call
  EXPECT_THROW_WITH(mha.forward(random_tensor({2, 1, 8}, 2), cache), ShapeError, "(2, 1, 8)");
  KVCache other(1, 4, 2, 16);
  EXPECT_THROW_WITH(mha.forward(random_tensor({1, 1, 8}, 2), other), ShapeError, "(1, 4, 16, 2)");
  EXPECT_THROW_WITH(mha.forward(random_tensor({1, 1, 5}, 2), cache), ShapeError, "d_in=8");
  MultiHeadAttention with_dropout(8, 8, 16, 0.1, 2);
  KVCache c2 = with_dropout.make_cache(1);
  EXPECT_THROW_WITH(with_dropout.forward(random_tensor({1, 1, 8}, 2), c2), ArgumentError, "eval()");
  with_dropout.eval();
  EXPECT_NO_THROW(with_dropout.forward(random_tensor({1, 1, 8}, 2), c2));
  EXPECT_THROW_WITH(KVCache(1, 0, 2, 3), ArgumentError, "num_heads");
}

TEST(KVCache, SameBitsForAnyThreadCount) {
  MultiHeadAttention mha(32, 32, 64, 0.0, 4);
  const Tensor x = random_tensor({3, 64, 32}, 5);
  set_num_threads(1);
  KVCache cache = mha.make_cache(3);
  const Tensor one = decode_in_chunks(mha, cache, x, {40, 1, 23});
  set_num_threads(2);
  cache.reset();
  EXPECT_TENSOR_EQ(decode_in_chunks(mha, cache, x, {40, 1, 23}), one);
  set_num_threads(0);
}

// --- every compiled Highway target (every_target.h) --------------------------
// Decoding against the full forward with the cache built on each target:
// prompts and chunks on both sides of the 64-token key blocks, rewinding,
// and thread-count independence. Tolerance 1e-5 on every target.

class KVCacheEveryTarget : public testing::EveryTarget {};
INSTANTIATE_EVERY_TARGET(KVCacheEveryTarget);

TEST_P(KVCacheEveryTarget, PromptThenSingleTokensEqualsFullForward) {
  for (bool bias : {false, true}) {
    MultiHeadAttention mha(48, 64, 40, 0.0, 4, bias);
    const Tensor x = random_tensor({2, 40, 48}, bias ? 1 : 2);
    const Tensor full = mha.forward(x);
    KVCache cache = mha.make_cache(2);
    std::vector<int64_t> chunks = {33};
    for (int i = 0; i < 7; ++i) chunks.push_back(1);
    EXPECT_TENSOR_NEAR(decode_in_chunks(mha, cache, x, chunks), full, 1e-5);
    cache.reset();
    EXPECT_TENSOR_NEAR(decode_in_chunks(mha, cache, x, {1, 5, 16, 3, 15}), full, 1e-5);
  }
}

TEST_P(KVCacheEveryTarget, ChunksAcrossKeyBlocks) {
  MultiHeadAttention mha(40, 60, 200, 0.0, 5, true);  // head_dim 12
  const Tensor x = random_tensor({2, 200, 40}, 17);
  const Tensor full = mha.forward(x);
  KVCache cache = mha.make_cache(2);
  EXPECT_TENSOR_NEAR(decode_in_chunks(mha, cache, x, {63, 1, 1, 64, 65, 1, 5}), full, 1e-5);
  cache.reset();
  EXPECT_TENSOR_NEAR(decode_in_chunks(mha, cache, x, {130, 70}), full, 1e-5);
}

TEST_P(KVCacheEveryTarget, RewindThenDecodeEqualsFullForward) {
  MultiHeadAttention mha(16, 32, 80, 0.0, 2);
  const Tensor x = random_tensor({1, 80, 16}, 3);
  Tensor y = x;  // the same first 66 tokens, then different ones
  for (int64_t i = 66 * 16; i < y.numel(); ++i) y.data()[i] = -y.data()[i];
  KVCache cache = mha.make_cache(1);
  decode_in_chunks(mha, cache, x, {80});
  cache.rewind(66);
  EXPECT_TENSOR_NEAR(mha.forward(slice_tokens(y, 66, 80), cache),
                     slice_tokens(mha.forward(y), 66, 80), 1e-5);
}

TEST_P(KVCacheEveryTarget, SameBitsForAnyThreadCount) {
  MultiHeadAttention mha(32, 32, 100, 0.0, 4);
  const Tensor x = random_tensor({3, 100, 32}, 5);
  set_num_threads(1);
  KVCache cache = mha.make_cache(3);
  const Tensor one = decode_in_chunks(mha, cache, x, {70, 1, 29});
  set_num_threads(3);
  cache.reset();
  EXPECT_TENSOR_EQ(decode_in_chunks(mha, cache, x, {70, 1, 29}), one);
  set_num_threads(0);
}

}  // namespace
}  // namespace attn
