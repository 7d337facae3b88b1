#pragma once

// y = x with its axes permuted, on raw row-major buffers. No Tensor, no tape.

#include <cstddef>
#include <vector>

namespace xgrad::kernels {

// y[i_0, ..., i_{n-1}] = x[j] where axis d of y is axis perm[d] of x (shape `shape`): runs
// along the last axis are copied whole when it stays the last, otherwise 32x32 tiles are
// transposed between y's last axis and the axis that is x's last; on the threads when large.
template <class T>
void permute(const T* x, const std::vector<std::size_t>& shape, const std::vector<std::size_t>& perm, T* y);

}  // namespace xgrad::kernels
