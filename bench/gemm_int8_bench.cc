// Dynamic int8 quantization benchmarks (simd/matmul_int8.h): attn's int8
// projection GEMM against attn's float32 GEMM and, when found at configure
// time, oneDNN's dnnl_sgemm and dnnl_gemm_u8s8s32, in the same run.
//
// Run:
//   build/bench/attn_gemm_int8_bench --benchmark_repetitions=3
//       --benchmark_report_aggregates_only=true
// Counters: ops/s = 2*M*N*K per second (wall clock). With repetitions, the
// _max aggregate of ops/s (and _min of time) is the best repetition, the
// useful figure on a machine shared with other work. Labels name the kernel
// ("AVX512-VNNI", or the Highway target).
//
// Rows (M x N x K: GPT-2 small's qkv and out_proj for 8192 tokens, and one
// decoding step, C = A · Wᵀ with W (N, K) quantized or packed once):
//   f32          parallel::ParallelMatMulPacked (float32, B packed once)
//   int8         parallel::ParallelMatMulInt8: QuantizeRows + GEMM, what a
//                quantized nn.Linear forward pays
//   int8_gemm    parallel::ParallelMatMulInt8Quantized: the GEMM alone
//                (int32 sums and the float32 dequantization)
//   onednn_f32   dnnl_sgemm (row-major, B transposed)
//   onednn_u8s8  dnnl_gemm_u8s8s32 (integer GEMM with int32 output, no
//                dequantization; the API takes B unpacked on every call)
// and at 1 thread on AVX2 (AVX3 disabled, VNNI off): f32_avx2, int8_avx2,
// int8_gemm_avx2.
//
// oneDNN 2.6 picks its AMX ISA on Sapphire Rapids, where dnnl_gemm_u8s8s32
// runs at a third of its AVX-512 VNNI speed (measured single-threaded: 150
// against 460 GOP/s at 8192 x 768 x 768). Unless ONEDNN_MAX_CPU_ISA is set,
// the benchmark caps oneDNN at AVX512_CORE_VNNI, its fastest ISA for this
// API; the context line "oneDNN ISA" says which it used.

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <algorithm>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "hwy/targets.h"
#include "parallel/matmul_int8_parallel.h"
#include "parallel/matmul_parallel.h"
#include "parallel/parallel_for.h"
#include "simd/matmul.h"
#include "simd/matmul_int8.h"

#if ATTN_BENCH_DNNL
#include <omp.h>

#include "oneapi/dnnl/dnnl.h"
#endif

namespace attn {
namespace {

// One projection: A (M x K) activations, W (N x K) weight, C (M x N), with
// A's rows quantized once for the GEMM-alone rows.
struct Problem {
  Problem(size_t m, size_t n, size_t k)
      : m(m), n(n), k(k), a(m * k), w(n * k), c(m * n), aq(m * k), a_scale(m), a_zp(m) {
    uint32_t x = 12345;
    auto next = [&x] {
      x = x * 1664525u + 1013904223u;
      return float(x >> 8) * (1.0f / 16777216.0f) - 0.5f;
    };
    for (float& v : a) v = next();
    for (float& v : w) v = next() * 0.07f;
    simd::QuantizeRows(a.data(), k, m, k, aq.data(), k, a_scale.data(), a_zp.data());
  }
  double Ops() const { return 2.0 * double(m) * double(n) * double(k); }

