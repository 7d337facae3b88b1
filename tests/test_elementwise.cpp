#include <catch2/catch.hpp>

#include <random>

#include "helpers.hpp"
#include "xgrad/xgrad.hpp"

using xgrad::Shape;
using xgrad::Tensor;
using xgrad::Tensor64;
using xgrad_test::array_diff;
using Catch::Matchers::Contains;

TEST_CASE("elementwise: arithmetic by hand", "[elementwise]") {
    Tensor64 a(xt::xarray<double>{1, 2, 4});
    Tensor64 b(xt::xarray<double>{2, 2, 2});
    CHECK(array_diff((a + b).value(), xt::xarray<double>{3, 4, 6}) == "");
    CHECK(array_diff((a - b).value(), xt::xarray<double>{-1, 0, 2}) == "");
    CHECK(array_diff((a * b).value(), xt::xarray<double>{2, 4, 8}) == "");
    CHECK(array_diff((a / b).value(), xt::xarray<double>{0.5, 1, 2}) == "");
    CHECK(array_diff(xgrad::pow(a, b).value(), xt::xarray<double>{1, 4, 16}) == "");
    CHECK(array_diff(xgrad::pow(a, 0.5).value(), xt::xarray<double>{1, std::sqrt(2.0), 2}) == "");
    CHECK(array_diff((-a).value(), xt::xarray<double>{-1, -2, -4}) == "");
    CHECK(array_diff(xgrad::sqrt(a).value(), xt::xarray<double>{1, std::sqrt(2.0), 2}) == "");
    CHECK(array_diff(xgrad::square(a).value(), xt::xarray<double>{1, 4, 16}) == "");
    CHECK(array_diff(xgrad::abs(Tensor64(xt::xarray<double>{-3, 0, 2})).value(), xt::xarray<double>{3, 0, 2}) == "");
    CHECK(array_diff(xgrad::exp(Tensor64(xt::xarray<double>{0, 1})).value(), xt::xarray<double>{1, std::exp(1.0)}) == "");
    CHECK(array_diff(xgrad::log(a).value(), xt::xarray<double>{0, std::log(2.0), std::log(4.0)}) == "");
}

TEST_CASE("elementwise: scalar operands on either side", "[elementwise]") {
    Tensor x(xt::xarray<float>{1, 2});
    CHECK(array_diff((x + 1.0f).value(), xt::xarray<float>{2, 3}) == "");
    CHECK(array_diff((10.0f - x).value(), xt::xarray<float>{9, 8}) == "");
    CHECK(array_diff((x * 3.0f).value(), xt::xarray<float>{3, 6}) == "");
    CHECK(array_diff((2.0f / x).value(), xt::xarray<float>{2, 1}) == "");
}

TEST_CASE("elementwise: broadcasting follows numpy and sums gradients back", "[elementwise]") {
    Tensor64 a(xt::xarray<double>{{1, 2, 3}, {4, 5, 6}}, true);  // [2, 3]
    Tensor64 b(xt::xarray<double>{10, 20, 30}, true);            // [3]
    Tensor64 c(xgrad_test::column({1, 2}), true);              // [2, 1]
    auto y = (a + b) * c;
    CHECK(y.shape() == Shape{2, 3});
    CHECK(array_diff(y.value(), xt::xarray<double>{{11, 22, 33}, {28, 50, 72}}) == "");
    xgrad::sum(y).backward();
    CHECK(array_diff(a.grad(), xt::xarray<double>{{1, 1, 1}, {2, 2, 2}}) == "");
    CHECK(array_diff(b.grad(), xt::xarray<double>{3, 3, 3}) == "");
    CHECK(array_diff(c.grad(), xgrad_test::column({66, 75})) == "");
}

TEST_CASE("elementwise: shapes that cannot broadcast name the op and both shapes", "[elementwise][errors]") {
    Tensor a(xt::zeros<float>({2, 3}));
    Tensor b(xt::zeros<float>({4}));
    REQUIRE_THROWS_AS(a + b, xgrad::ShapeError);
    REQUIRE_THROWS_WITH(a * b, Contains("mul:") && Contains("[2, 3]") && Contains("[4]"));
    REQUIRE_THROWS_WITH(xgrad::pow(a, b), Contains("pow:"));
}

TEST_CASE("elementwise: gradients by hand", "[elementwise]") {
    Tensor64 a(xt::xarray<double>{2.0}, true), b(xt::xarray<double>{4.0}, true);
    xgrad::sum(a / b + xgrad::pow(a, b)).backward();
    // d/da = 1/b + b a^(b-1) = 0.25 + 32; d/db = -a/b² + a^b ln a = -0.125 + 16 ln 2
    CHECK(array_diff(a.grad(), xt::xarray<double>{32.25}) == "");
    CHECK(array_diff(b.grad(), xt::xarray<double>{-0.125 + 16 * std::log(2.0)}) == "");
}

