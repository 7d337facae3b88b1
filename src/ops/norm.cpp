#include "xgrad/ops/norm.hpp"

#include <cmath>
#include <algorithm>
#include <random>

#include <fmt/format.h>

#include <xtensor/xadapt.hpp>
#include <xtensor/xbuilder.hpp>

#include "detail/axes.hpp"
#include "detail/cases.hpp"
#include "detail/check.hpp"
#include "detail/parallel.hpp"
#include "detail/random.hpp"
#include "xgrad/ops/elementwise.hpp"
#include "xgrad/ops/reduce.hpp"
#include "xgrad/ops/shape.hpp"
#include "xgrad/tape.hpp"

namespace xgrad {

template <class T>
basic_tensor<T> batch_norm(const basic_tensor<T>& x, const basic_tensor<T>& gamma, const basic_tensor<T>& beta,
                           basic_tensor<T>& running_mean, basic_tensor<T>& running_var, bool training,
                           double momentum, double eps) {
    detail::check_shape(x.dim() >= 2, "batch_norm: x must be [N, ..., C], got x {}", x.shape());
    detail::check_value(eps > 0 && std::isfinite(eps), "batch_norm: eps must be positive and finite, got {}; x {}", eps,
                        x.shape());
    detail::check_value(momentum >= 0 && momentum <= 1, "batch_norm: momentum must be in [0, 1], got {}; x {}",
                        momentum, x.shape());
    const std::size_t c = x.shape().back(), rows = x.size() / std::max<std::size_t>(c, 1);
    for (const basic_tensor<T>* t : std::initializer_list<const basic_tensor<T>*>{&gamma, &beta, &running_mean, &running_var})
        detail::check_shape(t->dim() == 1 && t->shape()[0] == c,
                            "batch_norm: gamma, beta and the running statistics must be [C] = [{}]; x {}, gamma {}, "
                            "beta {}, running_mean {}, running_var {}",
                            c, x.shape(), gamma.shape(), beta.shape(), running_mean.shape(), running_var.shape());
    detail::check_value(!training || rows > 1, "batch_norm: training needs more than one value per channel; x {}",
                        x.shape());
    const T* xv = x.value().data();
    // Per channel: the mean and 1/sqrt(var + eps) used to normalise.
    std::vector<T> mean(c, 0), invstd(c, 0);
    if (training) {
        std::vector<double> s(c, 0), ss(c, 0);
        for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t j = 0; j < c; ++j) s[j] += xv[r * c + j];
        for (std::size_t j = 0; j < c; ++j) mean[j] = static_cast<T>(s[j] / static_cast<double>(rows));
        for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t j = 0; j < c; ++j) {
                const double d = xv[r * c + j] - mean[j];
                ss[j] += d * d;
            }
        T* rm = running_mean.mutable_value().data();
        T* rv = running_var.mutable_value().data();
        const auto m = static_cast<T>(momentum);
        for (std::size_t j = 0; j < c; ++j) {
            const double var = ss[j] / static_cast<double>(rows);
            invstd[j] = static_cast<T>(1.0 / std::sqrt(var + eps));
            rm[j] = (1 - m) * rm[j] + m * mean[j];
            rv[j] = (1 - m) * rv[j] + m * static_cast<T>(ss[j] / static_cast<double>(rows - 1));
        }
    } else {
        for (std::size_t j = 0; j < c; ++j) {
            mean[j] = running_mean.value().data()[j];
            invstd[j] = static_cast<T>(1.0 / std::sqrt(static_cast<double>(running_var.value().data()[j]) + eps));
        }
    }
    // xhat = (x - mean) · invstd, y = gamma · xhat + beta
    xt::xarray<T> y = xt::empty<T>(x.shape());
    const T* g = gamma.value().data();
    const T* b = beta.value().data();
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t j = 0; j < c; ++j) y.data()[r * c + j] = g[j] * ((xv[r * c + j] - mean[j]) * invstd[j]) + b[j];
    basic_tensor<T> out(std::move(y));
    // In evaluation the statistics are constants of the graph: the values used above.
    const Shape row{1, c};
    const basic_tensor<T> fixed_mean(xt::xarray<T>(xt::adapt(mean, row)));
    const basic_tensor<T> fixed_invstd(xt::xarray<T>(xt::adapt(invstd, row)));
    record(OpKind::batch_norm, {x, gamma, beta}, out,
           [x, gamma, fixed_mean, fixed_invstd, rows, c, training, eps = static_cast<T>(eps)](
               const basic_tensor<T>& gy, auto& grads) {
               // Per channel over the rows of x [rows, C]; in training the statistics are
               // functions of x, recomputed here as ops so that the rule differentiates again.
               const std::vector<std::ptrdiff_t> flat{static_cast<std::ptrdiff_t>(rows), static_cast<std::ptrdiff_t>(c)};
               const auto x2 = reshape(x, flat);
               const auto g2 = reshape(gy, flat);
               basic_tensor<T> inv = fixed_invstd, xhat;
               if (training) {
                   const auto centred = x2 - xgrad::mean(x2, {0}, true);
                   inv = pow(xgrad::mean(square(centred), {0}, true) + eps, T(-0.5));
                   xhat = centred * inv;
               } else {
                   xhat = (x2 - fixed_mean) * inv;
               }
               // dgamma = Σ gy · x̂ (the normalised input, not x), dbeta = Σ gy
               if (grads.needs(1)) grads.add(1, sum(g2 * xhat, {0}));
               if (grads.needs(2)) grads.add(2, sum(g2, {0}));
               if (!grads.needs(0)) return;
               // training: dx = gamma·invstd·(gy - mean(gy) - x̂·mean(gy·x̂)); evaluation: gamma·invstd·gy
               const auto centred_gy =
                   training ? g2 - xgrad::mean(g2, {0}, true) - xhat * xgrad::mean(g2 * xhat, {0}, true) : g2;
               grads.add(0, reshape(gamma * inv * centred_gy, detail::dims(x.shape())));
           });
    return out;
}

