"""What the modern peers (bench/peers/*_peer.py) share: attn's reference files, the check
against attn's output, the interleaved timing loop and the Google Benchmark JSON they write.

Reference files: attn_peer_reference (bench/peer_reference.cc) writes, for each
configuration, <dir>/reference_<name>.safetensors with the module's state_dict (PyTorch's
key names), the input "x", attn's float32 output "y", and the configuration as string
metadata (kind, batch, tokens, d_in, d_out, num_heads, num_kv_groups, context_length,
prompt_tokens, rope_*). A peer builds its engine's model from those weights, runs it on x,
and compares with y before timing anything (check()).

Names: <peer>/<variant>/<config>/threads:<n>/real_time, with attn's configuration names:
B1_T64 ... B8_T1024 (the book's MultiHeadAttention), gpt2_small (one decoded token after
1023), llama32_1b_T1024 and llama32_1b_kv8 (the Llama 3.2 1B GQA layer: prefill, and one
token after 4095). Each row's label names the engine, its version and the precision it ran
("onnxruntime 1.32.0 fp32").

JSON: Google Benchmark's format, as bench/report.py reads it: for each job a "median" and a
"min" aggregate over its repetitions, real_time (wall) and cpu_time (process CPU time) in ms
per call, with counters: rel_l2_vs_attn (||y_peer - y_attn|| / ||y_attn||, float64 norms),
peer_threads, and whatever the peer adds (rel_l2_error of int8 rows against attn's float32
output, ...). The "precision" and "engine" strings of each row are fields of their own.
"""

import json
import os
import platform
import random
import re
import statistics
import struct
import sys
import time

import numpy as np

DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32,
          "U8": np.uint8, "I8": np.int8, "BOOL": np.bool_, "F16": np.float16}

# A peer whose output differs from attn's float32 output by more than this (relative L2)
# in float32 is an error, not a row.
FLOAT32_TOLERANCE = 1e-4


class PeerMismatch(RuntimeError):
    """A peer's output disagrees with attn's beyond the tolerance."""


class Reference:
    """One reference file: tensors (numpy arrays by key) and metadata (strings)."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            (header_size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(header_size))
            data = f.read()
        self.metadata = header.pop("__metadata__", {})
        self.tensors = {}
        for key, entry in header.items():
            begin, end = entry["data_offsets"]
            array = np.frombuffer(data[begin:end], dtype=DTYPES[entry["dtype"]])
            self.tensors[key] = array.reshape(entry["shape"])
        self.name = self.metadata.get("name", os.path.basename(path))
        self.kind = self.metadata["kind"]

    def int(self, key):
        return int(self.metadata[key])

    def float(self, key):
        return float(self.metadata[key])

    @property
    def x(self):
        return self.tensors["x"]

    @property
    def y(self):
        return self.tensors["y"]

    def weight(self, key):
        return self.tensors[key]

    def config_name(self):
        """attn's configuration name of this file: B8_T1024, gpt2_small, llama32_1b_T1024, ..."""
        name = self.name
        if name == "mha_decode_gpt2_small":
            return "gpt2_small"
        if name == "gqa_decode_llama32_1b":
            return f"llama32_1b_kv{self.int('num_kv_groups')}"
        return re.sub(r"^(mha_decode|gqa_decode|mha|gqa)_", "", name)


def load_references(directory, kinds=None):
    """The reference files listed in <directory>/references.txt, optionally of some kinds."""
    with open(os.path.join(directory, "references.txt")) as listing:
        names = [line.strip() for line in listing if line.strip()]
    refs = [Reference(os.path.join(directory, f"reference_{n}.safetensors")) for n in names]
    return [r for r in refs if kinds is None or r.kind in kinds]


def rel_l2(y, reference):
    """||y - reference|| / ||reference|| over all elements, in float64."""
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    reference = np.asarray(reference, dtype=np.float64).reshape(-1)
    if y.shape != reference.shape:
        raise PeerMismatch(f"output has {y.size} values, attn's {reference.size}")
    return float(np.linalg.norm(y - reference) / np.linalg.norm(reference))


def check(run_name, y, reference, tolerance=FLOAT32_TOLERANCE):
    """rel_l2(y, attn's y); raises PeerMismatch above the tolerance (None: no limit)."""
    error = rel_l2(np.asarray(y).reshape(reference.y.shape), reference.y)
    print(f"check {run_name}: rel L2 vs attn {error:.3g}", flush=True)
    if tolerance is not None and not error <= tolerance:
        raise PeerMismatch(f"{run_name}: relative L2 error {error:.3g} against attn's output "
                           f"exceeds {tolerance:g} ({reference.path})")
    return error


class Job:
    """One row: fn() runs one call (everything per call that the engine needs to be given:
    its inputs are prepared once, outside fn). setup() runs before each repetition (thread
    settings); counters and strings go into the row."""

    def __init__(self, run_name, fn, threads, reps, engine, precision, setup=None,
                 counters=None, flops=None):
        self.run_name, self.fn, self.threads, self.reps = run_name, fn, threads, reps
        self.engine, self.precision = engine, precision
        self.setup = setup or (lambda: None)
        self.counters = dict(counters or {})
        self.flops = flops
        self.calls, self.first_call = 1, 0.0
        self.wall, self.cpu = [], []


