#include <catch2/catch.hpp>

#include <algorithm>
#include <random>

#include "helpers.hpp"
#include "xgrad/xgrad.hpp"

using xgrad::ConvBackward;
using xgrad::ConvTranspose2dOptions;
using xgrad::Padding;
using xgrad::Shape;
using xgrad::Tensor;
using xgrad::Tensor64;
using xgrad_test::array;
using xgrad_test::array_diff;
using Catch::Matchers::Contains;

namespace {

// A transposed convolution by its definition, in float64: every input pixel stamps the kernel,
// scaled by its value, at stride steps onto the full output; the padding is then cropped from
// the border (output_padding rows stay at zero).
xt::xarray<double> naive_transpose(const xt::xarray<double>& x, const xt::xarray<double>& w, std::size_t sh,
                                   std::size_t sw, std::size_t dh, std::size_t dw, std::ptrdiff_t pt,
                                   std::ptrdiff_t pl, std::size_t oh, std::size_t ow, std::size_t groups) {
    const std::size_t n = x.shape(0), h = x.shape(1), wd = x.shape(2), c = x.shape(3);
    const std::size_t kh = w.shape(0), kw = w.shape(1), fg = w.shape(2), cg = c / groups;
    xt::xarray<double> y = xt::zeros<double>({n, oh, ow, fg * groups});
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t iy = 0; iy < h; ++iy)
            for (std::size_t ix = 0; ix < wd; ++ix)
                for (std::size_t ky = 0; ky < kh; ++ky)
                    for (std::size_t kx = 0; kx < kw; ++kx) {
                        const auto oy = static_cast<std::ptrdiff_t>(iy * sh + ky * dh) - pt;
                        const auto ox = static_cast<std::ptrdiff_t>(ix * sw + kx * dw) - pl;
                        if (oy < 0 || ox < 0 || oy >= static_cast<std::ptrdiff_t>(oh) ||
                            ox >= static_cast<std::ptrdiff_t>(ow))
                            continue;
                        for (std::size_t ci = 0; ci < c; ++ci)
                            for (std::size_t fi = 0; fi < fg; ++fi)
                                y(i, oy, ox, ci / cg * fg + fi) += x(i, iy, ix, ci) * w(ky, kx, fi, ci);
                    }
    return y;
}

}  // namespace

TEST_CASE("conv_transpose2d: a 2x2 input stamps a 2x2 kernel, by hand", "[conv_transpose]") {
    Tensor64 x(array({1, 2, 2, 1}, {1, 2, 3, 4}));
    auto w = xgrad::ones<double>({2, 2, 1, 1});
    // stride 1: overlapping stamps add up
    CHECK(array_diff(xgrad::conv_transpose2d(x, w).value(), array({1, 3, 3, 1}, {1, 3, 2, 4, 10, 6, 3, 7, 4})) == "");
    // stride 2: each pixel becomes a 2x2 block
    CHECK(array_diff(xgrad::conv_transpose2d(x, w, {.stride = 2}).value(),
                     array({1, 4, 4, 1}, {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4})) == "");
    // padding 1 crops the border of the stride-1 result; output_padding adds a row and a
    // column that hold only the bias
    CHECK(array_diff(xgrad::conv_transpose2d(x, w, {.padding = 1}).value(), array({1, 1, 1, 1}, {10})) == "");
    Tensor64 b(xt::xarray<double>{0.5});
    CHECK(array_diff(xgrad::conv_transpose2d(x, w, b, {.stride = 2, .padding = {1, 0, 1, 0}, .output_padding = 1})
                         .value(),
                     array({1, 4, 4, 1}, {1.5, 2.5, 2.5, 0.5, 3.5, 4.5, 4.5, 0.5, 3.5, 4.5, 4.5, 0.5, 0.5, 0.5, 0.5, 0.5})) ==
          "");
}

TEST_CASE("conv_transpose2d: output sizes follow PyTorch's formula and TensorFlow's SAME", "[conv_transpose]") {
    auto x = xgrad::zeros<double>({2, 5, 7, 3});
    const auto w = xgrad::zeros<double>({3, 3, 4, 3});
    CHECK(xgrad::conv_transpose2d(x, w).shape() == Shape{2, 7, 9, 4});
    CHECK(xgrad::conv_transpose2d(x, w, {.stride = 2, .padding = 1, .output_padding = 1}).shape() == Shape{2, 10, 14, 4});
    CHECK(xgrad::conv_transpose2d(x, w, {.stride = {2, 3}, .dilation = 2, .padding = {0, 1, 2, 0}}).shape() ==
          Shape{2, 12, 21, 4});
    CHECK(xgrad::conv_transpose2d(x, w, {.stride = 2, .padding = Padding::same}).shape() == Shape{2, 10, 14, 4});
    CHECK(xgrad::conv_transpose2d(x, xgrad::zeros<double>({4, 4, 2, 3}), {.stride = 2, .padding = Padding::same})
              .shape() == Shape{2, 10, 14, 2});
    // an empty batch gives an empty batch
    CHECK(xgrad::conv_transpose2d(xgrad::zeros<double>({0, 5, 7, 3}), w, {.stride = 2}).shape() == Shape{0, 11, 15, 4});
}

