#!/usr/bin/python3
"""Randomized parity sweep of attn against the book's PyTorch modules (a developer tool).

    /usr/bin/python3 scripts/parity_sweep.py DRIVER [--cases N] [--gqa-cases N] [--seed S]
        [--all-targets] [--gpt2] [--keep DIR] [--only MODULE] [--quant-every K] [--case NAME]

DRIVER is tests/parity's attn_parity_driver (build it with
`cmake -S tests/parity -B build-parity && cmake --build build-parity -j
--target attn_parity_driver`). For each random
configuration (module, d_in 1..200, d_out 1..130, heads, context_length 1..300, B 1..4, T,
qkv_bias, dropout 0/0.1/0.5 (sometimes 1 or another p), train/eval, 32- and 64-bit init and
forward seeds, inputs uniform in [-1, 1) or standard normal) the script builds the book's
module with PyTorch 1.13 (scripts/book_modules.py; same settings as scripts/make_golden.py:
ATEN_CPU_CAPABILITY=avx2, one thread), writes its state_dict and input to a temporary
.safetensors file, runs the driver on it (attn::manual_seed + construction, load_state_dict,
forward with and without the weights, both MultiHeadAttention paths, KV cache, one thread; on
every Highway target with --all-targets) and compares:
  * parameters after construction with the same seed: bit for bit;
  * attn::rand(4) after each forward against torch.rand(4) after PyTorch's forward: bit for
    bit (the forward consumed exactly PyTorch's random numbers);
  * dropout: every attention weight PyTorch zeroed is zero in attn and vice versa;
  * outputs and weights: the golden data's measure (tests/data/README.md), the smallest r with
    |a - ref| <= r * (|ref| + max|ref|), against PyTorch's float32 result must be <= 1e-5, or
    else attn's error against PyTorch's float64 run must be at most 4x PyTorch's own float32
    error, the largest over four summation orders (the module as built, and the same module
    with d_in permuted three ways). This covers the cases where float32 itself is that far off:
    SelfAttention_v1's torch.rand weights (all positive) give scaled scores in the thousands
    at large d_in/d_out, and which summation order lands closer to float64 is then luck;
  * the one-thread forward: bit for bit equal to the default one.

GroupedQueryAttention (--gqa-cases N, on by default; --only GroupedQueryAttention runs only these)
draws its own configurations from a stream of its own (the chapter-3 cases of a seed stay what
they were): d_in 1..200, head_dim 1..130 (even with RoPE), num_heads 1..16, num_kv_groups a
divisor of num_heads (1, num_heads or one in between), context_length 1..700, T = 1 ..
context_length (often 1 and context_length), B 1..3, qkv_bias, RoPE on/off with theta_base
10,000 / 500,000 / 1e6 / random in [2, 1e6] and Llama 3 scaling on/off (factor 1..64,
low_freq_factor 0.5..2, high_freq_factor up to 8, original_context_length 16..8192),
sliding_window 0 or 1..T+5, 32- and 64-bit seeds. The reference is scripts/book_gqa.py. Checks
(tolerances as max|a - ref| / max|ref| over the whole tensor, GQA_RTOL = 2e-5):
  * parameters after construction: bit for bit; the random stream is not used by forward;
  * out (forward(x)), out_w and weights (forward(x, &weights)) against PyTorch's float32
    forward; weights outside each query's window exactly 0; one thread bit for bit;
  * dec<i>: decoding through a KVCache in chunks (a random prompt, then single tokens; random
    chunks; sometimes every token alone or all in one) against PyTorch's full forward; after
    cache.rewind(prompt) the same chunks again give the same bits;
  * inv_freq: attn's rope_inv_freq() against PyTorch's (reported; PyTorch's float32 pow is
    Sleef's, not always correctly rounded, so a 1-ulp difference there is expected: it is
    accepted where attn equals the same float32 steps from correctly rounded powers). Where
    inv_freq differs, the outputs are also compared with a PyTorch run on attn's inv_freq
    (cos/sin tables rebuilt from it) to tell whether the pow alone explains a difference;
  * every --quant-every'th case also runs attn::quantize_dynamic: relative L2 error of its
    forward against the float module (reported; fails above QUANT_MAX_REL_L2), its
    forward(x, &weights) and decoding against its forward(x) (relative L2 <= QUANT_PATH_REL_L2:
    the paths' float rounding can flip an int8 rounding in out_proj), and PyTorch's own
    quantize_dynamic error (per-tensor fbgemm, not attn's scheme) for comparison.
A failing case prints its configuration and a command that reruns just that case
(--replay); with --keep its files are kept too.
Exit status 1 if any case fails. --keep keeps the case and result files of failures in DIR.
"""

import argparse
import copy
import math
import os
import random
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_golden as mg  # noqa: E402  (sets ATEN_CPU_CAPABILITY=avx2 before importing torch)
import numpy as np  # noqa: E402
import torch  # noqa: E402

RTOL = 1e-5
MODULES = ['SelfAttentionV1', 'SelfAttentionV2', 'CausalAttention',
           'MultiHeadAttentionWrapper', 'MultiHeadAttention', 'Transfer']
