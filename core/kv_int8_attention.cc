// detail::attention_int8_cache (core/attention_core.h): the attention core
// over an int8 KV cache. Each task is one (batch, key/value head, chunk of
// query tokens) and runs simd::KvInt8Attention for all the query heads that
// share the key/value head, so each int8 row is converted once per query
// head of a chunk and nothing of the cache is copied.

#include <algorithm>
#include <string>

#include "attn/error.h"
#include "core/attention_core.h"
#include "parallel/parallel_for.h"
#include "simd/kv_int8.h"

namespace attn {
namespace detail {

namespace {

// Query rows (tokens x heads of a group) per task: bounds the kernel's score
// scratch at kChunkRows x num_keys floats.
constexpr size_t kChunkRows = 64;

}  // namespace

void attention_int8_cache(const AttentionProblem& problem, const Int8Rows& keys,
                          const Int8Rows& values) {
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
