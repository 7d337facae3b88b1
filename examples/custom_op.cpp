// A user-defined op with its own backward rule, checked with xgrad::gradcheck.
//
// swish(x) = x · sigmoid(x); its derivative is s + x·s·(1 - s) = s·(1 + x·(1 - s)).
// The op computes its forward value, then records itself with xgrad::record and a backward
// rule that adds dL/dx = gy · s·(1 + x·(1 - s)) for input 0: the same mechanism every
// library op uses. The rule is written in tensor ops, so the gradient is differentiable
// again: gradgradcheck proves its second derivative too.

#include <cstdio>

#include <xtensor/xmath.hpp>

#include "xgrad/xgrad.hpp"

template <class T>
xgrad::basic_tensor<T> swish(const xgrad::basic_tensor<T>& x) {
    const xt::xarray<T> s = T(1) / (T(1) + xt::exp(-x.value()));
    xgrad::basic_tensor<T> out(xt::xarray<T>(x.value() * s));
    // Capture the input (a cheap handle), never the output.
    xgrad::record("swish", {x}, out, [x](const xgrad::basic_tensor<T>& gy, auto& grads) {
        const auto s = xgrad::sigmoid(x);
        grads.add(0, gy * s * (T(1) + x * (T(1) - s)));
    });
    return out;
}

int main() {
    xgrad::manual_seed(42);

    // Use it like any op: it composes with the library's ops and their gradients.
    auto x = xgrad::randn<double>({2, 3}, /*requires_grad=*/true);
    auto loss = xgrad::sum(swish(x) * 2.0);
    loss.backward();
    std::printf("loss = %.6f\n", loss.item());

    // Prove the backward rule numerically.
    const auto report = xgrad::gradcheck(
        [](const std::vector<xgrad::Tensor64>& in) { return swish(in[0]); },
        {xgrad::randn<double>({4, 5}, true)});
    std::printf("gradcheck swish: %s (max abs err %.2e, max rel err %.2e)\n",
                report.passed ? "PASS" : "FAIL", report.max_abs_err, report.max_rel_err);
    if (!report) std::printf("%s\n", report.message.c_str());
    const auto second = xgrad::gradgradcheck(
        [](const std::vector<xgrad::Tensor64>& in) { return swish(in[0]); },
        {xgrad::randn<double>({4, 5}, true)});
    std::printf("gradgradcheck swish: %s (max abs err %.2e)\n", second.passed ? "PASS" : "FAIL",
                second.max_abs_err);
    if (!second) std::printf("%s\n", second.message.c_str());
    return report && second ? 0 : 1;
}