TEST_CASE("elementwise: maximum, minimum, clamp and where, values and gradients by hand", "[elementwise]") {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    Tensor64 a(xt::xarray<double>{1.0, 5.0, 2.0, nan}, true), b(xt::xarray<double>{3.0, 4.0, 2.0, 0.0}, true);
    auto y = xgrad::maximum(a, b);
    CHECK(array_diff(y.value(), xt::xarray<double>{3.0, 5.0, 2.0, nan}) == "");
    CHECK(std::isnan(xgrad::minimum(b, a).value()(3)));
    CHECK(array_diff(xgrad::minimum(a, b).value(), xt::xarray<double>{1.0, 4.0, 2.0, nan}) == "");
    xgrad::sum(y * Tensor64(xt::xarray<double>{1.0, 1.0, 1.0, 0.0})).backward();
    // the tie (2, 2) splits the gradient in half
    CHECK(array_diff(a.grad(), xt::xarray<double>{0.0, 1.0, 0.5, 0.0}) == "");
    CHECK(array_diff(b.grad(), xt::xarray<double>{1.0, 0.0, 0.5, 0.0}) == "");

    Tensor64 x(xt::xarray<double>{-2.0, -0.5, 0.0, 0.5, 2.0}, true);
    auto c = xgrad::clamp(x, -0.5, 0.5);
    CHECK(array_diff(c.value(), xt::xarray<double>{-0.5, -0.5, 0.0, 0.5, 0.5}) == "");
    xgrad::sum(c).backward();
    CHECK(array_diff(x.grad(), xt::xarray<double>{0.0, 1.0, 1.0, 1.0, 0.0}) == "");  // the bounds pass it
    REQUIRE_THROWS_AS(xgrad::clamp(x, 1.0, -1.0), xgrad::ValueError);

    Tensor64 p(xt::xarray<double>{{1.0, 2.0}, {3.0, 4.0}}, true), q(xt::xarray<double>{10.0, 20.0}, true);
    xt::xarray<bool> cond = xt::xarray<bool>{true, false};
    cond.reshape({2, 1});  // rows: take p in row 0, q in row 1
    auto w = xgrad::where(cond, p, q);
    CHECK(array_diff(w.value(), xt::xarray<double>{{1.0, 2.0}, {10.0, 20.0}}) == "");
    xgrad::sum(w).backward();
    CHECK(array_diff(p.grad(), xt::xarray<double>{{1.0, 1.0}, {0.0, 0.0}}) == "");
    CHECK(array_diff(q.grad(), xt::xarray<double>{1.0, 1.0}) == "");
    REQUIRE_THROWS_AS(xgrad::where(xt::xarray<bool>{true, false, true}, p, q), xgrad::ShapeError);
}

TEST_CASE("add, sub, mul, div: every broadcast pattern gives xtensor's numbers", "[elementwise][broadcast]") {
    std::mt19937 rng(9);
    auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    for (int trial = 0; trial < 300; ++trial) {
        // an output shape of rank 1-5 with lengths 1-4 (0 now and then), and two operands that
        // keep each axis or broadcast it (or drop leading axes)
        const int rank = pick(1, 5);
        Shape out;
        for (int i = 0; i < rank; ++i) out.push_back(static_cast<std::size_t>(trial % 37 == 0 && i == 1 ? 0 : pick(1, 4)));
        auto operand = [&] {
            Shape s;
            const int drop = pick(0, rank - 1);
            for (int i = drop; i < rank; ++i) s.push_back(pick(0, 2) == 0 ? 1 : out[static_cast<std::size_t>(i)]);
            return s;
        };
        const Shape sa = operand(), sb = operand();
        INFO("a " << xgrad::to_string(sa) << ", b " << xgrad::to_string(sb));
        xgrad::manual_seed(static_cast<std::uint64_t>(trial));
        const auto a = xgrad::randn<double>(sa), b = xgrad::randn<double>(sb);
        CHECK(array_diff(xgrad::add(a, b).value(), xt::xarray<double>(a.value() + b.value()), 0, 0) == "");
        CHECK(array_diff(xgrad::sub(a, b).value(), xt::xarray<double>(a.value() - b.value()), 0, 0) == "");
        CHECK(array_diff(xgrad::mul(b, a).value(), xt::xarray<double>(b.value() * a.value()), 0, 0) == "");
        CHECK(array_diff(xgrad::div(a, b).value(), xt::xarray<double>(a.value() / b.value()), 0, 0) == "");
    }
    // above the parallel threshold (64Ki elements): rows split between threads mid-axis
    for (const auto& [sa, sb] : std::vector<std::pair<Shape, Shape>>{{{301, 7, 41}, {301, 1, 41}},
                                                                       {{301, 7, 41}, {7, 1}},
                                                                       {{3, 301, 2, 47}, {3, 1, 2, 1}},
                                                                       {{90000}, {90000}}}) {
        INFO("a " << xgrad::to_string(sa) << ", b " << xgrad::to_string(sb));
        const auto a = xgrad::randn<double>(sa), b = xgrad::randn<double>(sb);
        CHECK(array_diff(xgrad::mul(a, b).value(), xt::xarray<double>(a.value() * b.value()), 0, 0) == "");
        CHECK(array_diff(xgrad::sub(b, a).value(), xt::xarray<double>(b.value() - a.value()), 0, 0) == "");
    }
}