def add_arguments(parser):
    """The arguments every peer takes."""
    parser.add_argument("--reference-dir", required=True,
                        help="attn_peer_reference's folder (reference_*.safetensors)")
    parser.add_argument("--out", help="write Google Benchmark JSON here")
    parser.add_argument("--filter", help="regex on run names")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--big-repetitions", type=int, default=3,
                        help="repetitions of the jobs of about a second per call or more")
    parser.add_argument("--min-time", type=float, default=0.2,
                        help="seconds per repetition (at least one call)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the interleaving order")
    parser.add_argument("--check-only", action="store_true",
                        help="build, check against attn and print the rows without timing")
    parser.add_argument("--progress", action="store_true",
                        help="print '[progress] <done>/<total> <name>' lines to stderr")


def wanted(args, run_name):
    return not args.filter or re.search(args.filter, run_name) is not None


def time_interleaved(jobs, args, setup, after_warmup=None):
    """Warms every job up (setup(job), then one call, whose time sizes the repetitions:
    job.first_call, job.calls; then after_warmup(job) if given), then runs job.reps
    repetitions of every job (none with --check-only) in a random order (as Google
    Benchmark's --benchmark_enable_random_interleaving, which bench/run.sh gives attn), so
    that a change in the machine's load affects all rows alike: job.wall and job.cpu get
    seconds per call, one entry per repetition. With --progress, a line "[progress]
    <done>/<total> <name>" goes to stderr before each step, for bench/progress.py. The
    PyTorch 1.13 peers (torch_mha.py, torch_gqa.py) time their jobs with it too."""
    check_only = getattr(args, "check_only", False)
    order = [] if check_only else [job for job in jobs for _ in range(job.reps)]
    random.Random(args.seed).shuffle(order)
    steps = len(jobs) + len(order)

    def progress(done, job):
        if args.progress:
            name = re.sub(r"/real_time$", "", job.run_name)
            print(f"[progress] {done}/{steps} {name}", file=sys.stderr, flush=True)

    for i, job in enumerate(jobs):
        progress(i, job)
        setup(job)
        start = time.perf_counter()
        job.fn()  # warm-up; its time (an overestimate) sizes the repetitions
        job.first_call = time.perf_counter() - start
        job.calls = max(1, int(args.min_time / max(job.first_call, 1e-9)))
        if after_warmup:
            after_warmup(job)
    previous = None
    for i, job in enumerate(order):
        progress(len(jobs) + i, job)
        setup(job)
        if job is not previous and job.first_call < 0.05:
            job.fn()  # another job ran in between: warm up again where that is cheap
        previous = job
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(job.calls):
            job.fn()
        job.cpu.append((time.process_time() - cpu) / job.calls)
        job.wall.append((time.perf_counter() - wall) / job.calls)
    if args.progress and jobs:
        print(f"[progress] {steps}/{steps} done", file=sys.stderr, flush=True)


def run_jobs(jobs, args):
    """Times the jobs (time_interleaved) and returns their JSON rows (median and min)."""
    time_interleaved(jobs, args, lambda job: job.setup())

    rows = []
    for job in jobs:
        wall = job.wall or [job.first_call]
        cpu = job.cpu or [job.first_call]
        for aggregate, pick in (("median", statistics.median), ("min", min)):
            row = {
                "name": f"{job.run_name}_{aggregate}", "run_name": job.run_name,
                "run_type": "aggregate", "aggregate_name": aggregate,
                "repetitions": len(job.wall), "threads": 1, "iterations": job.calls,
                "real_time": pick(wall) * 1e3, "cpu_time": pick(cpu) * 1e3, "time_unit": "ms",
                "peer_threads": float(job.threads), "engine": job.engine,
                "precision": job.precision, "label": f"{job.engine} {job.precision}",
                **job.counters,
            }
            if job.flops:
                row["flops"] = float(job.flops)
                row["GFLOPS"] = job.flops / pick(wall) * 1e-9
            rows.append(row)
        spread = " ".join(f"{t * 1e3:.3f}" for t in job.wall)
        extra = "".join(f"  {k} {v:.3g}" for k, v in job.counters.items())
        print(f"{job.run_name:<64} {statistics.median(wall) * 1e3:10.3f} ms  min "
              f"{min(wall) * 1e3:.3f}  ({len(job.wall)} x {job.calls} calls: {spread})  "
              f"[{job.engine} {job.precision}]{extra}", flush=True)
    return rows


def cpu_model():
    """The CPU's "model name" in /proc/cpuinfo, or platform.processor()."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def write_json(path, executable, context, rows):
    """Google Benchmark JSON: context (engine versions, settings) and the rows."""
    context = dict(context)
    context.update({"executable": executable, "host_name": platform.node(),
                    "num_cpus": os.cpu_count(), "cpu_model": cpu_model(),
                    "python": sys.version.split()[0],
                    "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    if path:
        with open(path, "w") as out:
            json.dump({"context": context, "benchmarks": rows}, out, indent=1)
        print(f"wrote {path}")
