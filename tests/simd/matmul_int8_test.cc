// Tests of simd/matmul_int8.h: the int8 GEMM of every compiled Highway
// target, and the AVX-512 VNNI kernel where the CPU has it, against the
// scalar reference, bit for bit (the integer sums are exact, the
// dequantization is one formula), for sizes below, at and above the
// register tiles, K not a multiple of the k step, extreme values (aq 255,
// wq +-127), zero rows and columns, K past one int32 chunk, column ranges,
// padded strides and misaligned views; QuantizeRows against its reference;
// QuantizeAndPackB's formulas; column sums past int32 and the k limit;
// repacking across kernels; and the accuracy of the whole int8 product
// against float32.
//
// Buffers end exactly at the end of their rectangle (a kernel reading past
// it is caught by ASan), float padding holds NaN, C's padding a sentinel
// that must survive.

#include "simd/matmul_int8.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "attn/error.h"
#include "gtest/gtest.h"
#include "simd/matmul_int8_internal.h"

#ifndef ATTN_TESTS_SIMD_MATMUL_INT8_TEST_HELPERS_
#define ATTN_TESTS_SIMD_MATMUL_INT8_TEST_HELPERS_
namespace attn {
namespace int8_test {

constexpr float kSentinel = 12345.0f;

// MatMulInt8's signature: the per-target kernels, the VNNI kernel and the
// dispatching entry point.
using KernelFn = void (*)(const uint8_t*, size_t, const float*, const int32_t*, size_t,
                          const simd::QuantizedMatrix&, float*, size_t, size_t, size_t,
                          const float*);

// Sizes below, at and above every tile (4, 6, 12 rows; 8, 16, 32 columns;
// k steps of 1, 2, 4).
const size_t kSizes[] = {1, 3, 4, 5, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 257};

enum class Values {
  kRandom,   // aq, zp uniform in [0, 255], wq in [-127, 127]
  kExtreme,  // aq in {0, 255}, wq in {-127, 127}, zp in {0, 255}
  kZeros,    // random, with all-zero rows of aq (zp 0) and columns of wq
};

struct Case {
  size_t m = 1, n = 1, k = 1;
  size_t pad_a = 0, pad_c = 0;  // row strides exceed widths by this
  size_t offset = 0;            // misalignment: bytes of aq, floats of C and bias
  bool bias = false;
  Values values = Values::kRandom;

  std::string Name() const {
    return "m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) +
           " pads=" + std::to_string(pad_a) + "/" + std::to_string(pad_c) +
           " offset=" + std::to_string(offset) + " bias=" + std::to_string(bias) +
           " values=" + std::to_string(static_cast<int>(values));
  }
};

// Quantized inputs, the initial C and the reference result of one case.
struct Problem {
  explicit Problem(const Case& cs)
      : cs(cs),
        ldaq(cs.k + cs.pad_a),
        ldc(cs.n + cs.pad_c),
        a_scale(cs.m),
        a_zp(cs.m),
        wq(cs.n * cs.k),
        w_scale(cs.n) {
    std::mt19937 rng(static_cast<uint32_t>(cs.m * 1000003 + cs.n * 1009 + cs.k * 7 +
                                           static_cast<int>(cs.values)));
    std::uniform_int_distribution<int> u8(0, 255), s8(-127, 127), coin(0, 1);
    std::uniform_real_distribution<float> pos(1e-3f, 2e-2f), sym(-1.0f, 1.0f);
    // aq: m rows of k bytes at stride ldaq, ending at the last byte.
    aq_storage.assign(std::max<size_t>(1, cs.offset + (cs.m == 0 ? 0 : (cs.m - 1) * ldaq + cs.k)),
                      0xA5);
    for (size_t i = 0; i < cs.m; ++i) {
      const bool zero_row = cs.values == Values::kZeros && i % 3 == 1;
      a_zp[i] = zero_row ? 0 : (cs.values == Values::kExtreme ? 255 * coin(rng) : u8(rng));
      a_scale[i] = pos(rng);
      for (size_t p = 0; p < cs.k; ++p) {
        int v = cs.values == Values::kExtreme ? 255 * coin(rng) : u8(rng);
        if (cs.values == Values::kExtreme && p % 5 == 0) v = 255;
        aq()[i * ldaq + p] = zero_row ? 0 : static_cast<uint8_t>(v);
      }
    }
    for (size_t j = 0; j < cs.n; ++j) {
      const bool zero_col = cs.values == Values::kZeros && j % 4 == 2;
      w_scale[j] = zero_col ? 1.0f : pos(rng);
      for (size_t p = 0; p < cs.k; ++p) {
        const int v = cs.values == Values::kExtreme ? (coin(rng) ? 127 : -127) : s8(rng);
        wq[j * cs.k + p] = zero_col ? 0 : static_cast<int8_t>(v);
      }
    }
    bias_storage.assign(cs.offset + cs.n + 1, std::numeric_limits<float>::quiet_NaN());
    for (size_t j = 0; j < cs.n; ++j) bias_storage[cs.offset + j] = sym(rng);
    c_init.assign(std::max<size_t>(1, cs.offset + (cs.m == 0 ? 0 : (cs.m - 1) * ldc + cs.n)),
                  kSentinel);
    // The reference, on a matrix in the scalar-friendly layout (the
    // reference reads it through QuantizedMatrix::weight, any layout works).
    const simd::QuantizedMatrix b = Pack(ReferenceLayout());
    c_ref = c_init;
    simd::MatMulInt8Reference(aq(), ldaq, a_scale.data(), a_zp.data(), cs.m, b, c(&c_ref), ldc, 0,
                              cs.n, bias());
  }

