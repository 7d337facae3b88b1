#include <catch2/catch.hpp>

#include <numeric>
#include <sstream>

#include "helpers.hpp"
#include "xgrad/xgrad.hpp"

using xgrad::Shape;
using xgrad::Tensor;
using xgrad::Tensor64;
using xgrad_test::array_diff;
using Catch::Matchers::Contains;

TEST_CASE("tensor: wraps an xarray and reports its shape, rank and size", "[tensor]") {
    Tensor x(xt::xarray<float>{{1, 2, 3}, {4, 5, 6}});
    CHECK(x.shape() == Shape{2, 3});
    CHECK(x.dim() == 2);
    CHECK(x.size() == 6);
    CHECK_FALSE(x.requires_grad());
    CHECK(x.is_leaf());
    CHECK(x.value()(1, 2) == 6.0f);
}

TEST_CASE("tensor: copies are handles to the same tensor", "[tensor]") {
    Tensor64 a(xt::xarray<double>{1.0, 2.0});
    Tensor64 b = a;
    b.mutable_value()(0) = 7.0;
    CHECK(a.value()(0) == 7.0);
}

TEST_CASE("tensor: factories give the shapes and values asked for", "[tensor]") {
    CHECK(array_diff(xgrad::zeros({2, 2}).value(), xt::xarray<float>{{0, 0}, {0, 0}}) == "");
    CHECK(array_diff(xgrad::ones<double>({3}).value(), xt::xarray<double>{1, 1, 1}) == "");
    CHECK(array_diff(xgrad::full<double>({2}, 2.5).value(), xt::xarray<double>{2.5, 2.5}) == "");
    CHECK(array_diff(xgrad::arange<double>(0, 1, 0.25).value(), xt::xarray<double>{0, 0.25, 0.5, 0.75}) == "");
    CHECK(xgrad::arange<float>(3, 1).size() == 0);
    CHECK(xgrad::ones({2}, true).requires_grad());
}

TEST_CASE("tensor: rand and randn repeat after manual_seed", "[tensor]") {
    xgrad::manual_seed(3);
    const auto a = xgrad::randn<double>({4, 4});
    const auto u = xgrad::rand({100});
    xgrad::manual_seed(3);
    CHECK(array_diff(xgrad::randn<double>({4, 4}).value(), a.value(), 0, 0) == "");
    CHECK(array_diff(xgrad::rand({100}).value(), u.value(), 0, 0) == "");
    CHECK(xt::amin(u.value())() >= 0.0f);
    CHECK(xt::amax(u.value())() < 1.0f);
    CHECK(xgrad::randn<double>({4, 4}).value() != a.value());
}

TEST_CASE("tensor: item reads a size-1 tensor and rejects others", "[tensor][errors]") {
    CHECK(xgrad::full<float>({1, 1}, 4.0f).item() == 4.0f);
    REQUIRE_THROWS_AS(Tensor(xt::xarray<float>{1, 2}).item(), xgrad::ValueError);
    REQUIRE_THROWS_WITH(Tensor(xt::xarray<float>{1, 2}).item(), Contains("item") && Contains("[2]"));
}

TEST_CASE("tensor: grad of a tensor without one is a clear error", "[tensor][errors]") {
    Tensor64 x(xt::xarray<double>{1, 2});
    REQUIRE_THROWS_AS(x.grad(), xgrad::ValueError);
    REQUIRE_THROWS_WITH(x.grad(), Contains("does not require grad"));
    x.set_requires_grad(true);
    REQUIRE_THROWS_WITH(x.grad(), Contains("backward() has not reached it"));
}

TEST_CASE("tensor: an undefined handle throws instead of crashing", "[tensor][errors]") {
    Tensor x;
    CHECK_FALSE(x.defined());
    REQUIRE_THROWS_AS(x.shape(), xgrad::ValueError);
    REQUIRE_THROWS_AS(x.value(), xgrad::ValueError);
}

TEST_CASE("tensor: detach gives a leaf copy without gradient", "[tensor]") {
    Tensor64 x(xt::xarray<double>{1, 2}, true);
    auto y = x * 3.0;
    auto d = y.detach();
    CHECK(d.is_leaf());
    CHECK_FALSE(d.requires_grad());
    CHECK(array_diff(d.value(), xt::xarray<double>{3, 6}) == "");
}

TEST_CASE("tensor: set_requires_grad refuses a recorded tensor", "[tensor][errors]") {
    Tensor64 x(xt::xarray<double>{1, 2}, true);
    auto y = x * 2.0;
    REQUIRE_THROWS_AS(y.set_requires_grad(false), xgrad::ValueError);
}

TEST_CASE("tensor: shapes print as [a, b]", "[tensor]") {
    CHECK(xgrad::to_string(Shape{8, 28, 28, 3}) == "[8, 28, 28, 3]");
    CHECK(xgrad::to_string(Shape{}) == "[]");
}

TEST_CASE("tensor: from_vector and to_vector without xtensor; printing nests values and abbreviates large tensors",
          "[tensor]") {
    const auto t = xgrad::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3}, true);
    CHECK(t.shape() == xgrad::Shape{2, 3});
    CHECK(t.value()(1, 0) == 4);
    CHECK(xgrad::to_vector(t) == std::vector<float>{1, 2, 3, 4, 5, 6});
    CHECK(t.requires_grad());
    REQUIRE_THROWS_WITH(xgrad::from_vector<float>({1, 2, 3}, {2, 2}), Contains("3 values for shape [2, 2]"));
    CHECK(xgrad::to_string(t) == "tensor([2, 3], float32, requires_grad)\n[[1, 2, 3],\n [4, 5, 6]]");
    std::ostringstream os;
    os << xgrad::Tensor64(xt::xarray<double>(0.25));
    CHECK(os.str() == "tensor([], float64)\n0.25");
    CHECK(xgrad::to_string(xgrad::Tensor()) == "tensor(undefined)");
    // 2 x 1000 values: rows of 3 + ... + 3.
    std::vector<float> values(2000);
    std::iota(values.begin(), values.end(), 0.0f);
    const auto big = xgrad::to_string(xgrad::from_vector(values, {2, 1000}));
    CHECK(big == "tensor([2, 1000], float32)\n[[0, 1, 2, ..., 997, 998, 999],\n [1000, 1001, 1002, ..., 1997, 1998, 1999]]");
    const auto cube = xgrad::to_string(xgrad::zeros({8, 8, 20}));
    CHECK(cube.find("...,\n") != std::string::npos);
    CHECK(cube.size() < 1200);  // 1280 values in full would take ~4000 characters
}
