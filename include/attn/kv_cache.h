// attn::KVCache: the keys and values of one MultiHeadAttention or
// GroupedQueryAttention layer for up to context_length tokens, for
// incremental decoding. Processing a prompt of T tokens and then N tokens one
// at a time through forward(x, cache) gives the outputs of one forward over
// the T + N tokens (to float rounding). A GroupedQueryAttention cache holds
// num_kv_groups heads, its keys already rotated by RoPE.
//
// A cache belongs to the module whose make_cache() made it: another module
// refuses it with an ArgumentError, also one of the same shape, whose keys
// and values would mean nothing there. Copies of a module (and the module a
// module was moved to) accept its caches: they compute the same function.
// load_state_dict() and quantize_dynamic() give the module, or the copy, a
// new identity, so caches made before are refused (their keys came from other
// weights). A cache built with the public constructor belongs to no module
// until the first forward(x, cache) that accepts it, whose module then owns
// it. Copies of a cache belong to the same module; reset() and rewind() keep
// the owner.
//
// Two storage types, chosen when the cache is made (make_cache(batch, type)):
//  - KVCacheType::kFloat32 (the default): keys and values as float32;
//  - KVCacheType::kInt8: each token's key and value of each head as symmetric
//    int8 with one float32 scale per 32 values, the scales beside the values
//    (keys in tiles of 16 tokens; head_dim 64: 72 bytes a token per key or
//    value instead of 256, 0.28x). Keys are quantized after RoPE. Decoding
//    reads the int8 rows directly; a prompt (more than 4 tokens) dequantizes
//    each head's rows into scratch once. Every token, prompt or decoded,
//    attends to the quantized keys and values, so a prompt and N decoded
//    tokens still give one forward's outputs over the same tokens through an
//    int8 cache (to rounding). A block of 32 values holding
//    NaN or ±inf dequantizes to NaN: the queries that attend to that token
//    give NaN, the others are unaffected (the float32 cache gives NaN or ±inf
//    there). Either type works with a float32 module and its
//    quantize_dynamic copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "attn/tensor.h"

namespace attn {
namespace detail {
struct AttentionProblem;
}  // namespace detail

enum class KVCacheType { kFloat32, kInt8 };

// "float32" or "int8".
const char* to_string(KVCacheType type);

class KVCache {
 public:
  // Throws ArgumentError for non-positive sizes.
  KVCache(int64_t batch, int64_t num_heads, int64_t head_dim, int64_t context_length,
          KVCacheType type = KVCacheType::kFloat32);

  int64_t batch() const { return batch_; }
  int64_t num_heads() const { return num_heads_; }
  int64_t head_dim() const { return head_dim_; }
  int64_t capacity() const { return capacity_; }  // context_length
  int64_t size() const { return size_; }          // tokens cached so far
  KVCacheType type() const { return type_; }
  // Bytes of key and value storage held (all capacity() tokens, scales
  // included): float32: 2·batch·num_heads·capacity·head_dim·4; int8:
  // batch·num_heads·(keys: ceil(capacity / 16) tiles of 16·(4·B + head_dim)
  // bytes + values: capacity rows of 4·B + head_dim bytes rounded up to a
  // multiple of 4), B = ceil(head_dim / 32) scales per token.
  int64_t bytes() const;

  // Forgets every cached token.
  void reset() { size_ = 0; }
  // Keeps the first `num_tokens` tokens (e.g. to re-run from a shorter
  // prompt). Throws ArgumentError unless 0 <= num_tokens <= size().
  void rewind(int64_t num_tokens);

  // A float32 cache's keys/values as (batch, num_heads, capacity, head_dim);
  // only the first size() rows of each (batch, head) are meaningful. Empty
  // tensors for an int8 cache.
  const Tensor& keys() const { return keys_; }
  const Tensor& values() const { return values_; }
  // The cached keys/values of either type as float32, (batch, num_heads,
  // size(), head_dim): an int8 cache's dequantized, a float32 cache's copied.
  Tensor dequantized_keys() const;
  Tensor dequantized_values() const;

 private:
  friend class MultiHeadAttention;
  friend class GroupedQueryAttention;

  // A module identity that no other module has (never 0).
  static uint64_t new_owner();
  // Throws ArgumentError unless this cache belongs to `owner` or to no
  // module; the message starts with `module` and names this module's kind
  // (`kind`, e.g. "a MultiHeadAttention") and the owner's.
  void check_owner(const char* module, const char* kind, uint64_t owner) const;
  // Makes an unowned cache `owner`'s (`kind`: a string literal).
  void adopt(uint64_t owner, const char* kind);
  // Whether the storage is there (a moved-from cache keeps its sizes only).
  bool has_storage() const;
  // "int8 KVCache of batch 1, 12 heads of 64, context 1024": for messages.
  std::string describe() const;
  // Throws ShapeError, naming `module`, this cache and the module's layout
  // (`heads` heads of head_dim, context_length; `heads_name`: "heads" or
  // "key/value heads"), unless this cache has that layout and x's batch, and
  // room for x's tokens.
  void check_fits(const char* module, const char* heads_name, int64_t heads, int64_t head_dim,
                  int64_t context_length, const Tensor& x) const;
  // Runs `problem` (its queries, after append) over the cached tokens: the
  // float32 attention core or the int8 rows' (core/kv_int8_attention.cc).
  void attend(const detail::AttentionProblem& problem) const;
  // Writes tokens size() .. size() + tokens - 1 of every batch row and head
  // (the caller checked that they fit): the key of (b, t, head h) is
  // keys[(b * tokens + t) * ld + h * head_dim], its value values[same]; a
  // float32 cache copies them, an int8 cache quantizes them. Then size() +=
  // tokens.
  void append(const float* keys, const float* values, size_t ld, size_t tokens);
  // The int8 storage (simd/kv_int8.h): the keys and values of (b, h) in
  // tiles() tiles of 16 tokens each, key_tile_bytes() and value_tile_bytes().
  size_t key_tile_bytes() const;
  size_t value_tile_bytes() const;
  int64_t tiles() const;
  const uint8_t* int8_keys(size_t b, size_t h) const;
  const uint8_t* int8_values(size_t b, size_t h) const;

  int64_t batch_, num_heads_, head_dim_, capacity_;
  int64_t size_ = 0;
  KVCacheType type_ = KVCacheType::kFloat32;
  Tensor keys_, values_;              // float32 caches
  Tensor keys8_, values8_;            // int8 caches: the rows' bytes in float-sized words
  uint64_t owner_ = 0;                // 0: no module yet
  const char* owner_kind_ = nullptr;  // e.g. "a MultiHeadAttention"
};

}  // namespace attn
