// Tests of simd/matmul.h: every compiled Highway target against the scalar
// reference (double accumulation), for sizes below, at and above the register
// tile and the K/N cache blocks, padded strides, misaligned views, both B
// layouts, bias, scale, accumulate and K = 0; splits over rows and columns,
// single rows included, bit-exact against the whole. Matrices end exactly at the end
// of their allocation and their row padding holds NaN, so a kernel reading
// outside its rectangle either produces NaN or is caught by valgrind/ASan;
// C's padding holds a sentinel that must survive.

#include "simd/matmul.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/simd/matmul_test_util.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "tests/simd/matmul_test.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "hwy/tests/hwy_gtest.h"
#include "simd/matmul-inl.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {
namespace {

using matmul_test::Case;
using matmul_test::Matrix;
using matmul_test::Problem;

// This target's tile and blocks.
constexpr size_t kMR = matmul_detail::kMR;
constexpr size_t kNR = matmul_detail::kNR;
constexpr size_t kKC = matmul_detail::kMaxKC;
constexpr size_t kLanes = matmul_detail::kLanes;

// Runs the kernel of this target on one case and checks it against the
// reference; returns the result for bit comparisons.
Matrix RunKernel(const Problem& pr, const char* what = "MatMulKernel") {
  Matrix c = pr.c_init;
  MatMulKernel(pr.Args(&c));
  pr.Check(c, what);
  return c;
}

std::vector<size_t> AroundTile(size_t tile, size_t large) {
  std::vector<size_t> sizes = {1, 2, tile - 1, tile, tile + 1, 2 * tile + 3, large};
  if (tile <= 2) sizes.erase(sizes.begin() + 2);  // tile - 1 would be 0 or 1
  return sizes;
}

// All combinations of M, N around the tile and K around the vector/K block.
void TestMatMulShapes() {
  for (size_t m : AroundTile(kMR, 67)) {
    for (size_t n : AroundTile(kNR, 131)) {
      for (size_t k : {size_t{1}, size_t{2}, size_t{17}, size_t{67}, kKC + 1}) {
        Case cs;
        cs.m = m;
        cs.n = n;
        cs.k = k;
        cs.b_transposed = (m + n) % 2 == 0;
        RunKernel(Problem(cs));
      }
    }
  }
}

// Strides, misalignment, B layouts, bias, scale and accumulate, on shapes
// with full and edge tiles and several K blocks.
void TestMatMulOptions() {
  const size_t shapes[][3] = {{kMR + 1, kNR + 3, 67}, {2 * kMR + 3, 2 * kNR + 5, 2 * kKC + 7}};
  for (const auto& shape : shapes) {
    for (int variant = 0; variant < 64; ++variant) {
      Case cs;
      cs.m = shape[0];
      cs.n = shape[1];
      cs.k = shape[2];
      cs.b_transposed = variant & 1;
      cs.bias = variant & 2;
      cs.accumulate = variant & 4;
      cs.scale = (variant & 8) ? 0.37f : 1.0f;
      cs.offset = (variant & 16) ? 1 : 0;
      if (variant & 32) {
        cs.pad_a = 3;
        cs.pad_b = 5;
        cs.pad_c = 7;
      }
      RunKernel(Problem(cs));
    }
  }
}

// More than one column block and K block, with every option on.
void TestMatMulLarge() {
  for (bool b_transposed : {false, true}) {
    Case cs;
    cs.m = kMR + 2;
    cs.k = kKC + 3;
    cs.n = matmul_detail::ColumnBlockPanels(cs.k) * kNR + kNR + 1;
    cs.pad_a = 1;
    cs.pad_b = 2;
    cs.pad_c = 3;
    cs.offset = 1;
    cs.b_transposed = b_transposed;
    cs.bias = true;
    cs.scale = -0.5f;
    cs.accumulate = true;
    RunKernel(Problem(cs));
  }
}

// M, N or K = 0.
void TestMatMulEmpty() {
  for (int variant = 0; variant < 4; ++variant) {
    Case cs;
    cs.m = 2 * kMR + 1;
    cs.n = kNR + 1;
    cs.k = 0;
    cs.pad_c = 2;
    cs.bias = variant & 1;
    cs.accumulate = variant & 2;
    cs.scale = 3.0f;
    RunKernel(Problem(cs), "MatMulKernel K=0");
  }
  for (const size_t mn : {size_t{0}, size_t{1}}) {
    Case cs;
    cs.m = mn;
    cs.n = 1 - mn;
    cs.k = 5;
    RunKernel(Problem(cs), "MatMulKernel M or N = 0");
  }
}

// Splitting C over rows or column ranges never changes a bit.
void TestMatMulSplitsAreBitExact() {
  for (bool b_transposed : {false, true}) {
    Case cs;
    cs.m = 3 * kMR + 3 * simd::kMatMulDotRows + 5;
    cs.n = 3 * kNR + 7;
    cs.k = kKC + 9;
    cs.pad_c = 1;
    cs.b_transposed = b_transposed;
    cs.bias = true;
    cs.accumulate = true;
    cs.scale = 0.75f;
    const Problem pr(cs);
    const Matrix whole = RunKernel(pr);

    // Rows in uneven blocks (each above simd::kMatMulDotRows, where the
    // dot-product path would round differently), and column ranges not
    // aligned to panels.
    Matrix by_rows = pr.c_init;
    const size_t rows[] = {0, simd::kMatMulDotRows + 1, 2 * simd::kMatMulDotRows + 3, cs.m};
    for (size_t part = 0; part + 1 < 4; ++part) {
      simd::MatMulArgs args = pr.Args(&by_rows);
      args.a += rows[part] * args.lda;
      args.c += rows[part] * args.ldc;
      args.m = rows[part + 1] - rows[part];
      MatMulKernel(args);
    }
    EXPECT_TRUE(matmul_test::SameBits(whole, by_rows)) << cs.Name();

    Matrix by_cols = pr.c_init;
    for (size_t c0 = 0; c0 < cs.n; c0 += 7) {
      simd::MatMulArgs args = pr.Args(&by_cols);
      args.b += b_transposed ? c0 * args.ldb : c0;
      args.c += c0;
      if (args.bias != nullptr) args.bias += c0;
      args.n = std::min<size_t>(7, cs.n - c0);
      MatMulKernel(args);
    }
    EXPECT_TRUE(matmul_test::SameBits(whole, by_cols)) << cs.Name();
  }
}

// The dot-product path (b_transposed, M <= simd::kMatMulDotRows): every M up
// to the switch, column splits bit-exact.
void TestMatMulDotPath() {
  for (size_t m = 1; m <= simd::kMatMulDotRows + 1; ++m) {
    Case cs;
    cs.m = m;
    cs.n = 4 * 4 + 3;
    cs.k = 2 * kLanes + 5;
    cs.pad_a = 1;
    cs.pad_b = 2;
    cs.pad_c = 3;
    cs.offset = 1;
    cs.b_transposed = true;
    cs.bias = true;
    cs.accumulate = true;
    cs.scale = -1.25f;
    const Problem pr(cs);
    const Matrix whole = RunKernel(pr, "MatMulKernel dot path");
    Matrix by_cols = pr.c_init;
    for (size_t c0 = 0; c0 < cs.n; c0 += 3) {
      simd::MatMulArgs args = pr.Args(&by_cols);
      args.b += c0 * args.ldb;
      args.c += c0;
      args.bias += c0;
      args.n = std::min<size_t>(3, cs.n - c0);
      MatMulKernel(args);
    }
    EXPECT_TRUE(matmul_test::SameBits(whole, by_cols)) << cs.Name();
  }
}

// PackBKernel + MatMulPackedKernel equal MatMulKernel bit for bit, also for
// column ranges, and a matrix packed with another panel width still works.
void TestMatMulPacked() {
  for (int variant = 0; variant < 8; ++variant) {
    Case cs;
    cs.m =
        simd::kMatMulDotRows + 1 + ((variant & 4) ? 2 * kMR + 3 : 0);  // tiled in MatMulKernel too
    cs.n = 2 * kNR + 3;
    cs.k = (variant & 4) ? kKC + 5 : 3;
    cs.pad_a = 2;
    cs.pad_b = 1;
    cs.pad_c = 3;
    cs.offset = 1;
    cs.b_transposed = variant & 1;
    cs.bias = variant & 2;
    cs.accumulate = variant & 2;
    cs.scale = 1.5f;
    const Problem pr(cs);
    const Matrix whole = RunKernel(pr);
    const simd::PackedMatrix packed =
        PackBKernel(pr.b.data(), pr.b.ld, cs.b_transposed, cs.k, cs.n);
    ASSERT_EQ(packed.panel_width(), kNR);
    ASSERT_EQ(packed.k(), cs.k);
    ASSERT_EQ(packed.n(), cs.n);
    const float* bias = cs.bias ? pr.bias.data() : nullptr;

    Matrix c = pr.c_init;
    MatMulPackedKernel(pr.a.data(), pr.a.ld, packed, c.data(), c.ld, cs.m, 0, cs.n, bias, cs.scale,
                       cs.accumulate);
    EXPECT_TRUE(matmul_test::SameBits(whole, c)) << "packed " << cs.Name();

    Matrix by_cols = pr.c_init;
    for (size_t c0 = 0; c0 < cs.n; c0 += 5) {
      MatMulPackedKernel(pr.a.data(), pr.a.ld, packed, by_cols.data(), by_cols.ld, cs.m, c0,
                         std::min(cs.n, c0 + 5), bias, cs.scale, cs.accumulate);
    }
    EXPECT_TRUE(matmul_test::SameBits(whole, by_cols)) << "packed columns " << cs.Name();

    // The documented layout with a foreign panel width (3) and target.
    simd::PackedMatrix foreign(cs.k, cs.n, 3, 0);
    for (size_t j = 0; j < foreign.num_panels() * 3; ++j) {
      for (size_t p = 0; p < cs.k; ++p) {
        foreign.mutable_data()[(j / 3) * cs.k * 3 + p * 3 + j % 3] = j < cs.n ? pr.OpB(p, j) : 0.0f;
      }
    }
    // PackBPanelsKernel writes the same layout, for a foreign width too, and
    // in pieces.
    simd::PackedMatrix foreign2(cs.k, cs.n, 3, 0);
    PackBPanelsKernel(pr.b.data(), pr.b.ld, cs.b_transposed, 0, 2, &foreign2);
    PackBPanelsKernel(pr.b.data(), pr.b.ld, cs.b_transposed, 2, foreign2.num_panels(), &foreign2);
    EXPECT_EQ(0, memcmp(foreign.data(), foreign2.data(),
                        cs.k * foreign.num_panels() * 3 * sizeof(float)));
    simd::PackedMatrix halves = AllocatePackedBKernel(cs.k, cs.n);
    const size_t half = halves.num_panels() / 2;
    PackBPanelsKernel(pr.b.data(), pr.b.ld, cs.b_transposed, half, halves.num_panels(), &halves);
    PackBPanelsKernel(pr.b.data(), pr.b.ld, cs.b_transposed, 0, half, &halves);
    EXPECT_EQ(
        0, memcmp(packed.data(), halves.data(), cs.k * packed.num_panels() * kNR * sizeof(float)));

    Matrix c_foreign = pr.c_init;
    MatMulPackedKernel(pr.a.data(), pr.a.ld, foreign, c_foreign.data(), c_foreign.ld, cs.m, 0, cs.n,
                       bias, cs.scale, cs.accumulate);
    EXPECT_TRUE(matmul_test::SameBits(whole, c_foreign)) << "foreign packing " << cs.Name();
  }
}

// One row at a time (M = 1: four whole panels per register tile where the
// column range allows, MicroTile<1, ...> elsewhere) gives the bits of the
// tiled rows, over several K blocks, panel groups and edges, with and
// without bias, accumulation and scale, for whole and unaligned column
// ranges (packed and unpacked B).
void TestMatMulOneRowIsBitExact() {
  for (int variant = 0; variant < 4; ++variant) {
    Case cs;
    cs.m = kMR + 2;
    cs.n = 9 * kNR + 5;
    cs.k = (variant & 1) ? 2 * kKC + 7 : 5;
    cs.pad_c = 1;
    cs.bias = variant & 2;
    cs.accumulate = variant & 2;
    cs.scale = (variant & 2) ? 0.75f : 1.0f;
    const Problem pr(cs);
    const Matrix whole = RunKernel(pr);
    const simd::PackedMatrix packed = PackBKernel(pr.b.data(), pr.b.ld, false, cs.k, cs.n);
    const float* bias = cs.bias ? pr.bias.data() : nullptr;
    for (const size_t n_begin : {size_t{0}, kNR / 2 + 1}) {
      Matrix rows = pr.c_init, unpacked = pr.c_init;
      for (size_t i = 0; i < cs.m; ++i) {
        float* c_row = rows.data() + i * rows.ld;
        const float* a_row = pr.a.data() + i * pr.a.ld;
        if (n_begin > 0) {  // the first columns through the whole-range call
          MatMulPackedKernel(a_row, pr.a.ld, packed, c_row, rows.ld, 1, 0, n_begin, bias, cs.scale,
                             cs.accumulate);
        }
        MatMulPackedKernel(a_row, pr.a.ld, packed, c_row, rows.ld, 1, n_begin, cs.n, bias, cs.scale,
                           cs.accumulate);
        simd::MatMulArgs args = pr.Args(&unpacked);
        args.a = a_row;
        args.c += i * args.ldc;
        args.m = 1;
        MatMulKernel(args);
      }
      EXPECT_TRUE(matmul_test::SameBits(whole, rows)) << "one row, packed " << cs.Name();
      EXPECT_TRUE(matmul_test::SameBits(whole, unpacked)) << "one row " << cs.Name();
    }
  }
}

}  // namespace
// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace attn {

