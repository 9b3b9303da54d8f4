// Task split for ParallelMatMul (see matmul_parallel.h).
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
// ParallelMatMul with fewer rows splits columns (each task packs its own
// part of op(B)); from this many rows on, it packs op(B) once and splits rows.
constexpr size_t kMinRowSplitRows = 256;
// Column chunks of ParallelMatMul are multiples of 16: whole vectors on
// every target (half an AVX3 panel, which its 12 x 16 edge tile handles at
// full speed), fine enough to balance N = 67 over 2 threads as 48 + 19.
constexpr size_t kColumnQuantum = 16;
// Row blocks are multiples of this, a multiple of every target's register
// tile height (12 AVX3, 6 AVX2, 4 others), so that a split adds no partial
// tiles; small enough to balance (1024 rows in 8 tasks: 132 rows, 7 x 132
// + 100, rather than 7 x 144 + 16). Results do not depend on the split.
constexpr size_t kRowQuantum = 12;
// Tasks per thread: enough to balance uneven progress, few enough that each
// task keeps a long run over the packed B block in cache.
constexpr size_t kTasksPerThread = 4;
// op(B) with fewer floats is packed by the calling thread alone.
constexpr double kMinParallelPackFloats = double(1 << 20);
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
  // task only, instead of by every row task. Measured at 2 threads,
  // M = 8192, N = 2304, K = 768, 40 alternating calls of each split on a
  // shared machine: best call 299 vs 283 GFLOP/s, first quartile 271 vs 236,
  // median 182 vs 170. (For N = 768, 3 blocks, both splits measured the
  // same.)
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

namespace {

// simd::MatMul on column chunks of at least `quantum` columns (a multiple of
// it), one task each. Splitting columns never changes a bit (matmul.h).
void ColumnSplit(const simd::MatMulArgs& args, size_t max_chunks, size_t quantum) {
  const size_t chunks = std::max<size_t>(1, std::min(DivCeil(args.n, quantum), max_chunks));
  const size_t cols = DivCeil(DivCeil(args.n, chunks), quantum) * quantum;
  ParallelFor(DivCeil(args.n, cols), 1, [&](size_t begin, size_t end) {
    for (size_t t = begin; t < end; ++t) {
      simd::MatMulArgs part = args;
      const size_t c0 = t * cols;
      part.n = std::min(cols, args.n - c0);
      part.b += args.b_transposed ? c0 * args.ldb : c0;
      part.c += c0;
      if (part.bias != nullptr) part.bias += c0;
      simd::MatMul(part);
    }
  });
}

// simd::MatMul on `parts` row blocks (multiples of kRowQuantum rows), one
// task each; every task packs op(B) itself, which is cheap for the small
// problems this is used for. Same bits as long as no part crosses to the
// other side of simd::kMatMulDotRows (the caller ensures that).
void RowSplit(const simd::MatMulArgs& args, size_t parts) {
  const size_t rows = DivCeil(DivCeil(args.m, parts), kRowQuantum) * kRowQuantum;
  size_t tasks = DivCeil(args.m, rows);
  // A short last block would take the dot-product path: join it to the one
  // before.
  if (args.b_transposed && tasks > 1 && args.m - (tasks - 1) * rows <= simd::kMatMulDotRows) {
    --tasks;
  }
  ParallelFor(tasks, 1, [&](size_t begin, size_t end) {
    for (size_t t = begin; t < end; ++t) {
      simd::MatMulArgs part = args;
      const size_t r0 = t * rows;
      part.m = t + 1 == tasks ? args.m - r0 : rows;
      part.a += r0 * args.lda;
      part.c += r0 * args.ldc;
      simd::MatMul(part);
    }
  });
}

}  // namespace

void ParallelMatMul(const simd::MatMulArgs& args) {
  const double fmas = double(args.m) * double(args.n) * double(args.k);
  const size_t threads = static_cast<size_t>(std::max(1, num_threads()));
  if (threads == 1 || fmas < kMinParallelFmas) {
    simd::MatMul(args);
    return;
  }
  if (args.b_transposed && args.m <= simd::kMatMulDotRows) {
    // simd::MatMul's dot-product path: split over columns only, so that
    // every part takes the same path; B is read in place.
    ColumnSplit(args, threads * kTasksPerThread, 16);
    return;
  }
  if (args.m < kMinRowSplitRows) {
    // Few rows: no shared packing phase (nor allocation) before the split.
    // Wide C: each task packs and multiplies its own columns. Narrow C:
    // each task takes a row block (and packs all of op(B), which is small
    // then), when the blocks can stay above kMatMulDotRows rows.
    const size_t parts = std::min(threads, args.m / (simd::kMatMulDotRows + kRowQuantum));
    if (args.n >= threads * 4 * kColumnQuantum || parts < 2) {
      ColumnSplit(args, threads, kColumnQuantum);
    } else {
      RowSplit(args, parts);
    }
    return;
  }
  // Pack op(B) once, then split C. Packing costs about a cycle per element
  // against M / 32 cycles of FMAs per element, so it only runs in parallel
  // for large matrices (below that, waking the other threads twice costs
  // more than it saves).
  simd::PackedMatrix packed = simd::AllocatePackedB(args.k, args.n);
  const size_t panels = packed.num_panels();
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
