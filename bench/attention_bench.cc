// Attention module benchmarks: the chapter's MultiHeadAttentionWrapper (one
// CausalAttention head after another), the wrapper followed by an out_proj
// Linear (the book's bonus-material variant, comparable with the fused
// module), and the fused MultiHeadAttention on its default flash path
// ("fused") and on its materialized path ("fused_materialized",
// set_attention_path(kMaterialized)), on the configurations of
// bench/README.md, with 1 and 2 attn threads; also the fused module after
// attn::quantize_dynamic ("fused_int8": its Linear layers in int8, the
// attention in float32) on the same configurations, and at B8_T1024 the
// float32 and int8 fused modules with Highway's AVX-512 targets disabled
// ("fused_avx2", "fused_int8_avx2": what a CPU without AVX-512 and VNNI
// runs; the modules are built and quantized under that setting, so their
// weights are packed for the AVX2 kernels). main() also registers the
// attention core alone (core_bench.cc), KV-cache decoding (decode_bench.cc)
// and the machine's FMA peak and read bandwidth (machine_bench.cc).
//
// Names: attn/<variant>/<config>/threads:<n> (Google Benchmark appends
// /real_time). Modules in eval mode, dropout 0.0, weights from
// attn::manual_seed(123), input attn::rand((B, T, d_in)) made once per
// benchmark. Counters (per forward call):
//   flops_dense, flops_causal  FLOP counts (bench/README.md gives the formulas)
//   GFLOPS_dense, GFLOPS_causal  those over the measured wall time per call
//   peak_heap_bytes  highest heap use during one forward minus the heap use
//                    before it (every malloc in the process is counted; see
//                    memory_tracking.h); -1 if the tracking is unavailable
//   peak_rss_bytes   peak resident set growth during one forward (VmHWM)
//   out_bytes        fused variants: the output tensor, B·T·d·4, allocated
//                    by every forward (the QKV buffer, B·T·3d·4, is the
//                    calling thread's scratch: allocated by the first call, reused)
//   extra_heap_bytes fused variants: peak_heap_bytes - out_bytes, the
//                    working memory beyond the output
//   threads          attn::num_threads() during the run
//   rel_l2_error     int8 variants: ||y_int8 - y_f32|| / ||y_f32|| (L2 norms
//                    over the whole output, in double), y_f32 the output of
//                    the float32 module the int8 one was quantized from, on
//                    the same input and Highway target; computed once,
//                    outside the timing
// Label: the Highway target attn's kernels dispatched to ("AVX3", ...), and
// for the int8 variants the int8 kernel ("AVX3 int8:AVX512-VNNI").
// real_time is wall-clock time per call, cpu_time the CPU time of the whole
// process (all threads) per call: on a loaded machine the 1-thread CPU time
// is the steadier of the two.
//
// Run through bench/run.sh, which asks for repetitions and medians.

#include "bench/attention_bench.h"

#include <time.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "attn/attn.h"
#include "bench/memory_tracking.h"
#include "benchmark/benchmark.h"
#include "hwy/targets.h"
#include "simd/matmul.h"
#include "simd/matmul_int8.h"

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

double CausalAttentionFlops(int64_t batch, int64_t heads, int64_t head_dim, int64_t tokens) {
  const double t = static_cast<double>(tokens);
  return 4.0 * static_cast<double>(batch) * static_cast<double>(heads) *
         static_cast<double>(head_dim) * t * (t + 1.0) / 2.0;
}

std::vector<Config> Configs() {
  std::vector<Config> configs;
  // Section 3.6's toy: the wrapper of two heads of d_out = 2 (width 4) and
  // MultiHeadAttention(3, 2, 6, 0.0, 2) (width 2, head_dim 1).
  configs.push_back({"toy_B2_T6", 2, 6, 3, 2, 2, 2});
  // GPT-2 small's width (768, 12 heads of 64) over a sweep of context lengths;
  // B1_T256 is the "gpt2_small" configuration, B1_T1024 GPT-2's full context.
  for (int64_t t : {64, 128, 256, 512, 1024, 2048}) {
    configs.push_back({"B1_T" + std::to_string(t), 1, t, 768, 768, 12, 64});
  }
  configs.push_back({"B8_T256", 8, 256, 768, 768, 12, 64});
  // The book's bonus benchmark: B = 8, T = 1024, d_in = d_out = 768, 12 heads.
  configs.push_back({"B8_T1024", 8, 1024, 768, 768, 12, 64});
  return configs;
}

