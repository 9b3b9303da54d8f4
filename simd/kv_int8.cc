// Dispatch wrapper, row quantization and the scalar reference for
// simd/kv_int8.h. The attention kernel is in simd/kv_int8-inl.h; this file is
// compiled once per Highway target.

#include "simd/kv_int8.h"

#include <stddef.h>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/kv_int8.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "simd/kv_int8-inl.h"
#include "simd/matmul_int8.h"

HWY_BEFORE_NAMESPACE();
namespace attn {
namespace HWY_NAMESPACE {

void KvInt8AttentionT(const simd::KvInt8AttentionArgs& args, bool vnni) {
  if (vnni) {
    KvInt8AttentionKernel(args, &simd::detail::KvInt8ScoresVnni, &simd::detail::KvInt8ValuesVnni);
  } else {
    KvInt8AttentionKernel(args);
  }
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace attn
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace attn {
namespace simd {

HWY_EXPORT(KvInt8AttentionT);

void KvInt8Attention(const KvInt8AttentionArgs& args) {
  if (args.tokens == 0 || args.group == 0 || args.head_dim == 0) return;
  HWY_DYNAMIC_DISPATCH(KvInt8AttentionT)(args, Int8VnniActive());
}

namespace {

// The quantization of simd/kv_int8.h: block b's scale to scales[b * scale_stride],
// value i to values[index(i)].
template <class Index>
void Quantize(const float* x, size_t head_dim, float* scales, size_t scale_stride, int8_t* values,
              const Index& index) {
  const size_t blocks = KvInt8Blocks(head_dim);
  for (size_t b = 0; b < blocks; ++b) {
    const size_t begin = b * kKvInt8Block, end = std::min(head_dim, begin + kKvInt8Block);
    float amax = 0.0f;
    bool finite = true;
    for (size_t i = begin; i < end; ++i) {
      finite &= std::isfinite(x[i]);
      amax = std::max(amax, std::fabs(x[i]));
    }
    // amax / 127 rounds the scale; q = x * 127 / amax in double (one
    // division per block: a token's keys, values and queries are quantized
    // on every decoding step) stays within [-127, 127] up to rounding, and
    // the clamp keeps it in int8's symmetric range.
    const float scale = finite ? amax / 127.0f : std::numeric_limits<float>::quiet_NaN();
    const double inv = finite && amax > 0.0f ? 127.0 / static_cast<double>(amax) : 0.0;
    scales[b * scale_stride] = scale;
    for (size_t i = begin; i < end; ++i) {
      // Round to nearest even: |q| <= 127 (plus rounding), far below 2^51,
      // where adding and subtracting 1.5 * 2^52 rounds exactly like nearbyint
      // in the default rounding mode (this file is built with
      // -ffp-contract=off and without -ffast-math, so the sum stays).
      const double magic = 6755399441055744.0;
      const double q =
          std::min(127.0, std::max(-127.0, (static_cast<double>(x[i]) * inv + magic) - magic));
      values[index(i)] = static_cast<int8_t>(q);
    }
  }
}

// Byte i of a key of lane `lane` in the quads of a key tile.
size_t KeyByte(size_t i, size_t lane) { return (i / 4) * 4 * kKvInt8TileTokens + 4 * lane + i % 4; }

// Byte i of a value of lane `lane` in the groups of a value tile.
size_t ValueByte(size_t i, size_t lane, size_t head_dim) {
  return lane / 4 * 4 * head_dim + 4 * i + lane % 4;
}

}  // namespace

void QuantizeKvKey(const float* x, size_t head_dim, uint8_t* tile, size_t lane) {
  const size_t blocks = KvInt8Blocks(head_dim);
  int8_t* values = reinterpret_cast<int8_t*>(tile + 4 * blocks * kKvInt8TileTokens);
  Quantize(x, head_dim, reinterpret_cast<float*>(tile) + lane, kKvInt8TileTokens, values,
           [lane](size_t i) { return KeyByte(i, lane); });
  for (size_t i = head_dim; i < 4 * KvInt8Quads(head_dim); ++i) values[KeyByte(i, lane)] = 0;
}

void DequantizeKvKey(const uint8_t* tile, size_t lane, size_t head_dim, float* out) {
  const size_t blocks = KvInt8Blocks(head_dim);
  const float* scales = reinterpret_cast<const float*>(tile);
  const int8_t* values = reinterpret_cast<const int8_t*>(tile + 4 * blocks * kKvInt8TileTokens);
  for (size_t i = 0; i < head_dim; ++i) {
    out[i] = scales[(i / kKvInt8Block) * kKvInt8TileTokens + lane] *
             static_cast<float>(values[KeyByte(i, lane)]);
  }
}

void QuantizeKvValue(const float* x, size_t head_dim, uint8_t* tile, size_t lane) {
  const size_t blocks = KvInt8Blocks(head_dim);
  int8_t* values = reinterpret_cast<int8_t*>(tile + 4 * blocks * kKvInt8TileTokens);
  Quantize(x, head_dim, reinterpret_cast<float*>(tile) + lane, kKvInt8TileTokens, values,
           [lane, head_dim](size_t i) { return ValueByte(i, lane, head_dim); });
}

void DequantizeKvValue(const uint8_t* tile, size_t lane, size_t head_dim, float* out) {
  const size_t blocks = KvInt8Blocks(head_dim);
  const float* scales = reinterpret_cast<const float*>(tile);
  const int8_t* values = reinterpret_cast<const int8_t*>(tile + 4 * blocks * kKvInt8TileTokens);
  for (size_t i = 0; i < head_dim; ++i) {
    out[i] = scales[(i / kKvInt8Block) * kKvInt8TileTokens + lane] *
             static_cast<float>(values[ValueByte(i, lane, head_dim)]);
  }
}

void QuantizeKvQuery(const float* q, size_t head_dim, uint8_t* query) {
  const size_t blocks = KvInt8Blocks(head_dim);
  int8_t* values = reinterpret_cast<int8_t*>(query + 4 * blocks);
  Quantize(q, head_dim, reinterpret_cast<float*>(query), 1, values, [](size_t i) { return i; });
  for (size_t i = head_dim; i < 4 * KvInt8Quads(head_dim); ++i) values[i] = 0;
}

void RoundQueryToKvInt8(float* q, size_t head_dim) {
  float scales[1];
  int8_t values[kKvInt8Block];
  for (size_t begin = 0; begin < head_dim; begin += kKvInt8Block) {
    const size_t n = std::min(kKvInt8Block, head_dim - begin);
    Quantize(q + begin, n, scales, 1, values, [](size_t i) { return i; });
    for (size_t i = 0; i < n; ++i) q[begin + i] = scales[0] * static_cast<float>(values[i]);
  }
}

void KvInt8AttentionReference(const KvInt8AttentionArgs& a) {
  const size_t hd = a.head_dim, rows = a.tokens * a.group;
  if (rows == 0 || hd == 0) return;
  std::vector<float> k(a.num_keys * hd), v(a.num_keys * hd);
  const size_t key_tile = KvInt8KeyTileBytes(hd), value_tile = KvInt8ValueTileBytes(hd);
  for (size_t j = 0; j < a.num_keys; ++j) {
    DequantizeKvKey(a.keys + j / kKvInt8TileTokens * key_tile, j % kKvInt8TileTokens, hd,
                    k.data() + j * hd);
    DequantizeKvValue(a.values + j / kKvInt8TileTokens * value_tile, j % kKvInt8TileTokens, hd,
                      v.data() + j * hd);
  }
  // All outputs first: out may be q.
  std::vector<float> result(rows * hd), rounded(hd);
  std::vector<double> p(a.num_keys);
  for (size_t t = 0; t < a.tokens; ++t) {
    size_t begin, end;
    KvInt8VisibleKeys(a, t, &begin, &end);
    for (size_t g = 0; g < a.group; ++g) {
      std::copy_n(a.q + t * a.ldq + g * hd, hd, rounded.data());
      RoundQueryToKvInt8(rounded.data(), hd);
      const float* q = rounded.data();
      double m = -std::numeric_limits<double>::infinity();
      bool nan = false;
      for (size_t j = begin; j < end; ++j) {
        double dot = 0.0;
        for (size_t i = 0; i < hd; ++i) dot += static_cast<double>(q[i]) * k[j * hd + i];
        p[j] = static_cast<double>(a.scale) * dot;
        nan |= std::isnan(p[j]) || p[j] == std::numeric_limits<double>::infinity();
        m = std::max(m, p[j]);
      }
      float* out = result.data() + (t * a.group + g) * hd;
      if (nan || m == -std::numeric_limits<double>::infinity()) {  // as simd::MaskedSoftmax
        std::fill(out, out + hd, std::numeric_limits<float>::quiet_NaN());
        continue;
      }
      double sum = 0.0;
      for (size_t j = begin; j < end; ++j) sum += (p[j] = std::exp(p[j] - m));
      for (size_t i = 0; i < hd; ++i) {
        double acc = 0.0;
        for (size_t j = begin; j < end; ++j) acc += p[j] / sum * v[j * hd + i];
        out[i] = static_cast<float>(acc);
      }
    }
  }
  for (size_t t = 0; t < a.tokens; ++t) {
    for (size_t g = 0; g < a.group; ++g) {
      std::memcpy(a.out + t * a.ldo + g * hd, result.data() + (t * a.group + g) * hd,
                  hd * sizeof(float));
    }
  }
}

}  // namespace simd
}  // namespace attn
#endif  // HWY_ONCE
