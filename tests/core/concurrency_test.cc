// Threads: forward of an eval-mode module called concurrently from many host
// threads on the same module gives, bit for bit, what a sequential call gives
// (forward keeps no mutable state; dropout is inactive in eval mode, so no
// random numbers are drawn). Not safe concurrently with a forward, and not
// tested here: train()/eval(), load_state_dict, set_attention_path,
// set_num_threads, and sharing one KVCache between threads (each thread
// decodes with its own cache).
//
// Calls from inside a user's own oneTBB arena (forward in parallel_for
// bodies) or std::thread pool complete, with the same bits, under a
// watchdog, and do not multiply threads.
//
// Sized for ThreadSanitizer: every test is well under a second in Release
// and under 2 s with TSan. ATTN_TEST_SMALL=1 cuts the calls per thread from
// 50 to 12. With a oneTBB that is not built with TSan (Debian's), run
// Concurrency.* and UserThreadPool.* with ATTN_NUM_THREADS=1: attn's loops then
// run inline on the calling threads, so TSan sees every synchronization
// between them (clean); work on oneTBB workers (attn's own loops with more
// threads, the UserArena.* bodies) gives false reports there, because the
// library's synchronization is invisible to TSan.
#include <oneapi/tbb/info.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"

namespace attn {
namespace {

using testing::random_tensor;
using testing::same_bits;
using testing::slice_tokens;

bool small_run() {
  const char* env = std::getenv("ATTN_TEST_SMALL");
  return env != nullptr && *env != '\0' && std::string(env) != "0";
}

constexpr int kThreads = 6;
int calls_per_thread() { return small_run() ? 12 : 50; }

// forward(x, weights or null) of some module.
using Forward = std::function<Tensor(const Tensor&, Tensor*)>;

// Inputs of varied shapes (batch 1..3, num_tokens 1..context_length across
// the 64-token block boundary) and their outputs and weights computed
// sequentially beforehand.
struct Case {
  Tensor x, out;
  Tensor out_with_weights, weights;  // forward(x, &weights): the materialized path
};

std::vector<Case> make_cases(const Forward& forward, int64_t d_in, int64_t context_length,
                             uint64_t seed) {
  const int64_t tokens[] = {1, 2, 7, 31, 63, 64, 65, context_length};
  std::vector<Case> cases;
  for (int64_t i = 0; i < 16; ++i) {
    const int64_t B = 1 + i % 3;
    const int64_t T = std::min(context_length, tokens[i % 8] + (i / 8));
    Case c;
    c.x = random_tensor({B, T, d_in}, seed + static_cast<uint64_t>(i));
    c.out_with_weights = forward(c.x, &c.weights);
    c.out = forward(c.x, nullptr);
    cases.push_back(std::move(c));
  }
  return cases;
}

// Runs body(thread) on `threads` std::threads and joins them.
void run_threads(int threads, const std::function<void(int)>& body) {
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(body, t);
  for (std::thread& thread : pool) thread.join();
}

// Each of kThreads threads calls every forward in `modules` calls_per_thread()
// times in total, on the cases in its own order, asking for the weights on
// every third call; returns the mismatches per thread.
std::vector<int> hammer(const std::vector<Forward>& modules,
                        const std::vector<std::vector<Case>>& cases) {
  std::vector<int> mismatches(kThreads, 0);
  const int calls = calls_per_thread();
  run_threads(kThreads, [&](int t) {
    for (int i = 0; i < calls; ++i) {
      const size_t m = static_cast<size_t>(t + i) % modules.size();
      const std::vector<Case>& pool = cases[m];
      const Case& c = pool[static_cast<size_t>(t * 5 + i * 3) % pool.size()];
      if (i % 3 == 2) {
        Tensor weights;
        const Tensor out = modules[m](c.x, &weights);
        if (!same_bits(weights, c.weights) || !same_bits(out, c.out_with_weights)) {
          ++mismatches[static_cast<size_t>(t)];
        }
      } else if (!same_bits(modules[m](c.x, nullptr), c.out)) {
        ++mismatches[static_cast<size_t>(t)];
      }
    }
  });
  return mismatches;
}

void expect_no_mismatches(const std::vector<int>& mismatches) {
  for (size_t t = 0; t < mismatches.size(); ++t) {
    EXPECT_EQ(mismatches[t], 0) << "thread " << t << " got outputs that differ from sequential";
  }
}

TEST(Concurrency, MultiHeadAttentionEvalManyThreads) {
  MultiHeadAttention mha(32, 48, 96, 0.1, 4, true);
  mha.eval();
  const Forward f = [&](const Tensor& x, Tensor* w) { return mha.forward(x, w); };
  const auto start = std::chrono::steady_clock::now();
  expect_no_mismatches(hammer({f}, {make_cases(f, 32, 96, 100)}));
  RecordProperty(
      "seconds",
      std::to_string(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()));
}

TEST(Concurrency, MaterializedPathManyThreads) {
  MultiHeadAttention mha(24, 24, 80, 0.0, 3);
  mha.set_attention_path(MultiHeadAttention::AttentionPath::kMaterialized);  // before the threads
  mha.eval();
  const Forward f = [&](const Tensor& x, Tensor* w) { return mha.forward(x, w); };
  expect_no_mismatches(hammer({f}, {make_cases(f, 24, 80, 200)}));
}

// Several modules at once: threads alternate between them.
TEST(Concurrency, CausalAttentionAndWrapperManyThreads) {
  CausalAttention ca(20, 16, 72, 0.5, true);
  MultiHeadAttentionWrapper wrapper(20, 8, 72, 0.5, 3);
  MultiHeadAttention mha(20, 16, 72, 0.5, 2);
  ca.eval();
  wrapper.eval();
  mha.eval();
  const Forward fa = [&](const Tensor& x, Tensor* w) { return ca.forward(x, w); };
  const Forward fw = [&](const Tensor& x, Tensor* w) { return wrapper.forward(x, w); };
  const Forward fm = [&](const Tensor& x, Tensor* w) { return mha.forward(x, w); };
  expect_no_mismatches(hammer(
      {fa, fw, fm},
      {make_cases(fa, 20, 72, 300), make_cases(fw, 20, 72, 400), make_cases(fm, 20, 72, 500)}));
}

// Each thread decodes its own sequence with its own cache on one module.
TEST(Concurrency, KVCacheDecodingPerThread) {
  MultiHeadAttention mha(16, 32, 90, 0.0, 4);
  mha.eval();
  const std::vector<int64_t> chunks = {40, 1, 1, 24, 1, 23};  // 90 tokens
  auto decode = [&](const Tensor& x) {
    KVCache cache = mha.make_cache(x.size(0));
    std::vector<Tensor> parts;
    int64_t begin = 0;
    for (int64_t chunk : chunks) {
      parts.push_back(mha.forward(slice_tokens(x, begin, begin + chunk), cache));
      begin += chunk;
    }
    return parts;
  };
  std::vector<Tensor> inputs;
  std::vector<std::vector<Tensor>> expected;
  for (int t = 0; t < kThreads; ++t) {
    inputs.push_back(random_tensor({1 + t % 2, 90, 16}, 600 + static_cast<uint64_t>(t)));
    expected.push_back(decode(inputs.back()));
  }
  std::vector<int> mismatches(kThreads, 0);
  const int rounds = small_run() ? 2 : 6;
  run_threads(kThreads, [&](int t) {
    for (int r = 0; r < rounds; ++r) {
      const std::vector<Tensor> parts = decode(inputs[static_cast<size_t>(t)]);
      for (size_t i = 0; i < parts.size(); ++i) {
        if (!same_bits(parts[i], expected[static_cast<size_t>(t)][i])) {
          ++mismatches[static_cast<size_t>(t)];
        }
      }
    }
  });
  expect_no_mismatches(mismatches);
}

// --- a user's own thread pool or oneTBB arena --------------------------------

// Runs fn on a thread of its own and waits at most `limit`; a deadlock would
// hang the whole suite, so it aborts the process with a message instead.
void run_with_watchdog(const std::function<void()>& fn,
                       std::chrono::seconds limit = std::chrono::seconds(60)) {
  std::promise<void> done;
  std::future<void> finished = done.get_future();
  std::thread worker([&] {
    try {
      fn();
      done.set_value();
    } catch (...) {
      done.set_exception(std::current_exception());
    }
  });
  if (finished.wait_for(limit) != std::future_status::ready) {
    std::fprintf(stderr, "DEADLOCK: the calls did not complete within %lld s\n",
                 static_cast<long long>(limit.count()));
    std::fflush(stderr);
    std::abort();
  }
  worker.join();
  finished.get();
}

// Threads of this process now (Linux), or -1.
int process_threads() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    if (key == "Threads:") {
      int n = -1;
      status >> n;
      return n;
    }
    std::getline(status, key);
  }
  return -1;
}

