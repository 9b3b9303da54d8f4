#include "attn/causal_attention.h"

#include "core/attention_core.h"
#include "core/input_checks.h"

namespace attn {
CausalAttention::CausalAttention(int64_t d_in, int64_t d_out, int64_t context_length,
                                 double dropout, bool qkv_bias)
    : context_length_(
          detail::checked_causal_config("CausalAttention", d_in, d_out, context_length, dropout)),
      W_query_(d_in, d_out, qkv_bias),
      W_key_(d_in, d_out, qkv_bias),
      W_value_(d_in, d_out, qkv_bias),
      dropout_(dropout) {}

void CausalAttention::train(bool mode) {
  Module::train(mode);
  dropout_.train(mode);
}

void CausalAttention::collect_tensors(const std::string& prefix, std::vector<NamedTensor>& out) {
  // PyTorch's state_dict order: a module's own buffers, then its children.
  out.push_back(causal_mask_entry(prefix + "mask", context_length_));
  collect_child(W_query_, prefix + "W_query.", out);
  collect_child(W_key_, prefix + "W_key.", out);
  collect_child(W_value_, prefix + "W_value.", out);
}

Tensor CausalAttention::forward(const Tensor& x, Tensor* attn_weights) const {
  detail::check_attention_input("CausalAttention", x, 3, d_in(), context_length_);
  const int64_t batch = x.size(0), tokens = x.size(1);
  const size_t d_out = static_cast<size_t>(this->d_out());
  Tensor queries = W_query_(x);
  Tensor keys = W_key_(x);
  Tensor values = W_value_(x);
  Tensor out = Tensor::empty({batch, tokens, this->d_out()});
  const std::vector<uint8_t> keep =
      detail::draw_keep_mask(dropout_, "CausalAttention", {batch, tokens, tokens});
  // x, which it may be, was read into the projections.
  if (attn_weights != nullptr) {
    detail::prepare_weights_output(*attn_weights, {batch, tokens, tokens});
  }

  detail::AttentionProblem p;
  p.batch = static_cast<size_t>(batch);
  p.heads = 1;
  p.tokens = static_cast<size_t>(tokens);
  p.head_dim = d_out;
  const size_t batch_stride = p.tokens * d_out;
  p.q = {queries.data(), batch_stride, 0, d_out};
  p.k = {keys.data(), batch_stride, 0, d_out};
  p.v = {values.data(), batch_stride, 0, d_out};
  p.out = {out.data(), batch_stride, 0, d_out};
  p.scale = detail::attention_scale(d_out);
  p.causal = true;
  p.keep = keep.empty() ? nullptr : keep.data();
  p.kept_scale = dropout_.kept_scale();
  p.weights = attn_weights != nullptr ? attn_weights->data() : nullptr;
  detail::attention(p);
  return out;
}

}  // namespace attn
