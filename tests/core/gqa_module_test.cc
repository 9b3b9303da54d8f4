// GroupedQueryAttention against a float64 reference of the book's math
// (grouped heads, RoPE with Llama 3 scaling, sliding windows) on every
// compiled Highway target; the flash path against the weights path; KV-cache
// decoding against one forward; equality with MultiHeadAttention when
// groups = heads without RoPE; the parameters' creation order; state_dict,
// quantize_dynamic and determinism across thread counts.
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "attn/attn.h"
#include "every_target.h"
#include "test_util.h"

namespace attn {
namespace {

using testing::decode_in_chunks;
using testing::kEveryTargetRtol;
using testing::random_tensor;
using testing::slice_tokens;

struct GqaConfig {
  int64_t d_in, d_out, context, heads, groups, window;
  bool rope, llama3, bias;
  int64_t batch, tokens;
};

GroupedQueryAttention make_module(const GqaConfig& c, uint64_t seed) {
  RopeConfig rope;
  rope.enabled = c.rope;
  if (c.llama3) {
    rope.theta_base = 500000.0;
    rope.scaling_factor = 32.0;
    rope.original_context_length = 64;  // short, so that the scaling changes frequencies
  }
  manual_seed(seed);
  return GroupedQueryAttention(c.d_in, c.d_out, c.context, c.heads, c.groups, rope, c.window,
                               c.bias);
}

// y (rows, out) = x (rows, in) · Wᵀ + b in double.
std::vector<double> linear_ref(const std::vector<double>& x, int64_t rows, const Linear& lin) {
  const int64_t in = lin.in_features(), out = lin.out_features();
  std::vector<double> y(static_cast<size_t>(rows * out));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < out; ++o) {
      double sum = lin.has_bias() ? lin.bias().data()[o] : 0.0;
      for (int64_t i = 0; i < in; ++i) sum += x[r * in + i] * lin.weight().data()[o * in + i];
      y[r * out + o] = sum;
    }
  }
  return y;
}

// RoPE in double on rows of `heads` heads of hd at positions first + t.
void rope_ref(std::vector<double>& x, int64_t batch, int64_t T, int64_t heads, int64_t hd,
              const std::vector<float>& inv_freq, int64_t first) {
  const int64_t half = hd / 2;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t h = 0; h < heads; ++h) {
        double* row = x.data() + ((b * T + t) * heads + h) * hd;
        for (int64_t c = 0; c < half; ++c) {
          const float angle = static_cast<float>(first + t) * inv_freq[c];
          const double cs = std::cos(static_cast<double>(angle));
          const double sn = std::sin(static_cast<double>(angle));
          const double x1 = row[c], x2 = row[c + half];
          row[c] = x1 * cs - x2 * sn;
          row[c + half] = x2 * cs + x1 * sn;
        }
      }
    }
  }
}

// The module's forward in double: (batch, T, d_out).
Tensor forward_ref(const GroupedQueryAttention& m, const Tensor& x) {
  const int64_t batch = x.size(0), T = x.size(1), H = m.num_heads(), G = m.num_kv_groups();
  const int64_t hd = m.head_dim(), d = m.d_out(), W = m.sliding_window();
  const std::vector<double> xd(x.data(), x.data() + x.numel());
  std::vector<double> q = linear_ref(xd, batch * T, m.W_query());
  std::vector<double> k = linear_ref(xd, batch * T, m.W_key());
  const std::vector<double> v = linear_ref(xd, batch * T, m.W_value());
  if (m.rope().enabled) {
    rope_ref(q, batch, T, H, hd, m.rope_inv_freq(), 0);
    rope_ref(k, batch, T, G, hd, m.rope_inv_freq(), 0);
  }
  std::vector<double> ctx(static_cast<size_t>(batch * T * d));
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / (H / G);
      for (int64_t i = 0; i < T; ++i) {
        const int64_t first = W > 0 ? std::max<int64_t>(0, i - W + 1) : 0;
        std::vector<double> s(static_cast<size_t>(i + 1), 0.0);
        double max = -INFINITY;
        for (int64_t j = first; j <= i; ++j) {
          double dot = 0.0;
          for (int64_t c = 0; c < hd; ++c) {
            dot += q[((b * T + i) * H + h) * hd + c] * k[((b * T + j) * G + g) * hd + c];
          }
          s[j] = dot * scale;
          max = std::max(max, s[j]);
        }
        double sum = 0.0;
        for (int64_t j = first; j <= i; ++j) sum += (s[j] = std::exp(s[j] - max));
        for (int64_t c = 0; c < hd; ++c) {
          double acc = 0.0;
          for (int64_t j = first; j <= i; ++j) acc += s[j] * v[((b * T + j) * G + g) * hd + c];
          ctx[(b * T + i) * d + h * hd + c] = acc / sum;
        }
      }
    }
  }
  const std::vector<double> y = linear_ref(ctx, batch * T, m.out_proj());
  Tensor out({batch, T, d});
  for (size_t i = 0; i < y.size(); ++i) out.data()[i] = static_cast<float>(y[i]);
  return out;
}