GQA = 'GroupedQueryAttention'
GQA_RTOL = 2e-5
QUANT_MAX_REL_L2 = 0.05  # the quantized forward against the float one (int8 gives ~1e-2)
QUANT_PATH_REL_L2 = 1e-3  # the quantized module's paths against each other


def pick(rng, lo, hi):
    """An int in [lo, hi], biased towards the small and the extreme ones."""
    r = rng.random()
    if r < 0.25:
        return rng.randint(lo, min(hi, lo + 7))
    if r < 0.35:
        return hi
    return rng.randint(lo, hi)


def pick_seed(rng):
    return rng.randint(0, 2 ** 32 - 1) if rng.random() < 0.8 else rng.randint(0, 2 ** 64 - 1)


def random_config(rng, module, index):
    c = dict(module=module, d_in=pick(rng, 1, 200), d_out=pick(rng, 1, 130), ctx=0,
             dropout=0.0, heads=1, bias=0, init_seed=pick_seed(rng),
             forward_seed=pick_seed(rng), train=1, B=1, input_seed=rng.randint(0, 2 ** 31),
             kv_prompt=0, randn=rng.random() < 0.5)
    if module in ('SelfAttentionV1', 'Transfer'):
        c['T'] = pick(rng, 1, 300)
        c['train'] = rng.randint(0, 1)
    elif module == 'SelfAttentionV2':
        c['T'] = pick(rng, 1, 300)
        c['bias'] = rng.randint(0, 1)
        c['train'] = rng.randint(0, 1)
    else:
        c['ctx'] = pick(rng, 1, 300)
        r = rng.random()
        c['T'] = 1 if r < 0.2 else c['ctx'] if r < 0.5 else rng.randint(1, c['ctx'])
        c['B'] = rng.randint(1, 4)
        c['bias'] = rng.randint(0, 1)
        r = rng.random()
        c['dropout'] = (rng.choice([0.0, 0.1, 0.5]) if r < 0.9 else 1.0 if r < 0.93 else
                        round(rng.random(), rng.randint(1, 4)))
        c['train'] = rng.randint(0, 1)
        if module == 'MultiHeadAttentionWrapper':
            c['heads'] = rng.choice([1, 1, 2, 3, 4, 5, 6])
        elif module == 'MultiHeadAttention':
            divisors = [h for h in range(1, c['d_out'] + 1) if c['d_out'] % h == 0]
            c['heads'] = rng.choice(divisors + [1, c['d_out']])
            if not (c['train'] and c['dropout'] > 0):
                r = rng.random()
                c['kv_prompt'] = 1 if r < 0.3 else c['T'] if r < 0.4 else rng.randint(1, c['T'])
        # keep the weights tensor (and the time PyTorch takes) bounded
        while c['B'] > 1 and c['B'] * c['heads'] * c['T'] ** 2 > 4_000_000:
            c['B'] -= 1
    c['name'] = 'sweep%04d_%s' % (index, module)
    return c


def gpt2_configs():
    out = []
    for i, (T, p, train, bias, kv) in enumerate([(1, 0.0, 0, 0, 1), (200, 0.0, 1, 1, 57),
                                                 (1024, 0.0, 0, 0, 1000),
                                                 (1024, 0.1, 1, 0, 0)]):
        out.append(dict(module='MultiHeadAttention', d_in=768, d_out=768, ctx=1024,
                        dropout=p, heads=12, bias=bias, init_seed=123 + i,
                        forward_seed=7 + i, train=train, B=1, T=T, input_seed=900 + i,
                        kv_prompt=kv, name='gpt2_T%d_p%g_train%d' % (T, p, train)))
    return out


def build(c):
    if c['module'] == 'Transfer':
        torch.manual_seed(c['init_seed'])
        v2 = mg.SelfAttention_v2(c['d_in'], c['d_out'])
        v1 = mg.SelfAttention_v1(c['d_in'], c['d_out'])
        return v2, v1
    return mg.build(dict(c, scale=None)), None


def make_input(c):
    two_d = c['module'] in ('SelfAttentionV1', 'SelfAttentionV2', 'Transfer')
    shape = (c['T'], c['d_in']) if two_d else (c['B'], c['T'], c['d_in'])
    g = torch.Generator().manual_seed(c['input_seed'])
    if c.get('randn'):
        return torch.randn(shape, generator=g)
    return torch.rand(shape, generator=g) * 2 - 1


