// attn_peer_reference: writes what the benchmark's peers (bench/peers/*_peer.py)
// load and check against: for each configuration one safetensors file with the
// module's state_dict (PyTorch's key names), the input "x" and attn's float32
// output "y", and the configuration as string metadata.
//
//   attn_peer_reference <dir> [--quick | --toy]
//
// Files (<dir>/reference_<name>.safetensors, listed in <dir>/references.txt):
//   mha_<config>        MultiHeadAttention(d_in, d_out, T, 0.0, heads) (the book's
//                       module, eval, qkv_bias false) on x = (B, T, d_in): the
//                       configurations of attn_attention_bench (B1_T64 ... B1_T2048,
//                       B8_T256, B8_T1024)
//   mha_decode_gpt2_small  the same module at GPT-2 small's shape, context 1024;
//                       x = (1, 1024, 768): tokens 0..1022 the prompt, 1023 the decoded
//                       token; y = (1, 1, 768) the decoded token's output (prompt
//                       into a KV cache, then one step)
//   gqa_llama32_1b_T1024   GroupedQueryAttention on the Llama 3.2 1B layer (gqa_bench.h)
//                       over x = (1, 1024, 2048)
//   gqa_decode_llama32_1b  its KV-cache step: x = (1, 4096, 2048), y = the output of
//                       token 4095 after the 4095-token prompt
// --quick: mha_B8_T1024 and gqa_llama32_1b_T1024 (bench/run.sh --quick).
// --toy: small shapes of each kind (mha_toy, mha_decode_toy, gqa_toy,
// gqa_decode_toy) for the peers' own check (bench/peers/check_peers.sh).
// Weights come from attn::manual_seed(123) and the input from attn::rand drawn
// right after the module, as attn_attention_bench draws them, so the files
// hold the very weights and inputs the benchmark rows run.
// Metadata keys: kind (mha | mha_decode | gqa | gqa_decode), batch, tokens,
// d_in, d_out, num_heads, num_kv_groups, context_length, prompt_tokens
// (decode kinds), rope_* (gqa kinds: theta_base, scaling_factor,
// low_freq_factor, high_freq_factor, original_context_length), window.
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "attn/attn.h"
#include "attn/grouped_query_attention.h"
#include "bench/attention_bench.h"
#include "bench/gqa_bench.h"

namespace {

using Metadata = std::map<std::string, std::string>;

// Rows [first, first + count) of the (1, T, d) tensor x, as (1, count, d).
attn::Tensor Rows(const attn::Tensor& x, int64_t first, int64_t count) {
  const int64_t d = x.shape()[2];
  attn::Tensor rows({1, count, d});
  std::memcpy(rows.data(), x.data() + first * d, sizeof(float) * static_cast<size_t>(count * d));
  return rows;
}

// y of one cached step: the prompt (tokens 0 .. T-2) into a cache, then token T-1.
template <typename Module>
attn::Tensor DecodeLast(Module& module, const attn::Tensor& x) {
  const int64_t tokens = x.shape()[1];
  attn::KVCache cache = module.make_cache(1);
  module.forward(Rows(x, 0, tokens - 1), cache);
  return module.forward(Rows(x, tokens - 1, 1), cache);
}

class Writer {
 public:
  explicit Writer(std::string dir) : dir_(std::move(dir)) {}

  void Write(const std::string& name, const attn::StateDict& weights, const attn::Tensor& x,
             const attn::Tensor& y, Metadata metadata) {
    attn::StateDict tensors = weights;
    tensors.emplace("x", x);
    tensors.emplace("y", y);
    metadata["name"] = name;
    const std::string path = dir_ + "/reference_" + name + ".safetensors";
    attn::save_safetensors(path, tensors, metadata);
    names_.push_back(name);
    std::printf("%s\n", path.c_str());
  }

  void WriteList() const {
    std::ofstream list(dir_ + "/references.txt");
    for (const std::string& name : names_) list << name << '\n';
    if (!list) throw attn::IoError("attn_peer_reference: cannot write " + dir_ + "/references.txt");
  }

