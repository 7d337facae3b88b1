#pragma once

// Copies of strided views into contiguous row-major buffers: permuted axes, broadcast axes.
// No Tensor, no tape.

#include <cstddef>
#include <vector>

namespace xgrad::kernels {

// y (contiguous, shape `size`) = x read with `stride` per axis (in elements; 0 repeats a
// value along the axis): y[i_0, ..., i_{n-1}] = x[Σ i_d · stride[d]]. Neighbouring axes that
// read x in order merge; runs along y's last axis are copied whole when x is contiguous there
// or filled when it repeats, otherwise 32x32 tiles are transposed between y's last axis and
// the axis that reads x contiguously. On the threads when large.
template <class T>
void strided_copy(const T* x, const std::vector<std::size_t>& size, const std::vector<std::size_t>& stride, T* y);

// y = x with its axes permuted: axis d of y is axis perm[d] of x (of shape `shape`).
template <class T>
void permute(const T* x, const std::vector<std::size_t>& shape, const std::vector<std::size_t>& perm, T* y);

// y (shape `to`) = x (shape `from`, numpy-broadcastable to `to`) repeated along the axes where
// it has size 1 or is missing.
template <class T>
void broadcast(const T* x, const std::vector<std::size_t>& from, const std::vector<std::size_t>& to, T* y);

}  // namespace xgrad::kernels
