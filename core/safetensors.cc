// The safetensors format (attn/safetensors.h): the header parser, the layout
// checks and the conversion of a file held in memory; the file side (open,
// read, atomic save) is core/safetensors_io.cc.
#include "attn/safetensors.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <utility>
#include <vector>

#include "attn/error.h"
#include "core/json.h"
#include "core/safetensors_parse.h"

namespace attn {
namespace detail {
namespace {

using Kind = JsonReader::Kind;

// Limits of attn's tensors (see Tensor): an extent or element count above
// 2^40 could never be backed by a file anyway.
constexpr uint64_t kMaxExtent = uint64_t{1} << 40;
constexpr uint64_t kMaxNumel = uint64_t{1} << 40;

}  // namespace

// `s` as printable UTF-8, for a message that quotes a name, a dtype or a
// path: each byte that is not part of valid UTF-8, and each byte of a control
// character (C0, DEL, C1), becomes \xNN. Backslashes are kept as they are, so
// that a message passes through unchanged a second time.
std::string printable(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  const auto escape = [&out](unsigned char byte) {
    char code[5];
    std::snprintf(code, sizeof(code), "\\x%02x", static_cast<unsigned>(byte));
    out += code;
  };
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t length = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (length > s.size() - i || !is_valid_utf8(s.data() + i, length)) {
      escape(c);  // the bytes after it are looked at on their own
      ++i;
      continue;
    }
    const bool control =
        c < 0x20 || c == 0x7F || (c == 0xC2 && static_cast<unsigned char>(s[i + 1]) < 0xA0);
    for (size_t k = 0; k < length; ++k) {
      if (control) {
        escape(static_cast<unsigned char>(s[i + k]));
      } else {
        out += s[i + k];
      }
    }
    i += length;
  }
  return out;
}

std::string in_quotes(const std::string& s) { return "'" + printable(s) + "'"; }

// Throws IoError unless `path` is free of NUL bytes: the OS would open it up
// to the first one, another file than the caller named.
void check_path(const std::string& path, const char* caller) {
  const size_t nul = path.find('\0');
  if (nul == std::string::npos) return;
  std::string shown = path;
  for (size_t i = nul; i < shown.size(); ++i) {
    if (shown[i] == '\0') shown.replace(i, 1, "\\0");
  }
  throw IoError(std::string(caller) + ": the path " + in_quotes(shown) + " contains a NUL byte");
}

// A name or value from the file (up to 100 MB), quoted and cut short (not
// in the middle of a UTF-8 character: back over up to 3 continuation bytes).
std::string cut(const std::string& s) {
  constexpr size_t kMax = 100;
  if (s.size() <= kMax) return in_quotes(s);
  size_t n = kMax;
  while (n > kMax - 3 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return in_quotes(s.substr(0, n) + "...");
}

namespace {

std::string offsets_to_string(const TensorEntry& e) {
  return "[" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]";
}

// An integer in [0, max]; "-0" is 0 as in serde_json.
bool to_unsigned(const JsonReader::Number& n, uint64_t max, uint64_t& out) {
  if (!n.integer || n.overflow || (n.negative && n.magnitude != 0) || n.magnitude > max) {
    return false;
  }
  out = n.magnitude;
  return true;
}

void read_shape(JsonReader& in, const std::string& where, TensorEntry& entry) {
  const std::string rule = "; extents must be integers from 0 to 2^40";
  if (in.peek() != Kind::kArray) throw IoError(where + ": \"shape\" is not an array" + rule);
  in.begin_array();
  while (in.next_element()) {
    if (entry.shape.size() == Tensor::kMaxRank) {
      throw IoError(where + " has more than " + std::to_string(Tensor::kMaxRank) +
                    " extents in \"shape\"; attn supports up to " +
                    std::to_string(Tensor::kMaxRank) + " dimensions");
    }
    if (in.peek() != Kind::kNumber) throw IoError(where + ": \"shape\" holds a non-number" + rule);
    const JsonReader::Number n = in.read_number();
    uint64_t extent = 0;
    if (!to_unsigned(n, kMaxExtent, extent)) {
      throw IoError(where + " has shape extent " + n.text + rule);
    }
    entry.shape.push_back(static_cast<int64_t>(extent));
  }
}

void read_offsets(JsonReader& in, const std::string& where, TensorEntry& entry) {
  const std::string rule = "; \"data_offsets\" must be [begin, end], integers from 0 to 2^64 - 1";
  if (in.peek() != Kind::kArray) throw IoError(where + ": \"data_offsets\" is not an array" + rule);
  in.begin_array();
  uint64_t values[2] = {0, 0};
  size_t count = 0;
  while (in.next_element()) {
    if (count == 2) throw IoError(where + " has more than two \"data_offsets\"" + rule);
    if (in.peek() != Kind::kNumber) {
      throw IoError(where + ": \"data_offsets\" holds a non-number" + rule);
    }
    const JsonReader::Number n = in.read_number();
    if (!to_unsigned(n, UINT64_MAX, values[count])) {
      throw IoError(where + " has data offset " + n.text + rule);
    }
    ++count;
  }
  if (count != 2) throw IoError(where + " has " + std::to_string(count) + " data_offsets" + rule);
  entry.begin = values[0];
  entry.end = values[1];
}

TensorEntry read_entry(JsonReader& in, std::string name, const std::string& what) {
  const std::string where = what + ": tensor " + cut(name);
  if (in.peek() != Kind::kObject) throw IoError(where + " is not a JSON object");
  TensorEntry entry;
  bool has_dtype = false, has_shape = false, has_offsets = false;
  in.begin_object();
  std::string key;
  while (in.next_key(key)) {  // a repeated field throws here
    if (key == "dtype") {
      if (in.peek() != Kind::kString) throw IoError(where + ": \"dtype\" is not a string");
      const std::string dtype = in.read_string();
      if (dtype != "F32") {
        throw IoError(where + " has dtype " + cut(dtype) +
                      "; attn reads F32 only (convert with tensor.float() before saving)");
      }
      has_dtype = true;
    } else if (key == "shape") {
      read_shape(in, where, entry);
      has_shape = true;
    } else if (key == "data_offsets") {
      read_offsets(in, where, entry);
      has_offsets = true;
    } else {
      in.skip_value();  // the reference implementation ignores unknown fields
    }
  }
  if (!has_dtype || !has_shape || !has_offsets) {
    throw IoError(where +
                  " needs \"dtype\" (string), \"shape\" (array) and \"data_offsets\" "
                  "([begin, end])");
  }
  if (entry.end < entry.begin) {
    throw IoError(where + " has reversed data_offsets " + offsets_to_string(entry));
  }
  // Extents are at most 2^40 each, but their product and its byte size can
  // still overflow 64 bits: checked.
  uint64_t numel = 1, bytes = 0;
  for (const int64_t extent : entry.shape) {
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(extent), &numel)) {
      throw IoError(where + " has shape " + shape_to_string(entry.shape) +
                    " whose element count overflows 64 bits");
    }
  }
  if (numel > kMaxNumel) {
    throw IoError(where + " has shape " + shape_to_string(entry.shape) + " of " +
                  std::to_string(numel) + " elements; attn's limit is 2^40");
  }
  bytes = numel * sizeof(float);  // <= 2^42: no overflow
  if (entry.end - entry.begin != bytes) {
    throw IoError(where + " of shape " + shape_to_string(entry.shape) + " needs " +
                  std::to_string(bytes) + " bytes but data_offsets " + offsets_to_string(entry) +
                  " hold " + std::to_string(entry.end - entry.begin));
  }
  entry.name = std::move(name);
  return entry;
}

