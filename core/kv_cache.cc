#include "attn/kv_cache.h"

#include <atomic>
#include <cstring>
#include <string>

#include "attn/error.h"
#include "core/attention_core.h"
#include "core/input_checks.h"
#include "simd/kv_int8.h"

namespace attn {

const char* to_string(KVCacheType type) { return type == KVCacheType::kInt8 ? "int8" : "float32"; }

KVCache::KVCache(int64_t batch, int64_t num_heads, int64_t head_dim, int64_t context_length,
                 KVCacheType type)
    : batch_(batch),
      num_heads_(num_heads),
      head_dim_(head_dim),
      capacity_(context_length),
      type_(type) {
  detail::check_positive("KVCache", "batch", batch);
  detail::check_positive("KVCache", "num_heads", num_heads);
  detail::check_positive("KVCache", "head_dim", head_dim);
  detail::check_positive("KVCache", "context_length", context_length);
  if (type != KVCacheType::kFloat32 && type != KVCacheType::kInt8) {
    throw ArgumentError("KVCache: type = " + std::to_string(static_cast<int>(type)) +
                        " is neither KVCacheType::kFloat32 nor KVCacheType::kInt8");
  }
  if (type == KVCacheType::kFloat32) {
    keys_ = Tensor({batch, num_heads, context_length, head_dim});
    values_ = Tensor({batch, num_heads, context_length, head_dim});
  } else {
    keys8_ = Tensor({batch, num_heads, tiles(), static_cast<int64_t>(key_tile_bytes() / 4)});
    values8_ = Tensor({batch, num_heads, tiles(), static_cast<int64_t>(value_tile_bytes() / 4)});
  }
}

size_t KVCache::value_tile_bytes() const {
  return simd::KvInt8ValueTileBytes(static_cast<size_t>(head_dim_));
}

size_t KVCache::key_tile_bytes() const {
  return simd::KvInt8KeyTileBytes(static_cast<size_t>(head_dim_));
}

int64_t KVCache::tiles() const {
  const int64_t tile = static_cast<int64_t>(simd::kKvInt8TileTokens);
  return (capacity_ + tile - 1) / tile;
}

int64_t KVCache::bytes() const {
  if (type_ == KVCacheType::kFloat32) {
    return 2 * batch_ * num_heads_ * capacity_ * head_dim_ * static_cast<int64_t>(sizeof(float));
  }
  return batch_ * num_heads_ * tiles() *
         static_cast<int64_t>(key_tile_bytes() + value_tile_bytes());
}

bool KVCache::has_storage() const {
  if (type_ == KVCacheType::kFloat32) {
    const std::vector<int64_t> shape{batch_, num_heads_, capacity_, head_dim_};
    return keys_.shape() == shape && values_.shape() == shape;
  }
  return keys8_.shape() == std::vector<int64_t>{batch_, num_heads_, tiles(),
                                                static_cast<int64_t>(key_tile_bytes() / 4)} &&
         values8_.shape() == std::vector<int64_t>{batch_, num_heads_, tiles(),
                                                  static_cast<int64_t>(value_tile_bytes() / 4)};
}

std::string KVCache::describe() const {
  return std::string(to_string(type_)) + " KVCache of batch " + std::to_string(batch_) + ", " +
         std::to_string(num_heads_) + " heads of " + std::to_string(head_dim_) +
         ", context_length " + std::to_string(capacity_) +
         (has_storage() ? "" : " (moved from: no storage)");
}

const uint8_t* KVCache::int8_keys(size_t b, size_t h) const {
  const size_t before = (b * static_cast<size_t>(num_heads_) + h) * static_cast<size_t>(tiles());
  return reinterpret_cast<const uint8_t*>(keys8_.data()) + before * key_tile_bytes();
}

const uint8_t* KVCache::int8_values(size_t b, size_t h) const {
  const size_t before = (b * static_cast<size_t>(num_heads_) + h) * static_cast<size_t>(tiles());
  return reinterpret_cast<const uint8_t*>(values8_.data()) + before * value_tile_bytes();
}

void KVCache::append(const float* keys, const float* values, size_t ld, size_t tokens) {
  const size_t heads = static_cast<size_t>(num_heads_), hd = static_cast<size_t>(head_dim_);
  const size_t capacity = static_cast<size_t>(capacity_), past = static_cast<size_t>(size_);
  for (size_t b = 0; b < static_cast<size_t>(batch_); ++b) {
    for (size_t h = 0; h < heads; ++h) {
      for (size_t t = 0; t < tokens; ++t) {
        const size_t source = (b * tokens + t) * ld + h * hd, position = past + t;
        if (type_ == KVCacheType::kInt8) {
          const size_t tile = position / simd::kKvInt8TileTokens;
          const size_t lane = position % simd::kKvInt8TileTokens;
          simd::QuantizeKvKey(keys + source, hd,
                              const_cast<uint8_t*>(int8_keys(b, h)) + tile * key_tile_bytes(),
                              lane);
          simd::QuantizeKvValue(values + source, hd,
                                const_cast<uint8_t*>(int8_values(b, h)) + tile * value_tile_bytes(),
                                lane);
        } else {
          const size_t slot = ((b * heads + h) * capacity + position) * hd;
          std::memcpy(keys_.data() + slot, keys + source, hd * sizeof(float));
          std::memcpy(values_.data() + slot, values + source, hd * sizeof(float));
        }
      }
    }
  }
  size_ += static_cast<int64_t>(tokens);
}

void KVCache::check_fits(const char* module, const char* heads_name, int64_t heads,
                         int64_t head_dim, int64_t context_length, const Tensor& x) const {
  if (num_heads_ != heads || head_dim_ != head_dim || capacity_ != context_length ||
      batch_ != x.size(0) || !has_storage()) {
    throw ShapeError(std::string(module) + ": this " + describe() + ", keys and values " +
                     shape_to_string({batch_, num_heads_, capacity_, head_dim_}) +
                     ", does not fit this module (" + std::to_string(heads) + " " + heads_name +
                     " of " + std::to_string(head_dim) + ", context_length " +
                     std::to_string(context_length) + ") and input x of shape " +
                     shape_to_string(x.shape()));
  }
  if (size_ + x.size(1) > capacity_) {
    throw ShapeError(std::string(module) + ": KVCache holds " + std::to_string(size_) +
                     " tokens; adding x of shape " + shape_to_string(x.shape()) + " gives " +
                     std::to_string(size_ + x.size(1)) +
                     " > context_length = " + std::to_string(capacity_));
  }
}

void KVCache::attend(const detail::AttentionProblem& problem) const {
  detail::AttentionProblem p = problem;
  const size_t heads = static_cast<size_t>(num_heads_), capacity = static_cast<size_t>(capacity_);
  if (type_ == KVCacheType::kInt8) {
    const size_t key_head = static_cast<size_t>(tiles()) * key_tile_bytes();
    const size_t value_head = static_cast<size_t>(tiles()) * value_tile_bytes();
    const detail::Int8Tiles k{int8_keys(0, 0), heads * key_head, key_head};
    const detail::Int8Tiles v{int8_values(0, 0), heads * value_head, value_head};
    detail::attention_int8_cache(p, k, v);
    return;
  }
  const size_t hd = static_cast<size_t>(head_dim_);
  // const_cast: the attention core reads k and v only (HeadLayout is shared
  // with its written output).
  p.k = {const_cast<float*>(keys_.data()), heads * capacity * hd, capacity * hd, hd};
  p.v = {const_cast<float*>(values_.data()), heads * capacity * hd, capacity * hd, hd};
  detail::attention(p);
}

namespace {

// Keys or values (tiles) of an int8 cache, or a float32 cache's
// tensor, as float32 (batch, heads, size, head_dim).
Tensor dequantized(const KVCache& cache, bool keys, const Tensor& floats, const uint8_t* int8,
                   size_t head_bytes) {
  const int64_t batch = cache.batch(), heads = cache.num_heads(), hd = cache.head_dim();
  const size_t n = static_cast<size_t>(cache.size()), h = static_cast<size_t>(hd);
  const size_t capacity = static_cast<size_t>(cache.capacity());
  Tensor out({batch, heads, cache.size(), hd});
  for (size_t bh = 0; bh < static_cast<size_t>(batch * heads); ++bh) {
    float* dst = out.data() + bh * n * h;
    if (cache.type() == KVCacheType::kFloat32) {
      if (n > 0) std::memcpy(dst, floats.data() + bh * capacity * h, n * h * sizeof(float));
      continue;
    }
    const uint8_t* src = int8 + bh * head_bytes;
    for (size_t t = 0; t < n; ++t) {
      const size_t tile = t / simd::kKvInt8TileTokens, lane = t % simd::kKvInt8TileTokens;
      if (keys) {
        simd::DequantizeKvKey(src + tile * simd::KvInt8KeyTileBytes(h), lane, h, dst + t * h);
      } else {
        simd::DequantizeKvValue(src + tile * simd::KvInt8ValueTileBytes(h), lane, h, dst + t * h);
      }
    }
  }
  return out;
}

}  // namespace

Tensor KVCache::dequantized_keys() const {
  if (!has_storage()) throw ArgumentError("KVCache::dequantized_keys: " + describe());
  return dequantized(*this, true, keys_, type_ == KVCacheType::kInt8 ? int8_keys(0, 0) : nullptr,
                     static_cast<size_t>(tiles()) * key_tile_bytes());
}

Tensor KVCache::dequantized_values() const {
  if (!has_storage()) throw ArgumentError("KVCache::dequantized_values: " + describe());
  return dequantized(*this, false, values_,
                     type_ == KVCacheType::kInt8 ? int8_values(0, 0) : nullptr,
                     static_cast<size_t>(tiles()) * value_tile_bytes());
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
  throw ArgumentError(std::string(module) + ": this " + describe() +
                      " belongs to another module, " + owner_kind_ + ", not to this one (" + kind +
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
