// Multi-head attention (section 3.6), both ways the chapter builds it.
#pragma once

#include <cstdint>
#include <vector>

#include "attn/causal_attention.h"
#include "attn/dropout.h"
#include "attn/kv_cache.h"
#include "attn/linear.h"
#include "attn/module.h"

namespace attn {

// MultiHeadAttentionWrapper (section 3.6.1): num_heads independent
// CausalAttention(d_in, d_out, ...) heads ("heads.0", "heads.1", ...) run one
// after another, outputs concatenated on the last axis:
//   x (batch, num_tokens, d_in) -> (batch, num_tokens, d_out * num_heads).
// The chapter's version: no output projection (exercise 3.2: d_out = 1 with
// two heads gives 2-dimensional context vectors).
class MultiHeadAttentionWrapper : public Module {
 public:
  MultiHeadAttentionWrapper(int64_t d_in, int64_t d_out, int64_t context_length, double dropout,
                            int64_t num_heads, bool qkv_bias = false);

  // attn_weights, when not null, receives (batch, num_heads, num_tokens,
  // num_tokens): head h's weights (after dropout in training mode); its
  // storage is reused when it has that shape already, as MultiHeadAttention
  // does. It may be x itself.
  Tensor forward(const Tensor& x, Tensor* attn_weights = nullptr) const;
  Tensor operator()(const Tensor& x) const { return forward(x); }

  void train(bool mode = true) override;

  int64_t num_heads() const { return static_cast<int64_t>(heads_.size()); }
  const std::vector<CausalAttention>& heads() const { return heads_; }
  // 0 (and no heads) once the wrapper was moved from.
  int64_t d_in() const { return heads_.empty() ? 0 : heads_.front().d_in(); }
  int64_t d_out() const { return heads_.empty() ? 0 : heads_.front().d_out(); }

 protected:
  void collect_tensors(const std::string& prefix, std::vector<NamedTensor>& out) override;
  bool moved_from() const override { return heads_.empty(); }

 private:
  std::vector<CausalAttention> heads_;
};

// MultiHeadAttention (section 3.6.2): the fused module. d_out must be a
// multiple of num_heads; head h uses columns [h*hd, (h+1)*hd) of the Q, K, V
// projections (hd = d_out / num_heads), attends causally with scale
// 1/sqrt(hd), heads are concatenated back to d_out and passed through
// out_proj = Linear(d_out, d_out) (always with bias):
//   x (batch, num_tokens, d_in) -> (batch, num_tokens, d_out).
class MultiHeadAttention : public Module {
 public:
  // How forward computes attention when it may choose (no weights requested,
  // no dropout active): kFlash walks key blocks with an online softmax and
  // keeps no score buffer; kMaterialized computes scores, softmax and
  // weights·V per block of 64 queries (the reference path; always used for
  // returning weights or applying dropout). Both give the same results to
  // float rounding.
  enum class AttentionPath { kFlash, kMaterialized };

  MultiHeadAttention(int64_t d_in, int64_t d_out, int64_t context_length, double dropout,
                     int64_t num_heads, bool qkv_bias = false);

  // attn_weights, when not null, receives (batch, num_heads, num_tokens,
  // num_tokens) (after dropout in training mode); a tensor of that shape
  // already (from an earlier call) is overwritten in place, any other is
  // freed before the new weights are allocated. It may be x itself.
  Tensor forward(const Tensor& x, Tensor* attn_weights = nullptr) const;
  Tensor operator()(const Tensor& x) const { return forward(x); }

  // Incremental decoding: x holds the next num_tokens tokens (batch,
  // num_tokens, d_in) after the cache.size() tokens already in `cache`. Their
  // keys and values are appended to the cache and each new token attends to
  // every cached token and the new ones up to itself. Returns (batch,
  // num_tokens, d_out). Throws ShapeError when the cache would exceed
  // context_length or does not fit this module or x, and ArgumentError when
  // it belongs to another module (attn/kv_cache.h) or dropout is active
  // (training mode with p > 0: decoding is inference).
  Tensor forward(const Tensor& x, KVCache& cache) const;
  // An empty cache sized for this module, and belonging to it (see
  // attn/kv_cache.h: another module refuses it with an ArgumentError).
  // `type`: float32 keys and values, or int8 with a scale per 32 values
  // (attn/kv_cache.h), which a step reads about 3.6x fewer bytes of.
  KVCache make_cache(int64_t batch, KVCacheType type = KVCacheType::kFloat32) const;

  void train(bool mode = true) override;

  // The path of forward(x) (forward(x, cache) always runs the flash kernel).
  // Not thread-safe against concurrent forward calls: set it before.
  void set_attention_path(AttentionPath path) { path_ = path; }
  AttentionPath attention_path() const { return path_; }

  int64_t d_in() const { return W_query_.in_features(); }
  int64_t d_out() const { return W_query_.out_features(); }
  int64_t num_heads() const { return num_heads_; }
  int64_t head_dim() const { return d_out() / num_heads_; }
  int64_t context_length() const { return context_length_; }
  const Linear& W_query() const { return W_query_; }
  const Linear& W_key() const { return W_key_; }
  const Linear& W_value() const { return W_value_; }
  const Linear& out_proj() const { return out_proj_; }
  const Dropout& dropout() const { return dropout_; }
  // The book's mask buffer, built on each call (context_length² floats).
  Tensor mask() const { return causal_mask(context_length_); }

 protected:
  void collect_tensors(const std::string& prefix, std::vector<NamedTensor>& out) override;
  void on_tensors_loaded() override;
  // Quantizes the Linears forward uses: qkv_ and out_proj_ (W_query, W_key
  // and W_value only hold the parameters).
  void quantize_in_place() override;

 private:
  // [W_query; W_key; W_value] as one packed Linear(d_in, 3 * d_out).
  Linear fused_qkv() const;
  // "a MultiHeadAttention" or its int8 form, for KVCache messages.
  const char* cache_kind() const;

  int64_t context_length_;
  int64_t num_heads_;
  AttentionPath path_ = AttentionPath::kFlash;
  // The parameters, as in PyTorch; forward uses qkv_ instead of the first
  // three, which are not packed (forward through them still works).
  Linear W_query_, W_key_, W_value_;
  Linear out_proj_;
  Dropout dropout_;
  // [W_query; W_key; W_value] as one Linear(d_in, 3 * d_out): x is read once
  // for all three projections. Rebuilt after load_state_dict.
  Linear qkv_;
  // The identity its caches carry: copied with the module, new after
  // load_state_dict and quantize_dynamic (attn/kv_cache.h).
  uint64_t cache_owner_ = KVCache::new_owner();
};

}  // namespace attn
