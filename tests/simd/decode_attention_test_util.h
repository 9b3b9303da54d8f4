// Shared by simd::DecodeAttention's tests (tests/simd/decode_attention_test.cc):
// decoding problems over padded, misaligned views with guards, and a kernel's
// output checked against simd::FlashAttentionReference.
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
#include "simd/flash_attention.h"

namespace attn {
namespace decode_test {

using simd::FlashAttentionArgs;
using Kernel = void (*)(const FlashAttentionArgs&);

constexpr float kGuard = -4321.0f;  // everything outside the views
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr size_t kHeadDims[] = {1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 128, 130};
constexpr size_t kGroups[] = {1, 2, 3, 4, 5, 8};
constexpr size_t kNumKeys[] = {1, 3, 4, 5, 15, 16, 17, 100, 1023};
constexpr size_t kMasks = 8;

// positions x group query rows (row i: position q_begin + i / group, head
// i % group) over num_keys keys. Mask 0..7: non-causal; causal decoding
// (q_begin = num_keys - positions, 0 with fewer keys) without a window, with
// windows 1, 2, 5, num_keys + 3; non-causal from that q_begin with window 5;
// causal from q_begin = num_keys with window 2 (the first position sees the
// last key only, the others none: NaN rows).
// Views: row strides head_dim + a multiple of pad (ldq_group, ldq, ldo_group,
// ldo, ldk, ldv all different when pad > 0; in place, out's equal q's), each
// view starting a multiple of misalign floats into its buffer; q, k and v
// end with their views' last float, so ASan sees reads past them. Fill()
// puts NaN in the K and V rows outside every row's visible keys.
struct Problem {
  Problem(size_t hd, size_t nk, size_t positions, size_t group, size_t mask) {
    const size_t windows[kMasks] = {0, 0, 1, 2, 5, nk + 3, 5, 2};
    a.head_dim = hd;
    a.num_keys = nk;
    a.num_queries = positions * group;
    a.group_size = group;
    a.causal = mask != 0 && mask != 6;
    a.q_begin = mask == 7 ? nk : mask == 0 ? 0 : nk >= positions ? nk - positions : 0;
    a.window = windows[mask];
    a.scale = 1.0f / std::sqrt(static_cast<float>(hd));
  }
  FlashAttentionArgs a;  // shapes, mask, scale; Args() adds pointers and strides
  size_t pad = 0, misalign = 0;
  bool in_place = false;
  std::vector<float> q, k, v;

  size_t G() const { return a.group_size; }
  size_t LdqGroup() const { return a.head_dim + pad; }
  size_t Ldq() const { return G() * LdqGroup() + 2 * pad; }
  size_t LdoGroup() const { return in_place ? LdqGroup() : a.head_dim + 3 * pad; }
  size_t Ldo() const { return in_place ? Ldq() : G() * LdoGroup() + pad; }
  size_t Ldk() const { return a.head_dim + 4 * pad; }
  size_t Ldv() const { return a.head_dim + 5 * pad; }
  size_t QIndex(size_t i) const { return misalign + i / G() * Ldq() + i % G() * LdqGroup(); }
  size_t OIndex(size_t i) const {
    return (in_place ? 1 : 2) * misalign + i / G() * Ldo() + i % G() * LdoGroup();
  }
  size_t KIndex(size_t j) const { return 3 * misalign + j * Ldk(); }
  size_t VIndex(size_t j) const { return misalign + j * Ldv(); }
  float& Q(size_t i, size_t c) { return q[QIndex(i) + c]; }
  float& K(size_t j, size_t c) { return k[KIndex(j) + c]; }
  float& V(size_t j, size_t c) { return v[VIndex(j) + c]; }

