// KV-cache decoding at GPT-2 small's shape: MultiHeadAttention(768, 768,
// 1024, 0.0, 12) in eval mode (weights from attn::manual_seed(123)), B = 1,
// on 1 and 2 attn threads:
//   attn/decode_1_after_1023/gpt2_small/threads:<n>  one call = cache.rewind(1023)
//       (O(1)) + forward(one token, cache): the token at position 1023 of a
//       full context, after a 1023-token prompt put into the cache once,
//       outside the timing
//   attn/full_forward_1024/gpt2_small/threads:<n>    forward over the 1024 tokens
//       (the flash path), for the ratio full / decode
//   attn/decode_int8_1_after_1023/gpt2_small/threads:<n>  the decode row for
//       attn::quantize_dynamic of the same module (Linear layers in int8, the
//       attention and the KV cache in float32), with the same prompt and token
// Decoding one token is memory-bound: it reads every weight and the whole
// KV cache once for 2 FLOPs per float. Counters of the decode row:
//   kv_bytes        keys and values of 1024 tokens: 2·B·H·1024·hd·4
//   weight_bytes    the fused QKV weight 3·d·d_in·4 (+ its bias when the module
//                   has qkv_bias), out_proj's weight d·d·4 and bias d·4
//   bytes_streamed  kv_bytes + weight_bytes
//   bandwidth_GBps  read bandwidth over a 256 MiB buffer with the same number
//                   of threads (machine_bench.cc, best of 8 passes)
//   ideal_us        bytes_streamed / bandwidth_GBps
//   ratio           measured time per call / ideal_us (1 = streaming-bound)
//   bandwidth_ws_GBps, ideal_ws_us, ratio_ws  the same against the read
//                   bandwidth over a buffer of bytes_streamed (the working set
//                   itself, which a large last-level cache can hold between
//                   calls: a stricter reference)
// For the int8 row, weight_bytes counts the int8 weights as the int8 kernel
// reads them (1 byte per weight with VNNI, 2 with the Highway kernels, which
// widen them to int16 when packing), plus a float scale and an int32 column
// sum per output channel and out_proj's float bias; it also has
//   rel_l2_error    ||y_int8 - y_f32|| / ||y_f32|| of the decoded token's
//                   output against the float32 module's (computed once)
// The full-forward row has flops_causal and GFLOPS_causal (bench/README.md).

#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>

#include "attn/attn.h"
#include "bench/attention_bench.h"
#include "benchmark/benchmark.h"
#include "simd/matmul.h"
#include "simd/matmul_int8.h"

