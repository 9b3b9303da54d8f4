#!/usr/bin/python3
"""Writes the golden test vectors in tests/data/ from the book's PyTorch modules.

Run with Debian's PyTorch 1.13 (CPU, no MKL):

    /usr/bin/python3 scripts/make_golden.py              # everything
    /usr/bin/python3 scripts/make_golden.py --gqa-only   # only the gqa_* files

Outputs (deterministic: re-running on one machine gives byte-identical files):
  tests/data/<case>.safetensors   one file per module case (state_dict, input, output, weights)
  tests/data/golden_cases.txt     the manifest of module cases
  tests/data/rand.safetensors     torch.rand streams for a few seeds
  tests/data/linear_init.safetensors
  tests/data/dropout.safetensors
  tests/data/gqa_*.safetensors    grouped-query attention cases (scripts/book_gqa.py)
  tests/data/gqa_cases.txt        their manifest
  tests/data/gqa_rope.safetensors RoPE inverse frequencies, listed in gqa_rope_cases.txt
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

import mpmath  # noqa: E402  (python3-mpmath: python3-torch depends on it through sympy)
import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from book_modules import (  # noqa: E402
    CausalAttention, MultiHeadAttention, MultiHeadAttentionWrapper, SelfAttention_v1,
    SelfAttention_v2)
from book_gqa import (  # noqa: E402
    GroupedQueryAttention, attention_mask, compute_rope_params, rope_inv_freq)

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
# Grouped-query attention cases (scripts/book_gqa.py)
# --------------------------------------------------------------------------------------------

LLAMA3_SCALING = dict(factor=32.0, low=1.0, high=4.0, ocl=8192)


def gqa_case(name, d_in, d_out, ctx, heads, groups, B, T, init_seed, input_seed, prompt,
             window=0, bias=0, rope=1, theta=10000.0, scaling=None, rtol=2e-5, weights=None):
    s = scaling or dict(factor=0.0, low=1.0, high=4.0, ocl=8192)
    return dict(name=name, d_in=d_in, d_out=d_out, ctx=ctx, heads=heads, groups=groups,
                window=window, bias=bias, rope=rope, theta=float(theta),
                factor=float(s['factor']), low=float(s['low']), high=float(s['high']),
                ocl=int(s['ocl']), B=B, T=T, init_seed=init_seed, input_seed=input_seed,
                prompt=prompt, rtol=rtol, weights=T <= 64 if weights is None else weights)


# The window cases share one module and input, so that only the window differs (W = T and
# W > T give the W = 0 output).
def _window_case(window, name):
    return gqa_case(name, 8, 16, 16, 4, 2, B=2, T=10, init_seed=40, input_seed=140, prompt=4,
                    window=window)


GQA_CASES = [
    gqa_case('gqa_h8_g2_d16_o32_B1_T12', 16, 32, 16, 8, 2, B=1, T=12, init_seed=30,
             input_seed=130, prompt=5),
    gqa_case('gqa_mqa_h4_g1_d12_o32_B2_T9', 12, 32, 12, 4, 1, B=2, T=9, init_seed=31,
             input_seed=131, prompt=4),
    gqa_case('gqa_mha_h4_g4_bias_d10_o24_B2_T7', 10, 24, 8, 4, 4, B=2, T=7, init_seed=32,
             input_seed=132, prompt=3, bias=1),
    gqa_case('gqa_norope_hd5_h3_g1_d7_o15_B2_T10', 7, 15, 10, 3, 1, B=2, T=10, init_seed=33,
             input_seed=133, prompt=6, rope=0),
    gqa_case('gqa_llama3_hd64_h2_g1_d16_B2_T20', 16, 128, 32, 2, 1, B=2, T=20, init_seed=34,
             input_seed=134, prompt=11, theta=500000.0, scaling=LLAMA3_SCALING),
    gqa_case('gqa_llama3_ocl64_hd16_h4_g2_d12_T40', 12, 64, 48, 4, 2, B=1, T=40, init_seed=35,
             input_seed=135, prompt=17, theta=500000.0,
             scaling=dict(factor=32.0, low=1.0, high=4.0, ocl=64)),
    gqa_case('gqa_llama3_hd128_h1_g1_d12_T16', 12, 128, 16, 1, 1, B=1, T=16, init_seed=36,
             input_seed=136, prompt=9, theta=500000.0, scaling=LLAMA3_SCALING),
    _window_case(1, 'gqa_win1_h4_g2_B2_T10'),
    _window_case(3, 'gqa_win3_h4_g2_B2_T10'),
    _window_case(9, 'gqa_win9_h4_g2_B2_T10'),
    _window_case(10, 'gqa_win10_h4_g2_B2_T10'),
    _window_case(15, 'gqa_win15_h4_g2_B2_T10'),
    _window_case(0, 'gqa_win0_h4_g2_B2_T10'),
    gqa_case('gqa_T1_h2_g1_d9_o16_B2', 9, 16, 4, 2, 1, B=2, T=1, init_seed=37, input_seed=137,
             prompt=1),
    gqa_case('gqa_long_T640_h2_g1_hd8_ctx1024', 6, 16, 1024, 2, 1, B=1, T=640, init_seed=38,
             input_seed=138, prompt=300),
    gqa_case('gqa_long_T700_win48_llama3_ocl64_h4_g2', 5, 16, 768, 4, 2, B=1, T=700,
             init_seed=39, input_seed=139, prompt=650, window=48, theta=500000.0,
             scaling=dict(factor=32.0, low=1.0, high=4.0, ocl=64)),
    gqa_case('gqa_qwen_bias_theta1e6_h6_g2_hd16_B2_T11', 14, 96, 16, 6, 2, B=2, T=11,
             init_seed=41, input_seed=141, prompt=5, bias=1, theta=1000000.0),
    gqa_case('gqa_d37_h6_g3_hd6_win5_B3_T13', 37, 36, 13, 6, 3, B=3, T=13, init_seed=42,
             input_seed=142, prompt=7, window=5),
]


def gqa_freq_config(c):
    if c['factor'] <= 0:
        return None
    return {'factor': c['factor'], 'low_freq_factor': c['low'], 'high_freq_factor': c['high'],
            'original_context_length': c['ocl']}


def build_gqa(c):
    torch.manual_seed(c['init_seed'])
    return GroupedQueryAttention(c['d_in'], c['d_out'], c['ctx'], c['heads'], c['groups'],
                                 rope_base=c['theta'], rope_config=gqa_freq_config(c),
                                 use_rope=bool(c['rope']), sliding_window=c['window'],
                                 qkv_bias=bool(c['bias']))


def max_ratio_err(a, ref):
    """The GQA tolerance measure: max |a - ref| / max |ref| over the whole tensor."""
    a = a.double()
    ref = ref.double()
    return ((a - ref).abs().max() / ref.abs().max()).item()


def gqa_decode(m, x, chunks):
    """x through the book's KV cache in chunks of these sizes; the outputs stitched together."""
    outs = []
    cache = None
    pos = 0
    with torch.no_grad():
        for n in chunks:
            out, cache = m(x[:, pos:pos + n], start_pos=pos, cache=cache)
            outs.append(out)
            pos += n
    assert pos == x.shape[1]
    return torch.cat(outs, dim=1)


