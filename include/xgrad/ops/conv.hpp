#pragma once

#include <optional>

#include "xgrad/tensor.hpp"

namespace xgrad {

/// A height/width pair that also accepts a single int for both: `3` or `{1, 3}`.
struct Size2 {
    int h = 1;
    int w = 1;
    Size2(int both = 1) : h(both), w(both) {}  // NOLINT: an int means "both"
    Size2(int h_, int w_) : h(h_), w(w_) {}
};

/// How a convolution or pooling window meets the border.
enum class Padding {
    /// No padding: out = floor((H - dilated kernel) / stride) + 1.
    valid,
    /// TensorFlow's SAME: out = ceil(H / stride); the padding needed is split in two and the
    /// extra row/column, when it is odd, goes to the bottom/right.
    same,
    /// The explicit amounts of a PadSpec.
    explicit_,
};

/// Padding as `Padding::same`, `Padding::valid`, one int for every side, or
/// `{top, bottom, left, right}`.
struct PadSpec {
    Padding mode = Padding::valid;
    int top = 0, bottom = 0, left = 0, right = 0;
    PadSpec(Padding m = Padding::valid) : mode(m) {}  // NOLINT: implicit on purpose
    PadSpec(int all) : mode(Padding::explicit_), top(all), bottom(all), left(all), right(all) {}  // NOLINT
    PadSpec(int t, int b, int l, int r) : mode(Padding::explicit_), top(t), bottom(b), left(l), right(r) {}
};

/// Which rule computes a convolution's input gradient. Both give the same numbers (up to the
/// order of float sums); they differ in cost.
enum class ConvBackward {
    /// dcols = dY · Wᵀ, scattered back into the input (overlapping windows add up).
    col2img,
    /// dY dilated by the stride and padded, convolved with W flipped in H and W with its
    /// input and output channels swapped.
    flipped,
    /// The one measured faster for the convolution and its precision: flipped at stride 1 with
    /// padding within the kernel for bf16 products with 16 or more input and output channels
    /// (conv B in bf16 at 2 threads: dX 0.94-1.14 ms against 1.18-1.32) and for float32 convolutions that
    /// Winograd serves (set_winograd_convolutions; conv B's dX 1.42 ms against 1.97), col2img
    /// everywhere else.
    automatic,
};

/// The variant conv2d uses when its options name none (initially ConvBackward::automatic).
void set_default_conv_backward(ConvBackward variant);
ConvBackward default_conv_backward();

/// Winograd's minimal filtering for the float32 convolutions it serves: stride 1 or 2,
/// undilated, one group, 16 or more input channels and filters, kernels of 2x2 and up where
/// it cuts the products by 1.4x (3x3, 5x5, 7x7, 3x3 at stride 2; not 1xK), any padding: the
/// forward pass, both input-gradient variants and the weight gradient. A 3x3's 2x2 block of
/// outputs takes 16 products per channel pair instead of 36; the results differ from the
/// direct sum's by float32 rounding only (measured smaller), and a call whose results or sums
/// are not all finite is recomputed the direct way, so NaN and infinities land where the
/// definition puts them. float64 and bf16 products never use it. On by default; off, every
/// convolution runs the direct kernels of earlier versions, bit for bit.
void set_winograd_convolutions(bool enabled);
bool winograd_convolutions();

struct Conv2dOptions {
    Size2 stride = 1;
    Size2 dilation = 1;
    PadSpec padding = Padding::valid;
    /// Input and output channels are split into this many groups; groups == C is depthwise.
    int groups = 1;
    /// The input-gradient variant; unset means default_conv_backward().
    std::optional<ConvBackward> backward{};
};

/// 2-D convolution (cross-correlation, as in every DL library), NHWC:
/// x [N, H, W, C] and w [KH, KW, C / groups, F] -> [N, OH, OW, F].
/// `xgrad::conv2d(x, w, {.stride = 2, .padding = xgrad::Padding::same})`. Empty batches,
/// channels and filters are legal, as in PyTorch: C = 0 gives the bias alone, F = 0 an empty
/// output. Throws ShapeError (ranks, channels, a kernel larger than a valid input) and ValueError
/// (stride, dilation or groups below 1, negative padding, groups not dividing C or F),
/// naming every shape.
template <class T>
basic_tensor<T> conv2d(const basic_tensor<T>& x, const basic_tensor<T>& w, const Conv2dOptions& options = {});
/// The same, plus a bias b [F] added to every output position.
template <class T>
basic_tensor<T> conv2d(const basic_tensor<T>& x, const basic_tensor<T>& w, const basic_tensor<T>& b,
                       const Conv2dOptions& options = {});

/// relu(conv2d(x, w[, b])) as one op: the bias and relu are applied to each block of output
/// while the convolution's pass has it in cache, and the rule masks dL/dy once before the
/// convolution's gradients. The same numbers as the two ops (nn::Conv2D with
/// Activation::relu uses it). `xgrad::conv2d_relu(x, w, b, {.padding = xgrad::Padding::same})`.
template <class T>
basic_tensor<T> conv2d_relu(const basic_tensor<T>& x, const basic_tensor<T>& w, const Conv2dOptions& options = {});
template <class T>
basic_tensor<T> conv2d_relu(const basic_tensor<T>& x, const basic_tensor<T>& w, const basic_tensor<T>& b,
                            const Conv2dOptions& options = {});

/// Options of conv_transpose2d: those of the convolution it transposes (stride, dilation,
/// padding, groups, and the input-gradient variant that computes its forward pass), plus
/// output_padding.
struct ConvTranspose2dOptions {
    Size2 stride = 1;
    Size2 dilation = 1;
    /// The padding of the convolution this op transposes: explicit amounts are cropped from the
    /// output's border (PyTorch's `padding`); Padding::same gives out = in · stride
    /// (TensorFlow's conv2d_transpose with SAME); Padding::valid crops nothing.
    PadSpec padding = Padding::valid;
    /// Rows (columns) added at the bottom (right) of the output, which receive only the bias;
    /// it tells apart the input sizes that a strided convolution maps to the same output.
    /// Must be below the stride. Deliberate difference from PyTorch, which also allows values
    /// below the dilation: here output_padding >= stride is refused, and with Padding::same it
    /// must be 0.
    Size2 output_padding = 0;
    int groups = 1;
    /// The variant of the conv's input gradient that computes the forward pass; unset means
    /// default_conv_backward().
    std::optional<ConvBackward> backward{};
};

/// Transposed 2-D convolution ("deconvolution"), NHWC: x [N, H, W, C] and
/// w [KH, KW, F / groups, C] -> [N, OH, OW, F] with, per axis,
/// OH = (H - 1)·stride - pad_top - pad_bottom + dilation·(KH - 1) + 1 + output_padding
/// (OH = H·stride with Padding::same). It is the adjoint of conv2d with the same options
/// mapping F channels to C: ⟨conv2d(z, w), x⟩ = ⟨z, conv_transpose2d(x, w)⟩; w is that
/// convolution's weight, so PyTorch's ConvTranspose2d weight [C, F / groups, KH, KW] loads
/// permuted (2, 3, 1, 0), as a Conv2d weight does. Computed by conv2d_input_grad, whose
/// rules make it differentiable to any order.
/// `xgrad::conv_transpose2d(z, w, b, {.stride = 2, .padding = 1, .output_padding = 1})`.
/// Throws ShapeError (ranks, channels, an empty spatial input, an output smaller than one
/// pixel) and ValueError (stride, dilation or groups below 1, negative padding,
/// output_padding not below the stride), naming every shape.
template <class T>
basic_tensor<T> conv_transpose2d(const basic_tensor<T>& x, const basic_tensor<T>& w,
                                 const ConvTranspose2dOptions& options = {});
/// The same, plus a bias b [F] added to every output position.
template <class T>
basic_tensor<T> conv_transpose2d(const basic_tensor<T>& x, const basic_tensor<T>& w, const basic_tensor<T>& b,
                                 const ConvTranspose2dOptions& options = {});

/// The gradient of conv2d with respect to its input, as an op: dx [N, H, W, C] = the
/// transposed convolution of gy [N, OH, OW, F] with w, for an input of shape `x_shape` and the
/// same options (options.backward chooses the variant). Linear in gy and in w; its own
/// gradients are conv2d and conv2d_weight_grad, so second derivatives pass through it.
/// Throws ShapeError when gy is not the output shape of such a convolution.
template <class T>
basic_tensor<T> conv2d_input_grad(const basic_tensor<T>& gy, const basic_tensor<T>& w, const Shape& x_shape,
                                  const Conv2dOptions& options = {});
/// The gradient of conv2d with respect to its weights, as an op: dw [KH, KW, C / groups, F]
/// (shape `w_shape`) from x and gy. Bilinear in x and gy; its own gradients are
/// conv2d_input_grad and conv2d. Throws ShapeError when gy does not match.
template <class T>
basic_tensor<T> conv2d_weight_grad(const basic_tensor<T>& x, const basic_tensor<T>& gy, const Shape& w_shape,
                                   const Conv2dOptions& options = {});

}  // namespace xgrad
