// The int8 and AVX2-forced module rows (module_bench.h): the fused module
// after attn::quantize_dynamic ("fused_int8": its Linear layers in int8, the
// attention in float32) on every configuration, and at B8_T1024 the float32
// and int8 fused modules with Highway's AVX-512 targets disabled
// ("fused_avx2", "fused_int8_avx2": what a CPU without AVX-512 and VNNI runs;
// the modules are built and quantized under that setting, so their weights
// are packed for the AVX2 kernels).

#include <cmath>
#include <cstdint>
#include <memory>

#include "attn/attn.h"
#include "bench/attention_bench.h"
#include "bench/module_bench.h"

namespace attn_bench {
namespace {

// ||a - b|| / ||b|| over all elements, in double.
double RelativeL2Error(const attn::Tensor& a, const attn::Tensor& b) {
  double diff = 0.0, norm = 0.0;
  for (int64_t i = 0; i < b.numel(); ++i) {
    const double d = static_cast<double>(a.data()[i]) - static_cast<double>(b.data()[i]);
    diff += d * d;
    norm += static_cast<double>(b.data()[i]) * static_cast<double>(b.data()[i]);
  }
  return norm > 0.0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

}  // namespace

std::unique_ptr<Case> MakeInt8Case(const Config& c) {
  std::unique_ptr<Case> result = MakeFloat32Case(c, Variant::kFused);
  // The float32 module's output on the same input is the reference; the
  // float32 module itself is not kept.
  const attn::Tensor reference = result->fused->forward(result->x);
  result->fused =
      std::make_unique<attn::MultiHeadAttention>(attn::quantize_dynamic(*result->fused));
  result->rel_l2_error = RelativeL2Error(result->fused->forward(result->x), reference);
  return result;
}

void RegisterInt8ModuleBenchmarks(const Config& c) {
  RegisterModuleBenchmark(c, Variant::kFusedInt8);
  if (c.name == "B8_T1024") {
    RegisterModuleBenchmark(c, Variant::kFusedAvx2);
    RegisterModuleBenchmark(c, Variant::kFusedInt8Avx2);
  }
}

}  // namespace attn_bench
