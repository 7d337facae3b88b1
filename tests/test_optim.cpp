#include <cmath>

#include <catch2/catch.hpp>

#include "helpers.hpp"
#include "xgrad/xgrad.hpp"

using xgrad::Tensor;
using Catch::Matchers::Contains;
namespace optim = xgrad::optim;

namespace {

// Runs `steps` updates of a 2-element parameter starting at (1, -2) whose gradient at each
// step is g(t) = (0.5 t, -1 + 0.1 t); returns the parameter.
template <class Opt, class Options>
std::pair<double, double> run(Options o, int steps, std::function<void(Opt&, int)> between = {}) {
    Tensor p(xt::xarray<float>{1, -2}, true);
    Opt opt({p}, o);
    for (int t = 1; t <= steps; ++t) {
        xgrad::sum(p * Tensor(xt::xarray<float>{0.5f * t, -1 + 0.1f * t})).backward();
        opt.step();
        opt.zero_grad();
        if (between) between(opt, t);
    }
    return {p.value()(0), p.value()(1)};
}

// The same gradients fed to a scalar reference implementation of a torch.optim formula.
template <class Step>
std::pair<double, double> reference(int steps, Step step) {
    double p[2] = {1, -2};
    for (int t = 1; t <= steps; ++t) {
        const double g[2] = {0.5 * t, -1 + 0.1 * t};
        for (int k = 0; k < 2; ++k) step(k, t, p[k], g[k]);
    }
    return {p[0], p[1]};
}

void check_close(std::pair<double, double> a, std::pair<double, double> b) {
    CHECK(a.first == Approx(b.first).epsilon(1e-5));
    CHECK(a.second == Approx(b.second).epsilon(1e-5));
}

}  // namespace

TEST_CASE("SGD: momentum, dampening, nesterov and weight decay follow torch.optim.SGD", "[optim]") {
    for (bool nesterov : {false, true}) {
        const double lr = 0.1, mu = 0.9, wd = 0.01, damp = nesterov ? 0 : 0.2;
        double buf[2];
        const auto expected = reference(4, [&](int k, int t, double& p, double g) {
            double d = g + wd * p;
            buf[k] = t == 1 ? d : mu * buf[k] + (1 - damp) * d;
            d = nesterov ? d + mu * buf[k] : buf[k];
            p -= lr * d;
        });
        check_close(run<optim::SGD>(optim::SGDOptions{.lr = lr, .momentum = mu, .dampening = damp, .weight_decay = wd,
                                                      .nesterov = nesterov},
                                    4),
                    expected);
    }
    check_close(run<optim::SGD>(optim::SGDOptions{.lr = 0.5}, 1), {1 - 0.25, -2 - 0.5 * -0.9});
}

TEST_CASE("Adagrad follows torch.optim.Adagrad", "[optim]") {
    const double lr = 0.1, decay = 0.05, init = 0.1, eps = 1e-10;
    double sum[2] = {init, init};
    const auto expected = reference(3, [&](int k, int t, double& p, double g) {
        const double clr = lr / (1 + (t - 1) * decay);
        sum[k] += g * g;
        p -= clr * g / (std::sqrt(sum[k]) + eps);
    });
    check_close(run<optim::Adagrad>(optim::AdagradOptions{.lr = lr, .lr_decay = decay, .initial_accumulator_value = init}, 3),
                expected);
}

TEST_CASE("RMSprop, plain and centered, with and without momentum, follows torch.optim.RMSprop", "[optim]") {
    for (bool centered : {false, true})
    for (double mu : {0.0, 0.5}) {
        const double lr = 0.01, alpha = 0.99, eps = 1e-8;
        double sq[2] = {0, 0}, ga[2] = {0, 0}, buf[2] = {0, 0};
        const auto expected = reference(3, [&](int k, int, double& p, double g) {
            sq[k] = alpha * sq[k] + (1 - alpha) * g * g;
            double avg;
            if (centered) {
                ga[k] = alpha * ga[k] + (1 - alpha) * g;
                avg = std::sqrt(sq[k] - ga[k] * ga[k]) + eps;
            } else {
                avg = std::sqrt(sq[k]) + eps;
            }
            if (mu > 0) {
                buf[k] = mu * buf[k] + g / avg;
                p -= lr * buf[k];
            } else {
                p -= lr * g / avg;
            }
        });
        INFO("centered " << centered << ", momentum " << mu);
        check_close(run<optim::RMSprop>(optim::RMSpropOptions{.lr = lr, .momentum = mu, .centered = centered}, 3),
                    expected);
    }
}

