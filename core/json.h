// A small pull parser for safetensors headers (RFC 8259 JSON, read in place,
// no document tree): the caller walks the values it expects and skips the
// others, so memory stays proportional to what it keeps. Strict where the
// format's reference implementation (serde_json) is, and stricter on one
// point: a duplicate key in any object is an error.
//  - The text must be valid UTF-8; \u escapes must pair their surrogates.
//  - Nesting deeper than kMaxDepth arrays/objects is refused (serde_json's
//    recursion limit), so no input can exhaust the stack.
//  - Numbers are scanned without arithmetic overflow: integers above
//    2^64 - 1 and negative ones are reported to the caller, never wrapped.
// Errors throw attn::IoError: "<what>: malformed JSON header at byte N: why".
#pragma once

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace attn {
namespace detail {

class JsonReader {
 public:
  static constexpr size_t kMaxDepth = 128;

  enum class Kind { kObject, kArray, kString, kNumber, kTrue, kFalse, kNull };

  // A number token as written. `magnitude` is exact when `integer` (no
  // fraction or exponent) and not `overflow` (above 2^64 - 1).
  struct Number {
    bool negative = false;
    bool integer = true;
    bool overflow = false;
    uint64_t magnitude = 0;
    std::string text;  // the token, cut to 40 characters, for messages
  };

  // `text` must outlive the reader. Throws IoError if it is not UTF-8.
  JsonReader(const char* text, size_t size, const std::string& what);

  // The kind of the next value (skips white space). Throws at the end of the
  // text or on a character that starts no value.
  Kind peek();

  // Objects: begin_object(), then `while (next_key(key)) { read one value }`.
  // next_key consumes the separator, the key and the ':'; it returns false
  // (and consumes the '}') at the end of the object. A key seen before in the
  // same object throws.
  void begin_object();
  bool next_key(std::string& key);

  // Arrays: begin_array(), then `while (next_element()) { read one value }`.
  void begin_array();
  bool next_element();

  std::string read_string();
  Number read_number();
  // Any value, checked as thoroughly as if it were read.
  void skip_value();

  // Only white space may remain.
  void finish();

  // Byte offset of the next character, for messages.
  size_t position() const { return pos_; }

  [[noreturn]] void fail(const std::string& why) const;

 private:
  struct Frame {
    bool object;
    bool first = true;
    std::set<std::string> keys;  // objects only: the keys already read
  };

  void skip_space();
  char next_char();  // after white space; throws at the end
  void push(bool object);
  void append_escape(std::string& out);
  uint32_t read_hex4();

  const char* text_;
  size_t size_;
  const std::string& what_;
  size_t pos_ = 0;
  std::vector<Frame> stack_;
};

// True when the bytes are well-formed UTF-8 (no overlong forms, surrogates or
// code points above U+10FFFF), as Rust's std::str::from_utf8 requires.
bool is_valid_utf8(const char* text, size_t size);

// Appends `s` to `out` as a JSON string literal (quotes and escapes).
void append_json_string(std::string& out, const std::string& s);

}  // namespace detail
}  // namespace attn
