// Flash attention: every compiled target's kernel against the scalar
// reference, on shapes around the key block and vector widths, strided and
// misaligned views with guard values, hostile values (large logits, NaN,
// +-inf), KV-cache decoding and determinism; then the dispatching wrapper.

#include "simd/flash_attention.h"

#include <stddef.h>
#include <stdint.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "hwy/aligned_allocator.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "tests/simd/flash_attention_test.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "simd/flash_attention-inl.h"

// Helpers and test functions are compiled once per target (they are cheap),
// the registration once, below.

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {
namespace flash_test {

namespace hn = hwy::HWY_NAMESPACE;
using simd::FlashAttentionArgs;

constexpr float kGuard = -12345.0f;  // fills everything outside the views
const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

// One problem: sizes, view layout (row strides = head_dim + pad, views
// starting `misalign` floats into their buffers) and inputs. Input buffers
// end with the last row's head_dim-th float, so that the address sanitizer
// sees any read past it; the pads in between hold guard values.
struct Problem {
  size_t num_queries = 1, num_keys = 1, head_dim = 16;
  size_t q_begin = 0;
  bool causal = true;
  float scale = 0.0f;  // 0: 1/sqrt(head_dim)
  size_t pad = 0;      // extra floats per row in every view
  size_t misalign = 0;
  std::vector<float> q, k, v;  // Floats(num_queries or num_keys) each

  size_t ld() const { return head_dim + pad; }
  size_t Floats(size_t rows) const {
    return misalign + (rows == 0 ? 0 : (rows - 1) * ld() + head_dim);
  }
  float& Q(size_t i, size_t c) { return q[misalign + i * ld() + c]; }
  float& K(size_t j, size_t c) { return k[misalign + j * ld() + c]; }
  float& V(size_t j, size_t c) { return v[misalign + j * ld() + c]; }

  // Inputs uniform in [lo, hi) (integers when `integers`), guard elsewhere.
  void Fill(uint32_t seed, float lo = -1.0f, float hi = 1.0f, bool integers = false) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(lo, hi);
    auto fill = [&](std::vector<float>& x, size_t rows) {
      x.assign(Floats(rows), kGuard);
      for (size_t r = 0; r < rows; ++r) {
        for (size_t c = 0; c < head_dim; ++c) {
          const float value = dist(rng);
          x[misalign + r * ld() + c] = integers ? std::floor(value) : value;
        }
      }
    };
    fill(q, num_queries);
    fill(k, num_keys);
    fill(v, num_keys);
  }

  FlashAttentionArgs Args(float* out) const {
    FlashAttentionArgs a;
    a.q = q.data() + misalign;
    a.k = k.data() + misalign;
    a.v = v.data() + misalign;
    a.out = out + misalign;
    a.ldq = a.ldk = a.ldv = a.ldo = ld();
    a.num_queries = num_queries;
    a.num_keys = num_keys;
    a.head_dim = head_dim;
    a.q_begin = q_begin;
    a.causal = causal;
    a.scale = scale != 0.0f ? scale : 1.0f / std::sqrt(static_cast<float>(head_dim));
    return a;
  }
};

// Output buffer with guards: before the view (misalign), between rows (pad)
// and after it.
constexpr size_t kTrailingGuards = 17;
std::vector<float> OutputBuffer(const Problem& p) {
  return std::vector<float>(p.Floats(p.num_queries) + kTrailingGuards, kGuard);
}

// This target's kernel on p into a fresh guarded buffer.
std::vector<float> RunKernel(const Problem& p) {
  std::vector<float> out = OutputBuffer(p);
  FlashAttentionKernel(p.Args(out.data()));
  return out;
}

std::vector<float> RunReference(const Problem& p) {
  std::vector<float> out = OutputBuffer(p);
  simd::FlashAttentionReference(p.Args(out.data()));
  return out;
}

// Kernel vs reference: elements of the output view agree within
// rtol * max|v| (the output is a convex combination of V rows) or are both
// NaN; every guard is untouched. Returns the reference output.
std::vector<float> ExpectMatchesReference(const Problem& p, const char* what, double rtol = 1e-5) {
  const std::vector<float> got = RunKernel(p);
  const std::vector<float> want = RunReference(p);
  double max_v = 0.0;
  for (size_t j = 0; j < p.num_keys; ++j) {
    for (size_t c = 0; c < p.head_dim; ++c) {
      const float x = p.v[p.misalign + j * p.ld() + c];
      if (std::isfinite(x)) max_v = std::max(max_v, static_cast<double>(std::fabs(x)));
    }
  }
  const double tol = rtol * std::max(max_v, 1e-30);
  size_t failures = 0;
  for (size_t idx = 0; idx < got.size() && failures < 5; ++idx) {
    const bool in_view = idx >= p.misalign && (idx - p.misalign) / p.ld() < p.num_queries &&
                         (idx - p.misalign) % p.ld() < p.head_dim;
    if (!in_view) {
      if (got[idx] != kGuard) ++failures;
      EXPECT_EQ(got[idx], kGuard) << what << ": guard overwritten at " << idx;
      continue;
    }
    const size_t i = (idx - p.misalign) / p.ld(), c = (idx - p.misalign) % p.ld();
    const bool ok = (std::isnan(got[idx]) && std::isnan(want[idx])) ||
                    std::fabs(static_cast<double>(got[idx]) - want[idx]) <= tol;
    if (!ok) ++failures;
    EXPECT_TRUE(ok) << what << " target " << hwy::TargetName(HWY_TARGET)
                    << ": T_q=" << p.num_queries << " T_k=" << p.num_keys << " hd=" << p.head_dim
                    << " q_begin=" << p.q_begin << " causal=" << p.causal << " pad=" << p.pad
                    << " misalign=" << p.misalign << " at (" << i << ", " << c << "): got "
                    << got[idx] << " want " << want[idx] << " tol " << tol;
  }
  return want;
}

Problem SelfAttention(size_t t, size_t head_dim, uint32_t seed) {
  Problem p;
  p.num_queries = p.num_keys = t;
  p.head_dim = head_dim;
  p.Fill(seed);
  return p;
}

// Sequence lengths below, at and above the vector widths (4, 8, 16), the
// register tile (4 rows, up to 64 keys), the key block (64) and the query
// block (32).
const size_t kLengths[] = {1, 2, 3, 4, 5, 15, 16, 17, 31, 32, 33, 63, 64, 65, 130, 257};

void TestCausalShapes() {
  for (size_t t : kLengths) {
    for (size_t hd : {7, 64}) {
      ExpectMatchesReference(SelfAttention(t, hd, static_cast<uint32_t>(t * 1000 + hd)), "causal");
    }
  }
  for (size_t hd : {1, 2, 3, 7, 8, 15, 16, 17, 31, 33, 64, 65, 80, 128, 256}) {
    for (size_t t : {1, 17, 65, 130}) {
      ExpectMatchesReference(SelfAttention(t, hd, static_cast<uint32_t>(t * 1000 + hd)),
                             "causal hd");
    }
  }
}

void TestNonCausal() {
  for (size_t nq : {1, 3, 16, 33}) {
    for (size_t nk : {1, 2, 15, 64, 65, 200}) {
      for (size_t hd : {1, 7, 64}) {
        Problem p;
        p.num_queries = nq;
        p.num_keys = nk;
        p.head_dim = hd;
        p.causal = false;
        p.q_begin = 5;  // ignored without the mask
        p.Fill(static_cast<uint32_t>(nq * 7919 + nk * 31 + hd));
        ExpectMatchesReference(p, "non-causal");
      }
    }
  }
}

// KV-cache decoding: the new queries sit at the end of the keys.
void TestDecode() {
  const size_t cases[][3] = {// num_queries, num_keys, head_dim
                             {1, 1023, 64}, {1, 1, 64},   {1, 64, 64},  {1, 65, 7},
                             {5, 300, 64},  {7, 70, 128}, {40, 97, 16}, {64, 64, 64}};
  for (const auto& c : cases) {
    Problem p;
    p.num_queries = c[0];
    p.num_keys = c[1];
    p.head_dim = c[2];
    p.q_begin = p.num_keys - p.num_queries;
    p.Fill(static_cast<uint32_t>(c[0] * 131 + c[1]));
    ExpectMatchesReference(p, "decode");
  }
  // Queries past the last key (p >= num_keys) see every key.
  Problem p;
  p.num_queries = 9;
  p.num_keys = 70;
  p.head_dim = 32;
  p.q_begin = 66;
  p.Fill(99);
  ExpectMatchesReference(p, "queries past the keys");
  // A block of rows in the middle of a causal self-attention.
  p.q_begin = 20;
  ExpectMatchesReference(p, "row block");
}

// Row strides larger than head_dim (up to the QKV-like strides whose rows the
// kernel prefetches), and views misaligned by one float.
void TestStridesAndMisalignment() {
  for (size_t pad : {0, 1, 3, 16, 128, 300}) {  // 300: rows far enough apart to be prefetched
    for (size_t misalign : {0, 1, 3}) {
      for (size_t hd : {1, 7, 64}) {
        Problem p;
        p.num_queries = p.num_keys = 67;
        p.head_dim = hd;
        p.pad = pad;
        p.misalign = misalign;
        p.Fill(static_cast<uint32_t>(pad * 100 + misalign * 10 + hd));
        ExpectMatchesReference(p, "strided");
        p.causal = false;
        ExpectMatchesReference(p, "strided non-causal");
        // A single tile of queries reads V rows in place (no packing).
        p.num_queries = 3;
        p.num_keys = 130;
        p.q_begin = 127;
        p.causal = true;
        p.Fill(static_cast<uint32_t>(pad * 100 + misalign * 10 + hd + 1));
        ExpectMatchesReference(p, "strided decode");
      }
    }
  }
}

// Inputs in 90..100: without max subtraction exp overflows. Integer inputs
// and a power-of-two scale make every score exact in float, so the kernel and
// the double reference see the same logits (hundreds, spread by units).
void TestLargeLogits() {
  for (size_t t : {17, 130}) {
    for (size_t hd : {7, 64}) {
      Problem p;
      p.num_queries = p.num_keys = t;
      p.head_dim = hd;
      p.scale = 1.0f / 1024.0f;
      p.Fill(static_cast<uint32_t>(t + hd), 90.0f, 101.0f, /*integers=*/true);
      const std::vector<float> want = ExpectMatchesReference(p, "large logits");
      for (size_t i = 0; i < t; ++i) {
        for (size_t c = 0; c < hd; ++c) {
          ASSERT_TRUE(std::isfinite(want[i * p.ld() + c]));
        }
      }
    }
  }
  // Scores around +-1e4: exp underflows to 0 for all but the largest
  // (one-hot rows; near-ties would need a looser tolerance, as float scores
  // are off by ~1e-3 there).
  Problem p = SelfAttention(100, 64, 7);
  p.scale = 1e4f;
  ExpectMatchesReference(p, "peaky");
}

// Scores that rise from key block to key block by a step below, near and
// above the reference's lag (kMaxLag = 5.5): the row's reference m stays
// while the scores exceed it by less than the lag (weights above 1, up to
// e^5.5) and is raised past it (alpha < 1 rescales the accumulator). Every
// case must match the double reference, and column 1 (v = 1) must give 1.
void TestRisingScores() {
  for (float step : {0.5f, 2.0f, 5.4f, 5.6f, 12.0f, 30.0f, 100.0f}) {
    for (bool causal : {true, false}) {
      Problem p = SelfAttention(6 * 64 + 5, 3, 21);
      p.causal = causal;
      p.scale = 1.0f;
      for (size_t i = 0; i < p.num_queries; ++i) {
        p.Q(i, 0) = 1.0f;
        p.Q(i, 1) = p.Q(i, 2) = 0.0f;
      }
      for (size_t j = 0; j < p.num_keys; ++j) {
        p.K(j, 0) = step * static_cast<float>(j / 64) + 0.125f * static_cast<float>(j % 7);
        p.V(j, 1) = 1.0f;
      }
      const std::vector<float> got = RunKernel(p);
      for (size_t i = 0; i < p.num_queries; ++i) {
        ASSERT_NEAR(got[i * p.ld() + 1], 1.0f, 1e-6f) << "step " << step << " row " << i;
      }
      ExpectMatchesReference(p, "rising scores", 2e-6);
    }
  }
}

// Scores up to +-3e38, still finite: exponents (s - max) log2(e) stay exact
// near the max however large the max is (a folded s log2(e) - max log2(e)
// would carry an error of |max| 2^-24 into every exponent). Scores differ by
// about 1e37 or tie exactly, so each row's weights sit on its largest scores.
void TestHugeScores() {
  for (bool causal : {true, false}) {
    for (float sign : {1.0f, -1.0f}) {
      Problem p = SelfAttention(150, 4, causal ? 11u : 12u);
      p.causal = causal;
      p.scale = 1.0f;
      for (size_t i = 0; i < p.num_queries; ++i) p.Q(i, 0) = 1e19f;
      for (size_t j = 0; j < p.num_keys; ++j) {
        p.K(j, 0) = sign * 3e19f * (0.05f + 0.95f * static_cast<float>(j % 37) / 36.0f);
      }
      const std::vector<float> got = ExpectMatchesReference(p, "huge scores");
      for (float x : got) ASSERT_FALSE(std::isnan(x));
    }
  }
}

// The max moves by 1 between two key blocks of equal scores, at scores from
// 1e3 to 1e7 (exact in float): with v = 1 on the first block and 0 on the
// second, every output is 64 / (64 + n2 e) for the n2 keys of the second
// block it sees (1 / (1 + e) when it sees them all). An error in the rescaling of
// the first block (alpha) or in exponents near a large max shows here on
// every target, with or without FMA.
void TestShiftedLargeMax() {
  for (float base : {1000.5f, 1e5f + 0.5f, 1e6f, 1e7f}) {
    for (bool causal : {true, false}) {
      Problem p;
      p.num_keys = 128;
      p.num_queries = 3;
      p.q_begin = causal ? 125 : 0;  // causal: the last 3 rows
      p.causal = causal;
      p.head_dim = 1;
      p.scale = 1.0f;
      p.Fill(1);
      for (size_t i = 0; i < p.num_queries; ++i) p.Q(i, 0) = 1.0f;
      for (size_t j = 0; j < p.num_keys; ++j) {
        p.K(j, 0) = j < 64 ? base : base + 1.0f;
        p.V(j, 0) = j < 64 ? 1.0f : 0.0f;
      }
      const std::vector<float> got = RunKernel(p);
      for (size_t i = 0; i < p.num_queries; ++i) {
        // Keys of the second block row i sees, each of weight e against 1.
        const double n2 = causal ? static_cast<double>(p.q_begin + i + 1 - 64) : 64.0;
        const double want = 64.0 / (64.0 + n2 * std::exp(1.0));
        EXPECT_NEAR(got[i], want, 1e-6) << "base " << base << " causal " << causal << " row " << i;
      }
    }
  }
}

// Q, K, V and the output with four different row strides (one of them
// contiguous, some far enough apart to be prefetched), against the
// reference on the same views.
void TestMixedStrides() {
  struct Strides {
    size_t q, k, v, o;  // extra floats per row beyond head_dim
  };
  const Strides cases[] = {{284, 3, 0, 240}, {0, 270, 1, 5}, {7, 0, 300, 0}};
  for (const Strides& st : cases) {
    for (size_t hd : {5, 64}) {
      for (bool causal : {true, false}) {
        const size_t t = 100;
        std::mt19937 rng(static_cast<uint32_t>(st.q + st.k + hd));
        std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
        auto make = [&](size_t ld) {
          std::vector<float> x((t - 1) * ld + hd, kGuard);
          for (size_t r = 0; r < t; ++r) {
            for (size_t c = 0; c < hd; ++c) x[r * ld + c] = dist(rng);
          }
          return x;
        };
        const size_t ldq = hd + st.q, ldk = hd + st.k, ldv = hd + st.v, ldo = hd + st.o;
        const std::vector<float> q = make(ldq), k = make(ldk), v = make(ldv);
        std::vector<float> got((t - 1) * ldo + hd, kGuard), want = got;
        FlashAttentionArgs a;
        a.q = q.data();
        a.k = k.data();
        a.v = v.data();
        a.ldq = ldq;
        a.ldk = ldk;
        a.ldv = ldv;
        a.ldo = ldo;
        a.num_queries = a.num_keys = t;
        a.head_dim = hd;
        a.causal = causal;
        a.scale = 0.3f;
        a.out = got.data();
        FlashAttentionKernel(a);
        a.out = want.data();
        simd::FlashAttentionReference(a);
        for (size_t idx = 0; idx < got.size(); ++idx) {
          if (idx % ldo >= hd) {
            ASSERT_EQ(got[idx], kGuard) << "guard overwritten at " << idx;
          } else {
            ASSERT_NEAR(got[idx], want[idx], 1e-5)
                << "strides " << ldq << "/" << ldk << "/" << ldv << "/" << ldo << " hd " << hd
                << " causal " << causal << " at " << idx;
          }
        }
      }
    }
  }
}

// Output row i is NaN, or is finite, according to expect_nan(i).
template <class Pred>
void ExpectNaNRows(const Problem& p, const char* what, const Pred& expect_nan) {
  const std::vector<float> got = RunKernel(p);
  for (size_t i = 0; i < p.num_queries; ++i) {
    for (size_t c = 0; c < p.head_dim; ++c) {
      const float x = got[p.misalign + i * p.ld() + c];
      if (expect_nan(i)) {
        ASSERT_TRUE(std::isnan(x)) << what << " row " << i << " col " << c << " = " << x;
      } else {
        ASSERT_TRUE(std::isfinite(x)) << what << " row " << i << " col " << c << " = " << x;
      }
    }
  }
  ExpectMatchesReference(p, what);
}

// PyTorch's special values: NaN spreads to the rows that see it (keys a row
// does not see are never read), a -inf score has weight 0, all -inf or +inf
// give NaN.
void TestSpecialValues() {
  const size_t t = 70, hd = 16;
  for (size_t j : {0, 5, 63, 64, 69}) {
    Problem p = SelfAttention(t, hd, static_cast<uint32_t>(j));
    p.Q(j, 3) = kNaN;
    ExpectNaNRows(p, "NaN in q", [&](size_t i) { return i == j; });

    p = SelfAttention(t, hd, static_cast<uint32_t>(j));
    p.K(j, hd - 1) = kNaN;
    ExpectNaNRows(p, "NaN in k", [&](size_t i) { return i >= j; });
    p.causal = false;
    ExpectNaNRows(p, "NaN in k, non-causal", [&](size_t) { return true; });

    p = SelfAttention(t, hd, static_cast<uint32_t>(j));
    for (size_t c = 0; c < hd; ++c) p.V(j, c) = kNaN;  // each column spreads on its own
    ExpectNaNRows(p, "NaN in v", [&](size_t i) { return i >= j; });
    p.pad = 1;  // strided V rows: packed rather than read in place
    p.Fill(static_cast<uint32_t>(j));
    for (size_t c = 0; c < hd; ++c) p.V(j, c) = kNaN;
    ExpectNaNRows(p, "NaN in packed v", [&](size_t i) { return i >= j; });

    // q > 0 in column 2 and k[j, 2] = -inf: score(i, j) = -inf for every i.
    p = SelfAttention(t, hd, static_cast<uint32_t>(j));
    for (size_t i = 0; i < t; ++i) p.Q(i, 2) = 0.5f + 0.001f * static_cast<float>(i);
    p.K(j, 2) = -kInf;
    // Row 0 sees only key 0: all its scores are -inf when j == 0.
    ExpectNaNRows(p, "-inf score", [&](size_t i) { return j == 0 && i == 0; });

    p.K(j, 2) = kInf;  // a +inf score
    ExpectNaNRows(p, "+inf score", [&](size_t i) { return i >= j; });
  }
  // Keys 0..33 have score -inf for every query: rows 0..33 see nothing else.
  Problem p = SelfAttention(40, hd, 1);
  for (size_t i = 0; i < 40; ++i) p.Q(i, 0) = 0.25f;
  for (size_t j = 0; j <= 33; ++j) p.K(j, 0) = -kInf;
  ExpectNaNRows(p, "all scores -inf", [](size_t i) { return i <= 33; });

  // The first key block all -inf but for one NaN score (the running max stays
  // -inf), finite scores after it: rows 0..9 see only -inf, rows 10..63 the
  // NaN too, and rows 64.. also finite scores, but the NaN makes them NaN.
  p = SelfAttention(100, hd, 2);
  for (size_t i = 0; i < 100; ++i) p.Q(i, 0) = 0.25f;
  for (size_t j = 0; j < 64; ++j) p.K(j, 0) = -kInf;
  p.K(10, 0) = kNaN;
  ExpectNaNRows(p, "NaN among -inf scores", [](size_t) { return true; });

  // No keys at all: the softmax of nothing is NaN.
  Problem empty;
  empty.num_queries = 3;
  empty.num_keys = 0;
  empty.head_dim = 8;
  empty.causal = false;
  empty.Fill(1);
  ExpectNaNRows(empty, "no keys", [](size_t) { return true; });
}

// Same bits on repeated calls, and whatever block of rows a call covers (the
// parallel layer splits queries into calls).
void TestDeterminism() {
  for (bool causal : {true, false}) {
    Problem p = SelfAttention(150, 64, 42);
    p.causal = causal;
    const std::vector<float> first = RunKernel(p);
    for (int rep = 0; rep < 3; ++rep) {
      ASSERT_EQ(RunKernel(p), first) << "repeated call differs";
    }
    for (size_t split : {1, 5, 37, 64, 149}) {
      std::vector<float> out = OutputBuffer(p);
      FlashAttentionArgs a = p.Args(out.data());
      a.num_queries = split;
      FlashAttentionKernel(a);
      a.q += split * a.ldq;
      a.out += split * a.ldo;
      a.q_begin = split;
      a.num_queries = p.num_queries - split;
      FlashAttentionKernel(a);
      for (size_t idx = 0; idx < out.size(); ++idx) {
        // Bitwise, but NaN-free here, so == is exact equality.
        ASSERT_EQ(out[idx], first[idx]) << "split at " << split << " differs at " << idx;
      }
    }
  }
}

// The softmax's exp: 2^x within 2e-7 relative error for -126 <= x < 127.5
// (the function's whole valid range; the kernel uses x <= 7.94), exactly 1
// at 0, exactly 0 below -126 and at -inf, NaN for NaN; results never
// denormal.
void TestExp2Below128() {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  std::vector<float> xs = {0.0f,     -0.0f,   -kInf,    -1e30f, -150.0f,      -126.5f, -126.0f,
                           -125.99f, -125.5f, -125.49f, -0.5f,  0.5f - 3e-8f, -1e-7f,  -1e-30f,
                           1e-7f,    0.25f,   -100.5f,  -63.5f, 0.5f,         1.0f,    7.9f,
                           8.0f,     63.5f,   126.5f,   127.0f, 127.49f};
  // Around and beyond the range of the rounding by 1.5 * 2^23 (|x| < 2^22):
  // 0; and NaN: NaN (the kernel relies on it to mark a row with a NaN score).
  for (float x : {-4194303.5f, -4194304.0f, -8388608.0f, -12582912.0f, -16777216.0f, -3.4e38f,
                  -std::numeric_limits<float>::max(), kNaN}) {
    xs.push_back(x);
  }
  for (int i = 0; i <= 1260000; ++i) xs.push_back(-1e-4f * static_cast<float>(i));
  // [-1, 1/2) on a grid of 1.5 * 2^-22 (about the spacing of floats near
  // 1): the polynomial's whole reduced range f in [-1/2, 1/2], for n = 0, -1.
  for (int i = 0; i < (1 << 22); ++i) xs.push_back(-1.0f + 1.5f * std::ldexp(float(i), -22));
  // Positive exponents: the softmax's weights reach 2^7.9 (kMaxLag).
  for (int i = 0; i <= 100000; ++i) xs.push_back(8.5e-5f * static_cast<float>(i));
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> dist(-127.0f, 0.0f);
  for (int i = 0; i < 100000; ++i) xs.push_back(dist(rng));
  xs.resize(hwy::RoundUpTo(xs.size(), N), 0.0f);
  auto in = hwy::AllocateAligned<float>(N);
  auto out = hwy::AllocateAligned<float>(N);
  double max_rel = 0.0;
  for (size_t i = 0; i < xs.size(); i += N) {
    std::copy(xs.begin() + static_cast<ptrdiff_t>(i), xs.begin() + static_cast<ptrdiff_t>(i + N),
              in.get());
    hn::Store(Exp2Below128(d, hn::Load(d, in.get())), d, out.get());
    for (size_t lane = 0; lane < N; ++lane) {
      const float x = in[lane], got = out[lane];
      if (std::isnan(x)) {
        ASSERT_TRUE(std::isnan(got)) << "got " << got;
        continue;
      }
      if (x < -126.0f) {
        ASSERT_EQ(got, 0.0f) << "x=" << x;
        continue;
      }
      ASSERT_EQ(std::fpclassify(got), FP_NORMAL) << "x=" << x << " got " << got;
      const double want = std::exp2(static_cast<double>(x));
      const double rel = std::fabs(got - want) / want;
      ASSERT_LE(rel, 2e-7) << "x=" << x << " got " << got << " want " << want;
      if (x == 0.0f) {
        ASSERT_EQ(got, 1.0f);
      }
      max_rel = std::max(max_rel, rel);
    }
  }
  EXPECT_LE(max_rel, 2e-7);
}

// The kernel's per-thread scratch (K transposed, V packed, accumulators,
// scores, partial sums) is reused from call to call without being cleared:
// a result must not depend on what earlier calls left there. Each problem
// (causal, non-causal, decoding 1 and 3 queries) gives the same bits when
// run first, after a larger call whose inputs are all inf (K) and NaN (V,
// one Q row), which leaves inf and NaN throughout the scratch, and after a
// smaller call.
void TestScratchReuse() {
  for (size_t head_dim : {7, 64}) {
    std::vector<Problem> problems;
    problems.push_back(SelfAttention(150, head_dim, 21));
    problems.push_back(SelfAttention(150, head_dim, 24));
    problems.back().causal = false;
    for (size_t queries : {1, 3}) {  // decoding: the last queries of 200
      Problem p;
      p.num_queries = queries;
      p.num_keys = 200;
      p.q_begin = 200 - queries;
      p.head_dim = head_dim;
      p.Fill(25);
      problems.push_back(p);
    }
    Problem poisoned = SelfAttention(300, head_dim, 22);
    for (size_t j = 0; j < poisoned.num_keys; ++j) {
      for (size_t c = 0; c < head_dim; ++c) {
        poisoned.K(j, c) = kInf;
        poisoned.V(j, c) = kNaN;
      }
    }
    poisoned.Q(poisoned.num_queries - 1, 0) = kNaN;
    for (const Problem& p : problems) {
      const std::vector<float> first = RunKernel(p);
      RunKernel(poisoned);
      const std::vector<float> after_larger = RunKernel(p);
      RunKernel(SelfAttention(9, head_dim, 23));
      const std::vector<float> after_smaller = RunKernel(p);
      for (size_t i = 0; i < first.size(); ++i) {
        ASSERT_EQ(after_larger[i], first[i])
            << "head_dim " << head_dim << ", queries " << p.num_queries << ", element " << i;
        ASSERT_EQ(after_smaller[i], first[i])
            << "head_dim " << head_dim << ", queries " << p.num_queries << ", element " << i;
      }
    }
  }
}

// out == q (the module writes each head's output over its queries): the
// same bits as with a separate output, for self-attention, non-causal and
// decoding problems, padded and misaligned.
void TestInPlaceOverQueries() {
  for (size_t head_dim : {7, 64}) {
    std::vector<Problem> problems;
    problems.push_back(SelfAttention(130, head_dim, 31));
    problems.back().pad = 3;
    problems.back().misalign = 1;
    problems.back().Fill(31);
    problems.push_back(SelfAttention(70, head_dim, 32));
    problems.back().causal = false;
    problems.push_back(SelfAttention(100, head_dim, 33));
    problems.back().pad = 400;  // QKV-like strides: rows prefetched, outputs not (in place)
    problems.back().Fill(33);
    Problem decode;
    decode.num_queries = 3;
    decode.num_keys = 100;
    decode.q_begin = 97;
    decode.head_dim = head_dim;
    decode.Fill(33);
    problems.push_back(decode);
    for (const Problem& p : problems) {
      const std::vector<float> want = RunKernel(p);
      std::vector<float> q_and_out = p.q;
      FlashAttentionArgs a = p.Args(q_and_out.data());
      a.q = a.out;
      FlashAttentionKernel(a);
      for (size_t i = 0; i < p.num_queries; ++i) {
        for (size_t c = 0; c < head_dim; ++c) {
          const size_t at = p.misalign + i * p.ld() + c;
          ASSERT_EQ(q_and_out[at], want[at]) << "queries " << p.num_queries << ", row " << i;
        }
      }
    }
  }
}

// Zero-sized problems write nothing.
void TestEmpty() {
  Problem p = SelfAttention(5, 8, 3);
  std::vector<float> out = OutputBuffer(p);
  FlashAttentionArgs a = p.Args(out.data());
  a.num_queries = 0;
  FlashAttentionKernel(a);
  a.num_queries = 5;
  a.head_dim = 0;
  FlashAttentionKernel(a);
  for (float x : out) ASSERT_EQ(x, kGuard);
}

}  // namespace flash_test

