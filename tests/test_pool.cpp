#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <xtensor/xview.hpp>

#include "helpers.hpp"
#include "xgrad/xgrad.hpp"

using xgrad::Shape;
using xgrad::Tensor64;
using xgrad_test::array;
using xgrad_test::array_diff;
using Catch::Matchers::Contains;

TEST_CASE("max_pool2d: halves H and W with a 2x2 window", "[pool]") {
    auto x = xgrad::reshape(xgrad::arange<double>(0, 16), {1, 4, 4, 1});
    auto y = xgrad::max_pool2d(x, {.kernel = 2});
    CHECK(y.shape() == Shape{1, 2, 2, 1});
    CHECK(array_diff(y.value(), array({1, 2, 2, 1}, {5, 7, 13, 15})) == "");
}

TEST_CASE("max_pool2d: a 5x5 input gives 2x2 and no gradient to the last row and column", "[pool][traps]") {
    xgrad::manual_seed(4);
    Tensor64 x(xgrad::randn<double>({1, 5, 5, 2}).value(), true);
    auto y = xgrad::max_pool2d(x, {.kernel = 2});
    CHECK(y.shape() == Shape{1, 2, 2, 2});
    xgrad::sum(y).backward();
    const auto& g = x.grad();
    CHECK(xt::sum(xt::view(g, 0, 4, xt::all(), xt::all()))() == 0.0);
    CHECK(xt::sum(xt::view(g, 0, xt::all(), 4, xt::all()))() == 0.0);
    CHECK(xt::sum(g)() == 8.0);  // not all zero: one unit per output
}

TEST_CASE("max_pool2d: a window of equal values sends its gradient to one element", "[pool][traps]") {
    Tensor64 x(xt::ones<double>({1, 2, 2, 1}), true);
    xgrad::sum(xgrad::max_pool2d(x, {.kernel = 2})).backward();
    CHECK(array_diff(x.grad(), array({1, 2, 2, 1}, {1, 0, 0, 0})) == "");
}

TEST_CASE("max_pool2d: overlapping windows add up on a shared maximum", "[pool]") {
    Tensor64 x(array({1, 3, 3, 1}, {0, 0, 0, 0, 9, 0, 0, 0, 0}), true);
    xgrad::sum(xgrad::max_pool2d(x, {.kernel = 2, .stride = 1})).backward();
    CHECK(x.grad()(0, 1, 1, 0) == 4.0);
}

TEST_CASE("avg_pool2d: means by hand, with and without counting the padding", "[pool]") {
    auto x = xgrad::reshape(xgrad::arange<double>(1, 5), {1, 2, 2, 1});  // 1 2 / 3 4
    CHECK(array_diff(xgrad::avg_pool2d(x, {.kernel = 2}).value(), array({1, 1, 1, 1}, {2.5})) == "");
    // 2x2 windows at stride 2 with padding 1: each holds one real pixel.
    auto inc = xgrad::avg_pool2d(x, {.kernel = 2, .padding = 1});
    CHECK(array_diff(inc.value(), array({1, 2, 2, 1}, {0.25, 0.5, 0.75, 1})) == "");
    auto exc = xgrad::avg_pool2d(x, {.kernel = 2, .padding = 1, .count_include_pad = false});
    CHECK(array_diff(exc.value(), array({1, 2, 2, 1}, {1, 2, 3, 4})) == "");
}

TEST_CASE("global_avg_pool2d: [N, H, W, C] -> [N, C] means", "[pool]") {
    auto x = xgrad::reshape(xgrad::arange<double>(0, 8), {1, 2, 2, 2});
    CHECK(array_diff(xgrad::global_avg_pool2d(x).value(), xt::xarray<double>{{3, 4}}) == "");
    REQUIRE_THROWS_WITH(xgrad::global_avg_pool2d(xgrad::zeros<double>({2, 3})), Contains("[2, 3]"));
}

TEST_CASE("pooling: bad input gives typed errors naming the op and the shape", "[pool][errors]") {
    auto x = xgrad::zeros({2, 5, 5, 3});
    REQUIRE_THROWS_WITH(xgrad::max_pool2d(xgrad::zeros({5, 5, 3})), Contains("max_pool2d:") && Contains("[5, 5, 3]"));
    REQUIRE_THROWS_AS(xgrad::avg_pool2d(x, {.kernel = 0}), xgrad::ValueError);
    REQUIRE_THROWS_AS(xgrad::max_pool2d(x, {.kernel = 2, .stride = 0}), xgrad::ValueError);
    REQUIRE_THROWS_WITH(xgrad::max_pool2d(x, {.kernel = 2, .padding = 2}), Contains("half the kernel"));
    REQUIRE_THROWS_AS(xgrad::max_pool2d(x, {.kernel = 2, .padding = -1}), xgrad::ValueError);
    REQUIRE_THROWS_WITH(xgrad::max_pool2d(x, {.kernel = 6}), Contains("larger than") && Contains("[2, 5, 5, 3]"));
}