// What attn may add to the process's threads: oneTBB's workers, which all
// arenas (the user's and attn's own) share.
int attn_thread_allowance() {
  return std::max(num_threads(), tbb::info::default_concurrency()) + 2;
}

struct Batch {
  std::vector<Tensor> x, expected;
};

Batch make_batch(const MultiHeadAttention& mha, int count, uint64_t seed) {
  Batch b;
  for (int i = 0; i < count; ++i) {
    const int64_t T = 1 + (i * 29) % mha.context_length();
    b.x.push_back(random_tensor({1 + i % 2, T, mha.d_in()}, seed + static_cast<uint64_t>(i)));
    b.expected.push_back(mha.forward(b.x.back()));
  }
  return b;
}

int count_mismatches(const std::vector<Tensor>& got, const Batch& batch) {
  int mismatches = 0;
  for (size_t i = 0; i < got.size(); ++i)
    mismatches += same_bits(got[i], batch.expected[i]) ? 0 : 1;
  return mismatches;
}

TEST(UserArena, ForwardInsideParallelForBodies) {
  MultiHeadAttention mha(32, 64, 130, 0.0, 4, true);
  mha.eval();
  const int count = small_run() ? 16 : 48;
  const Batch batch = make_batch(mha, count, 700);
  const int before = process_threads();
  for (int arena_threads : {2, 3, 4}) {
    std::vector<Tensor> got(static_cast<size_t>(count));
    run_with_watchdog([&] {
      tbb::task_arena arena(arena_threads);
      arena.execute([&] {
        tbb::parallel_for(0, count, [&](int i) {
          got[static_cast<size_t>(i)] = mha.forward(batch.x[static_cast<size_t>(i)]);
        });
      });
    });
    EXPECT_EQ(count_mismatches(got, batch), 0) << "user arena of " << arena_threads;
  }
  if (before > 0) {
    EXPECT_LE(process_threads(), before + 1 + attn_thread_allowance());
  }
}

