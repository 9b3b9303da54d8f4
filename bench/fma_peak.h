// The machine's FP32 FMA peak, shared by the benchmarks: a Highway kernel of
// kFmaChains independent MulAdd chains (FMA latency 4 cycles x 2 ports = 8
// in flight at least; 12 leaves slack and fits 16 registers), dispatched to
// the best target like attn's kernels.
#pragma once

#include <cstddef>

namespace attn_bench {

constexpr size_t kFmaChains = 12;

// `iters` rounds of the kFmaChains chains on the calling thread; returns a
// value depending on all of them (to keep the work alive).
float FmaChains(size_t iters, float seed);

// FLOPs of one FmaChains call: iters * kFmaChains * 2 * lanes.
double FmaChainsFlops(size_t iters);

}  // namespace attn_bench
