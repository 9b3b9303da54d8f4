// Bad arguments to every public entry point: the rows of tests/BAD_INPUTS.md.
// Each case gives the documented exception, whose message names the argument
// (or the entry point and the shapes), or a documented valid result, and
// leaves the module (its state_dict and outputs), the cache, the thread count
// and the global random stream as they were: a constructor that throws has
// drawn no random numbers. The safetensors rows are in safetensors_test.cc.
#include <oneapi/tbb/global_control.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <typeinfo>

#include "core/input_checks.h"
#include "test_util.h"

namespace attn {
namespace {

using testing::random_tensor;
using testing::same_bits;

constexpr int64_t k2e20 = int64_t{1} << 20;
constexpr int64_t k2e32 = int64_t{1} << 32;
constexpr int64_t k2e40 = int64_t{1} << 40;
constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

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

// --- Tensor ---------------------------------------------------------------------

TEST(BadInput, TensorNegativeExtent) {
  EXPECT_THROW_WITH(Tensor({2, -1}), ShapeError, "(2, -1)", "negative");
  EXPECT_THROW_WITH(Tensor::empty({-3}), ShapeError, "(-3,)", "negative");
  EXPECT_THROW_WITH(Tensor({-1, 2}, std::vector<float>{}), ShapeError, "(-1, 2)", "negative");
  EXPECT_THROW_WITH(Tensor({-kInt64Max, kInt64Max}), ShapeError, "negative");
}

TEST(BadInput, TensorZeroExtentIsEmpty) {
  const Tensor a({0, 5});
  EXPECT_EQ(a.numel(), 0);
  EXPECT_EQ(a.shape(), (std::vector<int64_t>{0, 5}));
  EXPECT_NE(a.data(), nullptr);
  EXPECT_EQ(Tensor::empty({3, 0}).numel(), 0);
  EXPECT_EQ(Tensor({2, 0}, std::vector<float>{}).numel(), 0);
  // A zero extent first makes the count 0 whatever follows.
  EXPECT_EQ(Tensor({0, int64_t{1} << 62, 4}).numel(), 0);
  const Tensor copy = a;
  EXPECT_EQ(copy.shape(), a.shape());
  EXPECT_EQ(a.reshape({-1}).shape(), (std::vector<int64_t>{0}));
  // -1 next to a zero extent is ambiguous (as in PyTorch).
  EXPECT_THROW(a.reshape({5, 0, -1}), ShapeError);
  EXPECT_TRUE(a.to_vector().empty());
}

TEST(BadInput, TensorRankAboveFour) {
  EXPECT_THROW_WITH(Tensor({1, 1, 1, 1, 1}), ShapeError, "(1, 1, 1, 1, 1)", "rank");
  EXPECT_THROW_WITH(Tensor::empty({1, 1, 1, 1, 1, 1}), ShapeError, "rank");
  EXPECT_THROW_WITH(Tensor({1, 1, 1, 1, 1}, {1.0f}), ShapeError, "rank");
}

TEST(BadInput, TensorElementCountOverflowsInt64) {
  EXPECT_THROW_WITH(Tensor({k2e32, k2e32, k2e32}), ShapeError, "(4294967296, 4294967296, ");
  EXPECT_THROW_WITH(Tensor::empty({kInt64Max, 2}), ShapeError, "9223372036854775807");
  EXPECT_THROW_WITH(Tensor({k2e40, k2e40}), ShapeError, "(1099511627776, 1099511627776)");
  EXPECT_THROW_WITH(Tensor({k2e32, k2e32}, {1.0f}), ShapeError, "(4294967296, 4294967296)");
}

TEST(BadInput, TensorValuesCountMismatch) {
  EXPECT_THROW_WITH(Tensor({2, 3}, {1, 2}), ShapeError, "(2, 3)", "6", "2");
  EXPECT_THROW_WITH(Tensor({2}, {1, 2, 3}), ShapeError, "(2,)", "3");
  EXPECT_THROW_WITH(Tensor(std::vector<int64_t>{}, std::vector<float>{}), ShapeError, "()", "1");
  // The count is checked before allocating: a wrong count with an 8 GiB
  // shape throws at once (it allocated and zeroed the 8 GiB first).
  EXPECT_THROW_WITH(Tensor({k2e20, 2048}, {1.0f}), ShapeError, "(1048576, 2048)");
}

// More elements than any machine holds, but countable in int64: an attn
// error before allocating, not std::bad_alloc (or a process killed for
// memory after the kernel granted the allocation).
TEST(BadInput, HugeButCountableExtentsAreAttnErrors) {
  const std::string tensor = expect_attn_error<ShapeError>(
      [] {
        Tensor t({k2e20, k2e20});
      },
      "Tensor({2^20, 2^20})");
  EXPECT_TRUE(contains(tensor, "(1048576, 1048576)")) << tensor;
  expect_attn_error<ShapeError>([] { Tensor::empty({k2e20, k2e20}); }, "Tensor::empty");
  expect_attn_error<ShapeError>([] { Tensor t({k2e40}, {1.0f}); }, "Tensor({2^40}, values)");
  expect_attn_error<ShapeError>([] { Tensor({k2e20}).reshape({k2e20, k2e20}); }, "Tensor::reshape");

  // Modules: an attn error, and no random number drawn.
  struct Case {
    const char* what;
    std::function<void()> fn;
  };
  const Case cases[] = {
      {"rand({2^20, 2^20})",
       [] {
         rand({k2e20, k2e20});
       }},
      {"Linear(2^20, 2^20)", [] { Linear(k2e20, k2e20); }},
      {"SelfAttentionV1(2^20, 2^20)", [] { SelfAttentionV1(k2e20, k2e20); }},
      {"SelfAttentionV2(2^20, 2^20)", [] { SelfAttentionV2(k2e20, k2e20); }},
      {"CausalAttention(2^20, 2^20, ...)", [] { CausalAttention(k2e20, k2e20, 8, 0.0); }},
      {"MultiHeadAttentionWrapper(2^20, 2^20, ...)",
       [] { MultiHeadAttentionWrapper(k2e20, k2e20, 8, 0.0, 2); }},
      {"MultiHeadAttention(2^20, 2^20, ...)", [] { MultiHeadAttention(k2e20, k2e20, 8, 0.0, 2); }},
      {"KVCache(1, 1, 2^20, 2^20)", [] { KVCache(1, 1, k2e20, k2e20); }},
  };
  for (const Case& c : cases) {
    manual_seed(kSeed);
    expect_attn_error<Error>(c.fn, c.what);
    expect_stream_at_seed(c.what);
  }
}

// --- Tensor::reshape, at, size ---------------------------------------------------

TEST(BadInput, ReshapeErrorsAreShapeErrors) {
  const Tensor t({2, 3});
  EXPECT_THROW_WITH(t.reshape({4}), ShapeError, "(2, 3)", "(4,)");
  EXPECT_THROW(t.reshape({-1, -1}), ShapeError);
  EXPECT_THROW(t.reshape({-2, -3}), ShapeError);
  EXPECT_THROW(t.reshape({0, -1}), ShapeError);  // -1 cannot be inferred from 0
  EXPECT_THROW(t.reshape({-1, 4}), ShapeError);
  EXPECT_THROW(t.reshape({1, 1, 1, 2, 3}), ShapeError);
  EXPECT_THROW(t.reshape({k2e40, k2e40, -1}), ShapeError);
  EXPECT_THROW(t.reshape({k2e32, k2e32}), ShapeError);
  EXPECT_THROW(t.reshape({kInt64Max, kInt64Max, kInt64Max, -1}), ShapeError);
  EXPECT_EQ(t.shape(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(t.reshape({3, -1}).shape(), (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(t.reshape({-1}).shape(), (std::vector<int64_t>{6}));
  EXPECT_EQ(t.reshape({1, 2, 1, 3}).shape(), (std::vector<int64_t>{1, 2, 1, 3}));
}

// Every reshape error names reshape, the tensor's shape and the requested one;
// the product of huge extents is computed without signed overflow (it was UB:
// {2^40, 2^40, -1} wrapped to 0).
TEST(BadInput, ReshapeErrorsNameReshapeAndBothShapes) {
  const Tensor t({2, 3});
  EXPECT_THROW_WITH(t.reshape({4}), ShapeError, "reshape", "(2, 3)", "(4,)");
  EXPECT_THROW_WITH(t.reshape({-1, -1}), ShapeError, "reshape", "(2, 3)", "(-1, -1)");
  EXPECT_THROW_WITH(t.reshape({-2, -3}), ShapeError, "reshape", "(2, 3)", "(-2, -3)");
  EXPECT_THROW_WITH(t.reshape({0, -1}), ShapeError, "reshape", "(2, 3)", "(0, -1)");
  EXPECT_THROW_WITH(t.reshape({-1, 4}), ShapeError, "reshape", "(2, 3)", "(-1, 4)");
  EXPECT_THROW_WITH(t.reshape({1, 1, 1, 2, 3}), ShapeError, "reshape", "(1, 1, 1, 2, 3)");
  EXPECT_THROW_WITH(t.reshape({k2e40, k2e40, -1}), ShapeError, "reshape", "(2, 3)",
                    "(1099511627776, 1099511627776, -1)");
  EXPECT_THROW_WITH(t.reshape({k2e32, k2e32}), ShapeError, "reshape", "(4294967296, 4294967296)");
  EXPECT_THROW_WITH(t.reshape({kInt64Max, kInt64Max, kInt64Max, -1}), ShapeError, "reshape");
}

TEST(BadInput, AtAndSizeOutOfRange) {
  Tensor t({2, 3});
  const Tensor& c = t;
  EXPECT_THROW_WITH(t.at({2, 0}), ShapeError, "(2, 3)", "index 2");
  EXPECT_THROW_WITH(t.at({0, 3}), ShapeError, "(2, 3)", "index 3");
  EXPECT_THROW_WITH(t.at({-1, 0}), ShapeError, "(2, 3)", "index -1");
  EXPECT_THROW_WITH(c.at({0, kInt64Max}), ShapeError, "(2, 3)");
  EXPECT_THROW_WITH(c.at({0}), ShapeError, "(2, 3)", "1 indices");
  EXPECT_THROW_WITH(t.at({0, 0, 0}), ShapeError, "(2, 3)", "3 indices");
  EXPECT_THROW_WITH(Tensor({0, 3}).at({0, 0}), ShapeError, "(0, 3)");
  EXPECT_THROW_WITH(t.size(2), ShapeError, "dimension 2", "(2, 3)");
  EXPECT_THROW_WITH(t.size(-3), ShapeError, "dimension -3", "(2, 3)");
  EXPECT_EQ(t.size(-2), 2);
  // A scalar takes no indices.
  const Tensor scalar(std::vector<int64_t>{}, {5.0f});
  EXPECT_EQ(scalar.at({}), 5.0f);
  EXPECT_THROW_WITH(scalar.at({0}), ShapeError, "()");
}

// --- rand ------------------------------------------------------------------------

TEST(BadInput, RandBadShapesDrawNothing) {
  EXPECT_THROW_NO_DRAWS(rand({3, -1}), ShapeError, "(3, -1)", "negative");
  EXPECT_THROW_NO_DRAWS(rand({1, 1, 1, 1, 1}), ShapeError, "rank");
  EXPECT_THROW_NO_DRAWS(rand({k2e32, k2e32, k2e32}), ShapeError, "(4294967296, ");
  manual_seed(kSeed);
  const Tensor empty = rand({0, 4});
  EXPECT_EQ(empty.shape(), (std::vector<int64_t>{0, 4}));
  expect_stream_at_seed("rand({0, 4})");
}

TEST(BadInput, UniformBadBoundsDrawNothing) {
  Tensor t({3});
  const float kFloatMax = std::numeric_limits<float>::max();
  const std::vector<std::pair<double, double>> bad = {
      {1.0, 0.5},   {kNaN, 1.0}, {0.0, kNaN},  {-kInf, 0.0},
      {0.0, kInf},  {0.0, 1e39}, {-1e39, 0.0}, {-kFloatMax, kFloatMax},
      {1e-300, 0.0}};
  for (const auto& [from, to] : bad) {
    SCOPED_TRACE(::testing::Message() << "from = " << from << ", to = " << to);
    t.data()[0] = 7.0f;
    EXPECT_THROW_NO_DRAWS(uniform_(t, from, to), ArgumentError, "uniform_", "from = ", "to = ");
    EXPECT_EQ(t.data()[0], 7.0f) << "the tensor was written";
  }
  // from == to is valid (PyTorch fills with from), and so is the widest
  // range whose width is finite.
  uniform_(t, 2.5, 2.5);
  EXPECT_EQ(t.data()[0], 2.5f);
  uniform_(t, -kFloatMax / 2, kFloatMax / 2);
  EXPECT_TRUE(std::isfinite(t.data()[1]));
}

// --- Linear ---------------------------------------------------------------------

TEST(BadInput, LinearBadSizesDrawNothing) {
  EXPECT_THROW_NO_DRAWS(Linear(0, 2), ArgumentError, "in_features (0)");
  EXPECT_THROW_NO_DRAWS(Linear(-3, 2), ArgumentError, "in_features (-3)");
  EXPECT_THROW_NO_DRAWS(Linear(2, 0), ArgumentError, "out_features (0)");
  EXPECT_THROW_NO_DRAWS(Linear(2, -1, false), ArgumentError, "out_features (-1)");
  EXPECT_THROW_NO_DRAWS(Linear(k2e40, k2e40), ShapeError, "1099511627776");
  EXPECT_THROW_NO_DRAWS(Linear(kInt64Max, 2), ShapeError, "9223372036854775807");
}

TEST(BadInput, LinearFromWeightsBadShapes) {
  EXPECT_THROW_WITH(Linear::from_weights(Tensor({6})), ShapeError, "weight", "(6,)");
  EXPECT_THROW_WITH(Linear::from_weights(Tensor({0, 3})), ShapeError, "weight", "(0, 3)");
  EXPECT_THROW_WITH(Linear::from_weights(Tensor({2, 3, 1})), ShapeError, "(2, 3, 1)");
  EXPECT_THROW_WITH(Linear::from_weights(Tensor({2, 3}), Tensor({3})), ShapeError, "bias", "(3,)");
  EXPECT_THROW_WITH(Linear::from_weights(Tensor({2, 3}), Tensor({1, 2})), ShapeError, "(1, 2)");
  const Linear no_bias = Linear::from_weights(Tensor({2, 3}), Tensor({0}));
  EXPECT_FALSE(no_bias.has_bias());
}

TEST(BadInput, LinearForwardBadAndEmptyInputs) {
  const Linear lin(3, 2);
  EXPECT_THROW_WITH(lin.forward(Tensor({4, 2})), ShapeError, "(4, 2)", "in_features = 3");
  EXPECT_THROW_WITH(lin.forward(Tensor(std::vector<int64_t>{}, {1.0f})), ShapeError, "()");
  EXPECT_THROW_WITH(lin.forward(Tensor({3, 0})), ShapeError, "(3, 0)");
  EXPECT_EQ(lin.forward(Tensor({0, 3})).shape(), (std::vector<int64_t>{0, 2}));
  EXPECT_EQ(lin.forward(Tensor({2, 0, 3})).shape(), (std::vector<int64_t>{2, 0, 2}));
  EXPECT_EQ(lin.forward(Tensor({3})).shape(), (std::vector<int64_t>{2}));
  EXPECT_EQ(lin.forward(Tensor({1, 2, 1, 3})).shape(), (std::vector<int64_t>{1, 2, 1, 2}));
}

TEST(BadInput, LinearForwardRowsBadArguments) {
  const Linear lin(3, 2);
  std::vector<float> x(4 * 3, 1.0f), y(4 * 2, -1.0f);
  const auto y_untouched = [&] {
    for (float v : y) EXPECT_EQ(v, -1.0f) << "forward_rows wrote before throwing";
  };
  EXPECT_THROW_WITH(lin.forward_rows(x.data(), 2, 4, y.data(), 2), ArgumentError, "ldx (2)",
                    "in_features = 3");
  EXPECT_THROW_WITH(lin.forward_rows(x.data(), 3, 4, y.data(), 1), ArgumentError, "ldy (1)",
                    "out_features = 2");
  EXPECT_THROW_WITH(lin.forward_rows(nullptr, 3, 4, y.data(), 2), ArgumentError, "x is null",
                    "rows = 4");
  EXPECT_THROW_WITH(lin.forward_rows(x.data(), 3, 4, nullptr, 2), ArgumentError, "y is null");
  EXPECT_THROW_WITH(lin.forward_rows(x.data(), SIZE_MAX / 2, 4, y.data(), 2), ArgumentError,
                    "address space");
  // In place: y over x (its first rows or inside its last row).
  EXPECT_THROW_WITH(lin.forward_rows(x.data(), 3, 4, x.data(), 2), ArgumentError, "overlaps");
  EXPECT_THROW_WITH(lin.forward_rows(x.data(), 3, 1, x.data() + 2, 2), ArgumentError, "overlaps");
  y_untouched();
  // Valid: zero rows with null pointers; adjacent (not overlapping) buffers.
  EXPECT_NO_THROW(lin.forward_rows(nullptr, 3, 0, nullptr, 2));
  std::vector<float> both(3 + 2, 0.0f);
  both[0] = both[1] = both[2] = 1.0f;
  lin.forward_rows(both.data(), 3, 1, both.data() + 3, 2);
  const Tensor expected = lin.forward(Tensor({1, 3}, {1.0f, 1.0f, 1.0f}));
  EXPECT_EQ(both[3], expected.data()[0]);
  EXPECT_EQ(both[4], expected.data()[1]);
}

// --- Dropout ----------------------------------------------------------------------

TEST(BadInput, DropoutProbabilityOutsideZeroOne) {
  for (double p : {-0.1, 1.1, -kInf, kInf, kNaN, -1e-300, 1.0 + 1e-15}) {
    SCOPED_TRACE(::testing::Message() << "p = " << p);
    EXPECT_THROW_WITH(Dropout{p}, ArgumentError, "between 0 and 1");
  }
  // The bounds are valid: p = 1 drops everything (and draws nothing).
  Dropout all(1.0);
  manual_seed(kSeed);
  const Tensor zeros = all(Tensor({2, 3}, {1, 2, 3, 4, 5, 6}));
  for (float v : zeros.to_vector()) EXPECT_EQ(v, 0.0f);
  expect_stream_at_seed("Dropout(1.0)");
  EXPECT_EQ(Dropout(0.0)(Tensor({0, 3})).numel(), 0);
  EXPECT_EQ(Dropout(0.5)(Tensor({0, 3})).numel(), 0);
}

TEST(BadInput, DropoutDrawKeepMaskNegativeCount) {
  const Dropout d(0.5);
  manual_seed(kSeed);
  EXPECT_TRUE(d.draw_keep_mask(0).empty());
  expect_stream_at_seed("draw_keep_mask(0)");
  manual_seed(kSeed);
  const std::string message =
      expect_attn_error<ArgumentError>([&] { d.draw_keep_mask(-1); }, "draw_keep_mask(-1)");
  EXPECT_TRUE(contains(message, "count")) << message;
  expect_stream_at_seed("draw_keep_mask(-1)");
}

// --- SelfAttention v1 / v2, transfer_weights --------------------------------------

TEST(BadInput, SelfAttentionBadSizesDrawNothing) {
  EXPECT_THROW_NO_DRAWS(SelfAttentionV1(0, 2), ArgumentError, "d_in");
  EXPECT_THROW_NO_DRAWS(SelfAttentionV1(3, -2), ArgumentError, "d_out");
  EXPECT_THROW_NO_DRAWS(SelfAttentionV1(k2e40, k2e40), ShapeError, "1099511627776");
  // v2's sizes are its Linears'.
  EXPECT_THROW_NO_DRAWS(SelfAttentionV2(0, 2), ArgumentError, "in_features (0)");
  EXPECT_THROW_NO_DRAWS(SelfAttentionV2(3, -2, true), ArgumentError, "out_features (-2)");
  EXPECT_THROW_NO_DRAWS(SelfAttentionV2(k2e40, k2e40), ShapeError, "1099511627776");
}

TEST(BadInput, SelfAttentionForwardBadAndEmptyInputs) {
  SelfAttentionV1 v1(3, 2);
  SelfAttentionV2 v2(3, 2, true);
  for (const std::function<Tensor(const Tensor&, Tensor*)>&f :
       {std::function<Tensor(const Tensor&, Tensor*)>(
            [&](const Tensor&x, Tensor*w) { return v1.forward(x, w); }),
        std::function<Tensor(const Tensor&, Tensor*)>(
            [&](const Tensor&x, Tensor*w) { return v2.forward(x, w); })}) {
    EXPECT_THROW_WITH(f(Tensor({1, 6, 3}), nullptr), ShapeError, "(1, 6, 3)",
                      "(num_tokens, d_in=3)");
    EXPECT_THROW_WITH(f(Tensor({3}), nullptr), ShapeError, "(3,)");
    EXPECT_THROW_WITH(f(Tensor({6, 4}), nullptr), ShapeError, "(6, 4)", "d_in=3");
    // No tokens: an empty result.
    Tensor weights;
    EXPECT_EQ(f(Tensor({0, 3}), &weights).shape(), (std::vector<int64_t>{0, 2}));
    EXPECT_EQ(weights.shape(), (std::vector<int64_t>{0, 0}));
  }
}

TEST(BadInput, TransferWeightsLeavesTargetUnchanged) {
  SelfAttentionV2 v2(3, 2);
  SelfAttentionV1 wrong(4, 2);
  const StateDict before = wrong.state_dict();
  EXPECT_THROW_WITH(transfer_weights(v2, wrong), ShapeError, "(2, 3)", "(4, 2)");
  EXPECT_TRUE(same_state(wrong.state_dict(), before));
  // d_in and d_out swapped: both weights are (2, 3), so the message names the
  // sizes (it showed two equal shapes).
  SelfAttentionV1 swapped(2, 3);
  EXPECT_THROW_WITH(transfer_weights(v2, swapped), ShapeError, "(d_in = 3, d_out = 2)",
                    "(d_in = 2, d_out = 3)");
  SelfAttentionV2 biased(3, 2, true);
  SelfAttentionV1 v1(3, 2);
  const StateDict v1_before = v1.state_dict();
  EXPECT_THROW_WITH(transfer_weights(biased, v1), ArgumentError, "qkv_bias");
  EXPECT_TRUE(same_state(v1.state_dict(), v1_before));
}

// --- the causal modules: constructors -----------------------------------------------

TEST(BadInput, CausalConstructorsWithBadSizesDrawNothing) {
  // CausalAttention: the message names d_in / d_out (or its Linears' in_features /
  // out_features).
  for (const auto& c :
       {std::make_pair(int64_t{0}, int64_t{2}), std::make_pair(int64_t{3}, int64_t{-1})}) {
    manual_seed(kSeed);
    const std::string message = expect_attn_error<ArgumentError>(
        [&] { CausalAttention(c.first, c.second, 6, 0.0); }, "CausalAttention sizes");
    const char* names[] = {c.first < 1 ? "d_in" : "d_out",
                           c.first < 1 ? "in_features" : "out_features"};
    EXPECT_TRUE(contains(message, names[0]) || contains(message, names[1])) << message;
    expect_stream_at_seed("CausalAttention with a bad size");
  }
  // MultiHeadAttentionWrapper
  EXPECT_THROW_NO_DRAWS(MultiHeadAttentionWrapper(0, 2, 6, 0.0, 2), ArgumentError, "d_in");
  EXPECT_THROW_NO_DRAWS(MultiHeadAttentionWrapper(3, 0, 6, 0.0, 2), ArgumentError, "d_out");
  EXPECT_THROW_NO_DRAWS(MultiHeadAttentionWrapper(3, 2, 0, 0.0, 2), ArgumentError,
                        "context_length");
  EXPECT_THROW_NO_DRAWS(MultiHeadAttentionWrapper(3, 2, -6, 0.0, 2), ArgumentError,
                        "context_length");
  EXPECT_THROW_NO_DRAWS(MultiHeadAttentionWrapper(3, 2, 6, 0.0, 0), ArgumentError, "num_heads");
  EXPECT_THROW_NO_DRAWS(MultiHeadAttentionWrapper(3, 2, 6, 0.0, -1), ArgumentError, "num_heads");
  // MultiHeadAttention
  EXPECT_THROW_NO_DRAWS(MultiHeadAttention(0, 4, 6, 0.0, 2), ArgumentError, "d_in");
  EXPECT_THROW_NO_DRAWS(MultiHeadAttention(3, -4, 6, 0.0, 2), ArgumentError, "d_out");
  EXPECT_THROW_NO_DRAWS(MultiHeadAttention(3, 4, 0, 0.0, 2), ArgumentError, "context_length");
  EXPECT_THROW_NO_DRAWS(MultiHeadAttention(3, 4, -1, 0.0, 2), ArgumentError, "context_length");
  EXPECT_THROW_NO_DRAWS(MultiHeadAttention(3, 4, 6, 0.0, 0), ArgumentError, "num_heads");
  EXPECT_THROW_NO_DRAWS(MultiHeadAttention(3, 4, 6, 0.0, -2), ArgumentError, "num_heads");
  EXPECT_THROW_NO_DRAWS(MultiHeadAttention(3, 5, 6, 0.0, 2), ArgumentError, "d_out (5)",
                        "num_heads (2)");
  EXPECT_THROW_NO_DRAWS(MultiHeadAttention(3, 4, 6, 0.0, k2e40), ArgumentError, "num_heads");
  EXPECT_THROW_NO_DRAWS(MultiHeadAttention(3, 4, 6, 0.0, 8), ArgumentError, "d_out (4)");
  // Element counts that overflow: an attn error, nothing drawn.
  EXPECT_THROW_NO_DRAWS(MultiHeadAttention(k2e40, k2e40, 6, 0.0, 1), Error, "");
  EXPECT_THROW_NO_DRAWS(CausalAttention(k2e40, k2e40, 6, 0.0), Error, "");
  EXPECT_THROW_NO_DRAWS(MultiHeadAttentionWrapper(k2e40, k2e40, 6, 0.0, 2), Error, "");
}

// context_length <= 0 and dropout outside [0, 1] (NaN included) are checked
// before any parameter is drawn, and the messages name the argument.
TEST(BadInput, CausalConstructorsWithBadContextOrDropoutDrawNothing) {
  EXPECT_THROW_NO_DRAWS(CausalAttention(3, 2, 0, 0.0), ArgumentError, "context_length");
  EXPECT_THROW_NO_DRAWS(CausalAttention(3, 2, -5, 0.0, true), ArgumentError, "context_length");
  for (double p : {-0.1, 1.5, kNaN, kInf}) {
    SCOPED_TRACE(::testing::Message() << "dropout " << p);
    EXPECT_THROW_NO_DRAWS(CausalAttention(3, 2, 6, p), ArgumentError, "dropout", "between 0 and 1");
    EXPECT_THROW_NO_DRAWS(MultiHeadAttentionWrapper(3, 2, 6, p, 2), ArgumentError, "dropout",
                          "between 0 and 1");
    EXPECT_THROW_NO_DRAWS(MultiHeadAttention(3, 4, 6, p, 2), ArgumentError, "dropout",
                          "between 0 and 1");
  }
}

// A large context is cheap (the mask is a loop bound, not a buffer) or an
// attn error that names context_length and draws nothing; never bad_alloc,
// and never an eager context_length² allocation (40 GB at 100,000).
TEST(BadInput, HugeContextLengthIsCheapOrAnAttnError) {
  using Clock = std::chrono::steady_clock;
  for (int64_t ctx : {int64_t{100000}, int64_t{1} << 31, k2e40, kInt64Max}) {
    struct Case {
      const char* module;
      std::function<std::function<Tensor(const Tensor&)>()> make;
    };
    const Case cases[] = {
        {"CausalAttention",
         [ctx] {
           auto m = std::make_shared<CausalAttention>(8, 4, ctx, 0.1);
           return std::function<Tensor(const Tensor&)>(
               [m](const Tensor& x) { return m->forward(x); });
         }},
        {"MultiHeadAttentionWrapper",
         [ctx] {
           auto m = std::make_shared<MultiHeadAttentionWrapper>(8, 4, ctx, 0.1, 2);
           return std::function<Tensor(const Tensor&)>(
               [m](const Tensor& x) { return m->forward(x); });
         }},
        {"MultiHeadAttention",
         [ctx] {
           auto m = std::make_shared<MultiHeadAttention>(8, 4, ctx, 0.1, 2);
           return std::function<Tensor(const Tensor&)>(
               [m](const Tensor& x) { return m->forward(x); });
         }},
    };
    for (const Case& c : cases) {
      SCOPED_TRACE(::testing::Message() << c.module << " context_length " << ctx);
      manual_seed(kSeed);
      const auto start = Clock::now();
      try {
        const std::function<Tensor(const Tensor&)> forward = c.make();
        const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
        EXPECT_LT(seconds, 1.0) << "the constructor took " << seconds << " s";
        const Tensor out = forward(random_tensor({2, 3, 8}, 1));
        EXPECT_EQ(out.size(1), 3);
      } catch (const Error& e) {
        EXPECT_TRUE(contains(e.what(), "context_length")) << e.what();
        expect_stream_at_seed(c.module);
      } catch (const std::exception& e) {
        ADD_FAILURE() << typeid(e).name() << ": " << e.what();
      }
    }
  }
}

TEST(BadInput, WrapperAbsurdNumHeadsIsAnAttnError) {
  manual_seed(kSeed);
  const std::string message = expect_attn_error<Error>(
      [] { MultiHeadAttentionWrapper(3, 2, 6, 0.0, k2e40); }, "wrapper with 2^40 heads");
  EXPECT_TRUE(contains(message, "num_heads")) << message;
  expect_stream_at_seed("MultiHeadAttentionWrapper(3, 2, 6, 0.0, 2^40)");
}

// --- the causal modules: forward ------------------------------------------------------

struct CausalModules {
  CausalAttention ca{3, 2, 6, 0.5};
  MultiHeadAttentionWrapper wrapper{3, 2, 6, 0.5, 2};
  MultiHeadAttention mha{3, 4, 6, 0.5, 2};

  // (name, forward) of each, in training mode with dropout active.
  std::vector<std::pair<const char*, std::function<Tensor(const Tensor&, Tensor*)>>> forwards() {
    return {
        {"CausalAttention", [this](const Tensor& x, Tensor* w) { return ca.forward(x, w); }},
        {"MultiHeadAttentionWrapper",
         [this](const Tensor& x, Tensor* w) { return wrapper.forward(x, w); }},
        {"MultiHeadAttention", [this](const Tensor& x, Tensor* w) { return mha.forward(x, w); }}};
  }
};

TEST(BadInput, CausalForwardBadShapesDrawNothing) {
  CausalModules m;
  for (const auto& item : m.forwards()) {
    SCOPED_TRACE(item.first);
    const auto& f = item.second;
    Tensor weights;
    EXPECT_THROW_NO_DRAWS(f(Tensor({6, 3}), nullptr), ShapeError, item.first, "(6, 3)",
                          "(batch, num_tokens, d_in=3)");
    EXPECT_THROW_NO_DRAWS(f(Tensor({1, 2, 6, 3}), &weights), ShapeError, "(1, 2, 6, 3)");
    EXPECT_THROW_NO_DRAWS(f(Tensor({2, 6, 4}), nullptr), ShapeError, "(2, 6, 4)", "d_in=3");
    EXPECT_THROW_NO_DRAWS(f(Tensor({2, 6, 0}), nullptr), ShapeError, "(2, 6, 0)");
    EXPECT_THROW_NO_DRAWS(f(Tensor({2, 7, 3}), &weights), ShapeError, "(2, 7, 3)", "num_tokens = 7",
                          "context_length = 6");
    EXPECT_EQ(weights.numel(), 0) << "weights written by a failed call";
  }
}

// Batch 0 and num_tokens 0 are valid: empty outputs and weights, no draws.
TEST(BadInput, CausalForwardEmptyBatchAndNoTokens) {
  CausalModules m;
  m.mha.set_attention_path(MultiHeadAttention::AttentionPath::kMaterialized);
  const int64_t out_dims[] = {2, 4, 4};  // CausalAttention, wrapper (2 x 2), MHA
  const int64_t heads[] = {0, 2, 2};     // weights rank 3 for CausalAttention
  size_t i = 0;
  for (const auto& item : m.forwards()) {
    SCOPED_TRACE(item.first);
    for (bool training : {true, false}) {
      m.ca.train(training);
      m.wrapper.train(training);
      m.mha.train(training);
      for (const std::vector<int64_t>& shape :
           {std::vector<int64_t>{0, 4, 3}, std::vector<int64_t>{2, 0, 3},
            std::vector<int64_t>{0, 0, 3}}) {
        manual_seed(kSeed);
        Tensor weights;
        const Tensor out = item.second(Tensor(shape), &weights);
        EXPECT_EQ(out.shape(), (std::vector<int64_t>{shape[0], shape[1], out_dims[i]}));
        const std::vector<int64_t> expected_weights =
            heads[i] == 0 ? std::vector<int64_t>{shape[0], shape[1], shape[1]}
                          : std::vector<int64_t>{shape[0], heads[i], shape[1], shape[1]};
        EXPECT_EQ(weights.shape(), expected_weights);
        EXPECT_EQ(item.second(Tensor(shape), nullptr).shape(), out.shape());
        expect_stream_at_seed(item.first);
      }
    }
    ++i;
  }
}

// --- MultiHeadAttention::forward(x, cache) and KVCache ---------------------------------

TEST(BadInput, KVCacheConstructorAndRewind) {
  EXPECT_THROW_WITH(KVCache(0, 2, 4, 8), ArgumentError, "batch");
  EXPECT_THROW_WITH(KVCache(1, -2, 4, 8), ArgumentError, "num_heads");
  EXPECT_THROW_WITH(KVCache(1, 2, 0, 8), ArgumentError, "head_dim");
  EXPECT_THROW_WITH(KVCache(1, 2, 4, -8), ArgumentError, "context_length");
  EXPECT_THROW(KVCache(k2e32, k2e32, k2e32, k2e32), Error);
  MultiHeadAttention mha(4, 4, 8, 0.0, 2);
  EXPECT_THROW_WITH(mha.make_cache(0), ArgumentError, "batch");
  KVCache cache = mha.make_cache(1);
  mha.forward(random_tensor({1, 3, 4}, 1), cache);
  EXPECT_THROW_WITH(cache.rewind(-1), ArgumentError, "-1");
  EXPECT_THROW_WITH(cache.rewind(4), ArgumentError, "4", "3 tokens cached");
  EXPECT_EQ(cache.size(), 3);
  cache.rewind(3);
  cache.rewind(0);
  EXPECT_EQ(cache.size(), 0);
}

TEST(BadInput, KVCacheForwardErrorsLeaveTheCacheUnchanged) {
  MultiHeadAttention mha(8, 8, 16, 0.0, 2);
  mha.eval();
  KVCache cache = mha.make_cache(2);
  mha.forward(random_tensor({2, 10, 8}, 1), cache);
  const Tensor keys = cache.keys(), values = cache.values();
  auto expect_unchanged = [&](const char* what) {
    EXPECT_EQ(cache.size(), 10) << what;
    EXPECT_TRUE(same_bits(cache.keys(), keys)) << what;
    EXPECT_TRUE(same_bits(cache.values(), values)) << what;
  };
  EXPECT_THROW_WITH(mha.forward(random_tensor({2, 7, 8}, 2), cache), ShapeError, "holds 10",
                    "(2, 7, 8)", "17 > context_length = 16");
  expect_unchanged("past context_length");
  EXPECT_THROW_WITH(mha.forward(random_tensor({1, 1, 8}, 2), cache), ShapeError, "(1, 1, 8)");
  expect_unchanged("batch differs");
  EXPECT_THROW_WITH(mha.forward(random_tensor({2, 1, 5}, 2), cache), ShapeError, "(2, 1, 5)",
                    "d_in=8");
  expect_unchanged("wrong d_in");
  EXPECT_THROW_WITH(mha.forward(random_tensor({2, 8}, 2), cache), ShapeError, "(2, 8)");
  expect_unchanged("wrong rank");
  // Caches of another shape: heads, head_dim, capacity, batch.
  for (const auto& other :
       {KVCache(2, 4, 2, 16), KVCache(2, 2, 2, 16), KVCache(2, 2, 4, 32), KVCache(3, 2, 4, 16)}) {
    KVCache c = other;
    const std::string cache_shape = shape_to_string(c.keys().shape());
    EXPECT_THROW_WITH(mha.forward(random_tensor({2, 1, 8}, 2), c), ShapeError, cache_shape.c_str(),
                      "(2, 1, 8)");
    EXPECT_EQ(c.size(), 0);
  }
  // Dropout active: decoding is inference.
  MultiHeadAttention training(8, 8, 16, 0.1, 2);
  KVCache c2 = training.make_cache(2);
  manual_seed(kSeed);
  EXPECT_THROW_WITH(training.forward(random_tensor({2, 1, 8}, 2), c2), ArgumentError, "eval()");
  EXPECT_EQ(c2.size(), 0);
  expect_stream_at_seed("forward(x, cache) in training mode");
  // No new tokens: a valid, empty result; the cache keeps its tokens.
  EXPECT_EQ(mha.forward(Tensor({2, 0, 8}), cache).shape(), (std::vector<int64_t>{2, 0, 8}));
  expect_unchanged("no new tokens");
  // Exactly up to context_length is valid.
  EXPECT_EQ(mha.forward(random_tensor({2, 6, 8}, 3), cache).shape(),
            (std::vector<int64_t>{2, 6, 8}));
  EXPECT_EQ(cache.size(), 16);
  EXPECT_THROW_WITH(mha.forward(random_tensor({2, 1, 8}, 4), cache), ShapeError,
                    "17 > context_length = 16");
  EXPECT_EQ(cache.size(), 16);
}

// --- load_state_dict --------------------------------------------------------------------

// Every failed load leaves the module as it was: same state_dict, same output.
template <typename M>
void check_failed_loads_leave_module_unchanged(M& module, const Tensor& x) {
  const StateDict before = module.state_dict();
  const Tensor out_before = module.forward(x);
  std::vector<std::pair<std::string, StateDict>> bad;
  bad.push_back({"empty", StateDict{}});
  {
    StateDict d = before;
    d["unexpected.weight"] = Tensor({1});
    bad.push_back({"unexpected", d});
  }
  for (const auto& item : before) {
    StateDict missing = before;
    missing.erase(item.first);
    bad.push_back({"missing " + item.first, missing});
    StateDict misshaped = before;
    // Fresh values everywhere else, one wrong shape: no partial update.
    for (auto& entry : misshaped) {
      if (entry.first.find("mask") == std::string::npos) {
        entry.second = random_tensor(entry.second.shape(), 9);
      }
    }
    std::vector<int64_t> shape = item.second.shape();
    shape.back() += 1;
    misshaped[item.first] = Tensor(shape);
    bad.push_back({"misshaped " + item.first, misshaped});
    if (item.first.find("mask") != std::string::npos) {
      StateDict wrong_mask = before;
      wrong_mask[item.first].at({1, 0}) = 1.0f;
      bad.push_back({"not-causal " + item.first, wrong_mask});
    }
  }
  for (const auto& item : bad) {
    SCOPED_TRACE(item.first);
    try {
      module.load_state_dict(item.second);
      ADD_FAILURE() << "no exception";
    } catch (const ShapeError& e) {
      EXPECT_TRUE(contains(e.what(), "load_state_dict")) << e.what();
    } catch (const ArgumentError& e) {
      EXPECT_TRUE(contains(e.what(), "load_state_dict")) << e.what();
      EXPECT_TRUE(item.first == "empty" ||
                  contains(e.what(), item.first.substr(item.first.find(' ') + 1).c_str()))
          << e.what();
    }
    EXPECT_TRUE(same_state(module.state_dict(), before));
    EXPECT_TRUE(same_bits(module.forward(x), out_before));
  }
}

TEST(BadInput, LoadStateDictFailuresLeaveModulesUnchanged) {
  const Tensor x2 = random_tensor({5, 3}, 1), x3 = random_tensor({2, 5, 3}, 2);
  SelfAttentionV1 v1(3, 2);
  check_failed_loads_leave_module_unchanged(v1, x2);
  SelfAttentionV2 v2(3, 2, true);
  check_failed_loads_leave_module_unchanged(v2, x2);
  CausalAttention ca(3, 2, 6, 0.0, true);
  check_failed_loads_leave_module_unchanged(ca, x3);
  MultiHeadAttentionWrapper wrapper(3, 2, 6, 0.0, 2);
  check_failed_loads_leave_module_unchanged(wrapper, x3);
  MultiHeadAttention mha(3, 4, 6, 0.0, 2, true);
  check_failed_loads_leave_module_unchanged(mha, x3);
}

// A quantize_dynamic module quantizes what it loads: NaN or inf parameters
// are refused as quantize_dynamic refuses them, and the module is unchanged.
// A float32 module loads them (as PyTorch does).
TEST(BadInput, LoadStateDictNonFiniteIntoInt8Module) {
  manual_seed(7);
  MultiHeadAttention mha(6, 4, 5, 0.0, 2, /*qkv_bias=*/true);
  mha.eval();
  CausalAttention ca(6, 3, 5, 0.0, /*qkv_bias=*/false);
  ca.eval();
  const MultiHeadAttention q_mha = quantize_dynamic(mha);
  const CausalAttention q_ca = quantize_dynamic(ca);
  const Tensor x = random_tensor({2, 5, 6}, 3);
  const float kInfF = std::numeric_limits<float>::infinity();
  const float kNaNF = std::numeric_limits<float>::quiet_NaN();
  for (const char* key : {"out_proj.weight", "W_key.weight", "W_value.bias"}) {
    for (float bad : {kInfF, kNaNF}) {
      SCOPED_TRACE(::testing::Message() << key << " = " << bad);
      MultiHeadAttention target = q_mha;
      const Tensor before = target.forward(x);
      StateDict dict = mha.state_dict();
      dict.at(key).data()[1] = bad;
      EXPECT_THROW_WITH(target.load_state_dict(dict), ArgumentError, "load_state_dict", key,
                        "NaN or inf", "int8");
      EXPECT_TRUE(same_state(target.state_dict(), q_mha.state_dict()));
      EXPECT_TRUE(same_bits(target.forward(x), before));
      MultiHeadAttention float_module = mha;
      EXPECT_NO_THROW(float_module.load_state_dict(dict));
    }
  }
  CausalAttention target = q_ca;
  StateDict dict = ca.state_dict();
  dict.at("W_query.weight").data()[0] = kNaNF;
  EXPECT_THROW_WITH(target.load_state_dict(dict), ArgumentError, "W_query.weight", "NaN or inf");
  EXPECT_TRUE(same_state(target.state_dict(), q_ca.state_dict()));
}

TEST(BadInput, LoadStateDictMessagesNameKeysAndShapes) {
  MultiHeadAttention mha(3, 4, 6, 0.0, 2);
  StateDict d = mha.state_dict();
  d["mask"] = MultiHeadAttention(3, 4, 8, 0.0, 2).state_dict().at("mask");
  EXPECT_THROW_WITH(mha.load_state_dict(d), ShapeError, "'mask'", "(8, 8)", "(6, 6)");
  d = mha.state_dict();
  d.erase("out_proj.bias");
  d["out_proj.biass"] = Tensor({4});
  EXPECT_THROW_WITH(mha.load_state_dict(d), ArgumentError, "missing", "\"out_proj.bias\"",
                    "unexpected", "\"out_proj.biass\"");
}

// --- set_num_threads ----------------------------------------------------------------------

TEST(BadInput, SetNumThreads) {
  set_num_threads(0);
  const int default_threads = num_threads();
  for (int n : {-1, -1000, INT_MIN}) {
    set_num_threads(3);
    set_num_threads(n);  // n <= 0 restores the default
    EXPECT_EQ(num_threads(), default_threads) << "n = " << n;
  }
  set_num_threads(3);
  const int three = num_threads();  // 3, or oneTBB's limit when that is lower
  for (int n : {kMaxThreads + 1, 8388608, INT_MAX}) {
    const std::string value = "n = " + std::to_string(n);
    EXPECT_THROW_WITH(set_num_threads(n), ArgumentError, value.c_str(), "kMaxThreads = 1024");
    EXPECT_EQ(num_threads(), three) << "changed by a failed set_num_threads(" << n << ")";
  }
  // The largest count is valid, clamped to oneTBB's limit (tbb_stderr_test.cc
  // checks that nothing is printed), and gives the same bits.
  MultiHeadAttention mha(8, 8, 70, 0.0, 2);
  const Tensor x = random_tensor({2, 70, 8}, 3);
  set_num_threads(1);
  const Tensor one = mha.forward(x);
  set_num_threads(kMaxThreads);
  const size_t limit =
      tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism);
  EXPECT_EQ(num_threads(), std::min(kMaxThreads, static_cast<int>(limit)));
  EXPECT_TRUE(same_bits(mha.forward(x), one));
  set_num_threads(0);
}

// --- forward(x, &x), huge dropout masks and projections, moved-from modules -------------

// The weights output may be the input itself: every module reads x before it
// writes the weights (the wrapper overwrote x before its heads read it, then
// threw a ShapeError having changed x).
TEST(BadInput, WeightsOutputMayBeTheInput) {
  manual_seed(kSeed);
  CausalModules m;
  m.ca.eval();
  m.wrapper.eval();
  m.mha.eval();
  const Tensor x0 = random_tensor({2, 5, 3}, 11);
  for (const auto& item : m.forwards()) {
    SCOPED_TRACE(item.first);
    Tensor expected_weights;
    const Tensor expected = item.second(x0, &expected_weights);
    Tensor x = x0;
    Tensor y;
    EXPECT_NO_THROW(y = item.second(x, &x));
    EXPECT_TRUE(same_bits(y, expected));
    EXPECT_TRUE(same_bits(x, expected_weights));
  }
  SelfAttentionV1 v1(3, 2);
  SelfAttentionV2 v2(3, 2);
  const Tensor s0 = random_tensor({4, 3}, 12);
  Tensor w1, w2;
  const Tensor y1 = v1.forward(s0, &w1), y2 = v2.forward(s0, &w2);
  Tensor s = s0;
  EXPECT_TRUE(same_bits(v1.forward(s, &s), y1));
  EXPECT_TRUE(same_bits(s, w1));
  s = s0;
  EXPECT_TRUE(same_bits(v2.forward(s, &s), y2));
  EXPECT_TRUE(same_bits(s, w2));
}

// A dropout keep mask (one byte per attention weight) larger than memory is
// an attn error drawing nothing, not std::bad_alloc: 2^21 tokens of d_in = 1
// are an 8 MiB input but 4 TiB of mask.
TEST(BadInput, DropoutMaskBeyondMemoryIsAnAttnError) {
  const Dropout d(0.5), all(1.0);
  for (const Dropout* dropout : {&d, &all}) {
    EXPECT_THROW_NO_DRAWS(dropout->draw_keep_mask(int64_t{1} << 42), ArgumentError,
                          "count = 4398046511104", "memory");
  }
  constexpr int64_t kTokens = int64_t{1} << 21;
  CausalAttention ca(1, 1, kTokens, 0.5);
  MultiHeadAttentionWrapper wrapper(1, 1, kTokens, 0.5, 2);
  MultiHeadAttention mha(1, 2, kTokens, 0.5, 2);
  const Tensor x({1, kTokens, 1});
  EXPECT_THROW_NO_DRAWS(ca.forward(x), ShapeError, "CausalAttention", "(1, 2097152, 2097152)",
                        "memory");
  EXPECT_THROW_NO_DRAWS(wrapper.forward(x), ShapeError, "CausalAttention", "(1, 2097152, 2097152)");
  EXPECT_THROW_NO_DRAWS(mha.forward(x), ShapeError, "MultiHeadAttention",
                        "(1, 2, 2097152, 2097152)", "memory");
}

// MultiHeadAttention's (batch * num_tokens, 3 * d_out) projections beyond
// memory, from an input that fits (d_in = 1): a ShapeError naming x's shape
// (was std::bad_alloc from the scratch allocation).
TEST(BadInput, MultiHeadAttentionProjectionsBeyondMemory) {
  const uint64_t memory = detail::physical_memory_bytes();
  if (memory == 0) GTEST_SKIP() << "physical memory unknown";
  constexpr int64_t kDOut = 2048;
  const auto tokens = static_cast<int64_t>(memory / (3 * kDOut * sizeof(float)) + 1);
  MultiHeadAttention mha(1, kDOut, tokens, 0.0, 1);
  mha.eval();
  const Tensor x({1, tokens, 1});
  const std::string shape = shape_to_string(x.shape());
  EXPECT_THROW_NO_DRAWS(mha.forward(x), ShapeError, "MultiHeadAttention", shape.c_str(),
                        "3 * d_out = 6144", "memory");
}

// A moved-from module keeps its sizes but not its tensors (shape {0}):
// forward and quantize_dynamic throw ArgumentError instead of reading null
// or freed weights (was: null dereference, a heap overflow in quantize,
// front() of an empty vector in the wrapper), and assigning restores it.
TEST(BadInput, MovedFromModulesThrow) {
  const Tensor x2 = random_tensor({2, 3}, 13);
  const Tensor x3 = random_tensor({1, 2, 3}, 14);
  {
    Linear a(3, 4);
    const Linear b = std::move(a);
    EXPECT_THROW_WITH(a.forward(x2), ArgumentError, "moved from", "in_features = 3");
    EXPECT_THROW_WITH(quantize_dynamic(a), ArgumentError, "moved from");
    a = b;
    EXPECT_TRUE(same_bits(a.forward(x2), b.forward(x2)));
  }
  {
    SelfAttentionV1 a(3, 4);
    const SelfAttentionV1 b = std::move(a);
    EXPECT_THROW_WITH(a.forward(x2), ArgumentError, "SelfAttentionV1", "moved from");
  }
  {
    SelfAttentionV2 a(3, 4);
    const SelfAttentionV2 b = std::move(a);
    EXPECT_THROW_WITH(a.forward(x2), ArgumentError, "moved from");
    EXPECT_THROW_WITH(quantize_dynamic(a), ArgumentError, "moved from");
  }
  {
    CausalAttention a(3, 4, 6, 0.0);
    const CausalAttention b = std::move(a);
    EXPECT_THROW_WITH(a.forward(x3), ArgumentError, "moved from");
    EXPECT_THROW_WITH(quantize_dynamic(a), ArgumentError, "moved from");
  }
  {
    MultiHeadAttentionWrapper a(3, 4, 6, 0.0, 2);
    const MultiHeadAttentionWrapper b = std::move(a);
    EXPECT_EQ(a.num_heads(), 0);
    EXPECT_EQ(a.d_in(), 0);
    EXPECT_EQ(a.d_out(), 0);
    EXPECT_THROW_WITH(a.forward(x3), ArgumentError, "MultiHeadAttentionWrapper", "moved from");
    a = b;
    EXPECT_TRUE(same_bits(a.forward(x3), b.forward(x3)));
  }
  for (bool quantized : {false, true}) {
    SCOPED_TRACE(quantized ? "quantized" : "float");
    MultiHeadAttention original(3, 4, 6, 0.0, 2);
    original.eval();
    MultiHeadAttention a = quantized ? quantize_dynamic(original) : original;
    const MultiHeadAttention b = std::move(a);
    EXPECT_THROW_WITH(a.forward(x3), ArgumentError, "moved from");
    KVCache cache = a.make_cache(1);
    EXPECT_THROW_WITH(a.forward(x3, cache), ArgumentError, "moved from");
    EXPECT_EQ(cache.size(), 0);
    EXPECT_THROW_WITH(quantize_dynamic(a), ArgumentError, "moved from");
    a = b;
    EXPECT_TRUE(same_bits(a.forward(x3), b.forward(x3)));
  }
  // A moved-from cache: ShapeError naming its keys' shape (was a write
  // through a null pointer), and nothing cached.
  MultiHeadAttention mha(3, 4, 6, 0.0, 2);
  mha.eval();
  KVCache cache = mha.make_cache(1);
  mha.forward(x3, cache);
  const KVCache moved = std::move(cache);
  EXPECT_THROW_WITH(mha.forward(x3, cache), ShapeError, "(moved from: no storage)");
  EXPECT_EQ(moved.size(), 2);
  cache = moved;
  EXPECT_NO_THROW(mha.forward(x3, cache));
  EXPECT_EQ(cache.size(), 4);
}

}  // namespace
}  // namespace attn
