#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "core/json.h"
#include "core/safetensors_parse.h"
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

// An entry of a header, as save_safetensors writes them.
std::string entry(const std::string& shape, const std::string& begin, const std::string& end,
                  const std::string& dtype = "F32") {
  return "{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" + begin + "," +
         end + "]}";
}

std::string floats(size_t n) { return std::string(4 * n, '\0'); }

std::string repeat(const std::string& s, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

// The defects the issue lists, each of which the previous reader got wrong.

// INT64_MIN was negated in the old JSON parser (undefined behaviour, seen by
// UBSan). Where the reference implementation ignores a value the file loads;
// as a shape or an offset it is refused, naming the number.
TEST_F(Safetensors, Int64MinAnywhere) {
  const std::string min = "-9223372036854775808";
  const std::string ignored =
      R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":)" + min + "}}";
  EXPECT_EQ(load_safetensors(write_raw("min_ignored", ignored, floats(1))).at("w").numel(), 1);
  EXPECT_THROW_WITH(
      load_safetensors(
          write_raw("min_shape", "{\"w\":" + entry("[" + min + "]", "0", "4") + "}", floats(1))),
      IoError, "'w'", min.c_str(), "integers");
  EXPECT_THROW_WITH(load_safetensors(write_raw(
                        "min_offset", "{\"w\":" + entry("[1]", min, "4") + "}", floats(1))),
                    IoError, "'w'", min.c_str());
}

// numel * extent overflowed (undefined behaviour) and ended in a ShapeError.
TEST_F(Safetensors, ElementCountOverflowIsAnIoError) {
  EXPECT_THROW_WITH(load_safetensors(write_raw(
                        "numel_overflow",
                        "{\"w\":" + entry("[1099511627776,1099511627776]", "0", "0") + "}", "")),
                    IoError, "'w'", "overflows");
}

// Integers above 2^64 wrapped: shape (1,) and offsets [0, 4] loaded.
TEST_F(Safetensors, IntegersAbove2To64AreRefused) {
  EXPECT_THROW_WITH(
      load_safetensors(write_raw(
          "wrap_shape", "{\"w\":" + entry("[18446744073709551617]", "0", "4") + "}", floats(1))),
      IoError, "'w'", "18446744073709551617");
  EXPECT_THROW_WITH(
      load_safetensors(
          write_raw("wrap_offsets",
                    "{\"w\":" + entry("[1]", "18446744073709551616", "18446744073709551620") + "}",
                    floats(1))),
      IoError, "'w'", "18446744073709551616");
}

// A repeated field inside an entry was read as its first value.
TEST_F(Safetensors, DuplicateFieldInAnEntry) {
  const std::string dup_field =
      R"({"w":{"dtype":"F32","dtype":"F64","shape":[1],"data_offsets":[0,4]}})";
  EXPECT_THROW_WITH(load_safetensors(write_raw("dup_field", dup_field, floats(1))), IoError,
                    "duplicate key \"dtype\"");
}

// A non-object __metadata__ (or one with non-string values) was skipped.
TEST_F(Safetensors, MetadataMustBeAnObjectOfStrings) {
  for (const std::string metadata : {"5", "\"pt\"", "[]", "true", R"({"k":1})", R"({"k":{}})"}) {
    EXPECT_THROW_WITH(
        load_safetensors(write_raw(
            "metadata", "{\"__metadata__\":" + metadata + ",\"w\":" + entry("[1]", "0", "4") + "}",
            floats(1))),
        IoError, "__metadata__");
  }
}

// Zero-size tensors share their offset with the next tensor (as
// save_safetensors writes them); the old reader sorted by begin only, so the
// order of such tensors decided whether the file loaded.
TEST_F(Safetensors, ZeroSizeTensorsShareAnOffset) {
  const StateDict dict = load_safetensors(write_raw("zero_size",
                                                    "{\"x\":" + entry("[1]", "0", "4") +
                                                        ",\"e\":" + entry("[0]", "0", "0") +
                                                        ",\"f\":" + entry("[2,0]", "4", "4") + "}",
                                                    floats(1)));
  EXPECT_EQ(dict.at("e").shape(), (std::vector<int64_t>{0}));
  EXPECT_EQ(dict.at("f").shape(), (std::vector<int64_t>{2, 0}));
}

// What the reference implementation accepts, attn does too: white space,
// null metadata, fields in any order, unknown fields (ignored, any JSON),
// "-0", escapes (decoded to UTF-8).
TEST_F(Safetensors, AcceptsWhatTheFormatAllows) {
  const std::string header =
      R"(  {"__metadata__":null, "w" : {"z":[1.5e3,-0.25,{"a":[true,false,null]}],)"
      R"("data_offsets":[0,0],"shape":[-0],"dtype":"F32"},)"
      R"("\ud83d\ude00 caf\u00e9\n":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}} )";
  const StateDict dict = load_safetensors(write_raw("accepts", header, floats(1)));
  ASSERT_EQ(dict.size(), 2u);
  EXPECT_EQ(dict.at("w").numel(), 0);
  EXPECT_EQ(dict.count("\xF0\x9F\x98\x80 caf\xC3\xA9\n"), 1u);
  // A tensor name that is not UTF-8 could not be read back: refused on save.
  StateDict bad;
  bad["\xff"] = Tensor({1});
  EXPECT_THROW_WITH(save_safetensors(path("bad_name"), bad), IoError, "UTF-8");
  EXPECT_THROW_WITH(save_safetensors(path("bad_meta"), {}, {{"k", "\xC0\xAF"}}), IoError, "UTF-8");
}

// Messages quote names, dtypes and paths as printable UTF-8: a byte that is
// not part of valid UTF-8, and a control character, appear as \xNN (was: the
// raw bytes, cut mid-character at the 100- or 64-byte limit; a \u001b from
// the header reached the terminal as ESC).
std::string message_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const IoError& e) {
    return e.what();
  }
  return "(no IoError)";
}

