// Multi-threaded int8 GEMM (simd/matmul_int8.h) with ParallelFor: the rows
// of A are quantized once per call, in parallel, then C is split into
// tasks. The integer sums are exact and each C element is dequantized by
// exactly one task with the same formula, so the results are the same bits
// for any thread count (and equal simd::QuantizeRows + simd::MatMulInt8 on
// one thread).
#pragma once

#include <cstddef>
#include <cstdint>

#include "simd/matmul_int8.h"

namespace attn {
namespace parallel {

// C = the int8 product of A (m x b.k() floats, row stride lda) and the
// quantized weight b (simd::QuantizeAndPackB), plus bias (b.n() floats or
// nullptr): C is m x b.n(), row stride ldc, and must not overlap A or bias.
// A's rows are quantized by ParallelQuantizeRows into a buffer of this call
// (m * b.k() + 8 * m bytes from simd::AllocateFloats), then multiplied by
// ParallelMatMulInt8Quantized. Throws std::bad_alloc when the buffer cannot
// be allocated.
void ParallelMatMulInt8(const float* a, size_t lda, size_t m, const simd::QuantizedMatrix& b,
                        float* c, size_t ldc, const float* bias);

// simd::QuantizeRows over row blocks in parallel (same bits: rows are
// independent).
void ParallelQuantizeRows(const float* a, size_t lda, size_t m, size_t k, uint8_t* aq, size_t ldaq,
                          float* scale, int32_t* zero_point);

// simd::MatMulInt8 for all columns, on up to num_threads() threads, for
// rows already quantized (aq, a_scale, a_zp as simd::QuantizeRows writes
// them). Below 2^20 multiply-adds it runs inline. A B that spans at least
// as many of the kernel's column blocks as there are tasks is split by
// columns (each block read by one task); otherwise C is split into row
// blocks (multiples of 12 rows), and also into column ranges of whole
// panels when there are too few rows (decoding: M = 1).
void ParallelMatMulInt8Quantized(const uint8_t* aq, size_t ldaq, const float* a_scale,
                                 const int32_t* a_zp, size_t m, const simd::QuantizedMatrix& b,
                                 float* c, size_t ldc, const float* bias);

}  // namespace parallel
}  // namespace attn
