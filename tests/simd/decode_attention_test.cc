// simd::DecodeAttention: every compiled target's DecodeAttentionKernel
// against simd::FlashAttentionReference (double) on head_dim 1..130 around
// the vector widths and the kernel's blocks (4 keys, 4 vectors of columns,
// 4 query heads), 1..4 query positions x groups 1..8, 1..1023 keys, keys over
// several of its key blocks with windows across their boundaries; causal
// decoding without and with windows 1, 2, 5 and beyond the keys, non-causal
// (windowed or not), positions past the keys; padded and misaligned views
// with guards, in place (out == q); K and V rows that no query sees hold NaN
// in every problem; NaN and ±inf in visible queries, keys and values;
// scores ~1e4; each row bitwise the same alone, per position, whole, and
// after a poisoned call. Then the dispatching simd::DecodeAttention on each
// target and its argument checks.

#include "simd/decode_attention.h"

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
#include "tests/simd/decode_attention_test_util.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "tests/simd/decode_attention_test.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "hwy/tests/hwy_gtest.h"
#include "simd/decode_attention-inl.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {
namespace {

using decode_test::kInf;
using decode_test::kNaN;
using decode_test::Problem;
using simd::FlashAttentionArgs;

// Views(p, i) cycles through misaligned (q, k, v and out at odd offsets) or
// not, padded strides or not, in place or not; then fills p.
void Views(Problem* p, uint32_t i) {
  p->misalign = i % 2;
  p->pad = (i / 2) % 2 * 3;
  p->in_place = (i / 4) % 2 == 1;
  p->Fill(i);
}
std::vector<float> Check(const Problem& p, const char* what, bool finite = false) {
  return decode_test::ExpectMatches(p, &DecodeAttentionKernel,
                                    std::string(hwy::TargetName(HWY_TARGET)) + " " + what, finite);
}
// Check(p), then row i must have nans(i) NaN columns.
template <class Nans>
void CheckNaNs(const Problem& p, const char* what, const Nans& nans) {
  const std::vector<float> got = Check(p, what);
  for (size_t i = 0; i < p.a.num_queries; ++i) {
    size_t n = 0;
    for (size_t c = 0; c < p.a.head_dim; ++c) n += std::isnan(got[p.OIndex(i) + c]) ? 1 : 0;
    EXPECT_EQ(n, nans(i)) << hwy::TargetName(HWY_TARGET) << " " << what << " row " << i;
  }
}

// Every head_dim x key count twice, positions, group, mask, scale (1/sqrt(hd)
// or 0.125) and view cycling.
void TestDecodeShapes() {
  uint32_t i = 0;
  for (size_t hd : decode_test::kHeadDims) {
    for (size_t nk : decode_test::kNumKeys) {
      for (int rep = 0; rep < 2; ++rep, ++i) {
        Problem p(hd, nk, 1 + i / 8 % 4, decode_test::kGroups[i % 6], i % decode_test::kMasks);
        if (i % 3 == 0) p.a.scale = 0.125f;
        Views(&p, i / 3);
        Check(p, "shapes");
      }
    }
  }
}

// Every mask x group x positions at two head_dims (17: vector and scalar
// columns on every target; 64: whole 4-vector blocks) and key counts; a
// third of the grouped problems lack the last position's last row.
void TestDecodeGroupsAndMasks() {
  uint32_t i = 1000;
  for (size_t mask = 0; mask < decode_test::kMasks; ++mask) {
    for (size_t hd : {size_t{17}, size_t{64}}) {
      for (size_t nk : {size_t{17}, size_t{100}}) {
        for (size_t group : decode_test::kGroups) {
          for (size_t positions = 1; positions <= 4; ++positions) {
            Problem p(hd, nk, positions, group, mask);
            if (group > 1 && i % 3 == 0) --p.a.num_queries;  // the last position short of a group
            Views(&p, i++);
            Check(p, "groups and masks");
          }
        }
      }
    }
  }
}

// Keys over several of the kernel's key blocks (DecodeKeyBlock), with
// windows that start inside a block and span one or more boundaries, every
// group size and 1..3 positions (the V rows weighted block by block,
// accumulating in the output, and the next block's prefetches).
void TestDecodeKeyBlocks() {
  uint32_t i = 3000;
  for (size_t hd : {size_t{8}, size_t{64}, size_t{130}}) {
    const size_t block = DecodeKeyBlock(hd), nk = 3 * block + 5;
    for (size_t window : {size_t{0}, block - 1, block + 3, 2 * block + 7}) {
      for (size_t group : decode_test::kGroups) {
        Problem p(hd, nk, 1 + i % 3, group, window == 0 ? 1 : 4);
        p.a.window = window;
        if (group > 1 && i % 3 == 0) --p.a.num_queries;
        Views(&p, i++);
        Check(p, "key blocks");
      }
    }
  }
}

// Per the contract: NaN or ±inf in a query, NaN or +inf score: NaN rows; a
// -inf score has weight 0 (NaN when it is the row's only key); NaN in a
// visible V row spreads to its column, even with weight 0; ±inf in V gives
// ±inf. Positions 16..19 of 20 keys, 2 heads each (rows 2t, 2t + 1).
void TestDecodeSpecialValues() {
  uint32_t view = 0;
  const size_t hd = 17, none = 0, all = hd;
  auto make = [&](size_t mask) {
    Problem p(hd, 20, 4, 2, mask);
    Views(&p, view++);
    return p;
  };
  Problem p = make(1);
  p.Q(3, 5) = kNaN;
  CheckNaNs(p, "NaN query", [&](size_t i) { return i == 3 ? all : none; });
  p = make(1);
  p.Q(6, 0) = kInf;  // +inf times the positive k[j, 0]
  CheckNaNs(p, "+inf query", [&](size_t i) { return i == 6 ? all : none; });
  p = make(1);
  p.Q(0, 1) = -kInf;
  CheckNaNs(p, "-inf query", [&](size_t i) { return i == 0 ? all : none; });
  p = make(1);
  p.K(18, 16) = kNaN;  // past the causal end of positions 16, 17
  CheckNaNs(p, "NaN key", [&](size_t i) { return i >= 4 ? all : none; });
  for (float x : {kInf, -kInf}) {  // q[:, 4] > 0: score +-inf
    p = make(1);
    for (size_t i = 0; i < 8; ++i) p.Q(i, 4) = 0.5f;
    p.K(17, 4) = x;
    CheckNaNs(p, "+-inf key", [&](size_t i) { return x > 0 && i >= 2 ? all : none; });
    p.V(17, 3) = kNaN;  // weight 0 (x = -inf) times NaN is NaN
    CheckNaNs(p, "+-inf key, NaN value", [&](size_t i) { return i < 2 ? none : x > 0 ? all : 1; });
  }
  p = make(2);  // window 1: position 16 sees key 16 only, at score -inf
  for (size_t i = 0; i < 8; ++i) p.Q(i, 4) = 0.5f;
  p.K(16, 4) = -kInf;
  CheckNaNs(p, "only -inf", [&](size_t i) { return i < 2 ? all : none; });
  p = make(1);
  p.V(18, 3) = kNaN;
  CheckNaNs(p, "NaN value", [&](size_t i) { return i >= 4 ? 1 : none; });
  p = make(1);
  p.V(18, 2) = kInf;
  p.V(18, 7) = -kInf;
  const std::vector<float> got = Check(p, "inf values");
  for (size_t i = 4; i < 8; ++i) {  // the rows that see key 18
    EXPECT_EQ(got[p.OIndex(i) + 2], kInf) << hwy::TargetName(HWY_TARGET) << " row " << i;
    EXPECT_EQ(got[p.OIndex(i) + 7], -kInf) << hwy::TargetName(HWY_TARGET) << " row " << i;
  }
  // Window 5: position 16 sees keys 12..16, 17 13..17, 18 14..18, 19 15..19.
  p = make(4);
  p.K(13, 0) = kNaN;
  CheckNaNs(p, "NaN key, window", [&](size_t i) { return i < 4 ? all : none; });
  p = make(4);
  p.V(12, 5) = kNaN;
  CheckNaNs(p, "NaN value, window", [&](size_t i) { return i < 2 ? 1 : none; });
}

// Integer queries and keys in 90..100 and a power-of-two scale: scores
// ~1e4 (exp overflows without the max subtraction), exact in float (so the
// kernel and the double reference see the same logits); outputs finite.
void TestDecodeLargeLogits() {
  for (size_t hd : {size_t{7}, size_t{64}, size_t{130}}) {
    for (size_t mask : {size_t{0}, size_t{1}, size_t{4}}) {
      Problem p(hd, 100, 4, 3, mask);
      p.a.scale = hd == 7 ? 0.125f : hd == 64 ? 1.0f / 64 : 1.0f / 128;
      p.misalign = 1;
      p.Fill(static_cast<uint32_t>(3000 + hd + mask), 90.0f, 101.0f, /*integers=*/true);
      Check(p, "large logits", /*finite=*/true);
    }
  }
}

// Each row's result is bitwise the same computed whole, one position (group
// of rows) per call, one row per call (group_size 1 at its position), and
// again after a call that leaves inf and NaN throughout the scratch.
void TestDecodeRowIndependence() {
  Problem poison(64, 1023, 4, 8, 0);
  poison.Fill(1);
  for (float& x : poison.k) x = kInf;
  for (float& x : poison.v) x = kNaN;
  uint32_t seed = 2000;
  for (size_t hd : {size_t{7}, size_t{64}, size_t{65}}) {
    for (size_t group : decode_test::kGroups) {
      for (size_t mask : {size_t{0}, size_t{1}, size_t{4}, size_t{6}}) {
        Problem p(hd, 100, 4, group, mask);
        p.pad = 1;
        p.misalign = 1;
        p.Fill(seed++);
        const std::vector<float> whole = decode_test::Run(p, &DecodeAttentionKernel);
        // The rows in calls of `rows` rows (1: group_size 1 at the row's position).
        auto split = [&](size_t rows) {
          std::vector<float> out(whole.size(), decode_test::kGuard);
          const FlashAttentionArgs a = p.Args(p.q.data(), out.data());
          for (size_t i = 0; i < a.num_queries; i += rows) {
            FlashAttentionArgs r = a;
            r.q = simd::QueryRow(a, i);
            r.out = simd::OutRow(a, i);
            r.num_queries = rows;
            r.q_begin = simd::QueryPosition(a, i);
            if (rows == 1) r.group_size = 1;
            DecodeAttentionKernel(r);
          }
          return out;
        };
        const std::vector<float> alone = split(1), per_position = split(group);
        decode_test::Run(poison, &DecodeAttentionKernel);
        const std::vector<float> again = decode_test::Run(p, &DecodeAttentionKernel);
        const size_t bytes = whole.size() * sizeof(float);
        EXPECT_EQ(0, std::memcmp(whole.data(), alone.data(), bytes)) << p.Describe();
        EXPECT_EQ(0, std::memcmp(whole.data(), per_position.data(), bytes)) << p.Describe();
        EXPECT_EQ(0, std::memcmp(whole.data(), again.data(), bytes)) << p.Describe();
      }
    }
  }
}

// No keys (k and v null): NaN rows. No queries or head_dim 0: nothing
// written.
void TestDecodeNoKeysAndEmpty() {
  for (size_t mask : {size_t{0}, size_t{1}}) {
    Problem p(16, 0, 3, 2, mask);
    Views(&p, static_cast<uint32_t>(mask * 5));
    CheckNaNs(p, "no keys", [](size_t) { return size_t{16}; });
  }
  Problem p(8, 5, 2, 2, 1);
  p.Fill(7);
  std::vector<float> out(p.OIndex(3) + 8, decode_test::kGuard);
  FlashAttentionArgs a = p.Args(p.q.data(), out.data());
  a.num_queries = 0;
  DecodeAttentionKernel(a);
  a.num_queries = 4;
  a.head_dim = 0;
  DecodeAttentionKernel(a);
  for (float x : out) ASSERT_EQ(x, decode_test::kGuard);
}

}  // namespace
// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "attn/error.h"

