#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "helpers.hpp"
#include "xgrad/xgrad.hpp"

using xgrad::Reduction;
using xgrad::Shape;
using xgrad::Tensor;
using xgrad::Tensor64;
using xgrad_test::array_diff;
using Catch::Matchers::Contains;

TEST_CASE("cross_entropy: logits with labels by hand", "[loss]") {
    Tensor64 z(xt::xarray<double>{{0, std::log(3.0)}, {2, 2}}, true);  // softmax rows (1/4, 3/4), (1/2, 1/2)
    Tensor64 labels(xt::xarray<double>{1, 0});
    auto loss = xgrad::cross_entropy(z, labels);
    CHECK(loss.item() == Approx((-std::log(0.75) - std::log(0.5)) / 2));
    loss.backward();
    // (softmax - onehot) / N
    CHECK(array_diff(z.grad(), xt::xarray<double>{{0.125, -0.125}, {-0.25, 0.25}}) == "");
    CHECK(array_diff(xgrad::cross_entropy(z, labels, Reduction::none).value(),
                     xt::xarray<double>{-std::log(0.75), -std::log(0.5)}) == "");
    CHECK(xgrad::cross_entropy(z, labels, Reduction::sum).item() == Approx(-std::log(0.75) - std::log(0.5)));
}

TEST_CASE("cross_entropy: one-hot targets equal integer labels", "[loss]") {
    Tensor64 z(xt::xarray<double>{{1, -2, 0.5}, {0.3, 0.2, 0.1}});
    CHECK(xgrad::cross_entropy(z, Tensor64(xt::xarray<double>{{0, 0, 1}, {1, 0, 0}})).item() ==
          Approx(xgrad::cross_entropy(z, Tensor64(xt::xarray<double>{2, 0})).item()));
}

TEST_CASE("cross_entropy: softmax is applied once, inside the loss", "[loss][traps]") {
    // The loss of logits is -log_softmax at the label, not -log(softmax(softmax(z))).
    Tensor64 z(xt::xarray<double>{{5, 0, 0}});
    const double expected = -xgrad::log_softmax(z).value()(0, 0);
    CHECK(xgrad::cross_entropy(z, Tensor64(xt::xarray<double>{0.0})).item() == Approx(expected));
    CHECK(expected < 0.02);
}

TEST_CASE("cross_entropy: finite loss and gradient for logits of +-1000", "[loss][traps]") {
    Tensor z(xt::xarray<float>{{1000, -1000, 0}, {-1000, 1000, 999}}, true);
    auto loss = xgrad::cross_entropy(z, Tensor(xt::xarray<float>{1, 2}));
    CHECK(std::isfinite(loss.item()));
    CHECK(loss.item() == Approx((2000 + 1.3132617f) / 2).epsilon(1e-5));
    loss.backward();
    CHECK(xt::all(xt::isfinite(z.grad())));
}

TEST_CASE("cross_entropy: bad labels and shapes are errors", "[loss][errors]") {
    Tensor z(xt::zeros<float>({2, 3}));
    REQUIRE_THROWS_AS(xgrad::cross_entropy(z, Tensor(xt::xarray<float>{0, 3})), xgrad::ValueError);
    REQUIRE_THROWS_WITH(xgrad::cross_entropy(z, Tensor(xt::xarray<float>{0, 3})), Contains("label 3 of sample 1"));
    REQUIRE_THROWS_AS(xgrad::cross_entropy(z, Tensor(xt::xarray<float>{0, 1.5})), xgrad::ValueError);
    REQUIRE_THROWS_WITH(xgrad::cross_entropy(z, Tensor(xt::xarray<float>{0, 1, 2})),
                        Contains("logits [2, 3], target [3]"));
    REQUIRE_THROWS_AS(xgrad::cross_entropy(Tensor(xt::zeros<float>({2, 3, 1})), Tensor(xt::xarray<float>{0, 1})),
                      xgrad::ShapeError);
}

