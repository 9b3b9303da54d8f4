// oneTBB behind attn's threading API (see parallel_for.h).
#include "parallel/parallel_for.h"

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/info.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/partitioner.h>
#include <oneapi/tbb/task_arena.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <string>

#include "attn/error.h"

namespace attn {
namespace {

// The most threads oneTBB runs in one arena: its max_allowed_parallelism
// (the hardware threads unless the application set a tbb::global_control).
// An arena asking for more gets no more workers, and oneTBB prints a warning
// on stderr for it.
int tbb_thread_limit() {
  const size_t limit =
      tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism);
  return static_cast<int>(std::max<size_t>(1, std::min<size_t>(limit, kMaxThreads)));
}

// The count asked for: set_num_threads' n, else ATTN_NUM_THREADS, else the
// hardware threads (before the clamp to tbb_thread_limit()).
int requested_threads(int n) {
  if (n > 0) return n;
  if (const char* env = std::getenv("ATTN_NUM_THREADS")) {
    char* end = nullptr;
    const long value = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && value > 0)
      return static_cast<int>(std::min(value, static_cast<long>(kMaxThreads)));
  }
  return std::max(1, tbb::info::default_concurrency());
}

// The arena attn's loops run in. Replaced (never mutated) by set_num_threads,
// so a loop that already holds a pointer keeps a valid arena.
struct ArenaState {
  std::mutex mutex;
  std::shared_ptr<tbb::task_arena> arena;
};

// fork(): oneTBB's worker threads do not exist in a child process, and an
// arena the parent was using may have slots held by threads the child does
// not have, so that entering it waits for ever (oneTBB does not support
// fork). A child forked after attn ran a parallel loop therefore never
// touches oneTBB again: its loops run on the calling thread (which is all
// that oneTBB would give it: it starts no workers in the child either), with
// the same results.
std::atomic<bool> g_entered_tbb{false};   // an attn loop entered an arena in this process
std::atomic<bool> g_forked_child{false};  // ... and this is a child forked after that

ArenaState& arena_state();

void lock_before_fork() { arena_state().mutex.lock(); }
void unlock_in_parent() { arena_state().mutex.unlock(); }
void reset_in_child() {
  ArenaState& state = arena_state();
  if (g_entered_tbb.load()) {
    g_forked_child.store(true);
    // Destroying the parent's arena could wait for its missing threads:
    // leave it alive (in static storage, never destroyed, no allocation).
    alignas(std::shared_ptr<tbb::task_arena>) static unsigned char
        graveyard[sizeof(std::shared_ptr<tbb::task_arena>)];
    new (graveyard) std::shared_ptr<tbb::task_arena>(std::move(state.arena));
  }
  state.mutex.unlock();
}

ArenaState& arena_state() {
  // Never destroyed: a forked child's exit must not wait on the arena.
  static ArenaState* const state = [] {
    auto* s = new ArenaState;
    pthread_atfork(lock_before_fork, unlock_in_parent, reset_in_child);
    return s;
  }();
  return *state;
}

std::shared_ptr<tbb::task_arena> make_arena(int n) {
  return std::make_shared<tbb::task_arena>(std::min(requested_threads(n), tbb_thread_limit()));
}

std::shared_ptr<tbb::task_arena> current_arena() {
  ArenaState& state = arena_state();
  std::lock_guard<std::mutex> lock(state.mutex);
  if (!state.arena) state.arena = make_arena(0);
  return state.arena;
}

}  // namespace

int num_threads() {
  if (g_forked_child.load(std::memory_order_relaxed)) return 1;
  return current_arena()->max_concurrency();
}

void set_num_threads(int n) {
  if (n > kMaxThreads) {
    throw ArgumentError("set_num_threads: n = " + std::to_string(n) +
                        " exceeds kMaxThreads = " + std::to_string(kMaxThreads));
  }
  if (g_forked_child.load(std::memory_order_relaxed)) return;  // loops run inline for good
  std::shared_ptr<tbb::task_arena> arena = make_arena(n);
  ArenaState& state = arena_state();
  std::lock_guard<std::mutex> lock(state.mutex);
  state.arena.swap(arena);
}

namespace parallel {

void ParallelFor(size_t n, size_t grain, const std::function<void(size_t, size_t)>& body) {
  if (n == 0) return;
  if (grain == 0) grain = 1;
  const auto run_inline = [&] {
    // In chunks of at most `grain`, so that the body sees the same chunk
    // bounds contract.
    for (size_t begin = 0; begin < n; begin += grain) body(begin, std::min(n, begin + grain));
  };
  if (g_forked_child.load(std::memory_order_relaxed)) {
    run_inline();
    return;
  }
  const std::shared_ptr<tbb::task_arena> arena = current_arena();
  if (n <= grain || arena->max_concurrency() == 1) {
    run_inline();
    return;
  }
  g_entered_tbb.store(true);
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
