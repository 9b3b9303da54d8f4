// Single-threaded flash attention kernel (simd/flash_attention.h) for one
// (batch, head): GPT-2's head_dim 64 (and 128) over context lengths, causal
// self-attention and KV-cache decoding, per Highway target, against the
// scalar reference.
//
// Names: flash/<target>/T:<keys>/hd:<head_dim>/q:<queries> and
// flash_reference/T:<keys>/hd:<head_dim>/q:<queries>; the queries are the
// last q of the T positions (q = T: causal self-attention, q = 1: decoding
// one token). Counters: GFLOPS = 4 * head_dim * (visible query-key pairs)
// per second (2 FLOPs per multiply-add, for Q·Kᵀ and P·V; exp not counted).

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "hwy/targets.h"
#include "simd/flash_attention.h"

namespace {

struct Problem {
  std::vector<float> q, k, v, out;
  attn::simd::FlashAttentionArgs args;
  double flops = 0.0;

  Problem(size_t keys, size_t head_dim, size_t queries)
      : q(queries * head_dim), k(keys * head_dim), v(keys * head_dim), out(queries * head_dim) {
    std::mt19937 rng(123);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    for (std::vector<float>* x : {&q, &k, &v}) {
      for (float& f : *x) f = dist(rng);
    }
    args.q = q.data();
    args.k = k.data();
    args.v = v.data();
    args.out = out.data();
    args.ldq = args.ldk = args.ldv = args.ldo = head_dim;
    args.num_queries = queries;
    args.num_keys = keys;
    args.head_dim = head_dim;
    args.q_begin = keys - queries;
    args.causal = true;
    args.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    for (size_t i = 0; i < queries; ++i) flops += 4.0 * head_dim * (args.q_begin + i + 1);
  }
};

void BM_Flash(benchmark::State& state, int64_t target) {
  const size_t keys = static_cast<size_t>(state.range(0));
  const size_t head_dim = static_cast<size_t>(state.range(1));
  const size_t queries = static_cast<size_t>(state.range(2));
  if ((hwy::SupportedTargets() & target) == 0) {
    state.SkipWithError("target not supported by this CPU");
    return;
  }
  Problem p(keys, head_dim, queries);
  // Dispatch to `target`: disable every better one (x86 targets: lower bits).
  hwy::DisableTargets(target - 1);
  for (auto _ : state) {
    attn::simd::FlashAttention(p.args);
    benchmark::DoNotOptimize(p.out.data());
    benchmark::ClobberMemory();
  }
  hwy::DisableTargets(0);
  state.counters["GFLOPS"] =
      benchmark::Counter(p.flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(hwy::TargetName(target));
}

void BM_FlashReference(benchmark::State& state) {
  Problem p(static_cast<size_t>(state.range(0)), static_cast<size_t>(state.range(1)),
            static_cast<size_t>(state.range(2)));
  for (auto _ : state) {
    attn::simd::FlashAttentionReference(p.args);
    benchmark::DoNotOptimize(p.out.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOPS"] =
      benchmark::Counter(p.flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void Shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"T", "hd", "q"});
  for (int64_t t : {256, 1024, 2048}) b->Args({t, 64, t});
  b->Args({1024, 128, 1024});
  b->Args({1024, 64, 64});  // one block of 64 rows at the end of T = 1024
  b->Args({1024, 64, 1});   // decoding one token against a 1023-token cache
}

const int kRegistered = [] {
  for (int64_t target : {int64_t{HWY_AVX3}, int64_t{HWY_AVX2}, int64_t{HWY_SSE4}}) {
    benchmark::RegisterBenchmark((std::string("flash/") + hwy::TargetName(target)).c_str(),
                                 [target](benchmark::State& state) { BM_Flash(state, target); })
        ->Apply(Shapes);
  }
  benchmark::RegisterBenchmark("flash_reference", BM_FlashReference)
      ->ArgNames({"T", "hd", "q"})
      ->Args({1024, 64, 1024})
      ->Args({1024, 64, 1});
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