  static simd::Int8Layout ReferenceLayout() {
    simd::Int8Layout l;
    l.id = 0;
    l.panel_width = 3;
    l.k_step = 1;
    l.elem_bytes = 1;
    return l;
  }

  uint8_t* aq() { return aq_storage.data() + cs.offset; }
  const uint8_t* aq() const { return aq_storage.data() + cs.offset; }
  const float* bias() const { return cs.bias ? bias_storage.data() + cs.offset : nullptr; }
  float* c(std::vector<float>* storage) const { return storage->data() + cs.offset; }

  simd::QuantizedMatrix Pack(const simd::Int8Layout& layout) const {
    return simd::PackQuantizedB(wq.data(), cs.k, w_scale.data(), cs.n, cs.k, layout);
  }

  // C computed by `fn` on a matrix packed in `layout`, in column ranges of
  // `cols` columns (all at once when 0).
  std::vector<float> Run(KernelFn fn, const simd::QuantizedMatrix& b, size_t cols = 0) const {
    std::vector<float> out = c_init;
    if (cols == 0) cols = cs.n;
    for (size_t j0 = 0; j0 < cs.n; j0 += cols) {
      fn(aq(), ldaq, a_scale.data(), a_zp.data(), cs.m, b, c(&out), ldc, j0,
         std::min(cs.n, j0 + cols), bias());
    }
    return out;
  }

  // Bit comparison with the reference, padding included.
  void Check(const std::vector<float>& got, const std::string& what) const {
    ASSERT_EQ(got.size(), c_ref.size());
    size_t errors = 0;
    for (size_t e = 0; e < got.size(); ++e) {
      if (memcmp(&got[e], &c_ref[e], sizeof(float)) == 0) continue;
      if (++errors <= 5) {
        const size_t idx = e - std::min(e, cs.offset);
        ADD_FAILURE() << what << " " << cs.Name() << ": C[" << idx / ldc << "," << idx % ldc
                      << "] = " << got[e] << ", reference " << c_ref[e];
      }
    }
    EXPECT_EQ(errors, 0u) << what << " " << cs.Name();
  }

