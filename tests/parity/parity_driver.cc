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
//
// Grouped-query attention has an argument list of its own:
//
//   attn_parity_driver CASE.safetensors RESULT.safetensors GroupedQueryAttention
//       d_in d_out context_length num_heads num_kv_groups sliding_window
//       qkv_bias rope theta_base scaling_factor low_freq_factor
//       high_freq_factor original_context_length init_seed forward_seed
//       all_targets quantize SCHEDULE...
//
// (theta_base and the scaling fields parsed as doubles, scaling_factor 0: no
// Llama 3 scaling; each SCHEDULE is a comma-separated list of chunk sizes
// that sum to x's num_tokens). Under "<target>." it writes init.<key>,
// out_w, weights, rand_w, out, rand and out_1thread as above, and
//   inv_freq       rope_inv_freq() (RoPE enabled only)
//   dec<i>         x through make_cache() and forward(x, cache) in the chunks
//                  of SCHEDULE i, outputs concatenated
//   dec0_rewound   schedule 0's chunks after the first again, after
//                  cache.rewind(first chunk): must be dec0 bit for bit
//   with quantize 1, for attn::quantize_dynamic(module):
//   q_out, q_out_w, q_weights  its forward(x), forward(x, &weights)
//   q_dec0         its decoding with schedule 0
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
  // GroupedQueryAttention
  int64_t num_kv_groups = 1, sliding_window = 0;
  attn::RopeConfig rope;
  bool quantize = false;
  std::vector<std::vector<int64_t>> schedules;
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

// x through a fresh cache of m in the chunks of `chunks`, outputs
// concatenated; with `rewound`, also the chunks after the first again after
// rewinding the cache to the first.
template <typename M>
attn::Tensor decode(const M& m, const attn::Tensor& x, const std::vector<int64_t>& chunks,
                    int64_t d_out, attn::Tensor* rewound) {
  attn::KVCache cache = m.make_cache(x.size(0));
  attn::Tensor out({x.size(0), x.size(1), d_out});
  int64_t pos = 0;
  for (const int64_t n : chunks) {
    put_tokens(out, m.forward(token_slice(x, pos, pos + n), cache), pos);
    pos += n;
  }
  if (pos != x.size(1)) throw std::runtime_error("schedule does not cover the input");
  if (rewound != nullptr) {
    *rewound = out;
    cache.rewind(chunks[0]);
    pos = chunks[0];
    for (size_t i = 1; i < chunks.size(); ++i) {
      put_tokens(*rewound, m.forward(token_slice(x, pos, pos + chunks[i]), cache), pos);
      pos += chunks[i];
    }
  }
  return out;
}

void run_gqa(const Config& c, const attn::StateDict& state, const attn::Tensor& x,
             const std::string& tag, attn::StateDict& result) {
  auto m = std::make_unique<attn::GroupedQueryAttention>(c.d_in, c.d_out, c.context_length,
                                                         c.num_heads, c.num_kv_groups, c.rope,
                                                         c.sliding_window, c.qkv_bias);
  add_all(result, tag + "init.", m->state_dict());
  if (c.rope.enabled) {
    const std::vector<float>& f = m->rope_inv_freq();
    result[tag + "inv_freq"] = attn::Tensor({static_cast<int64_t>(f.size())}, f);
  }
  m->load_state_dict(state);
  run_forwards(c, *m, x, tag, result);
  for (size_t i = 0; i < c.schedules.size(); ++i) {
    attn::Tensor rewound;
    result[tag + "dec" + std::to_string(i)] =
        decode(*m, x, c.schedules[i], c.d_out, i == 0 ? &rewound : nullptr);
    if (i == 0) result[tag + "dec0_rewound"] = rewound;
  }
  if (c.quantize) {
    const attn::GroupedQueryAttention q = attn::quantize_dynamic(*m);
    result[tag + "q_out"] = q.forward(x);
    attn::Tensor weights;
    result[tag + "q_out_w"] = q.forward(x, &weights);
    result[tag + "q_weights"] = weights;
    if (!c.schedules.empty()) {
      result[tag + "q_dec0"] = decode(q, x, c.schedules[0], c.d_out, nullptr);
    }
  }
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
  attn::RopeConfig rope;
  rope.scaling_factor = 8.0;
  attn::GroupedQueryAttention gqa(32, 64, 400, 8, 2, rope, 0, true);
  gqa.forward(x, &weights);
  gqa.forward(x);
  attn::KVCache cache = gqa.make_cache(2);
  gqa.forward(x, cache);
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
  } else if (c.module == "GroupedQueryAttention") {
    run_gqa(c, state, x, tag, result);
  } else if (c.module == "Transfer") {
    run_transfer(c, state, x, tag, result);
  } else {
    throw std::runtime_error("unknown module " + c.module);
  }
}

