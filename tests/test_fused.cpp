// Fused ops give the numbers of the ops they fuse, bit for bit, values and gradients, on every
// kernel path; inference (no saved columns, no argmax) gives the numbers of training mode.

#include <catch2/catch.hpp>

#include <limits>
#include <vector>

#include "helpers.hpp"
#include "xgrad/xgrad.hpp"

using xgrad::Padding;
using xgrad::Shape;

namespace {

// Bitwise equality of two arrays (NaN equal to NaN): fused and unfused run the same kernels
// in the same order, so not even rounding may differ.
template <class T>
bool same_bits(const xt::xarray<T>& a, const xt::xarray<T>& b) {
    if (a.shape() != b.shape()) return false;
    for (std::size_t k = 0; k < a.size(); ++k) {
        const T x = a.data()[k], y = b.data()[k];
        if (!(x == y || (x != x && y != y))) return false;
    }
    return true;
}

// Runs f on fresh leaves holding `values`, backpropagates a fixed dL/dy, and returns the
// output followed by every input's gradient.
template <class T, class F>
std::vector<xt::xarray<T>> run(const std::vector<xt::xarray<T>>& values, F f) {
    std::vector<xgrad::basic_tensor<T>> in;
    for (const auto& v : values) in.emplace_back(v, true);
    auto y = f(in);
    xgrad::manual_seed(5);
    y.backward(xgrad::randn<T>(y.shape()).value());
    std::vector<xt::xarray<T>> out{y.value()};
    for (const auto& t : in) out.push_back(t.has_grad() ? t.grad() : xt::xarray<T>());
    return out;
}

template <class T>
std::vector<xt::xarray<T>> random_values(const std::vector<Shape>& shapes, std::uint64_t seed) {
    xgrad::manual_seed(seed);
    std::vector<xt::xarray<T>> v;
    for (const auto& s : shapes) v.push_back(xgrad::randn<T>(s).value());
    return v;
}

template <class T>
void check_conv_relu() {
    for (const auto& c : xgrad_test::conv_paths()) {
        const xgrad_test::WinogradScope winograd(c.winograd);
        for (bool bias : {true, false}) {
            INFO(c.name << (bias ? ", bias" : ", no bias") << (sizeof(T) == 4 ? ", float" : ", double"));
            std::vector<Shape> shapes{c.x, c.w};
            if (bias) shapes.push_back({c.w[3]});
            const auto values = random_values<T>(shapes, 3);
            const auto fused = run<T>(values, [&](const auto& v) {
                return bias ? xgrad::conv2d_relu(v[0], v[1], v[2], c.o) : xgrad::conv2d_relu(v[0], v[1], c.o);
            });
            const auto pair = run<T>(values, [&](const auto& v) {
                return xgrad::relu(bias ? xgrad::conv2d(v[0], v[1], v[2], c.o) : xgrad::conv2d(v[0], v[1], c.o));
            });
            for (std::size_t i = 0; i < fused.size(); ++i) {
                INFO("output 0 is y, then dL/d(input i - 1); i = " << i);
                CHECK(same_bits(fused[i], pair[i]));
            }
            // Inference: no columns kept, the same numbers.
            xgrad::NoGradGuard off;
            const xgrad::basic_tensor<T> x(values[0]), w(values[1]);
            const auto y = bias ? xgrad::conv2d_relu(x, w, xgrad::basic_tensor<T>(values[2]), c.o)
                                : xgrad::conv2d_relu(x, w, c.o);
            CHECK(same_bits(y.value(), fused[0]));
        }
    }
}

template <class T>
void check_conv_pool(bool bf16) {
    const xgrad::Pool2dOptions pools[] = {{.kernel = 2}, {.kernel = 3, .stride = 2, .padding = 1}};
    for (const auto& c : xgrad_test::conv_paths()) {
        const xgrad_test::WinogradScope winograd(c.winograd);
        for (const auto& pool : pools) {
            for (int bias_nan = 0; bias_nan < 4; ++bias_nan) {
                const bool bias = bias_nan % 2, nan = bias_nan / 2;
                INFO(c.name << (bias ? ", bias" : ", no bias") << (sizeof(T) == 4 ? ", float" : ", double") << ", pool "
                            << pool.kernel.h << (bf16 ? ", bf16" : "") << (nan ? ", NaN" : ""));
                std::vector<Shape> shapes{c.x, c.w};
                if (bias) shapes.push_back({c.w[3]});
                auto values = random_values<T>(shapes, 6);
                // A NaN propagates to its windows (and sends Winograd to the direct kernels).
                if (nan) values[0].data()[7] = std::numeric_limits<T>::quiet_NaN();
                xgrad::AutocastGuard precision(bf16 ? xgrad::Precision::bf16 : xgrad::Precision::float32);
                const auto fused = run<T>(values, [&](const auto& v) {
                    return bias ? xgrad::conv2d_relu_max_pool2d(v[0], v[1], v[2], c.o, pool)
                                : xgrad::conv2d_relu_max_pool2d(v[0], v[1], c.o, pool);
                });
                const auto pair = run<T>(values, [&](const auto& v) {
                    return xgrad::relu_max_pool2d(
                        bias ? xgrad::conv2d(v[0], v[1], v[2], c.o) : xgrad::conv2d(v[0], v[1], c.o), pool);
                });
                for (std::size_t i = 0; i < fused.size(); ++i) {
                    INFO("output 0 is y, then dL/d(input i - 1); i = " << i);
                    CHECK(same_bits(fused[i], pair[i]));
                }
                xgrad::NoGradGuard off;  // no argmax
                const xgrad::basic_tensor<T> x(values[0]), w(values[1]);
                const auto y = bias ? xgrad::conv2d_relu_max_pool2d(x, w, xgrad::basic_tensor<T>(values[2]), c.o, pool)
                                    : xgrad::conv2d_relu_max_pool2d(x, w, c.o, pool);
                CHECK(same_bits(y.value(), fused[0]));
            }
        }
    }
}

}  // namespace

