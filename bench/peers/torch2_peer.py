#!/usr/bin/env python3
"""PyTorch 2 peer: attn's reference weights and inputs through PyTorch's CPU attention.

For each reference file (peer_common.py; written by attn_peer_reference) the rows
torch2/<variant>/<config>/threads:<n>/real_time, n in --threads, with torch.set_num_threads(n),
in eval mode under torch.inference_mode(), float32 ("fp32") unless said otherwise:

  mha files (the book's MultiHeadAttention state_dict: W_query, W_key, W_value without
  biases, out_proj with its bias; x = (B, T, d_in)):
    book_mha        scripts/book_modules.py's MultiHeadAttention(d_in, d_out, context_length,
                    0.0, heads) with the state_dict loaded: three Linear projections, scores
                    queries @ keys^T masked_fill'ed with -inf above the diagonal,
                    softmax(scores / sqrt(hd)), weights @ values, out_proj
    book_mha_qint8  torch.ao.quantization.quantize_dynamic(book_mha, {nn.Linear},
                    dtype=torch.qint8): the four Linear layers in int8 (weights per tensor,
                    activations quantized per call) on torch.backends.quantized.engine, the
                    attention in float32; precision "int8 (dynamic)"; counter rel_l2_error
                    (against attn's float32 y), checked against a loose 5e-2
    sdpa            the book's bonus MHAPyTorchScaledDotProduct: one Linear(d_in, 3 d_out,
                    bias=False) whose weight is cat(W_query, W_key, W_value), heads split,
                    F.scaled_dot_product_attention(q, k, v, is_causal=True), proj (= out_proj)
    nn_mha          torch.nn.MultiheadAttention(d, heads, bias=True, batch_first=True) with
                    in_proj_weight = cat(W_query, W_key, W_value), in_proj_bias = 0, out_proj
                    from the file, called as nn.Transformer's docs do for causal inference:
                    mha(x, x, x, attn_mask=nn.Transformer.generate_square_subsequent_mask(T),
                    is_causal=True, need_weights=False); PyTorch then drops the mask and runs
                    F.scaled_dot_product_attention(is_causal=True) (a float mask is not taken
                    by the "fast path", _native_multi_head_attention, whose bool-mask kernel
                    materializes all T x T scores)
  mha_decode files (x = (1, P + 1, d), y = the output of token P after a P-token prompt):
    decode_sdpa     sdpa's module, as the book's KV cache: the prompt's keys and values
                    (1, heads, P, hd) computed once, outside the timing; one call projects
                    token P, torch.cat's its key and value to the cached ones (the cache stays
                    at P tokens, as attn's rewind), F.scaled_dot_product_attention without a
                    mask (the last token sees every key), proj
  gqa files (Llama 3 layer: W_query, W_key, W_value, out_proj without biases, rope_*):
    gqa_book        the book's GroupedQueryAttention (scripts/book_gqa.py's parameters and
                    RoPE: compute_rope_params with the file's theta_base and freq_config,
                    tables made at construction; its Llama 3 chapter's forward, the causal
                    mask made once outside the timing): projections, RoPE on queries and
                    keys, keys and values repeat_interleave'd to the heads, scores
                    masked_fill'ed with -inf, softmax(scores / sqrt(hd)), weights @ values,
                    out_proj (without book_gqa.py's test hooks: a mask made per call, a
                    copy of the softmax weights)
    gqa_sdpa        the same projections and RoPE, then
                    F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
  gqa_decode files (x = (1, P + 1, d), y = the output of token P):
    gqa_sdpa_decode, gqa_book_decode  the prompt's rotated keys and its values computed
                    once, outside the timing; one call = token P projected, rotated at
                    position P, cat'ed to the cache (which stays at P), attention (SDPA with
                    enable_gqa=True, no mask; or gqa_book's, with the mask row made once)

Before any timing, every row's output is compared with attn's y at the row's thread count
(peer_common.check: counter rel_l2_vs_attn, an error above 1e-4). Counter flops (and GFLOPS):
bench/README.md's causal count, projections 2 B q d_in (d_out + 2 kv_dim) + out_proj
2 B q d_out^2 + attention 4 B H hd P', q the tokens of one call, P' its (query, key) pairs.
Rows of 2e10 FLOPs or more run --big-repetitions. Without torch this prints one line and
exits with status 0.
"""

import argparse
import os
import re
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "scripts"))

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as error:  # an optional peer
    print(f"torch2_peer.py: PyTorch is not available ({error}); skipping the PyTorch 2 peer.")
    sys.exit(0)
