// Helpers shared by the library tests.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "attn/attn.h"

namespace attn {
namespace testing {

inline std::string data_path(const std::string& name) {
  return std::string(ATTN_TEST_DATA_DIR) + "/" + name;
}

// The golden data's tolerance measure (tests/data/README.md): the largest
// |a - b| / (|b| + max|b|) over elements, so that a test passes when
// allclose(a, b, rtol, atol = rtol * max|b|). An element-wise rtol alone is
// not meaningful where outputs come from cancelling sums: PyTorch's own
// float32 result is off by more than that from float64 there.
inline double max_relative_error(const Tensor& a, const Tensor& b) {
  double largest = 0;
  for (int64_t i = 0; i < b.numel(); ++i)
    largest = std::max(largest, std::fabs(double(b.data()[i])));
  double worst = 0;
  for (int64_t i = 0; i < b.numel(); ++i) {
    const double x = a.data()[i], y = b.data()[i];
    if (std::isnan(x) != std::isnan(y)) return INFINITY;
    if (std::isnan(x) || x == y) continue;
    worst = std::max(worst, std::fabs(x - y) / (std::fabs(y) + largest));
  }
  return worst;
}

#define EXPECT_TENSOR_NEAR(actual, expected, rtol)                                               \
  do {                                                                                           \
    const ::attn::Tensor& a_ = (actual);                                                         \
    const ::attn::Tensor& e_ = (expected);                                                       \
    ASSERT_EQ(a_.shape(), e_.shape())                                                            \
        << ::attn::shape_to_string(a_.shape()) << " vs " << ::attn::shape_to_string(e_.shape()); \
    EXPECT_LE(::attn::testing::max_relative_error(a_, e_), (rtol));                              \
  } while (0)

#define EXPECT_TENSOR_EQ(actual, expected)                                       \
  do {                                                                           \
    const ::attn::Tensor& a_ = (actual);                                         \
    const ::attn::Tensor& e_ = (expected);                                       \
    ASSERT_EQ(a_.shape(), e_.shape());                                           \
    EXPECT_EQ(0, std::memcmp(a_.data(), e_.data(), sizeof(float) * a_.numel())); \
  } while (0)

// Expects `statement` to throw E with a message containing every fragment.
#define EXPECT_THROW_WITH(statement, E, ...)                                    \
  do {                                                                          \
    try {                                                                       \
      statement;                                                                \
      ADD_FAILURE() << "expected " #E " from " #statement;                      \
    } catch (const E& e_) {                                                     \
      for (const char* fragment_ : {__VA_ARGS__}) {                             \
        EXPECT_NE(std::string(e_.what()).find(fragment_), std::string::npos)    \
            << "message \"" << e_.what() << "\" lacks \"" << fragment_ << "\""; \
      }                                                                         \
    }                                                                           \
  } while (0)

// Whether a and b have the same shape and the same bits.
inline bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() &&
         std::memcmp(a.data(), b.data(), sizeof(float) * static_cast<size_t>(a.numel())) == 0;
}

// ||a - b|| / ||b|| over all elements, in double.
inline double relative_l2(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  double num = 0, den = 0;
  for (int64_t i = 0; i < b.numel(); ++i) {
    const double d = double(a.data()[i]) - b.data()[i];
    num += d * d;
    den += double(b.data()[i]) * b.data()[i];
  }
  return std::sqrt(num / den);
}

// Tokens [begin, end) of x (batch, T, d).
inline Tensor slice_tokens(const Tensor& x, int64_t begin, int64_t end) {
  const int64_t batch = x.size(0), T = x.size(1), d = x.size(2);
  Tensor out({batch, end - begin, d});
  for (int64_t b = 0; b < batch; ++b) {
    std::memcpy(out.data() + b * (end - begin) * d, x.data() + (b * T + begin) * d,
                sizeof(float) * static_cast<size_t>((end - begin) * d));
  }
  return out;
}

// x through `cache` in chunks of these sizes (a MultiHeadAttention or a
// GroupedQueryAttention), the outputs stitched back into (batch, T, d_out).
template <typename M>
Tensor decode_in_chunks(const M& module, KVCache& cache, const Tensor& x,
                        const std::vector<int64_t>& chunks) {
  const int64_t batch = x.size(0), T = x.size(1), d_out = module.d_out();
  Tensor out({batch, T, d_out});
  int64_t begin = 0;
  for (const int64_t chunk : chunks) {
    const Tensor part = module.forward(slice_tokens(x, begin, begin + chunk), cache);
    EXPECT_EQ(part.shape(), (std::vector<int64_t>{batch, chunk, d_out}));
    if (part.shape() != std::vector<int64_t>{batch, chunk, d_out}) return out;
    for (int64_t b = 0; b < batch; ++b) {
      std::memcpy(out.data() + (b * T + begin) * d_out, part.data() + b * chunk * d_out,
                  sizeof(float) * static_cast<size_t>(chunk * d_out));
    }
    begin += chunk;
  }
  EXPECT_EQ(begin, T);
  return out;
}

// The same through a fresh cache of the module's, which must then hold T tokens.
template <typename M>
Tensor decode_in_chunks(const M& module, const Tensor& x, const std::vector<int64_t>& chunks) {
  KVCache cache = module.make_cache(x.size(0));
  const Tensor out = decode_in_chunks(module, cache, x, chunks);
  EXPECT_EQ(cache.size(), x.size(1));
  return out;
}

// Uniform values in [-1, 1) from a private generator (does not touch the
// global stream).
inline Tensor random_tensor(std::vector<int64_t> shape, uint64_t seed) {
  Tensor t(std::move(shape));
  Generator g(seed);
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = g.uniform_float(-1.0f, 1.0f);
  return t;
}

}  // namespace testing
}  // namespace attn