namespace {

// The rule of a normalisation of an empty x: zero gradients for x and, when affine (param
// non-null), its weight and bias (PyTorch keeps them too).
template <class Grads>
void zero_grads(Grads& grads, const Shape& x, const Shape* param) {
    using T = typename std::decay_t<decltype(grads.output())>::value_type;
    if (grads.needs(0)) grads.add(0, zeros<T>(x));
    for (std::size_t i = 1; param && i < 3; ++i)
        if (grads.needs(i)) grads.add(i, zeros<T>(*param));
}

template <class T>
basic_tensor<T> layer_norm_impl(const basic_tensor<T>& x, const Shape& normalized, const basic_tensor<T>* weight,
                                const basic_tensor<T>* bias, double eps) {
    const std::string shapes = fmt::format("x {}, normalized_shape {}{}", to_string(x.shape()), to_string(normalized),
                                           weight ? fmt::format(", weight {}, bias {}", to_string(weight->shape()),
                                                                to_string(bias->shape()))
                                                  : "");
    detail::check_shape(!normalized.empty() && x.dim() >= normalized.size() &&
                            std::equal(normalized.begin(), normalized.end(), x.shape().end() - static_cast<std::ptrdiff_t>(normalized.size())),
                        "layer_norm: normalized_shape must be x's trailing dimensions; {}", shapes);
    detail::check_shape(!weight || (weight->shape() == normalized && bias->shape() == normalized),
                        "layer_norm: weight and bias must have the normalized shape; {}", shapes);
    detail::check_value(eps > 0 && std::isfinite(eps), "layer_norm: eps must be positive and finite, got {}; {}", eps,
                        shapes);
    std::size_t d = 1;
    for (auto n : normalized) d *= n;
    const std::size_t rows = d ? x.size() / d : 0;
    xt::xarray<T> y = xt::empty<T>(x.shape());
    const T* xv = x.value().data();
    const T* g = weight ? weight->value().data() : nullptr;
    const T* b = bias ? bias->value().data() : nullptr;
#pragma omp parallel for schedule(static) if (x.size() > static_cast<std::size_t>(detail::kParallelElements))
    for (std::ptrdiff_t ri = 0; ri < static_cast<std::ptrdiff_t>(rows); ++ri) {
        const std::size_t r = static_cast<std::size_t>(ri);
        const T* row = xv + r * d;
        double s = 0, ss = 0;
        for (std::size_t j = 0; j < d; ++j) s += row[j];
        const double mean = s / static_cast<double>(d);
        for (std::size_t j = 0; j < d; ++j) ss += (row[j] - mean) * (row[j] - mean);
        const auto m = static_cast<T>(mean);
        const auto inv = static_cast<T>(1.0 / std::sqrt(ss / static_cast<double>(d) + eps));  // biased variance
        T* out = y.data() + r * d;
        for (std::size_t j = 0; j < d; ++j) {
            const T h = (row[j] - m) * inv;
            out[j] = g ? h * g[j] + b[j] : h;
        }
    }
    basic_tensor<T> out(std::move(y));
    auto backward = [x, normalized, d, rows, affine = weight != nullptr, w = weight ? *weight : basic_tensor<T>(),
                     eps = static_cast<T>(eps)](const basic_tensor<T>& gy, auto& grads) {
        // Per row of x [rows, D], the statistics recomputed as ops (so the rule differentiates
        // again): x̂ = (x - mean)·inv, inv = (var + eps)^-1/2; with gx̂ = gy·weight,
        // dx = inv·(gx̂ - mean(gx̂) - x̂·mean(gx̂·x̂)), dweight = Σ gy·x̂, dbias = Σ gy over the rows.
        if (x.size() == 0) {  // no rows (or none of the normalised values): every gradient is zero
            return zero_grads(grads, x.shape(), affine ? &w.shape() : nullptr);
        }
        const std::vector<std::ptrdiff_t> flat{static_cast<std::ptrdiff_t>(rows), static_cast<std::ptrdiff_t>(d)};
        const auto x2 = reshape(x, flat);
        const auto g2 = reshape(gy, flat);
        const auto centred = x2 - xgrad::mean(x2, {1}, true);
        const auto inv = pow(xgrad::mean(square(centred), {1}, true) + eps, T(-0.5));
        const auto xhat = centred * inv;
        if (affine && grads.needs(1)) grads.add(1, reshape(sum(g2 * xhat, {0}), detail::dims(normalized)));
        if (affine && grads.needs(2)) grads.add(2, reshape(sum(g2, {0}), detail::dims(normalized)));
        if (!grads.needs(0)) return;
        const auto gh = affine ? g2 * reshape(w, {1, static_cast<std::ptrdiff_t>(d)}) : g2;
        const auto dx = inv * (gh - xgrad::mean(gh, {1}, true) - xhat * xgrad::mean(gh * xhat, {1}, true));
        grads.add(0, reshape(dx, detail::dims(x.shape())));
    };
    if (weight)
        record(OpKind::layer_norm, {x, *weight, *bias}, out, std::move(backward));
    else
        record(OpKind::layer_norm, {x}, out, std::move(backward));
    return out;
}

// group_norm over x [N, S..., C] viewed as [N, S, G, C / G]: one mean and variance per (n, g).
template <class T>
basic_tensor<T> group_norm_impl(const char* op, const basic_tensor<T>& x, std::size_t groups,
                                const basic_tensor<T>* weight, const basic_tensor<T>* bias, double eps) {
    const std::string shapes = fmt::format("x {}, groups {}{}", to_string(x.shape()), groups,
                                           weight ? fmt::format(", weight {}, bias {}", to_string(weight->shape()),
                                                                to_string(bias->shape()))
                                                  : "");
    detail::check_shape(x.dim() >= 2, "{}: x must be [N, ..., C]; {}", op, shapes);
    const std::size_t n = x.shape()[0], c = x.shape().back();
    detail::check_value(groups >= 1 && c % groups == 0, "{}: groups must divide the channels {}; {}", op, c, shapes);
    detail::check_shape(!weight || (weight->shape() == Shape{c} && bias->shape() == Shape{c}),
                        "{}: weight and bias must be [C] = [{}]; {}", op, c, shapes);
    detail::check_value(eps > 0 && std::isfinite(eps), "{}: eps must be positive and finite, got {}; {}", op, eps,
                        shapes);
    const std::size_t sp = detail::extent(x.shape(), 1, x.dim() - 1);  // positions per image (S)
    const std::size_t cg = c / groups, per = sp * cg;
    xt::xarray<T> y = xt::empty<T>(x.shape());
    const T* xv = x.value().data();
    const T* gw = weight ? weight->value().data() : nullptr;
    const T* gb = bias ? bias->value().data() : nullptr;
#pragma omp parallel for schedule(static) if (x.size() > static_cast<std::size_t>(detail::kParallelElements))
    for (std::ptrdiff_t ii = 0; ii < static_cast<std::ptrdiff_t>(n); ++ii) {
        const std::size_t i = static_cast<std::size_t>(ii);
        const T* xi = xv + i * sp * c;
        std::vector<double> mean(groups, 0), ss(groups, 0);
        for (std::size_t k = 0; k < sp * c; k += c)
            for (std::size_t j = 0; j < c; ++j) mean[j / cg] += xi[k + j];
        for (auto& m : mean) m /= static_cast<double>(per);
        for (std::size_t k = 0; k < sp * c; k += c)
            for (std::size_t j = 0; j < c; ++j) {
                const double dv = xi[k + j] - mean[j / cg];
                ss[j / cg] += dv * dv;
            }
        // Per channel: y = (x - mean)·scale + shift, the affine folded into scale and shift, in
        // double (a mean rounded to float32 would shift x̂ by a fraction of a small deviation).
        std::vector<double> centre(c), scale(c), shift(c);
        for (std::size_t j = 0; j < c; ++j) {
            const std::size_t g = j / cg;
            const double inv = 1.0 / std::sqrt(ss[g] / static_cast<double>(per) + eps);  // biased variance
            centre[j] = mean[g];
            scale[j] = gw ? inv * gw[j] : inv;
            shift[j] = gb ? gb[j] : 0.0;
        }
        T* yi = y.data() + i * sp * c;
        for (std::size_t k = 0; k < sp * c; k += c)
            for (std::size_t j = 0; j < c; ++j)
                yi[k + j] = static_cast<T>((xi[k + j] - centre[j]) * scale[j] + shift[j]);
    }
    basic_tensor<T> out(std::move(y));
    auto backward = [x, n, sp, groups, cg, affine = weight != nullptr, w = weight ? *weight : basic_tensor<T>(),
                     eps = static_cast<T>(eps)](const basic_tensor<T>& gy, auto& grads) {
        // Per (n, g) of x [N, S, G, Cg], as layer_norm's rule per row (the statistics recomputed
        // as ops): dx = inv·(gx̂ - mean(gx̂) - x̂·mean(gx̂·x̂)) with gx̂ = gy·weight; dweight =
        // Σ gy·x̂ and dbias = Σ gy over N and S.
        if (x.size() == 0) {  // an empty batch: every gradient is zero
            return zero_grads(grads, x.shape(), affine ? &w.shape() : nullptr);
        }
        const auto d = [](std::size_t v) { return static_cast<std::ptrdiff_t>(v); };
        const std::vector<std::ptrdiff_t> view{d(n), d(sp), d(groups), d(cg)};
        const auto x4 = reshape(x, view);
        const auto g4 = reshape(gy, view);
        const auto centred = x4 - xgrad::mean(x4, {1, 3}, true);
        const auto inv = pow(xgrad::mean(square(centred), {1, 3}, true) + eps, T(-0.5));
        const auto xhat = centred * inv;
        const std::vector<std::ptrdiff_t> channels{d(groups * cg)};
        if (affine && grads.needs(1)) grads.add(1, reshape(sum(g4 * xhat, {0, 1}), channels));
        if (affine && grads.needs(2)) grads.add(2, reshape(sum(g4, {0, 1}), channels));
        if (!grads.needs(0)) return;
        const auto gh = affine ? g4 * reshape(w, {1, 1, d(groups), d(cg)}) : g4;
        const auto dx = inv * (gh - xgrad::mean(gh, {1, 3}, true) - xhat * xgrad::mean(gh * xhat, {1, 3}, true));
        grads.add(0, reshape(dx, detail::dims(x.shape())));
    };
    if (weight)
        record(OpKind::group_norm, {x, *weight, *bias}, out, std::move(backward));
    else
        record(OpKind::group_norm, {x}, out, std::move(backward));
    return out;
}

}  // namespace

