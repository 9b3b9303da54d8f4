// Prefill with grouped-query attention: one forward(x) of the Llama 3.2 1B
// attention layer (gqa_bench.h: 32 heads of 64, 8 KV groups, Llama 3 RoPE,
// context 8192) over B = 1 sequence of T tokens, 1 and 2 attn threads:
//   attn/gqa_prefill/llama32_1b_T1024/threads:<n>       T = 1024, causal
//   attn/gqa_prefill/llama32_1b_T4096/threads:<n>       T = 4096, causal
//   attn/gqa_prefill/llama32_1b_T4096_w512/threads:<n>  T = 4096, sliding
//       window of 512 (GroupedQueryAttention(..., sliding_window = 512))
// Each configuration: MakeGqaModule (seed 123), then x = attn::rand((1, T,
// 2048)), built on its first call and shared by both thread counts; that
// first call's output is the reference of bench/peers/torch_gqa.py for
// T = 1024 (WriteGqaReference). The T = 4096 rows run BigRepetitions()
// repetitions. Counters:
//   flops_causal, GFLOPS_causal  GqaForwardFlops (gqa_bench.h: 25.8 GFLOP at
//                    T = 1024, 154.6 at T = 4096, 102.0 with the window) and
//                    that over the wall time per call
//   peak_fraction    GFLOPS_causal / (threads x the single-core FMA peak
//                    measured at start-up); the report also divides by the
//                    in-run machine/fma_peak at the same thread count
//   tokens, window, threads

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "attn/attn.h"
#include "attn/grouped_query_attention.h"
#include "bench/attention_bench.h"
#include "bench/gqa_bench.h"
#include "benchmark/benchmark.h"
#include "simd/matmul.h"

namespace attn_bench {
namespace {

struct PrefillConfig {
  const char* name;
  int64_t tokens, window;
  bool reference;  // written for the PyTorch peer's check
};

constexpr PrefillConfig kPrefillConfigs[] = {
    {"llama32_1b_T1024", 1024, 0, true},
    {"llama32_1b_T4096", 4096, 0, false},
    {"llama32_1b_T4096_w512", 4096, 512, false},
};

struct PrefillCase {
  std::unique_ptr<attn::GroupedQueryAttention> gqa;
  attn::Tensor x;
};

PrefillCase& CaseOf(const PrefillConfig& c) {
  static std::map<std::string, std::unique_ptr<PrefillCase>> cases;
  std::unique_ptr<PrefillCase>& current = cases[c.name];
  if (!current) {
    current = std::make_unique<PrefillCase>();
    current->gqa = MakeGqaModule(kGqaKvGroups, c.window);
    current->x = attn::rand({1, c.tokens, kGqaDim});
    const attn::Tensor y = current->gqa->forward(current->x);  // warm-up (arena, page faults)
    if (c.reference) WriteGqaReference(std::string("prefill_") + c.name, y);
  }
  return *current;
}

void BM_GqaPrefill(benchmark::State& state, const PrefillConfig& c, int threads) {
  attn::set_num_threads(threads);
  PrefillCase& current = CaseOf(c);
  // Every call takes 50 ms or more: no warm-up after another benchmark
  // (module_bench.cc makes one below 50 ms only).
  SwitchedTo(&current);

  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    const attn::Tensor y = current.gqa->forward(current.x);
    benchmark::DoNotOptimize(y.data());
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double per_call = seconds / static_cast<double>(state.iterations());

  const double flops = GqaForwardFlops(1, c.tokens, kGqaKvGroups, c.window);
  const double gflops = flops / per_call * 1e-9;
  state.counters["flops_causal"] = flops;
  state.counters["GFLOPS_causal"] = gflops;
  state.counters["peak_fraction"] = gflops / (threads * FmaPeakGflops1());
  state.counters["tokens"] = static_cast<double>(c.tokens);
  state.counters["window"] = static_cast<double>(c.window);
  state.counters["threads"] = attn::num_threads();
  state.SetLabel(attn::simd::MatMulTargetName());
}

}  // namespace

void RegisterGqaPrefillBenchmarks() {
  for (const PrefillConfig& c : kPrefillConfigs) {
    for (int threads : {1, 2}) {
      const std::string name =
          std::string("attn/gqa_prefill/") + c.name + "/threads:" + std::to_string(threads);
      benchmark::internal::Benchmark* b =
          benchmark::RegisterBenchmark(name.c_str(), BM_GqaPrefill, c, threads);
      b->UseRealTime()
          ->ComputeStatistics("min", MinOf)
          ->MeasureProcessCPUTime()
          ->Unit(benchmark::kMillisecond);
      if (c.tokens >= 4096 && BigRepetitions() > 0) b->Repetitions(BigRepetitions());
    }
  }
}

}  // namespace attn_bench
