#pragma once

#include <cstddef>

#include "xgrad/tensor.hpp"

namespace xgrad {

/// max(x, 0); the gradient at 0 is 0. NaN stays NaN (as in PyTorch and numpy).
template <class T> basic_tensor<T> relu(const basic_tensor<T>& x);
/// relu's gradient as an op: gy where y > 0, 0 elsewhere (y is relu's output). Linear in gy;
/// y enters as a mask only, so no gradient flows to it.
template <class T> basic_tensor<T> relu_backward(const basic_tensor<T>& gy, const basic_tensor<T>& y);
/// x for x > 0, slope·x otherwise.
template <class T> basic_tensor<T> leaky_relu(const basic_tensor<T>& x, double slope = 0.01);
/// 1 / (1 + e^-x), computed without overflow for any x.
template <class T> basic_tensor<T> sigmoid(const basic_tensor<T>& x);
/// Hyperbolic tangent.
template <class T> basic_tensor<T> tanh(const basic_tensor<T>& x);
/// e^x / sum(e^x) along `axis` (default: the last). Subtracts the maximum of each slice
/// first, so any finite logits give finite probabilities. Throws ShapeError for a bad axis.
template <class T> basic_tensor<T> softmax(const basic_tensor<T>& x, std::ptrdiff_t axis = -1);
/// log(softmax(x)) along `axis`, computed as x - max - log(sum(e^(x - max))) in a wider type
/// (double for float, long double for double): finite for any finite logits, exact where the
/// result fits T, saturated at T's lowest value where it does not (float logits of ±3e38
/// give -3.4e38, not -inf). Throws ShapeError for a bad axis.
template <class T> basic_tensor<T> log_softmax(const basic_tensor<T>& x, std::ptrdiff_t axis = -1);

/// The error function, elementwise.
template <class T> basic_tensor<T> erf(const basic_tensor<T>& x);

/// GELU's two forms, as PyTorch's `approximate` argument.
enum class Gelu {
    /// x Φ(x), Φ the standard normal CDF (exact, with erf).
    none,
    /// x/2 (1 + tanh(√(2/π) (x + 0.044715 x³))).
    tanh,
};
/// GELU (PyTorch's nn.GELU): `xgrad::gelu(x)` or `xgrad::gelu(x, xgrad::Gelu::tanh)`.
template <class T> basic_tensor<T> gelu(const basic_tensor<T>& x, Gelu approximate = Gelu::none);
/// SiLU (swish): x σ(x), without overflow for any x.
template <class T> basic_tensor<T> silu(const basic_tensor<T>& x);
/// ELU: x for x > 0, α (e^x - 1) otherwise (PyTorch's default α = 1).
template <class T> basic_tensor<T> elu(const basic_tensor<T>& x, double alpha = 1.0);
/// Softplus: log(1 + e^(βx)) / β, and x itself where βx > threshold (PyTorch's defaults β = 1,
/// threshold 20); stable for any x.
template <class T> basic_tensor<T> softplus(const basic_tensor<T>& x, double beta = 1.0, double threshold = 20.0);
/// Hardswish: x · min(max(x + 3, 0), 6) / 6; its gradient at -3 and 3 as PyTorch's.
template <class T> basic_tensor<T> hardswish(const basic_tensor<T>& x);

}  // namespace xgrad
