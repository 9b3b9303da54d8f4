"""The modern peers in bench/report.py's report: PyTorch 2, ONNX Runtime and OpenVINO.

bench/run.sh runs bench/peers/torch2_peer.py, onnxruntime_peer.py and openvino_peer.py
(bench/peers/peer_common.py) when their virtual environment exists; each writes
<results dir>/<peer>.json in Google Benchmark's format: rows
<peer>/<variant>/<config>/threads:<n>/real_time with a "median" and a "min" aggregate, the
strings "engine", "precision" and "label" (engine + precision), and the counters
rel_l2_vs_attn (the peer's output against attn's float32 output, checked before timing)
and, for reduced-precision rows, rel_l2_error (against attn's float32 output too).

Every peer row is compared with attn's row of the same configuration and thread count
that does the same work (comparable()): the fused MultiHeadAttention in float32, or its
quantize_dynamic copy for int8 rows; the KV-cache decode step; GroupedQueryAttention's
prefill or decode step. Reduced floating-point precisions (bf16, fp16) are compared with
attn's float32 row: attn has no such mode. Ratios are peer / attn of the medians of the
same run (> 1: attn is faster).

This module adds to the report: rows of the headline table, columns of the summary table,
lines of the chart, lines of the environment, the summary sentences printed with the
headline, and the section "attn against PyTorch 2, ONNX Runtime and OpenVINO". Nothing of
it appears when no peer file is there, except one line saying so. Standard library only.
"""

import math
import os

# (prefix = the file's name and its rows' first name component, the engine's name).
PEERS = [("torch2", "PyTorch 2"), ("onnxruntime", "ONNX Runtime"), ("openvino", "OpenVINO")]
PRECISION_ORDER = ["fp32", "int8"]  # then the other precisions, by name

# attn's variant that does the work of a peer row, by the configuration's kind.
GPT2_DECODE = "gpt2_small"
BASELINES = {  # kind -> (float variant, int8 variant or None)
    "mha": ("fused", "fused_int8"),
    "decode": ("decode_1_after_1023", "decode_int8_1_after_1023"),
    "gqa_prefill": ("gqa_prefill", None),
    "gqa_decode": ("gqa_decode_1_after_4095", None),
}
BASELINE_NAMES = {
    "fused": "attn's fused module",
    "fused_int8": "attn's int8 fused module (quantize_dynamic)",
    "decode_1_after_1023": "attn's KV-cache decode step",
    "decode_int8_1_after_1023": "attn's int8 KV-cache decode step",
    "gqa_prefill": "attn's GroupedQueryAttention",
    "gqa_decode_1_after_4095": "attn's GroupedQueryAttention decode step",
}
BASELINE_ROWS = {  # attn's rows in the section's tables
    "fused": "attn MultiHeadAttention (fused)",
    "fused_int8": "attn quantize_dynamic(MultiHeadAttention)",
    "decode_1_after_1023": "attn MultiHeadAttention, KV-cache step",
    "decode_int8_1_after_1023": "attn quantize_dynamic(MultiHeadAttention), KV-cache step",
    "gqa_prefill": "attn GroupedQueryAttention",
    "gqa_decode_1_after_4095": "attn GroupedQueryAttention, KV-cache step",
}
GQA_DESCRIPTIONS = {
    "llama32_1b_T1024": "GroupedQueryAttention prefill, Llama 3.2 1B layer (d = 2048, 32 query "
                        "heads on 8 KV heads, RoPE), B = 1, T = 1024",
    "llama32_1b_kv8": "GroupedQueryAttention decoding, Llama 3.2 1B layer: one token after a "
                      "4095-token prompt, 8 KV groups",
    "llama32_1b_kv32": "the same layer with 32 KV groups: one token after 4095",
}
GENERIC_CONTEXT = {"executable", "host_name", "num_cpus", "cpu_model", "python", "date"}
# Chart colours of the peers' lines, after report.svg_time_vs_t's own six.
CHART_STYLES = [("#17becf", "5,2"), ("#bcbd22", ""), ("#e377c2", "3,3"), ("#7f7f7f", "7,2,2,2"),
                ("#393b79", ""), ("#637939", "5,2"), ("#ad494a", "3,3"), ("#8c6d31", "")]


