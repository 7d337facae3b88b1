// A physics-informed network, in float64: u(x) = net(x) learns to solve Poisson's equation
//
//     -u''(x) = π² sin(πx) on [0, 1],   u(0) = u(1) = 0,   exact solution u(x) = sin(πx)
//
// from the equation alone: no value of the solution is given, only the residual of the
// equation at collocation points and the two boundary values. The loss contains u'', the
// second derivative of the network with respect to its input, taken with
// xgrad::grad(..., {.create_graph = true}) twice; loss.backward() then differentiates that
// through the network's weights (a third derivative of every op on the way).
//
//   tools/run pinn [--steps N] [--points N] [--hidden N]
//
// It reports the largest error against sin(πx) on 201 points of [0, 1].

#include <cmath>
#include <numbers>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "xgrad/xgrad.hpp"

using xgrad::Tensor64;

namespace {

// A tanh MLP 1 -> hidden -> hidden -> 1, as plain float64 tensors (Xavier-uniform weights).
struct Mlp {
    std::vector<Tensor64> params;  // w0, b0, w1, b1, w2, b2

    explicit Mlp(std::size_t hidden) {
        const std::size_t sizes[] = {1, hidden, hidden, 1};
        for (int l = 0; l < 3; ++l) {
            const double limit = std::sqrt(6.0 / static_cast<double>(sizes[l] + sizes[l + 1]));
            params.push_back(Tensor64(xt::xarray<double>(
                (xgrad::rand<double>({sizes[l], sizes[l + 1]}).value() * 2.0 - 1.0) * limit), true));
            params.push_back(xgrad::zeros<double>({sizes[l + 1]}, true));
        }
    }

    Tensor64 operator()(const Tensor64& x) const {
        auto h = xgrad::tanh(xgrad::linear(x, params[0], params[1]));
        h = xgrad::tanh(xgrad::linear(h, params[2], params[3]));
        return xgrad::linear(h, params[4], params[5]);
    }
};

// d(sum of y)/dx as a tensor with its own graph: each row of y depends on its own row of x
// only, so this is the derivative at every point.
Tensor64 derivative(const Tensor64& y, const Tensor64& x) {
    return xgrad::grad(y, {x}, {.grad_outputs = {xgrad::ones<double>(y.shape())}, .create_graph = true})[0];
}

// Adam on float64 tensors, kept here until the optimizers take Tensor64 (issue 13, part 5).
struct Adam {
    double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8;
    std::vector<xt::xarray<double>> m{}, v{};
    int t = 0;

    void step(std::vector<Tensor64>& params) {
        if (m.empty())
            for (const auto& p : params) {
                m.push_back(xt::zeros<double>(p.shape()));
                v.push_back(xt::zeros<double>(p.shape()));
            }
        ++t;
        for (std::size_t i = 0; i < params.size(); ++i) {
            const auto& g = params[i].grad();
            m[i] = b1 * m[i] + (1 - b1) * g;
            v[i] = b2 * v[i] + (1 - b2) * g * g;
            const double c1 = 1 - std::pow(b1, t), c2 = 1 - std::pow(b2, t);
            params[i].mutable_value() -= lr * (m[i] / c1) / (xt::sqrt(v[i] / c2) + eps);
            params[i].zero_grad();
        }
    }
};

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"A physics-informed network solves -u'' = pi^2 sin(pi x), u(0) = u(1) = 0, in float64."};
    int steps = 3000, points = 64, hidden = 16;
    double lr = 0.01, target = 0;
    app.add_option("--steps", steps, "Adam steps")->check(CLI::PositiveNumber);
    app.add_option("--points", points, "Collocation points in (0, 1)")->check(CLI::PositiveNumber);
    app.add_option("--hidden", hidden, "Units per hidden layer")->check(CLI::PositiveNumber);
    app.add_option("--lr", lr, "Adam learning rate")->check(CLI::PositiveNumber);
    app.add_option("--expect-error-below", target, "Exit 1 unless the final max error is below this");
    CLI11_PARSE(app, argc, argv);

    constexpr double pi = std::numbers::pi;
    xgrad::manual_seed(5);
    Mlp net(static_cast<std::size_t>(hidden));
    Adam adam;
    adam.lr = lr;
    // Collocation points: the midpoints of `points` equal cells, fixed for the whole run.
    xt::xarray<double> xs = (xt::arange<double>(points) + 0.5) / points;
    xs.reshape({static_cast<std::size_t>(points), 1});
    const Tensor64 forcing(xt::xarray<double>(pi * pi * xt::sin(pi * xs)));
    xt::xarray<double> ends{0.0, 1.0};
    ends.reshape({2, 1});
    const Tensor64 boundary(ends);

    auto max_error = [&] {
        xgrad::NoGradGuard off;
        xt::xarray<double> grid = xt::linspace<double>(0, 1, 201);
        grid.reshape({201, 1});
        const auto u = net(Tensor64(grid));
        return xt::amax(xt::abs(u.value() - xt::sin(pi * grid)))();
    };

    for (int step = 1; step <= steps; ++step) {
        const Tensor64 x(xs, true);  // the inputs the derivatives are taken with respect to
        const auto u = net(x);
        const auto d2u = derivative(derivative(u, x), x);
        const auto residual = xgrad::mean(xgrad::square(d2u + forcing));         // -u'' = f
        const auto edges = xgrad::mean(xgrad::square(net(boundary)));            // u(0) = u(1) = 0
        const auto loss = residual + edges * 10.0;
        loss.backward();
        adam.step(net.params);
        if (step == 1 || step % 500 == 0 || step == steps)
            fmt::print("step {:5d}  loss {:.3e}  (residual {:.3e}, boundary {:.3e})  max |u - sin(pi x)| {:.3e}\n",
                       step, loss.item(), residual.item(), edges.item(), max_error());
    }
    const double error = max_error();
    fmt::print("max |u - sin(pi x)| on 201 points of [0, 1]: {:.3e}\n", error);
    return target > 0 && !(error < target) ? 1 : 0;
}
