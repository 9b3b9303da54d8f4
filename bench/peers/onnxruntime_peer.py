#!/usr/bin/env python3
"""ONNX Runtime peer: attn's modules as ONNX graphs on ONNX Runtime's CPU execution provider.

Each graph is built with onnx.helper from a reference file's weights (initializers; PyTorch's
Linear weights [out, in] transposed for MatMul) and runs the file's x; its output is checked
against attn's y (peer_common.check) before anything is timed. One InferenceSession per
(model, thread count n): CPUExecutionProvider, graph_optimization_level ORT_ENABLE_ALL,
intra_op_num_threads n, inter_op_num_threads 1, everything else ORT's default. Rows, n in
--threads (default 1 2), each checked at its own n (counter rel_l2_vs_attn):

  onnxruntime/mha/<B1_T64 ... B8_T1024>/threads:<n>/real_time          fp32
      x (B, T, d) -> com.microsoft.Attention(x, [W_query | W_key | W_value], zero bias,
      num_heads, unidirectional=1) -> MatMul out_proj -> Add out_proj.bias; session.run()
      with x as numpy. Attention does the QKV projection itself. Measured at B8_T1024, 1
      thread, CPU time per call (ORT 1.32.0): com.microsoft.Attention 331 ms, QKV MatMul + Split
      + com.microsoft.GroupQueryAttention (kv_num_heads = num_heads) 341, + com.microsoft.
      MultiHeadAttention (unidirectional=1) 355, + ONNX Attention (opset 23, is_causal=1) 362;
      all at 4.9e-7 from attn. The zero bias is there for ORT's quantizer: its QAttention needs
      one.
  onnxruntime/mha_qint8/<config>/...                                   int8 (dynamic)
      onnxruntime.quantization.quantize_dynamic of that model (after quant_pre_process, as ORT's
      quantization docs advise), weight_type QuantType.QInt8: activations quantized to uint8
      at run time, weights int8 per tensor (U8S8: ORT's default and its fast x86-64 kernels;
      its docs note that these can saturate on CPUs without VNNI). The quantizer turns
      Attention into QAttention (int8 QKV projection; softmax and weights @ values in float32)
      and out_proj into DynamicQuantizeLinear + MatMulInteger.
      Counter rel_l2_error (= rel_l2_vs_attn): against attn's float32 y, checked below 5e-2.
  onnxruntime/gqa/llama32_1b_T1024/...                                 fp32
      x -> MatMul [W_query | W_key | W_value] -> com.microsoft.GroupQueryAttention (packed QKV,
      num_heads, kv_num_heads, do_rotary=1, rotary_interleaved=0 (the book's rotate_half),
      cos_cache/sin_cache, seqlens_k = T - 1, total_sequence_length = T; no past) -> MatMul
      out_proj. The op's rotation of the book's tables gives attn's output to 5e-7.
  onnxruntime/gqa_decode/llama32_1b_kv8/...                            fp32
      The same graph with past_key/past_value: one call is the token at position 4095. The
      cache is ORT's shared past/present buffer (BNSH, context_length rows, prompt rows 0..4094
      filled once, outside the timing, with the prompt's rotated keys and values from numpy),
      bound with IOBinding as both past and present, seqlens_k = 4095, total_sequence_length =
      4096. The op writes the token's key and value into row 4095 in place, so every call is
      the same step (attn's cache.rewind(4095)). Chosen over separate past/present tensors
      (ORT copies the cache into a new present each call): 3.1 against 4.0 ms (1 thread).
  onnxruntime/decode/gpt2_small/...                                    fp32
      The book's MultiHeadAttention, one token after the 1023-token prompt: MatMul [W_query |
      W_key | W_value] -> Split -> com.microsoft.MultiHeadAttention(q, k, v, past_key,
      past_value, past_sequence_length = 1023) with the same shared-buffer IOBinding (the token
      sees every cached key: no mask) -> MatMul out_proj -> Add out_proj.bias. Not the
      GroupQueryAttention op: its CPU kernel takes head sizes that are multiples of 16 only,
      and the toy file's is 8.

The RoPE tables are the book's compute_rope_params (context_length positions, the first
head_dim / 2 columns, as GroupQueryAttention takes them) in numpy: inv_freq steps in float32,
theta ** (2i / head_dim) rounded from float64, as torch's float32 pow gives it (inv_freq equals
the book's bit for bit; cos and sin within 1 ulp). A gqa file whose head size is not a multiple
of 16 (the toy files') is skipped with a note. Models are written to a temporary folder only
for the quantizer. Without onnxruntime or onnx the peer prints one line and exits with status 0.
"""

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)