if tuple(int(v) for v in re.findall(r"\d+", torch.__version__)[:2]) < (2, 5):
    print(f"torch2_peer.py: PyTorch {torch.__version__} is older than 2.5 "
          "(scaled_dot_product_attention's enable_gqa); skipping the PyTorch 2 peer.")
    sys.exit(0)

import book_gqa  # noqa: E402  (scripts/, on the path above)
import book_modules  # noqa: E402
import peer_common as pc  # noqa: E402

VARIANTS = {"mha": ("book_mha", "book_mha_qint8", "sdpa", "nn_mha"),
            "mha_decode": ("decode_sdpa",), "gqa": ("gqa_sdpa", "gqa_book"),
            "gqa_decode": ("gqa_sdpa_decode", "gqa_book_decode")}
INT8_TOLERANCE = 5e-2  # dynamic int8 is ~1e-2 off; a broken one is off by ~1


class MHAPyTorchScaledDotProduct(nn.Module):
    """The book's bonus variant (ch03/02_bonus_efficient-multihead-attention), no dropout,
    with a KV cache for decoding: forward(x, cache) attends over cache + x's own keys."""

    def __init__(self, d_in, d_out, num_heads):
        super().__init__()
        self.num_heads, self.head_dim, self.d_out = num_heads, d_out // num_heads, d_out
        self.qkv = nn.Linear(d_in, 3 * d_out, bias=False)
        self.proj = nn.Linear(d_out, d_out)

    def project(self, x):
        """queries, keys, values (b, num_heads, num_tokens, head_dim)."""
        b, num_tokens, _ = x.shape
        qkv = self.qkv(x).view(b, num_tokens, 3, self.num_heads, self.head_dim)
        return qkv.permute(2, 0, 3, 1, 4)

    def forward(self, x, cache=None):
        b, num_tokens, _ = x.shape
        queries, keys, values = self.project(x)
        if cache is not None:
            keys, values = torch.cat([cache[0], keys], dim=2), torch.cat([cache[1], values], dim=2)
        context = F.scaled_dot_product_attention(queries, keys, values, is_causal=cache is None)
        return self.proj(context.transpose(1, 2).contiguous().view(b, num_tokens, self.d_out))


class GroupedQueryAttentionSdpa(book_gqa.GroupedQueryAttention):
    """book_gqa's parameters and RoPE tables; the attention by SDPA with enable_gqa."""

    def project(self, x, start_pos=0, cache=None):
        """Rotated queries (b, H, T, hd); rotated keys and values (b, G, cached + T, hd),
        x's appended to the cache's (the book's KV cache)."""
        b, num_tokens, _ = x.shape
        queries = self.W_query(x).view(b, num_tokens, self.num_heads, self.head_dim)
        keys = self.W_key(x).view(b, num_tokens, self.num_kv_groups, self.head_dim)
        values = self.W_value(x).view(b, num_tokens, self.num_kv_groups, self.head_dim)
        queries = book_gqa.apply_rope(queries.transpose(1, 2), self.cos, self.sin, start_pos)
        keys = book_gqa.apply_rope(keys.transpose(1, 2), self.cos, self.sin, start_pos)
        values = values.transpose(1, 2)
        if cache is not None:
            keys, values = torch.cat([cache[0], keys], dim=2), torch.cat([cache[1], values], dim=2)
        return queries, keys, values

    def forward(self, x, start_pos=0, cache=None):
        b, num_tokens, _ = x.shape
        queries, keys, values = self.project(x, start_pos, cache)
        context = F.scaled_dot_product_attention(queries, keys, values, is_causal=cache is None,
                                                 enable_gqa=True)
        return self.out_proj(context.transpose(1, 2).reshape(b, num_tokens, self.d_out))


class GroupedQueryAttentionBook(GroupedQueryAttentionSdpa):
    """The book's forward (its Llama 3 chapter: the mask made once by the caller), less
    book_gqa.py's test hooks (a mask built per call, a copy of the softmax weights)."""

    def forward(self, x, mask, start_pos=0, cache=None):
        b, num_tokens, _ = x.shape
        queries, keys, values = self.project(x, start_pos, cache)
        keys = keys.repeat_interleave(self.group_size, dim=1)
        values = values.repeat_interleave(self.group_size, dim=1)
        scores = (queries @ keys.transpose(2, 3)).masked_fill(mask, -torch.inf)
        weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)
        context = (weights @ values).transpose(1, 2).reshape(b, num_tokens, self.d_out)
        return self.out_proj(context)