TEST_CASE("conv_transpose2d: random geometries match the definition, both variants, float64 and float32",
          "[conv_transpose]") {
    std::mt19937 rng(7);
    auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    for (int trial = 0; trial < 60; ++trial) {
        const int groups = pick(1, 2), sh = pick(1, 3), sw = pick(1, 3), dh = pick(1, 2), dw = pick(1, 2);
        const auto c = static_cast<std::size_t>(groups * pick(1, trial % 10 == 0 ? 16 : 3));
        const auto fg = static_cast<std::size_t>(pick(1, trial % 7 == 0 ? 17 : 3));
        const auto kh = static_cast<std::size_t>(pick(1, 4)), kw = static_cast<std::size_t>(pick(1, 4));
        const Shape xs{static_cast<std::size_t>(pick(1, 2)), static_cast<std::size_t>(pick(1, 5)),
                       static_cast<std::size_t>(pick(1, 5)), c};
        ConvTranspose2dOptions o;
        o.stride = {sh, sw};
        o.dilation = {dh, dw};
        o.groups = groups;
        o.output_padding = {pick(0, sh - 1), pick(0, sw - 1)};
        const int pt = pick(0, 4), pb = pick(0, 4), pl = pick(0, 4), pr = pick(0, 4);  // may exceed the kernel
        const long full_h = (static_cast<long>(xs[1]) - 1) * sh + dh * (static_cast<long>(kh) - 1) + 1 + o.output_padding.h;
        const long full_w = (static_cast<long>(xs[2]) - 1) * sw + dw * (static_cast<long>(kw) - 1) + 1 + o.output_padding.w;
        if (full_h - pt - pb < 1 || full_w - pl - pr < 1) continue;
        o.padding = {pt, pb, pl, pr};
        INFO("trial " << trial << " x " << xgrad::to_string(xs) << " kernel " << kh << "x" << kw << " stride " << sh
                      << "x" << sw << " dilation " << dh << "x" << dw << " padding " << pt << "," << pb << "," << pl
                      << "," << pr << " groups " << groups);
        xgrad::manual_seed(static_cast<std::uint64_t>(trial));
        const auto x = xgrad::randn<double>(xs);
        const auto w = xgrad::randn<double>({kh, kw, fg, c});
        const auto expect = naive_transpose(x.value(), w.value(), static_cast<std::size_t>(sh),
                                            static_cast<std::size_t>(sw), static_cast<std::size_t>(dh),
                                            static_cast<std::size_t>(dw), pt, pl,
                                            static_cast<std::size_t>(full_h - pt - pb),
                                            static_cast<std::size_t>(full_w - pl - pr), static_cast<std::size_t>(groups));
        for (auto variant : {ConvBackward::col2img, ConvBackward::flipped}) {
            o.backward = variant;
            CHECK(array_diff(xgrad::conv_transpose2d(x, w, o).value(), expect, 1e-12) == "");
            const Tensor xf(xt::xarray<float>(x.value())), wf(xt::xarray<float>(w.value()));
            CHECK(array_diff(xt::xarray<double>(xgrad::conv_transpose2d(xf, wf, o).value()), expect, 1e-4) == "");
        }
    }
}

TEST_CASE("conv_transpose2d: the gradient of conv2d's input is conv_transpose2d", "[conv_transpose]") {
    // dL/dz of sum(conv2d(z, w) * gy) = conv_transpose2d(gy, w) with the same options.
    xgrad::manual_seed(3);
    Tensor64 z(xgrad::randn<double>({2, 9, 8, 3}).value(), true);
    const auto w = xgrad::randn<double>({3, 3, 3, 5});
    auto y = xgrad::conv2d(z, w, {.stride = 2, .padding = 1});
    const auto gy = xgrad::randn<double>(y.shape());
    y.backward(gy.value());
    // 9 = (5 - 1)·2 - 2 + 3 + 0 and 8 = (4 - 1)·2 - 2 + 3 + 1: output_padding names which
    CHECK(array_diff(xgrad::conv_transpose2d(gy, w, {.stride = 2, .padding = 1, .output_padding = {0, 1}}).value(),
                     z.grad(), 1e-12) == "");
}

