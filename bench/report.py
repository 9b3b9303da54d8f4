#!/usr/bin/python3
"""Merges attn_attention_bench's and the PyTorch peer's JSON into report.md and time_vs_T.svg.

Usage: bench/report.py <results dir> [--full]
Reads <dir>/attn.json (required) and, when present, <dir>/torch.json (the peer),
<dir>/torch_gqa.json (the grouped-query attention peer),
<dir>/torch_default_core.json (the peer without OPENBLAS_CORETYPE),
<dir>/torch_omp_active.json (the peer with OpenMP's default spin-waiting) and the modern
peers (bench/report_peers.py): <dir>/torch2.json (PyTorch 2), <dir>/onnxruntime.json
(ONNX Runtime) and <dir>/openvino.json (OpenVINO).
Writes <dir>/report.md and, when the T sweep ran, <dir>/time_vs_T.svg. Prints the
headline table (B8_T1024, also at the top of report.md), the summary of attn against the
modern peers (the sentences after the headline in report.md) and the paths of the files;
--full prints the whole report instead. Standard library only.

Results are medians over repetitions (Google Benchmark's "median" aggregate; a "min"
aggregate, which the modern peers write, is kept beside it); a result without aggregates
(one repetition) is used as is. Every ratio compares two medians of the
same run: > 1 means the second-named (denominator) is faster.

The report: the headline table, the summary sentences of attn against the modern peers
(one per configuration, thread count and precision where a peer is faster; else the
smallest margin; int8 against int8), the environment, a summary of ratios per configuration,
the flash vs the materialized paths of the fused module (time, peak heap beyond the
output), the attention core alone against the FP32 FMA peak, decoding one token with a KV
cache against a full forward and against the time to stream its bytes, decoding with an
int8 KV cache (bench/report_kv_cache.py: the int8 cache's speed-up and memory, time against
the working-set bandwidth, errors, each against its target), dynamic int8
quantization (attn's quantize_dynamic and PyTorch's: times, ratios, relative L2 errors
against the float32 modules), grouped-query attention on a Llama 3.2 1B layer (prefill,
decoding, sliding window, the core's FLOP rate, PyTorch's book module, each against its
target), attn against PyTorch 2, ONNX Runtime and OpenVINO (per configuration and thread
count: times, ratios, the check's error, the reduced-precision rows' error), the machine's
own figures, one table per configuration, the
PyTorch peer's sensitivity to its environment and the chart of time vs T. Every section is
left out when none of its benchmarks ran (e.g. under --benchmark_filter); without any modern
peer file the report says so in one line.
"""

import argparse
import json
import math
import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import report_kv_cache  # noqa: E402  (bench/, the script's folder)
import report_peers  # noqa: E402

# (config name) -> description; the order of the report.
CONFIGS = {
    "toy_B2_T6": "section 3.6 toy: B=2, T=6, d_in=3; wrapper 2 heads of d_out=2 (width 4), "
                 "fused MultiHeadAttention(3, 2, 6, 0.0, 2) (width 2): not the same work",
    "B1_T256": "gpt2_small: B=1, T=256, d=768, 12 heads of 64",
    "B8_T1024": "the book's bonus benchmark: B=8, T=1024, d_in=d_out=768, 12 heads of 64",
    "B1_T1024": "B=1, T=1024, d=768, 12 heads",
    "B8_T256": "B=8, T=256, d=768, 12 heads",
}
SWEEP = [64, 128, 256, 512, 1024, 2048]
for _t in SWEEP:
    CONFIGS.setdefault(f"B1_T{_t}", f"T sweep: B=1, T={_t}, d=768, 12 heads")

# (prefix, variant) -> row label, in table order.
ROWS = [
    (("attn", "wrapper"), "attn wrapper"),
    (("attn", "wrapper_out_proj"), "attn wrapper + out_proj"),
    (("attn", "fused"), "attn fused MHA"),
    (("attn", "fused_materialized"), "attn fused MHA, materialized path"),
    (("attn", "fused_with_weights"), "attn fused MHA returning its (B,H,T,T) weights"),
    (("attn", "fused_int8"), "attn fused MHA, int8 (quantize_dynamic)"),
    (("attn", "fused_avx2"), "attn fused MHA, AVX2 forced"),
    (("attn", "fused_int8_avx2"), "attn fused MHA, int8, AVX2 forced"),
    (("torch", "book_mha"), "torch book MHA"),
    (("torch", "book_mha_qint8"), "torch book MHA, quantize_dynamic qint8"),
    (("torch", "wrapper"), "torch wrapper"),
    (("torch", "wrapper_out_proj"), "torch wrapper + out_proj"),
    (("torch", "nn_mha"), "torch nn.MultiheadAttention"),
]
ROW_KEYS = {key for key, _ in ROWS}
THREADS = [1, 2]
MIB = 2**20

DECODE_CONFIG = "gpt2_small"
HEADLINE_CONFIG = "B8_T1024"
HEADLINE_ROWS = [
    (("attn", "wrapper"), "attn MultiHeadAttentionWrapper (the chapter's, no out_proj)"),
    (("attn", "fused"), "attn MultiHeadAttention (fused)"),
    (("attn", "fused_int8"), "attn MultiHeadAttention, int8 projections (quantize_dynamic)"),
    (("torch", "book_mha"), "PyTorch, the book's MultiHeadAttention"),
    (("torch", "book_mha_qint8"),
     "PyTorch, the book's MultiHeadAttention, quantize_dynamic qint8"),
    (("torch", "nn_mha"), "PyTorch nn.MultiheadAttention"),
]


def load(path):
    """{(prefix, variant, config, threads): entry} from a Google Benchmark JSON file."""
    with open(path) as f:
        data = json.load(f)
    results, singles, cvs, mins = {}, {}, {}, {}
    for b in data.get("benchmarks", []):
        run_name = b.get("run_name", b["name"])
        # /repeats:<n>: Google Benchmark's suffix for a benchmark's own repetition count.
        m = re.match(r"([^/]+)/([^/]+)/([^/]+)/threads:(\d+)(?:/repeats:\d+)?(?:/process_time)?"
                     r"(?:/real_time)?$", run_name)
        if not m:
            continue
        key = (m.group(1), m.group(2), m.group(3), int(m.group(4)))
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                results[key] = b
            elif b.get("aggregate_name") == "cv":
                cvs[key] = b.get("real_time")
            elif b.get("aggregate_name") == "min":
                mins[key] = b
        elif not b.get("error_occurred"):
            singles.setdefault(key, b)
    for key, b in singles.items():
        results.setdefault(key, b)
    for key, cv in cvs.items():  # spread over repetitions, a fraction of the mean
        if key in results:
            results[key]["_cv"] = cv
    for key, b in mins.items():  # the fastest repetition (the modern peers write it)
        if key in results:
            results[key]["_min"] = b
    return data.get("context", {}), results


def ms(entry, field="real_time"):
    """Median wall time (or, with field="cpu_time", process CPU time) of one call in ms."""
    scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[entry.get("time_unit", "ns")]
    return entry[field] * scale


def cpu_ms(entry):
    return ms(entry, "cpu_time") if entry and "cpu_time" in entry else None


def fmt_ms(x):
    if x is None:
        return "—"
    return f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 100 else f"{x:.0f}"


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}×"


def fmt_mib(x):
    if x is None or x < 0:
        return "—"
    return f"{x / 2**20:.2f}" if x < 10 * 2**20 else f"{x / 2**20:.0f}"


def gflops(entry, kind):
    if entry is None or f"flops_{kind}" not in entry:
        return None
    return entry[f"flops_{kind}"] / (ms(entry) * 1e-3) * 1e-9


def fmt_pair(values, fmt):
    """"a / b" for the 1- and 2-thread values, or one value when they agree."""
    texts = [fmt(v) for v in values]
    if all(t == "—" for t in texts):
        return "—"
    return texts[0] if len(set(texts)) == 1 else " / ".join(texts)


