#include "attn/grouped_query_attention.h"

#include <cstring>
#include <string>

#include "core/attention_core.h"
#include "core/input_checks.h"
#include "core/rope.h"
#include "simd/thread_scratch.h"

namespace attn {
namespace {

constexpr const char* kModule = "GroupedQueryAttention";

// Every argument check, before any parameter is drawn (a constructor that
// throws draws no random numbers). Returns context_length.
int64_t checked_config(int64_t d_in, int64_t d_out, int64_t context_length, int64_t num_heads,
                       int64_t num_kv_groups, const RopeConfig& rope, int64_t sliding_window) {
  detail::checked_causal_config(kModule, d_in, d_out, context_length, 0.0);
  detail::check_positive(kModule, "num_heads", num_heads);
  detail::check_positive(kModule, "num_kv_groups", num_kv_groups);
  if (d_out % num_heads != 0) {
    throw ArgumentError(std::string(kModule) + ": d_out (" + std::to_string(d_out) +
                        ") must be divisible by num_heads (" + std::to_string(num_heads) + ")");
  }
  if (num_heads % num_kv_groups != 0) {
    throw ArgumentError(std::string(kModule) + ": num_heads (" + std::to_string(num_heads) +
                        ") must be divisible by num_kv_groups (" + std::to_string(num_kv_groups) +
                        ")");
  }
  if (sliding_window < 0) {
    throw ArgumentError(std::string(kModule) +
                        ": sliding_window must be >= 0 (0: no window), got " +
                        std::to_string(sliding_window));
  }
  detail::check_rope_config(kModule, rope, d_out / num_heads);
  // W_query and out_proj (d_out x d_in, d_out x d_out), W_key and W_value,
  // and the fused [W_query; W_key; W_value] copy forward uses.
  const int64_t kv_dim = num_kv_groups * (d_out / num_heads);
  int64_t two_kv = 0, qkv_rows = 0, floats = 0, out_floats = 0;
  const bool overflow = __builtin_mul_overflow(kv_dim, int64_t{2}, &two_kv) ||
                        __builtin_add_overflow(d_out, two_kv, &qkv_rows) ||
                        __builtin_mul_overflow(qkv_rows, d_in, &floats) ||
                        __builtin_mul_overflow(floats, int64_t{2}, &floats) ||
                        __builtin_mul_overflow(d_out, d_out, &out_floats) ||
                        __builtin_add_overflow(floats, out_floats, &floats);
  detail::check_fits_in_memory(
      kModule,
      "the parameters for d_in = " + std::to_string(d_in) + " and d_out = " + std::to_string(d_out),
      overflow ? -1 : floats);
  return context_length;
}

// [first; second; third] stacked along dimension 0 (rows of nn.Linear
// weights, or entries of biases); the parts may differ in their first extent.
Tensor stack_rows(const Tensor& first, const Tensor& second, const Tensor& third) {
  std::vector<int64_t> shape = first.shape();
  shape[0] = first.size(0) + second.size(0) + third.size(0);
  Tensor stacked = Tensor::empty(shape);
  float* dst = stacked.data();
  for (const Tensor* part : {&first, &second, &third}) {
    std::memcpy(dst, part->data(), static_cast<size_t>(part->numel()) * sizeof(float));
    dst += part->numel();
  }
  return stacked;
}

// The forward's (batch * num_tokens, qkv_width) projections must fit in the
// machine's memory: a ShapeError rather than std::bad_alloc.
void check_projections_fit(const Tensor& x, int64_t qkv_width) {
  int64_t floats = 0;
  const bool overflow = __builtin_mul_overflow(x.size(0), x.size(1), &floats) ||
                        __builtin_mul_overflow(floats, qkv_width, &floats);
  const uint64_t memory = detail::physical_memory_bytes();
  if (overflow || (memory != 0 && static_cast<uint64_t>(floats) > memory / sizeof(float))) {
    throw ShapeError(std::string(kModule) + ": input x of shape " + shape_to_string(x.shape()) +
                     " needs its (batch * num_tokens, " + std::to_string(qkv_width) +
                     ") projections, more than this machine's " + std::to_string(memory) +
                     " bytes of memory");
  }
}

}  // namespace

GroupedQueryAttention::GroupedQueryAttention(int64_t d_in, int64_t d_out, int64_t context_length,
                                             int64_t num_heads, int64_t num_kv_groups,
                                             const RopeConfig& rope, int64_t sliding_window,
                                             bool qkv_bias)
    : context_length_(checked_config(d_in, d_out, context_length, num_heads, num_kv_groups, rope,
                                     sliding_window)),
      num_heads_(num_heads),
      num_kv_groups_(num_kv_groups),
      sliding_window_(sliding_window),
      rope_(rope),
      W_key_(d_in, num_kv_groups * (d_out / num_heads), qkv_bias, Linear::Unpacked{}),
      W_value_(d_in, num_kv_groups * (d_out / num_heads), qkv_bias, Linear::Unpacked{}),
      W_query_(d_in, d_out, qkv_bias, Linear::Unpacked{}),
      out_proj_(d_out, d_out, /*bias=*/false),
      qkv_(fused_qkv()) {
  if (rope_.enabled) inv_freq_ = detail::rope_inverse_frequencies(head_dim(), rope_);
}

Linear GroupedQueryAttention::fused_qkv() const {
  Tensor weight = stack_rows(W_query_.weight(), W_key_.weight(), W_value_.weight());
  Tensor bias;
  if (W_query_.has_bias()) bias = stack_rows(W_query_.bias(), W_key_.bias(), W_value_.bias());
  return Linear::from_weights(std::move(weight), std::move(bias));
}

void GroupedQueryAttention::collect_tensors(const std::string& prefix,
                                            std::vector<NamedTensor>& out) {
  collect_child(W_key_, prefix + "W_key.", out);
  collect_child(W_value_, prefix + "W_value.", out);
  collect_child(W_query_, prefix + "W_query.", out);
  collect_child(out_proj_, prefix + "out_proj.", out);
}

void GroupedQueryAttention::on_tensors_loaded() {
  const bool quantized = qkv_.is_quantized();
  qkv_ = fused_qkv();
  if (quantized) qkv_.quantize();
  cache_owner_ = KVCache::new_owner();  // other weights: earlier caches are refused
}

void GroupedQueryAttention::quantize_in_place() {
  qkv_.quantize();
  out_proj_.quantize();
  cache_owner_ = KVCache::new_owner();  // int8 keys differ from the float module's
}

const char* GroupedQueryAttention::cache_kind() const {
  return qkv_.is_quantized() ? "an int8 GroupedQueryAttention (quantize_dynamic)"
                             : "a GroupedQueryAttention";
}

KVCache GroupedQueryAttention::make_cache(int64_t batch, KVCacheType type) const {
  KVCache cache(batch, num_kv_groups_, head_dim(), context_length_, type);
  cache.adopt(cache_owner_, cache_kind());
  return cache;
}

void GroupedQueryAttention::project(const Tensor& x, int64_t first_position, float* qkv) const {
  const size_t tokens = static_cast<size_t>(x.size(1));
  const size_t rows = static_cast<size_t>(x.size(0)) * tokens;
  const size_t width = static_cast<size_t>(qkv_.out_features());
  qkv_.forward_rows(x.data(), static_cast<size_t>(d_in()), rows, qkv, width);
  if (!rope_.enabled) return;
  // The queries and keys are adjacent in each row: num_heads + num_kv_groups
  // heads of head_dim from column 0.
  detail::apply_rope(qkv, width, rows, tokens, first_position,
                     static_cast<size_t>(num_heads_ + num_kv_groups_),
                     static_cast<size_t>(head_dim()), inv_freq_);
}

namespace {

// The attention over a QKV buffer of (batch * tokens) rows [queries (heads
// x hd) | keys (kv_heads x hd) | values (kv_heads x hd)], output in place of
// the queries.
detail::AttentionProblem gqa_problem(size_t batch, size_t tokens, size_t heads, size_t kv_heads,
                                     size_t hd, size_t window, float* qkv) {
  const size_t d = heads * hd, kv_dim = kv_heads * hd, width = d + 2 * kv_dim;
  detail::AttentionProblem p;
  p.batch = batch;
  p.heads = heads;
  p.kv_heads = kv_heads;
  p.tokens = tokens;
  p.head_dim = hd;
  p.window = window;
  p.q = {qkv, tokens * width, hd, width};
  p.k = {qkv + d, tokens * width, hd, width};
  p.v = {qkv + d + kv_dim, tokens * width, hd, width};
  p.out = p.q;
  p.scale = detail::attention_scale(hd);
  p.causal = true;
  return p;
}

}  // namespace

Tensor GroupedQueryAttention::forward(const Tensor& x, Tensor* attn_weights) const {
  if (qkv_.weight().dim() != 2 || qkv_.weight().size(0) == 0) {
    throw ArgumentError(std::string(kModule) +
                        ": this module has no weights: it was moved from (assign a module to it "
                        "before use)");
  }
  detail::check_attention_input(kModule, x, 3, d_in(), context_length_);
  const int64_t width = qkv_.out_features();
  check_projections_fit(x, width);
  const int64_t batch = x.size(0), tokens = x.size(1), d_out = this->d_out();
  const size_t rows = static_cast<size_t>(batch * tokens);
  const size_t d = static_cast<size_t>(d_out);

  float* const qkv = simd::detail::ThreadScratch(simd::detail::ScratchSlot::kForwardQkv,
                                                 rows * static_cast<size_t>(width));
  project(x, 0, qkv);
  detail::AttentionProblem p =
      gqa_problem(static_cast<size_t>(batch), static_cast<size_t>(tokens),
                  static_cast<size_t>(num_heads_), static_cast<size_t>(num_kv_groups_),
                  static_cast<size_t>(head_dim()), static_cast<size_t>(sliding_window_), qkv);
  Tensor out = Tensor::empty({batch, tokens, d_out});
  if (attn_weights == nullptr) {  // flash: the heads' outputs replace Q in qkv
    detail::attention(p);
    out_proj_.forward_rows(qkv, static_cast<size_t>(width), rows, out.data(), d);
    return out;
  }
  // Weights requested: the materialized path, into a separate output, and
  // the weights straight into *attn_weights (x, which it may be, was read
  // into qkv).
  float* const context =
      simd::detail::ThreadScratch(simd::detail::ScratchSlot::kForwardContext, rows * d);
  p.out = {context, p.tokens * d, p.head_dim, d};
  detail::prepare_weights_output(*attn_weights, {batch, num_heads_, tokens, tokens});
  p.weights = attn_weights->data();
  detail::attention(p);
  out_proj_.forward_rows(context, d, rows, out.data(), d);
  return out;
}

Tensor GroupedQueryAttention::forward(const Tensor& x, KVCache& cache) const {
  if (qkv_.weight().dim() != 2 || qkv_.weight().size(0) == 0) {
    throw ArgumentError(std::string(kModule) +
                        ": this module has no weights: it was moved from (assign a module to it "
                        "before use)");
  }
  detail::check_attention_input(kModule, x, 3, d_in());
  cache.check_owner(kModule, cache_kind(), cache_owner_);
  cache.check_fits(kModule, "key/value heads", num_kv_groups_, head_dim(), context_length_, x);
  const int64_t batch = x.size(0), tokens = x.size(1), past = cache.size();
  const int64_t width = qkv_.out_features();
  check_projections_fit(x, width);
  const size_t hd = static_cast<size_t>(head_dim()), kv_heads = static_cast<size_t>(num_kv_groups_);
  const size_t d = static_cast<size_t>(d_out()), n = static_cast<size_t>(tokens);
  const size_t w = static_cast<size_t>(width);

  float* const qkv = simd::detail::ThreadScratch(simd::detail::ScratchSlot::kForwardQkv,
                                                 static_cast<size_t>(batch) * n * w);
  project(x, past, qkv);
  // The new (rotated) keys and values into the cache.
  cache.append(qkv + d, qkv + d + kv_heads * hd, w, n);
  cache.adopt(cache_owner_, cache_kind());

  // Queries (and outputs, in place) from qkv; keys and values from the cache.
  detail::AttentionProblem p =
      gqa_problem(static_cast<size_t>(batch), n, static_cast<size_t>(num_heads_), kv_heads, hd,
                  static_cast<size_t>(sliding_window_), qkv);
  p.num_keys = static_cast<size_t>(past) + n;
  p.q_begin = static_cast<size_t>(past);
  cache.attend(p);
  Tensor out = Tensor::empty({batch, tokens, d_out()});
  out_proj_.forward_rows(qkv, w, static_cast<size_t>(batch) * n, out.data(), d);
  return out;
}

}  // namespace attn