  Case cs;
  size_t ldaq, ldc;
  std::vector<uint8_t> aq_storage;
  std::vector<float> a_scale;
  std::vector<int32_t> a_zp;
  std::vector<int8_t> wq;  // n x k
  std::vector<float> w_scale;
  std::vector<float> bias_storage;
  std::vector<float> c_init, c_ref;
};

// The case list every kernel runs: all (M, N) of kSizes with K in
// {1, 5, 33, 100} (K not a multiple of 2 or 4 included), all K for a few
// (M, N), then extreme values, zeros, bias, strides and misalignment.
inline std::vector<Case> ShapeCases() {
  std::vector<Case> cases;
  for (size_t m : kSizes) {
    for (size_t n : kSizes) {
      for (size_t k : {size_t{1}, size_t{5}, size_t{33}, size_t{100}}) {
        Case cs;
        cs.m = m;
        cs.n = n;
        cs.k = k;
        cs.bias = (m + n + k) % 2 == 0;
        cases.push_back(cs);
      }
    }
  }
  for (size_t m : {size_t{1}, size_t{17}, size_t{33}}) {
    for (size_t n : {size_t{1}, size_t{17}, size_t{65}}) {
      for (size_t k : kSizes) {
        Case cs;
        cs.m = m;
        cs.n = n;
        cs.k = k;
        cases.push_back(cs);
      }
    }
  }
  return cases;
}

inline std::vector<Case> OptionCases() {
  std::vector<Case> cases;
  const size_t shapes[][3] = {{13, 37, 67}, {25, 65, 258}, {4, 33, 4}, {1, 100, 257}};
  for (const auto& shape : shapes) {
    for (int variant = 0; variant < 24; ++variant) {
      Case cs;
      cs.m = shape[0];
      cs.n = shape[1];
      cs.k = shape[2];
      cs.bias = variant & 1;
      cs.offset = (variant & 2) ? 1 : 0;
      if (variant & 4) {
        cs.pad_a = 3;
        cs.pad_c = 5;
      }
      cs.values = static_cast<Values>(variant / 8);
      cases.push_back(cs);
    }
  }
  return cases;
}

// Runs every case of `cases` with `fn` on matrices packed in `layout`:
// whole, and in column ranges of 7 (splitting panels).
inline void RunCases(const std::vector<Case>& cases, KernelFn fn, const simd::Int8Layout& layout,
                     const std::string& what) {
  for (const Case& cs : cases) {
    const Problem pr(cs);
    const simd::QuantizedMatrix b = pr.Pack(layout);
    pr.Check(pr.Run(fn, b), what);
    if (cs.n > 7 && cs.m < 40) pr.Check(pr.Run(fn, b, 7), what + " (columns by 7)");
    if (::testing::Test::HasFailure()) return;
  }
}

// K at and past one int32 chunk (kInt8ChunkK = 65536) with the largest
// products: row 0 all 255 with zero point 0 and row 1 all 0 with zero point
// 255, times column 0 all 127, sum to +-255 * 127 * K: 2,122,383,360 at
// K = 65536 (the int32 path at its limit), past 2^31 - 1 above it. K =
// 65537 leaves a last chunk of one k step, 131075 three chunks, the last
// partial (both odd, not a multiple of any k step). Above one chunk the
// int32 column sums the one-chunk path reads are 0, so a kernel that took
// them instead of the int64 ones fails here.
inline void RunLargeK(KernelFn fn, const simd::Int8Layout& layout, const std::string& what,
                      size_t tile_rows, size_t tile_cols) {
  for (size_t k : {simd::kInt8ChunkK, simd::kInt8ChunkK + 1, 2 * simd::kInt8ChunkK + 3}) {
    for (int variant = 0; variant < 3; ++variant) {
      Case cs;
      cs.m = variant == 2 ? tile_rows + 1 : 3;
      cs.n = variant == 2 ? tile_cols + 3 : 5;
      cs.k = k;
      cs.bias = variant != 0;
      cs.values = Values::kExtreme;
      Problem pr(cs);
      for (size_t p = 0; p < cs.k; ++p) {
        pr.aq()[p] = 255;
        pr.aq()[pr.ldaq + p] = 0;
        pr.wq[p] = 127;
      }
      pr.a_zp[0] = 0;
      pr.a_zp[1] = 255;
      const simd::QuantizedMatrix ref_b = pr.Pack(Problem::ReferenceLayout());
      pr.c_ref = pr.c_init;
      simd::MatMulInt8Reference(pr.aq(), pr.ldaq, pr.a_scale.data(), pr.a_zp.data(), cs.m, ref_b,
                                pr.c(&pr.c_ref), pr.ldc, 0, cs.n, pr.bias());
      for (size_t i : {size_t{0}, size_t{1}}) {
        const double exact = (i == 0 ? 1.0 : -1.0) * 255.0 * 127.0 * double(cs.k) *
                             double(pr.a_scale[i] * pr.w_scale[0]);
        const double got_ref = pr.c(&pr.c_ref)[i * pr.ldc] - (cs.bias ? pr.bias()[0] : 0.0f);
        EXPECT_NEAR(got_ref, exact, 1e-5 * std::fabs(exact)) << "reference, row " << i;
      }
      const simd::QuantizedMatrix b = pr.Pack(layout);
      EXPECT_EQ(b.column_sums()[0], 127 * int64_t(k));
      EXPECT_EQ(b.column_sums32()[0], k <= simd::kInt8ChunkK ? 127 * int32_t(k) : 0);
      const std::string name = what + " K = " + std::to_string(k);
      pr.Check(pr.Run(fn, b), name);
      pr.Check(pr.Run(fn, b, 2), name + " (columns by 2)");
      if (::testing::Test::HasFailure()) return;
    }
  }
}

// QuantizeRows test rows: random, zero, constant, one-signed, ties at .5,
// tiny, huge, NaN and inf.
inline std::vector<std::vector<float>> QuantizeRowsInputs(size_t k) {
  std::mt19937 rng(static_cast<uint32_t>(k));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<std::vector<float>> rows;
  auto row = [&](auto f) {
    std::vector<float> r(k);
    for (size_t j = 0; j < k; ++j) r[j] = f(j);
    rows.push_back(r);
  };
  row([&](size_t) { return u(rng); });
  row([&](size_t) { return 3.0f * u(rng) + 5.0f; });   // positive only
  row([&](size_t) { return 0.01f * u(rng) - 2.0f; });  // negative only
  row([&](size_t) { return 0.0f; });
  row([&](size_t) { return 3.5f; });
  row([&](size_t) { return -2.0f; });
  // lo = 0, hi = 255: scale 1, so x.5 are ties (round to even).
  row([&](size_t j) { return j == 0 ? 0.0f : (j == 1 ? 255.0f : float(j % 255) + 0.5f); });
  row([&](size_t j) { return (j % 2 ? 1.0f : -1.0f) * 1e-40f * float(j % 7); });  // denormals
  row([&](size_t j) { return (j % 2 ? 3e38f : -3e38f) * u(rng); });
  row([&](size_t j) { return j == k / 2 ? std::numeric_limits<float>::quiet_NaN() : u(rng); });
  row([&](size_t j) { return j == k - 1 ? std::numeric_limits<float>::infinity() : u(rng); });
  row([&](size_t j) { return j == 0 ? -std::numeric_limits<float>::infinity() : u(rng); });
  return rows;
}

using QuantizeFn = void (*)(const float*, size_t, size_t, size_t, uint8_t*, size_t, float*,
                            int32_t*);

// `fn` against QuantizeRowsReference on QuantizeRowsInputs, with padded and
// misaligned rows; aq's padding must survive.
inline void CheckQuantizeRows(QuantizeFn fn, const std::string& what) {
  for (size_t k : {size_t{0}, size_t{1}, size_t{3}, size_t{7}, size_t{8}, size_t{15}, size_t{16},
                   size_t{17}, size_t{33}, size_t{100}, size_t{257}}) {
    if (k == 0) continue;  // rows need at least one value for the specials
    const std::vector<std::vector<float>> rows = QuantizeRowsInputs(k);
    const size_t m = rows.size(), lda = k + 3, ldaq = k + 5;
    std::vector<float> a(1 + m * lda, std::numeric_limits<float>::quiet_NaN());
    for (size_t i = 0; i < m; ++i) memcpy(a.data() + 1 + i * lda, rows[i].data(), k * 4);
    std::vector<uint8_t> want(1 + m * ldaq, 0xA5), got(want);
    std::vector<float> want_scale(m), got_scale(m);
    std::vector<int32_t> want_zp(m), got_zp(m);
    simd::QuantizeRowsReference(a.data() + 1, lda, m, k, want.data() + 1, ldaq, want_scale.data(),
                                want_zp.data());
    fn(a.data() + 1, lda, m, k, got.data() + 1, ldaq, got_scale.data(), got_zp.data());
    EXPECT_EQ(0, memcmp(want.data(), got.data(), want.size())) << what << " aq, k=" << k;
    EXPECT_EQ(0, memcmp(want_scale.data(), got_scale.data(), m * 4)) << what << " scale, k=" << k;
    EXPECT_EQ(want_zp, got_zp) << what << " zero point, k=" << k;
  }
  // k = 0 and m = 0 write nothing but the parameters.
  float scale = -1.0f;
  int32_t zp = -1;
  uint8_t byte = 7;
  fn(nullptr, 0, 1, 0, &byte, 0, &scale, &zp);
  EXPECT_EQ(scale, 1.0f);
  EXPECT_EQ(zp, 0);
  EXPECT_EQ(byte, 7);
}

}  // namespace int8_test
}  // namespace attn
#endif  // ATTN_TESTS_SIMD_MATMUL_INT8_TEST_HELPERS_

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "tests/simd/matmul_int8_test.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "hwy/tests/hwy_gtest.h"
#include "simd/matmul_int8-inl.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {
namespace {

const char* TargetName() { return hwy::TargetName(HWY_TARGET); }

// This target's Highway kernel on every shape and option case.
void TestInt8Shapes() {
  int8_test::RunCases(int8_test::ShapeCases(), &MatMulInt8Kernel, int8_detail::LayoutKernel(),
                      TargetName());
}

void TestInt8Options() {
  int8_test::RunCases(int8_test::OptionCases(), &MatMulInt8Kernel, int8_detail::LayoutKernel(),
                      TargetName());
}

void TestInt8LargeK() {
  int8_test::RunLargeK(&MatMulInt8Kernel, int8_detail::LayoutKernel(), TargetName(),
                       int8_detail::kMR, int8_detail::kNR);
}

// More than one column block of packed B (and M = 0, N = 0).
void TestInt8ColumnBlocks() {
  int8_test::Case cs;
  cs.m = int8_detail::kMR + 2;
  cs.k = 1000;
  const size_t panel_bytes = cs.k * int8_detail::kNR * 2;
  cs.n = (simd::kMatMulInt8ColumnBlockBytes / panel_bytes + 1) * int8_detail::kNR + 5;
  cs.bias = true;
  cs.offset = 1;
  cs.pad_c = 2;
  int8_test::RunCases({cs}, &MatMulInt8Kernel, int8_detail::LayoutKernel(), TargetName());
  for (size_t mn : {size_t{0}, size_t{1}}) {
    int8_test::Case empty;
    empty.m = mn;
    empty.n = 1 - mn;
    empty.k = 9;
    int8_test::RunCases({empty}, &MatMulInt8Kernel, int8_detail::LayoutKernel(), TargetName());
  }
}

// The packing this target assumes matches its ReorderWidenMulAccumulate:
// one step of one column with distinct values (checked through the GEMM
// above; here directly, so that a wrong lane pairing says so).
void TestInt8LanePairing() {
  using namespace int8_detail;
  const simd::Int8Layout layout = LayoutKernel();
  const size_t k = kKStep;
  std::vector<int8_t> wq(kNR * k);
  for (size_t j = 0; j < kNR; ++j) {
    for (size_t p = 0; p < k; ++p) wq[j * k + p] = static_cast<int8_t>(j * 3 + p + 1);
  }
  const std::vector<float> ones(kNR, 1.0f);
  const simd::QuantizedMatrix b = simd::PackQuantizedB(wq.data(), k, ones.data(), kNR, k, layout);
  HWY_ALIGN int16_t apanel[kKStep] = {};
  for (size_t p = 0; p < k; ++p) apanel[p] = static_cast<int16_t>(10 + 100 * p);
  const float a_scale = 1.0f;
  const int32_t a_zp = 0;
  std::vector<float> c(kNR);
  TileOut o;
  o.c = c.data();
  o.ldc = kNR;
  o.a_scale = &a_scale;
  o.a_zp = &a_zp;
  o.w_scale = b.scales();
  o.colsum = b.column_sums32();
  o.colsum64 = b.column_sums();
  o.bias = nullptr;
  o.col_lo = 0;
  o.col_hi = kNR;
  Tile<1, kNV>(apanel, reinterpret_cast<const int16_t*>(b.panel(0)), 1, o);
  for (size_t j = 0; j < kNR; ++j) {
    float want = 0.0f;
    for (size_t p = 0; p < k; ++p) want += float(apanel[p]) * float(wq[j * k + p]);
    EXPECT_EQ(c[j], want) << TargetName() << " column " << j;
  }
}

void TestQuantizeRowsKernel() { int8_test::CheckQuantizeRows(&QuantizeRowsKernel, TargetName()); }

void TestAllFiniteKernel() {
  for (size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{16}, size_t{1000}, size_t{3000}}) {
    std::vector<float> x(n, 1.5f);
    EXPECT_TRUE(AllFiniteKernel(x.data(), n)) << n;
    for (size_t pos : {size_t{0}, n / 2, n - 1}) {
      if (n == 0) break;
      for (float bad :
           {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
            -std::numeric_limits<float>::infinity()}) {
        std::vector<float> y = x;
        y[pos] = bad;
        EXPECT_FALSE(AllFiniteKernel(y.data(), n)) << n << " " << pos << " " << bad;
      }
    }
    // Largest finite values are finite (x - x stays 0).
    std::vector<float> big(n, std::numeric_limits<float>::max());
    EXPECT_TRUE(AllFiniteKernel(big.data(), n)) << n;
  }
}

}  // namespace
// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace attn {