  // Queries and keys uniform in [lo, hi) (rounded down with `integers`),
  // values in [-1, 1).
  void Fill(uint32_t seed, float lo = -1.0f, float hi = 1.0f, bool integers = false) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(lo, hi), unit(-1.0f, 1.0f);
    auto draw = [&] { return integers ? std::floor(dist(rng)) : dist(rng); };
    const size_t hd = a.head_dim, nk = a.num_keys;
    q.assign(QIndex(a.num_queries - 1) + hd, kGuard);
    for (size_t i = 0; i < a.num_queries; ++i) {
      for (size_t c = 0; c < hd; ++c) Q(i, c) = draw();
    }
    const size_t seen_begin = simd::FirstVisibleKey(a, 0);
    const size_t seen_end = simd::VisibleKeys(a, a.num_queries - 1);
    k.assign(nk == 0 ? 0 : KIndex(nk - 1) + hd, kGuard);
    v.assign(nk == 0 ? 0 : VIndex(nk - 1) + hd, kGuard);
    for (size_t j = 0; j < nk; ++j) {
      const bool seen = seen_begin <= j && j < seen_end;
      for (size_t c = 0; c < hd; ++c) {
        K(j, c) = seen ? draw() : kNaN;
        V(j, c) = seen ? unit(rng) : kNaN;
      }
    }
  }

  FlashAttentionArgs Args(const float* qbuf, float* obuf) const {
    FlashAttentionArgs r = a;
    r.q = qbuf + QIndex(0);
    r.ldq = Ldq();
    r.ldq_group = LdqGroup();
    r.out = obuf + OIndex(0);
    r.ldo = Ldo();
    r.ldo_group = LdoGroup();
    r.k = k.empty() ? nullptr : k.data() + KIndex(0);
    r.ldk = Ldk();
    r.v = v.empty() ? nullptr : v.data() + VIndex(0);
    r.ldv = Ldv();
    return r;
  }
  std::string Describe() const {
    std::string s;
    for (size_t x : {a.num_queries, G(), a.head_dim, a.num_keys, a.q_begin, size_t{a.causal},
                     a.window, pad, misalign, size_t{in_place}}) {
      s += " " + std::to_string(x);
    }
    return s + " (rows group head_dim keys q_begin causal window pad misalign in_place) scale " +
           std::to_string(a.scale);
  }
};

// The whole output buffer (guards included) after `kernel` on p.
inline std::vector<float> Run(const Problem& p, Kernel kernel) {
  std::vector<float> out(p.OIndex(p.a.num_queries - 1) + p.a.head_dim + 9, kGuard);
  if (p.in_place) std::copy(p.q.begin(), p.q.end(), out.begin());
  kernel(p.Args(p.in_place ? out.data() : p.q.data(), out.data()));
  return out;
}

// Kernel vs reference: NaN exactly where the reference is NaN, equal
// infinities, elsewhere within 1e-5 of the largest finite |v| of the row's
// visible keys (the kernel works in float, without FMA on SSE4/SSSE3; the
// reference in double); with `finite`, every output finite; guards
// untouched. Returns the kernel's output buffer.
inline std::vector<float> ExpectMatches(const Problem& p, Kernel kernel, const std::string& what,
                                        bool finite = false) {
  const std::vector<float> got = Run(p, kernel);
  const std::vector<float> want = Run(p, &simd::FlashAttentionReference);
  std::vector<bool> in_view(got.size(), false);
  size_t failures = 0;
  for (size_t i = 0; i < p.a.num_queries; ++i) {
    double vmax = 0.0;
    for (size_t j = simd::FirstVisibleKey(p.a, i); j < simd::VisibleKeys(p.a, i); ++j) {
      for (size_t c = 0; c < p.a.head_dim; ++c) {
        const float x = p.v[p.VIndex(j) + c];
        if (std::isfinite(x)) vmax = std::max(vmax, std::fabs(double(x)));
      }
    }
    for (size_t c = 0; c < p.a.head_dim; ++c) {
      const size_t at = p.OIndex(i) + c;
      in_view[at] = true;
      const float g = got[at], w = want[at];
      const bool ok = std::isnan(w) ? std::isnan(g) && !finite
                                    : (g == w || std::fabs(double(g) - w) <= 1e-5 * vmax) &&
                                          !(finite && std::isinf(w));
      if (!ok && ++failures <= 5) {
        ADD_FAILURE() << what << p.Describe() << ": out(" << i << ", " << c << ") = " << g
                      << ", want " << w << ", max|v| " << vmax;
      }
    }
  }
  for (size_t at = 0; at < got.size(); ++at) {
    if (!in_view[at] && got[at] != kGuard && ++failures <= 5) {
      ADD_FAILURE() << what << p.Describe() << ": guard at " << at << " = " << got[at];
    }
  }
  return got;
}

}  // namespace decode_test
}  // namespace attn