def reference(c):
    """PyTorch's init state, float32 and float64 results, random numbers after the forward."""
    m, v1 = build(c)
    x = make_input(c)
    ref = {'state': list(m.state_dict().items()), 'x': x}
    if v1 is not None:  # exercise 3.1
        ref['init'] = {'v2.' + k: v for k, v in m.state_dict().items()}
        ref['init'].update({'v1.' + k: v for k, v in v1.state_dict().items()})
        with torch.no_grad():
            v1.W_query = torch.nn.Parameter(m.W_query.weight.T)
            v1.W_key = torch.nn.Parameter(m.W_key.weight.T)
            v1.W_value = torch.nn.Parameter(m.W_value.weight.T)
        ref['v2_out'], _ = mg.forward(m, x, c)
        m = v1
    else:
        ref['init'] = dict(m.state_dict())
    ref['out'], ref['weights'] = mg.forward(m, x, c)
    ref['rand'] = torch.rand(4)
    m64 = copy.deepcopy(m).double()
    ref['out64'], ref['weights64'] = mg.forward(m64, x.double(), c)
    # The same model with d_in permuted (x's columns and the projections' input rows), three
    # times: the same function, but the projections sum in other orders. Their float32 errors
    # against the float64 run are more samples of what float32 rounding alone gives.
    g = torch.Generator().manual_seed(c['input_seed'])
    ref['perm'] = []
    for _ in range(3):
        perm = torch.randperm(c['d_in'], generator=g)
        mp = copy.deepcopy(m)
        with torch.no_grad():
            for k, v in mp.state_dict(keep_vars=True).items():
                leaf = k.rsplit('.', 1)[-1]
                if leaf in ('W_query', 'W_key', 'W_value'):  # v1: (d_in, d_out)
                    v.copy_(v[perm])
                elif leaf == 'weight' and not k.startswith('out_proj'):  # Linear: (d_out, d_in)
                    v.copy_(v[:, perm])
        ref['perm'].append(mg.forward(mp, x[..., perm].contiguous(), c))
    return ref


def err(a, ref):
    return mg.tol_err(torch.from_numpy(np.array(a)), ref)


def compare(c, ref, res, problems):
    """Checks one case's driver results; returns {quantity: (err32, err64, torch_err)}."""
    targets = sorted({k.split('.', 1)[0] for k in res})
    errs = {}
    for t in targets:
        def get(key):
            return res['%s.%s' % (t, key)]

        # init parity, bit for bit
        init = {k.split('.', 2)[2]: v for k, v in res.items() if k.startswith(t + '.init.')}
        if sorted(init) != sorted(ref['init']):
            problems.append('%s: state_dict keys %s vs %s' % (t, sorted(init), sorted(ref['init'])))
        for k, v in ref['init'].items():
            if k in init and not np.array_equal(init[k], v.numpy()):
                n = int((init[k] != v.numpy()).sum())
                problems.append('%s: init %s differs in %d of %d values' % (t, k, n, v.numel()))
        # random numbers after the forwards
        for key in ('rand_w', 'rand'):
            if not np.array_equal(get(key), ref['rand'].numpy()):
                problems.append('%s: %s after forward differs (stream use)' % (t, key))
        # dropout / mask zeros in the weights
        w, rw, rw64 = get('weights'), ref['weights'].numpy(), ref['weights64'].numpy()
        if w.shape != rw.shape:
            problems.append('%s: weights shape %s vs %s' % (t, w.shape, rw.shape))
            continue
        tiny = (np.abs(w) < 1e-30) & (np.abs(rw) < 1e-30) & (np.abs(rw64) < 1e-30)
        zero_diff = ((w == 0) != (rw == 0)) & ~tiny
        if zero_diff.any():
            problems.append('%s: %d weights zero in one and not the other (first at %s)' % (
                t, int(zero_diff.sum()), tuple(np.argwhere(zero_diff)[0])))
        # outputs and weights to float rounding
        out_floor = max(mg.tol_err(o, ref['out64'])
                        for o in [ref['out']] + [o for o, _ in ref['perm']])
        w_floor = max(mg.tol_err(w, ref['weights64'])
                      for w in [ref['weights']] + [w for _, w in ref['perm']])
        quantities = [('out_w', ref['out'], ref['out64'], out_floor),
                      ('out', ref['out'], ref['out64'], out_floor),
                      ('weights', ref['weights'], ref['weights64'], w_floor)]
        for key in ('out_mat', 'out_kv'):
            if '%s.%s' % (t, key) in res:
                quantities.append((key, ref['out'], ref['out64'], out_floor))
        for key, r32, r64, floor in quantities:
            a = get(key)
            if tuple(a.shape) != tuple(r32.shape):
                problems.append('%s: %s shape %s vs %s' % (t, key, a.shape, tuple(r32.shape)))
                continue
            e32, e64, et = err(a, r32), err(a, r64), floor
            errs[t + '.' + key] = (e32, e64, et, float(np.abs(a - r32.numpy()).max(initial=0)))
            if not (e32 <= RTOL or e64 <= 4 * et):
                problems.append('%s: %s err vs torch float32 %.3g, vs float64 %.3g (torch, '
                                'worst order: %.3g)' % (t, key, e32, e64, et))
        if '%s.out_kv' % t in res and not np.array_equal(get('out_kv_rewound'), get('out_kv')):
            problems.append('%s: KV cache output after rewind differs' % t)
        if not np.array_equal(get('out_1thread'), get('out')):
            problems.append('%s: one-thread output differs from the default' % t)
    if 'v2_out' in ref:
        a = res[targets[0] + '.out']
        errs['v1_vs_v2'] = (err(a, ref['v2_out']), 0.0, 0.0,
                            float(np.abs(a - ref['v2_out'].numpy()).max(initial=0)))
    return errs


