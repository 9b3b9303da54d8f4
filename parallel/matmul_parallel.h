// Multi-threaded GEMM: simd::MatMul's contract split over blocks of C rows
// and columns with ParallelFor. Each C element is computed by exactly one
// task with the same K order as the single-threaded kernel, so the results
// are the same bits for any thread count (and equal simd::MatMul's).
#pragma once

#include <cstddef>

#include "simd/matmul.h"

namespace attn {
namespace parallel {

// simd::MatMul on up to num_threads() threads, with simd::MatMul's bits.
// Below 2^18 multiply-adds it runs inline. Otherwise: b_transposed with
// M <= simd::kMatMulDotRows (dot products) splits columns; fewer than 256
// rows split columns (wide C) or row blocks (narrow C), each task packing
// its own op(B); taller products pack op(B) once (AllocatePackedB +
// PackBPanels) and run ParallelMatMulPacked.
void ParallelMatMul(const simd::MatMulArgs& args);

// simd::MatMulPacked on up to num_threads() threads, with its bits: A is
// m x b.k() (row stride lda), C is m x b.n() (row stride ldc), bias b.n()
// floats or nullptr. Tasks are row blocks (multiples of 12 rows), and also
// column ranges in whole panels when there are too few rows.
void ParallelMatMulPacked(const float* a, size_t lda, const simd::PackedMatrix& b, float* c,
                          size_t ldc, size_t m, const float* bias, float scale, bool accumulate);

}  // namespace parallel
}  // namespace attn
