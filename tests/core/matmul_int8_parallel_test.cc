// The threaded int8 GEMM (parallel/matmul_int8_parallel.h) gives the same
// bits as simd::QuantizeRows + simd::MatMulInt8 on one thread, for 1, 2 and 3
// threads, with the VNNI kernel allowed and forbidden, for shapes that split
// over rows, over column panels, or not at all.
#include "parallel/matmul_int8_parallel.h"

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "attn/threads.h"
#include "gtest/gtest.h"
#include "simd/matmul_int8.h"

namespace attn {
namespace {

// Allows or forbids the VNNI kernel for a scope.
struct VnniHook {
  explicit VnniHook(bool enabled) { simd::SetInt8VnniEnabledForTest(enabled); }
  ~VnniHook() { simd::SetInt8VnniEnabledForTest(true); }
};

TEST(ParallelMatMulInt8Test, SameBitsForAnyThreadCount) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const size_t shapes[][3] = {{1, 2304, 768},  // decoding: columns split
                              {5, 3000, 513},
                              {300, 257, 1000},
                              {1000, 100, 64},
                              {2000, 67, 130},
                              {777, 1500, 40},
                              {3, 5, 7},
                              {90, 60, 200},
                              {250, 90, 64},
                              // B spans as many of the kernel's column blocks as
                              // there are tasks: split by columns.
                              {100, 2304, 768},
                              {30, 4100, 1500}};
  for (bool vnni : {true, false}) {
    const VnniHook hook(vnni);
    for (const auto& shape : shapes) {
      const size_t m = shape[0], n = shape[1], k = shape[2];
      std::vector<float> a(m * k), w(n * k), bias(n);
      for (auto& x : a) x = u(rng);
      for (auto& x : w) x = 0.05f * u(rng);
      for (auto& x : bias) x = u(rng);
      const simd::QuantizedMatrix b = simd::QuantizeAndPackB(w.data(), k, n, k);
      const float* biases[] = {nullptr, bias.data()};
      for (const float* bias_ptr : biases) {
        std::vector<uint8_t> aq(m * k);
        std::vector<float> scale(m), want(m * n, 7.0f);
        std::vector<int32_t> zp(m);
        simd::QuantizeRows(a.data(), k, m, k, aq.data(), k, scale.data(), zp.data());
        simd::MatMulInt8(aq.data(), k, scale.data(), zp.data(), m, b, want.data(), n, 0, n,
                         bias_ptr);
        for (int threads : {1, 2, 3}) {
          set_num_threads(threads);
          std::vector<float> got(m * n, 7.0f);
          parallel::ParallelMatMulInt8(a.data(), k, m, b, got.data(), n, bias_ptr);
          EXPECT_EQ(0, memcmp(got.data(), want.data(), got.size() * sizeof(float)))
              << m << "x" << n << "x" << k << " bias=" << (bias_ptr != nullptr)
              << " threads=" << threads << " vnni=" << vnni;
          std::vector<uint8_t> aq2(m * k);
          std::vector<float> scale2(m);
          std::vector<int32_t> zp2(m);
          parallel::ParallelQuantizeRows(a.data(), k, m, k, aq2.data(), k, scale2.data(),
                                         zp2.data());
          EXPECT_EQ(aq, aq2);
          EXPECT_EQ(0, memcmp(scale.data(), scale2.data(), m * sizeof(float)));
          EXPECT_EQ(zp, zp2);
        }
        set_num_threads(0);
      }
    }
  }
}

// Strided A and C (views into wider matrices).
TEST(ParallelMatMulInt8Test, Strides) {
  const size_t m = 97, n = 130, k = 300, lda = k + 9, ldc = n + 5;
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> a(m * lda), w(n * k);
  for (auto& x : a) x = u(rng);
  for (auto& x : w) x = u(rng);
  const simd::QuantizedMatrix b = simd::QuantizeAndPackB(w.data(), k, n, k);
  std::vector<uint8_t> aq(m * k);
  std::vector<float> scale(m), want(m * ldc, 3.0f);
  std::vector<int32_t> zp(m);
  simd::QuantizeRows(a.data(), lda, m, k, aq.data(), k, scale.data(), zp.data());
  simd::MatMulInt8(aq.data(), k, scale.data(), zp.data(), m, b, want.data(), ldc, 0, n, nullptr);
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    std::vector<float> got(m * ldc, 3.0f);
    parallel::ParallelMatMulInt8(a.data(), lda, m, b, got.data(), ldc, nullptr);
    EXPECT_EQ(0, memcmp(got.data(), want.data(), got.size() * sizeof(float))) << threads;
  }
  set_num_threads(0);
}

}  // namespace
}  // namespace attn