 private:
  std::string dir_;
  std::vector<std::string> names_;
};

Metadata MhaMetadata(const char* kind, int64_t batch, int64_t tokens, int64_t d_in, int64_t d_out,
                     int64_t heads, int64_t context) {
  return {{"kind", kind},
          {"batch", std::to_string(batch)},
          {"tokens", std::to_string(tokens)},
          {"d_in", std::to_string(d_in)},
          {"d_out", std::to_string(d_out)},
          {"num_heads", std::to_string(heads)},
          {"num_kv_groups", std::to_string(heads)},
          {"context_length", std::to_string(context)},
          {"window", "0"}};
}

// The book's module on (batch, tokens, d_in); decode: its cached step after
// tokens - 1 prompt tokens.
void WriteMha(Writer& writer, const std::string& name, bool decode, int64_t batch, int64_t tokens,
              int64_t d_in, int64_t d_out, int64_t heads) {
  attn::manual_seed(123);
  attn::MultiHeadAttention module(d_in, d_out, tokens, 0.0, heads);
  module.eval();
  const attn::Tensor x = attn::rand({batch, tokens, d_in});
  Metadata metadata =
      MhaMetadata(decode ? "mha_decode" : "mha", batch, tokens, d_in, d_out, heads, tokens);
  if (decode) metadata["prompt_tokens"] = std::to_string(tokens - 1);
  writer.Write(name, module.state_dict(), x, decode ? DecodeLast(module, x) : module.forward(x),
               std::move(metadata));
}

void WriteGqa(Writer& writer, const std::string& name, bool decode, int64_t tokens, int64_t d,
              int64_t context, int64_t heads, int64_t kv_groups, const attn::RopeConfig& rope) {
  attn::manual_seed(123);
  attn::GroupedQueryAttention module(d, d, context, heads, kv_groups, rope);
  module.eval();
  const attn::Tensor x = attn::rand({1, tokens, d});
  Metadata metadata = MhaMetadata(decode ? "gqa_decode" : "gqa", 1, tokens, d, d, heads, context);
  metadata["num_kv_groups"] = std::to_string(kv_groups);
  if (decode) metadata["prompt_tokens"] = std::to_string(tokens - 1);
  char buffer[64];
  const auto number = [&](double v) {
    std::snprintf(buffer, sizeof buffer, "%.17g", v);
    return std::string(buffer);
  };
  metadata["rope_theta_base"] = number(rope.theta_base);
  metadata["rope_scaling_factor"] = number(rope.scaling_factor);
  metadata["rope_low_freq_factor"] = number(rope.low_freq_factor);
  metadata["rope_high_freq_factor"] = number(rope.high_freq_factor);
  metadata["rope_original_context_length"] = std::to_string(rope.original_context_length);
  writer.Write(name, module.state_dict(), x, decode ? DecodeLast(module, x) : module.forward(x),
               std::move(metadata));
}

int Run(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: %s <dir> [--quick | --toy]\n", argv[0]);
    return 2;
  }
  const std::string mode = argc == 3 ? argv[2] : "";
  if (!mode.empty() && mode != "--quick" && mode != "--toy") {
    std::fprintf(stderr, "%s: unknown option %s\n", argv[0], mode.c_str());
    return 2;
  }
  Writer writer(argv[1]);
  using namespace attn_bench;
  if (mode == "--toy") {
    attn::RopeConfig rope = Llama32Rope();
    rope.original_context_length = 8;
    WriteMha(writer, "mha_toy", false, 2, 7, 16, 16, 2);
    WriteMha(writer, "mha_decode_toy", true, 1, 9, 16, 16, 2);
    WriteGqa(writer, "gqa_toy", false, 7, 64, 16, 4, 2, rope);
    WriteGqa(writer, "gqa_decode_toy", true, 9, 64, 16, 4, 2, rope);
  } else {
    for (const Config& c : Configs()) {
      if (c.d_in != 768 || (mode == "--quick" && c.name != "B8_T1024")) continue;
      WriteMha(writer, "mha_" + c.name, false, c.batch, c.tokens, c.d_in, c.d_out, c.heads);
    }
    if (mode.empty()) WriteMha(writer, "mha_decode_gpt2_small", true, 1, 1024, 768, 768, 12);
    WriteGqa(writer, "gqa_llama32_1b_T1024", false, 1024, kGqaDim, kGqaContext, kGqaHeads,
             kGqaKvGroups, Llama32Rope());
    if (mode.empty()) {
      WriteGqa(writer, "gqa_decode_llama32_1b", true, 4096, kGqaDim, kGqaContext, kGqaHeads,
               kGqaKvGroups, Llama32Rope());
    }
  }
  writer.WriteList();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "attn_peer_reference: %s\n", e.what());
    return 1;
  }
}
