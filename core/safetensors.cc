#include "attn/safetensors.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include "attn/error.h"
#include "core/json.h"

namespace attn {
namespace {

// The reference implementation's limit on the JSON header.
constexpr uint64_t kMaxHeaderBytes = 100u * 1000u * 1000u;

struct Entry {
  std::string name;
  std::vector<int64_t> shape;
  uint64_t begin, end;
};

std::string quoted(const std::string& s) { return "'" + s + "'"; }

Entry parse_entry(const std::string& path, const std::string& name, const detail::JsonValue& v) {
  using Type = detail::JsonValue::Type;
  const std::string where = path + ": tensor " + quoted(name);
  if (v.type != Type::kObject) throw IoError(where + " is not a JSON object");
  const detail::JsonValue* dtype = v.find("dtype");
  const detail::JsonValue* shape = v.find("shape");
  const detail::JsonValue* offsets = v.find("data_offsets");
  if (dtype == nullptr || dtype->type != Type::kString || shape == nullptr ||
      shape->type != Type::kArray || offsets == nullptr || offsets->type != Type::kArray ||
      offsets->array.size() != 2) {
    throw IoError(where +
                  " needs \"dtype\" (string), \"shape\" (array) and \"data_offsets\" "
                  "([begin, end])");
  }
  if (dtype->string != "F32") {
    throw IoError(where + " has dtype " + dtype->string +
                  "; attn reads F32 only (convert with tensor.float() before saving)");
  }
  Entry entry{name, {}, 0, 0};
  int64_t numel = 1;
  for (const detail::JsonValue& extent : shape->array) {
    if (extent.type != Type::kInteger || extent.integer < 0 ||
        extent.integer > (int64_t{1} << 40)) {
      throw IoError(where + " has an invalid shape extent");
    }
    entry.shape.push_back(extent.integer);
    numel = numel * extent.integer;
    if (numel > (int64_t{1} << 40)) throw IoError(where + " is too large");
  }
  if (entry.shape.size() > Tensor::kMaxRank) {
    throw IoError(where + " has shape " + shape_to_string(entry.shape) + "; attn supports up to " +
                  std::to_string(Tensor::kMaxRank) + " dimensions");
  }
  for (const detail::JsonValue& o : offsets->array) {
    if (o.type != Type::kInteger || o.integer < 0)
      throw IoError(where + " has invalid data_offsets");
  }
  entry.begin = static_cast<uint64_t>(offsets->array[0].integer);
  entry.end = static_cast<uint64_t>(offsets->array[1].integer);
  if (entry.end < entry.begin || entry.end - entry.begin != static_cast<uint64_t>(numel) * 4) {
    throw IoError(where + " of shape " + shape_to_string(entry.shape) + " needs " +
                  std::to_string(numel * 4) + " bytes but data_offsets [" +
                  std::to_string(entry.begin) + ", " + std::to_string(entry.end) + "] hold " +
                  std::to_string(static_cast<int64_t>(entry.end - entry.begin)));
  }
  return entry;
}

}  // namespace

StateDict load_safetensors(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw IoError("load_safetensors: cannot open " + quoted(path));
  const std::vector<char> bytes((std::istreambuf_iterator<char>(file)),
                                std::istreambuf_iterator<char>());
  if (file.bad()) throw IoError("load_safetensors: error reading " + quoted(path));
  if (bytes.size() < 8) {
    throw IoError("load_safetensors: " + quoted(path) + " is " + std::to_string(bytes.size()) +
                  " bytes, too short for a safetensors header");
  }
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | static_cast<uint8_t>(bytes[i]);
  if (header_size > kMaxHeaderBytes || header_size > bytes.size() - 8) {
    throw IoError("load_safetensors: " + quoted(path) + " declares a header of " +
                  std::to_string(header_size) + " bytes but the file has " +
                  std::to_string(bytes.size()) + " bytes");
  }
  const std::string header(bytes.data() + 8, static_cast<size_t>(header_size));
  const detail::JsonValue root = detail::parse_json(header, "load_safetensors: " + quoted(path));
  if (root.type != detail::JsonValue::Type::kObject) {
    throw IoError("load_safetensors: " + quoted(path) + ": the header is not a JSON object");
  }
  const char* data = bytes.data() + 8 + header_size;
  const uint64_t data_size = bytes.size() - 8 - header_size;

  std::vector<Entry> entries;
  for (const auto& member : root.object) {
    if (member.first == "__metadata__") continue;
    for (const Entry& e : entries) {
      if (e.name == member.first) {
        throw IoError("load_safetensors: " + quoted(path) + ": tensor " + quoted(member.first) +
                      " appears twice");
      }
    }
    entries.push_back(parse_entry(path, member.first, member.second));
  }
  // The tensors must tile the data section exactly: no overlap, no hole.
  std::vector<const Entry*> by_offset;
  for (const Entry& e : entries) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const Entry* a, const Entry* b) { return a->begin < b->begin; });
  uint64_t expected_begin = 0;
  for (const Entry* e : by_offset) {
    if (e->begin != expected_begin) {
      throw IoError("load_safetensors: " + quoted(path) + ": tensor " + quoted(e->name) +
                    " starts at byte " + std::to_string(e->begin) + " of the data, expected " +
                    std::to_string(expected_begin) + " (overlapping tensors or a hole)");
    }
    expected_begin = e->end;
  }
  if (expected_begin != data_size) {
    throw IoError("load_safetensors: " + quoted(path) + ": the tensors cover " +
                  std::to_string(expected_begin) + " bytes of data but the file holds " +
                  std::to_string(data_size) + " (truncated or trailing bytes)");
  }

  StateDict result;
  for (const Entry& e : entries) {
    Tensor t(e.shape);
    if (t.numel() > 0) std::memcpy(t.data(), data + e.begin, static_cast<size_t>(e.end - e.begin));
    result.emplace(e.name, std::move(t));
  }
  return result;
}

void save_safetensors(const std::string& path, const StateDict& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::string header = "{";
  bool first = true;
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    for (const auto& kv : metadata) {
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
  if (!file) throw IoError("save_safetensors: cannot open " + quoted(path) + " for writing");
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
  if (!file) throw IoError("save_safetensors: error writing " + quoted(path));
}

}  // namespace attn
