// Module behaviour that does not need PyTorch data: parameter counts, state
// dict keys, strict loading, errors, causality, wrapper vs fused, threads.
#include <oneapi/tbb/global_control.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "test_util.h"

namespace attn {
namespace {

using testing::random_tensor;

// What num_threads() is for a requested count: clamped to oneTBB's limit.
int clamped(int threads) {
  const size_t limit =
      tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism);
  return std::min(threads, static_cast<int>(limit));
}

std::vector<std::string> keys_of(const StateDict& dict) {
  std::vector<std::string> keys;
  for (const auto& item : dict) keys.push_back(item.first);
  return keys;
}

TEST(Modules, Exercise33ParameterCount) {
  MultiHeadAttention gpt2(768, 768, 1024, 0.0, 12);
  EXPECT_EQ(gpt2.num_parameters(), 2360064);
  EXPECT_EQ(gpt2.head_dim(), 64);
  MultiHeadAttention with_bias(768, 768, 1024, 0.0, 12, true);
  EXPECT_EQ(with_bias.num_parameters(), 2362368);
}

TEST(Modules, ParameterCountsExcludeBuffers) {
  EXPECT_EQ(SelfAttentionV1(3, 2).num_parameters(), 18);
  EXPECT_EQ(SelfAttentionV2(3, 2, true).num_parameters(), 24);
  EXPECT_EQ(CausalAttention(3, 2, 6, 0.0).num_parameters(), 18);
  EXPECT_EQ(MultiHeadAttentionWrapper(3, 2, 6, 0.0, 2).num_parameters(), 36);
  EXPECT_EQ(MultiHeadAttention(3, 2, 6, 0.0, 2).num_parameters(), 18 + 6);
}

TEST(Modules, StateDictKeysArePyTorchs) {
  using V = std::vector<std::string>;
  EXPECT_EQ(keys_of(SelfAttentionV1(3, 2).state_dict()), (V{"W_key", "W_query", "W_value"}));
  EXPECT_EQ(keys_of(SelfAttentionV2(3, 2).state_dict()),
            (V{"W_key.weight", "W_query.weight", "W_value.weight"}));
  EXPECT_EQ(keys_of(CausalAttention(3, 2, 6, 0.0, true).state_dict()),
            (V{"W_key.bias", "W_key.weight", "W_query.bias", "W_query.weight", "W_value.bias",
               "W_value.weight", "mask"}));
  const StateDict wrapper = MultiHeadAttentionWrapper(3, 2, 6, 0.0, 2).state_dict();
  EXPECT_EQ(wrapper.size(), 8u);
  EXPECT_EQ(wrapper.count("heads.1.W_value.weight"), 1u);
  EXPECT_EQ(wrapper.count("heads.0.mask"), 1u);
  EXPECT_EQ(keys_of(MultiHeadAttention(3, 4, 6, 0.0, 2).state_dict()),
            (V{"W_key.weight", "W_query.weight", "W_value.weight", "mask", "out_proj.bias",
               "out_proj.weight"}));
  const StateDict mha = MultiHeadAttention(3, 4, 6, 0.0, 2).state_dict();
  EXPECT_EQ(mha.at("W_query.weight").shape(), (std::vector<int64_t>{4, 3}));
  EXPECT_EQ(mha.at("mask").shape(), (std::vector<int64_t>{6, 6}));
  EXPECT_EQ(mha.at("mask").at({0, 1}), 1.0f);
  EXPECT_EQ(mha.at("mask").at({1, 1}), 0.0f);
}

TEST(Modules, LoadStateDictIsStrict) {
  MultiHeadAttention mha(5, 4, 8, 0.0, 2, true);
  const StateDict original = mha.state_dict();
  StateDict good = MultiHeadAttention(5, 4, 8, 0.0, 2, true).state_dict();

  StateDict missing = good;
  missing.erase("W_key.bias");
  EXPECT_THROW_WITH(mha.load_state_dict(missing), ArgumentError, "missing", "W_key.bias");

  StateDict unexpected = good;
  unexpected["extra.weight"] = Tensor({1});
  EXPECT_THROW_WITH(mha.load_state_dict(unexpected), ArgumentError, "unexpected", "extra.weight");

  StateDict misshaped = good;
  misshaped["out_proj.weight"] = Tensor({4, 5});
  EXPECT_THROW_WITH(mha.load_state_dict(misshaped), ShapeError, "out_proj.weight", "(4, 5)",
                    "(4, 4)");

  StateDict bad_mask = good;
  bad_mask["mask"].at({3, 1}) = 1.0f;
  EXPECT_THROW_WITH(mha.load_state_dict(bad_mask), ArgumentError, "mask", "(3, 1)");

  // A failed load leaves the module as it was.
  const StateDict after_failures = mha.state_dict();
  for (const auto& item : original) EXPECT_TENSOR_EQ(after_failures.at(item.first), item.second);
  mha.load_state_dict(good);
  const StateDict loaded = mha.state_dict();
  EXPECT_TENSOR_EQ(loaded.at("W_query.weight"), good.at("W_query.weight"));
}

TEST(Modules, LoadedWeightsAreUsed) {
  // Loading must refresh derived data (the concatenated QKV weight).
  MultiHeadAttention a(6, 4, 5, 0.0, 2, true), b(6, 4, 5, 0.0, 2, true);
  const Tensor x = random_tensor({2, 5, 6}, 3);
  b.load_state_dict(a.state_dict());
  EXPECT_TENSOR_EQ(b.forward(x), a.forward(x));
  CausalAttention c(6, 4, 5, 0.0), d(6, 4, 5, 0.0);
  d.load_state_dict(c.state_dict());
  EXPECT_TENSOR_EQ(d.forward(x), c.forward(x));
}

TEST(Modules, ConstructorErrorsNameTheArguments) {
  EXPECT_THROW_WITH(MultiHeadAttention(3, 5, 6, 0.0, 2), ArgumentError, "d_out (5)",
                    "num_heads (2)");
  EXPECT_THROW_WITH(MultiHeadAttention(3, 4, 6, 0.0, 0), ArgumentError, "num_heads");
  EXPECT_THROW_WITH(MultiHeadAttention(3, 4, 0, 0.0, 2), ArgumentError, "context_length");
  EXPECT_THROW_WITH(MultiHeadAttentionWrapper(3, 2, 6, 0.0, -1), ArgumentError, "num_heads");
  EXPECT_THROW_WITH(CausalAttention(3, 2, 6, 1.5), ArgumentError, "between 0 and 1", "1.5");
  EXPECT_THROW_WITH(Dropout(-0.1), ArgumentError, "between 0 and 1");
  EXPECT_THROW_WITH(SelfAttentionV1(0, 2), ArgumentError, "d_in");
  EXPECT_THROW_WITH(SelfAttentionV2(3, 0), ArgumentError, "out_features");
}

TEST(Modules, ABadConfigurationDrawsNoRandomNumbers) {
  manual_seed(7);
  EXPECT_THROW(MultiHeadAttention(3, 5, 6, 0.0, 2), ArgumentError);
  const Tensor after = rand({4});
  manual_seed(7);
  EXPECT_TENSOR_EQ(after, rand({4}));
}

TEST(Modules, InputErrorsNameTheShapes) {
  MultiHeadAttention mha(3, 4, 6, 0.0, 2);
  EXPECT_THROW_WITH(mha.forward(Tensor({2, 7, 3})), ShapeError, "(2, 7, 3)", "num_tokens = 7",
                    "context_length = 6");
  EXPECT_THROW_WITH(mha.forward(Tensor({2, 6, 4})), ShapeError, "(2, 6, 4)", "d_in=3");
  EXPECT_THROW_WITH(mha.forward(Tensor({6, 3})), ShapeError, "(6, 3)");
  MultiHeadAttentionWrapper wrapper(3, 2, 6, 0.0, 2);
  EXPECT_THROW_WITH(wrapper.forward(Tensor({1, 7, 3})), ShapeError, "context_length = 6");
  CausalAttention ca(3, 2, 6, 0.0);
  EXPECT_THROW_WITH(ca.forward(Tensor({1, 2, 6, 3})), ShapeError, "(1, 2, 6, 3)");
  SelfAttentionV1 v1(3, 2);
  EXPECT_THROW_WITH(v1.forward(Tensor({2, 6, 3})), ShapeError, "(2, 6, 3)", "(num_tokens, d_in=3)");
  SelfAttentionV2 v2(3, 2);
  EXPECT_THROW_WITH(v2.forward(Tensor({6, 2})), ShapeError, "(6, 2)");
  Linear linear(3, 2);
  EXPECT_THROW_WITH(linear.forward(Tensor({6, 2})), ShapeError, "(6, 2)", "in_features = 3");
}

TEST(Modules, Exercise31TransferWeights) {
  manual_seed(789);
  SelfAttentionV2 v2(3, 2);
  SelfAttentionV1 v1(3, 2);
  transfer_weights(v2, v1);
  const Tensor x = random_tensor({6, 3}, 11);
  const Tensor out_v1 = v1.forward(x), out_v2 = v2.forward(x);
  EXPECT_TENSOR_NEAR(out_v1, out_v2, 1e-6);
  EXPECT_EQ(v1.W_query().at({2, 1}), v2.W_query().weight().at({1, 2}));

  SelfAttentionV1 wrong(4, 2);
  EXPECT_THROW_WITH(transfer_weights(v2, wrong), ShapeError, "(2, 3)", "(4, 2)");
  SelfAttentionV2 biased(3, 2, true);
  EXPECT_THROW_WITH(transfer_weights(biased, v1), ArgumentError, "qkv_bias");
}

TEST(Modules, CausalityFutureTokensDoNotChangeThePast) {
  const int64_t T = 37;
  MultiHeadAttention mha(8, 12, 40, 0.0, 3, true);
  MultiHeadAttentionWrapper wrapper(8, 4, 40, 0.0, 3);
  Tensor x = random_tensor({2, T, 8}, 5);
  const Tensor before_mha = mha.forward(x), before_wrapper = wrapper.forward(x);
  for (int64_t t : {int64_t{0}, int64_t{1}, int64_t{16}, T - 2}) {
    Tensor changed = x;
    for (int64_t b = 0; b < 2; ++b) {
      for (int64_t s = t + 1; s < T; ++s) {
        for (int64_t d = 0; d < 8; ++d) changed.at({b, s, d}) = 100.0f * (d + 1) - s;
      }
    }
    const Tensor after_mha = mha.forward(changed), after_wrapper = wrapper.forward(changed);
    for (int64_t b = 0; b < 2; ++b) {
      for (int64_t s = 0; s <= t; ++s) {
        for (int64_t d = 0; d < 12; ++d) {
          EXPECT_EQ(after_mha.at({b, s, d}), before_mha.at({b, s, d})) << t << " " << s;
          EXPECT_EQ(after_wrapper.at({b, s, d}), before_wrapper.at({b, s, d}));
        }
      }
    }
  }
}

TEST(Modules, NaNReachesOnlyTheTokensThatSeeIt) {
  MultiHeadAttention mha(3, 4, 6, 0.0, 2);
  MultiHeadAttentionWrapper wrapper(3, 2, 6, 0.0, 2);
  Tensor x = random_tensor({1, 5, 3}, 12);
  x.at({0, 2, 1}) = NAN;
  for (const Tensor& y : {mha.forward(x), wrapper.forward(x)}) {
    for (int64_t t = 0; t < 5; ++t) {
      for (int64_t d = 0; d < 4; ++d) EXPECT_EQ(std::isnan(y.at({0, t, d})), t >= 2) << t;
    }
  }
}

TEST(Modules, AttentionWeightsAreCausalAndNormalized) {
  MultiHeadAttention mha(5, 6, 9, 0.0, 3);
  Tensor weights;
  const Tensor out = mha.forward(random_tensor({2, 9, 5}, 8), &weights);
  ASSERT_EQ(weights.shape(), (std::vector<int64_t>{2, 3, 9, 9}));
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t h = 0; h < 3; ++h) {
      for (int64_t i = 0; i < 9; ++i) {
        double sum = 0;
        for (int64_t j = 0; j < 9; ++j) {
          if (j > i) {
            EXPECT_EQ(weights.at({b, h, i, j}), 0.0f);
          }
          sum += weights.at({b, h, i, j});
        }
        EXPECT_NEAR(sum, 1.0, 1e-6);
      }
    }
  }
  // Asking for the weights does not change the output.
  EXPECT_TENSOR_NEAR(mha.forward(random_tensor({2, 9, 5}, 8)), out, 1e-6);
}

