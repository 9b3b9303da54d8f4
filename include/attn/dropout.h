// attn::Dropout: torch.nn.Dropout (inverted dropout). In training mode each
// element is kept with probability 1 - p and kept values are scaled by
// 1 / (1 - p); in eval mode, or when p = 0, it is the identity. The keep
// decisions draw from the global generator exactly as PyTorch 1.13's CPU
// bernoulli_ does (two 32-bit draws per element, row-major), so the same seed
// gives the same mask bit for bit.
#pragma once

#include <cstdint>
#include <vector>

#include "attn/module.h"

namespace attn {

class Dropout : public Module {
 public:
  // Throws ArgumentError unless 0 <= p <= 1.
  explicit Dropout(double p = 0.5);

  double p() const { return p_; }

  // Any shape; returns a new tensor.
  Tensor forward(const Tensor& x) const;
  Tensor operator()(const Tensor& x) const { return forward(x); }

  // True when forward would change its input (training mode and p > 0).
  bool active() const { return is_training() && p_ > 0.0; }

  // The keep decisions (1 = keep) PyTorch would draw for a tensor of `count`
  // elements, from the global generator. p = 1 draws nothing (all dropped),
  // as in PyTorch. Used by the attention modules, after checking active().
  // Throws ArgumentError, drawing nothing, when count is negative or more
  // bytes than the machine's memory.
  std::vector<uint8_t> draw_keep_mask(int64_t count) const;
  // The factor kept elements are multiplied by: 1 / (1 - p) in float.
  float kept_scale() const;

 protected:
  void collect_tensors(const std::string&, std::vector<NamedTensor>&) override {}

 private:
  double p_;
};

}  // namespace attn
