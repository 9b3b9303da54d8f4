// oneTBB behind attn's threading API (see parallel_for.h).
#include "parallel/parallel_for.h"

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/info.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/partitioner.h>
#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>

#include "attn/error.h"

namespace attn {
namespace {

int default_num_threads() {
  if (const char* env = std::getenv("ATTN_NUM_THREADS")) {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && n > 0)
      return static_cast<int>(std::min(n, static_cast<long>(kMaxThreads)));
  }
  return std::max(1, tbb::info::default_concurrency());
}

// The arena attn's loops run in. Replaced (never mutated) by set_num_threads,
// so a loop that already holds a pointer keeps a valid arena.
struct ArenaState {
  std::mutex mutex;
  std::shared_ptr<tbb::task_arena> arena;
};

ArenaState& arena_state() {
  static ArenaState state;
  return state;
}

std::shared_ptr<tbb::task_arena> current_arena() {
  ArenaState& state = arena_state();
  std::lock_guard<std::mutex> lock(state.mutex);
  if (!state.arena) state.arena = std::make_shared<tbb::task_arena>(default_num_threads());
  return state.arena;
}

}  // namespace

int num_threads() { return current_arena()->max_concurrency(); }

void set_num_threads(int n) {
  if (n > kMaxThreads) {
    throw ArgumentError("set_num_threads: n = " + std::to_string(n) +
                        " exceeds kMaxThreads = " + std::to_string(kMaxThreads));
  }
  const int threads = n > 0 ? n : default_num_threads();
  ArenaState& state = arena_state();
  std::lock_guard<std::mutex> lock(state.mutex);
  state.arena = std::make_shared<tbb::task_arena>(threads);
}

namespace parallel {

void ParallelFor(size_t n, size_t grain, const std::function<void(size_t, size_t)>& body) {
  if (n == 0) return;
  if (grain == 0) grain = 1;
  const std::shared_ptr<tbb::task_arena> arena = current_arena();
  if (n <= grain || arena->max_concurrency() == 1) {
    // One chunk or one thread: run inline, in chunks of at most `grain`, so
    // that the body sees the same chunk bounds contract.
    for (size_t begin = 0; begin < n; begin += grain) body(begin, std::min(n, begin + grain));
    return;
  }
  arena->execute([&] {
    tbb::parallel_for(
        tbb::blocked_range<size_t>(0, n, grain),
        [&](const tbb::blocked_range<size_t>& r) {
          // simple_partitioner splits down to at most `grain` per chunk.
          body(r.begin(), r.end());
        },
        tbb::simple_partitioner());
  });
}

}  // namespace parallel
}  // namespace attn
