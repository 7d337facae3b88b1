#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xbuilder.hpp>

#include "xgrad/data/dataset.hpp"
#include "xgrad/tensor.hpp"

namespace xgrad_test {

// Whole numbers drawn uniformly from [lo, hi], reproducibly from a seed (the random sweeps).
class Picker {
public:
    explicit Picker(std::uint64_t seed) : gen_(seed) {}
    std::size_t operator()(std::size_t lo, std::size_t hi) {
        return std::uniform_int_distribution<std::size_t>(lo, hi)(gen_);
    }

private:
    std::mt19937_64 gen_;
};

// "" when a and b have the same shape and every element agrees within
// atol + rtol·|b|; otherwise both shapes and the first mismatch. Use as
// Whether two arrays hold the same bits, NaN and the sign of zero included.
template <class T>
bool same_bits(const xt::xarray<T>& a, const xt::xarray<T>& b) {
    // (an empty array's data() may be null, which memcmp must not be given)
    return a.shape() == b.shape() && (a.size() == 0 || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

// CHECK(array_diff(actual, expected) == "").
template <class A, class B>
std::string array_diff(const A& actual, const B& expected, double atol = 1e-6, double rtol = 1e-6) {
    const xt::xarray<double> a = xt::cast<double>(actual);
    const xt::xarray<double> b = xt::cast<double>(expected);
    const auto sa = xgrad::to_string(xgrad::Shape(a.shape().begin(), a.shape().end()));
    const auto sb = xgrad::to_string(xgrad::Shape(b.shape().begin(), b.shape().end()));
    if (sa != sb) return fmt::format("shapes differ: actual {}, expected {}", sa, sb);
    for (std::size_t k = 0; k < a.size(); ++k) {
        const double x = a.data()[k], y = b.data()[k];
        if (!(std::abs(x - y) <= atol + rtol * std::abs(y)) && !(std::isnan(x) && std::isnan(y)))
            return fmt::format("shape {}: first mismatch at flat index {}: actual {}, expected {}", sa, k, x, y);
    }
    return "";
}

}  // namespace xgrad_test

namespace xgrad_test {

// A [n, 1] column: xt::xarray's nested braces are ambiguous for one element per row.
inline xt::xarray<double> column(std::initializer_list<double> v) {
    xt::xarray<double> a = xt::adapt(std::vector<double>(v), {v.size(), std::size_t{1}});
    return a;
}

}  // namespace xgrad_test

namespace xgrad_test {

// An array of the given shape holding `values` in row-major order.
inline xt::xarray<double> array(const xgrad::Shape& shape, std::initializer_list<double> values) {
    xt::xarray<double> a = xt::adapt(std::vector<double>(values), std::vector<std::size_t>(shape.begin(), shape.end()));
    return a;
}

}  // namespace xgrad_test

#include "xgrad/ops/conv.hpp"

namespace xgrad_test {

// A convolution geometry and the kernel path it takes.
struct ConvPath {
    const char* name;
    xgrad::Shape x, w;
    xgrad::Conv2dOptions o;
    bool winograd = false;  // float32 3x3 stride-1 convs with 16+ channels: Winograd, or direct
};

// Sets whether float32 convolutions may use Winograd's kernels for the scope's lifetime.
class WinogradScope {
public:
    explicit WinogradScope(bool enabled) : saved_(xgrad::winograd_convolutions()) {
        xgrad::set_winograd_convolutions(enabled);
    }
    ~WinogradScope() { xgrad::set_winograd_convolutions(saved_); }
    WinogradScope(const WinogradScope&) = delete;
    WinogradScope& operator=(const WinogradScope&) = delete;

private:
    bool saved_;
};

// One geometry or more for each path of the conv kernels, float32 and bf16: the few-channel
// direct loop (its register blocks and edges), the direct batch-reduce lines (odd channels,
// an odd number of output pixels, a kernel too wide for the bf16 pair builder), Winograd
// (float32; the loops run each path with it on or off as `winograd` says), strided, img2col per
// chunk, pointwise, grouped.
// Conv2dOptions from a sweep's sizes: stride, dilation, padding {top, bottom, left, right}.
inline xgrad::Conv2dOptions conv_options(std::size_t sh, std::size_t sw, std::size_t dh, std::size_t dw,
                                         std::size_t pt, std::size_t pb, std::size_t pl, std::size_t pr,
                                         std::size_t groups) {
    const auto i = [](std::size_t v) { return static_cast<int>(v); };
    xgrad::Conv2dOptions o;
    o.stride = {i(sh), i(sw)};
    o.dilation = {i(dh), i(dw)};
    o.padding = xgrad::PadSpec{i(pt), i(pb), i(pl), i(pr)};
    o.groups = i(groups);
    return o;
}

inline std::vector<ConvPath> conv_paths() {
    const xgrad::Conv2dOptions same{.padding = xgrad::Padding::same};
    return {
        {"one input channel (W1's first layer)", {3, 12, 20, 1}, {3, 3, 1, 32}, same},
        {"one input channel, strided, dilated", {2, 9, 31, 1}, {3, 2, 1, 16},
         {.stride = {2, 3}, .dilation = 2, .padding = {1, 0, 3, 2}}},
        {"three channels (W2's conv C)", {2, 20, 20, 3}, {3, 3, 3, 16}, same},
        {"one input channel, odd lines and pixels", {2, 9, 11, 1}, {3, 3, 1, 16}, same},
        {"three channels, odd lines and pixels, valid", {2, 9, 13, 3}, {3, 3, 3, 32}, {}},
        {"direct, strided, odd lines", {2, 11, 13, 16}, {3, 3, 16, 16}, {.stride = 2, .padding = xgrad::Padding::same}},
        {"eight channels, img2col per chunk", {2, 20, 20, 8}, {3, 3, 8, 5}, same},
        {"16 channels, direct", {2, 7, 9, 16}, {3, 3, 16, 32}, same},
        {"odd channels and filters, direct", {1, 6, 6, 17}, {3, 3, 17, 19}, same},
        {"direct, an odd number of output pixels", {1, 5, 7, 16}, {3, 3, 16, 16}, same},
        {"Winograd (W1's second layer)", {2, 14, 14, 32}, {3, 3, 32, 64}, same, true},
        {"Winograd, odd channels, filters, lines and pixels", {2, 7, 9, 17}, {3, 3, 17, 19}, same, true},
        {"Winograd, padding wider than the kernel", {1, 5, 6, 16}, {3, 3, 16, 16}, {.padding = {4, 1, 0, 3}}, true},
        {"Winograd, 5x5 (sub-kernels cut short), valid", {3, 9, 8, 16}, {5, 5, 16, 17}, {}, true},
        {"Winograd, 2x4 and odd padding", {2, 6, 7, 16}, {2, 4, 16, 16}, {.padding = {1, 0, 2, 1}}, true},
        {"Winograd, stride 2 (one sub-kernel per phase), odd lines", {2, 11, 10, 16}, {3, 3, 16, 32},
         {.stride = 2, .padding = xgrad::Padding::same}, true},
        {"direct, a kernel 17 wide", {1, 3, 20, 16}, {1, 17, 16, 8}, same},
        {"strided direct (GEMM + col2img)", {2, 9, 9, 16}, {3, 3, 16, 8}, {.stride = 2, .padding = xgrad::Padding::same}},
        {"pointwise", {2, 5, 5, 6}, {1, 1, 6, 10}, {}},
        {"grouped", {2, 6, 6, 4}, {3, 3, 2, 6}, {.padding = xgrad::Padding::same, .groups = 2}},
    };
}

// A file name under /tmp for a test's scratch file.
inline std::string temp_path(const std::string& name) { return "/tmp/xgrad_test_" + name; }

// The samples of an in-memory dataset as a Source, read one at a time (make_source).
inline std::shared_ptr<xgrad::data::Source> as_source(const xgrad::data::Dataset& d) {
    return xgrad::data::make_source(d.size(), [d](std::size_t i) {
        const auto one = d.slice(i, i + 1);
        xt::xarray<float> x = one.x.value(), y = one.y.value();
        x.reshape(xgrad::Shape(x.shape().begin() + 1, x.shape().end()));
        y.reshape(xgrad::Shape(y.shape().begin() + 1, y.shape().end()));
        return xgrad::data::Sample{x, y};
    });
}

// A small classification problem: the class is the index of the largest of 3 of 4 features.
inline xgrad::data::Dataset blobs(std::size_t n, std::uint64_t seed) {
    xgrad::manual_seed(seed);
    auto x = xgrad::randn({n, 4});
    xt::xarray<float> y = xt::empty<float>({n});
    for (std::size_t i = 0; i < n; ++i) {
        const float* r = x.value().data() + i * 4;
        y(i) = static_cast<float>(std::max_element(r, r + 3) - r);
    }
    return {x, xgrad::Tensor(y)};
}

}  // namespace xgrad_test
