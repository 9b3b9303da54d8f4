// libFuzzer harness: the JSON header parser on its own (the input is the
// header text), then the layout check against the data size the tensors
// claim. An IoError is the expected answer to a bad header; anything else,
// a sanitizer report or a heap peak above the bound is a finding.
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "attn/error.h"
#include "core/safetensors_parse.h"
#include "tests/fuzz/heap_peak.h"

namespace {

// As for fuzz_load_safetensors.cc: bookkeeping proportional to the header.
constexpr int64_t kHeapPerByte = 16;
constexpr int64_t kHeapConstant = 64 * 1024;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  const int64_t peak = attn_fuzz::heap_peak([&] {
    try {
      std::vector<attn::detail::TensorEntry> entries = attn::detail::parse_safetensors_header(
          reinterpret_cast<const char*>(bytes), size, "fuzz");
      uint64_t end = 0;
      for (const attn::detail::TensorEntry& e : entries) end = std::max(end, e.end);
      attn::detail::check_safetensors_layout(entries, end, "fuzz");
    } catch (const attn::IoError&) {
    }
  });
  if (peak > kHeapPerByte * static_cast<int64_t>(size) + kHeapConstant) __builtin_trap();
  return 0;
}
