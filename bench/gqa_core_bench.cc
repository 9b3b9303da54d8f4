// The attention core alone with grouped key/value heads and sliding windows:
// attn::detail::attention (core/attention_core.h, internal to attn) without
// projections or RoPE, B = 1, head_dim 64, causal, 1 and 2 attn threads:
//   attn/gqa_core/h32_kv8_T1024/threads:<n>       Llama 3.2 1B: 32 query heads
//       reading 8 key/value heads (AttentionProblem::kv_heads = 8)
//   attn/gqa_core/h32_kv32_T1024/threads:<n>      the same work as multi-head
//       attention, one key/value head per query head
//   attn/gqa_core/h12_kv12_T1024/threads:<n>      the chapter's MultiHeadAttention
//       (GPT-2 small's 12 heads; the shape of attn/core_flash/B1_T1024)
//   attn/gqa_core/h32_kv8_T4096/threads:<n>       Llama 3.2 1B at T = 4096
//   attn/gqa_core/h32_kv8_T4096_w512/threads:<n>  the same with a sliding window
//       of 512 keys (AttentionProblem::window)
// The input is a (B, T, H·hd + 2·G·hd) buffer laid out as
// GroupedQueryAttention's QKV projection (query head h at column h·hd, key
// head g at H·hd + g·hd, value head g at H·hd + G·hd + g·hd), filled by
// attn::rand after seed 123; the output a separate (B, T, H·hd) buffer. Both
// are made on a shape's first call and shared by its thread counts; the
// T = 4096 rows run BigRepetitions() repetitions. Counters:
//   flops_causal, GFLOPS_causal  GqaAttentionFlops: 4·B·H·hd·P with P the
//                    (query, key) pairs in the causal window (T(T+1)/2
//                    without one), and that over the wall time per call
//   peak_fraction    GFLOPS_causal / (threads x the single-core FMA peak
//                    measured at start-up); the report also divides by the
//                    in-run machine/fma_peak at the same thread count
//   heads, kv_heads, tokens, window, threads

#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <string>

#include "attn/attn.h"
#include "bench/attention_bench.h"
#include "bench/gqa_bench.h"
#include "benchmark/benchmark.h"
#include "core/attention_core.h"
#include "simd/matmul.h"

namespace attn_bench {
namespace {

struct CoreShape {
  const char* name;
  int64_t heads, kv_heads, tokens, window;
};

constexpr int64_t kHeadDim = 64;

constexpr CoreShape kCoreShapes[] = {
    {"h32_kv8_T1024", kGqaHeads, kGqaKvGroups, 1024, 0},
    {"h32_kv32_T1024", kGqaHeads, kGqaHeads, 1024, 0},
    {"h12_kv12_T1024", 12, 12, 1024, 0},
    {"h32_kv8_T4096", kGqaHeads, kGqaKvGroups, 4096, 0},
    {"h32_kv8_T4096_w512", kGqaHeads, kGqaKvGroups, 4096, 512},
};

struct CoreBuffers {
  attn::Tensor qkv, out;
};

attn::detail::AttentionProblem MakeProblem(const CoreShape& s, CoreBuffers& b) {
  const size_t hd = static_cast<size_t>(kHeadDim), tokens = static_cast<size_t>(s.tokens);
  const size_t q_width = static_cast<size_t>(s.heads) * hd;
  const size_t kv_width = static_cast<size_t>(s.kv_heads) * hd;
  const size_t row = q_width + 2 * kv_width;
  attn::detail::AttentionProblem p;
  p.batch = 1;
  p.heads = static_cast<size_t>(s.heads);
  p.kv_heads = static_cast<size_t>(s.kv_heads);
  p.tokens = tokens;
  p.head_dim = hd;
  p.window = static_cast<size_t>(s.window);
  float* qkv = b.qkv.data();
  p.q = {qkv, tokens * row, hd, row};
  p.k = {qkv + q_width, tokens * row, hd, row};
  p.v = {qkv + q_width + kv_width, tokens * row, hd, row};
  p.out = {b.out.data(), tokens * q_width, hd, q_width};
  p.scale = attn::detail::attention_scale(hd);
  p.causal = true;
  return p;
}

CoreBuffers& BuffersOf(const CoreShape& s) {
  static std::map<std::string, std::unique_ptr<CoreBuffers>> buffers;
  std::unique_ptr<CoreBuffers>& b = buffers[s.name];
  if (!b) {
    b = std::make_unique<CoreBuffers>();
    attn::manual_seed(123);
    b->qkv = attn::rand({1, s.tokens, (s.heads + 2 * s.kv_heads) * kHeadDim});
    b->out = attn::Tensor({1, s.tokens, s.heads * kHeadDim});
    attn::detail::attention(MakeProblem(s, *b));  // warm-up (page faults, thread arena)
  }
  return *b;
}

void BM_GqaCore(benchmark::State& state, const CoreShape& s, int threads) {
  attn::set_num_threads(threads);
  CoreBuffers& buffers = BuffersOf(s);
  const attn::detail::AttentionProblem p = MakeProblem(s, buffers);
  if (SwitchedTo(&buffers) && s.tokens <= 1024) {
    // Another benchmark ran in between: warm up again where that is cheap
    // (T = 1024: tens of milliseconds).
    attn::detail::attention(p);
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

  const double flops = GqaAttentionFlops(1, s.heads, kHeadDim, s.tokens, s.window);
  const double gflops = flops / per_call * 1e-9;
  state.counters["flops_causal"] = flops;
  state.counters["GFLOPS_causal"] = gflops;
  state.counters["peak_fraction"] = gflops / (threads * FmaPeakGflops1());
  state.counters["heads"] = static_cast<double>(s.heads);
  state.counters["kv_heads"] = static_cast<double>(s.kv_heads);
  state.counters["tokens"] = static_cast<double>(s.tokens);
  state.counters["window"] = static_cast<double>(s.window);
  state.counters["threads"] = attn::num_threads();
  state.SetLabel(attn::simd::MatMulTargetName());
}

}  // namespace

void RegisterGqaCoreBenchmarks() {
  for (const CoreShape& s : kCoreShapes) {
    for (int threads : {1, 2}) {
      const std::string name =
          std::string("attn/gqa_core/") + s.name + "/threads:" + std::to_string(threads);
      benchmark::internal::Benchmark* b =
          benchmark::RegisterBenchmark(name.c_str(), BM_GqaCore, s, threads);
      b->UseRealTime()->MeasureProcessCPUTime()->Unit(benchmark::kMillisecond);
      if (s.tokens >= 4096 && BigRepetitions() > 0) b->Repetitions(BigRepetitions());
    }
  }
}

}  // namespace attn_bench