TEST_CASE("mse_loss: value and a gradient with its factor 2", "[loss][traps]") {
    Tensor64 x(xt::xarray<double>{1, 2, 3}, true);
    Tensor64 t(xt::xarray<double>{1, 0, 6});
    auto loss = xgrad::mse_loss(x, t);
    CHECK(loss.item() == Approx((0 + 4 + 9) / 3.0));
    loss.backward();
    CHECK(array_diff(x.grad(), xt::xarray<double>{0, 4.0 / 3, -6.0 / 3}) == "");
    REQUIRE_THROWS_WITH(xgrad::mse_loss(x, Tensor64(xt::xarray<double>{1, 2})), Contains("input [3], target [2]"));
}

TEST_CASE("binary_cross_entropy: values by hand, finite at 0 and 1", "[loss]") {
    Tensor64 p(xt::xarray<double>{0.5, 0.9});
    Tensor64 t(xt::xarray<double>{1, 0});
    CHECK(xgrad::binary_cross_entropy(p, t).item() == Approx((std::log(2.0) - std::log(0.1)) / 2));
    CHECK(xgrad::binary_cross_entropy(Tensor64(xt::xarray<double>{0.0, 1.0}), t).item() == Approx(100));
    REQUIRE_THROWS_AS(xgrad::binary_cross_entropy(Tensor64(xt::xarray<double>{1.5, 0.5}), t), xgrad::ValueError);
    Tensor64 z(xt::xarray<double>{0.0, std::log(9.0)});
    CHECK(xgrad::binary_cross_entropy_with_logits(z, t).item() == Approx(xgrad::binary_cross_entropy(p, t).item()));
    CHECK(std::isfinite(
        xgrad::binary_cross_entropy_with_logits(Tensor64(xt::xarray<double>{-1000, 1000}), t).item()));
}

TEST_CASE("cross_entropy: finite for logits of ±3e38 and a mean of huge losses, float and double", "[loss][traps]") {
    const float big = 3e38f;
    Tensor z(xt::xarray<float>{{big, -big}, {-big, big}, {big, big}}, true);
    Tensor labels(xt::xarray<float>{1, 0, 0});
    auto loss = xgrad::cross_entropy(z, labels);
    CHECK(std::isfinite(loss.item()));
    loss.backward();
    for (const float g : z.grad()) CHECK(std::isfinite(g));
    // (1, -1) and (-1, 1) probabilities: the gradient of a sample's loss is p - onehot, over 3.
    CHECK(z.grad()(0, 0) == Approx(1.0 / 3));
    CHECK(z.grad()(0, 1) == Approx(-1.0 / 3));
    // Two losses near float's largest value: their mean is finite (a float sum overflows).
    Tensor z2(xt::xarray<float>{{0, -3e38f}, {0, -3e38f}});
    auto mean = xgrad::cross_entropy(z2, Tensor(xt::xarray<float>{1, 1}));
    CHECK(mean.item() == Approx(3e38).epsilon(1e-6));
    // Soft targets: the target's gradient is -log p, finite where p underflows to 0.
    Tensor64 z3(xt::xarray<double>{{0, -2000}}), t3(xt::xarray<double>{{0.5, 0.5}}, true);
    xgrad::cross_entropy(z3, t3).backward();
    CHECK(t3.grad()(0, 1) == Approx(2000));
    Tensor64 z4(xt::xarray<double>{{1e308, -1e308}});
    CHECK(std::isfinite(xgrad::cross_entropy(z4, Tensor64(xt::xarray<double>{1})).item()));
}

TEST_CASE("cross_entropy: zero classes is a ShapeError naming the shapes", "[loss][errors]") {
    REQUIRE_THROWS_AS(xgrad::cross_entropy(xgrad::zeros({4, 0}), xgrad::zeros({4})), xgrad::ShapeError);
    REQUIRE_THROWS_WITH(xgrad::cross_entropy(xgrad::zeros({4, 0}), xgrad::zeros({4, 0})),
                        Contains("logits [4, 0]"));
    REQUIRE_THROWS_AS(xgrad::cross_entropy(xgrad::zeros({0, 0}), xgrad::zeros({0})), xgrad::ShapeError);
}