namespace attn {

HWY_BEFORE_TEST(DecodeAttentionTest);
HWY_EXPORT_AND_TEST_P(DecodeAttentionTest, TestDecodeShapes);
HWY_EXPORT_AND_TEST_P(DecodeAttentionTest, TestDecodeGroupsAndMasks);
HWY_EXPORT_AND_TEST_P(DecodeAttentionTest, TestDecodeKeyBlocks);
HWY_EXPORT_AND_TEST_P(DecodeAttentionTest, TestDecodeSpecialValues);
HWY_EXPORT_AND_TEST_P(DecodeAttentionTest, TestDecodeLargeLogits);
HWY_EXPORT_AND_TEST_P(DecodeAttentionTest, TestDecodeRowIndependence);
HWY_EXPORT_AND_TEST_P(DecodeAttentionTest, TestDecodeNoKeysAndEmpty);

// The public entry point (argument checks, then dispatch), on each target:
// one query over 1023 keys, misaligned; four positions of four heads in
// place with window 5; positions past the keys.
TEST_P(DecodeAttentionTest, DispatchedDecodeAttention) {
  decode_test::Problem one(64, 1023, 1, 8, 1), in_place(128, 100, 4, 4, 4), past(33, 17, 3, 5, 7);
  one.misalign = 1;
  one.Fill(1);
  in_place.in_place = true;
  in_place.pad = 3;
  in_place.Fill(2);
  past.Fill(3);
  for (const decode_test::Problem* p : {&one, &in_place, &past}) {
    decode_test::ExpectMatches(*p, &simd::DecodeAttention, "simd::DecodeAttention");
  }
}

// simd::FlashAttention's checks: group_size 0, strides below head_dim,
// null pointers with nonzero sizes; ShapeError naming DecodeAttention.
TEST(DecodeAttentionDispatchTest, RejectsBadArguments) {
  decode_test::Problem p(8, 3, 2, 2, 1);  // strides 8 (pad 0)
  p.Fill(1);
  std::vector<float> out(64);
  const simd::FlashAttentionArgs good = p.Args(p.q.data(), out.data());
  EXPECT_NO_THROW(simd::DecodeAttention(good));
  for (size_t n = 0; n < 11; ++n) {  // each breaks one argument
    simd::FlashAttentionArgs a = good;
    size_t* const strides[] = {&a.ldq_group, &a.ldo_group, &a.ldq, &a.ldo, &a.ldk, &a.ldv};
    const float** const inputs[] = {&a.q, &a.k, &a.v};
    if (n < 6) *strides[n] = 7;
    if (n >= 6 && n < 9) *inputs[n - 6] = nullptr;
    if (n == 9) a.out = nullptr;
    if (n == 10) a.group_size = 0;
    try {
      simd::DecodeAttention(a);
      ADD_FAILURE() << "case " << n << " did not throw";
    } catch (const ShapeError& e) {
      EXPECT_NE(std::string(e.what()).find("DecodeAttention"), std::string::npos) << e.what();
    }
  }
  for (size_t n = 0; n < 4; ++n) {  // pointers and group strides that are not read
    simd::FlashAttentionArgs a = good;
    if (n == 0) a.num_keys = 0, a.k = a.v = nullptr;
    if (n == 1) a.num_queries = 0, a.q = a.out = nullptr;
    if (n == 2) a.head_dim = 0, a.q = a.k = a.v = a.out = nullptr;
    if (n == 3) a.group_size = 1, a.ldq = a.ldo = 8, a.ldq_group = a.ldo_group = 0;
    EXPECT_NO_THROW(simd::DecodeAttention(a)) << "case " << n;
  }
}

}  // namespace attn
#endif  // HWY_ONCE
