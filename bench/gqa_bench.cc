// Helpers shared by the grouped-query attention benchmarks (gqa_bench.h).

#include "bench/gqa_bench.h"

#include <cstdlib>
#include <memory>
#include <string>

#include "attn/attn.h"
#include "attn/grouped_query_attention.h"

namespace attn_bench {

attn::RopeConfig Llama32Rope() {
  attn::RopeConfig rope;
  rope.enabled = true;
  rope.theta_base = 500000.0;
  rope.scaling_factor = 32.0;
  rope.low_freq_factor = 1.0;
  rope.high_freq_factor = 4.0;
  rope.original_context_length = 8192;
  return rope;
}

std::unique_ptr<attn::GroupedQueryAttention> MakeGqaModule(int64_t kv_groups, int64_t window) {
  attn::manual_seed(123);
  auto module = std::make_unique<attn::GroupedQueryAttention>(
      kGqaDim, kGqaDim, kGqaContext, kGqaHeads, kv_groups, Llama32Rope(), window);
  module->eval();
  return module;
}

double WindowPairs(int64_t tokens, int64_t window) {
  const double t = static_cast<double>(tokens);
  if (window <= 0 || window >= tokens) return t * (t + 1.0) / 2.0;
  const double w = static_cast<double>(window);
  return w * (w + 1.0) / 2.0 + (t - w) * w;  // rows 0..w-1 see i + 1 keys, the rest w
}

double GqaAttentionFlops(int64_t batch, int64_t heads, int64_t head_dim, int64_t tokens,
                         int64_t window) {
  return 4.0 * static_cast<double>(batch) * static_cast<double>(heads) *
         static_cast<double>(head_dim) * WindowPairs(tokens, window);
}

double GqaForwardFlops(int64_t batch, int64_t tokens, int64_t kv_groups, int64_t window) {
  const double rows = static_cast<double>(batch) * static_cast<double>(tokens);
  const double d = static_cast<double>(kGqaDim);
  const double kv_dim = static_cast<double>(kv_groups * kGqaHeadDim);
  const double projections = 2.0 * rows * d * (d + 2.0 * kv_dim) + 2.0 * rows * d * d;
  return projections + GqaAttentionFlops(batch, kGqaHeads, kGqaHeadDim, tokens, window);
}

void WriteGqaReference(const std::string& name, const attn::Tensor& y) {
  const char* dir = std::getenv("ATTN_BENCH_REFERENCE_DIR");
  if (dir == nullptr || *dir == '\0') return;
  attn::save_safetensors(std::string(dir) + "/gqa_reference_" + name + ".safetensors", {{"y", y}},
                         {{"benchmark", name}});
}

int BigRepetitions() {
  const char* value = std::getenv("ATTN_BENCH_BIG_REPETITIONS");
  if (value == nullptr) return 0;
  char* end = nullptr;
  const long n = std::strtol(value, &end, 10);
  return end != value && *end == '\0' && n > 0 && n < 1000 ? static_cast<int>(n) : 0;
}

}  // namespace attn_bench
