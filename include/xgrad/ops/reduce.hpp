#pragma once

// Reductions. `axes` may be negative (counted from the end); an axis out of range throws
// ShapeError, as is a repeated axis. With keepdims the reduced axes stay, with size 1.

#include <cstddef>
#include <vector>

#include "xgrad/tensor.hpp"

namespace xgrad {

using Axes = std::vector<std::ptrdiff_t>;

/// Sum of every element, as a 0-D tensor.
template <class T> basic_tensor<T> sum(const basic_tensor<T>& x);
/// Sum over `axes`. x [2, 3], axes {1} -> [2] (or [2, 1] with keepdims).
template <class T> basic_tensor<T> sum(const basic_tensor<T>& x, const Axes& axes, bool keepdims = false);
/// Mean of every element, as a 0-D tensor.
template <class T> basic_tensor<T> mean(const basic_tensor<T>& x);
/// Mean over `axes`. An empty batch gives an empty result ([0, 3] over {1} -> [0]); a mean over
/// axes that hold nothing ([0, 3] over {0}, or all of it) is a ShapeError (PyTorch: NaN).
template <class T> basic_tensor<T> mean(const basic_tensor<T>& x, const Axes& axes, bool keepdims = false);
/// Largest element, as a 0-D tensor. The gradient goes to the first maximum (row-major).
/// NaN counts as larger than any number: a NaN anywhere gives NaN, its gradient to the first NaN.
template <class T> basic_tensor<T> max(const basic_tensor<T>& x);
/// Largest element over `axes`; the gradient of each output goes to exactly one input, the
/// first maximum of its slice in row-major order (tied maxima are counted once). Empty
/// reduced axes are a ShapeError; an empty batch gives an empty result.
template <class T> basic_tensor<T> max(const basic_tensor<T>& x, const Axes& axes, bool keepdims = false);

/// x summed over the axes that broadcasting stretched, so that the result has `shape` (the
/// gradient of a broadcast): x [2, 3, 4] to [3, 1] sums axis 0 and axis 2. Returns x itself
/// when the shapes are equal. Throws ShapeError when x does not broadcast from `shape`.
template <class T> basic_tensor<T> sum_to(const basic_tensor<T>& x, const Shape& shape);

}  // namespace xgrad