TEST_CASE("max_pool2d: NaN wins in its window wherever it is, in float and double", "[pool][nan]") {
    for (std::size_t at = 0; at < 4; ++at) {
        xt::xarray<double> v = xt::xarray<double>{{1, 5}, {3, 2}};
        v.reshape({1, 2, 2, 1});
        v.data()[at] = std::numeric_limits<double>::quiet_NaN();
        Tensor64 x(v, true);
        auto y = xgrad::max_pool2d(x, {.kernel = 2});
        CHECK(std::isnan(y.item()));
        y.backward();
        CHECK(x.grad().data()[at] == 1);
        CHECK(xt::sum(x.grad())() == 1);
        auto yf = xgrad::max_pool2d(xgrad::Tensor(xt::xarray<float>(xt::cast<float>(v))), {.kernel = 2});
        CHECK(std::isnan(yf.item()));
    }
}

TEST_CASE("upsample2d: nearest and bilinear as PyTorch's interpolate, both corner conventions", "[pool][resample]") {
    const Tensor64 x(array({1, 2, 2, 1}, {1, 2, 3, 4}));
    CHECK(array_diff(xgrad::upsample2d(x).value(),
                     array({1, 4, 4, 1}, {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4})) == "");
    const Tensor64 row(array({1, 1, 2, 1}, {1, 2}));
    using xgrad::Interpolation;
    // pixel centres: outputs at -0.25, 0.25, 0.75, 1.25 of the input, clamped at the border
    CHECK(array_diff(xgrad::upsample2d(row, {.scale = {1, 2}, .mode = Interpolation::bilinear}).value(),
                     array({1, 1, 4, 1}, {1, 1.25, 1.75, 2}), 1e-15) == "");
    CHECK(array_diff(xgrad::upsample2d(row, {.size = xgrad::Size2(1, 4), .mode = Interpolation::bilinear,
                                             .align_corners = true})
                         .value(),
                     array({1, 1, 4, 1}, {1, 4.0 / 3, 5.0 / 3, 2}), 1e-15) == "");
    // nearest to an arbitrary size picks floor(i · in / out)
    const Tensor64 five(array({1, 1, 5, 1}, {0, 1, 2, 3, 4}));
    CHECK(array_diff(xgrad::upsample2d(five, {.size = xgrad::Size2(1, 3)}).value(), array({1, 1, 3, 1}, {0, 1, 3})) == "");
    // not a product op: the same numbers under bf16 autocast
    xgrad::manual_seed(1);
    const auto xf = xgrad::randn({2, 3, 5, 3});
    const auto plain = xgrad::upsample2d(xf, {.scale = 2, .mode = Interpolation::bilinear});
    xgrad::AutocastGuard bf16(xgrad::Precision::bf16);
    CHECK(array_diff(xt::xarray<double>(xgrad::upsample2d(xf, {.scale = 2, .mode = Interpolation::bilinear}).value()),
                     xt::xarray<double>(plain.value())) == "");
}

TEST_CASE("adaptive_avg_pool2d: PyTorch's bins, global pooling at 1x1, typed errors", "[pool][resample]") {
    const Tensor64 five(array({1, 5, 1, 1}, {0, 1, 2, 3, 4}));
    // bins 0..1, 1..3, 3..4
    CHECK(array_diff(xgrad::adaptive_avg_pool2d(five, {3, 1}).value(), array({1, 3, 1, 1}, {0.5, 2, 3.5}), 1e-15) == "");
    xgrad::manual_seed(2);
    const auto x = xgrad::randn<double>({2, 6, 4, 3});
    CHECK(array_diff(xgrad::reshape(xgrad::adaptive_avg_pool2d(x, 1), {2, 3}).value(), xgrad::global_avg_pool2d(x).value(),
                     1e-14) == "");
    CHECK(array_diff(xgrad::adaptive_avg_pool2d(x, {3, 2}).value(), xgrad::avg_pool2d(x, {.kernel = 2}).value(), 1e-14) ==
          "");
    REQUIRE_THROWS_WITH(xgrad::adaptive_avg_pool2d(x, {0, 2}), Contains("adaptive_avg_pool2d") && Contains("[2, 6, 4, 3]"));
    REQUIRE_THROWS_AS(xgrad::adaptive_avg_pool2d(xgrad::zeros<double>({2, 0, 4, 3}), 2), xgrad::ShapeError);
    REQUIRE_THROWS_AS(xgrad::upsample2d(xgrad::zeros<double>({6, 4, 3})), xgrad::ShapeError);
    REQUIRE_THROWS_AS(xgrad::upsample2d(x, {.scale = 0}), xgrad::ValueError);
    REQUIRE_THROWS_AS(xgrad::upsample2d(x, {.scale = 1 << 30}), xgrad::Error);
    // as layers in a Sequential
    xgrad::nn::Sequential model({6, 4, 3});
    model.add(xgrad::nn::Upsample2D({.scale = 2})).add(xgrad::nn::AdaptiveAvgPool2D({3, 3}));
    CHECK_THAT(model.summary(false), Contains("Upsample2D") && Contains("[N, 12, 8, 3]") && Contains("[N, 3, 3, 3]"));
}
