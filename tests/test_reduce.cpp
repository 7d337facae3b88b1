#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "helpers.hpp"
#include "xgrad/xgrad.hpp"

using xgrad::Shape;
using xgrad::Tensor64;
using xgrad_test::array_diff;
using Catch::Matchers::Contains;

namespace {
Tensor64 m23(bool grad = false) { return Tensor64(xt::xarray<double>{{1, 5, 3}, {4, 2, 6}}, grad); }
}  // namespace

TEST_CASE("reduce: sum, mean and max by hand", "[reduce]") {
    CHECK(xgrad::sum(m23()).item() == 21);
    CHECK(xgrad::mean(m23()).item() == 3.5);
    CHECK(xgrad::max(m23()).item() == 6);
    CHECK(array_diff(xgrad::sum(m23(), {0}).value(), xt::xarray<double>{5, 7, 9}) == "");
    CHECK(array_diff(xgrad::mean(m23(), {-1}).value(), xt::xarray<double>{3, 4}) == "");
    CHECK(array_diff(xgrad::max(m23(), {1}).value(), xt::xarray<double>{5, 6}) == "");
}

TEST_CASE("reduce: keepdims keeps reduced axes with size 1", "[reduce]") {
    auto x = xgrad::zeros<double>({2, 3, 4});
    CHECK(xgrad::sum(x, {1}).shape() == Shape{2, 4});
    CHECK(xgrad::sum(x, {1}, true).shape() == Shape{2, 1, 4});
    CHECK(xgrad::mean(x, {0, 2}, true).shape() == Shape{1, 3, 1});
    CHECK(xgrad::max(x, {-1}, true).shape() == Shape{2, 3, 1});
    CHECK(xgrad::sum(x).shape() == Shape{});
}

TEST_CASE("reduce: gradients by hand", "[reduce]") {
    auto x = m23(true);
    auto y = xgrad::sum(x, {0}) * Tensor64(xt::xarray<double>{1, 2, 3});
    xgrad::sum(y + xgrad::mean(x) * 6.0).backward();  // the mean term is summed 3 times
    CHECK(array_diff(x.grad(), xt::xarray<double>{{4, 5, 6}, {4, 5, 6}}) == "");
}

TEST_CASE("reduce: max sends the gradient to the first of tied maxima only", "[reduce]") {
    Tensor64 x(xt::xarray<double>{{7, 7, 1}, {0, 3, 3}}, true);
    xgrad::sum(xgrad::max(x, {1})).backward();
    CHECK(array_diff(x.grad(), xt::xarray<double>{{1, 0, 0}, {0, 1, 0}}) == "");
    x.zero_grad();
    xgrad::max(Tensor64(x)).backward();
    CHECK(array_diff(x.grad(), xt::xarray<double>{{1, 0, 0}, {0, 0, 0}}) == "");
}

TEST_CASE("reduce: bad axes are errors naming the op and the shape", "[reduce][errors]") {
    REQUIRE_THROWS_AS(xgrad::sum(m23(), {2}), xgrad::ShapeError);
    REQUIRE_THROWS_WITH(xgrad::mean(m23(), {-3}), Contains("mean:") && Contains("[2, 3]"));
    REQUIRE_THROWS_AS(xgrad::max(m23(), {1, -1}), xgrad::ShapeError);
    REQUIRE_THROWS_WITH(xgrad::max(xgrad::zeros<double>({0, 3})), Contains("empty"));
}

TEST_CASE("max: NaN wins wherever it is, and the gradient goes to the first NaN", "[reduce][nan]") {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    for (std::size_t at = 0; at < 4; ++at) {
        xt::xarray<double> v{{1, 5, 3, 2}, {4, 2, 6, 1}};
        v(0, at) = nan;
        if (at == 1) v(0, 3) = nan;  // two NaNs: the first one gets the gradient
        Tensor64 x(v, true);
        auto y = xgrad::max(x, {1});
        CHECK(std::isnan(y.value()(0)));
        CHECK(y.value()(1) == 6);
        xgrad::sum(y).backward();
        CHECK(x.grad()(0, at) == 1);
        CHECK(xt::sum(x.grad())() == 2);
        CHECK(std::isnan(xgrad::max(Tensor64(v)).item()));
    }
}