def kind(config):
    """The configuration's kind: mha (the book's module), decode, gqa_prefill, gqa_decode."""
    if config == GPT2_DECODE:
        return "decode"
    if config.startswith("llama32_1b_kv"):
        return "gqa_decode"
    if config.startswith("llama32_1b_"):
        return "gqa_prefill"
    return "mha"


def precision_class(precision):
    """"fp32", "int8" or the precision's first word ("bf16 (default)" -> "bf16")."""
    p = (precision or "").strip().lower()
    if "int8" in p or "qint8" in p or "uint8" in p:
        return "int8"
    if p.startswith(("fp32", "f32", "float32")):
        return "fp32"
    return p.split()[0] if p else "?"


def precision_key(cls):
    return (PRECISION_ORDER.index(cls) if cls in PRECISION_ORDER else len(PRECISION_ORDER), cls)


def comparable(config, precision):
    """attn's variant that a peer row of this configuration and precision is compared with."""
    floating, int8 = BASELINES[kind(config)]
    return int8 if precision_class(precision) == "int8" and int8 else floating


def fmt_time(x):
    """Milliseconds to 3 significant figures (decode steps take a tenth of a millisecond)."""
    if x is None:
        return "—"
    digits = max(0, 2 - math.floor(math.log10(x))) if x > 0 else 3
    return f"{x:.{digits}f}"


def fmt_x(x):
    return "—" if x is None else f"{x:.2f}×"


def fmt_err(x):
    return "—" if x is None or x < 0 else f"{x:.2e}"


def fmt_l2(x):
    return "—" if x is None else "not checked" if x < 0 else f"{x:.1e}"


def threads_text(n):
    return f"{n} thread" + ("" if n == 1 else "s")


