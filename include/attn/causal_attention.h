// CausalAttention (section 3.5.3): self-attention over a batch where token t
// attends only to tokens 0..t, with dropout on the attention weights.
//   x (batch, num_tokens, d_in), num_tokens <= context_length
//   weights = dropout(softmax(mask(Q·Kᵀ) / sqrt(d_out)))
//   out = weights · V                                 -> (batch, num_tokens, d_out)
// The persistent buffer `mask` = triu(ones(context_length, context_length), 1)
// appears in state_dict() for compatibility; the kernels apply it as a loop
// bound and it is never stored (no O(context_length²) memory).
#pragma once

#include <cstdint>

#include "attn/dropout.h"
#include "attn/linear.h"
#include "attn/module.h"

namespace attn {

class CausalAttention : public Module {
 public:
  // Throws ArgumentError for non-positive sizes or dropout outside [0, 1],
  // before drawing any random number.
  CausalAttention(int64_t d_in, int64_t d_out, int64_t context_length, double dropout,
                  bool qkv_bias = false);

  // x: (batch, num_tokens, d_in) -> (batch, num_tokens, d_out). When
  // attn_weights is not null it receives the (batch, num_tokens, num_tokens)
  // weights that multiplied V (after dropout in training mode); a tensor of
  // that shape already (from an earlier call) is overwritten in place, any
  // other is freed before the new weights are allocated. It may be x itself.
  Tensor forward(const Tensor& x, Tensor* attn_weights = nullptr) const;
  Tensor operator()(const Tensor& x) const { return forward(x); }

  void train(bool mode = true) override;

  int64_t d_in() const { return W_query_.in_features(); }
  int64_t d_out() const { return W_query_.out_features(); }
  int64_t context_length() const { return context_length_; }
  const Linear& W_query() const { return W_query_; }
  const Linear& W_key() const { return W_key_; }
  const Linear& W_value() const { return W_value_; }
  const Dropout& dropout() const { return dropout_; }
  // The book's mask buffer, built on each call (context_length² floats).
  Tensor mask() const { return causal_mask(context_length_); }

 protected:
  void collect_tensors(const std::string& prefix, std::vector<NamedTensor>& out) override;

 private:
  int64_t context_length_;
  Linear W_query_, W_key_, W_value_;
  Dropout dropout_;
};

}  // namespace attn
