#!/usr/bin/python3
"""PyTorch peer of attn_attention_bench's grouped-query attention rows (bench/gqa_bench.h).

The Llama 3.2 1B attention layer: d_in = d_out = 2048, 32 heads of 64, 8 key/value groups,
RoPE with theta 500,000 and Llama 3's frequency scaling (factor 32, low_freq_factor 1,
high_freq_factor 4, original_context_length 8192) over a context of 8192, B = 1, no biases.
Under torch.no_grad(), with torch.set_num_threads(n) and OpenBLAS limited to n threads
(torch_mha.py's helpers), n = 1, 2:
  torch/gqa_book/llama32_1b_T1024/...
      the book's GroupedQueryAttention (its llama3.py): projections, RoPE on queries and keys
      (compute_rope_params, apply_rope: scripts/book_gqa.py's copies of the book's), keys and
      values repeat_interleave'd to the 32 heads, scores masked_fill'ed with -inf above the
      diagonal, softmax(scores / sqrt(64)), weights @ values, out_proj; forward over
      T = 1024 tokens
  torch/gqa_book_decode_1_after_4095/llama32_1b_kv8/...
      the same module's KV-cache step (the book's kv_cache/llama3.py): one token at position
      4095, its rotated key and value torch.cat'ed to the cached 4095 (kept, as attn's
      cache.rewind(4095) does, so that every call is the same step), then as above
  torch/gqa_sdpa/..., torch/gqa_sdpa_decode_1_after_4095/...
      the same with torch.nn.functional.scaled_dot_product_attention in place of the
      scores, mask, softmax and weights @ values (is_causal for the prefill; the decoded
      token sees every key), with enable_gqa=True where the function takes it, else after
      repeat_interleave. Only where torch has the function (2.0 and later): with PyTorch 1.13
      the peer prints one line saying so and skips them.
The causal mask and the RoPE tables (cos, sin for 8192 positions) are made once, outside the
timing, as the book's model makes them for its layers. Weights: torch.manual_seed(123), then
the module (W_key, W_value, W_query, out_proj, as attn's GroupedQueryAttention draws them);
input: torch.rand(1, T, 2048) drawn right after it (decoding: torch.rand(1, 4096, 2048),
tokens 0..4094 the prompt, 4095 the decoded token), as attn_attention_bench draws them: both
run the same weights on the same input.

Check: with --reference-dir, before any timing, each output is compared with attn's output of
the same benchmark (gqa_reference_<config>.safetensors, written there by
attn_attention_bench when bench/run.sh sets ATTN_BENCH_REFERENCE_DIR): the relative L2 error
||y_torch - y_attn|| / ||y_attn|| is recorded (counter rel_l2_vs_attn) and above --tolerance
the peer stops with an error. A missing reference (attn did not run that benchmark) is
reported as not checked (rel_l2_vs_attn -1).

Timing and output as torch_mha.py: repetitions of at least --min-time seconds (at least one
call) of all benchmarks in a random order, medians written as Google Benchmark JSON
(real_time, cpu_time in ms) for bench/report.py. Counters: flops_causal (the formula of
bench/gqa_bench.h), flops_dense (the full T x T scores the book's module computes),
peak_rss_bytes, rel_l2_vs_attn. Without torch it prints a message and exits with status 0.
"""

import argparse
import json
import os
import platform
import re
import statistics
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "scripts"))
import torch_mha  # noqa: E402  (exits with status 0 when torch is missing)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from book_gqa import apply_rope, compute_rope_params  # noqa: E402  (the book's RoPE)

D_MODEL, HEADS, KV_GROUPS, CONTEXT = 2048, 32, 8, 8192
HEAD_DIM = D_MODEL // HEADS
PROMPT = 4095  # decoding: the token at position 4095 after 4095 cached
ROPE_THETA = 500_000.0
ROPE_FREQ = {"factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
             "original_context_length": 8192}

# (config, tokens): prefill; (config, kv_groups): decoding. Names as attn_attention_bench's.
PREFILL = [("llama32_1b_T1024", 1024)]
DECODE = [("llama32_1b_kv8", KV_GROUPS)]


