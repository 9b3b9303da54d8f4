// How many threads attn's parallel loops use.
//
// attn runs its parallel work in one oneTBB task arena of its own, capped at
// num_threads(), so it never oversubscribes the threads of a host
// application's own pool or arena. Results never depend on the thread count:
// every output element is computed by exactly one task, in an order fixed by
// the data, not the schedule.
//
// fork(): oneTBB does not support it. A process forked while no attn call
// runs may use attn, and so may one forked while another thread is inside a
// forward: a child forked after attn ran a parallel loop runs every later
// loop on the calling thread (oneTBB's workers do not exist there), with the
// same results; num_threads() is 1 there and set_num_threads() changes
// nothing. exec() after fork() is always fine.
#pragma once

namespace attn {

// The default is the environment variable ATTN_NUM_THREADS when it is a
// positive decimal integer (larger values, also ones too large to parse,
// count as kMaxThreads), else the number of hardware threads available to
// the process: an empty, zero, negative or non-numeric value ("abc", "2x")
// is ignored without an error, as the environment is not an argument the
// library can throw at. Either way the count is clamped to what oneTBB runs
// in one arena, its max_allowed_parallelism (the hardware threads unless the
// application set a tbb::global_control), read when the count is set: oneTBB
// would start no more workers, and would print a warning on stderr.
int num_threads();

// The largest thread count attn accepts.
constexpr int kMaxThreads = 1024;

// Sets the thread count for later calls (clamped as above); n <= 0 restores
// the default. Throws ArgumentError for n > kMaxThreads. Call it between
// forward passes, not concurrently with one.
void set_num_threads(int n);

}  // namespace attn
