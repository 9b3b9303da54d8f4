#include "attn/self_attention.h"

#include "attn/random.h"
#include "core/attention_core.h"
#include "core/input_checks.h"
#include "simd/matmul.h"

namespace attn {
namespace {

// out (T, d_out) = softmax(Q·Kᵀ / sqrt(d_out)) · V for contiguous (T, d_out)
// queries, keys and values, no mask.
Tensor attend_unmasked(Tensor& queries, Tensor& keys, Tensor& values, Tensor* attn_weights) {
  const size_t tokens = static_cast<size_t>(queries.size(0));
  const size_t d_out = static_cast<size_t>(queries.size(1));
  Tensor out = Tensor::empty({queries.size(0), queries.size(1)});
  if (attn_weights != nullptr) {
    detail::prepare_weights_output(*attn_weights, {queries.size(0), queries.size(0)});
  }

  detail::AttentionProblem p;
  p.batch = 1;
  p.heads = 1;
  p.tokens = tokens;
  p.head_dim = d_out;
  p.q = {queries.data(), 0, 0, d_out};
  p.k = {keys.data(), 0, 0, d_out};
  p.v = {values.data(), 0, 0, d_out};
  p.out = {out.data(), 0, 0, d_out};
  p.scale = detail::attention_scale(d_out);
  p.causal = false;
  p.weights = attn_weights != nullptr ? attn_weights->data() : nullptr;
  detail::attention(p);
  return out;
}

// y (T, d_out) = x (T, d_in) · w (d_in, d_out)
Tensor matmul(const Tensor& x, const Tensor& w) {
  Tensor y = Tensor::empty({x.size(0), w.size(1)});
  simd::MatMulArgs args;
  args.a = x.data();
  args.lda = static_cast<size_t>(x.size(1));
  args.b = w.data();
  args.ldb = static_cast<size_t>(w.size(1));
  args.c = y.data();
  args.ldc = static_cast<size_t>(w.size(1));
  args.m = static_cast<size_t>(x.size(0));
  args.n = static_cast<size_t>(w.size(1));
  args.k = static_cast<size_t>(x.size(1));
  simd::MatMul(args);
  return y;
}

}  // namespace

SelfAttentionV1::SelfAttentionV1(int64_t d_in, int64_t d_out) : d_in_(d_in), d_out_(d_out) {
  detail::check_positive("SelfAttentionV1", "d_in", d_in);
  detail::check_positive("SelfAttentionV1", "d_out", d_out);
  W_query_ = rand({d_in, d_out});
  W_key_ = rand({d_in, d_out});
  W_value_ = rand({d_in, d_out});
}

void SelfAttentionV1::collect_tensors(const std::string& prefix, std::vector<NamedTensor>& out) {
  out.push_back({prefix + "W_query", &W_query_, TensorKind::kParameter});
  out.push_back({prefix + "W_key", &W_key_, TensorKind::kParameter});
  out.push_back({prefix + "W_value", &W_value_, TensorKind::kParameter});
}

Tensor SelfAttentionV1::forward(const Tensor& x, Tensor* attn_weights) const {
  detail::check_attention_input("SelfAttentionV1", x, 2, d_in_);
  if (W_query_.dim() != 2 || W_key_.dim() != 2 || W_value_.dim() != 2) {
    throw ArgumentError("SelfAttentionV1: W_query has shape " + shape_to_string(W_query_.shape()) +
                        ": this module was moved from (assign a module to it before use)");
  }
  Tensor queries = matmul(x, W_query_);
  Tensor keys = matmul(x, W_key_);
  Tensor values = matmul(x, W_value_);
  return attend_unmasked(queries, keys, values, attn_weights);
}

SelfAttentionV2::SelfAttentionV2(int64_t d_in, int64_t d_out, bool qkv_bias)
    : W_query_(d_in, d_out, qkv_bias),
      W_key_(d_in, d_out, qkv_bias),
      W_value_(d_in, d_out, qkv_bias) {}

void SelfAttentionV2::collect_tensors(const std::string& prefix, std::vector<NamedTensor>& out) {
  collect_child(W_query_, prefix + "W_query.", out);
  collect_child(W_key_, prefix + "W_key.", out);
  collect_child(W_value_, prefix + "W_value.", out);
}

Tensor SelfAttentionV2::forward(const Tensor& x, Tensor* attn_weights) const {
  detail::check_attention_input("SelfAttentionV2", x, 2, d_in());
  Tensor queries = W_query_(x);
  Tensor keys = W_key_(x);
  Tensor values = W_value_(x);
  return attend_unmasked(queries, keys, values, attn_weights);
}

namespace {

Tensor transposed(const Tensor& w) {
  const int64_t rows = w.size(0), cols = w.size(1);
  Tensor t({cols, rows});
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) t.data()[j * rows + i] = w.data()[i * cols + j];
  }
  return t;
}

}  // namespace

void transfer_weights(const SelfAttentionV2& source, SelfAttentionV1& target) {
  if (source.d_in() != target.d_in() || source.d_out() != target.d_out()) {
    // Both sizes: swapped d_in and d_out give equal-looking weight shapes.
    const auto sizes = [](int64_t d_in, int64_t d_out) {
      return " (d_in = " + std::to_string(d_in) + ", d_out = " + std::to_string(d_out) + ")";
    };
    throw ShapeError("transfer_weights: SelfAttentionV2" + sizes(source.d_in(), source.d_out()) +
                     " with W_query.weight of shape " +
                     shape_to_string(source.W_query().weight().shape()) +
                     " does not fit SelfAttentionV1" + sizes(target.d_in(), target.d_out()) +
                     " with W_query of shape " + shape_to_string(target.W_query().shape()));
  }
  if (source.W_query().has_bias()) {
    throw ArgumentError(
        "transfer_weights: the SelfAttentionV2 has qkv_bias=true; SelfAttentionV1 has no bias "
        "to receive it");
  }
  StateDict dict;
  dict["W_query"] = transposed(source.W_query().weight());
  dict["W_key"] = transposed(source.W_key().weight());
  dict["W_value"] = transposed(source.W_value().weight());
  target.load_state_dict(dict);
}

}  // namespace attn
