#pragma once

#include "xgrad/tensor.hpp"

namespace xgrad {

/// Batch normalisation over the last (channel) axis, as PyTorch's BatchNorm1d/2d on NHWC:
/// x [..., C], gamma [C], beta [C]; running_mean and running_var [C] are updated in place.
/// Training: normalise with the batch's mean and biased variance, then
/// running = (1 - momentum)·running + momentum·batch statistic, with the *unbiased* variance.
/// Evaluation: normalise with the running statistics. y = gamma·x̂ + beta.
/// Throws ShapeError (shapes), ValueError (training with one value per channel).
template <class T>
basic_tensor<T> batch_norm(const basic_tensor<T>& x, const basic_tensor<T>& gamma, const basic_tensor<T>& beta,
                           basic_tensor<T>& running_mean, basic_tensor<T>& running_var, bool training,
                           double momentum = 0.1, double eps = 1e-5);

/// Layer normalisation, as PyTorch's F.layer_norm: each slice over the trailing dimensions
/// `normalized_shape` is normalised with its own mean and biased variance, y = x̂ (· weight +
/// bias, both shaped normalized_shape). `xgrad::layer_norm(x, {C}, w, b)` for x [N, T, C].
/// Throws ShapeError when normalized_shape is not x's trailing dimensions or weight / bias
/// differ from it, ValueError for eps <= 0.
template <class T>
basic_tensor<T> layer_norm(const basic_tensor<T>& x, const Shape& normalized_shape, double eps = 1e-5);
template <class T>
basic_tensor<T> layer_norm(const basic_tensor<T>& x, const Shape& normalized_shape, const basic_tensor<T>& weight,
                           const basic_tensor<T>& bias, double eps = 1e-5);

/// Group normalisation, as PyTorch's F.group_norm on NHWC: the channels of x [N, ..., C] fall
/// into num_groups groups of C / num_groups consecutive channels, and each (sample, group) is
/// normalised over its spatial positions and channels with its own mean and biased variance;
/// y = x̂ (· weight + bias, both [C], per channel). `xgrad::group_norm(x, 8, w, b)` for x
/// [N, H, W, 32]. Throws ShapeError (x of rank below 2, weight / bias not [C]) and ValueError
/// (num_groups not dividing C, eps <= 0).
template <class T>
basic_tensor<T> group_norm(const basic_tensor<T>& x, std::size_t num_groups, double eps = 1e-5);
template <class T>
basic_tensor<T> group_norm(const basic_tensor<T>& x, std::size_t num_groups, const basic_tensor<T>& weight,
                           const basic_tensor<T>& bias, double eps = 1e-5);

/// Instance normalisation, as PyTorch's F.instance_norm without running statistics: group_norm
/// with one group per channel (each sample's channel normalised over its spatial positions).
template <class T>
basic_tensor<T> instance_norm(const basic_tensor<T>& x, double eps = 1e-5);
template <class T>
basic_tensor<T> instance_norm(const basic_tensor<T>& x, const basic_tensor<T>& weight, const basic_tensor<T>& bias,
                              double eps = 1e-5);

/// Inverted dropout: in training, zeroes each element with probability p (drawn from the
/// manual_seed generator) and scales the rest by 1 / (1 - p); the identity otherwise.
/// Throws ValueError unless 0 <= p < 1.
template <class T> basic_tensor<T> dropout(const basic_tensor<T>& x, double p, bool training);

}  // namespace xgrad
