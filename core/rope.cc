#include "core/rope.h"

#include <cmath>
#include <string>

#include "attn/error.h"
#include "parallel/parallel_for.h"
#include "simd/rope.h"

namespace attn {
namespace detail {
namespace {

// The frequencies are computed in float32 (as the book's code does): a value
// must also be finite and positive once rounded to float (1e-300 is 0 there,
// 1e39 inf).
bool finite_positive(double x) {
  const float f = static_cast<float>(x);
  return std::isfinite(x) && x > 0.0 && std::isfinite(f) && f > 0.0f;
}

[[noreturn]] void bad_rope(const char* module, const std::string& what, double value) {
  throw ArgumentError(std::string(module) + ": rope." + what + " (got " + std::to_string(value) +
                      ")");
}

}  // namespace

void check_rope_config(const char* module, const RopeConfig& rope, int64_t head_dim) {
  if (!rope.enabled) return;
  if (head_dim % 2 != 0) {
    throw ArgumentError(std::string(module) + ": RoPE rotates pairs of dimensions, so head_dim = " +
                        std::to_string(head_dim) + " (d_out / num_heads) must be even");
  }
  if (!finite_positive(rope.theta_base)) {
    bad_rope(module, "theta_base must be finite and positive", rope.theta_base);
  }
  if (rope.scaling_factor == 0.0) return;
  if (!finite_positive(rope.scaling_factor)) {
    bad_rope(module, "scaling_factor must be finite and positive (or 0: no scaling)",
             rope.scaling_factor);
  }
  if (!finite_positive(rope.low_freq_factor)) {
    bad_rope(module, "low_freq_factor must be finite and positive", rope.low_freq_factor);
  }
  // The smoothing divides by high - low in float: it must not round to 0.
  if (!std::isfinite(rope.high_freq_factor) || !(rope.high_freq_factor > rope.low_freq_factor) ||
      !finite_positive(rope.high_freq_factor - rope.low_freq_factor)) {
    bad_rope(module,
             "high_freq_factor must be finite and greater than low_freq_factor = " +
                 std::to_string(rope.low_freq_factor),
             rope.high_freq_factor);
  }
  if (rope.original_context_length < 1) {
    bad_rope(module, "original_context_length must be positive",
             static_cast<double>(rope.original_context_length));
  }
}

std::vector<float> rope_inverse_frequencies(int64_t head_dim, const RopeConfig& rope) {
  const size_t half = static_cast<size_t>(head_dim / 2);
  std::vector<float> inv_freq(half);
  // theta ** (arange(0, head_dim, 2) / head_dim): the scalar becomes a float
  // tensor, the exponents are float quotients.
  const float theta = static_cast<float>(rope.theta_base);
  for (size_t i = 0; i < half; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    const float power =
        static_cast<float>(std::pow(static_cast<double>(theta), static_cast<double>(exponent)));
    inv_freq[i] = 1.0f / power;
  }
  if (rope.scaling_factor == 0.0) return inv_freq;

  // The Llama 3 block of compute_rope_params, one float32 tensor op at a
  // time (a python scalar meets a float tensor as a float; `a / t` is
  // reciprocal(t) * a; `1 - t` is rsub).
  const float context = static_cast<float>(rope.original_context_length);
  const float factor = static_cast<float>(rope.scaling_factor);
  const float low_freq_wavelen =
      static_cast<float>(static_cast<double>(rope.original_context_length) / rope.low_freq_factor);
  const float high_freq_wavelen =
      static_cast<float>(static_cast<double>(rope.original_context_length) / rope.high_freq_factor);
  const float two_pi = static_cast<float>(2.0 * M_PI);
  const float smooth_denominator = static_cast<float>(rope.high_freq_factor - rope.low_freq_factor);
  for (float& f : inv_freq) {
    const float wavelen = (1.0f / f) * two_pi;
    const float scaled = f / factor;
    float smooth = (1.0f / wavelen) * context;
    smooth = smooth - static_cast<float>(rope.low_freq_factor);
    smooth = smooth / smooth_denominator;
    const float one_minus = 1.0f - smooth;
    const float first = one_minus * scaled;
    const float second = smooth * f;
    const float smoothed = first + second;
    const bool medium = wavelen <= low_freq_wavelen && wavelen >= high_freq_wavelen;
    f = medium ? smoothed : (wavelen > low_freq_wavelen ? scaled : f);
  }
  return inv_freq;
}

void rope_angles(int64_t position, const std::vector<float>& inv_freq, float* cos, float* sin) {
  const float p = static_cast<float>(position);
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    const double angle = static_cast<double>(p * inv_freq[i]);
    cos[i] = static_cast<float>(std::cos(angle));
    sin[i] = static_cast<float>(std::sin(angle));
  }
}

void apply_rope(float* x, size_t ld, size_t rows, size_t tokens, int64_t first_position,
                size_t heads, size_t head_dim, const std::vector<float>& inv_freq) {
  if (rows == 0 || heads == 0 || head_dim == 0) return;
  const size_t half = head_dim / 2;
  // Chunks of 16 rows: the cos/sin of 16 positions (sin and cos of head_dim
  // angles, 32 libm calls per row at head_dim 64) cost about as much as
  // rotating 40 heads, and each chunk's tables stay in L1.
  constexpr size_t kRows = 16;
  parallel::ParallelFor((rows + kRows - 1) / kRows, 1, [&](size_t begin, size_t end) {
    std::vector<float> cos(kRows * half), sin(kRows * half);
    for (size_t chunk = begin; chunk < end; ++chunk) {
      const size_t r0 = chunk * kRows, n = std::min(kRows, rows - r0);
      for (size_t r = 0; r < n; ++r) {
        const int64_t position = first_position + static_cast<int64_t>((r0 + r) % tokens);
        rope_angles(position, inv_freq, cos.data() + r * half, sin.data() + r * half);
      }
      simd::RopeArgs args;
      args.x = x + r0 * ld;
      args.ld_row = ld;
      args.rows = n;
      args.heads = heads;
      args.head_dim = head_dim;
      args.ld_head = head_dim;
      args.cos = cos.data();
      args.sin = sin.data();
      args.ld_table = half;
      simd::ApplyRope(args);
    }
  });
}

}  // namespace detail
}  // namespace attn
