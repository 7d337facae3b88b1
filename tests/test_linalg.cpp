#include <catch2/catch.hpp>
#include <xtensor-blas/xlinalg.hpp>

#include "helpers.hpp"
#include "xgrad/xgrad.hpp"

using xgrad::Shape;
using xgrad::Tensor;
using xgrad::Tensor64;
using xgrad_test::array_diff;
using Catch::Matchers::Contains;
using Catch::Matchers::Equals;

TEST_CASE("matmul: a 2x3 by 3x2 product by hand", "[linalg]") {
    Tensor64 a(xt::xarray<double>{{1, 2, 3}, {4, 5, 6}});
    Tensor64 b(xt::xarray<double>{{7, 8}, {9, 10}, {11, 12}});
    CHECK(array_diff(xgrad::matmul(a, b).value(), xt::xarray<double>{{58, 64}, {139, 154}}) == "");
}

TEST_CASE("matmul: float32 agrees with xtensor-blas on a larger product", "[linalg]") {
    xgrad::manual_seed(1);
    auto a = xgrad::randn({37, 53});
    auto b = xgrad::randn({53, 29});
    xt::xarray<float> expected = xt::linalg::dot(a.value(), b.value());
    CHECK(array_diff(xgrad::matmul(a, b).value(), expected, 1e-4, 1e-4) == "");
}

TEST_CASE("matmul: batched and shared-weight shapes", "[linalg]") {
    auto a = xgrad::ones<double>({4, 2, 3});
    CHECK(xgrad::matmul(a, xgrad::ones<double>({4, 3, 5})).shape() == Shape{4, 2, 5});
    auto y = xgrad::matmul(a, xgrad::ones<double>({3, 5}));
    CHECK(y.shape() == Shape{4, 2, 5});
    CHECK(xt::all(xt::equal(y.value(), 3.0)));
}

TEST_CASE("matmul: mismatched shapes name the op and both shapes", "[linalg][errors]") {
    REQUIRE_THROWS_WITH(xgrad::matmul(xgrad::zeros({2, 3}), xgrad::zeros({4, 5})),
                        Equals("matmul: inner dimensions differ; a [2, 3], b [4, 5]"));
    REQUIRE_THROWS_AS(xgrad::matmul(xgrad::zeros({2, 2, 3}), xgrad::zeros({3, 3, 5})), xgrad::ShapeError);
    REQUIRE_THROWS_WITH(xgrad::matmul(xgrad::zeros({3}), xgrad::zeros({3, 5})), Contains("at least 2-D"));
}

TEST_CASE("linear: x·w + b by hand, with its gradients", "[linalg]") {
    Tensor64 x(xt::xarray<double>{{1, 2}, {3, 4}}, true);
    Tensor64 w(xt::xarray<double>{{1, 0, 2}, {0, 1, 3}}, true);
    Tensor64 b(xt::xarray<double>{10, 20, 30}, true);
    auto y = xgrad::linear(x, w, b);
    CHECK(array_diff(y.value(), xt::xarray<double>{{11, 22, 38}, {13, 24, 48}}) == "");
    xgrad::sum(y).backward();
    CHECK(array_diff(x.grad(), xt::xarray<double>{{3, 4}, {3, 4}}) == "");
    CHECK(array_diff(w.grad(), xt::xarray<double>{{4, 4, 4}, {6, 6, 6}}) == "");
    CHECK(array_diff(b.grad(), xt::xarray<double>{2, 2, 2}) == "");
}

TEST_CASE("linear: bad shapes print x, w and b", "[linalg][errors]") {
    auto x = xgrad::zeros({8, 3});
    REQUIRE_THROWS_WITH(xgrad::linear(x, xgrad::zeros({4, 2}), xgrad::zeros({2})),
                        Contains("x has 3 features but w expects 4") && Contains("x [8, 3], w [4, 2], b [2]"));
    REQUIRE_THROWS_WITH(xgrad::linear(x, xgrad::zeros({3, 2}), xgrad::zeros({3})), Contains("b must be [out]"));
    REQUIRE_THROWS_AS(xgrad::linear(xgrad::zeros({8, 1, 3}), xgrad::zeros({2, 3})), xgrad::ShapeError);
    REQUIRE_THROWS_AS(xgrad::linear(xgrad::zeros({3}), xgrad::zeros({3, 2, 1})), xgrad::ShapeError);
}

