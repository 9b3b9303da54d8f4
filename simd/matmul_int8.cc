// Dispatch, packing and the scalar references of simd/matmul_int8.h. The
// Highway kernels are in simd/matmul_int8-inl.h (this file is compiled once
// per target), the AVX-512 VNNI kernel in simd/matmul_int8_vnni.cc.

#include "simd/matmul_int8.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "attn/error.h"
#include "simd/aligned_memory.h"
#include "simd/matmul_int8_internal.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/matmul_int8.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "simd/matmul_int8-inl.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {

void QuantizeRowsT(const float* a, size_t lda, size_t m, size_t k, uint8_t* aq, size_t ldaq,
                   float* scale, int32_t* zero_point) {
  QuantizeRowsKernel(a, lda, m, k, aq, ldaq, scale, zero_point);
}

void MatMulInt8T(const uint8_t* aq, size_t ldaq, const float* a_scale, const int32_t* a_zp,
                 size_t m, const simd::QuantizedMatrix& b, float* c, size_t ldc, size_t n_begin,
                 size_t n_end, const float* bias) {
  MatMulInt8Kernel(aq, ldaq, a_scale, a_zp, m, b, c, ldc, n_begin, n_end, bias);
}

simd::Int8Layout Int8LayoutT() { return int8_detail::LayoutKernel(); }

bool AllFiniteT(const float* x, size_t count) { return AllFiniteKernel(x, count); }

// Whether the dispatched target is AVX3 or better (the VNNI kernel may run).
bool Int8TargetAllowsVnniT() {
#if HWY_ARCH_X86
  return HWY_TARGET <= HWY_AVX3;
#else
  return false;
#endif
}

