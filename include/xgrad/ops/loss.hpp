#pragma once

#include <cstdint>
#include <optional>
#include <vector>

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

/// The options of cross_entropy and nll_loss beyond the reduction (PyTorch's).
struct CrossEntropyOptions {
    Reduction reduction = Reduction::mean;
    /// Per-class weights [K] (empty: all 1). With class indices a sample's loss is scaled by
    /// its class's weight and the mean divides by the sum of the samples' weights (PyTorch's
    /// rule); with probability targets each class's term is scaled and the mean divides by N.
    std::vector<double> weight{};
    /// ε in [0, 1): the targets become (1 - ε)·t + ε/K (cross_entropy only).
    double label_smoothing = 0;
    /// A label (class indices only) whose samples count for nothing: no loss, no gradient,
    /// not in the mean's count (padding in sequences; PyTorch's is -100). A batch with every
    /// sample ignored has loss 0 (PyTorch: NaN).
    std::optional<std::int64_t> ignore_index{};
};

/// cross_entropy with class weights, label smoothing or an ignored label. Composed of
/// cross_entropy's own rule and tensor ops. Throws as cross_entropy, and ValueError for a
/// weight list that is not K finite values >= 0, ε outside [0, 1), or ignore_index with
/// probability targets.
template <class T>
basic_tensor<T> cross_entropy(const basic_tensor<T>& logits, const basic_tensor<T>& target,
                              const CrossEntropyOptions& options);

/// Negative log-likelihood of log-probabilities [N, K] (log_softmax's output) at class
/// indices [N]: -w[y_i]·log_probs[i, y_i], with CrossEntropyOptions's weight, ignore_index
/// and reduction (label_smoothing must be 0). nll_loss(log_softmax(z, 1), y) equals
/// cross_entropy(z, y). Throws ShapeError and ValueError as cross_entropy.
template <class T>
basic_tensor<T> nll_loss(const basic_tensor<T>& log_probs, const basic_tensor<T>& target,
                         const CrossEntropyOptions& options = {});

/// Huber loss per element: ½d² where |d| < delta, delta·(|d| - ½delta) elsewhere, d = x - target
/// (PyTorch's huber_loss). Throws ShapeError unless the shapes are equal, ValueError unless
/// delta > 0.
template <class T>
basic_tensor<T> huber_loss(const basic_tensor<T>& x, const basic_tensor<T>& target, double delta = 1,
                           Reduction reduction = Reduction::mean);

/// Smooth L1 loss: huber_loss / beta for beta > 0 (½d²/beta below beta, |d| - ½beta above),
/// |d| for beta = 0 (PyTorch's smooth_l1_loss). Throws as huber_loss (beta >= 0).
template <class T>
basic_tensor<T> smooth_l1_loss(const basic_tensor<T>& x, const basic_tensor<T>& target, double beta = 1,
                               Reduction reduction = Reduction::mean);

/// |x - target| per element; its gradient at 0 is 0. Throws ShapeError unless the shapes are equal.
template <class T>
basic_tensor<T> l1_loss(const basic_tensor<T>& x, const basic_tensor<T>& target, Reduction reduction = Reduction::mean);

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
