// What the AVX-512 VNNI kernels share (simd/matmul_int8_vnni.cc,
// simd/kv_int8_vnni_scores.cc, simd/kv_int8_vnni_values.cc). Highway 1.0.3 has no 8-bit dot
// product, so these kernels use intrinsics in functions compiled for AVX-512 F/BW/VL/VNNI by target
// attributes (the rest of the binary stays baseline x86-64), called only after the run-time check
// CpuHasInt8Vnni() (simd/matmul_int8_internal.h). ATTN_HAVE_VNNI is 1 on x86-64 with GCC or Clang,
// else 0 (the kernels' entry points are then stubs that are never reached).
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define ATTN_HAVE_VNNI 1
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define ATTN_VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#define ATTN_VNNI_INLINE ATTN_VNNI_TARGET __attribute__((always_inline)) inline

// Around the kernels: GCC 12's AVX-512 conversion intrinsics pass
// _mm*_undefined_*() (a self-initialized variable) as the unused merge
// source, which -Wmaybe-uninitialized reports once inlined; Highway silences
// the same.
#if defined(__GNUC__) && !defined(__clang__)
#define ATTN_VNNI_DIAGNOSTICS_PUSH                                                     \
  _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wuninitialized\"") \
      _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")
#define ATTN_VNNI_DIAGNOSTICS_POP _Pragma("GCC diagnostic pop")
#else
#define ATTN_VNNI_DIAGNOSTICS_PUSH
#define ATTN_VNNI_DIAGNOSTICS_POP
#endif

namespace attn {
namespace simd {
namespace detail {

// acc + vpdpbusd(a (u8), b (s8)): per 32-bit lane, the sum of 4 products
// of unsigned by signed bytes (no saturation). GCC 12 keeps the accumulators
// of _mm512_dpbusd_epi32 in a loop in memory (a copy and a stack store per
// instruction); the same instruction as inline asm stays in registers.
ATTN_VNNI_INLINE __m512i Dpbusd(__m512i acc, __m512i a, __m512i b) {
#if defined(__GNUC__) && !defined(__clang__)
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
  return acc;
#else
  return _mm512_dpbusd_epi32(acc, a, b);
#endif
}

// Bytes 4i .. 4i+3 at p (a group of 4 bytes: 4 k of a row, a query's quad,
// 4 tokens' weights) in every 32-bit lane.
ATTN_VNNI_INLINE __m512i Broadcast4(const void* p, size_t i) {
  int32_t four;
  memcpy(&four, static_cast<const uint8_t*>(p) + 4 * i, sizeof(four));
  return _mm512_set1_epi32(four);
}

}  // namespace detail
}  // namespace simd
}  // namespace attn

#else
#define ATTN_HAVE_VNNI 0
#endif
