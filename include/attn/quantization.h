// Dynamic int8 quantization, PyTorch's
//   torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
// for attn's modules:
//
//   attn::MultiHeadAttention mha(768, 768, 1024, 0.0, 12);
//   mha.eval();
//   attn::MultiHeadAttention q = attn::quantize_dynamic(mha);
//   attn::Tensor y = q.forward(x);  // projections in int8, attention in float32
//
// quantize_dynamic returns a copy of the module whose Linear layers compute
// in int8; the original is untouched. Works for Linear, SelfAttentionV2,
// CausalAttention, MultiHeadAttentionWrapper and MultiHeadAttention
// (SelfAttentionV1 has no Linear and comes back unchanged, as in PyTorch).
//
// What a quantized Linear computes: weights symmetric int8 with one scale
// per output channel, quantized once; activations quantized at every
// forward, asymmetric uint8 with one scale and zero point per token row;
// products summed exactly in integers (int32 per run of 65,536 inputs,
// int64 across runs and for the weight sums: no overflow for any
// in_features up to 2^48, more than any weight that fits in memory; above
// that, ArgumentError naming in_features); scales and bias applied in
// float32 (simd/matmul_int8.h has the formula).
// The attention itself (scores, softmax, weights · V) stays float32.
// Error: about 1% relative L2 on ordinary inputs; outliers cost more (one
// input channel x1000, one activation of 1000 per token or one weight per
// output row x100: 0.12 to 0.19 on the GPT-2-sized MultiHeadAttention;
// README.md): keep a module that sees such values in float32.
// forward(x) and MultiHeadAttention's forward(x, cache) work as before.
//
// The quantized module keeps its float32 parameters: state_dict(),
// num_parameters() and the parameter accessors return exactly what the
// original module had (the int8 copies are derived data, like the packed
// weights of a float module); load_state_dict() loads float32 tensors under
// the same keys and quantizes them again. A quantized module is not
// quantized twice: quantize_dynamic of it returns an equal copy.
//
// Throws ArgumentError naming the parameter when a weight or bias holds NaN
// or inf (nothing is quantized then).
#pragma once

#include <type_traits>

#include "attn/module.h"

namespace attn {

template <class M>
M quantize_dynamic(const M& module) {
  static_assert(std::is_base_of<Module, M>::value, "quantize_dynamic takes an attn module");
  M copy = module;
  detail::quantize_module(copy);
  return copy;
}

}  // namespace attn
