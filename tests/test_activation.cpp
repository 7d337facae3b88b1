#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "helpers.hpp"
#include "kernels/math.hpp"
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

namespace {

// |got - want| in units of the last place of want rounded to T (subnormal ulps below T's
// smallest normal).
template <class T>
double ulps(T got, long double want) {
    const T w = static_cast<T>(want);
    if (std::isinf(w)) return got == w ? 0 : INFINITY;  // overflow: the limit itself
    const long double ulp =
        std::fabs(w) < std::numeric_limits<T>::min()
            ? std::numeric_limits<T>::denorm_min()
            : std::fabs(static_cast<long double>(std::nextafter(w, std::numeric_limits<T>::infinity())) - w);
    return static_cast<double>(std::fabs(static_cast<long double>(got) - want) / ulp);
}

template <class T>
void check_math_kernels(T lo, T hi) {
    std::mt19937_64 rng(5);
    std::uniform_real_distribution<double> u(static_cast<double>(lo), static_cast<double>(hi));
    double worst_exp = 0, worst_tanh = 0;
    for (int i = 0; i < 200000; ++i) {
        // uniform over the range, and every fourth one small (down to 2^-40)
        const T x = static_cast<T>(i % 4 ? u(rng) : std::ldexp(u(rng) / static_cast<double>(hi), -(i % 41)));
        worst_exp = std::max(worst_exp, ulps(xgrad::kernels::math::exp(x), std::exp(static_cast<long double>(x))));
        worst_tanh = std::max(worst_tanh, ulps(xgrad::kernels::math::tanh(x), std::tanh(static_cast<long double>(x))));
    }
    CHECK(worst_exp <= 1.1);
    CHECK(worst_tanh <= 3.0);
    using L = std::numeric_limits<T>;
    for (const T x : {T(0), -T(0), L::infinity(), -L::infinity(), L::quiet_NaN(), L::max(), -L::max(), L::min(),
                      L::denorm_min(), -L::denorm_min(), std::log(L::max()), std::nextafter(std::log(L::max()), T(0)),
                      std::log(L::min()), std::log(L::denorm_min()), std::log(L::denorm_min()) - T(1), T(20), T(-20)}) {
        INFO("x = " << x);
        const T e = xgrad::kernels::math::exp(x), t = xgrad::kernels::math::tanh(x);
        const T want_e = std::exp(x), want_t = std::tanh(x);
        if (std::isnan(x)) {
            CHECK(std::isnan(e));
            CHECK(std::isnan(t));
            continue;
        }
        CHECK(ulps(e, std::exp(static_cast<long double>(x))) <= 1.1);  // overflow to inf, subnormals, 0
        CHECK(std::isinf(e) == std::isinf(want_e));
        CHECK(std::signbit(t) == std::signbit(want_t));
        CHECK(ulps(t, std::tanh(static_cast<long double>(x))) <= 3.0);
    }
}

}  // namespace

TEST_CASE("math kernels: exp within 1.1 ulp and tanh within 3 of the correctly rounded value, limits and "
          "subnormals included, float and double", "[activation][math]") {
    check_math_kernels<float>(-110.0f, 95.0f);
    check_math_kernels<float>(-2.0f, 2.0f);
    check_math_kernels<double>(-750.0, 712.0);
    check_math_kernels<double>(-2.0, 2.0);
}

TEST_CASE("activation: exp, tanh, sigmoid, silu, gelu (tanh), softmax and log_softmax of large tensors (on "
          "the threads, in vectors) match the long double definitions", "[activation][math]") {
    // 70001 values (more than the parallel threshold, an odd tail), in float and double; softmax
    // along the last axis and along a middle one.
    xgrad::manual_seed(12);
    const xt::xarray<double> v = 6.0 * xgrad::randn<double>({7, 73, 137}).value();
    const auto check_all = [&](auto x, double tol) {
        using L = long double;
        const auto each = [&](auto f) {
            xt::xarray<double> r = xt::empty<double>(v.shape());
            for (std::size_t i = 0; i < v.size(); ++i) r.data()[i] = static_cast<double>(f(static_cast<L>(x.value().data()[i])));
            return r;
        };
        const L c = std::sqrt(L(2) / std::acos(L(-1)));
        CHECK(array_diff(xgrad::exp(x).value(), each([](L a) { return std::exp(a); }), 0, tol) == "");
        CHECK(array_diff(xgrad::tanh(x).value(), each([](L a) { return std::tanh(a); }), 0, tol) == "");
        CHECK(array_diff(xgrad::sigmoid(x).value(), each([](L a) { return 1 / (1 + std::exp(-a)); }), 0, tol) == "");
        CHECK(array_diff(xgrad::silu(x).value(), each([](L a) { return a / (1 + std::exp(-a)); }), 0, tol) == "");
        // 1 + tanh cancels for large negative x: within |x| ulp(1), as any formula of this form
        CHECK(array_diff(xgrad::gelu(x, xgrad::Gelu::tanh).value(),
                         each([c](L a) { return a / 2 * (1 + std::tanh(c * (a + L(0.044715) * a * a * a))); }),
                         30 * tol, tol) == "");
        for (const std::ptrdiff_t axis : {2, 1}) {
            INFO("axis " << axis);
            xt::xarray<double> lse = xt::zeros<double>(v.shape());
            for (std::size_t i = 0; i < 7; ++i)
                for (std::size_t j = 0; j < 73; ++j)
                    for (std::size_t k = 0; k < 137; ++k) {
                        L m = -INFINITY, s = 0;
                        for (std::size_t a = 0; a < (axis == 2 ? 137 : 73); ++a)
                            m = std::max(m, static_cast<L>(axis == 2 ? x.value()(i, j, a) : x.value()(i, a, k)));
                        for (std::size_t a = 0; a < (axis == 2 ? 137 : 73); ++a)
                            s += std::exp(static_cast<L>(axis == 2 ? x.value()(i, j, a) : x.value()(i, a, k)) - m);
                        lse(i, j, k) = static_cast<double>(static_cast<L>(x.value()(i, j, k)) - m - std::log(s));
                    }
            CHECK(array_diff(xgrad::log_softmax(x, axis).value(), lse, tol, tol) == "");  // near 0 too
            CHECK(array_diff(xgrad::softmax(x, axis).value(), xt::xarray<double>(xt::exp(lse)), 0, tol) == "");
        }
    };
    check_all(Tensor(xt::xarray<float>(xt::cast<float>(v))), 1e-6);
    check_all(Tensor64(v), 1e-14);
    // NaN and ±inf inside the vector loops and in their tails
    xt::xarray<float> special = xt::cast<float>(v);
    const std::size_t at[] = {5, 16, 4099, 70000};
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    for (std::size_t i = 0; i < 4; ++i) special.data()[at[i]] = nan;
    special.data()[33] = inf;
    special.data()[69999] = -inf;
    const Tensor x(special);
    for (const auto& y : {xgrad::exp(x), xgrad::tanh(x), xgrad::sigmoid(x), xgrad::silu(x), xgrad::gelu(x, xgrad::Gelu::tanh)})
        for (std::size_t i = 0; i < 4; ++i) CHECK(std::isnan(y.value().data()[at[i]]));
    CHECK(xgrad::exp(x).value().data()[33] == inf);
    CHECK(xgrad::exp(x).value().data()[69999] == 0);
    CHECK(xgrad::tanh(x).value().data()[33] == 1);
    CHECK(xgrad::tanh(x).value().data()[69999] == -1);
    CHECK(xgrad::sigmoid(x).value().data()[33] == 1);
    CHECK(xgrad::sigmoid(x).value().data()[69999] == 0);
}
