// Multi-threaded GEMM: simd::MatMul's contract split over blocks of C rows
// and columns with ParallelFor. Each C element is computed by exactly one
// task with the same K order as the single-threaded kernel, so the results
// are the same bits for any thread count (and equal simd::MatMul's).
#pragma once

#include <cstddef>

#include "simd/matmul.h"

namespace attn {
namespace parallel {

// simd::MatMul on up to num_threads() threads. Small products run inline;
// larger ones pack op(B) once (simd::PackB) and split C into tasks.
void ParallelMatMul(const simd::MatMulArgs& args);

// simd::MatMulPacked on up to num_threads() threads: A is m x b.k() (row
// stride lda), C is m x b.n() (row stride ldc), bias b.n() floats or nullptr.
void ParallelMatMulPacked(const float* a, size_t lda, const simd::PackedMatrix& b, float* c,
                          size_t ldc, size_t m, const float* bias, float scale, bool accumulate);

}  // namespace parallel
}  // namespace attn
