#pragma once

#include "xgrad/tensor.hpp"

namespace xgrad {

/// Matrix product through OpenBLAS:
/// - a [M, K] · b [K, N] -> [M, N];
/// - batched, a [B..., M, K] · b [B..., K, N] -> [B..., M, N] with equal batch dimensions;
/// - a [B..., M, K] · b [K, N] -> [B..., M, N] (one matrix for the whole batch).
/// Throws ShapeError printing both shapes (`matmul: inner dimensions differ; a [2, 3], b [4, 5]`).
template <class T> basic_tensor<T> matmul(const basic_tensor<T>& a, const basic_tensor<T>& b);

/// Dense layer: x [N, in] · w [in, out] + b [out] -> [N, out]. Any leading dimensions, as
/// PyTorch's F.linear (with w transposed): x [N, T, in] -> [N, T, out], x [in] -> [out].
/// Throws ShapeError.
template <class T>
basic_tensor<T> linear(const basic_tensor<T>& x, const basic_tensor<T>& w, const basic_tensor<T>& b);
/// Dense layer without bias: x [..., in] · w [in, out] -> [..., out]. Throws ShapeError.
template <class T> basic_tensor<T> linear(const basic_tensor<T>& x, const basic_tensor<T>& w);
/// relu(linear(x, w[, b])) as one op: relu is applied to the product while it is in cache and
/// the rule masks gy once (nn::Dense with Activation::relu uses it). The same numbers as the
/// two ops. Throws ShapeError as linear.
template <class T>
basic_tensor<T> linear_relu(const basic_tensor<T>& x, const basic_tensor<T>& w, const basic_tensor<T>& b);
template <class T> basic_tensor<T> linear_relu(const basic_tensor<T>& x, const basic_tensor<T>& w);

}  // namespace xgrad