TEST_CASE("Adam and AdamW, with and without amsgrad, follow torch.optim with bias correction", "[optim][traps]") {
    for (bool decoupled : {false, true})
    for (bool amsgrad : {false, true}) {
        // beta2 0.5 lets v follow g², which shrinks on the second parameter: amsgrad's maximum
        // then differs from v.
        const double lr = 0.01, b1 = 0.9, b2 = amsgrad ? 0.5 : 0.999, eps = 1e-8, wd = 0.1;
        double m[2] = {0, 0}, v[2] = {0, 0}, vmax[2] = {0, 0};
        const auto expected = reference(4, [&](int k, int t, double& p, double g) {
            if (decoupled)
                p *= 1 - lr * wd;
            else
                g += wd * p;
            m[k] = b1 * m[k] + (1 - b1) * g;
            v[k] = b2 * v[k] + (1 - b2) * g * g;
            vmax[k] = std::max(vmax[k], v[k]);
            const double bc1 = 1 - std::pow(b1, t), bc2 = 1 - std::pow(b2, t);
            p -= lr / bc1 * m[k] / (std::sqrt(amsgrad ? vmax[k] : v[k]) / std::sqrt(bc2) + eps);
        });
        const optim::AdamOptions o{.lr = lr, .beta2 = b2, .weight_decay = wd, .amsgrad = amsgrad};
        INFO((decoupled ? "AdamW" : "Adam") << ", amsgrad " << amsgrad);
        check_close(decoupled ? run<optim::AdamW>(o, 4) : run<optim::Adam>(o, 4), expected);
    }
    // With bias correction the first step moves each parameter by lr, whatever the gradient's size.
    const auto first = run<optim::Adam>(optim::AdamOptions{.lr = 0.01}, 1);
    CHECK(first.first == Approx(1 - 0.01));
    CHECK(first.second == Approx(-2 + 0.01));
}

TEST_CASE("optimizers update a large parameter (on all threads, in vectors) as they update a small one",
          "[optim]") {
    // Each element's update reads only its own values, so a parameter of 70001 elements (split
    // between threads, vector loops with a scalar tail) must move, bit for bit, as a parameter
    // made of a few of its elements (at the start, a thread boundary and the tail).
    const std::vector<std::size_t> picked{0, 1, 15, 16, 35000, 35001, 69999, 70000};
    using Make = std::function<std::unique_ptr<optim::Optimizer>(const Tensor&)>;
    const std::vector<std::pair<const char*, Make>> optimizers{
        {"SGD", [](const Tensor& p) { return std::make_unique<optim::SGD>(optim::ParamList{p}, optim::SGDOptions{.lr = 0.1}); }},
        {"SGD momentum", [](const Tensor& p) {
             return std::make_unique<optim::SGD>(optim::ParamList{p},
                                                 optim::SGDOptions{.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01});
         }},
        {"SGD nesterov", [](const Tensor& p) {
             return std::make_unique<optim::SGD>(optim::ParamList{p},
                                                 optim::SGDOptions{.lr = 0.1, .momentum = 0.9, .nesterov = true});
         }},
        {"Adagrad", [](const Tensor& p) {
             return std::make_unique<optim::Adagrad>(optim::ParamList{p}, optim::AdagradOptions{.lr = 0.1, .weight_decay = 0.01});
         }},
        {"RMSprop centered momentum", [](const Tensor& p) {
             return std::make_unique<optim::RMSprop>(optim::ParamList{p},
                                                     optim::RMSpropOptions{.lr = 0.01, .momentum = 0.5, .centered = true});
         }},
        {"Adam amsgrad", [](const Tensor& p) {
             return std::make_unique<optim::Adam>(optim::ParamList{p},
                                                  optim::AdamOptions{.lr = 0.01, .beta2 = 0.5, .weight_decay = 0.1, .amsgrad = true});
         }},
        {"AdamW", [](const Tensor& p) {
             return std::make_unique<optim::AdamW>(optim::ParamList{p}, optim::AdamOptions{.lr = 0.01, .weight_decay = 0.1});
         }},
    };
    xgrad::manual_seed(5);
    const xt::xarray<float> start = xgrad::randn({70001}).value();
    std::vector<xt::xarray<float>> grads;
    for (int t = 0; t < 3; ++t) grads.push_back(xgrad::randn({70001}).value());
    const auto some = [&](const xt::xarray<float>& a) {
        xt::xarray<float> out = xt::zeros<float>({picked.size()});
        for (std::size_t k = 0; k < picked.size(); ++k) out(k) = a(picked[k]);
        return out;
    };
    for (const auto& [name, make] : optimizers) {
        Tensor large(start, true), small(some(start), true);
        auto large_opt = make(large), small_opt = make(small);
        for (const auto& g : grads) {
            xgrad::sum(large * Tensor(g)).backward();
            xgrad::sum(small * Tensor(some(g))).backward();
            large_opt->step();
            small_opt->step();
            large_opt->zero_grad();
            small_opt->zero_grad();
        }
        INFO(name);
        CHECK(xgrad_test::same_bits(xt::xarray<float>(some(large.value())), small.value()));
        CHECK_FALSE(xgrad_test::same_bits(xt::xarray<float>(some(large.value())), some(start)));
    }
}

