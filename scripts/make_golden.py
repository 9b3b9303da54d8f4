#!/usr/bin/python3
"""Writes the golden test vectors in tests/data/ from the book's PyTorch modules.

Run with Debian's PyTorch 1.13 (CPU, no MKL):

    /usr/bin/python3 scripts/make_golden.py

Outputs (all deterministic; re-running gives byte-identical files):
  tests/data/<case>.safetensors   one file per module case (state_dict, input, output, weights)
  tests/data/golden_cases.txt     the manifest of module cases
  tests/data/rand.safetensors     torch.rand streams for a few seeds
  tests/data/linear_init.safetensors
  tests/data/dropout.safetensors
See tests/data/README.md for the exact contents.

Before writing anything, the script checks the random-number facts of
tests/data/README.md against an independent MT19937 written below (torch.rand,
nn.Linear init, dropout masks and scaling) and aborts if any of them does not hold.
"""

import os

# Must be set before torch is imported: pins PyTorch to its AVX2 kernels so that the data does
# not depend on the generating machine (uniform_ is an FMA there; see the parity notes).
os.environ['ATEN_CPU_CAPABILITY'] = 'avx2'

import copy  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
from fractions import Fraction  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from book_modules import (  # noqa: E402
    CausalAttention, MultiHeadAttention, MultiHeadAttentionWrapper, SelfAttention_v1,
    SelfAttention_v2)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, 'tests', 'data')

# The book's six-token input "Your journey starts with one step" (section 3.3).
BOOK_INPUTS = [[0.43, 0.15, 0.89], [0.55, 0.87, 0.66], [0.57, 0.85, 0.64],
               [0.22, 0.58, 0.33], [0.77, 0.25, 0.10], [0.05, 0.80, 0.55]]


# --------------------------------------------------------------------------------------------
# safetensors writer / reader (no dependency on the `safetensors` package)
# --------------------------------------------------------------------------------------------

def write_safetensors(path, tensors):
    """tensors: list of (name, tensor); written as F32 in this order, back to back."""
    header = {'__metadata__': {'format': 'pt'}}
    blobs = []
    offset = 0
    for name, t in tensors:
        assert name not in header, name
        a = t.detach().cpu().contiguous().to(torch.float32).numpy()
        b = a.astype('<f4', copy=False).tobytes(order='C')
        header[name] = {'dtype': 'F32', 'shape': list(a.shape),
                        'data_offsets': [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    hjson = json.dumps(header, separators=(',', ':')).encode('utf-8')
    hjson += b' ' * ((-(8 + len(hjson))) % 8)  # data section starts 8-byte aligned
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    with open(path, 'rb') as f:
        raw = f.read()
    (n,) = struct.unpack('<Q', raw[:8])
    header = json.loads(raw[8:8 + n].decode('utf-8'))
    base = 8 + n
    assert base % 8 == 0
    out = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        assert info['dtype'] == 'F32'
        b, e = info['data_offsets']
        out[name] = np.frombuffer(raw[base + b:base + e], dtype='<f4').reshape(info['shape'])
    return out


# --------------------------------------------------------------------------------------------
# Independent MT19937 and the parity checks (part 2 of the brief)
# --------------------------------------------------------------------------------------------

class MT19937:
    """Standard MT19937: init_genrand(seed) + genrand_int32 (same as std::mt19937)."""

    def __init__(self, seed):
        self.mt = [0] * 624
        self.mt[0] = seed & 0xFFFFFFFF
        for i in range(1, 624):
            prev = self.mt[i - 1]
            self.mt[i] = (1812433253 * (prev ^ (prev >> 30)) + i) & 0xFFFFFFFF
        self.idx = 624

    def u32(self):
        if self.idx >= 624:
            mt = self.mt
            for i in range(624):
                y = (mt[i] & 0x80000000) | (mt[(i + 1) % 624] & 0x7FFFFFFF)
                mt[i] = mt[(i + 397) % 624] ^ (y >> 1) ^ (0x9908B0DF if y & 1 else 0)
            self.idx = 0
        y = self.mt[self.idx]
        self.idx += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C5680
        y ^= (y << 15) & 0xEFC60000
        y ^= y >> 18
        return y & 0xFFFFFFFF

    def rand_f32(self):
        return np.float32((self.u32() & 0xFFFFFF) * 2.0 ** -24)

    def u53(self):
        r1 = self.u32()
        r2 = self.u32()
        return (((r1 << 32) | r2) & ((1 << 53) - 1)) * 2.0 ** -53


def f32_round(x):
    """Correctly rounded (nearest, ties to even) float32 of an exact Fraction."""
    f = np.float32(float(x))
    best = None
    for c in (np.nextafter(f, np.float32(-np.inf)), f, np.nextafter(f, np.float32(np.inf))):
        d = abs(Fraction(float(c)) - x)
        even = (int(np.float32(c).view(np.uint32)) & 1) == 0
        if best is None or d < best[0] or (d == best[0] and even):
            best = (d, np.float32(c))
    return best[1]


def fma_f32(a, b, c):
    return f32_round(Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c)))


