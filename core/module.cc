#include "attn/module.h"

#include <algorithm>
#include <set>

#include "attn/error.h"
#include "attn/linear.h"
#include "simd/matmul_int8.h"

namespace attn {
namespace {

void check_causal_mask(const std::string& name, const Tensor& mask) {
  const int64_t n = mask.size(0);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      const float expected = j > i ? 1.0f : 0.0f;
      if (mask.data()[i * n + j] != expected) {
        throw ArgumentError("load_state_dict: '" + name + "' of shape " +
                            shape_to_string(mask.shape()) +
                            " is not the causal mask triu(ones, diagonal=1) (element (" +
                            std::to_string(i) + ", " + std::to_string(j) +
                            ") differs); attn applies causality as a loop bound and "
                            "supports only that mask");
      }
    }
  }
}

}  // namespace

Tensor Module::causal_mask(int64_t n) {
  Tensor mask({n, n});
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = i + 1; j < n; ++j) mask.data()[i * n + j] = 1.0f;
  }
  return mask;
}

void Module::collect_child(Module& child, const std::string& prefix,
                           std::vector<NamedTensor>& out) {
  const size_t first = out.size();
  child.collect_tensors(prefix, out);
  for (size_t i = first; i < out.size(); ++i) {
    if (out[i].owner == nullptr) out[i].owner = &child;
  }
}

std::vector<Module::NamedTensor> Module::named_tensors() const {
  std::vector<NamedTensor> tensors;
  // collect_tensors hands out mutable pointers for load_state_dict; the const
  // callers below only read through them.
  Module* self = const_cast<Module*>(this);
  self->collect_tensors("", tensors);
  for (NamedTensor& entry : tensors) {
    if (entry.owner == nullptr) entry.owner = self;
  }
  return tensors;
}

StateDict Module::state_dict() const {
  StateDict dict;
  for (const NamedTensor& entry : named_tensors()) {
    dict.emplace(entry.name,
                 entry.tensor != nullptr ? *entry.tensor : causal_mask(entry.mask_size));
  }
  return dict;
}

bool Module::moved_from() const {
  for (const NamedTensor& entry : named_tensors()) {
    if (entry.kind == TensorKind::kParameter && entry.tensor->numel() == 0) return true;
  }
  return false;
}

void Module::load_state_dict(const StateDict& dict) {
  // Before anything else: a moved-from module has no shapes to load into, and
  // rebuilding its derived weights would fail after the copy.
  if (moved_from()) {
    throw ArgumentError(
        "load_state_dict: this module was moved from (its tensors are gone); assign a module to "
        "it before loading. Nothing was loaded");
  }
  const std::vector<NamedTensor> tensors = named_tensors();
  auto expected_shape = [](const NamedTensor& entry) {
    return entry.tensor != nullptr ? entry.tensor->shape()
                                   : std::vector<int64_t>{entry.mask_size, entry.mask_size};
  };
  std::vector<std::string> missing;
  std::set<std::string> expected;
  for (const NamedTensor& entry : tensors) {
    expected.insert(entry.name);
    auto it = dict.find(entry.name);
    if (it == dict.end()) {
      missing.push_back(entry.name);
    } else if (it->second.shape() != expected_shape(entry)) {
      throw ShapeError("load_state_dict: size mismatch for '" + entry.name +
                       "': copying a param with shape " + shape_to_string(it->second.shape()) +
                       ", the shape in the current model is " +
                       shape_to_string(expected_shape(entry)));
    }
  }
  std::vector<std::string> unexpected;
  for (const auto& item : dict) {
    if (expected.count(item.first) == 0) unexpected.push_back(item.first);
  }
  if (!missing.empty() || !unexpected.empty()) {
    auto join = [](const std::vector<std::string>& keys) {
      std::string s;
      for (const std::string& k : keys) s += (s.empty() ? "\"" : ", \"") + k + "\"";
      return s;
    };
    std::string message = "load_state_dict: error(s) in loading state_dict:";
    if (!missing.empty()) message += " missing key(s): " + join(missing) + ".";
    if (!unexpected.empty()) message += " unexpected key(s): " + join(unexpected) + ".";
    throw ArgumentError(message);
  }
  for (const NamedTensor& entry : tensors) {
    if (entry.kind == TensorKind::kCausalMask) check_causal_mask(entry.name, dict.at(entry.name));
  }
  // A module made by quantize_dynamic quantizes what it loads, which needs
  // finite parameters, as quantize_dynamic itself does.
  const bool quantized = std::any_of(tensors.begin(), tensors.end(), [](const NamedTensor& e) {
    const auto* linear = dynamic_cast<const Linear*>(e.owner);
    return linear != nullptr && linear->is_quantized();
  });
  for (const NamedTensor& entry : tensors) {
    if (!quantized || entry.kind != TensorKind::kParameter) continue;
    const Tensor& t = dict.at(entry.name);
    if (!simd::AllFinite(t.data(), static_cast<size_t>(t.numel()))) {
      throw ArgumentError("load_state_dict: '" + entry.name + "' of shape " +
                          shape_to_string(t.shape()) +
                          " holds NaN or inf, which this int8 module (quantize_dynamic) cannot "
                          "quantize");
    }
  }
  // Every check passed: now copy (no partial update on error).
  for (const NamedTensor& entry : tensors) {
    if (entry.tensor != nullptr) *entry.tensor = dict.at(entry.name);
  }
  // Owners appear after their children's tensors were collected, so the
  // first-seen order notifies innermost modules first.
  std::vector<Module*> owners;
  for (const NamedTensor& entry : tensors) {
    if (entry.owner != this &&
        std::find(owners.begin(), owners.end(), entry.owner) == owners.end()) {
      owners.push_back(entry.owner);
    }
  }
  for (Module* owner : owners) owner->on_tensors_loaded();
  on_tensors_loaded();
}

int64_t Module::num_parameters() const {
  int64_t count = 0;
  for (const NamedTensor& entry : named_tensors()) {
    if (entry.kind == TensorKind::kParameter) count += entry.tensor->numel();
  }
  return count;
}

}  // namespace attn