TEST_CASE("fused: conv2d_relu is relu(conv2d) on every kernel path, forward, backward and inference", "[fused]") {
    check_conv_relu<float>();
    check_conv_relu<double>();
}

TEST_CASE(
    "fused: conv2d_relu_max_pool2d is relu_max_pool2d(conv2d) on every kernel path and pool, NaN, bf16, "
    "inference",
    "[fused]") {
    check_conv_pool<float>(false);
    check_conv_pool<double>(false);
    check_conv_pool<float>(true);
}

TEST_CASE("fused: conv2d_relu_max_pool2d refuses a pool that does not fit the convolution's output, naming both",
          "[fused][errors]") {
    const auto x = xgrad::zeros<float>({1, 3, 3, 1}), w = xgrad::zeros<float>({3, 3, 1, 4});
    try {
        xgrad::conv2d_relu_max_pool2d(x, w, {}, {.kernel = 2});  // a 1x1 output
        FAIL("no error");
    } catch (const xgrad::ShapeError& e) {
        const std::string m = e.what();
        CHECK(m.find("conv2d_relu_max_pool2d") != std::string::npos);
        CHECK(m.find("[1, 3, 3, 1]") != std::string::npos);
        CHECK(m.find("[1, 1, 1, 4]") != std::string::npos);
    }
    CHECK_THROWS_AS(xgrad::conv2d_relu_max_pool2d(x, w, {}, {.kernel = 0}), xgrad::ValueError);
    CHECK_THROWS_AS(xgrad::conv2d_relu_max_pool2d(x, xgrad::zeros<float>({3, 3, 2, 4})), xgrad::ShapeError);
    // An empty batch: an empty output.
    CHECK(xgrad::conv2d_relu_max_pool2d(xgrad::zeros<float>({0, 4, 4, 1}), w, {.padding = Padding::same}).shape() ==
          Shape{0, 2, 2, 4});
}