// A user arena of one thread (its only slot taken by the caller) and attn
// with a thread count above the machine's: no deadlock, same bits.
TEST(UserArena, SingleSlotArenaAndOversizedThreadCount) {
  MultiHeadAttention mha(16, 32, 100, 0.0, 2);
  mha.eval();
  const Batch batch = make_batch(mha, 8, 800);
  for (int attn_threads : {1, 2, 8}) {
    set_num_threads(attn_threads);
    std::vector<Tensor> got(batch.x.size());
    run_with_watchdog([&] {
      tbb::task_arena arena(1);
      arena.execute([&] {
        tbb::parallel_for(size_t{0}, got.size(),
                          [&](size_t i) { got[i] = mha.forward(batch.x[i]); });
      });
    });
    EXPECT_EQ(count_mismatches(got, batch), 0) << "attn threads " << attn_threads;
  }
  set_num_threads(0);
}

// Nested: forward inside a parallel_for nested in another parallel_for of the
// user's arena, while other user threads call forward directly.
TEST(UserArena, NestedParallelForAndOutsideCallers) {
  MultiHeadAttention mha(24, 24, 70, 0.0, 3);
  mha.eval();
  const int count = small_run() ? 12 : 24;
  const Batch batch = make_batch(mha, count, 900);
  std::vector<Tensor> got(static_cast<size_t>(count));
  std::vector<int> outside_mismatches(2, 0);
  run_with_watchdog([&] {
    std::thread outside_a([&] {
      for (int i = 0; i < count; ++i) {
        outside_mismatches[0] +=
            same_bits(mha.forward(batch.x[static_cast<size_t>(i)]), batch.expected[i]) ? 0 : 1;
      }
    });
    std::thread outside_b([&] {
      for (int i = count - 1; i >= 0; --i) {
        outside_mismatches[1] +=
            same_bits(mha.forward(batch.x[static_cast<size_t>(i)]), batch.expected[i]) ? 0 : 1;
      }
    });
    tbb::task_arena arena(3);
    arena.execute([&] {
      tbb::parallel_for(0, 4, [&](int outer) {
        tbb::parallel_for(outer, count, 4, [&](int i) {
          got[static_cast<size_t>(i)] = mha.forward(batch.x[static_cast<size_t>(i)]);
        });
      });
    });
    outside_a.join();
    outside_b.join();
  });
  EXPECT_EQ(count_mismatches(got, batch), 0);
  EXPECT_EQ(outside_mismatches[0] + outside_mismatches[1], 0);
}

// A minimal fixed-size std::thread pool, as a host application might have.
class ThreadPool {
 public:
  explicit ThreadPool(int threads) {
    for (int t = 0; t < threads; ++t) workers_.emplace_back([this] { work(); });
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    for (std::thread& w : workers_) w.join();
  }
  std::future<void> submit(std::function<void()> task) {
    auto packaged = std::make_shared<std::packaged_task<void()>>(std::move(task));
    std::future<void> result = packaged->get_future();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back([packaged] { (*packaged)(); });
    }
    cv_.notify_one();
    return result;
  }

 private:
  void work() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task();
    }
  }
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

TEST(UserThreadPool, ForwardFromPoolTasks) {
  MultiHeadAttention mha(32, 64, 130, 0.0, 4, true);
  mha.eval();
  const int count = small_run() ? 16 : 64;
  const Batch batch = make_batch(mha, count, 1000);
  const int before = process_threads();
  const int pool_threads = 8;
  std::vector<Tensor> got(static_cast<size_t>(count));
  int during = -1;
  run_with_watchdog([&] {
    ThreadPool pool(pool_threads);
    std::vector<std::future<void>> done;
    for (int i = 0; i < count; ++i) {
      done.push_back(pool.submit(
          [&, i] { got[static_cast<size_t>(i)] = mha.forward(batch.x[static_cast<size_t>(i)]); }));
    }
    for (std::future<void>& f : done) f.get();
    during = process_threads();
  });
  EXPECT_EQ(count_mismatches(got, batch), 0);
  // The pool's threads, the watchdog's and oneTBB's workers: attn starts no
  // thread per call or per caller.
  if (before > 0 && during > 0) {
    EXPECT_LE(during, before + pool_threads + 1 + attn_thread_allowance());
  }
}

}  // namespace
}  // namespace attn
