// Shared by simd::MatMul's tests (tests/simd/matmul_test.cc): matrices with
// padded strides and sentinels, the problem cases, the double-precision
// reference check and bit comparisons.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "simd/matmul.h"

namespace attn {
namespace matmul_test {

constexpr float kSentinel = 12345.0f;

// A rows x cols view with row stride ld, starting `offset` floats into its
// allocation and ending at its last float. Padding is filled with `pad`.
struct Matrix {
  Matrix(size_t rows, size_t cols, size_t ld, size_t offset, float pad)
      : rows(rows), cols(cols), ld(ld), offset(offset) {
    const size_t size = rows == 0 ? offset : offset + (rows - 1) * ld + cols;
    storage.assign(size == 0 ? 1 : size, pad);
  }
  float* data() { return storage.data() + offset; }
  const float* data() const { return storage.data() + offset; }
  float& at(size_t r, size_t c) { return data()[r * ld + c]; }
  float at(size_t r, size_t c) const { return data()[r * ld + c]; }

  void FillRandom(std::mt19937& rng, float lo, float hi) {
    std::uniform_real_distribution<float> dist(lo, hi);
    for (size_t r = 0; r < rows; ++r) {
      for (size_t c = 0; c < cols; ++c) at(r, c) = dist(rng);
    }
  }

  size_t rows, cols, ld, offset;
  std::vector<float> storage;
};

struct Case {
  size_t m = 1, n = 1, k = 1;
  size_t pad_a = 0, pad_b = 0, pad_c = 0;  // row strides exceed widths by this
  size_t offset = 0;                       // misalignment of every base pointer
  bool b_transposed = false;
  bool bias = false;
  float scale = 1.0f;
  bool accumulate = false;

  std::string Name() const {
    return "m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) +
           " pads=" + std::to_string(pad_a) + "/" + std::to_string(pad_b) + "/" +
           std::to_string(pad_c) + " offset=" + std::to_string(offset) +
           " bt=" + std::to_string(b_transposed) + " bias=" + std::to_string(bias) +
           " scale=" + std::to_string(scale) + " acc=" + std::to_string(accumulate);
  }
};

// Inputs, the initial C and the reference result of one case.
struct Problem {
  explicit Problem(const Case& cs)
      : cs(cs),
        a(cs.m, cs.k, cs.k + cs.pad_a, cs.offset, std::numeric_limits<float>::quiet_NaN()),
        b(cs.b_transposed ? cs.n : cs.k, cs.b_transposed ? cs.k : cs.n,
          (cs.b_transposed ? cs.k : cs.n) + cs.pad_b, cs.offset,
          std::numeric_limits<float>::quiet_NaN()),
        bias(cs.bias ? 1 : 0, cs.n, cs.n, cs.offset, 0.0f),
        c_init(cs.m, cs.n, cs.n + cs.pad_c, cs.offset, kSentinel),
        c_ref(c_init) {
    std::mt19937 rng(static_cast<uint32_t>(cs.m * 1000003 + cs.n * 1009 + cs.k));
    a.FillRandom(rng, -1.0f, 1.0f);
    b.FillRandom(rng, -1.0f, 1.0f);
    bias.FillRandom(rng, -1.0f, 1.0f);
    c_init.FillRandom(rng, -1.0f, 1.0f);
    c_ref = c_init;
    simd::MatMulArgs ref = Args(&c_ref);
    simd::MatMulReference(ref);
  }

  simd::MatMulArgs Args(Matrix* c) const {
    simd::MatMulArgs args;
    args.a = a.data();
    args.lda = a.ld;
    args.b = b.data();
    args.ldb = b.ld;
    args.b_transposed = cs.b_transposed;
    args.c = c->data();
    args.ldc = c->ld;
    args.m = cs.m;
    args.n = cs.n;
    args.k = cs.k;
    args.bias = cs.bias ? bias.data() : nullptr;
    args.scale = cs.scale;
    args.accumulate = cs.accumulate;
    return args;
  }

  float OpB(size_t p, size_t j) const { return cs.b_transposed ? b.at(j, p) : b.at(p, j); }

  // Error bound for C[i, j]: the float dot product of length K has a relative
  // error of at most about K ulp of sum |a||b| (with or without FMA), plus
  // the scale, bias and accumulate roundings.
  double Tolerance(size_t i, size_t j) const {
    double mag = 0.0;
    for (size_t p = 0; p < cs.k; ++p) mag += std::fabs(double(a.at(i, p)) * double(OpB(p, j)));
    mag *= std::fabs(double(cs.scale));
    if (cs.bias) mag += std::fabs(double(bias.at(0, j)));
    if (cs.accumulate) mag += std::fabs(double(c_init.at(i, j)));
    return 2.0 * double(cs.k + 4) * std::numeric_limits<float>::epsilon() * mag + 1e-30;
  }

  // Checks `c` against the reference; the padding must hold the sentinel.
  void Check(const Matrix& c, const std::string& what) const {
    size_t errors = 0;
    for (size_t i = 0; i < cs.m; ++i) {
      for (size_t j = 0; j < c.ld && (i + 1 < cs.m || j < cs.n); ++j) {
        const float got = c.at(i, j);
        if (j >= cs.n) {
          if (got != kSentinel && ++errors < 5) {
            ADD_FAILURE() << what << " " << cs.Name() << ": padding C[" << i << "," << j
                          << "] overwritten with " << got;
          }
          continue;
        }
        const double want = c_ref.at(i, j);
        const double tol = Tolerance(i, j);
        if (!(std::fabs(double(got) - want) <= tol) && ++errors < 5) {
          ADD_FAILURE() << what << " " << cs.Name() << ": C[" << i << "," << j << "] = " << got
                        << ", reference " << want << ", tolerance " << tol;
        }
      }
    }
    EXPECT_EQ(errors, 0u) << what << " " << cs.Name();
  }

  Case cs;
  Matrix a, b, bias, c_init, c_ref;
};

inline bool SameBits(const Matrix& x, const Matrix& y) {
  return x.storage.size() == y.storage.size() &&
         memcmp(x.storage.data(), y.storage.data(), x.storage.size() * sizeof(float)) == 0;
}

}  // namespace matmul_test
}  // namespace attn