def run_case(c, driver, all_targets, tmp, keep):
    t0 = time.time()
    ref = reference(c)
    t_ref = time.time() - t0
    case_path = os.path.join(tmp, c['name'] + '.safetensors')
    res_path = os.path.join(tmp, c['name'] + '.result.safetensors')
    mg.write_safetensors(case_path, [(k, v) for k, v in ref['state']] + [('input', ref['x'])])
    args = [driver, case_path, res_path, c['module'], c['d_in'], c['d_out'], c['ctx'],
            repr(float(c['dropout'])), c['heads'], c['bias'], c['init_seed'],
            c['forward_seed'], c['train'], c['kv_prompt'], int(all_targets)]
    t0 = time.time()
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    t_cpp = time.time() - t0
    problems = []
    errs = {}
    if p.returncode != 0:
        problems.append('driver failed: ' + p.stderr.strip())
    else:
        errs = compare(c, ref, mg.read_safetensors(res_path), problems)
    if problems and keep:
        os.makedirs(keep, exist_ok=True)
        for f in (case_path, res_path):
            if os.path.exists(f):
                os.replace(f, os.path.join(keep, os.path.basename(f)))
        with open(os.path.join(keep, c['name'] + '.cmd'), 'w') as f:
            f.write(' '.join(str(a) for a in args) + '\n')
    for f in (case_path, res_path):
        if os.path.exists(f):
            os.remove(f)
    return problems, errs, t_ref, t_cpp


# --------------------------------------------------------------------------------------------
# GroupedQueryAttention (scripts/book_gqa.py)
# --------------------------------------------------------------------------------------------

def gqa_random_config(rng, index, quant_every):
    heads = pick(rng, 1, 16)
    rope = rng.random() < 0.75
    hd = 2 * pick(rng, 1, 65) if rope else pick(rng, 1, 130)
    divisors = [g for g in range(1, heads + 1) if heads % g == 0]
    between = [g for g in divisors if 1 < g < heads]
    r = rng.random()
    groups = 1 if r < 0.3 else heads if r < 0.55 else rng.choice(between or divisors)
    ctx = pick(rng, 1, 700)
    r = rng.random()
    T = 1 if r < 0.25 else ctx if r < 0.55 else rng.randint(1, ctx)
    c = dict(module=GQA, d_in=pick(rng, 1, 200), d_out=heads * hd, hd=hd, ctx=ctx, heads=heads,
             groups=groups, B=rng.randint(1, 3), T=T, bias=rng.randint(0, 1), rope=int(rope),
             theta=10000.0, factor=0.0, low=1.0, high=4.0, ocl=8192,
             window=0 if rng.random() < 0.45 else rng.randint(1, T + 5),
             init_seed=pick_seed(rng), forward_seed=pick_seed(rng),
             input_seed=rng.randint(0, 2 ** 31), randn=rng.random() < 0.5,
             quant=int(quant_every > 0 and index % quant_every == quant_every - 1))
    r = rng.random()
    c['theta'] = (10000.0 if r < 0.25 else 500000.0 if r < 0.45 else 1e6 if r < 0.6 else
                  rng.uniform(2.0, 1e6) if r < 0.8 else
                  math.exp(rng.uniform(math.log(2.0), math.log(1e6))))
    if rope and rng.random() < 0.5:  # Llama 3 frequency scaling
        c['factor'] = (float(rng.choice([8, 16, 32, 64])) if rng.random() < 0.3 else
                       rng.uniform(1.0, 64.0))
        if rng.random() < 0.3:
            c['low'], c['high'] = 1.0, 4.0
        else:
            c['low'] = rng.uniform(0.5, 2.0)
            c['high'] = rng.uniform(c['low'], 8.0)
            if not c['high'] > c['low']:
                c['high'] = min(8.0, c['low'] + 1.0)
        c['ocl'] = (rng.choice([8192, 64, 16]) if rng.random() < 0.3 else
                    int(round(math.exp(rng.uniform(math.log(16), math.log(8192))))))
    # keep the weights tensor (and the time PyTorch takes) bounded
    while c['B'] > 1 and c['B'] * heads * T ** 2 > 4_000_000:
        c['B'] -= 1
    # decoding schedules: a prompt, then single tokens; random chunks; sometimes every token
    # alone, or all of them as one chunk
    r = rng.random()
    prompt = 1 if r < 0.2 else T if r < 0.3 else rng.randint(1, T)
    scheds = [[prompt] + [1] * (T - prompt)]
    chunks, pos = [], 0
    while pos < T:
        n = rng.randint(1, min(T - pos, rng.choice([1, 2, 3, 8, 32, 100, T])))
        chunks.append(n)
        pos += n
    scheds.append(chunks)
    r = rng.random()
    if r < 0.1 and T > 1:
        scheds.append([1] * T)
    elif r < 0.2 and T > 1:
        scheds.append([T])
    c['schedules'] = scheds
    c['name'] = 'gqa%04d' % index
    return c


def gqa_freq_config(c):
    if not c['factor'] > 0:
        return None
    return {'factor': c['factor'], 'low_freq_factor': c['low'], 'high_freq_factor': c['high'],
            'original_context_length': c['ocl']}


