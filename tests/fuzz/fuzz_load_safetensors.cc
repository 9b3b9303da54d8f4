// libFuzzer harness: a whole safetensors file, from memory, through the
// loader's own code path (detail::parse_safetensors; load_safetensors reads
// the file with the same stages). An IoError is the expected answer to a bad
// file; any other exception, a sanitizer report, a wrong tensor or a heap
// peak above the bound is a finding. See scripts/fuzz.sh.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "attn/error.h"
#include "core/safetensors_parse.h"
#include "tests/fuzz/heap_peak.h"

namespace {

// Reading a file holds its data once plus bookkeeping proportional to the
// header, never an amount a number in the header asks for: measured at up to
// 7 bytes per header byte (thousands of empty tensors, or of metadata keys),
// plus a few KiB. The bound leaves a margin over that.
constexpr int64_t kHeapPerByte = 16;
constexpr int64_t kHeapConstant = 64 * 1024;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  const char* data = reinterpret_cast<const char*>(bytes);
  attn::StateDict dict;
  bool loaded = false;
  const int64_t peak = attn_fuzz::heap_peak([&] {
    try {
      dict = attn::detail::parse_safetensors(data, size, "fuzz");
      loaded = true;
    } catch (const attn::IoError&) {
    }
  });
  check(peak <= kHeapPerByte * static_cast<int64_t>(size) + kHeapConstant);
  if (!loaded) return 0;
  // Every tensor holds exactly its bytes of the data section, which they tile.
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  std::vector<attn::detail::TensorEntry> entries =
      attn::detail::parse_safetensors_header(data + 8, n, "fuzz");
  check(entries.size() == dict.size());
  uint64_t covered = 0;
  for (const attn::detail::TensorEntry& e : entries) {
    const attn::Tensor& t = dict.at(e.name);
    check(t.shape() == e.shape);
    check(static_cast<uint64_t>(t.numel()) * 4 == e.end - e.begin);
    check(t.numel() == 0 || std::memcmp(t.data(), data + 8 + n + e.begin, e.end - e.begin) == 0);
    covered += e.end - e.begin;
  }
  check(covered == size - 8 - n);
  return 0;
}
