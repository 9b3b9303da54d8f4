// The safetensors file format for state_dicts (https://huggingface.co/docs/
// safetensors): an 8-byte little-endian header length N, N bytes of JSON
//   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "value"}}
// then the raw little-endian tensor data, offsets relative to its start.
// attn reads and writes F32 tensors of rank 0 to 4; any other dtype is an
// error naming the tensor and the dtype.
#pragma once

#include <map>
#include <string>

#include "attn/module.h"
#include "attn/tensor.h"

namespace attn {

// Reads every tensor of the file. Throws IoError when the file is missing,
// unreadable, truncated or malformed (bad JSON, offsets outside the data,
// overlapping or misaligned tensors, sizes that do not match the shape) and
// for a dtype other than F32.
StateDict load_safetensors(const std::string& path);

// Writes the tensors (keys in map order, data 8-byte aligned). Throws IoError
// when the file cannot be written.
void save_safetensors(const std::string& path, const StateDict& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace attn