const char* Int8TargetNameT() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace attn {
namespace simd {

HWY_EXPORT(QuantizeRowsT);
HWY_EXPORT(MatMulInt8T);
HWY_EXPORT(Int8LayoutT);
HWY_EXPORT(AllFiniteT);
HWY_EXPORT(Int8TargetAllowsVnniT);
HWY_EXPORT(Int8TargetNameT);

namespace detail {

RowQuant ActivationRowParams(float min, float max, bool finite) {
  if (!finite) return {std::numeric_limits<float>::quiet_NaN(), 0.0f, 0};
  const float lo = std::min(min, 0.0f);
  const float hi = std::max(max, 0.0f);
  if (!(hi > lo)) return {1.0f, 1.0f, 0};  // all zeros (or k = 0)
  // In double, (hi - lo) cannot overflow; at least FLT_MIN, 1 / scale is
  // finite.
  const float scale =
      std::max(static_cast<float>((static_cast<double>(hi) - static_cast<double>(lo)) / 255.0),
               std::numeric_limits<float>::min());
  const float inv = 1.0f / scale;
  const float zp = std::nearbyint(-lo * inv);
  return {scale, inv, static_cast<int32_t>(std::min(255.0f, std::max(0.0f, zp)))};
}

}  // namespace detail

// --- QuantizedMatrix -----------------------------------------------------------

namespace {

size_t RoundUp64(size_t bytes) { return (bytes + 63) / 64 * 64; }

// The int64 sums are exact for k <= kInt8MaxK (simd/matmul_int8.h).
void CheckInt8K(size_t k, const char* caller) {
  if (k > kInt8MaxK) {
    throw ArgumentError(std::string(caller) + ": k (in_features) = " + std::to_string(k) +
                        " exceeds the int8 kernels' limit of 2^48 = " + std::to_string(kInt8MaxK));
  }
}

std::atomic<bool> g_vnni_enabled{true};

}  // namespace

QuantizedMatrix::QuantizedMatrix(size_t n, size_t k, const Int8Layout& layout)
    : n_(n), k_(k), layout_(layout) {
  CheckInt8K(k, "QuantizedMatrix");
  const size_t step = std::max<size_t>(1, layout.k_step);
  k_padded_ = (k + step - 1) / step * step;
  const size_t columns = num_panels() * layout.panel_width;
  const size_t data_bytes = RoundUp64(num_panels() * panel_bytes());
  const size_t array_bytes = RoundUp64(columns * sizeof(float));  // scales, int32 sums
  const size_t sums_bytes = RoundUp64(columns * sizeof(int64_t));
  const size_t total = data_bytes + 2 * array_bytes + sums_bytes;
  data_.reset(AllocateFloats(total / sizeof(float)));
  memset(data_.get(), 0, total);
  scales_ = reinterpret_cast<float*>(bytes() + data_bytes);
  column_sums_ = reinterpret_cast<int64_t*>(bytes() + data_bytes + array_bytes);
  column_sums32_ = reinterpret_cast<int32_t*>(bytes() + data_bytes + array_bytes + sums_bytes);
}

QuantizedMatrix::QuantizedMatrix(QuantizedMatrix&& other) noexcept { *this = std::move(other); }

QuantizedMatrix& QuantizedMatrix::operator=(QuantizedMatrix&& other) noexcept {
  data_ = std::move(other.data_);
  scales_ = std::exchange(other.scales_, nullptr);
  column_sums_ = std::exchange(other.column_sums_, nullptr);
  column_sums32_ = std::exchange(other.column_sums32_, nullptr);
  n_ = std::exchange(other.n_, 0);
  k_ = std::exchange(other.k_, 0);
  k_padded_ = std::exchange(other.k_padded_, 0);
  layout_ = std::exchange(other.layout_, Int8Layout());
  return *this;
}

size_t QuantizedMatrix::Offset(size_t j, size_t kk) const {
  const Int8Layout& l = layout_;
  return (j / l.panel_width) * k_padded_ * l.panel_width +
         (kk / l.k_step) * l.panel_width * l.k_step + (j % l.panel_width) * l.k_step +
         kk % l.k_step;
}

int32_t QuantizedMatrix::weight(size_t j, size_t kk) const {
  const uint8_t* p = bytes() + Offset(j, kk) * layout_.elem_bytes;
  if (layout_.elem_bytes == 1) return static_cast<int8_t>(*p);
  int16_t v;
  memcpy(&v, p, sizeof(v));
  return v;
}

void QuantizedMatrix::set_weight(size_t j, size_t kk, int32_t value) {
  uint8_t* p = bytes() + Offset(j, kk) * layout_.elem_bytes;
  if (layout_.elem_bytes == 1) {
    *p = static_cast<uint8_t>(static_cast<int8_t>(value));
    return;
  }
  const int16_t v = static_cast<int16_t>(value);
  memcpy(p, &v, sizeof(v));
}

// --- Packing -------------------------------------------------------------------

bool Int8VnniActive() {
  return g_vnni_enabled.load(std::memory_order_relaxed) && detail::CpuHasInt8Vnni() &&
         HWY_DYNAMIC_DISPATCH(Int8TargetAllowsVnniT)();
}

void SetInt8VnniEnabledForTest(bool enabled) {
  g_vnni_enabled.store(enabled, std::memory_order_relaxed);
}

const char* MatMulInt8KernelName() {
  return Int8VnniActive() ? "AVX512-VNNI" : HWY_DYNAMIC_DISPATCH(Int8TargetNameT)();
}

Int8Layout ActiveInt8Layout() {
  return Int8VnniActive() ? detail::VnniInt8Layout() : HWY_DYNAMIC_DISPATCH(Int8LayoutT)();
}

bool AllFinite(const float* x, size_t count) { return HWY_DYNAMIC_DISPATCH(AllFiniteT)(x, count); }

QuantizedMatrix PackQuantizedB(const int8_t* wq, size_t ldwq, const float* scales, size_t n,
                               size_t k, const Int8Layout& layout) {
  QuantizedMatrix b(n, k, layout);
  const size_t w = layout.panel_width, ks = layout.k_step;
  uint8_t* data = b.mutable_panel(0);
  for (size_t j = 0; j < n; ++j) {
    // QuantizedMatrix::Offset(j, kk) = base + (kk / ks) * w * ks + kk % ks.
    const size_t base = (j / w) * b.k_padded() * w + (j % w) * ks;
    const int8_t* row = wq + j * ldwq;
    int64_t sum = 0;  // up to 127 * k in magnitude: past int32 from k = 16,909,321
    for (size_t kk = 0; kk < k; ++kk) {
      const size_t e = base + (kk / ks) * w * ks + kk % ks;
      if (layout.elem_bytes == 1) {
        data[e] = static_cast<uint8_t>(row[kk]);
      } else {
        const int16_t v = row[kk];
        memcpy(data + 2 * e, &v, sizeof(v));
      }
      sum += row[kk];
    }
    b.mutable_column_sums()[j] = sum;
    // Only read for k <= kInt8ChunkK, where |sum| <= 127 * 65536 fits.
    b.mutable_column_sums32()[j] = k <= kInt8ChunkK ? static_cast<int32_t>(sum) : 0;
    b.mutable_scales()[j] = scales[j];
  }
  return b;
}

QuantizedMatrix PackQuantizedB(const int8_t* wq, size_t ldwq, const float* scales, size_t n,
                               size_t k) {
  return PackQuantizedB(wq, ldwq, scales, n, k, ActiveInt8Layout());
}

QuantizedMatrix QuantizeAndPackB(const float* w, size_t ldw, size_t n, size_t k) {
  CheckInt8K(k, "QuantizeAndPackB");
  std::vector<int8_t> wq(n * k);
  std::vector<float> scales(n);
  for (size_t j = 0; j < n; ++j) {
    const float* row = w + j * ldw;
    float amax = 0.0f;
    bool finite = true;
    for (size_t kk = 0; kk < k; ++kk) {
      finite = finite && std::isfinite(row[kk]);
      amax = std::max(amax, std::fabs(row[kk]));
    }
    int8_t* q = wq.data() + j * k;
    if (!finite) {
      scales[j] = std::numeric_limits<float>::quiet_NaN();
      continue;  // zeros
    }
    const float scale =
        amax == 0.0f ? 1.0f : std::max(amax / 127.0f, std::numeric_limits<float>::min());
    scales[j] = scale;
    for (size_t kk = 0; kk < k; ++kk) {
      const float v = std::nearbyint(row[kk] / scale);
      q[kk] = static_cast<int8_t>(std::min(127.0f, std::max(-127.0f, v)));
    }
  }
  return PackQuantizedB(wq.data(), k, scales.data(), n, k, ActiveInt8Layout());
}

// --- Products --------------------------------------------------------------------

void QuantizeRows(const float* a, size_t lda, size_t m, size_t k, uint8_t* aq, size_t ldaq,
                  float* scale, int32_t* zero_point) {
  HWY_DYNAMIC_DISPATCH(QuantizeRowsT)(a, lda, m, k, aq, ldaq, scale, zero_point);
}

void QuantizeRowsReference(const float* a, size_t lda, size_t m, size_t k, uint8_t* aq, size_t ldaq,
                           float* scale, int32_t* zero_point) {
  for (size_t i = 0; i < m; ++i) {
    const float* x = a + i * lda;
    float lo = std::numeric_limits<float>::infinity(), hi = -lo;
    bool finite = true;
    for (size_t j = 0; j < k; ++j) {
      finite = finite && std::isfinite(x[j]);
      lo = std::min(lo, x[j]);
      hi = std::max(hi, x[j]);
    }
    const detail::RowQuant rq = detail::ActivationRowParams(lo, hi, finite);
    scale[i] = rq.scale;
    zero_point[i] = rq.zero_point;
    for (size_t j = 0; j < k; ++j) {
      aq[i * ldaq + j] = finite ? detail::QuantizeActivation(x[j], rq.inv_scale, rq.zero_point) : 0;
    }
  }
}

void MatMulInt8(const uint8_t* aq, size_t ldaq, const float* a_scale, const int32_t* a_zp, size_t m,
                const QuantizedMatrix& b, float* c, size_t ldc, size_t n_begin, size_t n_end,
                const float* bias) {
  n_end = std::min(n_end, b.n());
  if (m == 0 || n_begin >= n_end) return;
  const bool vnni = Int8VnniActive();
  const Int8Layout want = vnni ? detail::VnniInt8Layout() : HWY_DYNAMIC_DISPATCH(Int8LayoutT)();
  if (b.layout() == want) {
    if (vnni) {
      detail::MatMulInt8Vnni(aq, ldaq, a_scale, a_zp, m, b, c, ldc, n_begin, n_end, bias);
    } else {
      HWY_DYNAMIC_DISPATCH(MatMulInt8T)
      (aq, ldaq, a_scale, a_zp, m, b, c, ldc, n_begin, n_end, bias);
    }
    return;
  }
  // Packed for another kernel: repack the requested columns for this one.
  const size_t cols = n_end - n_begin, k = b.k();
  std::vector<int8_t> wq(cols * k);
  for (size_t j = 0; j < cols; ++j) {
    for (size_t kk = 0; kk < k; ++kk) {
      wq[j * k + kk] = static_cast<int8_t>(b.weight(n_begin + j, kk));
    }
  }
  const QuantizedMatrix local = PackQuantizedB(wq.data(), k, b.scales() + n_begin, cols, k, want);
  float* c_local = c + n_begin;
  const float* bias_local = bias != nullptr ? bias + n_begin : nullptr;
  if (vnni) {
    detail::MatMulInt8Vnni(aq, ldaq, a_scale, a_zp, m, local, c_local, ldc, 0, cols, bias_local);
  } else {
    HWY_DYNAMIC_DISPATCH(MatMulInt8T)
    (aq, ldaq, a_scale, a_zp, m, local, c_local, ldc, 0, cols, bias_local);
  }
}

void MatMulInt8Reference(const uint8_t* aq, size_t ldaq, const float* a_scale, const int32_t* a_zp,
                         size_t m, const QuantizedMatrix& b, float* c, size_t ldc, size_t n_begin,
                         size_t n_end, const float* bias) {
  n_end = std::min(n_end, b.n());
  const size_t k = b.k();
  std::vector<int32_t> wq(k);
  for (size_t j = n_begin; j < n_end; ++j) {
    int64_t colsum = 0;
    for (size_t kk = 0; kk < k; ++kk) {
      wq[kk] = b.weight(j, kk);
      colsum += wq[kk];
    }
    for (size_t i = 0; i < m; ++i) {
      const uint8_t* a = aq + i * ldaq;
      int64_t sum = 0;
      for (size_t kk = 0; kk < k; ++kk) sum += int64_t{a[kk]} * int64_t{wq[kk]};
      c[i * ldc + j] = DequantizeInt8(sum, a_zp[i], colsum, a_scale[i], b.scales()[j],
                                      bias != nullptr ? bias + j : nullptr);
    }
  }
}

}  // namespace simd
}  // namespace attn
#endif  // HWY_ONCE
