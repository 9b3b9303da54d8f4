#!/usr/bin/python3
"""Chapter 3 of "Build a Large Language Model (From Scratch)", step by step, in PyTorch.

Prints every intermediate result of the chapter in a fixed, printf-friendly format; the
output is committed as examples/chapter3_expected.txt and the C++ demo must print exactly
the same text:

    /usr/bin/python3 examples/chapter3_reference.py > examples/chapter3_expected.txt

Format:
  * a tensor block is a line "## <label> (<shape, comma separated, no spaces>)" followed by
    its values, one line per row of the last dimension (all rows in order for 3-D tensors),
    each value printed as "%.4f" (Python f"{v + 0.0:.4f}") separated by single spaces;
  * a scalar block is a line "## <label>" followed by the value on its own line ("%.4f" for
    floats, "%d" for integers);
  * values are printed after adding 0.0, so an exact -0.0 prints "0.0000" (C: printf("%.4f",
    v + 0.0f)); a tiny negative such as -0.00001 still prints "-0.0000" in both languages;
    -inf prints "-inf" in both.
"""

import os
import sys

os.environ['ATEN_CPU_CAPABILITY'] = 'avx2'

import torch  # noqa: E402

torch.set_num_threads(1)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'scripts'))
from book_modules import (  # noqa: E402
    CausalAttention, MultiHeadAttention, MultiHeadAttentionWrapper, SelfAttention_v1,
    SelfAttention_v2)


def fmt(v):
    return f'{float(v) + 0.0:.4f}'


def block(label, t):
    t = t.detach()
    if t.dim() == 0:
        print(f'## {label}')
        print(fmt(t.item()))
        return
    print(f'## {label} ({",".join(str(s) for s in t.shape)})')
    for row in t.reshape(-1, t.shape[-1]).tolist():
        print(' '.join(fmt(v) for v in row))


def scalar(label, v):
    print(f'## {label}')
    print(str(v) if isinstance(v, int) else fmt(v))