template <class T>
basic_tensor<T> layer_norm(const basic_tensor<T>& x, const Shape& normalized_shape, double eps) {
    return layer_norm_impl<T>(x, normalized_shape, nullptr, nullptr, eps);
}

template <class T>
basic_tensor<T> layer_norm(const basic_tensor<T>& x, const Shape& normalized_shape, const basic_tensor<T>& weight,
                           const basic_tensor<T>& bias, double eps) {
    return layer_norm_impl<T>(x, normalized_shape, &weight, &bias, eps);
}

template <class T>
basic_tensor<T> group_norm(const basic_tensor<T>& x, std::size_t num_groups, double eps) {
    return group_norm_impl<T>("group_norm", x, num_groups, nullptr, nullptr, eps);
}

template <class T>
basic_tensor<T> group_norm(const basic_tensor<T>& x, std::size_t num_groups, const basic_tensor<T>& weight,
                           const basic_tensor<T>& bias, double eps) {
    return group_norm_impl<T>("group_norm", x, num_groups, &weight, &bias, eps);
}

template <class T>
basic_tensor<T> instance_norm(const basic_tensor<T>& x, double eps) {
    return group_norm_impl<T>("instance_norm", x, x.dim() ? x.shape().back() : 0, nullptr, nullptr, eps);
}

