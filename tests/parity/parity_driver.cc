// The C++ half of scripts/parity_sweep.py (a developer tool, not part of the
// build or the tests; see tests/data/README.md, "Randomized parity sweep").
//
//   attn_parity_driver CASE.safetensors RESULT.safetensors module d_in d_out
//       context_length dropout num_heads qkv_bias init_seed forward_seed train
//       kv_prompt all_targets
//
// Before each target's case a forward of another size on NaN inputs leaves
// NaN in whatever scratch memory the library reuses. CASE holds the PyTorch state_dict and `input`
// (for module "Transfer": the SelfAttention_v2 state_dict). For every Highway target compiled in
// and supported by this CPU (only the best one unless all_targets is 1) the driver constructs the
// module after attn::manual_seed(init_seed), loads CASE's state_dict, switches to training or eval
// mode, and writes to RESULT, under
// "<target>.":
//   init.<key>   state_dict() right after construction (init parity)
//   out_w        forward(x, &weights) after manual_seed(forward_seed)
//   weights      those weights
//   rand_w       attn::rand({4}) right after that forward (random-stream use)
//   out          forward(x) after manual_seed(forward_seed) (the fast path)
//   rand         attn::rand({4}) right after it
//   out_mat      MultiHeadAttention: forward(x) on AttentionPath::kMaterialized
//   out_kv       MultiHeadAttention, kv_prompt > 0 (dropout inactive): the
//                first kv_prompt tokens through a KVCache, then one token at
//                a time, outputs concatenated
//   out_kv_rewound  the same single tokens again after cache.rewind(kv_prompt)
//   out_1thread  forward(x) again with attn::set_num_threads(1)
// Module "Transfer" (exercise 3.1): SelfAttentionV2(d_in, d_out) then
// SelfAttentionV1(d_in, d_out) constructed from init_seed, CASE's v2 state
// loaded into the v2, transfer_weights(v2, v1); out_w/weights/out are v1's,
// init.* holds v2's state ("v2.") and v1's after construction ("v1.").
#include <attn/attn.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "hwy/targets.h"

