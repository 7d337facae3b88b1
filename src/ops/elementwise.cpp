#include "xgrad/ops/elementwise.hpp"

#include <xtensor/xmath.hpp>
#include <xtensor/xoperation.hpp>

#include "detail/broadcast.hpp"
#include "detail/cases.hpp"
#include "detail/check.hpp"
#include "detail/parallel.hpp"
#include "kernels/math.hpp"
#include "xgrad/ops/reduce.hpp"
#include "xgrad/tape.hpp"

namespace xgrad {

using detail::broadcast_shapes;

template <class T>
basic_tensor<T> add(const basic_tensor<T>& a, const basic_tensor<T>& b) {
    basic_tensor<T> out(detail::broadcast_apply("add", a.value(), b.value(), [](T u, T v) { return u + v; }));
    record(OpKind::add, {a, b}, out, [as = a.shape(), bs = b.shape()](const basic_tensor<T>& gy, auto& grads) {
        // da = gy, db = gy, each summed to its input's shape
        if (grads.needs(0)) grads.add(0, sum_to(gy, as));
        if (grads.needs(1)) grads.add(1, sum_to(gy, bs));
    });
    return out;
}

template <class T>
basic_tensor<T> sub(const basic_tensor<T>& a, const basic_tensor<T>& b) {
    basic_tensor<T> out(detail::broadcast_apply("sub", a.value(), b.value(), [](T u, T v) { return u - v; }));
    record(OpKind::sub, {a, b}, out, [as = a.shape(), bs = b.shape()](const basic_tensor<T>& gy, auto& grads) {
        // da = gy, db = -gy
        if (grads.needs(0)) grads.add(0, sum_to(gy, as));
        if (grads.needs(1)) grads.add(1, sum_to(neg(gy), bs));
    });
    return out;
}

template <class T>
basic_tensor<T> mul(const basic_tensor<T>& a, const basic_tensor<T>& b) {
    basic_tensor<T> out(detail::broadcast_apply("mul", a.value(), b.value(), [](T u, T v) { return u * v; }));
    record(OpKind::mul, {a, b}, out, [a, b](const basic_tensor<T>& gy, auto& grads) {
        // da = gy * b, db = gy * a
        if (grads.needs(0)) grads.add(0, sum_to(mul(gy, b), a.shape()));
        if (grads.needs(1)) grads.add(1, sum_to(mul(gy, a), b.shape()));
    });
    return out;
}

template <class T>
basic_tensor<T> div(const basic_tensor<T>& a, const basic_tensor<T>& b) {
    basic_tensor<T> out(detail::broadcast_apply("div", a.value(), b.value(), [](T u, T v) { return u / v; }));
    record(OpKind::div, {a, b}, out, [a, b](const basic_tensor<T>& gy, auto& grads) {
        // da = gy / b, db = -gy * y / b   (y = a / b)
        if (grads.needs(0)) grads.add(0, sum_to(div(gy, b), a.shape()));
        if (grads.needs(1)) grads.add(1, sum_to(neg(div(mul(gy, grads.output()), b)), b.shape()));
    });
    return out;
}

template <class T>
basic_tensor<T> pow(const basic_tensor<T>& a, const basic_tensor<T>& b) {
    broadcast_shapes("pow", a.shape(), b.shape());
    basic_tensor<T> out(xt::pow(a.value(), b.value()));
    record(OpKind::pow, {a, b}, out, [a, b](const basic_tensor<T>& gy, auto& grads) {
        // da = gy * b * a^(b-1), db = gy * y * ln(a)
        if (grads.needs(0)) grads.add(0, sum_to(mul(gy, mul(b, pow(a, b - T(1)))), a.shape()));
        if (grads.needs(1)) grads.add(1, sum_to(mul(mul(gy, grads.output()), log(a)), b.shape()));
    });
    return out;
}

template <class T>
basic_tensor<T> pow(const basic_tensor<T>& x, std::type_identity_t<T> p) {
    basic_tensor<T> out(xt::pow(x.value(), p));
    record(OpKind::pow, {x}, out, [x, p](const basic_tensor<T>& gy, auto& grads) {
        // dx = gy * p * x^(p-1)
        grads.add(0, mul(gy, pow(x, p - T(1)) * p));
    });
    return out;
}

template <class T>
basic_tensor<T> neg(const basic_tensor<T>& x) {
    basic_tensor<T> out(-x.value());
    record(OpKind::neg, {x}, out, [](const basic_tensor<T>& gy, auto& grads) {
        grads.add(0, neg(gy));  // dx = -gy
    });
    return out;
}

template <class T>
basic_tensor<T> exp(const basic_tensor<T>& x) {
    xt::xarray<T> y = xt::empty<T>(x.shape());
    const T* v = x.value().data();
    T* out_v = y.data();
    const auto n = static_cast<std::ptrdiff_t>(y.size());
#pragma omp parallel for schedule(static) if (n > detail::kParallelElements)
    for (std::ptrdiff_t i = 0; i < n; ++i) out_v[i] = kernels::math::exp(v[i]);
    basic_tensor<T> out(std::move(y));
    record(OpKind::exp, {x}, out, [](const basic_tensor<T>& gy, auto& grads) {
        grads.add(0, mul(gy, grads.output()));  // dx = gy * y
    });
    return out;
}

template <class T>
basic_tensor<T> log(const basic_tensor<T>& x) {
    basic_tensor<T> out(xt::log(x.value()));
    record(OpKind::log, {x}, out, [x](const basic_tensor<T>& gy, auto& grads) {
        grads.add(0, div(gy, x));  // dx = gy / x
    });
    return out;
}

template <class T>
basic_tensor<T> sqrt(const basic_tensor<T>& x) {
    basic_tensor<T> out(xt::sqrt(x.value()));
    record(OpKind::sqrt, {x}, out, [](const basic_tensor<T>& gy, auto& grads) {
        grads.add(0, div(gy, grads.output() * T(2)));  // dx = gy / 2y
    });
    return out;
}

template <class T>
basic_tensor<T> square(const basic_tensor<T>& x) {
    basic_tensor<T> out(x.value() * x.value());
    record(OpKind::square, {x}, out, [x](const basic_tensor<T>& gy, auto& grads) {
        grads.add(0, mul(gy, x * T(2)));  // dx = 2 x gy
    });
    return out;
}

template <class T>
basic_tensor<T> abs(const basic_tensor<T>& x) {
    basic_tensor<T> out(xt::abs(x.value()));
    record(OpKind::abs, {x}, out, [x](const basic_tensor<T>& gy, auto& grads) {
        // dx = sign(x) gy; sign is piecewise constant, so it enters the graph as a constant
        grads.add(0, mul(gy, basic_tensor<T>(xt::xarray<T>(xt::sign(x.value())))));
    });
    return out;
}

namespace {

// The factors that route a gradient through a selection, as constants broadcast to the
// output's shape: 1 for `a` where take_a(a, b), half at a tie, 0 elsewhere; b gets the rest.
template <class T, class Take>
std::pair<basic_tensor<T>, basic_tensor<T>> selection(const basic_tensor<T>& a, const basic_tensor<T>& b, Take take_a) {
    const xt::xarray<T> fa = xt::where(xt::equal(a.value(), b.value()), T(0.5),
                                       xt::where(take_a(a.value(), b.value()), T(1), T(0)));
    const xt::xarray<T> fb = T(1) - fa;
    return {basic_tensor<T>(fa), basic_tensor<T>(fb)};
}

// maximum or minimum (kind): the larger or smaller of a and b elementwise, broadcast;
// NaN propagates (as PyTorch's); the gradient goes to the selected operand, half to each at a
// tie (PyTorch's rule).
template <class T>
basic_tensor<T> select(OpKind kind, const basic_tensor<T>& a, const basic_tensor<T>& b) {
    const bool max = kind == OpKind::maximum;
    broadcast_shapes(max ? "maximum" : "minimum", a.shape(), b.shape());
    const auto& av = a.value();
    const auto& bv = b.value();
    xt::xarray<T> y = max ? xt::xarray<T>(xt::where(av > bv, av, bv)) : xt::xarray<T>(xt::where(av < bv, av, bv));
    // NaN in either operand gives NaN
    y = xt::where(xt::isnan(av), av, xt::where(xt::isnan(bv), bv, y));
    basic_tensor<T> out(std::move(y));
    record(kind, {a, b}, out, [a, b, max](const basic_tensor<T>& gy, auto& grads) {
        const auto [fa, fb] = max ? selection(a, b, [](const auto& x, const auto& z) { return x > z; })
                                  : selection(a, b, [](const auto& x, const auto& z) { return x < z; });
        if (grads.needs(0)) grads.add(0, sum_to(mul(gy, fa), a.shape()));
        if (grads.needs(1)) grads.add(1, sum_to(mul(gy, fb), b.shape()));
    });
    return out;
}

}  // namespace

template <class T>
basic_tensor<T> maximum(const basic_tensor<T>& a, const basic_tensor<T>& b) {
    return select(OpKind::maximum, a, b);
}

template <class T>
basic_tensor<T> minimum(const basic_tensor<T>& a, const basic_tensor<T>& b) {
    return select(OpKind::minimum, a, b);
}

template <class T>
basic_tensor<T> clamp(const basic_tensor<T>& x, std::type_identity_t<T> lo, std::type_identity_t<T> hi) {
    detail::check_value(!(lo > hi), "clamp: lo {} is above hi {}; x {}", lo, hi, x.shape());
    basic_tensor<T> out(xt::xarray<T>(xt::where(x.value() < lo, lo, xt::where(x.value() > hi, hi, x.value()))));
    record(OpKind::clamp, {x}, out, [x, lo, hi](const basic_tensor<T>& gy, auto& grads) {
        // dx = gy where lo <= x <= hi (PyTorch's rule: the bounds pass the gradient), else 0
        const basic_tensor<T> inside(xt::xarray<T>(xt::where(x.value() >= lo && x.value() <= hi, T(1), T(0))));
        grads.add(0, mul(gy, inside));
    });
    return out;
}

template <class T>
basic_tensor<T> where(const xt::xarray<bool>& condition, const basic_tensor<T>& a, const basic_tensor<T>& b) {
    const Shape cs(condition.shape().begin(), condition.shape().end());
    const Shape ab = broadcast_shapes("where", a.shape(), b.shape());
    const Shape ys = broadcast_shapes("where", cs, ab);
    basic_tensor<T> out(xt::xarray<T>(xt::where(condition, a.value(), b.value())));
    record(OpKind::where, {a, b}, out, [condition, ys, as = a.shape(), bs = b.shape()](const basic_tensor<T>& gy,
                                                                                        auto& grads) {
        // da = gy where the condition holds, db = gy elsewhere, each summed to its shape
        const basic_tensor<T> fa(xt::xarray<T>(xt::broadcast(xt::where(condition, T(1), T(0)), ys)));
        if (grads.needs(0)) grads.add(0, sum_to(mul(gy, fa), as));
        if (grads.needs(1)) grads.add(1, sum_to(mul(gy, T(1) - fa), bs));
    });
    return out;
}

#define XGRAD_INSTANTIATE(T)                                                              \
    template basic_tensor<T> maximum(const basic_tensor<T>&, const basic_tensor<T>&);     \
    template basic_tensor<T> minimum(const basic_tensor<T>&, const basic_tensor<T>&);     \
    template basic_tensor<T> clamp(const basic_tensor<T>&, T, T);                         \
    template basic_tensor<T> where(const xt::xarray<bool>&, const basic_tensor<T>&, const basic_tensor<T>&); \
    template basic_tensor<T> add(const basic_tensor<T>&, const basic_tensor<T>&);         \
    template basic_tensor<T> sub(const basic_tensor<T>&, const basic_tensor<T>&);         \
    template basic_tensor<T> mul(const basic_tensor<T>&, const basic_tensor<T>&);         \
    template basic_tensor<T> div(const basic_tensor<T>&, const basic_tensor<T>&);         \
    template basic_tensor<T> pow(const basic_tensor<T>&, const basic_tensor<T>&);         \
    template basic_tensor<T> pow(const basic_tensor<T>&, std::type_identity_t<T>);        \
    template basic_tensor<T> neg(const basic_tensor<T>&);                                 \
    template basic_tensor<T> exp(const basic_tensor<T>&);                                 \
    template basic_tensor<T> log(const basic_tensor<T>&);                                 \
    template basic_tensor<T> sqrt(const basic_tensor<T>&);                                \
    template basic_tensor<T> square(const basic_tensor<T>&);                              \
    template basic_tensor<T> abs(const basic_tensor<T>&);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

namespace detail {

void register_elementwise_cases(CaseRegistry& r) {
    using V = std::vector<Tensor64>;
    const CaseInput m{{3, 4}}, row{{4}}, col{{3, 1}}, one{{1}};
    const CaseInput pos{{3, 4}, 0.5, 2.0}, pos_row{{4}, 0.5, 2.0};
    const struct {
        OpKind op;
        Tensor64 (*f)(const Tensor64&, const Tensor64&);
        CaseInput b;  // the right operand of the same-shape case
    } binary[] = {
        {OpKind::add, add<double>, m},
        {OpKind::sub, sub<double>, m},
        {OpKind::mul, mul<double>, m},
        {OpKind::div, div<double>, pos},
    };
    for (const auto& c : binary) {
        const CaseInput b_row{row.shape, c.b.lo, c.b.hi}, b_col{col.shape, c.b.lo, c.b.hi};
        const CaseInput b_one{one.shape, c.b.lo, c.b.hi};
        auto f = [f = c.f](const V& x) { return f(x[0], x[1]); };
        r.add(c.op, "[3,4] . [3,4]", {m, c.b}, f);
        r.add(c.op, "[3,4] . [4] broadcast", {m, b_row}, f);
        r.add(c.op, "[3,1] . [4] broadcast both", {col, b_row}, f);
        r.add(c.op, "[2,3,4] . [3,1] broadcast", {{{2, 3, 4}}, b_col}, f);
        r.add(c.op, "[3,4] . [1]", {m, b_one}, f);
        if (c.op == OpKind::add || c.op == OpKind::mul)  // x - x and x / x are constants
            r.add(c.op, "x . x (same input twice)", {m}, [f = c.f](const V& x) { return f(x[0], x[0]); });
    }
    r.add(OpKind::pow, "a ** b, [3,4] . [4]", {pos, {{4}}},
          [](const V& x) { return pow(x[0], x[1]); });
    r.add(OpKind::pow, "x ** 3 (negative x)", {m}, [](const V& x) { return pow(x[0], 3.0); });
    r.add(OpKind::pow, "x ** -0.5", {pos}, [](const V& x) { return pow(x[0], -0.5); });
    r.add(OpKind::neg, "[3,4]", {m}, [](const V& x) { return neg(x[0]); });
    r.add(OpKind::exp, "[3,4]", {m}, [](const V& x) { return exp(x[0]); });
    r.add(OpKind::log, "[3,4] positive", {pos}, [](const V& x) { return log(x[0]); });
    r.add(OpKind::sqrt, "[3,4] positive", {pos}, [](const V& x) { return sqrt(x[0]); });
    r.add(OpKind::square, "[3,4]", {m}, [](const V& x) { return square(x[0]); });
    r.add(OpKind::abs, "[3,4] both signs", {m}, [](const V& x) { return abs(x[0]); });
    r.add(OpKind::maximum, "[3,4] . [4] broadcast", {m, row}, [](const V& x) { return maximum(x[0], x[1]); });
    r.add(OpKind::minimum, "[3,1] . [4] broadcast both", {col, row}, [](const V& x) { return minimum(x[0], x[1]); });
    r.add(OpKind::clamp, "[3,4] to [-0.5, 0.5]", {m}, [](const V& x) { return clamp(x[0], -0.5, 0.5); });
    const xt::xarray<bool> cond = {{true, false, true, true}, {false, false, true, false}, {true, true, false, true}};
    r.add(OpKind::where, "[3,4] condition, [3,4] . [4]", {m, row},
          [cond](const V& x) { return where(cond, x[0], x[1]); });
    xt::xarray<bool> cond_col = xt::xarray<bool>{true, false, true};
    cond_col.reshape({3, 1});  // nested braces of one element are ambiguous
    r.add(OpKind::where, "[3,1] condition, [4] . [3,4]", {row, m},
          [cond_col](const V& x) { return where(cond_col, x[0], x[1]); });
    r.add("operators", "scalar operands (2 - x) * 3 / x + 1", {pos_row},
          [](const V& x) { return (2.0 - x[0]) * 3.0 / x[0] + 1.0; });
    r.add("operators", "chain: used twice, a*b + a/b - b", {m, pos},
          [](const V& x) { return x[0] * x[1] + x[0] / x[1] - x[1]; });
}

}  // namespace detail
}  // namespace xgrad
