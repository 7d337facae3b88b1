#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "xgrad/tensor.hpp"

namespace xgrad {

/// Tolerances of a gradient check; the defaults are PyTorch's gradcheck defaults.
struct GradcheckOptions {
    double eps = 1e-6;   ///< central-difference step
    double atol = 1e-5;  ///< |analytic - numeric| <= atol + rtol * |numeric|
    double rtol = 1e-3;
    std::uint64_t seed = 0;  ///< seeds the random output gradient
};

/// The outcome of one gradient check. `message` is empty on success; on failure it names
/// the input, the flat and multi-index, both values and every shape.
struct GradcheckReport {
    bool passed = true;
    double max_abs_err = 0;  ///< over every checked element of every input
    double max_rel_err = 0;  ///< |analytic - numeric| / |numeric| (0 where both are 0)
    std::string message;
    explicit operator bool() const { return passed; }
};

/// A function of tensors whose backward is to be checked: any shape of output.
using GradcheckFn = std::function<Tensor64(const std::vector<Tensor64>&)>;

/// Checks fn's backward against central differences, in float64, for every input that
/// requires grad. With a random output gradient v (seeded), it compares the vector-Jacobian
/// product from backward(v) with (f(x + eps) - f(x - eps)) · v / 2eps, element by element.
/// It also fails when an input's gradient is all zero while the numeric one is not, when
/// both are all zero (a check of two zeros proves nothing), when a zero output gradient
/// changes an input's gradient, and when fn or backward throws. Every input's gradient
/// accumulator starts from random values, so a rule that assigns (`=`) where it must add
/// (`+=`) fails. Inputs are copied; the caller's tensors are not modified.
///
/// ```
/// auto r = xgrad::gradcheck([](const auto& x) { return xgrad::tanh(x[0]); },
///                           {xgrad::randn<double>({3, 4}, true)});
/// if (!r) std::cerr << r.message;
/// ```
GradcheckReport gradcheck(const GradcheckFn& fn, const std::vector<Tensor64>& inputs,
                          const GradcheckOptions& options = {});

/// One registered case of the op list: an op, a case name, and a check that builds its
/// inputs from a seed.
struct GradcheckCase {
    std::string op;
    std::string name;
    std::function<GradcheckReport(std::uint64_t seed)> run;
};

/// Every differentiable op of the library with its cases, in a stable order.
const std::vector<GradcheckCase>& gradcheck_cases();

}  // namespace xgrad