std::vector<int64_t> parse_schedule(const char* text) {
  std::vector<int64_t> chunks;
  const char* p = text;
  while (*p != '\0') {
    char* end = nullptr;
    const long long n = std::strtoll(p, &end, 10);
    if (end == p || n <= 0) throw std::runtime_error(std::string("bad schedule ") + text);
    chunks.push_back(n);
    p = *end == ',' ? end + 1 : end;
  }
  if (chunks.empty()) throw std::runtime_error("empty schedule");
  return chunks;
}

// The GroupedQueryAttention argument list (see the top of the file).
Config parse_gqa(int argc, char** argv, bool& all_targets) {
  if (argc < 21) {
    throw std::runtime_error(
        "usage: CASE RESULT GroupedQueryAttention d_in d_out context_length num_heads "
        "num_kv_groups sliding_window qkv_bias rope theta_base scaling_factor low_freq_factor "
        "high_freq_factor original_context_length init_seed forward_seed all_targets quantize "
        "SCHEDULE...");
  }
  Config c;
  c.module = argv[3];
  c.d_in = std::atoll(argv[4]);
  c.d_out = std::atoll(argv[5]);
  c.context_length = std::atoll(argv[6]);
  c.num_heads = std::atoll(argv[7]);
  c.num_kv_groups = std::atoll(argv[8]);
  c.sliding_window = std::atoll(argv[9]);
  c.qkv_bias = std::atoi(argv[10]) != 0;
  c.rope.enabled = std::atoi(argv[11]) != 0;
  c.rope.theta_base = std::strtod(argv[12], nullptr);
  c.rope.scaling_factor = std::strtod(argv[13], nullptr);
  c.rope.low_freq_factor = std::strtod(argv[14], nullptr);
  c.rope.high_freq_factor = std::strtod(argv[15], nullptr);
  c.rope.original_context_length = std::atoll(argv[16]);
  c.init_seed = std::strtoull(argv[17], nullptr, 10);
  c.forward_seed = std::strtoull(argv[18], nullptr, 10);
  all_targets = std::atoi(argv[19]) != 0;
  c.quantize = std::atoi(argv[20]) != 0;
  for (int i = 21; i < argc; ++i) c.schedules.push_back(parse_schedule(argv[i]));
  c.train = false;
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  const bool gqa = argc >= 4 && std::strcmp(argv[3], "GroupedQueryAttention") == 0;
  if (!gqa && argc != 15) {
    std::fprintf(stderr,
                 "usage: %s CASE RESULT module d_in d_out context_length dropout num_heads "
                 "qkv_bias init_seed forward_seed train kv_prompt all_targets\n"
                 "   or: %s CASE RESULT GroupedQueryAttention ... (see parity_driver.cc)\n",
                 argv[0], argv[0]);
    return 2;
  }
  try {
    Config c;
    bool all_targets = false;
    if (gqa) {
      c = parse_gqa(argc, argv, all_targets);
    } else {
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
      all_targets = std::atoi(argv[14]) != 0;
    }

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
