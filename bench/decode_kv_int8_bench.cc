// KV-cache decoding with float32 and int8 caches (attn/kv_cache.h), for
// float32 modules and their quantize_dynamic copies, 1 and 2 attn threads:
//   attn/kv_decode_<weights>w_<cache>kv/gpt2_small/threads:<n>
//       MultiHeadAttention(768, 768, 1024, 0.0, 12): the token at position
//       1023 after a 1023-token prompt
//   attn/kv_decode_<weights>w_<cache>kv/llama32_1b/threads:<n>
//       the Llama 3.2 1B layer (gqa_bench.h, 8 key/value groups): the token at
//       position 4095 after a 4095-token prompt
// <weights>, <cache>: f32 or int8. One call = cache.rewind(prompt) (O(1)) +
// forward(token, cache); the prompt goes into each cache once, outside the
// timing. Weights from attn::manual_seed(123), input attn::rand drawn next.
// A step reads every weight and every cached row once. Counters:
//   kv_bytes         the cached rows a step reads: (prompt + 1) tokens of
//                    KVCache::bytes() / context_length (values and scales)
//   weight_bytes     the projections' weights as the kernels read them
//                    (float32: 4 bytes each; int8: the int8 kernel's element
//                    size, 1 with VNNI, 2 otherwise, plus a scale and a column
//                    sum per output channel), and out_proj's bias
//   bytes_streamed   kv_bytes + weight_bytes
//   bandwidth_ws_GBps  read bandwidth over a buffer of bytes_streamed bytes
//                    with the same number of threads (machine_bench.cc): the
//                    working set's own level of the memory hierarchy
//   ideal_ws_us      bytes_streamed / bandwidth_ws_GBps
//   ratio_ws         measured time per step / ideal_ws_us (1 = streaming-bound)
//   GBps             bytes_streamed / measured time per step
//   rel_l2_error     the decoded token's output against the f32w_f32kv row's
//                    (computed once, outside the timing)
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <tuple>

#include "attn/attn.h"
#include "attn/grouped_query_attention.h"
#include "bench/attention_bench.h"
#include "bench/gqa_bench.h"
#include "benchmark/benchmark.h"
#include "simd/matmul.h"
#include "simd/matmul_int8.h"

namespace attn_bench {
namespace {

enum class Model { kGpt2, kLlama };

// One (model, weights, cache type): a forward over one token through a cache
// that holds the prompt.
struct KvCase {
  std::unique_ptr<attn::MultiHeadAttention> mha;
  std::unique_ptr<attn::GroupedQueryAttention> gqa;
  std::unique_ptr<attn::KVCache> cache;
  attn::Tensor token;
  int64_t prompt = 0;
  double weight_bytes = 0.0;
  double rel_l2_error = 0.0;