namespace attn_bench {
namespace {

constexpr int64_t kDim = 768, kHeads = 12, kContext = 1024, kPrompt = kContext - 1;

struct DecodeCase {
  std::unique_ptr<attn::MultiHeadAttention> mha;
  std::unique_ptr<attn::KVCache> cache;  // holds the kPrompt prompt tokens
  attn::Tensor full;                     // (1, 1024, 768)
  attn::Tensor token;                    // (1, 1, 768): token 1023 of `full`
  double full_first_call_seconds = 0.0;
  double rel_l2_error = -1.0;  // the int8 case: its decoded token vs the float32 case's
};

attn::Tensor DecodeOne(DecodeCase& c);

// The float32 case, or (int8) the same module after attn::quantize_dynamic.
DecodeCase& TheCase(bool int8 = false) {
  static const auto make = [](bool quantize) {
    auto result = std::make_unique<DecodeCase>();
    attn::manual_seed(123);
    result->mha = std::make_unique<attn::MultiHeadAttention>(kDim, kDim, kContext, 0.0, kHeads);
    result->mha->eval();
    if (quantize) {
      result->mha =
          std::make_unique<attn::MultiHeadAttention>(attn::quantize_dynamic(*result->mha));
    }
    result->full = attn::rand({1, kContext, kDim});
    attn::Tensor prompt({1, kPrompt, kDim});
    std::memcpy(prompt.data(), result->full.data(), sizeof(float) * kPrompt * kDim);
    result->token = attn::Tensor({1, 1, kDim});
    std::memcpy(result->token.data(), result->full.data() + kPrompt * kDim, sizeof(float) * kDim);
    result->cache = std::make_unique<attn::KVCache>(result->mha->make_cache(1));
    benchmark::DoNotOptimize(result->mha->forward(prompt, *result->cache).data());
    const auto start = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(result->mha->forward(result->full).data());
    result->full_first_call_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return result;
  };
  static const std::unique_ptr<DecodeCase> f32 = make(false);
  if (!int8) return *f32;
  static const std::unique_ptr<DecodeCase> q = [] {
    std::unique_ptr<DecodeCase> result = make(true);
    const attn::Tensor y = DecodeOne(*result);
    const attn::Tensor reference = DecodeOne(*f32);
    double diff = 0.0, norm = 0.0;
    for (int64_t i = 0; i < y.numel(); ++i) {
      const double r = reference.data()[i], d = static_cast<double>(y.data()[i]) - r;
      diff += d * d;
      norm += r * r;
    }
    result->rel_l2_error = std::sqrt(diff / norm);
    return result;
  }();
  return *q;
}

attn::Tensor DecodeOne(DecodeCase& c) {
  c.cache->rewind(kPrompt);
  return c.mha->forward(c.token, *c.cache);
}

double Bytes(const attn::Tensor& t) { return static_cast<double>(t.numel()) * sizeof(float); }

void BM_Decode(benchmark::State& state, int threads, bool int8) {
  attn::set_num_threads(threads);
  DecodeCase& c = TheCase(int8);
  static int ids[2][3];
  SwitchedTo(&ids[int8 ? 1 : 0][threads]);
  benchmark::DoNotOptimize(DecodeOne(c).data());  // warm-up, always: it is cheap

  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    const attn::Tensor y = DecodeOne(c);
    benchmark::DoNotOptimize(y.data());
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double per_call_us = seconds / static_cast<double>(state.iterations()) * 1e6;

  const attn::MultiHeadAttention& m = *c.mha;
  const double kv_bytes = 2.0 * static_cast<double>(m.num_heads() * kContext * m.head_dim()) * 4.0;
  double weight_bytes = Bytes(m.W_query().weight()) + Bytes(m.W_key().weight()) +
                        Bytes(m.W_value().weight()) + Bytes(m.out_proj().weight()) +
                        Bytes(m.out_proj().bias());
  if (m.W_query().has_bias()) {
    weight_bytes += Bytes(m.W_query().bias()) + Bytes(m.W_key().bias()) + Bytes(m.W_value().bias());
  }
  if (int8) {
    // 4-byte floats -> elem_bytes per weight, + scale and column sum per row.
    const double elem = static_cast<double>(attn::simd::ActiveInt8Layout().elem_bytes);
    const double weights = static_cast<double>(4 * kDim * kDim);  // QKV and out_proj
    weight_bytes += weights * (elem - 4.0) + 8.0 * static_cast<double>(4 * kDim);
  }
  const double bytes = kv_bytes + weight_bytes;
  const double bandwidth = ReadBandwidthGBps(size_t{256} << 20, threads);
  const double bandwidth_ws = ReadBandwidthGBps(static_cast<size_t>(bytes), threads);
  const double ideal_us = bytes / (bandwidth * 1e9) * 1e6;
  const double ideal_ws_us = bytes / (bandwidth_ws * 1e9) * 1e6;
  state.counters["kv_bytes"] = kv_bytes;
  state.counters["weight_bytes"] = weight_bytes;
  state.counters["bytes_streamed"] = bytes;
  state.counters["bandwidth_GBps"] = bandwidth;
  state.counters["ideal_us"] = ideal_us;
  state.counters["ratio"] = per_call_us / ideal_us;
  state.counters["bandwidth_ws_GBps"] = bandwidth_ws;
  state.counters["ideal_ws_us"] = ideal_ws_us;
  state.counters["ratio_ws"] = per_call_us / ideal_ws_us;
  if (int8) state.counters["rel_l2_error"] = c.rel_l2_error;
  state.counters["threads"] = attn::num_threads();
  std::string label = attn::simd::MatMulTargetName();
  if (int8) label += std::string(" int8:") + attn::simd::MatMulInt8KernelName();
  state.SetLabel(label);
}

void BM_FullForward(benchmark::State& state, int threads) {
  attn::set_num_threads(threads);
  DecodeCase& c = TheCase();
  static int ids[3];
  if (SwitchedTo(&ids[threads]) && c.full_first_call_seconds < 0.05) {
    benchmark::DoNotOptimize(c.mha->forward(c.full).data());
  }
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    const attn::Tensor y = c.mha->forward(c.full);
    benchmark::DoNotOptimize(y.data());
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double per_call = seconds / static_cast<double>(state.iterations());
  const double t = static_cast<double>(kContext), d = static_cast<double>(kDim);
  const double flops = 2.0 * t * d * 3.0 * d + 2.0 * t * d * d +
                       CausalAttentionFlops(1, kHeads, kDim / kHeads, kContext);
  state.counters["flops_causal"] = flops;
  state.counters["GFLOPS_causal"] = flops / per_call * 1e-9;
  state.counters["threads"] = attn::num_threads();
  state.SetLabel(attn::simd::MatMulTargetName());
}

}  // namespace

void RegisterDecodeBenchmarks() {
  for (int threads : {1, 2}) {
    const std::string suffix = "/gpt2_small/threads:" + std::to_string(threads);
    benchmark::RegisterBenchmark(("attn/decode_1_after_1023" + suffix).c_str(), BM_Decode, threads,
                                 false)
        ->UseRealTime()
        ->ComputeStatistics("min", MinOf)
        ->MeasureProcessCPUTime()
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("attn/decode_int8_1_after_1023" + suffix).c_str(), BM_Decode,
                                 threads, true)
        ->UseRealTime()
        ->ComputeStatistics("min", MinOf)
        ->MeasureProcessCPUTime()
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("attn/full_forward_1024" + suffix).c_str(), BM_FullForward,
                                 threads)
        ->UseRealTime()
        ->ComputeStatistics("min", MinOf)
        ->MeasureProcessCPUTime()
        ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace attn_bench