TEST_CASE("fused: linear_relu is relu(linear), with and without bias", "[fused]") {
    const auto values = random_values<float>({{7, 5}, {5, 4}, {4}}, 9);
    const auto fused = run<float>(values, [](const auto& v) { return xgrad::linear_relu(v[0], v[1], v[2]); });
    const auto pair = run<float>(values, [](const auto& v) { return xgrad::relu(xgrad::linear(v[0], v[1], v[2])); });
    for (std::size_t i = 0; i < fused.size(); ++i) CHECK(same_bits(fused[i], pair[i]));
    const auto fused_nb =
        run<float>({values[0], values[1]}, [](const auto& v) { return xgrad::linear_relu(v[0], v[1]); });
    const auto pair_nb =
        run<float>({values[0], values[1]}, [](const auto& v) { return xgrad::relu(xgrad::linear(v[0], v[1])); });
    for (std::size_t i = 0; i < fused_nb.size(); ++i) CHECK(same_bits(fused_nb[i], pair_nb[i]));
}

TEST_CASE("fused: relu_max_pool2d is max_pool2d(relu), NaN, ties and all-negative windows included", "[fused]") {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    // 2x2 windows of one channel: mixed signs, all negative, a NaN; signed zeros, ties of a
    // positive maximum, one positive among negatives.
    const xt::xarray<float> x = xt::cast<float>(xgrad_test::array(
        {1, 4, 6, 1}, {1, -2, -3, -1, nan, 2,  5, 0, -4, -5, -6, 1,  -0.0, 0, 3, 3, 0.5, -1,  0, -0.0, 3, 1, -2, -3}));
    for (const xgrad::Pool2dOptions o : {xgrad::Pool2dOptions{.kernel = 2}, xgrad::Pool2dOptions{.kernel = 3, .stride = 1},
                                         xgrad::Pool2dOptions{.kernel = 3, .stride = 2, .padding = 1}}) {
        const auto fused = run<float>({x}, [&](const auto& v) { return xgrad::relu_max_pool2d(v[0], o); });
        const auto pair = run<float>({x}, [&](const auto& v) { return xgrad::max_pool2d(xgrad::relu(v[0]), o); });
        CHECK(same_bits(fused[0], pair[0]));
        CHECK(same_bits(fused[1], pair[1]));
        const auto plain = run<float>({x}, [&](const auto& v) { return xgrad::max_pool2d(v[0], o); });
        xgrad::NoGradGuard off;  // no argmax written
        CHECK(same_bits(xgrad::relu_max_pool2d(xgrad::Tensor(x), o).value(), fused[0]));
        CHECK(same_bits(xgrad::max_pool2d(xgrad::Tensor(x), o).value(), plain[0]));
    }
    // A larger random case, several channels and images.
    const auto values = random_values<float>({{3, 10, 8, 5}}, 4);
    const auto fused = run<float>(values, [](const auto& v) { return xgrad::relu_max_pool2d(v[0], {.kernel = 2}); });
    const auto pair =
        run<float>(values, [](const auto& v) { return xgrad::max_pool2d(xgrad::relu(v[0]), {.kernel = 2}); });
    CHECK(same_bits(fused[0], pair[0]));
    CHECK(same_bits(fused[1], pair[1]));
}

TEST_CASE("fused: Sequential runs Conv2D(relu) + MaxPool2D as one conv2d_relu_max_pool2d, with the layers' numbers",
          "[fused][nn]") {
    using namespace xgrad::nn;
    const xgrad::Conv2dOptions same{.padding = Padding::same};
    xgrad::manual_seed(2);
    Sequential model;
    model.add(Conv2D(1, 4, 3, same, Activation::relu)).add(MaxPool2D({.kernel = 2})).add(Flatten()).add(Dense(16, 3));
    const auto x = xgrad::randn<float>({2, 4, 4, 1});
    const auto y = model.forward(x);
    const std::string graph = xgrad::to_dot(y);
    CHECK(graph.find("conv2d_relu_max_pool2d") != std::string::npos);
    xgrad::sum(y).backward();
    const auto params = model.parameters();
    std::vector<xt::xarray<float>> grads;
    for (const auto& p : params) grads.push_back(p.grad());
    model.zero_grad();
    // The layers one by one: conv2d_relu, then max_pool2d.
    xgrad::Tensor h = x;
    for (const auto& [name, layer] : model.children()) h = (*layer)(h);
    CHECK(same_bits(h.value(), y.value()));
    xgrad::sum(h).backward();
    for (std::size_t i = 0; i < params.size(); ++i) CHECK(same_bits(params[i].grad(), grads[i]));
}