// The fused module with W_query/W_key/W_value stacked from the wrapper's heads
// gives the wrapper's output, times out_proj.
TEST(Modules, WrapperEqualsFusedWithStackedWeights) {
  for (bool qkv_bias : {false, true}) {
    const int64_t d_in = 7, head_dim = 5, heads = 3, ctx = 11, T = 11;
    MultiHeadAttentionWrapper wrapper(d_in, head_dim, ctx, 0.0, heads, qkv_bias);
    MultiHeadAttention fused(d_in, head_dim * heads, ctx, 0.0, heads, qkv_bias);
    StateDict dict = fused.state_dict();
    const StateDict w = wrapper.state_dict();
    for (const char* name : {"W_query", "W_key", "W_value"}) {
      Tensor& weight = dict[std::string(name) + ".weight"];
      for (int64_t h = 0; h < heads; ++h) {
        const Tensor& part = w.at("heads." + std::to_string(h) + "." + name + ".weight");
        std::memcpy(weight.data() + h * head_dim * d_in, part.data(), part.numel() * 4);
        if (qkv_bias) {
          const Tensor& b = w.at("heads." + std::to_string(h) + "." + name + ".bias");
          std::memcpy(dict[std::string(name) + ".bias"].data() + h * head_dim, b.data(),
                      4 * head_dim);
        }
      }
    }
    fused.load_state_dict(dict);
    const Tensor x = random_tensor({3, T, d_in}, 21);
    const Tensor expected = fused.out_proj().forward(wrapper.forward(x));
    EXPECT_TENSOR_NEAR(fused.forward(x), expected, 1e-5);
  }
}

