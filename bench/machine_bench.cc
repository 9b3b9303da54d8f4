// What the machine can do, for the attention benchmark's "fraction of peak"
// and "ideal time" figures (bench/README.md):
//   machine/fma_peak/fp32/threads:<n>        FP32 FMA throughput: 12
//       independent vector MulAdd chains per thread (FMA latency 4 x 2 ports
//       needs 8 in flight; 12 leave slack and fit 16 registers). Counter
//       GFLOPS (2 FLOPs per lane per MulAdd).
//   machine/read_bandwidth/<size>/threads:<n>  streaming reads: each thread
//       sums its contiguous part of a buffer of <size> (256MiB; 16MiB, about
//       the working set of one decoding step). Counter GBps (1e9 bytes/s).
// Threads are std::threads started for each pass (a pass is long enough,
// >= 8 ms, for the start-up to be noise). The kernels are Highway code
// compiled for every target, like the library's, and dispatched at run time.

#include <stddef.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bench/attention_bench.h"
#include "bench/fma_peak.h"
#include "benchmark/benchmark.h"
#include "hwy/aligned_allocator.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "bench/machine_bench.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace attn_bench {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Sum of p[0, n) with 8 independent vector accumulators (enough loads in
// flight that the additions' latency never limits the stream).
float SumT(const float* HWY_RESTRICT p, size_t n) {
  const hn::ScalableTag<float> d;
  const size_t lanes = hn::Lanes(d);
  auto s0 = hn::Zero(d), s1 = hn::Zero(d), s2 = hn::Zero(d), s3 = hn::Zero(d);
  auto s4 = hn::Zero(d), s5 = hn::Zero(d), s6 = hn::Zero(d), s7 = hn::Zero(d);
  size_t i = 0;
  for (; i + 8 * lanes <= n; i += 8 * lanes) {
    s0 = hn::Add(s0, hn::LoadU(d, p + i));
    s1 = hn::Add(s1, hn::LoadU(d, p + i + lanes));
    s2 = hn::Add(s2, hn::LoadU(d, p + i + 2 * lanes));
    s3 = hn::Add(s3, hn::LoadU(d, p + i + 3 * lanes));
    s4 = hn::Add(s4, hn::LoadU(d, p + i + 4 * lanes));
    s5 = hn::Add(s5, hn::LoadU(d, p + i + 5 * lanes));
    s6 = hn::Add(s6, hn::LoadU(d, p + i + 6 * lanes));
    s7 = hn::Add(s7, hn::LoadU(d, p + i + 7 * lanes));
  }
  for (; i + lanes <= n; i += lanes) s0 = hn::Add(s0, hn::LoadU(d, p + i));
  float tail = 0.0f;
  for (; i < n; ++i) tail += p[i];
  const auto s =
      hn::Add(hn::Add(hn::Add(s0, s1), hn::Add(s2, s3)), hn::Add(hn::Add(s4, s5), hn::Add(s6, s7)));
  return hn::GetLane(hn::SumOfLanes(d, s)) + tail;
}

