// Dispatch wrappers and the scalar reference for simd/matmul.h. The kernels
// are in simd/matmul-inl.h; this file is compiled once per Highway target.

#include "simd/matmul.h"

#include <stddef.h>
#include <stdint.h>

#include <algorithm>

#include "hwy/aligned_allocator.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/matmul.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "simd/matmul-inl.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {

void MatMulT(const simd::MatMulArgs& args) { MatMulKernel(args); }

void PackBT(const float* b, size_t ldb, bool b_transposed, size_t k, size_t n,
            simd::PackedMatrix* out) {
  *out = PackBKernel(b, ldb, b_transposed, k, n);
}

void MatMulPackedT(const float* a, size_t lda, const simd::PackedMatrix& b, float* c, size_t ldc,
                   size_t m, size_t n_begin, size_t n_end, const float* bias, float scale,
                   bool accumulate) {
  MatMulPackedKernel(a, lda, b, c, ldc, m, n_begin, n_end, bias, scale, accumulate);
}

const char* MatMulTargetNameT() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace attn {
namespace simd {

PackedMatrix::PackedMatrix(size_t k, size_t n, size_t panel_width, int64_t target)
    : k_(k), n_(n), panel_width_(panel_width), target_(target) {
  const size_t floats = k * num_panels() * panel_width;
  if (floats != 0) {
    data_.reset(AllocateFloats(floats));
  }
}

HWY_EXPORT(MatMulT);
HWY_EXPORT(PackBT);
HWY_EXPORT(MatMulPackedT);
HWY_EXPORT(MatMulTargetNameT);

void MatMul(const MatMulArgs& args) { HWY_DYNAMIC_DISPATCH(MatMulT)(args); }

PackedMatrix PackB(const float* b, size_t ldb, bool b_transposed, size_t k, size_t n) {
  PackedMatrix packed;
  HWY_DYNAMIC_DISPATCH(PackBT)(b, ldb, b_transposed, k, n, &packed);
  return packed;
}

void MatMulPacked(const float* a, size_t lda, const PackedMatrix& b, float* c, size_t ldc, size_t m,
                  const float* bias, float scale, bool accumulate) {
  HWY_DYNAMIC_DISPATCH(MatMulPackedT)(a, lda, b, c, ldc, m, 0, b.n(), bias, scale, accumulate);
}

void MatMulPackedColumns(const float* a, size_t lda, const PackedMatrix& b, float* c, size_t ldc,
                         size_t m, size_t n_begin, size_t n_end, const float* bias, float scale,
                         bool accumulate) {
  HWY_DYNAMIC_DISPATCH(MatMulPackedT)
  (a, lda, b, c, ldc, m, n_begin, n_end, bias, scale, accumulate);
}

const char* MatMulTargetName() { return HWY_DYNAMIC_DISPATCH(MatMulTargetNameT)(); }

void MatMulReference(const MatMulArgs& args) {
  for (size_t i = 0; i < args.m; ++i) {
    for (size_t j = 0; j < args.n; ++j) {
      double sum = 0.0;
      for (size_t p = 0; p < args.k; ++p) {
        const float b = args.b_transposed ? args.b[j * args.ldb + p] : args.b[p * args.ldb + j];
        sum += static_cast<double>(args.a[i * args.lda + p]) * static_cast<double>(b);
      }
      float* c = args.c + i * args.ldc + j;
      double result = static_cast<double>(args.scale) * sum;
      if (args.bias != nullptr) result += static_cast<double>(args.bias[j]);
      if (args.accumulate) result += static_cast<double>(*c);
      *c = static_cast<float>(result);
    }
  }
}

}  // namespace simd
}  // namespace attn
#endif  // HWY_ONCE
