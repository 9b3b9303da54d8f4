// Golden tests of GroupedQueryAttention against the book's PyTorch code
// (scripts/book_gqa.py): tests/data/gqa_*.safetensors and gqa_cases.txt were
// written by scripts/make_golden.py (see tests/data/README.md). For every case
// and every compiled Highway target: the same seed gives the same parameters
// bit for bit, load_state_dict takes the file's tensors, and forward,
// forward with weights and KV-cache decoding (several chunkings) match
// PyTorch within the case's rtol as max|ours - ref| / max|ref|. RoPE's
// inverse frequencies match PyTorch's bit for bit (gqa_rope.safetensors).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "attn/grouped_query_attention.h"
#include "every_target.h"
#include "test_util.h"

namespace attn {
namespace {

using testing::decode_in_chunks;
using testing::slice_tokens;

// One line of gqa_cases.txt.
struct GqaCase {
  std::string name;
  int64_t d_in, d_out, context_length, num_heads, num_kv_groups, sliding_window;
  int qkv_bias, rope;
  double theta_base, scaling_factor, low_freq_factor, high_freq_factor;
  int64_t original_context_length, init_seed, prompt;
  double rtol;
};

// gtest prints a case by its name (not its bytes).
void PrintTo(const GqaCase& c, std::ostream* os) { *os << c.name; }

std::vector<GqaCase> read_gqa_manifest() {
  std::ifstream in(testing::data_path("gqa_cases.txt"));
  std::vector<GqaCase> cases;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    GqaCase c;
    fields >> c.name >> c.d_in >> c.d_out >> c.context_length >> c.num_heads >> c.num_kv_groups >>
        c.sliding_window >> c.qkv_bias >> c.rope >> c.theta_base >> c.scaling_factor >>
        c.low_freq_factor >> c.high_freq_factor >> c.original_context_length >> c.init_seed >>
        c.prompt >> c.rtol;
    if (fields) cases.push_back(c);
  }
  return cases;
}

RopeConfig rope_config(bool enabled, double theta_base, double scaling_factor,
                       double low_freq_factor, double high_freq_factor,
                       int64_t original_context_length) {
  RopeConfig rope;
  rope.enabled = enabled;
  rope.theta_base = theta_base;
  rope.scaling_factor = scaling_factor;
  rope.low_freq_factor = low_freq_factor;
  rope.high_freq_factor = high_freq_factor;
  rope.original_context_length = original_context_length;
  return rope;
}

RopeConfig rope_of(const GqaCase& c) {
  return rope_config(c.rope != 0, c.theta_base, c.scaling_factor, c.low_freq_factor,
                     c.high_freq_factor, c.original_context_length);
}

// max|a - ref| / max|ref| over the whole tensor (the GQA cases' measure);
// infinity for a NaN or a shape mismatch.
double max_error_ratio(const Tensor& a, const Tensor& ref) {
  if (a.shape() != ref.shape()) return INFINITY;
  double largest = 0, worst = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const double x = a.data()[i], y = ref.data()[i];
    if (std::isnan(x) || std::isnan(y)) return INFINITY;
    largest = std::max(largest, std::fabs(y));
    worst = std::max(worst, std::fabs(x - y));
  }
  if (worst == 0) return 0;
  return largest > 0 ? worst / largest : INFINITY;
}

// Expects a within rtol of ref; returns the error and records it as a test
// property (visible with --gtest_output=xml).
double expect_near(const Tensor& a, const Tensor& ref, double rtol, const std::string& what) {
  EXPECT_EQ(a.shape(), ref.shape())
      << what << ": " << shape_to_string(a.shape()) << " vs " << shape_to_string(ref.shape());
  const double err = max_error_ratio(a, ref);
  EXPECT_LE(err, rtol) << what;
  char text[32];
  std::snprintf(text, sizeof(text), "%.3g", err);
  ::testing::Test::RecordProperty(what, text);
  return err;
}

