# The attention benchmark (included from bench/CMakeLists.txt, where
# `benchmark` is already found): main (attention_bench.cc); wrapper vs fused
# MultiHeadAttention (flash and materialized paths) on the book's
# configurations and the fused module in int8 (module_*bench.cc); the
# attention core alone, KV-cache decoding, grouped-query attention on a Llama
# 3.2 1B layer (gqa_*bench.cc), and the machine's FMA peak and read bandwidth.
# bench/run.sh runs it with the PyTorch peer and writes the report; see
# bench/README.md.
#
# memory_tracking.cc replaces malloc & co. for the whole process to measure
# the peak heap use of a forward pass; it is linked into this binary only.
#
# core_bench.cc and gqa_core_bench.cc include attn's internal
# core/attention_core.h (the attention core alone); machine_bench.cc has
# Highway kernels of its own (the FMA peak and the read bandwidth), hence
# hwy::hwy, which attn links privately.
add_executable(attn_attention_bench
  ${CMAKE_CURRENT_SOURCE_DIR}/attention_bench.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/configs.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/core_bench.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/decode_bench.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/decode_kv_int8_bench.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/fma_peak.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/gqa_bench.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/gqa_core_bench.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/gqa_decode_bench.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/gqa_prefill_bench.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/machine_bench.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/memory_tracking.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/module_bench.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/module_float32_bench.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/module_int8_bench.cc)
find_package(Threads REQUIRED)
target_include_directories(attn_attention_bench PRIVATE ${ATTN_INTERNAL_INCLUDE_DIRS})
target_link_libraries(attn_attention_bench PRIVATE attn::attn hwy::hwy benchmark::benchmark
                                                   Threads::Threads)
target_compile_definitions(attn_attention_bench PRIVATE
  ATTN_BENCH_BUILD_TYPE="$<CONFIG>")
attn_enable_warnings(attn_attention_bench)

# The peers' weights, inputs and reference outputs (bench/peer_reference.cc):
# bench/run.sh writes them before it runs bench/peers/*_peer.py.
add_executable(attn_peer_reference
  ${CMAKE_CURRENT_SOURCE_DIR}/peer_reference.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/configs.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/gqa_bench.cc)
target_include_directories(attn_peer_reference PRIVATE ${ATTN_INTERNAL_INCLUDE_DIRS})
target_link_libraries(attn_peer_reference PRIVATE attn::attn)
attn_enable_warnings(attn_peer_reference)
