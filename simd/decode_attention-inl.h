// Per-target kernel of simd::DecodeAttention; the contract is in
// simd/decode_attention.h (and simd/flash_attention.h). Included once per
// target by simd/decode_attention.cc and by tests/simd/decode_attention_test.cc.

#if defined(ATTN_SIMD_DECODE_ATTENTION_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ATTN_SIMD_DECODE_ATTENTION_INL_H_
#undef ATTN_SIMD_DECODE_ATTENTION_INL_H_
#else
#define ATTN_SIMD_DECODE_ATTENTION_INL_H_
#endif

#include <stddef.h>

#include <algorithm>
#include <limits>

#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "simd/decode_dot-inl.h"
#include "simd/flash_attention.h"
#include "simd/softmax-inl.h"
#include "simd/softmax.h"
#include "simd/thread_scratch.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

// K and V rows prefetched ahead of the row being read, line by line with the
// loads (K by groups of four rows, V by rows of several query rows: with one
// row, the hardware prefetcher keeps up with its 4 FMAs a vector better
// without the extra instructions). A burst of prefetches (a whole block at
// once) holds the line-fill buffers and stalls the loads around it.
constexpr size_t kDecodePrefetchRows = 32;
// Vector registers of this target: 16 on x86 below AVX-512, 32 elsewhere
// (AVX-512, NEON, SVE). Bounds the accumulators DecodeValueColumns keeps.
#if HWY_ARCH_X86 && HWY_TARGET > HWY_AVX3
constexpr size_t kDecodeVectorRegisters = 16;
#else
constexpr size_t kDecodeVectorRegisters = 32;
#endif

// Keys per block: a block of K (or V) rows fills about 16 KiB, so the rows
// read for one query row stay in L1 for the others of its call, and a
// position's V rows are read from memory once whatever head_dim is. A
// multiple of 4 (DecodeDot4's step), at least 16.
inline size_t DecodeKeyBlock(size_t head_dim) {
  const size_t keys = (size_t{16} << 10) / (sizeof(float) * std::max<size_t>(head_dim, 1));
  return std::max<size_t>(16, keys / 4 * 4);
}

