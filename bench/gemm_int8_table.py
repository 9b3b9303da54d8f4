#!/usr/bin/env python3
"""Markdown table of attn_gemm_int8_bench's JSON output (bench/run.sh --with-gemm).

    bench/gemm_int8_table.py <build>/bench-results/gemm_int8.json

One row per shape and thread count: the best repetition's GOP/s (2*M*N*K per second) of
attn float32, attn int8 (row quantization + GEMM, what a quantized Linear pays), the int8
GEMM alone, and oneDNN's sgemm and gemm_u8s8s32 when they ran; then the ratios of the
int8 GEMM to attn float32 and to oneDNN's integer GEMM. All figures come from one run.
"""
import json
import re
import sys


def main(path):
    with open(path) as f:
        data = json.load(f)
    best = {}  # (variant, shape, threads, disabled) -> GOP/s of the best repetition
    for b in data["benchmarks"]:
        if b.get("aggregate_name") not in ("max", None) or "ops/s" not in b:
            continue
        m = re.match(r"(\w+)/M:(\d+)/N:(\d+)/K:(\d+)/threads:(\d+)/disabled:(\d+)", b["name"])
        if not m:
            continue
        variant, mm, nn, kk, threads, disabled = m.groups()
        key = (variant.replace("_avx2", ""), f"{mm}x{nn}x{kk}", int(threads), int(disabled) != 0)
        best[key] = max(best.get(key, 0.0), b["ops/s"] * 1e-9)
    rows = sorted({(k[1], k[2], k[3]) for k in best}, key=lambda r: (r[2], -int(r[0].split("x")[0]), r[1]))
    cols = ["f32", "int8", "int8_gemm", "onednn_f32", "onednn_u8s8"]
    print("| M x N x K | threads | target | " + " | ".join(f"{c} GOP/s" for c in cols) +
          " | int8_gemm / f32 | int8_gemm / oneDNN u8s8 |")
    print("|---|--:|---|" + "--:|" * (len(cols) + 2))
    for shape, threads, avx2 in rows:
        v = {c: best.get((c, shape, threads, avx2)) for c in cols}
        cells = [f"{v[c]:.3g}" if v[c] else "-" for c in cols]
        r1 = f"{v['int8_gemm'] / v['f32']:.2f}" if v["int8_gemm"] and v["f32"] else "-"
        r2 = (f"{v['int8_gemm'] / v['onednn_u8s8']:.2f}"
              if v["int8_gemm"] and v["onednn_u8s8"] else "-")
        target = "AVX2 (forced)" if avx2 else "best"
        print(f"| {shape} | {threads} | {target} | " + " | ".join(cells) + f" | {r1} | {r2} |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
