// Single-threaded flash-style attention for one (batch, head) and a block of
// queries: softmax(scale * Q Kᵀ, causal mask) · V without materializing the
// score matrix. The parallel layer calls it once per (batch, head, query
// block); each call writes only its own output rows, so results do not depend
// on how the queries are split into calls (same bits for 1 or 16 threads).
//
//   q   : num_queries x head_dim, row stride ldq >= head_dim. Query row i is
//         at absolute position q_begin + i.
//   k   : num_keys x head_dim, row stride ldk >= head_dim. Key j is at
//         absolute position j.
//   v   : num_keys x head_dim, row stride ldv >= head_dim.
//   out : num_queries x head_dim, row stride ldo >= head_dim. Only the first
//         head_dim floats of each row are written.
//
//   out[i, :] = sum_{j in vis(i)} w_ij v[j, :],
//   w_ij      = exp(s_ij - m_i) / sum_{j' in vis(i)} exp(s_ij' - m_i),
//   s_ij      = scale * (q[i, :] · k[j, :]),  m_i = max_{j in vis(i)} s_ij,
//   vis(i)    = { j < num_keys : j <= q_begin + i }  with causal,
//               { j < num_keys }                     without.
//
// Self-attention over T tokens is q_begin = 0, num_queries = num_keys = T;
// KV-cache decoding of n new tokens is q_begin = num_keys - n (the new tokens
// see everything cached and themselves); a block of rows [r0, r1) of a T x T
// causal attention is q = Q + r0 * ldq, q_begin = r0, num_keys = T.
//
// Keys a query cannot see never enter its computation (causality is a loop
// bound, not a -inf score), so a NaN in a masked K or V row does not reach
// that query's output. (PyTorch's `weights @ V` would spread a NaN from a
// masked V row into every row as 0 * NaN; for masked K rows both agree.)
// Rows of K and V past the last query's visible keys are not read at all.
//
// Special values follow PyTorch's softmax over the visible scores: a NaN or
// +inf score gives a row of NaN, a -inf score gets weight 0, and a row whose
// visible scores are all -inf gives NaN. A row with no visible key at all
// (only possible with num_keys == 0) also gives NaN, the value of a fully
// masked softmax. NaN in a visible V row propagates (0 * NaN = NaN, as in
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
// Aliasing: out may be q itself (out == q and ldo == ldq): each block of
// query rows is read in full before its outputs are written, and never read
// again (the module writes heads' outputs over Q that way). Any other overlap
// of out with q, k or v is invalid. Any size may be 0; pointers are only read
// when the matching size is nonzero. Misaligned pointers and strides are
// fine; no element outside the described rectangles is read or written.
//
// User errors (strides smaller than head_dim, null pointers with nonzero
// sizes) throw attn::ShapeError naming the arguments.
#pragma once

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
};

// The number of keys query row i sees: vis(i) is [0, VisibleKeys(a, i)).
// Shared by the kernels of every target and the scalar reference.
inline size_t VisibleKeys(const FlashAttentionArgs& a, size_t i) {
  if (!a.causal) return a.num_keys;
  const size_t pos = a.q_begin + i;
  return pos < a.num_keys ? pos + 1 : a.num_keys;
}

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