TEST_CASE("schedulers set the rate per epoch as torch.optim.lr_scheduler", "[optim]") {
    Tensor p(xt::xarray<float>{1}, true);
    optim::SGD opt({p}, {.lr = 1.0});
    optim::StepLR step(opt, 2, 0.5);
    std::vector<double> rates;
    for (int e = 0; e < 5; ++e) {
        step.step();
        rates.push_back(opt.lr());
    }
    CHECK(rates == std::vector<double>{1, 0.5, 0.5, 0.25, 0.25});
    optim::SGD opt2({p}, {.lr = 1.0});
    optim::CosineAnnealingLR cosine(opt2, 4);
    cosine.step();
    CHECK(opt2.lr() == Approx((1 + std::cos(M_PI / 4)) / 2));
    for (int e = 0; e < 3; ++e) cosine.step();
    CHECK(opt2.lr() == Approx(0).margin(1e-12));
    optim::ExponentialLR exp(opt2, 0.5);
    exp.step();
    CHECK(opt2.lr() == Approx(0).margin(1e-12));  // from the rate it found: 0
}

TEST_CASE("clip_grad_norm scales all gradients to the norm", "[optim]") {
    Tensor a(xt::xarray<float>{1, 1}, true), b(xt::xarray<float>{1}, true);
    (xgrad::sum(a * Tensor(xt::xarray<float>{3, 0})) + xgrad::sum(b * 4.0f)).backward();
    CHECK(optim::clip_grad_norm({a, b}, 1.0) == Approx(5));
    CHECK(xgrad_test::array_diff(a.grad(), xt::xarray<float>{0.6f, 0}, 1e-5) == "");
    CHECK(b.grad()(0) == Approx(0.8).epsilon(1e-5));
    CHECK(optim::clip_grad_norm({a, b}, 10.0) == Approx(1).epsilon(1e-5));  // under the limit: unchanged
    REQUIRE_THROWS_AS(optim::clip_grad_norm({a}, 0), xgrad::ValueError);
}

TEST_CASE("optimizer state saves and restores: the next steps are identical", "[optim]") {
    auto train = [](optim::Adam& opt, Tensor& p, int steps) {
        for (int i = 0; i < steps; ++i) {
            xgrad::sum(xgrad::square(p)).backward();
            opt.step();
            opt.zero_grad();
        }
    };
    Tensor p(xt::xarray<float>{1, -2}, true);
    optim::Adam opt({p});
    train(opt, p, 3);
    const auto state = opt.state();
    const auto value = p.value();
    train(opt, p, 2);
    Tensor q(value, true);
    optim::Adam resumed({q});
    resumed.load_state(state);
    CHECK(resumed.steps() == 3);
    train(resumed, q, 2);
    CHECK(q.value() == p.value());
}

TEST_CASE("optimizers reject bad options", "[optim][errors]") {
    Tensor p(xt::xarray<float>{1}, true);
    REQUIRE_THROWS_WITH(optim::SGD({p}, {.lr = -1}), Contains("SGD: the learning rate must be finite and not negative"));
    REQUIRE_THROWS_AS(optim::SGD({p}, {.momentum = -0.5}), xgrad::ValueError);
    REQUIRE_THROWS_AS(optim::SGD({p}, {.lr = 0.1, .nesterov = true}), xgrad::ValueError);
    REQUIRE_THROWS_AS(optim::Adam({p}, {.beta1 = 1.0}), xgrad::ValueError);
    REQUIRE_THROWS_AS(optim::SGD({Tensor(xt::xarray<float>{1})}), xgrad::ValueError);
    optim::SGD opt({p}, {.momentum = 0.9});
    REQUIRE_THROWS_AS(opt.set_lr(-0.1), xgrad::ValueError);
    auto bad = opt.state();
    bad.emplace_back("momentum_buffer.0", xgrad::io::to_npy(xt::xarray<float>{1, 2}));
    REQUIRE_THROWS_WITH(opt.load_state(bad), Contains("shape [2]"));
    REQUIRE_THROWS_AS(optim::StepLR(opt, 0), xgrad::ValueError);
}
