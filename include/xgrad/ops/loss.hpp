#pragma once

#include "xgrad/tensor.hpp"

namespace xgrad {

/// How a loss combines its per-sample values.
enum class Reduction {
    mean,  ///< the average (the default, as in PyTorch)
    sum,   ///< the sum
    none,  ///< one value per sample, shape [N] (mse_loss and the binary losses: x's shape)
};

/// Softmax cross-entropy from logits [N, K] with its log-softmax fused in, computed in a
/// wider type (as log_softmax): finite for any finite logits, saturated at T's largest value
/// where a loss does not fit T; the mean is summed in long double. `target` is either class
/// indices [N] (integer values in [0, K)) or per-class probabilities [N, K] (one-hot or
/// soft). Do not apply softmax to the logits first. Throws ShapeError (shapes, K = 0) and
/// ValueError (a label outside [0, K) or not integer).
template <class T>
basic_tensor<T> cross_entropy(const basic_tensor<T>& logits, const basic_tensor<T>& target,
                              Reduction reduction = Reduction::mean);

/// (x - target)² per element; gradients flow to both. Throws ShapeError unless the shapes
/// are equal.
template <class T>
basic_tensor<T> mse_loss(const basic_tensor<T>& x, const basic_tensor<T>& target,
                         Reduction reduction = Reduction::mean);

/// -(t·log p + (1 - t)·log(1 - p)) for probabilities p in [0, 1], each log clamped at -100
/// (as PyTorch) so that p = 0 or 1 gives a finite loss. Throws ShapeError unless the shapes
/// are equal.
template <class T>
basic_tensor<T> binary_cross_entropy(const basic_tensor<T>& p, const basic_tensor<T>& target,
                                     Reduction reduction = Reduction::mean);

/// binary_cross_entropy(sigmoid(z), target) computed stably from logits z.
template <class T>
basic_tensor<T> binary_cross_entropy_with_logits(const basic_tensor<T>& z, const basic_tensor<T>& target,
                                                 Reduction reduction = Reduction::mean);

}  // namespace xgrad
