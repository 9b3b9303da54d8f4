// attn's parallel loop (internal). The only part of attn that includes oneTBB
// is parallel/*.cc; this header is plain C++. The thread count is set through
// attn/threads.h.
#pragma once

#include <cstddef>
#include <functional>

#include "attn/threads.h"

namespace attn {

namespace parallel {

// Calls body(begin, end) on disjoint chunks covering [0, n), each chunk at
// most `grain` long (grain 0 is taken as 1), on up to num_threads() threads.
// Returns when all chunks are done. An exception thrown by body is rethrown
// here (the other chunks may or may not have run).
void ParallelFor(size_t n, size_t grain, const std::function<void(size_t, size_t)>& body);

}  // namespace parallel
}  // namespace attn
