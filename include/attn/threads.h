// How many threads attn's parallel loops use.
//
// attn runs its parallel work in one oneTBB task arena of its own, capped at
// num_threads(), so it never oversubscribes the threads of a host
// application's own pool or arena. Results never depend on the thread count:
// every output element is computed by exactly one task, in an order fixed by
// the data, not the schedule.
#pragma once

namespace attn {

// The default is the environment variable ATTN_NUM_THREADS when it is a
// positive decimal integer (larger values, also ones too large to parse,
// count as kMaxThreads), else the number of hardware threads available to
// the process: an empty, zero, negative or non-numeric value ("abc", "2x")
// is ignored without an error, as the environment is not an argument the
// library can throw at.
int num_threads();

// The largest thread count attn accepts.
constexpr int kMaxThreads = 1024;

// Sets the thread count for later calls; n <= 0 restores the default. Throws
// ArgumentError for n > kMaxThreads. Call it between forward passes, not
// concurrently with one.
void set_num_threads(int n);

}  // namespace attn
