// fork(): a child process forked while attn is idle, or while another thread
// of the parent is inside a forward (or drawing random numbers), runs its own
// forward to the parent's bits (attn/threads.h, README "Threads"). oneTBB
// itself does not support fork: attn's loops run on the calling thread in a
// child forked after they used oneTBB.
//
// Each child runs its checks and leaves with _exit(0) (passed) or _exit(1);
// the parent waits at most 20 s, then kills it and fails: before attn
// handled fork, a child forked during a forward hung in oneTBB about half of
// the time.
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>

#include "test_util.h"

namespace attn {
namespace {

using testing::random_tensor;
using testing::same_bits;

constexpr std::chrono::seconds kChildLimit(20);

// Runs child() in a forked process, whose exit status is child()'s return
// value (2 when it throws). Fails when the status is not 0, or when the child
// has not finished within kChildLimit (it is killed then).
::testing::AssertionResult run_in_child(const std::function<int()>& child) {
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  if (pid < 0) return ::testing::AssertionFailure() << "fork failed: errno " << errno;
  if (pid == 0) {
    int code = 2;
    try {
      code = child();
    } catch (...) {
    }
    _exit(code);
  }
  const auto deadline = std::chrono::steady_clock::now() + kChildLimit;
  int status = 0;
  for (;;) {
    const pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (done < 0 && errno != EINTR) {
      return ::testing::AssertionFailure() << "waitpid failed: errno " << errno;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return ::testing::AssertionFailure()
             << "the child did not finish within " << kChildLimit.count() << " s: it hung";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return ::testing::AssertionSuccess();
  if (WIFEXITED(status)) {
    return ::testing::AssertionFailure()
           << "the child exited with " << WEXITSTATUS(status)
           << " (1: results differ from the parent's, 2: an exception)";
  }
  return ::testing::AssertionFailure() << "the child died of signal " << WTERMSIG(status);
}

// A module, inputs and the parent's results to compare a child's against:
// forward(x) (flash path), forward(x, &weights) (materialized) and decoding
// x with a KV cache.
struct Reference {
  MultiHeadAttention mha{48, 48, 130, 0.0, 4, true};
  Tensor x = random_tensor({2, 130, 48}, 1);
  Tensor out, out_weights, weights, decoded;
  Reference() {
    mha.eval();
    out = mha.forward(x);
    out_weights = mha.forward(x, &weights);
    KVCache cache = mha.make_cache(2);
    decoded = mha.forward(x, cache);
  }
  // Run in the child: 0 when every result has the parent's bits.
  int check() const {
    Tensor w;
    const Tensor y = mha.forward(x), y_weights = mha.forward(x, &w);
    KVCache cache = mha.make_cache(2);
    const Tensor y_decoded = mha.forward(x, cache);
    return same_bits(y, out) && same_bits(y_weights, out_weights) && same_bits(w, weights) &&
                   same_bits(y_decoded, decoded)
               ? 0
               : 1;
  }
};

// Forked after every call returned (attn's arena idle, its oneTBB workers
// asleep): the child computes the parent's results, also after forking
// again, and its loops run on its one thread.
TEST(Fork, ChildForkedWhileIdleUsesAttn) {
  set_num_threads(2);  // oneTBB in use in the parent (where the machine allows 2)
  const bool parent_used_tbb = num_threads() > 1;
  MultiHeadAttention large(64, 64, 256, 0.0, 4);
  large.forward(random_tensor({2, 256, 64}, 4));  // surely a parallel loop
  const Reference ref;
  EXPECT_TRUE(run_in_child([&] {
    if (ref.check() != 0) return 1;
    if (parent_used_tbb && num_threads() != 1) return 3;
    set_num_threads(4);  // changes nothing in a forked child
    if (parent_used_tbb && num_threads() != 1) return 4;
    // A grandchild too.
    return run_in_child([&] { return ref.check(); }) ? ref.check() : 5;
  }));
  // The parent is unaffected.
  EXPECT_EQ(ref.check(), 0);
  set_num_threads(0);
}

// Forked at varied moments while another thread runs long forwards (so
// inside oneTBB's arena most of the time) and a third draws random numbers:
// every child's forward completes with the parent's bits, and so does its
// training-mode forward, which draws dropout masks.
TEST(Fork, ChildForkedDuringForwardUsesAttn) {
  set_num_threads(2);
  const Reference ref;
  MultiHeadAttention busy(256, 256, 512, 0.0, 8);
  busy.eval();
  const Tensor busy_x = random_tensor({2, 512, 256}, 2);
  MultiHeadAttention dropout_module(16, 16, 8, 0.5, 2);
  const Tensor dropout_x = random_tensor({1, 8, 16}, 3);
  std::atomic<bool> stop{false};
  std::atomic<int> busy_calls{0};
  std::thread forwards([&] {
    while (!stop.load()) {
      busy.forward(busy_x);
      ++busy_calls;
    }
  });
  std::thread draws([&] {
    while (!stop.load()) rand({4096});
  });
  while (busy_calls.load() == 0) std::this_thread::yield();
  constexpr int kForks = 10;
  for (int i = 0; i < kForks; ++i) {
    std::this_thread::sleep_for(std::chrono::microseconds(500 + 1700 * i));
    const ::testing::AssertionResult result = run_in_child([&] {
      if (ref.check() != 0) return 1;
      dropout_module.forward(dropout_x);  // takes the generator's lock
      return 0;
    });
    EXPECT_TRUE(result) << "fork " << i;
    if (!result) break;  // a hang costs 20 s each
  }
  stop = true;
  forwards.join();
  draws.join();
  EXPECT_EQ(ref.check(), 0);
  set_num_threads(0);
}

}  // namespace
}  // namespace attn