def gqa_build(c):
    torch.manual_seed(c['init_seed'])
    return mg.GroupedQueryAttention(c['d_in'], c['d_out'], c['ctx'], c['heads'], c['groups'],
                                    rope_base=c['theta'], rope_config=gqa_freq_config(c),
                                    use_rope=bool(c['rope']), sliding_window=c['window'],
                                    qkv_bias=bool(c['bias']))


def gqa_forward(m, x):
    with torch.no_grad():
        out, _ = m(x)
    return out, m.last_attn_weights


def gqa_with_inv_freq(m, inv_freq):
    """A copy of m whose cos/sin tables compute_rope_params builds from these inv_freq."""
    m2 = copy.deepcopy(m)
    positions = torch.arange(m.context_length, dtype=torch.float32)
    angles = positions[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], dim=1)
    m2.cos = torch.cos(angles)
    m2.sin = torch.sin(angles)
    return m2


def gqa_exact_inv_freq(c):
    """rope_inv_freq's float32 steps from correctly rounded float32 powers, and how many ulps
    PyTorch's powers theta ** (2i / head_dim) are off the correctly rounded ones."""
    hd = c['hd']
    exps = (torch.arange(0, hd, 2, dtype=torch.float32)[: (hd // 2)].float() / hd).numpy()
    powers = np.array([mg.pow_f32_correct(np.float32(c['theta']), e) for e in exps],
                      dtype=np.float32)
    torch_pow = (torch.tensor(c['theta'], dtype=torch.float32) ** torch.from_numpy(exps)).numpy()
    scaling = None if not c['factor'] > 0 else c
    return mg.emulate_inv_freq(hd, c['theta'], scaling, powers), ulps(torch_pow, powers)


def gqa_reference(c):
    m = gqa_build(c)
    g = torch.Generator().manual_seed(c['input_seed'])
    shape = (c['B'], c['T'], c['d_in'])
    x = torch.randn(shape, generator=g) if c['randn'] else torch.rand(shape, generator=g) * 2 - 1
    ref = {'model': m, 'x': x, 'state': list(m.state_dict().items()),
           'init': dict(m.state_dict())}
    torch.manual_seed(c['forward_seed'])
    ref['out'], ref['weights'] = gqa_forward(m, x)
    ref['rand'] = torch.rand(4)
    if c['rope']:
        ref['inv_freq'] = mg.rope_inv_freq(c['hd'], c['theta'], gqa_freq_config(c))
    if c['quant']:
        try:
            mq = torch.ao.quantization.quantize_dynamic(m, {torch.nn.Linear}, dtype=torch.qint8)
            ref['q_out'], _ = gqa_forward(mq, x)
        except Exception as e:  # noqa: BLE001  (only a comparison figure)
            ref['q_error'] = repr(e)
    return ref


def ratio_err(a, ref):
    """max|a - ref| / max|ref| over the whole tensor (the GQA golden tolerance measure)."""
    a = np.asarray(a, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    if a.size == 0:
        return 0.0
    return float(np.abs(a - r).max() / max(np.abs(r).max(), 1e-300))


def rel_l2(a, ref):
    a = np.asarray(a, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    return float(np.linalg.norm(a - r) / max(np.linalg.norm(r), 1e-300))


def ulps(a, b):
    a = np.ascontiguousarray(a, dtype=np.float32).view(np.int32).astype(np.int64)
    b = np.ascontiguousarray(b, dtype=np.float32).view(np.int32).astype(np.int64)
    return np.abs(a - b)


def gqa_compare(c, ref, res, problems, notes):
    """Checks one GQA case; returns {check: value}, each the worst over the targets."""
    targets = sorted({k.split('.', 1)[0] for k in res})
    errs = {}

    def put(key, v):
        errs[key] = max(errs.get(key, 0.0), v)

    r_out = ref['out'].numpy()
    r_w = ref['weights'].numpy()
    masked = mg.attention_mask(0, c['T'], c['window']).numpy()
    alt = None  # PyTorch on attn's inv_freq, built when inv_freq differs
    for t in targets:
        def get(key):
            return res['%s.%s' % (t, key)]

        init = {k.split('.', 2)[2]: v for k, v in res.items() if k.startswith(t + '.init.')}
        if sorted(init) != sorted(ref['init']):
            problems.append('%s: state_dict keys %s vs %s' % (t, sorted(init), sorted(ref['init'])))
        for k, v in ref['init'].items():
            if k in init and not np.array_equal(init[k], v.numpy()):
                n = int((init[k] != v.numpy()).sum())
                problems.append('%s: init %s differs in %d of %d values' % (t, k, n, v.numel()))
        for key in ('rand_w', 'rand'):
            if not np.array_equal(get(key), ref['rand'].numpy()):
                problems.append('%s: %s after forward differs (stream use)' % (t, key))

        if c['rope']:
            inv = get('inv_freq')
            rinv = ref['inv_freq'].numpy()
            if inv.shape != rinv.shape:
                problems.append('%s: inv_freq shape %s vs %s' % (t, inv.shape, rinv.shape))
            elif not np.array_equal(inv, rinv):
                u = ulps(inv, rinv)
                exact, pow_ulps = gqa_exact_inv_freq(c)
                idx = np.nonzero(u)[0].tolist()
                put('inv_freq_ulps', float(u.max()))
                put('pow_ulps', float(pow_ulps.max()))
                if np.array_equal(inv, exact):
                    notes.add('inv_freq differs from PyTorch by %s ulp at %s: PyTorch\'s pow is '
                              'off by %s ulp at %s (attn = the steps from correctly rounded '
                              'powers)' % (u[idx].tolist(), idx,
                                           pow_ulps[np.nonzero(pow_ulps)[0]].tolist(),
                                           np.nonzero(pow_ulps)[0].tolist()))
                else:
                    problems.append('%s: inv_freq differs from PyTorch (ulps %s at %s) and from '
                                    'the correctly rounded steps (at %s)' % (
                                        t, u[idx].tolist(), idx,
                                        np.nonzero(inv != exact)[0].tolist()))
                if alt is None:
                    m2 = gqa_with_inv_freq(ref['model'], torch.from_numpy(inv.copy()))
                    alt = gqa_forward(m2, ref['x'])
                    # what the pow alone does to PyTorch's own result
                    errs['pow_effect_out'] = ratio_err(alt[0].numpy(), r_out)
                    errs['pow_effect_weights'] = ratio_err(alt[1].numpy(), r_w)
            else:
                put('inv_freq_ulps', 0.0)

        quantities = [('out', get('out'), r_out), ('out_w', get('out_w'), r_out),
                      ('weights', get('weights'), r_w)]
        quantities += [('dec', get('dec%d' % i), r_out) for i in range(len(c['schedules']))]
        for key, a, r in quantities:
            if a.shape != r.shape:
                problems.append('%s: %s shape %s vs %s' % (t, key, a.shape, r.shape))
                continue
            e = ratio_err(a, r)
            put(key, e)
            if e > GQA_RTOL or not np.isfinite(e):
                msg = '%s: %s err %.3g > %g' % (t, key, e, GQA_RTOL)
                if alt is not None:
                    ea = ratio_err(a, (alt[1] if key == 'weights' else alt[0]).numpy())
                    msg += ('; vs PyTorch on attn\'s inv_freq %.3g (%s)' % (
                        ea, 'the pow explains it' if ea <= GQA_RTOL else 'not the pow alone'))
                problems.append(msg)
            if alt is not None:
                put(key + '_vs_alt', ratio_err(a, (alt[1] if key == 'weights' else alt[0]).numpy()))
        w = get('weights')
        if w.shape == r_w.shape:
            if (w[..., masked] != 0).any():
                problems.append('%s: %d weights outside the window are not 0' % (
                    t, int((w[..., masked] != 0).sum())))
            tiny = (np.abs(w) < 1e-30) & (np.abs(r_w) < 1e-30)
            zero_diff = ((w == 0) != (r_w == 0)) & ~tiny
            if zero_diff.any():
                problems.append('%s: %d weights zero in one and not the other (first at %s)' % (
                    t, int(zero_diff.sum()), tuple(np.argwhere(zero_diff)[0])))
        put('out_w_vs_out(attn)', ratio_err(get('out_w'), get('out')))
        if not np.array_equal(get('out_1thread'), get('out')):
            problems.append('%s: one-thread output differs from the default' % t)
        if not np.array_equal(get('dec0_rewound'), get('dec0')):
            problems.append('%s: decoding after cache.rewind differs from the first run' % t)

        if c['quant']:
            q = get('q_out')
            qe = rel_l2(q, get('out'))
            put('q_rel_l2', qe)
            put('q_rel_l2_vs_torch', rel_l2(q, r_out))
            if not qe <= QUANT_MAX_REL_L2:
                problems.append('%s: quantized forward rel L2 %.3g vs float > %g' % (
                    t, qe, QUANT_MAX_REL_L2))
            # The quantized module's other paths against its forward(x): the float rounding
            # by which the attention paths differ can flip an activation's int8 rounding in
            # out_proj (one quantization step), so these get a relative L2 bound.
            for key, a in (('q_out_w', get('q_out_w')), ('q_dec0', get('q_dec0'))):
                e = rel_l2(a, q)
                put(key + '_vs_q_out_rel_l2', e)
                put(key + '_vs_q_out', ratio_err(a, q))
                if not e <= QUANT_PATH_REL_L2:
                    problems.append('%s: quantized %s vs quantized out rel L2 %.3g > %g' % (
                        t, key, e, QUANT_PATH_REL_L2))
            put('q_weights_vs_float', ratio_err(get('q_weights'), get('weights')))
    if c['quant'] and 'q_out' in ref:
        errs['torch_q_rel_l2'] = rel_l2(ref['q_out'].numpy(), r_out)
    return errs


def gqa_describe(c):
    s = ('d_in=%d d_out=%d (heads=%d x hd=%d) groups=%d ctx=%d B=%d T=%d bias=%d window=%d%s '
         'init=%d fwd=%d input=%d%s' % (
             c['d_in'], c['d_out'], c['heads'], c['hd'], c['groups'], c['ctx'], c['B'], c['T'],
             c['bias'], c['window'], ' randn' if c['randn'] else '', c['init_seed'],
             c['forward_seed'], c['input_seed'], ' quant' if c['quant'] else ''))
    if c['rope']:
        s += ' rope theta=%r' % c['theta']
        if c['factor'] > 0:
            s += ' llama3(factor=%r low=%r high=%r ocl=%d)' % (c['factor'], c['low'], c['high'],
                                                              c['ocl'])
    else:
        s += ' no-rope'
    s += ' sched=%s' % ' '.join(gqa_sched_str(ch) for ch in c['schedules'])
    return s


def gqa_sched_str(chunks):
    """A short form: 5+1x20 for [5, 1, 1, ...]."""
    if len(chunks) > 1 and all(n == 1 for n in chunks[1:]):
        return '%d+1x%d' % (chunks[0], len(chunks) - 1)
    if len(chunks) > 8:
        return ','.join(map(str, chunks[:8])) + ',...(%d chunks)' % len(chunks)
    return ','.join(map(str, chunks))


def gqa_driver_args(c, driver, all_targets, case_path, res_path):
    return ([driver, case_path, res_path, GQA, c['d_in'], c['d_out'], c['ctx'], c['heads'],
             c['groups'], c['window'], c['bias'], c['rope'], repr(float(c['theta'])),
             repr(float(c['factor'])), repr(float(c['low'])), repr(float(c['high'])), c['ocl'],
             c['init_seed'], c['forward_seed'], int(all_targets), c['quant']]
            + [','.join(map(str, ch)) for ch in c['schedules']])


def gqa_diagnose(c, ref):
    """For a failing case: PyTorch's own float32 error against a float64 run (same cos/sin)."""
    m64 = copy.deepcopy(ref['model']).double()
    out64, w64 = gqa_forward(m64, ref['x'].double())
    return 'torch float32 vs float64: out %.3g, weights %.3g' % (
        ratio_err(ref['out'].numpy(), out64.numpy()),
        ratio_err(ref['weights'].numpy(), w64.numpy()))


def gqa_run_case(c, driver, all_targets, tmp, keep):
    t0 = time.time()
    ref = gqa_reference(c)
    t_ref = time.time() - t0
    case_path = os.path.join(tmp, c['name'] + '.safetensors')
    res_path = os.path.join(tmp, c['name'] + '.result.safetensors')
    mg.write_safetensors(case_path, ref['state'] + [('input', ref['x'])])
    args = gqa_driver_args(c, driver, all_targets, case_path, res_path)
    t0 = time.time()
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    t_cpp = time.time() - t0
    problems, notes, errs = [], set(), {}
    if p.returncode != 0:
        problems.append('driver failed: ' + p.stderr.strip())
    else:
        errs = gqa_compare(c, ref, mg.read_safetensors(res_path), problems, notes)
    if problems:
        problems.append(gqa_diagnose(c, ref))
        if keep:
            os.makedirs(keep, exist_ok=True)
            for f in (case_path, res_path):
                if os.path.exists(f):
                    os.replace(f, os.path.join(keep, os.path.basename(f)))
            with open(os.path.join(keep, c['name'] + '.cmd'), 'w') as f:
                f.write(' '.join(str(a) for a in args) + '\n')
    for f in (case_path, res_path):
        if os.path.exists(f):
            os.remove(f)
    return problems, sorted(notes), errs, t_ref, t_cpp


def percentile(values, q):
    v = sorted(values)
    if not v:
        return float('nan')
    return v[min(len(v) - 1, int(math.ceil(q / 100.0 * len(v))) - 1)]


def gqa_summary(results, failures):
    """results: list of (case, errs, notes)."""
    keys = sorted({k for _, e, _ in results for k in e})
    print()
    print('GroupedQueryAttention: %d cases, %d failed; per check over the cases (each the worst '
          'over targets): max, 99th percentile, median [case of the max]' % (
              len(results), failures))
    for k in keys:
        vals = [(e[k], c['name']) for c, e, _ in results if k in e]
        vmax, name = max(vals)
        xs = [v for v, _ in vals]
        print('    %-22s n=%-4d max %.3g  p99 %.3g  median %.3g  [%s]' % (
            k, len(xs), vmax, percentile(xs, 99), percentile(xs, 50), name))
    pow_cases = [c['name'] for c, _, n in results if n]
    print('    inv_freq off PyTorch\'s where PyTorch\'s pow is not correctly rounded (attn\'s '
          'steps from correctly rounded powers): %d cases' % len(pow_cases))
    for label, sel in (('those cases', [r for r in results if r[2]]),
                       ('the others', [r for r in results if not r[2]])):
        if sel:
            print('      in %s: worst out/out_w/dec err vs PyTorch %.3g' % (label, max(
                max(e.get(k, 0.0) for k in ('out', 'out_w', 'dec')) for _, e, _ in sel)))
    worst = max(((e.get('out_vs_alt', 0.0), c['name']) for c, e, n in results if n),
                default=None)
    if worst:
        print('      vs PyTorch run on attn\'s inv_freq: worst out err %.3g [%s]' % worst)


def describe(c):
    return ('%s%s d_in=%d d_out=%d ctx=%d p=%g heads=%d bias=%d init=%d fwd=%d train=%d B=%d '
            'T=%d kv=%d' % (c['module'], ' randn' if c.get('randn') else '', c['d_in'],
                            c['d_out'], c['ctx'], c['dropout'], c['heads'], c['bias'],
                            c['init_seed'], c['forward_seed'], c['train'], c['B'], c['T'],
                            c['kv_prompt']))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('driver')
    ap.add_argument('--cases', type=int, default=300, help='chapter-3 module cases')
    ap.add_argument('--gqa-cases', type=int, default=300, help='GroupedQueryAttention cases')
    ap.add_argument('--quant-every', type=int, default=15,
                    help='quantize_dynamic on every Nth GroupedQueryAttention case (0: never)')
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--all-targets', action='store_true')
    ap.add_argument('--gpt2', action='store_true', help='also the GPT-2 small shape')
    ap.add_argument('--only', choices=MODULES + [GQA])
    ap.add_argument('--case', action='append',
                    help='run only the case of this name (repeatable), e.g. to rerun a failure')
    ap.add_argument('--keep', help='keep the files of failing cases here')
    args = ap.parse_args()

    cases = []
    if args.only != GQA:
        rng = random.Random(args.seed)
        modules = [args.only] if args.only else MODULES
        cases = [random_config(rng, modules[i % len(modules)], i) for i in range(args.cases)]
        if args.gpt2:
            cases += gpt2_configs()
    if args.only in (None, GQA):
        # a stream of its own: the chapter-3 cases of a seed do not change
        grng = random.Random('gqa-%d' % args.seed)
        cases += [gqa_random_config(grng, i, args.quant_every) for i in range(args.gqa_cases)]
    if args.case:
        cases = [c for c in cases if c['name'] in args.case]
    stats = {}
    failures = 0
    gqa_results, gqa_failures = [], 0
    rerun = [sys.executable, os.path.abspath(__file__), args.driver, '--seed', str(args.seed),
             '--cases', str(args.cases), '--gqa-cases', str(args.gqa_cases),
             '--quant-every', str(args.quant_every)] + (['--all-targets'] if args.all_targets
                                                       else [])
    t_start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for c in cases:
            if c['module'] == GQA:
                problems, notes, errs, t_ref, t_cpp = gqa_run_case(
                    c, args.driver, args.all_targets, tmp, args.keep)
                gqa_results.append((c, errs, notes))
                worst = max((errs.get(k, 0.0) for k in ('out', 'out_w', 'weights')),
                            default=float('nan'))
                worst_dec = errs.get('dec', float('nan'))
                print('%-4s %-10s %s  err out/w %.2e dec %.2e%s  (torch %.1fs, attn %.1fs)' % (
                    'FAIL' if problems else 'ok', c['name'], gqa_describe(c), worst, worst_dec,
                    '  q_rel_l2 %.2e' % errs['q_rel_l2'] if 'q_rel_l2' in errs else '',
                    t_ref, t_cpp), flush=True)
                for n in notes:
                    print('       note: ' + n, flush=True)
                for pr in problems:
                    print('       ' + pr, flush=True)
                if problems:
                    print('       rerun: ' + ' '.join(rerun + ['--only', GQA, '--case',
                                                               c['name']]), flush=True)
                    gqa_failures += 1
                    failures += 1
                continue
            problems, errs, t_ref, t_cpp = run_case(c, args.driver, args.all_targets, tmp,
                                                    args.keep)
            s = stats.setdefault(c['module'], dict(n=0, fail=0, worst={}, ratio=(0.0, '')))
            s['n'] += 1
            for k, v in errs.items():
                if v[2] > 0 and v[1] / v[2] > s['ratio'][0]:
                    s['ratio'] = (v[1] / v[2], c['name'] + ' ' + k)
                q = k.split('.', 1)[-1]
                old = s['worst'].get(q)
                if old is None or v[0] > old[0]:
                    s['worst'][q] = v + (c['name'],)
            worst = max((v[0] for v in errs.values()), default=float('nan'))
            status = 'FAIL' if problems else 'ok'
            print('%-4s %-36s %s  max_err32=%.2e  (torch %.1fs, attn %.1fs)' % (
                status, c['name'], describe(c), worst, t_ref, t_cpp), flush=True)
            for pr in problems:
                print('       ' + pr, flush=True)
            if problems:
                failures += 1
                s['fail'] += 1
    if stats:
        print()
        print('%-26s %5s %5s  %s' % (
            'module', 'cases', 'fail', 'worst err vs torch float32 (vs float64; torch float32 '
            'vs float64, worst order; max abs diff) [case]'))
        for mod, s in stats.items():
            print('%-26s %5d %5d' % (mod, s['n'], s['fail']))
            for q, (e32, e64, et, ad, name) in sorted(s['worst'].items()):
                print('    %-14s %.2e (%.2e; %.2e; %.2e) [%s]' % (q, e32, e64, et, ad, name))
            print('    %-14s %.2f [%s]' % ('worst err64/torch', *s['ratio']))
    if gqa_results:
        gqa_summary(gqa_results, gqa_failures)
    print('%d cases, %d failed (%.0f s)' % (len(cases), failures, time.time() - t_start))
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
