// Flash attention with grouped queries (the query heads that share a
// key/value head) and sliding windows: every compiled target's kernel
// against the scalar reference, on group sizes 1..8, windows from 1 key to
// beyond the sequence, lengths around the tile (4), the query block (32)
// and the key block (64), padded and misaligned views with guards, decoding
// positions, NaN in keys and values outside every window, and bitwise
// independence of how the rows are split into calls.

#include <stddef.h>
#include <stdint.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "simd/flash_attention.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "tests/simd/flash_attention_gqa_test.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "simd/flash_attention-inl.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {
namespace flash_gqa_test {

using simd::FlashAttentionArgs;

constexpr float kGuard = -12345.0f;  // fills everything outside the views
const float kNaN = std::numeric_limits<float>::quiet_NaN();

// positions x group query rows: position t's G rows are head_dim + pad
// floats apart (ld_group), positions G * ld_group + pad floats apart; keys
// and values head_dim + pad apart; every view starts `misalign` floats into
// its buffer, which ends with the view's last float.
struct GroupedProblem {
  size_t positions = 1, group = 1, num_keys = 1, head_dim = 16;
  size_t q_begin = 0, window = 0, pad = 0, misalign = 0;
  bool causal = true;
  std::vector<float> q, k, v;

  size_t ld_group() const { return head_dim + pad; }
  size_t ld_pos() const { return group * ld_group() + pad; }
  size_t ld_key() const { return head_dim + pad; }
  size_t QueryFloats() const { return misalign + (positions - 1) * ld_pos() + group * ld_group(); }
  size_t KeyFloats() const { return misalign + (num_keys - 1) * ld_key() + head_dim; }
  size_t QueryIndex(size_t i, size_t c) const {
    return misalign + (i / group) * ld_pos() + (i % group) * ld_group() + c;
  }

  void Fill(uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    q.assign(QueryFloats(), kGuard);
    for (size_t i = 0; i < positions * group; ++i) {
      for (size_t c = 0; c < head_dim; ++c) q[QueryIndex(i, c)] = 2.0f * dist(rng);
    }
    auto fill_keys = [&](std::vector<float>& x) {
      x.assign(KeyFloats(), kGuard);
      for (size_t j = 0; j < num_keys; ++j) {
        for (size_t c = 0; c < head_dim; ++c) x[misalign + j * ld_key() + c] = dist(rng);
      }
    };
    fill_keys(k);
    fill_keys(v);
  }