const char* TargetNameT() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace attn_bench
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace attn_bench {

HWY_EXPORT(SumT);
HWY_EXPORT(TargetNameT);

const char* MachineKernelTarget() { return HWY_DYNAMIC_DISPATCH(TargetNameT)(); }

namespace {

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Runs body(0) ... body(threads - 1) concurrently, body(0) on this thread.
template <typename Body>
void OnThreads(int threads, const Body& body) {
  std::vector<std::thread> workers;
  for (int t = 1; t < threads; ++t) workers.emplace_back(body, t);
  body(0);
  for (std::thread& w : workers) w.join();
}

double FmaFlopsPerThread(size_t iters) { return FmaChainsFlops(iters); }

// One pass of `iters` rounds on each of `threads` threads; returns GFLOP/s.
double FmaOnce(int threads, size_t iters, float* sink) {
  std::vector<float> out(static_cast<size_t>(threads));
  const auto start = std::chrono::steady_clock::now();
  OnThreads(threads, [&](int t) {
    out[static_cast<size_t>(t)] = FmaChains(iters, 1.0f + static_cast<float>(t));
  });
  const double seconds = Seconds(start);
  for (float v : out) *sink += v;
  return threads * FmaFlopsPerThread(iters) / seconds * 1e-9;
}

// A buffer of `bytes` bytes of floats, filled (so its pages are resident),
// kept for the whole run.
struct ReadBuffer {
  hwy::AlignedFreeUniquePtr<float[]> data;
  size_t floats = 0;
};

const ReadBuffer& BufferOf(size_t bytes) {
  static std::map<size_t, ReadBuffer> buffers;
  ReadBuffer& b = buffers[bytes];
  if (!b.data) {
    b.floats = bytes / sizeof(float);
    b.data = hwy::AllocateAligned<float>(b.floats);
    std::fill(b.data.get(), b.data.get() + b.floats, 1.0f);
  }
  return b;
}

// Passes per timed call: about 256 MiB read per thread count in total, so
// that one call takes several milliseconds even for a small buffer.
size_t PassesFor(size_t bytes) { return std::max<size_t>(1, (size_t{256} << 20) / bytes); }

// `threads` threads each read their contiguous part of `buffer` `passes`
// times; returns GB/s.
double ReadOnce(const ReadBuffer& buffer, int threads, size_t passes, float* sink) {
  std::vector<float> out(static_cast<size_t>(threads));
  const auto start = std::chrono::steady_clock::now();
  OnThreads(threads, [&](int t) {
    const size_t begin = buffer.floats * static_cast<size_t>(t) / static_cast<size_t>(threads);
    const size_t end = buffer.floats * static_cast<size_t>(t + 1) / static_cast<size_t>(threads);
    float s = 0.0f;
    for (size_t pass = 0; pass < passes; ++pass) {
      s += HWY_DYNAMIC_DISPATCH(SumT)(buffer.data.get() + begin, end - begin);
    }
    out[static_cast<size_t>(t)] = s;
  });
  const double seconds = Seconds(start);
  for (float v : out) *sink += v;
  return static_cast<double>(buffer.floats * sizeof(float) * passes) / seconds * 1e-9;
}

void BM_FmaPeak(benchmark::State& state, int threads) {
  const size_t iters = 4000000;  // ~10 ms per pass with AVX-512, ~20 ms with AVX2
  float sink = 0.0f;
  for (auto _ : state) FmaOnce(threads, iters, &sink);
  benchmark::DoNotOptimize(sink);
  state.counters["GFLOPS"] = benchmark::Counter(threads * FmaFlopsPerThread(iters) * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = threads;
  state.SetLabel(MachineKernelTarget());
}

void BM_ReadBandwidth(benchmark::State& state, size_t bytes, int threads) {
  const ReadBuffer& buffer = BufferOf(bytes);
  const size_t passes = PassesFor(bytes);
  float sink = 0.0f;
  ReadOnce(buffer, threads, 1, &sink);  // warm-up: another benchmark may have run
  for (auto _ : state) ReadOnce(buffer, threads, passes, &sink);
  benchmark::DoNotOptimize(sink);
  state.counters["GBps"] = benchmark::Counter(static_cast<double>(bytes * passes) * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
  state.counters["bytes"] = static_cast<double>(bytes);
  state.counters["threads"] = threads;
  state.SetLabel(MachineKernelTarget());
}

}  // namespace

double FmaPeakGflops1() {
  static const double peak = [] {
    float sink = 0.0f;
    double best = 0.0;
    // ~0.4 ms each with AVX-512: short enough that some run is not
    // interrupted on a machine shared with other work.
    for (int rep = 0; rep < 100; ++rep) best = std::max(best, FmaOnce(1, 200000, &sink));
    benchmark::DoNotOptimize(sink);
    return best;
  }();
  return peak;
}

double ReadBandwidthGBps(size_t bytes, int threads) {
  static std::map<std::pair<size_t, int>, double> cache;
  double& best = cache[{bytes, threads}];
  if (best == 0.0) {
    const ReadBuffer& buffer = BufferOf(bytes);
    const size_t passes = PassesFor(bytes);
    float sink = 0.0f;
    ReadOnce(buffer, threads, 1, &sink);
    for (int rep = 0; rep < 8; ++rep) {
      best = std::max(best, ReadOnce(buffer, threads, passes, &sink));
    }
    benchmark::DoNotOptimize(sink);
  }
  return best;
}

void RegisterMachineBenchmarks() {
  for (int threads : {1, 2}) {
    const std::string suffix = "/threads:" + std::to_string(threads);
    benchmark::RegisterBenchmark(("machine/fma_peak/fp32" + suffix).c_str(), BM_FmaPeak, threads)
        ->UseRealTime()
        ->MeasureProcessCPUTime()
        ->Unit(benchmark::kMillisecond);
    for (const auto& [bytes, name] : {std::pair<size_t, const char*>{size_t{256} << 20, "256MiB"},
                                      std::pair<size_t, const char*>{size_t{16} << 20, "16MiB"}}) {
      benchmark::RegisterBenchmark((std::string("machine/read_bandwidth/") + name + suffix).c_str(),
                                   BM_ReadBandwidth, bytes, threads)
          ->UseRealTime()
          ->MeasureProcessCPUTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
}

}  // namespace attn_bench
#endif  // HWY_ONCE