void expect_printable(const std::string& message) {
  EXPECT_TRUE(detail::is_valid_utf8(message.data(), message.size())) << message;
  for (const char c : message) {
    EXPECT_FALSE(static_cast<unsigned char>(c) < 0x20 || c == 0x7F) << message;
  }
}

TEST_F(Safetensors, MessagesEscapeBytesThatAreNotPrintable) {
  const std::string body = entry("[1]", "0", "4", "F16");
  std::string m = message_of([&] {
    load_safetensors(write_raw("esc_name", "{\"\\u001b[2J\\u0000\":" + body + "}", floats(1)));
  });
  expect_printable(m);
  EXPECT_NE(m.find("tensor '\\x1b[2J\\x00' has dtype 'F16'"), std::string::npos) << m;
  m = message_of([&] {
    load_safetensors(
        write_raw("esc_dtype", "{\"w\":" + entry("[1]", "0", "4", "F\\u007f") + "}", floats(1)));
  });
  expect_printable(m);
  EXPECT_NE(m.find("dtype 'F\\x7f'"), std::string::npos) << m;
  // A name cut at 100 bytes in the middle of a character ("\xC3\xA9").
  const std::string long_name = std::string(99, 'a') + "\xC3\xA9";
  m = message_of([&] {
    load_safetensors(write_raw("esc_long", "{\"" + long_name + "\":" + body + "}", floats(1)));
  });
  expect_printable(m);
  EXPECT_NE(m.find("'" + std::string(99, 'a') + "...'"), std::string::npos) << m;
  // The JSON reader quotes 64 bytes of a duplicate key.
  const std::string dup = std::string(63, 'a') + "\xC3\xA9";
  m = message_of([&] {
    load_safetensors(write_raw("esc_dup",
                               "{\"" + dup + "\":" + entry("[1]", "0", "4") + ",\"" + dup +
                                   "\":" + entry("[1]", "4", "8") + "}",
                               floats(2)));
  });
  expect_printable(m);
  EXPECT_NE(m.find("duplicate key \"" + std::string(63, 'a') + "\\xc3\""), std::string::npos) << m;
  // Paths and names from the caller.
  const std::string bad_path = path("not_utf8_\xff\xfe.safetensors");
  m = message_of([&] { load_safetensors(bad_path); });
  expect_printable(m);
  EXPECT_NE(m.find("not_utf8_\\xff\\xfe.safetensors': "), std::string::npos) << m;
  StateDict bad;
  bad["\xff\x01"] = Tensor({1});
  m = message_of([&] { save_safetensors(path("bad_name"), bad); });
  expect_printable(m);
  EXPECT_NE(m.find("tensor name '\\xff\\x01' is not valid UTF-8"), std::string::npos) << m;
}

TEST_F(Safetensors, DirectoryIsRefusedByName) {
  // It read as a file that "ended early".
  const std::string dir = path("a_directory.safetensors");
  std::filesystem::create_directories(dir);
  EXPECT_THROW_WITH(load_safetensors(dir), IoError, "load_safetensors", "a_directory",
                    "is a directory");
}