// Configurations: GQA, MQA, groups = heads with biases, no RoPE, Llama 3
// scaling, windows of 1, 3, T - 1 and beyond T, head_dim 64, odd sizes.
const GqaConfig kConfigs[] = {
    // d_in d_out ctx heads groups window rope llama3 bias batch T
    {40, 64, 80, 8, 2, 0, true, false, false, 2, 70},
    {33, 48, 100, 6, 1, 0, true, true, false, 1, 97},
    {24, 32, 40, 4, 4, 0, true, false, true, 2, 40},
    {24, 32, 40, 4, 4, 0, false, false, true, 1, 33},
    {20, 64, 140, 8, 4, 1, true, false, false, 1, 130},
    {20, 48, 140, 6, 3, 3, true, true, true, 1, 131},
    {16, 32, 70, 4, 2, 69, true, false, false, 2, 70},
    {16, 32, 70, 4, 2, 500, true, false, false, 1, 65},
    {72, 128, 100, 2, 1, 17, true, true, false, 1, 100},  // head_dim 64, MQA
    {12, 16, 10, 2, 1, 0, true, false, false, 3, 1},      // T = 1
};

class GqaEveryTarget : public testing::EveryTarget {};
INSTANTIATE_EVERY_TARGET(GqaEveryTarget);

TEST_P(GqaEveryTarget, ForwardMatchesFloat64Reference) {
  uint64_t seed = 10;
  for (const GqaConfig& c : kConfigs) {
    const GroupedQueryAttention m = make_module(c, seed);
    const Tensor x = random_tensor({c.batch, c.tokens, c.d_in}, seed++);
    const Tensor want = forward_ref(m, x);
    SCOPED_TRACE("heads " + std::to_string(c.heads) + " groups " + std::to_string(c.groups) +
                 " window " + std::to_string(c.window) + " T " + std::to_string(c.tokens));
    EXPECT_TENSOR_NEAR(m.forward(x), want, kEveryTargetRtol);
    Tensor weights;
    EXPECT_TENSOR_NEAR(m.forward(x, &weights), want, kEveryTargetRtol);
    ASSERT_EQ(weights.shape(), (std::vector<int64_t>{c.batch, c.heads, c.tokens, c.tokens}));
    // Each row of weights sums to 1 over its window and is 0 outside it.
    for (int64_t row = 0; row < c.batch * c.heads * c.tokens; ++row) {
      const int64_t i = row % c.tokens;
      const int64_t first = c.window > 0 ? std::max<int64_t>(0, i - c.window + 1) : 0;
      double sum = 0.0;
      for (int64_t j = 0; j < c.tokens; ++j) {
        const float w = weights.data()[row * c.tokens + j];
        if (j < first || j > i) {
          ASSERT_EQ(w, 0.0f) << "row " << row << " key " << j;
        }
        sum += w;
      }
      EXPECT_NEAR(sum, 1.0, 1e-5);
    }
  }
}