try:
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process
except ImportError as error:  # an optional peer
    print(f"onnxruntime_peer.py: ONNX Runtime, onnx or numpy is not available ({error}); "
          "skipping.")
    sys.exit(0)

from peer_common import (FLOAT32_TOLERANCE, Job, add_arguments, check,  # noqa: E402
                         load_references, run_jobs, wanted, write_json)

ENGINE = f"ONNX Runtime {ort.__version__}"
MS = "com.microsoft"
OPSETS = [helper.make_opsetid("", 21), helper.make_opsetid(MS, 1)]
QINT8_TOLERANCE = 5e-2  # catches a broken model; int8 rounding alone gives about 1e-2
GQA_HEAD_MULTIPLE = 16  # GroupQueryAttention's CPU kernel: head_size % 16 == 0


# --- Graphs ----------------------------------------------------------------------------

def transposed(ref, key):
    """A Linear weight [out, in] as MatMul's B [in, out]."""
    return np.ascontiguousarray(ref.weight(key).T)


def qkv_weight(ref):
    """[W_query | W_key | W_value]: (d_in, d_out + 2 * kv_dim), the packed layout of Attention
    and GroupQueryAttention."""
    return np.ascontiguousarray(np.concatenate(
        [transposed(ref, f"W_{n}.weight") for n in ("query", "key", "value")], axis=1))


def head_dim(ref):
    return ref.int("d_out") // ref.int("num_heads")


def rope_tables(ref):
    """cos, sin (context_length, head_dim / 2) float32: compute_rope_params' tables."""
    f32, hd = np.float32, head_dim(ref)
    exponent = np.arange(0, hd, 2, dtype=f32) / f32(hd)
    powers = np.power(ref.float("rope_theta_base"), exponent.astype(np.float64)).astype(f32)
    inv_freq = f32(1) / powers
    factor = ref.float("rope_scaling_factor")
    if factor > 0:  # Llama 3 frequency scaling
        low, high = ref.float("rope_low_freq_factor"), ref.float("rope_high_freq_factor")
        original = ref.float("rope_original_context_length")
        wavelen = f32(2 * np.pi) / inv_freq
        scaled = np.where(wavelen > f32(original / low), inv_freq / f32(factor), inv_freq)
        smooth = (f32(original) / wavelen - f32(low)) / f32(high - low)
        smoothed = (f32(1) - smooth) * (inv_freq / f32(factor)) + smooth * inv_freq
        medium = (wavelen <= f32(original / low)) & (wavelen >= f32(original / high))
        inv_freq = np.where(medium, smoothed, scaled).astype(f32)
    angles = np.arange(ref.int("context_length"), dtype=f32)[:, None] * inv_freq[None, :]
    return np.cos(angles), np.sin(angles)


def model(nodes, inputs, outputs, initializers):
    """inputs, outputs: (name, TensorProto type, shape) of the graph's."""
    info = [[helper.make_tensor_value_info(*io) for io in ios] for ios in (inputs, outputs)]
    inits = [numpy_helper.from_array(array, name) for name, array in initializers.items()]
    graph = helper.make_graph(nodes, "attn_peer", info[0], info[1], inits)
    return helper.make_model(graph, opset_imports=OPSETS)


