// RoPE for the modules: the inverse frequencies of the book's
// compute_rope_params (Llama 3 scaling included), bitwise as PyTorch computes
// them in float32, and the parallel pass that rotates the queries and keys of
// a QKV buffer at their positions. Internal to attn.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "attn/grouped_query_attention.h"

namespace attn {
namespace detail {

// Throws ArgumentError naming `module` and the field unless `rope` (when
// enabled) can build head_dim's frequencies: head_dim even, theta_base
// finite and > 0, and when scaling_factor != 0: scaling_factor,
// low_freq_factor and original_context_length finite and > 0,
// high_freq_factor finite and > low_freq_factor; each of these (and
// high - low) also finite and > 0 when rounded to float32.
void check_rope_config(const char* module, const RopeConfig& rope, int64_t head_dim);

// inv_freq[i] = 1 / theta^(2i / head_dim) for i < head_dim / 2 with Llama 3
// scaling, each operation rounded to float32 as PyTorch's tensor ops do
// (theta^e as the correctly rounded float power of float(theta); PyTorch's
// vectorized pow is within 1 ULP of it and occasionally 1 ULP off).
std::vector<float> rope_inverse_frequencies(int64_t head_dim, const RopeConfig& rope);

// cos and sin (half = inv_freq.size() floats each) of the angles
// float(position) * inv_freq[i] rounded to float32 (as the book's
// positions * inv_freq), evaluated in double and rounded.
void rope_angles(int64_t position, const std::vector<float>& inv_freq, float* cos, float* sin);

// Rotates, in place, `heads` heads of head_dim floats at the start of each
// of `rows` rows of x (row stride ld): row r is token r % tokens of its
// sequence, at position first_position + r % tokens. Parallel over rows.
void apply_rope(float* x, size_t ld, size_t rows, size_t tokens, int64_t first_position,
                size_t heads, size_t head_dim, const std::vector<float>& inv_freq);

}  // namespace detail
}  // namespace attn
