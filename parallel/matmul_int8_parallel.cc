// Task split for the int8 GEMM (see matmul_int8_parallel.h).
#include "parallel/matmul_int8_parallel.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "parallel/parallel_for.h"
#include "simd/aligned_memory.h"
#include "simd/matmul_int8.h"

namespace attn {
namespace parallel {
namespace {

// Below this many multiply-adds a product runs on the calling thread:
// waking a worker costs a few microseconds, about 2^20 int8 multiply-adds
// of one AVX-512 VNNI core (4x the float32 GEMM's 2^18).
constexpr double kMinParallelMacs = double(1 << 20);
// Smallest task: this many multiply-adds.
constexpr double kMinTaskMacs = double(1 << 19);
// Tasks per thread: enough to balance uneven progress, few enough that each
// task keeps a long run over the packed B block in cache.
constexpr size_t kTasksPerThread = 4;
// Row blocks are multiples of this, a multiple of every int8 register tile
// height (12 VNNI and AVX3, 6 NEON, 4 others), so that a split adds no
// partial tiles.
constexpr size_t kRowQuantum = 12;
// Quantization tasks: at least this many floats each.
constexpr size_t kMinQuantizeFloats = size_t{1} << 16;

size_t DivCeil(size_t a, size_t b) { return (a + b - 1) / b; }

}  // namespace

void ParallelQuantizeRows(const float* a, size_t lda, size_t m, size_t k, uint8_t* aq, size_t ldaq,
                          float* scale, int32_t* zero_point) {
  const size_t rows_per_task = std::max<size_t>(1, kMinQuantizeFloats / std::max<size_t>(1, k));
  const size_t tasks = DivCeil(m, rows_per_task);
  if (num_threads() <= 1 || tasks <= 1) {
    simd::QuantizeRows(a, lda, m, k, aq, ldaq, scale, zero_point);
    return;
  }
  ParallelFor(tasks, 1, [&](size_t begin, size_t end) {
    for (size_t t = begin; t < end; ++t) {
      const size_t r0 = t * rows_per_task;
      const size_t rows = std::min(rows_per_task, m - r0);
      simd::QuantizeRows(a + r0 * lda, lda, rows, k, aq + r0 * ldaq, ldaq, scale + r0,
                         zero_point + r0);
    }
  });
}

void ParallelMatMulInt8Quantized(const uint8_t* aq, size_t ldaq, const float* a_scale,
                                 const int32_t* a_zp, size_t m, const simd::QuantizedMatrix& b,
                                 float* c, size_t ldc, const float* bias) {
  const size_t n = b.n();
  const double macs = double(m) * double(n) * double(b.k());
  const size_t threads = static_cast<size_t>(std::max(1, num_threads()));
  if (threads == 1 || macs < kMinParallelMacs || m == 0 || n == 0) {
    simd::MatMulInt8(aq, ldaq, a_scale, a_zp, m, b, c, ldc, 0, n, bias);
    return;
  }
  const size_t max_tasks = std::max<size_t>(1, static_cast<size_t>(macs / kMinTaskMacs));
  const size_t want = std::min(threads * kTasksPerThread, max_tasks);
  const size_t panels = b.num_panels();
  const size_t w = b.panel_width();
  // A wide B spanning at least as many column blocks as tasks: each task
  // takes all rows and an equal run of whole panels, so that each part of B
  // is read from L3 by one task only.
  const size_t block_panels =
      std::max<size_t>(1, simd::kMatMulInt8ColumnBlockBytes / std::max<size_t>(1, b.panel_bytes()));
  if (DivCeil(panels, block_panels) >= want) {
    const size_t cols_per_task = DivCeil(panels, want) * w;
    ParallelFor(DivCeil(n, cols_per_task), 1, [&](size_t begin, size_t end) {
      for (size_t t = begin; t < end; ++t) {
        const size_t c0 = t * cols_per_task;
        simd::MatMulInt8(aq, ldaq, a_scale, a_zp, m, b, c, ldc, c0, std::min(n, c0 + cols_per_task),
                         bias);
      }
    });
    return;
  }
  // Otherwise row blocks (each task sweeps all of B); columns, in whole
  // panels, only when there are too few rows.
  const size_t row_blocks = std::min(want, DivCeil(m, kRowQuantum));
  const size_t rows_per_task = DivCeil(DivCeil(m, row_blocks), kRowQuantum) * kRowQuantum;
  const size_t tasks_m = DivCeil(m, rows_per_task);
  const size_t col_blocks = std::min(panels, DivCeil(want, tasks_m));
  const size_t cols_per_task = DivCeil(panels, col_blocks) * w;
  const size_t tasks_n = DivCeil(n, cols_per_task);
  ParallelFor(tasks_m * tasks_n, 1, [&](size_t begin, size_t end) {
    for (size_t t = begin; t < end; ++t) {
      const size_t r0 = (t / tasks_n) * rows_per_task;
      const size_t c0 = (t % tasks_n) * cols_per_task;
      simd::MatMulInt8(aq + r0 * ldaq, ldaq, a_scale + r0, a_zp + r0,
                       std::min(rows_per_task, m - r0), b, c + r0 * ldc, ldc, c0,
                       std::min(n, c0 + cols_per_task), bias);
    }
  });
}

void ParallelMatMulInt8(const float* a, size_t lda, size_t m, const simd::QuantizedMatrix& b,
                        float* c, size_t ldc, const float* bias) {
  const size_t k = b.k();
  if (m == 0 || b.n() == 0) return;
  // One buffer for this call (no scratch slot fits: a module forward may
  // hold its own around this call, and the tasks below take kMatMul): the
  // scales, the zero points, then aq (m x k bytes).
  const size_t aq_floats = (m * k + sizeof(float) - 1) / sizeof(float);
  const std::unique_ptr<float[], simd::FloatsDeleter> buffer(
      simd::AllocateFloats(2 * m + aq_floats));
  float* scale = buffer.get();
  int32_t* zero_point = reinterpret_cast<int32_t*>(buffer.get() + m);
  uint8_t* aq = reinterpret_cast<uint8_t*>(buffer.get() + 2 * m);
  ParallelQuantizeRows(a, lda, m, k, aq, k, scale, zero_point);
  ParallelMatMulInt8Quantized(aq, k, scale, zero_point, m, b, c, ldc, bias);
}

}  // namespace parallel
}  // namespace attn