TEST_P(GqaEveryTarget, DecodingEqualsOneForward) {
  uint64_t seed = 40;
  for (const GqaConfig& c : kConfigs) {
    const GroupedQueryAttention m = make_module(c, seed);
    const Tensor x = random_tensor({c.batch, c.tokens, c.d_in}, seed++);
    const Tensor full = m.forward(x);
    std::vector<int64_t> prompt_then_tokens = {c.tokens / 2 + 1};
    for (int64_t t = prompt_then_tokens[0]; t < c.tokens; ++t) prompt_then_tokens.push_back(1);
    SCOPED_TRACE("window " + std::to_string(c.window) + " T " + std::to_string(c.tokens));
    EXPECT_TENSOR_NEAR(decode_in_chunks(m, x, prompt_then_tokens), full, kEveryTargetRtol);
    if (c.tokens > 5) {
      EXPECT_TENSOR_NEAR(decode_in_chunks(m, x, {2, 3, c.tokens - 5}), full, kEveryTargetRtol);
    }
  }
}

// Positions past 600, decoded one token at a time after a long prompt.
TEST_P(GqaEveryTarget, LongPositionsDecode) {
  const GqaConfig c{16, 32, 700, 4, 2, 100, true, true, false, 1, 650};
  const GroupedQueryAttention m = make_module(c, 3);
  const Tensor x = random_tensor({1, c.tokens, c.d_in}, 3);
  const Tensor want = forward_ref(m, x);
  EXPECT_TENSOR_NEAR(m.forward(x), want, kEveryTargetRtol);
  std::vector<int64_t> chunks = {640};
  for (int i = 0; i < 10; ++i) chunks.push_back(1);
  EXPECT_TENSOR_NEAR(decode_in_chunks(m, x, chunks), want, kEveryTargetRtol);
}

// groups = heads without RoPE is the book's MultiHeadAttention (whose
// out_proj has a bias: zero here).
TEST_P(GqaEveryTarget, GroupsEqualHeadsIsMultiHeadAttention) {
  for (bool bias : {false, true}) {
    manual_seed(5);
    MultiHeadAttention mha(40, 48, 64, 0.0, 6, bias);
    mha.eval();
    StateDict dict = mha.state_dict();
    RopeConfig no_rope;
    no_rope.enabled = false;
    GroupedQueryAttention gqa(40, 48, 64, 6, 6, no_rope, 0, bias);
    StateDict gqa_dict;
    for (const char* name : {"W_query", "W_key", "W_value"}) {
      gqa_dict[std::string(name) + ".weight"] = dict.at(std::string(name) + ".weight");
      if (bias) gqa_dict[std::string(name) + ".bias"] = dict.at(std::string(name) + ".bias");
    }
    gqa_dict["out_proj.weight"] = dict.at("out_proj.weight");
    gqa.load_state_dict(gqa_dict);
    dict.at("out_proj.bias") = Tensor({48});
    mha.load_state_dict(dict);
    const Tensor x = random_tensor({2, 64, 40}, 6);
    EXPECT_TENSOR_NEAR(gqa.forward(x), mha.forward(x), 1e-6);
    KVCache a = gqa.make_cache(2), b = mha.make_cache(2);
    EXPECT_TENSOR_NEAR(gqa.forward(slice_tokens(x, 0, 10), a),
                       mha.forward(slice_tokens(x, 0, 10), b), 1e-6);
  }
}

TEST(GroupedQueryAttention, ParametersDrawnInTheBooksOrder) {
  for (bool bias : {false, true}) {
    manual_seed(123);
    const GroupedQueryAttention m(24, 32, 16, 8, 2, RopeConfig(), 0, bias);
    manual_seed(123);
    const Linear key(24, 8, bias), value(24, 8, bias), query(24, 32, bias), out(32, 32, false);
    EXPECT_TENSOR_EQ(m.W_key().weight(), key.weight());
    EXPECT_TENSOR_EQ(m.W_value().weight(), value.weight());
    EXPECT_TENSOR_EQ(m.W_query().weight(), query.weight());
    EXPECT_TENSOR_EQ(m.out_proj().weight(), out.weight());
    EXPECT_FALSE(m.out_proj().has_bias());
    if (bias) EXPECT_TENSOR_EQ(m.W_query().bias(), query.bias());
    // d_in*d_out + 2 * d_in*kv_dim + d_out^2 (+ biases).
    EXPECT_EQ(m.num_parameters(), 24 * 32 + 2 * 24 * 8 + 32 * 32 + (bias ? 32 + 16 : 0));
    std::vector<std::string> keys;
    for (const auto& entry : m.state_dict()) keys.push_back(entry.first);
    std::vector<std::string> want = {"W_key.weight", "W_query.weight", "W_value.weight",
                                     "out_proj.weight"};
    if (bias)
      want = {"W_key.bias",   "W_key.weight",   "W_query.bias",   "W_query.weight",
              "W_value.bias", "W_value.weight", "out_proj.weight"};
    EXPECT_EQ(keys, want);
  }
}

