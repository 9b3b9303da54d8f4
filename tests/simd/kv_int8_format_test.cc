// Tests of simd/kv_int8.h's format: QuantizeKvQuery's numbers (scales,
// rounding, zero, huge, subnormal, NaN and inf blocks), RoundQueryToKvInt8,
// and the key and value tiles' layouts (Quantize/DequantizeKvKey/Value), at
// head_dims 1..130.

#include <stddef.h>
#include <stdint.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "simd/kv_int8.h"
#include "tests/simd/kv_int8_test_util.h"

namespace attn {
namespace kv_int8_test {

// What a quantized query (QuantizeKvQuery: the format's numbers in order)
// dequantizes to.
std::vector<float> DequantizedQuery(const uint8_t* query, size_t hd) {
  std::vector<float> y(hd);
  const size_t blocks = simd::KvInt8Blocks(hd);
  const int8_t* q = reinterpret_cast<const int8_t*>(query + 4 * blocks);
  for (size_t i = 0; i < hd; ++i) {
    float scale;
    std::memcpy(&scale, query + i / 32 * 4, 4);
    y[i] = scale * static_cast<float>(q[i]);
  }
  return y;
}

}  // namespace kv_int8_test

// The format's numbers, through QuantizeKvQuery (72 bytes at head_dim 64).
// Per block: scale = max|x| / 127, max|x| maps to ±127, |dequant - x| <=
// scale / 2 plus rounding; a zero block has scale 0 and values 0, a block
// with NaN or -inf a NaN scale (NaN values, RoundQueryToKvInt8 too). Bytes
// past head_dim 0 up to the quads' end, nothing written past. Blocks of
// magnitudes 1, 0, 1e-3, 1e30, 1e-40, 3e4.
TEST(KvInt8FormatTest, QuantizeDequantize) {
  EXPECT_EQ(simd::KvInt8QueryBytes(64), 72u);
  EXPECT_EQ(simd::KvInt8KeyTileBytes(64), 16u * 72u);
  EXPECT_EQ(simd::KvInt8ValueTileBytes(64), 16u * 72u);
  const float magnitudes[] = {1.0f, 0.0f, 1e-3f, 1e30f, 1e-40f, 3e4f};
  std::mt19937 rng(9);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (size_t hd : kv_int8_test::kHeadDims) {
    const size_t blocks = simd::KvInt8Blocks(hd), bytes = simd::KvInt8QueryBytes(hd);
    EXPECT_EQ(bytes, 4 * blocks + 4 * ((hd + 3) / 4));
    for (size_t trial = 0; trial < 8; ++trial) {
      std::vector<float> x(hd);
      for (size_t i = 0; i < hd; ++i) x[i] = magnitudes[(i / 32 + trial) % 6] * dist(rng);
      const size_t bad = trial < 6 ? hd : trial * 37 % hd;  // trials 6, 7: one NaN / -inf
      if (bad < hd) x[bad] = trial == 6 ? kv_int8_test::kNaN : -kv_int8_test::kInf;
      std::vector<uint32_t> words(bytes / 4 + 2, 0xABABABABu);
      uint8_t* row = reinterpret_cast<uint8_t*>(words.data());
      simd::QuantizeKvQuery(x.data(), hd, row);
      const std::vector<float> y = kv_int8_test::DequantizedQuery(row, hd);
      std::vector<float> rounded = x;
      simd::RoundQueryToKvInt8(rounded.data(), hd);
      for (size_t i = 4 * blocks + hd; i < bytes + 8; ++i) {
        EXPECT_EQ(row[i], i < bytes ? 0 : 0xAB) << hd << " byte " << i;
      }
      const int8_t* q = reinterpret_cast<const int8_t*>(row + 4 * blocks);
      for (size_t i = 0; i < hd; ++i) {
        const size_t begin = i / 32 * 32, end = std::min(hd, begin + 32);
        float scale, amax = 0.0f;
        std::memcpy(&scale, row + i / 32 * 4, 4);
        for (size_t j = begin; j < end; ++j) amax = std::max(amax, std::fabs(x[j]));
        const double slack = 2.0 * std::numeric_limits<float>::epsilon() * amax +
                             128.0 * std::numeric_limits<float>::denorm_min();
        const bool ok =
            bad >= begin && bad < end
                ? std::isnan(scale) && std::isnan(y[i]) && std::isnan(rounded[i])
                : scale == amax / 127.0f && q[i] >= -127 &&
                      (amax > 0.0f ? std::fabs(x[i]) < amax || q[i] == (x[i] > 0 ? 127 : -127)
                                   : q[i] == 0) &&
                      std::fabs(double(y[i]) - x[i]) <= 0.5 * scale + slack && rounded[i] == y[i];
        EXPECT_TRUE(ok) << "hd=" << hd << " trial=" << trial << " i=" << i << ": " << x[i] << " -> "
                        << int(q[i]) << " x " << scale << " -> " << y[i] << ", " << rounded[i];
      }
    }
  }
}

// QuantizeKvKey and QuantizeKvValue write the format's numbers (as
// QuantizeKvQuery's) into one lane of a tile, at the layout's bytes (keys:
// quads of 4 dimensions x 16 lanes, zeros past head_dim; values: groups of 4
// lanes x head_dim), scales block-major, and nothing else.
TEST(KvInt8FormatTest, KeyAndValueTiles) {
  std::mt19937 rng(10);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (size_t hd : kv_int8_test::kHeadDims) {
    for (bool keys : {true, false}) {
      const size_t blocks = simd::KvInt8Blocks(hd), quads = (hd + 3) / 4;
      const size_t bytes = keys ? simd::KvInt8KeyTileBytes(hd) : simd::KvInt8ValueTileBytes(hd);
      EXPECT_EQ(bytes, 16 * (4 * blocks + (keys ? 4 * quads : hd)));
      std::vector<uint32_t> tile(bytes / 4 + 1, 0xABABABABu);
      std::vector<uint32_t> query(simd::KvInt8QueryBytes(hd) / 4);
      uint8_t* t8 = reinterpret_cast<uint8_t*>(tile.data());
      uint8_t* q8 = reinterpret_cast<uint8_t*>(query.data());
      std::vector<bool> written(bytes + 4, false);
      for (size_t lane : {0, 6, 7, 15}) {  // lane 7: 1e30 values, lane 15: a NaN
        std::vector<float> x(hd), from_tile(hd);
        for (float& e : x) e = dist(rng) * (lane == 7 ? 1e30f : 1.0f);
        if (lane == 15) x[hd / 2] = kv_int8_test::kNaN;
        simd::QuantizeKvQuery(x.data(), hd, q8);
        if (keys) simd::QuantizeKvKey(x.data(), hd, t8, lane);
        if (!keys) simd::QuantizeKvValue(x.data(), hd, t8, lane);
        if (keys) simd::DequantizeKvKey(t8, lane, hd, from_tile.data());
        if (!keys) simd::DequantizeKvValue(t8, lane, hd, from_tile.data());
        const std::vector<float> want = kv_int8_test::DequantizedQuery(q8, hd);
        EXPECT_EQ(std::memcmp(want.data(), from_tile.data(), 4 * hd), 0) << hd << " " << lane;
        for (size_t b = 0; b < blocks; ++b) {
          const size_t at = 4 * (b * 16 + lane);
          EXPECT_EQ(std::memcmp(t8 + at, q8 + 4 * b, 4), 0) << hd << " " << lane << " " << b;
          for (size_t i = 0; i < 4; ++i) written[at + i] = true;
        }
        const size_t values = 64 * blocks;
        for (size_t i = 0; i < (keys ? 4 * quads : hd); ++i) {
          const size_t at = values + (keys ? 64 * (i / 4) + 4 * lane + i % 4
                                           : lane / 4 * 4 * hd + 4 * i + lane % 4);
          const int8_t want_byte = i < hd ? static_cast<int8_t>(q8[4 * blocks + i]) : 0;
          EXPECT_EQ(static_cast<int8_t>(t8[at]), want_byte) << hd << " " << lane << " " << i;
          written[at] = true;
        }
      }
      for (size_t i = 0; i <= bytes; ++i) {
        if (!written[i]) {
          EXPECT_EQ(t8[i], 0xAB) << hd << (keys ? " key" : " value") << " byte " << i;
        }
      }
    }
  }
}

// Ties round to even, on the scalar path (a 3-value block) and the vector
// one (a whole 32-value block): with max|x| = 127 the scale is 1.
TEST(KvInt8FormatTest, RoundsHalfToEven) {
  for (size_t hd : {size_t{3}, size_t{32}}) {
    std::vector<float> x(hd, 0.0f);
    x[0] = 127.0f;
    x[1] = 0.5f;
    x[2] = -2.5f;
    if (hd > 3) x[3] = 1.5f;
    std::vector<uint32_t> query(simd::KvInt8QueryBytes(hd) / 4);
    uint8_t* q8 = reinterpret_cast<uint8_t*>(query.data());
    simd::QuantizeKvQuery(x.data(), hd, q8);
    const int8_t* q = reinterpret_cast<const int8_t*>(q8 + 4);
    EXPECT_EQ(q[0], 127) << hd;
    EXPECT_EQ(q[1], 0) << hd;
    EXPECT_EQ(q[2], -2) << hd;
    if (hd > 3) {
      EXPECT_EQ(q[3], 2) << hd;
    }
  }
}

}  // namespace attn
