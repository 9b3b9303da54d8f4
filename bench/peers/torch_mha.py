#!/usr/bin/python3
"""PyTorch peer of attn_attention_bench: the same modules on the same configurations.

Runs, under torch.no_grad() in eval mode with dropout 0.0 and torch.manual_seed(123):
  torch/book_mha/...          the book's MultiHeadAttention (scripts/book_modules.py)
  torch/book_mha_qint8/...    torch.ao.quantization.quantize_dynamic(book_mha, {nn.Linear},
                              dtype=torch.qint8): its Linear layers in int8 (on the engine
                              torch.backends.quantized.engine names, recorded in the JSON
                              context), the attention in float32
  torch/wrapper/...           the book's MultiHeadAttentionWrapper
  torch/wrapper_out_proj/...  MultiHeadAttentionWrapperWithOutProj (the bonus-material variant)
  torch/nn_mha/...            torch.nn.MultiheadAttention(d, heads, batch_first=True) called as
                              mha(x, x, x, attn_mask=triu(ones(T, T, bool), 1),
                              need_weights=False) (not for the toy: its d_in differs from d_out)
with torch.set_num_threads(n) and OpenBLAS limited to n threads too (PyTorch does not do
that itself: Debian's OpenBLAS starts one thread per core whatever torch's setting), n = 1, 2.
The input is torch.rand(B, T, d_in) drawn right after the module's construction, as
attn_attention_bench draws it (attn::manual_seed(123), the module, attn::rand, which give the
same numbers as PyTorch's generator): both run the same weights on the same input.

Each repetition runs enough calls to last --min-time seconds (at least one); the repetitions
of all benchmarks run in a random order (as attn's with --benchmark_enable_random_interleaving).
The median over repetitions is written as Google Benchmark JSON (run_name, aggregate "median",
real_time = wall time and cpu_time = process CPU time, both in ms per call), so
bench/report.py merges it with attn's results. Counters: flops_dense, flops_causal
(the formulas of bench/README.md), peak_rss_bytes (resident set growth during one forward),
and for book_mha_qint8 rel_l2_error = ||y_qint8 - y_f32|| / ||y_f32|| (L2 norms over the
whole output, in float64), y_f32 the float book module's output on the same input, as
attn's fused_int8 reports it against attn's float32 module.

Optional: without torch it prints a message and exits with status 0, writing nothing.
OpenBLAS picks its kernels when it is loaded: set OPENBLAS_CORETYPE in the environment
(bench/run.sh sets SkylakeX). With 2 threads, OpenMP's default spin-waiting fights OpenBLAS's
own threads for the cores; bench/run.sh sets OMP_WAIT_POLICY=PASSIVE (see bench/README.md).
"""

import argparse
import ctypes
import json
import os
import platform
import re
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

try:
    import torch
    import torch.nn as nn
except ImportError as error:  # torch is an optional peer
    print(f"torch_mha.py: PyTorch is not available ({error}); skipping the PyTorch peer.")
    print("  Install it with: apt-get install python3-torch (then run with /usr/bin/python3)")
    sys.exit(0)

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import book_modules  # noqa: E402  (needs the path above)
import peer_common  # noqa: E402  (the interleaved timing loop)


# name, batch, tokens, d_in, d_out, heads, wrapper head width: as in bench/attention_bench.cc.
CONFIGS = [("toy_B2_T6", 2, 6, 3, 2, 2, 2)]
CONFIGS += [(f"B1_T{t}", 1, t, 768, 768, 12, 64) for t in (64, 128, 256, 512, 1024, 2048)]
CONFIGS += [("B8_T256", 8, 256, 768, 768, 12, 64), ("B8_T1024", 8, 1024, 768, 768, 12, 64)]
VARIANTS = ["book_mha", "book_mha_qint8", "wrapper", "wrapper_out_proj", "nn_mha"]


def count_flops(batch, tokens, d_in, heads, head_dim, out_proj):
    """(dense, causal) FLOPs per forward; see bench/README.md."""
    width = heads * head_dim
    fixed = 2.0 * batch * tokens * d_in * 3 * width
    if out_proj:
        fixed += 2.0 * batch * tokens * width * width
    dense = 4.0 * batch * heads * tokens * tokens * head_dim
    causal = 4.0 * batch * heads * head_dim * tokens * (tokens + 1) / 2.0
    return fixed + dense, fixed + causal


# --- OpenBLAS and memory helpers ---------------------------------------------------------

def openblas_libraries():
    """ctypes handles of the loaded libraries that export OpenBLAS's control functions."""
    paths = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            if re.search(r"(openblas|libblas|liblapack)[^/]*\.so", path):
                paths.add(path)
    libs = []
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            lib.openblas_get_config.restype = ctypes.c_char_p
            libs.append((path, lib))
        except (OSError, AttributeError):
            pass
    return libs


