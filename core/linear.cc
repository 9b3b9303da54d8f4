#include "attn/linear.h"

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>

#include "attn/error.h"
#include "attn/random.h"
#include "parallel/matmul_int8_parallel.h"
#include "parallel/matmul_parallel.h"
#include "simd/matmul.h"
#include "simd/matmul_int8.h"

namespace attn {
namespace {

// torch.nn.init.kaiming_uniform_(w, a=sqrt(5)) bound, computed in double with
// the same operations as PyTorch's Python code, then used as float bounds.
double kaiming_uniform_bound(int64_t fan_in) {
  const double a = std::sqrt(5.0);
  const double gain = std::sqrt(2.0 / (1.0 + std::pow(a, 2.0)));
  const double std_dev = gain / std::sqrt(static_cast<double>(fan_in));
  return std::sqrt(3.0) * std_dev;
}

// Floats spanned by `rows` rows of `width` at row stride `ld`; false when
// the count does not fit in the address space.
bool span_floats(size_t rows, size_t ld, size_t width, size_t& out) {
  return !__builtin_mul_overflow(rows - 1, ld, &out) && !__builtin_add_overflow(out, width, &out) &&
         out <= SIZE_MAX / sizeof(float);
}

// forward_rows' contract (see linear.h), checked before any write.
void check_rows_arguments(const float* x, size_t ldx, size_t rows, const float* y, size_t ldy,
                          int64_t in_features, int64_t out_features) {
  const auto in = static_cast<size_t>(in_features), out = static_cast<size_t>(out_features);
  const std::string what = "Linear::forward_rows (in_features = " + std::to_string(in) +
                           ", out_features = " + std::to_string(out) + "): ";
  if (ldx < in) {
    throw ArgumentError(what + "ldx (" + std::to_string(ldx) + ") is below in_features");
  }
  if (ldy < out) {
    throw ArgumentError(what + "ldy (" + std::to_string(ldy) + ") is below out_features");
  }
  if (rows == 0) return;
  if (x == nullptr || y == nullptr) {
    throw ArgumentError(what + (x == nullptr ? "x" : "y") +
                        " is null with rows = " + std::to_string(rows));
  }
  size_t x_floats = 0, y_floats = 0;
  if (!span_floats(rows, ldx, in, x_floats) || !span_floats(rows, ldy, out, y_floats)) {
    throw ArgumentError(what + "rows (" + std::to_string(rows) + ") with ldx " +
                        std::to_string(ldx) + " or ldy " + std::to_string(ldy) +
                        " spans more than the address space");
  }
  const auto x_begin = reinterpret_cast<uintptr_t>(x), y_begin = reinterpret_cast<uintptr_t>(y);
  if (x_begin < y_begin + y_floats * sizeof(float) &&
      y_begin < x_begin + x_floats * sizeof(float)) {
    throw ArgumentError(what + "y overlaps x (" + std::to_string(rows) +
                        " rows, ldx = " + std::to_string(ldx) + ", ldy = " + std::to_string(ldy) +
                        "); forward_rows does not work in place");
  }
}

// A Linear always holds an (out, in) weight with in, out >= 1, except once it
// was moved from (Tensor's move leaves shape {0}): forward and quantize refuse
// that state instead of reading a null weight.
void check_not_moved_from(const Tensor& weight, int64_t in_features, int64_t out_features,
                          const char* caller) {
  if (weight.numel() == 0) {
    throw ArgumentError(
        std::string(caller) + ": this Linear (in_features = " + std::to_string(in_features) +
        ", out_features = " + std::to_string(out_features) + ") has a weight of shape " +
        shape_to_string(weight.shape()) + ": it (or the module holding it) was moved from");
  }
}

}  // namespace

Linear::Linear(int64_t in_features, int64_t out_features, bool bias)
    : Linear(in_features, out_features, bias, Unpacked{}) {
  pack_weight();
}

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, Unpacked)
    : in_features_(in_features), out_features_(out_features), has_bias_(bias) {
  if (in_features < 1 || out_features < 1) {
    throw ArgumentError("Linear: in_features (" + std::to_string(in_features) +
                        ") and out_features (" + std::to_string(out_features) +
                        ") must be positive");
  }
  weight_ = Tensor({out_features, in_features});
  const double weight_bound = kaiming_uniform_bound(in_features);
  uniform_(weight_, -weight_bound, weight_bound);
  if (has_bias_) {
    bias_ = Tensor({out_features});
    const double bias_bound = 1.0 / std::sqrt(static_cast<double>(in_features));
    uniform_(bias_, -bias_bound, bias_bound);
  }
}

