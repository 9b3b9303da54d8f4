#include "attn/random.h"

#include <pthread.h>

#include <cmath>
#include <limits>
#include <sstream>
#include <string>

#include "attn/error.h"

namespace attn {

Generator::Generator(uint64_t seed) { this->seed(seed); }

// at::mt19937 keeps only the low 32 bits of the seed (init_with_uint32).
void Generator::seed(uint64_t seed) { engine_.seed(static_cast<uint32_t>(seed & 0xFFFFFFFFu)); }

uint64_t Generator::random64() {
  const uint64_t high = random();
  const uint64_t low = random();
  return (high << 32) | low;
}

float Generator::uniform_float() {
  constexpr float kInv24 = 1.0f / 16777216.0f;  // 2^-24, exact
  return static_cast<float>(random() & 0xFFFFFFu) * kInv24;
}

float Generator::uniform_float(float from, float to) {
  return std::fma(uniform_float(), to - from, from);
}

double Generator::uniform_double() {
  constexpr double kInv53 = 1.0 / 9007199254740992.0;  // 2^-53, exact
  return static_cast<double>(random64() & ((uint64_t{1} << 53) - 1)) * kInv53;
}

namespace detail {

Generator& global_generator_unlocked() {
  static Generator generator;
  return generator;
}

// Held across fork() (pthread_atfork), so that a child forked while another
// thread draws from the generator finds it unlocked. Never destroyed.
std::mutex& global_generator_mutex() {
  static std::mutex* const mutex = [] {
    auto* m = new std::mutex;
    pthread_atfork([] { global_generator_mutex().lock(); },
                   [] { global_generator_mutex().unlock(); },
                   [] { global_generator_mutex().unlock(); });
    return m;
  }();
  return *mutex;
}

}  // namespace detail

void manual_seed(uint64_t seed) {
  with_global_generator([seed](Generator& g) { g.seed(seed); });
}

Tensor rand(std::vector<int64_t> shape) {
  Tensor result = Tensor::empty(std::move(shape));
  with_global_generator([&result](Generator& g) {
    float* out = result.data();
    for (int64_t i = 0; i < result.numel(); ++i) out[i] = g.uniform_float();
  });
  return result;
}

void uniform_(Tensor& tensor, double from, double to) {
  // PyTorch's checks (uniform_impl_), in its order, before anything is drawn.
  constexpr double kLowest = std::numeric_limits<float>::lowest();
  constexpr double kMax = std::numeric_limits<float>::max();
  const auto bounds = [&] {
    std::ostringstream out;
    out << " (from = " << from << ", to = " << to << ")";
    return out.str();
  };
  if (!(from >= kLowest && from <= kMax) || !(to >= kLowest && to <= kMax)) {
    throw ArgumentError("uniform_: from and to must be finite float32 values" + bounds());
  }
  if (!(from <= to)) throw ArgumentError("uniform_: from must not exceed to" + bounds());
  if (!(to - from <= kMax)) {
    throw ArgumentError("uniform_: to - from must not exceed the float32 maximum" + bounds());
  }
  // PyTorch casts the bounds to the tensor's dtype before drawing.
  const float lo = static_cast<float>(from);
  const float hi = static_cast<float>(to);
  with_global_generator([&](Generator& g) {
    float* out = tensor.data();
    for (int64_t i = 0; i < tensor.numel(); ++i) out[i] = g.uniform_float(lo, hi);
  });
}

}  // namespace attn