// out_r[c, c + C * N) (+)= sum over j in [begin, end) of p_r[j] * v_j[c, ...)
// for R <= 4 query rows of one position (p_r = p[r], out_r = out[r]): R * C
// accumulators (starting from out_r when accumulate, else zero), each V row
// loaded once for the R rows. Each lane sums over j in order, so a lane's
// result does not depend on R, C or how [begin, end) is split into calls.
template <size_t R, size_t C>
HWY_INLINE void DecodeValueColumns(const float* const* p, const float* HWY_RESTRICT v, size_t ldv,
                                   size_t begin, size_t end, size_t prefetch_end, size_t c,
                                   float* const* out, bool accumulate) {
  static_assert(R >= 1 && R <= 4 && (C == 1 || C == 2 || C == 4), "R rows, C vectors");
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  const auto zero = hn::Zero(d);
  auto init = [&](size_t r, size_t x) {
    return accumulate ? hn::LoadU(d, out[r] + c + x * N) : hn::Zero(d);
  };
  auto a00 = init(0, 0), a01 = C > 1 ? init(0, 1) : zero, a02 = C > 2 ? init(0, 2) : zero,
       a03 = C > 3 ? init(0, 3) : zero;
  auto a10 = R > 1 ? init(1, 0) : zero, a11 = R > 1 && C > 1 ? init(1, 1) : zero,
       a12 = R > 1 && C > 2 ? init(1, 2) : zero, a13 = R > 1 && C > 3 ? init(1, 3) : zero;
  auto a20 = R > 2 ? init(2, 0) : zero, a21 = R > 2 && C > 1 ? init(2, 1) : zero,
       a22 = R > 2 && C > 2 ? init(2, 2) : zero, a23 = R > 2 && C > 3 ? init(2, 3) : zero;
  auto a30 = R > 3 ? init(3, 0) : zero, a31 = R > 3 && C > 1 ? init(3, 1) : zero,
       a32 = R > 3 && C > 2 ? init(3, 2) : zero, a33 = R > 3 && C > 3 ? init(3, 3) : zero;
  for (size_t j = begin; j < end; ++j) {
    const float* HWY_RESTRICT row = v + j * ldv + c;
    if (R > 1 && j + kDecodePrefetchRows < prefetch_end) {
      for (size_t x = 0; x < C * N; x += 64 / sizeof(float)) {
        hwy::Prefetch(row + kDecodePrefetchRows * ldv + x);
      }
    }
    const auto v0 = hn::LoadU(d, row);
    const auto v1 = C > 1 ? hn::LoadU(d, row + N) : zero;
    const auto v2 = C > 2 ? hn::LoadU(d, row + 2 * N) : zero;
    const auto v3 = C > 3 ? hn::LoadU(d, row + 3 * N) : zero;
    const auto w0 = hn::Set(d, p[0][j]);
    a00 = hn::MulAdd(w0, v0, a00);
    if (C > 1) a01 = hn::MulAdd(w0, v1, a01);
    if (C > 2) a02 = hn::MulAdd(w0, v2, a02);
    if (C > 3) a03 = hn::MulAdd(w0, v3, a03);
    if (R > 1) {
      const auto w1 = hn::Set(d, p[1][j]);
      a10 = hn::MulAdd(w1, v0, a10);
      if (C > 1) a11 = hn::MulAdd(w1, v1, a11);
      if (C > 2) a12 = hn::MulAdd(w1, v2, a12);
      if (C > 3) a13 = hn::MulAdd(w1, v3, a13);
    }
    if (R > 2) {
      const auto w2 = hn::Set(d, p[2][j]);
      a20 = hn::MulAdd(w2, v0, a20);
      if (C > 1) a21 = hn::MulAdd(w2, v1, a21);
      if (C > 2) a22 = hn::MulAdd(w2, v2, a22);
      if (C > 3) a23 = hn::MulAdd(w2, v3, a23);
    }
    if (R > 3) {
      const auto w3 = hn::Set(d, p[3][j]);
      a30 = hn::MulAdd(w3, v0, a30);
      if (C > 1) a31 = hn::MulAdd(w3, v1, a31);
      if (C > 2) a32 = hn::MulAdd(w3, v2, a32);
      if (C > 3) a33 = hn::MulAdd(w3, v3, a33);
    }
  }
  auto store = [&](decltype(zero) a, size_t r, size_t x) { hn::StoreU(a, d, out[r] + c + x * N); };
  store(a00, 0, 0);
  if (C > 1) store(a01, 0, 1);
  if (C > 2) store(a02, 0, 2);
  if (C > 3) store(a03, 0, 3);
  if (R > 1) {
    store(a10, 1, 0);
    if (C > 1) store(a11, 1, 1);
    if (C > 2) store(a12, 1, 2);
    if (C > 3) store(a13, 1, 3);
  }
  if (R > 2) {
    store(a20, 2, 0);
    if (C > 1) store(a21, 2, 1);
    if (C > 2) store(a22, 2, 2);
    if (C > 3) store(a23, 2, 3);
  }
  if (R > 3) {
    store(a30, 3, 0);
    if (C > 1) store(a31, 3, 1);
    if (C > 2) store(a32, 3, 2);
    if (C > 3) store(a33, 3, 3);
  }
}

// out_r[0, head_dim) (+)= sum over j in [begin, end) of p_r[j] * v_j for the
// R <= 4 rows of one position: C vectors of columns at a time (as many as the
// registers hold), then one, then scalar columns.
template <size_t R>
HWY_INLINE void DecodeWeightedValues(const float* const* p, const float* HWY_RESTRICT v, size_t ldv,
                                     size_t begin, size_t end, size_t prefetch_end, size_t head_dim,
                                     float* const* out, bool accumulate) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  constexpr size_t C = R * 4 + 5 <= kDecodeVectorRegisters ? 4 : 2;
  size_t c = 0;
  for (; c + C * N <= head_dim; c += C * N) {
    DecodeValueColumns<R, C>(p, v, ldv, begin, end, prefetch_end, c, out, accumulate);
  }
  for (; c + N <= head_dim; c += N) {
    DecodeValueColumns<R, 1>(p, v, ldv, begin, end, prefetch_end, c, out, accumulate);
  }
  for (; c < head_dim; ++c) {
    for (size_t r = 0; r < R; ++r) {
      float sum = accumulate ? out[r][c] : 0.0f;
      for (size_t j = begin; j < end; ++j) sum += p[r][j] * v[j * ldv + c];
      out[r][c] = sum;
    }
  }
}

