#include "core/json.h"

#include <cstdio>

#include "attn/error.h"

namespace attn {
namespace detail {
namespace {

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

void append_utf8(std::string& out, uint32_t code) {
  if (code < 0x80) {
    out += static_cast<char>(code);
  } else if (code < 0x800) {
    out += static_cast<char>(0xC0 | (code >> 6));
    out += static_cast<char>(0x80 | (code & 0x3F));
  } else if (code < 0x10000) {
    out += static_cast<char>(0xE0 | (code >> 12));
    out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (code >> 18));
    out += static_cast<char>(0x80 | ((code >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code & 0x3F));
  }
}

}  // namespace

bool is_valid_utf8(const char* text, size_t size) {
  const auto* s = reinterpret_cast<const unsigned char*>(text);
  size_t i = 0;
  while (i < size) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t length;
    unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      length = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      length = 3;
      if (c == 0xE0) lo = 0xA0;  // overlong
      if (c == 0xED) hi = 0x9F;  // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      length = 4;
      if (c == 0xF0) lo = 0x90;  // overlong
      if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
    } else {
      return false;
    }
    if (size - i < length || s[i + 1] < lo || s[i + 1] > hi) return false;
    for (size_t k = 2; k < length; ++k) {
      if (s[i + k] < 0x80 || s[i + k] > 0xBF) return false;
    }
    i += length;
  }
  return true;
}

JsonReader::JsonReader(const char* text, size_t size, const std::string& what)
    : text_(text), size_(size), what_(what) {
  if (!is_valid_utf8(text, size)) {
    throw IoError(what_ + ": malformed JSON header: not valid UTF-8");
  }
}

void JsonReader::fail(const std::string& why) const {
  throw IoError(what_ + ": malformed JSON header at byte " + std::to_string(pos_) + ": " + why);
}

void JsonReader::skip_space() {
  while (pos_ < size_ && is_space(text_[pos_])) ++pos_;
}

char JsonReader::next_char() {
  skip_space();
  if (pos_ >= size_) fail("unexpected end of the header");
  return text_[pos_];
}

JsonReader::Kind JsonReader::peek() {
  const char c = next_char();
  switch (c) {
    case '{':
      return Kind::kObject;
    case '[':
      return Kind::kArray;
    case '"':
      return Kind::kString;
    case 't':
      return Kind::kTrue;
    case 'f':
      return Kind::kFalse;
    case 'n':
      return Kind::kNull;
    default:
      if (c == '-' || is_digit(c)) return Kind::kNumber;
  }
  if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7F) {
    char code[8];
    std::snprintf(code, sizeof(code), "0x%02x", static_cast<unsigned>(static_cast<uint8_t>(c)));
    fail(std::string("unexpected byte ") + code);
  }
  fail(std::string("unexpected character '") + c + "'");
}

void JsonReader::push(bool object) {
  if (stack_.size() >= kMaxDepth) {
    fail("nesting deeper than " + std::to_string(kMaxDepth) + " arrays and objects");
  }
  ++pos_;  // '{' or '['
  stack_.push_back(Frame{object, true, {}});
}

void JsonReader::begin_object() {
  if (peek() != Kind::kObject) fail("expected '{'");
  push(true);
}

void JsonReader::begin_array() {
  if (peek() != Kind::kArray) fail("expected '['");
  push(false);
}

bool JsonReader::next_key(std::string& key) {
  Frame& frame = stack_.back();
  char c = next_char();
  if (c == '}') {
    ++pos_;
    stack_.pop_back();
    return false;
  }
  if (!frame.first) {
    if (c != ',') fail("expected ',' or '}'");
    ++pos_;
    c = next_char();
  }
  frame.first = false;
  if (c != '"') fail("expected a string key");
  const size_t at = pos_;
  key = read_string();
  if (!frame.keys.insert(key).second) {
    pos_ = at;
    fail("duplicate key \"" + key.substr(0, 64) + "\"");
  }
  if (next_char() != ':') fail("expected ':'");
  ++pos_;
  return true;
}

bool JsonReader::next_element() {
  Frame& frame = stack_.back();
  const char c = next_char();
  if (c == ']') {
    ++pos_;
    stack_.pop_back();
    return false;
  }
  if (!frame.first) {
    if (c != ',') fail("expected ',' or ']'");
    ++pos_;
  }
  frame.first = false;
  return true;
}

std::string JsonReader::read_string() {
  if (peek() != Kind::kString) fail("expected a string");
  ++pos_;
  std::string out;
  while (true) {
    if (pos_ >= size_) fail("unterminated string");
    const char c = text_[pos_];
    if (c == '"') {
      ++pos_;
      return out;
    }
    if (static_cast<unsigned char>(c) < 0x20) fail("control character in a string");
    if (c == '\\') {
      append_escape(out);
    } else {
      out += c;
      ++pos_;
    }
  }
}