class Peers:
    """The peers' rows of one results folder, beside attn's.

    report: bench/report.py's module (its load, ms, md_table, CONFIGS), passed in rather
    than imported because report.py runs as __main__. results: the report's results, keyed
    (prefix, variant, config, threads); the peers' median rows are added to it.
    """

    def __init__(self, report, results_dir, results):
        self.report, self.results = report, results
        self.contexts = {}   # prefix -> its file's context
        self.missing = {}    # prefix -> why it has no rows
        self.keys = []       # the peers' row keys, in the report's order
        venv = os.path.join(os.path.dirname(os.path.abspath(results_dir)), "peers-venv")
        for prefix, name in PEERS:
            path = os.path.join(results_dir, f"{prefix}.json")
            if not os.path.exists(path):
                console = os.path.join(results_dir, f"{prefix}_console.txt")
                self.missing[prefix] = (
                    f"failed, see {prefix}_console.txt" if os.path.exists(console) else
                    f"no {prefix}.json")
                continue
            try:
                context, rows = report.load(path)
            except (OSError, ValueError, KeyError) as error:
                self.missing[prefix] = f"{prefix}.json unreadable ({error})"
                continue
            rows = {k: v for k, v in rows.items() if k[0] == prefix}
            self.contexts[prefix] = context
            if not rows:
                self.missing[prefix] = f"no rows in {prefix}.json, all filtered out"
            results.update(rows)
            self.keys += rows
        self.venv_missing = not os.path.isdir(venv)
        order = {p: i for i, (p, _) in enumerate(PEERS)}
        self.keys.sort(key=lambda k: (order[k[0]], precision_key(self.cls(k)), k[1], k[3]))

    # Access to one row.
    def entry(self, key):
        return self.results.get(key)

    def time(self, key, aggregate="median"):
        e = self.results.get(key)
        if e is not None and aggregate == "min":
            e = e.get("_min")
        return self.report.ms(e) if e else None

    def cls(self, key):
        return precision_class(self.entry(key).get("precision"))

    def label(self, key):
        """"ONNX Runtime 1.32.0 fp32": the engine, its version and the precision."""
        e = self.entry(key)
        label = e.get("label") or " ".join(x for x in (e.get("engine"), e.get("precision")) if x)
        return label or key[0]

    def peer_name(self, key):
        """"ONNX Runtime 1.32.0 fp32 `mha`": the label and the variant, for sentences."""
        return f"{self.label(key)} `{key[1]}`"

    def row_label(self, key):
        return f"{self.label(key)}, {key[1]}"

    def baseline(self, key):
        """attn's comparable row: (its key, its time) at the peer row's configuration and
        thread count; the time is None when that row did not run."""
        base = ("attn", comparable(key[2], self.entry(key).get("precision")), key[2], key[3])
        return base, self.time(base)

    def ratio(self, key):
        """peer / attn, medians (> 1: attn is faster)."""
        _, base = self.baseline(key)
        t = self.time(key)
        return t / base if t is not None and base else None

    def engines(self):
        """"PyTorch 2.15.0+cu132, ONNX Runtime 1.32.0": the engines that gave rows."""
        seen = []
        for key in self.keys:
            engine = self.entry(key).get("engine") or key[0]
            if engine not in seen:
                seen.append(engine)
        return seen

    def not_run_text(self):
        names = dict(PEERS)
        return "; ".join(f"{names[p]}: {why}" for p, why in self.missing.items())

    # The report's parts.
    def status_line(self):
        """The one line of a report without any peer row."""
        if self.keys:
            return None
        if all(why.startswith("no ") for why in self.missing.values()):
            why = ("no peers-venv beside this folder: scripts/install_deps.sh --with-peers "
                   "makes it" if self.venv_missing else
                   "no torch2.json, onnxruntime.json or openvino.json: skipped")
        else:
            why = self.not_run_text()
        return f"Modern peers: not run ({why})."

    def headline_rows(self, config):
        """(key without config and threads, label) of the headline table's peer rows."""
        rows = {}
        for key in self.keys:
            if key[2] == config:
                rows.setdefault(key[:2], self.row_label(key))
        return list(rows.items())

    def machine_text(self):
        if self.keys:
            return f" Modern peers: {', '.join(self.engines())}."
        return ""

    def environment_lines(self):
        lines = []
        names = dict(PEERS)
        for prefix, context in self.contexts.items():
            # Its versions and settings: the strings and numbers (not, e.g., OpenVINO's
            # runtime graphs, a dict per row).
            items = [f"{k}: {v}" for k, v in context.items()
                     if k not in GENERIC_CONTEXT and isinstance(v, (str, int, float))]
            lines.append(f"- {names[prefix]} peer ({prefix}.json): "
                         + ("; ".join(items) if items else "no versions recorded"))
        if self.missing and self.keys:
            lines.append(f"- modern peers not run: {self.not_run_text()}")
        return lines

    def groups(self):
        """{(config, threads, precision class): [peer keys]} of the rows whose comparable
        attn row ran, in the report's order."""
        groups = {}
        for key in self.keys:
            if self.ratio(key) is not None:
                groups.setdefault((key[2], key[3], self.cls(key)), []).append(key)
        order = self.config_order([c for c, _, _ in groups])
        return dict(sorted(groups.items(), key=lambda item: (
            order.index(item[0][0]), item[0][1], precision_key(item[0][2]))))

    def config_order(self, configs):
        known = list(self.report.CONFIGS) + [GPT2_DECODE, "llama32_1b_T1024", "llama32_1b_T4096",
                                             "llama32_1b_T4096_w512", "llama32_1b_kv8",
                                             "llama32_1b_kv32"]
        present = set(configs)
        return [c for c in known if c in present] + sorted(present - set(known))

    def summary_sentences(self):
        """The honest summary: where a peer is faster than attn's comparable row, one
        sentence each (configuration, thread count, precision); then the smallest margin
        where attn is faster than every peer; then int8 against int8."""
        groups = self.groups()
        sentences, margins = [], []
        for (config, threads, cls), keys in groups.items():
            keys = sorted(keys, key=self.ratio)
            best = keys[0]
            base, base_time = self.baseline(best)
            against = BASELINE_NAMES.get(base[1], f"attn's {base[1]}")
            if cls not in ("fp32", "int8"):
                against += " in float32"
            if self.ratio(best) < 1:
                text = (f"At {config_phrase(config)}, {threads_text(threads)}, "
                        f"{self.peer_name(best)} is {1 / self.ratio(best):.2f}x faster than "
                        f"{against}: {fmt_time(self.time(best))} ms against "
                        f"{fmt_time(base_time)} ms")
                if cls != "fp32":
                    text += (f" (its relative L2 error against attn's float32 output: "
                             f"{fmt_err(self.error(best))})")
                others = [k for k in keys[1:] if self.ratio(k) < 1]
                if others:
                    text += "; also faster: " + ", ".join(
                        f"{self.peer_name(k)} {1 / self.ratio(k):.2f}x" for k in others)
                sentences.append(text + ".")
            else:
                margins.append((self.ratio(best), config, threads, best))
        if margins:
            ratio, config, threads, key = min(margins, key=lambda m: m[0])
            where = (f"in all {len(groups)} comparisons" if len(margins) == len(groups) else
                     f"in the other {len(margins)} of {len(groups)} comparisons")
            sentences.append(
                f"attn is faster than every peer measured {where} (configuration × thread "
                f"count × precision); the smallest margin is {ratio:.2f}x, "
                f"{self.peer_name(key)} at {config_phrase(config)}, "
                f"{threads_text(threads)}.")
        if not groups:
            sentences.append("No modern peer row has a comparable attn row in this run "
                             "(filtered out): nothing to compare.")
        int8 = self.int8_sentence()
        if int8:
            sentences.append(int8)
        if self.missing:
            sentences.append(f"Not measured: {self.not_run_text()}.")
        return sentences

    def int8_sentence(self):
        """attn's int8 module against the peers' int8 rows: how often it is faster, and
        the times and errors at the headline configuration (or the first with int8 rows)."""
        pairs = [(c, n, keys) for (c, n, cls), keys in self.groups().items()
                 if cls == "int8" and kind(c) == "mha"]
        if not pairs:
            return None
        faster = sum(all(self.ratio(k) > 1 for k in keys) for _, _, keys in pairs)
        configs = [c for c, _, _ in pairs]
        config = self.report.HEADLINE_CONFIG if self.report.HEADLINE_CONFIG in configs \
            else configs[0]
        thread_counts = sorted({n for c, n, _ in pairs if c == config})
        times = lambda key: " / ".join(fmt_time(self.time(key[:3] + (n,))) for n in thread_counts)
        attn_key = ("attn", "fused_int8", config, thread_counts[0])
        parts = [f"attn {times(attn_key)} ms, error {fmt_err(self.error(attn_key))}"]
        peer_variants = []
        for c, n, keys in pairs:
            for key in keys:
                if c == config and key[:2] not in peer_variants:
                    peer_variants.append(key[:2])
        for prefix, variant in peer_variants:
            key = next(k for c, n, keys in pairs for k in keys
                       if c == config and k[:2] == (prefix, variant))
            ratios = " / ".join(fmt_x(self.ratio(key[:3] + (n,))) for n in thread_counts)
            parts.append(f"{self.peer_name(key)} {times(key)} ms ({ratios} attn's "
                         f"time), error {fmt_err(self.error(key))}")
        return (f"In int8 (dynamic quantization of the projections), attn's quantize_dynamic "
                f"module is faster than every peer's int8 row in {faster} of {len(pairs)} "
                f"(configuration, thread count) pairs; at {config} "
                f"({' / '.join(threads_text(n) for n in thread_counts)}; errors: relative L2 "
                f"against attn's float32 output): " + "; ".join(parts) + ".")

    def check_error(self, key):
        """The check's relative L2 error against attn's float32 output: rel_l2_vs_attn, or
        the rel_l2_error of a row that only has that (the same comparison)."""
        e = self.entry(key)
        return e.get("rel_l2_vs_attn", e.get("rel_l2_error"))

    def error(self, key):
        """Relative L2 error against the float32 output: attn's int8 rows' rel_l2_error
        (against attn's float32 module), the peers' rel_l2_error, else their check's."""
        for n in (key[3], 1, 2):
            e = self.entry(key[:3] + (n,))
            if e is None:
                continue
            if "rel_l2_error" in e:
                return e["rel_l2_error"]
            if key[0] != "attn" and "rel_l2_vs_attn" in e:
                return e["rel_l2_vs_attn"]
        return None

    def summary_columns(self):
        """Columns of the summary table: for each peer and precision, its fastest row /
        attn's comparable row, cells "1 thread / 2 threads / CPU time at 1 thread"."""
        columns = []
        seen = []
        for key in self.keys:
            if kind(key[2]) != "mha" or (key[0], self.cls(key)) in seen:
                continue
            seen.append((key[0], self.cls(key)))
        for prefix, cls in seen:
            keys = [k for k in self.keys if k[0] == prefix and self.cls(k) == cls]
            engine = self.entry(keys[0]).get("engine") or prefix
            precision = self.entry(keys[0]).get("precision") or cls
            base = "attn int8" if cls == "int8" else "attn fused"
            columns.append((f"{engine} {precision} / {base}",
                            self._summary_cell(prefix, cls)))
        return columns

    def _summary_cell(self, prefix, cls):
        def cell(config, thread_counts):
            keys = [k for k in self.keys if k[0] == prefix and k[2] == config
                    and self.cls(k) == cls and self.ratio(k) is not None]
            cells = []
            for n in thread_counts:
                ratios = [self.ratio(k) for k in keys if k[3] == n]
                cells.append(fmt_x(min(ratios)) if ratios else "—")
            one = [k for k in keys if k[3] == 1]
            cpu = "—"
            if one:
                fastest = min(one, key=self.ratio)
                base, _ = self.baseline(fastest)
                a, b = (self.report.cpu_ms(self.entry(fastest)),
                        self.report.cpu_ms(self.entry(base)))
                cpu = fmt_x(a / b) if a is not None and b else "—"
            return " / ".join(cells + [cpu])
        return cell

    def chart_series(self, threads, sweep):
        """One line per peer and precision: its variant with the most points of the T
        sweep at `threads` threads, then the fastest (geometric mean): (key, label, colour,
        dash) as report.svg_time_vs_t draws them."""
        candidates = {}
        for key in self.keys:
            if key[3] == threads and key[2] in [f"B1_T{t}" for t in sweep]:
                candidates.setdefault((key[0], self.cls(key)), {}).setdefault(
                    key[1], []).append(self.time(key))
        series = []
        for (prefix, cls), variants in candidates.items():
            variant = min(variants, key=lambda v: (
                -len(variants[v]), sum(math.log(t) for t in variants[v]) / len(variants[v])))
            key = next(k for k in self.keys if k[:2] == (prefix, variant) and k[3] == threads)
            color, dash = CHART_STYLES[len(series) % len(CHART_STYLES)]
            series.append(((prefix, variant), self.row_label(key), color, dash))
        return series

    def section(self):
        """## attn against PyTorch 2, ONNX Runtime and OpenVINO: per configuration and
        thread count, attn's comparable rows and every peer row."""
        if not self.keys:
            return []
        md = self.report.md_table
        by_config = {}
        for key in self.keys:
            by_config.setdefault(key[2], []).append(key)
        out = []
        for config in self.config_order(list(by_config)):
            keys = by_config[config]
            rows = []
            for n in sorted({k[3] for k in keys}):
                here = [k for k in keys if k[3] == n]
                bases = []
                for k in here:
                    base, _ = self.baseline(k)
                    if base not in bases:
                        bases.append(base)
                for base in sorted(bases, key=lambda b: b[1] != BASELINES[kind(config)][0]):
                    e = self.entry(base)
                    if e is None:
                        continue
                    int8 = base[1] == BASELINES[kind(config)][1]
                    rows.append([str(n), BASELINE_ROWS.get(base[1], f"attn {base[1]}"),
                                 "int8 (dynamic)" if int8 else "fp32", "—",
                                 fmt_time(self.time(base)), fmt_time(self.time(base, "min")),
                                 "—", "—",
                                 fmt_err(self.error(base)) if int8 else "—"])
                for k in here:
                    e = self.entry(k)
                    base, base_time = self.baseline(k)
                    cls = self.cls(k)
                    rows.append([str(n), f"{e.get('engine') or k[0]}, `{k[1]}`",
                                 e.get("precision") or "?",
                                 f"`{base[1]}`" + (" (not run)" if base_time is None else ""),
                                 fmt_time(self.time(k)), fmt_time(self.time(k, "min")),
                                 fmt_x(self.ratio(k)), fmt_l2(self.check_error(k)),
                                 "—" if cls == "fp32" else fmt_err(self.error(k))])
            description = (self.report.CONFIGS.get(config) or GQA_DESCRIPTIONS.get(config)
                           or ("KV-cache decoding, GPT-2 small (d = 768, 12 heads): one token "
                               "after a 1023-token prompt" if config == GPT2_DECODE else ""))
            out += [f"### {config}", "", description, ""] if description else \
                   [f"### {config}", ""]
            out += md(["threads", "module", "precision", "compared with attn's", "median ms",
                       "min ms", "× attn (peer / attn)", "rel L2 vs attn", "error vs float32"],
                      rows, right_from=4)
            out.append("")
        versions = ", ".join(self.engines())
        intro = [
            "## attn against PyTorch 2, ONNX Runtime and OpenVINO", "",
            f"Engines: {versions}. Each peer (`bench/peers/<peer>_peer.py`) builds its "
            "engine's model from the weights attn's reference files hold "
            "(`attn_peer_reference`), runs it on the same input, and before timing compares "
            "its output with attn's float32 output: *rel L2 vs attn* = ‖y_peer − y_attn‖ / "
            "‖y_attn‖ (float64 norms); a float32 row above 1e-4 is an error, not a row. "
            "Reduced-precision rows (int8, bf16) are not held to that bound: *error vs "
            "float32* is their relative L2 error against attn's float32 output; for attn's "
            "int8 row, against attn's float32 module on the same input. *× attn* = the peer's "
            "median / the median of the attn row it is compared with, same configuration and "
            "thread count, same run (> 1: attn is faster): int8 rows against attn's int8 "
            "module, every other precision against attn's float32 row (attn has no bf16 "
            "mode). Median and min over the repetitions; "
            "*precision* is the one the peer ran, e.g. OpenVINO's default, which is bf16 on "
            "CPUs with AVX-512 BF16 or AMX.", ""]
        if self.missing:
            intro += [f"Not run: {self.not_run_text()}.", ""]
        return intro + out


def config_phrase(config):
    if config == GPT2_DECODE:
        return "gpt2_small (decoding one token after 1023)"
    if kind(config) == "gqa_prefill":
        return f"{config} (GQA prefill)"
    if kind(config) == "gqa_decode":
        return f"{config} (GQA decoding after 4095)"
    return config

