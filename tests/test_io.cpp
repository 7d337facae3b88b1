#include <png.h>
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <xtensor/xview.hpp>

#include <catch2/catch.hpp>

#include "helpers.hpp"
#include "xgrad/xgrad.hpp"

using xgrad::Shape;
using Catch::Matchers::Contains;
namespace io = xgrad::io;

namespace {

using xgrad_test::temp_path;

std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

void spit(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

bool have_numpy() { return std::system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0; }

}  // namespace

TEST_CASE("npz: arrays of every supported dtype and rank round-trip", "[io]") {
    const auto path = temp_path("round.npz");
    xt::xarray<float> m = {{1.5f, -2}, {3, 4}};
    xt::xarray<double> scalar(2.25);
    io::write_npz(path, {{"m", io::to_npy(m)}, {"s", io::to_npy(scalar)}, {"b", io::bytes_to_npy("hello")},
                         {"v", io::to_npy(xt::xarray<float>{7})}});
    const auto back = io::read_npz(path);
    REQUIRE(back.size() == 4);
    CHECK(back[0].first == "m");
    CHECK(xgrad_test::array_diff(io::npy_to_float(back[0].second, "m"), m) == "");
    CHECK(back[1].second.shape == Shape{});
    const double s = io::npy_to_double(back[1].second, "s")();
    CHECK(s == 2.25);
    CHECK(io::npy_to_bytes(back[2].second, "b") == "hello");
    CHECK(back[3].second.shape == Shape{1});
    REQUIRE_THROWS_WITH(io::npy_to_bytes(back[0].second, "m"), Contains("m has dtype <f4"));
}

TEST_CASE("npz: truncated, corrupt and foreign files are IoErrors naming the file", "[io][errors]") {
    const auto path = temp_path("good.npz");
    io::write_npz(path, {{"w", io::to_npy(xt::xarray<float>(xt::ones<float>({8, 8})))}});
    const std::string good = slurp(path);
    const auto bad = temp_path("bad.npz");
    spit(bad, good.substr(0, good.size() / 2));
    REQUIRE_THROWS_WITH(io::read_npz(bad), Contains(bad));
    std::string flipped = good;
    flipped[good.size() / 2] ^= 0x55;  // inside the array data
    spit(bad, flipped);
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION  // the fuzzing build skips CRCs on purpose
    REQUIRE_THROWS_WITH(io::read_npz(bad), Contains("CRC mismatch"));
#endif
    spit(bad, "this is not a zip archive at all, just text that goes on for a while");
    REQUIRE_THROWS_WITH(io::read_npz(bad), Contains("not a zip archive"));
    spit(bad, "");
    REQUIRE_THROWS_AS(io::read_npz(bad), xgrad::IoError);
    REQUIRE_THROWS_WITH(io::read_npz(temp_path("does_not_exist.npz")), Contains("cannot open"));
}

TEST_CASE("npz: a failed save keeps the previous file", "[io][errors]") {
    const auto path = temp_path("keep.npz");
    io::write_npz(path, {{"a", io::to_npy(xt::xarray<float>{1, 2})}});
    const std::string before = slurp(path);
    io::NpyArray broken{Shape{3}, "<f4", {0, 0, 0, 0}};  // 4 bytes for 3 floats
    REQUIRE_THROWS_AS(io::write_npz(path, {{"a", broken}}), xgrad::IoError);
    CHECK(slurp(path) == before);
    REQUIRE_THROWS_AS(io::write_npz("/nonexistent_dir/x.npz", {}), xgrad::IoError);
}

TEST_CASE("npz: numpy.load opens our files and we open numpy's (stored and deflated)", "[io]") {
    if (!have_numpy()) {
        WARN("python3-numpy is not installed: numpy compatibility not checked");
        return;
    }
    const auto ours = temp_path("ours.npz");
    io::write_npz(ours, {{"conv1.weight", io::to_npy(xt::xarray<float>{{1, 2, 3}, {4, 5, 6}})},
                         {"steps", io::to_npy(xt::xarray<double>(3.0))}});
    const std::string check = "/usr/bin/python3 -c \"import numpy as np; d = np.load('" + ours +
                              "'); w = d['conv1.weight']; assert w.dtype == np.float32 and w.shape == (2, 3) and "
                              "w[1, 2] == 6; assert d['steps'].shape == () and d['steps'] == 3\"";
    CHECK(std::system(check.c_str()) == 0);
    const auto theirs = temp_path("theirs.npz");
    const std::string make = "/usr/bin/python3 -c \"import numpy as np; np.savez_compressed('" + theirs +
                             "', a=np.arange(6, dtype=np.float32).reshape(2, 3), b=np.array([0.5, 1.5]))\"";
    REQUIRE(std::system(make.c_str()) == 0);
    const auto back = io::read_npz(theirs);
    REQUIRE(back.size() == 2);
    CHECK(xgrad_test::array_diff(io::npy_to_float(back[0].second, "a"), xt::xarray<float>{{0, 1, 2}, {3, 4, 5}}) == "");
    CHECK(xgrad_test::array_diff(io::npy_to_double(back[1].second, "b"), xt::xarray<double>{0.5, 1.5}) == "");
}

namespace {

void put_le(std::string& s, std::uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// An .npy file with a header our writer never makes (numpy's other dtypes, Fortran order).
std::string npy_file(const std::string& descr, bool fortran, const std::string& shape, const std::string& data) {
    std::string header = "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") +
                         ", 'shape': " + shape + ", }";
    while ((10 + header.size() + 1) % 64 != 0) header.push_back(' ');
    header.push_back('\n');
    std::string s("\x93NUMPY\x01\x00", 8);
    put_le(s, header.size(), 2);
    return s + header + data;
}

// A stored (uncompressed) zip holding `npy` as a.npy, with its CRC, as numpy.savez writes.
std::string zip_with(const std::string& npy) {
    const std::string name = "a.npy";
    const auto crc = crc32(0, reinterpret_cast<const Bytef*>(npy.data()), static_cast<uInt>(npy.size()));
    std::string z("PK\x03\x04", 4);
    put_le(z, 20, 2), put_le(z, 0, 2), put_le(z, 0, 2), put_le(z, 0, 4), put_le(z, crc, 4);
    put_le(z, npy.size(), 4), put_le(z, npy.size(), 4), put_le(z, name.size(), 2), put_le(z, 0, 2);
    z += name + npy;
    const std::size_t central = z.size();
    z += std::string("PK\x01\x02", 4);
    put_le(z, 20, 2), put_le(z, 20, 2), put_le(z, 0, 2), put_le(z, 0, 2), put_le(z, 0, 4), put_le(z, crc, 4);
    put_le(z, npy.size(), 4), put_le(z, npy.size(), 4), put_le(z, name.size(), 2), put_le(z, 0, 2), put_le(z, 0, 2);
    put_le(z, 0, 2), put_le(z, 0, 2), put_le(z, 0, 4), put_le(z, 0, 4);
    z += name;
    const std::size_t central_size = z.size() - central;
    z += std::string("PK\x05\x06", 4);
    put_le(z, 0, 2), put_le(z, 0, 2), put_le(z, 1, 2), put_le(z, 1, 2), put_le(z, central_size, 4);
    put_le(z, central, 4), put_le(z, 0, 2);
    return z;
}

xt::xarray<float> read_one(const std::string& zip, const std::string& file) {
    std::ofstream(file, std::ios::binary) << zip;
    const auto archive = io::read_npz(file);
    REQUIRE(archive.size() == 1);
    return io::npy_to_float(archive[0].second, "a");
}

template <class V>
std::string raw(std::initializer_list<V> values) {
    std::string s;
    for (V v : values) s.append(reinterpret_cast<const char*>(&v), sizeof v);
    return s;
}

}  // namespace

TEST_CASE("npz: Fortran-ordered arrays (np.savez(w.T)) load in row-major order; <i4 and <i8 arrays load as floats",
          "[io]") {
    const std::string file = (std::filesystem::temp_directory_path() / "xgrad_fortran.npz").string();
    // [[1, 2, 3], [4, 5, 6]] in column-major order is 1 4 2 5 3 6
    CHECK(xgrad_test::array_diff(read_one(zip_with(npy_file("<f4", true, "(2, 3)", raw<float>({1, 4, 2, 5, 3, 6}))), file),
                                 xt::xarray<float>{{1, 2, 3}, {4, 5, 6}}) == "");
    CHECK(xgrad_test::array_diff(read_one(zip_with(npy_file("<f4", false, "(2, 3)", raw<float>({1, 4, 2, 5, 3, 6}))), file),
                                 xt::xarray<float>{{1, 4, 2}, {5, 3, 6}}) == "");
    // three axes: element (i, j, k) of a [2, 2, 2] at column-major offset i + 2j + 4k
    const auto cube = read_one(zip_with(npy_file("<f8", true, "(2, 2, 2)", raw<double>({0, 1, 2, 3, 4, 5, 6, 7}))), file);
    for (std::size_t i = 0; i < 2; ++i)
        for (std::size_t j = 0; j < 2; ++j)
            for (std::size_t k = 0; k < 2; ++k) CHECK(cube(i, j, k) == static_cast<float>(i + 2 * j + 4 * k));
    CHECK(xgrad_test::array_diff(read_one(zip_with(npy_file("<i4", false, "(3,)", raw<std::int32_t>({-7, 0, 123456}))), file),
                                 xt::xarray<float>{-7, 0, 123456}) == "");
    CHECK(xgrad_test::array_diff(read_one(zip_with(npy_file("<i8", true, "(2, 2)", raw<std::int64_t>({1, 3, 2, 4}))), file),
                                 xt::xarray<float>{{1, 2}, {3, 4}}) == "");
    // a bad fortran_order value and an unknown dtype are still refused, naming the dtype
    std::string bad = npy_file("<f4", false, "(1,)", raw<float>({1}));
    bad.replace(bad.find("False"), 5, "Maybe");
    REQUIRE_THROWS_WITH(read_one(zip_with(bad), file), Contains("fortran_order"));
    REQUIRE_THROWS_WITH(read_one(zip_with(npy_file("<u2", false, "(1,)", std::string(2, '\0'))), file),
                        Contains("<u2"));
    std::filesystem::remove(file);
}

TEST_CASE("save_png: a valid 8-bit PNG with the clamped pixels; image_grid tiles a batch", "[io][png]") {
    const std::string path = "/tmp/xgrad_test_png.png";
    xt::xarray<float> img = xt::zeros<float>({2, 3, 1});
    img(0, 1, 0) = 1.0f;
    img(1, 0, 0) = 0.5f;
    img(1, 2, 0) = 7.0f;   // clamped to 255
    img(0, 2, 0) = -1.0f;  // clamped to 0
    xgrad::io::save_png(path, img);
    std::ifstream in(path, std::ios::binary);
    const std::string png((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    REQUIRE(png.size() > 33);
    CHECK(png.substr(0, 8) == std::string("\x89PNG\r\n\x1a\n", 8));
    CHECK(png.substr(12, 4) == "IHDR");
    auto u32 = [&](std::size_t at) {
        return (std::uint32_t(std::uint8_t(png[at])) << 24) | (std::uint32_t(std::uint8_t(png[at + 1])) << 16) |
               (std::uint32_t(std::uint8_t(png[at + 2])) << 8) | std::uint32_t(std::uint8_t(png[at + 3]));
    };
    CHECK(u32(16) == 3);  // width
    CHECK(u32(20) == 2);  // height
    CHECK(png[24] == 8);  // bit depth
    CHECK(png[25] == 0);  // grayscale
    // IHDR's CRC, then the IDAT chunk: inflate it back to the filtered rows
    CHECK(u32(29) == crc32(0, reinterpret_cast<const Bytef*>(png.data() + 12), 17));
    const std::size_t idat = 33;
    CHECK(png.substr(idat + 4, 4) == "IDAT");
    std::vector<unsigned char> rows(8);
    uLongf size = rows.size();
    REQUIRE(uncompress(rows.data(), &size, reinterpret_cast<const Bytef*>(png.data() + idat + 8), u32(idat)) == Z_OK);
    CHECK(size == 8);
    CHECK(rows == std::vector<unsigned char>{0, 0, 255, 0, 0, 128, 0, 255});
    CHECK(png.substr(png.size() - 8, 4) == "IEND");

    REQUIRE_THROWS_AS(xgrad::io::save_png(path, xt::zeros<float>({2, 3, 2})), xgrad::ValueError);
    REQUIRE_THROWS_AS(xgrad::io::save_png(path, xt::zeros<float>({0, 3, 1})), xgrad::ValueError);
    REQUIRE_THROWS_AS(xgrad::io::save_png("/nonexistent-dir/x.png", img), xgrad::IoError);

    const xt::xarray<float> batch = xt::zeros<float>({5, 2, 3, 1});
    const auto grid = xgrad::io::image_grid(batch, 2);
    CHECK(grid.shape() == std::vector<std::size_t>{3 * 3 + 1, 2 * 4 + 1, 1});
    CHECK(grid(0, 0, 0) == 1.0f);  // the frame
    CHECK(grid(1, 1, 0) == 0.0f);  // the first image
    CHECK(grid(7, 1, 0) == 0.0f);  // the fifth, first column of the third row
    CHECK(grid(7, 5, 0) == 1.0f);  // no sixth image
    REQUIRE_THROWS_AS(xgrad::io::image_grid(batch, 0), xgrad::ValueError);
}

namespace {

// Writes pixels (row-major, `format`'s channels, 8 or 16 bits) with libpng's own writer.
template <class P>
void write_png_with_libpng(const std::string& path, std::uint32_t w, std::uint32_t h, png_uint_32 format,
                           const std::vector<P>& pixels, const std::vector<std::uint8_t>& colormap = {}) {
    png_image image{};
    image.version = PNG_IMAGE_VERSION;
    image.width = w;
    image.height = h;
    image.format = format;
    image.colormap_entries = static_cast<png_uint_32>(colormap.size() / 3);
    REQUIRE(png_image_write_to_file(&image, path.c_str(), 0, pixels.data(), 0,
                                    colormap.empty() ? nullptr : colormap.data()));
}

}  // namespace

TEST_CASE("load_png: what save_png and libpng write reads back; channels convert; bad files are IoErrors",
          "[io][png]") {
    const std::string path = "/tmp/xgrad_test_load.png";
    // save_png's 8-bit gray and RGB: k / 255 exactly
    xt::xarray<float> rgb = xt::zeros<float>({3, 4, 3});
    for (std::size_t i = 0; i < rgb.size(); ++i) rgb.data()[i] = static_cast<float>(i * 7 % 256) / 255.0f;
    xgrad::io::save_png(path, rgb);
    CHECK(xgrad_test::array_diff(xgrad::io::load_png(path), rgb, 0, 0) == "");
    const xt::xarray<float> gray = xt::view(rgb, xt::all(), xt::all(), xt::range(0, 1));
    xgrad::io::save_png(path, gray);
    CHECK(xgrad_test::array_diff(xgrad::io::load_png(path), gray, 0, 0) == "");
    const auto as_rgb = xgrad::io::load_png(path, 3);  // gray to RGB repeats the value
    CHECK(as_rgb.shape() == std::vector<std::size_t>{3, 4, 3});
    CHECK(as_rgb(2, 1, 2) == gray(2, 1, 0));
    const auto with_alpha = xgrad::io::load_png(path, 2);
    CHECK(with_alpha(1, 3, 0) == gray(1, 3, 0));
    CHECK(with_alpha(1, 3, 1) == 1.0f);
    // libpng's gray + alpha: kept with channels 0, composited onto black with 1
    write_png_with_libpng<std::uint8_t>(path, 2, 1, PNG_FORMAT_GA, {200, 255, 200, 0});
    CHECK(xgrad_test::array_diff(xgrad::io::load_png(path), xgrad_test::array({1, 2, 2}, {200 / 255.0, 1, 200 / 255.0, 0}),
                                 1e-7) == "");
    const auto flat = xgrad::io::load_png(path, 1);
    CHECK(flat(0, 0, 0) == Approx(200 / 255.0));
    CHECK(flat(0, 1, 0) == 0.0f);
    // 16-bit RGBA, linear: k / 65535
    write_png_with_libpng<std::uint16_t>(path, 1, 2, PNG_FORMAT_RGBA | PNG_FORMAT_FLAG_LINEAR,
                                         {0, 1000, 65535, 65535, 30000, 2, 40000, 65535});
    const auto deep = xgrad::io::load_png(path);
    CHECK(xgrad_test::array_diff(deep, xgrad_test::array({2, 1, 4}, {0, 1000 / 65535.0, 1, 1, 30000 / 65535.0,
                                                                      2 / 65535.0, 40000 / 65535.0, 1}),
                                 1e-7) == "");
    // a palette image
    write_png_with_libpng<std::uint8_t>(path, 3, 1, PNG_FORMAT_RGB | PNG_FORMAT_FLAG_COLORMAP, {1, 0, 1},
                                        {10, 20, 30, 250, 240, 230});
    const auto pal = xgrad::io::load_png(path);
    CHECK(xgrad_test::array_diff(pal, xgrad_test::array({1, 3, 3}, {250, 240, 230, 10, 20, 30, 250, 240, 230}) / 255.0,
                                 1e-7) == "");
    // damaged and foreign files, named
    xgrad::io::save_png(path, rgb);
    std::string bytes;
    {
        std::ifstream in(path, std::ios::binary);
        bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    auto refused = [&](const std::string& content, const std::string& message) {
        std::ofstream(path, std::ios::binary) << content;
        INFO(message);
        REQUIRE_THROWS_AS(xgrad::io::load_png(path), xgrad::IoError);
        REQUIRE_THROWS_WITH(xgrad::io::load_png(path), Contains(message) && Contains(path));
    };
    refused(bytes.substr(0, bytes.size() / 2), "damaged");
    refused(bytes.substr(0, 20), "not a PNG");
    refused("P5 1 1 255 x", "not a PNG");
    refused("", "not a PNG");
    std::string flipped = bytes;
    flipped[40] = static_cast<char>(flipped[40] ^ 0x55);  // inside IDAT
    std::ofstream(path, std::ios::binary) << flipped;
    REQUIRE_THROWS_AS(xgrad::io::load_png(path), xgrad::IoError);
    std::string huge = bytes;  // IHDR claims 65536 x 65536 (CRC fixed): refused before decoding
    for (int k : {16, 20}) huge.replace(static_cast<std::size_t>(k), 4, std::string("\x00\x01\x00\x00", 4));
    const auto crc = crc32(0, reinterpret_cast<const Bytef*>(huge.data() + 12), 17);
    for (int k = 0; k < 4; ++k) huge[static_cast<std::size_t>(29 + k)] = static_cast<char>((crc >> (24 - 8 * k)) & 0xff);
    refused(huge, "at most 2^26");
    REQUIRE_THROWS_WITH(xgrad::io::load_png("/tmp/xgrad_test_missing.png"), Contains("cannot open"));
    REQUIRE_THROWS_AS(xgrad::io::load_png(path, 5), xgrad::ValueError);
    std::remove(path.c_str());
}
