#include <cstdio>
#include <fstream>

#include "test_util.h"

namespace attn {
namespace {

using testing::random_tensor;

class Safetensors : public ::testing::Test {
 protected:
  std::string path(const std::string& name) {
    return ::testing::TempDir() + "attn_safetensors_" + name;
  }
  // Writes a file made of an 8-byte length, `header` and `data`.
  std::string write_raw(const std::string& name, const std::string& header, const std::string& data,
                        int64_t declared_length = -1) {
    const std::string p = path(name);
    std::ofstream out(p, std::ios::binary);
    uint64_t n = declared_length >= 0 ? static_cast<uint64_t>(declared_length) : header.size();
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xFF));
    out << header << data;
    return p;
  }
};

TEST_F(Safetensors, RoundTrip) {
  StateDict dict;
  dict["a.weight"] = random_tensor({3, 5}, 1);
  dict["mask"] = random_tensor({4, 4}, 2);
  dict["scalar"] = Tensor(std::vector<int64_t>{}, {3.5f});
  dict["empty"] = Tensor({0, 2});
  dict["four.d"] = random_tensor({2, 1, 3, 2}, 3);
  dict["quote\"key"] = random_tensor({1}, 4);
  const std::string p = path("roundtrip.safetensors");
  save_safetensors(p, dict, {{"format", "pt"}});
  const StateDict back = load_safetensors(p);
  ASSERT_EQ(back.size(), dict.size());
  for (const auto& item : dict) EXPECT_TENSOR_EQ(back.at(item.first), item.second);
}

TEST_F(Safetensors, ModuleStateDictRoundTrip) {
  MultiHeadAttention a(6, 4, 8, 0.0, 2, true);
  const std::string p = path("mha.safetensors");
  save_safetensors(p, a.state_dict());
  MultiHeadAttention b(6, 4, 8, 0.0, 2, true);
  b.load_state_dict(load_safetensors(p));
  const Tensor x = random_tensor({1, 8, 6}, 5);
  EXPECT_TENSOR_EQ(b.forward(x), a.forward(x));
}

TEST_F(Safetensors, ReadsPyTorchFiles) {
  const StateDict dict = load_safetensors(testing::data_path("linear_init.safetensors"));
  EXPECT_EQ(dict.at("lin1.weight").shape(), (std::vector<int64_t>{5, 7}));
}

TEST_F(Safetensors, ErrorsNameTheProblem) {
  EXPECT_THROW_WITH(load_safetensors(path("does_not_exist")), IoError, "cannot open",
                    "does_not_exist");
  EXPECT_THROW_WITH(load_safetensors(write_raw("empty_header", "", "")), IoError, "malformed");
  {
    const std::string p = path("tiny");
    std::ofstream(p) << "abc";
    EXPECT_THROW_WITH(load_safetensors(p), IoError, "too short");
  }
  EXPECT_THROW_WITH(load_safetensors(write_raw("huge_len", "{}", "", 1 << 20)), IoError,
                    "header of 1048576 bytes");
  EXPECT_THROW_WITH(load_safetensors(write_raw("badjson", "{\"a\": [1, 2", "")), IoError,
                    "malformed JSON");
  EXPECT_THROW_WITH(load_safetensors(write_raw("notobj", "[1]", "")), IoError, "not a JSON object");
  const std::string f16 = R"({"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})";
  EXPECT_THROW_WITH(load_safetensors(write_raw("f16", f16, "abcd")), IoError, "'w'", "F16",
                    "F32 only");
  const std::string size_mismatch = R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,8]}})";
  EXPECT_THROW_WITH(load_safetensors(write_raw("size", size_mismatch, "12345678")), IoError,
                    "(2, 2)", "16 bytes");
  const std::string past_end = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  EXPECT_THROW_WITH(load_safetensors(write_raw("truncated", past_end, "1234")), IoError,
                    "truncated");
  const std::string overlap =
      R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  EXPECT_THROW_WITH(load_safetensors(write_raw("overlap", overlap, "1234")), IoError,
                    "overlapping");
  const std::string missing_field = R"({"w":{"dtype":"F32","shape":[1]}})";
  EXPECT_THROW_WITH(load_safetensors(write_raw("nofield", missing_field, "1234")), IoError,
                    "data_offsets");
  const std::string negative = R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})";
  EXPECT_THROW_WITH(load_safetensors(write_raw("neg", negative, "1234")), IoError, "shape");
  const std::string rank5 = R"({"w":{"dtype":"F32","shape":[1,1,1,1,1],"data_offsets":[0,4]}})";
  EXPECT_THROW_WITH(load_safetensors(write_raw("rank5", rank5, "1234")), IoError, "dimensions");
  const std::string fraction = R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})";
  EXPECT_THROW_WITH(load_safetensors(write_raw("frac", fraction, "1234")), IoError, "integers");
  EXPECT_THROW_WITH(save_safetensors("/nonexistent_dir/x.safetensors", {}), IoError, "cannot open");
}

}  // namespace
}  // namespace attn
