#!/usr/bin/python3
"""OpenVINO peer of attn's attention benchmarks: attn's modules, weights and inputs (the
reference files of bench/peer_reference.cc) as OpenVINO graphs on its CPU plugin.

Each graph is built from OpenVINO opset 13 operators (ScaledDotProductAttention-13), the
weights as Constants, x as the Parameter, and compiled
for "CPU" with PERFORMANCE_HINT LATENCY (OpenVINO's recommended setting for one request at
a time) and INFERENCE_NUM_THREADS n, one compiled model per (graph, n, precision), run by
one InferRequest whose input tensors share the memory of arrays made once, outside the
timing. One call is request.infer() (outputs shared, not copied). Rows (names end in
/real_time), n = --threads:
  openvino/mha_f32/<config>/threads:<n>     (B1_T64 ... B1_T2048, B8_T256, B8_T1024)
      the book's MultiHeadAttention (eval, no qkv biases): Q, K, V = three MatMuls of x
      (B, T, d_in) with W_query, W_key, W_value (transpose_b, PyTorch's [d_out, d_in]
      layout; one MatMul with the fused QKV weight and a Split was no faster here), each
      reshaped to (B, T, H, hd) and transposed to (B, H, T, hd);
      ScaledDotProductAttention(q, k, v, causal=True) (scale 1/sqrt(hd)); transposed back,
      reshaped to (B, T, d_out); MatMul with out_proj.weight, Add out_proj.bias.
      INFERENCE_PRECISION_HINT f32; checked at 1e-4 against attn's float32 output.
      (OpenVINO 2026.4's CPU plugin runs this attention as one fused "Subgraph" node.)
  openvino/mha_default/<config>/threads:<n>
      the same graph with no precision hint: OpenVINO's default on this machine (bf16 on
      CPUs with BF16, where MatMuls and attention run in bf16; the input and output stay
      f32). Precision "<hint> (default)", the compiled model's INFERENCE_PRECISION_HINT;
      counter rel_l2_error (= rel_l2_vs_attn, against attn's float32 output); checked at
      5e-2, loose enough for bf16, tight enough to catch a wrong graph.
  openvino/gqa_f32/llama32_1b_T1024/threads:<n>, openvino/gqa_default/...
      the Llama 3.2 1B layer (attn's GroupedQueryAttention, no biases): Q (B, H, T, hd),
      K, V (B, G, T, hd) as above; RoPE on Q and K in the graph as the book's apply_rope,
      t * cos + concat(-t[..., hd/2:], t[..., :hd/2]) * sin (Slice, Negative, Concat,
      Multiply, Add), cos and sin the rows 0..T-1 of scripts/book_gqa.py's
      compute_rope_params (the file's rope_* metadata, Llama 3 scaling), made once as
      Constants; attention in OpenVINO's own GQA form (what its PyTorch frontend makes of
      scaled_dot_product_attention(enable_gqa=True)): Q reshaped to (B, G, H/G, T, hd), K
      and V unsqueezed to (B, G, 1, T, hd), one causal ScaledDotProductAttention
      broadcasting each K/V head over its H/G query heads (no Broadcast or Tile copies
      them: see the runtime graphs printed at the check); then as MHA without the bias.
      f32 and default precision as the mha rows. (OpenVINO 2026.4's CPU plugin decomposes
      this rank-5 attention into MatMul, Softmax, MatMul over the whole (T, T) scores,
      the causal mask a constant.)
  openvino/gqa_decode_f32/llama32_1b_kv8/threads:<n>
      one decoded token (position P = 4095) after a P-token prompt, stateless: the graph
      takes the token x[:, P:] and the prompt's rotated keys and values (1, G, P, hd) as
      inputs (OpenVINO's own KV cache, a stateful ReadValue/Assign model, would grow by a
      token each call), projects the token, applies RoPE with row P of the tables
      (Constants), Concats its K and V to the past ones (a copy of the cache each call,
      as the PyTorch peer's torch.cat), ScaledDotProductAttention without a mask in the
      GQA form above, out_proj. The prompt's keys and values come from OpenVINO itself (a
      graph of the same projections and RoPE over x[:, :P], f32, run once outside the
      timing). f32, checked at 1e-4 against attn's KV-cache step.
  openvino/decode_f32/gpt2_small/threads:<n>
      the same for the book's MultiHeadAttention at GPT-2 small's shape (token 1023 after
      1023, 12 heads, no RoPE, out_proj with bias).
Every row runs once at its own thread count before any timing and is compared with attn's
output y (counter rel_l2_vs_attn; peer_common.check); above the tolerance the peer stops.
Prefill rows count the FLOPs of bench/README.md (causal attention, no softmax or RoPE).
Timing, JSON and names as peer_common. Without OpenVINO it prints one line and exits with
status 0.
"""

