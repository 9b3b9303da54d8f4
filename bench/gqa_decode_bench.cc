// KV-cache decoding with grouped-query attention: the Llama 3.2 1B attention
// layer (gqa_bench.h) with its 8 KV groups, and the same layer with 32 (one
// key/value head per query head: multi-head attention of the same width),
// B = 1, 1 and 2 attn threads:
//   attn/gqa_decode_1_after_4095/llama32_1b_kv8/threads:<n>
//   attn/gqa_decode_1_after_4095/llama32_1b_kv32/threads:<n>
// One call = cache.rewind(4095) (O(1)) + forward(token 4095, cache): the 4096th
// token after a 4095-token prompt, put into the cache once, outside the
// timing. Per layer: MakeGqaModule(kv_groups, 0) (seed 123), then
// x = attn::rand((1, 4096, 2048)), tokens 0..4094 the prompt, token 4095 the
// decoded one; the decoded output is the reference of
// bench/peers/torch_gqa.py (WriteGqaReference).
// Decoding reads every weight and the cached keys and values once (2 FLOPs
// per float), so it is bound by memory bandwidth; 8 groups read a quarter of
// the keys and values of 32, and fewer W_key, W_value weights. Counters:
//   kv_bytes        keys and values of the 4096 positions: 2·B·G·4096·hd·4
//   weight_bytes    W_query, W_key, W_value, out_proj: (2·d + 2·G·hd)·d·4
//   bytes_streamed  kv_bytes + weight_bytes
//   bandwidth_GBps  read bandwidth over a 256 MiB buffer with the same number
//                   of threads (machine_bench.cc, best of 8 passes)
//   ideal_us        bytes_streamed / bandwidth_GBps
//   ratio           measured time per call / ideal_us (1 = streaming-bound)
//   kv_groups, threads

#include <chrono>
#include <cstring>
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

constexpr int64_t kPrompt = 4095;

struct DecodeCase {
  std::unique_ptr<attn::GroupedQueryAttention> gqa;
  std::unique_ptr<attn::KVCache> cache;  // holds the kPrompt prompt tokens
  attn::Tensor token;                    // (1, 1, 2048): token kPrompt of the input
};

attn::Tensor DecodeOne(DecodeCase& c) {
  c.cache->rewind(kPrompt);
  return c.gqa->forward(c.token, *c.cache);
}

DecodeCase& CaseOf(int64_t kv_groups) {
  static std::map<int64_t, std::unique_ptr<DecodeCase>> cases;
  std::unique_ptr<DecodeCase>& current = cases[kv_groups];
  if (!current) {
    current = std::make_unique<DecodeCase>();
    current->gqa = MakeGqaModule(kv_groups, 0);
    const attn::Tensor x = attn::rand({1, kPrompt + 1, kGqaDim});
    attn::Tensor prompt({1, kPrompt, kGqaDim});
    std::memcpy(prompt.data(), x.data(), sizeof(float) * kPrompt * kGqaDim);
    current->token = attn::Tensor({1, 1, kGqaDim});
    std::memcpy(current->token.data(), x.data() + kPrompt * kGqaDim, sizeof(float) * kGqaDim);
    current->cache = std::make_unique<attn::KVCache>(current->gqa->make_cache(1));
    benchmark::DoNotOptimize(current->gqa->forward(prompt, *current->cache).data());
    WriteGqaReference("decode_llama32_1b_kv" + std::to_string(kv_groups), DecodeOne(*current));
  }
  return *current;
}

double Bytes(const attn::Tensor& t) { return static_cast<double>(t.numel()) * sizeof(float); }

void BM_GqaDecode(benchmark::State& state, int64_t kv_groups, int threads) {
  attn::set_num_threads(threads);
  DecodeCase& c = CaseOf(kv_groups);
  static int ids[2][3];
  SwitchedTo(&ids[kv_groups == kGqaKvGroups ? 0 : 1][threads]);
  benchmark::DoNotOptimize(DecodeOne(c).data());  // warm-up, always: it is cheap

  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    const attn::Tensor y = DecodeOne(c);
    benchmark::DoNotOptimize(y.data());
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double per_call_us = seconds / static_cast<double>(state.iterations()) * 1e6;

  const attn::GroupedQueryAttention& m = *c.gqa;
  const double kv_bytes =
      2.0 * static_cast<double>(m.num_kv_groups() * (kPrompt + 1) * m.head_dim()) * 4.0;
  const double weight_bytes = Bytes(m.W_query().weight()) + Bytes(m.W_key().weight()) +
                              Bytes(m.W_value().weight()) + Bytes(m.out_proj().weight());
  const double bytes = kv_bytes + weight_bytes;
  const double bandwidth = ReadBandwidthGBps(size_t{256} << 20, threads);
  const double ideal_us = bytes / (bandwidth * 1e9) * 1e6;
  state.counters["kv_bytes"] = kv_bytes;
  state.counters["weight_bytes"] = weight_bytes;
  state.counters["bytes_streamed"] = bytes;
  state.counters["bandwidth_GBps"] = bandwidth;
  state.counters["ideal_us"] = ideal_us;
  state.counters["ratio"] = per_call_us / ideal_us;
  state.counters["kv_groups"] = static_cast<double>(kv_groups);
  state.counters["threads"] = attn::num_threads();
  state.SetLabel(attn::simd::MatMulTargetName());
}

}  // namespace

void RegisterGqaDecodeBenchmarks() {
  for (int64_t kv_groups : {kGqaKvGroups, kGqaHeads}) {
    for (int threads : {1, 2}) {
      const std::string name = "attn/gqa_decode_1_after_4095/llama32_1b_kv" +
                               std::to_string(kv_groups) + "/threads:" + std::to_string(threads);
      benchmark::RegisterBenchmark(name.c_str(), BM_GqaDecode, kv_groups, threads)
          ->UseRealTime()
          ->ComputeStatistics("min", MinOf)
          ->MeasureProcessCPUTime()
          ->Unit(benchmark::kMicrosecond);
    }
  }
}

}  // namespace attn_bench