void JsonReader::append_escape(std::string& out) {
  ++pos_;  // backslash
  if (pos_ >= size_) fail("unterminated escape");
  const char e = text_[pos_++];
  switch (e) {
    case '"':
    case '\\':
    case '/':
      out += e;
      return;
    case 'b':
      out += '\b';
      return;
    case 'f':
      out += '\f';
      return;
    case 'n':
      out += '\n';
      return;
    case 'r':
      out += '\r';
      return;
    case 't':
      out += '\t';
      return;
    case 'u':
      break;
    default:
      --pos_;
      fail("invalid escape");
  }
  uint32_t code = read_hex4();
  if (code >= 0xDC00 && code <= 0xDFFF) fail("lone low surrogate in a \\u escape");
  if (code >= 0xD800 && code <= 0xDBFF) {
    if (size_ - pos_ < 2 || text_[pos_] != '\\' || text_[pos_ + 1] != 'u') {
      fail("lone high surrogate in a \\u escape");
    }
    pos_ += 2;
    const uint32_t low = read_hex4();
    if (low < 0xDC00 || low > 0xDFFF) fail("lone high surrogate in a \\u escape");
    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
  }
  append_utf8(out, code);
}

uint32_t JsonReader::read_hex4() {
  if (size_ - pos_ < 4) fail("truncated \\u escape");
  uint32_t code = 0;
  for (int i = 0; i < 4; ++i) {
    const char h = text_[pos_];
    uint32_t digit;
    if (h >= '0' && h <= '9') {
      digit = static_cast<uint32_t>(h - '0');
    } else if (h >= 'a' && h <= 'f') {
      digit = static_cast<uint32_t>(h - 'a' + 10);
    } else if (h >= 'A' && h <= 'F') {
      digit = static_cast<uint32_t>(h - 'A' + 10);
    } else {
      fail("invalid \\u escape");
    }
    code = (code << 4) | digit;
    ++pos_;
  }
  return code;
}

JsonReader::Number JsonReader::read_number() {
  if (peek() != Kind::kNumber) fail("expected a number");
  const size_t start = pos_;
  Number n;
  if (text_[pos_] == '-') {
    n.negative = true;
    ++pos_;
  }
  // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  if (pos_ >= size_ || !is_digit(text_[pos_])) fail("expected a digit");
  if (text_[pos_] == '0' && pos_ + 1 < size_ && is_digit(text_[pos_ + 1])) {
    fail("leading zero in a number");
  }
  for (; pos_ < size_ && is_digit(text_[pos_]); ++pos_) {
    const auto digit = static_cast<uint64_t>(text_[pos_] - '0');
    if (n.magnitude > (UINT64_MAX - digit) / 10) n.overflow = true;
    if (!n.overflow) n.magnitude = n.magnitude * 10 + digit;
  }
  if (pos_ < size_ && text_[pos_] == '.') {
    n.integer = false;
    ++pos_;
    if (pos_ >= size_ || !is_digit(text_[pos_])) fail("expected a digit after '.'");
    while (pos_ < size_ && is_digit(text_[pos_])) ++pos_;
  }
  if (pos_ < size_ && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
    n.integer = false;
    ++pos_;
    if (pos_ < size_ && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
    if (pos_ >= size_ || !is_digit(text_[pos_])) fail("expected a digit in the exponent");
    while (pos_ < size_ && is_digit(text_[pos_])) ++pos_;
  }
  const size_t length = pos_ - start;
  n.text.assign(text_ + start, length < 40 ? length : 40);
  if (length > 40) n.text += "...";
  return n;
}

void JsonReader::skip_value() {
  std::string key;
  switch (peek()) {
    case Kind::kObject:
      begin_object();
      while (next_key(key)) skip_value();
      return;
    case Kind::kArray:
      begin_array();
      while (next_element()) skip_value();
      return;
    case Kind::kString:
      read_string();
      return;
    case Kind::kNumber:
      read_number();
      return;
    case Kind::kTrue:
    case Kind::kFalse:
    case Kind::kNull:
      break;
  }
  const char* word = text_[pos_] == 't' ? "true" : text_[pos_] == 'f' ? "false" : "null";
  for (const char* p = word; *p != '\0'; ++p, ++pos_) {
    if (pos_ >= size_ || text_[pos_] != *p) fail(std::string("expected ") + word);
  }
}

void JsonReader::finish() {
  skip_space();
  if (pos_ != size_) fail("trailing characters after the JSON value");
}

void append_json_string(std::string& out, const std::string& s) {
  out += '"';
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buffer[8];
      std::snprintf(buffer, sizeof(buffer), "\\u%04x", static_cast<unsigned>(c));
      out += buffer;
    } else {
      out += c;
    }
  }
  out += '"';
}

}  // namespace detail
}  // namespace attn