HWY_BEFORE_TEST(MatMulInt8Test);
HWY_EXPORT_AND_TEST_P(MatMulInt8Test, TestInt8Shapes);
HWY_EXPORT_AND_TEST_P(MatMulInt8Test, TestInt8Options);
HWY_EXPORT_AND_TEST_P(MatMulInt8Test, TestInt8LargeK);
HWY_EXPORT_AND_TEST_P(MatMulInt8Test, TestInt8ColumnBlocks);
HWY_EXPORT_AND_TEST_P(MatMulInt8Test, TestInt8LanePairing);
HWY_EXPORT_AND_TEST_P(MatMulInt8Test, TestQuantizeRowsKernel);
HWY_EXPORT_AND_TEST_P(MatMulInt8Test, TestAllFiniteKernel);

namespace {

// Restores the VNNI hook however a test ends.
struct VnniHook {
  explicit VnniHook(bool enabled) { simd::SetInt8VnniEnabledForTest(enabled); }
  ~VnniHook() { simd::SetInt8VnniEnabledForTest(true); }
};

// A few shapes through the public, dispatching entry points.
std::vector<int8_test::Case> DispatchCases() {
  std::vector<int8_test::Case> cases;
  const size_t shapes[][3] = {{37, 53, 300}, {1, 97, 65}, {26, 100, 3}, {12, 32, 768}};
  for (const auto& s : shapes) {
    int8_test::Case cs;
    cs.m = s[0];
    cs.n = s[1];
    cs.k = s[2];
    cs.bias = true;
    cs.offset = 1;
    cs.pad_a = 1;
    cs.pad_c = 2;
    cases.push_back(cs);
  }
  return cases;
}

}  // namespace

