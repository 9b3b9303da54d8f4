// Helpers shared by the library tests.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

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