  FlashAttentionArgs Args(float* out) const {
    FlashAttentionArgs a;
    a.q = q.data() + misalign;
    a.k = k.data() + misalign;
    a.v = v.data() + misalign;
    a.out = out + misalign;
    a.ldq = a.ldo = ld_pos();
    a.ldq_group = a.ldo_group = ld_group();
    a.ldk = a.ldv = ld_key();
    a.num_queries = positions * group;
    a.num_keys = num_keys;
    a.head_dim = head_dim;
    a.q_begin = q_begin;
    a.causal = causal;
    a.window = window;
    a.group_size = group;
    a.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    return a;
  }
};

std::vector<float> Run(const GroupedProblem& p, bool reference) {
  std::vector<float> out(p.QueryFloats() + 9, kGuard);
  if (reference) {
    simd::FlashAttentionReference(p.Args(out.data()));
  } else {
    FlashAttentionKernel(p.Args(out.data()));
  }
  return out;
}

// Kernel vs reference within 1e-5 * max|v| (both NaN also agrees); guards
// untouched.
void ExpectMatches(const GroupedProblem& p, const char* what) {
  const std::vector<float> got = Run(p, false), want = Run(p, true);
  std::vector<bool> in_view(got.size(), false);
  for (size_t i = 0; i < p.positions * p.group; ++i) {
    for (size_t c = 0; c < p.head_dim; ++c) in_view[p.QueryIndex(i, c)] = true;
  }
  size_t failures = 0;
  for (size_t idx = 0; idx < got.size() && failures < 5; ++idx) {
    const bool ok = in_view[idx] ? (std::isnan(got[idx]) && std::isnan(want[idx])) ||
                                       std::fabs(got[idx] - want[idx]) <= 1e-5f
                                 : got[idx] == kGuard;
    if (!ok) ++failures;
    EXPECT_TRUE(ok) << what << " target " << hwy::TargetName(HWY_TARGET)
                    << ": positions=" << p.positions << " G=" << p.group << " keys=" << p.num_keys
                    << " hd=" << p.head_dim << " q_begin=" << p.q_begin << " window=" << p.window
                    << " causal=" << p.causal << " pad=" << p.pad << " at " << idx << " (in view "
                    << in_view[idx] << "): got " << got[idx] << " want " << want[idx];
  }
}

const size_t kGroups[] = {1, 2, 3, 4, 5, 8};
const size_t kLengths[] = {1, 3, 4, 5, 31, 33, 64, 65, 130};
const size_t kWindows[] = {0, 1, 2, 3, 4, 5, 17, 63, 64, 65, 129, 1000};

void TestGroupedSelfAttention() {
  uint32_t seed = 1;
  for (size_t group : kGroups) {
    for (size_t t : kLengths) {
      for (size_t window : {size_t{0}, size_t{3}, size_t{64}}) {
        GroupedProblem p;
        p.positions = p.num_keys = t;
        p.group = group;
        p.window = window;
        p.head_dim = group % 2 == 0 ? 16 : 13;
        p.pad = group == 3 ? 3 : 0;
        p.misalign = group == 5 ? 1 : 0;
        p.Fill(seed++);
        ExpectMatches(p, "grouped self-attention");
      }
    }
  }
}

void TestWindows() {
  uint32_t seed = 100;
  for (size_t window : kWindows) {
    for (size_t t : {size_t{1}, size_t{4}, size_t{33}, size_t{130}, size_t{200}}) {
      for (size_t group : {size_t{1}, size_t{2}, size_t{4}}) {
        GroupedProblem p;
        p.positions = p.num_keys = t;
        p.group = group;
        p.window = window;
        p.head_dim = 8;
        p.Fill(seed++);
        ExpectMatches(p, "window");
      }
    }
  }
}

// Decoding: a few new positions after a long cache, windowed or not, with
// the V rows read in place (no padding) or packed.
void TestGroupedDecode() {
  uint32_t seed = 300;
  for (size_t group : {size_t{1}, size_t{4}, size_t{7}}) {
    for (size_t past : {size_t{0}, size_t{63}, size_t{64}, size_t{600}}) {
      for (size_t window : {size_t{0}, size_t{1}, size_t{50}, size_t{512}}) {
        for (size_t fresh : {size_t{1}, size_t{3}}) {
          GroupedProblem p;
          p.positions = fresh;
          p.num_keys = past + fresh;
          p.q_begin = past;
          p.group = group;
          p.window = window;
          p.head_dim = 64;
          p.Fill(seed++);
          ExpectMatches(p, "grouped decode");
        }
      }
    }
  }
}

// Non-causal with a window: the lower bound alone.
void TestNonCausalWindow() {
  GroupedProblem p;
  p.positions = p.num_keys = 70;
  p.group = 2;
  p.window = 9;
  p.causal = false;
  p.Fill(7);
  ExpectMatches(p, "non-causal window");
}

// NaN in K and V rows that no query sees (before every window) stays out of
// every output; a NaN key inside a window makes exactly the rows that see
// it NaN.
void TestNaNOutsideWindows() {
  GroupedProblem p;
  p.positions = p.num_keys = 100;
  p.group = 4;
  p.window = 10;
  p.head_dim = 16;
  p.Fill(11);
  // Key 5 is visible to positions 5..14 only.
  for (size_t c = 0; c < p.head_dim; ++c) {
    p.k[p.misalign + 5 * p.ld_key() + c] = kNaN;
    p.v[p.misalign + 5 * p.ld_key() + c] = kNaN;
  }
  const std::vector<float> got = Run(p, false);
  for (size_t i = 0; i < p.positions * p.group; ++i) {
    const size_t pos = i / p.group;
    const bool sees = pos >= 5 && pos < 15;
    EXPECT_EQ(std::isnan(got[p.QueryIndex(i, 0)]), sees)
        << hwy::TargetName(HWY_TARGET) << " row " << i << " position " << pos;
  }
  ExpectMatches(p, "NaN outside windows");
}

// A row's result does not depend on which rows share its call: the
// positions split into calls at every offset give the same bits.
void TestSplitIndependence() {
  GroupedProblem p;
  p.positions = p.num_keys = 150;
  p.group = 3;
  p.window = 37;
  p.head_dim = 24;
  p.Fill(21);
  const std::vector<float> whole = Run(p, false);
  for (size_t split : {size_t{1}, size_t{5}, size_t{33}, size_t{97}}) {
    std::vector<float> parts(whole.size(), kGuard);
    FlashAttentionArgs first = p.Args(parts.data());
    first.num_queries = split * p.group;
    first.num_keys = split;
    FlashAttentionKernel(first);
    FlashAttentionArgs second = p.Args(parts.data());
    second.q += split * p.ld_pos();
    second.out += split * p.ld_pos();
    second.q_begin = split;
    second.num_queries = (p.positions - split) * p.group;
    FlashAttentionKernel(second);
    for (size_t idx = 0; idx < whole.size(); ++idx) {
      const bool same =
          whole[idx] == parts[idx] || (std::isnan(whole[idx]) && std::isnan(parts[idx]));
      ASSERT_TRUE(same) << hwy::TargetName(HWY_TARGET) << " split " << split << " at " << idx;
    }
  }
}

// A window that ends before every key (positions past num_keys): NaN rows.
void TestNoVisibleKey() {
  GroupedProblem p;
  p.positions = 2;
  p.num_keys = 3;
  p.q_begin = 10;
  p.window = 4;
  p.group = 2;
  p.Fill(5);
  const std::vector<float> got = Run(p, false);
  for (size_t i = 0; i < 4; ++i) EXPECT_TRUE(std::isnan(got[p.QueryIndex(i, 0)]));
  ExpectMatches(p, "no visible key");
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace flash_gqa_test
void TestFlashGroupedSelfAttention() { flash_gqa_test::TestGroupedSelfAttention(); }
void TestFlashWindows() { flash_gqa_test::TestWindows(); }
void TestFlashGroupedDecode() { flash_gqa_test::TestGroupedDecode(); }
void TestFlashNonCausalWindow() { flash_gqa_test::TestNonCausalWindow(); }
void TestFlashNaNOutsideWindows() { flash_gqa_test::TestNaNOutsideWindows(); }
void TestFlashSplitIndependence() { flash_gqa_test::TestSplitIndependence(); }
void TestFlashNoVisibleKey() { flash_gqa_test::TestNoVisibleKey(); }
// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "attn/error.h"
#include "hwy/tests/hwy_gtest.h"

namespace attn {

HWY_BEFORE_TEST(FlashAttentionGqaTest);
HWY_EXPORT_AND_TEST_P(FlashAttentionGqaTest, TestFlashGroupedSelfAttention);
HWY_EXPORT_AND_TEST_P(FlashAttentionGqaTest, TestFlashWindows);
HWY_EXPORT_AND_TEST_P(FlashAttentionGqaTest, TestFlashGroupedDecode);
HWY_EXPORT_AND_TEST_P(FlashAttentionGqaTest, TestFlashNonCausalWindow);
HWY_EXPORT_AND_TEST_P(FlashAttentionGqaTest, TestFlashNaNOutsideWindows);
HWY_EXPORT_AND_TEST_P(FlashAttentionGqaTest, TestFlashSplitIndependence);
HWY_EXPORT_AND_TEST_P(FlashAttentionGqaTest, TestFlashNoVisibleKey);

TEST(FlashAttentionGqaDispatchTest, RejectsBadGroupArguments) {
  std::vector<float> q(64, 0.0f), k(64, 0.0f), v(64, 0.0f), out(64, 0.0f);
  simd::FlashAttentionArgs a;
  a.q = q.data();
  a.k = k.data();
  a.v = v.data();
  a.out = out.data();
  a.ldq = a.ldk = a.ldv = a.ldo = 8;
  a.num_queries = 2;
  a.num_keys = 2;
  a.head_dim = 8;
  a.group_size = 0;
  EXPECT_THROW(simd::FlashAttention(a), ShapeError);
  a.group_size = 2;
  a.ldq_group = 4;  // < head_dim
  a.ldo_group = 8;
  EXPECT_THROW(simd::FlashAttention(a), ShapeError);
}

}  // namespace attn
#endif  // HWY_ONCE