TEST(GroupedQueryAttention, StateDictRoundTripAndStrictLoad) {
  const GqaConfig c{20, 32, 30, 4, 2, 7, true, true, true, 1, 30};
  GroupedQueryAttention a = make_module(c, 1), b = make_module(c, 2);
  const Tensor x = random_tensor({1, 30, 20}, 7);
  b.load_state_dict(a.state_dict());
  EXPECT_TENSOR_EQ(b.forward(x), a.forward(x));
  StateDict extra = a.state_dict();
  extra["mask"] = Tensor({30, 30});
  EXPECT_THROW(b.load_state_dict(extra), ArgumentError);
  StateDict wrong = a.state_dict();
  wrong["W_key.weight"] = Tensor({17, 20});
  EXPECT_THROW_WITH(b.load_state_dict(wrong), ShapeError, "W_key.weight");
  EXPECT_TENSOR_EQ(b.forward(x), a.forward(x));  // unchanged
}

TEST(GroupedQueryAttention, QuantizeDynamic) {
  const GqaConfig c{256, 256, 128, 8, 2, 0, true, true, false, 2, 128};
  GroupedQueryAttention m = make_module(c, 11);
  const Tensor x = random_tensor({2, 128, 256}, 12);
  const Tensor want = m.forward(x);
  const GroupedQueryAttention q = quantize_dynamic(m);
  const Tensor got = q.forward(x);
  double num = 0.0, den = 0.0;
  for (int64_t i = 0; i < got.numel(); ++i) {
    num += std::pow(double(got.data()[i]) - want.data()[i], 2);
    den += std::pow(double(want.data()[i]), 2);
  }
  EXPECT_LT(std::sqrt(num / den), 3e-2);
  EXPECT_GT(std::sqrt(num / den), 0.0);
  EXPECT_TRUE(q.W_query().weight().numel() > 0);
  // Decoding through the int8 module equals its own forward.
  EXPECT_TENSOR_NEAR(decode_in_chunks(q, x, {100, 28}), got, 1e-5);
  // The original is unchanged; load_state_dict quantizes again.
  EXPECT_TENSOR_EQ(m.forward(x), want);
  GroupedQueryAttention q2 = quantize_dynamic(make_module(c, 99));
  q2.load_state_dict(m.state_dict());
  EXPECT_TENSOR_EQ(q2.forward(x), got);
}

TEST(GroupedQueryAttention, SameBitsForAnyThreadCount) {
  const GqaConfig c{64, 128, 300, 8, 2, 50, true, true, false, 2, 300};
  const GroupedQueryAttention m = make_module(c, 21);
  const Tensor x = random_tensor({2, 300, 64}, 22);
  const int before = num_threads();
  set_num_threads(1);
  const Tensor one = m.forward(x);
  set_num_threads(3);
  const Tensor three = m.forward(x);
  set_num_threads(before);
  EXPECT_TENSOR_EQ(one, three);
}

TEST(GroupedQueryAttention, CacheChecks) {
  const GqaConfig c{16, 32, 20, 4, 2, 0, true, false, false, 1, 20};
  const GroupedQueryAttention m = make_module(c, 1);
  KVCache cache = m.make_cache(1);
  EXPECT_EQ(cache.num_heads(), 2);
  EXPECT_EQ(cache.head_dim(), 8);
  const Tensor x = random_tensor({1, 15, 16}, 2);
  m.forward(x, cache);
  EXPECT_THROW_WITH(m.forward(x, cache), ShapeError, "context_length = 20");
  KVCache wrong(1, 4, 8, 20);  // num_heads key/value heads, not num_kv_groups
  EXPECT_THROW_WITH(m.forward(x, wrong), ShapeError, "KVCache");
  KVCache other_batch = m.make_cache(2);
  EXPECT_THROW(m.forward(x, other_batch), ShapeError);
}

}  // namespace
}  // namespace attn
