// The chapter's first two modules (sections 3.4.1 and 3.4.2): self-attention
// with trainable weights, no mask, no dropout, over one sequence x of shape
// (num_tokens, d_in):
//   queries = x·W_query, keys = x·W_key, values = x·W_value
//   out = softmax(queries·keysᵀ / sqrt(d_out)) · values       -> (num_tokens, d_out)
#pragma once

#include <cstdint>

#include "attn/linear.h"
#include "attn/module.h"

namespace attn {

// SelfAttention_v1: W_query, W_key, W_value are plain (d_in, d_out) matrices,
// each drawn as torch.rand(d_in, d_out) in that order.
class SelfAttentionV1 : public Module {
 public:
  SelfAttentionV1(int64_t d_in, int64_t d_out);

  // x: (num_tokens, d_in) -> (num_tokens, d_out). When attn_weights is not
  // null it receives the (num_tokens, num_tokens) attention weights (a tensor
  // of that shape already is overwritten in place, any other freed first; it
  // may be x itself).
  Tensor forward(const Tensor& x, Tensor* attn_weights = nullptr) const;
  Tensor operator()(const Tensor& x) const { return forward(x); }

  int64_t d_in() const { return d_in_; }
  int64_t d_out() const { return d_out_; }
  const Tensor& W_query() const { return W_query_; }
  const Tensor& W_key() const { return W_key_; }
  const Tensor& W_value() const { return W_value_; }

 protected:
  void collect_tensors(const std::string& prefix, std::vector<NamedTensor>& out) override;

 private:
  int64_t d_in_, d_out_;
  Tensor W_query_, W_key_, W_value_;
};

// SelfAttention_v2: the same computation with three nn.Linear(d_in, d_out,
// bias=qkv_bias) layers (weights stored (d_out, d_in), used transposed).
class SelfAttentionV2 : public Module {
 public:
  SelfAttentionV2(int64_t d_in, int64_t d_out, bool qkv_bias = false);

  Tensor forward(const Tensor& x, Tensor* attn_weights = nullptr) const;
  Tensor operator()(const Tensor& x) const { return forward(x); }

  int64_t d_in() const { return W_query_.in_features(); }
  int64_t d_out() const { return W_query_.out_features(); }
  const Linear& W_query() const { return W_query_; }
  const Linear& W_key() const { return W_key_; }
  const Linear& W_value() const { return W_value_; }

 protected:
  void collect_tensors(const std::string& prefix, std::vector<NamedTensor>& out) override;

 private:
  Linear W_query_, W_key_, W_value_;
};

// Exercise 3.1: v1.W_query = v2.W_query.weight.T (and W_key, W_value), so
// that v1 gives the same outputs as v2. Throws ShapeError when the two
// modules' d_in/d_out differ and ArgumentError when v2 has qkv_bias (a v1
// has no bias to receive it).
void transfer_weights(const SelfAttentionV2& source, SelfAttentionV1& target);

}  // namespace attn