# --- The book's module -----------------------------------------------------------------

class GroupedQueryAttention(nn.Module):
    """The book's GroupedQueryAttention with its KV-cache forward (no biases), as
    scripts/book_gqa.py's, which the tests compare attn with, less what a benchmark must
    not time: the mask comes from the caller (made once, as the book's model does) and the
    softmax weights are not kept."""

    def __init__(self, d_in, d_out, num_heads, num_kv_groups):
        super().__init__()
        assert d_out % num_heads == 0 and num_heads % num_kv_groups == 0
        self.d_out, self.num_heads = d_out, num_heads
        self.head_dim = d_out // num_heads
        self.W_key = nn.Linear(d_in, num_kv_groups * self.head_dim, bias=False)
        self.W_value = nn.Linear(d_in, num_kv_groups * self.head_dim, bias=False)
        self.num_kv_groups = num_kv_groups
        self.group_size = num_heads // num_kv_groups
        self.W_query = nn.Linear(d_in, d_out, bias=False)
        self.out_proj = nn.Linear(d_out, d_out, bias=False)

    def project(self, x, cos, sin, start_pos=0, cache=None):
        """Rotated queries (b, H, T, hd); keys and values (b, G, cached + T, hd): the new
        tokens' appended to the cache's (the next cache)."""
        b, num_tokens, _ = x.shape
        queries = self.W_query(x).view(b, num_tokens, self.num_heads, self.head_dim)
        keys = self.W_key(x).view(b, num_tokens, self.num_kv_groups, self.head_dim)
        values = self.W_value(x).view(b, num_tokens, self.num_kv_groups, self.head_dim)
        queries = apply_rope(queries.transpose(1, 2), cos, sin, offset=start_pos)
        keys = apply_rope(keys.transpose(1, 2), cos, sin, offset=start_pos)
        values = values.transpose(1, 2)
        if cache is not None:
            keys = torch.cat([cache[0], keys], dim=2)
            values = torch.cat([cache[1], values], dim=2)
        return queries, keys, values

    def forward(self, x, mask, cos, sin, start_pos=0, cache=None):
        b, num_tokens, _ = x.shape
        queries, keys, values = self.project(x, cos, sin, start_pos, cache)
        keys = keys.repeat_interleave(self.group_size, dim=1)
        values = values.repeat_interleave(self.group_size, dim=1)
        scores = queries @ keys.transpose(2, 3)
        scores = scores.masked_fill(mask, -torch.inf)
        weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)
        context = (weights @ values).transpose(1, 2).reshape(b, num_tokens, self.d_out)
        return self.out_proj(context)


def sdpa_gqa_argument():
    """None without F.scaled_dot_product_attention, else whether it takes enable_gqa."""
    sdpa = getattr(torch.nn.functional, "scaled_dot_product_attention", None)
    if sdpa is None:
        return None
    q, kv = torch.zeros(1, 2, 1, 4), torch.zeros(1, 1, 1, 4)
    try:
        sdpa(q, kv, kv, enable_gqa=True)
        return True
    except TypeError:
        return False


class GroupedQueryAttentionSdpa(GroupedQueryAttention):
    """The same parameters; the attention by F.scaled_dot_product_attention."""

    enable_gqa = False  # set when the function takes enable_gqa

    def forward(self, x, mask, cos, sin, start_pos=0, cache=None):
        b, num_tokens, _ = x.shape
        queries, keys, values = self.project(x, cos, sin, start_pos, cache)
        extra = {}
        if self.enable_gqa:
            extra["enable_gqa"] = True
        else:
            keys = keys.repeat_interleave(self.group_size, dim=1)
            values = values.repeat_interleave(self.group_size, dim=1)
        # Prefill: causal. Decoding one token: it sees every key (is_causal would align the
        # mask to the top-left corner, hiding all but the first key).
        context = torch.nn.functional.scaled_dot_product_attention(
            queries, keys, values, is_causal=cache is None, **extra)
        context = context.transpose(1, 2).reshape(b, num_tokens, self.d_out)
        return self.out_proj(context)


# --- attn's reference outputs ----------------------------------------------------------

