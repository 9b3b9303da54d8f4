// Per-target layout of the int8 GEMM's operands (included, once per Highway
// target, by simd/matmul_int8-inl.h and simd/matmul_int8_quantize-inl.h):
// the vector types, the register tile kMR x (kNV vectors) with its
// derivation, and the packed layout that follows from it (LayoutKernel()):
// B, packed by simd::PackQuantizedB (simd/matmul_int8.cc), in panels of
// kNR = kNV * kLanes columns, K padded to a multiple of kKStep, each panel
// step-major with a column's kKStep k in adjacent int16; the A micro-panel,
// packed per call by simd::detail::PackInt8APanel<kKStep, int16_t>
// (simd/matmul_int8_internal.h), kMR x K int16, step-major with a row's
// kKStep k adjacent.
//
// Targets: every Highway target; the SVE targets use the first 128 bits of
// each vector (see DI32). Types and constants only: nothing here touches
// memory.

// Per-target section: re-included once per target (toggle guard).
#if defined(ATTN_SIMD_MATMUL_INT8_LAYOUT_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ATTN_SIMD_MATMUL_INT8_LAYOUT_INL_H_
#undef ATTN_SIMD_MATMUL_INT8_LAYOUT_INL_H_
#else
#define ATTN_SIMD_MATMUL_INT8_LAYOUT_INL_H_
#endif

#include <stddef.h>
#include <stdint.h>

#include "hwy/highway.h"
#include "simd/matmul_int8.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

namespace int8_detail {

#if HWY_HAVE_SCALABLE
// SVE: vectors are sizeless (no arrays of them) and their length is only
// known at run time, so the kernel works on their first 128 bits (a capped
// tag: 4 int32 columns, a compile-time panel width) with a one-vector tile
// of named accumulators (TileSums, simd/matmul_int8-inl.h).
using DI32 = hn::CappedTag<int32_t, 4>;
using DF = hn::CappedTag<float, 4>;
#else
using DI32 = hn::ScalableTag<int32_t>;
using DF = hn::ScalableTag<float>;
#endif
using VI32 = hn::Vec<DI32>;
using VF = hn::Vec<DF>;
#if HWY_TARGET == HWY_SCALAR
// One lane: one k per step, a plain int16 product.
using DI16 = hn::Rebind<int16_t, DI32>;
constexpr size_t kKStep = 1;
#else
// Two int16 per int32 lane: ReorderWidenMulAccumulate sums pairs of k.
using DI16 = hn::Repartition<int16_t, DI32>;
constexpr size_t kKStep = 2;
#endif
using VI16 = hn::Vec<DI16>;
// ReorderWidenMulAccumulate followed by RearrangeToOddPlusEven adds the
// products of int16 lanes 2j and 2j + 1 into int32 lane j on every target
// (x86: vpmaddwd; NEON: vmlal on the halves, then a pairwise add; SVE: even
// and odd lanes): a column's two k are adjacent in B, and A's pair is one
// broadcast int32.

// Register tile kMR x (kNV vectors of int32). Per step (kKStep k) the tile
// loads kNV vectors of B, broadcasts kMR pairs of A and issues kMR * kNV
// multiply-adds (x86: vpmaddwd into a temporary, then vpaddd), which must
// fit the register file with the kNV B vectors, the broadcast and the
// temporary:
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
// AVX-512 without VNNI: 12 x 2 = 24 accumulators + 2 B + 1 A + 1 = 28 zmm.
constexpr size_t kMR = 12;
constexpr size_t kNV = 2;
#elif HWY_ARCH_X86 && HWY_TARGET == HWY_AVX2
// AVX2: 4 x 2 = 8 accumulators + 2 B + 1 A + 1 temporary = 12 of 16 ymm.
// Per step 8 vpmaddwd (16 products each, on two ALU ports) and 8 vpaddd
// (on three): at best 128 multiply-adds per 5.3 cycles, 1.5x float32's 16
// FMA lanes per cycle. Measured on SPR (AVX3 disabled), GOP/s per core:
// 4 x 2 and 3 x 3 105, 5 x 2 95, 6 x 2 83 (16 ymm: GCC spills), 2 x 4 84.
constexpr size_t kMR = 4;
constexpr size_t kNV = 2;
#elif HWY_TARGET == HWY_SCALAR
// One lane: 4 x 4 = 16 independent scalar accumulators.
constexpr size_t kMR = 4;
constexpr size_t kNV = 4;
#elif HWY_HAVE_SCALABLE
// SVE (see DI32): 4 rows x 1 vector of 4 columns, named accumulators.
constexpr size_t kMR = 4;
constexpr size_t kNV = 1;
#elif HWY_ARCH_ARM_A64
// NEON, 32 registers, two accumulators per output vector (the lower- and
// upper-half sums): 6 x 2 x 2 = 24 + 2 B + 1 A = 27.
constexpr size_t kMR = 6;
constexpr size_t kNV = 2;
#else
// 128-bit x86 (SSE4/SSSE3: destructive two-operand instructions need
// copies): 4 x 2 = 8 accumulators + 2 B + 1 A + 1 temporary.
constexpr size_t kMR = 4;
constexpr size_t kNV = 2;
#endif
constexpr size_t kLanes = hn::MaxLanes(DI32());
constexpr size_t kNR = kNV * kLanes;  // columns of a panel
// Steps per int32 chunk of K.
constexpr size_t kChunkSteps = simd::kInt8ChunkK / kKStep;

// This target's packing (simd::Int8Layout).
inline simd::Int8Layout LayoutKernel() {
  simd::Int8Layout layout;
  layout.id = HWY_TARGET;
  layout.panel_width = kNR;
  layout.k_step = kKStep;
  layout.elem_bytes = sizeof(int16_t);
  return layout;
}

}  // namespace int8_detail

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#endif  // ATTN_SIMD_MATMUL_INT8_LAYOUT_INL_H_
