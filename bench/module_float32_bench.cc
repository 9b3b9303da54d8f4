// The float32 module rows (module_bench.h), per configuration of
// bench/README.md: the chapter's MultiHeadAttentionWrapper (one
// CausalAttention head after another, "wrapper"), the wrapper followed by an
// out_proj Linear (the book's bonus-material variant, comparable with the
// fused module, "wrapper_out_proj"), and the fused MultiHeadAttention on its
// default flash path ("fused"), on its materialized path
// ("fused_materialized", set_attention_path(kMaterialized)) and returning its
// (B, H, T, T) weights ("fused_with_weights", forward(x, &weights)).

#include <cstdint>
#include <memory>

#include "attn/attn.h"
#include "bench/attention_bench.h"
#include "bench/module_bench.h"

namespace attn_bench {

std::unique_ptr<Case> MakeFloat32Case(const Config& c, Variant v) {
  auto result = std::make_unique<Case>();
  attn::manual_seed(123);
  if (IsFused(v)) {
    result->fused =
        std::make_unique<attn::MultiHeadAttention>(c.d_in, c.d_out, c.tokens, 0.0, c.heads);
    result->fused->eval();
    result->return_weights = v == Variant::kFusedWeights;
    const bool materialized = v == Variant::kFusedMaterialized || v == Variant::kFusedWeights;
    result->fused->set_attention_path(materialized
                                          ? attn::MultiHeadAttention::AttentionPath::kMaterialized
                                          : attn::MultiHeadAttention::AttentionPath::kFlash);
  } else {
    result->wrapper = std::make_unique<attn::MultiHeadAttentionWrapper>(c.d_in, c.wrapper_head_dim,
                                                                        c.tokens, 0.0, c.heads);
    result->wrapper->eval();
    if (v == Variant::kWrapperOutProj) {
      const int64_t width = c.heads * c.wrapper_head_dim;
      result->out_proj = std::make_unique<attn::Linear>(width, width);
      result->out_proj->eval();
    }
  }
  result->x = attn::rand({c.batch, c.tokens, c.d_in});
  return result;
}

void RegisterFloat32ModuleBenchmarks(const Config& c) {
  for (Variant v : {Variant::kWrapper, Variant::kWrapperOutProj, Variant::kFused,
                    Variant::kFusedMaterialized}) {
    RegisterModuleBenchmark(c, v);
  }
  // Where the (B, H, T, T) float weights tensor is at most 512 MiB.
  if (c.batch * c.heads * c.tokens * c.tokens * 4 <= (int64_t{512} << 20)) {
    RegisterModuleBenchmark(c, Variant::kFusedWeights);
  }
}

}  // namespace attn_bench
