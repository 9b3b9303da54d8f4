// load_state_dict on a module that was moved from throws ArgumentError
// ("moved from") before it changes anything, whatever the dict: the
// original's, the moved-from module's own (every tensor of shape {0}, which
// passes the key and shape checks) or an empty one. Was: MultiHeadAttention
// and GroupedQueryAttention copied the tensors in and then threw ShapeError
// rebuilding their fused projection, Linear, SelfAttention and
// CausalAttention loaded their own empty dict without an error, and a
// moved-from MultiHeadAttentionWrapper (no heads) loaded an empty dict.
#include "test_util.h"

namespace attn {
namespace {

using testing::random_tensor;

bool same_state(const StateDict& a, const StateDict& b) {
  if (a.size() != b.size()) return false;
  for (const auto& item : a) {
    auto it = b.find(item.first);
    if (it == b.end() || it->second.shape() != item.second.shape() ||
        std::memcmp(it->second.data(), item.second.data(),
                    sizeof(float) * static_cast<size_t>(item.second.numel())) != 0) {
      return false;
    }
  }
  return true;
}

// Moves `original` away, then expects every load into the moved-from module
// to be refused, leaving it as it was; assigning `original` back restores
// it.
template <typename M>
void check_moved_from_load(M original, const char* kind) {
  SCOPED_TRACE(kind);
  const StateDict dict = original.state_dict();
  M moved_from = std::move(original);
  M& a = original;  // the moved-from object
  const StateDict before = a.state_dict();
  for (const StateDict& attempt : {dict, before, StateDict{}}) {
    EXPECT_THROW_WITH(a.load_state_dict(attempt), ArgumentError, "load_state_dict", "moved from");
    EXPECT_TRUE(same_state(a.state_dict(), before));
  }
  a = moved_from;
  EXPECT_NO_THROW(a.load_state_dict(dict));
  EXPECT_TRUE(same_state(a.state_dict(), dict));
}

TEST(BadInput, MovedFromModulesRefuseLoadStateDict) {
  check_moved_from_load(Linear(3, 4), "Linear");
  check_moved_from_load(Linear(3, 4, false), "Linear without bias");
  check_moved_from_load(SelfAttentionV1(3, 4), "SelfAttentionV1");
  check_moved_from_load(SelfAttentionV2(3, 4, true), "SelfAttentionV2");
  check_moved_from_load(CausalAttention(3, 4, 6, 0.0), "CausalAttention");
  check_moved_from_load(MultiHeadAttentionWrapper(3, 4, 6, 0.0, 2), "MultiHeadAttentionWrapper");
  check_moved_from_load(MultiHeadAttention(3, 4, 6, 0.0, 2, true), "MultiHeadAttention");
  check_moved_from_load(quantize_dynamic(MultiHeadAttention(3, 4, 6, 0.0, 2)),
                        "int8 MultiHeadAttention");
  check_moved_from_load(quantize_dynamic(CausalAttention(3, 4, 6, 0.0)), "int8 CausalAttention");
  check_moved_from_load(GroupedQueryAttention(3, 4, 6, 2, 1), "GroupedQueryAttention");
  check_moved_from_load(
      quantize_dynamic(GroupedQueryAttention(3, 4, 6, 2, 1, RopeConfig(), 2, true)),
      "int8 GroupedQueryAttention");
}

// A module that is not moved from still loads an empty dict when it has no
// tensors (Dropout), and a moved-from module keeps refusing after failed loads.
TEST(BadInput, MovedFromCheckLeavesOtherModulesAlone) {
  Dropout dropout(0.5);
  EXPECT_NO_THROW(dropout.load_state_dict(StateDict{}));
  MultiHeadAttention mha(3, 4, 6, 0.0, 2);
  const MultiHeadAttention b = std::move(mha);
  EXPECT_THROW_WITH(mha.load_state_dict(b.state_dict()), ArgumentError, "moved from");
  EXPECT_THROW_WITH(mha.forward(random_tensor({1, 2, 3}, 1)), ArgumentError, "moved from");
}

}  // namespace
}  // namespace attn
