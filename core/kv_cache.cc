#include "attn/kv_cache.h"

#include <string>

#include "attn/error.h"
#include "core/input_checks.h"

namespace attn {

KVCache::KVCache(int64_t batch, int64_t num_heads, int64_t head_dim, int64_t context_length)
    : batch_(batch), num_heads_(num_heads), head_dim_(head_dim), capacity_(context_length) {
  detail::check_positive("KVCache", "batch", batch);
  detail::check_positive("KVCache", "num_heads", num_heads);
  detail::check_positive("KVCache", "head_dim", head_dim);
  detail::check_positive("KVCache", "context_length", context_length);
  keys_ = Tensor({batch, num_heads, context_length, head_dim});
  values_ = Tensor({batch, num_heads, context_length, head_dim});
}

void KVCache::rewind(int64_t num_tokens) {
  if (num_tokens < 0 || num_tokens > size_) {
    throw ArgumentError("KVCache::rewind: num_tokens = " + std::to_string(num_tokens) +
                        " must be between 0 and the " + std::to_string(size_) + " tokens cached");
  }
  size_ = num_tokens;
}

}  // namespace attn
