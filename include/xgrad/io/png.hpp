#pragma once

#include <cstddef>
#include <string>

#include <xtensor/xarray.hpp>

namespace xgrad::io {

/// Writes image [H, W, 1] (grayscale) or [H, W, 3] (RGB), values in [0, 1], as an 8-bit PNG
/// (values clamped, NaN written as 0), atomically: a failed write leaves no partial file.
/// `xgrad::io::save_png("digits.png", xgrad::io::image_grid(batch.x.value(), 8))`.
/// Throws ValueError for another shape or an empty image, IoError when the file cannot be
/// written.
void save_png(const std::string& path, const xt::xarray<float>& image);

/// Tiles images [N, H, W, C] into one image of `columns` per row, separated and framed by
/// `gap` pixels of `background`: [rows·(H + gap) + gap, columns·(W + gap) + gap, C].
/// Throws ValueError for a shape other than [N, H, W, C] or zero columns.
xt::xarray<float> image_grid(const xt::xarray<float>& images, std::size_t columns, std::size_t gap = 1,
                             float background = 1.0f);

}  // namespace xgrad::io