TEST_CASE("reduce: a large sum over the leading axes (blocks of rows on the threads) is right and the same at "
          "any thread count, rows of one value to many", "[reduce]") {
    // More rows than one block (64Ki values) and row counts that are not whole chunks (rows
    // narrower than 32 values are summed in chunks of whole rows).
    for (const std::size_t cols : {1, 3, 20, 31, 32, 33, 100}) {
        xgrad::manual_seed(8);
        const std::size_t rows = 3 * 65536 / cols + 7;
        const auto x = xgrad::randn<float>({rows / 17 + 1, 17, cols});
        const auto before = xgrad::num_threads();
        xgrad::set_num_threads(1);
        const xt::xarray<float> one = xgrad::sum(x, {0, 1}).value();
        xgrad::set_num_threads(2);
        const xt::xarray<float> two = xgrad::sum(x, {0, 1}).value();
        xgrad::set_num_threads(before);
        INFO("rows of " << cols);
        CHECK(one == two);
        xt::xarray<double> ref = xt::zeros<double>({cols});
        for (std::size_t i = 0; i < x.size(); ++i) ref(i % cols) += x.value().data()[i];
        CHECK(array_diff(one, ref, 1e-4, 1e-4) == "");
        const double count = static_cast<double>(x.size() / cols);
        CHECK(array_diff(xgrad::mean(x, {0, 1}).value(), xt::xarray<double>(ref / count), 1e-6, 1e-4) == "");
        // all axes: one sum
        CHECK(xgrad::sum(x).item() == Approx(xt::sum(ref)()).margin(1e-2));
    }
}

TEST_CASE("reduce: sums over trailing, middle and scattered axes (rows of one value to many, blocks on the "
          "threads) match the definition and are the same at any thread count", "[reduce]") {
    xgrad::manual_seed(9);
    for (const auto& [shape, axes] : std::vector<std::pair<xgrad::Shape, xgrad::Axes>>{
             {{300, 1000}, {1}}, {{7, 33, 5}, {1}}, {{7, 33, 5}, {1, 2}}, {{7, 33, 5}, {2}}, {{4, 3, 5, 6}, {1, 2}},
             {{2, 50000, 3}, {1}}, {{3, 0, 4}, {1}}, {{3, 4, 0}, {1}}, {{6, 1}, {1}},
             // not consecutive (group_norm's): moved behind the kept axes first
             {{7, 33, 5}, {0, 2}}, {{4, 3, 5, 6}, {1, 3}}, {{4, 3, 5, 6}, {0, 2, 3}}, {{8, 300, 4, 40}, {1, 3}}}) {
        const auto x = xgrad::randn<double>(shape);
        const auto before = xgrad::num_threads();
        xgrad::set_num_threads(1);
        const xt::xarray<double> one = xgrad::sum(x, axes, true).value();
        xgrad::set_num_threads(2);
        const xt::xarray<double> two = xgrad::sum(x, axes, true).value();
        xgrad::set_num_threads(before);
        INFO("x " << xgrad::to_string(shape) << ", axes " << axes.size() << " from " << axes[0]);
        CHECK(xgrad_test::same_bits(one, two));
        // the definition: every value added to its position with the reduced axes at 0
        xgrad::Shape kept = shape;
        for (const auto a : axes) kept[static_cast<std::size_t>(a)] = 1;
        xt::xarray<double> ref = xt::zeros<double>(kept);
        for (std::size_t flat = 0; flat < x.size(); ++flat) {
            std::size_t at = flat, to = 0, step = 1;
            for (std::size_t d = shape.size(); d-- > 0;) {
                const std::size_t i = at % shape[d];
                at /= shape[d];
                to += (kept[d] == 1 ? 0 : i) * step;
                step *= kept[d];
            }
            ref.data()[to] += x.value().data()[flat];
        }
        CHECK(array_diff(one, ref, 1e-12, 1e-12) == "");
        std::size_t count = 1;
        for (const auto a : axes) count *= shape[static_cast<std::size_t>(a)];
        if (count > 0)  // a mean over nothing is an error (tested below)
            CHECK(array_diff(xgrad::mean(x, axes, true).value(), xt::xarray<double>(ref / static_cast<double>(count)),
                             1e-12, 1e-12) == "");
    }
}

TEST_CASE("reduce: mean and max of an empty batch are empty; over an empty axis they are errors", "[reduce][traps]") {
    Tensor64 x(xt::xarray<double>(xt::zeros<double>({0, 3})), true);
    const auto m = xgrad::mean(x, {1}), mx = xgrad::max(x, {1});
    CHECK(m.shape() == Shape{0});
    CHECK(mx.shape() == Shape{0});
    xgrad::sum(m + mx).backward();
    CHECK(x.grad().shape() == x.shape());
    REQUIRE_THROWS_AS(xgrad::mean(x), xgrad::ShapeError);  // a mean of nothing has no value
    REQUIRE_THROWS_WITH(xgrad::mean(x, {0}), Contains("mean") && Contains("[0, 3]"));
    REQUIRE_THROWS_WITH(xgrad::max(x, {0}), Contains("max") && Contains("[0, 3]"));
    CHECK(xgrad::sum(x, {0}).shape() == Shape{3});  // a sum of nothing is zero
}
