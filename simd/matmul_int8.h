// Dynamic int8 quantization of matrix products (PyTorch's quantize_dynamic
// recipe for nn.Linear): the weight is quantized once, symmetric int8 with
// one scale per output channel; the activations are quantized per call,
// asymmetric uint8 with one scale and zero point per row; the products are
// summed exactly in integers and dequantized in float32:
//
//   C[i,j] = a_scale[i] * w_scale[j] * (sum_k aq[i,k] * wq[j,k]
//                                        - a_zp[i] * colsum[j]) + bias[j]
//
// with colsum[j] = sum_k wq[j,k]. Single-threaded, on raw pointers and row
// strides; parallel/matmul_int8_parallel.h splits a product over threads.
//
// Why asymmetric uint8 activations: u8 x s8 is the operand pair of x86's
// VNNI dot product (vpdpbusd), and with the range [min(min, 0), max(max, 0)]
// cut into 255 steps the step is never larger than symmetric int8's
// (max|x| / 127) and half of it for rows of one sign (after a ReLU, GELU or
// softmax). 0 stays exactly representable and the zero point in [0, 255].
//
// Exactness: aq, zp in [0, 255] and |wq| <= 127, so each of the sums
// sum_k aq * wq, zp * colsum and their difference sum_k (aq - zp) * wq is
// at most 255 * 127 * K = 32,385 * K in magnitude (colsum alone 127 * K):
//   - K <= kInt8ChunkK (65,536; every model layer): all fit int32. The
//     kernels sum all of K in int32 lanes (a lane's partial sums are parts
//     of the same bound) and subtract a_zp * colsum in int32.
//   - larger K: the kernels sum chunks of kInt8ChunkK in int32, add the
//     chunks in int64 and subtract a_zp * colsum in int64, with colsum
//     summed in int64 when packing.
//   - int64 holds 32,385 * K for K <= kInt8MaxK = 2^48, past any weight that
//     fits in memory (a 2^48-float row is 1 PiB); QuantizedMatrix and
//     Linear::quantize check it (ArgumentError).
// So the integer sum is exact for every K a module accepts, and every
// kernel (VNNI, Highway int16, scalar reference) gives the same integer,
// hence the same float: the dequantization below is one formula everywhere.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "simd/aligned_memory.h"

namespace attn {
namespace simd {

// K per int32 chunk: 255 * 127 * 65536 = 2,122,383,360 < 2^31 - 1 (66,311
// would still fit; a power of two keeps chunks whole k steps).
constexpr size_t kInt8ChunkK = 65536;

// The largest K a QuantizedMatrix may have: 255 * 127 * 2^48 < 2^63 - 1, so
// the int64 sums above are exact. No float weight this wide fits in memory.
constexpr uint64_t kInt8MaxK = uint64_t{1} << 48;

// The kernels walk the packed B in column blocks of about this many bytes
// (half the 2 MiB L2 of the machine they were tuned on, kept in L2 while
// the rows of A stream past), each read once per call whatever M. A caller
// splitting a product over threads by columns, at block granularity, has
// each task read its own blocks only (parallel/matmul_int8_parallel.cc).
constexpr size_t kMatMulInt8ColumnBlockBytes = size_t{1} << 20;

// How a QuantizedMatrix is packed (recorded with it, like PackedMatrix's
// panel width): ceil(n / panel_width) panels of panel_width columns of
// op(B) = Wᵀ (column j of a panel is weight row p * panel_width + j, zero
// past n). A panel is k_padded / k_step steps; a step holds k_step
// consecutive k of each of the panel_width columns, column after column
// ([panel_width][k_step] elements of elem_bytes bytes: the operand order of
// vpdpbusd, and of Highway's ReorderWidenMulAccumulate followed by
// RearrangeToOddPlusEven on every target). The element (j, kk) of panel p
// is at p * k_padded * panel_width + (kk / k_step) * panel_width * k_step
// + (j % panel_width) * k_step + kk % k_step.
struct Int8Layout {
  int64_t id = 0;  // the Highway target (HWY_*) whose kernel packed it, or kInt8VnniLayoutId
  size_t panel_width = 0;
  size_t k_step = 0;
  size_t elem_bytes = 0;  // 1: int8 (VNNI), 2: int16 (Highway kernels)