def config_table(name, results):
    get = lambda prefix, variant, threads: results.get((prefix, variant, name, threads))
    t = lambda p, v, n: ms(get(p, v, n)) if get(p, v, n) else None
    lines = [f"### {name}", "", CONFIGS.get(name, ""), "",
             "| module | ms, 1 thread | ms, 2 threads | 2-thread speedup | CPU ms, 1 thread "
             "| GFLOP/s dense (1 / 2 thr) | GFLOP/s causal (1 / 2 thr) | peak heap MiB "
             "| peak RSS growth MiB |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for (prefix, variant), label in ROWS:
        entries = [get(prefix, variant, n) for n in THREADS]
        if not any(entries):
            continue
        times = [ms(e) if e else None for e in entries]
        heap = [e.get("peak_heap_bytes") if e else None for e in entries]
        rss = [e.get("peak_rss_bytes") if e else None for e in entries]
        lines.append(
            f"| {label} | {fmt_ms(times[0])} | {fmt_ms(times[1])} | {fmt_ratio(times[0], times[1])}"
            f" | {fmt_ms(cpu_ms(entries[0]))}"
            f" | {fmt_pair([gflops(e, 'dense') for e in entries], fmt_gf)}"
            f" | {fmt_pair([gflops(e, 'causal') for e in entries], fmt_gf)}"
            f" | {fmt_pair(heap, fmt_mib)} | {fmt_pair(rss, fmt_mib)} |")
    lines.append("")
    ratios = [
        ("attn wrapper / attn fused", ("attn", "wrapper"), ("attn", "fused")),
        ("attn fused materialized / attn fused (flash)", ("attn", "fused_materialized"),
         ("attn", "fused")),
        ("attn fused returning weights / attn fused (flash)", ("attn", "fused_with_weights"),
         ("attn", "fused")),
        ("attn wrapper+out_proj / attn fused", ("attn", "wrapper_out_proj"), ("attn", "fused")),
        ("torch book MHA / attn fused", ("torch", "book_mha"), ("attn", "fused")),
        ("torch nn.MHA / attn fused", ("torch", "nn_mha"), ("attn", "fused")),
        ("torch wrapper / attn wrapper", ("torch", "wrapper"), ("attn", "wrapper")),
        ("torch wrapper / torch book MHA", ("torch", "wrapper"), ("torch", "book_mha")),
    ]
    c1 = lambda p, v: cpu_ms(get(p, v, 1))
    ratio_lines = []
    for label, a, b in ratios:
        cells = [fmt_ratio(t(*a, n), t(*b, n)) for n in THREADS]
        cells.append(fmt_ratio(c1(*a), c1(*b)))
        if any(c != "—" for c in cells):
            ratio_lines.append(f"| {label} | {cells[0]} | {cells[1]} | {cells[2]} |")
    if ratio_lines:
        lines += ["| ratio (> 1: the second is faster) | 1 thread | 2 threads "
                  "| 1 thread, CPU time |", "|---|--:|--:|--:|"] + ratio_lines + [""]
    return lines


def fmt_gf(x):
    return "—" if x is None else f"{x:.1f}" if x >= 1 else f"{x:.3f}"


def summary_table(results, configs, peers):
    """Ratios per configuration; peers (report_peers.Peers) adds a column per modern peer
    and precision."""
    extra = peers.summary_columns()
    t = lambda p, v, c, n: ms(results[(p, v, c, n)]) if (p, v, c, n) in results else None
    cpu = lambda p, v, c: cpu_ms(results.get((p, v, c, 1)))
    rows = []
    for c in configs:
        def pair(a, b):
            cells = [fmt_ratio(t(*a, c, n), t(*b, c, n)) for n in THREADS]
            cells.append(fmt_ratio(cpu(*a, c), cpu(*b, c)))
            return " / ".join(cells)
        fused = " / ".join(fmt_ms(t("attn", "fused", c, n)) for n in THREADS)
        cells = [pair(('attn', 'wrapper'), ('attn', 'fused')),
                 pair(('attn', 'wrapper_out_proj'), ('attn', 'fused')),
                 pair(('torch', 'book_mha'), ('attn', 'fused')),
                 pair(('torch', 'nn_mha'), ('attn', 'fused'))]
        cells += [cell(c, THREADS) for _, cell in extra]
        if all(set(cell.split(" / ")) == {"—"} for cell in cells):
            continue  # none of the compared pairs ran (e.g. under a filter)
        rows.append(f"| {c} | {' | '.join(cells)} | {fused} |")
    if not rows:
        return []
    note = (" A modern peer's column: for each cell, the fastest of its rows at that precision "
            "(the section *attn against PyTorch 2, ONNX Runtime and OpenVINO* gives every "
            "row); int8 over attn's int8 module, other precisions over attn's float32 fused "
            "module." if extra else "")
    headers = ["wrapper / fused", "wrapper+out_proj / fused", "torch book MHA / attn fused",
               "torch nn.MHA / attn fused"] + [h for h, _ in extra] + ["attn fused ms (1 / 2 thr)"]
    return (["## Summary: ratios of times (> 1: the second-named is faster)", "",
             "Each cell: wall time at 1 thread / wall time at 2 threads / CPU time at 1 thread."
             + note, "", "| config | " + " | ".join(headers) + " |",
             "|---|" + "--:|" * len(headers)] + rows + [""])


def fmt_pct(x):
    return "—" if x is None else f"{100 * x:.0f}%"


def fmt_us(x):
    return "—" if x is None else f"{x:.1f}" if x < 100 else f"{x:.0f}"


def counter(entry, name):
    return entry.get(name) if entry else None


def peak_1thread(attn_context):
    peak = attn_context.get("fma_peak_gflops_1thread")
    return float(peak) if peak is not None else None


def peak_fraction(entry, threads, peak1):
    """GFLOP/s (causal, median time) over threads x the single-core FMA peak."""
    if entry is None:
        return None
    if peak1:
        g = gflops(entry, "causal")
        return None if g is None else g / (threads * peak1)
    return entry.get("peak_fraction")


def in_run_peak_fraction(entry, threads, results):
    """GFLOP/s (causal, median time) over the median of machine/fma_peak at the same thread
    count in the same run: its repetitions are interleaved with the core's, so both see the
    same machine (the clock of that many busy cores, other work on the host)."""
    fma = counter(results.get(("machine", "fma_peak", "fp32", threads)), "GFLOPS")
    g = gflops(entry, "causal") if entry else None
    return g / fma if g is not None and fma else None


def flash_vs_materialized(results, configs):
    """Table (a): the fused module's flash path vs its two materializing paths."""
    get = lambda v, c, n: results.get(("attn", v, c, n))
    lines = []
    for c in configs:
        flash = [get("fused", c, n) for n in THREADS]
        mat = [get("fused_materialized", c, n) for n in THREADS]
        full = [get("fused_with_weights", c, n) for n in THREADS]
        if not any(mat) and not any(full):
            continue
        t = lambda es: [ms(e) if e else None for e in es]
        tf, tm, tw = t(flash), t(mat), t(full)
        blocked = [fmt_ratio(tm[i], tf[i]) for i in range(len(THREADS))]
        blocked.append(fmt_ratio(cpu_ms(mat[0]), cpu_ms(flash[0])))
        weights = [fmt_ratio(tw[i], tf[i]) for i in range(len(THREADS))]
        out_bytes = next((counter(e, "out_bytes") for e in flash + mat
                          if counter(e, "out_bytes") is not None), None)
        extra = lambda es: max((counter(e, "extra_heap_bytes") for e in es
                                if counter(e, "extra_heap_bytes") is not None), default=None)
        heap = lambda es: fmt_pair([counter(e, "peak_heap_bytes") for e in es], fmt_mib)
        lines.append(f"| {c} | {fmt_pair(tf, fmt_ms)} | {fmt_pair(tm, fmt_ms)} "
                     f"| {' / '.join(blocked)} | {fmt_pair(tw, fmt_ms)} | {' / '.join(weights)} "
                     f"| {heap(flash)} | {heap(mat)} | {heap(full)} | {fmt_mib(out_bytes)} "
                     f"| {fmt_mib(extra(flash))} | {fmt_mib(extra(mat))} |")
    if not lines:
        return []
    return ["## Fused MultiHeadAttention: flash path vs materialized paths", "",
            "`fused` runs the attention with the flash kernel (online softmax over key blocks, "
            "outputs written over Q inside the QKV buffer). Two paths materialize the softmax "
            "weights: `fused_materialized` is the same module with "
            "`set_attention_path(kMaterialized)` (scores, softmax and weights·V per block of 64 "
            "queries, at most 64 × T scores per task, a separate context buffer); "
            "`fused_with_weights` is `forward(x, &weights)`, which writes the whole (B, H, T, T) "
            "weight tensor, as the book's module does. Ratios > 1: flash is faster. Peak heap: growth "
            "during one forward (cells: 1 thread / 2 threads when they differ; the weights "
            "tensor counts for `fused_with_weights`). The QKV buffer (B·T·3d·4 bytes) and the "
            "context buffer are the calling thread's scratch, allocated by the first call and "
            "reused; the output (B·T·d·4 bytes) is allocated by every call; extra = peak heap − "
            "output, the larger of the two thread counts.", "",
            "| config | flash ms (1 / 2 thr) | blocked materialized ms (1 / 2 thr) "
            "| blocked / flash (1 thr / 2 thr / CPU 1 thr) | (B,H,T,T) path ms (1 / 2 thr) "
            "| (B,H,T,T) / flash (1 / 2 thr) | peak heap MiB, flash | peak heap MiB, blocked "
            "| peak heap MiB, (B,H,T,T) | output MiB | extra MiB, flash | extra MiB, blocked |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"] + lines + [""]


def core_table(results, configs, attn_context):
    """Table (b): the attention core alone, GFLOP/s and fraction of the FMA peak."""
    peak1 = peak_1thread(attn_context)
    get = lambda v, c, n: results.get(("attn", v, c, n))
    lines = []
    for c in configs:
        flash = [get("core_flash", c, n) for n in THREADS]
        mat = [get("core_materialized", c, n) for n in THREADS]
        if not any(flash + mat):
            continue
        t = lambda es: [ms(e) if e else None for e in es]
        gf = lambda es: fmt_pair([gflops(e, "causal") for e in es], fmt_gf)
        pk = lambda es: " / ".join(fmt_pct(peak_fraction(e, n, peak1)) for e, n in zip(es, THREADS))
        in_run = " / ".join(fmt_pct(in_run_peak_fraction(e, n, results))
                            for e, n in zip(flash, THREADS))
        tf, tm = t(flash), t(mat)
        fused1 = get("fused", c, 1)
        share = f"{100 * tf[0] / ms(fused1):.0f}%" if fused1 and tf[0] is not None else "—"
        lines.append(f"| {c} | {fmt_pair(tf, fmt_ms)} | {gf(flash)} | {in_run} | {pk(flash)} "
                     f"| {fmt_pair(tm, fmt_ms)} | {gf(mat)} | {pk(mat)} "
                     f"| {' / '.join(fmt_ratio(tm[i], tf[i]) for i in range(len(THREADS)))} "
                     f"| {share} | {fmt_mib(counter(flash[0], 'peak_heap_bytes'))} / "
                     f"{fmt_mib(counter(mat[0], 'peak_heap_bytes'))} |")
    if not lines:
        return []
    reference = (f"{peak1:.1f} GFLOP/s per core (start-up measurement)" if peak1
                 else "the benchmark's peak_fraction counter")
    return ["## Attention core alone", "",
            "`attn/core_flash` and `attn/core_materialized`: `attn::detail::attention` on a "
            "(B, T, 3d) QKV buffer laid out as the fused module's (Q, K, V of head h at columns "
            "h·hd, d + h·hd, 2d + h·hd), output in a separate (B, T, d) buffer: no projections. "
            "GFLOP/s = 4·B·H·hd·T(T+1)/2 (causal) / median wall time; % of in-run peak = "
            "that / the median of `machine/fma_peak` at the same thread count in this run, "
            "whose repetitions are interleaved with the core's: the FP32 peak of that many busy cores "
            "(their clock) on the machine as it was during the run; % of peak (stricter, for "
            f"information) = that / (threads × {reference}). "
            "Core share = core flash time / fused forward time (flash path), 1 thread: the "
            "rest is the projections. Heap growth: during one call, 1 thread (the materialized "
            "path's scores scratch is thread-local, allocated by the warm-up call and kept).", "",
            "| config | flash ms (1 / 2 thr) | flash GFLOP/s | flash % of in-run peak (1 / 2 thr) "
            "| flash % of peak (1 / 2 thr) "
            "| materialized ms | materialized GFLOP/s | materialized % of peak "
            "| materialized / flash (1 / 2 thr) | core share of fused forward (1 thr) "
            "| heap growth MiB, flash / materialized |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"] + lines + [""]


def decode_table(results):
    """Table (c): decoding one token with a KV cache vs a full forward and vs streaming."""
    lines = []
    for n in THREADS:
        dec = results.get(("attn", "decode_1_after_1023", DECODE_CONFIG, n))
        full = results.get(("attn", "full_forward_1024", DECODE_CONFIG, n))
        if not dec and not full:
            continue
        dec_us = ms(dec) * 1e3 if dec else None
        full_ms = ms(full) if full else None
        per_token = full_ms * 1e3 / 1024 if full_ms is not None else None
        ideal = counter(dec, "ideal_us")
        ideal_ws = counter(dec, "ideal_ws_us")
        nbytes = counter(dec, "bytes_streamed")
        kv, weights = counter(dec, "kv_bytes"), counter(dec, "weight_bytes")
        parts = (f"{fmt_mib(nbytes)} ({fmt_mib(kv)} + {fmt_mib(weights)})"
                 if None not in (nbytes, kv, weights) else "—")
        bw = counter(dec, "bandwidth_GBps")
        bw_ws = counter(dec, "bandwidth_ws_GBps")
        lines.append(
            f"| {n} | {fmt_us(dec_us)} | {fmt_ms(full_ms)} "
            f"| {fmt_ratio(full_ms * 1e3 if full_ms is not None else None, dec_us)} "
            f"| {fmt_us(per_token)} | {parts} | {fmt_gf(bw)} | {fmt_us(ideal)} "
            f"| {fmt_ratio(dec_us, ideal)} | {fmt_gf(bw_ws)} | {fmt_us(ideal_ws)} "
            f"| {fmt_ratio(dec_us, ideal_ws)} |")
    if not lines:
        return []
    return ["## KV-cache decoding (GPT-2 small: B=1, d=768, 12 heads, context 1024)", "",
            "decode = one call of `cache.rewind(1023)` + `forward(one token, cache)` after a "
            "1023-token prompt (the 1024th token of a full context); full = `forward` over "
            "the 1024 tokens. "
            "Decoding reads every weight and the whole KV cache once: bytes streamed = K and V "
            "of 1024 tokens (2·12·1024·64·4 B) + weights (QKV 3·768·768·4 B, out_proj "
            "768·768·4 B + bias); ideal = bytes streamed / the read bandwidth measured with as "
            "many threads over a 256 MiB buffer (decode / ideal = 1: as fast as streaming those "
            "bytes once). The working set (~15 MiB) can stay in a large "
            "last-level cache between calls, so the last three columns repeat the comparison "
            "against the read bandwidth over a buffer of that size (a stricter reference).", "",
            "| threads | decode µs | full forward ms | full / decode | full forward per token µs "
            "| bytes streamed MiB (KV + weights) | read GB/s, 256 MiB | ideal µs "
            "| decode / ideal | read GB/s, working set | ideal µs | decode / ideal |",
            "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"] + lines + [""]


def fmt_err(x):
    return "—" if x is None or x < 0 else f"{x:.2e}"


def int8_section(results, torch_context):
    """attn's quantize_dynamic against its float32 module and PyTorch's quantize_dynamic."""
    t = lambda p, v, c, n: ms(results[(p, v, c, n)]) if (p, v, c, n) in results else None
    cpu1 = lambda p, v, c: cpu_ms(results.get((p, v, c, 1)))
    err = lambda p, v, c: next((counter(results.get((p, v, c, n)), "rel_l2_error")
                                for n in THREADS if (p, v, c, n) in results), None)
    engine = torch_context.get("quantized_engine") if torch_context else None
    on_engine = f" on its `{engine}` engine" if engine else ""
    out = []
    c = HEADLINE_CONFIG
    # (a) the headline configuration.
    rows = [(("attn", "fused"), "attn MultiHeadAttention, float32", None),
            (("attn", "fused_int8"), "attn quantize_dynamic(MultiHeadAttention)", "attn float32"),
            (("torch", "book_mha"), "PyTorch book MultiHeadAttention, float32", None),
            (("torch", "book_mha_qint8"), "PyTorch quantize_dynamic(book MHA, qint8)",
             "PyTorch float32")]
    table = []
    for key, label, reference in rows:
        times = [t(*key, c, n) for n in THREADS]
        if all(x is None for x in times):
            continue
        e = err(*key, c) if reference else None
        table.append([label] + [fmt_ms(x) for x in times] + [fmt_ms(cpu1(*key, c)),
                     f"{fmt_err(e)} (vs {reference})" if reference else "—"])
    ratios = [("attn float32 / attn int8", ("attn", "fused"), ("attn", "fused_int8")),
              ("PyTorch qint8 / attn int8", ("torch", "book_mha_qint8"), ("attn", "fused_int8")),
              ("PyTorch float32 / PyTorch qint8", ("torch", "book_mha"),
               ("torch", "book_mha_qint8"))]
    ratio_rows = []
    for label, a, b in ratios:
        cells = [fmt_ratio(t(*a, c, n), t(*b, c, n)) for n in THREADS]
        cells.append(fmt_ratio(cpu1(*a, c), cpu1(*b, c)))
        if any(x != "—" for x in cells):
            ratio_rows.append([label] + cells)
    if table:
        out += [f"### {c}", "", CONFIGS.get(c, ""), ""]
        out += md_table(["module", "ms, 1 thread", "ms, 2 threads", "CPU ms, 1 thread",
                         "relative L2 error"], table)
        out.append("")
    if ratio_rows:
        out += md_table(["ratio (> 1: the second-named is faster)", "1 thread", "2 threads",
                         "1 thread, CPU time"], ratio_rows)
        out.append("")
    # (b) decoding one token after 1023 (the KV-cache benchmark).
    dec_rows = []
    for n in THREADS:
        f = results.get(("attn", "decode_1_after_1023", DECODE_CONFIG, n))
        q = results.get(("attn", "decode_int8_1_after_1023", DECODE_CONFIG, n))
        if not f and not q:
            continue
        fu, qu = (ms(f) * 1e3 if f else None), (ms(q) * 1e3 if q else None)
        dec_rows.append([str(n), fmt_us(fu), fmt_us(qu), fmt_ratio(fu, qu),
                         fmt_mib(counter(f, "weight_bytes")), fmt_mib(counter(q, "weight_bytes")),
                         fmt_err(counter(q, "rel_l2_error"))])
    if dec_rows:
        out += ["### KV-cache decoding, one token after 1023 (GPT-2 small, B=1)", "",
                "The decode benchmark of the KV-cache section with the quantized module: the "
                "same prompt in the cache, the same token. Weight MiB: the bytes of weights "
                "the forward reads (int8: as its kernel packs them, with per-channel scales "
                "and column sums). Error: the decoded token's output against the float32 "
                "module's.", ""]
        out += md_table(["threads", "float32 µs", "int8 µs", "float32 / int8",
                         "weight MiB, float32", "weight MiB, int8", "relative L2 error"],
                        dec_rows)
        out.append("")
    # (c) AVX2 forced: Highway's AVX-512 targets (and so VNNI) disabled.
    avx_rows = []
    for n in THREADS:
        f, q = t("attn", "fused_avx2", c, n), t("attn", "fused_int8_avx2", c, n)
        if f is None and q is None:
            continue
        avx_rows.append([str(n), fmt_ms(f), fmt_ms(q), fmt_ratio(f, q),
                         fmt_ratio(t("attn", "fused", c, n), t("attn", "fused_int8", c, n)),
                         fmt_err(err("attn", "fused_int8_avx2", c))])
    if avx_rows:
        label = next((results[("attn", "fused_int8_avx2", c, n)].get("label")
                      for n in THREADS if ("attn", "fused_int8_avx2", c, n) in results), None)
        kernels = f" (kernels: {label})" if label else ""
        out += [f"### {c} with AVX2 forced", "",
                "`fused_avx2`, `fused_int8_avx2`: the float32 and int8 modules built, quantized "
                "and run with Highway's AVX-512 targets disabled "
                "(`hwy::DisableTargets(HWY_AVX3 | HWY_AVX3_DL)`), as on a CPU with AVX2 and "
                f"no AVX-512 VNNI{kernels}. The column \"dispatched target\" repeats the "
                "ratio of the table above (the best target of this CPU).", ""]
        out += md_table(["threads", "float32 ms", "int8 ms", "float32 / int8",
                         "float32 / int8, dispatched target", "relative L2 error"], avx_rows)
        out.append("")
    # (d) every configuration.
    int8_keys = (("attn", "fused_int8"), ("torch", "book_mha_qint8"))
    present = [cfg for cfg in CONFIGS
               if any((p, v, cfg, n) in results for p, v in int8_keys for n in THREADS)]
    cfg_rows = []
    for cfg in present:
        ea, et = err("attn", "fused_int8", cfg), err("torch", "book_mha_qint8", cfg)
        speed = " / ".join(fmt_ratio(t("attn", "fused", cfg, n), t("attn", "fused_int8", cfg, n))
                           for n in THREADS)
        peer = " / ".join(fmt_ratio(t("torch", "book_mha_qint8", cfg, n),
                                    t("attn", "fused_int8", cfg, n)) for n in THREADS)
        cfg_rows.append([cfg, fmt_pair([t("attn", "fused_int8", cfg, n) for n in THREADS],
                                       fmt_ms), speed, peer, fmt_err(ea), fmt_err(et),
                         fmt_ratio(et, ea) if ea and et else "—"])
    if cfg_rows:
        out += ["### Per configuration", "",
                "Times: 1 thread / 2 threads. Errors do not depend on the thread count.", ""]
        out += md_table(["config", "attn int8 ms", "attn float32 / attn int8",
                         "PyTorch qint8 / attn int8", "attn int8 error", "PyTorch qint8 error",
                         "PyTorch error / attn error"], cfg_rows)
        out.append("")
    if not out:
        return []
    return ["## Dynamic int8 quantization", "",
            "`attn::quantize_dynamic(mha)` (`fused_int8`): the fused module's Linear layers "
            "(the QKV projection and out_proj) in int8 — weights symmetric int8 per output "
            "channel, activations asymmetric uint8 per token row quantized at every call, "
            "integer sums, float32 dequantization; the attention stays float32. PyTorch's "
            "peer is `torch.ao.quantization.quantize_dynamic(book_mha, {nn.Linear}, "
            f"dtype=torch.qint8)`{on_engine} (its default qconfig: weights "
            "per tensor, activations per tensor at every call). Both modules get the same "
            "weights (seed 123) and the same input. Relative L2 error = "
            "‖y_int8 − y_float32‖ / ‖y_float32‖ over the whole output, each quantized "
            "module against the float32 module it was made from, on the same input. Ratios "
            "compare medians of the same run; > 1: the second-named is faster (or, for "
            "errors, more accurate).", ""] + out


# Grouped-query attention (bench/gqa_bench.h): Llama 3.2 1B's attention layer.
GQA_PREFILL = [("llama32_1b_T1024", "T = 1024, causal"),
               ("llama32_1b_T4096", "T = 4096, causal"),
               ("llama32_1b_T4096_w512", "T = 4096, sliding window 512")]
GQA_DECODE = "gqa_decode_1_after_4095"
GQA_CORE = [("h12_kv12_T1024", "12 heads, 12 KV heads, T = 1024 (the chapter's MHA)"),
            ("h32_kv32_T1024", "32 heads, 32 KV heads, T = 1024 (MHA, the same work)"),
            ("h32_kv8_T1024", "32 heads, 8 KV heads, T = 1024 (Llama 3.2 1B)"),
            ("h32_kv8_T4096", "32 heads, 8 KV heads, T = 4096"),
            ("h32_kv8_T4096_w512", "32 heads, 8 KV heads, T = 4096, window 512")]
# The targets: (> 1: the second is faster) ratios and the bound they must meet.
GQA_TARGET_TORCH, GQA_TARGET_DECODE, GQA_TARGET_WINDOW, GQA_TARGET_CORE = 2.5, 1.8, 0.55, 0.9


def gqa_section(results, attn_context, gqa_context):
    """Grouped-query attention: targets, prefill, decoding, window, core, PyTorch."""
    entry = lambda p, v, c, n: results.get((p, v, c, n))
    t = lambda p, v, c, n: ms(entry(p, v, c, n)) if entry(p, v, c, n) else None
    peak1 = peak_1thread(attn_context)
    pair = lambda values, fmt: " / ".join(fmt(v) for v in values)
    ratio = lambda a, b: a / b if a is not None and b else None
    fmt_x = lambda x: "—" if x is None else f"{x:.2f}×"
    out = []

    # Prefill of the module.
    rows = []
    for config, label in GQA_PREFILL:
        es = [entry("attn", "gqa_prefill", config, n) for n in THREADS]
        if not any(es):
            continue
        flops = next((counter(e, "flops_causal") for e in es if e), None)
        rows.append([label, "—" if flops is None else f"{flops * 1e-9:.1f}",
                     pair([ms(e) if e else None for e in es], fmt_ms),
                     pair([gflops(e, "causal") for e in es], fmt_gf),
                     pair([in_run_peak_fraction(e, n, results) for e, n in zip(es, THREADS)],
                          fmt_pct),
                     pair([peak_fraction(e, n, peak1) for e, n in zip(es, THREADS)], fmt_pct)])
    if rows:
        out += ["### Prefill", "",
                "`forward(x)` over B = 1 sequence of T tokens. GFLOP: projections "
                "2·T·d·(d + 2·kv_dim) + out_proj 2·T·d² + attention 4·H·hd·P, P the (query, "
                "key) pairs in the causal window (T(T+1)/2 without one); RoPE and softmax not "
                "counted. % of in-run peak: GFLOP/s over the median of `machine/fma_peak` at "
                "the same thread count in this run; % of peak: over threads × the start-up "
                "single-core peak.", ""]
        out += md_table(["configuration", "GFLOP", "ms (1 / 2 thr)", "GFLOP/s (1 / 2 thr)",
                         "% of in-run FMA peak (1 / 2 thr)", "% of peak (1 / 2 thr)"], rows)
        out.append("")

    # Decoding one token after 4095, 8 vs 32 KV groups.
    dec = {g: [entry("attn", GQA_DECODE, f"llama32_1b_kv{g}", n) for n in THREADS]
           for g in (8, 32)}
    us = {g: [ms(e) * 1e3 if e else None for e in es] for g, es in dec.items()}
    decode_ratio = [ratio(us[32][i], us[8][i]) for i in range(len(THREADS))]
    rows = []
    for g, es in dec.items():
        if not any(es):
            continue
        e0 = next(e for e in es if e)
        kv, weights = counter(e0, "kv_bytes"), counter(e0, "weight_bytes")
        rows.append([f"{g}", pair(us[g], fmt_us),
                     f"{fmt_mib(kv + weights)} ({fmt_mib(kv)} + {fmt_mib(weights)})",
                     pair([counter(e, "ideal_us") for e in es], fmt_us),
                     pair([ratio(u, counter(e, "ideal_us")) for u, e in zip(us[g], es)],
                          fmt_x)])
    if rows:
        bytes_ratio = None
        if all(dec[g][0] for g in (8, 32)):
            streamed = lambda g: counter(dec[g][0], "bytes_streamed")
            bytes_ratio = ratio(streamed(32), streamed(8))
        out += ["### KV-cache decoding: one token after 4095", "",
                "`cache.rewind(4095)` + `forward(one token, cache)`, B = 1, with the layer's 8 "
                "KV groups and with 32 (one KV head per query head: multi-head attention of "
                "the same width). Decoding reads every weight and the cached keys and values "
                "once; ideal = those bytes / the read bandwidth over 256 MiB with as many "
                "threads (`machine/read_bandwidth`).", ""]
        out += md_table(["KV groups", "µs (1 / 2 thr)", "bytes read MiB (KV + weights)",
                         "ideal µs (1 / 2 thr)", "time / ideal (1 / 2 thr)"], rows)
        out += ["", f"32 groups / 8 groups: {pair(decode_ratio, fmt_x)} (1 / 2 threads); "
                f"bytes read, 32 / 8: {fmt_x(bytes_ratio)}.", ""]

    # Sliding window vs full causal at T = 4096: the module and the core alone.
    window_rows, window_ratio = [], {}
    for kind, variant, full, windowed in [
            ("whole module", "gqa_prefill", "llama32_1b_T4096", "llama32_1b_T4096_w512"),
            ("attention core alone", "gqa_core", "h32_kv8_T4096", "h32_kv8_T4096_w512")]:
        tf = [t("attn", variant, full, n) for n in THREADS]
        tw = [t("attn", variant, windowed, n) for n in THREADS]
        if all(x is None for x in tf + tw):
            continue
        window_ratio[kind] = [ratio(w, f) for w, f in zip(tw, tf)]
        flops = [next((counter(entry("attn", variant, c, n), "flops_causal") for n in THREADS
                       if entry("attn", variant, c, n)), None) for c in (windowed, full)]
        window_rows.append([kind, pair(tf, fmt_ms), pair(tw, fmt_ms),
                            pair(window_ratio[kind], fmt_x), fmt_x(ratio(*flops))])
    if window_rows:
        out += ["### Sliding window (512) vs full causal, T = 4096", "",
                "The same layer built with `sliding_window = 512` (each query sees itself and "
                "the 511 keys before it), and the attention core alone on the same shape "
                "(`AttentionProblem::window`). The projections (85.9 GFLOP of the 154.6 of the "
                "full forward, of the 102.0 with the window) do not shrink with the window: "
                "the FLOP ratio, window / full, is 0.66 for the module and 0.23 for the core.",
                ""]
        out += md_table(["measured", "full causal ms (1 / 2 thr)", "window ms (1 / 2 thr)",
                         "window / full (1 / 2 thr)", "FLOP ratio"], window_rows)
        out.append("")

    # The attention core's FLOP rate: GQA vs MHA.
    core = {c: [entry("attn", "gqa_core", c, n) for n in THREADS] for c, _ in GQA_CORE}
    rate = {c: [gflops(e, "causal") for e in es] for c, es in core.items()}
    core_ratio = [ratio(g, m) for g, m in zip(rate["h32_kv8_T1024"], rate["h12_kv12_T1024"])]
    rows = []
    for c, label in GQA_CORE:
        es = core[c]
        if not any(es):
            continue
        rows.append([label, pair([ms(e) if e else None for e in es], fmt_ms),
                     pair(rate[c], fmt_gf),
                     pair([in_run_peak_fraction(e, n, results) for e, n in zip(es, THREADS)],
                          fmt_pct),
                     pair([ratio(r, m) for r, m in zip(rate[c], rate["h12_kv12_T1024"])],
                          fmt_x)])
    if rows:
        out += ["### Attention core alone: FLOP rate", "",
                "`attn::detail::attention` on a QKV buffer laid out as the module's (no "
                "projections, no RoPE), B = 1, head_dim 64, causal; GFLOP/s = 4·H·hd·P / "
                "median wall time (P as above). Rate / MHA: that GFLOP/s over the chapter's "
                "12-head shape's at the same thread count.", ""]
        out += md_table(["shape", "ms (1 / 2 thr)", "GFLOP/s (1 / 2 thr)",
                         "% of in-run FMA peak (1 / 2 thr)", "rate / MHA (1 / 2 thr)"], rows)
        out.append("")

    # The PyTorch peer.
    peer_rows = []
    torch_prefill = [t("torch", "gqa_book", "llama32_1b_T1024", n) for n in THREADS]
    attn_prefill = [t("attn", "gqa_prefill", "llama32_1b_T1024", n) for n in THREADS]
    for prefix, variant, config, label in [
            ("attn", "gqa_prefill", "llama32_1b_T1024", "attn GroupedQueryAttention, prefill"),
            ("torch", "gqa_book", "llama32_1b_T1024", "PyTorch, the book's module, prefill"),
            ("torch", "gqa_sdpa", "llama32_1b_T1024",
             "PyTorch, scaled_dot_product_attention, prefill"),
            ("attn", GQA_DECODE, "llama32_1b_kv8", "attn GroupedQueryAttention, decode"),
            ("torch", "gqa_book_decode_1_after_4095", "llama32_1b_kv8",
             "PyTorch, the book's module, decode"),
            ("torch", "gqa_sdpa_decode_1_after_4095", "llama32_1b_kv8",
             "PyTorch, scaled_dot_product_attention, decode")]:
        times = [t(prefix, variant, config, n) for n in THREADS]
        if all(x is None for x in times):
            continue
        base_variant = "gqa_prefill" if "prefill" in label else GQA_DECODE
        base = [t("attn", base_variant, config, n) for n in THREADS]
        error = next((counter(entry(prefix, variant, config, n), "rel_l2_vs_attn")
                      for n in THREADS if entry(prefix, variant, config, n)), None)
        peer_rows.append([label, fmt_ms(times[0]), fmt_ms(times[1]),
                          fmt_ratio(times[0], base[0]), fmt_ratio(times[1], base[1]),
                          "—" if prefix == "attn" else
                          "not checked" if error is None or error < 0 else f"{error:.1e}"])
    if any(row[0].startswith("PyTorch") for row in peer_rows):
        out += ["### attn and PyTorch", "",
                "The PyTorch peer (`bench/peers/torch_gqa.py`): the book's "
                "GroupedQueryAttention (RoPE by compute_rope_params / apply_rope, keys and "
                "values repeat_interleave'd, masked softmax; decoding: its KV-cache step, "
                "torch.cat of the new key and value to the cache), same weights and input, "
                "its output checked against attn's before timing (relative L2 error). "
                "× attn: time over attn's at the same thread count.", ""]
        out += md_table(["module", "ms, 1 thread", "ms, 2 threads", "× attn, 1 thread",
                         "× attn, 2 threads", "error vs attn"], peer_rows)
        note = gqa_context.get("sdpa_note")
        out += ["", note + "." if note else "", ""]

    # The targets, first.
    targets = []
    meets = lambda x, bound, above: "—" if x is None else (
        "yes" if (x >= bound if above else x <= bound) else "**no**")
    torch_ratio = ratio(torch_prefill[1], attn_prefill[1])
    if torch_ratio is not None:
        targets.append([f"prefill T = 1024, 2 threads: PyTorch book / attn ≥ "
                        f"{GQA_TARGET_TORCH}×", fmt_x(torch_ratio),
                        meets(torch_ratio, GQA_TARGET_TORCH, True)])
    if any(x is not None for x in decode_ratio):
        targets.append([f"decode after 4095: 32 KV groups / 8 ≥ {GQA_TARGET_DECODE}× "
                        "(1 / 2 thr)", pair(decode_ratio, fmt_x),
                        pair([meets(x, GQA_TARGET_DECODE, True) for x in decode_ratio],
                             str)])
    for kind, values in window_ratio.items():
        targets.append([f"T = 4096, window 512 / full causal ≤ {GQA_TARGET_WINDOW}×, {kind} "
                        "(1 / 2 thr)", pair(values, fmt_x),
                        pair([meets(x, GQA_TARGET_WINDOW, False) for x in values], str)])
    if any(x is not None for x in core_ratio):
        targets.append([f"core GFLOP/s, GQA (32 / 8 heads) / MHA (12 heads) ≥ "
                        f"{GQA_TARGET_CORE} (1 / 2 thr)", pair(core_ratio, fmt_x),
                        pair([meets(x, GQA_TARGET_CORE, True) for x in core_ratio], str)])
    if not out:
        return []
    head = ["## Grouped-query attention (Llama 3.2 1B attention layer)", "",
            "`GroupedQueryAttention(2048, 2048, 8192, 32, 8)`: d_in = d_out = 2048, 32 query "
            "heads of 64 reading 8 key/value heads, RoPE theta 500,000 with Llama 3 frequency "
            "scaling (factor 32, low / high frequency factors 1 / 4, original context 8192), "
            "no biases; weights from seed 123, input `rand` drawn after them, B = 1. Medians "
            "of this run; ratios > 1: the second-named is faster.", ""]
    if targets:
        head += md_table(["target (ratio of medians, this run)", "measured", "met"], targets)
        head.append("")
    return head + out


def machine_table(results, attn_context):
    peak1 = peak_1thread(attn_context)
    lines = []
    for n in THREADS:
        fma = results.get(("machine", "fma_peak", "fp32", n))
        reads = [results.get(("machine", "read_bandwidth", size, n))
                 for size in ("256MiB", "16MiB")]
        if not fma and not any(reads):
            continue
        g = counter(fma, "GFLOPS")
        rel = f"{100 * g / (n * peak1):.0f}%" if g is not None and peak1 else "—"
        lines.append(f"| {n} | {fmt_gf(g)} | {rel} | {fmt_gf(counter(reads[0], 'GBps'))} "
                     f"| {fmt_gf(counter(reads[1], 'GBps'))} |")
    if not lines:
        return []
    return ["## Machine", "",
            "`machine/fma_peak`: 12 independent vector MulAdd chains per thread (std::threads). "
            "`machine/read_bandwidth`: each thread sums its contiguous part of a buffer "
            "(GB/s = 1e9 bytes/s). Medians over repetitions; the decode table's ideal times use "
            "separate best-of-8 measurements.", "",
            "| threads | FMA GFLOP/s | vs threads × start-up 1-core peak "
            "| read GB/s, 256 MiB | read GB/s, 16 MiB |",
            "|--:|--:|--:|--:|--:|"] + lines + [""]


def svg_time_vs_t(results, threads=2, extra_series=()):
    """Log-log lines of time vs T (B=1 sweep) at `threads` threads, as a standalone SVG;
    extra_series: more ((prefix, variant), label, colour, dash), e.g. the modern peers'."""
    series = [(("attn", "wrapper"), "attn wrapper", "#1f77b4", ""),
              (("attn", "fused"), "attn fused MHA", "#d62728", ""),
              (("attn", "fused_materialized"), "attn fused, materialized", "#ff7f0e", "4,2"),
              (("attn", "fused_int8"), "attn fused, int8", "#8c564b", "8,3"),
              (("torch", "book_mha"), "torch book MHA", "#2ca02c", "6,4"),
              (("torch", "nn_mha"), "torch nn.MultiheadAttention", "#9467bd", "2,3")]
    series += list(extra_series)
    points = {}
    for (prefix, variant), label, color, dash in series:
        pts = [(t, ms(results[(prefix, variant, f"B1_T{t}", threads)])) for t in SWEEP
               if (prefix, variant, f"B1_T{t}", threads) in results]
        if pts:
            points[label] = (pts, color, dash)
    # The legend, right of the plot, grows with its longest label (text from 51 px right of
    # the plot, about 6.2 px per character at 12 px) and its number of lines (22 px each).
    longest = max((len(label) for label in points), default=0)
    left, top, bottom = 80, 40, 60
    right = max(230, 61 + int(6.2 * longest))
    width = left + 410 + right
    height = max(480, top + 40 + 22 * len(points) + bottom)
    all_y = [y for pts, _, _ in points.values() for _, y in pts] or [1.0]
    y_lo = 10 ** math.floor(math.log10(min(all_y)))
    y_hi = 10 ** math.ceil(math.log10(max(all_y)))
    if y_hi <= y_lo:
        y_hi = y_lo * 10
    x_lo, x_hi = SWEEP[0], SWEEP[-1]
    pw, ph = width - left - right, height - top - bottom
    sx = lambda x: left + (math.log(x) - math.log(x_lo)) / (math.log(x_hi) - math.log(x_lo)) * pw
    sy = lambda y: top + ph - (math.log(y) - math.log(y_lo)) / (math.log(y_hi) - math.log(y_lo)) * ph
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left + pw / 2}" y="22" text-anchor="middle" font-size="14">'
           f'Forward time vs T (B=1, d=768, 12 heads, {threads} threads), log-log</text>',
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="black"/>']
    for t in SWEEP:
        x = sx(t)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + ph}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{top + ph + 18}" text-anchor="middle">{t}</text>')
    decade = y_lo
    while decade <= y_hi * 1.0001:
        for m in range(1, 10):
            y = decade * m
            if y > y_hi * 1.0001:
                break
            color = "#bbb" if m == 1 else "#eee"
            out.append(f'<line x1="{left}" y1="{sy(y):.1f}" x2="{left + pw}" y2="{sy(y):.1f}" '
                       f'stroke="{color}"/>')
            if m == 1:
                out.append(f'<text x="{left - 8}" y="{sy(y) + 4:.1f}" text-anchor="end">'
                           f'{y:g}</text>')
        decade *= 10
    out.append(f'<text x="{left + pw / 2}" y="{height - 18}" text-anchor="middle">'
               f'T (tokens)</text>')
    out.append(f'<text x="20" y="{top + ph / 2}" text-anchor="middle" '
               f'transform="rotate(-90 20 {top + ph / 2})">time per forward (ms)</text>')
    for i, (label, (pts, color, dash)) in enumerate(points.items()):
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"'
                   f'{dash_attr}/>')
        for x, y in pts:
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}"/>')
        ly = top + 20 + 22 * i
        lx = left + pw + 15
        out.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 30}" y2="{ly}" stroke="{color}" '
                   f'stroke-width="2"{dash_attr}/>')
        out.append(f'<text x="{lx + 36}" y="{ly + 4}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def environment(attn_context, torch_context, results, peer_lines=()):
    lines = ["## Environment", ""]
    cpu = f"{attn_context.get('num_cpus', '?')} CPUs at {attn_context.get('mhz_per_cpu', '?')} MHz"
    load = attn_context.get("load_avg")
    if load:
        cpu += f"; load average at start {', '.join(f'{x:.2f}' for x in load)}"
    lines.append(f"- machine: {attn_context.get('host_name', '?')}, {cpu}")
    capacity = attn_context.get("cores_available_to_2_threads")
    if capacity is not None:
        note = ""
        if float(capacity) < 1.8:
            note = (" — **the second core was busy with other work: the 2-thread columns "
                    "measure time-sharing of one core, not attn's or PyTorch's scaling**")
        lines.append(f"- cores available to 2 spinning threads at the start of the attn "
                     f"run: {capacity}{note}")
    peak = attn_context.get("fma_peak_gflops_1thread")
    if peak is not None:
        lines.append(f"- FP32 FMA peak of one core, measured at start-up (best of 100 short runs "
                     f"of 12 independent {attn_context.get('machine_kernel_target', '?')} MulAdd "
                     f"chains): {float(peak):.1f} GFLOP/s; the reference of every \"% of peak\" "
                     f"below is threads × this")
    lines.append(f"- attn: Highway target {attn_context.get('attn_target', '?')}, "
                 f"heap tracking: {attn_context.get('heap_tracking', '?')}, "
                 f"build {attn_context.get('attn_build_type', '?')}; Google Benchmark library "
                 f"(Debian's package) reports itself as {attn_context.get('library_build_type', '?')}"
                 f" (its own build; it does not affect attn's code)")
    if torch_context:
        lines.append(f"- PyTorch {torch_context.get('torch_version', '?')} "
                     f"({torch_context.get('torch_blas', '?')}), OpenBLAS core "
                     f"{torch_context.get('openblas_core', '?')} "
                     f"(OPENBLAS_CORETYPE={torch_context.get('openblas_coretype_env', '?')}), "
                     f"OMP_WAIT_POLICY={torch_context.get('omp_wait_policy', '?')}; "
                     f"{torch_context.get('openblas_config', '')}")
        if "quantized_engine" in torch_context:
            lines.append(f"- PyTorch quantized engine (book_mha_qint8): "
                         f"{torch_context['quantized_engine']} (supported: "
                         f"{torch_context.get('quantized_engines_supported', '?')})")
    else:
        lines.append("- PyTorch peer: not run (torch not importable, or skipped)")
    lines += peer_lines
    lines.append("")
    return lines


def peer_environment_effects(results_dir, torch_results):
    """The peer's sensitivity to its environment, from the two extra runs of bench/run.sh."""
    lines = []
    extra = [("torch_default_core.json", "torch_default_core",
              "OpenBLAS core: the book MHA without OPENBLAS_CORETYPE (Debian's OpenBLAS 0.3.21 "
              "picks its core by CPUID and does not know this CPU) vs with SkylakeX"),
             ("torch_omp_active.json", "torch_omp_active",
              "OpenMP wait policy: the book MHA with OpenMP's default spin-waiting vs "
              "OMP_WAIT_POLICY=PASSIVE (used for every torch number above)")]
    for filename, prefix, title in extra:
        path = os.path.join(results_dir, filename)
        if not os.path.exists(path):
            continue
        context, results = load(path)
        rows = []
        for (p, variant, config, threads), entry in sorted(results.items()):
            if p != prefix:
                continue
            base = torch_results.get(("torch", variant, config, threads))
            base_ms = ms(base) if base else None
            rows.append(f"| {variant}/{config}/threads:{threads} | {fmt_ms(ms(entry))} | "
                        f"{fmt_ms(base_ms)} | {fmt_ratio(ms(entry), base_ms)} |")
        if not rows:
            continue
        if not lines:
            lines = ["## The PyTorch peer's environment", ""]
        core = context.get("openblas_core", "?")
        lines += [f"{title}. This run: OpenBLAS core {core}, "
                  f"OMP_WAIT_POLICY={context.get('omp_wait_policy', '?')}.", "",
                  "| benchmark | ms, this run | ms, main peer run | ratio |", "|---|--:|--:|--:|"]
        lines += rows + [""]
    return lines


def md_table(header, rows, right_from=1):
    """A Markdown table with padded cells (readable on a terminal too); columns from
    `right_from` on are right-aligned."""
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    pad = lambda cells: "| " + " | ".join(
        c.rjust(w) if i >= right_from else c.ljust(w)
        for i, (c, w) in enumerate(zip(cells, widths))) + " |"
    rule = "|" + "|".join("-" * (w + 1) + ":" if i >= right_from else "-" * (w + 2)
                          for i, w in enumerate(widths)) + "|"
    return [pad(header), rule] + [pad(r) for r in rows]


def simd_name(target):
    """Highway's target name with its instruction set, e.g. "AVX3 (AVX-512)"."""
    if target.startswith("AVX3"):
        return f"{target} (AVX-512)"
    return target


def headline(results, attn_context, torch_context, peers):
    """The wrapper, the fused module, PyTorch and the modern peers (report_peers.Peers) at
    B8_T1024, 1 and 2 threads."""
    get = lambda key, n: results.get(key + (HEADLINE_CONFIG, n))
    time = lambda key, n: ms(get(key, n)) if get(key, n) else None
    fused = [time(("attn", "fused"), n) for n in THREADS]
    rows, spread = [], []
    for key, label in HEADLINE_ROWS + peers.headline_rows(HEADLINE_CONFIG):
        times = [time(key, n) for n in THREADS]
        if all(t is None for t in times):
            continue
        rows.append([label] + [fmt_ms(t) for t in times]
                    + [fmt_ratio(t, f) for t, f in zip(times, fused)])
        spread += [get(key, n)["_cv"] for n in THREADS
                   if key[0] == "attn" and get(key, n) and get(key, n).get("_cv") is not None]
    if not rows:
        return []
    lines = ["## B=8, T=1024, d_in=d_out=768, 12 heads (the book's bonus benchmark)", "",
             "Median wall time of one forward call (eval mode, dropout 0.0); \"× attn fused\": "
             "that time over attn MultiHeadAttention's at the same thread count (> 1: slower "
             "than attn's fused module)."
             + (" A modern peer's row: its engine, version and precision, then its variant "
                "(bench/README.md)." if peers.keys else ""), ""]
    lines += md_table(["module", "ms, 1 thread", "ms, 2 threads", "× attn fused, 1 thread",
                       "× attn fused, 2 threads"], rows)
    lines.append("")
    date = str(attn_context.get("date", torch_context.get("date", "?")))[:10]
    cpu = attn_context.get("cpu_model") or torch_context.get("cpu_model") or "?"
    machine = (f"Machine: {cpu}, {attn_context.get('num_cpus', '?')} CPUs; attn dispatched to "
               f"{simd_name(str(attn_context.get('attn_target', '?')))}; {date}.")
    if torch_context:
        machine += (f" PyTorch {torch_context.get('torch_version', '?')} with OpenBLAS "
                    f"({torch_context.get('openblas_core', '?')} kernels).")
    else:
        machine += " PyTorch peer: not run."
    machine += peers.machine_text()
    lines.append(machine)
    capacity = attn_context.get("cores_available_to_2_threads")
    if capacity is not None and float(capacity) < 1.8:
        lines += ["", f"Only {float(capacity):.2f} cores were free for 2 threads when attn's "
                  "run started (other work on the machine): the 2-thread column measures "
                  "threads sharing the cores with that work, not scaling."]
    if spread and max(spread) > 0.10:
        lines += ["", f"attn's repetitions spread by up to {100 * max(spread):.0f}% (coefficient "
                  "of variation): the machine was busy; compare ratios rather than times."]
    lines.append("")
    return lines


def peer_summary_lines(peers):
    """The summary of attn against the modern peers, after the headline (report_peers)."""
    status = peers.status_line()
    if status:
        return [status, ""]
    sentences = peers.summary_sentences()
    if not sentences:
        return []
    return (["## attn against the modern peers, in short", "",
             "Medians of this run, each peer row against attn's row doing the same work at the "
             "same thread count (section *attn against PyTorch 2, ONNX Runtime and OpenVINO*):",
             ""] + [f"- {s}" for s in sentences] + [""])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_dir")
    parser.add_argument("--full", action="store_true", help="print the whole report")
    args = parser.parse_args()
    results_dir = args.results_dir
    attn_context, results = load(os.path.join(results_dir, "attn.json"))
    torch_context, torch_results = {}, {}
    torch_path = os.path.join(results_dir, "torch.json")
    if os.path.exists(torch_path):
        torch_context, torch_results = load(torch_path)
        results.update(torch_results)
    gqa_context = {}
    gqa_path = os.path.join(results_dir, "torch_gqa.json")
    if os.path.exists(gqa_path):
        gqa_context, gqa_results = load(gqa_path)
        results.update(gqa_results)
    peers = report_peers.Peers(sys.modules[__name__], results_dir, results)

    # Configurations of the module benchmarks (the per-configuration tables).
    present = {key[2] for key in results if key[:2] in ROW_KEYS}
    configs = [c for c in CONFIGS if c in present] + sorted(present - set(CONFIGS))
    # Every configuration any attn benchmark ran (flash vs materialized, core).
    attn_present = {key[2] for key in results
                    if key[0] == "attn" and not key[1].startswith("gqa_")} - {DECODE_CONFIG}
    attn_configs = [c for c in CONFIGS if c in attn_present] + sorted(attn_present - set(CONFIGS))
    md = ["# attn attention benchmark", "",
          "Median wall time per forward call (eval mode, dropout 0.0) over repetitions; "
          "ratios compare medians of the same run. Formulas and method: bench/README.md.", ""]
    head = headline(results, attn_context, torch_context, peers)
    md += head
    peer_summary = peer_summary_lines(peers)
    md += peer_summary
    md += environment(attn_context, torch_context, results, peers.environment_lines())
    md += summary_table(results, configs, peers)
    md += flash_vs_materialized(results, attn_configs)
    md += core_table(results, attn_configs, attn_context)
    md += decode_table(results)
    md += report_kv_cache.section(sys.modules[__name__], results)
    md += int8_section(results, torch_context)
    md += gqa_section(results, attn_context, gqa_context)
    md += peers.section()
    md += machine_table(results, attn_context)
    md += ["## Per configuration", ""]
    for c in configs:
        md += config_table(c, results)
    md += peer_environment_effects(results_dir, torch_results)
    chart = os.path.join(results_dir, "time_vs_T.svg")
    if sum(("attn", "fused", f"B1_T{t}", 2) in results for t in SWEEP) >= 2:
        with open(chart, "w") as f:
            f.write(svg_time_vs_t(results, 2, peers.chart_series(2, SWEEP)))
        md += ["## Time vs T", "", "![time vs T, 2 threads](time_vs_T.svg)", ""]
        if peers.keys:
            md += ["A modern peer's line: for each engine and precision, its variant with the "
                   "most points of the sweep, then the fastest.", ""]
    elif os.path.exists(chart):
        os.remove(chart)  # from an earlier run: not this run's data
    text = "\n".join(md)
    report = os.path.join(results_dir, "report.md")
    with open(report, "w") as f:
        f.write(text)
    if args.full:
        print(text)
        return
    print("\n".join(head) if head else
          f"(no {HEADLINE_CONFIG} results for attn's wrapper or fused module in this run)\n")
    if peer_summary:
        print("\n".join(peer_summary))
    raw = sorted(f for f in os.listdir(results_dir)
                 if f.endswith((".json", "_console.txt")) or f == "gemm.md")
    print(f"Full report: {report}")
    print(f"Chart:       {chart}" if os.path.exists(chart) else
          "Chart:       none (time_vs_T.svg needs the T sweep, B1_T64 ... B1_T2048)")
    print(f"Raw output:  {results_dir}/ {', '.join(raw)}")


if __name__ == "__main__":
    main()
