"""Grouped-query attention with RoPE and sliding windows, as the book's later chapters compute it.

The reference for attn::GroupedQueryAttention: the book's llama3.py (`GroupedQueryAttention`,
`compute_rope_params`, `apply_rope`, and its kv_cache variant for decoding) with the two options
the C++ module adds: qkv_bias (Qwen2-style biases on the three projections) and a sliding window
(the book's sliding-window bonus: query i sees keys j with i - W < j <= i). The operations are
the book's, in the book's order, so the float32 rounding is PyTorch's own.

  rope_inv_freq          compute_rope_params' inverse frequencies (Llama 3 freq_config scaling)
  compute_rope_params    inv_freq, then the cos and sin tables (context_length, head_dim)
  apply_rope             x * cos + cat(-x2, x1) * sin at positions offset .. offset + T - 1
  attention_mask         True where a query must not see a key (future, or outside the window)
  GroupedQueryAttention  W_key, W_value, W_query, out_proj, created in this order; forward
                         with an optional KV cache of rotated keys and values
"""

import torch
import torch.nn as nn


def rope_inv_freq(head_dim, theta_base=10_000, freq_config=None, dtype=torch.float32):
    """The first half of the book's compute_rope_params: inv_freq, (head_dim // 2,) float32."""
    assert head_dim % 2 == 0, "Embedding dimension must be even"

    # Compute the inverse frequencies
    inv_freq = 1.0 / (theta_base ** (
        torch.arange(0, head_dim, 2, dtype=dtype)[: (head_dim // 2)].float() / head_dim))

    # Frequency adjustments
    if freq_config is not None:
        low_freq_wavelen = freq_config["original_context_length"] / freq_config["low_freq_factor"]
        high_freq_wavelen = (freq_config["original_context_length"]
                             / freq_config["high_freq_factor"])

        wavelen = 2 * torch.pi / inv_freq

        inv_freq_llama = torch.where(
            wavelen > low_freq_wavelen, inv_freq / freq_config["factor"], inv_freq
        )

        smooth_factor = (freq_config["original_context_length"] / wavelen
                         - freq_config["low_freq_factor"]) / (
            freq_config["high_freq_factor"] - freq_config["low_freq_factor"]
        )

        smoothed_inv_freq = (
            (1 - smooth_factor) * (inv_freq / freq_config["factor"]) + smooth_factor * inv_freq
        )

        is_medium_freq = (wavelen <= low_freq_wavelen) & (wavelen >= high_freq_wavelen)
        inv_freq_llama = torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)
        inv_freq = inv_freq_llama
    return inv_freq


def compute_rope_params(head_dim, theta_base=10_000, context_length=4096, freq_config=None,
                        dtype=torch.float32):
    inv_freq = rope_inv_freq(head_dim, theta_base, freq_config, dtype)

    # Generate position indices
    positions = torch.arange(context_length, dtype=dtype)

    # Compute the angles
    angles = positions[:, None] * inv_freq[None, :]  # Shape: (context_length, head_dim // 2)

    # Expand angles to match the head_dim
    angles = torch.cat([angles, angles], dim=1)  # Shape: (context_length, head_dim)

    # Precompute sine and cosine
    cos = torch.cos(angles)
    sin = torch.sin(angles)

    return cos, sin


def apply_rope(x, cos, sin, offset=0):
    # x: (batch_size, num_heads, seq_len, head_dim)
    batch_size, num_heads, seq_len, head_dim = x.shape
    assert head_dim % 2 == 0, "Head dimension must be even"

    # Split x into first half and second half
    x1 = x[..., : head_dim // 2]  # First half
    x2 = x[..., head_dim // 2:]  # Second half

    # Adjust sin and cos shapes
    cos = cos[offset:offset + seq_len, :].unsqueeze(0).unsqueeze(0)  # (1, 1, seq_len, head_dim)
    sin = sin[offset:offset + seq_len, :].unsqueeze(0).unsqueeze(0)

    # Apply the rotary transformation
    rotated = torch.cat((-x2, x1), dim=-1)
    x_rotated = (x * cos) + (rotated * sin)

    return x_rotated.to(dtype=x.dtype)


def attention_mask(pos_start, pos_end, sliding_window=0):
    """(pos_end - pos_start, pos_end) bool: query rows pos_start .. pos_end - 1 against keys
    0 .. pos_end - 1, True where masked: the future (j > i) and, with a window W > 0, keys
    j <= i - W."""
    ones = torch.ones(pos_end, pos_end, dtype=torch.bool)
    mask = torch.triu(ones, diagonal=1)
    if sliding_window > 0:
        mask = mask | torch.tril(ones, diagonal=-sliding_window)
    return mask[pos_start:pos_end, :pos_end]


class GroupedQueryAttention(nn.Module):
    def __init__(self, d_in, d_out, context_length, num_heads, num_kv_groups, rope_base=10_000,
                 rope_config=None, use_rope=True, sliding_window=0, qkv_bias=False):
        super().__init__()
        assert d_out % num_heads == 0, "d_out must be divisible by num_heads"
        assert num_heads % num_kv_groups == 0, "num_heads must be divisible by num_kv_groups"

        self.d_out = d_out
        self.num_heads = num_heads
        self.head_dim = d_out // num_heads

        self.W_key = nn.Linear(d_in, num_kv_groups * self.head_dim, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, num_kv_groups * self.head_dim, bias=qkv_bias)
        self.num_kv_groups = num_kv_groups
        self.group_size = num_heads // num_kv_groups

        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out, bias=False)

        self.context_length = context_length
        self.sliding_window = sliding_window
        self.use_rope = use_rope
        if use_rope:
            cos, sin = compute_rope_params(self.head_dim, rope_base, context_length, rope_config)
            # Not in the state_dict, as in the book.
            self.register_buffer("cos", cos, persistent=False)
            self.register_buffer("sin", sin, persistent=False)
        # The softmax weights of the last forward, (b, num_heads, num_tokens, keys).
        self.last_attn_weights = None

    def forward(self, x, start_pos=0, cache=None):
        """x (b, num_tokens, d_in) -> ((b, num_tokens, d_out), next_cache). With cache (the
        previous call's next_cache, or None for the first chunk of a decoding run) pass the
        position of x's first token as start_pos; without one x starts at position 0."""
        b, num_tokens, _ = x.shape

        # Apply projections
        queries = self.W_query(x)  # (b, num_tokens, num_heads * head_dim)
        keys = self.W_key(x)       # (b, num_tokens, num_kv_groups * head_dim)
        values = self.W_value(x)   # (b, num_tokens, num_kv_groups * head_dim)

        # Reshape
        queries = queries.view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
        keys_new = keys.view(b, num_tokens, self.num_kv_groups, self.head_dim).transpose(1, 2)
        values_new = values.view(b, num_tokens, self.num_kv_groups, self.head_dim).transpose(1, 2)

        # Apply RoPE
        if self.use_rope:
            queries = apply_rope(queries, self.cos, self.sin, offset=start_pos)
            keys_new = apply_rope(keys_new, self.cos, self.sin, offset=start_pos)

        if cache is not None:
            prev_k, prev_v = cache
            keys = torch.cat([prev_k, keys_new], dim=2)
            values = torch.cat([prev_v, values_new], dim=2)
        else:
            keys, values = keys_new, values_new
        next_cache = (keys, values)
        assert keys.shape[2] == start_pos + num_tokens <= self.context_length

        # Expand keys and values to match the number of heads: [K1, K1, K2, K2]
        keys = keys.repeat_interleave(self.group_size, dim=1)
        values = values.repeat_interleave(self.group_size, dim=1)

        # Scaled dot-product attention with the causal (and window) mask
        attn_scores = queries @ keys.transpose(2, 3)  # (b, num_heads, num_tokens, keys)
        mask = attention_mask(start_pos, start_pos + num_tokens, self.sliding_window)
        attn_scores = attn_scores.masked_fill(mask, -torch.inf)

        attn_weights = torch.softmax(attn_scores / keys.shape[-1]**0.5, dim=-1)
        assert keys.shape[-1] == self.head_dim
        self.last_attn_weights = attn_weights.detach().clone()

        # Shape: (b, num_tokens, num_heads, head_dim)
        context_vec = (attn_weights @ values).transpose(1, 2)

        # Combine heads, where self.d_out = self.num_heads * self.head_dim
        context_vec = context_vec.reshape(b, num_tokens, self.d_out)
        context_vec = self.out_proj(context_vec)

        return context_vec, next_cache