def kaiming_bound(fan_in):
    # Exactly what torch.nn.init.kaiming_uniform_(w, a=math.sqrt(5)) computes, in double.
    gain = math.sqrt(2.0 / (1 + math.sqrt(5) ** 2))
    std = gain / math.sqrt(fan_in)
    return math.sqrt(3.0) * std


def check_parity_notes():
    """Checks the RNG facts of the parity notes; raises AssertionError if one fails."""
    findings = []

    # (a) torch.rand == (mt19937 u32 & 0xFFFFFF) * 2^-24, one draw per element, for 64-bit
    # seeds too (only the low 32 bits seed the generator).
    for s in (0, 123, 789, 2 ** 32 + 5):
        torch.manual_seed(s)
        t = torch.rand(37).numpy()
        t2 = torch.rand(3, 5).numpy().ravel()
        m = MT19937(s)
        ref = np.array([m.rand_f32() for _ in range(52)], dtype=np.float32)
        assert np.array_equal(t, ref[:37]) and np.array_equal(t2, ref[37:]), s
    torch.manual_seed(2 ** 32 + 5)
    a = torch.rand(8)
    torch.manual_seed(5)
    assert torch.equal(a, torch.rand(8))
    torch.manual_seed(123)
    t = torch.rand(2000).numpy()
    m = MT19937(123)
    assert np.array_equal(t, np.array([m.rand_f32() for _ in range(2000)], dtype=np.float32))
    findings.append('(a) torch.rand == (mt19937 u32 & 0xFFFFFF) * 2^-24 bit for bit '
                    '(seeds 0, 123, 789, 2^32+5 (= seed 5), 2000 draws across twists)')

    # (b) nn.Linear init: uniform_(-b, b) == fma(u, float(b) - float(-b), float(-b)) in float,
    # draws in creation order: weight row-major, then bias.
    plain_diff = 0
    plain_total = 0
    for fan_in, fan_out, bias in ((7, 5, True), (3, 2, False), (17, 6, True), (96, 96, True),
                                  (1, 4, True), (5, 3, True)):
        torch.manual_seed(123)
        lin = torch.nn.Linear(fan_in, fan_out, bias=bias)
        m = MT19937(123)
        params = [('weight', lin.weight, kaiming_bound(fan_in))]
        if bias:
            params.append(('bias', lin.bias, 1 / math.sqrt(fan_in)))
        for _, p, bd in params:
            got = p.detach().numpy().ravel()
            bf = np.float32(bd)
            assert bf == np.float32(1 / math.sqrt(fan_in))
            span = np.float32(bf - np.float32(-bf))  # to - from, in float
            assert span == np.float32(2) * bf
            us = [m.rand_f32() for _ in range(got.size)]
            want = np.array([fma_f32(u, span, -bf) for u in us], dtype=np.float32)
            assert np.array_equal(got, want), (fan_in, fan_out)
            plain = np.array([np.float32(np.float32(u * span) - bf) for u in us])
            plain_diff += int((plain != got).sum())
            plain_total += got.size
        # the next torch.rand continues right after the Linear's draws
        assert torch.rand(1).numpy()[0] == m.rand_f32()
    # float(kaiming bound) == float(1/sqrt(fan_in)) although the doubles differ
    n = np.arange(1, 1_000_001, dtype=np.float64)
    kb = math.sqrt(3.0) * (math.sqrt(2.0 / (1 + math.sqrt(5) ** 2)) / np.sqrt(n))
    ib = 1.0 / np.sqrt(n)
    double_diff = int((kb != ib).sum())
    assert np.array_equal(kb.astype(np.float32), ib.astype(np.float32))
    findings.append(
        '(b) nn.Linear init == fma(u, float(b) - float(-b), float(-b)) in float (correctly '
        'rounded fma), bit for bit; float(b)-float(-b) == 2*float(b) exactly. A plain '
        f'u*(2b)-b differs in {plain_diff}/{plain_total} values. The weight bound PyTorch '
        'computes (sqrt(3)*sqrt(2/(1+sqrt(5)^2))/sqrt(fan_in), double) differs from '
        f'1/sqrt(fan_in) as a double for {double_diff} of fan_in=1..1e6, but the float casts '
        'are identical for all of them')

    # (c) dropout: keep iff u53 < 1 - p (double), two u32 draws per element (r1 high),
    # kept values x * (1.0f / float(1 - p)), dropped values x * 0.0f.
    g = torch.Generator().manual_seed(99)
    for p in (0.5, 0.1, 0.3, 0.9, 0.0009, 1 / 3):
        x = torch.rand(4, 33, generator=g) + 0.25
        torch.manual_seed(5)
        y = torch.nn.functional.dropout(x, p, True).numpy().ravel()
        after = torch.rand(1).numpy()[0]
        m = MT19937(5)
        keep = np.array([m.u53() < 1 - p for _ in range(x.numel())])
        scale = np.float32(1.0) / np.float32(1 - p)
        want = np.where(keep, x.numpy().ravel() * scale, np.float32(0))
        assert np.array_equal(y, want), p
        assert after == m.rand_f32()
    # 1.0f/float(1-p) vs float(1/(1-p)) differ for p = 0.0009: the float one is what matches
    assert np.float32(1.0) / np.float32(1 - 0.0009) != np.float32(1 / (1 - 0.0009))
    torch.manual_seed(123)
    d = torch.nn.Dropout(0.5)(torch.ones(6, 6))
    assert d[0].tolist() == [2, 2, 0, 2, 2, 0]
    findings.append('(c) dropout keep iff ((r1<<32|r2) & (2^53-1)) * 2^-53 < 1 - p (double), '
                    'kept = x * (1.0f / (float)(1 - p)) (float division of 1 by the float of '
                    'the double 1-p, then a float multiply), dropped = x * 0.0f; stream '
                    'continues after 2*numel draws')

    # p = 0, p = 1 and eval mode consume no random numbers
    for p, train in ((0.0, True), (1.0, True), (0.5, False)):
        torch.manual_seed(7)
        mod = torch.nn.Dropout(p)
        mod.train(train)
        out = mod(torch.ones(5, 5))
        a = torch.rand(1)
        torch.manual_seed(7)
        assert torch.equal(a, torch.rand(1)), (p, train)
        assert torch.equal(out, torch.zeros(5, 5) if (p == 1.0 and train) else torch.ones(5, 5))
    findings.append('dropout with p=0 (train), p=1 (train) and any p in eval mode draws no '
                    'random numbers; p=1 returns x * 0 (zeros, -0 for negative x, NaN for inf)')
    return findings