// The decoding runs of make_golden.py's gqa_schedules: the prompt then single
// tokens, the prompt in two chunks then single tokens, every token alone,
// everything as one chunk.
std::vector<std::vector<int64_t>> schedules(int64_t T, int64_t prompt) {
  std::vector<int64_t> prompt_then_ones = {prompt};
  std::vector<int64_t> split_prompt = {prompt / 2, prompt - prompt / 2};
  for (int64_t i = prompt; i < T; ++i) {
    prompt_then_ones.push_back(1);
    split_prompt.push_back(1);
  }
  std::vector<std::vector<int64_t>> runs = {prompt_then_ones, std::vector<int64_t>(T, 1), {T}};
  if (prompt >= 2) runs.push_back(split_prompt);
  return runs;
}

std::string schedule_name(const std::vector<int64_t>& chunks) {
  std::string name = "decode";
  for (size_t i = 0; i < chunks.size() && i < 3; ++i) name += "_" + std::to_string(chunks[i]);
  if (chunks.size() > 3) name += "_..." + std::to_string(chunks.size()) + "chunks";
  return name;
}

// Weights outside each query's window (j > i, or j <= i - W) are exactly 0.
void expect_masked_weights_zero(const Tensor& weights, int64_t window) {
  const int64_t T = weights.size(-1);
  const int64_t rows = weights.numel() / (T * T);
  int64_t nonzero = 0;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < T; ++i) {
      for (int64_t j = 0; j < T; ++j) {
        const bool masked = j > i || (window > 0 && j <= i - window);
        if (masked && weights.data()[(r * T + i) * T + j] != 0.0f) ++nonzero;
      }
    }
  }
  EXPECT_EQ(nonzero, 0) << "weights outside the window that are not exactly 0";
}

void check_gqa_case(const GqaCase& c) {
  const StateDict file = load_safetensors(testing::data_path(c.name + ".safetensors"));
  StateDict params;
  for (const auto& item : file) {
    if (item.first != "input" && item.first != "output" && item.first != "weights") {
      params.insert(item);
    }
  }
  const RopeConfig rope = rope_of(c);

  // Initialization parity: the same seed draws the same parameters.
  manual_seed(static_cast<uint64_t>(c.init_seed));
  GroupedQueryAttention m(c.d_in, c.d_out, c.context_length, c.num_heads, c.num_kv_groups, rope,
                          c.sliding_window, c.qkv_bias != 0);
  const StateDict ours = m.state_dict();
  ASSERT_EQ(ours.size(), params.size());
  for (const auto& item : params) {
    ASSERT_EQ(ours.count(item.first), 1u) << item.first;
    EXPECT_TENSOR_EQ(ours.at(item.first), item.second);
  }
  const size_t num_freq = c.rope != 0 ? static_cast<size_t>(m.head_dim() / 2) : 0;
  EXPECT_EQ(m.rope_inv_freq().size(), num_freq);

  // load_state_dict into a module drawn from another seed.
  manual_seed(static_cast<uint64_t>(c.init_seed) + 1000);
  GroupedQueryAttention loaded(c.d_in, c.d_out, c.context_length, c.num_heads, c.num_kv_groups,
                               rope, c.sliding_window, c.qkv_bias != 0);
  loaded.load_state_dict(params);
  for (const auto& item : loaded.state_dict()) EXPECT_TENSOR_EQ(item.second, params.at(item.first));

  const Tensor& x = file.at("input");
  const Tensor& ref = file.at("output");
  const Tensor out = loaded.forward(x);
  expect_near(out, ref, c.rtol, "output");
  // The seeded module and the loaded one compute the same bits.
  EXPECT_TENSOR_EQ(m.forward(x), out);

  Tensor weights;
  expect_near(loaded.forward(x, &weights), ref, c.rtol, "output_with_weights");
  const int64_t batch = x.size(0), T = x.size(1);
  ASSERT_EQ(weights.shape(), (std::vector<int64_t>{batch, c.num_heads, T, T}));
  if (file.count("weights")) expect_near(weights, file.at("weights"), c.rtol, "weights");
  expect_masked_weights_zero(weights, c.sliding_window);

  for (const std::vector<int64_t>& chunks : schedules(T, c.prompt)) {
    expect_near(decode_in_chunks(loaded, x, chunks), ref, c.rtol, schedule_name(chunks));
  }
}