// "__metadata__": null or an object of strings (serde: Option<HashMap<String, String>>).
void read_metadata(JsonReader& in, const std::string& what) {
  const Kind kind = in.peek();
  if (kind == Kind::kNull) {
    in.skip_value();
    return;
  }
  if (kind != Kind::kObject) {
    throw IoError(what + ": \"__metadata__\" is not a JSON object (of string values)");
  }
  in.begin_object();
  std::string key;
  while (in.next_key(key)) {
    if (in.peek() != Kind::kString) {
      throw IoError(what + ": \"__metadata__\" value " + cut(key) + " is not a string");
    }
    in.read_string();
  }
}

}  // namespace

std::string too_short(const std::string& what, uint64_t size) {
  return what + " is " + std::to_string(size) + " bytes, too short for a safetensors header";
}

// A tensor for the entry (its data to be filled in). Tensor refuses more
// bytes than the machine's memory with a ShapeError: an IoError here.
Tensor make_tensor(const TensorEntry& e, const std::string& what) {
  try {
    return Tensor::empty(e.shape);
  } catch (const ShapeError& error) {
    throw IoError(what + ": tensor " + cut(e.name) + " cannot be allocated: " + error.what());
  }
}

uint64_t safetensors_header_size(const unsigned char* first8, uint64_t file_size,
                                 const std::string& what) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | first8[i];
  if (n > kMaxSafetensorsHeaderBytes || n > file_size - 8) {
    throw IoError(what + " declares a header of " + std::to_string(n) + " bytes but the file has " +
                  std::to_string(file_size) + " bytes" +
                  (n > kMaxSafetensorsHeaderBytes ? " (and the format's limit is 100 MB)" : ""));
  }
  return n;
}