# --------------------------------------------------------------------------------------------
# Module cases
# --------------------------------------------------------------------------------------------

MODULES = {
    'SelfAttentionV1': SelfAttention_v1,
    'SelfAttentionV2': SelfAttention_v2,
    'CausalAttention': CausalAttention,
    'MultiHeadAttentionWrapper': MultiHeadAttentionWrapper,
    'MultiHeadAttention': MultiHeadAttention,
}


def case(name, module, d_in, d_out, ctx=0, dropout=0.0, heads=1, bias=0, init_seed=123,
         forward_seed=0, train=1, B=1, T=None, input_seed=None, rtol=1e-5, scale=None):
    return dict(name=name, module=module, d_in=d_in, d_out=d_out, ctx=ctx, dropout=dropout,
                heads=heads, bias=bias, init_seed=init_seed, forward_seed=forward_seed,
                train=train, B=B, T=T, input_seed=input_seed, rtol=rtol, scale=scale)


# input_seed None = the book's inputs (2-D for v1/v2, stack((inputs, inputs)) otherwise);
# otherwise input = torch.rand(shape, generator=torch.Generator().manual_seed(input_seed))*2-1.
# scale: multiply every parameter (not the mask buffer) by this after construction (peaky case);
# the manifest then says init_seed = -1 (construction used `init_seed` internally).
CASES = [
    # SelfAttention_v1 (no context_length / dropout / heads: written as 0, 0, 1)
    case('v1_book', 'SelfAttentionV1', 3, 2, init_seed=123),
    case('v1_d1_o1_T1', 'SelfAttentionV1', 1, 1, init_seed=1, T=1, input_seed=101),
    case('v1_d5_o3_T7', 'SelfAttentionV1', 5, 3, init_seed=2, T=7, input_seed=102),
    case('v1_d17_o6_T4', 'SelfAttentionV1', 17, 6, init_seed=3, T=4, input_seed=103),
    # SelfAttention_v2
    case('v2_book', 'SelfAttentionV2', 3, 2, init_seed=789),
    case('v2_d1_o2_T3_bias', 'SelfAttentionV2', 1, 2, bias=1, init_seed=4, T=3, input_seed=104),
    case('v2_d7_o5_T4_bias', 'SelfAttentionV2', 7, 5, bias=1, init_seed=5, T=4, input_seed=105),
    case('v2_d5_o1_T1', 'SelfAttentionV2', 5, 1, init_seed=6, T=1, input_seed=106),
    case('v2_d17_o6_T9', 'SelfAttentionV2', 17, 6, init_seed=7, T=9, input_seed=107),
    # CausalAttention
    case('ca_book', 'CausalAttention', 3, 2, ctx=6, init_seed=123),
    case('ca_d17_o6_bias_B3_T5_ctx8', 'CausalAttention', 17, 6, ctx=8, bias=1, init_seed=8,
         B=3, T=5, input_seed=108),
    case('ca_d3_o1_B1_T1_ctx4', 'CausalAttention', 3, 1, ctx=4, init_seed=9, B=1, T=1,
         input_seed=109),
    case('ca_d1_o2_B2_T3_ctx3_eval', 'CausalAttention', 1, 2, ctx=3, init_seed=10, train=0,
         B=2, T=3, input_seed=110),
    case('ca_p05_train', 'CausalAttention', 5, 6, ctx=10, dropout=0.5, init_seed=11,
         forward_seed=42, B=2, T=10, input_seed=111),
    case('ca_p01_train_bias', 'CausalAttention', 7, 3, ctx=12, dropout=0.1, bias=1,
         init_seed=12, forward_seed=43, B=3, T=9, input_seed=112),
    case('ca_p05_eval', 'CausalAttention', 5, 6, ctx=10, dropout=0.5, init_seed=11,
         forward_seed=42, train=0, B=2, T=10, input_seed=111),
    # MultiHeadAttentionWrapper (chapter version, no out_proj; output dim d_out * num_heads)
    case('mhaw_book', 'MultiHeadAttentionWrapper', 3, 2, ctx=6, heads=2, init_seed=123),
    case('mhaw_ex32_d_out1', 'MultiHeadAttentionWrapper', 3, 1, ctx=6, heads=2, init_seed=123),
    case('mhaw_d5_o3_h3_bias_B3_T7', 'MultiHeadAttentionWrapper', 5, 3, ctx=7, heads=3, bias=1,
         init_seed=13, B=3, T=7, input_seed=113),
    case('mhaw_d1_o1_h1_B1_T1_ctx2', 'MultiHeadAttentionWrapper', 1, 1, ctx=2, heads=1,
         init_seed=14, B=1, T=1, input_seed=114),
    case('mhaw_p05_train_h4', 'MultiHeadAttentionWrapper', 7, 2, ctx=9, dropout=0.5, heads=4,
         init_seed=15, forward_seed=44, B=2, T=8, input_seed=115),
    case('mhaw_p01_train_h2_bias', 'MultiHeadAttentionWrapper', 6, 3, ctx=11, dropout=0.1,
         heads=2, bias=1, init_seed=16, forward_seed=45, B=3, T=11, input_seed=116),
    case('mhaw_p05_eval_h4', 'MultiHeadAttentionWrapper', 7, 2, ctx=9, dropout=0.5, heads=4,
         init_seed=15, forward_seed=44, train=0, B=2, T=8, input_seed=115),
    # MultiHeadAttention
    case('mha_book', 'MultiHeadAttention', 3, 2, ctx=6, heads=2, init_seed=123),
    case('mha_d1_o1_h1_B1_T3_ctx4', 'MultiHeadAttention', 1, 1, ctx=4, heads=1, init_seed=17,
         B=1, T=3, input_seed=117),
    case('mha_d7_o6_h2_bias_B3_T5_ctx8', 'MultiHeadAttention', 7, 6, ctx=8, heads=2, bias=1,
         init_seed=18, B=3, T=5, input_seed=118),
    case('mha_d5_o6_h3_B2_T6_ctx6', 'MultiHeadAttention', 5, 6, ctx=6, heads=3, init_seed=19,
         B=2, T=6, input_seed=119),
    case('mha_d17_o12_h4_bias_B1_T11_ctx16', 'MultiHeadAttention', 17, 12, ctx=16, heads=4,
         bias=1, init_seed=20, B=1, T=11, input_seed=120),
    case('mha_d3_o4_h2_B2_T1_ctx5', 'MultiHeadAttention', 3, 4, ctx=5, heads=2, init_seed=21,
         B=2, T=1, input_seed=121),
    case('mha_d5_o2_h2_hd1_B3_T4_ctx4_eval', 'MultiHeadAttention', 5, 2, ctx=4, heads=2,
         init_seed=22, train=0, B=3, T=4, input_seed=122),
    case('mha_medium_d96_h4_B2_T64', 'MultiHeadAttention', 96, 96, ctx=64, heads=4,
         init_seed=2024, B=2, T=64, input_seed=123),
    case('mha_medium_p01_train_B1_T64', 'MultiHeadAttention', 96, 96, ctx=64, dropout=0.1,
         heads=4, init_seed=2025, forward_seed=46, B=1, T=64, input_seed=124),
    case('mha_p05_train_h2', 'MultiHeadAttention', 8, 8, ctx=16, dropout=0.5, heads=2,
         init_seed=23, forward_seed=47, B=2, T=16, input_seed=125),
    case('mha_p01_train_h3_bias', 'MultiHeadAttention', 6, 6, ctx=12, dropout=0.1, heads=3,
         bias=1, init_seed=24, forward_seed=48, B=3, T=12, input_seed=126),
    case('mha_p05_eval_h2', 'MultiHeadAttention', 8, 8, ctx=16, dropout=0.5, heads=2,
         init_seed=23, forward_seed=47, train=0, B=2, T=16, input_seed=125),
    case('mha_peaky_x16_h2', 'MultiHeadAttention', 16, 16, ctx=12, heads=2, bias=1,
         init_seed=26, B=2, T=12, input_seed=127, scale=16.0, rtol=1e-4),
]


