#include "attn/safetensors.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <fstream>
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

std::string quoted(const std::string& s) { return "'" + s + "'"; }

// Throws IoError unless `path` is free of NUL bytes: the OS would open it up
// to the first one, another file than the caller named.
void check_path(const std::string& path, const char* caller) {
  const size_t nul = path.find('\0');
  if (nul == std::string::npos) return;
  std::string shown = path;
  for (size_t i = nul; i < shown.size(); ++i) {
    if (shown[i] == '\0') shown.replace(i, 1, "\\0");
  }
  throw IoError(std::string(caller) + ": the path " + quoted(shown) + " contains a NUL byte");
}

// A name or value from the file (up to 100 MB), quoted and cut short.
std::string cut(const std::string& s) {
  constexpr size_t kMax = 100;
  return quoted(s.size() <= kMax ? s : s.substr(0, kMax) + "...");
}

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

void read_exactly(std::ifstream& file, char* out, uint64_t count, const std::string& what) {
  file.read(out, static_cast<std::streamsize>(count));
  if (static_cast<uint64_t>(file.gcount()) != count) {
    throw IoError(what + ": error reading (the file ended early: changed while reading?)");
  }
}

}  // namespace

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
  {
    // Syntax first (and duplicate keys), so that a malformed document is
    // reported as such rather than by whichever entry comes first.
    JsonReader syntax(json, size, what);
    syntax.skip_value();
    syntax.finish();
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

StateDict load_safetensors(const std::string& path) {
  const std::string what = "load_safetensors: " + detail::quoted(path);
  detail::check_path(path, "load_safetensors");
  struct stat status;  // a failed stat falls through to the open below
  if (stat(path.c_str(), &status) == 0 && S_ISDIR(status.st_mode)) {
    throw IoError(what + " is a directory");
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) throw IoError("load_safetensors: cannot open " + detail::quoted(path));
  // The size first: nothing is allocated before it bounds the header.
  file.seekg(0, std::ios::end);
  const std::streamoff end = file.tellg();
  file.seekg(0, std::ios::beg);
  if (!file || end < 0) {
    throw IoError(what + ": cannot determine the file's size (not a regular file?)");
  }
  const auto file_size = static_cast<uint64_t>(end);
  if (file_size < 8) throw IoError(detail::too_short(what, file_size));
  char first8[8];
  detail::read_exactly(file, first8, 8, what);
  const uint64_t n =
      detail::safetensors_header_size(reinterpret_cast<unsigned char*>(first8), file_size, what);
  std::vector<detail::TensorEntry> entries;
  {
    std::string header(static_cast<size_t>(n), '\0');  // n <= file_size - 8
    detail::read_exactly(file, &header[0], n, what);
    entries = detail::parse_safetensors_header(header.data(), header.size(), what);
  }
  detail::check_safetensors_layout(entries, file_size - 8 - n, what);
  // Sorted by offset and contiguous: the data is read in one sequential pass,
  // straight into the tensors.
  StateDict result;
  for (detail::TensorEntry& e : entries) {
    Tensor t = detail::make_tensor(e, what);
    detail::read_exactly(file, reinterpret_cast<char*>(t.data()), e.end - e.begin, what);
    result.emplace(std::move(e.name), std::move(t));
  }
  return result;
}

void save_safetensors(const std::string& path, const StateDict& tensors,
                      const std::map<std::string, std::string>& metadata) {
  detail::check_path(path, "save_safetensors");
  // The header must be UTF-8 JSON for load_safetensors (and the reference
  // implementation) to read it back.
  const auto check_utf8 = [](const std::string& s, const char* role) {
    if (!detail::is_valid_utf8(s.data(), s.size())) {
      throw IoError(std::string("save_safetensors: ") + role + " " + detail::cut(s) +
                    " is not valid UTF-8 (safetensors headers are UTF-8 JSON)");
    }
  };
  std::string header = "{";
  bool first = true;
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    for (const auto& kv : metadata) {
      check_utf8(kv.first, "metadata key");
      check_utf8(kv.second, "metadata value");
      if (!first) header += ',';
      first = false;
      detail::append_json_string(header, kv.first);
      header += ':';
      detail::append_json_string(header, kv.second);
    }
    header += '}';
  }
  uint64_t offset = 0;
  for (const auto& item : tensors) {
    if (item.first == "__metadata__") {
      throw IoError("save_safetensors: '__metadata__' is reserved and cannot name a tensor");
    }
    check_utf8(item.first, "tensor name");
    header += header.size() > 1 ? "," : "";
    detail::append_json_string(header, item.first);
    header += ":{\"dtype\":\"F32\",\"shape\":[";
    const std::vector<int64_t>& shape = item.second.shape();
    for (size_t d = 0; d < shape.size(); ++d) header += (d ? "," : "") + std::to_string(shape[d]);
    const uint64_t bytes = static_cast<uint64_t>(item.second.numel()) * 4;
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  header += '}';
  // Pad with spaces so that the data section starts 8-byte aligned.
  while ((header.size() + 8) % 8 != 0) header += ' ';

  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  if (!file)
    throw IoError("save_safetensors: cannot open " + detail::quoted(path) + " for writing");
  uint64_t size = header.size();
  char size_bytes[8];
  for (int i = 0; i < 8; ++i) size_bytes[i] = static_cast<char>((size >> (8 * i)) & 0xFF);
  file.write(size_bytes, 8);
  file.write(header.data(), static_cast<std::streamsize>(header.size()));
  for (const auto& item : tensors) {
    file.write(reinterpret_cast<const char*>(item.second.data()),
               static_cast<std::streamsize>(item.second.numel() * 4));
  }
  file.flush();
  if (!file) throw IoError("save_safetensors: error writing " + detail::quoted(path));
}

}  // namespace attn
