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

TEST_CASE("group_norm: each (sample, group) normalised over positions and its channels, affine per channel",
          "[norm]") {
    xgrad::manual_seed(5);
    const auto x = xgrad::randn<double>({2, 3, 4, 6});
    const auto w = xgrad::randn<double>({6}), b = xgrad::randn<double>({6});
    const auto y = xgrad::group_norm(x, 3, w, b);
    // the definition: groups of two consecutive channels, biased variance, eps 1e-5
    xt::xarray<double> expect = xt::zeros<double>(x.shape());
    for (std::size_t i = 0; i < 2; ++i)
        for (std::size_t g = 0; g < 3; ++g) {
            double s = 0, ss = 0;
            for (std::size_t p = 0; p < 12; ++p)
                for (std::size_t j = 2 * g; j < 2 * g + 2; ++j) s += x.value()(i, p / 4, p % 4, j);
            const double m = s / 24;
            for (std::size_t p = 0; p < 12; ++p)
                for (std::size_t j = 2 * g; j < 2 * g + 2; ++j) ss += std::pow(x.value()(i, p / 4, p % 4, j) - m, 2);
            for (std::size_t p = 0; p < 12; ++p)
                for (std::size_t j = 2 * g; j < 2 * g + 2; ++j)
                    expect(i, p / 4, p % 4, j) =
                        (x.value()(i, p / 4, p % 4, j) - m) / std::sqrt(ss / 24 + 1e-5) * w.value()(j) + b.value()(j);
        }
    CHECK(array_diff(y.value(), expect, 1e-12) == "");
    // one group is layer_norm over everything but the batch; one group per channel is instance_norm
    CHECK(array_diff(xgrad::group_norm(x, 1).value(), xgrad::layer_norm(x, {3, 4, 6}).value(), 1e-12) == "");
    CHECK(array_diff(xgrad::group_norm(x, 6, w, b).value(), xgrad::instance_norm(x, w, b).value(), 1e-12) == "");
    // float32 keeps x̂'s digits under a large mean
    const xgrad::Tensor xf(xt::xarray<float>(x.value() * 1e-3 + 1000.0));
    const Tensor64 xd(xt::xarray<double>(xt::xarray<float>(x.value() * 1e-3 + 1000.0)));
    CHECK(array_diff(xt::xarray<double>(xgrad::group_norm(xf, 3, 1e-12).value()), xgrad::group_norm(xd, 3, 1e-12).value(),
                     2e-3) == "");
}

TEST_CASE("group_norm: typed errors naming the op and every shape; empty batches", "[norm][errors]") {
    const auto x = xgrad::zeros<double>({2, 3, 3, 6});
    REQUIRE_THROWS_WITH(xgrad::group_norm(x, 4), Contains("group_norm: groups must divide the channels 6") &&
                                                     Contains("x [2, 3, 3, 6], groups 4"));
    REQUIRE_THROWS_AS(xgrad::group_norm(x, 0), xgrad::ValueError);
    REQUIRE_THROWS_WITH(xgrad::group_norm(x, 3, xgrad::ones<double>({3}), xgrad::zeros<double>({3})),
                        Contains("weight and bias must be [C] = [6]") && Contains("weight [3], bias [3]"));
    REQUIRE_THROWS_AS(xgrad::group_norm(xgrad::zeros<double>({6}), 3), xgrad::ShapeError);
    REQUIRE_THROWS_AS(xgrad::group_norm(x, 3, -1.0), xgrad::ValueError);
    REQUIRE_THROWS_WITH(xgrad::instance_norm(xgrad::zeros<double>({2, 3, 0})), Contains("instance_norm"));
    CHECK(xgrad::group_norm(xgrad::zeros<double>({0, 3, 3, 6}), 3).shape() == xgrad::Shape{0, 3, 3, 6});
    // a constant group normalises to zero, not NaN
    const auto y = xgrad::group_norm(xgrad::ones<double>({1, 2, 2, 4}), 2);
    CHECK(array_diff(y.value(), xt::zeros<double>({1, 2, 2, 4})) == "");
}

TEST_CASE("group_norm: nn::GroupNorm and nn::InstanceNorm hold PyTorch's parameters and train in Sequential",
          "[norm][nn]") {
    xgrad::nn::GroupNorm gn(4, 8);
    CHECK(gn.named_parameters().size() == 2);
    CHECK(gn.weight.shape() == xgrad::Shape{8});
    CHECK(xgrad::nn::GroupNorm(2, 8, 1e-5, false).parameters().empty());
    CHECK(xgrad::nn::InstanceNorm(8).parameters().empty());  // PyTorch's default: affine = false
    CHECK(xgrad::nn::InstanceNorm(8, 1e-5, true).parameters().size() == 2);
    REQUIRE_THROWS_AS(xgrad::nn::GroupNorm(3, 8), xgrad::ValueError);
    REQUIRE_THROWS_AS(xgrad::nn::InstanceNorm(0), xgrad::ValueError);
    REQUIRE_THROWS_WITH(xgrad::nn::InstanceNorm(8)(xgrad::zeros({1, 2, 2, 4})), Contains("InstanceNorm") &&
                                                                                  Contains("[1, 2, 2, 4]"));
    xgrad::manual_seed(3);
    xgrad::nn::Sequential model({5, 5, 2});
    model.add(xgrad::nn::Conv2D(2, 8, 3, {.padding = xgrad::Padding::same}))
        .add(xgrad::nn::GroupNorm(4, 8))
        .add(xgrad::nn::InstanceNorm(8, 1e-5, true))
        .add(xgrad::nn::Flatten())
        .add(xgrad::nn::Dense(200, 2));
    const auto s = model.summary(false);
    CHECK_THAT(s, Contains("GroupNorm") && Contains("InstanceNorm"));
    auto loss = xgrad::sum(xgrad::square(model.forward(xgrad::randn<float>({3, 5, 5, 2}))));
    loss.backward();
    for (const auto& p : model.parameters()) CHECK(p.has_grad());
}

TEST_CASE("layer_norm, group_norm: an empty batch gives an empty output and zero parameter gradients", "[norm][traps]") {
    Tensor64 x(xt::xarray<double>(xt::zeros<double>({0, 4, 4, 6})), true), w(xt::xarray<double>(xt::ones<double>({6})), true),
        b(xt::xarray<double>(xt::zeros<double>({6})), true);
    auto y = xgrad::group_norm(x, 3, w, b) + xgrad::layer_norm(x, {6}, w, b);
    CHECK(y.shape() == x.shape());
    xgrad::sum(y).backward();
    CHECK(x.grad().shape() == x.shape());
    CHECK(array_diff(w.grad(), xt::zeros<double>({6})) == "");
    CHECK(array_diff(b.grad(), xt::zeros<double>({6})) == "");
    // and a batch norm in evaluation mode (training refuses a batch with one value or none)
    Tensor64 mean(xt::xarray<double>(xt::zeros<double>({6}))), var(xt::xarray<double>(xt::ones<double>({6})));
    CHECK(xgrad::batch_norm(x, w, b, mean, var, false).shape() == x.shape());
}