def build(c):
    cls = MODULES[c['module']]
    torch.manual_seed(c['init_seed'])
    if c['module'] == 'SelfAttentionV1':
        m = cls(c['d_in'], c['d_out'])
    elif c['module'] == 'SelfAttentionV2':
        m = cls(c['d_in'], c['d_out'], qkv_bias=bool(c['bias']))
    elif c['module'] == 'CausalAttention':
        m = cls(c['d_in'], c['d_out'], c['ctx'], c['dropout'], qkv_bias=bool(c['bias']))
    else:
        m = cls(c['d_in'], c['d_out'], c['ctx'], c['dropout'], c['heads'],
                qkv_bias=bool(c['bias']))
    if c['scale'] is not None:
        with torch.no_grad():
            for p in m.parameters():
                p.mul_(c['scale'])
    return m


def make_input(c):
    two_d = c['module'] in ('SelfAttentionV1', 'SelfAttentionV2')
    if c['input_seed'] is None:
        x = torch.tensor(BOOK_INPUTS)
        return x if two_d else torch.stack((x, x), dim=0)
    shape = (c['T'], c['d_in']) if two_d else (c['B'], c['T'], c['d_in'])
    g = torch.Generator().manual_seed(c['input_seed'])
    return torch.rand(shape, generator=g) * 2 - 1


