#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <limits>
#include <vector>

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

TEST_CASE("activation: NaN propagates through relu, leaky_relu, sigmoid, tanh and softmax", "[activation][nan]") {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    for (const auto& fn : std::vector<std::function<Tensor64(const Tensor64&)>>{
             [](const Tensor64& x) { return xgrad::relu(x); },
             [](const Tensor64& x) { return xgrad::leaky_relu(x, 0.1); },
             [](const Tensor64& x) { return xgrad::sigmoid(x); },
             [](const Tensor64& x) { return xgrad::tanh(x); }}) {
        auto y = fn(Tensor64(xt::xarray<double>{-1, nan, 2}));
        CHECK(std::isnan(y.value()(1)));
        CHECK_FALSE(std::isnan(y.value()(0)));
    }
    auto yf = xgrad::relu(Tensor(xt::xarray<float>{std::numeric_limits<float>::quiet_NaN(), -1.0f}));
    CHECK(std::isnan(yf.value()(0)));
    CHECK(yf.value()(1) == 0.0f);
    // A NaN anywhere in a row of softmax makes the whole row NaN, whatever its position.
    for (std::size_t at = 0; at < 3; ++at) {
        xt::xarray<double> v{{1, 2, 3}, {1, 2, 3}};
        v(0, at) = nan;
        auto s = xgrad::softmax(Tensor64(v)).value();
        auto ls = xgrad::log_softmax(Tensor64(v)).value();
        for (std::size_t j = 0; j < 3; ++j) {
            CHECK(std::isnan(s(0, j)));
            CHECK(std::isnan(ls(0, j)));
            CHECK_FALSE(std::isnan(s(1, j)));
        }
    }
}

TEST_CASE("activation: log_softmax stays finite for logits of any finite size, float and double",
          "[activation][traps]") {
    const float big = 3e38f;
    auto y = xgrad::log_softmax(Tensor(xt::xarray<float>{{big, -big, 0}, {-big, -big, -big}, {big, big, 1}})).value();
    for (const float v : y) CHECK(std::isfinite(v));
    CHECK(y(0, 0) == 0.0f);
    CHECK(y(1, 0) == Approx(-std::log(3.0)));
    CHECK(y(0, 1) == -std::numeric_limits<float>::max());  // -6e38 saturates at float's lowest
    CHECK(y(0, 2) == Approx(-3e38).epsilon(1e-6));          // exact where representable
    auto s = xgrad::softmax(Tensor(xt::xarray<float>{{big, -big}})).value();
    CHECK(array_diff(s, xt::xarray<double>{{1, 0}}, 0, 0) == "");
    auto y64 = xgrad::log_softmax(Tensor64(xt::xarray<double>{{1.5e308, -1.5e308}})).value();
    CHECK(std::isfinite(y64(0, 1)));
    CHECK(y64(0, 0) == 0.0);
}

TEST_CASE("activation: gelu (exact and tanh), silu, elu, softplus, hardswish and erf against reference values",
          "[activation]") {
    // PyTorch's definitions evaluated with Python's math module (erf, tanh, expm1, log1p), float64.
    const Tensor64 x(xt::xarray<double>{-4.0, -1.0, 0.0, 0.5, 1.0, 4.0});
    CHECK(array_diff(xgrad::gelu(x).value(),
                     xt::xarray<double>{-0.00012668496733247991, -0.15865525393145707, 0.0, 0.34573123063700656, 0.8413447460685429,
                                        3.9998733150326675},
                     1e-12, 1e-9) == "");
    CHECK(array_diff(xgrad::gelu(x, xgrad::Gelu::tanh).value(),
                     xt::xarray<double>{-7.024594819227126e-05, -0.15880800939172324, 0.0, 0.34571400982514394, 0.8411919906082768,
                                        3.9999297540518075},
                     1e-12, 1e-9) == "");
    CHECK(array_diff(xgrad::silu(x).value(),
                     xt::xarray<double>{-0.07194483984836625, -0.2689414213699951, 0.0, 0.31122966560092724,
                                        0.7310585786300049, 3.928055160151634}) == "");
    CHECK(array_diff(xgrad::elu(x).value(), xt::xarray<double>{-0.9816843611112658, -0.6321205588285577, 0.0, 0.5, 1.0,
                                                               4.0}) == "");
    CHECK(array_diff(xgrad::elu(x, 0.5).value(),
                     xt::xarray<double>{-0.4908421805556329, -0.31606027941427883, 0.0, 0.5, 1.0, 4.0}) == "");
    CHECK(array_diff(xgrad::softplus(x).value(),
                     xt::xarray<double>{0.01814992791780973, 0.31326168751822286, 0.6931471805599453, 0.9740769841801067,
                                        1.3132616875182228, 4.0181499279178094}) == "");
    // above the threshold softplus is x itself; far below it is e^x, without underflow to 0 early
    CHECK(xgrad::softplus(Tensor64(xt::xarray<double>{30.0})).item() == 30.0);
    CHECK(std::abs(xgrad::softplus(Tensor64(xt::xarray<double>{-30.0})).item() - 9.357622968839737e-14) < 1e-20);
    CHECK(xgrad::softplus(Tensor64(xt::xarray<double>{3.0}), 2.0, 5.0).item() == 3.0);  // βx = 6 > 5
    CHECK(array_diff(xgrad::hardswish(x).value(),
                     xt::xarray<double>{0.0, -1.0 / 3, 0.0, 0.5 * 3.5 / 6, 4.0 / 6, 4.0}) == "");
    CHECK(array_diff(xgrad::erf(x).value(), xt::xarray<double>{-0.9999999845827421, -0.8427007929497149, 0.0,
                                                               0.5204998778130465, 0.8427007929497149,
                                                               0.9999999845827421}) == "");
}

TEST_CASE("activation: the new activations pass NaN through and are layers", "[activation][nan]") {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const Tensor64 x(xt::xarray<double>{nan, 1.0});
    for (const auto& y : {xgrad::gelu(x), xgrad::gelu(x, xgrad::Gelu::tanh), xgrad::silu(x), xgrad::elu(x),
                          xgrad::softplus(x), xgrad::hardswish(x), xgrad::erf(x)}) {
        CHECK(std::isnan(y.value()(0)));
        CHECK(std::isfinite(y.value()(1)));
    }
    using xgrad::nn::Activation;
    for (auto [a, name] : {std::pair{Activation::gelu, "GELU"}, {Activation::silu, "SiLU"}, {Activation::elu, "ELU"},
                           {Activation::softplus, "Softplus"}, {Activation::hardswish, "Hardswish"},
                           {Activation::log_softmax, "LogSoftmax"}}) {
        xgrad::nn::ActivationLayer64 layer(a);
        CHECK(layer.type_name() == name);
        CHECK(layer(Tensor64(xt::xarray<double>{1.0})).item() == xgrad::nn::activate(Tensor64(xt::xarray<double>{1.0}), a).item());
    }
    xgrad::nn::Sequential model({3});
    model.add(xgrad::nn::Dense(3, 4, Activation::gelu)).add(xgrad::nn::SiLU()).add(xgrad::nn::Dense(4, 2));
    CHECK(model.summary(false).find("SiLU") != std::string::npos);
}
