// Tests of simd/softmax.h: every compiled Highway target against the scalar
// reference (double), for row lengths around the vector width and long rows,
// inputs in 90..100 (exp overflows without the max subtraction), huge logits
// with a fused scale, causal masks with offsets, special values (-inf, +inf,
// NaN, all -inf), in place, misaligned rows and guard values after each row.

#include "simd/softmax.h"

#include <stddef.h>
#include <stdint.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

#ifndef ATTN_TESTS_SIMD_SOFTMAX_TEST_HELPERS_
#define ATTN_TESTS_SIMD_SOFTMAX_TEST_HELPERS_
namespace attn {
namespace softmax_test {

constexpr float kGuard = -777.0f;
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// rows x cols with row stride cols + pad, starting 1 float into the buffer
// when misaligned; the matrix ends at the end of its allocation. Padding
// holds kGuard.
struct Rows {
  Rows(size_t rows, size_t cols, size_t pad, bool misaligned)
      : rows(rows), cols(cols), ld(cols + pad), offset(misaligned ? 1 : 0) {
    storage.assign(offset + (rows == 0 ? 0 : (rows - 1) * ld + cols), kGuard);
  }
  float* row(size_t r) { return storage.data() + offset + r * ld; }
  const float* row(size_t r) const { return storage.data() + offset + r * ld; }
  size_t rows, cols, ld, offset;
  std::vector<float> storage;
};

// Compares `got` with the reference result `want` (same shapes): NaN where
// the reference is NaN, else a relative error of a few ulp, plus the
// rounding of the float exponent t = s*x - m (|t| ulp, |t| <= |ln w| + ln
// cols), plus that of s*x itself (|s*x| ulp, at most `logit_bound`; with FMA
// contraction s*x - m is rounded once), plus 1e-37 absolute for results in
// the denormal range; guards
// in the padding untouched; each finite row sums to 1.
inline void CheckRows(const Rows& got, const Rows& want, double logit_bound,
                      const std::string& what) {
  size_t errors = 0;
  for (size_t r = 0; r < got.rows; ++r) {
    double sum = 0.0;
    bool nan_row = false;
    for (size_t j = 0; j < got.ld && (r + 1 < got.rows || j < got.cols); ++j) {
      const float g = got.row(r)[j];
      if (j >= got.cols) {
        if (g != kGuard && ++errors < 5) {
          ADD_FAILURE() << what << ": guard after row " << r << " col " << j << " = " << g;
        }
        continue;
      }
      const float w = want.row(r)[j];
      if (std::isnan(w)) {
        nan_row = true;
        if (!std::isnan(g) && ++errors < 5) {
          ADD_FAILURE() << what << ": [" << r << "," << j << "] = " << g << ", want NaN";
        }
        continue;
      }
      sum += g;
      const double rel = (8.0 + std::fabs(std::log(double(w) + 1e-300)) +
                          std::log(double(got.cols)) + 2.0 * logit_bound) *
                         double(std::numeric_limits<float>::epsilon());
      if (!(std::fabs(double(g) - double(w)) <= rel * std::fabs(double(w)) + 1e-37) &&
          ++errors < 5) {
        ADD_FAILURE() << what << ": [" << r << "," << j << "] = " << g << ", want " << w;
      }
    }
    if (!nan_row && !(std::fabs(sum - 1.0) < 1e-5) && ++errors < 5) {
      ADD_FAILURE() << what << ": row " << r << " sums to " << sum;
    }
  }
  EXPECT_EQ(errors, 0u) << what;
}

inline simd::SoftmaxArgs MakeArgs(const Rows& in, Rows* out, float scale, bool causal,
                                  size_t causal_offset, size_t window = 0) {
  simd::SoftmaxArgs args;
  args.in = in.row(0);
  args.ld_in = in.ld;
  args.out = out->row(0);
  args.ld_out = out->ld;
  args.rows = in.rows;
  args.cols = in.cols;
  args.scale = scale;
  args.causal = causal;
  args.causal_offset = causal_offset;
  args.window = window;
  return args;
}

// Largest finite |scale * x| among the valid inputs.
inline double LogitBound(const Rows& in, float scale) {
  double bound = 0.0;
  for (size_t r = 0; r < in.rows; ++r) {
    for (size_t j = 0; j < in.cols; ++j) {
      const double y = std::fabs(double(scale * in.row(r)[j]));
      if (std::isfinite(y)) bound = std::max(bound, y);
    }
  }
  return bound;
}

inline void FillRandom(Rows* x, float lo, float hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  for (size_t r = 0; r < x->rows; ++r) {
    for (size_t j = 0; j < x->cols; ++j) x->row(r)[j] = dist(rng);
  }
}

}  // namespace softmax_test
}  // namespace attn
#endif  // ATTN_TESTS_SIMD_SOFTMAX_TEST_HELPERS_

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "tests/simd/softmax_test.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "hwy/tests/hwy_gtest.h"
#include "simd/softmax-inl.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {
namespace {

using softmax_test::kInf;
using softmax_test::kNaN;
using softmax_test::Rows;

// Runs this target's kernel out of place and in place on `in` and checks
// both against the reference.
void RunBoth(const Rows& in, float scale, bool causal, size_t causal_offset,
             const std::string& what, size_t window = 0) {
  Rows want(in.rows, in.cols, in.ld - in.cols, in.offset != 0);
  simd::MaskedSoftmaxReference(
      softmax_test::MakeArgs(in, &want, scale, causal, causal_offset, window));

  Rows out(in.rows, in.cols, in.ld - in.cols + 3, in.offset == 0);  // other stride/alignment
  MaskedSoftmaxKernel(softmax_test::MakeArgs(in, &out, scale, causal, causal_offset, window));
  const double bound = softmax_test::LogitBound(in, scale);
  softmax_test::CheckRows(out, want, bound, what + " out of place");

  Rows inplace = in;
  MaskedSoftmaxKernel(
      softmax_test::MakeArgs(inplace, &inplace, scale, causal, causal_offset, window));
  softmax_test::CheckRows(inplace, want, bound, what + " in place");
}

std::string Describe(size_t rows, size_t cols, float scale, bool causal, size_t offset) {
  return "rows=" + std::to_string(rows) + " cols=" + std::to_string(cols) +
         " scale=" + std::to_string(scale) + " causal=" + std::to_string(causal) +
         " offset=" + std::to_string(offset);
}

std::vector<size_t> Widths() {
  const size_t lanes = hn::Lanes(hn::ScalableTag<float>());
  std::vector<size_t> cols;
  for (size_t c = 1; c <= 2 * lanes + 3; ++c) cols.push_back(c);
  cols.push_back(4 * lanes + 1);
  cols.push_back(1000);
  cols.push_back(1024);
  return cols;
}

// Inputs in 90..100: exp overflows in float without the max subtraction.
void TestSoftmaxWidths() {
  for (size_t cols : Widths()) {
    for (bool misaligned : {false, true}) {
      Rows in(3, cols, misaligned ? 5 : 0, misaligned);
      softmax_test::FillRandom(&in, 90.0f, 100.0f, static_cast<uint32_t>(cols));
      for (float scale : {1.0f, 0.125f, -0.5f}) {
        RunBoth(in, scale, false, 0, Describe(3, cols, scale, false, 0));
      }
    }
  }
}

// Causal rows: valid(r) = min(cols, r + offset + 1); the masked inputs hold
// NaN, which must never be read, and the outputs there must be 0.
void TestSoftmaxCausal() {
  const size_t lanes = hn::Lanes(hn::ScalableTag<float>());
  for (size_t cols : {size_t{1}, lanes, lanes + 1, 2 * lanes + 3, size_t{37}, size_t{130}}) {
    for (size_t offset : {size_t{0}, size_t{1}, size_t{3}, cols / 2, cols + 5}) {
      const size_t rows = cols + 2;
      Rows in(rows, cols, 2, true);
      softmax_test::FillRandom(&in, -4.0f, 4.0f, static_cast<uint32_t>(cols * 31 + offset));
      for (size_t r = 0; r < rows; ++r) {
        for (size_t j = r + offset + 1; j < cols; ++j) in.row(r)[j] = kNaN;
      }
      RunBoth(in, 0.3f, true, offset, Describe(rows, cols, 0.3f, true, offset));
    }
  }
}

// Sliding windows: row r sees columns [r + offset + 1 - W, r + offset]; the
// masked inputs on both sides hold NaN, never read, and their outputs are 0.
void TestSoftmaxWindow() {
  const size_t lanes = hn::Lanes(hn::ScalableTag<float>());
  for (size_t cols : {size_t{1}, lanes + 1, size_t{37}, size_t{130}}) {
    for (size_t window : {size_t{1}, size_t{2}, lanes, lanes + 3, size_t{64}, cols + 1}) {
      for (size_t offset : {size_t{0}, size_t{3}}) {
        const size_t rows = cols;
        Rows in(rows, cols, 1, true);
        softmax_test::FillRandom(&in, 90.0f, 100.0f, static_cast<uint32_t>(cols * 7 + window));
        for (size_t r = 0; r < rows; ++r) {
          const size_t pos = r + offset;
          for (size_t j = 0; j < cols; ++j) {
            if (j > pos || j + window <= pos) in.row(r)[j] = kNaN;
          }
        }
        RunBoth(in, 0.7f, true, offset,
                Describe(rows, cols, 0.7f, true, offset) + " window=" + std::to_string(window),
                window);
      }
    }
  }
}

// Logits around 1e30 only stay finite through the fused scale; -inf entries
// give 0; a NaN, a +inf or a row of only -inf give a NaN row.
void TestSoftmaxSpecialValues() {
  const size_t lanes = hn::Lanes(hn::ScalableTag<float>());
  for (size_t cols : {size_t{1}, lanes, lanes + 3, 3 * lanes + 1, size_t{100}}) {
    Rows in(8, cols, 1, true);
    softmax_test::FillRandom(&in, -1e30f, 1e30f, static_cast<uint32_t>(cols));
    const size_t last = cols - 1;
    in.row(1)[last / 2] = -kInf;                                                  // ignored
    in.row(2)[last] = kNaN;                                                       // NaN row
    in.row(3)[0] = kInf;                                                          // NaN row
    for (size_t j = 0; j < cols; ++j) in.row(4)[j] = -kInf;                       // NaN row
    for (size_t j = 0; j < cols; ++j) in.row(5)[j] = (j == last) ? 1.0f : -kInf;  // one-hot
    for (size_t j = 0; j < cols; ++j) in.row(6)[j] = 1e30f;                       // uniform
    in.row(7)[last] = std::numeric_limits<float>::max();
    RunBoth(in, 1e-28f, false, 0, Describe(8, cols, 1e-28f, false, 0) + " huge logits");
    RunBoth(in, 1.0f, false, 0, Describe(8, cols, 1.0f, false, 0) + " huge logits unscaled");
    // Causal: the NaN in row 2 and the all -inf row only matter when valid.
    RunBoth(in, 1e-28f, true, 0, Describe(8, cols, 1e-28f, true, 0) + " huge logits");
    // Scaled logits of 1e19 and more with a scale that rounds (was NaN on AVX2
    // and AVX3: GCC fused scale * x - max into one FMA, whose exact product
    // minus the rounded maximum overflowed Exp).
    Rows big(2, cols, 1, true);
    softmax_test::FillRandom(&big, -1.0f, 1.0f, static_cast<uint32_t>(cols + 1));
    big.row(0)[last] = 1.2345e20f;
    big.row(1)[last / 2] = 2e25f;
    big.row(1)[0] = -3e25f;
    RunBoth(big, 0.1443f, false, 0, Describe(2, cols, 0.1443f, false, 0) + " large scaled logits");
  }
}

// rows = 0 or cols = 0 touch nothing.
void TestSoftmaxEmpty() {
  Rows in(2, 0, 3, false);
  Rows out = in;
  MaskedSoftmaxKernel(softmax_test::MakeArgs(in, &out, 1.0f, false, 0));
  EXPECT_EQ(in.storage, out.storage);
  Rows none(0, 5, 0, false);
  MaskedSoftmaxKernel(softmax_test::MakeArgs(none, &none, 1.0f, true, 0));
}

}  // namespace
// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace attn {

