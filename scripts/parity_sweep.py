#!/usr/bin/python3
"""Randomized parity sweep of attn against the book's PyTorch modules (a developer tool).

    /usr/bin/python3 scripts/parity_sweep.py DRIVER [--cases N] [--seed S] [--all-targets]
        [--gpt2] [--keep DIR] [--only MODULE]

DRIVER is tests/parity's attn_parity_driver (build it with
`cmake -S tests/parity -B build-parity && cmake --build build-parity -j`). For each random
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


def describe(c):
    return ('%s%s d_in=%d d_out=%d ctx=%d p=%g heads=%d bias=%d init=%d fwd=%d train=%d B=%d '
            'T=%d kv=%d' % (c['module'], ' randn' if c.get('randn') else '', c['d_in'],
                            c['d_out'], c['ctx'], c['dropout'], c['heads'], c['bias'],
                            c['init_seed'], c['forward_seed'], c['train'], c['B'], c['T'],
                            c['kv_prompt']))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('driver')
    ap.add_argument('--cases', type=int, default=300)
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--all-targets', action='store_true')
    ap.add_argument('--gpt2', action='store_true', help='also the GPT-2 small shape')
    ap.add_argument('--only', choices=MODULES)
    ap.add_argument('--keep', help='keep the files of failing cases here')
    args = ap.parse_args()

    rng = random.Random(args.seed)
    modules = [args.only] if args.only else MODULES
    cases = [random_config(rng, modules[i % len(modules)], i) for i in range(args.cases)]
    if args.gpt2:
        cases += gpt2_configs()
    stats = {}
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for c in cases:
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
    print()
    print('%-26s %5s %5s  %s' % (
        'module', 'cases', 'fail', 'worst err vs torch float32 (vs float64; torch float32 vs '
        'float64, worst order; max abs diff) [case]'))
    for mod, s in stats.items():
        print('%-26s %5d %5d' % (mod, s['n'], s['fail']))
        for q, (e32, e64, et, ad, name) in sorted(s['worst'].items()):
            print('    %-14s %.2e (%.2e; %.2e; %.2e) [%s]' % (q, e32, e64, et, ad, name))
        print('    %-14s %.2f [%s]' % ('worst err64/torch', *s['ratio']))
    print('%d cases, %d failed' % (len(cases), failures))
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
