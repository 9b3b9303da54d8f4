// Single-threaded flash-style attention for one (batch, key/value head) and
// a block of queries: softmax(scale * Q Kᵀ, causal and window masks) · V
// without materializing the score matrix. The parallel layer calls it once
// per (batch, key/value head, query block); each call writes only its own
// output rows, so results do not depend on how the queries are split into
// calls (same bits for 1 or 16 threads).
//
//   q   : num_queries query rows of head_dim floats. With group_size = G
//         (grouped-query attention: the G query heads that share this key/value
//         head), query row i belongs to position p(i) = q_begin + i / G and is
//         at q + (i / G) * ldq + (i % G) * ldq_group; G = 1 is the plain
//         num_queries x head_dim matrix of row stride ldq, row i at position
//         q_begin + i.
//   k   : num_keys x head_dim, row stride ldk >= head_dim. Key j is at
//         absolute position j.
//   v   : num_keys x head_dim, row stride ldv >= head_dim.
//   out : like q, with ldo and ldo_group. Only the first head_dim floats of
//         each row are written.
//
//   out[i, :] = sum_{j in vis(i)} w_ij v[j, :],
//   w_ij      = exp(s_ij - m_i) / sum_{j' in vis(i)} exp(s_ij' - m_i),
//   s_ij      = scale * (q[i, :] · k[j, :]),  m_i = max_{j in vis(i)} s_ij,
//   vis(i)    = { j < num_keys : j <= p(i) }  with causal,
//               { j < num_keys }              without,
//               and with window = W > 0 only the j > p(i) - W of those.
//
// Self-attention over T tokens is q_begin = 0, num_queries = num_keys = T;
// KV-cache decoding of n new tokens is q_begin = num_keys - n (the new tokens
// see everything cached and themselves); a block of rows [r0, r1) of a T x T
// causal attention is q = Q + r0 * ldq, q_begin = r0, num_keys = T.
//
// Keys a query cannot see never enter its computation (causality and the
// window are loop bounds, not -inf scores), so a NaN in a masked K or V row
// does not reach that query's output. (PyTorch's `weights @ V` would spread a
// NaN from a masked V row into every row as 0 * NaN; for masked K rows both
// agree.) Rows of K and V outside every query's visible keys are not read.
//
// Special values follow PyTorch's softmax over the visible scores: a NaN or
// +inf score gives a row of NaN, a -inf score gets weight 0, and a row whose
// visible scores are all -inf gives NaN. A row with no visible key at all
// (only possible with num_keys == 0, or a window that ends before it) also
// gives NaN, the value of a fully masked softmax. NaN in a visible V row
// propagates (0 * NaN = NaN, as in
// PyTorch). Scores are computed in float as (scale * q[i, :]) · k[j, :] (the
// queries are scaled once, when packed): products that overflow float give
// inf there even where the double reference stays finite. The kernel sums
// unnormalized weights, each up to exp(5.5) ~ 245 (relative to a running
// reference within 5.5 of the row's max), times V, then divides: V values
// beyond about FLT_MAX / (245 * visible keys) can overflow there where
// PyTorch's normalized weights would not. Weights below 2^-126 times that
// reference are flushed to 0 (PyTorch keeps denormals).
// Against the double reference, outputs agree within 1e-6 * max|v| on the
// tests' random inputs (every target, with or without FMA).
//
// Aliasing: out may be q itself (out == q, ldo == ldq, ldo_group ==
// ldq_group): each block of query rows is read in full before its outputs are
// written, and never read again (the modules write heads' outputs over Q that
// way). Any other overlap of out with q, k or v, or of two query rows, is
// invalid. Any size may be 0; pointers are only read when the matching size
// is nonzero. Misaligned pointers and strides are fine; no element outside
// the described rectangles is read or written.
//
// User errors (strides smaller than head_dim, group_size 0, null pointers
// with nonzero sizes) throw attn::ShapeError naming the arguments.
#pragma once