// A path with a NUL byte names a file the OS cannot open: the OS would take
// the prefix, another file (was: read or overwritten silently).
TEST_F(Safetensors, PathWithNulByteIsRefused) {
  const std::string real = path("nul_prefix.safetensors");
  StateDict dict;
  dict["a"] = random_tensor({2}, 5);
  save_safetensors(real, dict);
  const std::string with_nul = real + std::string("\0.other", 7);
  EXPECT_THROW_WITH(load_safetensors(with_nul), IoError, "load_safetensors", "NUL", "\\0.other");
  StateDict other;
  other["b"] = Tensor({3});
  EXPECT_THROW_WITH(save_safetensors(with_nul, other), IoError, "save_safetensors", "NUL");
  const StateDict back = load_safetensors(real);  // the prefix file was not overwritten
  ASSERT_EQ(back.count("a"), 1u);
  EXPECT_TENSOR_EQ(back.at("a"), dict.at("a"));
}

// Each class of hostile header gets an IoError, before any large allocation
// (the sizes below would need terabytes).
TEST_F(Safetensors, HostileHeaders) {
  const auto load = [&](const std::string& header, const std::string& data) {
    return load_safetensors(write_raw("hostile", header, data));
  };
  const auto one = [](const std::string& e) { return "{\"w\":" + e + "}"; };
  // Header length beyond the file, or above the format's 100 MB.
  EXPECT_THROW_WITH(
      load_safetensors(write_raw("len_max", "{}", "", std::numeric_limits<int64_t>::max())),
      IoError, "declares a header of 9223372036854775807 bytes");
  EXPECT_THROW_WITH(load_safetensors(write_raw("len_plus_one", "{}", "", 3)), IoError,
                    "header of 3 bytes", "file has 10 bytes");
  {
    const std::string p = path("len_all_ones");
    std::ofstream(p, std::ios::binary) << std::string(8, '\xff') << "{}";
    EXPECT_THROW_WITH(load_safetensors(p), IoError, "18446744073709551615", "100 MB");
  }
  // Huge and negative shapes; element counts that overflow.
  EXPECT_THROW_WITH(load(one(entry("[1099511627777]", "0", "4")), floats(1)), IoError,
                    "1099511627777", "2^40");
  EXPECT_THROW_WITH(load(one(entry("[1048576,1048576,1048576]", "0", "4")), floats(1)), IoError,
                    "(1048576, 1048576, 1048576)", "2^40");
  EXPECT_THROW_WITH(load(one(entry("[1099511627776,1099511627776,1099511627776,0]", "0", "0")), ""),
                    IoError, "overflows");
  EXPECT_THROW_WITH(load(one(entry("[-4]", "0", "4")), floats(1)), IoError, "-4", "shape");
  EXPECT_THROW_WITH(load(one(entry("[1e2]", "0", "400")), floats(100)), IoError, "1e2", "integers");
  EXPECT_THROW_WITH(load(one(entry("[\"2\"]", "0", "8")), floats(2)), IoError, "non-number");
  EXPECT_THROW_WITH(load(one(entry("{}", "0", "4")), floats(1)), IoError,
                    "\"shape\" is not an array");
  // Data offsets: negative, reversed, overlapping, a hole, past the end,
  // trailing bytes, not a pair.
  EXPECT_THROW_WITH(load(one(entry("[1]", "-4", "0")), floats(1)), IoError, "-4", "data_offsets");
  EXPECT_THROW_WITH(load(one(entry("[1]", "4", "0")), floats(1)), IoError, "reversed", "[4, 0]");
  EXPECT_THROW_WITH(
      load("{\"a\":" + entry("[2]", "0", "8") + ",\"b\":" + entry("[1]", "4", "8") + "}",
           floats(2)),
      IoError, "'b' starts at byte 4", "expected 8", "overlapping");
  EXPECT_THROW_WITH(load(one(entry("[1]", "4", "8")), floats(2)), IoError, "expected 0", "hole");
  EXPECT_THROW_WITH(load(one(entry("[1]", "0", "4")), floats(2)), IoError, "cover 4 bytes",
                    "holds 8", "trailing");
  EXPECT_THROW_WITH(load(one(entry("[2]", "4", "12")), floats(2)), IoError, "past the end");
  EXPECT_THROW_WITH(load(one(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4,8]})"), floats(1)),
                    IoError, "more than two");
  EXPECT_THROW_WITH(load(one(R"({"dtype":"F32","shape":[1],"data_offsets":[4]})"), floats(1)),
                    IoError, "1 data_offsets");
  // Sizes that disagree with shape and dtype.
  EXPECT_THROW_WITH(load(one(entry("[3]", "0", "8")), floats(2)), IoError, "(3,)", "needs 12 bytes",
                    "[0, 8] hold 8");
  // Duplicate keys: tensors, fields, metadata, and keys inside ignored values.
  EXPECT_THROW_WITH(
      load("{\"w\":" + entry("[1]", "0", "4") + ",\"w\":" + entry("[1]", "4", "8") + "}",
           floats(2)),
      IoError, "duplicate key \"w\"");
  EXPECT_THROW_WITH(
      load(one(R"({"dtype":"F32","shape":[1],"shape":[1],"data_offsets":[0,4]})"), floats(1)),
      IoError, "duplicate key \"shape\"");
  EXPECT_THROW_WITH(load(R"({"__metadata__":{"k":"a","k":"b"}})", ""), IoError,
                    "duplicate key \"k\"");
  EXPECT_THROW_WITH(load(R"({"__metadata__":{},"__metadata__":{}})", ""), IoError, "duplicate key");
  EXPECT_THROW_WITH(
      load(one(R"({"dtype":"F32","shape":[],"data_offsets":[0,4],"x":{"a":1,"a":2}})"), floats(1)),
      IoError, "duplicate key \"a\"");
  // Dtypes other than F32, or not a string; missing fields; not an object.
  for (const char* dtype : {"F64", "F16", "BF16", "I64", "U8", "BOOL", "f32", ""}) {
    EXPECT_THROW_WITH(load(one(entry("[1]", "0", "4", dtype)), floats(1)), IoError, "'w' has dtype",
                      "F32 only");
  }
  EXPECT_THROW_WITH(load(one(R"({"dtype":32,"shape":[1],"data_offsets":[0,4]})"), floats(1)),
                    IoError, "\"dtype\" is not a string");
  EXPECT_THROW_WITH(load(one(R"({"shape":[1],"data_offsets":[0,4]})"), floats(1)), IoError,
                    "needs \"dtype\"");
  EXPECT_THROW_WITH(load(R"({"w":[1]})", ""), IoError, "'w' is not a JSON object");
  // Deep JSON: refused at depth 129, anywhere, without exhausting the stack.
  EXPECT_THROW_WITH(load(std::string(100000, '['), ""), IoError, "nesting deeper than 128");
  EXPECT_THROW_WITH(load(one(R"({"dtype":"F32","shape":[],"data_offsets":[0,4],"x":)" +
                             repeat("{\"a\":", 100000) + "}}"),
                         floats(1)),
                    IoError, "nesting deeper than 128");
  // 128 levels in all: the header, the entry and 126 arrays.
  const std::string deep_ok = std::string(126, '[') + std::string(126, ']');
  EXPECT_EQ(
      load(one(R"({"dtype":"F32","shape":[],"data_offsets":[0,4],"x":)" + deep_ok + "}"), floats(1))
          .size(),
      1u);
  // Malformed JSON of every kind.
  const std::string ok_entry = entry("[1]", "0", "4");
  for (const std::string& bad :
       {"{\"w\":" + ok_entry + ",}",
        "{\"w\":" + ok_entry,
        "{\"w\"" + ok_entry + "}",
        "{\"w\":" + ok_entry + "}}",
        "{\"w\":" + ok_entry + "} x",
        "{w:" + ok_entry + "}",
        "{'w':" + ok_entry + "}",
        std::string("{\"w\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}"),
        std::string("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":tru}}"),
        std::string("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1.}}"),
        std::string("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":-}}"),
        std::string("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":+1}}"),
        std::string("{\"w\\q\":") + ok_entry + "}",
        std::string("{\"\\u12\":") + ok_entry + "}",
        std::string("{\"\\ud800\":") + ok_entry + "}",
        std::string("{\"\\udc00\":") + ok_entry + "}",
        std::string("{\"\\ud800\\u0041\":") + ok_entry + "}",
        std::string("{\"a\tb\":") + ok_entry + "}",
        std::string("{\"\xff\":") + ok_entry + "}",
        std::string("{\"\xC0\xAF\":") + ok_entry + "}",
        std::string("{\"\xED\xA0\x80\":") + ok_entry + "}",
        std::string("{\"w\":") + ok_entry + std::string("}\0", 2),
        std::string("{\"unterminated:") + ok_entry + "}",
        std::string(" "),
        std::string("{")}) {
    EXPECT_THROW_WITH(load(bad, floats(1)), IoError, "malformed JSON header");
  }
}