// The VNNI kernel itself, on every case, where the CPU has it.
TEST(MatMulInt8VnniTest, Kernel) {
  if (!simd::detail::CpuHasInt8Vnni()) GTEST_SKIP() << "no AVX-512 VNNI on this CPU";
  const simd::Int8Layout layout = simd::detail::VnniInt8Layout();
  int8_test::RunCases(int8_test::ShapeCases(), &simd::detail::MatMulInt8Vnni, layout, "VNNI");
  int8_test::RunCases(int8_test::OptionCases(), &simd::detail::MatMulInt8Vnni, layout, "VNNI");
  int8_test::RunLargeK(&simd::detail::MatMulInt8Vnni, layout, "VNNI", 12, layout.panel_width);
  int8_test::Case cs;  // more than one column block
  cs.m = 14;
  cs.k = 1000;
  cs.n =
      (simd::kMatMulInt8ColumnBlockBytes / (cs.k * layout.panel_width) + 1) * layout.panel_width +
      5;
  cs.bias = true;
  int8_test::RunCases({cs}, &simd::detail::MatMulInt8Vnni, layout, "VNNI");
}

// MatMulInt8 and QuantizeAndPackB on each target (SetUp restricts the
// supported targets to the parameter), with the VNNI kernel allowed and
// forbidden.
TEST_P(MatMulInt8Test, Dispatched) {
  for (bool vnni : {false, true}) {
    VnniHook hook(vnni);
    const bool want_vnni =
        vnni && simd::detail::CpuHasInt8Vnni() && (GetParam() & (HWY_AVX3 | HWY_AVX3_DL)) != 0;
    EXPECT_EQ(simd::Int8VnniActive(), want_vnni);
    EXPECT_STREQ(simd::MatMulInt8KernelName(),
                 want_vnni ? "AVX512-VNNI" : hwy::TargetName(GetParam()));
    EXPECT_EQ(simd::ActiveInt8Layout().id, want_vnni ? simd::kInt8VnniLayoutId : GetParam());
    int8_test::RunCases(DispatchCases(), &simd::MatMulInt8, simd::ActiveInt8Layout(),
                        std::string("MatMulInt8 vnni=") + (vnni ? "on" : "off"));
  }
}

