// Single-threaded matrix multiplication on raw pointers and row strides.
// Dispatched at run time to the best Highway target (AVX3, AVX2, SSE4, SSSE3,
// SCALAR); MatMulReference is the plain scalar reference the tests compare
// against. Neither ever allocates per call beyond an internal packing buffer,
// nor touches memory outside the described rectangles.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "simd/aligned_memory.h"

namespace attn {
namespace simd {

// C = scale * (A · op(B)) + bias  (+ C when accumulate)
//
//   A      : M x K, row stride lda >= K
//   op(B)  : K x N; B is stored K x N (row stride ldb >= N) when
//            !b_transposed, and N x K (row stride ldb >= K) when b_transposed,
//            which is nn.Linear's (out, in) weight layout and K in Q·Kᵀ
//   C      : M x N, row stride ldc >= N
//   bias   : N floats or nullptr, added after scaling (once, also when
//            accumulating)
//
// Aliasing: C must not overlap A, B or bias. M, N or K may be 0 (K = 0 gives
// C = bias, or C unchanged when accumulating without bias).
struct MatMulArgs {
  const float* a = nullptr;
  size_t lda = 0;
  const float* b = nullptr;
  size_t ldb = 0;
  bool b_transposed = false;
  float* c = nullptr;
  size_t ldc = 0;
  size_t m = 0, n = 0, k = 0;
  const float* bias = nullptr;
  float scale = 1.0f;
  bool accumulate = false;
};

// The Highway kernel, dispatched to the best target of this CPU.
//
// Rounding: every element is computed the same way whatever the other rows
// and columns of the call, except for one switch on the shape: with
// b_transposed and M <= kMatMulDotRows, C is computed as dot products
// (reading B in place) instead of by the packed register-tiled kernel, which
// sums in another order. So splitting a call over columns never changes a
// bit, and splitting over rows does not as long as each part stays on the
// same side of kMatMulDotRows (parallel/matmul_parallel.h follows this).
constexpr size_t kMatMulDotRows = 16;

// The register-tiled kernel walks op(B) in column blocks whose packed K x nc
// floats take about this many bytes (kept in L2 while the rows of A stream
// past); every block is read once per call, whatever M. A caller splitting a
// product over threads by columns, at block granularity, has each task read
// its own blocks only (parallel/matmul_parallel.cc).
constexpr size_t kMatMulColumnBlockBytes = size_t{1} << 20;
void MatMul(const MatMulArgs& args);

// Scalar reference: the same contract, one dot product per element in
// ascending k, accumulated in double.
void MatMulReference(const MatMulArgs& args);

// Name of the Highway target MatMul dispatches to right now ("AVX3", ...).
const char* MatMulTargetName();

// op(B) (K x N) packed once into the panel layout of the micro-kernel, for
// weights that are multiplied many times (nn.Linear). Layout: ceil(N / w)
// panels of w = panel_width() columns; panel p holds op(B)[0..K, p*w..p*w+w)
// as K rows of w contiguous floats (zero beyond column N), 64-byte aligned.
// w depends on the target that packed it (32 on AVX3, 16 on AVX2, 8 on
// SSE4/SSSE3, 4 on SCALAR) and is recorded with it: MatMulPacked on a target
// with another width (after DisableTargets, say) still gives the right
// result, through a slower unpacking path. Move-only.
class PackedMatrix {
 public:
  PackedMatrix() = default;
  // Uninitialised storage for k x n packed with panels of panel_width columns
  // by `target` (a HWY_* bit); used by PackB.
  PackedMatrix(size_t k, size_t n, size_t panel_width, int64_t target);

  size_t k() const { return k_; }
  size_t n() const { return n_; }
  size_t panel_width() const { return panel_width_; }
  size_t num_panels() const {
    return panel_width_ == 0 ? 0 : (n_ + panel_width_ - 1) / panel_width_;
  }
  int64_t target() const { return target_; }
  const float* data() const { return data_.get(); }
  float* mutable_data() { return data_.get(); }
  // Panel p: K rows of panel_width() floats.
  const float* panel(size_t p) const { return data_.get() + p * k_ * panel_width_; }

 private:
  std::unique_ptr<float[], FloatsDeleter> data_;
  size_t k_ = 0, n_ = 0, panel_width_ = 0;
  int64_t target_ = 0;
};

// Packs op(B) (B is K x N with row stride ldb >= N, or N x K with ldb >= K
// when b_transposed) for the current best target. Only reads the rectangle.
PackedMatrix PackB(const float* b, size_t ldb, bool b_transposed, size_t k, size_t n);

// C = scale * (A · op(B)) + bias (+ C when accumulate) with a packed B:
// A is m x b.k() (row stride lda), C is m x b.n() (row stride ldc), bias is
// b.n() floats or nullptr. Always the register-tiled kernel: the same bits as
// MatMul on the same target with the unpacked B, except where MatMul takes
// the dot-product path (b_transposed, m <= kMatMulDotRows).
void MatMulPacked(const float* a, size_t lda, const PackedMatrix& b, float* c, size_t ldc, size_t m,
                  const float* bias, float scale, bool accumulate);

// As MatMulPacked, but only computes the columns [n_begin, n_end) of C
// (n_end <= b.n()); `c` and `bias` still point at column 0. The other
// columns are neither read nor written, so disjoint column ranges may run
// concurrently. Each element gets the same bits whatever the range.
void MatMulPackedColumns(const float* a, size_t lda, const PackedMatrix& b, float* c, size_t ldc,
                         size_t m, size_t n_begin, size_t n_end, const float* bias, float scale,
                         bool accumulate);

}  // namespace simd
}  // namespace attn