  bool operator==(const Int8Layout& o) const {
    return id == o.id && panel_width == o.panel_width && k_step == o.k_step &&
           elem_bytes == o.elem_bytes;
  }
  bool operator!=(const Int8Layout& o) const { return !(*this == o); }
};

// The AVX-512 VNNI kernel's layout id (not a Highway target bit).
constexpr int64_t kInt8VnniLayoutId = -1;

// An nn.Linear weight W (n x k: out_features rows of in_features, k <=
// kInt8MaxK) quantized and packed for MatMulInt8: per row j a scale
// w_scale[j], the int8 values wq[j, 0..k) in [-127, 127] in the layout
// above, and colsum[j] = sum_k wq[j, k] (int64, exact for any k). Storage
// is 64-byte aligned (simd::AllocateFloats); scales(), column_sums() and
// column_sums32() hold num_panels() * panel_width() entries, 0 past n.
// Move-only.
class QuantizedMatrix {
 public:
  QuantizedMatrix() = default;
  // Storage for n x k in `layout`: packed values zero, scales and column
  // sums zero (filled by PackQuantizedB). Throws attn::ArgumentError, before
  // allocating, when k > kInt8MaxK.
  QuantizedMatrix(size_t n, size_t k, const Int8Layout& layout);
  QuantizedMatrix(QuantizedMatrix&& other) noexcept;
  QuantizedMatrix& operator=(QuantizedMatrix&& other) noexcept;

  size_t n() const { return n_; }
  size_t k() const { return k_; }
  // k rounded up to a multiple of layout().k_step (the padding holds 0).
  size_t k_padded() const { return k_padded_; }
  const Int8Layout& layout() const { return layout_; }
  size_t panel_width() const { return layout_.panel_width; }
  size_t num_panels() const {
    return layout_.panel_width == 0 ? 0 : (n_ + layout_.panel_width - 1) / layout_.panel_width;
  }
  // Bytes of one panel: k_padded() * panel_width() * elem_bytes.
  size_t panel_bytes() const { return k_padded_ * layout_.panel_width * layout_.elem_bytes; }
  const uint8_t* panel(size_t p) const { return bytes() + p * panel_bytes(); }
  uint8_t* mutable_panel(size_t p) { return bytes() + p * panel_bytes(); }
  const float* scales() const { return scales_; }
  float* mutable_scales() { return scales_; }
  const int64_t* column_sums() const { return column_sums_; }
  int64_t* mutable_column_sums() { return column_sums_; }
  // column_sums() in int32, for the kernels' one-chunk epilogue: equal to
  // column_sums() when k <= kInt8ChunkK (then |colsum| <= 127 * 65536), all
  // 0 for larger k (the kernels then read column_sums()).
  const int32_t* column_sums32() const { return column_sums32_; }
  int32_t* mutable_column_sums32() { return column_sums32_; }

  // wq[j, kk] read from the packed layout (j < n, kk < k_padded).
  int32_t weight(size_t j, size_t kk) const;
  // Writes wq[j, kk] into the packed layout (j < n, kk < k_padded).
  void set_weight(size_t j, size_t kk, int32_t value);

 private:
  size_t Offset(size_t j, size_t kk) const;  // in elements from panel 0's start
  uint8_t* bytes() const { return reinterpret_cast<uint8_t*>(data_.get()); }

