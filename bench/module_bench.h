// The module benchmarks of attn_attention_bench: one forward call of a whole
// attention module, timed by one shared fixture (module_bench.cc). The rows
// are registered per configuration by module_float32_bench.cc (the chapter's
// wrapper, the fused module's flash and materialized paths) and
// module_int8_bench.cc (the fused module after attn::quantize_dynamic, and
// the AVX2-forced pair); bench/README.md describes the variants.
//
// Names: attn/<variant>/<config>/threads:<n> (Google Benchmark appends
// /process_time/real_time). Modules in eval mode, dropout 0.0, weights from
// attn::manual_seed(123), input attn::rand((B, T, d_in)) made once per
// benchmark. Counters (per forward call):
//   flops_dense, flops_causal  FLOP counts (bench/README.md gives the formulas)
//   GFLOPS_dense, GFLOPS_causal  those over the measured wall time per call
//   peak_heap_bytes  highest heap use during one forward minus the heap use
//                    before it (every malloc in the process is counted; see
//                    memory_tracking.h); -1 if the tracking is unavailable
//   peak_rss_bytes   peak resident set growth during one forward (VmHWM)
//   out_bytes        fused variants: the output tensor, B·T·d·4, allocated
//                    by every forward (the QKV buffer, B·T·3d·4, is the
//                    calling thread's scratch: allocated by the first call, reused)
//   extra_heap_bytes fused variants: peak_heap_bytes - out_bytes, the
//                    working memory beyond the output
//   threads          attn::num_threads() during the run
//   rel_l2_error     int8 variants: ||y_int8 - y_f32|| / ||y_f32|| (L2 norms
//                    over the whole output, in double), y_f32 the output of
//                    the float32 module the int8 one was quantized from, on
//                    the same input and Highway target; computed once,
//                    outside the timing
// Label: the Highway target attn's kernels dispatched to ("AVX3", ...), and
// for the int8 variants the int8 kernel ("AVX3 int8:AVX512-VNNI").
// real_time is wall-clock time per call, cpu_time the CPU time of the whole
// process (all threads) per call: on a loaded machine the 1-thread CPU time
// is the steadier of the two.
#pragma once

#include <cstdint>
#include <memory>

#include "attn/attn.h"
#include "bench/attention_bench.h"

namespace attn_bench {

// kFused: the flash path; kFusedMaterialized: set_attention_path(kMaterialized);
// kFusedWeights: forward(x, &weights), which writes the whole (B, H, T, T)
// weights tensor as the book's module does. kFusedInt8: attn::quantize_dynamic
// of kFused. kFusedAvx2, kFusedInt8Avx2: kFused and kFusedInt8 with Highway's
// AVX-512 targets disabled while they are built, quantized and run.
enum class Variant {
  kWrapper,
  kWrapperOutProj,
  kFused,
  kFusedMaterialized,
  kFusedWeights,
  kFusedInt8,
  kFusedAvx2,
  kFusedInt8Avx2
};

inline bool IsFused(Variant v) { return v != Variant::kWrapper && v != Variant::kWrapperOutProj; }
inline bool IsInt8(Variant v) { return v == Variant::kFusedInt8 || v == Variant::kFusedInt8Avx2; }
inline bool IsAvx2(Variant v) { return v == Variant::kFusedAvx2 || v == Variant::kFusedInt8Avx2; }

// The modules and input of one benchmark, built on its first call and kept
// while Google Benchmark calls it again (iteration-count search, repetitions,
// interleaved with other benchmarks under --benchmark_enable_random_interleaving).
// Either `fused` or `wrapper` (with `out_proj` for kWrapperOutProj) is set.
struct Case {
  std::unique_ptr<attn::MultiHeadAttentionWrapper> wrapper;
  std::unique_ptr<attn::Linear> out_proj;
  std::unique_ptr<attn::MultiHeadAttention> fused;
  attn::Tensor x;
  bool return_weights = false;  // kFusedWeights

  double first_call_seconds = 0.0;
  int64_t peak_heap_bytes = -1;
  int64_t peak_rss_bytes = -1;
  double rel_l2_error = -1.0;  // int8 variants only

  // One forward call on x: the output (the weights of kFusedWeights are
  // written and dropped).
  attn::Tensor Forward() const;
};

// The float32 module of variant v (not an int8 one) and its input, after
// attn::manual_seed(123) (module_float32_bench.cc).
std::unique_ptr<Case> MakeFloat32Case(const Config& c, Variant v);

// attn::quantize_dynamic of MakeFloat32Case(c, kFused), with its
// rel_l2_error against that float32 module (module_int8_bench.cc).
std::unique_ptr<Case> MakeInt8Case(const Config& c);

// Registers attn/<variant>/<c.name>/threads:<n> for n = 1, 2 (module_bench.cc).
void RegisterModuleBenchmark(const Config& c, Variant v);

// The rows of one configuration, in this order (main registers the float32
// rows before the int8 rows of each configuration):
// wrapper, wrapper_out_proj, fused, fused_materialized, fused_with_weights
// (where the weights tensor is at most 512 MiB).
void RegisterFloat32ModuleBenchmarks(const Config& c);
// fused_int8; at B8_T1024 also fused_avx2, fused_int8_avx2.
void RegisterInt8ModuleBenchmarks(const Config& c);

}  // namespace attn_bench
