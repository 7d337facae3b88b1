#include "xgrad/ops/activation.hpp"

#include <cmath>

#include <xtensor/xmath.hpp>
#include <xtensor/xnoalias.hpp>
#include <xtensor/xreducer.hpp>
#include <xtensor/xtensor.hpp>

#include "detail/axes.hpp"
#include "detail/cases.hpp"
#include "detail/numeric.hpp"
#include "detail/parallel.hpp"
#include "xgrad/ops/elementwise.hpp"
#include "xgrad/ops/reduce.hpp"
#include "xgrad/tape.hpp"

namespace xgrad {

template <class T>
basic_tensor<T> relu(const basic_tensor<T>& x) {
    // Raw loops: xtensor's generic assignment of where(...) cost 7% of a W1 training step.
    xt::xarray<T> y = xt::empty<T>(x.shape());
    const T* xv = x.value().data();
    T* yv = y.data();
    const auto n = static_cast<std::ptrdiff_t>(y.size());
#pragma omp parallel for schedule(static) if (n > detail::kParallelElements)
    // !(x <= 0) rather than x > 0: NaN passes through (as in PyTorch and numpy), so that
    // detect_anomaly and the user see it.
    for (std::ptrdiff_t i = 0; i < n; ++i) yv[i] = !(xv[i] <= T(0)) ? xv[i] : T(0);
    basic_tensor<T> out(std::move(y));
    record(OpKind::relu, {x}, out, [](const basic_tensor<T>& gy, auto& grads) {
        grads.add(0, relu_backward(gy, grads.output()));  // dx = gy where y > 0 (same as x > 0)
    });
    return out;
}

template <class T>
basic_tensor<T> relu_backward(const basic_tensor<T>& gy, const basic_tensor<T>& y) {
    detail::check_shape(gy.shape() == y.shape(), "relu_backward: gy {} and y {} differ", gy.shape(), y.shape());
    xt::xarray<T> dx = xt::empty<T>(y.shape());
    const T* yv = y.value().data();
    const T* g = gy.value().data();
    T* d = dx.data();
    const auto n = static_cast<std::ptrdiff_t>(dx.size());
#pragma omp parallel for schedule(static) if (n > detail::kParallelElements)
    for (std::ptrdiff_t i = 0; i < n; ++i) d[i] = yv[i] > T(0) ? g[i] : T(0);
    basic_tensor<T> out(std::move(dx));
    record(OpKind::relu_backward, {gy, y}, out, [y](const basic_tensor<T>& ggx, auto& grads) {
        // linear in gy with the same mask; piecewise constant in y (its gradient is zero)
        if (grads.needs(0)) grads.add(0, relu_backward(ggx, y));
    });
    return out;
}

template <class T>
basic_tensor<T> leaky_relu(const basic_tensor<T>& x, double slope_in) {
    const T slope = static_cast<T>(slope_in);
    basic_tensor<T> out(xt::xarray<T>(xt::where(x.value() > T(0), x.value(), slope * x.value())));
    record(OpKind::leaky_relu, {x}, out, [x, slope](const basic_tensor<T>& gy, auto& grads) {
        // dx = gy where x > 0, slope·gy elsewhere: gy times a piecewise constant factor
        const basic_tensor<T> factor(xt::xarray<T>(xt::where(x.value() > T(0), T(1), slope)));
        grads.add(0, mul(gy, factor));
    });
    return out;
}

template <class T>
basic_tensor<T> sigmoid(const basic_tensor<T>& x) {
    xt::xarray<T> y = xt::empty<T>(x.shape());
    const T* px = x.value().data();
    for (std::size_t i = 0; i < y.size(); ++i) {
        // e^-|x| never overflows
        const T e = std::exp(-std::abs(px[i]));
        y.data()[i] = px[i] >= 0 ? T(1) / (T(1) + e) : e / (T(1) + e);
    }
    basic_tensor<T> out(std::move(y));
    record(OpKind::sigmoid, {x}, out, [](const basic_tensor<T>& gy, auto& grads) {
        const auto& y = grads.output();
        grads.add(0, mul(gy, mul(y, T(1) - y)));  // dx = gy·y·(1 - y)
    });
    return out;
}

template <class T>
basic_tensor<T> tanh(const basic_tensor<T>& x) {
    basic_tensor<T> out(xt::xarray<T>(xt::tanh(x.value())));
    record(OpKind::tanh, {x}, out, [](const basic_tensor<T>& gy, auto& grads) {
        const auto& y = grads.output();
        grads.add(0, mul(gy, T(1) - square(y)));  // dx = gy·(1 - y²)
    });
    return out;
}

namespace {

// x - max(x) - log(sum(exp(x - max(x)))) along `axis`: the stable log-softmax, computed in the
// wider type so that x - max(x) cannot overflow (logits of ±3e38 in float), then saturated to
// T's range: finite for any finite x.
template <class T>
xt::xarray<T> stable_log_softmax(const xt::xarray<T>& x, std::size_t axis) {
    using W = detail::wider_t<T>;
    const std::array<std::size_t, 1> ax{axis};
    // Reductions are evaluated into arrays first: a lazy one inside an elementwise expression
    // would be recomputed for every element. (xtensor 0.24's immediate strategy with keep_dims
    // crashes, so it is not used.)
    const xt::xarray<W> xw = xt::cast<W>(x);
    const xt::xarray<W> m = xt::amax(xw, ax, xt::keep_dims);
    xt::xarray<W> shifted = xw - m;
    const xt::xarray<W> lse = xt::log(xt::sum(xt::exp(shifted), ax, xt::keep_dims));
    shifted -= lse;
    xt::xarray<T> out = xt::empty<T>(x.shape());
    for (std::size_t i = 0; i < out.size(); ++i) out.data()[i] = detail::saturate<T>(shifted.data()[i]);
    return out;
}

}  // namespace

template <class T>
basic_tensor<T> softmax(const basic_tensor<T>& x, std::ptrdiff_t axis_in) {
    const std::size_t axis = detail::normalize_axis("softmax", axis_in, x.shape());
    basic_tensor<T> out(xt::xarray<T>(xt::exp(stable_log_softmax(x.value(), axis))));
    record(OpKind::softmax, {x}, out, [axis](const basic_tensor<T>& gy, auto& grads) {
        // dx = y · (gy - sum(gy·y) along axis)
        const auto& y = grads.output();
        const auto dot = sum(mul(gy, y), {static_cast<std::ptrdiff_t>(axis)}, true);
        grads.add(0, mul(y, sub(gy, dot)));
    });
    return out;
}

template <class T>
basic_tensor<T> log_softmax(const basic_tensor<T>& x, std::ptrdiff_t axis_in) {
    const std::size_t axis = detail::normalize_axis("log_softmax", axis_in, x.shape());
    basic_tensor<T> out(stable_log_softmax(x.value(), axis));
    record(OpKind::log_softmax, {x}, out, [axis](const basic_tensor<T>& gy, auto& grads) {
        // dx = gy - softmax(x) · sum(gy) along axis, softmax(x) = exp(y)
        const auto total = sum(gy, {static_cast<std::ptrdiff_t>(axis)}, true);
        grads.add(0, sub(gy, mul(exp(grads.output()), total)));
    });
    return out;
}

#define XGRAD_INSTANTIATE(T)                                                        \
    template basic_tensor<T> relu(const basic_tensor<T>&);                          \
    template basic_tensor<T> relu_backward(const basic_tensor<T>&, const basic_tensor<T>&); \
    template basic_tensor<T> leaky_relu(const basic_tensor<T>&, double);            \
    template basic_tensor<T> sigmoid(const basic_tensor<T>&);                       \
    template basic_tensor<T> tanh(const basic_tensor<T>&);                          \
    template basic_tensor<T> softmax(const basic_tensor<T>&, std::ptrdiff_t);       \
    template basic_tensor<T> log_softmax(const basic_tensor<T>&, std::ptrdiff_t);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

namespace detail {

void register_activation_cases(CaseRegistry& r) {
    using V = std::vector<Tensor64>;
    const CaseInput x{{3, 4}, -2.0, 2.0};
    r.add(OpKind::relu, "[3,4] both signs", {x}, [](const V& v) { return relu(v[0]); });
    // y is where relu's output is positive; the op is not differentiable in it
    r.add(OpKind::relu_backward, "[3,4] gy, mask of y", {x, {{3, 4}, -2.0, 2.0, false}},
          [](const V& v) { return relu_backward(v[0], v[1]); });
    r.add(OpKind::leaky_relu, "[3,4] slope 0.1", {x}, [](const V& v) { return leaky_relu(v[0], 0.1); });
    r.add(OpKind::sigmoid, "[3,4]", {x}, [](const V& v) { return sigmoid(v[0]); });
    r.add(OpKind::sigmoid, "large |x| [2,3]", {{{2, 3}, -30.0, 30.0}}, [](const V& v) { return sigmoid(v[0] * 0.5); });
    r.add(OpKind::tanh, "[3,4]", {x}, [](const V& v) { return tanh(v[0]); });
    r.add(OpKind::softmax, "rows of [3,4]", {x}, [](const V& v) { return softmax(v[0]); });
    r.add(OpKind::softmax, "axis 0 of [2,3,4]", {{{2, 3, 4}}}, [](const V& v) { return softmax(v[0], 0); });
    r.add(OpKind::softmax, "logits near 1000", {{{2, 5}, 999.0, 1001.0}}, [](const V& v) { return softmax(v[0]); });
    r.add(OpKind::log_softmax, "rows of [3,4]", {x}, [](const V& v) { return log_softmax(v[0]); });
    r.add(OpKind::log_softmax, "axis 1 of [2,3,4]", {{{2, 3, 4}}}, [](const V& v) { return log_softmax(v[0], 1); });
    r.add(OpKind::log_softmax, "logits near -1000", {{{2, 5}, -1001.0, -999.0}},
          [](const V& v) { return log_softmax(v[0]); });
}

}  // namespace detail
}  // namespace xgrad
