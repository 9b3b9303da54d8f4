# The attention benchmark (included from bench/CMakeLists.txt, where
# `benchmark` is already found): wrapper vs fused MultiHeadAttention on the
# book's configurations. bench/run.sh runs it with the PyTorch peer and writes
# the report; see bench/README.md.
#
# memory_tracking.cc replaces malloc & co. for the whole process to measure
# the peak heap use of a forward pass; it is linked into this binary only.
add_executable(attn_attention_bench
  ${CMAKE_CURRENT_SOURCE_DIR}/attention_bench.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/memory_tracking.cc)
find_package(Threads REQUIRED)
target_link_libraries(attn_attention_bench PRIVATE attn::attn benchmark::benchmark
                                                   Threads::Threads)
target_compile_definitions(attn_attention_bench PRIVATE
  ATTN_BENCH_BUILD_TYPE="$<CONFIG>")
attn_enable_warnings(attn_attention_bench)
