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

/// Checks fn's second derivatives in float64, for every input that requires grad. With random
/// v (the output gradient) and u_i (one per input), it builds s = Σ_i ⟨dL/dx_i, u_i⟩, where
/// dL/dx = vᵀ·J comes from xgrad::grad with create_graph, and differentiates s once more: ds/dx_j
/// is vᵀ·H·u (every pair of inputs, the Hessian of ⟨f, v⟩), ds/dv is J·u (each rule's
/// derivative in its incoming gradient). Both are compared, element by element, with central
/// differences of s computed by plain first-order passes. It also fails when the gradients
/// with create_graph differ from the plain ones, when every second derivative is zero both
/// ways (proves nothing), and when fn or a pass throws. A rule that computes its gradient from
/// raw arrays passes gradcheck but fails here: its gradient is a constant to the graph.
///
/// ```
/// auto r = xgrad::gradgradcheck([](const auto& x) { return xgrad::tanh(x[0] * x[1]); },
///                               {xgrad::randn<double>({3}, true), xgrad::randn<double>({3}, true)});
/// ```
GradcheckReport gradgradcheck(const GradcheckFn& fn, const std::vector<Tensor64>& inputs,
                              const GradcheckOptions& options = {});

/// One registered case of the op list: an op, a case name, the order of derivatives it checks
/// (1: gradcheck, 2: gradgradcheck), and a check that builds its inputs from a seed.
struct GradcheckCase {
    std::string op;
    std::string name;
    int order = 1;
    std::function<GradcheckReport(std::uint64_t seed)> run;
};

/// Every differentiable op of the library with its cases, first and second order, in a
/// stable order.
const std::vector<GradcheckCase>& gradcheck_cases();

}  // namespace xgrad