HWY_BEFORE_TEST(MatMulTest);
HWY_EXPORT_AND_TEST_P(MatMulTest, TestMatMulShapes);
HWY_EXPORT_AND_TEST_P(MatMulTest, TestMatMulOptions);
HWY_EXPORT_AND_TEST_P(MatMulTest, TestMatMulLarge);
HWY_EXPORT_AND_TEST_P(MatMulTest, TestMatMulEmpty);
HWY_EXPORT_AND_TEST_P(MatMulTest, TestMatMulSplitsAreBitExact);
HWY_EXPORT_AND_TEST_P(MatMulTest, TestMatMulDotPath);
HWY_EXPORT_AND_TEST_P(MatMulTest, TestMatMulPacked);
HWY_EXPORT_AND_TEST_P(MatMulTest, TestMatMulOneRowIsBitExact);

// The public, dispatching entry points on each target (SetUp restricts the
// supported targets to the parameter).
TEST_P(MatMulTest, DispatchedMatMul) {
  EXPECT_STREQ(simd::MatMulTargetName(), hwy::TargetName(GetParam()));
  for (bool b_transposed : {false, true}) {
    matmul_test::Case cs;
    cs.m = 37;
    cs.n = 53;
    cs.k = 300;
    cs.pad_b = 1;
    cs.offset = 1;
    cs.b_transposed = b_transposed;
    cs.bias = true;
    cs.scale = 0.5f;
    const matmul_test::Problem pr(cs);
    matmul_test::Matrix c = pr.c_init;
    simd::MatMul(pr.Args(&c));
    pr.Check(c, "simd::MatMul");

    const simd::PackedMatrix packed = simd::PackB(pr.b.data(), pr.b.ld, b_transposed, cs.k, cs.n);
    matmul_test::Matrix c_packed = pr.c_init;
    simd::MatMulPacked(pr.a.data(), pr.a.ld, packed, c_packed.data(), c_packed.ld, cs.m,
                       pr.bias.data(), cs.scale, cs.accumulate);
    EXPECT_TRUE(matmul_test::SameBits(c, c_packed));
    matmul_test::Matrix c_cols = pr.c_init;
    simd::MatMulPackedColumns(pr.a.data(), pr.a.ld, packed, c_cols.data(), c_cols.ld, cs.m, 0, 20,
                              pr.bias.data(), cs.scale, cs.accumulate);
    simd::MatMulPackedColumns(pr.a.data(), pr.a.ld, packed, c_cols.data(), c_cols.ld, cs.m, 20,
                              cs.n, pr.bias.data(), cs.scale, cs.accumulate);
    EXPECT_TRUE(matmul_test::SameBits(c, c_cols));
  }
}

// A matrix packed on one target and used on another (dispatch changed).
TEST_P(MatMulTest, PackedAcrossTargets) {
  matmul_test::Case cs;
  cs.m = 9;
  cs.n = 45;
  cs.k = 70;
  cs.b_transposed = true;
  const matmul_test::Problem pr(cs);
  hwy::SetSupportedTargetsForTest(HWY_SCALAR);
  const simd::PackedMatrix packed = simd::PackB(pr.b.data(), pr.b.ld, true, cs.k, cs.n);
  hwy::SetSupportedTargetsForTest(GetParam());
  matmul_test::Matrix c = pr.c_init;
  simd::MatMulPacked(pr.a.data(), pr.a.ld, packed, c.data(), c.ld, cs.m, nullptr, 1.0f, false);
  pr.Check(c, "PackB on SCALAR, MatMulPacked on the parameter target");
}

}  // namespace attn
#endif  // HWY_ONCE
