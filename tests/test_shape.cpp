#include <catch2/catch.hpp>
#include <numeric>

#include "helpers.hpp"
#include "xgrad/xgrad.hpp"

using xgrad::Shape;
using xgrad::Tensor64;
using xgrad_test::array_diff;
using Catch::Matchers::Contains;

TEST_CASE("shape: reshape infers -1 and keeps the order of elements", "[shape]") {
    auto x = xgrad::arange<double>(0, 6);
    auto y = xgrad::reshape(x, {2, -1});
    CHECK(y.shape() == Shape{2, 3});
    CHECK(array_diff(y.value(), xt::xarray<double>{{0, 1, 2}, {3, 4, 5}}) == "");
}

TEST_CASE("shape: reshape of a large tensor (copied in blocks on the threads) keeps every element", "[shape]") {
    // 3 blocks of 64Ki elements and part of a fourth, and their gradient back
    const std::size_t n = 3 * 65536 + 1234;
    xgrad::Tensor x(xt::xarray<float>(xt::arange<float>(0.0f, static_cast<float>(n))), true);
    auto y = xgrad::reshape(x, {-1, 2});
    REQUIRE(y.shape() == Shape{n / 2, 2});
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < n; ++i) wrong += y.value().data()[i] != static_cast<float>(i);
    CHECK(wrong == 0);
    xt::xarray<float> gy = xt::arange<float>(0.0f, static_cast<float>(n)) * 2.0f;
    gy.reshape({n / 2, 2});
    y.backward(gy);
    for (std::size_t i = 0; i < n; ++i) wrong += x.grad().data()[i] != 2.0f * static_cast<float>(i);
    CHECK(wrong == 0);
}

TEST_CASE("shape: reshape to a different size is an error with both shapes", "[shape][errors]") {
    auto x = xgrad::zeros<double>({2, 3});
    REQUIRE_THROWS_AS(xgrad::reshape(x, {4, 2}), xgrad::ShapeError);
    REQUIRE_THROWS_WITH(xgrad::reshape(x, {4, 2}), Contains("[2, 3]") && Contains("[4, 2]"));
    REQUIRE_THROWS_WITH(xgrad::reshape(x, {-1, -1}), Contains("more than one -1"));
    REQUIRE_THROWS_WITH(xgrad::reshape(x, {4, -1}), Contains("cannot infer"));
}

TEST_CASE("shape: flatten keeps the batch axis", "[shape]") {
    CHECK(xgrad::flatten(xgrad::zeros<double>({8, 7, 7, 64})).shape() == Shape{8, 3136});
    CHECK(xgrad::flatten(xgrad::zeros<double>({5})).shape() == Shape{5, 1});
    REQUIRE_THROWS_AS(xgrad::flatten(Tensor64(xt::xarray<double>(1.0))), xgrad::ShapeError);
}

TEST_CASE("shape: permute and transpose move values", "[shape]") {
    auto x = xgrad::reshape(xgrad::arange<double>(0, 6), {1, 2, 3});
    auto p = xgrad::permute(x, {2, 0, 1});
    CHECK(p.shape() == Shape{3, 1, 2});
    CHECK(array_diff(p.value(), xt::xarray<double>{{{0, 3}}, {{1, 4}}, {{2, 5}}}) == "");
    auto m = xgrad::reshape(xgrad::arange<double>(0, 6), {2, 3});
    CHECK(array_diff(xgrad::transpose(m).value(), xt::xarray<double>{{0, 3}, {1, 4}, {2, 5}}) == "");
    CHECK(xgrad::transpose(x, 0, -1).shape() == Shape{3, 2, 1});
    REQUIRE_THROWS_WITH(xgrad::permute(x, {0, 0, 1}), Contains("appears twice"));
    REQUIRE_THROWS_AS(xgrad::permute(x, {0, 1}), xgrad::ShapeError);
}