  // Packed values, then the scales, then the column sums in int64 and in
  // int32 (each part 64-byte aligned), from simd::AllocateFloats.
  std::unique_ptr<float[], FloatsDeleter> data_;
  float* scales_ = nullptr;           // inside data_
  int64_t* column_sums_ = nullptr;    // inside data_
  int32_t* column_sums32_ = nullptr;  // inside data_
  size_t n_ = 0, k_ = 0, k_padded_ = 0;
  Int8Layout layout_;
};

// True when all `count` floats are finite. QuantizeAndPackB quantizes a row
// with NaN or inf to scale NaN (outputs NaN) instead of failing; a caller
// that wants an error checks first.
bool AllFinite(const float* x, size_t count);

// Quantizes W (n x k, row stride ldw >= k) per row and packs it for the
// kernel MatMulInt8 uses right now (MatMulInt8KernelName()):
//   w_scale[j] = max_k |w[j,k]| / 127 (1 for an all-zero row, at least
//                FLT_MIN otherwise; NaN for a row with NaN or inf),
//   wq[j,k]    = round-to-nearest-even(w[j,k] / w_scale[j]) in [-127, 127]
//                (0 in a non-finite row).
// Only reads the rectangle. Throws attn::ArgumentError, before allocating,
// when k > kInt8MaxK.
QuantizedMatrix QuantizeAndPackB(const float* w, size_t ldw, size_t n, size_t k);

// Packs already quantized weights: wq is n x k int8 (row stride ldwq >= k,
// values in [-127, 127]: -128 would break the int32 bound; k <= kInt8MaxK),
// scales n floats; the column sums are summed in int64.
// `layout` defaults to the current kernel's (ActiveInt8Layout()); the tests
// pass others to check the repacking path.
QuantizedMatrix PackQuantizedB(const int8_t* wq, size_t ldwq, const float* scales, size_t n,
                               size_t k);
QuantizedMatrix PackQuantizedB(const int8_t* wq, size_t ldwq, const float* scales, size_t n,
                               size_t k, const Int8Layout& layout);

// The layout QuantizeAndPackB packs for now: the VNNI kernel's when
// Int8VnniActive(), else the dispatched Highway target's.
Int8Layout ActiveInt8Layout();

// Per-row activation quantization. A is m x k (row stride lda >= k); writes
// aq (m x k uint8, row stride ldaq >= k), scale[m], zero_point[m]:
//   lo = min(0, min_k a), hi = max(0, max_k a)
//   scale = (hi - lo) / 255 (1 when hi == lo, i.e. an all-zero row or k = 0;
//           at least FLT_MIN), computed in double and rounded to float
//   zero_point = clamp(nearbyint(-lo * (1 / scale)), 0, 255)
//   aq = clamp(nearbyint(a * (1 / scale)) + zero_point, 0, 255)
// (products in float, 1 / scale rounded to float once per row). A row with
// NaN or inf gets scale NaN, zero point 0 and aq 0, so its outputs are NaN.
// Only the rectangles are read and written; aq may not overlap a.
void QuantizeRows(const float* a, size_t lda, size_t m, size_t k, uint8_t* aq, size_t ldaq,
                  float* scale, int32_t* zero_point);
// Scalar reference: the same contract, the same bits.
void QuantizeRowsReference(const float* a, size_t lda, size_t m, size_t k, uint8_t* aq, size_t ldaq,
                           float* scale, int32_t* zero_point);

// C[i, j] for i < m and n_begin <= j < n_end (n_end <= b.n()) by the formula
// at the top: aq is m x b.k() uint8 (row stride ldaq >= b.k()), a_scale and
// a_zp m entries (zero points in [0, 255], as QuantizeRows gives), C is
// m x b.n() (row stride ldc >= b.n(); only columns [n_begin, n_end) are
// written, so disjoint ranges may run concurrently), bias b.n() floats or
// nullptr (c, bias point at column 0). C must not overlap the inputs.
// Dequantization, with x = the exact integer sum minus a_zp[i] * colsum[j]
// and s = a_scale[i] * w_scale[j] in float:
//   C = s * float(x)                                    without bias,
//   C = float(double(s) * double(float(x)) + bias[j])   with bias
// (the double product is exact, so the result has the same bits with or
// without a fused multiply-add). A matrix packed for another kernel (after
// DisableTargets or SetInt8VnniEnabledForTest) gives the same bits through a
// slower path that repacks the requested columns on every call.
void MatMulInt8(const uint8_t* aq, size_t ldaq, const float* a_scale, const int32_t* a_zp, size_t m,
                const QuantizedMatrix& b, float* c, size_t ldc, size_t n_begin, size_t n_end,
                const float* bias);
// Scalar reference: the same contract and bits, summing in int64.
void MatMulInt8Reference(const uint8_t* aq, size_t ldaq, const float* a_scale, const int32_t* a_zp,
                         size_t m, const QuantizedMatrix& b, float* c, size_t ldc, size_t n_begin,
                         size_t n_end, const float* bias);

// The dequantization above for one element, given the exact integer sum
// (int64: exact for k <= kInt8MaxK).
inline float DequantizeInt8(int64_t sum, int32_t zero_point, int64_t column_sum, float a_scale,
                            float w_scale, const float* bias) {
  const float x = static_cast<float>(sum - int64_t{zero_point} * column_sum);
  const float s = a_scale * w_scale;
  if (bias == nullptr) return s * x;
  return static_cast<float>(static_cast<double>(s) * static_cast<double>(x) +
                            static_cast<double>(*bias));
}

// Whether MatMulInt8 and QuantizeAndPackB use the AVX-512 VNNI kernel: the
// CPU has AVX-512 F/BW/VL/VNNI, Highway's dispatch has not been switched
// below AVX3 (hwy::DisableTargets(HWY_AVX3 | HWY_AVX3_DL) turns it off too)
// and the test hook allows it. Always false outside x86-64.
bool Int8VnniActive();
// Test and benchmark hook: false forces the Highway int16 kernels even on a
// VNNI CPU; true (the default) allows VNNI again. Not thread-safe against
// running products.
void SetInt8VnniEnabledForTest(bool enabled);
// "AVX512-VNNI" or the Highway target MatMulInt8 dispatches to ("AVX2", ...).
const char* MatMulInt8KernelName();

}  // namespace simd
}  // namespace attn
