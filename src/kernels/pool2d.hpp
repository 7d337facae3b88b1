#pragma once

// Pooling kernels on raw NHWC buffers: x [N, H, W, C] -> y [N, OH, OW, C]. No Tensor, no tape.

#include <cstddef>
#include <cstdint>

namespace xgrad::kernels {

struct PoolGeometry {
    std::size_t n, h, w, c;
    std::size_t kh, kw, sh, sw, ph, pw;  // kernel, stride, padding (both sides)
    std::size_t oh, ow;
};

// y = the max of each window, then relu(y) when asked (relu and max commute: the same
// numbers as pooling relu(x), NaN included); argmax[o] = iy·W + ix of the first maximum
// (row-major), not written when argmax is null (inference).
template <class T>
void max_pool2d_forward(const T* x, const PoolGeometry& g, T* y, std::int32_t* argmax, bool relu = false);

// One output line of a 2x2, stride-2, unpadded max pool (the usual one) from the two input
// rows r0 (image row iy) and r1 (row iy + 1) of W pixels of C channels, wherever they are (a
// convolution's lines still in cache): y [W / 2, C], argmax as max_pool2d_forward writes it
// (not written when null), the same numbers.
template <class T>
void max_pool2x2_line(const T* r0, const T* r1, std::size_t w, std::size_t c, std::size_t iy, bool relu, T* y,
                      std::int32_t* argmax);

// One window of a 2x2, stride-2, unpadded max pool: pixels (iy, ix) and (iy, ix + 1) at r0,
// (iy + 1, ix) and (iy + 1, ix + 1) at r1, C channels each, on an input W wide; pos = iy·W + ix.
// y [C] and argmax [C] (not written when null) as max_pool2d_forward writes them.
template <class T>
void max_pool2x2_window(const T* r0, const T* r1, std::size_t c, std::int32_t pos, std::int32_t w, bool relu, T* y,
                        std::int32_t* argmax);

// dx [N, H, W, C] = gy routed to the argmax of each window (dx's previous contents are
// ignored: every element is written).
template <class T>
void max_pool2d_backward(const T* gy, const std::int32_t* argmax, const PoolGeometry& g, T* dx);

// y [N, OH, OW, C] = x at each window's argmax (the adjoint of max_pool2d_backward).
template <class T>
void max_pool2d_gather(const T* x, const std::int32_t* argmax, const PoolGeometry& g, T* y);
// y = the mean of each window, over kh·kw (count_include_pad) or its real pixels.
template <class T>
void avg_pool2d_forward(const T* x, const PoolGeometry& g, bool count_include_pad, T* y);

// dx += gy spread evenly over the window that produced it.
template <class T>
void avg_pool2d_backward(const T* gy, const PoolGeometry& g, bool count_include_pad, T* dx);

}  // namespace xgrad::kernels