def gqa_schedules(T, prompt):
    """The decoding runs the C++ test makes too: a prompt then single tokens; the prompt in two
    chunks then single tokens; every token alone; everything as one chunk."""
    ones = [1] * (T - prompt)
    runs = [[prompt] + ones, [1] * T, [T]]
    if prompt >= 2:
        runs.append([prompt // 2, prompt - prompt // 2] + ones)
    return runs


def run_gqa_cases():
    manifest = ['# name d_in d_out context_length num_heads num_kv_groups sliding_window '
                'qkv_bias rope theta_base scaling_factor low_freq_factor high_freq_factor '
                'original_context_length init_seed prompt rtol']
    rows = []
    for c in GQA_CASES:
        m = build_gqa(c)
        sd = m.state_dict()
        assert all(not k.endswith(('cos', 'sin', 'mask')) for k in sd), list(sd)
        g = torch.Generator().manual_seed(c['input_seed'])
        x = torch.rand((c['B'], c['T'], c['d_in']), generator=g) * 2 - 1
        with torch.no_grad():
            out, _ = m(x)
        weights = m.last_attn_weights

        # float64 with the same float32 cos/sin tables (.double() converts the buffers): the
        # float32 rounding of the attention itself, which must stay within rtol / 4.
        m64 = copy.deepcopy(m).double()
        with torch.no_grad():
            out64, _ = m64(x.double())
        err = max_ratio_err(out, out64)
        werr = max_ratio_err(weights, m64.last_attn_weights)
        assert err <= c['rtol'] / 4 and werr <= c['rtol'] / 4, (c['name'], err, werr)
        # masked weights are exact zeros
        masked = attention_mask(0, c['T'], c['window'])
        assert bool((weights[..., masked] == 0).all()), c['name']

        # The book's KV-cache decoding gives the full forward's rows.
        derr = max(max_ratio_err(gqa_decode(m, x, ch), out)
                   for ch in gqa_schedules(c['T'], c['prompt']))
        assert derr <= c['rtol'] / 4, (c['name'], derr)

        # init parity sanity: the same seed draws the same state_dict
        for k, v in build_gqa(c).state_dict().items():
            assert torch.equal(v, sd[k]), (c['name'], k)

        tensors = [(k, v) for k, v in sd.items()] + [('input', x), ('output', out)]
        if c['weights']:
            tensors.append(('weights', weights))
        path = os.path.join(DATA, c['name'] + '.safetensors')
        write_safetensors(path, tensors)
        back = read_safetensors(path)
        for k, v in tensors:
            assert np.array_equal(back[k], v.numpy()), (c['name'], k)

        manifest.append(' '.join(str(v) for v in (
            c['name'], c['d_in'], c['d_out'], c['ctx'], c['heads'], c['groups'], c['window'],
            c['bias'], c['rope'], repr(c['theta']), repr(c['factor']), repr(c['low']),
            repr(c['high']), c['ocl'], c['init_seed'], c['prompt'], '%g' % c['rtol'])))
        rows.append((c['name'], tuple(x.shape), tuple(out.shape), err, werr, derr,
                     os.path.getsize(path)))
    with open(os.path.join(DATA, 'gqa_cases.txt'), 'w') as f:
        f.write('\n'.join(manifest) + '\n')
    return rows


# RoPE inverse frequencies: (name, head_dim, theta_base, scaling) for rope_inv_freq.
ROPE_CONFIGS = [
    # the module cases' configurations
    ('hd4_theta1e4', 4, 10000.0, None),
    ('hd6_theta1e4', 6, 10000.0, None),
    ('hd8_theta1e4', 8, 10000.0, None),
    ('hd16_theta1e6', 16, 1000000.0, None),
    ('hd64_llama32', 64, 500000.0, LLAMA3_SCALING),
    ('hd128_llama32', 128, 500000.0, LLAMA3_SCALING),
    ('hd16_llama3_ocl64', 16, 500000.0, dict(factor=32.0, low=1.0, high=4.0, ocl=64)),
    ('hd4_llama3_ocl64', 4, 500000.0, dict(factor=32.0, low=1.0, high=4.0, ocl=64)),
    # published models and odd sizes
    ('hd2_theta1e4', 2, 10000.0, None),
    ('hd128_theta1e4_llama2', 128, 10000.0, None),
    ('hd128_llama31', 128, 500000.0, dict(factor=8.0, low=1.0, high=4.0, ocl=8192)),
    ('hd64_theta1e6_qwen', 64, 1000000.0, None),
    ('hd128_theta1e6_qwen', 128, 1000000.0, None),
    ('hd256_theta1e4', 256, 10000.0, None),
    ('hd80_theta1e4', 80, 10000.0, None),
    ('hd96_theta1e6', 96, 1000000.0, None),
    ('hd64_theta5e5', 64, 500000.0, None),
    # the book's rescale_theta(500000, 131072, 8192) with Llama 3.2 scaling
    ('hd64_theta31250_llama32', 64, 31250.0, LLAMA3_SCALING),
    # a theta that is not a float (PyTorch rounds it to float32 before the power)
    ('hd32_theta1e4_third', 32, 10000.0 / 3, None),
    ('hd64_llama3_f16_low2_high8_ocl1024', 64, 500000.0,
     dict(factor=16.0, low=2.0, high=8.0, ocl=1024)),
    # factors that are not powers of two and bounds that are not floats
    ('hd64_llama3_f3_low1.1_high3.3_ocl100', 64, 10000.0,
     dict(factor=3.0, low=1.1, high=3.3, ocl=100)),
]


def pow_f32_correct(base, exponent):
    """float32(base ** exponent) correctly rounded, for float32 base and exponent."""
    mpmath.mp.prec = 256
    v = mpmath.mpf(float(base)) ** mpmath.mpf(float(exponent))
    man, exp = v.man_exp
    return f32_round(Fraction(int(man)) * Fraction(2) ** int(exp))


def emulate_inv_freq(head_dim, theta, scaling, powers):
    """rope_inv_freq as the float32 operations PyTorch runs for it, one numpy float32 op each,
    with the given float32 powers theta ** (2i / head_dim)."""
    f = np.float32
    inv = f(1) / powers  # 1.0 / t is t.reciprocal() * 1.0
    if scaling is None:
        return inv
    low_wl = scaling['ocl'] / scaling['low']  # Python doubles, cast to float32 where used
    high_wl = scaling['ocl'] / scaling['high']
    wavelen = (f(1) / inv) * f(2 * math.pi)  # 2 * pi / t is t.reciprocal() * (2 * pi)
    scaled = inv / f(scaling['factor'])
    llama = np.where(wavelen > f(low_wl), scaled, inv)
    smooth = ((f(1) / wavelen) * f(scaling['ocl']) - f(scaling['low'])) / f(
        scaling['high'] - scaling['low'])
    smoothed = (f(1) - smooth) * scaled + smooth * inv
    medium = (wavelen <= f(low_wl)) & (wavelen >= f(high_wl))
    return np.where(medium, smoothed, llama).astype(np.float32)


def write_gqa_rope():
    """gqa_rope.safetensors + gqa_rope_cases.txt. Per configuration: <name>.inv_freq (PyTorch)
    and <name>.inv_freq_exact_pow (the same float32 steps from correctly rounded powers). They
    differ only where PyTorch's float32 pow (Sleef, 1-ULP accurate) is not correctly rounded."""
    manifest = ['# name head_dim theta_base scaling_factor low_freq_factor high_freq_factor '
                'original_context_length']
    tensors = []
    rows = []
    for name, hd, theta, scaling in ROPE_CONFIGS:
        fc = None if scaling is None else {
            'factor': scaling['factor'], 'low_freq_factor': scaling['low'],
            'high_freq_factor': scaling['high'], 'original_context_length': scaling['ocl']}
        inv = rope_inv_freq(hd, theta, fc)
        # the module's tables use the same inv_freq
        cos, _ = compute_rope_params(hd, theta, 3, fc)
        assert torch.equal(cos[1, :hd // 2], torch.cos(inv)), name
        exps = (torch.arange(0, hd, 2, dtype=torch.float32)[: (hd // 2)].float() / hd).numpy()
        torch_pow = (torch.tensor(theta, dtype=torch.float32) ** torch.from_numpy(exps)).numpy()
        exact_pow = np.array([pow_f32_correct(np.float32(theta), e) for e in exps],
                             dtype=np.float32)
        # the emulation reproduces PyTorch bit for bit from PyTorch's own powers
        assert np.array_equal(emulate_inv_freq(hd, theta, scaling, torch_pow), inv.numpy()), name
        exact = emulate_inv_freq(hd, theta, scaling, exact_pow)
        pow_off = np.nonzero(torch_pow != exact_pow)[0].tolist()
        inv_off = np.nonzero(exact != inv.numpy())[0].tolist()
        ulps = np.abs(exact.view(np.int32).astype(np.int64)
                      - inv.numpy().view(np.int32).astype(np.int64))
        assert ulps.max(initial=0) <= 1, (name, ulps.max())
        pow_ulps = np.abs(exact_pow.view(np.int32).astype(np.int64)
                          - torch_pow.view(np.int32).astype(np.int64))
        tensors += [(name + '.inv_freq', inv), (name + '.inv_freq_exact_pow',
                                                torch.from_numpy(exact))]
        s = scaling or dict(factor=0.0, low=1.0, high=4.0, ocl=8192)
        manifest.append(' '.join(str(v) for v in (
            name, hd, repr(float(theta)), repr(float(s['factor'])), repr(float(s['low'])),
            repr(float(s['high'])), s['ocl'])))
        rows.append((name, hd, pow_off, int(pow_ulps.max(initial=0)), inv_off))
    write_safetensors(os.path.join(DATA, 'gqa_rope.safetensors'), tensors)
    with open(os.path.join(DATA, 'gqa_rope_cases.txt'), 'w') as f:
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


def print_module_rows(rows):
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


def print_gqa_rows(gqa_rows, rope_rows):
    print()
    print('%-40s %-10s %-10s %9s %9s %9s %7s' % (
        'GQA case', 'input', 'output', 'out_err', 'w_err', 'dec_err', 'bytes'))
    for name, xs, os_, err, werr, derr, size in gqa_rows:
        print('%-40s %-10s %-10s %9.2e %9.2e %9.2e %7d' % (
            name, 'x'.join(map(str, xs)), 'x'.join(map(str, os_)), err, werr, derr, size))
    print('(out_err / w_err: float32 PyTorch vs float64 with the same cos/sin tables, as '
          'max|a-ref| / max|ref|, which must be <= rtol/4; dec_err: the book\'s KV-cache '
          'decoding (every schedule of gqa_schedules) vs the full forward, same measure)')
    print()
    print('%-38s %4s  %s' % ('RoPE configuration', 'hd', 'pow / inv_freq indices off'))
    for name, hd, pow_off, pow_ulps, inv_off in rope_rows:
        print('%-38s %4d  pow %s (max %d ulp) / inv_freq %s' % (
            name, hd, pow_off or '-', pow_ulps, inv_off or '-'))
    print('(pow: indices where PyTorch\'s float32 theta ** (2i/hd) is not the correctly '
          'rounded power; inv_freq: where that changes inv_freq, by 1 ulp at most)')


def main():
    # --gqa-only: write only the grouped-query attention files (gqa_*), leaving the others.
    gqa_only = sys.argv[1:] == ['--gqa-only']
    assert gqa_only or not sys.argv[1:], 'usage: make_golden.py [--gqa-only]'
    os.makedirs(DATA, exist_ok=True)
    print('torch', torch.__version__, '| MKL:', torch.backends.mkl.is_available(),
          '| threads:', torch.get_num_threads(), '| ATEN_CPU_CAPABILITY=avx2')
    rows = []
    if not gqa_only:
        for line in check_parity_notes():
            print('parity check OK:', line)
        rows = run_cases()
        write_rand()
        write_linear_init()
        write_dropout()
        print_module_rows(rows)
    gqa_rows = run_gqa_cases()
    rope_rows = write_gqa_rope()
    print_gqa_rows(gqa_rows, rope_rows)
    written = {c['name'] + '.safetensors' for c in CASES}
    written |= {c['name'] + '.safetensors' for c in GQA_CASES}
    written |= {'rand.safetensors', 'linear_init.safetensors', 'dropout.safetensors',
                'gqa_rope.safetensors'}
    stale = sorted(f for f in os.listdir(DATA) if f.endswith('.safetensors') and f not in written)
    if stale:
        print('WARNING: stale files not written by this script:', ' '.join(stale))
    total = sum(os.path.getsize(os.path.join(DATA, f)) for f in written)
    gqa_total = sum(os.path.getsize(os.path.join(DATA, f)) for f in written
                    if f.startswith('gqa_'))
    print('%d module cases, %d GQA cases, %d RoPE configurations; %d bytes of .safetensors '
          'in %s (GQA: %d)' % (len(CASES), len(gqa_rows), len(rope_rows), total, DATA,
                               gqa_total))


if __name__ == '__main__':
    main()