TEST(Modules, SameBitsForAnyThreadCount) {
  MultiHeadAttention mha(64, 96, 200, 0.0, 6, true);
  MultiHeadAttentionWrapper wrapper(64, 16, 200, 0.0, 6);
  const Tensor x = random_tensor({3, 200, 64}, 4);
  set_num_threads(1);
  const Tensor one = mha.forward(x), one_w = wrapper.forward(x);
  for (int threads : {2, 3, 8}) {
    set_num_threads(threads);
    EXPECT_EQ(num_threads(), clamped(threads));
    EXPECT_TENSOR_EQ(mha.forward(x), one);
    EXPECT_TENSOR_EQ(wrapper.forward(x), one_w);
  }
  set_num_threads(0);
}

TEST(Modules, DropoutOnlyInTrainingMode) {
  MultiHeadAttention mha(4, 4, 8, 0.5, 2);
  const Tensor x = random_tensor({2, 8, 4}, 9);
  EXPECT_TRUE(mha.is_training());
  manual_seed(1);
  const Tensor train1 = mha.forward(x);
  manual_seed(1);
  EXPECT_TENSOR_EQ(mha.forward(x), train1);  // same seed, same mask
  mha.eval();
  const Tensor eval1 = mha.forward(x);
  EXPECT_FALSE(allclose(eval1, train1));
  EXPECT_TENSOR_EQ(mha.forward(x), eval1);
  MultiHeadAttention no_dropout(4, 4, 8, 0.0, 2);
  no_dropout.load_state_dict(mha.state_dict());
  EXPECT_TENSOR_EQ(no_dropout.forward(x), eval1);
}

