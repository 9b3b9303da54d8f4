// Grouped-query attention with rotary positions and sliding windows: the
// attention of the book's Llama 2/3 and Qwen-style models (its llama3.py
// GroupedQueryAttention, compute_rope_params and apply_rope).
//
//   attn::manual_seed(123);
//   attn::RopeConfig rope;
//   rope.theta_base = 500000.0;                      // Llama 3
//   rope.scaling_factor = 32.0;                      // Llama 3.2 frequency scaling
//   attn::GroupedQueryAttention gqa(2048, 2048, 8192, 32, 8, rope);
//   attn::Tensor y = gqa.forward(x);                 // x: (batch, num_tokens, 2048)
#pragma once

#include <cstdint>
#include <vector>

#include "attn/kv_cache.h"
#include "attn/linear.h"
#include "attn/module.h"

namespace attn {

// Rotary position embeddings (RoPE) as the book's compute_rope_params builds
// them: inv_freq[i] = 1 / theta_base^(2i / head_dim) for i < head_dim / 2,
// with Llama 3's frequency scaling when scaling_factor > 0 (its freq_config:
// factor, low_freq_factor, high_freq_factor, original_context_length); the
// angle of position p is p * inv_freq[i], all in float32 as PyTorch computes
// them, and a head's dimensions c and c + head_dim / 2 rotate together
// (x * cos + rotate_half(x) * sin).
struct RopeConfig {
  bool enabled = true;
  double theta_base = 10000.0;  // Llama 2: 10,000; Llama 3: 500,000
  double scaling_factor = 0.0;  // Llama 3 frequency scaling when > 0 (e.g. 32)
  double low_freq_factor = 1.0, high_freq_factor = 4.0;
  int64_t original_context_length = 8192;
};

// GroupedQueryAttention(d_in, d_out, context_length, num_heads, num_kv_groups,
// rope, sliding_window, qkv_bias): x (batch, num_tokens, d_in) ->
// (batch, num_tokens, d_out).
//
// head_dim = d_out / num_heads. Parameters, created in this order from the
// global generator with nn.Linear's initialization (so manual_seed gives the
// book's weights bit for bit):
//   W_key   Linear(d_in, num_kv_groups * head_dim, qkv_bias)
//   W_value Linear(d_in, num_kv_groups * head_dim, qkv_bias)
//   W_query Linear(d_in, d_out, qkv_bias)
//   out_proj Linear(d_out, d_out, bias = false)
// state_dict keys: W_key.weight, W_value.weight, W_query.weight,
// out_proj.weight (+ W_key.bias, W_value.bias, W_query.bias with qkv_bias);
// no buffers (causality, the window and RoPE are computed, not stored).
//
// Query head h attends with key/value head h / (num_heads / num_kv_groups)
// (PyTorch's repeat_interleave order); RoPE (when enabled) rotates queries and
// keys at their positions; query i sees keys j with i - sliding_window < j <= i
// (every j <= i when sliding_window = 0); scores are scaled by 1/sqrt(head_dim).
// num_kv_groups = num_heads is multi-head attention, 1 is multi-query attention.
// No dropout: the module has no training-time randomness.
//
// Throws ArgumentError, before drawing any random number, for a non-positive
// size, d_out not divisible by num_heads, num_heads not divisible by
// num_kv_groups, a negative sliding_window, and with RoPE enabled an odd
// head_dim or a theta_base, scaling factor or original_context_length that
// is not finite and positive (high_freq_factor must exceed low_freq_factor
// when scaling).
class GroupedQueryAttention : public Module {
 public:
  GroupedQueryAttention(int64_t d_in, int64_t d_out, int64_t context_length, int64_t num_heads,
                        int64_t num_kv_groups, const RopeConfig& rope = RopeConfig(),
                        int64_t sliding_window = 0, bool qkv_bias = false);