def dropout_modules(m):
    if isinstance(m, MultiHeadAttentionWrapper):
        return [h.dropout for h in m.heads]
    if isinstance(m, (CausalAttention, MultiHeadAttention)):
        return [m.dropout]
    return []


def forward(m, x, c):
    """The module's own forward, plus the attention weights it applied to V."""
    captured = []
    hooks = [d.register_forward_hook(lambda mod, inp, out: captured.append(out.detach().clone()))
             for d in dropout_modules(m)]
    m.train(bool(c['train']))
    torch.manual_seed(c['forward_seed'])
    with torch.no_grad():
        out = m(x)
    for h in hooks:
        h.remove()
    if isinstance(m, SelfAttention_v1):
        with torch.no_grad():
            keys = x @ m.W_key
            scores = (x @ m.W_query) @ keys.T
            weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)
    elif isinstance(m, SelfAttention_v2):
        with torch.no_grad():
            keys = m.W_key(x)
            scores = m.W_query(x) @ keys.T
            weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)
    elif isinstance(m, MultiHeadAttentionWrapper):
        assert len(captured) == len(m.heads)
        weights = torch.stack(captured, dim=1)  # (B, num_heads, T, T)
    else:
        assert len(captured) == 1
        weights = captured[0]
    return out.detach().clone(), weights


