#include "attn/dropout.h"

#include <cmath>

#include "attn/error.h"
#include "attn/random.h"
#include "core/input_checks.h"

namespace attn {

Dropout::Dropout(double p) : p_(p) {
  if (!(p >= 0.0 && p <= 1.0)) {
    throw ArgumentError("Dropout: probability p has to be between 0 and 1, but got " +
                        std::to_string(p));
  }
}

std::vector<uint8_t> Dropout::draw_keep_mask(int64_t count) const {
  if (count < 0) {
    throw ArgumentError("Dropout::draw_keep_mask: count must not be negative, got " +
                        std::to_string(count));
  }
  const uint64_t memory = detail::physical_memory_bytes();
  if (memory != 0 && static_cast<uint64_t>(count) > memory) {
    throw ArgumentError("Dropout::draw_keep_mask: count = " + std::to_string(count) +
                        " keep decisions (one byte each) exceed this machine's " +
                        std::to_string(memory) + " bytes of memory");
  }
  std::vector<uint8_t> keep(static_cast<size_t>(count), 0);
  if (p_ == 1.0) return keep;  // PyTorch multiplies by zero without drawing
  // bernoulli_(1 - p): keep iff a 53-bit uniform double is below 1 - p.
  const double keep_probability = 1.0 - p_;
  with_global_generator([&](Generator& g) {
    for (uint8_t& k : keep) k = g.uniform_double() < keep_probability ? 1 : 0;
  });
  return keep;
}

// noise = bernoulli(1 - p).div_(1 - p) in float: 1.0f / float(1 - p).
float Dropout::kept_scale() const { return p_ < 1.0 ? 1.0f / static_cast<float>(1.0 - p_) : 0.0f; }

Tensor Dropout::forward(const Tensor& x) const {
  Tensor y = x;
  if (!active() || y.numel() == 0) return y;
  const std::vector<uint8_t> keep = draw_keep_mask(y.numel());
  const float scale = kept_scale();
  float* values = y.data();
  for (size_t i = 0; i < keep.size(); ++i) values[i] *= keep[i] ? scale : 0.0f;
  return y;
}

}  // namespace attn
