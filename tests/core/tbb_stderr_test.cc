// A library prints nothing on success: asking for more threads than oneTBB
// runs (set_num_threads, ATTN_NUM_THREADS) is clamped to its limit, so that
// oneTBB has no reason to print its "The number of workers is currently
// limited" warning on stderr (it did at set_num_threads(8) on 2 cores).
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/info.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include "test_util.h"

namespace attn {
namespace {

// What fn() writes to file descriptor 2 (stderr), read back from a
// temporary file that stands in for it meanwhile.
std::string captured_stderr(const std::function<void()>& fn) {
  std::fflush(stderr);
  std::FILE* file = std::tmpfile();
  if (file == nullptr) return "(tmpfile failed)";
  const int saved = dup(2);
  dup2(fileno(file), 2);
  fn();
  std::fflush(stderr);
  dup2(saved, 2);
  close(saved);
  std::string text;
  std::rewind(file);
  char buffer[512];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof buffer, file)) > 0) text.append(buffer, n);
  std::fclose(file);
  return text;
}

int tbb_limit() {
  return static_cast<int>(
      tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism));
}

TEST(Threads, MoreThreadsThanOneTbbRunsPrintNothing) {
  const int hardware = std::max(1, tbb::info::default_concurrency());
  const int many = std::min(kMaxThreads, 4 * hardware);
  MultiHeadAttention mha(64, 64, 256, 0.0, 4);
  mha.eval();
  const Tensor x = testing::random_tensor({2, 256, 64}, 1);
  set_num_threads(1);
  const Tensor one = mha.forward(x);
  Tensor out;
  const std::string printed = captured_stderr([&] {
    set_num_threads(many);
    out = mha.forward(x);
    Tensor weights;
    mha.forward(x, &weights);
  });
  EXPECT_EQ(printed, "") << "set_num_threads(" << many << ") printed this";
  EXPECT_EQ(num_threads(), std::min(many, tbb_limit()));
  EXPECT_TENSOR_EQ(out, one);
  // The environment variable likewise.
  setenv("ATTN_NUM_THREADS", std::to_string(many).c_str(), 1);
  const std::string printed_env = captured_stderr([&] {
    set_num_threads(0);
    out = mha.forward(x);
  });
  unsetenv("ATTN_NUM_THREADS");
  EXPECT_EQ(printed_env, "") << "ATTN_NUM_THREADS=" << many << " printed this";
  EXPECT_EQ(num_threads(), std::min(many, tbb_limit()));
  EXPECT_TENSOR_EQ(out, one);
  set_num_threads(0);
}

}  // namespace
}  // namespace attn
