#include "attn/multi_head_attention.h"

#include <cstring>

#include "core/attention_core.h"
#include "core/input_checks.h"
#include "simd/thread_scratch.h"

namespace attn {
namespace {

// Every argument check, before any parameter is drawn (a constructor that
// throws draws no random numbers). Returns context_length.
int64_t checked_config(const char* module, int64_t d_in, int64_t d_out, int64_t context_length,
                       double dropout, int64_t num_heads, bool fused) {
  detail::checked_causal_config(module, d_in, d_out, context_length, dropout);
  detail::check_positive(module, "num_heads", num_heads);
  if (fused && d_out % num_heads != 0) {
    throw ArgumentError(std::string(module) + ": d_out (" + std::to_string(d_out) +
                        ") must be divisible by num_heads (" + std::to_string(num_heads) + ")");
  }
  return context_length;
}

// The forward's (batch * num_tokens, 3 * d_out) projections of x must fit in
// the machine's memory: a ShapeError rather than std::bad_alloc from the
// scratch allocation (x itself may be small when d_in is).
void check_projections_fit(const Tensor& x, int64_t d_out) {
  int64_t floats = 0;
  const bool overflow = __builtin_mul_overflow(x.size(0), x.size(1), &floats) ||
                        __builtin_mul_overflow(floats, 3 * d_out, &floats);
  const uint64_t memory = detail::physical_memory_bytes();
  if (overflow || (memory != 0 && static_cast<uint64_t>(floats) > memory / sizeof(float))) {
    throw ShapeError("MultiHeadAttention: input x of shape " + shape_to_string(x.shape()) +
                     " needs its (batch * num_tokens, 3 * d_out = " + std::to_string(3 * d_out) +
                     ") projections, more than this machine's " + std::to_string(memory) +
                     " bytes of memory");
  }
}

// [first; second; third] stacked along dimension 0 (the rows of nn.Linear
// weights, or the entries of biases).
Tensor stack_rows(const Tensor& first, const Tensor& second, const Tensor& third) {
  std::vector<int64_t> shape = first.shape();
  shape[0] *= 3;
  Tensor stacked = Tensor::empty(shape);
  const size_t count = static_cast<size_t>(first.numel());
  std::memcpy(stacked.data(), first.data(), count * sizeof(float));
  std::memcpy(stacked.data() + count, second.data(), count * sizeof(float));
  std::memcpy(stacked.data() + 2 * count, third.data(), count * sizeof(float));
  return stacked;
}

// The attention over a QKV buffer of (batch * tokens, 3 * d) floats, d =
// heads * hd, output in place of Q.
detail::AttentionProblem qkv_problem(size_t batch, size_t tokens, size_t heads, size_t hd,
                                     float* qkv) {
  const size_t d = heads * hd;
  detail::AttentionProblem p;
  p.batch = batch;
  p.heads = heads;
  p.tokens = tokens;
  p.head_dim = hd;
  // qkv: (batch * tokens, 3 * d_out), [queries | keys | values] per token;
  // head h is columns [h * hd, (h + 1) * hd) of each third.
  const size_t batch_stride = tokens * 3 * d;
  p.q = {qkv, batch_stride, hd, 3 * d};
  p.k = {qkv + d, batch_stride, hd, 3 * d};
  p.v = {qkv + 2 * d, batch_stride, hd, 3 * d};
  // Flash path: the heads' outputs replace Q inside the QKV buffer (each
  // query block is only read by its own task), so the forward needs no
  // buffer beyond Q/K/V and the output; out_proj reads them strided.
  p.out = p.q;
  p.scale = detail::attention_scale(hd);
  p.causal = true;
  return p;
}

}  // namespace

// --- MultiHeadAttentionWrapper ------------------------------------------------

MultiHeadAttentionWrapper::MultiHeadAttentionWrapper(int64_t d_in, int64_t d_out,
                                                     int64_t context_length, double dropout,
                                                     int64_t num_heads, bool qkv_bias) {
  checked_config("MultiHeadAttentionWrapper", d_in, d_out, context_length, dropout, num_heads,
                 false);
  // num_heads CausalAttention heads of three (d_out, d_in) weights and biases.
  int64_t per_linear = 0, per_head = 0, floats = 0;
  const bool overflow = __builtin_mul_overflow(d_in, d_out, &per_linear) ||
                        __builtin_add_overflow(per_linear, d_out, &per_linear) ||
                        __builtin_mul_overflow(per_linear, int64_t{3}, &per_head) ||
                        __builtin_mul_overflow(per_head, num_heads, &floats);
  detail::check_fits_in_memory("MultiHeadAttentionWrapper",
                               "the parameters of num_heads = " + std::to_string(num_heads) +
                                   " heads with d_in = " + std::to_string(d_in) +
                                   " and d_out = " + std::to_string(d_out),
                               overflow ? -1 : floats);
  heads_.reserve(static_cast<size_t>(num_heads));
  for (int64_t h = 0; h < num_heads; ++h) {
    heads_.emplace_back(d_in, d_out, context_length, dropout, qkv_bias);
  }
}

void MultiHeadAttentionWrapper::train(bool mode) {
  Module::train(mode);
  for (CausalAttention& head : heads_) head.train(mode);
}

void MultiHeadAttentionWrapper::collect_tensors(const std::string& prefix,
                                                std::vector<NamedTensor>& out) {
  for (size_t h = 0; h < heads_.size(); ++h) {
    collect_child(heads_[h], prefix + "heads." + std::to_string(h) + ".", out);
  }
}

Tensor MultiHeadAttentionWrapper::forward(const Tensor& x, Tensor* attn_weights) const {
  if (heads_.empty()) {
    throw ArgumentError(
        "MultiHeadAttentionWrapper: this module has no heads: it was moved from (assign a "
        "module to it before use)");
  }
  const CausalAttention& first = heads_.front();
  detail::check_attention_input("MultiHeadAttentionWrapper", x, 3, first.d_in(),
                                first.context_length());
  const int64_t batch = x.size(0), tokens = x.size(1), d_out = first.d_out();
  const int64_t heads = num_heads();
  Tensor out = Tensor::empty({batch, tokens, d_out * heads});
  // The heads' weights are copied into *attn_weights (its storage reused when
  // its shape fits), except when it is x itself (forward(x, &x)), which every
  // head still reads: then into a new tensor, moved there at the end.
  Tensor separate;
  Tensor* weights = attn_weights;
  if (attn_weights == &x) {
    separate = Tensor::empty({batch, heads, tokens, tokens});
    weights = &separate;
  } else if (attn_weights != nullptr) {
    detail::prepare_weights_output(*attn_weights, {batch, heads, tokens, tokens});
  }
  Tensor head_weights;  // each head's (batch, tokens, tokens), one buffer for all
  // One head after another, as the book's torch.cat([head(x) for head in
  // self.heads], dim=-1) does; each head is parallel inside.
  for (int64_t h = 0; h < heads; ++h) {
    const Tensor head_out =
        heads_[static_cast<size_t>(h)].forward(x, weights ? &head_weights : nullptr);
    for (int64_t row = 0; row < batch * tokens; ++row) {
      std::memcpy(out.data() + (row * heads + h) * d_out, head_out.data() + row * d_out,
                  static_cast<size_t>(d_out) * sizeof(float));
    }
    if (weights != nullptr) {
      const int64_t square = tokens * tokens;
      for (int64_t b = 0; b < batch; ++b) {
        std::memcpy(weights->data() + (b * heads + h) * square, head_weights.data() + b * square,
                    static_cast<size_t>(square) * sizeof(float));
      }
    }
  }
  if (attn_weights == &x) *attn_weights = std::move(separate);
  return out;
}

// --- MultiHeadAttention -------------------------------------------------------

MultiHeadAttention::MultiHeadAttention(int64_t d_in, int64_t d_out, int64_t context_length,
                                       double dropout, int64_t num_heads, bool qkv_bias)
    : context_length_(checked_config("MultiHeadAttention", d_in, d_out, context_length, dropout,
                                     num_heads, true)),
      num_heads_(num_heads),
      W_query_(d_in, d_out, qkv_bias, Linear::Unpacked{}),
      W_key_(d_in, d_out, qkv_bias, Linear::Unpacked{}),
      W_value_(d_in, d_out, qkv_bias, Linear::Unpacked{}),
      out_proj_(d_out, d_out),
      dropout_(dropout),
      qkv_(fused_qkv()) {}

Linear MultiHeadAttention::fused_qkv() const {
  Tensor weight = stack_rows(W_query_.weight(), W_key_.weight(), W_value_.weight());
  Tensor bias;
  if (W_query_.has_bias()) bias = stack_rows(W_query_.bias(), W_key_.bias(), W_value_.bias());
  return Linear::from_weights(std::move(weight), std::move(bias));
}

void MultiHeadAttention::train(bool mode) {
  Module::train(mode);
  dropout_.train(mode);
}

void MultiHeadAttention::collect_tensors(const std::string& prefix, std::vector<NamedTensor>& out) {
  out.push_back(causal_mask_entry(prefix + "mask", context_length_));
  collect_child(W_query_, prefix + "W_query.", out);
  collect_child(W_key_, prefix + "W_key.", out);
  collect_child(W_value_, prefix + "W_value.", out);
  collect_child(out_proj_, prefix + "out_proj.", out);
}

void MultiHeadAttention::on_tensors_loaded() {
  const bool quantized = qkv_.is_quantized();
  qkv_ = fused_qkv();
  if (quantized) qkv_.quantize();
  cache_owner_ = KVCache::new_owner();  // other weights: earlier caches are refused
}

void MultiHeadAttention::quantize_in_place() {
  qkv_.quantize();
  out_proj_.quantize();
  cache_owner_ = KVCache::new_owner();  // int8 keys differ from the float module's
}

const char* MultiHeadAttention::cache_kind() const {
  return qkv_.is_quantized() ? "an int8 MultiHeadAttention (quantize_dynamic)"
                             : "a MultiHeadAttention";
}

KVCache MultiHeadAttention::make_cache(int64_t batch, KVCacheType type) const {
  KVCache cache(batch, num_heads_, head_dim(), context_length_, type);
  cache.adopt(cache_owner_, cache_kind());
  return cache;
}

Tensor MultiHeadAttention::forward(const Tensor& x, Tensor* attn_weights) const {
  detail::check_attention_input("MultiHeadAttention", x, 3, d_in(), context_length_);
  check_projections_fit(x, this->d_out());
  const int64_t batch = x.size(0), tokens = x.size(1), d_out = this->d_out();
  const size_t rows = static_cast<size_t>(batch * tokens);
  const size_t d = static_cast<size_t>(d_out);

  // (batch * tokens, 3 * d_out): [queries | keys | values] per token.
  // This thread's scratch (simd/thread_scratch.h): repeated forwards reuse
  // it instead of faulting in fresh pages (at B=8, T=1024 it is 72 MiB).
  float* const qkv =
      simd::detail::ThreadScratch(simd::detail::ScratchSlot::kForwardQkv, rows * 3 * d);
  qkv_.forward_rows(x.data(), static_cast<size_t>(d_in()), rows, qkv, 3 * d);

  const std::vector<uint8_t> keep =
      detail::draw_keep_mask(dropout_, "MultiHeadAttention", {batch, num_heads_, tokens, tokens});
  detail::AttentionProblem p =
      qkv_problem(static_cast<size_t>(batch), static_cast<size_t>(tokens),
                  static_cast<size_t>(num_heads_), static_cast<size_t>(head_dim()), qkv);
  p.keep = keep.empty() ? nullptr : keep.data();
  p.kept_scale = dropout_.kept_scale();
  p.materialize = attn_weights != nullptr || !keep.empty() || path_ == AttentionPath::kMaterialized;
  Tensor out = Tensor::empty({batch, tokens, d_out});
  if (!p.materialize) {  // flash: the heads' outputs replace Q in qkv
    detail::attention(p);
    out_proj_.forward_rows(qkv, 3 * d, rows, out.data(), d);
    return out;
  }
  // The materialized path needs a separate output: (batch, tokens, d_out).
  float* const context =
      simd::detail::ThreadScratch(simd::detail::ScratchSlot::kForwardContext, rows * d);
  p.out = {context, p.tokens * d, p.head_dim, d};
  if (attn_weights != nullptr) {  // x, which it may be, was read into qkv
    detail::prepare_weights_output(*attn_weights, {batch, num_heads_, tokens, tokens});
    p.weights = attn_weights->data();
  }
  detail::attention(p);
  out_proj_.forward_rows(context, d, rows, out.data(), d);
  return out;
}

Tensor MultiHeadAttention::forward(const Tensor& x, KVCache& cache) const {
  detail::check_attention_input("MultiHeadAttention", x, 3, d_in());
  cache.check_owner("MultiHeadAttention", cache_kind(), cache_owner_);
  cache.check_fits("MultiHeadAttention", "heads", num_heads_, head_dim(), context_length_, x);
  check_projections_fit(x, d_out());
  if (dropout_.active()) {
    throw ArgumentError(
        "MultiHeadAttention: forward with a KVCache is for inference, but dropout "
        "p = " +
        std::to_string(dropout_.p()) + " is active in training mode; call eval() first");
  }
  const int64_t batch = x.size(0), tokens = x.size(1), past = cache.size();
  const size_t d = static_cast<size_t>(d_out()), hd = static_cast<size_t>(head_dim());
  const size_t heads = static_cast<size_t>(num_heads_), n = static_cast<size_t>(tokens);

  float* const qkv = simd::detail::ThreadScratch(simd::detail::ScratchSlot::kForwardQkv,
                                                 static_cast<size_t>(batch) * n * 3 * d);
  qkv_.forward_rows(x.data(), static_cast<size_t>(d_in()), static_cast<size_t>(batch) * n, qkv,
                    3 * d);
  cache.append(qkv + d, qkv + 2 * d, 3 * d, n);
  cache.adopt(cache_owner_, cache_kind());

  // Queries (and outputs, in place) from qkv; keys and values from the cache.
  detail::AttentionProblem p = qkv_problem(static_cast<size_t>(batch), n, heads, hd, qkv);
  p.num_keys = static_cast<size_t>(past) + n;
  p.q_begin = static_cast<size_t>(past);
  cache.attend(p);
  Tensor out = Tensor::empty({batch, tokens, d_out()});
  out_proj_.forward_rows(qkv, 3 * d, static_cast<size_t>(batch) * n, out.data(), d);
  return out;
}

}  // namespace attn