TEST_CASE("cross_entropy: a NaN logit gives a NaN loss", "[loss][nan]") {
    for (std::size_t at = 0; at < 3; ++at) {
        xt::xarray<double> v{{1, 2, 3}};
        v(0, at) = std::numeric_limits<double>::quiet_NaN();
        CHECK(std::isnan(xgrad::cross_entropy(Tensor64(v), Tensor64(xt::xarray<double>{0})).item()));
    }
}

TEST_CASE("cross_entropy options and nll_loss: class weights, label smoothing and ignore_index as PyTorch defines them",
          "[loss]") {
    xgrad::manual_seed(3);
    const auto z = xgrad::randn<double>({5, 4}) * 2.0;
    const Tensor64 labels(xt::xarray<double>{3, 0, -100, 1, 3});
    const std::vector<double> w{0.5, 2, 1, 0.25};
    const double eps = 0.2;
    // The definition: loss_i = (1 - ε) w_y (-lp_y) + ε/K Σ_j w_j (-lp_j); the mean divides by
    // Σ w_y over the kept samples.
    const auto lp = xgrad::log_softmax(z, 1).value();
    std::vector<double> per_sample;
    double total = 0, count = 0;
    for (std::size_t i = 0; i < 5; ++i) {
        const double c = labels.value()(i);
        if (c == -100) {
            per_sample.push_back(0);
            continue;
        }
        const auto y = static_cast<std::size_t>(c);
        double smooth = 0;
        for (std::size_t j = 0; j < 4; ++j) smooth -= w[j] * lp(i, j);
        const double loss = (1 - eps) * w[y] * -lp(i, y) + eps / 4 * smooth;
        per_sample.push_back(loss);
        total += loss;
        count += w[y];
    }
    const xgrad::CrossEntropyOptions o{.weight = w, .label_smoothing = eps, .ignore_index = -100};
    CHECK(xgrad::cross_entropy(z, labels, o).item() == Approx(total / count).epsilon(1e-12));
    auto none = o;
    none.reduction = Reduction::none;
    CHECK(array_diff(xgrad::cross_entropy(z, labels, none).value(), xt::adapt(per_sample, {5}), 1e-12) == "");
    // By hand: logits (0, ln 3), label 1, ε = 0.2, K = 2.
    const Tensor64 two(xt::xarray<double>{{0, std::log(3.0)}});
    CHECK(xgrad::cross_entropy(two, Tensor64(xt::xarray<double>{1}), {.label_smoothing = 0.2}).item() ==
          Approx(0.8 * -std::log(0.75) + 0.1 * (-std::log(0.25) - std::log(0.75))).epsilon(1e-12));
    // nll_loss of log_softmax is cross_entropy, weights and ignored samples included.
    auto plain = o;
    plain.label_smoothing = 0;
    CHECK(xgrad::nll_loss(xgrad::log_softmax(z, 1), labels, plain).item() ==
          Approx(xgrad::cross_entropy(z, labels, plain).item()).epsilon(1e-12));
    CHECK(xgrad::nll_loss(Tensor64(lp), labels, {.reduction = Reduction::sum, .ignore_index = -100}).item() ==
          Approx(-lp(0, 3) - lp(1, 0) - lp(3, 1) - lp(4, 3)).epsilon(1e-12));
    // Ignored samples get no gradient; every sample ignored gives 0, not NaN.
    Tensor64 zg(z.value(), true);
    xgrad::cross_entropy(zg, labels, o).backward();
    for (std::size_t j = 0; j < 4; ++j) CHECK(zg.grad()(2, j) == 0);
    CHECK(xgrad::cross_entropy(z, Tensor64(xt::xarray<double>{-100, -100, -100, -100, -100}), o).item() == 0);
    // Probability targets: the smoothed targets scaled per class; the mean divides by N.
    const auto soft = xgrad::softmax(xgrad::randn<double>({5, 4}), 1);
    xt::xarray<double> t = soft.value() * (1 - eps) + eps / 4;
    for (std::size_t i = 0; i < 5; ++i)
        for (std::size_t j = 0; j < 4; ++j) t(i, j) *= w[j];
    CHECK(xgrad::cross_entropy(z, soft, {.weight = w, .label_smoothing = eps}).item() ==
          Approx(xgrad::cross_entropy(z, Tensor64(t), Reduction::sum).item() / 5).epsilon(1e-12));
    // Errors name the op and the shapes.
    REQUIRE_THROWS_WITH(xgrad::cross_entropy(z, labels, {.weight = {1, 2}}),
                        Contains("cross_entropy: 2 class weights for 4 classes") && Contains("[5, 4]"));
    REQUIRE_THROWS_AS(xgrad::cross_entropy(z, labels, {.weight = {1, 1, -1, 1}}), xgrad::ValueError);
    REQUIRE_THROWS_WITH(xgrad::cross_entropy(z, labels, {.label_smoothing = 1}), Contains("label_smoothing"));
    REQUIRE_THROWS_WITH(xgrad::cross_entropy(z, labels, {.weight = w}), Contains("label -100 of sample 2"));
    REQUIRE_THROWS_WITH(xgrad::cross_entropy(z, soft, {.ignore_index = 0}), Contains("ignore_index"));
    REQUIRE_THROWS_WITH(xgrad::nll_loss(z, labels, {.label_smoothing = 0.1}), Contains("nll_loss"));
    REQUIRE_THROWS_AS(xgrad::nll_loss(z, Tensor64(xt::xarray<double>{1, 2})), xgrad::ShapeError);
}

