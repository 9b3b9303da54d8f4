// Task split for ParallelMatMul (see matmul_parallel.h).
#include "parallel/matmul_parallel.h"

#include <algorithm>
#include <cstddef>

#include "parallel/parallel_for.h"
#include "simd/matmul.h"

namespace attn {
namespace parallel {
namespace {

// Below this many multiply-adds a product runs on the calling thread: a task
// switch costs a few microseconds, about 2^20 FMAs of a single core.
constexpr double kMinParallelFmas = double(1 << 20);
// Row blocks are multiples of this, a multiple of every target's register
// tile height (12 AVX3, 6 AVX2, 4 others), so that a split adds no partial
// tiles. (Results do not depend on the split in any case.)
constexpr size_t kRowQuantum = 24;
// Tasks per thread: enough to balance uneven progress, few enough that each
// task keeps a long run over the packed B block in cache.
constexpr size_t kTasksPerThread = 4;
// op(B) with fewer floats is packed by the calling thread alone.
constexpr double kMinParallelPackFloats = double(1 << 20);
// Smallest task: this many multiply-adds.
constexpr double kMinTaskFmas = double(1 << 19);

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
  // Prefer row blocks (each task then sweeps all of B once per K block);
  // split columns, in whole panels, only when there are too few rows.
  const size_t row_blocks_max = DivCeil(m, kRowQuantum);
  const size_t row_blocks = std::min(want, row_blocks_max);
  const size_t rows_per_task = DivCeil(DivCeil(m, row_blocks), kRowQuantum) * kRowQuantum;
  const size_t tasks_m = DivCeil(m, rows_per_task);
  const size_t panels = b.num_panels();
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

void ParallelMatMul(const simd::MatMulArgs& args) {
  const double fmas = double(args.m) * double(args.n) * double(args.k);
  if (num_threads() == 1 || fmas < kMinParallelFmas) {
    simd::MatMul(args);
    return;
  }
  if (args.b_transposed && args.m <= simd::kMatMulDotRows) {
    // simd::MatMul's dot-product path: split over columns only (so every
    // part takes the same path) and read B in place.
    const size_t threads = static_cast<size_t>(std::max(1, num_threads()));
    const size_t chunks = std::min(DivCeil(args.n, 16), threads * kTasksPerThread);
    const size_t cols = DivCeil(args.n, chunks);
    ParallelFor(DivCeil(args.n, cols), 1, [&](size_t begin, size_t end) {
      for (size_t t = begin; t < end; ++t) {
        simd::MatMulArgs part = args;
        const size_t c0 = t * cols;
        part.n = std::min(cols, args.n - c0);
        part.b += c0 * args.ldb;
        part.c += c0;
        if (part.bias != nullptr) part.bias += c0;
        simd::MatMul(part);
      }
    });
    return;
  }
  // Pack op(B) once, then split C. Packing costs about a cycle per element
  // against M / 32 cycles of FMAs per element, so it only runs in parallel
  // for large matrices (below that, waking the other threads twice costs
  // more than it saves).
  simd::PackedMatrix packed = simd::AllocatePackedB(args.k, args.n);
  const size_t panels = packed.num_panels();
  const size_t threads = static_cast<size_t>(std::max(1, num_threads()));
  const size_t grain = double(args.k) * double(args.n) < kMinParallelPackFloats
                           ? panels
                           : DivCeil(panels, threads * kTasksPerThread);
  ParallelFor(panels, grain, [&](size_t begin, size_t end) {
    simd::PackBPanels(args.b, args.ldb, args.b_transposed, begin, end, &packed);
  });
  ParallelMatMulPacked(args.a, args.lda, packed, args.c, args.ldc, args.m, args.bias, args.scale,
                       args.accumulate);
}

}  // namespace parallel
}  // namespace attn
