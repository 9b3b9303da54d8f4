// Internals shared by the int8 GEMM's translation units (simd/matmul_int8.cc,
// simd/matmul_int8-inl.h per Highway target, simd/matmul_int8_vnni.cc): the
// activation quantization's scalar formulas, the kernels' loop nest, A
// packing and large-K path, and the VNNI kernel's entry points.
// Not installed; plain C++.
//
// Target flags: the templates and inline functions here are defined outside
// any Highway target region, no translation unit of attn is compiled with -m
// flags (the VNNI kernel uses per-function target attributes), and GCC and
// clang take an instantiation's target options from the template's definition,
// not from the per-target code that instantiates it. So every out-of-line copy
// is baseline code, the same in every translation unit, and the linker may
// keep any of them: plain `inline` is safe, neither `static` nor an anonymous
// namespace is needed. The loop helpers are forced inline (HWY_INLINE), so
// that inside a kernel they are compiled for the kernel's target, as when each
// kernel had its own copy.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <algorithm>
#include <cmath>

#include "hwy/base.h"
#include "simd/matmul_int8.h"
#include "simd/thread_scratch.h"
#include "simd/tile_dispatch.h"

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

// --- The kernels' loop nest (simd/matmul_int8-inl.h, simd/matmul_int8_vnni.cc) ---

inline size_t DivCeil(size_t a, size_t b) { return (a + b - 1) / b; }

// Where a tile's results go and what dequantizes them: c, bias, w_scale,
// colsum and colsum64 point at the tile's column 0 (w_scale, colsum,
// colsum64: the packed matrix's padded, 64-byte aligned arrays), a_scale
// and a_zp at its row 0; columns [col_lo, col_hi) of the tile are stored.
// colsum (QuantizedMatrix::column_sums32) serves the one-chunk int32 path,
// colsum64 (column_sums) the chunked path (Int8TileInChunks).
struct Int8TileOut {
  float* c;
  size_t ldc;
  const float* a_scale;
  const int32_t* a_zp;
  const float* w_scale;
  const int32_t* colsum;
  const int64_t* colsum64;
  const float* bias;
  size_t col_lo, col_hi;
};

// The A micro-panel of `rows` rows of aq (row stride ldaq, k bytes each) in
// steps of kKStep k, each value converted to T (int16 for the Highway
// kernels, uint8 for VNNI): dst[(s * rows + r) * kKStep + t] =
// aq[r * ldaq + s * kKStep + t], 0 past k (steps * kKStep >= k). One
// kKStep-element load then gives a row's k of one step.
template <size_t kKStep, typename T>
HWY_INLINE void PackInt8APanel(const uint8_t* HWY_RESTRICT aq, size_t ldaq, size_t rows, size_t k,
                               size_t steps, T* HWY_RESTRICT dst) {
  const size_t full = k / kKStep;
  for (size_t r = 0; r < rows; ++r) {
    const uint8_t* HWY_RESTRICT src = aq + r * ldaq;
    T* HWY_RESTRICT out = dst + r * kKStep;
    size_t s = 0;
    for (; s < full; ++s) {
      for (size_t t = 0; t < kKStep; ++t) out[s * rows * kKStep + t] = src[s * kKStep + t];
    }
    for (; s < steps; ++s) {
      for (size_t t = 0; t < kKStep; ++t) {
        const size_t kk = s * kKStep + t;
        out[s * rows * kKStep + t] = static_cast<T>(kk < k ? src[kk] : 0);
      }
    }
  }
}

