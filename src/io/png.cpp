#include "xgrad/io/png.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include <fmt/format.h>
#include <xtensor/xbuilder.hpp>
#include <png.h>
#include <zlib.h>

#include <fstream>
#include <iterator>
#include <vector>

#include "detail/check.hpp"
#include "xgrad/io/npz.hpp"

namespace xgrad::io {

namespace {

void put_u32(std::string& out, std::uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}

// A chunk: length, type, data, and the CRC-32 of type and data (PNG's big-endian framing).
void put_chunk(std::string& out, const char* type, const std::string& data) {
    put_u32(out, static_cast<std::uint32_t>(data.size()));
    const std::string body = std::string(type, 4) + data;
    out += body;
    put_u32(out, static_cast<std::uint32_t>(
                     crc32(0, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()))));
}

}  // namespace

void save_png(const std::string& path, const xt::xarray<float>& image) {
    const auto& s = image.shape();
    const std::string shape = to_string(Shape(s.begin(), s.end()));
    detail::check_value(s.size() == 3 && (s[2] == 1 || s[2] == 3) && s[0] > 0 && s[1] > 0,
                        "save_png: the image must be [H, W, 1] or [H, W, 3] with H, W > 0, got {}; {}", shape, path);
    detail::check_value(s[0] <= 0x7fffffff && s[1] <= 0x7fffffff / s[2], "save_png: the image {} is too large; {}", shape,
                        path);
    const std::size_t h = s[0], w = s[1], c = s[2], row = w * c;
    // Each row: filter type 0 (none), then one byte per sample.
    std::string raw;
    raw.reserve(h * (row + 1));
    for (std::size_t y = 0; y < h; ++y) {
        raw.push_back('\0');
        for (std::size_t i = 0; i < row; ++i) {
            const float v = image.data()[y * row + i];
            const float clamped = std::isnan(v) ? 0.0f : std::clamp(v, 0.0f, 1.0f);
            raw.push_back(static_cast<char>(static_cast<unsigned char>(std::lround(clamped * 255.0f))));
        }
    }
    uLongf packed_size = compressBound(static_cast<uLong>(raw.size()));
    std::string packed(packed_size, '\0');
    if (compress2(reinterpret_cast<Bytef*>(packed.data()), &packed_size, reinterpret_cast<const Bytef*>(raw.data()),
                  static_cast<uLong>(raw.size()), Z_BEST_COMPRESSION) != Z_OK)
        throw IoError(fmt::format("save_png: zlib could not compress the image {}; {}", shape, path));
    packed.resize(packed_size);
    std::string header;
    put_u32(header, static_cast<std::uint32_t>(w));
    put_u32(header, static_cast<std::uint32_t>(h));
    header += std::string{8, static_cast<char>(c == 1 ? 0 : 2), 0, 0, 0};  // 8 bits, gray or RGB, no interlace
    std::string png("\x89PNG\r\n\x1a\n", 8);
    put_chunk(png, "IHDR", header);
    put_chunk(png, "IDAT", packed);
    put_chunk(png, "IEND", "");
    write_file_atomically(path, png);
}

xt::xarray<float> load_png(const std::string& path, std::size_t channels) {
    detail::check_value(channels <= 4, "load_png: channels must be 0 (the file's), 1, 2, 3 or 4, got {}; {}", channels,
                        path);
    std::ifstream f(path, std::ios::binary);
    if (!f) throw IoError(fmt::format("load_png: cannot open {}", path));
    const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (f.bad()) throw IoError(fmt::format("load_png: reading {} failed", path));
    // libpng's simplified API: it reports errors in image.message, never by longjmp into us.
    png_image image{};
    image.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&image, bytes.data(), bytes.size()))
        throw IoError(fmt::format("load_png: {} is not a PNG libpng can read: {}", path, image.message));
    const bool wide = image.format & PNG_FORMAT_FLAG_LINEAR;  // 16-bit samples in the file
    const std::size_t c = channels ? channels : PNG_IMAGE_SAMPLE_CHANNELS(image.format);
    const std::size_t h = image.height, w = image.width;
    if (h == 0 || w == 0 || h * w > (std::size_t{1} << 26)) {
        png_image_free(&image);
        throw IoError(fmt::format("load_png: {} is {}x{} pixels; at most 2^26 are read", path, w, h));
    }
    static constexpr png_uint_32 formats[] = {0, PNG_FORMAT_GRAY, PNG_FORMAT_GA, PNG_FORMAT_RGB, PNG_FORMAT_RGBA};
    image.format = formats[c] | (wide ? PNG_FORMAT_FLAG_LINEAR : 0u);
    // Zeroed: dropping alpha without a background composites onto the buffer, here black.
    std::vector<std::uint16_t> wide_pixels(wide ? h * w * c : 0);
    std::vector<std::uint8_t> pixels(wide ? 0 : h * w * c);
    void* buffer = wide ? static_cast<void*>(wide_pixels.data()) : static_cast<void*>(pixels.data());
    if (!png_image_finish_read(&image, nullptr, buffer, 0, nullptr))
        throw IoError(fmt::format("load_png: {} is damaged: {}", path, image.message));
    xt::xarray<float> out = xt::xarray<float>::from_shape({h, w, c});
    for (std::size_t i = 0; i < out.size(); ++i)
        out.data()[i] = wide ? static_cast<float>(wide_pixels[i]) / 65535.0f : static_cast<float>(pixels[i]) / 255.0f;
    return out;
}

xt::xarray<float> image_grid(const xt::xarray<float>& images, std::size_t columns, std::size_t gap, float background) {
    const auto& s = images.shape();
    detail::check_value(s.size() == 4 && columns > 0, "image_grid: images must be [N, H, W, C] and columns positive, got "
                                                      "{} and {} columns",
                        to_string(Shape(s.begin(), s.end())), columns);
    const std::size_t n = s[0], h = s[1], w = s[2], c = s[3], cols = std::min(columns, std::max<std::size_t>(n, 1));
    const std::size_t rows = (n + cols - 1) / cols;
    xt::xarray<float> grid = xt::full_like(xt::xarray<float>::from_shape({rows * (h + gap) + gap, cols * (w + gap) + gap, c}),
                                           background);
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t top = gap + i / cols * (h + gap), left = gap + i % cols * (w + gap);
        for (std::size_t y = 0; y < h; ++y)
            std::copy_n(images.data() + ((i * h + y) * w) * c, w * c, grid.data() + ((top + y) * grid.shape()[1] + left) * c);
    }
    return grid;
}

}  // namespace xgrad::io
