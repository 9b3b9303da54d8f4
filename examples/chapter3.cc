// Chapter 3 of "Build a Large Language Model (From Scratch)" (S. Raschka),
// "Coding attention mechanisms", walked through step by step with attn.
//
// The program follows examples/chapter3_reference.py (the same steps in
// PyTorch) block for block and prints every intermediate result in the same
// format, so that its output is examples/chapter3_expected.txt byte for byte
// (the ctest chapter3_matches_book checks it):
//   "## <label> (<shape>)" then one line per row, values as "%.4f";
//   "## <label>" then the value, for scalars.
//
// The first steps (3.3) are small enough to write as plain loops over
// attn::Tensor; from 3.4.2 on, the chapter's modules come from attn.

#include <attn/attn.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace {

using attn::Tensor;

// ---- Printing, in the reference script's format ---------------------------

// "%.4f" of v + 0.0, so that -0.0 prints as "0.0000" (like Python's f"{v + 0.0:.4f}").
void PrintValue(float v) { std::printf("%.4f", v + 0.0f); }

// "## label (d0,d1,...)" then the values, one line per row of the last dimension.
void Print(const std::string& label, const Tensor& t) {
  std::string shape;
  for (int64_t d : t.shape()) shape += (shape.empty() ? "" : ",") + std::to_string(d);
  std::printf("## %s (%s)\n", label.c_str(), shape.c_str());
  const int64_t cols = t.size(-1);
  for (int64_t i = 0; i < t.numel(); ++i) {
    PrintValue(t.data()[i]);
    std::putchar(i % cols == cols - 1 ? '\n' : ' ');
  }
}

void PrintScalar(const std::string& label, float v) {
  std::printf("## %s\n", label.c_str());
  PrintValue(v);
  std::printf("\n");
}

void PrintScalar(const std::string& label, int64_t v) {
  std::printf("## %s\n%lld\n", label.c_str(), static_cast<long long>(v));
}

// ---- The small computations of the walkthrough ------------------------------

// Row i of a matrix (rows, cols), as a vector (cols).
Tensor Row(const Tensor& m, int64_t i) {
  Tensor row({m.size(1)});
  for (int64_t j = 0; j < m.size(1); ++j) row.data()[j] = m.at({i, j});
  return row;
}

// torch.dot(a, b) for vectors.
float Dot(const Tensor& a, const Tensor& b) {
  float sum = 0.0f;
  for (int64_t i = 0; i < a.numel(); ++i) sum += a.data()[i] * b.data()[i];
  return sum;
}

float Sum(const Tensor& t) {
  float sum = 0.0f;
  for (int64_t i = 0; i < t.numel(); ++i) sum += t.data()[i];
  return sum;
}

// a @ b for a (n, k) and b (k, m); a vector (k) counts as one row and gives (m).
Tensor MatMul(const Tensor& a, const Tensor& b) {
  const int64_t n = a.numel() / b.size(0), k = b.size(0), m = b.size(1);
  Tensor out(a.dim() == 1 ? std::vector<int64_t>{m} : std::vector<int64_t>{n, m});
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < m; ++j) {
      float sum = 0.0f;
      for (int64_t p = 0; p < k; ++p) sum += a.data()[i * k + p] * b.at({p, j});
      out.data()[i * m + j] = sum;
    }
  }
  return out;
}

// b.T for a matrix b (rows, cols).
Tensor Transpose(const Tensor& b) {
  Tensor t({b.size(1), b.size(0)});
  for (int64_t i = 0; i < b.size(0); ++i) {
    for (int64_t j = 0; j < b.size(1); ++j) t.at({j, i}) = b.at({i, j});
  }
  return t;
}

// Every element divided by `divisor`.
Tensor Divide(Tensor t, float divisor) {
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] /= divisor;
  return t;
}

// torch.exp(x) / torch.exp(x).sum(dim=0): the chapter's first, naive softmax,
// which overflows for large inputs.
Tensor SoftmaxNaive(const Tensor& x) {
  Tensor e = x;
  for (int64_t i = 0; i < e.numel(); ++i) e.data()[i] = std::exp(e.data()[i]);
  return Divide(e, Sum(e));
}

// torch.softmax(x, dim=-1): each row of the last dimension, shifted by its
// maximum so that exp cannot overflow; -inf entries get weight 0.
Tensor Softmax(Tensor x) {
  const int64_t cols = x.size(-1);
  for (float* row = x.data(); row < x.data() + x.numel(); row += cols) {
    float max = row[0];
    for (int64_t j = 1; j < cols; ++j) max = std::fmax(max, row[j]);
    float sum = 0.0f;
    for (int64_t j = 0; j < cols; ++j) {
      row[j] = std::exp(row[j] - max);
      sum += row[j];
    }
    for (int64_t j = 0; j < cols; ++j) row[j] /= sum;
  }
  return x;
}

}  // namespace

