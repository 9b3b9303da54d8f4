// The int8 KV cache's storage and the attention that reads it.
//
// Values: symmetric int8 in blocks of 32 (the last block may be shorter),
// one float32 scale per block, quantized as scale = max|x| / 127, q =
// round-to-nearest-even(x * (127 / max|x|)) in float32 (0 when max|x| is 0;
// below 2^-100, x and max|x| are first scaled by 2^64); value i of a block
// dequantizes to scale * q_i. A block holding NaN or ±inf gets a NaN
// scale, so all of it dequantizes to NaN: the token still poisons exactly
// the rows that attend to it, as a non-finite float32 key or value does (the
// float path gives NaN or ±inf there, this one NaN).
//
// Keys and values are stored in tiles of 16 tokens (token 16 * tile + lane
// in lane `lane`), each tile its B = ceil(head_dim / 32) block scales per
// token, block-major, then the int8 numbers laid out for integer dot
// products (one 64-byte load is one operand of vpdpbusd):
//   key tile:   [scales: B x 16 floats][quad 0] ... [quad Q-1]
//     quad c = 16 tokens x 4 int8: dimensions 4c .. 4c+3 of token `lane` at
//     bytes 4 * lane .. 4 * lane + 3; Q = ceil(head_dim / 4), dimensions
//     past head_dim are 0. The scores of 16 keys are one vector.
//   value tile: [scales: B x 16 floats][group 0] ... [group 3]
//     group g = head_dim x 4 int8: dimension i of token 4g + k at byte
//     4 * i + k. A vector of dimensions holds 4 tokens' values of each.
// head_dim = 64: 72 bytes a token for keys and for values, against 256 in
// float32 (0.28x).
//
// Scores multiply a query quantized as the keys are (QuantizeKvQuery: int8
// per 32-value block with its scale), so each block's dot product is an exact
// integer sum (|sum| <= 32 * 127 * 127 < 2^24, exact in float32 too):
//   score(q, k) = sum over blocks b of isum_b * (kscale_b * qscale_b)
// as llama.cpp multiplies a q8_0 query by a q8_0 key cache.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "hwy/cache_control.h"

