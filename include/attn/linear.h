// attn::Linear: torch.nn.Linear. weight is (out_features, in_features),
// forward computes y = x · weightᵀ + bias over the last dimension of x.
#pragma once

#include <cstdint>
#include <memory>

#include "attn/module.h"

namespace attn {

namespace simd {
class PackedMatrix;
class QuantizedMatrix;
}  // namespace simd

class Linear : public Module {
 public:
  // Parameters drawn from the global generator as PyTorch does: weight then
  // bias, each uniform(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform, a = sqrt(5)).
  Linear(int64_t in_features, int64_t out_features, bool bias = true);

  // A Linear holding the given weight (out, in) and bias (out) without
  // drawing random numbers; pass an empty tensor (shape {0}) for no bias.
  // Throws ShapeError on inconsistent shapes.
  static Linear from_weights(Tensor weight, Tensor bias = Tensor());

  // x: (..., in_features) -> (..., out_features). Throws ShapeError.
  Tensor forward(const Tensor& x) const;
  Tensor operator()(const Tensor& x) const { return forward(x); }

  // y (rows x out_features, row stride ldy) = x (rows x in, stride ldx) · Wᵀ + b,
  // threaded over rows; the building block of the attention modules. The
  // caller owns the bounds: x must hold (rows - 1) * ldx + in_features floats
  // and y (rows - 1) * ldy + out_features. Throws ArgumentError, writing
  // nothing, when ldx < in_features, ldy < out_features, a pointer is null
  // with rows > 0, or the two ranges overlap (y may not alias x).
  void forward_rows(const float* x, size_t ldx, size_t rows, float* y, size_t ldy) const;

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  bool has_bias() const { return has_bias_; }
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }  // shape {0} without bias
  // True for a Linear of a module returned by quantize_dynamic: forward
  // computes in int8 (attn/quantization.h).
  bool is_quantized() const { return quantized_weight_ != nullptr; }

 protected:
  void collect_tensors(const std::string& prefix, std::vector<NamedTensor>& out) override;
  void on_tensors_loaded() override;
  void quantize_in_place() override { quantize(); }

 private:
  friend class MultiHeadAttention;
  friend class GroupedQueryAttention;
  // Parameters only, drawn as by the public constructor, but weight is not
  // packed: for MultiHeadAttention and GroupedQueryAttention, whose forward
  // multiplies by their concatenated [W_query; W_key; W_value] instead. forward still works
  // (packing on each call).
  struct Unpacked {};
  Linear(int64_t in_features, int64_t out_features, bool bias, Unpacked);
  Linear(Tensor weight, Tensor bias, bool has_bias);
  void pack_weight();
  // Switches forward to int8: weight quantized per output channel and
  // packed for the int8 kernel; the float packing is dropped.
  void quantize();

  int64_t in_features_;
  int64_t out_features_;
  bool has_bias_;
  Tensor weight_;
  Tensor bias_;
  // weightᵀ packed once into the GEMM kernel's panel layout (again after
  // load_state_dict), so forward calls pay no packing; null for a
  // parameters-only Linear. Shared by copies: the weight only changes through
  // load_state_dict, which repacks.
  std::shared_ptr<const simd::PackedMatrix> packed_weight_;
  // The int8 weight of a quantized Linear (null otherwise); forward uses it
  // instead of packed_weight_. Shared by copies and rebuilt on load, likewise.
  std::shared_ptr<const simd::QuantizedMatrix> quantized_weight_;
};

}  // namespace attn