TEST_CASE("huber_loss, smooth_l1_loss and l1_loss follow their definitions on both sides of the kink", "[loss]") {
    const Tensor64 x(xt::xarray<double>{{0.1, -2.0, 0.69}, {0.71, 3.0, -0.3}});
    const Tensor64 t = xgrad::zeros<double>({2, 3});
    auto huber = [](double d, double delta) {
        return std::abs(d) < delta ? 0.5 * d * d : delta * (std::abs(d) - 0.5 * delta);
    };
    xt::xarray<double> h = xt::empty<double>({2, 3}), s = h, l = h;
    for (std::size_t k = 0; k < 6; ++k) {
        const double d = x.value().data()[k];
        h.data()[k] = huber(d, 0.7);
        s.data()[k] = huber(d, 0.5) / 0.5;
        l.data()[k] = std::abs(d);
    }
    CHECK(array_diff(xgrad::huber_loss(x, t, 0.7, Reduction::none).value(), h, 1e-14) == "");
    CHECK(array_diff(xgrad::smooth_l1_loss(x, t, 0.5, Reduction::none).value(), s, 1e-14) == "");
    CHECK(array_diff(xgrad::smooth_l1_loss(x, t, 0.0, Reduction::none).value(), l, 1e-14) == "");
    CHECK(xgrad::l1_loss(x, t).item() == Approx(xt::mean(l)()).epsilon(1e-14));
    CHECK(xgrad::huber_loss(x, t).item() == Approx((0.005 + 1.5 + 0.5 * 0.69 * 0.69 + 0.5 * 0.71 * 0.71 + 2.5 + 0.045) / 6));
    CHECK(xgrad::huber_loss(x, t, 0.7, Reduction::sum).item() == Approx(xt::sum(h)()).epsilon(1e-14));
    REQUIRE_THROWS_WITH(xgrad::huber_loss(x, t, 0.0), Contains("huber_loss: delta"));
    REQUIRE_THROWS_AS(xgrad::smooth_l1_loss(x, t, -1.0), xgrad::ValueError);
    REQUIRE_THROWS_WITH(xgrad::l1_loss(x, xgrad::zeros<double>({3, 2})), Contains("l1_loss") && Contains("[3, 2]"));
}