TEST(Modules, FlashAndMaterializedPathsAgree) {
  for (int64_t T : {1, 5, 64, 65, 150}) {
    MultiHeadAttention mha(40, 48, 150, 0.0, 3, true);
    const Tensor x = random_tensor({2, T, 40}, T);
    const Tensor flash = mha.forward(x);
    Tensor weights;
    const Tensor with_weights = mha.forward(x, &weights);
    mha.set_attention_path(MultiHeadAttention::AttentionPath::kMaterialized);
    const Tensor materialized = mha.forward(x);
    EXPECT_TENSOR_NEAR(materialized, flash, 2e-6);
    // kMaterialized runs the algorithm that returns the weights (the same
    // operations, bitwise), not the flash kernel, whose online softmax rounds
    // differently.
    EXPECT_TENSOR_EQ(materialized, with_weights);
    if (T >= 64) {
      EXPECT_FALSE(allclose(flash, with_weights, 0.0f, 0.0f)) << "T = " << T;
    }
  }
}

TEST(Modules, SingleTokenAndEmptyBatch) {
  MultiHeadAttention mha(3, 4, 6, 0.0, 2);
  const Tensor x = random_tensor({2, 1, 3}, 2);
  Tensor weights;
  const Tensor out = mha.forward(x, &weights);
  EXPECT_EQ(out.shape(), (std::vector<int64_t>{2, 1, 4}));
  EXPECT_EQ(weights.at({1, 1, 0, 0}), 1.0f);
  EXPECT_EQ(mha.forward(Tensor({0, 4, 3})).shape(), (std::vector<int64_t>{0, 4, 4}));
}

}  // namespace
}  // namespace attn

