// The safetensors reader's stages, exposed for the fuzz harnesses and tests
// (tests/fuzz/). load_safetensors() uses them on a file, parse_safetensors()
// on bytes in memory; both accept and refuse exactly the same inputs.
// Every error is an attn::IoError whose message starts with `what`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "attn/module.h"

namespace attn {
namespace detail {

// The reference implementation's limit on the JSON header.
constexpr uint64_t kMaxSafetensorsHeaderBytes = 100u * 1000u * 1000u;

struct TensorEntry {
  std::string name;
  std::vector<int64_t> shape;  // rank <= Tensor::kMaxRank, extents <= 2^40
  uint64_t begin = 0;          // byte range in the data section
  uint64_t end = 0;
};

// The header length N stored in the file's first 8 bytes (little-endian),
// checked against the file's size: 8 + N <= file_size and N <= 100 MB.
uint64_t safetensors_header_size(const unsigned char* first8, uint64_t file_size,
                                 const std::string& what);

// Parses the JSON header (UTF-8, one object) into its tensors, file order.
// Checks each entry on its own: the three fields present once each, dtype
// F32, a shape of rank <= 4 with non-negative integer extents, data_offsets
// [begin, end] with begin <= end and end - begin == 4 * numel (no
// overflow), and "__metadata__", if present, an object of strings or null.
// Allocates in proportion to `size`, whatever the numbers in the header say.
std::vector<TensorEntry> parse_safetensors_header(const char* json, size_t size,
                                                  const std::string& what);

// Checks that the tensors tile the data section of `data_size` bytes exactly
// (sorted by offsets, each begins where the previous ends, the last ends at
// data_size), as the reference implementation does, and sorts `entries` by
// offset.
void check_safetensors_layout(std::vector<TensorEntry>& entries, uint64_t data_size,
                              const std::string& what);

// Shared with the file side (core/safetensors_io.cc):
// `s` with invalid UTF-8 and control characters escaped as \xNN.
std::string printable(const std::string& s);
// printable(s) in single quotes, as messages quote names and paths.
std::string in_quotes(const std::string& s);
// Throws IoError naming `caller` for a path with a NUL byte.
void check_path(const std::string& path, const char* caller);
// A name or value from a file: in_quotes of at most 100 bytes of it.
std::string cut(const std::string& s);
// The message of a file of `size` bytes too short for its header.
std::string too_short(const std::string& what, uint64_t size);
// An empty tensor of e's shape (its data is copied in by the caller).
Tensor make_tensor(const TensorEntry& e, const std::string& what);

// A whole safetensors file held in memory.
StateDict parse_safetensors(const char* data, size_t size, const std::string& what);

}  // namespace detail
}  // namespace attn
