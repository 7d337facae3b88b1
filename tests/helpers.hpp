#pragma once

#include <cmath>
#include <string>

#include <fmt/format.h>
#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>

#include "xgrad/tensor.hpp"

namespace xgrad_test {

// "" when a and b have the same shape and every element agrees within
// atol + rtol·|b|; otherwise both shapes and the first mismatch. Use as
// CHECK(array_diff(actual, expected) == "").
template <class A, class B>
std::string array_diff(const A& actual, const B& expected, double atol = 1e-6, double rtol = 1e-6) {
    const xt::xarray<double> a = xt::cast<double>(actual);
    const xt::xarray<double> b = xt::cast<double>(expected);
    const auto sa = xgrad::to_string(xgrad::Shape(a.shape().begin(), a.shape().end()));
    const auto sb = xgrad::to_string(xgrad::Shape(b.shape().begin(), b.shape().end()));
    if (sa != sb) return fmt::format("shapes differ: actual {}, expected {}", sa, sb);
    for (std::size_t k = 0; k < a.size(); ++k) {
        const double x = a.data()[k], y = b.data()[k];
        if (!(std::abs(x - y) <= atol + rtol * std::abs(y)) && !(std::isnan(x) && std::isnan(y)))
            return fmt::format("shape {}: first mismatch at flat index {}: actual {}, expected {}", sa, k, x, y);
    }
    return "";
}

}  // namespace xgrad_test

namespace xgrad_test {

// A [n, 1] column: xt::xarray's nested braces are ambiguous for one element per row.
inline xt::xarray<double> column(std::initializer_list<double> v) {
    xt::xarray<double> a = xt::adapt(std::vector<double>(v), {v.size(), std::size_t{1}});
    return a;
}

}  // namespace xgrad_test

namespace xgrad_test {

// An array of the given shape holding `values` in row-major order.
inline xt::xarray<double> array(const xgrad::Shape& shape, std::initializer_list<double> values) {
    xt::xarray<double> a = xt::adapt(std::vector<double>(values), std::vector<std::size_t>(shape.begin(), shape.end()));
    return a;
}

}  // namespace xgrad_test