  size_t m, n, k;
  std::vector<float> a, w, c;
  std::vector<uint8_t> aq;
  std::vector<float> a_scale;
  std::vector<int32_t> a_zp;
};

void SetCounters(benchmark::State& state, const Problem& p) {
  state.counters["ops/s"] =
      benchmark::Counter(p.Ops(), benchmark::Counter::kIsIterationInvariantRate);
}

// Args: M, N, K, threads, disabled Highway targets, VNNI allowed.
struct Setup {
  explicit Setup(benchmark::State& state)
      : problem(state.range(0), state.range(1), state.range(2)),
        threads(static_cast<int>(state.range(3))) {
    hwy::DisableTargets(state.range(4));
    simd::SetInt8VnniEnabledForTest(state.range(5) != 0);
    set_num_threads(threads);
  }
  ~Setup() {
    hwy::DisableTargets(0);
    simd::SetInt8VnniEnabledForTest(true);
  }
  Problem problem;
  int threads;
};

void BM_F32(benchmark::State& state) {
  Setup s(state);
  Problem& p = s.problem;
  const simd::PackedMatrix packed = simd::PackB(p.w.data(), p.k, true, p.k, p.n);
  for (auto _ : state) {
    parallel::ParallelMatMulPacked(p.a.data(), p.k, packed, p.c.data(), p.n, p.m, nullptr, 1.0f,
                                   false);
    benchmark::ClobberMemory();
  }
  SetCounters(state, p);
  state.SetLabel(std::string("attn f32 ") + simd::MatMulTargetName());
}

void BM_Int8(benchmark::State& state) {
  Setup s(state);
  Problem& p = s.problem;
  const simd::QuantizedMatrix b = simd::QuantizeAndPackB(p.w.data(), p.k, p.n, p.k);
  for (auto _ : state) {
    parallel::ParallelMatMulInt8(p.a.data(), p.k, p.m, b, p.c.data(), p.n, nullptr);
    benchmark::ClobberMemory();
  }
  SetCounters(state, p);
  state.SetLabel(std::string("attn int8 ") + simd::MatMulInt8KernelName());
}

void BM_Int8Gemm(benchmark::State& state) {
  Setup s(state);
  Problem& p = s.problem;
  const simd::QuantizedMatrix b = simd::QuantizeAndPackB(p.w.data(), p.k, p.n, p.k);
  for (auto _ : state) {
    parallel::ParallelMatMulInt8Quantized(p.aq.data(), p.k, p.a_scale.data(), p.a_zp.data(), p.m, b,
                                          p.c.data(), p.n, nullptr);
    benchmark::ClobberMemory();
  }
  SetCounters(state, p);
  state.SetLabel(std::string("attn int8 GEMM ") + simd::MatMulInt8KernelName());
}

#if ATTN_BENCH_DNNL
void BM_OneDnnF32(benchmark::State& state) {
  Problem p(state.range(0), state.range(1), state.range(2));
  omp_set_num_threads(static_cast<int>(state.range(3)));
  for (auto _ : state) {
    dnnl_sgemm('N', 'T', p.m, p.n, p.k, 1.0f, p.a.data(), p.k, p.w.data(), p.k, 0.0f, p.c.data(),
               p.n);
    benchmark::ClobberMemory();
  }
  SetCounters(state, p);
  state.SetLabel("oneDNN sgemm");
}

void BM_OneDnnU8S8(benchmark::State& state) {
  Problem p(state.range(0), state.range(1), state.range(2));
  omp_set_num_threads(static_cast<int>(state.range(3)));
  std::vector<int8_t> wq(p.n * p.k);
  for (size_t e = 0; e < wq.size(); ++e) wq[e] = static_cast<int8_t>(int(e * 37 % 255) - 127);
  std::vector<int32_t> c(p.m * p.n);
  const int32_t co = 0;
  for (auto _ : state) {
    dnnl_gemm_u8s8s32('N', 'T', 'F', p.m, p.n, p.k, 1.0f, p.aq.data(), p.k, 0, wq.data(), p.k, 0,
                      0.0f, c.data(), p.n, &co);
    benchmark::ClobberMemory();
  }
  SetCounters(state, p);
  state.SetLabel("oneDNN gemm_u8s8s32");
}
#endif

struct Shape {
  int64_t m, n, k;
};
// GPT-2 small: qkv (fused, 3 x 768 outputs) and out_proj over 8192 tokens,
// and the qkv projection of one decoding step.
const Shape kShapes[] = {{8192, 2304, 768}, {8192, 768, 768}, {1, 2304, 768}};

// Best-of statistics over --benchmark_repetitions: "min" for times, "max"
// for ops/s (the quietest repetition on a shared machine).
double MinOf(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }
double MaxOf(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }

void Register() {
  constexpr double kMinTime = 0.3;
  auto add = [&](const char* name, void (*fn)(benchmark::State&), const Shape& s, int threads,
                 int64_t disabled = 0, int64_t vnni = 1) {
    benchmark::RegisterBenchmark(name, fn)
        ->Args({s.m, s.n, s.k, threads, disabled, vnni})
        ->ArgNames({"M", "N", "K", "threads", "disabled", "vnni"})
        ->MinTime(kMinTime)
        ->UseRealTime()
        ->ComputeStatistics("min", MinOf)
        ->ComputeStatistics("max", MaxOf)
        ->Unit(s.m == 1 ? benchmark::kMicrosecond : benchmark::kMillisecond);
  };
  // attn first, then oneDNN (its OpenMP threads keep spinning for a while
  // after a call and would slow down the next library).
  for (const Shape& s : kShapes) {
    for (int threads : {1, 2}) {
      add("f32", BM_F32, s, threads);
      add("int8", BM_Int8, s, threads);
      add("int8_gemm", BM_Int8Gemm, s, threads);
    }
  }
  // A CPU without VNNI: AVX2 (AVX3 disabled, VNNI off), one thread.
  const int64_t avx2 = HWY_AVX3 | HWY_AVX3_DL;
  for (const Shape& s : kShapes) {
    add("f32_avx2", BM_F32, s, 1, avx2);
    add("int8_avx2", BM_Int8, s, 1, avx2, 0);
    add("int8_gemm_avx2", BM_Int8Gemm, s, 1, avx2, 0);
  }
#if ATTN_BENCH_DNNL
  for (const Shape& s : kShapes) {
    for (int threads : {1, 2}) {
      add("onednn_f32", BM_OneDnnF32, s, threads);
      add("onednn_u8s8", BM_OneDnnU8S8, s, threads);
    }
  }
#endif
}

}  // namespace
}  // namespace attn

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  attn::Register();
  benchmark::AddCustomContext("attn f32 target", attn::simd::MatMulTargetName());
  benchmark::AddCustomContext("attn int8 kernel", attn::simd::MatMulInt8KernelName());
#if ATTN_BENCH_DNNL
  if (getenv("ONEDNN_MAX_CPU_ISA") == nullptr && getenv("DNNL_MAX_CPU_ISA") == nullptr) {
    dnnl_set_max_cpu_isa(dnnl_cpu_isa_avx512_core_vnni);
  }
  benchmark::AddCustomContext("oneDNN ISA",
                              std::to_string(static_cast<int>(dnnl_get_effective_cpu_isa())) +
                                  " (dnnl_cpu_isa_t; 0x67 = AVX512_CORE_VNNI)");
#endif
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
