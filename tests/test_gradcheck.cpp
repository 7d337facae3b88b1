#include <set>

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
    xgrad::record("cube", {x}, out, [x, scale](const auto& gy, auto& grads) {
        if (grads[0]) *grads[0] += scale * 3.0 * gy * x.value() * x.value();
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
        xgrad::record("bad_square", {x}, out, [x](const auto& gy, auto& grads) {
            if (grads[0]) *grads[0] += gy * x.value();
        });
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
        xgrad::record("leaky", {x}, out, [](const auto& gy, auto& grads) {
            // Right for the output gradients gradcheck draws (|gy| < 1 mostly) only by
            // accident: adds a constant that does not scale with gy.
            if (grads[0]) *grads[0] += 2.0 * gy + 1e-9;
        });
        return out;
    };
    const auto r = xgrad::gradcheck(leaky, {xgrad::randn<double>({3}, true)});
    CHECK_FALSE(r.passed);
    CHECK_THAT(r.message, Contains("zero output gradient"));
}

TEST_CASE("gradcheck: catches a rule that assigns its gradient instead of adding it", "[gradcheck]") {
    // Right from a zeroed accumulator, wrong in a graph where x has another consumer.
    auto overwrite = [](const std::vector<Tensor64>& in) {
        const auto& x = in[0];
        Tensor64 out(xt::xarray<double>(3.0 * x.value()));
        xgrad::record("overwrite", {x}, out, [](const auto& gy, auto& grads) {
            if (grads[0]) *grads[0] = 3.0 * gy;
        });
        return out;
    };
    const auto r = xgrad::gradcheck(overwrite, {xgrad::randn<double>({4}, true)});
    CHECK_FALSE(r.passed);
    // The same rule with += passes.
    auto add = [](const std::vector<Tensor64>& in) {
        const auto& x = in[0];
        Tensor64 out(xt::xarray<double>(3.0 * x.value()));
        xgrad::record("add", {x}, out, [](const auto& gy, auto& grads) {
            if (grads[0]) *grads[0] += 3.0 * gy;
        });
        return out;
    };
    CHECK(xgrad::gradcheck(add, {xgrad::randn<double>({4}, true)}).passed);
}

TEST_CASE("gradcheck: a rule returning the wrong shape fails instead of crashing", "[gradcheck]") {
    auto wrong = [](const std::vector<Tensor64>& in) {
        Tensor64 out(xt::xarray<double>(in[0].value()));
        xgrad::record("wrong_shape", {in[0]}, out, [](const auto&, auto& grads) {
            if (grads[0]) *grads[0] = xt::ones<double>({7});
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

TEST_CASE("gradcheck: every op kind has registered cases, and case names are unique", "[gradcheck]") {
    std::set<std::string> ops, ids;
    for (const auto& c : xgrad::gradcheck_cases()) {
        ops.insert(c.op);
        CHECK(ids.insert(c.op + "/" + c.name).second);
    }
    for (int k = 0; k < static_cast<int>(xgrad::OpKind::count_); ++k) {
        const std::string name(xgrad::op_name(static_cast<xgrad::OpKind>(k)));
        INFO("op kind " << name);
        CHECK(ops.count(name) == 1);
    }
}
