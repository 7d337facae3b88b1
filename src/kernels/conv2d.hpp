#pragma once

// Convolution kernels on raw NHWC buffers: no Tensor, no tape. x [N, H, W, C],
// w [KH, KW, C / groups, F], y [N, OH, OW, F]. Padding is implicit (out-of-range reads are
// zero): no padded copy of the whole x is made, only one image at a time per thread by the
// direct forward pass of a padded conv.

#include <cstddef>
#include <cstdint>

#include "kernels/buffer.hpp"
#include "kernels/pool2d.hpp"

namespace xgrad::kernels {

struct ConvGeometry {
    std::size_t n, h, w, c;        // input
    std::size_t kh, kw, f;         // kernel and output channels
    std::size_t groups;
    std::size_t sh, sw, dh, dw;    // stride, dilation
    std::size_t pt, pb, pl, pr;    // padding: top, bottom, left, right
    std::size_t oh, ow;            // output

    std::size_t cg() const { return c / groups; }   // input channels per group
    std::size_t fg() const { return f / groups; }   // output channels per group
    std::size_t rows() const { return n * oh * ow; }           // rows of the img2col matrix
    std::size_t patch() const { return kh * kw * cg(); }       // its columns, per group
    // 1x1, stride 1, no padding, one group: x itself is the img2col matrix.
    bool pointwise() const {
        return kh == 1 && kw == 1 && sh == 1 && sw == 1 && pt + pb + pl + pr == 0 && groups == 1;
    }
    // One input channel (a first layer on grey images): see direct_single_channel().
    bool single_channel() const { return c == 1 && !pointwise(); }
    // Up to four input channels, one group (a first layer on grey or colour images): the
    // forward pass is a direct loop (conv2d_forward_few_channels).
    bool few_channels() const { return c <= 4 && groups == 1 && !pointwise(); }
    // No products at all: an empty batch, no input channels (each output sums nothing) or no
    // filters. The kernels handle it before any path (whose pointers would be null).
    bool no_products() const { return n == 0 || c == 0 || f == 0; }
};

// cols [N·OH·OW, KH·KW·Cg] for one group: row (n, oy, ox), column (ky, kx, c).
template <class T>
void img2col(const T* x, const ConvGeometry& g, std::size_t group, T* cols);

// dx [N, H, W, C] += the columns of one group scattered back to their pixels; positions in
// the padding are dropped.
template <class T>
void col2img(const T* cols, const ConvGeometry& g, std::size_t group, T* dx);

// bf16 (float only): the products take bf16 operands (rounded to nearest even) and sum in
// float32 (xgrad/precision.hpp): the batch-split and direct paths on a CPU with bf16 kernels
// pack their operands to bf16 (kernels/bf16.hpp); every other path, and the portable level,
// runs the float32 kernels on rounded copies of the operands.

// What the forward pass does to each block of its output while the block is still in cache:
// add the bias b [F] (none when null), then apply relu (NaN passes, as relu()).
template <class T>
struct Epilogue {
    const T* bias = nullptr;
    bool relu = false;
};

// y = conv(x, w), finished by the epilogue (through Winograd, winograd.hpp, where winograd()
// serves the geometry, outside bf16 products). With keep_cols, `cols` receives the img2col matrix
// of the paths that build one for the whole batch (each group's, one after the other), for the
// weight gradient; it is left empty for the others, whose weight gradient reads x (the
// batch-split kernels rebuild img2col per chunk). Without keep_cols (inference), `cols` stays
// empty and the batch-split path builds each chunk's columns in a per-thread buffer.
template <class T>
void conv2d_forward(const T* x, const T* w, Epilogue<T> epilogue, const ConvGeometry& g, T* y, Buffer<T>& cols,
                    bool keep_cols = true, bool bf16 = false);

// y = max_pool2d(conv(x, w) + b) over `pool` (a geometry on the convolution's output), then
// relu when asked: relu_max_pool2d's numbers, argmax included (not written when null). A
// 2x2, stride-2, unpadded pool after a few-channel or a direct convolution is taken line pair
// by line pair while the lines are in cache, after a Winograd one (winograd.hpp) tile by tile,
// and the convolution's output is never stored; any other computes the whole output first.
// bias may be null.
template <class T>
void conv2d_forward_max_pool(const T* x, const T* w, const T* bias, bool relu, const ConvGeometry& g,
                             const PoolGeometry& pool, T* y, std::int32_t* argmax, bool bf16 = false);

// The img2col columns conv2d_forward leaves in `cols` for the same x (empty where it leaves
// none): for a weight gradient computed without the forward pass.
template <class T>
void conv2d_columns(const T* x, const ConvGeometry& g, Buffer<T>& cols);
// dw [KH·KW·Cg, F] += colsᵀ · dY per group, with cols as conv2d_forward left them (Winograd's
// transposed map where it serves the geometry, outside bf16 products).
template <class T>
void conv2d_backward_weight(const T* x, const Buffer<T>& cols, const T* gy, const ConvGeometry& g, T* dw,
                            bool bf16 = false);


// dx = dY · Wᵀ per group, scattered back with col2img (with 16+ channels and libxsmm, each
// tap's block is added straight into dx, without the dcols matrix: at stride 1, and at larger
// strides in float32 and float64, a class of input positions at a time); float32 geometries
// that Winograd serves take its transposed map instead, few-channel 3x3 ones at stride 1 a
// gather per input pixel. dx's contents are not read: every path writes or first zeroes it.
template <class T>
void conv2d_backward_input_col2img(const T* gy, const T* w, const ConvGeometry& g, T* dx, bool bf16 = false);

// dx = conv(dY dilated by the stride and padded, W flipped in H and W with C and F swapped);
// dx's contents are not read.
template <class T>
void conv2d_backward_input_flipped(const T* gy, const T* w, const ConvGeometry& g, T* dx, bool bf16 = false);

// Whether the flipped input gradient beats col2img here (ConvBackward::automatic): with bf16
// products at stride 1 with padding within the kernel, where it is the direct forward of dY
// (float32: never, see conv2d.cpp).
bool flipped_is_faster(const ConvGeometry& g, bool bf16);

}  // namespace xgrad::kernels