def set_threads(n, blas_libs):
    torch.set_num_threads(n)
    for _, lib in blas_libs:
        lib.openblas_set_num_threads(n)


LIBC = ctypes.CDLL(None)


def _status_kib(key):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def peak_rss_growth(fn):
    """Resident set growth during fn(): VmHWM after a reset minus VmRSS before; -1 if unknown."""
    try:
        LIBC.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak RSS
    except OSError:
        fn()
        return -1
    before = _status_kib("VmRSS")
    fn()
    return (_status_kib("VmHWM") - before) * 1024


# --- The benchmark ---------------------------------------------------------------------

def make_module(variant, d_in, d_out, tokens, heads, wrapper_head_dim):
    """The module, after torch.manual_seed(123); the caller draws the input next."""
    torch.manual_seed(123)
    if variant in ("book_mha", "book_mha_qint8"):
        module = book_modules.MultiHeadAttention(d_in, d_out, tokens, 0.0, heads)
    elif variant == "wrapper":
        module = book_modules.MultiHeadAttentionWrapper(d_in, wrapper_head_dim, tokens, 0.0,
                                                        heads)
    elif variant == "wrapper_out_proj":
        module = book_modules.MultiHeadAttentionWrapperWithOutProj(
            d_in, wrapper_head_dim, tokens, 0.0, heads)
    else:
        mha = nn.MultiheadAttention(d_out, heads, dropout=0.0, batch_first=True)
        mask = torch.triu(torch.ones(tokens, tokens, dtype=torch.bool), diagonal=1)

        def module(x):
            return mha(x, x, x, attn_mask=mask, need_weights=False)[0]

        mha.eval()
        return module
    module.eval()
    return module


class Job:
    """One benchmark: a module, its input, its thread count and its measurements."""

    def __init__(self, run_name, fn, threads, reps, flops):
        self.run_name, self.fn, self.threads, self.reps = run_name, fn, threads, reps
        self.flops = flops  # (dense, causal)
        self.calls = 1
        self.first_call = 0.0
        self.rss = -1
        self.wall, self.cpu = [], []  # seconds per call, one entry per repetition
        self.counters = {}  # extra counters (rel_l2_error)


def rel_l2_error(y, reference):
    """||y - reference|| / ||reference|| over all elements, in float64."""
    y, reference = y.double(), reference.double()
    return (torch.linalg.vector_norm(y - reference) /
            torch.linalg.vector_norm(reference)).item()


def make_jobs(args):
    jobs = []
    for name, batch, tokens, d_in, d_out, heads, whd in CONFIGS:
        for variant in VARIANTS:
            if variant == "nn_mha" and d_in != d_out:
                continue  # nn.MultiheadAttention needs query width == embed_dim
            names = {n: f"{args.prefix}/{variant}/{name}/threads:{n}/real_time"
                     for n in args.threads}
            names = {n: r for n, r in names.items() if not args.filter or re.search(args.filter, r)}
            if not names:
                continue
            # One module and input per configuration, shared by the thread counts; the
            # input drawn right after the module, as attn_attention_bench does.
            module = make_module(variant, d_in, d_out, tokens, heads, whd)
            x = torch.rand(batch, tokens, d_in)
            counters = {}
            if variant == "book_mha_qint8":
                with torch.no_grad():
                    reference = module(x)
                    module = torch.ao.quantization.quantize_dynamic(
                        module, {nn.Linear}, dtype=torch.qint8)
                    counters["rel_l2_error"] = rel_l2_error(module(x), reference)
            head_dim = whd if variant in ("wrapper", "wrapper_out_proj") else d_out // heads
            flops = count_flops(batch, tokens, d_in, heads, head_dim, variant != "wrapper")
            # Big configurations (~1 s per call): fewer repetitions.
            reps = args.repetitions if batch * tokens < 8192 else args.big_repetitions
            for threads, run_name in names.items():
                job = Job(run_name, (lambda m, v: lambda: m(v))(module, x), threads, reps, flops)
                job.counters = counters
                jobs.append(job)
    return jobs


