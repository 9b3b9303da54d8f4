// attn: the attention modules of chapter 3 of "Build a Large Language Model
// (From Scratch)" (S. Raschka) on the CPU, faithful to PyTorch.
//
//   #include <attn/attn.h>
//   attn::manual_seed(123);
//   attn::MultiHeadAttention mha(768, 768, 1024, 0.0, 12);
//   attn::Tensor out = mha.forward(x);  // x: (batch, num_tokens, 768)
#pragma once

#include "core/causal_attention.h"
#include "core/dropout.h"
#include "core/error.h"
#include "core/kv_cache.h"
#include "core/linear.h"
#include "core/module.h"
#include "core/multi_head_attention.h"
#include "core/random.h"
#include "core/safetensors.h"
#include "core/self_attention.h"
#include "core/tensor.h"
#include "parallel/parallel_for.h"
