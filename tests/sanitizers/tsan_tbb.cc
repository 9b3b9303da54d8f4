// ThreadSanitizer's view of oneTBB's synchronization, for the tsan leg of
// scripts/test.sh (which builds this file into libattn_tsan_tbb.so and loads
// it with LD_PRELOAD and INTEL_LIBITTNOTIFY64; see tests/sanitizers/README.md).
//
// Debian's libtbb is not built with -fsanitize=thread, so TSan sees none of
// the atomics with which TBB hands a task, and the data it reads, from the
// thread that spawns it to the thread that runs it, nor the end of a task to
// the thread that waits for it: every parallel loop then looks like a race
// between the caller's and the workers' accesses to attn's buffers. TBB tells
// such things to tools through the ITT API ("sync" group: releasing before it
// publishes, acquired after it takes), and Debian's libtbb keeps that
// interface: with INTEL_LIBITTNOTIFY64 naming this library and
// INTEL_ITTNOTIFY_GROUPS=sync, TBB calls the __itt_sync_* functions below,
// which turn them into TSan's happens-before edges (__tsan_release and
// __tsan_acquire on the same address). attn's TSan build also compiles TBB's
// headers with TBB_USE_PROFILING_TOOLS=2 (cmake/AttnWarnings.cmake), so that
// the header half of the scheduler (a parallel_for's tree of tasks, the
// wait_context its caller waits on) reports its edges too.
//
// One hand-over ITT does not report: TBB's small-object pool gives the memory
// of a finished task (freed by the thread that ran it) to the next task that
// any thread allocates, without malloc/free, which TSan would have seen. The
// wrappers of r1::allocate/r1::deallocate below order a task's previous life
// before its next one (release on free, acquire on allocation). They replace
// libtbb's functions for attn's calls by being first in the lookup order
// (LD_PRELOAD), and forward to libtbb's.
//
// And one more: task_arena::execute from a thread that finds the arena full
// (several threads of the caller's, as in Modules.ConcurrentForwardInEvalMode)
// enqueues the function for a thread already inside the arena, and waits;
// TBB's task queue has no ITT notification. The wrapper of r1::execute below
// hands TBB a delegate that orders the caller's work before the function and
// the function before the caller's return.
//
// Nothing here hides a report: it only adds the orderings that TBB really
// guarantees, so a race between two of attn's own accesses stays a race.
#include <dlfcn.h>
#include <oneapi/tbb/task_arena.h>  // d1::delegate_base, r1::execute

#include <cstddef>
#include <cstdio>
#include <cstdlib>

// TSan's annotation functions (sanitizer/tsan_interface.h), declared weak:
// this library is built without -fsanitize=thread, so that LD_PRELOAD can
// name it for ctest as well as for the tests it starts; in a TSan build's
// test they are libtsan's, elsewhere (ctest) null and never called.
extern "C" {
void __tsan_acquire(void* addr) __attribute__((weak));
void __tsan_release(void* addr) __attribute__((weak));
}

namespace {
void tsan_acquire(void* addr) {
  if (__tsan_acquire != nullptr) __tsan_acquire(addr);
}
void tsan_release(void* addr) {
  if (__tsan_release != nullptr) __tsan_release(addr);
}
}  // namespace

// ---- ITT collector (the "sync" group of ittnotify.h) ---------------------
extern "C" {
// Its presence tells TBB's ittnotify to look the functions up by name.
const char* __itt_api_version(void) { return "attn TSan annotations 1"; }
void __itt_sync_releasing(void* addr) { tsan_release(addr); }
void __itt_sync_acquired(void* addr) { tsan_acquire(addr); }
void __itt_sync_prepare(void*) {}
void __itt_sync_cancel(void*) {}
void __itt_sync_create(void*, const char*, const char*, int) {}
void __itt_sync_rename(void*, const char*) {}
void __itt_sync_destroy(void*) {}
}

namespace tbb {
namespace detail {
namespace r1 {

// ---- TBB's small-object pool ---------------------------------------------
namespace {
template <typename F>
F next_definition(const char* mangled) {
  void* f = dlsym(RTLD_NEXT, mangled);
  if (f == nullptr) {
    std::fprintf(stderr, "attn tsan_tbb: %s not found after this library\n", mangled);
    std::abort();
  }
  return reinterpret_cast<F>(f);
}
}  // namespace

void* allocate(d1::small_object_pool*& pool, std::size_t bytes, const d1::execution_data& ed) {
  using F = void* (*)(d1::small_object_pool*&, std::size_t, const d1::execution_data&);
  static const F real = next_definition<F>(
      "_ZN3tbb6detail2r18allocateERPNS0_2d117small_object_poolEmRKNS2_14execution_dataE");
  void* p = real(pool, bytes, ed);
  tsan_acquire(p);
  return p;
}

void* allocate(d1::small_object_pool*& pool, std::size_t bytes) {
  using F = void* (*)(d1::small_object_pool*&, std::size_t);
  static const F real =
      next_definition<F>("_ZN3tbb6detail2r18allocateERPNS0_2d117small_object_poolEm");
  void* p = real(pool, bytes);
  tsan_acquire(p);
  return p;
}

void deallocate(d1::small_object_pool& pool, void* p, std::size_t bytes,
                const d1::execution_data& ed) {
  using F = void (*)(d1::small_object_pool&, void*, std::size_t, const d1::execution_data&);
  static const F real = next_definition<F>(
      "_ZN3tbb6detail2r110deallocateERNS0_2d117small_object_poolEPvmRKNS2_14execution_dataE");
  tsan_release(p);
  real(pool, p, bytes, ed);
}

void deallocate(d1::small_object_pool& pool, void* p, std::size_t bytes) {
  using F = void (*)(d1::small_object_pool&, void*, std::size_t);
  static const F real =
      next_definition<F>("_ZN3tbb6detail2r110deallocateERNS0_2d117small_object_poolEPvm");
  tsan_release(p);
  real(pool, p, bytes);
}

// ---- task_arena::execute ---------------------------------------------------
namespace {
// Runs the caller's delegate wherever TBB runs it, between an acquire of what
// the caller released before execute() and a release of what it acquires
// after.
class AnnotatedDelegate : public d1::delegate_base {
 public:
  explicit AnnotatedDelegate(d1::delegate_base& delegate) : delegate_(delegate) {}
  bool operator()() const override {
    struct ReleaseOnExit {
      void* addr;
      ~ReleaseOnExit() { tsan_release(addr); }
    } release{&delegate_};
    tsan_acquire(&delegate_);
    return delegate_();
  }

 private:
  d1::delegate_base& delegate_;
};
}  // namespace

void execute(d1::task_arena_base& arena, d1::delegate_base& delegate) {
  using F = void (*)(d1::task_arena_base&, d1::delegate_base&);
  static const F real = next_definition<F>(
      "_ZN3tbb6detail2r17executeERNS0_2d115task_arena_baseERNS2_13delegate_baseE");
  AnnotatedDelegate annotated(delegate);
  struct AcquireOnExit {
    void* addr;
    ~AcquireOnExit() { tsan_acquire(addr); }
  } acquire{&delegate};
  tsan_release(&delegate);
  real(arena, annotated);
}

}  // namespace r1
}  // namespace detail
}  // namespace tbb
