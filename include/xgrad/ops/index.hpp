#pragma once

// Ops that pick entries by index: the lookups sequence models need.

#include <cstddef>
#include <optional>
#include <vector>

#include "xgrad/tensor.hpp"

namespace xgrad {

/// The entries of x at `indices` along `axis`, in that order (PyTorch's index_select):
/// x [2, 5, 3], axis 1, {4, 0, 0} -> [2, 3, 3]. An index may repeat (its gradient adds up) and
/// the list may be empty. Throws ShapeError for an axis out of range, ValueError for an index
/// outside the axis, naming it and x's shape.
template <class T>
basic_tensor<T> index_select(const basic_tensor<T>& x, std::ptrdiff_t axis, const std::vector<std::size_t>& indices);

/// x plus src's entries added at `indices` along `axis` (PyTorch's x.index_add(axis, indices,
/// src)): out[..., indices[j], ...] += src[..., j, ...]; repeated indices add up. src has x's
/// shape but indices.size() along the axis. The adjoint of index_select. Throws ShapeError
/// (axis, src's shape) and ValueError (an index outside the axis).
template <class T>
basic_tensor<T> index_add(const basic_tensor<T>& x, std::ptrdiff_t axis, const std::vector<std::size_t>& indices,
                          const basic_tensor<T>& src);

/// Entries of x picked along `axis` by an index tensor of x's rank (PyTorch's torch.gather):
/// out[i][j][k] = x[index[i][j][k]][j][k] for axis 0, and so on; out has index's shape, which
/// may be smaller than x's along every axis. The indices are whole numbers in a float tensor
/// (data, not differentiated); repeated ones add up in the gradient. Throws ShapeError (axis,
/// ranks, index larger than x off the axis) and ValueError (an index that is not a whole
/// number inside the axis).
template <class T>
basic_tensor<T> gather(const basic_tensor<T>& x, std::ptrdiff_t axis, const basic_tensor<T>& index);

/// x plus src added where gather would read (PyTorch's x.scatter_add(axis, index, src)):
/// out[index[i][j][k]][j][k] += src[i][j][k] for axis 0; src has index's shape. The adjoint of
/// gather. Throws as gather, and ShapeError when src and index differ.
template <class T>
basic_tensor<T> scatter_add(const basic_tensor<T>& x, std::ptrdiff_t axis, const basic_tensor<T>& index,
                            const basic_tensor<T>& src);

/// Rows of a table (PyTorch's F.embedding): indices of any shape holding whole numbers in
/// [0, V), weight [V, D] -> [indices' shape..., D]. The gradient adds into the rows that were
/// looked up only, and never into row padding_idx (a negative one counts from the end, as in
/// PyTorch). The indices are data, not differentiated. Throws ShapeError (weight not 2-D) and
/// ValueError (an index that is not a whole number in range, padding_idx outside [-V, V)).
template <class T>
basic_tensor<T> embedding(const basic_tensor<T>& indices, const basic_tensor<T>& weight,
                          std::optional<std::ptrdiff_t> padding_idx = std::nullopt);

}  // namespace xgrad