void Linear::pack_weight() {
  packed_weight_ = std::make_shared<const simd::PackedMatrix>(
      simd::PackB(weight_.data(), static_cast<size_t>(in_features_), /*b_transposed=*/true,
                  static_cast<size_t>(in_features_), static_cast<size_t>(out_features_)));
}

Linear::Linear(Tensor weight, Tensor bias, bool has_bias)
    : in_features_(weight.size(1)),
      out_features_(weight.size(0)),
      has_bias_(has_bias),
      weight_(std::move(weight)),
      bias_(std::move(bias)) {
  pack_weight();
}

Linear Linear::from_weights(Tensor weight, Tensor bias) {
  const bool has_bias = bias.numel() > 0;
  if (weight.dim() != 2 || weight.numel() == 0 ||
      (has_bias && (bias.dim() != 1 || bias.size(0) != weight.size(0)))) {
    throw ShapeError("Linear::from_weights: weight of shape " + shape_to_string(weight.shape()) +
                     " must be (out_features, in_features), both positive, and bias of shape " +
                     shape_to_string(bias.shape()) + " must be (out_features,) or empty");
  }
  return Linear(std::move(weight), std::move(bias), has_bias);
}

void Linear::collect_tensors(const std::string& prefix, std::vector<NamedTensor>& out) {
  out.push_back({prefix + "weight", &weight_, TensorKind::kParameter});
  if (has_bias_) out.push_back({prefix + "bias", &bias_, TensorKind::kParameter});
}

void Linear::quantize() {
  check_not_moved_from(weight_, in_features_, out_features_, "quantize_dynamic");
  // The int8 sums are exact in int64 up to in_features = 2^48
  // (simd/matmul_int8.h); no float weight that wide fits in memory, so this
  // only keeps the promise unconditional.
  if (static_cast<uint64_t>(in_features_) > simd::kInt8MaxK) {
    throw ArgumentError("quantize_dynamic: in_features (" + std::to_string(in_features_) +
                        ") exceeds the int8 kernels' limit of 2^48");
  }
  quantized_weight_ = std::make_shared<const simd::QuantizedMatrix>(simd::QuantizeAndPackB(
      weight_.data(), static_cast<size_t>(in_features_), static_cast<size_t>(out_features_),
      static_cast<size_t>(in_features_)));
  packed_weight_.reset();
}

void Linear::on_tensors_loaded() {
  if (quantized_weight_) {
    quantize();
  } else if (packed_weight_) {
    pack_weight();
  }
}

void Linear::forward_rows(const float* x, size_t ldx, size_t rows, float* y, size_t ldy) const {
  check_not_moved_from(weight_, in_features_, out_features_, "Linear::forward_rows");
  check_rows_arguments(x, ldx, rows, y, ldy, in_features_, out_features_);
  const float* bias = has_bias_ ? bias_.data() : nullptr;
  if (quantized_weight_) {
    parallel::ParallelMatMulInt8(x, ldx, rows, *quantized_weight_, y, ldy, bias);
    return;
  }
  std::shared_ptr<const simd::PackedMatrix> packed = packed_weight_;
  if (!packed) {  // a parameters-only Linear packs for this call alone
    packed = std::make_shared<const simd::PackedMatrix>(
        simd::PackB(weight_.data(), static_cast<size_t>(in_features_), /*b_transposed=*/true,
                    static_cast<size_t>(in_features_), static_cast<size_t>(out_features_)));
  }
  parallel::ParallelMatMulPacked(x, ldx, *packed, y, ldy, rows, bias, /*scale=*/1.0f,
                                 /*accumulate=*/false);
}

Tensor Linear::forward(const Tensor& x) const {
  if (x.dim() < 1 || x.size(-1) != in_features_) {
    throw ShapeError("Linear: input x of shape " + shape_to_string(x.shape()) +
                     " must have last dimension in_features = " + std::to_string(in_features_));
  }
  std::vector<int64_t> shape = x.shape();
  shape.back() = out_features_;
  Tensor y = Tensor::empty(shape);
  const size_t rows = static_cast<size_t>(x.numel() / in_features_);
  forward_rows(x.data(), static_cast<size_t>(in_features_), rows, y.data(),
               static_cast<size_t>(out_features_));
  return y;
}

}  // namespace attn
