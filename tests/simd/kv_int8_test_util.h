// Shared by the int8 KV cache's tests (tests/simd/kv_int8_test.cc,
// kv_int8_format_test.cc): problems quantized into key and value tiles, and
// a kernel's output checked against simd::KvInt8AttentionReference.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "hwy/aligned_allocator.h"
#include "simd/kv_int8.h"

namespace attn {
namespace kv_int8_test {

constexpr float kGuard = -777.0f;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr size_t kHeadDims[] = {1,  2,  3,  4,  7,  8,  15, 16,  17,  31,
                                32, 33, 48, 63, 64, 65, 96, 127, 128, 130};
constexpr size_t kGroups[] = {1, 2, 3, 4, 8};
constexpr size_t kTokens[] = {1, 2, 5};
constexpr size_t kNumKeys[] = {1, 3, 15, 16, 17, 33, 100, 257, 600};

using Kernel = void (*)(const simd::KvInt8AttentionArgs&);

// tokens x group queries q (packed) over num_keys keys and values k, v
// (num_keys x head_dim floats), quantized (uint32_t storage: 4-byte aligned)
// into key tiles, whose lanes past num_keys hold NaN keys, and value rows.
// Run() puts query (t, g) at offset + t * ldq() + g * head_dim of a 64-byte
// aligned buffer of guards, output (t, g) at OutIndex(t, g, 0): in place in
// that buffer, else in another at the other alignment, with stride ldo().
// Mask mode 0..6: non-causal; causal decoding (q_begin = num_keys - tokens)
// without a window, with windows 1, 2, 5, num_keys + 3; causal from q_begin 0.
struct Problem {
  Problem(size_t hd, size_t nk, size_t g, size_t t, size_t mode) {
    const size_t windows[] = {0, 0, 1, 2, 5, nk + 3, 0};
    a.causal = mode != 0;
    a.tokens = a.causal ? std::min(t, nk) : t;
    a.group = g;
    a.head_dim = hd;
    a.num_keys = nk;
    a.q_begin = a.causal && mode != 6 ? nk - a.tokens : 0;
    a.window = windows[mode];
    a.scale = 1.0f / std::sqrt(static_cast<float>(hd));
  }
  simd::KvInt8AttentionArgs a;  // shapes, mask, scale; Run() adds pointers and strides
  bool in_place = false;
  size_t offset = 0, pad = 0;  // in floats
  std::vector<float> q, k, v;
  std::vector<uint32_t> ktiles, vtiles;

  size_t ldq() const { return a.group * a.head_dim + pad; }
  size_t ldo() const { return in_place ? ldq() : a.group * a.head_dim + 2 * pad; }
  size_t OutIndex(size_t t, size_t g, size_t c) const {
    return (in_place ? offset : 1 - offset) + t * ldo() + g * a.head_dim + c;
  }
  size_t KeyWords() const { return simd::KvInt8KeyTileBytes(a.head_dim) / 4; }
  size_t ValueWords() const { return simd::KvInt8ValueTileBytes(a.head_dim) / 4; }

