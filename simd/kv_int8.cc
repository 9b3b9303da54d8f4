// Dispatch wrappers, the quantization (per target) and the scalar reference
// for simd/kv_int8.h. The attention kernel is in simd/kv_int8-inl.h; this file is
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

// The quantization of simd/kv_int8.h for x[0, n): block b's scale to
// scales[b], value i to q[i]. Per block: amax = max|x|, scale = amax / 127,
// q = round-to-nearest-even((x * boost) * (127 / (amax * boost))) clamped to
// ±127, boost = 2^64 when amax < 2^-100 (so that 127 / amax stays finite),
// else 1; a block holding NaN or ±inf gets a NaN scale and zeros. Whole
// vectors where a block holds a multiple of the vector length, else the
// same operations one value at a time.
void QuantizeKvBlocksT(const float* HWY_RESTRICT x, size_t n, float* HWY_RESTRICT scales,
                       int8_t* HWY_RESTRICT q) {
  const hn::CappedTag<float, 16> d;
  const hn::Rebind<int32_t, decltype(d)> di;
  const hn::Rebind<int16_t, decltype(d)> d16;
  const hn::Rebind<int8_t, decltype(d)> d8;
  const size_t N = hn::Lanes(d);
  constexpr float kTiny = 0x1p-100f, kBoost = 0x1p64f;
  for (size_t begin = 0, b = 0; begin < n; begin += simd::kKvInt8Block, ++b) {
    const size_t end = HWY_MIN(n, begin + simd::kKvInt8Block);
    if ((end - begin) % N == 0) {
      auto amax_lanes = hn::Zero(d);
      auto bad = hn::Zero(d);  // 0 where finite: x - x is NaN for NaN and ±inf
      for (size_t i = begin; i < end; i += N) {
        const auto v = hn::LoadU(d, x + i);
        amax_lanes = hn::Max(amax_lanes, hn::Abs(v));
        bad = hn::Add(bad, hn::Sub(v, v));
      }
      const float amax = hn::GetLane(hn::MaxOfLanes(d, amax_lanes));
      const bool finite = hn::AllTrue(d, hn::Eq(bad, hn::Zero(d)));
      scales[b] = finite ? amax / 127.0f : std::numeric_limits<float>::quiet_NaN();
      const float boost = amax < kTiny ? kBoost : 1.0f;
      const float inv = finite && amax > 0.0f ? 127.0f / (amax * boost) : 0.0f;
      const auto vboost = hn::Set(d, boost), vinv = hn::Set(d, inv);
      const auto lo = hn::Set(di, -127), hi = hn::Set(di, 127);
      for (size_t i = begin; i < end; i += N) {
        const auto v = hn::Mul(hn::Mul(hn::LoadU(d, x + i), vboost), vinv);
        const auto r = hn::Min(hi, hn::Max(lo, hn::NearestInt(finite ? v : hn::Zero(d))));
        hn::StoreU(hn::DemoteTo(d8, hn::DemoteTo(d16, r)), d8, q + i);
      }
      continue;
    }
    float amax = 0.0f;
    bool finite = true;
    for (size_t i = begin; i < end; ++i) {
      finite &= std::isfinite(x[i]);
      amax = std::max(amax, std::fabs(x[i]));
    }
    scales[b] = finite ? amax / 127.0f : std::numeric_limits<float>::quiet_NaN();
    const float boost = amax < kTiny ? kBoost : 1.0f;
    const float inv = finite && amax > 0.0f ? 127.0f / (amax * boost) : 0.0f;
    for (size_t i = begin; i < end; ++i) {
      const float v = finite ? x[i] * boost * inv : 0.0f;
      q[i] = static_cast<int8_t>(std::min(127.0f, std::max(-127.0f, std::nearbyint(v))));
    }
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
HWY_EXPORT(QuantizeKvBlocksT);

void KvInt8Attention(const KvInt8AttentionArgs& args) {
  if (args.tokens == 0 || args.group == 0 || args.head_dim == 0) return;
  HWY_DYNAMIC_DISPATCH(KvInt8AttentionT)(args, Int8VnniActive());
}

namespace {

// Quantizes x[0, head_dim) (QuantizeKvBlocksT) and hands block b's scale and
// the values to store(scales, values).
template <class Store>
void Quantize(const float* x, size_t head_dim, const Store& store) {
  constexpr size_t kStack = 512;
  float scales_stack[kStack / kKvInt8Block];
  int8_t values_stack[kStack];
  std::vector<float> scales_heap;
  std::vector<int8_t> values_heap;
  float* scales = scales_stack;
  int8_t* values = values_stack;
  if (head_dim > kStack) {
    scales_heap.resize(KvInt8Blocks(head_dim));
    values_heap.resize(head_dim);
    scales = scales_heap.data();
    values = values_heap.data();
  }
  HWY_DYNAMIC_DISPATCH(QuantizeKvBlocksT)(x, head_dim, scales, values);
  store(scales, values);
}

// Byte i of a key of lane `lane` in the quads of a key tile.
size_t KeyByte(size_t i, size_t lane) { return (i / 4) * 4 * kKvInt8TileTokens + 4 * lane + i % 4; }

// Byte i of a value of lane `lane` in the groups of a value tile.
size_t ValueByte(size_t i, size_t lane, size_t head_dim) {
  return lane / 4 * 4 * head_dim + 4 * i + lane % 4;
}

}  // namespace

// Block b's scale to tile + 4 * (b * 16 + lane).
void StoreTileScales(const float* scales, size_t blocks, uint8_t* tile, size_t lane) {
  for (size_t b = 0; b < blocks; ++b) {
    std::memcpy(tile + 4 * (b * kKvInt8TileTokens + lane), &scales[b], sizeof(float));
  }
}

void QuantizeKvKey(const float* x, size_t head_dim, uint8_t* tile, size_t lane) {
  const size_t blocks = KvInt8Blocks(head_dim), quads = KvInt8Quads(head_dim);
  Quantize(x, head_dim, [&](const float* scales, const int8_t* q) {
    StoreTileScales(scales, blocks, tile, lane);
    uint8_t* values = tile + 4 * blocks * kKvInt8TileTokens;
    const size_t full = head_dim / 4;
    for (size_t c = 0; c < full; ++c) std::memcpy(values + KeyByte(4 * c, lane), q + 4 * c, 4);
    if (full < quads) {  // the last quad, zero-padded
      uint8_t four[4] = {0, 0, 0, 0};
      std::memcpy(four, q + 4 * full, head_dim - 4 * full);
      std::memcpy(values + KeyByte(4 * full, lane), four, 4);
    }
  });
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
  Quantize(x, head_dim, [&](const float* scales, const int8_t* q) {
    StoreTileScales(scales, blocks, tile, lane);
    int8_t* values = reinterpret_cast<int8_t*>(tile + 4 * blocks * kKvInt8TileTokens);
    for (size_t i = 0; i < head_dim; ++i) values[ValueByte(i, lane, head_dim)] = q[i];
  });
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
  // Straight into the query: scales first, then the values (4-byte aligned).
  int8_t* values = reinterpret_cast<int8_t*>(query + 4 * blocks);
  HWY_DYNAMIC_DISPATCH(QuantizeKvBlocksT)(q, head_dim, reinterpret_cast<float*>(query), values);
  for (size_t i = head_dim; i < 4 * KvInt8Quads(head_dim); ++i) values[i] = 0;
}

void RoundQueryToKvInt8(float* q, size_t head_dim) {
  Quantize(q, head_dim, [&](const float* scales, const int8_t* values) {
    for (size_t i = 0; i < head_dim; ++i) {
      q[i] = scales[i / kKvInt8Block] * static_cast<float>(values[i]);
    }
  });
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
