#include <catch2/catch.hpp>

#include "helpers.hpp"
#include "xgrad/xgrad.hpp"

using xgrad::Tensor64;
using xgrad_test::array_diff;
using Catch::Matchers::Contains;

TEST_CASE("batch_norm: normalises each channel and updates running statistics as PyTorch", "[norm]") {
    // Two channels over N = 4: channel 0 = 1 2 3 4, channel 1 = 0 0 0 4.
    Tensor64 x(xt::xarray<double>{{1, 0}, {2, 0}, {3, 0}, {4, 4}});
    auto gamma = xgrad::ones<double>({2}), beta = xgrad::zeros<double>({2});
    auto rm = xgrad::zeros<double>({2}), rv = xgrad::ones<double>({2});
    auto y = xgrad::batch_norm(x, gamma, beta, rm, rv, true);
    const double s0 = std::sqrt(1.25 + 1e-5);
    CHECK(y.value()(0, 0) == Approx(-1.5 / s0));
    CHECK(y.value()(3, 0) == Approx(1.5 / s0));
    // running = 0.9 running + 0.1 batch, with the unbiased variance (5/3 and 4)
    CHECK(array_diff(rm.value(), xt::xarray<double>{0.25, 0.1}) == "");
    CHECK(array_diff(rv.value(), xt::xarray<double>{0.9 + 0.1 * 5.0 / 3.0, 0.9 + 0.1 * 4.0}) == "");
    // evaluation uses the running statistics
    auto e = xgrad::batch_norm(x, gamma, beta, rm, rv, false);
    CHECK(e.value()(0, 0) == Approx((1 - 0.25) / std::sqrt(rv.value()(0) + 1e-5)));
}

TEST_CASE("batch_norm: gamma's gradient uses the normalised input", "[norm][traps]") {
    Tensor64 x(xgrad_test::column({10, 20, 30}));
    Tensor64 gamma(xt::xarray<double>{2.0}, true), beta(xt::xarray<double>{0.0}, true);
    auto rm = xgrad::zeros<double>({1}), rv = xgrad::ones<double>({1});
    auto y = xgrad::batch_norm(x, gamma, beta, rm, rv, true);
    y.backward(xgrad_test::column({1, 0, 0}));
    const double xhat0 = -10 / std::sqrt(200.0 / 3 + 1e-5);
    CHECK(gamma.grad()(0) == Approx(xhat0));  // not x[0] = 10
    CHECK(beta.grad()(0) == Approx(1));
}

TEST_CASE("batch_norm: bad shapes and a single value per channel are errors", "[norm][errors]") {
    auto g = xgrad::ones<double>({3}), b = xgrad::zeros<double>({3});
    auto rm = xgrad::zeros<double>({3}), rv = xgrad::ones<double>({3});
    REQUIRE_THROWS_WITH(xgrad::batch_norm(xgrad::zeros<double>({4, 2}), g, b, rm, rv, true),
                        Contains("batch_norm:") && Contains("x [4, 2], gamma [3]"));
    REQUIRE_THROWS_AS(xgrad::batch_norm(xgrad::zeros<double>({1, 3}), g, b, rm, rv, true), xgrad::ValueError);
    CHECK_NOTHROW(xgrad::batch_norm(xgrad::zeros<double>({1, 3}), g, b, rm, rv, false));
}

TEST_CASE("dropout: inverted scaling in training, identity in evaluation", "[norm]") {
    xgrad::manual_seed(1);
    auto x = xgrad::ones<double>({100, 100});
    auto y = xgrad::dropout(x, 0.25, true);
    const auto& v = y.value();
    CHECK(xt::all(xt::equal(v, 0.0) || xt::isclose(v, 1 / 0.75)));
    const double kept = static_cast<double>(xt::sum(xt::not_equal(v, 0.0))()) / 10000.0;
    CHECK(kept == Approx(0.75).margin(0.02));
    CHECK(xgrad::dropout(x, 0.25, false).value() == x.value());
    REQUIRE_THROWS_WITH(xgrad::dropout(x, 1.0, true), Contains("dropout: p must be in [0, 1), got 1"));
    REQUIRE_THROWS_AS(xgrad::dropout(x, -0.1, true), xgrad::ValueError);
}

TEST_CASE("layer_norm: each slice over the trailing dimensions normalised, affine per element, as PyTorch",
          "[norm]") {
    const Tensor64 x(xt::xarray<double>{{1, 2, 3}, {4, 6, 8}});
    CHECK(array_diff(xgrad::layer_norm(x, {3}).value(),
                     xt::xarray<double>{{-1.2247356859083902, 0.0, 1.2247356859083902},
                                        {-1.2247425750014138, 0.0, 1.2247425750014138}},
                     1e-12, 1e-12) == "");
    const Tensor64 w(xt::xarray<double>{2, 1, 0.5}), b(xt::xarray<double>{0, 1, -1});
    CHECK(std::abs(xgrad::layer_norm(x, {3}, w, b).value()(0, 0) + 2.4494713718167804) < 1e-12);
    // over two trailing dimensions: the whole [2, 3] is one slice
    const auto all = xgrad::layer_norm(x, {2, 3});
    CHECK(std::abs(xt::mean(all.value())()) < 1e-12);
    CHECK(std::abs(xt::mean(xt::square(all.value()))() - 1.0) < 1e-4);
    REQUIRE_THROWS_WITH(xgrad::layer_norm(x, {2}), Contains("layer_norm") && Contains("[2, 3]") && Contains("[2]"));
    REQUIRE_THROWS_AS(xgrad::layer_norm(x, {3}, Tensor64(xt::xarray<double>{1, 1}), b), xgrad::ShapeError);
    REQUIRE_THROWS_AS(xgrad::layer_norm(x, {3}, 0.0), xgrad::ValueError);
}

TEST_CASE("layer_norm: nn::LayerNorm holds weight and bias, trains in Sequential, refuses bad shapes", "[norm][nn]") {
    xgrad::nn::LayerNorm ln({4});
    CHECK(ln.named_parameters().size() == 2);
    CHECK(xgrad::nn::LayerNorm({4}, 1e-5, false).parameters().empty());
    REQUIRE_THROWS_AS(xgrad::nn::LayerNorm(xgrad::Shape{}), xgrad::ValueError);
    xgrad::manual_seed(3);
    xgrad::nn::Sequential model({6});
    model.add(xgrad::nn::Dense(6, 4)).add(xgrad::nn::LayerNorm({4})).add(xgrad::nn::Dense(4, 2));
    CHECK(model.summary(false).find("LayerNorm") != std::string::npos);
    auto loss = xgrad::sum(model.forward(xgrad::randn<float>({5, 6})));
    loss.backward();
    for (const auto& p : model.parameters()) CHECK(p.has_grad());
}
