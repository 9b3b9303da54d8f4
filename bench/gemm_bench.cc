// GEMM and softmax benchmarks: attn's Highway kernels against the machine's
// FP32 FMA peak and, when found at configure time, OpenBLAS (cblas_sgemm)
// and oneDNN (dnnl_sgemm).
//
// Run (OpenBLAS reads its core type when it is loaded, so set it outside):
//   OPENBLAS_CORETYPE=SkylakeX build/bench/attn_gemm_bench
//       --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
// (about a minute per repetition on 2 cores). Counters: GFLOP/s = 2*M*N*K per
// second (wall clock); peak% = GFLOP/s over threads x the single-core FMA
// peak measured at start-up (in the context header). Labels name the
// dispatched Highway target (or the peer's kernel). With repetitions, the
// _min (time) and _max (GFLOP/s) aggregates are the best repetition, the
// useful figure on a machine shared with other work.
//
// Shapes (M x N x K, C = A · op(B)): GPT-2 small projections with T = 8192
// tokens (qkv 8192x2304x768 and out_proj 8192x768x768, A · Wᵀ with the
// nn.Linear weight W of shape (N, K)), attention scores Q·Kᵀ 1024x1024x64,
// weights·V 1024x64x1024 (A · B), and small odd shapes.

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include "bench/fma_peak.h"
#include "benchmark/benchmark.h"
#include "hwy/targets.h"
#include "parallel/matmul_parallel.h"
#include "parallel/parallel_for.h"
#include "simd/matmul.h"
#include "simd/softmax.h"

#if ATTN_BENCH_OPENBLAS
#include <cblas.h>
#endif
#if ATTN_BENCH_DNNL
#include <omp.h>

#include "oneapi/dnnl/dnnl.h"
#endif

namespace attn {
namespace {

// Runs the peak kernel on `threads` threads; returns GFLOP/s.
double FmaPeakOnce(int threads, size_t iters, float* sink) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<float> out(threads);
  parallel::ParallelFor(threads, 1, [&](size_t begin, size_t end) {
    for (size_t t = begin; t < end; ++t) {
      out[t] = attn_bench::FmaChains(iters, 1.0f + float(t));
    }
  });
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (float v : out) *sink += v;
  return double(threads) * attn_bench::FmaChainsFlops(iters) / seconds * 1e-9;
}

// The best of many short runs (about 0.5 ms each, so that some run is not
// interrupted on a machine shared with other work): the FP32 peak for this
// thread count.
double MeasurePeak(int threads) {
  set_num_threads(threads);
  float sink = 0.0f;
  double best = 0.0;
  for (int rep = 0; rep < 100; ++rep) best = std::max(best, FmaPeakOnce(threads, 200000, &sink));
  benchmark::DoNotOptimize(sink);
  return best;
}

double g_peak1 = 0.0;  // one core, measured once

// The reference for peak%: threads x the single-core peak (the cores are
// alike; a 2-thread FMA measurement on a busy machine comes out low, which
// would inflate peak%).
double Peak(int threads) {
  if (g_peak1 == 0.0) g_peak1 = MeasurePeak(1);
  return threads * g_peak1;
}

void BM_FmaPeak(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  set_num_threads(threads);
  const size_t iters = 1000000;
  float sink = 0.0f;
  for (auto _ : state) FmaPeakOnce(threads, iters, &sink);
  benchmark::DoNotOptimize(sink);
  const double flops = double(threads) * attn_bench::FmaChainsFlops(iters);
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(simd::MatMulTargetName());
}

// --- GEMM problems -----------------------------------------------------------

struct Gemm {
  Gemm(size_t m, size_t n, size_t k, bool b_transposed)
      : m(m), n(n), k(k), b_transposed(b_transposed), a(m * k), b(k * n), c(m * n) {
    uint32_t x = 12345;
    auto next = [&x] {
      x = x * 1664525u + 1013904223u;
      return float(x >> 8) * (1.0f / 16777216.0f) - 0.5f;
    };
    for (float& v : a) v = next();
    for (float& v : b) v = next();
  }
  simd::MatMulArgs Args() {
    simd::MatMulArgs args;
    args.a = a.data();
    args.lda = k;
    args.b = b.data();
    args.ldb = b_transposed ? k : n;
    args.b_transposed = b_transposed;
    args.c = c.data();
    args.ldc = n;
    args.m = m;
    args.n = n;
    args.k = k;
    return args;
  }
  double Flops() const { return 2.0 * double(m) * double(n) * double(k); }

