// Uses an installed attn through its umbrella header: builds the GPT-2 sized
// MultiHeadAttention of exercise 3.3 and runs one forward pass. Exits nonzero
// when the parameter count, the output shape or the values are wrong.
#include <attn/attn.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <vector>

int main() {
  try {
    attn::manual_seed(123);
    const attn::MultiHeadAttention mha(/*d_in=*/768, /*d_out=*/768, /*context_length=*/1024,
                                       /*dropout=*/0.0, /*num_heads=*/12);
    const int64_t params = mha.num_parameters();
    if (params != 2360064) {
      std::fprintf(stderr, "num_parameters() = %lld, expected 2360064\n",
                   static_cast<long long>(params));
      return 1;
    }

    const attn::Tensor x = attn::rand({1, 4, 768});
    const attn::Tensor out = mha.forward(x);
    const std::vector<int64_t> expected_shape = {1, 4, 768};
    if (out.shape() != expected_shape) {
      std::fprintf(stderr, "forward: output shape %s, expected (1, 4, 768)\n",
                   attn::shape_to_string(out.shape()).c_str());
      return 1;
    }
    for (int64_t i = 0; i < out.numel(); ++i) {
      if (!std::isfinite(out.data()[i])) {
        std::fprintf(stderr, "forward: output[%lld] = %f is not finite\n",
                     static_cast<long long>(i), out.data()[i]);
        return 1;
      }
    }
    std::printf("attn consumer: %lld parameters, output %s\n", static_cast<long long>(params),
                attn::shape_to_string(out.shape()).c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "attn consumer: %s\n", e.what());
    return 1;
  }
}
