#include "attn/tensor.h"

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <utility>

#include "attn/error.h"
#include "core/input_checks.h"
#include "simd/aligned_memory.h"

namespace attn {
namespace {

// The machine's physical memory in bytes (0 when unknown): a tensor larger
// than that can never be allocated and zeroed, so it is a shape error rather
// than an allocation that the kernel may grant and then kill the process for.
uint64_t read_physical_memory_bytes() {
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page_size > 0) {
    return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size);
  }
#endif
  return 0;
}

// The element count of `shape`, with every way it can be wrong reported as a
// ShapeError naming `caller` and the shape.
int64_t checked_numel(const std::vector<int64_t>& shape, const char* caller) {
  if (shape.size() > Tensor::kMaxRank) {
    throw ShapeError(std::string(caller) + ": shape " + shape_to_string(shape) + " has rank " +
                     std::to_string(shape.size()) + "; at most " +
                     std::to_string(Tensor::kMaxRank) + " dimensions are supported");
  }
  int64_t numel = 1;
  bool overflow = false;
  for (int64_t extent : shape) {
    if (extent < 0) {
      throw ShapeError(std::string(caller) + ": shape " + shape_to_string(shape) +
                       " has a negative extent");
    }
    overflow = overflow || __builtin_mul_overflow(numel, extent, &numel);
  }
  // A zero extent anywhere makes the count 0, whatever the other extents.
  for (int64_t extent : shape) {
    if (extent == 0) return 0;
  }
  if (overflow) {
    throw ShapeError(std::string(caller) + ": shape " + shape_to_string(shape) +
                     " is too large: its element count overflows int64");
  }
  const uint64_t memory = detail::physical_memory_bytes();
  const uint64_t bytes = static_cast<uint64_t>(numel) * sizeof(float);
  if (bytes / sizeof(float) != static_cast<uint64_t>(numel) || (memory != 0 && bytes > memory)) {
    throw ShapeError(std::string(caller) + ": shape " + shape_to_string(shape) +
                     " is too large: it needs " + std::to_string(bytes) +
                     " bytes, more than this machine's " + std::to_string(memory) +
                     " bytes of memory");
  }
  return numel;
}

}  // namespace

namespace detail {
uint64_t physical_memory_bytes() {
  static const uint64_t bytes = read_physical_memory_bytes();
  return bytes;
}
}  // namespace detail

void Tensor::AlignedFree::operator()(float* p) const { simd::FreeFloats(p); }

Tensor::Tensor() : Tensor(std::vector<int64_t>{0}) {}

Tensor::Tensor(std::vector<int64_t> shape, Uninitialized) : shape_(std::move(shape)) {
  numel_ = checked_numel(shape_, "Tensor");
  // Never null, also for zero elements.
  data_.reset(simd::AllocateFloats(static_cast<size_t>(numel_)));
}

Tensor::Tensor(std::vector<int64_t> shape) : Tensor(std::move(shape), Uninitialized{}) {
  if (numel_ > 0) std::memset(data(), 0, static_cast<size_t>(numel_) * sizeof(float));
}

Tensor Tensor::empty(std::vector<int64_t> shape) {
  return Tensor(std::move(shape), Uninitialized{});
}

Tensor::Tensor(std::vector<int64_t> shape, std::vector<float> values) {
  // The count is checked before anything is allocated (a wrong count with a
  // huge shape must not allocate and zero the shape first).
  const int64_t numel = checked_numel(shape, "Tensor");
  if (static_cast<int64_t>(values.size()) != numel) {
    throw ShapeError("Tensor: shape " + shape_to_string(shape) + " needs " + std::to_string(numel) +
                     " values, got " + std::to_string(values.size()));
  }
  *this = Tensor(std::move(shape), Uninitialized{});
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
  // The product of the known extents, in a wide type that cannot overflow
  // for valid input (stopping at the first value above numel_).
  const std::vector<int64_t> requested_as_given = shape;
  auto cannot = [&](const std::string& why) {
    return ShapeError("Tensor::reshape: cannot view shape " + shape_to_string(shape_) + " as " +
                      shape_to_string(requested_as_given) + ": " + why);
  };
  int64_t known = 1;
  int inferred = -1;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == -1) {
      if (inferred >= 0) throw cannot("only one extent may be -1");
      inferred = static_cast<int>(d);
    } else if (shape[d] < 0) {
      throw cannot("negative extent");
    } else if (__builtin_mul_overflow(known, shape[d], &known)) {
      throw cannot("the element count overflows int64");
    }
  }
  if (inferred >= 0) {
    if (known == 0 || numel_ % known != 0) throw cannot("-1 cannot be inferred");
    shape[static_cast<size_t>(inferred)] = numel_ / known;
  }
  const int64_t count = checked_numel(shape, "Tensor::reshape");
  if (count != numel_) throw cannot("the element counts differ");
  Tensor result = Tensor::empty(std::move(shape));
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
