// Tests of simd/kv_int8.h's attention: every compiled Highway target's
// KvInt8Attention kernel (and, on AVX3 with VNNI, the VNNI one) against the
// scalar reference: head_dim
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
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "hwy/aligned_allocator.h"
#include "simd/flash_attention.h"
#include "simd/matmul_int8.h"
#include "simd/matmul_int8_internal.h"
#include "tests/simd/kv_int8_test_util.h"

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
// VNNI ones (simd/kv_int8_vnni_*.cc), which the AVX3 target's dispatch uses
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

// Extremes of the VNNI values' rounding, on every target: 300 keys of
// uniform weight and values of 127 (each 16-tile int32 sum near 2^31);
// spread weights over values all 1 (a truncating rather than rounding
// conversion biases them beyond 1e-4); value scales times weights between
// 2^-126 and 2^-100 (65535 / largest would overflow without the boost); a
// non-finite value just before a window's first token (weight 0, it must not
// reach the output).
void TestKvInt8Extremes() {
  {
    Problem p(32, 300, 2, 1, 0);
    p.Fill(11);
    std::fill(p.k.begin(), p.k.end(), 0.0f);
    std::fill(p.v.begin(), p.v.end(), 1.0f);
    p.Quantize();
    Check(p, "uniform weights, values 127", true);
  }
  {
    Problem p(64, 257, 4, 1, 0);
    p.Fill(12);
    for (float& x : p.q) x *= 2.0f;
    std::fill(p.v.begin(), p.v.end(), 1.0f);
    p.Quantize();
    Check(p, "spread weights, values 1", true);
  }
  for (float magnitude : {1e-36f, 1e-35f, 1e-34f}) {
    Problem p(48, 33, 2, 5, 1);
    p.Fill(13, magnitude);
    Check(p, "tiny value scales", true);
  }
  {
    Problem p(40, 32, 2, 1, 4);
    p.a.window = 15;  // the token at 31 sees 17..31
    p.Fill(14);
    p.v[16 * 40 + 3] = kv_int8_test::kInf;
    p.Quantize();
    Check(p, "inf before the window", true);
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
// operations), for 1..4 queries, head_dims around the quads and blocks and
// past 16 blocks, and tiles holding NaN lanes.
void TestKvInt8VnniScoresBits() {
#if HWY_TARGET == HWY_AVX3
  if (!simd::detail::CpuHasInt8Vnni()) return;
  uint32_t seed = 0;
  std::vector<size_t> head_dims(std::begin(kv_int8_test::kHeadDims),
                                std::end(kv_int8_test::kHeadDims));
  head_dims.push_back(520);   // 17 blocks: two groups of corrections
  head_dims.push_back(1027);  // 33 blocks, the last one 3 values
  for (size_t hd : head_dims) {
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
HWY_EXPORT_AND_TEST_P(KvInt8Test, TestKvInt8Extremes);
HWY_EXPORT_AND_TEST_P(KvInt8Test, TestKvInt8MatchesFloatAttention);
HWY_EXPORT_AND_TEST_P(KvInt8Test, TestKvInt8VnniScoresBits);

// The public, dispatching entry point on each target.
TEST_P(KvInt8Test, DispatchedKvInt8Attention) {
  kv_int8_test::Problem p(64, 100, 4, 3, 4);
  p.offset = 1;
  p.Fill(8000);
  kv_int8_test::ExpectMatches(p, &simd::KvInt8Attention, "simd::KvInt8Attention", false, 1e-4);
}

// The AVX-512 VNNI kernels (simd/kv_int8_vnni_*.cc) through the dispatched
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

}  // namespace attn
#endif  // HWY_ONCE
