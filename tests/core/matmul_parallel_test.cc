// ParallelMatMulPacked gives the same bits as simd::MatMulPacked for any thread count, for
// shapes that split over rows, over column panels, or not at all.
#include "parallel/matmul_parallel.h"

#include <cstring>
#include <random>
#include <vector>

#include "attn/threads.h"
#include "gtest/gtest.h"
#include "simd/matmul.h"

namespace attn {
namespace {

TEST(ParallelMatMulTest, SameBitsForAnyThreadCount) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const size_t shapes[][3] = {{1, 4096, 300},
                              {5, 3000, 513},
                              {300, 257, 1000},
                              {1000, 100, 64},
                              {2000, 67, 130},
                              {777, 1500, 40},
                              {64, 64, 64},
                              {3, 5, 7},
                              {84, 100, 300},
                              {90, 60, 200},
                              {250, 90, 64},
                              // B spans at least as many of the kernel's column blocks
                              // as there are tasks, so ParallelMatMulPacked splits
                              // columns: the first at 2 threads on AVX3 (32-wide panels),
                              // the second at 2 and 3 threads on AVX3 and AVX2.
                              {100, 2304, 768},
                              {30, 4100, 1500}};
  for (const auto& shape : shapes) {
    for (bool b_transposed : {false, true}) {
      for (bool accumulate : {false, true}) {
        const size_t m = shape[0], n = shape[1], k = shape[2];
        std::vector<float> a(m * k), b(k * n), bias(n), c0(m * n);
        for (auto& x : a) x = u(rng);
        for (auto& x : b) x = u(rng);
        for (auto& x : bias) x = u(rng);
        for (auto& x : c0) x = u(rng);
        const size_t ldb = b_transposed ? k : n;
        const simd::PackedMatrix packed = simd::PackB(b.data(), ldb, b_transposed, k, n);
        std::vector<float> want_packed = c0;
        simd::MatMulPacked(a.data(), k, packed, want_packed.data(), n, m, bias.data(), 0.7f,
                           accumulate);
        for (int threads : {1, 2, 3}) {
          set_num_threads(threads);
          std::vector<float> got_packed = c0;
          parallel::ParallelMatMulPacked(a.data(), k, packed, got_packed.data(), n, m, bias.data(),
                                         0.7f, accumulate);
          EXPECT_EQ(
              0, memcmp(got_packed.data(), want_packed.data(), got_packed.size() * sizeof(float)))
              << "packed " << m << "x" << n << "x" << k << " bt=" << b_transposed
              << " threads=" << threads;
        }
        set_num_threads(0);
      }
    }
  }
}

}  // namespace
}  // namespace attn
