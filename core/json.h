// A minimal JSON reader for safetensors headers: objects, arrays, strings,
// integers, true/false/null. Not a general-purpose JSON library: numbers with
// fractions or exponents are rejected, object keys keep file order.
// Errors throw attn::IoError with the byte offset.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace attn {
namespace detail {

struct JsonValue {
  enum class Type { kNull, kBool, kInteger, kString, kArray, kObject };
  Type type = Type::kNull;
  bool boolean = false;
  int64_t integer = 0;
  std::string string;
  std::vector<JsonValue> array;
  std::vector<std::pair<std::string, JsonValue>> object;

  // The member `key` of an object, or nullptr.
  const JsonValue* find(const std::string& key) const;
};

// Parses `text` (the whole of it must be one JSON value). `what` names the
// source in error messages.
JsonValue parse_json(const std::string& text, const std::string& what);

// Appends `s` to `out` as a JSON string literal (quotes and escapes).
void append_json_string(std::string& out, const std::string& s);

}  // namespace detail
}  // namespace attn
