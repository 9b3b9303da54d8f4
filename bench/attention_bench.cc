// attn_attention_bench's main and the helpers its files share
// (attention_bench.h): records the context of the run (Highway target, build
// type, cores available, heap tracking, the single-core FMA peak), then
// registers, in this order, the module benchmarks of every configuration
// (module_float32_bench.cc, then module_int8_bench.cc; module_bench.h gives
// the names and counters), the attention core alone (core_bench.cc), KV-cache
// decoding (decode_bench.cc), grouped-query attention (gqa_bench.h) and the
// machine's FMA peak and read bandwidth (machine_bench.cc).
//
// Run through bench/run.sh, which asks for repetitions and medians.

#include "bench/attention_bench.h"

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "attn/attn.h"
#include "bench/gqa_bench.h"
#include "bench/memory_tracking.h"
#include "bench/module_bench.h"
#include "benchmark/benchmark.h"
#include "simd/matmul.h"

#ifndef ATTN_BENCH_BUILD_TYPE
#define ATTN_BENCH_BUILD_TYPE "unknown"
#endif

namespace attn_bench {

namespace {
bool g_heap_tracking = false;
}  // namespace

bool HeapTracking() { return g_heap_tracking; }

bool SwitchedTo(const void* id) {
  static const void* last = nullptr;
  const bool switched = id != last;
  last = id;
  return switched;
}

double MinOf(const std::vector<double>& v) {
  return v.empty() ? 0.0 : *std::min_element(v.begin(), v.end());
}

double CausalAttentionFlops(int64_t batch, int64_t heads, int64_t head_dim, int64_t tokens) {
  const double t = static_cast<double>(tokens);
  return 4.0 * static_cast<double>(batch) * static_cast<double>(heads) *
         static_cast<double>(head_dim) * t * (t + 1.0) / 2.0;
}

namespace {

// Cores this process really gets: CPU time over wall time of two threads that
// spin for `seconds`. About 2 on an idle 2-core machine; about 1 when other
// work holds a core (or a CPU quota allows one), and then 2-thread results
// say nothing about attn's scaling.
double ParallelCapacity(double seconds) {
  const auto cpu_seconds = [] {
    timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
  };
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::duration<double>(seconds);
  const double cpu_start = cpu_seconds();
  auto spin = [deadline] {
    while (std::chrono::steady_clock::now() < deadline) {
    }
  };
  std::thread a(spin), b(spin);
  a.join();
  b.join();
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return (cpu_seconds() - cpu_start) / wall;
}

}  // namespace
}  // namespace attn_bench

int main(int argc, char** argv) {
  using attn_bench::Config;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

  attn_bench::g_heap_tracking = attn_bench::HeapTrackingWorks();
  benchmark::AddCustomContext("attn_target", attn::simd::MatMulTargetName());
  benchmark::AddCustomContext("attn_build_type", ATTN_BENCH_BUILD_TYPE);
  benchmark::AddCustomContext("attn_default_threads", std::to_string(attn::num_threads()));
  char capacity[32];
  snprintf(capacity, sizeof(capacity), "%.2f", attn_bench::ParallelCapacity(0.3));
  benchmark::AddCustomContext("cores_available_to_2_threads", capacity);
  benchmark::AddCustomContext("heap_tracking",
                              attn_bench::g_heap_tracking ? "malloc interposition" : "unavailable");
  // The reference of the core benchmarks' peak_fraction, measured before
  // anything else runs.
  char peak[32];
  snprintf(peak, sizeof(peak), "%.1f", attn_bench::FmaPeakGflops1());
  benchmark::AddCustomContext("fma_peak_gflops_1thread", peak);
  benchmark::AddCustomContext("machine_kernel_target", attn_bench::MachineKernelTarget());

  for (const Config& c : attn_bench::Configs()) {
    attn_bench::RegisterFloat32ModuleBenchmarks(c);
    attn_bench::RegisterInt8ModuleBenchmarks(c);
  }
  attn_bench::RegisterCoreBenchmarks();
  attn_bench::RegisterDecodeBenchmarks();
  attn_bench::RegisterKvInt8DecodeBenchmarks();
  attn_bench::RegisterGqaPrefillBenchmarks();
  attn_bench::RegisterGqaDecodeBenchmarks();
  attn_bench::RegisterGqaCoreBenchmarks();
  attn_bench::RegisterMachineBenchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
