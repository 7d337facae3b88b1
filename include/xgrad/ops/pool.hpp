#pragma once

#include <optional>

#include "xgrad/ops/conv.hpp"
#include "xgrad/tensor.hpp"

namespace xgrad {

/// Window options of max_pool2d and avg_pool2d (PyTorch's semantics, NHWC, floor mode):
/// out = floor((H + 2·padding - kernel) / stride) + 1.
struct Pool2dOptions {
    Size2 kernel = 2;
    /// Unset: the kernel size (non-overlapping windows).
    std::optional<Size2> stride{};
    /// Added on both sides; at most half the kernel. Max-pooling never picks padding;
    /// avg-pooling counts it as zeros when count_include_pad (PyTorch's default), and divides
    /// by the number of real pixels in the window otherwise.
    Size2 padding = 0;
    bool count_include_pad = true;
};

/// x [N, H, W, C] -> [N, OH, OW, C], the largest value of each window. Its gradient goes to
/// exactly one input per output: the first maximum of the window in row-major order (a NaN
/// counts as the maximum and propagates). Throws ShapeError (rank, H or W of 0, a window
/// larger than the padded input) and ValueError (kernel or stride below 1, padding negative
/// or above half the kernel).
template <class T> basic_tensor<T> max_pool2d(const basic_tensor<T>& x, const Pool2dOptions& options = {});
/// max_pool2d(relu(x)) in one pass: relu is applied to the pooled values (relu and max
/// commute, NaN included: the same numbers) and the gradient is masked on the pooled tensor,
/// not the full one. Write it where a relu feeds a max-pool (nn::Sequential does, for a layer
/// with Activation::relu followed by MaxPool2D).
template <class T> basic_tensor<T> relu_max_pool2d(const basic_tensor<T>& x, const Pool2dOptions& options = {});
/// relu_max_pool2d(conv2d(x, w[, b], conv), pool) as one op: the pool is taken while the
/// convolution's lines are in cache, and the convolution's full output is never stored (a 2x2,
/// stride-2, unpadded pool after a convolution over up to 4, or 16 or more, channels with one
/// group and libxsmm; any other pool or convolution computes the output first, with the same
/// numbers). The rule routes the pooled
/// gradient to each window's argmax, masked by relu, and continues as conv2d's. The same
/// numbers and gradients as the two ops. `xgrad::conv2d_relu_max_pool2d(x, w, b,
/// {.padding = xgrad::Padding::same}, {.kernel = 2})`. Throws as conv2d, then as max_pool2d
/// over the convolution's output.
template <class T>
basic_tensor<T> conv2d_relu_max_pool2d(const basic_tensor<T>& x, const basic_tensor<T>& w,
                                       const Conv2dOptions& conv = {}, const Pool2dOptions& pool = {});
template <class T>
basic_tensor<T> conv2d_relu_max_pool2d(const basic_tensor<T>& x, const basic_tensor<T>& w, const basic_tensor<T>& b,
                                       const Conv2dOptions& conv = {}, const Pool2dOptions& pool = {});
/// x [N, H, W, C] -> [N, OH, OW, C], the mean of each window. Throws as max_pool2d.
template <class T> basic_tensor<T> avg_pool2d(const basic_tensor<T>& x, const Pool2dOptions& options = {});
/// x [N, H, W, C] -> [N, C], the mean over H and W (Keras' GlobalAveragePooling2D).
/// Throws ShapeError unless x is 4-D with H, W > 0.
template <class T> basic_tensor<T> global_avg_pool2d(const basic_tensor<T>& x);

/// x [N, H, W, C] -> [N, OH, OW, C] = `output_size`, each output the mean of its bin, as
/// PyTorch's adaptive_avg_pool2d: rows floor(i·H / OH) .. ceil((i + 1)·H / OH) - 1 (bins
/// overlap when OH does not divide H; OH may exceed H). Throws ShapeError unless x is 4-D with
/// H, W > 0, ValueError for an output size below 1.
template <class T> basic_tensor<T> adaptive_avg_pool2d(const basic_tensor<T>& x, Size2 output_size);

enum class Interpolation {
    /// Each output copies the input at floor(position · in / out) (PyTorch's "nearest").
    nearest,
    /// Linear in each axis between the two nearest inputs (PyTorch's "bilinear").
    bilinear,
};

struct Upsample2dOptions {
    /// Integer factors for H and W; ignored when `size` is given.
    Size2 scale = 2;
    /// The output's height and width, any size (down-sampling included).
    std::optional<Size2> size{};
    Interpolation mode = Interpolation::nearest;
    /// bilinear only: the corner pixels of input and output are aligned (PyTorch's
    /// align_corners = True); otherwise pixel centres are (the default, as PyTorch's).
    bool align_corners = false;
};

/// Resizes x [N, H, W, C] to [N, H·scale, W·scale, C] (or `size`), as PyTorch's
/// F.interpolate on NHWC. A linear map of x, applied as two constant matrices, so the gradient
/// (and every higher one) is its transpose; it runs in float32 under an AutocastGuard. Throws
/// ShapeError unless x is 4-D with H, W > 0, ValueError for a scale or size below 1.
/// `xgrad::upsample2d(x, {.scale = 2, .mode = xgrad::Interpolation::bilinear})`.
template <class T> basic_tensor<T> upsample2d(const basic_tensor<T>& x, const Upsample2dOptions& options = {});

}  // namespace xgrad
