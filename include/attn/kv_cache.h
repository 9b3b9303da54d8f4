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
#pragma once

#include <cstdint>

#include "attn/tensor.h"

namespace attn {

class KVCache {
 public:
  // Throws ArgumentError for non-positive sizes.
  KVCache(int64_t batch, int64_t num_heads, int64_t head_dim, int64_t context_length);

  int64_t batch() const { return batch_; }
  int64_t num_heads() const { return num_heads_; }
  int64_t head_dim() const { return head_dim_; }
  int64_t capacity() const { return capacity_; }  // context_length
  int64_t size() const { return size_; }          // tokens cached so far

  // Forgets every cached token.
  void reset() { size_ = 0; }
  // Keeps the first `num_tokens` tokens (e.g. to re-run from a shorter
  // prompt). Throws ArgumentError unless 0 <= num_tokens <= size().
  void rewind(int64_t num_tokens);

  // Cached keys/values as (batch, num_heads, capacity, head_dim); only the
  // first size() rows of each (batch, head) are meaningful.
  const Tensor& keys() const { return keys_; }
  const Tensor& values() const { return values_; }

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

  int64_t batch_, num_heads_, head_dim_, capacity_;
  int64_t size_ = 0;
  Tensor keys_, values_;
  uint64_t owner_ = 0;                // 0: no module yet
  const char* owner_kind_ = nullptr;  // e.g. "a MultiHeadAttention"
};

}  // namespace attn