// A matrix packed for one kernel and multiplied by another (after
// SetInt8VnniEnabledForTest or DisableTargets) gives the same bits.
TEST_P(MatMulInt8Test, PackedForAnotherKernel) {
  hwy::SetSupportedTargetsForTest(HWY_SCALAR);
  const simd::Int8Layout scalar = simd::ActiveInt8Layout();
  hwy::SetSupportedTargetsForTest(GetParam());
  std::vector<simd::Int8Layout> layouts = {scalar, simd::detail::VnniInt8Layout(),
                                           int8_test::Problem::ReferenceLayout()};
  {
    VnniHook hook(false);
    layouts.push_back(simd::ActiveInt8Layout());
  }
  for (bool vnni : {false, true}) {
    VnniHook hook(vnni);
    for (const simd::Int8Layout& layout : layouts) {
      int8_test::RunCases(
          DispatchCases(), &simd::MatMulInt8, layout,
          "packed for layout " + std::to_string(layout.id) + ", vnni=" + std::to_string(vnni));
    }
  }
}

TEST_P(MatMulInt8Test, DispatchedQuantizeRows) {
  int8_test::CheckQuantizeRows(&simd::QuantizeRows, "QuantizeRows");
}

// QuantizeAndPackB's formulas: scale = max|w| / 127, wq = nearbyint(w /
// scale), column sums; an all-zero row gets scale 1, a non-finite row NaN.
TEST(Int8QuantizationTest, QuantizeAndPackB) {
  const size_t n = 41, k = 67, ldw = k + 2;
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-0.3f, 0.3f);
  std::vector<float> w(n * ldw, std::numeric_limits<float>::quiet_NaN());
  for (size_t j = 0; j < n; ++j) {
    for (size_t p = 0; p < k; ++p) w[j * ldw + p] = u(rng);
  }
  for (size_t p = 0; p < k; ++p) w[5 * ldw + p] = 0.0f;                 // all zero
  w[7 * ldw + 3] = std::numeric_limits<float>::quiet_NaN();             // NaN
  w[8 * ldw + 0] = -std::numeric_limits<float>::infinity();             // inf
  for (size_t p = 0; p < k; ++p) w[9 * ldw + p] = float(p % 5) - 2.0f;  // ties at .5 steps
  w[10 * ldw + 1] = 1e-42f;                                             // denormal max
  for (bool vnni : {false, true}) {
    VnniHook hook(vnni);
    const simd::QuantizedMatrix b = simd::QuantizeAndPackB(w.data(), ldw, n, k);
    EXPECT_EQ(b.layout(), simd::ActiveInt8Layout());
    ASSERT_EQ(b.n(), n);
    ASSERT_EQ(b.k(), k);
    for (size_t j = 0; j < n; ++j) {
      const float* row = w.data() + j * ldw;
      const bool finite = simd::AllFinite(row, k);
      EXPECT_EQ(finite, j != 7 && j != 8) << j;
      float amax = 0.0f;
      for (size_t p = 0; p < k; ++p) amax = std::max(amax, std::fabs(row[p]));
      const float scale = !finite ? std::numeric_limits<float>::quiet_NaN()
                          : amax == 0.0f
                              ? 1.0f
                              : std::max(amax / 127.0f, std::numeric_limits<float>::min());
      if (finite) {
        EXPECT_EQ(b.scales()[j], scale) << j;
      } else {
        EXPECT_TRUE(std::isnan(b.scales()[j])) << j;
      }
      int64_t sum = 0;
      for (size_t p = 0; p < b.k_padded(); ++p) {
        const int32_t want =
            p >= k || !finite ? 0 : static_cast<int32_t>(std::nearbyint(row[p] / scale));
        ASSERT_EQ(b.weight(j, p), want) << j << "," << p;
        EXPECT_LE(std::abs(want), 127);
        sum += want;
      }
      EXPECT_EQ(b.column_sums()[j], sum) << j;
      EXPECT_EQ(b.column_sums32()[j], sum) << j;
    }
    for (size_t j = n; j < b.num_panels() * b.panel_width(); ++j) {
      EXPECT_EQ(b.scales()[j], 0.0f);
      EXPECT_EQ(b.column_sums()[j], 0);
      EXPECT_EQ(b.column_sums32()[j], 0);
    }
  }
  EXPECT_TRUE(simd::AllFinite(nullptr, 0));
}

