// Shared by the files of attn_attention_bench: attention_bench.cc (main, the
// configurations), module_*bench.cc (the modules), core_bench.cc (the
// attention core alone), decode_bench.cc (KV-cache decoding), gqa_*bench.cc
// (grouped-query attention, gqa_bench.h) and machine_bench.cc (the FMA peak
// and the memory bandwidth they are measured against). See bench/README.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace attn_bench {

// One configuration. The wrapper gets `heads` CausalAttention heads of width
// wrapper_head_dim (output width heads * wrapper_head_dim); the fused module
// is MultiHeadAttention(d_in, d_out, tokens, 0.0, heads).
struct Config {
  std::string name;
  int64_t batch, tokens, d_in, d_out, heads, wrapper_head_dim;
};

// toy_B2_T6, the T sweep B1_T64 ... B1_T2048, B8_T256, B8_T1024.
std::vector<Config> Configs();

// Whether the malloc replacement counts heap bytes (set once in main).
bool HeapTracking();

// True when the benchmark identified by `id` is not the one that ran last
// (another benchmark ran in between, under random interleaving): the caller
// then makes an untimed warm-up call where that is cheap. Records `id` as the
// last one.
bool SwitchedTo(const void* id);

// The smallest of the repetitions: the "min" statistic of the rows that
// bench/report.py compares with the peers (beside Google Benchmark's median).
double MinOf(const std::vector<double>& v);

// 4·B·H·hd·T(T+1)/2: Q·Kᵀ and weights·V over the causal lower triangle.
double CausalAttentionFlops(int64_t batch, int64_t heads, int64_t head_dim, int64_t tokens);

// --- machine_bench.cc --------------------------------------------------------

// Single-core FP32 FMA peak in GFLOP/s: the best of 100 short runs of 12
// independent vector MulAdd chains (measured on the first call, then cached).
double FmaPeakGflops1();

// Read bandwidth in GB/s (1e9 bytes/s) of `threads` threads summing a buffer
// of `bytes` bytes (each thread its own contiguous part): the best of several
// passes, measured on the first call for (bytes, threads), then cached.
double ReadBandwidthGBps(size_t bytes, int threads);

// Highway target of the benchmark's own kernels ("AVX3", ...).
const char* MachineKernelTarget();

// --- Registration --------------------------------------------------------------

void RegisterMachineBenchmarks();  // machine/fma_peak, machine/read_bandwidth
void RegisterCoreBenchmarks();     // attn/core_flash, attn/core_materialized
// attn/decode_1_after_1023, attn/decode_int8_1_after_1023, attn/full_forward_1024
void RegisterDecodeBenchmarks();
// attn/kv_decode_<weights>w_<cache>kv/{gpt2_small,llama32_1b}: float32 and int8
// caches and modules (decode_kv_int8_bench.cc)
void RegisterKvInt8DecodeBenchmarks();

}  // namespace attn_bench