template <class T>
basic_tensor<T> instance_norm(const basic_tensor<T>& x, const basic_tensor<T>& weight, const basic_tensor<T>& bias,
                              double eps) {
    return group_norm_impl<T>("instance_norm", x, x.dim() ? x.shape().back() : 0, &weight, &bias, eps);
}

template <class T>
basic_tensor<T> dropout(const basic_tensor<T>& x, double p, bool training) {
    detail::check_value(p >= 0 && p < 1, "dropout: p must be in [0, 1), got {}; x {}", p, x.shape());
    if (!training || p == 0) return x;
    const T scale = static_cast<T>(1 / (1 - p));
    xt::xarray<T> mask = xt::empty<T>(x.shape());
    detail::with_generator([&](std::mt19937_64& g) {
        std::bernoulli_distribution keep(1 - p);
        for (auto& m : mask) m = keep(g) ? scale : T(0);
    });
    basic_tensor<T> out(xt::xarray<T>(x.value() * mask));
    record(OpKind::dropout, {x}, out, [mask = basic_tensor<T>(std::move(mask))](const basic_tensor<T>& gy, auto& grads) {
        grads.add(0, mul(gy, mask));  // dx = gy · mask / (1 - p), the mask a constant
    });
    return out;
}

#define XGRAD_INSTANTIATE(T)                                                                                      \
    template basic_tensor<T> batch_norm(const basic_tensor<T>&, const basic_tensor<T>&, const basic_tensor<T>&,   \
                                        basic_tensor<T>&, basic_tensor<T>&, bool, double, double);                \
    template basic_tensor<T> dropout(const basic_tensor<T>&, double, bool);                                     \
    template basic_tensor<T> layer_norm(const basic_tensor<T>&, const Shape&, double);                          \
    template basic_tensor<T> layer_norm(const basic_tensor<T>&, const Shape&, const basic_tensor<T>&,          \
                                        const basic_tensor<T>&, double);                                        \
    template basic_tensor<T> group_norm(const basic_tensor<T>&, std::size_t, double);                           \
    template basic_tensor<T> group_norm(const basic_tensor<T>&, std::size_t, const basic_tensor<T>&,            \
                                        const basic_tensor<T>&, double);                                        \
    template basic_tensor<T> instance_norm(const basic_tensor<T>&, double);                                     \
    template basic_tensor<T> instance_norm(const basic_tensor<T>&, const basic_tensor<T>&, const basic_tensor<T>&, \
                                           double);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