def mha_model(ref):
    """x (B, T, d_in) -> y (B, T, d_out): the book's MultiHeadAttention, causal."""
    d_in, d = ref.int("d_in"), ref.int("d_out")
    nodes = [helper.make_node("Attention", ["x", "Wqkv", "bqkv"], ["context"], domain=MS,
                              num_heads=ref.int("num_heads"), unidirectional=1),
             helper.make_node("MatMul", ["context", "Wo"], ["projected"]),
             helper.make_node("Add", ["projected", "bo"], ["y"])]
    return model(nodes, [("x", TensorProto.FLOAT, ["B", "T", d_in])],
                 [("y", TensorProto.FLOAT, ["B", "T", d])],
                 {"Wqkv": qkv_weight(ref), "bqkv": np.zeros(3 * d, np.float32),
                  "Wo": transposed(ref, "out_proj.weight"), "bo": ref.weight("out_proj.bias")})


def cache_io(heads, hd):
    return [(f"{p}_{n}", TensorProto.FLOAT, [1, heads, "C", hd])
            for p in ("past", "present") for n in ("key", "value")]


def gqa_model(ref, decode):
    """x (1, T, d_in) -> y (1, T, d_out), with past/present_key/value (1, G, C, hd) when
    decoding; inputs seqlens_k (1,) and total_sequence_length () int32."""
    d_in, d, kv_heads = ref.int("d_in"), ref.int("d_out"), ref.int("num_kv_groups")
    cos, sin = rope_tables(ref)
    past = ["past_key", "past_value"] if decode else ["", ""]
    cache = cache_io(kv_heads, head_dim(ref)) if decode else []
    nodes = [helper.make_node("MatMul", ["x", "Wqkv"], ["qkv"]),
             helper.make_node("GroupQueryAttention",
                              ["qkv", "", ""] + past + ["seqlens_k", "total_sequence_length",
                                                        "cos_cache", "sin_cache"],
                              ["context"] + [io[0] for io in cache[2:]], domain=MS,
                              num_heads=ref.int("num_heads"), kv_num_heads=kv_heads,
                              do_rotary=1, rotary_interleaved=0),
             helper.make_node("MatMul", ["context", "Wo"], ["y"])]
    inputs = [("x", TensorProto.FLOAT, [1, "T", d_in]), ("seqlens_k", TensorProto.INT32, [1]),
              ("total_sequence_length", TensorProto.INT32, [])] + cache[:2]
    return model(nodes, inputs, [("y", TensorProto.FLOAT, [1, "T", d])] + cache[2:],
                 {"Wqkv": qkv_weight(ref), "Wo": transposed(ref, "out_proj.weight"),
                  "cos_cache": cos, "sin_cache": sin})


def mha_decode_model(ref):
    """x (1, 1, d_in) -> y (1, 1, d_out) with past/present_key/value (1, H, C, hd) and
    past_sequence_length (1,) int32."""
    d_in, d, heads = ref.int("d_in"), ref.int("d_out"), ref.int("num_heads")
    cache = cache_io(heads, head_dim(ref))
    nodes = [helper.make_node("MatMul", ["x", "Wqkv"], ["qkv"]),
             helper.make_node("Split", ["qkv"], ["q", "k", "v"], axis=2, num_outputs=3),
             helper.make_node("MultiHeadAttention",
                              ["q", "k", "v", "", "", "", "past_key", "past_value",
                               "past_sequence_length"],
                              ["context", "present_key", "present_value"], domain=MS,
                              num_heads=heads),
             helper.make_node("MatMul", ["context", "Wo"], ["projected"]),
             helper.make_node("Add", ["projected", "bo"], ["y"])]
    inputs = [("x", TensorProto.FLOAT, [1, 1, d_in]),
              ("past_sequence_length", TensorProto.INT32, [1])] + cache[:2]
    return model(nodes, inputs, [("y", TensorProto.FLOAT, [1, 1, d])] + cache[2:],
                 {"Wqkv": qkv_weight(ref), "Wo": transposed(ref, "out_proj.weight"),
                  "bo": ref.weight("out_proj.bias")})


def quantized(fp32, directory, name):
    """Path of the dynamically quantized model (int8 weights, uint8 activations)."""
    paths = [os.path.join(directory, f"{name}{suffix}.onnx") for suffix in ("", "_pre", "_qint8")]
    onnx.save(fp32, paths[0])
    quant_pre_process(paths[0], paths[1])
    quantize_dynamic(paths[1], paths[2], weight_type=QuantType.QInt8)
    return paths[2]