// Column sums past int32: K = 16,909,321 is the smallest K with 127 * K >
// 2^31 - 1. nn.Linear(16909321, 2) with row 0 all 1 and row 1 all -1, at x
// all -1 (aq 0, zero point 255, scale 1/255), gives -K and +K; with the sums
// in int32 they overflowed (UBSan: signed integer overflow) and the outputs
// had the wrong signs. Packed one column per panel (17 MB per row) and
// checked through the reference: the kernels' layouts pad to 4..32 columns
// (up to 1 GB at this K); above one int32 chunk they dequantize with the
// same column_sums() (RunLargeK checks that they do).
TEST(Int8QuantizationTest, ColumnSumsPastInt32) {
  const size_t n = 2, k = 16909321;
  ASSERT_GT(127 * int64_t(k), int64_t{INT32_MAX});
  std::vector<int8_t> wq(n * k, 127);
  std::fill(wq.begin() + k, wq.end(), int8_t{-127});
  const std::vector<float> w_scale(n, 1.0f / 127.0f);
  simd::Int8Layout layout;
  layout.id = 0;
  layout.panel_width = 1;
  layout.k_step = 1;
  layout.elem_bytes = 1;
  const simd::QuantizedMatrix b = simd::PackQuantizedB(wq.data(), k, w_scale.data(), n, k, layout);
  EXPECT_EQ(int64_t(b.column_sums()[0]), 127 * int64_t(k));
  EXPECT_EQ(int64_t(b.column_sums()[1]), -127 * int64_t(k));
  wq = std::vector<int8_t>();
  const std::vector<uint8_t> aq(k, 0);
  const float a_scale = 1.0f / 255.0f;
  const int32_t a_zp = 255;
  float c[n] = {};
  simd::MatMulInt8Reference(aq.data(), k, &a_scale, &a_zp, 1, b, c, n, 0, n, nullptr);
  EXPECT_NEAR(c[0], -double(k), 1e-6 * double(k));
  EXPECT_NEAR(c[1], double(k), 1e-6 * double(k));
}

