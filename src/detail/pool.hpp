#pragma once

// What the fused convolution + max-pool op (ops/conv.cpp) shares with the pooling ops.

#include <cstdint>
#include <memory>

#include "kernels/buffer.hpp"
#include "kernels/pool2d.hpp"
#include "xgrad/ops/pool.hpp"

namespace xgrad::detail {

/// The pooling windows of `options` over an input of shape x [N, H, W, C], checked; `op` names
/// the op in messages.
kernels::PoolGeometry pool_geometry(const char* op, const Shape& x, const Pool2dOptions& options);

/// A max-pool's argmax (kernels/pool2d.hpp), shared by the rules that read it.
using Argmax = std::shared_ptr<const kernels::Buffer<std::int32_t>>;

/// dx [N, H, W, C]: each gy element added at its window's argmax, as an op (its gradient is
/// the gather at the same indices).
template <class T>
basic_tensor<T> max_pool2d_backward(const basic_tensor<T>& gy, const Argmax& argmax, const kernels::PoolGeometry& g);

}  // namespace xgrad::detail
