// PyTorch-compatible random numbers on the CPU.
//
// attn keeps one global generator, like PyTorch's default CPU generator: a
// 32-bit Mersenne Twister (the stream of std::mt19937). With the same seed,
// attn::rand, the modules' weight initialization and dropout masks draw the
// same numbers in the same order as torch.rand, nn.Linear and nn.Dropout in
// PyTorch 1.13 on x86-64, bit for bit (tests/data/README.md gives the rules
// and the tests that check them).
#pragma once

#include <cstdint>
#include <mutex>
#include <random>
#include <vector>

#include "attn/tensor.h"

namespace attn {

// torch.manual_seed(seed): reseeds the global generator. As in PyTorch, only
// the low 32 bits of the seed reach the Mersenne Twister.
void manual_seed(uint64_t seed);

// torch.rand(shape): uniform floats in [0, 1), 24 random bits each.
Tensor rand(std::vector<int64_t> shape);

// A Mersenne Twister drawing numbers the way PyTorch's CPU generator does.
// Not thread-safe on its own; the global one is used under a lock.
class Generator {
 public:
  // PyTorch's default seed (c10::default_rng_seed_val).
  static constexpr uint64_t kDefaultSeed = 67280421310721ULL;

  explicit Generator(uint64_t seed = kDefaultSeed);
  void seed(uint64_t seed);

  uint32_t random() { return static_cast<uint32_t>(engine_()); }
  // Two draws, the first one in the high half (PyTorch's random64()).
  uint64_t random64();
  // Uniform float in [0, 1) from one draw: (r & (2^24 - 1)) * 2^-24.
  float uniform_float();
  // uniform_(from, to) for float tensors: fma(u, to - from, from) in float,
  // as PyTorch's vectorized CPU kernels evaluate it.
  float uniform_float(float from, float to);
  // Uniform double in [0, 1) from two draws: (r64 & (2^53 - 1)) * 2^-53.
  double uniform_double();

 private:
  std::mt19937 engine_;
};

// Runs fn(generator) holding the lock of the global generator.
template <typename Fn>
auto with_global_generator(Fn&& fn) -> decltype(fn(std::declval<Generator&>()));

namespace detail {
Generator& global_generator_unlocked();
std::mutex& global_generator_mutex();
}  // namespace detail

template <typename Fn>
auto with_global_generator(Fn&& fn) -> decltype(fn(std::declval<Generator&>())) {
  std::lock_guard<std::mutex> lock(detail::global_generator_mutex());
  return fn(detail::global_generator_unlocked());
}

// tensor.uniform_(from, to) with the global generator (row-major order).
// Throws ArgumentError, drawing nothing, as PyTorch refuses the same bounds:
// from or to not a finite float32 (NaN, inf, beyond FLT_MAX), from > to, or
// to - from > FLT_MAX. from == to fills the tensor with from.
void uniform_(Tensor& tensor, double from, double to);

}  // namespace attn
