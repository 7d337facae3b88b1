#include "xgrad/ops/activation.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <xtensor/xmath.hpp>
#include <xtensor/xnoalias.hpp>
#include <xtensor/xreducer.hpp>
#include <xtensor/xtensor.hpp>

#include "detail/axes.hpp"
#include "detail/cases.hpp"
#include "detail/numeric.hpp"
#include "detail/parallel.hpp"
#include "kernels/math.hpp"
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

namespace {

// y = f(x) elementwise into a fresh tensor.
template <class T, class F>
basic_tensor<T> elementwise(const basic_tensor<T>& x, F f) {
    xt::xarray<T> y = xt::empty<T>(x.shape());
    const T* v = x.value().data();
    T* out = y.data();
    const auto n = static_cast<std::ptrdiff_t>(y.size());
#pragma omp parallel for schedule(static) if (n > detail::kParallelElements)
    for (std::ptrdiff_t i = 0; i < n; ++i) out[i] = f(v[i]);
    return basic_tensor<T>(std::move(y));
}

// σ(v), from e^-|v| (which never overflows).
template <class T>
T logistic(T v) {
    const T e = kernels::math::exp(-std::abs(v));
    return v >= 0 ? T(1) / (T(1) + e) : e / (T(1) + e);
}

}  // namespace

template <class T>
basic_tensor<T> sigmoid(const basic_tensor<T>& x) {
    basic_tensor<T> out = elementwise(x, [](T v) { return logistic(v); });
    record(OpKind::sigmoid, {x}, out, [](const basic_tensor<T>& gy, auto& grads) {
        const auto& y = grads.output();
        grads.add(0, mul(gy, mul(y, T(1) - y)));  // dx = gy·y·(1 - y)
    });
    return out;
}

template <class T>
basic_tensor<T> tanh(const basic_tensor<T>& x) {
    basic_tensor<T> out = elementwise(x, [](T v) { return kernels::math::tanh(v); });
    record(OpKind::tanh, {x}, out, [](const basic_tensor<T>& gy, auto& grads) {
        const auto& y = grads.output();
        grads.add(0, mul(gy, T(1) - square(y)));  // dx = gy·(1 - y²)
    });
    return out;
}

namespace {

// A piecewise-constant factor of a rule (a mask, a slope) as a constant tensor: it has no
// derivative, so it enters the graph as a leaf.
template <class T, class F>
basic_tensor<T> constant_where(const basic_tensor<T>& x, F f) {
    xt::xarray<T> c = xt::empty<T>(x.shape());
    const T* v = x.value().data();
    for (std::size_t i = 0; i < c.size(); ++i) c.data()[i] = f(v[i]);
    return basic_tensor<T>(std::move(c));
}

constexpr double kSqrt2 = 1.41421356237309504880, kSqrt2OverPi = 0.79788456080286535588,
                 kInvSqrt2Pi = 0.39894228040143267794, kTwoOverSqrtPi = 1.12837916709551257390;

}  // namespace

template <class T>
basic_tensor<T> erf(const basic_tensor<T>& x) {
    basic_tensor<T> out = elementwise(x, [](T v) { return std::erf(v); });
    record(OpKind::erf, {x}, out, [x](const basic_tensor<T>& gy, auto& grads) {
        grads.add(0, gy * (exp(-square(x)) * T(kTwoOverSqrtPi)));  // d erf/dx = 2/√π · e^(-x²)
    });
    return out;
}

template <class T>
basic_tensor<T> gelu(const basic_tensor<T>& x, Gelu approximate) {
    const T c = T(kSqrt2OverPi), k = T(0.044715);
    basic_tensor<T> out = approximate == Gelu::tanh
                              ? elementwise(x, [c, k](T v) { return T(0.5) * v * (T(1) + kernels::math::tanh(c * (v + k * v * v * v))); })
                              : elementwise(x, [](T v) { return T(0.5) * v * (T(1) + std::erf(v / T(kSqrt2))); });
    const OpKind kind = approximate == Gelu::tanh ? OpKind::gelu_tanh : OpKind::gelu;
    record(kind, {x}, out, [x, approximate, c, k](const basic_tensor<T>& gy, auto& grads) {
        if (approximate == Gelu::tanh) {
            // y = x/2 (1 + t), t = tanh(c (x + k x³)): dy/dx = (1 + t)/2 + x/2 (1 - t²) c (1 + 3k x²)
            const auto t = tanh((x + square(x) * x * k) * c);
            grads.add(0, gy * ((t + T(1)) * T(0.5) + x * T(0.5) * (T(1) - square(t)) * ((square(x) * (T(3) * k) + T(1)) * c)));
        } else {
            // y = x Φ(x): dy/dx = Φ(x) + x φ(x), Φ(x) = (1 + erf(x/√2))/2, φ(x) = e^(-x²/2)/√(2π)
            const auto cdf = (erf(x * T(1 / kSqrt2)) + T(1)) * T(0.5);
            const auto pdf = exp(square(x) * T(-0.5)) * T(kInvSqrt2Pi);
            grads.add(0, gy * (cdf + x * pdf));
        }
    });
    return out;
}

