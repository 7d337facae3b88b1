#include "xgrad/gradcheck.hpp"

#include <cmath>
#include <functional>
#include <random>

#include <fmt/format.h>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>

#include "detail/cases.hpp"
#include "detail/check.hpp"
#include "detail/node.hpp"
#include "xgrad/ops/elementwise.hpp"
#include "xgrad/ops/reduce.hpp"
#include "xgrad/tape.hpp"

namespace xgrad {

namespace {

std::string shapes_of(const std::vector<Tensor64>& xs) {
    std::string s;
    for (std::size_t i = 0; i < xs.size(); ++i) s += (i ? ", " : "") + to_string(xs[i].shape());
    return s;
}

std::string multi_index(const Shape& shape, std::size_t flat) {
    Shape idx(shape.size());
    for (std::size_t d = shape.size(); d-- > 0;) {
        idx[d] = flat % shape[d];
        flat /= shape[d];
    }
    return to_string(idx);
}

// Fresh leaves holding copies of the inputs, so the caller's tensors keep no gradient.
std::vector<Tensor64> fresh_copies(const std::vector<Tensor64>& inputs) {
    std::vector<Tensor64> xs;
    xs.reserve(inputs.size());
    for (const auto& x : inputs) xs.emplace_back(x.value(), x.requires_grad());
    return xs;
}

// Sets the gradient accumulator of every input that requires grad to random values and
// returns them (empty arrays for the others).
template <class Random>
std::vector<xt::xarray<double>> prefill_grads(const std::vector<Tensor64>& xs, Random& random_like) {
    std::vector<xt::xarray<double>> filled(xs.size());
    for (std::size_t i = 0; i < xs.size(); ++i) {
        if (!xs[i].requires_grad()) continue;
        filled[i] = random_like(xs[i].shape());
        xs[i].node()->grad = filled[i];
    }
    return filled;
}

// sum(f(xs) * v) with recording off.
double project(const GradcheckFn& fn, const std::vector<Tensor64>& xs, const xt::xarray<double>& v) {
    NoGradGuard guard;
    const auto y = fn(xs);
    double s = 0;
    for (std::size_t k = 0; k < v.size(); ++k) s += y.value().data()[k] * v.data()[k];
    return s;
}

// Arrays of the given shape, uniform in [-1, 1), drawn in turn from one seeded generator.
class RandomArrays {
public:
    explicit RandomArrays(std::uint64_t seed) : gen_(seed) {}
    xt::xarray<double> operator()(const Shape& shape) {
        xt::xarray<double> a = xt::empty<double>(shape);
        for (auto& e : a) e = dist_(gen_);
        return a;
    }

private:
    std::mt19937_64 gen_;
    std::uniform_real_distribution<double> dist_{-1.0, 1.0};
};

// Compares `analytic` with central differences of f() as each element of x moves by ±eps
// (x is restored after each), adding to r's errors and calling fail_at(k, "analytic ...,
// numeric ...") for an element out of tolerance. Returns max |analytic| and max |numeric|.
template <class F, class Fail>
std::pair<double, double> compare(xt::xarray<double>& x, const xt::xarray<double>& analytic, F f,
                                  const GradcheckOptions& o, GradcheckReport& r, Fail fail_at) {
    double max_analytic = 0, max_numeric = 0;
    for (std::size_t k = 0; k < x.size(); ++k) {
        const double orig = x.data()[k];
        x.data()[k] = orig + o.eps;
        const double fp = f();
        x.data()[k] = orig - o.eps;
        const double fm = f();
        x.data()[k] = orig;
        const double n = (fp - fm) / (2 * o.eps);
        const double a = analytic.data()[k];
        const double err = std::abs(a - n);
        max_analytic = std::max(max_analytic, std::abs(a));
        max_numeric = std::max(max_numeric, std::abs(n));
        r.max_abs_err = std::max(r.max_abs_err, err);
        if (n != 0) r.max_rel_err = std::max(r.max_rel_err, err / std::abs(n));
        if (!(err <= o.atol + o.rtol * std::abs(n)))
            fail_at(k, fmt::format("analytic {:.10g}, numeric {:.10g} (|diff| {:.3g} > {:.3g})", a, n, err,
                                   o.atol + o.rtol * std::abs(n)));
    }
    return {max_analytic, max_numeric};
}

GradcheckReport check(const GradcheckFn& fn, const std::vector<Tensor64>& inputs,
                      const GradcheckOptions& o) {
    GradcheckReport r;
    auto fail = [&r](std::string msg) {
        if (r.passed) r.message = std::move(msg);
        r.passed = false;
    };
    EnableGradGuard grad_on;

    auto xs = fresh_copies(inputs);
    const Tensor64 y = fn(xs);
    const std::string shapes =
        fmt::format("inputs {}; output {}", shapes_of(xs), to_string(y.shape()));
    if (!y.requires_grad()) {
        fail("the output does not require grad: no recorded op connects it to an input; " + shapes);
        return r;
    }

    RandomArrays random_like(o.seed);
    const xt::xarray<double> v = random_like(y.shape());
    // Every accumulator starts from random values, not zeros: a rule must add to it (`+=`).
    // One that overwrites (`=`) would pass from zeros, and then silently drop the gradient
    // that other consumers of the same input had already added in a real graph.
    const auto prefill = prefill_grads(xs, random_like);
    y.backward(v);

    for (std::size_t i = 0; i < xs.size(); ++i) {
        if (!xs[i].requires_grad()) continue;
        if (xs[i].grad().shape() != xs[i].shape()) {
            fail(fmt::format("input {}: gradient shape {} differs from the input's; {}", i,
                             to_string(xs[i].grad().shape()), shapes));
            continue;
        }
        const xt::xarray<double> analytic = xs[i].grad() - prefill[i];
        auto& x = xs[i].mutable_value();
        const auto [max_analytic, max_numeric] =
            compare(x, analytic, [&] { return project(fn, xs, v); }, o, r, [&](std::size_t k, const std::string& values) {
                fail(fmt::format("input {} at flat index {}, index {}: {}; {}", i, k, multi_index(xs[i].shape(), k),
                                 values, shapes));
            });
        // Numeric noise of central differences stays far below this.
        constexpr double kNonZero = 1e-8;
        if (max_analytic == 0 && max_numeric > kNonZero)
            fail(fmt::format("input {}: the analytic gradient is all zero, the numeric one is not "
                             "(max |numeric| {:.3g}); {}", i, max_numeric, shapes));
        if (max_analytic == 0 && max_numeric <= kNonZero)
            fail(fmt::format("input {}: analytic and numeric gradients are both all zero, so this "
                             "case proves nothing; choose other inputs; {}", i, shapes));
    }

    // A zero output gradient must leave every accumulator exactly as it was (nothing added,
    // nothing overwritten).
    auto zs = fresh_copies(inputs);
    const Tensor64 y0 = fn(zs);
    const auto before = prefill_grads(zs, random_like);
    y0.backward(xt::zeros<double>(y0.shape()));
    for (std::size_t i = 0; i < zs.size(); ++i) {
        if (!zs[i].requires_grad()) continue;
        const double m = xt::amax(xt::abs(zs[i].grad() - before[i]))();
        if (m != 0)
            fail(fmt::format("input {}: a zero output gradient changes the input's gradient accumulator "
                             "(max |change| {:.3g}); {}", i, m, shapes));
    }
    return r;
}

// s = Σ_i sum(g_i · u_i) over the gradients that are defined, as a tensor (undefined when none is).
Tensor64 weighted_sum(const std::vector<Tensor64>& g, const std::vector<xt::xarray<double>>& u) {
    Tensor64 s;
    for (std::size_t k = 0; k < g.size(); ++k) {
        if (!g[k].defined()) continue;
        auto term = sum(g[k] * Tensor64(u[k]));
        s = s.defined() ? s + term : term;
    }
    return s;
}

GradcheckReport check_second(const GradcheckFn& fn, const std::vector<Tensor64>& inputs, const GradcheckOptions& o) {
    GradcheckReport r;
    auto fail = [&r](std::string msg) {
        if (r.passed) r.message = std::move(msg);
        r.passed = false;
    };
    EnableGradGuard grad_on;
    std::vector<std::size_t> wrt;  // the inputs that require grad
    for (std::size_t i = 0; i < inputs.size(); ++i)
        if (inputs[i].requires_grad()) wrt.push_back(i);

    RandomArrays random_like(o.seed);
    auto xs = fresh_copies(inputs);
    const Tensor64 y = fn(xs);
    const std::string shapes = fmt::format("inputs {}; output {}", shapes_of(xs), to_string(y.shape()));
    if (!y.requires_grad()) {
        fail("the output does not require grad: no recorded op connects it to an input; " + shapes);
        return r;
    }
    const xt::xarray<double> v = random_like(y.shape());
    std::vector<xt::xarray<double>> u;
    for (auto i : wrt) u.push_back(random_like(xs[i].shape()));
    auto chosen = [&](const std::vector<Tensor64>& at) {
        std::vector<Tensor64> c;
        for (auto i : wrt) c.push_back(at[i]);
        return c;
    };

    // s by a plain first-order pass, at the inputs `at` and output gradient `vv`.
    auto s_first = [&](const std::vector<Tensor64>& at, const xt::xarray<double>& vv) {
        auto copies = fresh_copies(at);
        const auto g = grad(fn(copies), chosen(copies), {.grad_outputs = {Tensor64(vv)}, .allow_unused = true});
        double s = 0;
        for (std::size_t k = 0; k < g.size(); ++k)
            if (g[k].defined()) s += xt::sum(g[k].value() * u[k])();
        return s;
    };

    // The gradient with its graph; it must equal the plain one.
    const Tensor64 vt(v, true);
    const auto g = grad(y, chosen(xs), {.grad_outputs = {vt}, .create_graph = true, .allow_unused = true});
    {
        auto copies = fresh_copies(inputs);
        const auto plain = grad(fn(copies), chosen(copies), {.grad_outputs = {Tensor64(v)}, .allow_unused = true});
        for (std::size_t k = 0; k < g.size(); ++k) {
            const bool same = g[k].defined() == plain[k].defined() &&
                              (!g[k].defined() || xt::allclose(g[k].value(), plain[k].value(), 1e-10, 1e-12));
            if (!same)
                fail(fmt::format("input {}: the gradient computed with create_graph differs from the plain one; {}",
                                 wrt[k], shapes));
        }
    }
    const Tensor64 s = weighted_sum(g, u);
    // d s / d x_j for every input, and d s / d v; zeros where s does not depend on one.
    std::vector<Tensor64> targets = chosen(xs);
    targets.push_back(vt);
    std::vector<Tensor64> h(targets.size());
    if (s.defined() && s.requires_grad()) h = grad(s, targets, {.allow_unused = true});

    bool any_nonzero = false;
    for (std::size_t t = 0; t < targets.size(); ++t) {
        const bool is_v = t + 1 == targets.size();
        const std::string what = is_v ? std::string("the output gradient v") : fmt::format("input {}", wrt[t]);
        const xt::xarray<double> analytic =
            h[t].defined() ? h[t].value() : xgrad::zeros<double>(targets[t].shape()).value();
        std::vector<Tensor64> at = fresh_copies(inputs);
        xt::xarray<double> vv = v;
        xt::xarray<double>& x = is_v ? vv : at[wrt[t]].mutable_value();
        const auto [max_analytic, max_numeric] =
            compare(x, analytic, [&] { return s_first(at, vv); }, o, r, [&](std::size_t k, const std::string& values) {
                fail(fmt::format("second order, d/d({}) at flat index {}, index {}: {}; {}", what, k,
                                 multi_index(x.shape(), k), values, shapes));
            });
        constexpr double kNonZero = 1e-8;
        if (max_analytic == 0 && max_numeric > kNonZero)
            fail(fmt::format("second order, d/d({}): the analytic derivative is all zero, the numeric one is not "
                             "(max |numeric| {:.3g}); {}",
                             what, max_numeric, shapes));
        any_nonzero = any_nonzero || max_analytic != 0 || max_numeric > kNonZero;
    }
    if (!any_nonzero)
        fail("second order: every derivative is zero, analytic and numeric, so this case proves nothing; " + shapes);
    return r;
}

template <class Check>
GradcheckReport guarded(Check check, const GradcheckFn& fn, const std::vector<Tensor64>& inputs,
                        const GradcheckOptions& options) {
    try {
        return check(fn, inputs, options);
    } catch (const std::exception& e) {
        GradcheckReport r;
        r.passed = false;
        r.message = fmt::format("threw: {}; inputs {}", e.what(), shapes_of(inputs));
        return r;
    }
}

}  // namespace

GradcheckReport gradcheck(const GradcheckFn& fn, const std::vector<Tensor64>& inputs,
                          const GradcheckOptions& options) {
    return guarded(check, fn, inputs, options);
}

GradcheckReport gradgradcheck(const GradcheckFn& fn, const std::vector<Tensor64>& inputs,
                              const GradcheckOptions& options) {
    return guarded(check_second, fn, inputs, options);
}

namespace detail {

std::vector<Tensor64> case_inputs(const std::vector<CaseInput>& inputs, std::uint64_t seed,
                                  const std::string& case_id) {
    std::mt19937_64 gen(seed ^ std::hash<std::string>{}(case_id));
    std::vector<Tensor64> xs;
    for (const auto& in : inputs) {
        std::uniform_real_distribution<double> dist(in.lo, in.hi);
        xt::xarray<double> a = xt::empty<double>(in.shape);
        for (auto& e : a) e = dist(gen);
        xs.emplace_back(std::move(a), in.requires_grad);
    }
    return xs;
}

void CaseRegistry::add(OpKind op, std::string name, std::vector<CaseInput> inputs, GradcheckFn fn) {
    add(std::string(op_name(op)), std::move(name), std::move(inputs), std::move(fn));
}

void CaseRegistry::add(std::string op, std::string name, std::vector<CaseInput> inputs,
                       GradcheckFn fn) {
    const std::string id = op + "/" + name;
    add(std::move(op), std::move(name),
        [inputs = std::move(inputs), id](std::uint64_t seed) { return case_inputs(inputs, seed, id); }, std::move(fn));
}

void CaseRegistry::add(std::string op, std::string name, std::function<std::vector<Tensor64>(std::uint64_t seed)> make,
                       GradcheckFn fn) {
    for (int order : {1, 2})
        cases_.push_back({op, name, order, [make, fn, order](std::uint64_t seed) {
                              GradcheckOptions o;
                              o.seed = seed;
                              return order == 1 ? gradcheck(fn, make(seed), o) : gradgradcheck(fn, make(seed), o);
                          }});
}

void CaseRegistry::add(std::string op, std::string name,
                       std::function<GradcheckReport(std::uint64_t seed)> run) {
    cases_.push_back({std::move(op), std::move(name), 1, std::move(run)});
}

}  // namespace detail

const std::vector<GradcheckCase>& gradcheck_cases() {
    // The one op list: every op family registers its cases here.
    static const std::vector<GradcheckCase> cases = [] {
        detail::CaseRegistry r;
        detail::register_elementwise_cases(r);
        detail::register_reduce_cases(r);
        detail::register_shape_cases(r);
        detail::register_linalg_cases(r);
        detail::register_activation_cases(r);
        detail::register_conv_cases(r);
        detail::register_conv_transpose_cases(r);
        detail::register_pool_cases(r);
        detail::register_norm_cases(r);
        detail::register_loss_cases(r);
        detail::register_index_cases(r);
        detail::register_attention_cases(r);
        return r.take();
    }();
    return cases;
}

}  // namespace xgrad
