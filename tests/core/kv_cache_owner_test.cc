// A KVCache belongs to the module that made it (attn/kv_cache.h): another
// module refuses it with an ArgumentError naming both kinds, also when the
// shapes agree (its keys and values mean nothing there), and leaves it
// unchanged. Copies of a module accept its caches; load_state_dict and
// quantize_dynamic make a module with a new identity; a cache built with the
// public constructor belongs to the first module that accepts it.
#include "test_util.h"

namespace attn {
namespace {

using testing::random_tensor;
using testing::same_bits;

// forward(x, cache) of `module` refuses `cache` naming `fragments`, and the
// cache keeps its tokens, keys and values.
template <typename M>
void expect_refused(const M& module, KVCache& cache, const Tensor& x,
                    std::initializer_list<const char*> fragments) {
  const int64_t size = cache.size();
  const Tensor keys = cache.keys(), values = cache.values();
  try {
    module.forward(x, cache);
    ADD_FAILURE() << "the cache was accepted";
  } catch (const ArgumentError& e) {
    for (const char* fragment : fragments) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos)
          << "message \"" << e.what() << "\" lacks \"" << fragment << "\"";
    }
  }
  EXPECT_EQ(cache.size(), size);
  EXPECT_TRUE(same_bits(cache.keys(), keys));
  EXPECT_TRUE(same_bits(cache.values(), values));
}

TEST(KVCacheOwner, AnotherModuleOfTheSameShapeRefusesIt) {
  const MultiHeadAttention a(8, 8, 16, 0.0, 2), b(8, 8, 16, 0.0, 2);
  const Tensor x = random_tensor({1, 3, 8}, 1);
  KVCache cache = a.make_cache(1);
  a.forward(x, cache);
  expect_refused(b, cache, x,
                 {"MultiHeadAttention: this float32 KVCache of batch 1, 2 heads of 4, "
                  "context_length 16 belongs to another module, a MultiHeadAttention, not to "
                  "this one (a MultiHeadAttention)",
                  "make_cache()"});
  EXPECT_NO_THROW(a.forward(x, cache));  // its own module goes on
  EXPECT_EQ(cache.size(), 6);
}

// The two kinds: a GroupedQueryAttention with num_kv_groups key/value heads
// and a MultiHeadAttention with as many heads of the same head_dim make
// caches of one shape (was: accepted, the GroupedQueryAttention reading
// unrotated keys).
TEST(KVCacheOwner, KindsAreNamed) {
  const GroupedQueryAttention gqa(8, 8, 16, 4, 2);
  const MultiHeadAttention mha(8, 4, 16, 0.0, 2);
  const Tensor x = random_tensor({1, 3, 8}, 2);
  KVCache from_mha = mha.make_cache(1), from_gqa = gqa.make_cache(1);
  ASSERT_EQ(from_mha.keys().shape(), from_gqa.keys().shape());
  expect_refused(gqa, from_mha, x,
                 {"GroupedQueryAttention: this float32 KVCache",
                  "belongs to another module, a "
                  "MultiHeadAttention, not to this one (a GroupedQueryAttention)"});
  expect_refused(
      mha, from_gqa, x,
      {"MultiHeadAttention:", "a GroupedQueryAttention, not to this one (a MultiHeadAttention)"});
  // A cache of another module and another shape: the owner is checked first
  // (an int8 cache of an 8-head module names its type and shape).
  const MultiHeadAttention eight_heads(8, 8, 16, 0.0, 8);
  KVCache other = eight_heads.make_cache(1, KVCacheType::kInt8);
  EXPECT_THROW_WITH(gqa.forward(x, other), ArgumentError,
                    "GroupedQueryAttention: this int8 KVCache of batch 1, 8 heads of 1, "
                    "context_length 16 belongs to another module, a MultiHeadAttention, not to "
                    "this one (a GroupedQueryAttention)");
  // A cache that belongs to no module yet and has another shape: ShapeError.
  KVCache unowned(1, 8, 1, 16, KVCacheType::kInt8);
  EXPECT_THROW_WITH(gqa.forward(x, unowned), ShapeError,
                    "GroupedQueryAttention: this int8 KVCache of batch 1, 8 heads of 1, "
                    "context_length 16, keys and values (1, 8, 16, 1), does not fit this module "
                    "(2 key/value heads of 2, context_length 16) and input x of shape (1, 3, 8)");
}