int main() {
  // ---- 3.3.1 A simple self-attention mechanism without trainable weights ---
  const Tensor inputs({6, 3}, {0.43f, 0.15f, 0.89f,    // Your     (x^1)
                               0.55f, 0.87f, 0.66f,    // journey  (x^2)
                               0.57f, 0.85f, 0.64f,    // starts   (x^3)
                               0.22f, 0.58f, 0.33f,    // with     (x^4)
                               0.77f, 0.25f, 0.10f,    // one      (x^5)
                               0.05f, 0.80f, 0.55f});  // step     (x^6)
  Print("inputs", inputs);
  const int64_t num_tokens = inputs.size(0);

  // Attention scores of the 2nd token, the query, against every token.
  const Tensor query = Row(inputs, 1);
  Tensor attn_scores_2({num_tokens});
  for (int64_t i = 0; i < num_tokens; ++i) attn_scores_2.data()[i] = Dot(Row(inputs, i), query);
  Print("attn_scores_2", attn_scores_2);

  // Normalized to sum to 1: first by the sum, then with softmax.
  const Tensor attn_weights_2_tmp = Divide(attn_scores_2, Sum(attn_scores_2));
  Print("attn_weights_2_tmp", attn_weights_2_tmp);
  PrintScalar("attn_weights_2_tmp.sum", Sum(attn_weights_2_tmp));
  Print("attn_weights_2_naive", SoftmaxNaive(attn_scores_2));
  Tensor attn_weights_2 = Softmax(attn_scores_2);
  Print("attn_weights_2", attn_weights_2);
  PrintScalar("attn_weights_2.sum", Sum(attn_weights_2));

  // The context vector: the inputs weighted by the attention weights.
  Tensor context_vec_2({inputs.size(1)});
  for (int64_t i = 0; i < num_tokens; ++i) {
    for (int64_t j = 0; j < inputs.size(1); ++j) {
      context_vec_2.data()[j] += attn_weights_2.data()[i] * inputs.at({i, j});
    }
  }
  Print("context_vec_2", context_vec_2);

  // ---- 3.3.2 Computing attention weights for all input tokens --------------
  Tensor attn_scores({num_tokens, num_tokens});
  for (int64_t i = 0; i < num_tokens; ++i) {
    for (int64_t j = 0; j < num_tokens; ++j) {
      attn_scores.at({i, j}) = Dot(Row(inputs, i), Row(inputs, j));
    }
  }
  Print("attn_scores_loops", attn_scores);
  attn_scores = MatMul(inputs, Transpose(inputs));
  Print("attn_scores", attn_scores);
  Tensor attn_weights = Softmax(attn_scores);
  Print("attn_weights", attn_weights);
  Print("all_context_vecs", MatMul(attn_weights, inputs));

  // ---- 3.4.1 Computing the attention weights step by step ------------------
  // Trainable weight matrices, drawn as torch.rand(d_in, d_out) after
  // torch.manual_seed(123): the same numbers as in the book.
  const Tensor x_2 = Row(inputs, 1);
  int64_t d_in = inputs.size(1);  // 3
  int64_t d_out = 2;
  attn::manual_seed(123);
  const Tensor W_query = attn::rand({d_in, d_out});
  const Tensor W_key = attn::rand({d_in, d_out});
  const Tensor W_value = attn::rand({d_in, d_out});
  Print("W_query", W_query);
  Print("W_key", W_key);
  Print("W_value", W_value);

  const Tensor query_2 = MatMul(x_2, W_query);
  Print("query_2", query_2);
  Tensor keys = MatMul(inputs, W_key);
  const Tensor values = MatMul(inputs, W_value);
  Print("keys", keys);
  Print("values", values);

  PrintScalar("attn_score_22", Dot(query_2, Row(keys, 1)));
  attn_scores_2 = MatMul(query_2, Transpose(keys));
  Print("attn_scores_2 (trainable)", attn_scores_2);
  // Scaled by sqrt(d_k), the keys' dimension, before the softmax.
  const float d_k = static_cast<float>(keys.size(-1));
  attn_weights_2 = Softmax(Divide(attn_scores_2, std::sqrt(d_k)));
  Print("attn_weights_2 (trainable)", attn_weights_2);
  Print("context_vec_2 (trainable)", MatMul(attn_weights_2, values));

  // ---- 3.4.2 Implementing a compact self-attention Python class ------------
  attn::manual_seed(123);
  attn::SelfAttentionV1 sa_v1(d_in, d_out);
  Print("sa_v1(inputs) seed 123", sa_v1(inputs));

  // nn.Linear layers instead of raw matrices: other initial weights.
  attn::manual_seed(789);
  const attn::SelfAttentionV2 sa_v2(d_in, d_out);
  Print("sa_v2(inputs) seed 789", sa_v2(inputs));

  // ---- 3.5.1 Applying a causal attention mask ------------------------------
  // The attention weights of sa_v2, which every token spreads over all six.
  sa_v2.forward(inputs, &attn_weights);
  Print("sa_v2 attn_weights", attn_weights);

  // Simple masking: zero the weights above the diagonal, renormalize the rows.
  Tensor mask_simple({num_tokens, num_tokens});  // tril(ones(6, 6))
  for (int64_t i = 0; i < num_tokens; ++i) {
    for (int64_t j = 0; j <= i; ++j) mask_simple.at({i, j}) = 1.0f;
  }
  Print("mask_simple", mask_simple);
  Tensor masked_simple = attn_weights;
  for (int64_t i = 0; i < masked_simple.numel(); ++i) {
    masked_simple.data()[i] *= mask_simple.data()[i];
  }
  Print("masked_simple", masked_simple);
  Tensor masked_simple_norm = masked_simple;
  for (int64_t i = 0; i < num_tokens; ++i) {
    const float row_sum = Sum(Row(masked_simple, i));
    for (int64_t j = 0; j < num_tokens; ++j) masked_simple_norm.at({i, j}) /= row_sum;
  }
  Print("masked_simple_norm", masked_simple_norm);

  // The efficient way: -inf above the diagonal of the scores, then softmax.
  // (attn's modules apply the mask as a loop bound instead.)
  const Tensor queries = sa_v2.W_query()(inputs);
  keys = sa_v2.W_key()(inputs);
  Tensor masked = MatMul(queries, Transpose(keys));
  for (int64_t i = 0; i < num_tokens; ++i) {
    for (int64_t j = i + 1; j < num_tokens; ++j) masked.at({i, j}) = -INFINITY;
  }
  Print("masked", masked);
  attn_weights = Softmax(Divide(masked, std::sqrt(static_cast<float>(keys.size(-1)))));
  Print("masked attn_weights", attn_weights);

  // ---- 3.5.2 Masking additional attention weights with dropout -------------
  // In training mode half of the elements are dropped, the others doubled.
  attn::manual_seed(123);
  const attn::Dropout dropout(0.5);
  Print("dropout(ones) seed 123", dropout(Tensor({6, 6}, std::vector<float>(36, 1.0f))));
  attn::manual_seed(123);
  Print("dropout(attn_weights) seed 123", dropout(attn_weights));

  // ---- 3.5.3 Implementing a compact causal attention class -----------------
  // A batch of two copies of the inputs: (2, 6, 3).
  std::vector<float> batch_values = inputs.to_vector();
  batch_values.insert(batch_values.end(), batch_values.begin(), batch_values.end());
  const Tensor batch({2, num_tokens, d_in}, batch_values);
  Print("batch", batch);
  attn::manual_seed(123);
  int64_t context_length = batch.size(1);
  const attn::CausalAttention ca(d_in, d_out, context_length, 0.0);
  Print("ca(batch) seed 123", ca(batch));

  // ---- 3.6.1 Stacking multiple single-head attention layers ----------------
  attn::manual_seed(123);
  const attn::MultiHeadAttentionWrapper mha_wrapper(d_in, d_out, context_length, 0.0,
                                                    /*num_heads=*/2);
  Print("MultiHeadAttentionWrapper(batch) seed 123", mha_wrapper(batch));

  // ---- Exercise 3.1 Comparing SelfAttention_v1 and SelfAttention_v2 --------
  // v1.W_query = v2.W_query.weight.T (and W_key, W_value): identical outputs.
  attn::transfer_weights(sa_v2, sa_v1);
  Print("ex3.1 sa_v1(inputs) with sa_v2 weights", sa_v1(inputs));
  Print("ex3.1 sa_v2(inputs)", sa_v2(inputs));

  // ---- Exercise 3.2 Returning two-dimensional embedding vectors ------------
  // Two heads of d_out = 1 give 2-dimensional context vectors.
  attn::manual_seed(123);
  d_out = 1;
  const attn::MultiHeadAttentionWrapper mha_wrapper_1(d_in, d_out, context_length, 0.0,
                                                      /*num_heads=*/2);
  Print("ex3.2 MultiHeadAttentionWrapper d_out=1 (batch) seed 123", mha_wrapper_1(batch));

  // ---- 3.6.2 Implementing multi-head attention with weight splits ----------
  attn::manual_seed(123);
  d_in = batch.size(2);
  context_length = batch.size(1);
  d_out = 2;
  const attn::MultiHeadAttention mha(d_in, d_out, context_length, 0.0, /*num_heads=*/2);
  Print("MultiHeadAttention(batch) seed 123", mha(batch));

  // ---- Exercise 3.3 Initializing GPT-2 size attention modules --------------
  const attn::MultiHeadAttention gpt2_mha(768, 768, 1024, 0.0, 12);
  PrintScalar("ex3.3 MultiHeadAttention(768,768,1024,0.0,12) parameters",
              gpt2_mha.num_parameters());
  return 0;
}
