"""KV-cache decoding with an int8 cache, in bench/report.py's report.

bench/decode_kv_int8_bench.cc's rows attn/kv_decode_<weights>w_<cache>kv/<model>/threads:<n>:
one decode step (cache.rewind(prompt) + forward(one token, cache)) of the float32 module
(f32w) or its quantize_dynamic copy (int8w) through a float32 (f32kv) or an int8 (int8kv)
cache, for GPT-2 small (one token after 1023) and the Llama 3.2 1B layer (one token after
4095, 8 KV groups), at 1 and 2 threads. Counters: kv_bytes, weight_bytes, bytes_streamed
(their sum), bandwidth_ws_GBps (the read bandwidth over a buffer of bytes_streamed bytes,
as many threads), ideal_ws_us, ratio_ws (time / ideal_ws_us), GBps, rel_l2_error (the
token's output against the f32w_f32kv row's).

section() gives the report's section "KV-cache decoding with an int8 cache": per model
and thread count, a table of the four (weights, cache) rows, then the sentences against
the targets. Rows missing from the run (e.g. under --benchmark_filter) are left out; the
section is left out when none ran. Standard library only.
"""

# (config, heading, name in a sentence, what one step does).
MODELS = [
    ("gpt2_small", "GPT-2 small", "GPT-2 small",
     "`MultiHeadAttention(768, 768, 1024, 0.0, 12)`: the token at position 1023 after a "
     "1023-token prompt; the cache holds 1024 tokens of 12 heads of 64"),
    ("llama32_1b", "Llama 3.2 1B layer", "the Llama 3.2 1B layer",
     "`GroupedQueryAttention(2048, 2048, 8192, 32, 8)` with RoPE: the token at position "
     "4095 after a 4095-token prompt; the cache holds 4096 tokens of 8 KV heads of 64"),
]
WEIGHTS = {"f32": "float32 module", "int8": "quantize_dynamic module"}
CACHES = {"f32": "float32 cache", "int8": "int8 cache"}
CASES = [("f32", "f32"), ("f32", "int8"), ("int8", "f32"), ("int8", "int8")]
PROMPT = {"gpt2_small": 1023, "llama32_1b": 4095}  # the tokens in the cache before the step
REFERENCE = ("f32", "f32")  # the row rel_l2_error is measured against
THREADS = [1, 2]
MIB = 2**20

# The targets, on the 1-thread medians of one run.
TARGET_SPEEDUP = {"gpt2_small": 1.8, "llama32_1b": 1.5}  # f32 cache / int8 cache, int8w
TARGET_RATIO_WS = 1.3  # time / ideal_ws, every step
TARGET_MEMORY = 0.3    # int8 cache's kv_bytes / the float32 cache's


def variant(weights, cache):
    return f"kv_decode_{weights}w_{cache}kv"


def row_name(weights, cache):
    return f"{weights}w_{cache}kv"


def fmt_mib(x):
    return "—" if x is None else f"{x / MIB:.2f}"


def fmt_x(x):
    return "—" if x is None else f"{x:.2f}×"


def met(ok):
    return "met" if ok else "not met"