template <class T>
basic_tensor<T> silu(const basic_tensor<T>& x) {
    basic_tensor<T> out = elementwise(x, [](T v) { return v * logistic(v); });
    record(OpKind::silu, {x}, out, [x](const basic_tensor<T>& gy, auto& grads) {
        const auto s = sigmoid(x);
        grads.add(0, gy * (s * (x * (T(1) - s) + T(1))));  // dy/dx = σ(x)(1 + x(1 - σ(x)))
    });
    return out;
}

template <class T>
basic_tensor<T> elu(const basic_tensor<T>& x, double alpha_in) {
    const T alpha = static_cast<T>(alpha_in);
    basic_tensor<T> out = elementwise(x, [alpha](T v) { return v > 0 ? v : alpha * std::expm1(v); });
    record(OpKind::elu, {x}, out, [x, alpha](const basic_tensor<T>& gy, auto& grads) {
        // dy/dx = 1 where x > 0, α e^x elsewhere
        const auto positive = constant_where(x, [](T v) { return v > 0 ? T(1) : T(0); });
        grads.add(0, gy * (positive + (T(1) - positive) * exp(x) * alpha));
    });
    return out;
}

template <class T>
basic_tensor<T> softplus(const basic_tensor<T>& x, double beta_in, double threshold_in) {
    const T beta = static_cast<T>(beta_in), threshold = static_cast<T>(threshold_in);
    // log(1 + e^(βx))/β, stable: max(βx, 0) + log1p(e^-|βx|); x itself above the threshold
    basic_tensor<T> out = elementwise(x, [beta, threshold](T v) {
        const T z = beta * v;
        return z > threshold ? v : (std::max(z, T(0)) + std::log1p(std::exp(-std::abs(z)))) / beta;
    });
    record(OpKind::softplus, {x}, out, [x, beta, threshold](const basic_tensor<T>& gy, auto& grads) {
        // dy/dx = σ(βx) below the threshold, 1 above
        const auto linear = constant_where(x, [beta, threshold](T v) { return beta * v > threshold ? T(1) : T(0); });
        grads.add(0, gy * (linear + (T(1) - linear) * sigmoid(x * beta)));
    });
    return out;
}

template <class T>
basic_tensor<T> hardswish(const basic_tensor<T>& x) {
    basic_tensor<T> out = elementwise(x, [](T v) { return v * std::clamp(v + T(3), T(0), T(6)) / T(6); });
    record(OpKind::hardswish, {x}, out, [x](const basic_tensor<T>& gy, auto& grads) {
        // dy/dx = 0 for x < -3, (2x + 3)/6 for -3 <= x <= 3, 1 above (PyTorch's boundaries)
        const auto middle = constant_where(x, [](T v) { return v >= T(-3) && v <= T(3) ? T(1) : T(0); });
        const auto above = constant_where(x, [](T v) { return v > T(3) ? T(1) : T(0); });
        grads.add(0, gy * (middle * (x * T(1.0 / 3) + T(0.5)) + above));
    });
    return out;
}