namespace {

struct Config {
  std::string module;
  int64_t d_in = 0, d_out = 0, context_length = 0;
  double dropout = 0;
  int64_t num_heads = 1;
  bool qkv_bias = false;
  uint64_t init_seed = 0, forward_seed = 0;
  bool train = true;
  int64_t kv_prompt = 0;
};

// Tokens [begin, end) of x (batch, tokens, d), as a new tensor.
attn::Tensor token_slice(const attn::Tensor& x, int64_t begin, int64_t end) {
  const int64_t batch = x.size(0), tokens = x.size(1), d = x.size(2);
  attn::Tensor out({batch, end - begin, d});
  for (int64_t b = 0; b < batch; ++b) {
    std::memcpy(out.data() + b * (end - begin) * d, x.data() + (b * tokens + begin) * d,
                static_cast<size_t>((end - begin) * d) * sizeof(float));
  }
  return out;
}

// Writes `part` (batch, n, d) into tokens [begin, begin + n) of `whole`.
void put_tokens(attn::Tensor& whole, const attn::Tensor& part, int64_t begin) {
  const int64_t batch = whole.size(0), tokens = whole.size(1), d = whole.size(2);
  const int64_t n = part.size(1);
  for (int64_t b = 0; b < batch; ++b) {
    std::memcpy(whole.data() + (b * tokens + begin) * d, part.data() + b * n * d,
                static_cast<size_t>(n * d) * sizeof(float));
  }
}

void add_all(attn::StateDict& result, const std::string& prefix, const attn::StateDict& dict) {
  for (const auto& item : dict) result[prefix + item.first] = item.second;
}

// forward(x, &weights), forward(x) and the random numbers after each.
template <typename M>
void run_forwards(const Config& c, const M& m, const attn::Tensor& x, const std::string& tag,
                  attn::StateDict& result) {
  attn::Tensor weights;
  attn::manual_seed(c.forward_seed);
  result[tag + "out_w"] = m.forward(x, &weights);
  result[tag + "weights"] = weights;
  result[tag + "rand_w"] = attn::rand({4});
  attn::manual_seed(c.forward_seed);
  result[tag + "out"] = m.forward(x);
  result[tag + "rand"] = attn::rand({4});
  const int threads = attn::num_threads();
  attn::set_num_threads(1);
  attn::manual_seed(c.forward_seed);
  result[tag + "out_1thread"] = m.forward(x);
  attn::set_num_threads(threads);
}

template <typename M>
void run_module(const Config& c, std::unique_ptr<M> m, const attn::StateDict& state,
                const attn::Tensor& x, const std::string& tag, attn::StateDict& result) {
  add_all(result, tag + "init.", m->state_dict());
  m->load_state_dict(state);
  m->train(c.train);
  run_forwards(c, *m, x, tag, result);
}

void run_mha(const Config& c, const attn::StateDict& state, const attn::Tensor& x,
             const std::string& tag, attn::StateDict& result) {
  auto m = std::make_unique<attn::MultiHeadAttention>(c.d_in, c.d_out, c.context_length, c.dropout,
                                                      c.num_heads, c.qkv_bias);
  add_all(result, tag + "init.", m->state_dict());
  m->load_state_dict(state);
  m->train(c.train);
  run_forwards(c, *m, x, tag, result);
  m->set_attention_path(attn::MultiHeadAttention::AttentionPath::kMaterialized);
  attn::manual_seed(c.forward_seed);
  result[tag + "out_mat"] = m->forward(x);
  m->set_attention_path(attn::MultiHeadAttention::AttentionPath::kFlash);
  if (c.kv_prompt > 0) {
    const int64_t tokens = x.size(1);
    attn::KVCache cache = m->make_cache(x.size(0));
    attn::Tensor out({x.size(0), tokens, c.d_out});
    put_tokens(out, m->forward(token_slice(x, 0, c.kv_prompt), cache), 0);
    for (int64_t t = c.kv_prompt; t < tokens; ++t) {
      put_tokens(out, m->forward(token_slice(x, t, t + 1), cache), t);
    }
    result[tag + "out_kv"] = out;
    // Rewound to the prompt, the single tokens again give the same bits.
    cache.rewind(c.kv_prompt);
    attn::Tensor again = out;
    for (int64_t t = c.kv_prompt; t < tokens; ++t) {
      put_tokens(again, m->forward(token_slice(x, t, t + 1), cache), t);
    }
    result[tag + "out_kv_rewound"] = again;
  }
}

void run_transfer(const Config& c, const attn::StateDict& state, const attn::Tensor& x,
                  const std::string& tag, attn::StateDict& result) {
  attn::manual_seed(c.init_seed);
  attn::SelfAttentionV2 v2(c.d_in, c.d_out);
  attn::SelfAttentionV1 v1(c.d_in, c.d_out);
  add_all(result, tag + "init.v2.", v2.state_dict());
  add_all(result, tag + "init.v1.", v1.state_dict());
  v2.load_state_dict(state);
  attn::transfer_weights(v2, v1);
  run_forwards(c, v1, x, tag, result);
}

// A forward of another size on NaN inputs first, so that any scratch memory
// the real case reuses holds NaN rather than zeros.
void dirty_scratch() {
  attn::MultiHeadAttention m(32, 64, 400, 0.0, 4, true);
  m.eval();
  const attn::Tensor x({2, 400, 32}, std::vector<float>(2 * 400 * 32, NAN));
  attn::Tensor weights;
  m.forward(x, &weights);
  m.forward(x);
  attn::CausalAttention ca(32, 40, 400, 0.0);
  ca.forward(x, &weights);
  ca.forward(x);
}

void run_case(const Config& c, const attn::StateDict& state, const attn::Tensor& x,
              const std::string& tag, attn::StateDict& result) {
  attn::manual_seed(c.init_seed);
  if (c.module == "SelfAttentionV1") {
    run_module(c, std::make_unique<attn::SelfAttentionV1>(c.d_in, c.d_out), state, x, tag, result);
  } else if (c.module == "SelfAttentionV2") {
    run_module(c, std::make_unique<attn::SelfAttentionV2>(c.d_in, c.d_out, c.qkv_bias), state, x,
               tag, result);
  } else if (c.module == "CausalAttention") {
    run_module(c,
               std::make_unique<attn::CausalAttention>(c.d_in, c.d_out, c.context_length, c.dropout,
                                                       c.qkv_bias),
               state, x, tag, result);
  } else if (c.module == "MultiHeadAttentionWrapper") {
    run_module(c,
               std::make_unique<attn::MultiHeadAttentionWrapper>(
                   c.d_in, c.d_out, c.context_length, c.dropout, c.num_heads, c.qkv_bias),
               state, x, tag, result);
  } else if (c.module == "MultiHeadAttention") {
    run_mha(c, state, x, tag, result);
  } else if (c.module == "Transfer") {
    run_transfer(c, state, x, tag, result);
  } else {
    throw std::runtime_error("unknown module " + c.module);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 15) {
    std::fprintf(stderr,
                 "usage: %s CASE RESULT module d_in d_out context_length dropout num_heads "
                 "qkv_bias init_seed forward_seed train kv_prompt all_targets\n",
                 argv[0]);
    return 2;
  }
  try {
    Config c;
    c.module = argv[3];
    c.d_in = std::atoll(argv[4]);
    c.d_out = std::atoll(argv[5]);
    c.context_length = std::atoll(argv[6]);
    c.dropout = std::strtod(argv[7], nullptr);
    c.num_heads = std::atoll(argv[8]);
    c.qkv_bias = std::atoi(argv[9]) != 0;
    c.init_seed = std::strtoull(argv[10], nullptr, 10);
    c.forward_seed = std::strtoull(argv[11], nullptr, 10);
    c.train = std::atoi(argv[12]) != 0;
    c.kv_prompt = std::atoll(argv[13]);
    const bool all_targets = std::atoi(argv[14]) != 0;

    attn::StateDict file = attn::load_safetensors(argv[1]);
    const attn::Tensor x = file.at("input");
    file.erase("input");

    std::vector<int64_t> targets = hwy::SupportedAndGeneratedTargets();
    if (!all_targets) targets.resize(1);
    attn::StateDict result;
    for (const int64_t target : targets) {
      hwy::SetSupportedTargetsForTest(target);
      dirty_scratch();
      run_case(c, file, x, std::string(hwy::TargetName(target)) + ".", result);
    }
    hwy::SetSupportedTargetsForTest(0);
    attn::save_safetensors(argv[2], result);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "attn_parity_driver: %s\n", e.what());
    return 1;
  }
  return 0;
}