def load_reference(path):
    """Tensor "y" of a safetensors file written by attn::save_safetensors (F32)."""
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    entry = json.loads(data[8:8 + header_len])["y"]
    begin, end = entry["data_offsets"]
    raw = bytearray(data[8 + header_len + begin:8 + header_len + end])
    return torch.frombuffer(raw, dtype=torch.float32).reshape(entry["shape"])


def check(run_config, y, args):
    """rel L2 error of y against attn's reference, -1 when there is none; stops above
    the tolerance."""
    if not args.reference_dir:
        return -1.0
    path = os.path.join(args.reference_dir, f"gqa_reference_{run_config}.safetensors")
    if not os.path.exists(path):
        print(f"{run_config}: no attn reference ({path}): output not checked", flush=True)
        return -1.0
    reference = load_reference(path)
    if tuple(reference.shape) != tuple(y.shape):
        sys.exit(f"torch_gqa.py: {run_config}: attn's output has shape "
                 f"{tuple(reference.shape)}, PyTorch's {tuple(y.shape)}")
    error = torch_mha.rel_l2_error(y, reference)
    print(f"{run_config}: relative L2 error against attn's output {error:.2e}", flush=True)
    if not error <= args.tolerance:
        sys.exit(f"torch_gqa.py: {run_config}: PyTorch's output differs from attn's "
                 f"(relative L2 error {error:.3g} > {args.tolerance:g}); not timing it")
    return error


# --- The benchmark ---------------------------------------------------------------------

def make_module(variant, kv_groups):
    torch.manual_seed(123)
    cls = GroupedQueryAttentionSdpa if variant == "gqa_sdpa" else GroupedQueryAttention
    module = cls(D_MODEL, D_MODEL, HEADS, kv_groups)
    module.eval()
    return module


def prefill_flops(tokens, kv_groups):
    """(dense, causal) FLOPs: bench/gqa_bench.h's formula; dense counts all T x T scores."""
    kv_dim = kv_groups * HEAD_DIM
    fixed = 2.0 * tokens * D_MODEL * (D_MODEL + 2 * kv_dim) + 2.0 * tokens * D_MODEL * D_MODEL
    return (fixed + 4.0 * HEADS * HEAD_DIM * tokens * tokens,
            fixed + 4.0 * HEADS * HEAD_DIM * tokens * (tokens + 1) / 2.0)


def make_jobs(args, variants, cos, sin):
    jobs = []

    def names(variant, config):
        out = {n: f"{args.prefix}/{variant}/{config}/threads:{n}/real_time"
               for n in args.threads}
        return {n: r for n, r in out.items() if not args.filter or re.search(args.filter, r)}

    with torch.no_grad():
        for variant in variants:
            for config, tokens in PREFILL:
                wanted = names(variant, config)
                if not wanted:
                    continue
                module = make_module(variant, KV_GROUPS)
                x = torch.rand(1, tokens, D_MODEL)
                mask = torch.triu(torch.ones(tokens, tokens, dtype=torch.bool), diagonal=1)
                fn = (lambda m, v, k: lambda: m(v, k, cos, sin))(module, x, mask)
                error = check(f"prefill_{config}", fn(), args)
                for threads, run_name in wanted.items():
                    job = torch_mha.Job(run_name, fn, threads, args.repetitions,
                                        prefill_flops(tokens, KV_GROUPS))
                    job.counters = {"rel_l2_vs_attn": error}
                    jobs.append(job)
            decode = variant + "_decode_1_after_4095"
            for config, kv_groups in DECODE:
                wanted = names(decode, config)
                if not wanted:
                    continue
                module = make_module(variant, kv_groups)
                x = torch.rand(1, PROMPT + 1, D_MODEL)
                # The prompt's rotated keys and its values: the cache its forward returns.
                _, keys, values = module.project(x[:, :PROMPT], cos, sin)
                cache = (keys.contiguous(), values.contiguous())
                token = x[:, PROMPT:].contiguous()
                mask = torch.triu(torch.ones(PROMPT + 1, PROMPT + 1, dtype=torch.bool),
                                  diagonal=1)[PROMPT:, :]
                fn = (lambda m, v, k, c: lambda: m(v, k, cos, sin, start_pos=PROMPT, cache=c))(
                    module, token, mask, cache)
                error = check(f"decode_{config}", fn(), args)
                for threads, run_name in wanted.items():
                    job = torch_mha.Job(run_name, fn, threads, args.repetitions, (None, None))
                    job.counters = {"rel_l2_vs_attn": error, "kv_groups": float(kv_groups)}
                    jobs.append(job)
    return jobs


