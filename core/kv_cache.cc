#include "attn/kv_cache.h"

#include <atomic>
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

uint64_t KVCache::new_owner() {
  // 2^64 identities: a counter never wraps in practice.
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

void KVCache::check_owner(const char* module, const char* kind, uint64_t owner) const {
  if (owner_ == 0 || owner_ == owner) return;
  throw ArgumentError(std::string(module) + ": this KVCache belongs to another module, " +
                      owner_kind_ + ", not to this one (" + kind +
                      "): its keys and values mean nothing here. Use this module's make_cache() "
                      "(copies of a module accept its caches; load_state_dict() and "
                      "quantize_dynamic() give a module a new identity)");
}

void KVCache::adopt(uint64_t owner, const char* kind) {
  if (owner_ != 0) return;
  owner_ = owner;
  owner_kind_ = kind;
}

}  // namespace attn