  attn::Tensor Step() {
    cache->rewind(prompt);
    return mha ? mha->forward(token, *cache) : gqa->forward(token, *cache);
  }
};

double Bytes(const attn::Tensor& t) { return static_cast<double>(t.numel()) * sizeof(float); }

// The weights a step reads (see the counters above).
template <typename M>
double WeightBytes(const M& m, bool int8) {
  double bytes = 0.0, outputs = 0.0;
  for (const attn::Linear* l : {&m.W_query(), &m.W_key(), &m.W_value(), &m.out_proj()}) {
    const double n = static_cast<double>(l->weight().numel());
    bytes += int8 ? n * static_cast<double>(attn::simd::ActiveInt8Layout().elem_bytes) : 4.0 * n;
    if (int8) outputs += static_cast<double>(l->out_features());
    if (l->has_bias()) bytes += Bytes(l->bias());
  }
  return bytes + 8.0 * outputs;
}

double RelL2(const attn::Tensor& y, const attn::Tensor& reference) {
  double diff = 0.0, norm = 0.0;
  for (int64_t i = 0; i < y.numel(); ++i) {
    const double r = reference.data()[i], d = static_cast<double>(y.data()[i]) - r;
    diff += d * d;
    norm += r * r;
  }
  return std::sqrt(diff / norm);
}

KvCase& CaseOf(Model model, bool int8_weights, attn::KVCacheType type) {
  static std::map<std::tuple<Model, bool, attn::KVCacheType>, std::unique_ptr<KvCase>> cases;
  std::unique_ptr<KvCase>& c = cases[{model, int8_weights, type}];
  if (c) return *c;
  c = std::make_unique<KvCase>();
  const bool gpt2 = model == Model::kGpt2;
  const int64_t d = gpt2 ? 768 : kGqaDim;
  c->prompt = gpt2 ? 1023 : 4095;
  if (gpt2) {
    attn::manual_seed(123);
    c->mha = std::make_unique<attn::MultiHeadAttention>(768, 768, 1024, 0.0, 12);
    c->mha->eval();
    if (int8_weights) {
      c->mha = std::make_unique<attn::MultiHeadAttention>(attn::quantize_dynamic(*c->mha));
    }
    c->weight_bytes = WeightBytes(*c->mha, int8_weights);
  } else {
    c->gqa = MakeGqaModule(kGqaKvGroups, 0);
    if (int8_weights) {
      c->gqa = std::make_unique<attn::GroupedQueryAttention>(attn::quantize_dynamic(*c->gqa));
    }
    c->weight_bytes = WeightBytes(*c->gqa, int8_weights);
  }
  const attn::Tensor x = attn::rand({1, c->prompt + 1, d});
  attn::Tensor prompt({1, c->prompt, d});
  std::memcpy(prompt.data(), x.data(), sizeof(float) * static_cast<size_t>(c->prompt * d));
  c->token = attn::Tensor({1, 1, d});
  std::memcpy(c->token.data(), x.data() + c->prompt * d, sizeof(float) * static_cast<size_t>(d));
  c->cache = std::make_unique<attn::KVCache>(gpt2 ? c->mha->make_cache(1, type)
                                                  : c->gqa->make_cache(1, type));
  benchmark::DoNotOptimize(
      (gpt2 ? c->mha->forward(prompt, *c->cache) : c->gqa->forward(prompt, *c->cache)).data());
  const attn::Tensor y = c->Step();
  if (int8_weights || type != attn::KVCacheType::kFloat32) {
    c->rel_l2_error = RelL2(y, CaseOf(model, false, attn::KVCacheType::kFloat32).Step());
  }
  return *c;
}

void BM_KvDecode(benchmark::State& state, Model model, bool int8_weights, attn::KVCacheType type,
                 int threads) {
  attn::set_num_threads(threads);
  KvCase& c = CaseOf(model, int8_weights, type);
  benchmark::DoNotOptimize(c.Step().data());  // warm-up, always: it is cheap
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    const attn::Tensor y = c.Step();
    benchmark::DoNotOptimize(y.data());
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double per_call_us = seconds / static_cast<double>(state.iterations()) * 1e6;
  const double kv_bytes = static_cast<double>(c.cache->bytes()) /
                          static_cast<double>(c.cache->capacity()) *
                          static_cast<double>(c.prompt + 1);
  const double bytes = kv_bytes + c.weight_bytes;
  const double bandwidth_ws = ReadBandwidthGBps(static_cast<size_t>(bytes), threads);
  const double ideal_ws_us = bytes / (bandwidth_ws * 1e9) * 1e6;
  state.counters["kv_bytes"] = kv_bytes;
  state.counters["weight_bytes"] = c.weight_bytes;
  state.counters["bytes_streamed"] = bytes;
  state.counters["bandwidth_ws_GBps"] = bandwidth_ws;
  state.counters["ideal_ws_us"] = ideal_ws_us;
  state.counters["ratio_ws"] = per_call_us / ideal_ws_us;
  state.counters["GBps"] = bytes / per_call_us * 1e-3;
  state.counters["rel_l2_error"] = c.rel_l2_error;
  state.counters["threads"] = attn::num_threads();
  std::string label = attn::simd::MatMulTargetName();
  if (int8_weights) label += std::string(" int8:") + attn::simd::MatMulInt8KernelName();
  state.SetLabel(label);
}

}  // namespace

void RegisterKvInt8DecodeBenchmarks() {
  for (Model model : {Model::kGpt2, Model::kLlama}) {
    for (bool int8_weights : {false, true}) {
      for (attn::KVCacheType type : {attn::KVCacheType::kFloat32, attn::KVCacheType::kInt8}) {
        for (int threads : {1, 2}) {
          const std::string name = std::string("attn/kv_decode_") +
                                   (int8_weights ? "int8" : "f32") + "w_" +
                                   (type == attn::KVCacheType::kInt8 ? "int8" : "f32") + "kv/" +
                                   (model == Model::kGpt2 ? "gpt2_small" : "llama32_1b") +
                                   "/threads:" + std::to_string(threads);
          benchmark::RegisterBenchmark(name.c_str(), BM_KvDecode, model, int8_weights, type,
                                       threads)
              ->UseRealTime()
              ->ComputeStatistics("min", MinOf)
              ->MeasureProcessCPUTime()
              ->Unit(benchmark::kMicrosecond);
        }
      }
    }
  }
}

}  // namespace attn_bench