import argparse
import collections
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "scripts"))
import peer_common  # noqa: E402

try:
    import openvino as ov
    import openvino.opset13 as ops
except ImportError as error:  # OpenVINO is an optional peer
    print(f"openvino_peer.py: OpenVINO is not available ({error}); skipping the OpenVINO peer.")
    sys.exit(0)

import numpy as np  # noqa: E402

ENGINE = f"OpenVINO {ov.__version__.split('-')[0]}"
DEFAULT_TOLERANCE = 5e-2  # default-precision rows (bf16): catches a broken graph, not rounding
BIG_CALL_SECONDS = 0.5  # a check call this long: the job gets --big-repetitions
PRECISION_NAMES = {"f32": "fp32", "f16": "fp16", "bf16": "bf16"}

# Variants of each kind of reference file: (name, INFERENCE_PRECISION_HINT or None).
VARIANTS = {
    "mha": [("mha_f32", "f32"), ("mha_default", None)],
    "gqa": [("gqa_f32", "f32"), ("gqa_default", None)],
    "mha_decode": [("decode_f32", "f32")],
    "gqa_decode": [("gqa_decode_f32", "f32")],
}


# --- Graphs --------------------------------------------------------------------------

class Layer:
    """The shapes and weights of a reference file's module."""

    def __init__(self, ref):
        self.ref = ref
        self.batch, self.tokens = ref.int("batch"), ref.int("tokens")
        self.d_in, self.d_out = ref.int("d_in"), ref.int("d_out")
        self.heads, self.groups = ref.int("num_heads"), ref.int("num_kv_groups")
        self.head_dim = self.d_out // self.heads
        self.prompt = ref.int("prompt_tokens") if ref.kind.endswith("_decode") else 0
        self.cos = self.sin = None
        if ref.kind.startswith("gqa"):
            self.cos, self.sin = rope_tables(ref, self.head_dim)

    def rope_rows(self, first, count):
        """(cos, sin) rows first .. first + count - 1, (count, hd), or None without RoPE."""
        if self.cos is None:
            return None
        return self.cos[first:first + count], self.sin[first:first + count]

    def flops(self):
        """bench/README.md's FLOPs of a causal prefill: projections, out_proj, attention."""
        b, t, hd = self.batch, self.tokens, self.head_dim
        kv_dim = self.groups * hd
        return (2.0 * b * t * self.d_in * (self.d_out + 2 * kv_dim) + 2.0 * b * t * self.d_out ** 2
                + 4.0 * b * self.heads * hd * t * (t + 1) / 2)


def rope_tables(ref, head_dim):
    """The book's compute_rope_params for the file's rope_* metadata, as float32 numpy."""
    from book_gqa import compute_rope_params  # needs torch; only the GQA files use it
    freq_config = None
    if ref.float("rope_scaling_factor") > 0:
        freq_config = {"factor": ref.float("rope_scaling_factor"),
                       "low_freq_factor": ref.float("rope_low_freq_factor"),
                       "high_freq_factor": ref.float("rope_high_freq_factor"),
                       "original_context_length": ref.int("rope_original_context_length")}
    cos, sin = compute_rope_params(head_dim, ref.float("rope_theta_base"),
                                   ref.int("context_length"), freq_config=freq_config)
    return cos.numpy().astype(np.float32), sin.numpy().astype(np.float32)


def linear(x, weight, bias=None):
    """x (..., d_in) times weight [d_out, d_in] transposed (PyTorch's Linear), plus bias."""
    y = ops.matmul(x, ops.constant(np.ascontiguousarray(weight)), False, True)
    return y if bias is None else ops.add(y, ops.constant(np.ascontiguousarray(bias)))


def split_heads(t, batch, tokens, heads, head_dim):
    """(B, T, heads * hd) -> (B, heads, T, hd)."""
    return ops.transpose(ops.reshape(t, [batch, tokens, heads, head_dim], False), [0, 2, 1, 3])


def rope(t, rows):
    """The book's apply_rope on t (B, heads, T, hd): t * cos + concat(-t2, t1) * sin."""
    cos, sin = rows
    half = cos.shape[-1] // 2
    t1 = ops.slice(t, [0], [half], [1], [3])
    t2 = ops.slice(t, [half], [2 * half], [1], [3])
    rotated = ops.concat([ops.negative(t2), t1], 3)
    return ops.add(ops.multiply(t, ops.constant(cos)), ops.multiply(rotated, ops.constant(sin)))