def run(jobs, args, blas_libs):
    """All repetitions of all jobs in a random order, as torch_mha.py's run()."""
    with torch.no_grad():
        torch_mha.peer_common.time_interleaved(
            jobs, args, lambda job: torch_mha.set_threads(job.threads, blas_libs),
            lambda job: setattr(job, "rss", torch_mha.peak_rss_growth(job.fn)))

    benchmarks = []
    for job in jobs:
        median, cpu = statistics.median(job.wall), statistics.median(job.cpu)
        entry = {"name": job.run_name + "_median", "run_name": job.run_name,
                 "run_type": "aggregate", "aggregate_name": "median", "repetitions": job.reps,
                 "threads": 1, "iterations": job.calls, "real_time": median * 1e3,
                 "cpu_time": cpu * 1e3, "time_unit": "ms", "peak_rss_bytes": float(job.rss),
                 "torch_threads": float(job.threads), "label": args.label, **job.counters}
        dense, causal = job.flops
        if causal is not None:
            entry.update({"flops_dense": dense, "flops_causal": causal,
                          "GFLOPS_dense": dense / median * 1e-9,
                          "GFLOPS_causal": causal / median * 1e-9})
        benchmarks.append(entry)
        spread = " ".join(f"{t * 1e3:.3f}" for t in job.wall)
        print(f"{job.run_name:<66} {median * 1e3:10.3f} ms (cpu {cpu * 1e3:.3f})  "
              f"({job.reps} x {job.calls} calls: {spread})  rss +{job.rss / 2**20:.1f} MiB",
              flush=True)
    return benchmarks


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write Google Benchmark JSON here")
    parser.add_argument("--filter", help="regex on names (e.g. 'gqa_book/')")
    parser.add_argument("--prefix", default="torch", help="first component of the names")
    parser.add_argument("--label", default="", help="label stored with each result")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=0.2,
                        help="seconds per repetition (at least one call)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the interleaving order")
    parser.add_argument("--reference-dir",
                        help="check outputs against attn's gqa_reference_*.safetensors here")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest relative L2 error against attn's output")
    parser.add_argument("--progress", action="store_true",
                        help="print '[progress] <done>/<total> <name>' lines to stderr")
    args = parser.parse_args()

    torch.ones(2, 2) @ torch.ones(2, 2)  # make sure the BLAS library is loaded
    blas_libs = torch_mha.openblas_libraries()
    context = torch_mha.describe(blas_libs)
    variants = ["gqa_book"]
    gqa_argument = sdpa_gqa_argument()
    if gqa_argument is None:
        note = (f"gqa_sdpa: skipped (PyTorch {torch.__version__} has no "
                "torch.nn.functional.scaled_dot_product_attention; it came with 2.0)")
    else:
        GroupedQueryAttentionSdpa.enable_gqa = gqa_argument
        variants.append("gqa_sdpa")
        note = ("gqa_sdpa: scaled_dot_product_attention with enable_gqa=True" if gqa_argument
                else "gqa_sdpa: scaled_dot_product_attention after repeat_interleave "
                     "(no enable_gqa argument)")
    print(note, flush=True)
    context.update({"executable": "bench/peers/torch_gqa.py", "host_name": platform.node(),
                    "num_cpus": os.cpu_count(), "cpu_model": torch_mha.peer_common.cpu_model(),
                    "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "sdpa_note": note})
    cos, sin = compute_rope_params(HEAD_DIM, ROPE_THETA, CONTEXT, freq_config=ROPE_FREQ)
    jobs = make_jobs(args, variants, cos, sin)
    benchmarks = run(jobs, args, blas_libs)
    if args.out:
        with open(args.out, "w") as out:
            json.dump({"context": context, "benchmarks": benchmarks}, out, indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