#include <algorithm>
#include <cstddef>

namespace attn {
namespace simd {

struct FlashAttentionArgs {
  const float* q = nullptr;  // num_queries x head_dim, row stride ldq
  size_t ldq = 0;
  const float* k = nullptr;  // num_keys x head_dim, row stride ldk
  size_t ldk = 0;
  const float* v = nullptr;  // num_keys x head_dim, row stride ldv
  size_t ldv = 0;
  float* out = nullptr;  // num_queries x head_dim, row stride ldo
  size_t ldo = 0;
  size_t num_queries = 0, num_keys = 0, head_dim = 0;
  size_t q_begin = 0;   // absolute position of query row 0
  bool causal = false;  // query at position p sees keys j <= p
  float scale = 1.0f;   // multiplies q · k; 1/sqrt(head_dim) in attention
  // Query rows per position (the query heads of a key/value head) and the
  // strides between them in q and out; ldq_group and ldo_group are only read
  // when group_size > 1.
  size_t group_size = 1;
  size_t ldq_group = 0, ldo_group = 0;
  size_t window = 0;  // > 0: query at position p sees keys j > p - window only
};

// Shared by the kernels of every target and the scalar reference:
// The absolute position of query row i.
inline size_t QueryPosition(const FlashAttentionArgs& a, size_t i) {
  return a.q_begin + (a.group_size > 1 ? i / a.group_size : i);
}
// Query row i and output row i.
inline const float* QueryRow(const FlashAttentionArgs& a, size_t i) {
  if (a.group_size <= 1) return a.q + i * a.ldq;
  return a.q + (i / a.group_size) * a.ldq + (i % a.group_size) * a.ldq_group;
}
inline float* OutRow(const FlashAttentionArgs& a, size_t i) {
  if (a.group_size <= 1) return a.out + i * a.ldo;
  return a.out + (i / a.group_size) * a.ldo + (i % a.group_size) * a.ldo_group;
}
// vis(i) is [FirstVisibleKey(a, i), VisibleKeys(a, i)); both are
// non-decreasing in i.
inline size_t VisibleKeys(const FlashAttentionArgs& a, size_t i) {
  if (!a.causal) return a.num_keys;
  const size_t pos = QueryPosition(a, i);
  return pos < a.num_keys ? pos + 1 : a.num_keys;
}
inline size_t FirstVisibleKey(const FlashAttentionArgs& a, size_t i) {
  const size_t pos = QueryPosition(a, i);
  const size_t first = a.window > 0 && pos + 1 > a.window ? pos + 1 - a.window : 0;
  return std::min(first, VisibleKeys(a, i));
}

// Throws ShapeError, naming `caller` and the arguments, for arguments that
// would make a kernel read or write out of bounds (the checks of the user
// errors above).
void CheckFlashAttentionArgs(const FlashAttentionArgs& args, const char* caller);

// The Highway kernel, dispatched to the best target of this CPU. Tuned for
// AVX3 (AVX-512) at head_dim 64; correct for any head_dim and every compiled
// target. Needs a scratch buffer of at most 2 * (keys read + 64) *
// (head_dim + 15) + 64 * (head_dim + 16) floats plus a few KiB (K
// transposed, V packed, 32 query rows and their accumulators): each
// thread keeps its own, grown to the largest call it has made, for its
// lifetime (0.54 MB for 1024 keys at head_dim 64; a buffer above 8 MiB is
// given back after 16 calls in a row that need less than 8 MiB; see
// simd/thread_scratch.h); throws std::bad_alloc if growing it fails. Safe
// to call from several threads at once. Each row's result is bitwise the
// same whichever other rows share its call.
void FlashAttention(const FlashAttentionArgs& args);

// Scalar reference: the same contract. Per query row, materializes the
// visible scores in double, subtracts their maximum, exponentiates,
// normalizes and sums weights · V in double.
void FlashAttentionReference(const FlashAttentionArgs& args);

}  // namespace simd
}  // namespace attn
