// attn: the attention modules of chapter 3 of "Build a Large Language Model
// (From Scratch)" (S. Raschka) on the CPU, faithful to PyTorch.
//
//   #include <attn/attn.h>
//   attn::manual_seed(123);
//   attn::MultiHeadAttention mha(768, 768, 1024, 0.0, 12);
//   attn::Tensor out = mha.forward(x);  // x: (batch, num_tokens, 768)
#pragma once

#include "attn/causal_attention.h"
#include "attn/dropout.h"
#include "attn/error.h"
#include "attn/grouped_query_attention.h"
#include "attn/kv_cache.h"
#include "attn/linear.h"
#include "attn/module.h"
#include "attn/multi_head_attention.h"
#include "attn/quantization.h"
#include "attn/random.h"
#include "attn/safetensors.h"
#include "attn/self_attention.h"
#include "attn/tensor.h"
#include "attn/threads.h"