# --- Sessions and calls ----------------------------------------------------------------

def session(model_or_path, threads):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    if isinstance(model_or_path, onnx.ModelProto):
        model_or_path = model_or_path.SerializeToString()
    return ort.InferenceSession(model_or_path, options, providers=["CPUExecutionProvider"])


def plain_call(sess, feed):
    """(call, None): one session.run() on the numpy inputs of feed, returning y (ORT
    allocates it, as each call of attn allocates its output)."""
    return lambda: sess.run(["y"], feed)[0], None


def prompt_cache(ref, kv_heads, tables=None):
    """The prompt's keys (rotated with tables (cos, sin) when given) and values,
    (1, kv_heads, P, hd) float32, P = prompt_tokens."""
    P = ref.int("prompt_tokens")
    prompt = ref.x[0, :P]

    def heads(key):
        return (prompt @ ref.weight(key).T).reshape(P, kv_heads, -1).transpose(1, 0, 2)[None]

    keys, values = heads("W_key.weight"), heads("W_value.weight")
    if tables is not None:  # the book's apply_rope at positions 0 .. P - 1
        cos, sin = (np.concatenate([t[:P], t[:P]], axis=1) for t in tables)
        half = keys.shape[-1] // 2
        keys = keys * cos + np.concatenate([-keys[..., half:], keys[..., :half]], -1) * sin
    return keys, values


class CachedStep:
    """One decoding step through IOBinding: past_X and present_X bound to one (1, heads,
    context_length, hd) buffer holding the prompt's cache in rows 0 .. P - 1, the token
    x[:, P] and the int32 length inputs bound once, y allocated by ORT each call. Holds
    everything bound, so that it lives as long as the call."""

    def __init__(self, sess, ref, prompt, lengths):
        P, rows = ref.int("prompt_tokens"), ref.int("context_length")
        self.sess, self.binding = sess, sess.io_binding()
        inputs = dict(lengths, x=np.ascontiguousarray(ref.x[:, P:P + 1]))
        self.bound = [ort.OrtValue.ortvalue_from_numpy(v) for v in inputs.values()]
        for name, value in zip(inputs, self.bound):
            self.binding.bind_ortvalue_input(name, value)
        self.binding.bind_output("y")
        for name, cached in zip(("key", "value"), prompt):
            buffer = np.zeros(cached.shape[:2] + (rows, cached.shape[3]), np.float32)
            buffer[:, :, :P] = cached
            self.bound.append(ort.OrtValue.ortvalue_from_numpy(buffer))  # keeps buffer
            self.binding.bind_ortvalue_input(f"past_{name}", self.bound[-1])
            self.binding.bind_ortvalue_output(f"present_{name}", self.bound[-1])

    def __call__(self):
        self.sess.run_with_iobinding(self.binding)

    def output(self):
        return self.binding.get_outputs()[0].numpy()


def cached_call(sess, ref, prompt, lengths):
    step = CachedStep(sess, ref, prompt, lengths)
    return step, step.output


# --- Jobs ------------------------------------------------------------------------------

def run_names(args, ref, variant):
    """{threads: run name} of variant's wanted rows on ref."""
    names = {n: f"onnxruntime/{variant}/{ref.config_name()}/threads:{n}/real_time"
             for n in args.threads}
    return {n: name for n, name in names.items() if wanted(args, name)}


def checked_jobs(args, ref, names, make_call, precision="fp32", tolerance=FLOAT32_TOLERANCE):
    """One job per entry of names: make_call(threads) -> (call, output or None: the call
    returns y); each checked against attn's y at its own thread count before timing."""
    jobs = []
    for threads, run_name in names.items():
        call, output = make_call(threads)
        start = time.perf_counter()
        y = call()
        seconds = time.perf_counter() - start
        error = check(run_name, output() if output else y, ref, tolerance)
        counters = {"rel_l2_vs_attn": error}
        if precision != "fp32":
            counters["rel_l2_error"] = error
        reps = args.big_repetitions if seconds >= 1.0 else args.repetitions
        jobs.append(Job(run_name, call, threads, reps, ENGINE, precision, counters=counters))
    return jobs