class KvCache:
    """The int8-cache rows of one run. report: bench/report.py's module (ms, counter,
    fmt_us, fmt_gf, fmt_err, md_table), passed in because report.py runs as __main__;
    results: the report's results, keyed (prefix, variant, config, threads)."""

    def __init__(self, report, results):
        self.report, self.results = report, results

    def entry(self, config, weights, cache, threads):
        return self.results.get(("attn", variant(weights, cache), config, threads))

    def us(self, config, weights, cache, threads):
        e = self.entry(config, weights, cache, threads)
        return self.report.ms(e) * 1e3 if e else None

    def ratio_ws(self, config, weights, cache, threads):
        """Time / ideal_ws_us: the counter (the median over repetitions), else computed."""
        e = self.entry(config, weights, cache, threads)
        if e is None:
            return None
        if e.get("ratio_ws") is not None:
            return e["ratio_ws"]
        ideal = e.get("ideal_ws_us")
        return self.us(config, weights, cache, threads) / ideal if ideal else None

    def speedup(self, config, weights, threads):
        """Float32 cache time / int8 cache time, the same weights and thread count."""
        f = self.us(config, weights, "f32", threads)
        q = self.us(config, weights, "int8", threads)
        return f / q if f is not None and q else None

    def kv_bytes(self, config, cache, threads=None):
        """The cache's kv_bytes (the same for both weights and every thread count); the
        given thread count's rows first."""
        order = ([threads] if threads else []) + [n for n in THREADS if n != threads]
        for n in order:
            for weights in WEIGHTS:
                value = self.report.counter(self.entry(config, weights, cache, n), "kv_bytes")
                if value is not None:
                    return value
        return None

    def memory(self, config, threads=None):
        f, q = self.kv_bytes(config, "f32", threads), self.kv_bytes(config, "int8", threads)
        return (q / f if f and q is not None else None), f, q

    def table(self, config, threads):
        r = self.report
        rows = []
        for weights, cache in CASES:
            e = self.entry(config, weights, cache, threads)
            if e is None:
                continue
            error = r.counter(e, "rel_l2_error")
            rows.append([
                f"`{row_name(weights, cache)}`: {WEIGHTS[weights]}, {CACHES[cache]}",
                r.fmt_us(self.us(config, weights, cache, threads)),
                fmt_x(self.speedup(config, weights, threads)) if cache == "int8" else "—",
                fmt_mib(r.counter(e, "kv_bytes")), fmt_mib(r.counter(e, "bytes_streamed")),
                r.fmt_gf(r.counter(e, "GBps")), r.fmt_gf(r.counter(e, "bandwidth_ws_GBps")),
                r.fmt_us(r.counter(e, "ideal_ws_us")),
                fmt_x(self.ratio_ws(config, weights, cache, threads)),
                "reference" if (weights, cache) == REFERENCE else r.fmt_err(error)])
        if not rows:
            return []
        out = r.md_table(["weights, cache", "µs per step", "f32 cache / int8 cache", "KV MiB",
                          "bytes streamed MiB", "GB/s", "working-set GB/s", "ideal µs",
                          "time / ideal", "rel L2 error vs f32w_f32kv"], rows)
        fraction, f, q = self.memory(config, threads)
        if fraction is not None:
            out += ["", f"KV memory, int8 cache / float32 cache: {fmt_x(fraction)} "
                        f"({fmt_mib(q)} / {fmt_mib(f)} MiB)."]
        return out + [""]

    def targets(self):
        """The sentences against the targets (1-thread medians)."""
        lines = []
        for config, name, _, _ in MODELS:
            bound = TARGET_SPEEDUP[config]
            f, q = self.us(config, "int8", "f32", 1), self.us(config, "int8", "int8", 1)
            what = (f"{name} after {PROMPT[config]}, quantize_dynamic module (int8w), 1 thread: "
                    f"the int8 cache ≥ {bound}× faster per step than the float32 cache")
            if f is None or not q:
                missing = [row_name("int8", c) for c, t in (("f32", f), ("int8", q))
                           if t is None]
                lines.append(f"- {what}: not measured in this run (no "
                             f"{' or '.join(missing)} row at 1 thread).")
                continue
            s = f / q
            lines.append(f"- {what}: **{met(s >= bound)}** — {fmt_x(s)} "
                         f"({self.report.fmt_us(f)} µs / {self.report.fmt_us(q)} µs).")
        within, beyond = [], []
        for config, name, _, _ in MODELS:
            for weights, cache in CASES:
                x = self.ratio_ws(config, weights, cache, 1)
                if x is not None:
                    (within if x <= TARGET_RATIO_WS else beyond).append(
                        f"{name} `{row_name(weights, cache)}` {fmt_x(x)}")
        what = (f"Every step within {TARGET_RATIO_WS}× of its ideal time at the working-set "
                "bandwidth (1 thread)")
        if within or beyond:
            lines.append(f"- {what}: **{met(not beyond)}**"
                         f" over the {len(within) + len(beyond)} rows of this run — within: "
                         f"{', '.join(within) or 'none'}; beyond: {', '.join(beyond) or 'none'}.")
        else:
            lines.append(f"- {what}: not measured in this run.")
        fractions = []
        for config, _, name, _ in MODELS:
            fraction, f, q = self.memory(config, 1)
            if fraction is not None:
                fractions.append((fraction, f"{fmt_x(fraction)} for {name} "
                                            f"({fmt_mib(q)} / {fmt_mib(f)} MiB)"))
        what = f"The int8 cache's memory ≤ {TARGET_MEMORY}× the float32 cache's"
        if fractions:
            ok = all(x <= TARGET_MEMORY for x, _ in fractions)
            lines.append(f"- {what}: **{met(ok)}** — "
                         f"{'; '.join(text for _, text in fractions)}.")
        else:
            lines.append(f"- {what}: not measured in this run.")
        return lines

    def section(self):
        out = []
        for config, name, _, description in MODELS:
            described = False  # the model's description above its first table
            for n in THREADS:
                table = self.table(config, n)
                if table:
                    out += [f"### {name}, {n} thread{'' if n == 1 else 's'}", ""]
                    out += [] if described else [description + ".", ""]
                    out += table
                    described = True
        if not out:
            return []
        head = [
            "## KV-cache decoding with an int8 cache", "",
            "`attn/kv_decode_<weights>w_<cache>kv/<model>` (`bench/decode_kv_int8_bench.cc`): "
            "one decode step, `cache.rewind(prompt)` + `forward(one token, cache)`, of the "
            "float32 module (`f32w`) or its `quantize_dynamic` copy (`int8w`) through a "
            "float32 cache (`f32kv`) or an int8 one (`int8kv`, "
            "`make_cache(1, attn::KVCacheType::kInt8)`: symmetric int8 with one float32 scale "
            "per 32 values). The prompt goes into each cache once, outside the timing. "
            "µs per step: the median over repetitions. f32 cache / int8 cache: the int8 "
            "cache's speed-up over the float32 cache with the same weights (> 1: the int8 "
            "cache is faster). KV MiB: the cached keys and values a step reads (int8: values "
            "and scales); bytes streamed: KV + the weights as the kernels read them; GB/s: "
            "bytes streamed / time. A step's working set is one layer's (bytes streamed), "
            "small enough to stay in a large last-level cache between steps: the reference "
            "is the read bandwidth over a buffer of that many bytes with as many threads "
            "(working-set GB/s: the level of the memory hierarchy that holds it, measured "
            "once per size and thread count, best of 8), not DRAM's; ideal = bytes streamed "
            "/ that bandwidth, time / ideal = 1: as fast as reading those bytes once. Rel L2 "
            "error: ‖y − y_f32w_f32kv‖ / ‖y_f32w_f32kv‖ of the decoded token, computed once "
            "outside the timing.", ""]
        return head + out + ["### Against the targets", "",
                             "Ratios of 1-thread medians of this run:", ""] + \
            self.targets() + [""]


def section(report, results):
    """The report's section "KV-cache decoding with an int8 cache" (Markdown lines)."""
    return KvCache(report, results).section()
