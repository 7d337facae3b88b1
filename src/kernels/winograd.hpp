#pragma once

// Winograd's minimal filtering (Lavin and Gray, 2016) for float32 stride-1, undilated,
// ungrouped convolutions with 16+ channels and filters: each 2x2 block of outputs (a tile)
// comes from its input window through F(2x2, 3x3), 16 products instead of 36, as
//     Y = Aᵀ [ (G w Gᵀ) ⊙ (Bᵀ d B) ] A,
// the channel sum inside ⊙ one GEMM per element of the transform. A kernel larger than 3x3 is
// a grid of sub-kernels of at most 3x3 taps, those cut short by its edge through F(2, 2) or
// F(2, 1) along that axis (a 5x5: 49 products per tile instead of 100; used where the
// products drop by 1.5 at least: 2x2 and up, not 1xK). The two gradients are the transposes
// of the same bilinear map:
//     dW = Gᵀ [ Σ_tiles (A dY Aᵀ) ⊙ (Bᵀ d B) ] G,    dX = Σ_tiles B [ (A dY Aᵀ) ⊙ (G w Gᵀ) ] Bᵀ
// (each tile's dX added into its window; the flipped input gradient is instead the forward
// of dY). On finite numbers the results differ from the direct sum's by float32 rounding
// (measured smaller: shorter sums per GEMM); infinities and NaN would not reach the same
// outputs as in the direct sum (inf - inf inside a transform; a NaN spreads over a tile), so
// a call that meets a non-finite result returns false and the caller computes the direct way.

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

/// dw [KH, KW, C, F] += the weight gradient; false (dw unchanged) where a sum is not finite.
template <class T>
bool conv2d_backward_weight_winograd(const T* x, const T* gy, const ConvGeometry& g, T* dw);

/// dx [N, H, W, C] = the input gradient (the transposed map: each tile's window added into
/// dx, threads taking whole images and zeroing each just before its first tile, while it is
/// still in cache); false where a result is not finite, dx then holding part of it.
template <class T>
bool conv2d_backward_input_winograd(const T* gy, const T* w, const ConvGeometry& g, T* dx);

}  // namespace xgrad::kernels