def main():
    torch.set_grad_enabled(False)

    # ---- 3.3.1 A simple self-attention mechanism without trainable weights ----------------
    inputs = torch.tensor(
        [[0.43, 0.15, 0.89],   # Your     (x^1)
         [0.55, 0.87, 0.66],   # journey  (x^2)
         [0.57, 0.85, 0.64],   # starts   (x^3)
         [0.22, 0.58, 0.33],   # with     (x^4)
         [0.77, 0.25, 0.10],   # one      (x^5)
         [0.05, 0.80, 0.55]])  # step     (x^6)
    block('inputs', inputs)

    query = inputs[1]  # 2nd input token is the query
    attn_scores_2 = torch.empty(inputs.shape[0])
    for i, x_i in enumerate(inputs):
        attn_scores_2[i] = torch.dot(x_i, query)
    block('attn_scores_2', attn_scores_2)

    attn_weights_2_tmp = attn_scores_2 / attn_scores_2.sum()
    block('attn_weights_2_tmp', attn_weights_2_tmp)
    scalar('attn_weights_2_tmp.sum', attn_weights_2_tmp.sum().item())

    def softmax_naive(x):
        return torch.exp(x) / torch.exp(x).sum(dim=0)

    attn_weights_2_naive = softmax_naive(attn_scores_2)
    block('attn_weights_2_naive', attn_weights_2_naive)
    attn_weights_2 = torch.softmax(attn_scores_2, dim=0)
    block('attn_weights_2', attn_weights_2)
    scalar('attn_weights_2.sum', attn_weights_2.sum().item())

    context_vec_2 = torch.zeros(query.shape)
    for i, x_i in enumerate(inputs):
        context_vec_2 += attn_weights_2[i] * x_i
    block('context_vec_2', context_vec_2)

    # ---- 3.3.2 Computing attention weights for all input tokens ----------------------------
    attn_scores = torch.empty(6, 6)
    for i, x_i in enumerate(inputs):
        for j, x_j in enumerate(inputs):
            attn_scores[i, j] = torch.dot(x_i, x_j)
    block('attn_scores_loops', attn_scores)
    attn_scores = inputs @ inputs.T
    block('attn_scores', attn_scores)
    attn_weights = torch.softmax(attn_scores, dim=-1)
    block('attn_weights', attn_weights)
    all_context_vecs = attn_weights @ inputs
    block('all_context_vecs', all_context_vecs)

    # ---- 3.4.1 Computing the attention weights step by step (trainable weights) -----------
    x_2 = inputs[1]
    d_in = inputs.shape[1]  # 3
    d_out = 2
    torch.manual_seed(123)
    W_query = torch.nn.Parameter(torch.rand(d_in, d_out), requires_grad=False)
    W_key = torch.nn.Parameter(torch.rand(d_in, d_out), requires_grad=False)
    W_value = torch.nn.Parameter(torch.rand(d_in, d_out), requires_grad=False)
    block('W_query', W_query)
    block('W_key', W_key)
    block('W_value', W_value)
    query_2 = x_2 @ W_query
    block('query_2', query_2)
    keys = inputs @ W_key
    values = inputs @ W_value
    block('keys', keys)
    block('values', values)
    keys_2 = keys[1]
    attn_score_22 = query_2.dot(keys_2)
    scalar('attn_score_22', attn_score_22.item())
    attn_scores_2 = query_2 @ keys.T
    block('attn_scores_2 (trainable)', attn_scores_2)
    d_k = keys.shape[-1]
    attn_weights_2 = torch.softmax(attn_scores_2 / d_k ** 0.5, dim=-1)
    block('attn_weights_2 (trainable)', attn_weights_2)
    context_vec_2 = attn_weights_2 @ values
    block('context_vec_2 (trainable)', context_vec_2)

    # ---- 3.4.2 A compact self-attention Python class ---------------------------------------
    torch.manual_seed(123)
    sa_v1 = SelfAttention_v1(d_in, d_out)
    block('sa_v1(inputs) seed 123', sa_v1(inputs))

    torch.manual_seed(789)
    sa_v2 = SelfAttention_v2(d_in, d_out)
    block('sa_v2(inputs) seed 789', sa_v2(inputs))

    # ---- 3.5.1 Applying a causal attention mask --------------------------------------------
    queries = sa_v2.W_query(inputs)
    keys = sa_v2.W_key(inputs)
    attn_scores = queries @ keys.T
    attn_weights = torch.softmax(attn_scores / keys.shape[-1] ** 0.5, dim=-1)
    block('sa_v2 attn_weights', attn_weights)
    context_length = attn_scores.shape[0]
    mask_simple = torch.tril(torch.ones(context_length, context_length))
    block('mask_simple', mask_simple)
    masked_simple = attn_weights * mask_simple
    block('masked_simple', masked_simple)
    row_sums = masked_simple.sum(dim=-1, keepdim=True)
    masked_simple_norm = masked_simple / row_sums
    block('masked_simple_norm', masked_simple_norm)
    mask = torch.triu(torch.ones(context_length, context_length), diagonal=1)
    masked = attn_scores.masked_fill(mask.bool(), -torch.inf)
    block('masked', masked)
    attn_weights = torch.softmax(masked / keys.shape[-1] ** 0.5, dim=-1)
    block('masked attn_weights', attn_weights)

    # ---- 3.5.2 Masking additional attention weights with dropout ---------------------------
    torch.manual_seed(123)
    dropout = torch.nn.Dropout(0.5)
    example = torch.ones(6, 6)
    block('dropout(ones) seed 123', dropout(example))
    torch.manual_seed(123)
    block('dropout(attn_weights) seed 123', dropout(attn_weights))

    # ---- 3.5.3 Implementing a compact causal attention class -------------------------------
    batch = torch.stack((inputs, inputs), dim=0)
    block('batch', batch)
    torch.manual_seed(123)
    context_length = batch.shape[1]
    ca = CausalAttention(d_in, d_out, context_length, 0.0)
    block('ca(batch) seed 123', ca(batch))

    # ---- 3.6.1 Stacking multiple single-head attention layers ------------------------------
    torch.manual_seed(123)
    context_length = batch.shape[1]  # number of tokens
    d_in, d_out = 3, 2
    mha = MultiHeadAttentionWrapper(d_in, d_out, context_length, 0.0, num_heads=2)
    block('MultiHeadAttentionWrapper(batch) seed 123', mha(batch))

    # ---- Exercise 3.1 Comparing SelfAttention_v1 and SelfAttention_v2 ----------------------
    sa_v1.W_query = torch.nn.Parameter(sa_v2.W_query.weight.T)
    sa_v1.W_key = torch.nn.Parameter(sa_v2.W_key.weight.T)
    sa_v1.W_value = torch.nn.Parameter(sa_v2.W_value.weight.T)
    block('ex3.1 sa_v1(inputs) with sa_v2 weights', sa_v1(inputs))
    block('ex3.1 sa_v2(inputs)', sa_v2(inputs))

    # ---- Exercise 3.2 Returning two-dimensional embedding vectors --------------------------
    torch.manual_seed(123)
    d_out = 1
    mha = MultiHeadAttentionWrapper(d_in, d_out, context_length, 0.0, num_heads=2)
    block('ex3.2 MultiHeadAttentionWrapper d_out=1 (batch) seed 123', mha(batch))

    # ---- 3.6.2 Implementing multi-head attention with weight splits ------------------------
    torch.manual_seed(123)
    batch_size, context_length, d_in = batch.shape
    d_out = 2
    mha = MultiHeadAttention(d_in, d_out, context_length, 0.0, num_heads=2)
    block('MultiHeadAttention(batch) seed 123', mha(batch))

    # ---- Exercise 3.3 Initializing GPT-2 size attention modules ----------------------------
    mha = MultiHeadAttention(768, 768, 1024, 0.0, 12)
    scalar('ex3.3 MultiHeadAttention(768,768,1024,0.0,12) parameters',
           sum(p.numel() for p in mha.parameters()))


if __name__ == '__main__':
    main()