def tol_err(a, ref):
    """The golden tolerance metric: the smallest r with |a - ref| <= r * (|ref| + max|ref|)
    element-wise, i.e. allclose(a, ref, rtol=r, atol=r * max|ref|). (A pure element-wise
    relative error is not usable: outputs that are sums of cancelling terms can be tiny, and
    PyTorch's own float32 result is then far from the float64 one in relative terms.)"""
    a = a.double()
    ref = ref.double()
    scale = ref.abs() + ref.abs().max()
    return ((a - ref).abs() / scale.clamp(min=1e-300)).max().item()


def elem_err(a, ref):
    """Plain element-wise relative error with atol 1e-8 (reported only)."""
    diff = (a.double() - ref).abs()
    return ((diff - 1e-8).clamp(min=0) / ref.abs().clamp(min=1e-300)).max().item()


def run_cases():
    manifest = ['# name module d_in d_out context_length dropout num_heads qkv_bias init_seed '
                'forward_seed train rtol']
    rows = []
    for c in CASES:
        m = build(c)
        x = make_input(c)
        sd = m.state_dict()
        out, weights = forward(m, x, c)

        # The same computation in float64 (same dropout mask: same draws per element).
        m64 = copy.deepcopy(m).double()
        out64, w64 = forward(m64, x.double(), c)
        err = tol_err(out, out64)
        werr = tol_err(weights, w64)
        elem = elem_err(out, out64)
        # the chosen rtol must hold for PyTorch itself with a 4x margin
        assert err <= c['rtol'] / 4 and werr <= c['rtol'] / 4, (c['name'], err, werr)
        # same dropout mask in both precisions: zeros agree except float32 exp underflow
        assert bool(((w64 == 0) <= (weights == 0)).all()), c['name']
        assert bool((w64[(weights == 0) & (w64 != 0)] < 1e-30).all()), c['name']

        # init parity sanity: the state_dict must be reproducible from init_seed
        if c['scale'] is None:
            m2 = build(c)
            for k, v in m2.state_dict().items():
                assert torch.equal(v, sd[k]), (c['name'], k)

        tensors = [(k, v) for k, v in sd.items()]
        tensors += [('input', x), ('output', out), ('weights', weights)]
        path = os.path.join(DATA, c['name'] + '.safetensors')
        write_safetensors(path, tensors)
        back = read_safetensors(path)
        for k, v in tensors:
            assert np.array_equal(back[k], v.numpy()), (c['name'], k)

        init_seed = -1 if c['scale'] is not None else c['init_seed']
        num_heads = c['heads'] if c['module'] in ('MultiHeadAttentionWrapper',
                                                  'MultiHeadAttention') else 1
        manifest.append(' '.join(str(v) for v in (
            c['name'], c['module'], c['d_in'], c['d_out'], c['ctx'], repr(float(c['dropout'])),
            num_heads, c['bias'], init_seed, c['forward_seed'], c['train'],
            '%g' % c['rtol'])))
        tri = torch.ones(weights.shape[-2:]).tril().bool()
        nz = int(((weights == 0) & tri).sum())  # dropped (or underflowed) causal weights
        rows.append((c['name'], tuple(x.shape), tuple(out.shape), tuple(weights.shape),
                     err, werr, elem, os.path.getsize(path), nz))
    with open(os.path.join(DATA, 'golden_cases.txt'), 'w') as f:
        f.write('\n'.join(manifest) + '\n')
    return rows


# --------------------------------------------------------------------------------------------
# Standalone files
# --------------------------------------------------------------------------------------------

