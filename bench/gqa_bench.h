// The grouped-query attention benchmarks of attn_attention_bench, on the
// attention layer of Llama 3.2 1B: attn::GroupedQueryAttention(2048, 2048,
// 8192, 32, 8) with Llama 3's RoPE (theta 500,000, frequency scaling 32),
// B = 1, 1 and 2 attn threads:
//   gqa_prefill_bench.cc  attn/gqa_prefill/...               forward(x) of the module
//   gqa_decode_bench.cc   attn/gqa_decode_1_after_4095/...   KV-cache decoding
//   gqa_core_bench.cc     attn/gqa_core/...                  the attention core alone
//   gqa_bench.cc          the helpers below
// bench/peers/torch_gqa.py runs the same module, weights and inputs in
// PyTorch; bench/README.md describes both.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "attn/grouped_query_attention.h"
#include "attn/tensor.h"

namespace attn_bench {

// Llama 3.2 1B: d_in = d_out = 2048, 32 query heads of 64, 8 key/value
// groups; the context of attn's module (its RoPE tables and KV caches).
constexpr int64_t kGqaDim = 2048, kGqaHeads = 32, kGqaHeadDim = kGqaDim / kGqaHeads;
constexpr int64_t kGqaKvGroups = 8, kGqaContext = 8192;

// Llama 3's RoPE: theta_base 500,000, scaling_factor 32, low_freq_factor 1,
// high_freq_factor 4, original_context_length 8192.
attn::RopeConfig Llama32Rope();

// attn::manual_seed(123), then GroupedQueryAttention(kGqaDim, kGqaDim,
// kGqaContext, kGqaHeads, kv_groups, Llama32Rope(), window) in eval mode: the
// caller draws the input next, as the PyTorch peer does.
std::unique_ptr<attn::GroupedQueryAttention> MakeGqaModule(int64_t kv_groups, int64_t window);

// (query, key) pairs that causal attention over `tokens` tokens computes with
// a sliding window: sum over i < tokens of min(i + 1, window); window = 0 (or
// >= tokens): tokens (tokens + 1) / 2.
double WindowPairs(int64_t tokens, int64_t window);

// Q·Kᵀ and weights·V over those pairs: 4·B·H·hd·WindowPairs(T, W).
double GqaAttentionFlops(int64_t batch, int64_t heads, int64_t head_dim, int64_t tokens,
                         int64_t window);

// One forward of the Llama 3.2 1B layer with kv_groups groups over B x T
// tokens, kv_dim = kv_groups·hd:
//   W_query, W_key, W_value  2·B·T·d_in·(d_out + 2·kv_dim)
//   out_proj                 2·B·T·d_out²
//   attention                GqaAttentionFlops(B, 32, 64, T, W)
// RoPE and the softmax are not counted. T = 1024: 25.8 GFLOP; T = 4096:
// 154.6 GFLOP (85.9 of them projections), 102.0 with a 512-token window.
double GqaForwardFlops(int64_t batch, int64_t tokens, int64_t kv_groups, int64_t window);

// When the environment variable ATTN_BENCH_REFERENCE_DIR names a directory,
// writes y there as gqa_reference_<name>.safetensors (one F32 tensor "y"):
// bench/peers/torch_gqa.py checks its own output against it before timing.
// Does nothing otherwise.
void WriteGqaReference(const std::string& name, const attn::Tensor& y);

// Repetitions of the benchmarks that take about a second per call (T = 4096):
// ATTN_BENCH_BIG_REPETITIONS when it is a positive integer (bench/run.sh sets
// it), else 0, which leaves them at --benchmark_repetitions. Google Benchmark
// appends /repeats:<n> to the name of a benchmark with its own count.
int BigRepetitions();

// Register attn/gqa_prefill, attn/gqa_decode_1_after_4095 and attn/gqa_core.
void RegisterGqaPrefillBenchmarks();
void RegisterGqaDecodeBenchmarks();
void RegisterGqaCoreBenchmarks();

}  // namespace attn_bench