def project(layer, x, batch, tokens, first):
    """Queries (B, H, T, hd), keys and values (B, G, T, hd) of x (B, T, d_in) at positions
    first .. first + T - 1: the three projections, RoPE on queries and keys (GQA)."""
    w = layer.ref.weight
    q = split_heads(linear(x, w("W_query.weight")), batch, tokens, layer.heads, layer.head_dim)
    k = split_heads(linear(x, w("W_key.weight")), batch, tokens, layer.groups, layer.head_dim)
    v = split_heads(linear(x, w("W_value.weight")), batch, tokens, layer.groups, layer.head_dim)
    rows = layer.rope_rows(first, tokens)
    if rows is not None:
        q, k = rope(q, rows), rope(k, rows)
    return q, k, v


def attend_and_project(layer, q, k, v, batch, tokens, causal):
    """ScaledDotProductAttention of q (B, H, T, hd) on k, v (B, G, S, hd), then out_proj:
    (B, T, d_out). With G < H each K/V head serves H/G query heads by broadcasting
    (queries (B, G, H/G, T, hd), keys and values (B, G, 1, S, hd))."""
    h, g, hd = layer.heads, layer.groups, layer.head_dim
    if g == h:
        context = ops.scaled_dot_product_attention(q, k, v, causal=causal)
    else:
        q = ops.reshape(q, [batch, g, h // g, tokens, hd], False)
        context = ops.scaled_dot_product_attention(q, ops.unsqueeze(k, 2), ops.unsqueeze(v, 2),
                                                   causal=causal)
        context = ops.reshape(context, [batch, h, tokens, hd], False)
    context = ops.reshape(ops.transpose(context, [0, 2, 1, 3]), [batch, tokens, layer.d_out],
                          False)
    bias = layer.ref.tensors.get("out_proj.bias")
    return linear(context, layer.ref.weight("out_proj.weight"), bias)


def prefill_model(layer):
    """x (B, T, d_in) -> y (B, T, d_out), causal."""
    b, t = layer.batch, layer.tokens
    x = ops.parameter([b, t, layer.d_in], np.float32, name="x")
    q, k, v = project(layer, x, b, t, 0)
    return ov.Model([attend_and_project(layer, q, k, v, b, t, causal=True)], [x], "prefill")


def prompt_model(layer):
    """The prompt x (1, P, d_in) -> its rotated keys and its values, (1, G, P, hd) each."""
    x = ops.parameter([1, layer.prompt, layer.d_in], np.float32, name="prompt")
    _, k, v = project(layer, x, 1, layer.prompt, 0)
    return ov.Model([k, v], [x], "prompt")


def step_model(layer):
    """(token (1, 1, d_in), past keys, past values (1, G, P, hd)) -> y (1, 1, d_out): the
    token at position P attends to the P past tokens and itself (no mask)."""
    past_shape = [1, layer.groups, layer.prompt, layer.head_dim]
    token = ops.parameter([1, 1, layer.d_in], np.float32, name="token")
    past_k = ops.parameter(past_shape, np.float32, name="past_keys")
    past_v = ops.parameter(past_shape, np.float32, name="past_values")
    q, k, v = project(layer, token, 1, 1, layer.prompt)
    k, v = ops.concat([past_k, k], 2), ops.concat([past_v, v], 2)
    y = attend_and_project(layer, q, k, v, 1, 1, causal=False)
    return ov.Model([y], [token, past_k, past_v], "decode_step")


# --- Compiling and running -----------------------------------------------------------

def compile_config(threads, precision):
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    if precision is not None:
        config["INFERENCE_PRECISION_HINT"] = precision
    return config


def runtime_graph(compiled):
    """The compiled model's layers with their run-time precisions, by count: whether
    attention became one fused node or MatMuls, whether K/V heads were copied."""
    layers = collections.Counter()
    for node in compiled.get_runtime_model().get_ordered_ops():
        info = node.get_rt_info()
        kind = info["layerType"].astype(str)
        if kind not in ("Const", "Input", "Output"):
            layers[f"{kind}:{info['runtimePrecision'].astype(str)}"] += 1
    return ", ".join(f"{k} x{n}" if n > 1 else k for k, n in layers.items())


def precision_of(compiled, hint):
    """The row's precision string and check tolerance: the compiled model's
    INFERENCE_PRECISION_HINT, marked "(default)" where none was given (hint None)."""
    actual = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    name = PRECISION_NAMES.get(actual, actual)
    if hint is not None:
        return name, peer_common.FLOAT32_TOLERANCE
    tolerance = peer_common.FLOAT32_TOLERANCE if actual == "f32" else DEFAULT_TOLERANCE
    return f"{name} (default)", tolerance


def call(request, tensors):
    """One inference, its outputs left in the request. The request does not keep the
    arrays behind its shared-memory input tensors alive: the function holds them."""
    def fn():
        request.infer(share_outputs=True)

    fn.inputs = tensors
    return fn


def model_inputs(layer, core):
    """The graph and its input arrays (made once, outside the timing) for one file."""
    x = np.array(layer.ref.x, dtype=np.float32)  # a writable copy: tensors share its memory
    if layer.prompt == 0:
        return prefill_model(layer), [x]
    prompt = core.compile_model(prompt_model(layer), "CPU", compile_config(1, "f32"))
    past_k, past_v = prompt.create_infer_request().infer([x[:, :layer.prompt]]).to_tuple()
    token = np.ascontiguousarray(x[:, layer.prompt:])
    return step_model(layer), [token, past_k, past_v]


def make_jobs(refs, args, core, context):
    jobs, graphs = [], {}
    for ref in refs:
        config = ref.config_name()
        layer = model = tensors = None
        for variant, precision in VARIANTS[ref.kind]:
            names = {n: f"openvino/{variant}/{config}/threads:{n}/real_time" for n in args.threads}
            names = {n: r for n, r in names.items() if peer_common.wanted(args, r)}
            if not names:
                continue
            if model is None:
                layer = Layer(ref)
                model, arrays = model_inputs(layer, core)
                tensors = [ov.Tensor(a, shared_memory=True) for a in arrays]
            for threads, run_name in names.items():
                compiled = core.compile_model(model, "CPU", compile_config(threads, precision))
                request = compiled.create_infer_request()
                for i, tensor in enumerate(tensors):
                    request.set_input_tensor(i, tensor)
                label, tolerance = precision_of(compiled, precision)
                start = time.perf_counter()
                request.infer(share_outputs=True)
                seconds = time.perf_counter() - start
                y = np.array(request.get_output_tensor(0).data)
                error = peer_common.check(f"{run_name} [{label}]", y, ref, tolerance)
                graph_key = f"{variant}/{config}/threads:{threads}"
                graphs[graph_key] = runtime_graph(compiled)
                print(f"  runtime graph: {graphs[graph_key]}", flush=True)
                counters = {"rel_l2_vs_attn": error}
                if precision is None:
                    counters["rel_l2_error"] = error
                reps = args.repetitions
                if seconds >= BIG_CALL_SECONDS:
                    reps = min(args.repetitions, args.big_repetitions)
                jobs.append(peer_common.Job(
                    run_name, call(request, tensors), threads, reps, ENGINE, label,
                    counters=counters, flops=layer.flops() if layer.prompt == 0 else None))
    context["openvino_runtime_graphs"] = graphs
    return jobs


def describe(core):
    """The engine, for the console and the JSON context."""
    def get(key):
        return core.get_property("CPU", key)

    return {
        "openvino_version": ov.__version__,
        "openvino_device": get("FULL_DEVICE_NAME"),
        "openvino_default_precision_hint": get("INFERENCE_PRECISION_HINT").get_type_name(),
        "openvino_default_performance_hint": get("PERFORMANCE_HINT").name,
        "openvino_optimization_capabilities": " ".join(get("OPTIMIZATION_CAPABILITIES")),
        "openvino_config": "PERFORMANCE_HINT LATENCY, INFERENCE_NUM_THREADS n; *_f32 rows "
                           "INFERENCE_PRECISION_HINT f32, *_default rows no precision hint",
        "openvino_graph": "opset13 operators, weights as Constants, one InferRequest per "
                          "compiled model; decode rows stateless (past K/V as inputs)",
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    peer_common.add_arguments(parser)
    args = parser.parse_args()

    core = ov.Core()
    context = describe(core)
    print(f"{ENGINE} ({context['openvino_version']}) on {context['openvino_device']}: default "
          f"precision hint {context['openvino_default_precision_hint']}, performance hint "
          f"{context['openvino_default_performance_hint']}, capabilities "
          f"{context['openvino_optimization_capabilities']}", flush=True)
    refs = peer_common.load_references(args.reference_dir, VARIANTS.keys())
    jobs = make_jobs(refs, args, core, context)
    rows = peer_common.run_jobs(jobs, args)
    if not args.check_only:
        peer_common.write_json(args.out, "bench/peers/openvino_peer.py", context, rows)


if __name__ == "__main__":
    main()