namespace {

// kFusedWeights: forward(x, &weights), the path that materializes the whole
// (B, H, T, T) weights tensor as the book's module does (registered where that
// tensor is at most 512 MiB). kFusedInt8: attn::quantize_dynamic of kFused.
// kFusedAvx2, kFusedInt8Avx2: kFused and kFusedInt8 with Highway's AVX-512
// targets disabled (AvxTwoScope).
enum class Variant {
  kWrapper,
  kWrapperOutProj,
  kFused,
  kFusedMaterialized,
  kFusedWeights,
  kFusedInt8,
  kFusedAvx2,
  kFusedInt8Avx2
};

bool IsFused(Variant v) { return v != Variant::kWrapper && v != Variant::kWrapperOutProj; }
bool IsInt8(Variant v) { return v == Variant::kFusedInt8 || v == Variant::kFusedInt8Avx2; }
bool IsAvx2(Variant v) { return v == Variant::kFusedAvx2 || v == Variant::kFusedInt8Avx2; }

// While alive (for an AVX2-forced variant): Highway's AVX-512 targets
// disabled, so attn's kernels dispatch to AVX2 and the int8 kernels to their
// Highway AVX2 version instead of VNNI (simd/matmul_int8.h); restored after.
class AvxTwoScope {
 public:
  explicit AvxTwoScope(bool active) : active_(active) {
    if (active_) hwy::DisableTargets(HWY_AVX3 | HWY_AVX3_DL);
  }
  ~AvxTwoScope() {
    if (active_) hwy::DisableTargets(0);
  }
  AvxTwoScope(const AvxTwoScope&) = delete;
  AvxTwoScope& operator=(const AvxTwoScope&) = delete;

 private:
  bool active_;
};

const char* VariantName(Variant v) {
  switch (v) {
    case Variant::kWrapper:
      return "wrapper";
    case Variant::kWrapperOutProj:
      return "wrapper_out_proj";
    case Variant::kFused:
      return "fused";
    case Variant::kFusedMaterialized:
      return "fused_materialized";
    case Variant::kFusedWeights:
      return "fused_with_weights";
    case Variant::kFusedInt8:
      return "fused_int8";
    case Variant::kFusedAvx2:
      return "fused_avx2";
    case Variant::kFusedInt8Avx2:
      return "fused_int8_avx2";
  }
  return "?";
}

struct Flops {
  double dense, causal;
};

// heads of width head_dim (output width w = heads * head_dim):
//   Q, K, V projections  2·B·T·d_in·3w
//   Q·Kᵀ and weights·V   4·B·H·T²·hd (dense) or 4·B·H·hd·T(T+1)/2 (causal)
//   out_proj (w x w)     2·B·T·w²   (when present)
Flops CountFlops(const Config& c, int64_t head_dim, bool out_proj) {
  const double b = static_cast<double>(c.batch), t = static_cast<double>(c.tokens);
  const double h = static_cast<double>(c.heads), hd = static_cast<double>(head_dim);
  const double w = h * hd;
  const double projections = 2.0 * b * t * static_cast<double>(c.d_in) * 3.0 * w;
  const double out = out_proj ? 2.0 * b * t * w * w : 0.0;
  return {projections + out + 4.0 * b * h * t * t * hd,
          projections + out + 4.0 * b * h * hd * t * (t + 1.0) / 2.0};
}

// The modules and input of one benchmark, built on its first call and kept
// while Google Benchmark calls it again (iteration-count search, repetitions,
// interleaved with other benchmarks under --benchmark_enable_random_interleaving).
struct Case {
  std::unique_ptr<attn::MultiHeadAttentionWrapper> wrapper;
  std::unique_ptr<attn::Linear> out_proj;
  std::unique_ptr<attn::MultiHeadAttention> fused;
  attn::Tensor x;
  double first_call_seconds = 0.0;
  int64_t peak_heap_bytes = -1;
  int64_t peak_rss_bytes = -1;
  double rel_l2_error = -1.0;  // int8 variants only

