// Run-time tile shape to compile-time register tile, for the GEMM kernels
// (simd/matmul-inl.h, simd/matmul_int8-inl.h, simd/matmul_int8_vnni.cc). A
// register tile is a function template on its rows and vectors, so that its
// accumulators are locals and its loops unrolled; the edges of C (fewer rows
// left, fewer columns asked for) need the smaller shapes.
// Plain C++: no Highway vector types, usable from per-target and plain code.
#pragma once

#include <stddef.h>

#include <type_traits>

#include "hwy/base.h"

namespace attn {
namespace simd {
namespace detail {

// Calls fn(std::integral_constant<size_t, rows>(),
// std::integral_constant<size_t, vecs>(), args...) for run-time rows in
// [1, kRows] and vecs in [1, kVecs], by compile-time recursion on the rows
// first, then on the vectors: a full tile costs two compares. fn is
// typically a generic lambda that passes the constants on as template
// arguments,
//   [&](auto rows, auto vecs) HWY_ATTR { MicroTile<rows, vecs>(...); }
// (HWY_ATTR in per-target code). This template is defined outside any
// Highway target region, so each of its instantiations is compiled for the
// baseline ISA; it is forced inline, so that fn is called (and inlined)
// from the caller, compiled for the caller's target.
template <size_t kRows, size_t kVecs, class Fn, class... Args>
HWY_INLINE void DispatchTile(size_t rows, size_t vecs, Fn&& fn, Args&&... args) {
  if constexpr (kRows > 1) {
    if (rows != kRows) {
      DispatchTile<kRows - 1, kVecs>(rows, vecs, fn, args...);
      return;
    }
  }
  if constexpr (kVecs > 1) {
    if (vecs != kVecs) {
      DispatchTile<kRows, kVecs - 1>(rows, vecs, fn, args...);
      return;
    }
  }
  fn(std::integral_constant<size_t, kRows>(), std::integral_constant<size_t, kVecs>(), args...);
}

}  // namespace detail
}  // namespace simd
}  // namespace attn