// simd::DecodeAttention for this target, without argument checks. Keys are
// taken in blocks of DecodeKeyBlock (aligned to multiples of it, the same
// for every row): each block's scores for every row of the call, then, per
// position, each block's weighted values for its rows.
inline void DecodeAttentionKernel(const simd::FlashAttentionArgs& a) {
  const size_t rows = a.num_queries, hd = a.head_dim;
  if (rows == 0 || hd == 0) return;
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  const size_t lds = a.num_keys;
  const size_t block = DecodeKeyBlock(hd);
  // Scores (rows x num_keys), then the scaled queries (rows x head_dim).
  float* const scores =
      simd::detail::ThreadScratch(simd::detail::ScratchSlot::kFlashAttention, rows * (lds + hd));
  float* const queries = scores + rows * lds;
  for (size_t i = 0; i < rows; ++i) {
    const float* q = simd::QueryRow(a, i);
    float* dst = queries + i * hd;
    size_t c = 0;
    for (; c + N <= hd; c += N) {
      hn::StoreU(hn::Mul(hn::Set(d, a.scale), hn::LoadU(d, q + c)), d, dst + c);
    }
    for (; c < hd; ++c) dst[c] = a.scale * q[c];
  }
  // Visible keys are non-decreasing in the row: rows 0 and rows - 1 bound them.
  const size_t first = simd::FirstVisibleKey(a, 0), last = simd::VisibleKeys(a, rows - 1);
  // Rows of one position see the same keys: up to four share each K load.
  const size_t group = a.group_size > 1 ? a.group_size : 1;
  auto rows_of_position = [&](size_t i) {
    return std::min<size_t>({size_t{4}, group - i % group, rows - i});
  };
  for (size_t j0 = first / block * block; j0 < last; j0 += block) {
    for (size_t i = 0; i < rows;) {
      const size_t r = rows_of_position(i);
      const size_t begin = std::max(simd::FirstVisibleKey(a, i), j0);
      const size_t end = std::min(simd::VisibleKeys(a, i), j0 + block);
      float* s[4];
      for (size_t x = 0; x < r; ++x) s[x] = scores + (i + x) * lds;
      size_t j = begin;
      if (r == 4 && kDecodeVectorRegisters >= 32) {
        for (; j + 4 <= end; j += 4) {
          if (j + kDecodePrefetchRows + 4 <= last) {
            const float* ahead = a.k + (j + kDecodePrefetchRows) * a.ldk;
            for (size_t x = 0; x < 4; ++x) {
              for (size_t c = 0; c < hd; c += 64 / sizeof(float)) {
                hwy::Prefetch(ahead + x * a.ldk + c);
              }
            }
          }
          DecodeDot4x4(queries + i * hd, a.k + j * a.ldk, a.ldk, hd, s, j);
        }
      }
      for (size_t x = 0; x < r; ++x) {
        const float* q = queries + (i + x) * hd;
        size_t jx = j;
        for (; jx + 4 <= end; jx += 4) DecodeDot4(q, a.k + jx * a.ldk, a.ldk, hd, s[x] + jx);
        for (; jx < end; ++jx) s[x][jx] = DecodeDot1(q, a.k + jx * a.ldk, hd);
      }
      i += r;
    }
  }
  for (size_t i = 0; i < rows; ++i) {
    const size_t begin = simd::FirstVisibleKey(a, i), end = simd::VisibleKeys(a, i);
    if (begin == end) continue;
    simd::SoftmaxArgs softmax;
    softmax.in = softmax.out = scores + i * lds;
    softmax.ld_in = softmax.ld_out = lds;
    softmax.rows = 1;
    softmax.cols = end;
    softmax.causal = true;
    softmax.causal_offset = end - 1;
    softmax.window = end - begin;
    MaskedSoftmaxKernel(softmax);  // this target's
  }
  // Up to four rows of one position share each V row.
  for (size_t i = 0; i < rows;) {
    const size_t begin = simd::FirstVisibleKey(a, i), end = simd::VisibleKeys(a, i);
    const size_t r = rows_of_position(i);
    float* out[4];
    const float* p[4];
    for (size_t x = 0; x < r; ++x) {
      out[x] = simd::OutRow(a, i + x);
      p[x] = scores + (i + x) * lds;
    }
    if (begin == end) {  // no visible key: NaN, the softmax of nothing
      for (size_t x = 0; x < r; ++x) {
        std::fill(out[x], out[x] + hd, std::numeric_limits<float>::quiet_NaN());
      }
      i += r;
      continue;
    }
    for (size_t j0 = begin / block * block; j0 < end; j0 += block) {
      const size_t b = std::max(begin, j0), e = std::min(end, j0 + block);
      const bool accumulate = b != begin;
      switch (r) {
        case 4:
          DecodeWeightedValues<4>(p, a.v, a.ldv, b, e, end, hd, out, accumulate);
          break;
        case 3:
          DecodeWeightedValues<3>(p, a.v, a.ldv, b, e, end, hd, out, accumulate);
          break;
        case 2:
          DecodeWeightedValues<2>(p, a.v, a.ldv, b, e, end, hd, out, accumulate);
          break;
        default:
          DecodeWeightedValues<1>(p, a.v, a.ldv, b, e, end, hd, out, accumulate);
          break;
      }
    }
    i += r;
  }
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#endif  // ATTN_SIMD_DECODE_ATTENTION_INL_H_
