// The module configurations of attn_attention_bench (attention_bench.h),
// shared with attn_peer_reference, which writes the peers' weights, inputs
// and reference outputs for the same shapes.

#include <string>
#include <vector>

#include "bench/attention_bench.h"

namespace attn_bench {

std::vector<Config> Configs() {
  std::vector<Config> configs;
  // Section 3.6's toy: the wrapper of two heads of d_out = 2 (width 4) and
  // MultiHeadAttention(3, 2, 6, 0.0, 2) (width 2, head_dim 1).
  configs.push_back({"toy_B2_T6", 2, 6, 3, 2, 2, 2});
  // GPT-2 small's width (768, 12 heads of 64) over a sweep of context lengths;
  // B1_T256 is the "gpt2_small" configuration, B1_T1024 GPT-2's full context.
  for (int64_t t : {64, 128, 256, 512, 1024, 2048}) {
    configs.push_back({"B1_T" + std::to_string(t), 1, t, 768, 768, 12, 64});
  }
  configs.push_back({"B8_T256", 8, 256, 768, 768, 12, 64});
  // The book's bonus benchmark: B = 8, T = 1024, d_in = d_out = 768, 12 heads.
  configs.push_back({"B8_T1024", 8, 1024, 768, 768, 12, 64});
  return configs;
}

}  // namespace attn_bench
