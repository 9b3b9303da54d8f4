// attn's threading layer. The only part of attn that includes oneTBB is
// parallel/*.cc; this header is plain C++.
//
// All parallel work runs inside one task arena owned by attn, capped at
// num_threads(), so attn never oversubscribes a host application's own TBB
// threads. Results never depend on the thread count: every output element is
// computed by exactly one task, in an order fixed by the data, not the schedule.
#pragma once

#include <cstddef>
#include <functional>

namespace attn {

// Number of threads attn's parallel loops may use. The default is the
// environment variable ATTN_NUM_THREADS when set to a positive integer, else
// the number of hardware threads available to the process.
int num_threads();

// Sets the thread count for later calls; n <= 0 restores the default.
// Call it between forward passes, not concurrently with one.
void set_num_threads(int n);

namespace parallel {

// Calls body(begin, end) on disjoint chunks covering [0, n), each chunk at
// most `grain` long (grain 0 is taken as 1), on up to num_threads() threads.
// Returns when all chunks are done. An exception thrown by body is rethrown
// here (the other chunks may or may not have run).
void ParallelFor(size_t n, size_t grain, const std::function<void(size_t, size_t)>& body);

}  // namespace parallel
}  // namespace attn
