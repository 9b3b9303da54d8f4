// attn::Module: what every attention module shares with torch.nn.Module:
// training/eval mode, state_dict() with PyTorch's key names, a strict
// load_state_dict(), and the trainable parameter count.
//
// Threads: forward (every form) is const and may run concurrently from any
// number of threads on the same module, with the same bits as sequential
// calls when the module is in eval mode (in training mode with dropout, the
// masks come from the one global generator in whatever order the calls take
// it). Not safe while any forward runs on the module: train()/eval(),
// load_state_dict(), MultiHeadAttention::set_attention_path(); and one KVCache
// must not be used by two calls at once.
//
// Moving: a moved-from module is valid but empty (its tensors have shape
// {0}): destroying it or assigning to it works, and its forward,
// quantize_dynamic and load_state_dict throw ArgumentError instead of reading
// (or, for load_state_dict, half replacing) the moved weights.
// A moved-from KVCache likewise makes forward(x, cache) throw ShapeError.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "attn/tensor.h"

namespace attn {

class Module;
namespace detail {
// The body of quantize_dynamic (attn/quantization.h).
void quantize_module(Module& module);
}  // namespace detail

// A PyTorch state_dict: key -> tensor (parameters and persistent buffers).
using StateDict = std::map<std::string, Tensor>;

class Module {
 public:
  virtual ~Module() = default;

  // Training mode (the default, as in PyTorch) applies dropout; eval mode
  // does not. Propagates to submodules.
  virtual void train(bool mode = true) { training_ = mode; }
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Copies of every parameter and persistent buffer under PyTorch's keys
  // (the causal `mask` buffers are built here, context_length² floats each).
  StateDict state_dict() const;

  // Strict like PyTorch's load_state_dict: every key of state_dict() must be
  // present with the same shape, and no other key may be. Throws ShapeError
  // (naming the key and both shapes) or ArgumentError (missing/unexpected
  // keys; for a module made by quantize_dynamic, also a parameter holding NaN
  // or inf; a module that was moved from, whatever the dict) and then leaves
  // the module unchanged.
  void load_state_dict(const StateDict& dict);

  // Number of trainable parameters (buffers such as `mask` excluded).
  int64_t num_parameters() const;

 protected:
  Module() = default;
  Module(const Module&) = default;
  Module& operator=(const Module&) = default;

  // kCausalMask: the book's persistent `mask` buffer, triu(ones(n, n), 1). attn
  // applies causality as a loop bound and never stores it: state_dict() builds
  // it (n x n) on demand, and load_state_dict() accepts exactly that pattern,
  // rejecting anything else rather than silently ignoring it.
  enum class TensorKind { kParameter, kBuffer, kCausalMask };
  struct NamedTensor {
    std::string name;
    Tensor* tensor;  // null for kCausalMask
    TensorKind kind;
    Module* owner = nullptr;  // filled in by collect_child / named_tensors
    int64_t mask_size = 0;    // n, for kCausalMask
  };
  // triu(ones(n, n), diagonal=1): the book's `mask` buffer, built.
  static Tensor causal_mask(int64_t n);
  // The entry of the book's `mask` buffer for a context of n tokens.
  static NamedTensor causal_mask_entry(std::string name, int64_t n) {
    return {std::move(name), nullptr, TensorKind::kCausalMask, nullptr, n};
  }
  // Every parameter and buffer, in PyTorch's state_dict order, with names
  // prefixed by `prefix`. Composite modules append their children's.
  virtual void collect_tensors(const std::string& prefix, std::vector<NamedTensor>& out) = 0;
  // Called after load_state_dict replaced the tensors (derived data such as
  // packed or concatenated weights is rebuilt here): first on every
  // submodule that owns a loaded tensor, children before parents, then on
  // the module load_state_dict was called on.
  virtual void on_tensors_loaded() {}

  // For composites: collects a child's tensors under `prefix`, remembering
  // the child as their owner so that it is told when they are loaded.
  static void collect_child(Module& child, const std::string& prefix,
                            std::vector<NamedTensor>& out);

  // True for a module that was moved from, which load_state_dict refuses.
  // The default: a parameter with no elements (every parameter of a
  // constructed module has positive extents; a moved-from tensor has shape
  // {0}). Modules that collect no tensors once moved from override it.
  virtual bool moved_from() const;

  // quantize_dynamic's step (attn/quantization.h): switches every Linear the
  // forward uses to int8. The default quantizes each Linear that owns
  // collected tensors; modules whose forward uses other Linears override it.
  virtual void quantize_in_place();
  friend void detail::quantize_module(Module& module);

 private:
  std::vector<NamedTensor> named_tensors() const;
  bool training_ = true;
};

}  // namespace attn