namespace attn {
namespace {

// Several host threads calling forward on one module (eval mode) at once get
// the single-threaded result: forward keeps no mutable state.
TEST(Modules, ConcurrentForwardInEvalMode) {
  MultiHeadAttention mha(32, 48, 64, 0.5, 4, true);
  mha.eval();
  std::vector<Tensor> inputs, expected;
  for (uint64_t i = 0; i < 4; ++i) {
    inputs.push_back(testing::random_tensor({2, 64, 32}, 100 + i));
    expected.push_back(mha.forward(inputs.back()));
  }
  std::vector<std::thread> threads;
  std::vector<int> mismatches(inputs.size(), 0);
  for (size_t t = 0; t < inputs.size(); ++t) {
    threads.emplace_back([&, t] {
      for (int repeat = 0; repeat < 20; ++repeat) {
        const Tensor out = mha.forward(inputs[t]);
        if (std::memcmp(out.data(), expected[t].data(), 4 * out.numel()) != 0) ++mismatches[t];
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int m : mismatches) EXPECT_EQ(m, 0);
}

}  // namespace
}  // namespace attn

namespace attn {
namespace {

TEST(Threads, EnvironmentVariableSetsTheDefault) {
  const int hardware = [] {
    unsetenv("ATTN_NUM_THREADS");
    set_num_threads(0);
    return num_threads();
  }();
  EXPECT_GE(hardware, 1);
  setenv("ATTN_NUM_THREADS", "1", 1);
  set_num_threads(0);  // back to the default, which reads the variable
  EXPECT_EQ(num_threads(), 1);
  setenv("ATTN_NUM_THREADS", "3", 1);
  set_num_threads(0);
  EXPECT_EQ(num_threads(), clamped(3));
  set_num_threads(5);  // an explicit count wins
  EXPECT_EQ(num_threads(), clamped(5));
  for (const char* bad : {"0", "-2", "abc", "4x", ""}) {
    setenv("ATTN_NUM_THREADS", bad, 1);
    set_num_threads(0);
    EXPECT_EQ(num_threads(), hardware) << "ATTN_NUM_THREADS=" << bad;
  }
  unsetenv("ATTN_NUM_THREADS");
  set_num_threads(0);
}

}  // namespace
}  // namespace attn