TEST_CASE("matmul and linear: an inner dimension of 0 gives zeros (an empty sum), not old memory", "[linalg][traps]") {
    // Fill the scratch pool and the heap with non-zero garbage first, so that uninitialised
    // results would show.
    for (int i = 0; i < 4; ++i) xgrad::matmul(xgrad::full<float>({64, 64}, 7.0f), xgrad::full<float>({64, 64}, 3.0f));
    const auto check_zero = [](const auto& y, const Shape& shape) {
        CHECK(y.shape() == shape);
        CHECK(array_diff(y.value(), xgrad::zeros<double>(shape).value(), 0, 0) == "");
    };
    for (const bool f32 : {true, false}) {
        const auto& check = check_zero;
        if (f32) {
            check(xgrad::matmul(xgrad::zeros<float>({5, 0}), xgrad::zeros<float>({0, 7})), Shape{5, 7});
            check(xgrad::matmul(xgrad::zeros<float>({2, 3, 0}), xgrad::zeros<float>({2, 0, 4})), Shape{2, 3, 4});
            check(xgrad::linear(xgrad::zeros<float>({6, 0}), xgrad::zeros<float>({0, 3})), Shape{6, 3});
            // with a bias, the bias alone
            auto y = xgrad::linear(xgrad::zeros<float>({2, 0}), xgrad::zeros<float>({0, 3}), xgrad::full<float>({3}, 2));
            CHECK(array_diff(y.value(), xt::xarray<double>{{2, 2, 2}, {2, 2, 2}}, 0, 0) == "");
        } else {
            check(xgrad::matmul(xgrad::zeros<double>({5, 0}), xgrad::zeros<double>({0, 7})), Shape{5, 7});
            check(xgrad::linear(xgrad::zeros<double>({6, 0}), xgrad::zeros<double>({0, 3})), Shape{6, 3});
        }
    }
    // bf16 products too, and a weight gradient over an empty batch (K = 0 in dW = xᵀ · dY)
    {
        xgrad::AutocastGuard bf16;
        check_zero(xgrad::matmul(xgrad::zeros<float>({5, 0}), xgrad::zeros<float>({0, 7})), Shape{5, 7});
        Tensor x(xt::xarray<float>(xt::zeros<float>({0, 4})), true), w = xgrad::randn<float>({4, 3}, true);
        xgrad::sum(xgrad::linear(x, w)).backward();
        check_zero(Tensor(w.grad()), Shape{4, 3});
    }
    // Gradients of an empty product: the empty inputs' gradients are empty, no crash.
    Tensor64 a(xt::zeros<double>({3, 0}), true), b(xt::zeros<double>({0, 2}), true);
    xgrad::sum(xgrad::matmul(a, b)).backward();
    CHECK(a.grad().shape() == Shape{3, 0});
    CHECK(b.grad().shape() == Shape{0, 2});
}

TEST_CASE("linear and matmul: products shared between the threads agree with float64, every transpose",
          "[linalg][threads]") {
    // Over 2^20 multiply-adds: split between the threads in blocks of C (rows, or columns when
    // C is wider), each in libxsmm when built with it. linear's backward is dY·Wᵀ and xᵀ·dY.
    // Shapes whose split dimension is not a multiple of the 16-float blocks.
    struct Case {
        std::size_t m, k, n;
    };
    for (const auto& c : {Case{64, 3136, 128}, Case{33, 700, 50}, Case{20, 500, 300}, Case{3, 40000, 17}}) {
        INFO("[" << c.m << ", " << c.k << "] x [" << c.k << ", " << c.n << "]");
        xgrad::manual_seed(7);
        const auto x = xgrad::randn<double>({c.m, c.k}), w = xgrad::randn<double>({c.k, c.n});
        const auto b = xgrad::randn<double>({c.n}), gy = xgrad::randn<double>({c.m, c.n});
        for (const int threads : {1, 2}) {
            xgrad::set_num_threads(threads);
            Tensor64 x64(x.value(), true), w64(w.value(), true), b64(b.value(), true);
            Tensor x32(xt::xarray<float>(xt::cast<float>(x.value())), true);
            Tensor w32(xt::xarray<float>(xt::cast<float>(w.value())), true);
            Tensor b32(xt::xarray<float>(xt::cast<float>(b.value())), true);
            auto y64 = xgrad::linear(x64, w64, b64);
            auto y32 = xgrad::linear(x32, w32, b32);
            y64.backward(gy.value());
            y32.backward(xt::xarray<float>(xt::cast<float>(gy.value())));
            const double tol = 2e-5 * std::sqrt(static_cast<double>(std::max(c.k, c.m)));
            CHECK(array_diff(y32.value(), y64.value(), tol, 1e-4) == "");
            CHECK(array_diff(x32.grad(), x64.grad(), tol, 1e-4) == "");
            CHECK(array_diff(w32.grad(), w64.grad(), tol, 1e-4) == "");
        }
    }
    xgrad::set_num_threads(2);
}

TEST_CASE("linear: any leading dimensions, as PyTorch's F.linear: [N, T, in] and [in], float32 and bf16", "[linalg]") {
    xgrad::manual_seed(5);
    const Tensor64 x = xgrad::randn<double>({2, 3, 4}), w = xgrad::randn<double>({4, 5}), b = xgrad::randn<double>({5});
    // the same numbers as the rows one at a time
    const auto y = xgrad::linear(x, w, b);
    REQUIRE(y.shape() == Shape{2, 3, 5});
    const auto rows = xgrad::linear(xgrad::reshape(x, {6, 4}), w, b);
    CHECK(array_diff(y.value(), xt::xarray<double>(xt::reshape_view(rows.value(), {2, 3, 5})), 0, 0) == "");
    const auto one = xgrad::linear(xgrad::Tensor64(xt::xarray<double>(xt::view(x.value(), 1, 2))), w, b);
    CHECK(one.shape() == Shape{5});
    CHECK(array_diff(one.value(), xt::xarray<double>(xt::view(y.value(), 1, 2)), 0, 0) == "");
    // a Dense layer over a sequence, bf16 included, with gradients for every input
    for (const bool bf16 : {false, true}) {
        xgrad::AutocastGuard precision(bf16 ? xgrad::Precision::bf16 : xgrad::Precision::float32);
        xgrad::nn::Dense dense(4, 5, xgrad::nn::Activation::relu);
        Tensor xs = xgrad::randn<float>({2, 3, 4}, true);
        auto out = dense(xs);
        CHECK(out.shape() == Shape{2, 3, 5});
        xgrad::sum(out).backward();
        CHECK(xs.grad().shape() == xs.shape());
        CHECK(dense.weight.grad().shape() == Shape{4, 5});
    }
}
