// The int8 KV cache's rows and the attention that reads them.
//
// Row format (one token of one key/value head, head_dim values): symmetric
// int8 in blocks of 32 values (the last block may be shorter), one float32
// scale per block, stored together so that a step streams each row once:
//
//   [scale_0 ... scale_{B-1}: B floats][q_0 ... q_{hd-1}: int8][pad to 4 bytes]
//
// B = ceil(head_dim / 32). Value i dequantizes to scale_{i/32} * q_i. A block
// is quantized with scale = max|x| / 127 and q = round-to-nearest-even(x /
// scale) (0 when the scale is 0); a block holding NaN or ±inf gets a NaN
// scale, so every value of it dequantizes to NaN: the token still poisons
// exactly the rows that attend to it, as a non-finite float32 key or value
// does (the float path gives NaN or ±inf there, this one NaN). head_dim = 64:
// 72 bytes per row against 256 in float32 (0.28x).
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace attn {
namespace simd {

constexpr size_t kKvInt8Block = 32;

inline size_t KvInt8Blocks(size_t head_dim) { return (head_dim + kKvInt8Block - 1) / kKvInt8Block; }

// Bytes of one row: the scales, the values, padded so that the next row's
// scales stay 4-byte aligned.
inline size_t KvInt8RowBytes(size_t head_dim) {
  return (4 * KvInt8Blocks(head_dim) + head_dim + 3) / 4 * 4;
}

// Quantizes x[0, head_dim) into one row at `row` (KvInt8RowBytes bytes,
// 4-byte aligned). Scalar: rows are written once per token.
void QuantizeKvRow(const float* x, size_t head_dim, uint8_t* row);

// Dequantizes one row into out[0, head_dim).
void DequantizeKvRow(const uint8_t* row, size_t head_dim, float* out);

// Attention of `tokens` query tokens x `group` query heads that share one
// key/value head, over num_keys cached rows of that head:
//
//   out(t, g) = sum_j softmax_j(scale * q(t, g) · k_j) v_j
//
// over the keys j the query may see: j <= q_begin + t with causal (and j >
// q_begin + t - window with window > 0), every j < num_keys without.
// q(t, g) is q + t * ldq + g * head_dim (head_dim floats), out(t, g) is
// out + t * ldo + g * head_dim; out may be q itself (ldo == ldq: every query
// is read before any output is written), no other overlap. k_j, v_j are rows
// keys + j * KvInt8RowBytes(head_dim) and values + j * ... (4-byte aligned).
// Causal needs q_begin + tokens <= num_keys. Scratch: this thread's
// kFlashAttention slot (simd/thread_scratch.h), tokens * group * (num_keys +
// head_dim) floats.
struct KvInt8AttentionArgs {
  const float* q = nullptr;
  size_t ldq = 0;
  float* out = nullptr;
  size_t ldo = 0;
  size_t tokens = 0, group = 1, head_dim = 0;
  const uint8_t* keys = nullptr;
  const uint8_t* values = nullptr;
  size_t num_keys = 0;
  size_t q_begin = 0;
  bool causal = true;
  size_t window = 0;
  float scale = 1.0f;
};

// The Highway kernel (dispatched to the best target of this CPU): each score
// is the sum over blocks of scale_b times the block's dot product with the
// int8 values converted in registers, the softmax is simd::MaskedSoftmax's,
// and each output accumulates p_j * scale_b times the converted values. No
// float copy of the rows is made. Tuned on AVX-512 (Zen 4) for head_dim 64.
void KvInt8Attention(const KvInt8AttentionArgs& args);

// Scalar reference: the rows dequantized as DequantizeKvRow does, the scores,
// softmax and sums in double; a row with a NaN or +inf score, or only -inf
// scores, is NaN (simd/softmax.h's rules).
void KvInt8AttentionReference(const KvInt8AttentionArgs& args);

// The keys [begin, end) that query token t of `args` sees.
inline void KvInt8VisibleKeys(const KvInt8AttentionArgs& args, size_t t, size_t* begin,
                              size_t* end) {
  if (!args.causal) {
    *begin = 0;
    *end = args.num_keys;
    return;
  }
  const size_t pos = args.q_begin + t;
  *end = pos + 1;
  *begin = args.window > 0 && pos + 1 > args.window ? pos + 1 - args.window : 0;
}

}  // namespace simd
}  // namespace attn