  bool return_weights = false;

  attn::Tensor Forward() const {
    if (fused && return_weights) {
      attn::Tensor weights;
      attn::Tensor y = fused->forward(x, &weights);
      benchmark::DoNotOptimize(weights.data());
      return y;
    }
    if (fused) return fused->forward(x);
    attn::Tensor y = wrapper->forward(x);
    return out_proj ? out_proj->forward(y) : y;
  }
};

// ||a - b|| / ||b|| over all elements, in double.
double RelativeL2Error(const attn::Tensor& a, const attn::Tensor& b) {
  double diff = 0.0, norm = 0.0;
  for (int64_t i = 0; i < b.numel(); ++i) {
    const double d = static_cast<double>(a.data()[i]) - static_cast<double>(b.data()[i]);
    diff += d * d;
    norm += static_cast<double>(b.data()[i]) * static_cast<double>(b.data()[i]);
  }
  return norm > 0.0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

// Called under the variant's AvxTwoScope, so that weights are packed (and
// quantized) for the kernels the benchmark runs.
std::unique_ptr<Case> MakeCase(const Config& c, Variant v) {
  auto result = std::make_unique<Case>();
  attn::manual_seed(123);
  if (IsFused(v)) {
    result->fused =
        std::make_unique<attn::MultiHeadAttention>(c.d_in, c.d_out, c.tokens, 0.0, c.heads);
    result->fused->eval();
    result->return_weights = v == Variant::kFusedWeights;
    const bool materialized = v == Variant::kFusedMaterialized || v == Variant::kFusedWeights;
    result->fused->set_attention_path(materialized
                                          ? attn::MultiHeadAttention::AttentionPath::kMaterialized
                                          : attn::MultiHeadAttention::AttentionPath::kFlash);
  } else {
    result->wrapper = std::make_unique<attn::MultiHeadAttentionWrapper>(c.d_in, c.wrapper_head_dim,
                                                                        c.tokens, 0.0, c.heads);
    result->wrapper->eval();
    if (v == Variant::kWrapperOutProj) {
      const int64_t width = c.heads * c.wrapper_head_dim;
      result->out_proj = std::make_unique<attn::Linear>(width, width);
      result->out_proj->eval();
    }
  }
  result->x = attn::rand({c.batch, c.tokens, c.d_in});
  if (IsInt8(v)) {
    // The float32 module's output on the same input is the reference; the
    // float32 module itself is not kept.
    const attn::Tensor reference = result->fused->forward(result->x);
    result->fused =
        std::make_unique<attn::MultiHeadAttention>(attn::quantize_dynamic(*result->fused));
    result->rel_l2_error = RelativeL2Error(result->fused->forward(result->x), reference);
  }
  return result;
}

// One forward under both memory measurements; the smaller of two such calls
// is kept, so that one-off allocations (a worker thread starting late, say)
// are not charged to the module.
void MeasureMemory(Case& c, bool heap_tracking) {
  for (int round = 0; round < 2; ++round) {
    int64_t heap_bytes = -1;
    RssPeakScope rss;
    {
      HeapPeakScope heap;
      const attn::Tensor y = c.Forward();
      benchmark::DoNotOptimize(y.data());
      if (heap_tracking) heap_bytes = heap.PeakExtraBytes();
    }
    const int64_t rss_bytes = rss.PeakGrowthBytes();
    if (round == 0 || heap_bytes < c.peak_heap_bytes) c.peak_heap_bytes = heap_bytes;
    if (round == 0 || rss_bytes < c.peak_rss_bytes) c.peak_rss_bytes = rss_bytes;
  }
}

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

void BM_Attention(benchmark::State& state, const std::string& key, const Config& c, Variant v,
                  int threads) {
  // All cases stay alive (the largest, B8_T1024, hold ~35 MB each), so that
  // interleaved repetitions do not rebuild them.
  static std::map<std::string, std::unique_ptr<Case>> cases;
  const AvxTwoScope avx2(IsAvx2(v));
  attn::set_num_threads(threads);
  std::unique_ptr<Case>& current = cases[key];
  const bool fresh = !current;
  if (fresh) {
    current = MakeCase(c, v);
    const auto start = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(current->Forward().data());  // warm-up (arena, page faults)
    current->first_call_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    MeasureMemory(*current, g_heap_tracking);
  }
  if (SwitchedTo(current.get()) && !fresh && current->first_call_seconds < 0.05) {
    // Another benchmark ran in between: warm the caches and the thread count
    // up again, where that is cheap (a cold call is noise against 50+ ms).
    benchmark::DoNotOptimize(current->Forward().data());
  }

  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    const attn::Tensor y = current->Forward();
    benchmark::DoNotOptimize(y.data());
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double per_call = seconds / static_cast<double>(state.iterations());

  const bool wrapper = !IsFused(v);
  const Flops flops =
      CountFlops(c, wrapper ? c.wrapper_head_dim : c.d_out / c.heads, v != Variant::kWrapper);
  state.counters["flops_dense"] = flops.dense;
  state.counters["flops_causal"] = flops.causal;
  state.counters["GFLOPS_dense"] = flops.dense / per_call * 1e-9;
  state.counters["GFLOPS_causal"] = flops.causal / per_call * 1e-9;
  state.counters["peak_heap_bytes"] = static_cast<double>(current->peak_heap_bytes);
  state.counters["peak_rss_bytes"] = static_cast<double>(current->peak_rss_bytes);
  if (IsFused(v)) {
    const double out_bytes =
        4.0 * static_cast<double>(c.batch * c.tokens) * static_cast<double>(c.d_out);
    state.counters["out_bytes"] = out_bytes;
    if (current->peak_heap_bytes >= 0) {
      state.counters["extra_heap_bytes"] =
          static_cast<double>(current->peak_heap_bytes) - out_bytes;
    }
  }
  if (IsInt8(v)) state.counters["rel_l2_error"] = current->rel_l2_error;
  state.counters["threads"] = attn::num_threads();
  std::string label = attn::simd::MatMulTargetName();
  if (IsInt8(v)) label += std::string(" int8:") + attn::simd::MatMulInt8KernelName();
  state.SetLabel(label);
}

}  // namespace
}  // namespace attn_bench

int main(int argc, char** argv) {
  using attn_bench::Config;
  using attn_bench::Variant;
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
    for (Variant v : {Variant::kWrapper, Variant::kWrapperOutProj, Variant::kFused,
                      Variant::kFusedMaterialized, Variant::kFusedWeights, Variant::kFusedInt8,
                      Variant::kFusedAvx2, Variant::kFusedInt8Avx2}) {
      if (v == Variant::kFusedWeights &&
          c.batch * c.heads * c.tokens * c.tokens * 4 > (int64_t{512} << 20)) {
        continue;
      }
      if (attn_bench::IsAvx2(v) && c.name != "B8_T1024") continue;
      for (int threads : {1, 2}) {
        const std::string name = std::string("attn/") + attn_bench::VariantName(v) + "/" + c.name +
                                 "/threads:" + std::to_string(threads);
        benchmark::RegisterBenchmark(name.c_str(), attn_bench::BM_Attention, name, c, v, threads)
            ->UseRealTime()
            ->MeasureProcessCPUTime()
            ->Unit(benchmark::kMillisecond);
      }
    }
  }
  attn_bench::RegisterCoreBenchmarks();
  attn_bench::RegisterDecodeBenchmarks();
  attn_bench::RegisterMachineBenchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
