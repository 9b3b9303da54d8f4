#!/usr/bin/env python3
"""Markdown table from attn_gemm_bench JSON files (run with --benchmark_repetitions=N
--benchmark_report_aggregates_only=true --benchmark_out=x.json; bench/run.sh --with-gemm
does, and writes the table to gemm.md): the best repetition (max GFLOP/s) per library,
shape and thread count, attn's share of the FP32 FMA peak, then the softmax timings.

Usage: bench/gemm_table.py gemm.json [more.json ...]"""
import json, re, sys
runs = [json.load(open(f)) for f in sys.argv[1:]]
d = runs[0]
ctx = d["context"]
best = {}
for b in [b for r in runs for b in r["benchmarks"]]:
    if b.get("aggregate_name") not in ("max", None):
        continue
    name = b["run_name"] if "run_name" in b else b["name"]
    m = re.match(r"(\w+)/M:(\d+)/N:(\d+)/K:(\d+)/bT:(\d)/threads:(\d)/disabled:(\d+)", name)
    if not m or "GFLOP/s" not in b:
        continue
    lib, M, N, K, bt, thr, dis = m.groups()
    key = (int(M), int(N), int(K), int(bt), int(thr))
    best.setdefault(key, {})[lib] = max(best.get(key, {}).get(lib, 0), b["GFLOP/s"])
# The FP32 peak: the best FmaPeak benchmark row per thread count (the same
# run, repeated and interleaved like the GEMMs), else the start-up figure.
peak = {}
for b in [b for r in runs for b in r["benchmarks"]]:
    m = re.match(r"FmaPeak/threads:(\d)", b.get("run_name", b["name"]))
    if m and "GFLOP/s" in b:
        t = int(m.group(1))
        peak[t] = max(peak.get(t, 0.0), b["GFLOP/s"] / 1e9 if b["GFLOP/s"] > 1e6 else b["GFLOP/s"])
startup = max(float([v for k, v in r["context"].items() if k.startswith("FMA peak")][0]) for r in runs)
source = "FmaPeak rows of this run" if peak else "start-up measurement"
peak.setdefault(1, startup)
peak.setdefault(2, 2 * peak[1])
print(f"FMA peak: {peak[1]:.0f} GFLOP/s on 1 thread, {peak[2]:.0f} on 2 ({source})\n")
libs = ["attn", "attn_packed", "openblas", "onednn", "attn_avx2", "attn_sse4"]
print("| M x N x K | B | thr | attn | attn packed | OpenBLAS | oneDNN | attn/oneDNN | packed/oneDNN | attn % peak | AVX2 | SSE4 |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for key in sorted(best, key=lambda k: (-k[0]*k[1]*k[2], k[4])):
    M, N, K, bt, thr = key
    r = best[key]
    f = lambda l: f"{r[l]:.0f}" if l in r else "-"
    ratio = lambda l: f"{r[l]/r['onednn']:.2f}" if l in r and "onednn" in r else "-"
    pk = f"{100*r['attn']/peak[thr]:.0f}%" if "attn" in r else "-"
    print(f"| {M}x{N}x{K} | {'Bt' if bt else 'B'} | {thr} | {f('attn')} | {f('attn_packed')} | {f('openblas')} | {f('onednn')} | {ratio('attn')} | {ratio('attn_packed')} | {pk} | {f('attn_avx2')} | {f('attn_sse4')} |")
soft = {}
for b in [b for r in runs for b in r["benchmarks"]]:
    if b.get("aggregate_name") == "min" and b["name"].startswith("softmax"):
        soft[b["name"]] = min(soft.get(b["name"], 1e30), b["real_time"])
for name, t in sorted(soft.items()):
    print(f"{name}: {t:.0f} us")
