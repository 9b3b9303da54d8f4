// The attention core shared by every module: softmax(scale · Q·Kᵀ [causal]) · V
// over (batch, head) slices of strided Q, K, V, in one flat parallel loop
// over (batch x head x query block). Two algorithms:
//  - flash (simd/flash_attention.h): online softmax over key blocks up to
//    the diagonal, no score buffer at all; used whenever the caller needs
//    neither the weights nor dropout on them;
//  - materialized: scores, softmax, dropout, weights·V per query block (a
//    64 x T scratch, or the caller's weights buffer); the reference for the
//    flash path and the only path that can return weights.
// Internal to attn (the modules are the public API).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "attn/dropout.h"
#include "attn/tensor.h"

namespace attn {
namespace detail {

// A strided 4-D view (batch, head, row, column) of float data: element
// (b, h, t, d) is at data[b * batch_stride + h * head_stride + t * row_stride + d].
struct HeadLayout {
  float* data = nullptr;
  size_t batch_stride = 0;
  size_t head_stride = 0;
  size_t row_stride = 0;

  float* at(size_t b, size_t h, size_t t = 0) const {
    return data + b * batch_stride + h * head_stride + t * row_stride;
  }
};

struct AttentionProblem {
  size_t batch = 0, heads = 0, tokens = 0, head_dim = 0;
  // Key/value heads (grouped-query attention): query head h reads key/value
  // head h / (heads / kv_heads) of k and v, which are indexed by the key/value
  // head. 0 means heads (one key/value head per query head). Must divide heads.
  size_t kv_heads = 0;
  // Sliding window (with causal): query at position p sees keys j with
  // p - window < j <= p. 0: no window (every key up to p).
  size_t window = 0;
  // Keys per (batch, head), and the absolute position of query row 0: key j
  // is at position j. Self-attention: num_keys = tokens (0 means that),
  // q_begin = 0. KV-cache decoding: q_begin = num_keys - tokens.
  size_t num_keys = 0;
  size_t q_begin = 0;
  HeadLayout q, k, v;  // read only
  // (batch, heads, tokens, head_dim), written. `out` may be exactly `q` (the
  // same layout): the flash kernel writes each query row's output over it
  // after its last read (simd/flash_attention.h), so the result replaces Q in
  // place with no extra buffer (only without weights and dropout). Any other
  // overlap is invalid.
  HeadLayout out;
  float scale = 1.0f;  // multiplies Q·Kᵀ (1 / sqrt(d_k))
  bool causal = true;  // query t attends keys 0..t (a loop bound, no -inf written)
  // Forces the materialized algorithm (tests compare the two paths).
  bool materialize = false;
  // Optional dropout on the weights: keep[((b * heads + h) * tokens + i) * tokens + j]
  // is 1 to keep weight (i, j), scaled by kept_scale, 0 to drop it.
  const uint8_t* keep = nullptr;
  float kept_scale = 1.0f;
  // Optional output of the weights actually applied to V (after dropout),
  // contiguous (batch, heads, tokens, tokens); masked entries are 0.
  // keep and weights need self-attention (num_keys = tokens, q_begin = 0).
  float* weights = nullptr;
};

// Helpers shared by the attention modules.
// The dropout keep decisions for attention weights of shape `weights_shape`,
// drawn in PyTorch's order (1 = keep); empty when dropout is inactive. Throws
// ShapeError naming `module` and the shape, drawing nothing, when the mask
// (one byte per weight) would not fit in the machine's memory.
std::vector<uint8_t> draw_keep_mask(const Dropout& dropout, const char* module,
                                    const std::vector<int64_t>& weights_shape);
// Makes `weights` the caller's weights output of `shape`, to be written in
// full by attention() (values unspecified until then): its storage is kept
// when it already has that shape (forward(x, &weights) again with the same
// tensor), else freed before the new one is allocated, so that a repeated
// forward never holds the old and the new weights at once. Throws the
// Tensor's ShapeError, leaving `weights` untouched, for a shape beyond memory.
void prepare_weights_output(Tensor& weights, const std::vector<int64_t>& shape);
// 1 / sqrt(d_k): the scale of the scores (PyTorch divides by d_k ** 0.5).
inline float attention_scale(size_t d_k) {
  return 1.0f / static_cast<float>(std::sqrt(static_cast<double>(d_k)));
}

// Runs one flat parallel loop over (batch x head x query block). Each output
// row is written by exactly one task: the result does not depend on the
// thread count. Query rows never read keys or values after their position
// when causal.
void attention(const AttentionProblem& problem);

// The keys or values of an int8 KV cache (simd/kv_int8.h's tiles): (batch b,
// key/value head h) starts at data + b * batch_stride + h * head_stride
// (bytes), its tiles of 16 tokens one after another.
struct Int8Tiles {
  const uint8_t* data = nullptr;
  size_t batch_stride = 0, head_stride = 0;
};

// `problem`'s queries over num_keys tokens of int8 rows instead of p.k, p.v
// (core/kv_int8_attention.cc): one parallel loop over (batch x key/value head
// x chunk of query tokens), each task running simd::KvInt8Attention for the
// query heads of its key/value head. Needs q and out with head_stride ==
// head_dim (the modules' QKV rows); no weights, dropout or materialize.
void attention_int8_cache(const AttentionProblem& problem, const Int8Tiles& keys,
                          const Int8Tiles& values);

}  // namespace detail
}  // namespace attn
