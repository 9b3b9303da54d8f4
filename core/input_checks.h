// Input validation shared by the modules: every message names the module,
// the argument and the shapes involved.
#pragma once

#include <cstdint>
#include <string>

#include "attn/error.h"
#include "attn/tensor.h"

namespace attn {
namespace detail {

// x must be (num_tokens, d_in) for the chapter's 2-D modules, or
// (batch, num_tokens, d_in) for the batched ones; num_tokens must not exceed
// context_length (pass 0 for no limit).
inline void check_attention_input(const char* module, const Tensor& x, int64_t rank, int64_t d_in,
                                  int64_t context_length = 0) {
  const std::string expected = rank == 2 ? "(num_tokens, d_in=" + std::to_string(d_in) + ")"
                                         : "(batch, num_tokens, d_in=" + std::to_string(d_in) + ")";
  if (x.dim() != rank || x.size(-1) != d_in) {
    throw ShapeError(std::string(module) + ": input x of shape " + shape_to_string(x.shape()) +
                     " does not match the expected " + expected);
  }
  const int64_t num_tokens = x.size(-2);
  if (context_length > 0 && num_tokens > context_length) {
    throw ShapeError(std::string(module) + ": input x of shape " + shape_to_string(x.shape()) +
                     " has num_tokens = " + std::to_string(num_tokens) +
                     " > context_length = " + std::to_string(context_length));
  }
}

inline void check_positive(const char* module, const char* name, int64_t value) {
  if (value < 1) {
    throw ArgumentError(std::string(module) + ": " + name + " must be positive, got " +
                        std::to_string(value));
  }
}

// The machine's physical memory in bytes, 0 when unknown (core/tensor.cc).
uint64_t physical_memory_bytes();

// Throws ArgumentError unless `floats` float32 values (an element count that
// overflowed is passed as -1) fit in the machine's memory: for sizes decided
// by several arguments together, checked before anything is allocated.
inline void check_fits_in_memory(const char* module, const std::string& what, int64_t floats) {
  const uint64_t memory = physical_memory_bytes();
  if (floats < 0 || (memory != 0 && static_cast<uint64_t>(floats) > memory / sizeof(float))) {
    throw ArgumentError(std::string(module) + ": " + what + " need more than the machine's " +
                        std::to_string(memory) + " bytes of memory");
  }
}

// dropout must be a probability: 0 <= p <= 1 (NaN is not).
inline void check_dropout(const char* module, double p) {
  if (!(p >= 0.0 && p <= 1.0)) {
    throw ArgumentError(std::string(module) + ": dropout probability has to be between 0 and 1, " +
                        "but got " + std::to_string(p));
  }
}

// The arguments shared by the causal modules, checked before any parameter
// is drawn (a constructor that throws draws no random numbers). Returns
// context_length, for a member initializer list.
inline int64_t checked_causal_config(const char* module, int64_t d_in, int64_t d_out,
                                     int64_t context_length, double dropout) {
  check_positive(module, "d_in", d_in);
  check_positive(module, "d_out", d_out);
  check_positive(module, "context_length", context_length);
  check_dropout(module, dropout);
  return context_length;
}

}  // namespace detail
}  // namespace attn
