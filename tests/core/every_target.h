// Value-parameterized fixtures that run a module-level test once per Highway
// target compiled into libattn and supported by this CPU (AVX3, AVX2, SSE4,
// SSSE3, SCALAR with GCC 12 and no -m flags), not only the best one: a user's
// CPU may have only AVX2 or SSE4. The parameter is the target; test names end
// in its name (EveryTarget/Suite.Test/AVX2, .../SSE4_mha_book).
//
// libattn's kernels dispatch through HWY_DYNAMIC_DISPATCH, which reads the
// chosen target on every call, so hwy::SetSupportedTargetsForTest(t) makes
// later calls run target t's code. Construct modules (and load state dicts)
// after switching: weights are packed for the kernel of the target active at
// construction, and a matrix packed on one target and used on another takes
// a slower (correct) path, which is not what a user on that CPU runs.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "hwy/targets.h"

namespace attn {
namespace testing {

// The targets in this binary's HWY_TARGETS that the CPU supports, best first
// (evaluated when tests are registered, before any mock is installed).
inline std::vector<int64_t> compiled_targets() { return hwy::SupportedAndGeneratedTargets(); }

// Tolerance (max_relative_error, the golden data's measure) of module
// outputs against a float64 reference. SSE4, SSSE3 and SCALAR have no fused
// multiply-add (Highway's MulAdd rounds twice there), yet every target meets
// the same bounds as AVX3/AVX2; measured worst cases (GCC 12, 2026-11):
//   every_target_test.cc vs float64: 2.1e-7 (AVX3, AVX2), 2.4e-7 (SSE4,
//     SSSE3, SCALAR), against kEveryTargetRtol = 1e-5;
//   golden PyTorch cases: 2.2e-7 against their rtol 1e-5, the peaky case
//     3.0e-6 (AVX3) .. 8.9e-7 (SCALAR) against its rtol 1e-4.
// So no target gets a looser tolerance.
constexpr double kEveryTargetRtol = 1e-5;

// Fixture for TEST_P(Suite, Name) with the target as the whole parameter.
class EveryTarget : public ::testing::TestWithParam<int64_t> {
 protected:
  void SetUp() override { hwy::SetSupportedTargetsForTest(GetParam()); }
  void TearDown() override { hwy::SetSupportedTargetsForTest(0); }
  int64_t target() const { return GetParam(); }
};

// Fixture for a (target, T) parameter, e.g. (target, golden case).
template <typename T>
class EveryTargetWith : public ::testing::TestWithParam<std::tuple<int64_t, T>> {
 protected:
  using Base = ::testing::TestWithParam<std::tuple<int64_t, T>>;
  void SetUp() override { hwy::SetSupportedTargetsForTest(target()); }
  void TearDown() override { hwy::SetSupportedTargetsForTest(0); }
  int64_t target() const { return std::get<0>(Base::GetParam()); }
  const T& param() const { return std::get<1>(Base::GetParam()); }
};

inline std::string target_test_name(const ::testing::TestParamInfo<int64_t>& info) {
  return hwy::TargetName(info.param);
}

}  // namespace testing
}  // namespace attn

// INSTANTIATE_EVERY_TARGET(Suite): one instance of every TEST_P(Suite, ...)
// per compiled and supported target.
#define INSTANTIATE_EVERY_TARGET(suite)                                              \
  INSTANTIATE_TEST_SUITE_P(EveryTarget, suite,                                       \
                           ::testing::ValuesIn(::attn::testing::compiled_targets()), \
                           ::attn::testing::target_test_name)
