// Golden tests against PyTorch 1.13: tests/data/*.safetensors were written by
// scripts/make_golden.py (see tests/data/README.md). For every case of
// golden_cases.txt: the same seed gives the same parameters bit for bit, and
// the forward pass (dropout masks included) matches PyTorch's output and
// attention weights within the case's relative tolerance.
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>

#include "every_target.h"
#include "test_util.h"

namespace attn {
namespace {

struct GoldenCase {
  std::string name, module;
  int64_t d_in, d_out, context_length;
  double dropout;
  int64_t num_heads;
  int qkv_bias;
  int64_t init_seed, forward_seed;
  int train;
  double rtol;
};

// gtest prints a case by its name (not its bytes).
void PrintTo(const GoldenCase& c, std::ostream* os) { *os << c.name; }

std::vector<GoldenCase> read_manifest() {
  std::ifstream in(testing::data_path("golden_cases.txt"));
  std::vector<GoldenCase> cases;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    GoldenCase c;
    fields >> c.name >> c.module >> c.d_in >> c.d_out >> c.context_length >> c.dropout >>
        c.num_heads >> c.qkv_bias >> c.init_seed >> c.forward_seed >> c.train >> c.rtol;
    if (fields) cases.push_back(c);
  }
  return cases;
}

// A module of any of the five kinds behind one interface.
struct AnyModule {
  std::unique_ptr<Module> module;
  std::function<Tensor(const Tensor&, Tensor*)> forward;
};

template <typename M>
AnyModule wrap(std::unique_ptr<M> m) {
  M* raw = m.get();
  return {std::move(m), [raw](const Tensor& x, Tensor* w) { return raw->forward(x, w); }};
}

AnyModule make_module(const GoldenCase& c) {
  const bool bias = c.qkv_bias != 0;
  if (c.module == "SelfAttentionV1")
    return wrap(std::make_unique<SelfAttentionV1>(c.d_in, c.d_out));
  if (c.module == "SelfAttentionV2") {
    return wrap(std::make_unique<SelfAttentionV2>(c.d_in, c.d_out, bias));
  }
  if (c.module == "CausalAttention") {
    return wrap(
        std::make_unique<CausalAttention>(c.d_in, c.d_out, c.context_length, c.dropout, bias));
  }
  if (c.module == "MultiHeadAttentionWrapper") {
    return wrap(std::make_unique<MultiHeadAttentionWrapper>(c.d_in, c.d_out, c.context_length,
                                                            c.dropout, c.num_heads, bias));
  }
  if (c.module == "MultiHeadAttention") {
    return wrap(std::make_unique<MultiHeadAttention>(c.d_in, c.d_out, c.context_length, c.dropout,
                                                     c.num_heads, bias));
  }
  throw std::runtime_error("unknown module " + c.module);
}

// Parameter parity, output and weights of one case, on the current target.
void check_golden_case(const GoldenCase& c) {
  const StateDict file = load_safetensors(testing::data_path(c.name + ".safetensors"));
  if (c.init_seed >= 0) manual_seed(static_cast<uint64_t>(c.init_seed));
  AnyModule m = make_module(c);

  StateDict expected_params;
  for (const auto& item : file) {
    if (item.first != "input" && item.first != "output" && item.first != "weights") {
      expected_params.insert(item);
    }
  }
  if (c.init_seed >= 0) {
    // Initialization parity: the same seed draws the same parameters.
    const StateDict ours = m.module->state_dict();
    ASSERT_EQ(ours.size(), expected_params.size());
    for (const auto& item : expected_params) {
      ASSERT_EQ(ours.count(item.first), 1u) << item.first;
      EXPECT_TENSOR_EQ(ours.at(item.first), item.second);
    }
  }
  m.module->load_state_dict(expected_params);
  m.module->train(c.train != 0);
  manual_seed(static_cast<uint64_t>(c.forward_seed));
  Tensor weights;
  const Tensor out = m.forward(file.at("input"), &weights);
  EXPECT_TENSOR_NEAR(out, file.at("output"), c.rtol);
  if (file.count("weights")) {
    EXPECT_TENSOR_NEAR(weights, file.at("weights"), c.rtol);
  }

  // Without asking for the weights (the fast path) the output is the same.
  manual_seed(static_cast<uint64_t>(c.forward_seed));
  EXPECT_TENSOR_NEAR(m.forward(file.at("input"), nullptr), file.at("output"), c.rtol);
}

class Golden : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(Golden, MatchesPyTorch) { check_golden_case(GetParam()); }

INSTANTIATE_TEST_SUITE_P(PyTorch, Golden, ::testing::ValuesIn(read_manifest()),
                         [](const ::testing::TestParamInfo<GoldenCase>& info) {
                           return info.param.name;
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(Golden);

// Every case on every compiled Highway target (every_target.h), with the
// case's own tolerance: the targets without FMA (SSE4, SSSE3, SCALAR) need no
// looser one. Names: EveryTarget/GoldenEveryTarget.MatchesPyTorch/SSE4_mha_book.
class GoldenEveryTarget : public testing::EveryTargetWith<GoldenCase> {};

TEST_P(GoldenEveryTarget, MatchesPyTorch) { check_golden_case(param()); }

INSTANTIATE_TEST_SUITE_P(EveryTarget, GoldenEveryTarget,
                         ::testing::Combine(::testing::ValuesIn(testing::compiled_targets()),
                                            ::testing::ValuesIn(read_manifest())),
                         [](const ::testing::TestParamInfo<std::tuple<int64_t, GoldenCase>>& info) {
                           return std::string(hwy::TargetName(std::get<0>(info.param))) + "_" +
                                  std::get<1>(info.param).name;
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(GoldenEveryTarget);

TEST(GoldenData, ManifestIsNotEmpty) { EXPECT_GE(read_manifest().size(), 20u); }

TEST(GoldenRandom, RandMatchesTorchRand) {
  const StateDict file = load_safetensors(testing::data_path("rand.safetensors"));
  int checked = 0;
  for (const uint64_t seed : {uint64_t{0}, uint64_t{123}, uint64_t{789}, (uint64_t{1} << 32) + 5}) {
    const std::string key = "rand_seed_" + std::to_string(seed);
    if (!file.count(key)) continue;
    manual_seed(seed);
    EXPECT_TENSOR_EQ(rand({37}), file.at(key));
    EXPECT_TENSOR_EQ(rand({3, 5}), file.at("rand2_seed_" + std::to_string(seed)));
    ++checked;
  }
  EXPECT_EQ(checked, 4);
}

TEST(GoldenRandom, LinearInitMatchesPyTorch) {
  const StateDict file = load_safetensors(testing::data_path("linear_init.safetensors"));
  manual_seed(123);
  Linear lin1(7, 5, true);
  Linear lin2(3, 2, false);
  EXPECT_TENSOR_EQ(lin1.weight(), file.at("lin1.weight"));
  EXPECT_TENSOR_EQ(lin1.bias(), file.at("lin1.bias"));
  EXPECT_TENSOR_EQ(lin2.weight(), file.at("lin2.weight"));
}

TEST(GoldenRandom, DropoutMatchesPyTorch) {
  const StateDict file = load_safetensors(testing::data_path("dropout.safetensors"));
  manual_seed(123);
  Dropout half(0.5);
  const Tensor ones({6, 6}, std::vector<float>(36, 1.0f));
  const Tensor out = half(ones);
  EXPECT_TENSOR_EQ(out, file.at("ones_p0.5"));
  // The book's printed first row: 2 2 0 2 2 0.
  EXPECT_EQ(out.reshape({36}).to_vector()[2], 0.0f);
  EXPECT_EQ(out.at({0, 0}), 2.0f);
  manual_seed(5);
  EXPECT_TENSOR_EQ(Dropout(0.1)(file.at("input_p0.1")), file.at("output_p0.1"));
}

}  // namespace
}  // namespace attn
