// Multi-threaded GEMM with a packed B (nn.Linear's weight): simd::MatMulPacked
// split over tasks with ParallelFor. Each C element is computed by exactly
// one task with the same K order as the single-threaded kernel, so the
// results are the same bits for any thread count (and equal
// simd::MatMulPacked's).
#pragma once

#include <cstddef>

#include "simd/matmul.h"

namespace attn {
namespace parallel {

// simd::MatMulPacked on up to num_threads() threads, with its bits: A is
// m x b.k() (row stride lda), C is m x b.n() (row stride ldc), bias b.n()
// floats or nullptr. Below 2^18 multiply-adds it runs inline. A B that spans
// at least as many of the kernel's column blocks as there are tasks is split
// by columns (each block read by one task); otherwise C is split into row
// blocks (multiples of 12 rows), and also into column ranges of whole panels
// when there are too few rows.
void ParallelMatMulPacked(const float* a, size_t lda, const simd::PackedMatrix& b, float* c,
                          size_t ldc, size_t m, const float* bias, float scale, bool accumulate);

}  // namespace parallel
}  // namespace attn
