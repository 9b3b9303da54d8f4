// The attention core alone: attn::detail::attention (core/attention_core.h,
// internal to attn) without the projections, on the configurations of the
// module benchmarks (all but the toy), 1 and 2 attn threads:
//   attn/core_flash/<config>/threads:<n>         the flash algorithm
//   attn/core_materialized/<config>/threads:<n>  AttentionProblem::materialize
// The input is a (B, T, 3d) buffer laid out as MultiHeadAttention::forward
// lays out its QKV projection (query columns of head h at h*hd, keys at
// d + h*hd, values at 2d + h*hd; row stride 3d, batch stride T*3d), filled by
// attn::rand after seed 123; the output is a separate (B, T, d) buffer (row
// stride d). Both are made once per configuration and shared by its
// benchmarks. Causal, scale 1/sqrt(hd).
// Counters:
//   flops_causal, GFLOPS_causal  4·B·H·hd·T(T+1)/2 and that over the wall time
//   peak_fraction    GFLOPS_causal / (threads x the single-core FMA peak
//                    measured at start-up, context fma_peak_gflops_1thread)
//   peak_heap_bytes  heap growth during one call (the materialized scratch)

#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <string>

#include "attn/attn.h"
#include "bench/attention_bench.h"
#include "bench/memory_tracking.h"
#include "benchmark/benchmark.h"
#include "core/attention_core.h"
#include "simd/matmul.h"

namespace attn_bench {
namespace {

// The QKV input and the output of one configuration.
struct CoreBuffers {
  attn::Tensor qkv, out;
};

CoreBuffers& BuffersOf(const Config& c) {
  static std::map<std::string, std::unique_ptr<CoreBuffers>> buffers;
  std::unique_ptr<CoreBuffers>& b = buffers[c.name];
  if (!b) {
    b = std::make_unique<CoreBuffers>();
    attn::manual_seed(123);
    b->qkv = attn::rand({c.batch, c.tokens, 3 * c.d_out});
    b->out = attn::Tensor({c.batch, c.tokens, c.d_out});
  }
  return *b;
}

attn::detail::AttentionProblem MakeProblem(const Config& c, CoreBuffers& b, bool materialize) {
  const size_t d = static_cast<size_t>(c.d_out);
  const size_t hd = static_cast<size_t>(c.d_out / c.heads);
  const size_t tokens = static_cast<size_t>(c.tokens);
  attn::detail::AttentionProblem p;
  p.batch = static_cast<size_t>(c.batch);
  p.heads = static_cast<size_t>(c.heads);
  p.tokens = tokens;
  p.head_dim = hd;
  float* qkv = b.qkv.data();
  p.q = {qkv, tokens * 3 * d, hd, 3 * d};
  p.k = {qkv + d, tokens * 3 * d, hd, 3 * d};
  p.v = {qkv + 2 * d, tokens * 3 * d, hd, 3 * d};
  p.out = {b.out.data(), tokens * d, hd, d};
  p.scale = 1.0f / static_cast<float>(std::sqrt(static_cast<double>(hd)));
  p.causal = true;
  p.materialize = materialize;
  return p;
}

struct CoreCase {
  double first_call_seconds = 0.0;
  int64_t peak_heap_bytes = -1;
};

void BM_Core(benchmark::State& state, const std::string& key, const Config& c, bool materialize,
             int threads) {
  static std::map<std::string, std::unique_ptr<CoreCase>> cases;
  attn::set_num_threads(threads);
  CoreBuffers& buffers = BuffersOf(c);
  const attn::detail::AttentionProblem p = MakeProblem(c, buffers, materialize);
  std::unique_ptr<CoreCase>& current = cases[key];
  const bool fresh = !current;
  if (fresh) {
    current = std::make_unique<CoreCase>();
    const auto start = std::chrono::steady_clock::now();
    attn::detail::attention(p);  // warm-up
    current->first_call_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (int round = 0; round < 2; ++round) {
      HeapPeakScope heap;
      attn::detail::attention(p);
      const int64_t bytes = HeapTracking() ? heap.PeakExtraBytes() : -1;
      if (round == 0 || bytes < current->peak_heap_bytes) current->peak_heap_bytes = bytes;
    }
  }
  if (SwitchedTo(current.get()) && !fresh && current->first_call_seconds < 0.05) {
    attn::detail::attention(p);  // another benchmark ran in between: warm up again
  }

  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    attn::detail::attention(p);
    benchmark::DoNotOptimize(buffers.out.data());
    benchmark::ClobberMemory();
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double per_call = seconds / static_cast<double>(state.iterations());

  const double flops = CausalAttentionFlops(c.batch, c.heads, c.d_out / c.heads, c.tokens);
  const double gflops = flops / per_call * 1e-9;
  state.counters["flops_causal"] = flops;
  state.counters["GFLOPS_causal"] = gflops;
  state.counters["peak_fraction"] = gflops / (threads * FmaPeakGflops1());
  state.counters["peak_heap_bytes"] = static_cast<double>(current->peak_heap_bytes);
  state.counters["threads"] = attn::num_threads();
  state.SetLabel(attn::simd::MatMulTargetName());
}

}  // namespace

void RegisterCoreBenchmarks() {
  for (const Config& c : Configs()) {
    if (c.d_out / c.heads < 8) continue;  // the toy (head_dim 1): overhead only
    for (bool materialize : {false, true}) {
      for (int threads : {1, 2}) {
        const std::string name = std::string("attn/") +
                                 (materialize ? "core_materialized/" : "core_flash/") + c.name +
                                 "/threads:" + std::to_string(threads);
        benchmark::RegisterBenchmark(name.c_str(), BM_Core, name, c, materialize, threads)
            ->UseRealTime()
            ->MeasureProcessCPUTime()
            ->Unit(benchmark::kMillisecond);
      }
    }
  }
}

}  // namespace attn_bench