namespace attn {
namespace simd {

constexpr size_t kKvInt8Block = 32;

inline size_t KvInt8Blocks(size_t head_dim) { return (head_dim + kKvInt8Block - 1) / kKvInt8Block; }

constexpr size_t kKvInt8TileTokens = 16;

// Quads of 4 dimensions of a key (or quantized query).
inline size_t KvInt8Quads(size_t head_dim) { return (head_dim + 3) / 4; }

// Bytes of one key tile (16 tokens); a multiple of 4.
inline size_t KvInt8KeyTileBytes(size_t head_dim) {
  return 4 * (KvInt8Blocks(head_dim) + KvInt8Quads(head_dim)) * kKvInt8TileTokens;
}

// Bytes of one value tile (16 tokens); a multiple of 4.
inline size_t KvInt8ValueTileBytes(size_t head_dim) {
  return (4 * KvInt8Blocks(head_dim) + head_dim) * kKvInt8TileTokens;
}

// Bytes of a quantized query: [B float scales][4 * Q int8, zeros past head_dim].
inline size_t KvInt8QueryBytes(size_t head_dim) {
  return 4 * (KvInt8Blocks(head_dim) + KvInt8Quads(head_dim));
}

// Quantizes x[0, head_dim) into lane `lane` < 16 of the key tile at `tile`
// (4-byte aligned); the other lanes are untouched. Scalar: a token is
// written once.
void QuantizeKvKey(const float* x, size_t head_dim, uint8_t* tile, size_t lane);

// Dequantizes lane `lane` of a key tile into out[0, head_dim).
void DequantizeKvKey(const uint8_t* tile, size_t lane, size_t head_dim, float* out);

// The same for value tiles (the same numbers, another layout).
void QuantizeKvValue(const float* x, size_t head_dim, uint8_t* tile, size_t lane);
void DequantizeKvValue(const uint8_t* tile, size_t lane, size_t head_dim, float* out);

// Quantizes the query q[0, head_dim) as a key is (the same numbers) into
// `query` (KvInt8QueryBytes bytes, 4-byte aligned): its B scales, then its
// int8 values in order.
void QuantizeKvQuery(const float* q, size_t head_dim, uint8_t* query);

// q[i] = scale_b * q8_i: the query an int8 cache's scores multiply, as
// floats (for kernels that take float queries, as the prompt path's flash
// kernel). A block holding NaN or ±inf becomes NaN.
void RoundQueryToKvInt8(float* q, size_t head_dim);

// Attention of `tokens` query tokens x `group` query heads that share one
// key/value head, over num_keys cached rows of that head:
//
//   out(t, g) = sum_j softmax_j(scale * q~(t, g) · k_j) v_j
//
// with q~ the query as QuantizeKvQuery quantizes it (RoundQueryToKvInt8),
// over the keys j the query may see: j <= q_begin + t with causal (and j >
// q_begin + t - window with window > 0), every j < num_keys without.
// q(t, g) is q + t * ldq + g * head_dim (head_dim floats), out(t, g) is
// out + t * ldo + g * head_dim; out may be q itself (ldo == ldq: every query
// is read before any output is written), no other overlap. Key j is lane
// j % 16 of the tile at keys + (j / 16) * KvInt8KeyTileBytes(head_dim), v_j
// of the tile at values + (j / 16) * KvInt8ValueTileBytes(head_dim) (both
// 4-byte aligned). The whole tiles of the first and last visible keys are
// read: their other lanes must be readable (any values, NaN scales too; they
// never reach an output). Causal needs q_begin +
// tokens <= num_keys. Scratch: this thread's kFlashAttention slot
// (simd/thread_scratch.h), tokens * group * (num_keys + head_dim + 18) + 4 *
// (head_dim + 3) + 4 * ceil(head_dim / 32) * (num_keys + 32) floats at most.
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

// The kernel, dispatched to the best target of this CPU. Scores: per key
// tile, vectors across its 16 keys, up to four queries (the query heads of a
// group) at once; with AVX-512 VNNI (Int8VnniActive(), simd/matmul_int8.h)
// one vpdpbusd per quad of dimensions, else each quad's int8 values
// converted to floats in registers once (exact integer sums either way).
// Softmax: simd::MaskedSoftmax's exponentials (and its NaN rules), the
// division by their sum applied to the outputs. Values: per tile, each
// query's 16 weights p_j * vscale_j (0 outside the visible keys) once per
// block, then per vector of dimensions of a group of 4 tokens, their int8
// values converted once and added into up to four queries' outputs. No
// float copy of the cache is made. Tuned on AVX-512 (Zen 4) for head_dim 64
// and groups of 1 and 4.
//
// With VNNI the values are weighted by integer dot products too: per query
// and block, the weights p_j * vscale_j are rounded to 16 bits relative to
// the largest of them (each weight's error at most 2^-17 of that largest
// one: about 1e-5 of the output for diffuse attention, 1e-4 when one token
// takes most of the weight, well below the int8 values' own rounding),
// split into two bytes and multiplied by the int8 values with vpdpbusd.
void KvInt8Attention(const KvInt8AttentionArgs& args);

// Scalar reference: the rows dequantized as DequantizeKvRow/Key do, the
// queries as RoundQueryToKvInt8 does, the scores,
// softmax and sums in double; a row with a NaN or +inf score, or only -inf
// scores, is NaN (simd/softmax.h's rules).
void KvInt8AttentionReference(const KvInt8AttentionArgs& args);

namespace detail {

// The unscaled scores of `rows` (1..4) quantized queries (query r at queries
// + r * KvInt8QueryBytes(head_dim)) against the key tiles [tile_begin,
// tile_end) at `keys`: key j's score for query r to scores[r * lds + j], for
// every lane of those tiles, as KvInt8Attention defines them.
using KvInt8ScoresFn = void (*)(const uint8_t* queries, size_t rows, size_t head_dim,
                                const uint8_t* keys, size_t tile_begin, size_t tile_end,
                                float* scores, size_t lds);

// The AVX-512 VNNI scores (simd/kv_int8_vnni_scores.cc): vpdpbusd on the key
// quads. Only called when Int8VnniActive(); does nothing where the kernel is
// not compiled.
void KvInt8ScoresVnni(const uint8_t* queries, size_t rows, size_t head_dim, const uint8_t* keys,
                      size_t tile_begin, size_t tile_end, float* scores, size_t lds);

// out_r[0, head_dim) = sum over the tokens j in [begin, end) of p_r[j] *
// v_j for `rows` (1..4) queries (p_r = p + r * ldp, out_r = out + r *
// head_dim), the value tiles at `values`; p_r is read over the whole tiles
// of [begin, end), its entries outside that range may be anything. Scratch:
// KvInt8ValuesScratch(rows, tiles of [begin, end)) floats.
using KvInt8ValuesFn = void (*)(const float* p, size_t ldp, size_t rows, size_t head_dim,
                                const uint8_t* values, size_t begin, size_t end, float* out,
                                float* scratch);

// Tiles whose weights KvInt8ValuesVnni rounds at a time.
constexpr size_t kKvInt8ValuesChunkTiles = 16;

// 16 floats (64 bytes: one block's weights rounded to 16 bits, split into
// bytes) per query and tile of a chunk.
inline size_t KvInt8ValuesScratch(size_t rows, size_t tiles) {
  return 16 * rows * (tiles < kKvInt8ValuesChunkTiles ? tiles : kKvInt8ValuesChunkTiles);
}

// The kernels prefetch the tiles they stream this many tiles ahead: a
// decoding step finds the cache in DRAM, the projections' weights having
// streamed through the caches since, and the hardware prefetcher alone does
// not follow the values' block-strided reads. The VNNI scores prefetch, with
// each line they load, the same line that many tiles ahead, the portable
// ones whole tiles; the VNNI values prefetch the scales in their first pass
// (and the next chunk of tiles evenly over every block's sums), the portable
// ones whole tiles in their first pass. Tuned on Zen 4 at head_dim 64 (4.5
// KiB ahead).
constexpr size_t kKvInt8PrefetchTiles = 4;

// Prefetches the `bytes` bytes at `tile` (a whole tile) into the caches.
inline void PrefetchKvInt8Tile(const uint8_t* tile, size_t bytes) {
  for (size_t i = 0; i < bytes; i += 64) hwy::Prefetch(tile + i);
}

// The AVX-512 VNNI weighted values (simd/kv_int8_vnni_values.cc): weights rounded
// to 16 bits per query and block (KvInt8Attention), vpdpbusd on the value
// groups. As KvInt8ScoresVnni, only called when Int8VnniActive().
void KvInt8ValuesVnni(const float* p, size_t ldp, size_t rows, size_t head_dim,
                      const uint8_t* values, size_t begin, size_t end, float* out, float* scratch);

}  // namespace detail

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