  // attn_weights, when not null, receives (batch, num_heads, num_tokens,
  // num_tokens): the softmax weights that multiplied V (0 outside each
  // query's window); a tensor of that shape already (from an earlier call) is
  // overwritten in place, any other is freed before the new weights are
  // allocated. It may be x itself. Throws ShapeError for x not (batch,
  // num_tokens, d_in) or num_tokens > context_length.
  Tensor forward(const Tensor& x, Tensor* attn_weights = nullptr) const;
  Tensor operator()(const Tensor& x) const { return forward(x); }

  // Incremental decoding, as MultiHeadAttention::forward(x, cache): x holds
  // the next num_tokens tokens after the cache.size() already cached; their
  // rotated keys and their values are appended (token p of the sequence is
  // rotated at position p), and each new token attends to the cached and new
  // tokens its window lets it see. Throws ShapeError when the cache would
  // exceed context_length or does not fit this module or x, and
  // ArgumentError when it belongs to another module (attn/kv_cache.h).
  Tensor forward(const Tensor& x, KVCache& cache) const;
  // An empty cache of num_kv_groups heads of head_dim for context_length
  // tokens (the whole context, also with a sliding window), belonging to
  // this module (attn/kv_cache.h: another module refuses it).
  // `type`: float32 keys and values, or int8 with a scale per 32 values
  // (attn/kv_cache.h), which a step reads about 3.6x fewer bytes of.
  KVCache make_cache(int64_t batch, KVCacheType type = KVCacheType::kFloat32) const;

  int64_t d_in() const { return W_query_.in_features(); }
  int64_t d_out() const { return W_query_.out_features(); }
  int64_t num_heads() const { return num_heads_; }
  int64_t num_kv_groups() const { return num_kv_groups_; }
  int64_t group_size() const { return num_heads_ / num_kv_groups_; }
  int64_t head_dim() const { return d_out() / num_heads_; }
  int64_t context_length() const { return context_length_; }
  int64_t sliding_window() const { return sliding_window_; }
  const RopeConfig& rope() const { return rope_; }
  const Linear& W_key() const { return W_key_; }
  const Linear& W_value() const { return W_value_; }
  const Linear& W_query() const { return W_query_; }
  const Linear& out_proj() const { return out_proj_; }
  // The float32 inverse frequencies (head_dim / 2 of them) RoPE uses, after
  // Llama 3 scaling: compute_rope_params' inv_freq. Empty without RoPE.
  const std::vector<float>& rope_inv_freq() const { return inv_freq_; }

 protected:
  void collect_tensors(const std::string& prefix, std::vector<NamedTensor>& out) override;
  void on_tensors_loaded() override;
  // Quantizes the Linears forward uses: qkv_ and out_proj_.
  void quantize_in_place() override;

 private:
  // [W_query; W_key; W_value] as one Linear(d_in, d_out + 2 * kv_dim).
  Linear fused_qkv() const;
  // "a GroupedQueryAttention" or its int8 form, for KVCache messages.
  const char* cache_kind() const;
  // Projects x (batch, tokens, d_in) into qkv ((batch * tokens) x
  // (d_out + 2 * kv_dim): [queries | keys | values] per token) and rotates
  // its queries and keys, token t at position first_position + t.
  void project(const Tensor& x, int64_t first_position, float* qkv) const;

  int64_t context_length_;
  int64_t num_heads_;
  int64_t num_kv_groups_;
  int64_t sliding_window_;
  RopeConfig rope_;
  // Declared in PyTorch's creation order: the constructor draws them so.
  Linear W_key_, W_value_, W_query_;
  Linear out_proj_;
  Linear qkv_;
  // RoPE's inverse frequencies (empty without RoPE); each forward computes
  // the cos and sin of the positions it needs from them.
  std::vector<float> inv_freq_;
  // The identity its caches carry: copied with the module, new after
  // load_state_dict and quantize_dynamic (attn/kv_cache.h).
  uint64_t cache_owner_ = KVCache::new_owner();
};

}  // namespace attn
