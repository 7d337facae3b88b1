#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
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

namespace {

// max_pool2d's 2x2 rule, one channel of one window at a time: the first pixel in row-major
// order, replaced only by a strictly greater value or the first NaN. Returns value and position.
template <class T>
std::pair<T, std::size_t> max_2x2_reference(const xt::xarray<T>& x, std::size_t n, std::size_t oy, std::size_t ox,
                                            std::size_t c) {
    const std::size_t w = x.shape()[2];
    std::size_t best = 2 * oy * w + 2 * ox;
    for (std::size_t k = 1; k < 4; ++k) {
        const std::size_t at = (2 * oy + k / 2) * w + 2 * ox + k % 2;
        const T v = x(n, at / w, at % w, c), m = x(n, best / w, best % w, c);
        if (v > m || (std::isnan(v) && !std::isnan(m))) best = at;
    }
    return {x(n, best / w, best % w, c), best};
}

template <class T>
void check_max_2x2_lanes() {
    // 37 channels: whole vectors (16 floats, 8 doubles) and a tail; values from a small set, so
    // that windows tie (signed zeros included); NaN in some vectors and not others, in every
    // line pair of images 0 and 1 (image 2 has none: pools check a line pair for NaN first).
    const T nan = std::numeric_limits<T>::quiet_NaN(), inf = std::numeric_limits<T>::infinity();
    const T pool[] = {-1, T(-0.0), 0, 1, 2, -inf, inf, 1, -1, 2, 0, 1, 2, 1};
    const std::size_t c = 37;
    xt::xarray<T> x = xt::zeros<T>(Shape{3, 4, 6, c});
    for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = pool[(i * 7 + i / 5) % 14];
    x(0, 1, 2, 3) = nan;    // one lane of the first vector
    x(1, 2, 5, 20) = nan;   // the second vector
    x(1, 0, 0, 36) = nan;   // the tail
    x(0, 3, 3, 9) = -nan;   // a negative NaN
    // windows of zeros alone, whose first is -0 or +0 (a max tree would pick either)
    for (std::size_t k = 0; k < c; ++k) {
        const T a = k % 2 ? T(-0.0) : T(0), b = k % 2 ? T(0) : T(-0.0);
        x(2, 2, 0, k) = a, x(2, 2, 1, k) = b, x(2, 3, 0, k) = b, x(2, 3, 1, k) = b;
    }
    for (const bool relu : {false, true}) {
        xgrad::basic_tensor<T> xt_(x, true);
        auto y = relu ? xgrad::relu_max_pool2d(xt_, {.kernel = 2}) : xgrad::max_pool2d(xt_, {.kernel = 2});
        xt::xarray<T> gy = xt::zeros<T>(y.shape());
        for (std::size_t i = 0; i < gy.size(); ++i) gy.data()[i] = static_cast<T>(i + 1);
        y.backward(gy);
        xgrad::NoGradGuard off;  // the path without argmax
        auto y_inference = relu ? xgrad::relu_max_pool2d(xgrad::basic_tensor<T>(x), {.kernel = 2})
                                : xgrad::max_pool2d(xgrad::basic_tensor<T>(x), {.kernel = 2});
        std::size_t wrong = 0;
        for (std::size_t n = 0; n < 3; ++n)
            for (std::size_t oy = 0; oy < 2; ++oy)
                for (std::size_t ox = 0; ox < 3; ++ox)
                    for (std::size_t k = 0; k < c; ++k) {
                        auto [v, at] = max_2x2_reference(x, n, oy, ox, k);
                        if (relu && v <= 0) v = 0;
                        for (const T got : {y.value()(n, oy, ox, k), y_inference.value()(n, oy, ox, k)})
                            if (std::memcmp(&got, &v, sizeof v) != 0) ++wrong;
                        // the gradient reaches the argmax (relu: where the maximum was positive;
                        // relu's backward gives 0 at NaN, as PyTorch's)
                        const T g = relu && !(v > 0) ? T(0) : gy(n, oy, ox, k);
                        if (xt_.grad()(n, at / 6, at % 6, k) != g) ++wrong;
                    }
        CHECK(wrong == 0);
    }
}

}  // namespace

TEST_CASE("max_pool2d 2x2: every channel lane follows the window rule (NaN, ties, signed zeros), float and double",
          "[pool][nan]") {
    check_max_2x2_lanes<float>();
    check_max_2x2_lanes<double>();
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
