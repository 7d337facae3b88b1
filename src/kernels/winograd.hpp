#pragma once

// Winograd's F(2x2, 3x3) convolution (Lavin and Gray, 2016) for float32 stride-1, undilated,
// ungrouped convolutions with 16+ channels and filters, 3x3 or larger (a larger kernel is a
// grid of 3x3 sub-kernels, used where that still saves 1.5x: 5x5, 6x6, 3x5...): each 2x2 block
// of outputs (a tile) comes from its 4x4 input window in 16 products instead of 36, as
//     Y = Aᵀ [ (G w Gᵀ) ⊙ (Bᵀ d B) ] A,
// the channel sum inside ⊙ one GEMM per element of the 4x4 transform (16 per block of tiles).
// The weight gradient is the transpose of the same bilinear map:
//     dW = Gᵀ [ Σ_tiles (A dY Aᵀ) ⊙ (Bᵀ d B) ] G.
// On finite numbers the results differ from the direct sum's by float32 rounding (measured
// smaller: shorter sums per GEMM); infinities and NaN would not reach the same outputs as in
// the direct sum (inf - inf inside a transform; a NaN spreads over a tile's weight-gradient
// taps), so a call that meets a non-finite output returns false and the caller computes the
// direct way.

#include <cstddef>
#include <cstdint>

#include "kernels/conv2d.hpp"

namespace xgrad::kernels {

/// Whether the Winograd kernels serve this geometry (T = float, enabled, see set_winograd).
template <class T>
bool winograd(const ConvGeometry& g);

/// Turns the Winograd kernels on or off for the whole process (on by default); tests run
/// every convolution path both ways.
void set_winograd(bool enabled);
bool winograd_enabled();

/// A 2x2, stride-2, unpadded max pool over the convolution's output, taken tile by tile (each
/// tile is one window): y [N, OH / 2, OW / 2, F], argmax as max_pool2d_forward writes it (not
/// written when null), relu after the max when asked.
template <class T>
struct WinogradPool {
    T* y;
    std::int32_t* argmax;
    bool relu;
    std::size_t oh, ow;
};

/// y = conv(x, w) finished by the epilogue, or its pool (y unused); false (the outputs then
/// undefined) where an output is not finite, for the caller's direct path.
template <class T>
bool conv2d_forward_winograd(const T* x, const T* w, const Epilogue<T>& e, const ConvGeometry& g, T* y,
                             const WinogradPool<T>* pool = nullptr);

/// dw [3, 3, C, F] += the weight gradient; false (dw unchanged) where a sum is not finite.
template <class T>
bool conv2d_backward_weight_winograd(const T* x, const T* gy, const ConvGeometry& g, T* dw);

}  // namespace xgrad::kernels