def mha_jobs(args, ref, tmp):
    fp32_names, int8_names = run_names(args, ref, "mha"), run_names(args, ref, "mha_qint8")
    if not fp32_names and not int8_names:
        return []
    fp32 = mha_model(ref)
    feed = {"x": ref.x}
    jobs = checked_jobs(args, ref, fp32_names, lambda n: plain_call(session(fp32, n), feed))
    if int8_names:
        path = quantized(fp32, tmp, ref.name)
        jobs += checked_jobs(args, ref, int8_names,
                             lambda n: plain_call(session(path, n), feed),
                             precision="int8 (dynamic)", tolerance=QINT8_TOLERANCE)
    return jobs


def gqa_jobs(args, ref):
    decode = ref.kind == "gqa_decode"
    names = run_names(args, ref, "gqa_decode" if decode else "gqa")
    if not names:
        return []
    if head_dim(ref) % GQA_HEAD_MULTIPLE:
        print(f"skip {ref.name}: ORT's GroupQueryAttention takes head sizes that are multiples "
              f"of {GQA_HEAD_MULTIPLE}, this file's is {head_dim(ref)}", flush=True)
        return []
    graph = gqa_model(ref, decode)
    if not decode:
        T = ref.int("tokens")
        lengths = {"seqlens_k": np.array([T - 1], np.int32),
                   "total_sequence_length": np.array(T, np.int32)}
        feed = dict(lengths, x=ref.x)
        return checked_jobs(args, ref, names, lambda n: plain_call(session(graph, n), feed))
    P = ref.int("prompt_tokens")
    prompt = prompt_cache(ref, ref.int("num_kv_groups"), rope_tables(ref))
    lengths = {"seqlens_k": np.array([P], np.int32),  # total tokens after the step - 1
               "total_sequence_length": np.array(P + 1, np.int32)}
    return checked_jobs(args, ref, names,
                        lambda n: cached_call(session(graph, n), ref, prompt, lengths))


def mha_decode_jobs(args, ref):
    names = run_names(args, ref, "decode")
    if not names:
        return []
    graph = mha_decode_model(ref)
    prompt = prompt_cache(ref, ref.int("num_heads"))
    lengths = {"past_sequence_length": np.array([ref.int("prompt_tokens")], np.int32)}
    return checked_jobs(args, ref, names,
                        lambda n: cached_call(session(graph, n), ref, prompt, lengths))


def describe(args):
    return {"engine": ENGINE, "onnxruntime_version": ort.__version__,
            "onnx_version": onnx.__version__, "onnxruntime_build": ort.get_build_info(),
            "available_providers": ", ".join(ort.get_available_providers()),
            "session": ("CPUExecutionProvider; graph_optimization_level ORT_ENABLE_ALL; "
                        f"intra_op_num_threads n in {args.threads}; inter_op_num_threads 1"),
            "quantization": "quantize_dynamic, weight_type QInt8 (U8S8), per tensor",
            "ops": ("mha: com.microsoft.Attention unidirectional; gqa: com.microsoft."
                    "GroupQueryAttention do_rotary; gqa_decode: the same, shared past/present "
                    "buffer (IOBinding); decode: com.microsoft.MultiHeadAttention, shared "
                    "past/present buffer (IOBinding)")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args()
    context = describe(args)
    for key, value in context.items():
        print(f"{key}: {value}", flush=True)
    jobs = []
    with tempfile.TemporaryDirectory(prefix="attn_ort_peer_") as tmp:
        for ref in load_references(args.reference_dir):
            if ref.kind == "mha":
                jobs += mha_jobs(args, ref, tmp)
            elif ref.kind in ("gqa", "gqa_decode"):
                jobs += gqa_jobs(args, ref)
            elif ref.kind == "mha_decode":
                jobs += mha_decode_jobs(args, ref)
    rows = run_jobs(jobs, args)
    write_json(args.out, "bench/peers/onnxruntime_peer.py", context, rows)


if __name__ == "__main__":
    main()