def run(args, blas_libs):
    """Sets every job up, then runs all repetitions of all jobs in a random order.

    Interleaving (as Google Benchmark's --benchmark_enable_random_interleaving, which
    bench/run.sh gives attn) spreads every job's repetitions over the whole run, so that a
    change in the machine's load affects all of them alike and the ratios stay fair.
    With --progress, a line "[progress] <done>/<total> <name>" goes to stderr before each
    step (setting a job up, one repetition), for bench/progress.py.
    """
    jobs = make_jobs(args)
    with torch.no_grad():
        peer_common.time_interleaved(
            jobs, args, lambda job: set_threads(job.threads, blas_libs),
            lambda job: setattr(job, "rss", peak_rss_growth(job.fn)))

    benchmarks = []
    for job in jobs:
        median, cpu = statistics.median(job.wall), statistics.median(job.cpu)
        dense, causal = job.flops
        benchmarks.append({
            "name": job.run_name + "_median", "run_name": job.run_name,
            "run_type": "aggregate", "aggregate_name": "median", "repetitions": job.reps,
            "threads": 1, "iterations": job.calls, "real_time": median * 1e3,
            "cpu_time": cpu * 1e3, "time_unit": "ms", "flops_dense": dense,
            "flops_causal": causal, "GFLOPS_dense": dense / median * 1e-9,
            "GFLOPS_causal": causal / median * 1e-9, "peak_rss_bytes": float(job.rss),
            "torch_threads": float(job.threads), "label": args.label, **job.counters,
        })
        spread = " ".join(f"{t * 1e3:.3f}" for t in job.wall)
        extra = "".join(f"  {k} {v:.3g}" for k, v in job.counters.items())
        print(f"{job.run_name:<58} {median * 1e3:10.3f} ms (cpu {cpu * 1e3:.3f})  "
              f"({job.reps} x {job.calls} calls: {spread})  "
              f"{dense / median * 1e-9:7.2f} GFLOP/s dense  rss +{job.rss / 2**20:.1f} MiB{extra}",
              flush=True)
    return benchmarks


def describe(blas_libs):
    """torch's build and threading configuration, as printed and as JSON context."""
    context = {"torch_version": torch.__version__}
    config = torch.__config__.show()
    print(f"PyTorch {torch.__version__} ({torch.__file__})")
    for line in config.splitlines():
        if re.search(r"BLAS|LAPACK|CPU capability|OpenMP|MKL|oneDNN|MKL-DNN", line):
            # The "Build settings" line is long: keep its BLAS/LAPACK entries.
            if line.strip().startswith("- Build settings"):
                settings = line.split(":", 1)[1].split(",")
                line = "  - Build settings: " + ", ".join(
                    s.strip() for s in settings if re.search(r"BLAS|LAPACK|MKL", s))
            print(line)
    context["torch_blas"] = ", ".join(re.findall(r"BLAS_INFO=\w+", config))
    print(torch.__config__.parallel_info().rstrip())
    coretype = os.environ.get("OPENBLAS_CORETYPE", "(not set)")
    print(f"OPENBLAS_CORETYPE: {coretype}")
    context["openblas_coretype_env"] = coretype
    engine = torch.backends.quantized.engine
    engines = ", ".join(torch.backends.quantized.supported_engines)
    print(f"Quantized engine (book_mha_qint8): {engine} (supported: {engines})")
    context["quantized_engine"] = engine
    context["quantized_engines_supported"] = engines
    wait_policy = os.environ.get("OMP_WAIT_POLICY", "(not set)")
    print(f"OMP_WAIT_POLICY: {wait_policy}")
    context["omp_wait_policy"] = wait_policy
    for path, lib in blas_libs:
        core = lib.openblas_get_corename().decode()
        blas_config = lib.openblas_get_config().decode()
        print(f"OpenBLAS in use: {path}: core {core}; {blas_config}")
        context["openblas_core"] = core
        context["openblas_config"] = blas_config
    if not blas_libs:
        print("OpenBLAS in use: not detected (no loaded library exports openblas_get_corename)")
    return context


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write Google Benchmark JSON here")
    parser.add_argument("--filter", help="regex on names (e.g. 'book_mha/B8_T1024')")
    parser.add_argument("--prefix", default="torch", help="first component of the names")
    parser.add_argument("--label", default="", help="label stored with each result")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--big-repetitions", type=int, default=3,
                        help="repetitions when B*T >= 8192 (about 1 s per call)")
    parser.add_argument("--min-time", type=float, default=0.2,
                        help="seconds per repetition (at least one call)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the interleaving order")
    parser.add_argument("--progress", action="store_true",
                        help="print '[progress] <done>/<total> <name>' lines to stderr")
    args = parser.parse_args()

    torch.ones(2, 2) @ torch.ones(2, 2)  # make sure the BLAS library is loaded
    blas_libs = openblas_libraries()
    context = describe(blas_libs)
    context.update({"executable": "bench/peers/torch_mha.py", "host_name": platform.node(),
                    "num_cpus": os.cpu_count(), "cpu_model": peer_common.cpu_model(),
                    "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    benchmarks = run(args, blas_libs)
    if args.out:
        with open(args.out, "w") as out:
            json.dump({"context": context, "benchmarks": benchmarks}, out, indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
