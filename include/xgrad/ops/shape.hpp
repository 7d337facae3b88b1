#pragma once

// Ops that move values without changing them. Their gradients move values back.

#include <cstddef>
#include <vector>

#include "xgrad/tensor.hpp"

namespace xgrad {

/// The same values in a new shape with as many elements; one dimension may be -1 (inferred).
/// x [2, 6], {3, -1} -> [3, 4]. Throws ShapeError when the sizes differ.
template <class T>
basic_tensor<T> reshape(const basic_tensor<T>& x, const std::vector<std::ptrdiff_t>& shape);
/// Keeps axis 0 (the batch) and flattens the rest, as Keras' Flatten:
/// [N, H, W, C] -> [N, H·W·C]. Throws ShapeError for a 0-D x.
template <class T> basic_tensor<T> flatten(const basic_tensor<T>& x);
/// Reorders the axes: y.shape[i] = x.shape[axes[i]]. Throws ShapeError unless `axes` is a
/// permutation of 0..dim-1 (negative axes count from the end).
template <class T>
basic_tensor<T> permute(const basic_tensor<T>& x, const std::vector<std::ptrdiff_t>& axes);
/// Swaps two axes.
template <class T> basic_tensor<T> transpose(const basic_tensor<T>& x, std::ptrdiff_t a, std::ptrdiff_t b);
/// Reverses the axes: the matrix transpose for a 2-D x.
template <class T> basic_tensor<T> transpose(const basic_tensor<T>& x);
/// Joins tensors along `axis`; all other dimensions must agree. Throws ShapeError printing
/// every shape, ValueError for an empty list.
template <class T>
basic_tensor<T> concat(const std::vector<basic_tensor<T>>& xs, std::ptrdiff_t axis = 0);

/// Joins tensors of one shape along a new axis (PyTorch's stack): three [2, 3] along axis 1
/// give [2, 3, 3]; axis may be -(dim + 1) .. dim. Throws ShapeError printing every shape when
/// they differ, ValueError for an empty list.
template <class T>
basic_tensor<T> stack(const std::vector<basic_tensor<T>>& xs, std::ptrdiff_t axis = 0);
/// Cuts x along `axis` into consecutive parts of the given sizes (PyTorch's split with a list),
/// each a slice of x. Throws ShapeError unless the sizes add up to the axis.
template <class T>
std::vector<basic_tensor<T>> split(const basic_tensor<T>& x, const std::vector<std::size_t>& sizes,
                                   std::ptrdiff_t axis = 0);
/// Cuts x along `axis` into parts of split_size, the last one shorter when the axis does not
/// divide (PyTorch's split with an int). Throws ValueError for split_size 0.
template <class T>
std::vector<basic_tensor<T>> split(const basic_tensor<T>& x, std::size_t split_size, std::ptrdiff_t axis = 0);

/// x repeated along the axes where it has size 1 (and new leading axes) to `shape`, as numpy's
/// broadcast_to; the gradient sums back. Throws ShapeError when x does not broadcast to it.
template <class T> basic_tensor<T> broadcast_to(const basic_tensor<T>& x, const Shape& shape);
/// Elements start .. start + length - 1 along `axis` (PyTorch's narrow). Throws ShapeError when
/// the range does not fit the axis.
template <class T>
basic_tensor<T> slice(const basic_tensor<T>& x, std::ptrdiff_t axis, std::size_t start, std::size_t length);

}  // namespace xgrad
