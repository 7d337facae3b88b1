#include <set>

#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <xtensor/xmath.hpp>

#include "helpers.hpp"
#include "xgrad/xgrad.hpp"

using xgrad::Tensor64;
using Catch::Matchers::Contains;

namespace {

// y = x³ with a backward rule chosen by the test: `scale` multiplies the true derivative 3x².
Tensor64 cube(const Tensor64& x, double scale) {
    Tensor64 out(xt::xarray<double>(x.value() * x.value() * x.value()));
    xgrad::record("cube", {x}, out, [x, scale](const Tensor64& gy, auto& grads) {
        grads.add(0, gy * x * x * (scale * 3.0));
    });
    return out;
}

xgrad::GradcheckReport check_cube(double scale) {
    return xgrad::gradcheck([scale](const auto& in) { return cube(in[0], scale); },
                            {Tensor64(xt::xarray<double>{{0.5, -1.0}, {2.0, 1.5}}, true)});
}

}  // namespace

TEST_CASE("gradcheck: passes a correct backward rule", "[gradcheck]") {
    const auto r = check_cube(1.0);
    INFO(r.message);
    CHECK(r.passed);
    CHECK(r.max_abs_err < 1e-6);
}

TEST_CASE("gradcheck: catches a flipped sign and names input, index and shapes", "[gradcheck]") {
    const auto r = check_cube(-1.0);
    CHECK_FALSE(r.passed);
    CHECK_THAT(r.message, Contains("input 0 at flat index 0, index [0, 0]") && Contains("inputs [2, 2]") &&
                              Contains("output [2, 2]") && Contains("analytic") && Contains("numeric"));
}

TEST_CASE("gradcheck: catches a missing factor of 2", "[gradcheck]") {
    // d/dx x² = 2x; a rule that forgets the 2 is half right everywhere.
    auto bad_square = [](const std::vector<Tensor64>& in) {
        const auto& x = in[0];
        Tensor64 out(xt::xarray<double>(x.value() * x.value()));
        xgrad::record("bad_square", {x}, out, [x](const Tensor64& gy, auto& grads) { grads.add(0, gy * x); });
        return out;
    };
    CHECK_FALSE(xgrad::gradcheck(bad_square, {xgrad::randn<double>({3}, true)}).passed);
}

TEST_CASE("gradcheck: fails when the analytic gradient is all zero", "[gradcheck]") {
    const auto r = check_cube(0.0);
    CHECK_FALSE(r.passed);
}

TEST_CASE("gradcheck: a case where both gradients are zero proves nothing", "[gradcheck]") {
    auto constant = [](const std::vector<Tensor64>& in) { return in[0] * 0.0; };
    const auto r = xgrad::gradcheck(constant, {xgrad::randn<double>({3}, true)});
    CHECK_FALSE(r.passed);
    CHECK_THAT(r.message, Contains("proves nothing"));
}

TEST_CASE("gradcheck: fails when a zero output gradient gives a non-zero input gradient", "[gradcheck]") {
    auto leaky = [](const std::vector<Tensor64>& in) {
        const auto& x = in[0];
        Tensor64 out(xt::xarray<double>(2.0 * x.value()));
        xgrad::record("leaky", {x}, out, [](const Tensor64& gy, auto& grads) {
            // Right for the output gradients gradcheck draws (|gy| < 1 mostly) only by
            // accident: adds a constant that does not scale with gy.
            grads.add(0, 2.0 * gy + 1e-9);
        });
        return out;
    };
    const auto r = xgrad::gradcheck(leaky, {xgrad::randn<double>({3}, true)});
    CHECK_FALSE(r.passed);
    CHECK_THAT(r.message, Contains("zero output gradient"));
}

TEST_CASE("gradcheck: gradients add up into an accumulator that already holds one", "[gradcheck]") {
    // The engine owns accumulation (a rule can only add), and gradcheck starts every
    // accumulator from random values: a pass that overwrote it would fail.
    auto triple = [](const std::vector<Tensor64>& in) {
        const auto& x = in[0];
        Tensor64 out(xt::xarray<double>(3.0 * x.value()));
        xgrad::record("triple", {x}, out, [](const Tensor64& gy, auto& grads) { grads.add(0, 3.0 * gy); });
        return out;
    };
    CHECK(xgrad::gradcheck(triple, {xgrad::randn<double>({4}, true)}).passed);
    Tensor64 x(xt::xarray<double>{1.0, 2.0}, true);
    xgrad::sum(triple({x})).backward();
    xgrad::sum(triple({x})).backward();
    CHECK(xgrad_test::array_diff(x.grad(), xt::xarray<double>{6.0, 6.0}, 0, 0) == "");
}

