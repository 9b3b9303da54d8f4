#include "attn/tensor.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <utility>

#include "attn/error.h"
#include "core/aligned_memory.h"

namespace attn {
namespace {

int64_t checked_numel(const std::vector<int64_t>& shape) {
  if (shape.size() > Tensor::kMaxRank) {
    throw ShapeError("Tensor: shape " + shape_to_string(shape) + " has rank " +
                     std::to_string(shape.size()) + "; at most " +
                     std::to_string(Tensor::kMaxRank) + " dimensions are supported");
  }
  int64_t numel = 1;
  for (int64_t extent : shape) {
    if (extent < 0) {
      throw ShapeError("Tensor: shape " + shape_to_string(shape) + " has a negative extent");
    }
    // Guard against overflow of the element count (and of its byte size).
    if (extent != 0 && numel > (int64_t{1} << 40) / extent) {
      throw ShapeError("Tensor: shape " + shape_to_string(shape) + " is too large");
    }
    numel *= extent;
  }
  return numel;
}

}  // namespace

void Tensor::AlignedFree::operator()(float* p) const { detail::free_floats(p); }

Tensor::Tensor() : Tensor(std::vector<int64_t>{0}) {}

Tensor::Tensor(std::vector<int64_t> shape, Uninitialized) : shape_(std::move(shape)) {
  numel_ = checked_numel(shape_);
  // Never null, also for zero elements.
  data_.reset(detail::allocate_floats(static_cast<size_t>(numel_)));
}

Tensor::Tensor(std::vector<int64_t> shape) : Tensor(std::move(shape), Uninitialized{}) {
  if (numel_ > 0) std::memset(data(), 0, static_cast<size_t>(numel_) * sizeof(float));
}

Tensor Tensor::empty(std::vector<int64_t> shape) {
  return Tensor(std::move(shape), Uninitialized{});
}

Tensor::Tensor(std::vector<int64_t> shape, std::vector<float> values) : Tensor(std::move(shape)) {
  if (static_cast<int64_t>(values.size()) != numel_) {
    throw ShapeError("Tensor: shape " + shape_to_string(shape_) + " needs " +
                     std::to_string(numel_) + " values, got " + std::to_string(values.size()));
  }
  if (numel_ > 0) std::memcpy(data(), values.data(), values.size() * sizeof(float));
}

Tensor::Tensor(const Tensor& other) : Tensor(other.shape_, Uninitialized{}) {
  if (numel_ > 0) std::memcpy(data(), other.data(), static_cast<size_t>(numel_) * sizeof(float));
}

Tensor& Tensor::operator=(const Tensor& other) {
  if (this != &other) {
    Tensor copy(other);
    *this = std::move(copy);
  }
  return *this;
}

// A moved-from tensor is left empty (shape {0}) but valid.
Tensor::Tensor(Tensor&& other) noexcept
    : shape_(std::move(other.shape_)), numel_(other.numel_), data_(std::move(other.data_)) {
  other.shape_ = {0};
  other.numel_ = 0;
}

Tensor& Tensor::operator=(Tensor&& other) noexcept {
  if (this != &other) {
    shape_ = std::move(other.shape_);
    numel_ = other.numel_;
    data_ = std::move(other.data_);
    other.shape_ = {0};
    other.numel_ = 0;
  }
  return *this;
}

int64_t Tensor::size(int64_t d) const {
  const int64_t rank = dim();
  const int64_t index = d < 0 ? d + rank : d;
  if (index < 0 || index >= rank) {
    throw ShapeError("Tensor::size: dimension " + std::to_string(d) +
                     " is out of range for shape " + shape_to_string(shape_));
  }
  return shape_[static_cast<size_t>(index)];
}

size_t Tensor::offset_of(std::initializer_list<int64_t> index) const {
  if (index.size() != shape_.size()) {
    throw ShapeError("Tensor::at: " + std::to_string(index.size()) +
                     " indices for a tensor of shape " + shape_to_string(shape_));
  }
  size_t offset = 0;
  size_t d = 0;
  for (int64_t i : index) {
    if (i < 0 || i >= shape_[d]) {
      throw ShapeError("Tensor::at: index " + std::to_string(i) + " out of range in dimension " +
                       std::to_string(d) + " of shape " + shape_to_string(shape_));
    }
    offset = offset * static_cast<size_t>(shape_[d]) + static_cast<size_t>(i);
    ++d;
  }
  return offset;
}

float& Tensor::at(std::initializer_list<int64_t> index) { return data()[offset_of(index)]; }
float Tensor::at(std::initializer_list<int64_t> index) const { return data()[offset_of(index)]; }

Tensor Tensor::reshape(std::vector<int64_t> shape) const {
  int64_t known = 1;
  int inferred = -1;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == -1 && inferred < 0) {
      inferred = static_cast<int>(d);
    } else {
      known *= shape[d];
    }
  }
  if (inferred >= 0 && known > 0 && numel_ % known == 0) shape[inferred] = numel_ / known;
  std::vector<int64_t> requested = shape;
  const int64_t count = checked_numel(requested);  // throws on -1 left over
  if (count != numel_) {
    throw ShapeError("Tensor::reshape: cannot view shape " + shape_to_string(shape_) + " as " +
                     shape_to_string(requested));
  }
  Tensor result = Tensor::empty(std::move(requested));
  if (numel_ > 0) std::memcpy(result.data(), data(), static_cast<size_t>(numel_) * sizeof(float));
  return result;
}

std::vector<float> Tensor::to_vector() const { return std::vector<float>(data(), data() + numel_); }

std::string shape_to_string(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << '(';
  for (size_t d = 0; d < shape.size(); ++d) {
    if (d > 0) out << ", ";
    out << shape[d];
  }
  if (shape.size() == 1) out << ',';
  out << ')';
  return out.str();
}

bool allclose(const Tensor& a, const Tensor& b, float rtol, float atol) {
  if (a.shape() != b.shape()) return false;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const float x = a.data()[i];
    const float y = b.data()[i];
    if (x == y) continue;  // equal infinities
    if (!(std::fabs(x - y) <= atol + rtol * std::fabs(y))) return false;
  }
  return true;
}

}  // namespace attn