HWY_BEFORE_TEST(SoftmaxTest);
HWY_EXPORT_AND_TEST_P(SoftmaxTest, TestSoftmaxWidths);
HWY_EXPORT_AND_TEST_P(SoftmaxTest, TestSoftmaxCausal);
HWY_EXPORT_AND_TEST_P(SoftmaxTest, TestSoftmaxWindow);
HWY_EXPORT_AND_TEST_P(SoftmaxTest, TestSoftmaxSpecialValues);
HWY_EXPORT_AND_TEST_P(SoftmaxTest, TestSoftmaxEmpty);

// The public, dispatching entry point on each target.
TEST_P(SoftmaxTest, DispatchedMaskedSoftmax) {
  for (bool causal : {false, true}) {
    softmax_test::Rows in(33, 77, 3, true);
    softmax_test::FillRandom(&in, 90.0f, 100.0f, 7);
    in.row(5)[3] = -softmax_test::kInf;
    softmax_test::Rows want(33, 77, 3, true);
    softmax_test::Rows out(33, 77, 3, true);
    simd::MaskedSoftmaxReference(softmax_test::MakeArgs(in, &want, 0.25f, causal, 2));
    simd::MaskedSoftmax(softmax_test::MakeArgs(in, &out, 0.25f, causal, 2));
    softmax_test::CheckRows(out, want, softmax_test::LogitBound(in, 0.25f),
                            causal ? "simd::MaskedSoftmax causal" : "simd::MaskedSoftmax");
  }
}

}  // namespace attn
#endif  // HWY_ONCE