// A copy computes the same function: it accepts the original's caches and
// the original accepts the copy's; so does the module it was moved to.
TEST(KVCacheOwner, CopiesAndMovedToModulesAcceptIt) {
  MultiHeadAttention original(8, 8, 16, 0.0, 2);
  original.eval();
  const Tensor x = random_tensor({1, 4, 8}, 3);
  KVCache cache = original.make_cache(1);
  const MultiHeadAttention copy = original;
  EXPECT_NO_THROW(copy.forward(x, cache));
  KVCache copy_cache = copy.make_cache(1);
  EXPECT_NO_THROW(original.forward(x, copy_cache));
  MultiHeadAttention assigned(8, 8, 16, 0.0, 2);
  assigned = original;
  EXPECT_NO_THROW(assigned.forward(x, cache));
  const MultiHeadAttention moved_to = std::move(assigned);
  EXPECT_NO_THROW(moved_to.forward(x, cache));
  EXPECT_EQ(cache.size(), 12);
  const GroupedQueryAttention gqa(8, 8, 16, 4, 2);
  KVCache gqa_cache = gqa.make_cache(1);
  const GroupedQueryAttention gqa_copy = gqa;
  EXPECT_NO_THROW(gqa_copy.forward(x, gqa_cache));
}

// load_state_dict gives a module a new identity (also when it loads the
// values it has): caches made before hold keys of other weights. Its copies
// made before keep the old identity.
TEST(KVCacheOwner, LoadStateDictRefusesEarlierCaches) {
  MultiHeadAttention mha(8, 8, 16, 0.0, 2);
  GroupedQueryAttention gqa(8, 8, 16, 4, 2);
  const MultiHeadAttention mha_copy = mha;
  const Tensor x = random_tensor({1, 2, 8}, 4);
  KVCache mha_cache = mha.make_cache(1), gqa_cache = gqa.make_cache(1);
  mha.load_state_dict(mha.state_dict());
  gqa.load_state_dict(gqa.state_dict());
  expect_refused(mha, mha_cache, x, {"another module, a MultiHeadAttention"});
  expect_refused(gqa, gqa_cache, x, {"another module, a GroupedQueryAttention"});
  EXPECT_NO_THROW(mha_copy.forward(x, mha_cache));
  KVCache fresh = mha.make_cache(1);
  EXPECT_NO_THROW(mha.forward(x, fresh));
  expect_refused(mha_copy, fresh, x, {"MultiHeadAttention"});
  // A failed load keeps the identity.
  EXPECT_THROW(mha.load_state_dict(StateDict{}), ArgumentError);
  EXPECT_NO_THROW(mha.forward(x, fresh));
}

// quantize_dynamic's copy computes its keys in int8: it refuses the float
// module's caches and the float module refuses its caches, both named.
TEST(KVCacheOwner, QuantizedCopiesHaveTheirOwnCaches) {
  MultiHeadAttention mha(8, 8, 16, 0.0, 2);
  mha.eval();
  const GroupedQueryAttention gqa(8, 8, 16, 4, 2);
  const MultiHeadAttention q_mha = quantize_dynamic(mha);
  const GroupedQueryAttention q_gqa = quantize_dynamic(gqa);
  const Tensor x = random_tensor({1, 2, 8}, 5);
  KVCache float_cache = mha.make_cache(1), int8_cache = q_mha.make_cache(1);
  expect_refused(q_mha, float_cache, x,
                 {"another module, a MultiHeadAttention, not to this one (an int8 "
                  "MultiHeadAttention (quantize_dynamic))"});
  expect_refused(mha, int8_cache, x, {"another module, an int8 MultiHeadAttention"});
  KVCache gqa_float_cache = gqa.make_cache(1);
  expect_refused(q_gqa, gqa_float_cache, x, {"an int8 GroupedQueryAttention (quantize_dynamic)"});
  EXPECT_NO_THROW(q_mha.forward(x, int8_cache));
  // A copy of the quantized module accepts its caches.
  const MultiHeadAttention q_copy = q_mha;
  EXPECT_NO_THROW(q_copy.forward(x, int8_cache));
}

// KVCache(batch, heads, head_dim, context) belongs to no module until one
// accepts it in forward(x, cache); then to that module (and its copies),
// through reset() and copies of the cache.
TEST(KVCacheOwner, AConstructedCacheBelongsToItsFirstModule) {
  const MultiHeadAttention a(8, 8, 16, 0.0, 2), b(8, 8, 16, 0.0, 2);
  const Tensor x = random_tensor({1, 2, 8}, 6);
  KVCache cache(1, 2, 4, 16);
  KVCache wrong_shape(1, 2, 4, 8);
  EXPECT_THROW(b.forward(x, wrong_shape), ShapeError);  // a refused cache stays unowned
  EXPECT_NO_THROW(a.forward(x, cache));
  KVCache copy = cache;
  cache.reset();
  expect_refused(b, cache, x, {"another module, a MultiHeadAttention"});
  expect_refused(b, copy, x, {"another module"});
  EXPECT_NO_THROW(a.forward(x, cache));
  KVCache unused(1, 2, 4, 16);
  EXPECT_NO_THROW(b.forward(x, unused));
  const GroupedQueryAttention gqa(8, 8, 16, 4, 2);
  KVCache for_gqa(1, 2, 2, 16);
  EXPECT_NO_THROW(gqa.forward(x, for_gqa));
  expect_refused(MultiHeadAttention(8, 4, 16, 0.0, 2), for_gqa, x,
                 {"another module, a GroupedQueryAttention"});
}

}  // namespace
}  // namespace attn