void TestFlashCausalShapes() { flash_test::TestCausalShapes(); }
void TestFlashNonCausal() { flash_test::TestNonCausal(); }
void TestFlashDecode() { flash_test::TestDecode(); }
void TestFlashStridesAndMisalignment() { flash_test::TestStridesAndMisalignment(); }
void TestFlashLargeLogits() { flash_test::TestLargeLogits(); }
void TestFlashHugeScores() { flash_test::TestHugeScores(); }
void TestFlashRisingScores() { flash_test::TestRisingScores(); }
void TestFlashShiftedLargeMax() { flash_test::TestShiftedLargeMax(); }
void TestFlashMixedStrides() { flash_test::TestMixedStrides(); }
void TestFlashSpecialValues() { flash_test::TestSpecialValues(); }
void TestFlashDeterminism() { flash_test::TestDeterminism(); }
void TestFlashEmpty() { flash_test::TestEmpty(); }
void TestFlashScratchReuse() { flash_test::TestScratchReuse(); }
void TestFlashInPlaceOverQueries() { flash_test::TestInPlaceOverQueries(); }
void TestFlashExp2Below128() { flash_test::TestExp2Below128(); }

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "attn/error.h"
#include "hwy/tests/hwy_gtest.h"

namespace attn {

HWY_BEFORE_TEST(FlashAttentionTest);
HWY_EXPORT_AND_TEST_P(FlashAttentionTest, TestFlashCausalShapes);
HWY_EXPORT_AND_TEST_P(FlashAttentionTest, TestFlashNonCausal);
HWY_EXPORT_AND_TEST_P(FlashAttentionTest, TestFlashDecode);
HWY_EXPORT_AND_TEST_P(FlashAttentionTest, TestFlashStridesAndMisalignment);
HWY_EXPORT_AND_TEST_P(FlashAttentionTest, TestFlashLargeLogits);
HWY_EXPORT_AND_TEST_P(FlashAttentionTest, TestFlashHugeScores);
HWY_EXPORT_AND_TEST_P(FlashAttentionTest, TestFlashRisingScores);
HWY_EXPORT_AND_TEST_P(FlashAttentionTest, TestFlashShiftedLargeMax);
HWY_EXPORT_AND_TEST_P(FlashAttentionTest, TestFlashMixedStrides);
HWY_EXPORT_AND_TEST_P(FlashAttentionTest, TestFlashSpecialValues);
HWY_EXPORT_AND_TEST_P(FlashAttentionTest, TestFlashDeterminism);
HWY_EXPORT_AND_TEST_P(FlashAttentionTest, TestFlashEmpty);
HWY_EXPORT_AND_TEST_P(FlashAttentionTest, TestFlashScratchReuse);
HWY_EXPORT_AND_TEST_P(FlashAttentionTest, TestFlashInPlaceOverQueries);
HWY_EXPORT_AND_TEST_P(FlashAttentionTest, TestFlashExp2Below128);

// The public, dispatching entry point (best target of this CPU).
TEST(FlashAttentionDispatchTest, MatchesReference) {
  for (size_t t : {1, 65, 300}) {
    std::mt19937 rng(static_cast<uint32_t>(t));
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    const size_t hd = 64, ld = 3 * hd;  // a fused QKV layout: rows of 3 heads
    std::vector<float> qkv(t * ld);
    for (float& x : qkv) x = dist(rng);
    std::vector<float> got(t * hd, -1.0f), want(t * hd, -2.0f);
    simd::FlashAttentionArgs a;
    a.q = qkv.data();
    a.k = qkv.data() + hd;
    a.v = qkv.data() + 2 * hd;
    a.ldq = a.ldk = a.ldv = ld;
    a.ldo = hd;
    a.num_queries = a.num_keys = t;
    a.head_dim = hd;
    a.causal = true;
    a.scale = 0.125f;
    a.out = got.data();
    simd::FlashAttention(a);
    a.out = want.data();
    simd::FlashAttentionReference(a);
    for (size_t idx = 0; idx < got.size(); ++idx) {
      ASSERT_NEAR(got[idx], want[idx], 1e-5) << "t=" << t << " at " << idx;
    }
  }
}

TEST(FlashAttentionDispatchTest, RejectsBadArguments) {
  std::vector<float> buf(64, 0.0f);
  simd::FlashAttentionArgs a;
  a.q = a.k = a.v = buf.data();
  a.out = buf.data() + 32;
  a.num_queries = a.num_keys = 2;
  a.head_dim = 8;
  a.ldq = a.ldk = a.ldv = a.ldo = 8;
  a.ldk = 7;
  EXPECT_THROW(simd::FlashAttention(a), ShapeError);
  EXPECT_THROW(simd::FlashAttentionReference(a), ShapeError);
  a.ldk = 8;
  a.ldo = 4;
  EXPECT_THROW(simd::FlashAttention(a), ShapeError);
  a.ldo = 8;
  a.v = nullptr;
  EXPECT_THROW(simd::FlashAttention(a), ShapeError);
  a.num_keys = 0;  // v is not read without keys
  a.causal = false;
  EXPECT_NO_THROW(simd::FlashAttention(a));
  a.q = nullptr;
  EXPECT_THROW(simd::FlashAttention(a), ShapeError);
}

}  // namespace attn
#endif  // HWY_ONCE
