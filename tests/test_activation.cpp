#include <catch2/catch.hpp>

#include "helpers.hpp"
#include "xgrad/xgrad.hpp"

using xgrad::Tensor;
using xgrad::Tensor64;
using xgrad_test::array_diff;
using Catch::Matchers::Contains;

TEST_CASE("activation: relu, leaky_relu, sigmoid and tanh by hand", "[activation]") {
    Tensor64 x(xt::xarray<double>{-2, 0, 3});
    CHECK(array_diff(xgrad::relu(x).value(), xt::xarray<double>{0, 0, 3}) == "");
    CHECK(array_diff(xgrad::leaky_relu(x, 0.1).value(), xt::xarray<double>{-0.2, 0, 3}) == "");
    CHECK(array_diff(xgrad::sigmoid(x).value(),
                   xt::xarray<double>{1 / (1 + std::exp(2.0)), 0.5, 1 / (1 + std::exp(-3.0))}) == "");
    CHECK(array_diff(xgrad::tanh(x).value(), xt::xarray<double>{std::tanh(-2.0), 0, std::tanh(3.0)}) == "");
}

TEST_CASE("activation: relu passes gradient only where x > 0", "[activation]") {
    Tensor64 x(xt::xarray<double>{-2, 0, 3}, true);
    xgrad::sum(xgrad::relu(x)).backward();
    CHECK(array_diff(x.grad(), xt::xarray<double>{0, 0, 1}) == "");
}

TEST_CASE("activation: sigmoid stays finite for huge inputs", "[activation]") {
    Tensor x(xt::xarray<float>{-1000, 1000});
    CHECK(array_diff(xgrad::sigmoid(x).value(), xt::xarray<float>{0, 1}) == "");
}

TEST_CASE("activation: softmax rows sum to 1 and match a hand value", "[activation]") {
    Tensor64 x(xt::xarray<double>{{0, std::log(3.0)}, {1, 1}});
    CHECK(array_diff(xgrad::softmax(x).value(), xt::xarray<double>{{0.25, 0.75}, {0.5, 0.5}}) == "");
    CHECK(array_diff(xgrad::log_softmax(x).value(),
                   xt::xarray<double>{{std::log(0.25), std::log(0.75)}, {std::log(0.5), std::log(0.5)}}) == "");
}

TEST_CASE("activation: softmax subtracts each row's max (logits of +-1000)", "[activation]") {
    Tensor x(xt::xarray<float>{{1000, 999, -1000}, {-1000, -1000, -1001}});
    const auto p = xgrad::softmax(x).value();
    CHECK(xt::all(xt::isfinite(p)));
    CHECK(array_diff(xt::xarray<float>(xt::sum(p, {1})), xt::xarray<float>{1, 1}, 1e-6) == "");
    const auto lp = xgrad::log_softmax(x).value();
    CHECK(xt::all(xt::isfinite(lp)));
    CHECK(lp(0, 2) == Approx(-2000.3133f).epsilon(1e-6));
}

TEST_CASE("activation: softmax over a bad axis names the op and the shape", "[activation][errors]") {
    auto x = xgrad::zeros({2, 3});
    REQUIRE_THROWS_AS(xgrad::softmax(x, 2), xgrad::ShapeError);
    REQUIRE_THROWS_WITH(xgrad::log_softmax(x, -3), Contains("log_softmax:") && Contains("[2, 3]"));
}
