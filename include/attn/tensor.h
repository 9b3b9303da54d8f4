// attn::Tensor: a minimal float32 tensor. Contiguous, row-major, 64-byte
// aligned storage, rank 0 to 4, value semantics (copies copy the data).
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

namespace attn {

class Tensor {
 public:
  static constexpr size_t kMaxRank = 4;
  // Bytes; one cache line, one AVX-512 vector (large tensors are 2 MiB
  // aligned for transparent huge pages).
  static constexpr size_t kAlignment = 64;

  // An empty tensor: shape {0}, no elements.
  Tensor();
  // Zero-filled tensor of the given shape. Throws ShapeError on a negative
  // extent, a rank above kMaxRank, an element count that overflows int64, or
  // more bytes than the machine's physical memory (std::bad_alloc remains
  // possible when memory is short for a smaller tensor).
  explicit Tensor(std::vector<int64_t> shape);
  // torch.empty: a tensor of the given shape whose values are unspecified
  // (not zero-filled); for outputs that are about to be overwritten.
  static Tensor empty(std::vector<int64_t> shape);
  // Tensor of the given shape holding `values` in row-major order. Throws
  // ShapeError when values.size() differs from the shape's element count.
  Tensor(std::vector<int64_t> shape, std::vector<float> values);

  Tensor(const Tensor& other);
  Tensor& operator=(const Tensor& other);
  Tensor(Tensor&& other) noexcept;
  Tensor& operator=(Tensor&& other) noexcept;
  ~Tensor() = default;

  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
  // Extent of dimension d; negative d counts from the end as in PyTorch.
  int64_t size(int64_t d) const;
  int64_t numel() const { return numel_; }

  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }

  // Bounds-checked element access by multi-index (throws ShapeError).
  float& at(std::initializer_list<int64_t> index);
  float at(std::initializer_list<int64_t> index) const;

  // A copy with another shape of the same element count (one extent may be
  // -1, inferred). Throws ShapeError naming both shapes otherwise.
  Tensor reshape(std::vector<int64_t> shape) const;
  // Row-major values as a vector.
  std::vector<float> to_vector() const;

 private:
  struct AlignedFree {
    void operator()(float* p) const;
  };
  struct Uninitialized {};
  Tensor(std::vector<int64_t> shape, Uninitialized);
  size_t offset_of(std::initializer_list<int64_t> index) const;

  std::vector<int64_t> shape_;
  int64_t numel_ = 0;
  std::unique_ptr<float[], AlignedFree> data_;
};

// "(2, 6, 3)": the shape as PyTorch prints it, for error messages.
std::string shape_to_string(const std::vector<int64_t>& shape);

// True when both tensors have the same shape and every pair of elements
// satisfies |a - b| <= atol + rtol * |b| (NaNs never compare equal).
bool allclose(const Tensor& a, const Tensor& b, float rtol = 1e-5f, float atol = 1e-8f);

}  // namespace attn