TEST_CASE("conv_transpose2d: bad input gives typed errors naming the op and the shapes", "[conv_transpose][errors]") {
    auto x = xgrad::zeros({8, 7, 7, 16});
    auto w = xgrad::zeros({3, 3, 4, 16});
    REQUIRE_THROWS_AS(xgrad::conv_transpose2d(x, xgrad::zeros({3, 3, 4, 8})), xgrad::ShapeError);
    REQUIRE_THROWS_WITH(xgrad::conv_transpose2d(x, xgrad::zeros({3, 3, 4, 8})),
                        Contains("conv_transpose2d: x has 16 channels but w expects 8") &&
                            Contains("x [8, 7, 7, 16], w [3, 3, 4, 8]"));
    REQUIRE_THROWS_AS(xgrad::conv_transpose2d(xgrad::zeros({7, 7, 16}), w), xgrad::ShapeError);
    REQUIRE_THROWS_WITH(xgrad::conv_transpose2d(x, w, xgrad::zeros({16})),
                        Contains("b must be [F] = [4]") && Contains("b [16]"));
    REQUIRE_THROWS_WITH(xgrad::conv_transpose2d(x, w, {.stride = 2, .output_padding = 2}),
                        Contains("output_padding must be at least 0 and below the stride 2x2, got 2x2"));
    REQUIRE_THROWS_AS(xgrad::conv_transpose2d(x, w, {.output_padding = {0, -1}}), xgrad::ValueError);
    REQUIRE_THROWS_WITH(xgrad::conv_transpose2d(x, w, {.stride = 2, .padding = Padding::same, .output_padding = 1}),
                        Contains("Padding::same"));
    REQUIRE_THROWS_AS(xgrad::conv_transpose2d(x, w, {.stride = 0}), xgrad::ValueError);
    REQUIRE_THROWS_AS(xgrad::conv_transpose2d(x, w, {.dilation = {1, 0}}), xgrad::ValueError);
    REQUIRE_THROWS_WITH(xgrad::conv_transpose2d(x, w, {.padding = {1, -1, 0, 0}}), Contains("negative"));
    REQUIRE_THROWS_WITH(xgrad::conv_transpose2d(x, w, {.groups = 3}), Contains("groups 3 must divide"));
    // the padding crops the whole 9-pixel output
    REQUIRE_THROWS_WITH(xgrad::conv_transpose2d(x, w, {.padding = {5, 4, 0, 0}}),
                        Contains("leaves no high output of 9") && Contains("x [8, 7, 7, 16]"));
    REQUIRE_THROWS_WITH(xgrad::conv_transpose2d(xgrad::zeros({1, 0, 7, 16}), w), Contains("x has no high extent"));
    REQUIRE_THROWS_AS(xgrad::conv_transpose2d(x, w, {.stride = 2000000000}), xgrad::Error);
}

TEST_CASE("nn::ConvTranspose2D: shapes, PyTorch's parameter layout and a Sequential decoder", "[conv_transpose][nn]") {
    xgrad::nn::ConvTranspose2D up(8, 4, 4, {.stride = 2, .padding = 1});
    CHECK(up.weight.shape() == Shape{4, 4, 4, 8});
    CHECK(up.bias.shape() == Shape{4});
    CHECK(up(xgrad::zeros({2, 7, 7, 8})).shape() == Shape{2, 14, 14, 4});
    xgrad::nn::ConvTranspose2D grouped(4, 6, {3, 2}, {.groups = 2}, xgrad::nn::Activation::relu, false);
    CHECK(grouped.weight.shape() == Shape{3, 2, 3, 4});
    CHECK(!grouped.bias.defined());
    const auto r = grouped(xgrad::randn({1, 3, 3, 4}));
    CHECK(std::all_of(r.value().begin(), r.value().end(), [](float v) { return v >= 0; }));
    REQUIRE_THROWS_AS(xgrad::nn::ConvTranspose2D(4, 6, 3, {.groups = 4}), xgrad::ValueError);
    REQUIRE_THROWS_AS(xgrad::nn::ConvTranspose2D(0, 6, 3), xgrad::ValueError);

    xgrad::nn::Sequential decoder({7, 7, 8});
    decoder.add(xgrad::nn::ConvTranspose2D(8, 4, 2, {.stride = 2}, xgrad::nn::Activation::relu))
        .add(xgrad::nn::ConvTranspose2D(4, 1, 3, {.padding = Padding::same}, xgrad::nn::Activation::sigmoid));
    const auto s = decoder.summary(false);
    CHECK_THAT(s, Contains("ConvTranspose2D") && Contains("[N, 14, 14, 4]") && Contains("[N, 14, 14, 1]") &&
                      Contains("132") && Contains("37"));
    CHECK(decoder.named_parameters().size() == 4);
}
