#include "core/attention_core.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "attn/error.h"
#include "core/input_checks.h"
#include "parallel/parallel_for.h"
#include "simd/decode_attention.h"
#include "simd/flash_attention.h"
#include "simd/matmul.h"
#include "simd/softmax.h"
#include "simd/thread_scratch.h"

namespace attn {
namespace detail {
namespace {

// Query rows per task: 64 rows of scores at T = 1024 are 256 KB, which stays
// in L2 between the Q·Kᵀ, softmax and weights·V steps.
constexpr size_t kQueryBlock = 64;

// The key/value head that query head h reads.
size_t kv_head(const AttentionProblem& p, size_t h) { return h / (p.heads / p.kv_heads); }

// out[r0:r0+rows] = weights · V[0:n] for one (b, h) block (weights: rows x n,
// row stride ld). With a window, row i's weights before key r0 + i + 1 - W
// are 0 too, and the same care applies: one product over the keys from the
// first row's window start when those V rows are finite, else row by row
// over each row's visible keys. With causal, row i's weights beyond key r0 + i are 0 but
// must not meet V rows it cannot see: 0 * NaN would spread a later token's
// NaN to earlier ones (the flash path never reads those rows either). The
// keys before the block are visible to every row: one product. The diagonal
// block's keys [r0, n) go in one product too when those V rows are finite
// (the zero weights then add exact zeros), else row by row over its visible
// keys only.
void weights_times_values(const AttentionProblem& p, size_t b, size_t h, size_t r0, size_t rows,
                          size_t n, const float* weights, size_t ld) {
  simd::MatMulArgs wv;
  wv.a = weights;
  wv.lda = ld;
  wv.b = p.v.at(b, kv_head(p, h));
  wv.ldb = p.v.row_stride;
  wv.c = p.out.at(b, h, r0);
  wv.ldc = p.out.row_stride;
  wv.m = rows;
  wv.n = p.head_dim;
  if (p.window > 0) {
    // Row i (position r0 + i) sees keys [first(i), min(n, r0 + i + 1)).
    auto first_key = [&](size_t pos) { return pos + 1 > p.window ? pos + 1 - p.window : 0; };
    const size_t k0 = first_key(r0);
    bool finite = true;
    for (size_t j = k0; j < n && finite; ++j) {
      const float* v = p.v.at(b, kv_head(p, h), j);
      for (size_t c = 0; c < p.head_dim; ++c) finite = finite && std::isfinite(v[c]);
    }
    if (finite) {
      wv.a = weights + k0;
      wv.b = p.v.at(b, kv_head(p, h), k0);
      wv.k = n - k0;
      simd::MatMul(wv);
      return;
    }
    wv.m = 1;
    for (size_t i = 0; i < rows; ++i) {
      const size_t begin = first_key(r0 + i);
      const size_t end = p.causal ? std::min(n, r0 + i + 1) : n;
      wv.a = weights + i * ld + begin;
      wv.b = p.v.at(b, kv_head(p, h), begin);
      wv.c = p.out.at(b, h, r0 + i);
      wv.k = end - begin;
      simd::MatMul(wv);
    }
    return;
  }
  wv.k = p.causal ? r0 : n;
  simd::MatMul(wv);
  if (!p.causal || n == r0) return;

  wv.accumulate = true;
  wv.a = weights + r0;
  wv.b = p.v.at(b, kv_head(p, h), r0);
  bool finite = true;
  for (size_t j = r0; j < n && finite; ++j) {
    const float* v = p.v.at(b, kv_head(p, h), j);
    for (size_t c = 0; c < p.head_dim; ++c) finite = finite && std::isfinite(v[c]);
  }
  if (finite) {
    wv.k = n - r0;
    simd::MatMul(wv);
    return;
  }
  wv.m = 1;
  for (size_t i = 0; i < rows; ++i) {
    wv.a = weights + i * ld + r0;
    wv.c = p.out.at(b, h, r0 + i);
    wv.k = std::min(n, r0 + i + 1) - r0;
    simd::MatMul(wv);
  }
}

// One (b, h, query block) of the materialized algorithm:
//   scores = Q[r0:r1] · K[0:n]ᵀ ; weights = softmax(scale · scores, causal)
//   weights *= dropout ; out[r0:r1] = weights · V[0:n]
// with n = r1 when causal (later keys are masked for every row of the block).
void attend_block(const AttentionProblem& p, size_t b, size_t h, size_t r0, size_t r1) {
  const size_t rows = r1 - r0;
  const size_t n = p.causal ? r1 : p.tokens;
  float* scores;
  size_t ld_scores;
  size_t cols;
  if (p.weights != nullptr) {
    // Work directly in the caller's weights; masked columns are written 0.
    scores = p.weights + ((b * p.heads + h) * p.tokens + r0) * p.tokens;
    ld_scores = p.tokens;
    cols = p.tokens;
  } else {
    // This thread's score block (64 x n, kept between tasks and calls).
    scores = simd::detail::ThreadScratch(simd::detail::ScratchSlot::kScores, rows * n);
    ld_scores = n;
    cols = n;
  }

  simd::MatMulArgs qk;
  qk.a = p.q.at(b, h, r0);
  qk.lda = p.q.row_stride;
  qk.b = p.k.at(b, kv_head(p, h));
  qk.ldb = p.k.row_stride;
  qk.b_transposed = true;
  qk.c = scores;
  qk.ldc = ld_scores;
  qk.m = rows;
  qk.n = n;
  qk.k = p.head_dim;
  simd::MatMul(qk);

  simd::SoftmaxArgs softmax;
  softmax.in = scores;
  softmax.ld_in = ld_scores;
  softmax.out = scores;
  softmax.ld_out = ld_scores;
  softmax.rows = rows;
  softmax.cols = cols;
  softmax.scale = p.scale;
  softmax.causal = p.causal;
  softmax.causal_offset = r0;
  softmax.window = p.window;
  simd::MaskedSoftmax(softmax);

  if (p.keep != nullptr) {
    for (size_t i = 0; i < rows; ++i) {
      const uint8_t* keep = p.keep + ((b * p.heads + h) * p.tokens + r0 + i) * p.tokens;
      float* row = scores + i * ld_scores;
      for (size_t j = 0; j < n; ++j) row[j] *= keep[j] ? p.kept_scale : 0.0f;
    }
  }

  weights_times_values(p, b, h, r0, rows, n, scores, ld_scores);
}

// Query rows per flash task. Each call of the flash kernel transposes and
// packs the keys and values its queries can see, so a task should cover as
// many queries as possible: a whole (b, head) when there are enough heads to
// keep every thread busy (at least 4 tasks per thread, for balance), else the
// heads are split into equal blocks (a multiple of the kernel's 32-query
// block, at least 64 rows). The split never changes the results: each query
// row's output is the same whatever block it is computed in.
size_t flash_query_block(size_t heads_total, size_t tokens) {
  const size_t wanted_tasks = 4 * static_cast<size_t>(num_threads());
  if (heads_total >= wanted_tasks || tokens <= kQueryBlock) return std::max<size_t>(tokens, 1);
  const size_t blocks = (wanted_tasks + heads_total - 1) / heads_total;
  const size_t rows = (tokens + blocks - 1) / blocks;
  return std::max(kQueryBlock, (rows + 31) / 32 * 32);
}

// One (b, key/value head, block of positions) of the flash algorithm: the
// positions [t0, t1) of the group_size query heads that share key/value head
// kvh attend keys up to their position (causal) or all keys, within the
// window. The kernel takes the group's rows position by position (its
// group_size layout: heads kvh * G .. kvh * G + G - 1 of each token), so each
// key/value block is packed once for all of them.
// With out == q the kernel writes each output row over its query row
// (allowed by simd/flash_attention.h); only this task reads those rows.
void flash_block(const AttentionProblem& p, size_t b, size_t kvh, size_t t0, size_t t1) {
  const size_t group = p.heads / p.kv_heads;
  simd::FlashAttentionArgs f;
  f.q = p.q.at(b, kvh * group, t0);
  f.ldq = p.q.row_stride;
  f.ldq_group = p.q.head_stride;
  f.k = p.k.at(b, kvh);
  f.ldk = p.k.row_stride;
  f.v = p.v.at(b, kvh);
  f.ldv = p.v.row_stride;
  f.out = p.out.at(b, kvh * group, t0);
  f.ldo = p.out.row_stride;
  f.ldo_group = p.out.head_stride;
  f.group_size = group;
  f.num_queries = (t1 - t0) * group;
  // Keys after the block's last query are never visible when causal.
  f.num_keys = p.causal ? std::min(p.num_keys, p.q_begin + t1) : p.num_keys;
  f.head_dim = p.head_dim;
  f.q_begin = p.q_begin + t0;
  f.causal = p.causal;
  f.window = p.window;
  f.scale = p.scale;
  // A few positions (KV-cache decoding): read K and V in place rather than
  // packing them (the choice depends on the problem only, not on the threads).
  if (p.tokens <= simd::kDecodeMaxPositions) {
    simd::DecodeAttention(f);
  } else {
    simd::FlashAttention(f);
  }
}

}  // namespace

std::vector<uint8_t> draw_keep_mask(const Dropout& dropout, const char* module,
                                    const std::vector<int64_t>& weights_shape) {
  if (!dropout.active()) return {};
  int64_t count = 1;
  bool overflow = false;
  for (int64_t extent : weights_shape) {
    overflow = overflow || __builtin_mul_overflow(count, extent, &count);
  }
  if (!overflow && count == 0) return {};
  const uint64_t memory = physical_memory_bytes();
  if (overflow || (memory != 0 && static_cast<uint64_t>(count) > memory)) {
    throw ShapeError(std::string(module) + ": dropout on attention weights of shape " +
                     shape_to_string(weights_shape) +
                     " needs a keep mask of one byte per weight, more than this machine's " +
                     std::to_string(memory) + " bytes of memory");
  }
  return dropout.draw_keep_mask(count);
}

void prepare_weights_output(Tensor& weights, const std::vector<int64_t>& shape) {
  if (weights.shape() == shape) return;
  int64_t count = 1;
  bool overflow = false;
  for (int64_t extent : shape) overflow = overflow || __builtin_mul_overflow(count, extent, &count);
  const uint64_t memory = physical_memory_bytes();
  if (overflow || (memory != 0 && static_cast<uint64_t>(count) > memory / sizeof(float))) {
    // The Tensor throws its own ShapeError (naming the shape) before
    // allocating; a zero extent makes an empty tensor instead.
    Tensor checked = Tensor::empty(shape);
    weights = std::move(checked);
    return;
  }
  weights = Tensor();
  weights = Tensor::empty(shape);
}

void attention(const AttentionProblem& problem) {
  AttentionProblem p = problem;
  if (p.num_keys == 0) p.num_keys = p.tokens;
  if (p.kv_heads == 0) p.kv_heads = p.heads;
  if (p.heads == 0) return;
  if (p.heads % p.kv_heads != 0) {
    throw ArgumentError("attention: heads = " + std::to_string(p.heads) +
                        " is not a multiple of kv_heads = " + std::to_string(p.kv_heads));
  }
  const bool materialized = p.materialize || p.keep != nullptr || p.weights != nullptr;
  if (materialized && (p.num_keys != p.tokens || p.q_begin != 0 || p.out.data == p.q.data)) {
    throw ArgumentError(
        "attention: weights and dropout need self-attention (num_keys = tokens) and a separate "
        "output");
  }
  // Materialized tasks are (batch, query head, query block); flash tasks
  // (batch, key/value head, block of positions) with all the group's heads.
  const size_t task_heads = materialized ? p.heads : p.kv_heads;
  const size_t query_block =
      materialized ? kQueryBlock : flash_query_block(p.batch * task_heads, p.tokens);
  const size_t blocks_per_head = (p.tokens + query_block - 1) / query_block;
  const size_t tasks = p.batch * task_heads * blocks_per_head;
  // Below ~64K multiply-adds (the book's toy sizes) waking threads costs more
  // than the work: one chunk runs inline. Results are the same either way.
  const size_t keys_per_query = p.window > 0 ? std::min(p.num_keys, p.window) : p.num_keys;
  const size_t work = p.batch * p.heads * p.tokens * keys_per_query * p.head_dim;
  const size_t grain = work < (size_t{1} << 16) ? tasks : 1;
  parallel::ParallelFor(tasks, grain, [&](size_t begin, size_t end) {
    for (size_t task = begin; task < end; ++task) {
      // Later query blocks see more keys: hand them out first, so that the
      // cheap early blocks fill the gaps at the end (TBB balances the rest).
      const size_t block = blocks_per_head - 1 - task % blocks_per_head;
      const size_t head_index = task / blocks_per_head;
      const size_t b = head_index / task_heads;
      const size_t h = head_index % task_heads;
      const size_t r0 = block * query_block;
      const size_t r1 = std::min(p.tokens, r0 + query_block);
      if (materialized) {
        attend_block(p, b, h, r0, r1);
      } else {
        flash_block(p, b, h, r0, r1);
      }
    }
  });
}

}  // namespace detail
}  // namespace attn