def tensor(array):
    return torch.tensor(array)  # a copy: the reference's arrays are read-only views


def loaded(module, state):
    module.load_state_dict({k: v if torch.is_tensor(v) else tensor(v) for k, v in state.items()})
    return module.eval()


def sdpa_backend(*args, **kwargs):
    """The backend F.scaled_dot_product_attention picks for these arguments (private API)."""
    try:
        return torch.nn.attention.SDPBackend(torch._fused_sdp_choice(*args, **kwargs)).name
    except (AttributeError, RuntimeError, TypeError, ValueError):
        return "?"


def mha_fns(ref, want):
    """{variant: fn} of an mha or mha_decode file; fn() returns the output (y's shape)."""
    d_in, d_out, heads = ref.int("d_in"), ref.int("d_out"), ref.int("num_heads")
    t = ref.tensors
    x = tensor(ref.x)
    qkv_weight = torch.cat([tensor(t[f"W_{k}.weight"]) for k in ("query", "key", "value")])
    sdpa = loaded(MHAPyTorchScaledDotProduct(d_in, d_out, heads),
                  {"qkv.weight": qkv_weight, "proj.weight": t["out_proj.weight"],
                   "proj.bias": t["out_proj.bias"]})
    fns = {}
    if ref.kind == "mha_decode":
        if want("decode_sdpa"):
            _, keys, values = sdpa.project(x[:, :-1])
            cache, token = (keys.contiguous(), values.contiguous()), x[:, -1:].contiguous()
            fns["decode_sdpa"] = lambda: sdpa(token, cache)
            query, key, value = sdpa.project(token)
            key, value = torch.cat([cache[0], key], dim=2), torch.cat([cache[1], value], dim=2)
            print(f"decode_sdpa/{ref.config_name()}: SDPA backend "
                  f"{sdpa_backend(query, key, value)}")
        return fns
    names = ("W_query.weight", "W_key.weight", "W_value.weight", "out_proj.weight",
             "out_proj.bias", "mask")
    book = loaded(book_modules.MultiHeadAttention(d_in, d_out, ref.int("context_length"), 0.0,
                                                  heads), {k: t[k] for k in names})
    fns["book_mha"] = lambda: book(x)
    if want("book_mha_qint8"):
        # torch.ao.quantization is deprecated for torchao (its eager API has no CPU dynamic
        # int8 Linear of this kind): keep its two long warnings out of the output.
        warnings.filterwarnings("ignore", "torch.ao.quantization is deprecated")
        warnings.filterwarnings("ignore", "torch.quantize_per_tensor")
        qint8 = torch.ao.quantization.quantize_dynamic(book, {nn.Linear}, dtype=torch.qint8)
        fns["book_mha_qint8"] = lambda: qint8(x)
    fns["sdpa"] = lambda: sdpa(x)
    if want("sdpa"):
        print(f"sdpa/{ref.config_name()}: SDPA backend "
              f"{sdpa_backend(*sdpa.project(x), is_causal=True)}")
    if d_in == d_out:  # nn.MultiheadAttention's query width is embed_dim
        mha = loaded(nn.MultiheadAttention(d_out, heads, bias=True, batch_first=True),
                     {"in_proj_weight": qkv_weight, "in_proj_bias": torch.zeros(3 * d_out),
                      "out_proj.weight": t["out_proj.weight"], "out_proj.bias": t["out_proj.bias"]})
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1])
        fns["nn_mha"] = lambda: mha(x, x, x, attn_mask=mask, is_causal=True,
                                    need_weights=False)[0]
    return fns


