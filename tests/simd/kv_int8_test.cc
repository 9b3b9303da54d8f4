// Tests of simd/kv_int8.h: the int8 format (QuantizeKvQuery,
// RoundQueryToKvInt8, Quantize/DequantizeKvKey/Value), and every compiled Highway
// target's KvInt8Attention kernel against the scalar reference: head_dim
// 1..130 around the 32-value block and the vector widths, groups 1..8, 1..5
// tokens, key counts around the 16-key tile and the vector widths, causal
// decoding with windows and non-causal, misaligned and padded views with
// guards, in place, logits ~1e4, NaN and ±inf tokens that poison exactly the
// rows that see them, zero, huge and subnormal rows, NaN in the unused lanes
// of the last key tile; and the quantized attention against float attention
// on the unquantized rows.

#include "simd/kv_int8.h"

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
#include "simd/flash_attention.h"
#include "simd/matmul_int8.h"
#include "simd/matmul_int8_internal.h"

#ifndef ATTN_TESTS_SIMD_KV_INT8_TEST_HELPERS_
#define ATTN_TESTS_SIMD_KV_INT8_TEST_HELPERS_
namespace attn {
namespace kv_int8_test {

constexpr float kGuard = -777.0f;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr size_t kHeadDims[] = {1,  2,  3,  4,  7,  8,  15, 16,  17,  31,
                                32, 33, 48, 63, 64, 65, 96, 127, 128, 130};
constexpr size_t kGroups[] = {1, 2, 3, 4, 8};
constexpr size_t kTokens[] = {1, 2, 5};
constexpr size_t kNumKeys[] = {1, 3, 15, 16, 17, 33, 100, 257};

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
#endif  // ATTN_TESTS_SIMD_KV_INT8_TEST_HELPERS_

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "tests/simd/kv_int8_test.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "hwy/tests/hwy_gtest.h"
#include "simd/kv_int8-inl.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {
namespace {

using kv_int8_test::Problem;

// This target's kernel against the reference; Views() cycles through q and
// out misaligned (by one float from 64-byte alignment) or not, rows padded
// (ldq > group * head_dim) or not, in place (out == q, ldo == ldq) or not.
void Views(Problem* p, uint32_t i) {
  p->offset = i % 2;
  p->pad = (i / 2) % 2 * 3;
  p->in_place = (i / 4) % 2 == 1;
  p->Fill(i);
}
// This target's kernel with its own (Highway) scores and values; with the
// VNNI ones (simd/kv_int8_vnni.cc), which the AVX3 target's dispatch uses
// on a VNNI CPU.
void PortableKernel(const simd::KvInt8AttentionArgs& a) { KvInt8AttentionKernel(a); }
#if HWY_TARGET == HWY_AVX3
void VnniKernel(const simd::KvInt8AttentionArgs& a) {
  KvInt8AttentionKernel(a, &simd::detail::KvInt8ScoresVnni, &simd::detail::KvInt8ValuesVnni);
}
#endif
// The portable kernel, and on AVX3 with VNNI the VNNI one too (within 1e-4:
// its weights are rounded to 16 bits), against the reference. Returns the
// portable kernel's output.
std::vector<float> Check(const Problem& p, const char* what, bool finite = false) {
  const std::string name = std::string(hwy::TargetName(HWY_TARGET)) + " " + what;
#if HWY_TARGET == HWY_AVX3
  if (simd::detail::CpuHasInt8Vnni()) {
    kv_int8_test::ExpectMatches(p, &VnniKernel, name + " VNNI", finite, 1e-4);
  }
#endif
  return kv_int8_test::ExpectMatches(p, &PortableKernel, name, finite);
}

// Every head_dim x key count, and every group x tokens x mask at two
// head_dims and key counts, cycling through the views.
void TestKvInt8Shapes() {
  uint32_t i = 0;
  for (size_t hd : kv_int8_test::kHeadDims) {
    for (size_t nk : kv_int8_test::kNumKeys) {
      Problem p(hd, nk, kv_int8_test::kGroups[i % 5], kv_int8_test::kTokens[i % 3], i % 7);
      Views(&p, ++i);
      Check(p, "shapes");
    }
  }
  for (size_t hd : {size_t{33}, size_t{64}}) {
    for (size_t nk : {size_t{17}, size_t{100}}) {
      for (size_t group : kv_int8_test::kGroups) {
        for (size_t tokens : kv_int8_test::kTokens) {
          for (size_t mode = 0; mode < 7; ++mode) {
            Problem p(hd, nk, group, tokens, mode);
            Views(&p, ++i);
            Check(p, "groups and masks");
          }
        }
      }
    }
  }
}

// Scores ~1e4 (exp overflows without the max subtraction): query (t, g) is
// (g + 1) 1e4 / (scale |k*|^2) times k*, the visible key of largest norm,
// so its score leads every other by (g + 1) 1e4 (1 - cos(k*, k_j) |k_j| /
// |k*|), thousands at head_dim >= 16: one-hot however the scores round.
void TestKvInt8LargeLogits() {
  for (size_t hd : {size_t{16}, size_t{65}, size_t{128}}) {
    for (size_t mode : {size_t{0}, size_t{1}, size_t{4}}) {
      Problem p(hd, 100, 2, 5, mode);
      p.Fill(static_cast<uint32_t>(3000 + hd + mode));
      const std::vector<float> k = p.Dequantized(true);
      for (size_t t = 0; t < p.a.tokens; ++t) {
        size_t begin, end, best = 0;
        simd::KvInt8VisibleKeys(p.a, t, &begin, &end);
        double norm2 = 0.0;
        for (size_t j = begin; j < end; ++j) {
          double n2 = 0.0;
          for (size_t c = 0; c < hd; ++c) n2 += double(k[j * hd + c]) * k[j * hd + c];
          if (n2 > norm2) norm2 = n2, best = j;
        }
        for (size_t i = 0; i < p.a.group * hd; ++i) {
          p.q[t * p.a.group * hd + i] =
              float((i / hd + 1) * 1e4 / (p.a.scale * norm2) * k[best * hd + i % hd]);
        }
      }
      Check(p, "large logits", true);
    }
  }
}

// One token's key (NaN or -inf) or value (+inf) gives its block a NaN
// scale. A poisoned key makes every row that sees the token NaN, a poisoned
// value the block's columns of those rows; the other rows stay finite and
// equal the reference: early causal rows before the token, late window rows
// past it.
void TestKvInt8NonFinite() {
  // Queries at positions 15..19 of 20 keys. Causal: token 17 is seen by rows
  // 2..4; window 5: token 13 by rows 0..2; non-causal: token 4 by all.
  const size_t cases[][2] = {{1, 17}, {4, 13}, {0, 4}};  // mask mode, token
  for (const auto& cs : cases) {
    for (size_t kind = 0; kind < 3; ++kind) {
      Problem p(40, 20, 3, 5, cs[0]);  // blocks [0, 32) and [32, 40)
      p.Fill(static_cast<uint32_t>(4000 + cs[1] * 3 + kind));
      const size_t col = kind == 2 ? 35 : 9, bad = cs[1];
      const float poison[] = {kv_int8_test::kNaN, -kv_int8_test::kInf, kv_int8_test::kInf};
      (kind == 2 ? p.v : p.k)[bad * 40 + col] = poison[kind];
      p.Quantize();
      const std::vector<float> got = Check(p, "non-finite");
      for (size_t t = 0; t < p.a.tokens; ++t) {
        size_t begin, end;
        simd::KvInt8VisibleKeys(p.a, t, &begin, &end);
        for (size_t i = 0; i < p.a.group * 40; ++i) {
          const bool nan = begin <= bad && bad < end && (kind < 2 || i % 40 / 32 == col / 32);
          const float x = got[p.OutIndex(t, 0, i)];
          ASSERT_TRUE(nan ? std::isnan(x) : std::isfinite(x))
              << hwy::TargetName(HWY_TARGET) << " kind " << kind << p.Describe() << " out(" << t
              << "," << i / 40 << "," << i % 40 << ") = " << x;
        }
      }
    }
  }
}

// Zero key, value and query rows; a key and a value row with one entry of
// ±1e30 (a score ~1e29: one-hot where q_7 > 0, weight 0 elsewhere);
// subnormal queries, keys and values. Every output finite.
void TestKvInt8ZeroHugeSubnormal() {
  for (int kind = 0; kind < 4; ++kind) {
    for (size_t mode : {size_t{0}, size_t{1}, size_t{4}}) {
      Problem p(48, 33, 2, 5, mode);
      p.Fill(5000 + static_cast<uint32_t>(kind), kind == 3 ? 1e-39f : 1.0f);
      if (kind == 0) {
        std::fill(&p.k[30 * 48], &p.k[31 * 48], 0.0f);
        std::fill(&p.v[31 * 48], &p.v[32 * 48], 0.0f);
        std::fill(&p.q[48], &p.q[96], 0.0f);  // query (0, 1): uniform weights
      }
      if (kind == 1) p.k[30 * 48 + 7] = 1e30f;
      if (kind == 2) p.v[31 * 48 + 40] = -1e30f;
      for (float& x : p.q) x *= kind == 3 ? 1e-39f : 1.0f;
      p.Quantize();
      Check(p, "zero/huge/subnormal", true);
    }
  }
}

// Non-causal over no key at all: NaN rows, as the reference (a softmax with
// no valid column).
void TestKvInt8NoKeys() {
  Problem p(16, 0, 2, 2, 0);
  p.Fill(6000);
  Check(p, "no keys");
}

// The format's error: the kernel on the int8 rows against float attention
// (simd::FlashAttentionReference, double) on the unquantized N(0, 1) rows.
void TestKvInt8MatchesFloatAttention() {
  for (size_t hd : {size_t{33}, size_t{64}, size_t{128}}) {
    for (size_t mode : {size_t{0}, size_t{1}, size_t{4}}) {
      Problem p(hd, 257, 4, 5, mode);
      p.Fill(static_cast<uint32_t>(7000 + hd + mode));
      const std::vector<float> got = kv_int8_test::Run(p, &PortableKernel);
      std::vector<float> want(p.a.tokens * p.a.group * hd);
      simd::FlashAttentionArgs f;
      f.q = p.q.data();
      f.k = p.k.data();
      f.v = p.v.data();
      f.out = want.data();
      f.ldq = f.ldo = p.a.group * hd;
      f.ldq_group = f.ldo_group = f.ldk = f.ldv = f.head_dim = hd;
      f.num_queries = p.a.tokens * p.a.group;
      f.num_keys = p.a.num_keys;
      f.q_begin = p.a.q_begin;
      f.causal = p.a.causal;
      f.window = p.a.window;
      f.group_size = p.a.group;
      f.scale = p.a.scale;
      simd::FlashAttentionReference(f);
      double err = 0.0, norm = 0.0;
      for (size_t i = 0; i < want.size(); ++i) {
        const double d =
            got[p.OutIndex(i / (p.a.group * hd), 0, i % (p.a.group * hd))] - double(want[i]);
        err += d * d;
        norm += double(want[i]) * want[i];
      }
      // Measured 7e-3 .. 1.03e-2 (AVX3): keys, values and the query each
      // rounded to int8 per 32 values.
      EXPECT_LT(std::sqrt(err / norm), 1.5e-2) << hwy::TargetName(HWY_TARGET) << p.Describe();
    }
  }
}

// On AVX3 with VNNI: simd::detail::KvInt8ScoresVnni gives this target's
// TileRangeScores bit for bit (the same integer sums, scaled by the same
// operations), for 1..4 queries, head_dims around the quads and blocks, and
// tiles holding NaN lanes.
void TestKvInt8VnniScoresBits() {
#if HWY_TARGET == HWY_AVX3
  if (!simd::detail::CpuHasInt8Vnni()) return;
  uint32_t seed = 0;
  for (size_t hd : kv_int8_test::kHeadDims) {
    for (size_t rows = 1; rows <= 4; ++rows) {
      Problem p(hd, 40, rows, 1, 0);
      p.Fill(++seed);
      const size_t qbytes = simd::KvInt8QueryBytes(hd), quads = simd::KvInt8Quads(hd);
      std::vector<uint32_t> queries(rows * qbytes / 4);
      std::vector<float> qf(4 * quads * rows), vnni(rows * 48, -1.0f), mine(rows * 48, -1.0f);
      uint8_t* q8 = reinterpret_cast<uint8_t*>(queries.data());
      for (size_t r = 0; r < rows; ++r) {
        simd::QuantizeKvQuery(&p.q[r * hd], hd, q8 + r * qbytes);
        for (size_t c = 0; c < 4 * quads; ++c) {
          qf[r * 4 * quads + c] =
              static_cast<int8_t>(q8[r * qbytes + 4 * simd::KvInt8Blocks(hd) + c]);
        }
      }
      const uint8_t* keys = reinterpret_cast<const uint8_t*>(p.ktiles.data());
      simd::detail::KvInt8ScoresVnni(q8, rows, hd, keys, 0, 3, vnni.data(), 48);
      TileRangeScores(q8, qf.data(), rows, hd, keys, 0, 3, mine.data(), 48);
      for (size_t r = 0; r < rows; ++r) {
        for (size_t j = 0; j < 40; ++j) {  // lanes past 40 hold NaN keys
          EXPECT_EQ(std::memcmp(&vnni[r * 48 + j], &mine[r * 48 + j], 4), 0)
              << hd << " " << rows << " " << r << " " << j << ": " << vnni[r * 48 + j] << " vs "
              << mine[r * 48 + j];
        }
      }
    }
  }
#endif
}

}  // namespace
// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace attn {

HWY_BEFORE_TEST(KvInt8Test);
HWY_EXPORT_AND_TEST_P(KvInt8Test, TestKvInt8Shapes);
HWY_EXPORT_AND_TEST_P(KvInt8Test, TestKvInt8LargeLogits);
HWY_EXPORT_AND_TEST_P(KvInt8Test, TestKvInt8NonFinite);
HWY_EXPORT_AND_TEST_P(KvInt8Test, TestKvInt8ZeroHugeSubnormal);
HWY_EXPORT_AND_TEST_P(KvInt8Test, TestKvInt8NoKeys);
HWY_EXPORT_AND_TEST_P(KvInt8Test, TestKvInt8MatchesFloatAttention);
HWY_EXPORT_AND_TEST_P(KvInt8Test, TestKvInt8VnniScoresBits);

// The public, dispatching entry point on each target.
TEST_P(KvInt8Test, DispatchedKvInt8Attention) {
  kv_int8_test::Problem p(64, 100, 4, 3, 4);
  p.offset = 1;
  p.Fill(8000);
  kv_int8_test::ExpectMatches(p, &simd::KvInt8Attention, "simd::KvInt8Attention", false, 1e-4);
}

// The AVX-512 VNNI kernels (simd/kv_int8_vnni.cc) through the dispatched
// entry point, against the reference within 1e-4 of the largest value (the
// weights rounded to 16 bits: 1.2e-5 measured) on every head_dim x key
// count and every group x
// tokens x mask, in place or not, with NaN in the unused lanes of the first
// and last tiles; and the VNNI scores bit for bit the AVX3 target's
// (TestKvInt8VnniScoresBits).
TEST(KvInt8VnniTest, MatchesReference) {
  if (!simd::detail::CpuHasInt8Vnni()) GTEST_SKIP() << "no AVX-512 VNNI on this CPU";
  ASSERT_TRUE(simd::Int8VnniActive());
  uint32_t i = 0;
  std::vector<kv_int8_test::Problem> problems;
  for (size_t hd : kv_int8_test::kHeadDims) {
    for (size_t nk : kv_int8_test::kNumKeys) {
      problems.emplace_back(hd, nk, 1 + i % 5, 1, 1 + i % 6);
      ++i;
    }
  }
  for (size_t g : kv_int8_test::kGroups) {
    for (size_t t : kv_int8_test::kTokens) {
      for (size_t mode = 0; mode < 7; ++mode) problems.emplace_back(64, 33, g, t, mode);
    }
  }
  for (kv_int8_test::Problem& p : problems) {
    p.offset = i % 2;
    p.in_place = i % 3 == 0;
    p.Fill(i++);
    kv_int8_test::ExpectMatches(p, &simd::KvInt8Attention, "VNNI", false, 1e-4);
  }
}

namespace kv_int8_test {

// What a quantized query (QuantizeKvQuery: the format's numbers in order)
// dequantizes to.
std::vector<float> DequantizedQuery(const uint8_t* query, size_t hd) {
  std::vector<float> y(hd);
  const size_t blocks = simd::KvInt8Blocks(hd);
  const int8_t* q = reinterpret_cast<const int8_t*>(query + 4 * blocks);
  for (size_t i = 0; i < hd; ++i) {
    float scale;
    std::memcpy(&scale, query + i / 32 * 4, 4);
    y[i] = scale * static_cast<float>(q[i]);
  }
  return y;
}

}  // namespace kv_int8_test

// The format's numbers, through QuantizeKvQuery (72 bytes at head_dim 64).
// Per block: scale = max|x| / 127, max|x| maps to ±127, |dequant - x| <=
// scale / 2 plus rounding; a zero block has scale 0 and values 0, a block
// with NaN or -inf a NaN scale (NaN values, RoundQueryToKvInt8 too). Bytes
// past head_dim 0 up to the quads' end, nothing written past. Blocks of
// magnitudes 1, 0, 1e-3, 1e30, 1e-40, 3e4.
TEST(KvInt8FormatTest, QuantizeDequantize) {
  EXPECT_EQ(simd::KvInt8QueryBytes(64), 72u);
  EXPECT_EQ(simd::KvInt8KeyTileBytes(64), 16u * 72u);
  EXPECT_EQ(simd::KvInt8ValueTileBytes(64), 16u * 72u);
  const float magnitudes[] = {1.0f, 0.0f, 1e-3f, 1e30f, 1e-40f, 3e4f};
  std::mt19937 rng(9);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (size_t hd : kv_int8_test::kHeadDims) {
    const size_t blocks = simd::KvInt8Blocks(hd), bytes = simd::KvInt8QueryBytes(hd);
    EXPECT_EQ(bytes, 4 * blocks + 4 * ((hd + 3) / 4));
    for (size_t trial = 0; trial < 8; ++trial) {
      std::vector<float> x(hd);
      for (size_t i = 0; i < hd; ++i) x[i] = magnitudes[(i / 32 + trial) % 6] * dist(rng);
      const size_t bad = trial < 6 ? hd : trial * 37 % hd;  // trials 6, 7: one NaN / -inf
      if (bad < hd) x[bad] = trial == 6 ? kv_int8_test::kNaN : -kv_int8_test::kInf;
      std::vector<uint32_t> words(bytes / 4 + 2, 0xABABABABu);
      uint8_t* row = reinterpret_cast<uint8_t*>(words.data());
      simd::QuantizeKvQuery(x.data(), hd, row);
      const std::vector<float> y = kv_int8_test::DequantizedQuery(row, hd);
      std::vector<float> rounded = x;
      simd::RoundQueryToKvInt8(rounded.data(), hd);
      for (size_t i = 4 * blocks + hd; i < bytes + 8; ++i) {
        EXPECT_EQ(row[i], i < bytes ? 0 : 0xAB) << hd << " byte " << i;
      }
      const int8_t* q = reinterpret_cast<const int8_t*>(row + 4 * blocks);
      for (size_t i = 0; i < hd; ++i) {
        const size_t begin = i / 32 * 32, end = std::min(hd, begin + 32);
        float scale, amax = 0.0f;
        std::memcpy(&scale, row + i / 32 * 4, 4);
        for (size_t j = begin; j < end; ++j) amax = std::max(amax, std::fabs(x[j]));
        const double slack = 2.0 * std::numeric_limits<float>::epsilon() * amax +
                             128.0 * std::numeric_limits<float>::denorm_min();
        const bool ok =
            bad >= begin && bad < end
                ? std::isnan(scale) && std::isnan(y[i]) && std::isnan(rounded[i])
                : scale == amax / 127.0f && q[i] >= -127 &&
                      (amax > 0.0f ? std::fabs(x[i]) < amax || q[i] == (x[i] > 0 ? 127 : -127)
                                   : q[i] == 0) &&
                      std::fabs(double(y[i]) - x[i]) <= 0.5 * scale + slack && rounded[i] == y[i];
        EXPECT_TRUE(ok) << "hd=" << hd << " trial=" << trial << " i=" << i << ": " << x[i] << " -> "
                        << int(q[i]) << " x " << scale << " -> " << y[i] << ", " << rounded[i];
      }
    }
  }
}

// QuantizeKvKey and QuantizeKvValue write the format's numbers (as
// QuantizeKvQuery's) into one lane of a tile, at the layout's bytes (keys:
// quads of 4 dimensions x 16 lanes, zeros past head_dim; values: groups of 4
// lanes x head_dim), scales block-major, and nothing else.
TEST(KvInt8FormatTest, KeyAndValueTiles) {
  std::mt19937 rng(10);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (size_t hd : kv_int8_test::kHeadDims) {
    for (bool keys : {true, false}) {
      const size_t blocks = simd::KvInt8Blocks(hd), quads = (hd + 3) / 4;
      const size_t bytes = keys ? simd::KvInt8KeyTileBytes(hd) : simd::KvInt8ValueTileBytes(hd);
      EXPECT_EQ(bytes, 16 * (4 * blocks + (keys ? 4 * quads : hd)));
      std::vector<uint32_t> tile(bytes / 4 + 1, 0xABABABABu);
      std::vector<uint32_t> query(simd::KvInt8QueryBytes(hd) / 4);
      uint8_t* t8 = reinterpret_cast<uint8_t*>(tile.data());
      uint8_t* q8 = reinterpret_cast<uint8_t*>(query.data());
      std::vector<bool> written(bytes + 4, false);
      for (size_t lane : {0, 6, 7, 15}) {  // lane 7: 1e30 values, lane 15: a NaN
        std::vector<float> x(hd), from_tile(hd);
        for (float& e : x) e = dist(rng) * (lane == 7 ? 1e30f : 1.0f);
        if (lane == 15) x[hd / 2] = kv_int8_test::kNaN;
        simd::QuantizeKvQuery(x.data(), hd, q8);
        if (keys) simd::QuantizeKvKey(x.data(), hd, t8, lane);
        if (!keys) simd::QuantizeKvValue(x.data(), hd, t8, lane);
        if (keys) simd::DequantizeKvKey(t8, lane, hd, from_tile.data());
        if (!keys) simd::DequantizeKvValue(t8, lane, hd, from_tile.data());
        const std::vector<float> want = kv_int8_test::DequantizedQuery(q8, hd);
        EXPECT_EQ(std::memcmp(want.data(), from_tile.data(), 4 * hd), 0) << hd << " " << lane;
        for (size_t b = 0; b < blocks; ++b) {
          const size_t at = 4 * (b * 16 + lane);
          EXPECT_EQ(std::memcmp(t8 + at, q8 + 4 * b, 4), 0) << hd << " " << lane << " " << b;
          for (size_t i = 0; i < 4; ++i) written[at + i] = true;
        }
        const size_t values = 64 * blocks;
        for (size_t i = 0; i < (keys ? 4 * quads : hd); ++i) {
          const size_t at = values + (keys ? 64 * (i / 4) + 4 * lane + i % 4
                                           : lane / 4 * 4 * hd + 4 * i + lane % 4);
          const int8_t want_byte = i < hd ? static_cast<int8_t>(q8[4 * blocks + i]) : 0;
          EXPECT_EQ(static_cast<int8_t>(t8[at]), want_byte) << hd << " " << lane << " " << i;
          written[at] = true;
        }
      }
      for (size_t i = 0; i <= bytes; ++i) {
        if (!written[i]) {
          EXPECT_EQ(t8[i], 0xAB) << hd << (keys ? " key" : " value") << " byte " << i;
        }
      }
    }
  }
}

}  // namespace attn
#endif  // HWY_ONCE
