// Internals shared by the int8 GEMM's translation units (simd/matmul_int8.cc,
// simd/matmul_int8-inl.h per Highway target, simd/matmul_int8_vnni.cc).
// Not installed; plain C++.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <cmath>

#include "simd/matmul_int8.h"
#include "simd/thread_scratch.h"

namespace attn {
namespace simd {
namespace detail {

// Quantization parameters of one activation row from its min and max (and
// whether it is all finite): simd/matmul_int8.h's QuantizeRows formulas.
// One function compiled once, so that every kernel gets the same bits.
struct RowQuant {
  float scale;      // NaN for a non-finite row
  float inv_scale;  // float(1 / scale); 0 for a non-finite row
  int32_t zero_point;
};
RowQuant ActivationRowParams(float min, float max, bool finite);

// One activation: clamp(nearbyint(x * inv_scale) + zero_point, 0, 255), the
// product in float (the kernels' vector path does the same operations).
inline uint8_t QuantizeActivation(float x, float inv_scale, int32_t zero_point) {
  const int32_t q = static_cast<int32_t>(std::nearbyint(x * inv_scale)) + zero_point;
  return static_cast<uint8_t>(q < 0 ? 0 : (q > 255 ? 255 : q));
}

// This thread's 64-byte aligned scratch for the kernels' packed A
// micro-panel, at least `bytes` bytes: the ThreadScratch slot kMatMul
// (simd/thread_scratch.h). MatMulInt8 is a leaf kernel like simd::MatMul
// (it calls nothing that takes a scratch slot, and no caller holds kMatMul
// around it), so the two share the slot and its memory. Throws
// std::bad_alloc.
inline uint8_t* Int8PanelScratch(size_t bytes) {
  return reinterpret_cast<uint8_t*>(
      ThreadScratch(ScratchSlot::kMatMul, (bytes + sizeof(float) - 1) / sizeof(float)));
}

// --- The AVX-512 VNNI kernel (simd/matmul_int8_vnni.cc; x86-64 only) ---------

// Whether this CPU (and OS) runs AVX-512 F, BW, VL and VNNI. False elsewhere.
bool CpuHasInt8Vnni();
// The VNNI kernel's packing (id kInt8VnniLayoutId).
Int8Layout VnniInt8Layout();
// MatMulInt8's contract for b packed in VnniInt8Layout(). Only called when
// CpuHasInt8Vnni(); does nothing where the kernel is not compiled.
void MatMulInt8Vnni(const uint8_t* aq, size_t ldaq, const float* a_scale, const int32_t* a_zp,
                    size_t m, const QuantizedMatrix& b, float* c, size_t ldc, size_t n_begin,
                    size_t n_end, const float* bias);

}  // namespace detail
}  // namespace simd
}  // namespace attn
