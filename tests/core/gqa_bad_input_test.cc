// Bad and borderline arguments to GroupedQueryAttention's entry points: the
// "GroupedQueryAttention" rows of tests/BAD_INPUTS.md (suite BadInput, tests
// named Gqa*). The conventions are bad_input_test.cc's: each case gives the
// documented exception, whose message names the argument (or the module and
// the shapes), or a documented valid result, and leaves the module (its
// state_dict and outputs), the cache and the global random stream as they
// were: a constructor that throws has drawn no random numbers.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <typeinfo>
#include <vector>

#include "core/input_checks.h"
#include "test_util.h"

namespace attn {
namespace {

using testing::random_tensor;
using testing::same_bits;

constexpr int64_t k2e20 = int64_t{1} << 20;
constexpr int64_t k2e40 = int64_t{1} << 40;
constexpr int64_t k2e62 = int64_t{1} << 62;
constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kInt64Min = std::numeric_limits<int64_t>::min();
const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();
const float kNonFinite[] = {std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity()};

// --- helpers (as in bad_input_test.cc) -------------------------------------------

bool same_state(const StateDict& a, const StateDict& b) {
  if (a.size() != b.size()) return false;
  for (const auto& item : a) {
    auto it = b.find(item.first);
    if (it == b.end() || !same_bits(item.second, it->second)) return false;
  }
  return true;
}

// The global stream is where it was: the next rand({4}) is the one that
// follows the seed.
constexpr uint64_t kSeed = 4321;
void expect_stream_at_seed(const char* what) {
  const Tensor next = rand({4});
  manual_seed(kSeed);
  EXPECT_TRUE(same_bits(next, rand({4}))) << "random numbers were drawn by " << what;
}

// Expects `statement` to throw E naming every fragment and to draw no random
// numbers.
#define EXPECT_THROW_NO_DRAWS(statement, E, ...)  \
  do {                                            \
    manual_seed(kSeed);                           \
    EXPECT_THROW_WITH(statement, E, __VA_ARGS__); \
    expect_stream_at_seed(#statement);            \
  } while (0)

// Expects fn() to throw E (a subclass of attn::Error or E itself), never
// another exception type (std::bad_alloc, std::length_error), and returns
// its message ("" when nothing or something else was thrown).
template <typename E>
std::string expect_attn_error(const std::function<void()>& fn, const char* what) {
  try {
    fn();
    ADD_FAILURE() << what << ": no exception";
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << what << ": " << typeid(e).name() << " (" << e.what() << ") instead of "
                  << typeid(E).name();
  }
  return "";
}

bool contains(const std::string& s, const char* fragment) {
  return s.find(fragment) != std::string::npos;
}

// --- GroupedQueryAttention helpers -----------------------------------------------

using Gqa = GroupedQueryAttention;

RopeConfig no_rope() {
  RopeConfig rope;
  rope.enabled = false;
  return rope;
}

// Llama 3 frequency scaling with a short original context, so that every
// band of the scaling is used.
RopeConfig llama3_rope() {
  RopeConfig rope;
  rope.theta_base = 500000.0;
  rope.scaling_factor = 32.0;
  rope.original_context_length = 16;
  return rope;
}

// The default RoPE with one field changed.
RopeConfig rope_with(const std::function<void(RopeConfig&)>& change) {
  RopeConfig rope;
  change(rope);
  return rope;
}

Tensor with_bad_token(const Tensor& x, int64_t p, float value) {
  Tensor y = x;
  for (int64_t b = 0; b < x.size(0); ++b) y.at({b, p, 3}) = value;
  return y;
}

// Over tokens [lo, hi) of every (batch, ...) slab of a (B, T, d) output or
// (B, H, T, T) weights: how many values are not finite, and how many differ
// bitwise from `clean`.
struct TokenRange {
  int64_t nonfinite = 0, changed = 0;
};
TokenRange scan_tokens(const Tensor& got, const Tensor& clean, int64_t lo, int64_t hi) {
  TokenRange r;
  const int64_t T = got.dim() == 4 ? got.size(2) : got.size(1);
  const int64_t width = got.size(-1);
  const int64_t slabs = got.numel() / (T * width);
  for (int64_t s = 0; s < slabs; ++s) {
    for (int64_t t = lo; t < hi; ++t) {
      for (int64_t c = 0; c < width; ++c) {
        const int64_t i = (s * T + t) * width + c;
        if (!std::isfinite(got.data()[i])) ++r.nonfinite;
        if (std::memcmp(&got.data()[i], &clean.data()[i], sizeof(float)) != 0) ++r.changed;
      }
    }
  }
  return r;
}

// Every token in [lo, hi) of every slab has at least one value that is not
// finite.
bool every_token_nonfinite(const Tensor& got, int64_t lo, int64_t hi) {
  const int64_t T = got.dim() == 4 ? got.size(2) : got.size(1);
  const int64_t width = got.size(-1);
  const int64_t slabs = got.numel() / (T * width);
  for (int64_t s = 0; s < slabs; ++s) {
    for (int64_t t = lo; t < hi; ++t) {
      bool bad = false;
      for (int64_t c = 0; c < width; ++c)
        bad = bad || !std::isfinite(got.data()[(s * T + t) * width + c]);
      if (!bad) return false;
    }
  }
  return true;
}

// --- constructors ----------------------------------------------------------------

TEST(BadInput, GqaConstructorBadSizesDrawNothing) {
  EXPECT_THROW_NO_DRAWS(Gqa(0, 8, 6, 2, 1), ArgumentError, "GroupedQueryAttention",
                        "d_in must be positive, got 0");
  EXPECT_THROW_NO_DRAWS(Gqa(-3, 8, 6, 2, 1), ArgumentError, "d_in must be positive, got -3");
  EXPECT_THROW_NO_DRAWS(Gqa(4, 0, 6, 2, 1), ArgumentError, "d_out must be positive, got 0");
  EXPECT_THROW_NO_DRAWS(Gqa(4, -8, 6, 2, 1), ArgumentError, "d_out must be positive, got -8");
  EXPECT_THROW_NO_DRAWS(Gqa(4, 8, 0, 2, 1), ArgumentError, "context_length must be positive");
  EXPECT_THROW_NO_DRAWS(Gqa(4, 8, -6, 2, 1), ArgumentError, "context_length", "-6");
  EXPECT_THROW_NO_DRAWS(Gqa(4, 8, kInt64Min, 2, 1), ArgumentError, "context_length");
  EXPECT_THROW_NO_DRAWS(Gqa(4, 8, 6, 0, 1), ArgumentError, "num_heads must be positive, got 0");
  EXPECT_THROW_NO_DRAWS(Gqa(4, 8, 6, -2, 1), ArgumentError, "num_heads must be positive, got -2");
  EXPECT_THROW_NO_DRAWS(Gqa(4, 8, 6, 2, 0), ArgumentError, "num_kv_groups must be positive, got 0");
  EXPECT_THROW_NO_DRAWS(Gqa(4, 8, 6, 2, -1), ArgumentError, "num_kv_groups", "-1");
  // d_out not divisible by num_heads (also num_heads > d_out, and 2^40 heads).
  EXPECT_THROW_NO_DRAWS(Gqa(4, 10, 6, 4, 1), ArgumentError, "d_out (10)", "num_heads (4)");
  EXPECT_THROW_NO_DRAWS(Gqa(4, 8, 6, 16, 1), ArgumentError, "d_out (8)", "num_heads (16)");
  EXPECT_THROW_NO_DRAWS(Gqa(4, 8, 6, k2e40, 1), ArgumentError, "d_out (8)",
                        "num_heads (1099511627776)");
  // num_heads not divisible by num_kv_groups, also num_kv_groups > num_heads.
  EXPECT_THROW_NO_DRAWS(Gqa(4, 24, 6, 4, 3), ArgumentError, "num_heads (4)", "num_kv_groups (3)");
  EXPECT_THROW_NO_DRAWS(Gqa(4, 8, 6, 4, 8), ArgumentError, "num_heads (4)", "num_kv_groups (8)");
  EXPECT_THROW_NO_DRAWS(Gqa(4, 8, 6, 2, k2e40), ArgumentError, "num_heads (2)",
                        "num_kv_groups (1099511627776)");
  // A negative sliding window.
  EXPECT_THROW_NO_DRAWS(Gqa(4, 8, 6, 2, 1, RopeConfig(), -1), ArgumentError, "sliding_window",
                        "got -1");
  EXPECT_THROW_NO_DRAWS(Gqa(4, 8, 6, 2, 1, no_rope(), kInt64Min, true), ArgumentError,
                        "sliding_window", "-9223372036854775808");
  // RoPE rotates pairs: an odd head_dim (3, 1) is refused with RoPE enabled...
  EXPECT_THROW_NO_DRAWS(Gqa(4, 6, 6, 2, 1), ArgumentError, "head_dim = 3", "even");
  EXPECT_THROW_NO_DRAWS(Gqa(4, 4, 6, 4, 2, llama3_rope()), ArgumentError, "head_dim = 1", "even");
  // ... and accepted without it.
  manual_seed(kSeed);
  const Gqa odd(4, 6, 6, 2, 1, no_rope());
  EXPECT_EQ(odd.head_dim(), 3);
  EXPECT_TRUE(odd.rope_inv_freq().empty());
  const Tensor out = odd.forward(random_tensor({2, 5, 4}, 1));
  EXPECT_EQ(out.shape(), (std::vector<int64_t>{2, 5, 6}));
  for (float v : out.to_vector()) EXPECT_TRUE(std::isfinite(v));
  const Gqa one(4, 4, 6, 4, 2, no_rope());
  EXPECT_EQ(one.head_dim(), 1);
}

TEST(BadInput, GqaConstructorBadRopeDrawNothing) {
  for (double theta : {0.0, -0.0, -1.0, -kInf, kInf, kNaN}) {
    SCOPED_TRACE(::testing::Message() << "theta_base " << theta);
    EXPECT_THROW_NO_DRAWS(
        Gqa(4, 8, 6, 2, 1, rope_with([theta](RopeConfig& r) { r.theta_base = theta; })),
        ArgumentError, "GroupedQueryAttention", "rope.theta_base", "finite and positive");
  }
  for (double factor : {-1.0, -1e-300, kNaN, kInf, -kInf}) {
    SCOPED_TRACE(::testing::Message() << "scaling_factor " << factor);
    EXPECT_THROW_NO_DRAWS(
        Gqa(4, 8, 6, 2, 1, rope_with([factor](RopeConfig& r) { r.scaling_factor = factor; })),
        ArgumentError, "rope.scaling_factor", "finite and positive");
  }
  // With scaling on: low_freq_factor <= 0 or not finite.
  for (double low : {0.0, -1.0, kNaN, kInf}) {
    SCOPED_TRACE(::testing::Message() << "low_freq_factor " << low);
    EXPECT_THROW_NO_DRAWS(Gqa(4, 8, 6, 2, 1, rope_with([low](RopeConfig& r) {
                                r.scaling_factor = 8.0;
                                r.low_freq_factor = low;
                              })),
                          ArgumentError, "rope.low_freq_factor", "finite and positive");
  }
  // high_freq_factor <= low_freq_factor (= 2), NaN or inf.
  for (double high : {2.0, 1.0, 0.0, -4.0, kNaN, kInf}) {
    SCOPED_TRACE(::testing::Message() << "high_freq_factor " << high);
    EXPECT_THROW_NO_DRAWS(Gqa(4, 8, 6, 2, 1, rope_with([high](RopeConfig& r) {
                                r.scaling_factor = 8.0;
                                r.low_freq_factor = 2.0;
                                r.high_freq_factor = high;
                              })),
                          ArgumentError, "rope.high_freq_factor",
                          "greater than low_freq_factor = 2");
  }
  for (int64_t context : {int64_t{0}, int64_t{-1}, kInt64Min}) {
    SCOPED_TRACE(::testing::Message() << "original_context_length " << context);
    EXPECT_THROW_NO_DRAWS(Gqa(4, 8, 6, 2, 1, rope_with([context](RopeConfig& r) {
                                r.scaling_factor = 8.0;
                                r.original_context_length = context;
                              })),
                          ArgumentError, "rope.original_context_length", "positive");
  }
}

// RoPE fields that are not used are not checked: the frequency-scaling fields
// without scaling (scaling_factor 0, also -0.0), every field with RoPE off.
TEST(BadInput, GqaUnusedRopeFieldsAreNotChecked) {
  RopeConfig unscaled;
  unscaled.scaling_factor = -0.0;
  unscaled.low_freq_factor = kNaN;
  unscaled.high_freq_factor = -kInf;
  unscaled.original_context_length = -5;
  manual_seed(kSeed);
  const Gqa a(4, 8, 6, 2, 1, unscaled);
  manual_seed(kSeed);
  const Gqa plain(4, 8, 6, 2, 1);
  EXPECT_EQ(a.rope_inv_freq(), plain.rope_inv_freq());
  const Tensor x = random_tensor({1, 6, 4}, 2);
  EXPECT_TRUE(same_bits(a.forward(x), plain.forward(x)));

  RopeConfig off;
  off.enabled = false;
  off.theta_base = kNaN;
  off.scaling_factor = -1.0;
  off.original_context_length = 0;
  const Gqa b(4, 8, 6, 2, 1, off);
  EXPECT_TRUE(b.rope_inv_freq().empty());
  for (float v : b.forward(x).to_vector()) EXPECT_TRUE(std::isfinite(v));
}

// d_out, d_in near INT64_MAX: the parameter count overflows. An attn error
// drawing nothing, never std::bad_alloc (or a process killed for memory).
TEST(BadInput, GqaConstructorOverflowingSizesDrawNothing) {
  EXPECT_THROW_NO_DRAWS(Gqa(k2e40, k2e40, 6, 2, 1), Error, "GroupedQueryAttention",
                        "d_in = 1099511627776", "memory");
  EXPECT_THROW_NO_DRAWS(Gqa(kInt64Max, 2, 6, 1, 1), Error, "d_in = 9223372036854775807");
  EXPECT_THROW_NO_DRAWS(Gqa(2, int64_t{1} << 61, 6, 1, 1, no_rope()), Error,
                        "d_out = 2305843009213693952");
  EXPECT_THROW_NO_DRAWS(Gqa(1, int64_t{1} << 61, 6, 2, 2), Error, "d_out = 2305843009213693952");
}

// d_out >= 2^62 with num_kv_groups = num_heads: the fused projection width
// d_out + 2 * kv_dim overflows int64; checked without signed overflow (UBSan
// reported 2 * kv_dim before the fix), an attn error, nothing drawn.
TEST(BadInput, GqaConstructorDOutFrom2To62DrawsNothing) {
  EXPECT_THROW_NO_DRAWS(Gqa(1, k2e62, 6, 1, 1), Error, "d_out = 4611686018427387904");
  EXPECT_THROW_NO_DRAWS(Gqa(1, k2e62, 6, 2, 2, no_rope()), Error, "d_out = 4611686018427387904");
  EXPECT_THROW_NO_DRAWS(Gqa(1, kInt64Max, 6, 1, 1, no_rope()), Error, "d_out");
}

// Countable but larger than any memory: an attn error drawing nothing.
TEST(BadInput, GqaHugeButCountableSizesAreAttnErrors) {
  EXPECT_THROW_NO_DRAWS(Gqa(k2e20, k2e20, 8, 2, 1), Error, "GroupedQueryAttention", "memory");
  EXPECT_THROW_NO_DRAWS(Gqa(1, k2e20 * 64, 8, 1, 1), Error, "d_out = 67108864", "memory");
  // make_cache of a cache beyond memory (2^40 tokens of context): the
  // KVCache's error, not std::bad_alloc.
  const Gqa m(4, 8, k2e40, 2, 1);
  expect_attn_error<Error>([&] { m.make_cache(1); }, "make_cache(1), context 2^40");
  expect_attn_error<Error>([&] { m.make_cache(k2e40); }, "make_cache(2^40)");
  EXPECT_THROW_WITH(m.make_cache(0), ArgumentError, "batch");
  EXPECT_THROW_WITH(m.make_cache(-1), ArgumentError, "batch");
}

// The context length sizes nothing: construction is immediate at any
// context_length (no mask, no cos/sin table), forward works and gives the
// same bits as the same weights with a small context, with and without a
// window and frequency scaling.
TEST(BadInput, GqaHugeContextLengthIsCheap) {
  using Clock = std::chrono::steady_clock;
  const Tensor x = random_tensor({2, 3, 8}, 1);
  for (int64_t ctx : {int64_t{100000}, int64_t{1} << 31, k2e40, kInt64Max}) {
    for (int64_t window : {int64_t{0}, int64_t{2}}) {
      SCOPED_TRACE(::testing::Message() << "context_length " << ctx << " window " << window);
      manual_seed(kSeed);
      const Gqa small(8, 16, 3, 4, 2, llama3_rope(), window);
      manual_seed(kSeed);
      const auto start = Clock::now();
      try {
        const Gqa m(8, 16, ctx, 4, 2, llama3_rope(), window);
        const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
        EXPECT_LT(seconds, 1.0) << "the constructor took " << seconds << " s";
        EXPECT_TRUE(same_bits(m.forward(x), small.forward(x)));
        if (ctx == 100000) {
          KVCache cache = m.make_cache(2);
          EXPECT_TENSOR_NEAR(m.forward(x, cache), small.forward(x), 1e-5);
        }
      } catch (const std::exception& e) {
        ADD_FAILURE() << typeid(e).name() << ": " << e.what();
      }
    }
  }
}

// --- forward ---------------------------------------------------------------------

TEST(BadInput, GqaForwardBadShapesDrawNothing) {
  const Gqa m(3, 4, 6, 2, 1, RopeConfig(), 3);
  const Tensor sentinel = random_tensor({2, 2}, 3);
  Tensor weights = sentinel;
  EXPECT_THROW_NO_DRAWS(m.forward(Tensor({6, 3})), ShapeError, "GroupedQueryAttention", "(6, 3)",
                        "(batch, num_tokens, d_in=3)");
  EXPECT_THROW_NO_DRAWS(m.forward(Tensor({1, 2, 6, 3}), &weights), ShapeError, "(1, 2, 6, 3)");
  EXPECT_THROW_NO_DRAWS(m.forward(Tensor(std::vector<int64_t>{}, {1.0f})), ShapeError, "()");
  EXPECT_THROW_NO_DRAWS(m.forward(Tensor({2, 6, 4}), &weights), ShapeError, "(2, 6, 4)", "d_in=3");
  EXPECT_THROW_NO_DRAWS(m.forward(Tensor({2, 6, 0})), ShapeError, "(2, 6, 0)");
  EXPECT_THROW_NO_DRAWS(m.forward(Tensor({2, 7, 3}), &weights), ShapeError, "(2, 7, 3)",
                        "num_tokens = 7", "context_length = 6");
  EXPECT_THROW_NO_DRAWS(m(Tensor({0, 7, 3})), ShapeError, "num_tokens = 7");
  EXPECT_TRUE(same_bits(weights, sentinel)) << "weights written by a failed call";
}

// Batch 0 and num_tokens 0 are valid, as for MultiHeadAttention: empty
// outputs and weights (B, num_heads, T, T), nothing drawn; forward has no
// dropout, so training mode is the same.
TEST(BadInput, GqaForwardEmptyBatchAndNoTokens) {
  Gqa m(3, 8, 6, 4, 2, llama3_rope(), 2);
  for (bool training : {true, false}) {
    m.train(training);
    for (const std::vector<int64_t>& shape :
         {std::vector<int64_t>{0, 4, 3}, std::vector<int64_t>{2, 0, 3},
          std::vector<int64_t>{0, 0, 3}}) {
      SCOPED_TRACE(::testing::Message() << shape_to_string(shape) << " training " << training);
      manual_seed(kSeed);
      Tensor weights;
      const Tensor out = m.forward(Tensor(shape), &weights);
      EXPECT_EQ(out.shape(), (std::vector<int64_t>{shape[0], shape[1], 8}));
      EXPECT_EQ(weights.shape(), (std::vector<int64_t>{shape[0], 4, shape[1], shape[1]}));
      EXPECT_EQ(m.forward(Tensor(shape)).shape(), out.shape());
      expect_stream_at_seed("GroupedQueryAttention::forward of an empty input");
    }
  }
}

// The weights output may be the input itself: x is read before the weights
// are written.
TEST(BadInput, GqaWeightsOutputMayBeTheInput) {
  const Gqa m(5, 8, 6, 4, 2, llama3_rope(), 3, true);
  const Tensor x0 = random_tensor({2, 5, 5}, 11);
  Tensor expected_weights;
  const Tensor expected = m.forward(x0, &expected_weights);
  Tensor x = x0;
  Tensor y;
  EXPECT_NO_THROW(y = m.forward(x, &x));
  EXPECT_TRUE(same_bits(y, expected));
  EXPECT_TRUE(same_bits(x, expected_weights));
  EXPECT_EQ(x.shape(), (std::vector<int64_t>{2, 4, 5, 5}));
}

// The (batch * num_tokens, d_out + 2 * num_kv_groups * head_dim) projections
// beyond memory, from an input that fits (d_in = 1): a ShapeError naming x's
// shape and the projections' width, drawing nothing (not std::bad_alloc).
TEST(BadInput, GqaProjectionsBeyondMemory) {
  const uint64_t memory = detail::physical_memory_bytes();
  if (memory == 0) GTEST_SKIP() << "physical memory unknown";
  constexpr int64_t kDOut = 2048, kWidth = 2048 + 2 * 2 * 256;  // 8 heads of 256, 2 groups
  const auto tokens = static_cast<int64_t>(memory / (kWidth * sizeof(float)) + 1);
  const Gqa m(1, kDOut, tokens, 8, 2);
  const Tensor x({1, tokens, 1});
  const std::string shape = shape_to_string(x.shape());
  Tensor weights;
  EXPECT_THROW_NO_DRAWS(m.forward(x), ShapeError, "GroupedQueryAttention", shape.c_str(),
                        "(batch * num_tokens, 3072)", "memory");
  EXPECT_THROW_NO_DRAWS(m.forward(x, &weights), ShapeError, shape.c_str(), "3072");
  EXPECT_EQ(weights.numel(), 0);
}

// Requested weights (batch, num_heads, T, T) beyond memory from an input
// that fits: the Tensor's ShapeError naming that shape (not std::bad_alloc),
// nothing drawn, the weights output untouched.
TEST(BadInput, GqaWeightsBeyondMemory) {
  constexpr int64_t kTokens = int64_t{1} << 21;
  const Gqa m(1, 2, kTokens, 2, 1, no_rope());
  const Tensor x({1, kTokens, 1});
  const Tensor sentinel = random_tensor({3}, 1);
  Tensor weights = sentinel;
  EXPECT_THROW_NO_DRAWS(m.forward(x, &weights), ShapeError, "(1, 2, 2097152, 2097152)");
  EXPECT_TRUE(same_bits(weights, sentinel));
}

// --- forward(x, cache) -----------------------------------------------------------

TEST(BadInput, GqaKVCacheForwardErrorsLeaveTheCacheUnchanged) {
  Gqa m(8, 8, 16, 4, 2, llama3_rope(), 5);
  KVCache cache = m.make_cache(2);
  m.forward(random_tensor({2, 10, 8}, 1), cache);
  const Tensor keys = cache.keys(), values = cache.values();
  auto expect_unchanged = [&](const char* what) {
    EXPECT_EQ(cache.size(), 10) << what;
    EXPECT_TRUE(same_bits(cache.keys(), keys)) << what;
    EXPECT_TRUE(same_bits(cache.values(), values)) << what;
  };
  EXPECT_THROW_NO_DRAWS(m.forward(random_tensor({2, 7, 8}, 2), cache), ShapeError,
                        "GroupedQueryAttention", "holds 10", "(2, 7, 8)",
                        "17 > context_length = 16");
  expect_unchanged("past context_length");
  EXPECT_THROW_NO_DRAWS(m.forward(random_tensor({1, 1, 8}, 2), cache), ShapeError, "(2, 2, 16, 2)",
                        "(1, 1, 8)");
  expect_unchanged("batch differs");
  EXPECT_THROW_NO_DRAWS(m.forward(random_tensor({2, 1, 5}, 2), cache), ShapeError, "(2, 1, 5)",
                        "d_in=8");
  expect_unchanged("wrong d_in");
  EXPECT_THROW_NO_DRAWS(m.forward(random_tensor({2, 8}, 2), cache), ShapeError, "(2, 8)");
  expect_unchanged("wrong rank");
  EXPECT_THROW_NO_DRAWS(m.forward(Tensor({0, 1, 8}), cache), ShapeError, "(0, 1, 8)");
  expect_unchanged("batch 0");
  // Caches of another shape: a MultiHeadAttention's (num_heads key/value
  // heads), another GroupedQueryAttention's (other groups), other head_dim,
  // capacity, batch.
  // Those another module made belong to it: refused as such first
  // (ArgumentError naming both and the cache's type and shape).
  const MultiHeadAttention mha(8, 8, 16, 0.0, 4);
  for (const auto& other :
       {mha.make_cache(2), Gqa(8, 8, 16, 4, 1).make_cache(2), Gqa(8, 8, 16, 4, 4).make_cache(2),
        mha.make_cache(2, KVCacheType::kInt8)}) {
    KVCache c = other;
    EXPECT_THROW_NO_DRAWS(m.forward(random_tensor({2, 1, 8}, 2), c), ArgumentError,
                          "KVCache of batch 2", "belongs to another module",
                          "not to this one (a GroupedQueryAttention)");
    EXPECT_EQ(c.size(), 0);
  }
  for (const auto& other :
       {KVCache(2, 4, 2, 16), KVCache(2, 1, 2, 16), KVCache(2, 2, 4, 16), KVCache(2, 2, 2, 32),
        KVCache(3, 2, 2, 16), KVCache(2, 2, 4, 16, KVCacheType::kInt8)}) {
    KVCache c = other;
    const std::string cache_shape =
        shape_to_string({c.batch(), c.num_heads(), c.capacity(), c.head_dim()});
    SCOPED_TRACE(cache_shape);
    EXPECT_THROW_NO_DRAWS(m.forward(random_tensor({2, 1, 8}, 2), c), ShapeError,
                          cache_shape.c_str(), "(2, 1, 8)", "2 key/value heads of 2",
                          "context_length 16");
    EXPECT_EQ(c.size(), 0);
  }
  // Past the context in one call, into an empty cache.
  KVCache empty = m.make_cache(2);
  EXPECT_THROW_NO_DRAWS(m.forward(random_tensor({2, 17, 8}, 2), empty), ShapeError, "holds 0",
                        "17 > context_length = 16");
  EXPECT_EQ(empty.size(), 0);
  // No new tokens: a valid, empty result; the cache keeps its tokens. The
  // module has no dropout: training mode decodes too, drawing nothing.
  EXPECT_EQ(m.forward(Tensor({2, 0, 8}), cache).shape(), (std::vector<int64_t>{2, 0, 8}));
  expect_unchanged("no new tokens");
  m.train();
  manual_seed(kSeed);
  EXPECT_EQ(m.forward(random_tensor({2, 6, 8}, 3), cache).shape(), (std::vector<int64_t>{2, 6, 8}));
  expect_stream_at_seed("forward(x, cache) in training mode");
  EXPECT_EQ(cache.size(), 16);
  const Tensor full_keys = cache.keys();
  EXPECT_THROW_WITH(m.forward(random_tensor({2, 1, 8}, 4), cache), ShapeError,
                    "17 > context_length = 16");
  EXPECT_EQ(cache.size(), 16);
  EXPECT_TRUE(same_bits(cache.keys(), full_keys));
}

// --- moved-from modules and caches -----------------------------------------------

TEST(BadInput, GqaMovedFromModuleAndCacheThrow) {
  const Tensor x = random_tensor({1, 2, 3}, 14);
  for (bool quantized : {false, true}) {
    SCOPED_TRACE(quantized ? "quantized" : "float");
    Gqa original(3, 4, 6, 2, 1, llama3_rope(), 2, true);
    Gqa a = quantized ? quantize_dynamic(original) : original;
    const Gqa b = std::move(a);
    EXPECT_THROW_WITH(a.forward(x), ArgumentError, "GroupedQueryAttention", "moved from");
    Tensor weights;
    EXPECT_THROW_WITH(a.forward(x, &weights), ArgumentError, "moved from");
    EXPECT_EQ(weights.numel(), 0);
    KVCache cache = a.make_cache(1);  // the sizes survive the move
    EXPECT_THROW_WITH(a.forward(x, cache), ArgumentError, "moved from");
    EXPECT_EQ(cache.size(), 0);
    EXPECT_THROW_WITH(quantize_dynamic(a), ArgumentError, "moved from");
    // load_state_dict refuses a moved-from module whatever the dict, before
    // changing anything (moved_from_load_test.cc); assigning restores it.
    EXPECT_THROW_WITH(a.load_state_dict(b.state_dict()), ArgumentError, "load_state_dict",
                      "moved from");
    EXPECT_THROW_WITH(a.load_state_dict(a.state_dict()), ArgumentError, "moved from");
    EXPECT_THROW_WITH(a.forward(x), ArgumentError, "moved from");
    a = b;
    EXPECT_TRUE(same_bits(a.forward(x), b.forward(x)));
  }
  // A moved-from cache: ShapeError naming its keys' shape, nothing cached.
  const Gqa m(3, 4, 6, 2, 1);
  KVCache cache = m.make_cache(1);
  m.forward(x, cache);
  const KVCache moved = std::move(cache);
  EXPECT_THROW_WITH(m.forward(x, cache), ShapeError, "GroupedQueryAttention",
                    "(moved from: no storage)");
  EXPECT_EQ(moved.size(), 2);
  cache = moved;
  EXPECT_NO_THROW(m.forward(x, cache));
  EXPECT_EQ(cache.size(), 4);
}

// --- load_state_dict -------------------------------------------------------------

// Every failed load leaves the module as it was: same state_dict, same output.
void check_failed_loads_leave_module_unchanged(Gqa& module, const Tensor& x,
                                               const std::vector<std::string>& extra_keys) {
  const StateDict before = module.state_dict();
  const Tensor out_before = module.forward(x);
  std::vector<std::pair<std::string, StateDict>> bad;
  bad.push_back({"empty", StateDict{}});
  for (const std::string& key : extra_keys) {
    StateDict d = before;
    d[key] = Tensor({module.context_length(), module.head_dim()});
    bad.push_back({"unexpected " + key, d});
  }
  for (const auto& item : before) {
    StateDict missing = before;
    missing.erase(item.first);
    bad.push_back({"missing " + item.first, missing});
    // Fresh values everywhere else, one wrong shape: no partial update.
    StateDict misshaped = before;
    for (auto& entry : misshaped) entry.second = random_tensor(entry.second.shape(), 9);
    std::vector<int64_t> shape = item.second.shape();
    shape.back() += 1;
    misshaped[item.first] = Tensor(shape);
    bad.push_back({"misshaped " + item.first, misshaped});
  }
  for (const auto& item : bad) {
    SCOPED_TRACE(item.first);
    try {
      module.load_state_dict(item.second);
      ADD_FAILURE() << "no exception";
    } catch (const ShapeError& e) {
      EXPECT_TRUE(contains(e.what(), "load_state_dict")) << e.what();
      EXPECT_TRUE(contains(item.first, "misshaped")) << e.what();
      EXPECT_TRUE(contains(e.what(), item.first.substr(item.first.find(' ') + 1).c_str()))
          << e.what();
    } catch (const ArgumentError& e) {
      EXPECT_TRUE(contains(e.what(), "load_state_dict")) << e.what();
      EXPECT_TRUE(item.first == "empty" ||
                  contains(e.what(), item.first.substr(item.first.find(' ') + 1).c_str()))
          << e.what();
      EXPECT_TRUE(item.first == "empty" ||
                  contains(e.what(), item.first.substr(0, item.first.find(' ')).c_str()))
          << e.what();
    }
    EXPECT_TRUE(same_state(module.state_dict(), before));
    EXPECT_TRUE(same_bits(module.forward(x), out_before));
  }
}

TEST(BadInput, GqaLoadStateDictFailuresLeaveModuleUnchanged) {
  const Tensor x = random_tensor({2, 5, 6}, 2);
  // The buffers some versions of the book's code register (mask; RoPE's cos
  // and sin) are not attn's keys: "unexpected", like any other key.
  const std::vector<std::string> extra = {"mask", "cos", "sin", "unexpected.weight"};
  Gqa biased(6, 8, 6, 4, 2, llama3_rope(), 3, true);
  check_failed_loads_leave_module_unchanged(biased, x, extra);
  Gqa plain(6, 8, 6, 4, 1, RopeConfig(), 0, false);
  check_failed_loads_leave_module_unchanged(plain, x, extra);
  const Gqa q = quantize_dynamic(biased);
  Gqa quantized = q;
  check_failed_loads_leave_module_unchanged(quantized, x, extra);
}

TEST(BadInput, GqaLoadStateDictMessagesNameKeysAndShapes) {
  Gqa m(8, 8, 16, 4, 2);
  const StateDict before = m.state_dict();
  // The book's buffers by name.
  StateDict d = before;
  d["mask"] = Tensor({16, 16});
  d["cos"] = Tensor({16, 2});
  d["sin"] = Tensor({16, 2});
  EXPECT_THROW_WITH(m.load_state_dict(d), ArgumentError, "unexpected", "\"cos\"", "\"mask\"",
                    "\"sin\"");
  // A MultiHeadAttention's state_dict (W_key of d_out rows, not
  // num_kv_groups * head_dim; a mask): the first shape that differs.
  EXPECT_THROW_WITH(m.load_state_dict(MultiHeadAttention(8, 8, 16, 0.0, 4).state_dict()),
                    ShapeError, "'W_key.weight'", "(8, 8)", "(4, 8)");
  // Biases into a module without them, and the other way round.
  const StateDict with_bias = Gqa(8, 8, 16, 4, 2, RopeConfig(), 0, true).state_dict();
  EXPECT_THROW_WITH(m.load_state_dict(with_bias), ArgumentError, "unexpected", "\"W_key.bias\"",
                    "\"W_query.bias\"", "\"W_value.bias\"");
  Gqa biased(8, 8, 16, 4, 2, RopeConfig(), 0, true);
  const StateDict biased_before = biased.state_dict();
  EXPECT_THROW_WITH(biased.load_state_dict(before), ArgumentError, "missing", "\"W_key.bias\"");
  EXPECT_TRUE(same_state(biased.state_dict(), biased_before));
  EXPECT_TRUE(same_state(m.state_dict(), before));
}

// A quantize_dynamic module quantizes what it loads: NaN or inf parameters
// are refused and the module is unchanged; a float32 module loads them (as
// PyTorch). quantize_dynamic itself refuses them, naming the parameter.
TEST(BadInput, GqaLoadStateDictNonFiniteIntoInt8Module) {
  manual_seed(7);
  const Gqa m(6, 8, 5, 4, 2, llama3_rope(), 0, /*qkv_bias=*/true);
  const Gqa q = quantize_dynamic(m);
  const Tensor x = random_tensor({2, 5, 6}, 3);
  const float kInfF = std::numeric_limits<float>::infinity();
  const float kNaNF = std::numeric_limits<float>::quiet_NaN();
  for (const char* key : {"out_proj.weight", "W_key.weight", "W_query.weight", "W_value.bias"}) {
    for (float bad : {kInfF, -kInfF, kNaNF}) {
      SCOPED_TRACE(::testing::Message() << key << " = " << bad);
      Gqa target = q;
      const Tensor before = target.forward(x);
      StateDict dict = m.state_dict();
      dict.at(key).data()[1] = bad;
      EXPECT_THROW_WITH(target.load_state_dict(dict), ArgumentError, "load_state_dict", key,
                        "NaN or inf", "int8");
      EXPECT_TRUE(same_state(target.state_dict(), q.state_dict()));
      EXPECT_TRUE(same_bits(target.forward(x), before));
      Gqa float_module = m;
      EXPECT_NO_THROW(float_module.load_state_dict(dict));
      EXPECT_THROW_WITH(quantize_dynamic(float_module), ArgumentError, "quantize_dynamic", key,
                        "NaN or inf");
    }
  }
}

// --- NaN and inf in the input ------------------------------------------------------

// A non-finite value in token p's input: tokens before p are bit-identical
// to the clean input's and finite (flash path, weights path, decoding), as
// for MultiHeadAttention; token p is not finite. Without a window every later
// token is not finite either; with a sliding window W only tokens
// p .. p + W - 1 see token p: tokens from p + W on are finite again, and
// bit-identical to the clean input's (each path computes a token from the
// keys in its window only).
TEST(BadInput, GqaNonFiniteTokenInputs) {
  for (int64_t window : {int64_t{0}, int64_t{1}, int64_t{5}, int64_t{64}}) {
    for (int64_t T : {int64_t{1}, int64_t{9}, int64_t{70}, int64_t{130}}) {
      manual_seed(static_cast<uint64_t>(T + window));
      const Gqa m(8, 16, 130, 4, 2, llama3_rope(), window, true);
      const Tensor x = random_tensor({2, T, 8}, static_cast<uint64_t>(T));
      Tensor clean_weights;
      const Tensor clean = m.forward(x);
      const Tensor clean_materialized = m.forward(x, &clean_weights);
      std::vector<int64_t> positions = {0, T / 2, T - 1};
      if (T > 65) positions.push_back(64);  // the first token of the second query block
      positions.erase(std::unique(positions.begin(), positions.end()), positions.end());
      for (int64_t p : positions) {
        // The tokens that see token p: [p, end).
        const int64_t end = window == 0 ? T : std::min(T, p + window);
        for (float bad : kNonFinite) {
          SCOPED_TRACE(::testing::Message()
                       << "window " << window << " T " << T << " x[:, " << p << ", 3] = " << bad);
          const Tensor y = with_bad_token(x, p, bad);
          Tensor weights;
          const Tensor flash = m.forward(y), materialized = m.forward(y, &weights);
          // Outputs (B, T, d_out) or weights (B, H, T, T) against the clean
          // run's: tokens [0, p) and [end, T) unchanged and finite, every
          // token of [p, end) not finite.
          auto check = [&](const Tensor& got, const Tensor& ref, const char* what) {
            const TokenRange before = scan_tokens(got, ref, 0, p);
            const TokenRange after = scan_tokens(got, ref, end, T);
            EXPECT_EQ(before.nonfinite, 0) << what;
            EXPECT_EQ(before.changed, 0) << what;
            EXPECT_EQ(after.nonfinite, 0) << what;
            EXPECT_EQ(after.changed, 0) << what;
            EXPECT_TRUE(every_token_nonfinite(got, p, end)) << what;
          };
          check(flash, clean, "flash path");
          check(materialized, clean_materialized, "weights path");
          check(weights, clean_weights, "weights");
        }
      }
    }
  }
}

// The same through a KV cache: a prompt holding the bad token, then one
// token at a time. Decoded tokens whose window no longer holds it are finite
// again (the cached NaN key and value are outside their window).
TEST(BadInput, GqaNonFiniteTokenInTheCache) {
  constexpr int64_t kT = 20, kPrompt = 6, kBad = 3;
  for (int64_t window : {int64_t{0}, int64_t{4}}) {
    manual_seed(5);
    const Gqa m(8, 16, kT, 4, 2, llama3_rope(), window);
    const Tensor x = random_tensor({2, kT, 8}, 6);
    for (float bad : kNonFinite) {
      SCOPED_TRACE(::testing::Message() << "window " << window << " bad " << bad);
      const Tensor y = with_bad_token(x, kBad, bad);
      auto decode = [&](const Tensor& input) {
        KVCache cache = m.make_cache(2);
        std::vector<Tensor> steps;
        Tensor chunk({2, kPrompt, 8});
        for (int64_t b = 0; b < 2; ++b) {
          std::memcpy(chunk.data() + b * kPrompt * 8, input.data() + b * kT * 8,
                      sizeof(float) * kPrompt * 8);
        }
        steps.push_back(m.forward(chunk, cache));
        for (int64_t t = kPrompt; t < kT; ++t) {
          Tensor one({2, 1, 8});
          for (int64_t b = 0; b < 2; ++b) {
            std::memcpy(one.data() + b * 8, input.data() + (b * kT + t) * 8, sizeof(float) * 8);
          }
          steps.push_back(m.forward(one, cache));
        }
        return steps;
      };
      const std::vector<Tensor> clean = decode(x), got = decode(y);
      // The prompt: tokens before kBad clean, kBad itself not finite.
      EXPECT_EQ(scan_tokens(got[0], clean[0], 0, kBad).changed, 0);
      EXPECT_TRUE(every_token_nonfinite(got[0], kBad, kBad + 1));
      for (int64_t t = kPrompt; t < kT; ++t) {
        const Tensor& step = got[static_cast<size_t>(t - kPrompt + 1)];
        const Tensor& ref = clean[static_cast<size_t>(t - kPrompt + 1)];
        const bool sees_bad = window == 0 || t < kBad + window;
        SCOPED_TRACE(::testing::Message() << "decoded token " << t);
        if (sees_bad) {
          EXPECT_TRUE(every_token_nonfinite(step, 0, 1));
        } else {
          EXPECT_EQ(scan_tokens(step, ref, 0, 1).nonfinite, 0);
          EXPECT_EQ(scan_tokens(step, ref, 0, 1).changed, 0);
        }
      }
    }
  }
}

// --- borderline valid configurations -----------------------------------------------

// A window of context_length or more (up to INT64_MAX) is no window: the
// same bits as sliding_window = 0. A window of 1: each token sees only
// itself.
TEST(BadInput, GqaSlidingWindowBeyondContextIsNoWindow) {
  const Tensor x = random_tensor({2, 12, 6}, 8);
  manual_seed(kSeed);
  const Gqa none(6, 8, 12, 4, 2, llama3_rope(), 0);
  const Tensor want = none.forward(x);
  Tensor want_weights;
  none.forward(x, &want_weights);
  for (int64_t window : {int64_t{12}, int64_t{13}, k2e40, kInt64Max}) {
    SCOPED_TRACE(::testing::Message() << "window " << window);
    manual_seed(kSeed);
    const Gqa m(6, 8, 12, 4, 2, llama3_rope(), window);
    EXPECT_TRUE(same_bits(m.forward(x), want));
    Tensor weights;
    m.forward(x, &weights);
    EXPECT_TRUE(same_bits(weights, want_weights));
    KVCache cache = m.make_cache(2);
    EXPECT_TENSOR_NEAR(m.forward(x, cache), want, 1e-5);
  }
  manual_seed(kSeed);
  const Gqa self_only(6, 8, 12, 4, 2, llama3_rope(), 1);
  Tensor weights;
  self_only.forward(x, &weights);
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t h = 0; h < 4; ++h) {
      for (int64_t i = 0; i < 12; ++i) {
        for (int64_t j = 0; j < 12; ++j) {
          EXPECT_EQ(weights.at({b, h, i, j}), i == j ? 1.0f : 0.0f);
        }
      }
    }
  }
}

// RoPE's frequencies are computed in float32: a finite, positive theta_base
// or scaling_factor that is 0 in float (1e-300, 1e-46) would make every
// output NaN; refused like 0 (they were accepted before the fix).
TEST(BadInput, GqaRopeValuesThatUnderflowFloatAreRefused) {
  for (double theta : {1e-300, 1e-46}) {
    SCOPED_TRACE(::testing::Message() << "theta_base " << theta);
    EXPECT_THROW_NO_DRAWS(
        Gqa(4, 8, 6, 2, 1, rope_with([theta](RopeConfig& r) { r.theta_base = theta; })),
        ArgumentError, "rope.theta_base");
  }
  EXPECT_THROW_NO_DRAWS(
      Gqa(4, 8, 6, 2, 1, rope_with([](RopeConfig& r) { r.scaling_factor = 1e-300; })),
      ArgumentError, "rope.scaling_factor");
}

}  // namespace
}  // namespace attn