  size_t m, n, k;
  bool b_transposed;
  std::vector<float> a, b, c;
};

void SetGemmCounters(benchmark::State& state, const Gemm& g, int threads) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(g.Flops() * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  // peak%: a rate counter scaled by 100 / peak.
  const double peak = Peak(threads);
  if (peak > 0.0) {
    state.counters["peak%"] = benchmark::Counter(g.Flops() * 1e-9 * 100.0 / peak,
                                                 benchmark::Counter::kIsIterationInvariantRate);
  }
}

// Args: M, N, K, b_transposed, threads, disabled Highway targets.
void BM_Attn(benchmark::State& state) {
  Gemm g(state.range(0), state.range(1), state.range(2), state.range(3) != 0);
  const int threads = static_cast<int>(state.range(4));
  const int64_t disabled = state.range(5);
  Peak(threads);
  hwy::DisableTargets(disabled);
  set_num_threads(threads);
  const simd::MatMulArgs args = g.Args();
  for (auto _ : state) {
    // op(B) packed on every call (single-threaded), then the threaded product.
    const simd::PackedMatrix packed = simd::PackB(args.b, args.ldb, args.b_transposed, g.k, g.n);
    parallel::ParallelMatMulPacked(args.a, args.lda, packed, args.c, args.ldc, g.m, nullptr, 1.0f,
                                   false);
    benchmark::ClobberMemory();
  }
  SetGemmCounters(state, g, threads);
  state.SetLabel(std::string("attn ") + simd::MatMulTargetName());
  hwy::DisableTargets(0);
}

// B packed once (nn.Linear weights); only the product is timed.
void BM_AttnPacked(benchmark::State& state) {
  Gemm g(state.range(0), state.range(1), state.range(2), state.range(3) != 0);
  const int threads = static_cast<int>(state.range(4));
  Peak(threads);
  set_num_threads(threads);
  const simd::MatMulArgs args = g.Args();
  const simd::PackedMatrix packed = simd::PackB(args.b, args.ldb, args.b_transposed, g.k, g.n);
  for (auto _ : state) {
    parallel::ParallelMatMulPacked(args.a, args.lda, packed, args.c, args.ldc, g.m, nullptr, 1.0f,
                                   false);
    benchmark::ClobberMemory();
  }
  SetGemmCounters(state, g, threads);
  state.SetLabel(std::string("attn packed ") + simd::MatMulTargetName());
}

#if ATTN_BENCH_OPENBLAS
void BM_OpenBLAS(benchmark::State& state) {
  Gemm g(state.range(0), state.range(1), state.range(2), state.range(3) != 0);
  const int threads = static_cast<int>(state.range(4));
  Peak(threads);
  openblas_set_num_threads(threads);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, g.b_transposed ? CblasTrans : CblasNoTrans,
                static_cast<int>(g.m), static_cast<int>(g.n), static_cast<int>(g.k), 1.0f,
                g.a.data(), static_cast<int>(g.k), g.b.data(),
                static_cast<int>(g.b_transposed ? g.k : g.n), 0.0f, g.c.data(),
                static_cast<int>(g.n));
    benchmark::ClobberMemory();
  }
  SetGemmCounters(state, g, threads);
  state.SetLabel(std::string("OpenBLAS ") + openblas_get_corename());
  openblas_set_num_threads(1);
}
#endif

#if ATTN_BENCH_DNNL
void BM_OneDNN(benchmark::State& state) {
  Gemm g(state.range(0), state.range(1), state.range(2), state.range(3) != 0);
  const int threads = static_cast<int>(state.range(4));
  Peak(threads);
  omp_set_num_threads(threads);
  for (auto _ : state) {
    dnnl_sgemm('N', g.b_transposed ? 'T' : 'N', g.m, g.n, g.k, 1.0f, g.a.data(), g.k, g.b.data(),
               g.b_transposed ? g.k : g.n, 0.0f, g.c.data(), g.n);
    benchmark::ClobberMemory();
  }
  SetGemmCounters(state, g, threads);
  state.SetLabel("oneDNN");
}
#endif

// --- Softmax -----------------------------------------------------------------