def gqa_fns(ref, want):
    """{variant: fn} of a gqa or gqa_decode file."""
    if ref.int("window") != 0:
        raise pc.PeerMismatch(f"{ref.path}: sliding windows are not run by this peer")
    freq_config = None
    if "rope_scaling_factor" in ref.metadata:
        freq_config = {"factor": ref.float("rope_scaling_factor"),
                       **{k: ref.float("rope_" + k) for k in (
                           "low_freq_factor", "high_freq_factor", "original_context_length")}}
    shape = (ref.int("d_in"), ref.int("d_out"), ref.int("context_length"),
             ref.int("num_heads"), ref.int("num_kv_groups"), ref.float("rope_theta_base"),
             freq_config)
    state = {k: v for k, v in ref.tensors.items() if k not in ("x", "y")}
    book = loaded(GroupedQueryAttentionBook(*shape), state)
    sdpa = loaded(GroupedQueryAttentionSdpa(*shape), state)
    x = tensor(ref.x)
    if ref.kind == "gqa":
        mask = book_gqa.attention_mask(0, x.shape[1])
        print(f"gqa_sdpa/{ref.config_name()}: SDPA backend "
              f"{sdpa_backend(*sdpa.project(x), is_causal=True, enable_gqa=True)}")
        return {"gqa_sdpa": lambda: sdpa(x), "gqa_book": lambda: book(x, mask)}
    prompt = x.shape[1] - 1
    _, keys, values = sdpa.project(x[:, :prompt])
    cache, token = (keys.contiguous(), values.contiguous()), x[:, prompt:].contiguous()
    mask = book_gqa.attention_mask(prompt, prompt + 1)
    print(f"gqa_sdpa_decode/{ref.config_name()}: SDPA backend "
          f"{sdpa_backend(*sdpa.project(token, prompt, cache), enable_gqa=True)}")
    return {"gqa_sdpa_decode": lambda: sdpa(token, prompt, cache),
            "gqa_book_decode": lambda: book(token, mask, prompt, cache)}


def flops(ref):
    """bench/README.md's causal FLOPs of one call (RoPE and softmax not counted)."""
    batch, d_in, d_out = ref.int("batch"), ref.int("d_in"), ref.int("d_out")
    heads = ref.int("num_heads")
    kv_dim = ref.int("num_kv_groups") * (d_out // heads)
    tokens = ref.int("tokens")
    if ref.kind.endswith("decode"):
        queries, pairs = 1, tokens
    else:
        queries, pairs = tokens, tokens * (tokens + 1) / 2.0
    fixed = 2.0 * batch * queries * (d_in * (d_out + 2 * kv_dim) + d_out * d_out)
    return fixed + 4.0 * batch * d_out * pairs


def describe():
    """PyTorch's build, threading and CPU capability: printed, and as JSON context."""
    build = [line.strip(" -") for line in torch.__config__.show().splitlines()
             if re.search(r"Math Kernel|MKL-DNN|oneDNN|OpenMP", line)]
    parallel = [line.strip() for line in torch.__config__.parallel_info().splitlines()
                if re.search(r"parallel backend|NUM_THREADS", line)]
    context = {"torch2_version": torch.__version__, "torch2_build": "; ".join(build),
               "torch2_parallel": "; ".join(parallel),
               "torch2_cpu_capability": torch.backends.cpu.get_cpu_capability(),
               "torch2_quantized_engine": torch.backends.quantized.engine,
               "torch2_mkldnn_available": str(torch.backends.mkldnn.is_available())}
    print(f"PyTorch {torch.__version__} ({os.path.dirname(torch.__file__)})")
    for line in build + parallel:
        print(f"  {line}")
    print(f"  CPU capability: {context['torch2_cpu_capability']}; quantized engine "
          f"(book_mha_qint8): {context['torch2_quantized_engine']}", flush=True)
    return context


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    pc.add_arguments(parser)
    args = parser.parse_args()
    context = describe()
    engine = f"PyTorch {torch.__version__}"
    refs = pc.load_references(args.reference_dir)
    jobs = []
    with torch.inference_mode():
        for ref in refs:
            config = ref.config_name()

            def run_names(variant, config=config):
                names = {n: f"torch2/{variant}/{config}/threads:{n}/real_time"
                         for n in args.threads}
                return {n: r for n, r in names.items() if pc.wanted(args, r)}

            want = lambda variant: bool(run_names(variant))  # noqa: E731
            if not any(want(v) for v in VARIANTS[ref.kind]):
                continue  # not even loaded
            build = mha_fns if ref.kind.startswith("mha") else gqa_fns
            work = flops(ref)
            reps = args.big_repetitions if work >= 2e10 else args.repetitions
            for variant, fn in build(ref, want).items():
                int8 = variant.endswith("_qint8")
                for n, run_name in run_names(variant).items():
                    setup = (lambda n: lambda: torch.set_num_threads(n))(n)
                    setup()
                    error = pc.check(run_name, fn().numpy(), ref,
                                     INT8_TOLERANCE if int8 else pc.FLOAT32_TOLERANCE)
                    counter = "rel_l2_error" if int8 else "rel_l2_vs_attn"
                    jobs.append(pc.Job(run_name, fn, n, reps, engine,
                                       "int8 (dynamic)" if int8 else "fp32", setup=setup,
                                       counters={counter: error}, flops=work))
        rows = pc.run_jobs(jobs, args)
    pc.write_json(args.out, "bench/peers/torch2_peer.py", context, rows)


if __name__ == "__main__":
    main()