def write_rand():
    tensors = []
    for s in (0, 123, 789, 2 ** 32 + 5):
        torch.manual_seed(s)
        tensors.append(('rand_seed_%d' % s, torch.rand(37)))
        tensors.append(('rand2_seed_%d' % s, torch.rand(3, 5)))
    write_safetensors(os.path.join(DATA, 'rand.safetensors'), tensors)


def write_linear_init():
    torch.manual_seed(123)
    lin1 = torch.nn.Linear(7, 5, bias=True)
    lin2 = torch.nn.Linear(3, 2, bias=False)
    write_safetensors(os.path.join(DATA, 'linear_init.safetensors'),
                      [('lin1.weight', lin1.weight), ('lin1.bias', lin1.bias),
                       ('lin2.weight', lin2.weight)])


def write_dropout():
    t = []
    torch.manual_seed(123)
    t.append(('ones_p0.5', torch.nn.Dropout(0.5)(torch.ones(6, 6))))
    t.append(('rand_after_ones_p0.5', torch.rand(4)))
    x = torch.rand(4, 33, generator=torch.Generator().manual_seed(2718))
    t.append(('input_p0.1', x))
    torch.manual_seed(5)
    t.append(('output_p0.1', torch.nn.Dropout(0.1)(x)))
    t.append(('rand_after_p0.1', torch.rand(4)))
    torch.manual_seed(5)
    t.append(('output_p0.0009', torch.nn.Dropout(0.0009)(x)))
    torch.manual_seed(5)
    t.append(('output_p1.0', torch.nn.Dropout(1.0)(x)))
    t.append(('rand_after_p1.0', torch.rand(4)))
    torch.manual_seed(5)
    t.append(('output_p0.0', torch.nn.Dropout(0.0)(x)))
    t.append(('rand_after_p0.0', torch.rand(4)))
    torch.manual_seed(5)
    t.append(('rand_seed_5', torch.rand(4)))
    names = [n for n, _ in t]
    assert torch.equal(t[names.index('output_p1.0')][1], torch.zeros(4, 33))
    assert torch.equal(t[names.index('output_p0.0')][1], x)
    for n in ('rand_after_p1.0', 'rand_after_p0.0'):
        assert torch.equal(t[names.index(n)][1], t[names.index('rand_seed_5')][1])
    write_safetensors(os.path.join(DATA, 'dropout.safetensors'), t)


def main():
    os.makedirs(DATA, exist_ok=True)
    print('torch', torch.__version__, '| MKL:', torch.backends.mkl.is_available(),
          '| threads:', torch.get_num_threads(), '| ATEN_CPU_CAPABILITY=avx2')
    for line in check_parity_notes():
        print('parity check OK:', line)
    rows = run_cases()
    write_rand()
    write_linear_init()
    write_dropout()
    print()
    print('%-34s %-12s %-12s %-14s %9s %9s %9s %7s %5s' % (
        'case', 'input', 'output', 'weights', 'out_err', 'w_err', 'out_elem', 'bytes',
        'drop'))
    for name, xs, os_, ws, err, werr, elem, size, nz in rows:
        print('%-34s %-12s %-12s %-14s %9.2e %9.2e %9.2e %7d %5d' % (
            name, 'x'.join(map(str, xs)), 'x'.join(map(str, os_)), 'x'.join(map(str, ws)),
            err, werr, elem, size, nz))
    print('(out_err / w_err: float32 PyTorch output / weights vs the float64 run, as the '
          'smallest r with |a-ref| <= r*(|ref| + max|ref|), which must be <= rtol/4; '
          'out_elem: plain element-wise relative error (atol 1e-8), for information only; '
          'drop: zero weights on or below the diagonal: dropped by dropout, or exp underflow '
          'in the peaky case)')
    written = {c['name'] + '.safetensors' for c in CASES}
    written |= {'rand.safetensors', 'linear_init.safetensors', 'dropout.safetensors'}
    stale = sorted(f for f in os.listdir(DATA) if f.endswith('.safetensors') and f not in written)
    if stale:
        print('WARNING: stale files not written by this script:', ' '.join(stale))
    total = sum(os.path.getsize(os.path.join(DATA, f)) for f in written)
    print('%d module cases; %d bytes of .safetensors in %s' % (len(rows), total, DATA))


if __name__ == '__main__':
    main()
