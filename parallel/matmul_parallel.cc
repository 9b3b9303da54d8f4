// Task split for ParallelMatMulPacked (see matmul_parallel.h).
#include "parallel/matmul_parallel.h"

#include <algorithm>
#include <cstddef>

#include "parallel/parallel_for.h"
#include "simd/matmul.h"

namespace attn {
namespace parallel {
namespace {

// Below this many multiply-adds a product runs on the calling thread: waking
// a worker costs a few microseconds, about 2^18 FMAs of a single core.
constexpr double kMinParallelFmas = double(1 << 18);
// Row blocks are multiples of this, a multiple of every target's register
// tile height (12 AVX3, 6 AVX2, 4 others), so that a split adds no partial
// tiles; small enough to balance (1024 rows in 8 tasks: 132 rows, 7 x 132
// + 100, rather than 7 x 144 + 16). Results do not depend on the split.
constexpr size_t kRowQuantum = 12;
// Tasks per thread: enough to balance uneven progress, few enough that each
// task keeps a long run over the packed B block in cache.
constexpr size_t kTasksPerThread = 4;
// Smallest task: this many multiply-adds.
constexpr double kMinTaskFmas = double(1 << 17);

size_t DivCeil(size_t a, size_t b) { return (a + b - 1) / b; }

}  // namespace

void ParallelMatMulPacked(const float* a, size_t lda, const simd::PackedMatrix& b, float* c,
                          size_t ldc, size_t m, const float* bias, float scale, bool accumulate) {
  const size_t n = b.n();
  const double fmas = double(m) * double(n) * double(b.k());
  const size_t threads = static_cast<size_t>(std::max(1, num_threads()));
  if (threads == 1 || fmas < kMinParallelFmas || m == 0 || n == 0) {
    simd::MatMulPacked(a, lda, b, c, ldc, m, bias, scale, accumulate);
    return;
  }
  // Number of tasks: kTasksPerThread per thread, each at least kMinTaskFmas.
  const size_t max_tasks = std::max<size_t>(1, static_cast<size_t>(fmas / kMinTaskFmas));
  const size_t want = std::min(threads * kTasksPerThread, max_tasks);
  const size_t panels = b.num_panels();
  // A wide B (the fused QKV weight: 7 MiB at GPT-2's width) spans several of
  // the kernel's column blocks. When there are at least as many blocks as
  // tasks, each task takes all rows and an equal run of whole panels (about
  // a block's worth or more): each part of B is then read from L3 by one
  // task only, instead of by every row task.
  const size_t block_panels =
      std::max<size_t>(1, simd::kMatMulColumnBlockBytes /
                              (std::max<size_t>(1, b.k()) * b.panel_width() * sizeof(float)));
  if (DivCeil(panels, block_panels) >= want) {
    const size_t cols_per_task = DivCeil(panels, want) * b.panel_width();
    ParallelFor(DivCeil(n, cols_per_task), 1, [&](size_t begin, size_t end) {
      for (size_t t = begin; t < end; ++t) {
        const size_t c0 = t * cols_per_task;
        simd::MatMulPackedColumns(a, lda, b, c, ldc, m, c0, std::min(n, c0 + cols_per_task), bias,
                                  scale, accumulate);
      }
    });
    return;
  }
  // Otherwise prefer row blocks (each task then sweeps all of B once per K
  // block); split columns, in whole panels, only when there are too few rows.
  const size_t row_blocks_max = DivCeil(m, kRowQuantum);
  const size_t row_blocks = std::min(want, row_blocks_max);
  const size_t rows_per_task = DivCeil(DivCeil(m, row_blocks), kRowQuantum) * kRowQuantum;
  const size_t tasks_m = DivCeil(m, rows_per_task);
  const size_t col_blocks = std::min(panels, DivCeil(want, tasks_m));
  const size_t cols_per_task = DivCeil(panels, col_blocks) * b.panel_width();
  const size_t tasks_n = DivCeil(n, cols_per_task);

  ParallelFor(tasks_m * tasks_n, 1, [&](size_t begin, size_t end) {
    for (size_t t = begin; t < end; ++t) {
      const size_t r0 = (t / tasks_n) * rows_per_task;
      const size_t c0 = (t % tasks_n) * cols_per_task;
      simd::MatMulPackedColumns(a + r0 * lda, lda, b, c + r0 * ldc, ldc,
                                std::min(rows_per_task, m - r0), c0,
                                std::min(n, c0 + cols_per_task), bias, scale, accumulate);
    }
  });
}

}  // namespace parallel
}  // namespace attn