  void Fill(uint32_t seed, float kv_mul = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    q.resize(a.tokens * a.group * a.head_dim);
    for (float& x : q) x = dist(rng);
    k.resize(a.num_keys * a.head_dim);
    v = k;
    for (float& x : k) x = kv_mul * dist(rng);
    for (float& x : v) x = kv_mul * dist(rng);
    Quantize();
  }
  void Quantize() {
    const size_t tiles = (a.num_keys + 15) / 16;
    ktiles.assign(tiles * KeyWords(), 0);
    vtiles.assign(tiles * ValueWords(), 0);
    const std::vector<float> nan(a.head_dim, kNaN);
    for (size_t j = 0; j < tiles * 16; ++j) {
      simd::QuantizeKvKey(j < a.num_keys ? &k[j * a.head_dim] : nan.data(), a.head_dim, Tile(j),
                          j % 16);
      simd::QuantizeKvValue(j < a.num_keys ? &v[j * a.head_dim] : nan.data(), a.head_dim,
                            ValueTile(j), j % 16);
    }
  }
  uint8_t* Tile(size_t j) { return reinterpret_cast<uint8_t*>(&ktiles[j / 16 * KeyWords()]); }
  uint8_t* ValueTile(size_t j) {
    return reinterpret_cast<uint8_t*>(&vtiles[j / 16 * ValueWords()]);
  }
  // The keys (or values) as the kernel sees them.
  std::vector<float> Dequantized(bool keys) {
    std::vector<float> x(a.num_keys * a.head_dim);
    for (size_t j = 0; j < a.num_keys; ++j) {
      if (keys) simd::DequantizeKvKey(Tile(j), j % 16, a.head_dim, &x[j * a.head_dim]);
      if (!keys) simd::DequantizeKvValue(ValueTile(j), j % 16, a.head_dim, &x[j * a.head_dim]);
    }
    return x;
  }
  std::string Describe() const {
    std::string s;
    for (size_t x : {a.tokens, a.group, a.head_dim, a.num_keys, a.q_begin, size_t{a.causal},
                     a.window, offset, pad, size_t{in_place}}) {
      s += " " + std::to_string(x);
    }
    return s + " (tokens group head_dim keys q_begin causal window offset pad in_place)";
  }
};

// The whole output buffer (guards included) after `kernel` on p.
inline std::vector<float> Run(const Problem& p, Kernel kernel) {
  const size_t tail = (p.a.tokens - 1) * std::max(p.ldq(), p.ldo()) + p.a.group * p.a.head_dim + 8;
  auto qbuf = hwy::AllocateAligned<float>(tail);
  auto obuf = hwy::AllocateAligned<float>(tail);
  std::fill(qbuf.get(), qbuf.get() + tail, kGuard);
  std::fill(obuf.get(), obuf.get() + tail, kGuard);
  for (size_t t = 0; t < p.a.tokens; ++t) {
    std::copy_n(&p.q[t * p.a.group * p.a.head_dim], p.a.group * p.a.head_dim,
                qbuf.get() + p.offset + t * p.ldq());
  }
  float* out = p.in_place ? qbuf.get() : obuf.get();
  simd::KvInt8AttentionArgs a = p.a;
  a.q = qbuf.get() + p.offset;
  a.ldq = p.ldq();
  a.out = out + p.OutIndex(0, 0, 0);
  a.ldo = p.ldo();
  a.keys = reinterpret_cast<const uint8_t*>(p.ktiles.data());
  a.values = reinterpret_cast<const uint8_t*>(p.vtiles.data());
  kernel(a);
  return std::vector<float>(out, out + tail);
}

// Kernel vs reference: NaN exactly where the reference is NaN; elsewhere
// within `tolerance` (1e-5) of the largest |value| the token sees (which bounds |out|;
// the kernel sums in float, without FMA on SSE4/SSSE3, the reference in
// double), plus a slack for subnormal results; with `finite`, no output
// inf or NaN; guards untouched. Returns the kernel's output buffer.
inline std::vector<float> ExpectMatches(Problem p, Kernel kernel, const std::string& what,
                                        bool finite = false, double tolerance = 1e-5) {
  const std::vector<float> result = Run(p, kernel);
  std::vector<float> got = result;
  const std::vector<float> want = Run(p, simd::KvInt8AttentionReference);
  const std::vector<float> v = p.Dequantized(false);
  const double floor = 256.0 * double(p.a.num_keys) * std::numeric_limits<float>::denorm_min();
  size_t failures = 0;
  for (size_t t = 0; t < p.a.tokens; ++t) {
    size_t begin, end;
    simd::KvInt8VisibleKeys(p.a, t, &begin, &end);
    double vmax = 0.0;
    for (size_t i = begin * p.a.head_dim; i < end * p.a.head_dim; ++i) {
      if (std::isfinite(v[i])) vmax = std::max(vmax, std::fabs(double(v[i])));
    }
    for (size_t i = 0; i < p.a.group * p.a.head_dim; ++i) {
      const size_t at = p.OutIndex(t, 0, i);
      const float g = got[at], w = want[at];
      got[at] = kGuard;  // everything else must still be a guard
      const bool ok = std::isnan(w) ? std::isnan(g) && !finite
                                    : std::fabs(double(g) - w) <= tolerance * vmax + floor;
      if (!ok && ++failures <= 5) {
        ADD_FAILURE() << what << p.Describe() << ": out(" << t << "," << i / p.a.head_dim << ","
                      << i % p.a.head_dim << ") = " << g << ", want " << w;
      }
    }
  }
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != kGuard && ++failures <= 5) {
      ADD_FAILURE() << what << p.Describe() << ": guard at " << i << " = " << got[i];
    }
  }
  return result;
}

}  // namespace kv_int8_test
}  // namespace attn
