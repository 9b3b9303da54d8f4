// quantize_dynamic's body (attn/quantization.h) and Module's default step.
#include "attn/quantization.h"

#include <string>
#include <vector>

#include "attn/error.h"
#include "attn/linear.h"
#include "simd/matmul_int8.h"

namespace attn {

void Module::quantize_in_place() {
  // Parameters are owned by the innermost module that holds them: for a
  // Linear, the Linear itself (whose override quantizes it).
  std::vector<Module*> done;
  for (const NamedTensor& entry : named_tensors()) {
    Module* owner = entry.owner;
    if (owner == this || dynamic_cast<Linear*>(owner) == nullptr) continue;
    bool seen = false;
    for (Module* m : done) seen = seen || m == owner;
    if (!seen) {
      owner->quantize_in_place();
      done.push_back(owner);
    }
  }
}

namespace detail {

void quantize_module(Module& module) {
  // Every parameter is checked before anything is quantized.
  for (const Module::NamedTensor& entry : module.named_tensors()) {
    if (entry.kind != Module::TensorKind::kParameter) continue;
    const Tensor& t = *entry.tensor;
    if (!simd::AllFinite(t.data(), static_cast<size_t>(t.numel()))) {
      throw ArgumentError("quantize_dynamic: parameter '" + entry.name + "' of shape " +
                          shape_to_string(t.shape()) + " holds NaN or inf");
    }
  }
  module.quantize_in_place();
}

}  // namespace detail
}  // namespace attn