// Args: rows, cols, causal, reference (1 = scalar reference).
void BM_Softmax(benchmark::State& state) {
  const size_t rows = state.range(0), cols = state.range(1);
  std::vector<float> in(rows * cols), out(rows * cols);
  for (size_t i = 0; i < in.size(); ++i) in[i] = float(i % 97) * 0.1f;
  simd::SoftmaxArgs args;
  args.in = in.data();
  args.ld_in = cols;
  args.out = out.data();
  args.ld_out = cols;
  args.rows = rows;
  args.cols = cols;
  args.scale = 0.125f;
  args.causal = state.range(2) != 0;
  const bool reference = state.range(3) != 0;
  for (auto _ : state) {
    if (reference) {
      simd::MaskedSoftmaxReference(args);
    } else {
      simd::MaskedSoftmax(args);
    }
    benchmark::ClobberMemory();
  }
  state.counters["rows/s"] =
      benchmark::Counter(double(rows), benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(reference ? "scalar reference" : simd::MatMulTargetName());
}

// --- Registration ------------------------------------------------------------

struct Shape {
  int64_t m, n, k, b_transposed;
};
// Projections (A · Wᵀ), attention (Q·Kᵀ, weights·V) and small odd shapes.
const Shape kProjections[] = {{8192, 2304, 768, 1}, {8192, 768, 768, 1}};
const Shape kAttention[] = {{1024, 1024, 64, 1}, {1024, 64, 1024, 0}};
const Shape kSmall[] = {{37, 53, 300, 1}, {129, 67, 65, 0}, {1, 768, 768, 1}, {97, 97, 97, 0}};

// Best-of statistics over --benchmark_repetitions: "min" for times, "max"
// for the GFLOP/s and peak% counters (the quietest repetition on a shared
// machine).
double MinOf(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }
double MaxOf(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }

void Register() {
  constexpr double kMinTime = 0.3;
  auto add = [&](const char* name, void (*fn)(benchmark::State&), const Shape& s, int threads,
                 int64_t disabled = 0) {
    benchmark::RegisterBenchmark(name, fn)
        ->Args({s.m, s.n, s.k, s.b_transposed, threads, disabled})
        ->ArgNames({"M", "N", "K", "bT", "threads", "disabled"})
        ->MinTime(kMinTime)
        ->UseRealTime()
        ->ComputeStatistics("min", MinOf)
        ->ComputeStatistics("max", MaxOf)
        ->Unit(benchmark::kMillisecond);
  };
  for (int threads : {1, 2}) {
    benchmark::RegisterBenchmark("FmaPeak", BM_FmaPeak)
        ->Arg(threads)
        ->ArgName("threads")
        ->MinTime(kMinTime)
        ->UseRealTime()
        ->ComputeStatistics("min", MinOf)
        ->ComputeStatistics("max", MaxOf);
  }
  std::vector<Shape> all;
  for (const Shape& s : kProjections) all.push_back(s);
  for (const Shape& s : kAttention) all.push_back(s);
  for (const Shape& s : kSmall) all.push_back(s);
  // One library after the other: OpenBLAS's and OpenMP's threads keep
  // spinning for a while after a call and would slow down the next library.
  for (const Shape& s : all) {
    for (int threads : {1, 2}) {
      add("attn", BM_Attn, s, threads);
      add("attn_packed", BM_AttnPacked, s, threads);
    }
  }
  // Lower targets, one thread: AVX2 (AVX3 disabled), SSE4 (AVX2 too).
  for (const Shape& s : {kProjections[1], kAttention[0], kAttention[1]}) {
    add("attn_avx2", BM_Attn, s, 1, HWY_AVX3 | HWY_AVX3_DL);
    add("attn_sse4", BM_Attn, s, 1, HWY_AVX3 | HWY_AVX3_DL | HWY_AVX2);
  }
  for (int64_t causal : {0, 1}) {
    for (int64_t reference : {0, 1}) {
      benchmark::RegisterBenchmark("softmax", BM_Softmax)
          ->Args({1024, 1024, causal, reference})
          ->ArgNames({"rows", "cols", "causal", "ref"})
          ->MinTime(kMinTime)
          ->ComputeStatistics("min", MinOf)
          ->ComputeStatistics("max", MaxOf)
          ->Unit(benchmark::kMicrosecond);
    }
  }
#if ATTN_BENCH_OPENBLAS
  for (const Shape& s : all) {
    for (int threads : {1, 2}) add("openblas", BM_OpenBLAS, s, threads);
  }
#endif
#if ATTN_BENCH_DNNL
  for (const Shape& s : all) {
    for (int threads : {1, 2}) add("onednn", BM_OneDNN, s, threads);
  }
#endif
}

}  // namespace
}  // namespace attn

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  attn::Register();
  benchmark::AddCustomContext("attn target", attn::simd::MatMulTargetName());
  // The FP32 peak used by the peak% counters, measured before anything else.
  benchmark::AddCustomContext("FMA peak GFLOP/s, 1 thread (peak% = GFLOP/s / threads / this)",
                              std::to_string(attn::Peak(1)));
  benchmark::AddCustomContext("FMA GFLOP/s measured with 2 threads",
                              std::to_string(attn::MeasurePeak(2)));
#if ATTN_BENCH_OPENBLAS
  const char* coretype = getenv("OPENBLAS_CORETYPE");
  benchmark::AddCustomContext(
      "OpenBLAS", std::string(openblas_get_corename()) +
                      " (OPENBLAS_CORETYPE=" + (coretype != nullptr ? coretype : "unset") + ")");
#endif
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
