// detail::attention_int8_cache (core/attention_core.h): the attention core
// over an int8 KV cache.
//  - Decoding (at most simd::kDecodeMaxPositions query positions): each task
//    is one (batch, key/value head, chunk of query tokens) and runs
//    simd::KvInt8Attention for all the query heads that share the key/value
//    head, reading the int8 tiles in place: nothing of the cache is copied.
//  - Prompts (more positions): each task is one (batch, key/value head); it
//    dequantizes the keys and values its queries can see into its scratch
//    once (simd::DequantizeKvKey/Value: the same numbers the int8 kernel
//    multiplies), rounds a copy of its queries as the int8 kernel quantizes
//    them (simd::RoundQueryToKvInt8) and runs the flash kernel over all its
//    queries, which
//    blocks queries as the int8 kernel does not (a 1023-token GPT-2 prompt:
//    about 1.4x faster than through the int8 kernel).
// Either way every query attends to the quantized keys and values, so a
// prompt and the steps after it agree with one forward through an int8
// cache to rounding.

#include <algorithm>
#include <string>

#include "attn/error.h"
#include "core/attention_core.h"
#include "parallel/parallel_for.h"
#include "simd/decode_attention.h"
#include "simd/flash_attention.h"
#include "simd/kv_int8.h"
#include "simd/thread_scratch.h"

namespace attn {
namespace detail {

namespace {

// Query rows (tokens x heads of a group) per task: bounds the kernel's score
// scratch at kChunkRows x num_keys floats.
constexpr size_t kChunkRows = 64;

// The prompt path (see the top of this file).
void attention_int8_prompt(const AttentionProblem& p, const Int8Tiles& keys,
                           const Int8Tiles& values) {
  const size_t group = p.heads / p.kv_heads, hd = p.head_dim;
  const size_t n = p.causal ? std::min(p.num_keys, p.q_begin + p.tokens) : p.num_keys;
  const size_t key_tile = simd::KvInt8KeyTileBytes(hd), value_tile = simd::KvInt8ValueTileBytes(hd);
  parallel::ParallelFor(p.batch * p.kv_heads, 1, [&](size_t begin, size_t end) {
    for (size_t task = begin; task < end; ++task) {
      const size_t b = task / p.kv_heads, kv = task % p.kv_heads;
      const uint8_t* k8 = keys.data + b * keys.batch_stride + kv * keys.head_stride;
      const uint8_t* v8 = values.data + b * values.batch_stride + kv * values.head_stride;
      // Held across the flash kernel, which takes only kFlashAttention.
      const size_t queries = p.tokens * group;
      float* const k = simd::detail::ThreadScratch(simd::detail::ScratchSlot::kScores,
                                                   (2 * n + queries) * hd + 1);
      float* const v = k + n * hd;
      float* const q = v + n * hd;
      for (size_t j = 0; j < n; ++j) {
        const size_t tile = j / simd::kKvInt8TileTokens, lane = j % simd::kKvInt8TileTokens;
        simd::DequantizeKvKey(k8 + tile * key_tile, lane, hd, k + j * hd);
        simd::DequantizeKvValue(v8 + tile * value_tile, lane, hd, v + j * hd);
      }
      for (size_t t = 0; t < p.tokens; ++t) {
        for (size_t g = 0; g < group; ++g) {
          float* qi = q + (t * group + g) * hd;
          std::copy_n(p.q.at(b, kv * group, t) + g * p.q.head_stride, hd, qi);
          simd::RoundQueryToKvInt8(qi, hd);
        }
      }
      simd::FlashAttentionArgs f;
      f.q = q;
      f.ldq = group * hd;
      f.ldq_group = hd;
      f.k = k;
      f.ldk = hd;
      f.v = v;
      f.ldv = hd;
      f.out = p.out.at(b, kv * group);
      f.ldo = p.out.row_stride;
      f.ldo_group = p.out.head_stride;
      f.group_size = group;
      f.num_queries = p.tokens * group;
      f.num_keys = n;
      f.head_dim = hd;
      f.q_begin = p.q_begin;
      f.causal = p.causal;
      f.window = p.window;
      f.scale = p.scale;
      simd::FlashAttention(f);
    }
  });
}

}  // namespace

void attention_int8_cache(const AttentionProblem& problem, const Int8Tiles& keys,
                          const Int8Tiles& values) {
  AttentionProblem p = problem;
  if (p.num_keys == 0) p.num_keys = p.tokens;
  if (p.kv_heads == 0) p.kv_heads = p.heads;
  if (p.heads == 0 || p.tokens == 0 || p.batch == 0) return;
  if (p.heads % p.kv_heads != 0 || p.q.head_stride != p.head_dim ||
      p.out.head_stride != p.head_dim || p.weights != nullptr || p.keep != nullptr ||
      (p.causal && p.q_begin + p.tokens > p.num_keys)) {
    throw ArgumentError("attention_int8_cache: unsupported problem (heads " +
                        std::to_string(p.heads) + ", kv_heads " + std::to_string(p.kv_heads) +
                        ", head_dim " + std::to_string(p.head_dim) + ", q head stride " +
                        std::to_string(p.q.head_stride) + ")");
  }
  const size_t group = p.heads / p.kv_heads;
  if (p.tokens > simd::kDecodeMaxPositions) {
    attention_int8_prompt(p, keys, values);
    return;
  }
  const size_t chunk = std::max<size_t>(1, kChunkRows / group);
  const size_t chunks = (p.tokens + chunk - 1) / chunk;
  const size_t tasks = p.batch * p.kv_heads * chunks;
  parallel::ParallelFor(tasks, 1, [&](size_t begin, size_t end) {
    for (size_t task = begin; task < end; ++task) {
      // Later chunks see more keys: hand them out first.
      const size_t c = chunks - 1 - task % chunks;
      const size_t head_index = task / chunks;
      const size_t b = head_index / p.kv_heads, kv = head_index % p.kv_heads;
      const size_t first = c * chunk, count = std::min(chunk, p.tokens - first);
      simd::KvInt8AttentionArgs a;
      a.q = p.q.at(b, kv * group, first);
      a.ldq = p.q.row_stride;
      a.out = p.out.at(b, kv * group, first);
      a.ldo = p.out.row_stride;
      a.tokens = count;
      a.group = group;
      a.head_dim = p.head_dim;
      a.keys = keys.data + b * keys.batch_stride + kv * keys.head_stride;
      a.values = values.data + b * values.batch_stride + kv * values.head_stride;
      a.num_keys = p.num_keys;
      a.q_begin = p.q_begin + first;
      a.causal = p.causal;
      a.window = p.window;
      a.scale = p.scale;
      simd::KvInt8Attention(a);
    }
  });
}

}  // namespace detail
}  // namespace attn
