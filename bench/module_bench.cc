// The fixture of the module benchmarks (module_bench.h): builds a benchmark's
// Case on its first call, measures its memory once, times forward calls and
// sets the counters and the label.

#include "bench/module_bench.h"

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "attn/attn.h"
#include "bench/attention_bench.h"
#include "bench/memory_tracking.h"
#include "benchmark/benchmark.h"
#include "hwy/targets.h"
#include "simd/matmul.h"
#include "simd/matmul_int8.h"

namespace attn_bench {

attn::Tensor Case::Forward() const {
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

namespace {

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

// Called under the variant's AvxTwoScope, so that weights are packed (and
// quantized) for the kernels the benchmark runs.
std::unique_ptr<Case> MakeCase(const Config& c, Variant v) {
  return IsInt8(v) ? MakeInt8Case(c) : MakeFloat32Case(c, v);
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
    MeasureMemory(*current, HeapTracking());
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

void RegisterModuleBenchmark(const Config& c, Variant v) {
  for (int threads : {1, 2}) {
    const std::string name = std::string("attn/") + VariantName(v) + "/" + c.name +
                             "/threads:" + std::to_string(threads);
    benchmark::RegisterBenchmark(name.c_str(), BM_Attention, name, c, v, threads)
        ->UseRealTime()
        ->ComputeStatistics("min", MinOf)
        ->MeasureProcessCPUTime()
        ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace attn_bench
