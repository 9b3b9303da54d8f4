// The module-level paths on every compiled Highway target (every_target.h):
// flash vs materialized attention against a float64 reference, the three
// causal modules across the 64-token block boundaries, and non-finite values
// in later tokens staying out of earlier ones. The golden PyTorch cases
// (golden_test.cc) and the KV cache (kv_cache_test.cc) have their own
// per-target suites.
//
// Tolerance: kEveryTargetRtol (every_target.h) on every target, FMA or not.
#include "every_target.h"

#include <cmath>
#include <limits>
#include <vector>

#include "simd/matmul.h"
#include "test_util.h"

namespace attn {
namespace {

using testing::kEveryTargetRtol;
using testing::random_tensor;

// --- float64 reference ---------------------------------------------------

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

std::vector<double> to_double(const Tensor& t) {
  return std::vector<double>(t.data(), t.data() + t.numel());
}

// Causal attention of (batch, T) tokens over the projections q, k, v (rows of
// width d = heads * hd; head h uses columns [h*hd, (h+1)*hd)), in double.
std::vector<double> causal_attention_ref(const std::vector<double>& q, const std::vector<double>& k,
                                         const std::vector<double>& v, int64_t batch, int64_t T,
                                         int64_t d, int64_t heads) {
  const int64_t hd = d / heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  std::vector<double> out(static_cast<size_t>(batch * T * d), 0.0);
  std::vector<double> w(static_cast<size_t>(T));
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t i = 0; i < T; ++i) {
        double max = -INFINITY;
        for (int64_t j = 0; j <= i; ++j) {
          double s = 0;
          for (int64_t c = 0; c < hd; ++c) {
            s += q[(b * T + i) * d + h * hd + c] * k[(b * T + j) * d + h * hd + c];
          }
          w[j] = s * scale;
          max = std::max(max, w[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j <= i; ++j) sum += (w[j] = std::exp(w[j] - max));
        for (int64_t j = 0; j <= i; ++j) {
          for (int64_t c = 0; c < hd; ++c) {
            out[(b * T + i) * d + h * hd + c] += w[j] / sum * v[(b * T + j) * d + h * hd + c];
          }
        }
      }
    }
  }
  return out;
}

Tensor to_tensor(std::vector<int64_t> shape, const std::vector<double>& values) {
  return Tensor(std::move(shape), std::vector<float>(values.begin(), values.end()));
}

Tensor mha_ref(const MultiHeadAttention& m, const Tensor& x) {
  const int64_t B = x.size(0), T = x.size(1), d = m.d_out();
  const std::vector<double> xd = to_double(x);
  const std::vector<double> ctx =
      causal_attention_ref(linear_ref(xd, B * T, m.W_query()), linear_ref(xd, B * T, m.W_key()),
                           linear_ref(xd, B * T, m.W_value()), B, T, d, m.num_heads());
  return to_tensor({B, T, d}, linear_ref(ctx, B * T, m.out_proj()));
}

Tensor causal_ref(const CausalAttention& m, const Tensor& x) {
  const int64_t B = x.size(0), T = x.size(1), d = m.d_out();
  const std::vector<double> xd = to_double(x);
  return to_tensor({B, T, d}, causal_attention_ref(linear_ref(xd, B * T, m.W_query()),
                                                   linear_ref(xd, B * T, m.W_key()),
                                                   linear_ref(xd, B * T, m.W_value()), B, T, d, 1));
}

Tensor wrapper_ref(const MultiHeadAttentionWrapper& m, const Tensor& x) {
  const int64_t B = x.size(0), T = x.size(1), d = m.d_out(), H = m.num_heads();
  std::vector<double> out(static_cast<size_t>(B * T * d * H));
  for (int64_t h = 0; h < H; ++h) {
    const Tensor head = causal_ref(m.heads()[static_cast<size_t>(h)], x);
    for (int64_t r = 0; r < B * T; ++r) {
      for (int64_t c = 0; c < d; ++c) out[(r * H + h) * d + c] = head.data()[r * d + c];
    }
  }
  return to_tensor({B, T, d * H}, out);
}

// --- tests ------------------------------------------------------------------

class EveryTargetModules : public testing::EveryTarget {};
INSTANTIATE_EVERY_TARGET(EveryTargetModules);

// The mock really switches libattn's dispatch (not only this file's).
TEST_P(EveryTargetModules, DispatchFollowsTheTarget) {
  EXPECT_STREQ(simd::MatMulTargetName(), hwy::TargetName(target()));
}

// Flash and materialized paths against float64, across the 64-query block
// boundaries and head dims that are not a multiple of any vector width.
TEST_P(EveryTargetModules, FlashAndMaterializedMatchFloat64) {
  struct Shape {
    int64_t d_in, d_out, heads;
  };
  for (const Shape s : {Shape{40, 48, 3}, Shape{16, 64, 1}, Shape{9, 14, 2}, Shape{24, 12, 12}}) {
    for (int64_t T : {1, 5, 63, 64, 65, 130}) {
      SCOPED_TRACE(::testing::Message() << "d_in " << s.d_in << " d_out " << s.d_out << " heads "
                                        << s.heads << " T " << T);
      MultiHeadAttention mha(s.d_in, s.d_out, 130, 0.0, s.heads, true);
      const Tensor x = random_tensor({2, T, s.d_in}, static_cast<uint64_t>(T + 7 * s.d_in));
      const Tensor expected = mha_ref(mha, x);
      const Tensor flash = mha.forward(x);
      Tensor weights;
      const Tensor with_weights = mha.forward(x, &weights);
      mha.set_attention_path(MultiHeadAttention::AttentionPath::kMaterialized);
      const Tensor materialized = mha.forward(x);
      EXPECT_TENSOR_NEAR(flash, expected, kEveryTargetRtol);
      EXPECT_TENSOR_NEAR(materialized, expected, kEveryTargetRtol);
      // kMaterialized runs the very algorithm that returns the weights.
      EXPECT_TENSOR_EQ(materialized, with_weights);
    }
  }
}

TEST_P(EveryTargetModules, CausalAttentionAndWrapperMatchFloat64) {
  for (int64_t T : {1, 63, 64, 65, 130}) {
    SCOPED_TRACE(::testing::Message() << "T " << T);
    const Tensor x = random_tensor({2, T, 11}, static_cast<uint64_t>(T));
    CausalAttention ca(11, 20, 130, 0.0, true);
    EXPECT_TENSOR_NEAR(ca.forward(x), causal_ref(ca, x), kEveryTargetRtol);
    Tensor weights;
    EXPECT_TENSOR_NEAR(ca.forward(x, &weights), causal_ref(ca, x), kEveryTargetRtol);
    MultiHeadAttentionWrapper wrapper(11, 6, 130, 0.0, 3);
    EXPECT_TENSOR_NEAR(wrapper.forward(x), wrapper_ref(wrapper, x), kEveryTargetRtol);
  }
}

// --- non-finite values in later tokens ----------------------------------------
//
// Decided behaviour: keys and values a query cannot see never reach it, on
// every path. A NaN or inf in token p of x makes that token's Q, K, V
// non-finite; tokens before p must keep exactly the outputs (and attention
// weights) they have for the clean input, on the flash path and on the
// materialized one (weights requested, dropout active, or kMaterialized).

constexpr float kNonFinite[] = {std::numeric_limits<float>::quiet_NaN(),
                                std::numeric_limits<float>::infinity(),
                                -std::numeric_limits<float>::infinity()};

// Positions p at which the non-finite value is placed for T tokens.
std::vector<int64_t> bad_positions(int64_t T) {
  std::vector<int64_t> p = {T - 1};
  if (T / 2 != T - 1) p.push_back(T / 2);
  if (T > 65) p.push_back(64);  // the first token of the second query block
  return p;
}

Tensor with_bad_token(const Tensor& x, int64_t p, float value) {
  Tensor y = x;
  for (int64_t b = 0; b < x.size(0); ++b) y.at({b, p, 3}) = value;
  return y;
}

// Rows [0, p) of every (batch, ...) slab of a (B, T, ...) or (B, H, T, T)
// tensor: elements equal bitwise to the clean run's and finite.
void expect_prefix_unchanged(const Tensor& got, const Tensor& clean, int64_t p, const char* what) {
  ASSERT_EQ(got.shape(), clean.shape());
  const int64_t T = got.dim() == 4 ? got.size(2) : got.size(1);
  const int64_t width = got.size(-1);
  const int64_t slabs = got.numel() / (T * width);
  int64_t nonfinite = 0, changed = 0;
  for (int64_t s = 0; s < slabs; ++s) {
    for (int64_t t = 0; t < p; ++t) {
      for (int64_t c = 0; c < width; ++c) {
        const int64_t i = (s * T + t) * width + c;
        if (!std::isfinite(got.data()[i])) ++nonfinite;
        if (std::memcmp(&got.data()[i], &clean.data()[i], sizeof(float)) != 0) ++changed;
      }
    }
  }
  EXPECT_EQ(nonfinite, 0) << what << ": non-finite values before token " << p;
  EXPECT_EQ(changed, 0) << what << ": values before token " << p << " changed";
}

// The first p tokens of x (batch, T, d) as (batch, p, d).
Tensor first_tokens(const Tensor& x, int64_t p) {
  const int64_t B = x.size(0), T = x.size(1), d = x.size(2);
  Tensor out({B, p, d});
  for (int64_t b = 0; b < B; ++b) {
    std::memcpy(out.data() + b * p * d, x.data() + b * T * d, sizeof(float) * p * d);
  }
  return out;
}

class NonFiniteLaterTokens : public testing::EveryTarget {};
INSTANTIATE_EVERY_TARGET(NonFiniteLaterTokens);

TEST_P(NonFiniteLaterTokens, FlashPathKeepsEarlierTokensFinite) {
  for (int64_t T : {1, 63, 64, 65, 130}) {
    MultiHeadAttention mha(16, 32, 130, 0.0, 4, true);
    CausalAttention ca(16, 8, 130, 0.0);
    MultiHeadAttentionWrapper wrapper(16, 8, 130, 0.0, 2);
    const Tensor x = random_tensor({2, T, 16}, static_cast<uint64_t>(T));
    const Tensor clean = mha.forward(x), clean_ca = ca.forward(x), clean_w = wrapper.forward(x);
    for (int64_t p : bad_positions(T)) {
      for (float bad : kNonFinite) {
        SCOPED_TRACE(::testing::Message() << "T " << T << " x[:, " << p << ", 3] = " << bad);
        const Tensor y = with_bad_token(x, p, bad);
        const Tensor out = mha.forward(y);
        expect_prefix_unchanged(out, clean, p, "MultiHeadAttention flash");
        expect_prefix_unchanged(ca.forward(y), clean_ca, p, "CausalAttention");
        expect_prefix_unchanged(wrapper.forward(y), clean_w, p, "MultiHeadAttentionWrapper");
        // The bad token itself sees its own key: its output is not finite.
        EXPECT_FALSE(std::isfinite(out.at({0, p, 0})));
      }
    }
  }
}

TEST_P(NonFiniteLaterTokens, MaterializedPathKeepsEarlierTokensFinite) {
  for (int64_t T : {1, 63, 64, 65, 130}) {
    MultiHeadAttention mha(16, 32, 130, 0.0, 4, true);
    MultiHeadAttention materialized(16, 32, 130, 0.0, 4, true);
    materialized.load_state_dict(mha.state_dict());
    materialized.set_attention_path(MultiHeadAttention::AttentionPath::kMaterialized);
    MultiHeadAttention dropout(16, 32, 130, 0.2, 4, true);  // training mode
    CausalAttention ca(16, 8, 130, 0.0);
    MultiHeadAttentionWrapper wrapper(16, 8, 130, 0.0, 2);
    const Tensor x = random_tensor({2, T, 16}, static_cast<uint64_t>(T));
    const Tensor flash = mha.forward(x);
    const Tensor clean = materialized.forward(x);
    Tensor clean_weights, clean_ca_weights, clean_w_weights;
    mha.forward(x, &clean_weights);
    const Tensor clean_ca = ca.forward(x, &clean_ca_weights);
    const Tensor clean_w = wrapper.forward(x, &clean_w_weights);
    manual_seed(5);
    const Tensor clean_dropout = dropout.forward(x);
    for (int64_t p : bad_positions(T)) {
      for (float bad : kNonFinite) {
        SCOPED_TRACE(::testing::Message() << "T " << T << " x[:, " << p << ", 3] = " << bad);
        const Tensor y = with_bad_token(x, p, bad);
        const Tensor out = materialized.forward(y);
        expect_prefix_unchanged(out, clean, p, "kMaterialized");
        // Equal to the flash path's earlier tokens, to rounding.
        EXPECT_TENSOR_NEAR(first_tokens(out, p), first_tokens(flash, p), kEveryTargetRtol);
        Tensor weights;
        expect_prefix_unchanged(mha.forward(y, &weights), clean, p, "weights requested");
        expect_prefix_unchanged(weights, clean_weights, p, "MultiHeadAttention weights");
        manual_seed(5);
        expect_prefix_unchanged(dropout.forward(y), clean_dropout, p, "dropout active");
        expect_prefix_unchanged(ca.forward(y, &weights), clean_ca, p, "CausalAttention");
        expect_prefix_unchanged(weights, clean_ca_weights, p, "CausalAttention weights");
        expect_prefix_unchanged(wrapper.forward(y, &weights), clean_w, p, "wrapper");
        expect_prefix_unchanged(weights, clean_w_weights, p, "wrapper weights");
      }
    }
  }
}

}  // namespace
}  // namespace attn