// k above kInt8MaxK (2^48: the int64 sums' bound) is an ArgumentError
// naming in_features, before anything is allocated or read.
TEST(Int8QuantizationTest, KAboveTheLimitIsAnArgumentError) {
  const size_t k = static_cast<size_t>(simd::kInt8MaxK) + 1;
  const float w = 1.0f;
  try {
    simd::QuantizeAndPackB(&w, k, 1, k);
    ADD_FAILURE() << "no exception";
  } catch (const ArgumentError& e) {
    EXPECT_NE(std::string(e.what()).find("in_features"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("281474976710657"), std::string::npos) << e.what();
  }
  EXPECT_THROW(simd::QuantizedMatrix(1, k, simd::ActiveInt8Layout()), ArgumentError);
  EXPECT_NO_THROW(
      simd::QuantizedMatrix(0, static_cast<size_t>(simd::kInt8MaxK), simd::ActiveInt8Layout()));
}

// Moving a QuantizedMatrix moves its storage.
TEST(Int8QuantizationTest, MoveOnly) {
  const std::vector<float> w = {1.0f, -2.0f, 0.5f, 4.0f};
  simd::QuantizedMatrix a = simd::QuantizeAndPackB(w.data(), 2, 2, 2);
  const float scale = a.scales()[1];
  simd::QuantizedMatrix b = std::move(a);
  EXPECT_EQ(a.n(), 0u);            // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(a.scales(), nullptr);  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(b.scales()[1], scale);
  EXPECT_EQ(b.weight(1, 1), 127);
  simd::QuantizedMatrix c;
  c = std::move(b);
  EXPECT_EQ(c.weight(0, 1), -127);
}

// The whole int8 product (QuantizeRows, QuantizeAndPackB, MatMulInt8)
// against the float64 product of the float inputs: relative L2 error below
// 1e-2 on nn.Linear-like data (weights uniform in +-1/sqrt(K), inputs
// uniform or Gaussian), on every kernel.
TEST(Int8QuantizationTest, AccuracyAgainstFloat) {
  const size_t m = 64, n = 96, k = 768;
  for (int dist = 0; dist < 3; ++dist) {
    std::mt19937 rng(11 + dist);
    std::uniform_real_distribution<float> uw(-1.0f / std::sqrt(float(k)),
                                             1.0f / std::sqrt(float(k)));
    std::uniform_real_distribution<float> ua(-1.0f, 1.0f);
    std::normal_distribution<float> na(0.0f, 1.0f);
    std::vector<float> a(m * k), w(n * k);
    for (float& x : w) x = uw(rng);
    for (float& x : a) {
      // 0: uniform, 1: Gaussian (LayerNorm output), 2: after a ReLU.
      x = dist == 0 ? ua(rng) : (dist == 1 ? na(rng) : std::max(0.0f, na(rng)));
    }
    std::vector<double> exact(m * n);
    double norm = 0.0;
    for (size_t i = 0; i < m; ++i) {
      for (size_t j = 0; j < n; ++j) {
        double sum = 0.0;
        for (size_t p = 0; p < k; ++p) sum += double(a[i * k + p]) * double(w[j * k + p]);
        exact[i * n + j] = sum;
        norm += sum * sum;
      }
    }
    for (bool vnni : {false, true}) {
      VnniHook hook(vnni);
      std::vector<uint8_t> aq(m * k);
      std::vector<float> a_scale(m), c(m * n);
      std::vector<int32_t> a_zp(m);
      simd::QuantizeRows(a.data(), k, m, k, aq.data(), k, a_scale.data(), a_zp.data());
      const simd::QuantizedMatrix b = simd::QuantizeAndPackB(w.data(), k, n, k);
      simd::MatMulInt8(aq.data(), k, a_scale.data(), a_zp.data(), m, b, c.data(), n, 0, n, nullptr);
      double err = 0.0;
      for (size_t e = 0; e < m * n; ++e) err += (c[e] - exact[e]) * (c[e] - exact[e]);
      const double rel = std::sqrt(err / norm);
      EXPECT_LT(rel, 1e-2) << "distribution " << dist << " vnni " << vnni;
      printf("int8 relative L2 error, inputs %s, %s: %.2e\n",
             dist == 0 ? "uniform" : (dist == 1 ? "Gaussian" : "ReLU(Gaussian)"),
             simd::MatMulInt8KernelName(), rel);
    }
  }
}

}  // namespace attn
#endif  // HWY_ONCE
