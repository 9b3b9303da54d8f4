#include <cstring>

#include "test_util.h"

namespace attn {
namespace {

using testing::random_tensor;

TEST(Tensor, ZeroFilledAlignedRowMajor) {
  Tensor t({2, 3, 5});
  EXPECT_EQ(t.dim(), 3);
  EXPECT_EQ(t.numel(), 30);
  EXPECT_EQ(t.size(-1), 5);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data()) % Tensor::kAlignment, 0u);
  for (int64_t i = 0; i < t.numel(); ++i) EXPECT_EQ(t.data()[i], 0.0f);
  t.at({1, 2, 4}) = 7.0f;
  EXPECT_EQ(t.data()[1 * 15 + 2 * 5 + 4], 7.0f);
}

TEST(Tensor, ValuesAndCopies) {
  Tensor t({2, 2}, {1, 2, 3, 4});
  Tensor copy = t;
  copy.at({0, 0}) = 9;
  EXPECT_EQ(t.at({0, 0}), 1.0f);
  Tensor moved = std::move(copy);
  EXPECT_EQ(moved.at({0, 0}), 9.0f);
  EXPECT_EQ(copy.numel(), 0);  // NOLINT(bugprone-use-after-move): documented state
  EXPECT_EQ(t.reshape({4}).to_vector(), (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(t.reshape({-1, 1}).shape(), (std::vector<int64_t>{4, 1}));
}

TEST(Tensor, EdgeShapes) {
  EXPECT_EQ(Tensor().numel(), 0);
  EXPECT_EQ(Tensor(std::vector<int64_t>{}).numel(), 1);  // a scalar
  EXPECT_EQ(Tensor({0, 3}).numel(), 0);
  EXPECT_EQ(Tensor({1, 1, 1, 1}).numel(), 1);
}

TEST(Tensor, ErrorsNameTheShapes) {
  EXPECT_THROW_WITH(Tensor({2, 3}, {1, 2}), ShapeError, "(2, 3)", "6", "2");
  EXPECT_THROW_WITH(Tensor({1, 2, 3, 4, 5}), ShapeError, "(1, 2, 3, 4, 5)", "rank");
  EXPECT_THROW_WITH(Tensor({2, -1}), ShapeError, "negative");
  EXPECT_THROW_WITH(Tensor({1 << 30, 1 << 30}), ShapeError, "too large");
  Tensor t({2, 3});
  EXPECT_THROW_WITH(t.at({2, 0}), ShapeError, "(2, 3)");
  EXPECT_THROW_WITH(t.at({0}), ShapeError, "(2, 3)");
  EXPECT_THROW_WITH(t.size(2), ShapeError, "(2, 3)");
  EXPECT_THROW_WITH(t.reshape({4}), ShapeError, "(2, 3)", "(4,)");
  EXPECT_THROW(t.reshape({-1, -1}), ShapeError);
}

TEST(Tensor, Allclose) {
  const Tensor a = random_tensor({3, 4}, 1);
  Tensor b = a;
  EXPECT_TRUE(allclose(a, b));
  b.data()[5] += 1e-3f;
  EXPECT_FALSE(allclose(a, b));
  EXPECT_FALSE(allclose(a, a.reshape({4, 3})));
}

}  // namespace
}  // namespace attn