std::vector<TensorEntry> parse_safetensors_header(const char* json, size_t size,
                                                  const std::string& what) {
  try {
    // Syntax first (and duplicate keys), so that a malformed document is
    // reported as such rather than by whichever entry comes first.
    JsonReader syntax(json, size, what);
    syntax.skip_value();
    syntax.finish();
  } catch (const IoError& error) {
    // The reader quotes up to 64 bytes of a duplicate key: control
    // characters (from \u escapes), or a character cut in two.
    throw IoError(printable(error.what()));
  }
  JsonReader in(json, size, what);
  if (in.peek() != Kind::kObject) throw IoError(what + ": the header is not a JSON object");
  in.begin_object();
  std::vector<TensorEntry> entries;
  std::string key;
  while (in.next_key(key)) {  // a repeated tensor name throws here
    if (key == "__metadata__") {
      read_metadata(in, what);
    } else {
      entries.push_back(read_entry(in, std::move(key), what));
    }
  }
  in.finish();
  return entries;
}

void check_safetensors_layout(std::vector<TensorEntry>& entries, uint64_t data_size,
                              const std::string& what) {
  std::sort(entries.begin(), entries.end(), [](const TensorEntry& a, const TensorEntry& b) {
    if (a.begin != b.begin) return a.begin < b.begin;
    if (a.end != b.end) return a.end < b.end;
    return a.name < b.name;
  });
  uint64_t expected_begin = 0;
  for (const TensorEntry& e : entries) {
    if (e.end > data_size) {
      throw IoError(what + ": tensor " + cut(e.name) + " has data_offsets " + offsets_to_string(e) +
                    " past the end of the data section (" + std::to_string(data_size) +
                    " bytes): truncated file?");
    }
    if (e.begin != expected_begin) {
      throw IoError(what + ": tensor " + cut(e.name) + " starts at byte " +
                    std::to_string(e.begin) + " of the data, expected " +
                    std::to_string(expected_begin) + " (overlapping tensors or a hole)");
    }
    expected_begin = e.end;
  }
  if (expected_begin != data_size) {
    throw IoError(what + ": the tensors cover " + std::to_string(expected_begin) +
                  " bytes of data but the file holds " + std::to_string(data_size) +
                  " (trailing bytes)");
  }
}

StateDict parse_safetensors(const char* data, size_t size, const std::string& what) {
  if (size < 8) throw IoError(too_short(what, size));
  const uint64_t n =
      safetensors_header_size(reinterpret_cast<const unsigned char*>(data), size, what);
  std::vector<TensorEntry> entries = parse_safetensors_header(data + 8, n, what);
  check_safetensors_layout(entries, size - 8 - n, what);
  const char* section = data + 8 + n;
  StateDict result;
  for (TensorEntry& e : entries) {
    Tensor t = make_tensor(e, what);
    if (e.end > e.begin) std::memcpy(t.data(), section + e.begin, e.end - e.begin);
    result.emplace(std::move(e.name), std::move(t));
  }
  return result;
}

}  // namespace detail
}  // namespace attn