// MatMulInt8's contract (simd/matmul_int8.h) for b packed in a kernel's
// layout (panels of kNV * kLanes columns, k in steps of kKStep, elements
// T), as the loop nest of both kernels:
//   for each column block of packed B       (~kMatMulInt8ColumnBlockBytes: stays in L2)
//     for each kMR rows of A
//       pack their A micro-panel, all of K  (PackInt8APanel, in this thread's
//                                            Int8PanelScratch: stays in L1)
//       for each panel of the block
//         tile(rows, vecs, ap, bp, steps, o)
// where rows (<= kMR) and vecs (<= kNV, the vectors that cover the stored
// columns) are std::integral_constant (see DispatchTile), ap the packed A
// micro-panel, bp the panel (k_padded / kKStep steps of kNV * kLanes *
// kKStep elements) and o the tile's destination.
template <size_t kMR, size_t kNV, size_t kLanes, size_t kKStep, typename T, class TileFn>
HWY_INLINE void ForEachInt8Tile(const uint8_t* aq, size_t ldaq, const float* a_scale,
                                const int32_t* a_zp, size_t m, const QuantizedMatrix& b, float* c,
                                size_t ldc, size_t n_begin, size_t n_end, const float* bias,
                                TileFn&& tile) {
  constexpr size_t kNR = kNV * kLanes;
  n_end = std::min(n_end, b.n());
  if (m == 0 || n_begin >= n_end) return;
  const size_t k = b.k();
  const size_t steps = b.k_padded() / kKStep;
  const size_t p_begin = n_begin / kNR;
  const size_t p_end = DivCeil(n_end, kNR);
  const size_t nc_panels =
      std::max<size_t>(1, kMatMulInt8ColumnBlockBytes / std::max<size_t>(1, b.panel_bytes()));
  T* apanel = reinterpret_cast<T*>(Int8PanelScratch(kMR * steps * kKStep * sizeof(T)));
  for (size_t jc = p_begin; jc < p_end; jc += nc_panels) {
    const size_t jc_end = std::min(p_end, jc + nc_panels);
    for (size_t i0 = 0; i0 < m; i0 += kMR) {
      const size_t mr = std::min(kMR, m - i0);
      PackInt8APanel<kKStep>(aq + i0 * ldaq, ldaq, mr, k, steps, apanel);
      for (size_t p = jc; p < jc_end; ++p) {
        const size_t col0 = p * kNR;
        Int8TileOut o;
        o.c = c + i0 * ldc + col0;
        o.ldc = ldc;
        o.a_scale = a_scale + i0;
        o.a_zp = a_zp + i0;
        o.w_scale = b.scales() + col0;
        o.colsum = b.column_sums32() + col0;
        o.colsum64 = b.column_sums() + col0;
        o.bias = bias != nullptr ? bias + col0 : nullptr;
        o.col_lo = std::max(n_begin, col0) - col0;
        o.col_hi = std::min(n_end, col0 + kNR) - col0;
        const T* bp = reinterpret_cast<const T*>(b.panel(p));
        DispatchTile<kMR, kNV>(mr, DivCeil(o.col_hi, kLanes), tile, apanel, bp, steps, o);
      }
    }
  }
}

// A tile's path for K above kInt8ChunkK: chunk_sums(s0, count, part)
// writes the int32 sums of steps [s0, s0 + count) (count <= chunk_steps:
// exact in int32) into part[kRows][kWidth]; they are added in int64 and
// each stored element dequantized by the reference's formula
// (DequantizeInt8) with the int64 column sums (o.colsum64): exact for any
// k <= kInt8MaxK. Called once per tile, so its overhead is nothing next to
// the chunks' more than 2^16 k.
template <size_t kRows, size_t kWidth, class ChunkSums>
HWY_INLINE void Int8TileInChunks(size_t steps, size_t chunk_steps, const Int8TileOut& o,
                                 ChunkSums&& chunk_sums) {
  int64_t total[kRows][kWidth] = {};
  int32_t part[kRows * kWidth];
  for (size_t s0 = 0; s0 < steps; s0 += chunk_steps) {
    chunk_sums(s0, std::min(chunk_steps, steps - s0), part);
    for (size_t i = 0; i < kRows; ++i) {
      for (size_t j = 0; j < kWidth; ++j) total[i][j] += part[i * kWidth + j];
    }
  }
  for (size_t i = 0; i < kRows; ++i) {
    for (size_t j = o.col_lo; j < o.col_hi; ++j) {
      o.c[i * o.ldc + j] = DequantizeInt8(total[i][j], o.a_zp[i], o.colsum64[j], o.a_scale[i],
                                          o.w_scale[j], o.bias != nullptr ? o.bias + j : nullptr);
    }
  }
}

}  // namespace detail
}  // namespace simd
}  // namespace attn