namespace {

// The maximum of n values, four at a time (one chain would wait on each comparison).
template <class W>
W max_of(const W* v, std::size_t n) {
    W m[4] = {-std::numeric_limits<W>::infinity(), -std::numeric_limits<W>::infinity(),
              -std::numeric_limits<W>::infinity(), -std::numeric_limits<W>::infinity()};
    std::size_t j = 0;
    for (; j + 4 <= n; j += 4)
        for (std::size_t l = 0; l < 4; ++l) m[l] = std::max(m[l], v[j + l]);
    for (; j < n; ++j) m[0] = std::max(m[0], v[j]);
    return std::max(std::max(m[0], m[1]), std::max(m[2], m[3]));
}

// x - max(x) - log(sum(exp(x - max(x)))) along `axis` (log: the stable log-softmax), or
// exp(x - max(x)) / sum(exp(x - max(x))) (the softmax), computed in the wider type so that
// x - max(x) cannot overflow (logits of ±3e38 in float), then saturated to T's range: finite
// for any finite x. x is [outer, k, inner] around the axis; each (outer, inner) position is one
// softmax over k values `inner` apart. Each step is its own loop over a block held in W, so
// that each vectorises (exp over x - max, the sums across rows of `inner` contiguous values;
// down a row when the axis is the last).
template <class T>
xt::xarray<T> stable_softmax(const xt::xarray<T>& x, std::size_t axis, bool log) {
    using W = detail::wider_t<T>;
    std::size_t outer = 1, inner = 1;
    for (std::size_t d = 0; d < axis; ++d) outer *= x.shape()[d];
    for (std::size_t d = axis + 1; d < x.dimension(); ++d) inner *= x.shape()[d];
    const std::size_t k = x.shape()[axis], size = k * inner;
    xt::xarray<T> out = xt::empty<T>(x.shape());
    if (out.size() == 0) return out;
#pragma omp parallel if (static_cast<std::ptrdiff_t>(out.size()) > detail::kParallelElements)
    {
        std::vector<W> shifted(size), e(size), m(inner), s(inner);
#pragma omp for schedule(static)
        for (std::ptrdiff_t o = 0; o < static_cast<std::ptrdiff_t>(outer); ++o) {
            const T* in = x.data() + static_cast<std::size_t>(o) * size;
            T* y = out.data() + static_cast<std::size_t>(o) * size;
            for (std::size_t v = 0; v < size; ++v) shifted[v] = static_cast<W>(in[v]);
            if (inner == 1) {
                m[0] = max_of(shifted.data(), k);
            } else {
                std::fill(m.begin(), m.end(), -std::numeric_limits<W>::infinity());
                for (std::size_t j = 0; j < k; ++j)
                    for (std::size_t i = 0; i < inner; ++i) m[i] = std::max(m[i], shifted[j * inner + i]);
            }
            if (inner == 1) {
                const W m0 = m[0];
                for (std::size_t j = 0; j < k; ++j) shifted[j] -= m0;
            } else {
                for (std::size_t j = 0; j < k; ++j)
                    for (std::size_t i = 0; i < inner; ++i) shifted[j * inner + i] -= m[i];
            }
            for (std::size_t v = 0; v < size; ++v) e[v] = kernels::math::exp(shifted[v]);
            std::fill(s.begin(), s.end(), W(0));
            detail::add_rows(e.data(), k, inner, s.data());
            if (!log) {
                for (std::size_t i = 0; i < inner; ++i) s[i] = W(1) / s[i];
                if (inner == 1) {
                    const W scale = s[0];
                    for (std::size_t j = 0; j < k; ++j) y[j] = static_cast<T>(e[j] * scale);
                } else {
                    for (std::size_t j = 0; j < k; ++j)
                        for (std::size_t i = 0; i < inner; ++i) y[j * inner + i] = static_cast<T>(e[j * inner + i] * s[i]);
                }
                continue;
            }
            for (std::size_t i = 0; i < inner; ++i) s[i] = std::log(s[i]);
            if (inner == 1) {
                const W log_s = s[0];
                for (std::size_t j = 0; j < k; ++j) y[j] = detail::saturate<T>(shifted[j] - log_s);
            } else {
                for (std::size_t j = 0; j < k; ++j)
                    for (std::size_t i = 0; i < inner; ++i)
                        y[j * inner + i] = detail::saturate<T>(shifted[j * inner + i] - s[i]);
            }
        }
    }
    return out;
}

}  // namespace

template <class T>
basic_tensor<T> softmax(const basic_tensor<T>& x, std::ptrdiff_t axis_in) {
    const std::size_t axis = detail::normalize_axis("softmax", axis_in, x.shape());
    basic_tensor<T> out(stable_softmax(x.value(), axis, false));
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
    basic_tensor<T> out(stable_softmax(x.value(), axis, true));
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
    template basic_tensor<T> log_softmax(const basic_tensor<T>&, std::ptrdiff_t);    \
    template basic_tensor<T> erf(const basic_tensor<T>&);                           \
    template basic_tensor<T> gelu(const basic_tensor<T>&, Gelu);                    \
    template basic_tensor<T> silu(const basic_tensor<T>&);                          \
    template basic_tensor<T> elu(const basic_tensor<T>&, double);                   \
    template basic_tensor<T> softplus(const basic_tensor<T>&, double, double);      \
    template basic_tensor<T> hardswish(const basic_tensor<T>&);
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
    const CaseInput wide{{3, 5}, -4.0, 4.0};
    r.add(OpKind::erf, "[3,5]", {wide}, [](const V& v) { return erf(v[0]); });
    r.add(OpKind::gelu, "[3,5]", {wide}, [](const V& v) { return gelu(v[0]); });
    r.add(OpKind::gelu_tanh, "[3,5]", {wide}, [](const V& v) { return gelu(v[0], Gelu::tanh); });
    r.add(OpKind::silu, "[3,5]", {wide}, [](const V& v) { return silu(v[0]); });
    r.add(OpKind::silu, "large |x| [2,3]", {{{2, 3}, -40.0, 40.0}}, [](const V& v) { return silu(v[0]); });
    r.add(OpKind::elu, "[3,5] alpha 1", {wide}, [](const V& v) { return elu(v[0]); });
    r.add(OpKind::elu, "[3,5] alpha 0.5", {wide}, [](const V& v) { return elu(v[0], 0.5); });
    r.add(OpKind::softplus, "[3,5]", {wide}, [](const V& v) { return softplus(v[0]); });
    // βx on both sides of the threshold (β 2, threshold 3: x around 1.5)
    r.add(OpKind::softplus, "beta 2, threshold 3, [3,5] in [-1, 4]", {{{3, 5}, -1.0, 4.0}},
          [](const V& v) { return softplus(v[0], 2.0, 3.0); });
    // -3 and 3 are kinks: random inputs almost surely miss them
    r.add(OpKind::hardswish, "[3,5] in [-5, 5]", {{{3, 5}, -5.0, 5.0}}, [](const V& v) { return hardswish(v[0]); });
}

}  // namespace detail
}  // namespace xgrad