TEST_CASE("gradcheck: a rule returning the wrong shape fails instead of crashing", "[gradcheck]") {
    auto wrong = [](const std::vector<Tensor64>& in) {
        Tensor64 out(xt::xarray<double>(in[0].value()));
        xgrad::record("wrong_shape", {in[0]}, out, [](const Tensor64&, auto& grads) {
            grads.add(0, xgrad::ones<double>({7}));
        });
        return out;
    };
    const auto r = xgrad::gradcheck(wrong, {xgrad::randn<double>({3}, true)});
    CHECK_FALSE(r.passed);
    CHECK_THAT(r.message, Contains("wrong_shape") && Contains("[7]"));
}

TEST_CASE("gradcheck: leaves the caller's inputs untouched", "[gradcheck]") {
    Tensor64 x(xt::xarray<double>{0.5, 1.0}, true);
    CHECK(check_cube(1.0).passed);
    xgrad::gradcheck([](const auto& in) { return cube(in[0], 1.0); }, {x});
    CHECK_FALSE(x.has_grad());
    CHECK(xgrad_test::array_diff(x.value(), xt::xarray<double>{0.5, 1.0}, 0, 0) == "");
}

TEST_CASE("gradcheck: every op kind has first- and second-order cases, and case names are unique",
          "[gradcheck]") {
    std::set<std::string> first, second, ids;
    for (const auto& c : xgrad::gradcheck_cases()) {
        (c.order == 1 ? first : second).insert(c.op);
        CHECK(ids.insert(fmt::format("{}/{}/{}", c.op, c.name, c.order)).second);
    }
    for (int k = 0; k < static_cast<int>(xgrad::OpKind::count_); ++k) {
        const std::string name(xgrad::op_name(static_cast<xgrad::OpKind>(k)));
        INFO("op kind " << name);
        CHECK(first.count(name) == 1);
        CHECK(second.count(name) == 1);
    }
}

namespace {

// swish(x) = x·sigmoid(x), with its first derivative right and its rule written either in
// tensor ops (differentiable again) or from raw arrays (a constant to the graph).
Tensor64 swish(const Tensor64& x, bool tensor_rule) {
    const auto s = xgrad::sigmoid(x);
    Tensor64 out(xt::xarray<double>(x.value() * s.value()));
    xgrad::record("swish", {x}, out, [x, tensor_rule](const Tensor64& gy, auto& grads) {
        const auto s = xgrad::sigmoid(x);
        if (tensor_rule) {
            grads.add(0, gy * s * (1.0 + x * (1.0 - s)));
        } else {
            const xt::xarray<double> d = s.value() * (1.0 + x.value() * (1.0 - s.value()));
            grads.add(0, gy * Tensor64(d));
        }
    });
    return out;
}

}  // namespace

TEST_CASE("gradgradcheck: passes a rule in tensor ops, catches one whose derivative is a constant",
          "[gradcheck][second]") {
    const std::vector<Tensor64> x{Tensor64(xt::xarray<double>{-1.5, -0.2, 0.4, 2.0}, true)};
    auto good = [](const std::vector<Tensor64>& in) { return swish(in[0], true); };
    auto bad = [](const std::vector<Tensor64>& in) { return swish(in[0], false); };
    CHECK(xgrad::gradcheck(good, x).passed);
    CHECK(xgrad::gradcheck(bad, x).passed);  // first order cannot tell them apart
    const auto ok = xgrad::gradgradcheck(good, x);
    INFO(ok.message);
    CHECK(ok.passed);
    const auto r = xgrad::gradgradcheck(bad, x);
    CHECK_FALSE(r.passed);
    CHECK_THAT(r.message, Contains("second order") && Contains("input 0"));
}

TEST_CASE("gradgradcheck: second derivatives of a small network match finite differences",
          "[gradcheck][second]") {
    auto net = [](const std::vector<Tensor64>& in) {
        const auto h = xgrad::tanh(xgrad::linear(in[0], in[1], in[2]));
        return xgrad::cross_entropy(xgrad::linear(h, in[3]), Tensor64(xt::xarray<double>{0, 2, 1}));
    };
    const auto r = xgrad::gradgradcheck(net, {xgrad::randn<double>({3, 4}, true), xgrad::randn<double>({4, 5}, true),
                                              xgrad::randn<double>({5}, true), xgrad::randn<double>({5, 3}, true)});
    INFO(r.message);
    CHECK(r.passed);
}