namespace detail {

void register_norm_cases(CaseRegistry& r) {
    using V = std::vector<Tensor64>;
    for (bool training : {true, false}) {
        const std::string mode = training ? "training" : "evaluation";
        r.add(OpKind::batch_norm, "NHWC [2,3,3,4], " + mode, {{{2, 3, 3, 4}, -2.0, 2.0}, {{4}, 0.5, 1.5}, {{4}}},
              [training](const V& v) {
                  Tensor64 rm(xt::xarray<double>{0.1, -0.2, 0.3, 0.0}), rv(xt::xarray<double>{1.0, 0.5, 2.0, 1.5});
                  return batch_norm(v[0], v[1], v[2], rm, rv, training);
              });
    }
    r.add(OpKind::batch_norm, "[N, C] = [5, 3], training", {{{5, 3}, -2.0, 2.0}, {{3}, 0.5, 1.5}, {{3}}},
          [](const V& v) {
              auto rm = zeros<double>({3}), rv = ones<double>({3});
              return batch_norm(v[0], v[1], v[2], rm, rv, true);
          });
    r.add(OpKind::layer_norm, "[3,5] over the last axis, affine", {{{3, 5}, -2.0, 2.0}, {{5}, 0.5, 1.5}, {{5}}},
          [](const V& v) { return layer_norm(v[0], {5}, v[1], v[2]); });
    r.add(OpKind::layer_norm, "[2,3,2,4] over [2,4], affine", {{{2, 3, 2, 4}, -2.0, 2.0}, {{2, 4}, 0.5, 1.5}, {{2, 4}}},
          [](const V& v) { return layer_norm(v[0], {2, 4}, v[1], v[2]); });
    r.add(OpKind::layer_norm, "[4,6] no affine, eps 1e-3", {{{4, 6}, -2.0, 2.0}},
          [](const V& v) { return layer_norm(v[0], {6}, 1e-3); });
    r.add(OpKind::group_norm, "NHWC [2,3,2,6] in 3 groups, affine", {{{2, 3, 2, 6}, -2.0, 2.0}, {{6}, 0.5, 1.5}, {{6}}},
          [](const V& v) { return group_norm(v[0], 3, v[1], v[2]); });
    r.add(OpKind::group_norm, "[3,4] (no spatial axes) in 2 groups, no affine, eps 1e-3", {{{3, 4}, -2.0, 2.0}},
          [](const V& v) { return group_norm(v[0], 2, 1e-3); });
    r.add(OpKind::group_norm, "[2,5,4] in 1 group (layer norm over S and C), affine",
          {{{2, 5, 4}, -2.0, 2.0}, {{4}, 0.5, 1.5}, {{4}}}, [](const V& v) { return group_norm(v[0], 1, v[1], v[2]); });
    r.add(OpKind::group_norm, "instance_norm NHWC [2,3,3,2], affine", {{{2, 3, 3, 2}, -2.0, 2.0}, {{2}, 0.5, 1.5}, {{2}}},
          [](const V& v) { return instance_norm(v[0], v[1], v[2]); });
    r.add(OpKind::group_norm, "instance_norm [1,4,3,3], no affine", {{{1, 4, 3, 3}, -2.0, 2.0}},
          [](const V& v) { return instance_norm(v[0]); });
    r.add(OpKind::dropout, "p 0.3, seeded, training", {{{4, 5}}}, [](const V& v) {
        manual_seed(7);  // the same mask on every evaluation
        return dropout(v[0], 0.3, true);
    });
}

}  // namespace detail
}  // namespace xgrad