TEST_CASE("shape: permute matches the definition on random shapes and orders: axes of size 1 and 0, merged "
          "runs, tiles with tails, large tensors on the threads", "[shape][traps]") {
    xgrad_test::Picker pick(77);
    std::size_t checked = 0;
    for (int trial = 0; trial < 300; ++trial) {
        const std::size_t dims = pick(1, 5);
        Shape shape;
        for (std::size_t d = 0; d < dims; ++d) shape.push_back(trial % 50 == 7 && d == 1 ? 0 : pick(1, trial % 10 == 3 ? 70 : 6));
        if (trial % 25 == 11) shape = dims == 1 ? Shape{300000} : Shape{3, 250, 270};  // on the threads
        std::vector<std::ptrdiff_t> order(shape.size());
        std::iota(order.begin(), order.end(), 0);
        for (std::size_t d = order.size(); d > 1; --d) std::swap(order[d - 1], order[pick(0, d - 1)]);
        auto x = xgrad::randn<double>(shape);
        const auto y = xgrad::permute(x, order);
        // the definition: y's flat index through y's multi-index to x's
        std::vector<std::size_t> x_stride(shape.size(), 1);
        for (std::size_t d = shape.size(); d-- > 1;) x_stride[d - 1] = x_stride[d] * shape[d];
        bool same = y.size() == x.size();
        for (std::size_t flat = 0; same && flat < y.size(); ++flat) {
            std::size_t at = flat, off = 0;
            for (std::size_t d = shape.size(); d-- > 0;) {
                const std::size_t size = shape[static_cast<std::size_t>(order[d])];
                off += (at % size) * x_stride[static_cast<std::size_t>(order[d])];
                at /= size;
            }
            same = y.value().data()[flat] == x.value().data()[off];
        }
        INFO("x " << xgrad::to_string(shape) << ", order " << fmt::format("{}", fmt::join(order, ", ")));
        CHECK(same);
        for (std::size_t d = 0; d < shape.size(); ++d) CHECK(y.shape()[d] == shape[static_cast<std::size_t>(order[d])]);
        ++checked;
    }
    CHECK(checked == 300);
}

TEST_CASE("shape: broadcast_to matches the definition: axes of size 1 anywhere, missing leading axes, a "
          "scalar, large outputs on the threads", "[shape][traps]") {
    xgrad_test::Picker pick(78);
    for (int trial = 0; trial < 200; ++trial) {
        const std::size_t dims = pick(1, 4);
        Shape to;
        for (std::size_t d = 0; d < dims; ++d) to.push_back(pick(1, trial % 20 == 5 ? 300 : 5));
        Shape from;
        const std::size_t skip = trial % 3 == 0 ? pick(0, dims) : 0;  // missing leading axes
        for (std::size_t d = skip; d < dims; ++d) from.push_back(pick(0, 2) == 0 ? 1 : to[d]);
        const auto x = xgrad::randn<double>(from);
        const auto y = xgrad::broadcast_to(x, to);
        REQUIRE(y.shape() == to);
        bool same = true;
        for (std::size_t flat = 0; same && flat < y.size(); ++flat) {
            std::size_t at = flat, off = 0, step = 1;
            for (std::size_t k = 0; k < dims; ++k) {
                const std::size_t d = dims - 1 - k, i = at % to[d];
                at /= to[d];
                if (k < from.size()) {
                    const std::size_t fd = from.size() - 1 - k;
                    off += (from[fd] == 1 ? 0 : i) * step;
                    step *= from[fd];
                }
            }
            same = y.value().data()[flat] == x.value().data()[off];
        }
        INFO("from " << xgrad::to_string(from) << " to " << xgrad::to_string(to));
        CHECK(same);
    }
}

TEST_CASE("shape: concat joins along an axis and splits the gradient", "[shape]") {
    Tensor64 a(xt::xarray<double>{{1, 2}, {3, 4}}, true);
    Tensor64 b(xgrad_test::column({5, 6}), true);
    auto y = xgrad::concat<double>({a, b}, 1);
    CHECK(array_diff(y.value(), xt::xarray<double>{{1, 2, 5}, {3, 4, 6}}) == "");
    y.backward(xt::xarray<double>{{1, 2, 3}, {4, 5, 6}});
    CHECK(array_diff(a.grad(), xt::xarray<double>{{1, 2}, {4, 5}}) == "");
    CHECK(array_diff(b.grad(), xgrad_test::column({3, 6})) == "");
}

TEST_CASE("shape: concat of mismatched shapes prints every shape", "[shape][errors]") {
    auto a = xgrad::zeros<double>({2, 2});
    auto b = xgrad::zeros<double>({3, 1});
    REQUIRE_THROWS_AS(xgrad::concat<double>({a, b}, 1), xgrad::ShapeError);
    REQUIRE_THROWS_WITH(xgrad::concat<double>({a, b}, 1), Contains("[2, 2], [3, 1]"));
    REQUIRE_THROWS_AS(xgrad::concat<double>({}, 0), xgrad::ValueError);
}
