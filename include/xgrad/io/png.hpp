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

/// Reads a PNG file (any bit depth, color type and interlacing libpng reads) as [H, W, C] with
/// values in [0, 1]. `channels` 0 keeps the file's (1 gray, 2 gray + alpha, 3 RGB, 4 RGBA);
/// 1 or 3 converts and drops alpha by compositing onto black; 2 or 4 adds an opaque alpha.
/// 8-bit files give k / 255 exactly (what save_png wrote reads back unchanged); 16-bit files
/// are read as linear values k / 65535. Throws ValueError for another channel count, IoError
/// naming the file for a missing, damaged or non-PNG file and for one over 2^26 pixels.
/// `auto x = xgrad::io::load_png("digit.png", 1);  // [28, 28, 1]`
xt::xarray<float> load_png(const std::string& path, std::size_t channels = 0);

/// Tiles images [N, H, W, C] into one image of `columns` per row, separated and framed by
/// `gap` pixels of `background`: [rows·(H + gap) + gap, columns·(W + gap) + gap, C].
/// Throws ValueError for a shape other than [N, H, W, C] or zero columns.
xt::xarray<float> image_grid(const xt::xarray<float>& images, std::size_t columns, std::size_t gap = 1,
                             float background = 1.0f);

}  // namespace xgrad::io