// Every proper prefix of a valid file is refused with an IoError, and so is
// every single-byte change to its length field.
TEST_F(Safetensors, TruncatedFiles) {
  StateDict dict;
  dict["a"] = random_tensor({2, 3}, 7);
  dict["b"] = Tensor({0});
  dict["c"] = random_tensor({1}, 8);
  const std::string p = path("whole.safetensors");
  save_safetensors(p, dict, {{"format", "pt"}});
  std::ifstream in(p, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (size_t n = 0; n < bytes.size(); ++n) {
    const std::string q = path("prefix.safetensors");
    std::ofstream(q, std::ios::binary) << bytes.substr(0, n);
    EXPECT_THROW(load_safetensors(q), IoError) << n << " bytes";
    EXPECT_THROW(detail::parse_safetensors(bytes.data(), n, "prefix"), IoError) << n << " bytes";
  }
  EXPECT_EQ(detail::parse_safetensors(bytes.data(), bytes.size(), "whole").size(), 3u);
  // A directory is not a safetensors file.
  EXPECT_THROW(load_safetensors(::testing::TempDir()), IoError);
}

// Replays every input the fuzzers ever kept (tests/fuzz/corpus/) and their
// seeds: each loads or is refused with an IoError, the same way from a file
// and from memory. scripts/fuzz.sh adds to these directories.
std::vector<std::filesystem::path> files_under(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> files;
  for (const auto& item : std::filesystem::directory_iterator(dir)) {
    if (item.is_regular_file()) files.push_back(item.path());
  }
  return files;
}

std::string read_all(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

const std::filesystem::path kFuzzDir = std::filesystem::path(ATTN_TEST_DATA_DIR) / ".." / "fuzz";

TEST(SafetensorsFuzzCorpus, LoaderInputs) {
  size_t count = 0, loaded = 0;
  for (const char* dir : {"corpus/load_safetensors", "seeds/load_safetensors"}) {
    for (const std::filesystem::path& p : files_under(kFuzzDir / dir)) {
      ++count;
      const std::string bytes = read_all(p);
      std::string from_file, from_memory;
      StateDict a, b;
      try {
        a = load_safetensors(p.string());
      } catch (const IoError& e) {
        from_file = e.what();
      }
      try {
        b = detail::parse_safetensors(bytes.data(), bytes.size(),
                                      "load_safetensors: '" + p.string() + "'");
      } catch (const IoError& e) {
        from_memory = e.what();
      }
      EXPECT_EQ(from_file.empty(), from_memory.empty()) << p << ": " << from_file << from_memory;
      if (from_file.empty() && from_memory.empty()) {
        ++loaded;
        ASSERT_EQ(a.size(), b.size()) << p;
        for (const auto& item : a) EXPECT_TENSOR_EQ(b.at(item.first), item.second);
      }
    }
  }
  EXPECT_GE(count, 20u);
  EXPECT_GE(loaded, 5u);
}

// The loader's seeds also include tests/data/: every file there loads.
TEST(SafetensorsFuzzCorpus, EveryTestFileLoads) {
  size_t count = 0;
  for (const std::filesystem::path& p : files_under(ATTN_TEST_DATA_DIR)) {
    if (p.extension() != ".safetensors") continue;
    ++count;
    EXPECT_NO_THROW(load_safetensors(p.string())) << p;
  }
  EXPECT_GE(count, 10u);
}

TEST(SafetensorsFuzzCorpus, HeaderInputs) {
  size_t count = 0;
  for (const char* dir : {"corpus/safetensors_header", "seeds/safetensors_header"}) {
    for (const std::filesystem::path& p : files_under(kFuzzDir / dir)) {
      ++count;
      const std::string text = read_all(p);
      try {  // as tests/fuzz/fuzz_safetensors_header.cc does
        std::vector<detail::TensorEntry> entries =
            detail::parse_safetensors_header(text.data(), text.size(), p.string());
        uint64_t end = 0;
        for (const detail::TensorEntry& e : entries) end = std::max(end, e.end);
        detail::check_safetensors_layout(entries, end, p.string());
      } catch (const IoError&) {
      }
    }
  }
  EXPECT_GE(count, 20u);
}

}  // namespace
}  // namespace attn