// Names: EveryTarget/GqaGoldenEveryTarget.MatchesPyTorch/AVX2_gqa_win3_h4_g2_B2_T10.
class GqaGoldenEveryTarget : public testing::EveryTargetWith<GqaCase> {};

TEST_P(GqaGoldenEveryTarget, MatchesPyTorch) { check_gqa_case(param()); }

INSTANTIATE_TEST_SUITE_P(EveryTarget, GqaGoldenEveryTarget,
                         ::testing::Combine(::testing::ValuesIn(testing::compiled_targets()),
                                            ::testing::ValuesIn(read_gqa_manifest())),
                         [](const ::testing::TestParamInfo<std::tuple<int64_t, GqaCase>>& info) {
                           return std::string(hwy::TargetName(std::get<0>(info.param))) + "_" +
                                  std::get<1>(info.param).name;
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(GqaGoldenEveryTarget);

TEST(GqaGoldenData, ManifestsAreComplete) {
  EXPECT_GE(read_gqa_manifest().size(), 18u);
  std::ifstream in(testing::data_path("gqa_rope_cases.txt"));
  ASSERT_TRUE(in.good());
}

// Distance in representable floats between two finite floats of one sign.
int64_t ulp_distance(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, sizeof(ia));
  std::memcpy(&ib, &b, sizeof(ib));
  return std::llabs(static_cast<int64_t>(ia) - static_cast<int64_t>(ib));
}

// rope_inv_freq() against compute_rope_params' inv_freq for every
// configuration of gqa_rope_cases.txt. A difference is allowed only where
// PyTorch's float32 pow (Sleef, not correctly rounded) is off, i.e. where
// <name>.inv_freq_exact_pow (the same steps from correctly rounded powers)
// differs from <name>.inv_freq, and then by 1 ulp at most.
TEST(GqaGoldenRope, InvFreqMatchesPyTorch) {
  const StateDict file = load_safetensors(testing::data_path("gqa_rope.safetensors"));
  std::ifstream in(testing::data_path("gqa_rope_cases.txt"));
  std::string line, allowed;
  int configs = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string name;
    int64_t head_dim, original_context_length;
    double theta_base, scaling_factor, low_freq_factor, high_freq_factor;
    fields >> name >> head_dim >> theta_base >> scaling_factor >> low_freq_factor >>
        high_freq_factor >> original_context_length;
    ASSERT_FALSE(fields.fail()) << line;
    ++configs;
    SCOPED_TRACE(name);
    const RopeConfig rope = rope_config(true, theta_base, scaling_factor, low_freq_factor,
                                        high_freq_factor, original_context_length);
    const GroupedQueryAttention m(1, head_dim, 1, 1, 1, rope);
    const std::vector<float>& ours = m.rope_inv_freq();
    const Tensor& torch = file.at(name + ".inv_freq");
    const Tensor& exact_pow = file.at(name + ".inv_freq_exact_pow");
    ASSERT_EQ(static_cast<int64_t>(ours.size()), torch.numel());
    for (int64_t i = 0; i < torch.numel(); ++i) {
      const float want = torch.data()[i];
      if (std::memcmp(&ours[i], &want, sizeof(float)) == 0) continue;
      const bool pow_off = exact_pow.data()[i] != want;
      if (pow_off && ulp_distance(ours[i], want) <= 1) {
        allowed += " " + name + "[" + std::to_string(i) + "]";
        continue;
      }
      ADD_FAILURE() << "inv_freq[" << i << "] = " << std::hexfloat << ours[i] << ", PyTorch "
                    << want << " (" << std::dec << ulp_distance(ours[i], want)
                    << " ulp; correctly rounded pow gives " << std::hexfloat << exact_pow.data()[i]
                    << std::defaultfloat << ")";
    }
  }
  EXPECT_GE(configs, 20);
  ::testing::Test::RecordProperty("pow_ulp_allowed", allowed.empty() ? "none" : allowed);
}

}  // namespace
}  // namespace attn
