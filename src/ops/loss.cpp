#include "xgrad/ops/loss.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xnoalias.hpp>

#include <fmt/format.h>

#include "detail/cases.hpp"
#include "kernels/math.hpp"
#include "detail/check.hpp"
#include "detail/numeric.hpp"
#include "xgrad/ops/activation.hpp"
#include "xgrad/ops/elementwise.hpp"
#include "xgrad/ops/reduce.hpp"
#include "xgrad/ops/shape.hpp"
#include "xgrad/tape.hpp"

namespace xgrad {

namespace {

// The loss of per-element (or per-sample) values: reduced to a scalar or kept.
// Summed in long double, whose exponent range is wider than double's: the mean of losses
// near the type's largest value stays finite (a float sum of two 3e38 losses overflows).
template <class T>
xt::xarray<T> reduce(xt::xarray<T> values, Reduction r) {
    if (r == Reduction::none) return values;
    long double total = 0;
    for (const T v : values) total += v;
    if (r == Reduction::mean && values.size() > 0) total /= static_cast<long double>(values.size());
    return xt::xarray<T>(detail::saturate<T>(total));
}

// dL/dvalue for the per-element (or per-sample) values, as a tensor that broadcasts against
// them: gy itself for none, the 0-D gy (divided by their count for a mean) otherwise.
template <class T>
basic_tensor<T> upstream(const basic_tensor<T>& gy, std::size_t count, Reduction r) {
    if (r != Reduction::mean) return gy;
    return gy * (T(1) / static_cast<T>(std::max<std::size_t>(count, 1)));
}

// x where `keep` (a constant of 0s and 1s) is 1, the constant c elsewhere: a clamp whose
// gradient is x's where x is kept and 0 where it is not.
template <class T>
basic_tensor<T> select(const basic_tensor<T>& keep, const basic_tensor<T>& x, T c) {
    return x * keep + (T(1) - keep) * c;
}

// max(log v, -100), as binary_cross_entropy clamps it (PyTorch's rule), without evaluating
// log(0) where the clamp applies.
template <class T>
basic_tensor<T> clamped_log(const basic_tensor<T>& v) {
    const basic_tensor<T> keep(xt::xarray<T>(xt::cast<T>(v.value() > T(std::exp(-100.0)))));
    return select(keep, log(select(keep, v, T(1))), T(-100));
}

template <class T>
void check_same_shape(const char* op, const basic_tensor<T>& x, const basic_tensor<T>& t) {
    detail::check_shape(x.shape() == t.shape(), "{}: input and target shapes differ; input {}, target {}", op,
                        x.shape(), t.shape());
}

}  // namespace

template <class T>
basic_tensor<T> cross_entropy(const basic_tensor<T>& logits, const basic_tensor<T>& target, Reduction r) {
    detail::check_shape(logits.dim() == 2, "cross_entropy: logits must be [N, K]; logits {}, target {}",
                        logits.shape(), target.shape());
    const std::size_t n = logits.shape()[0], k = logits.shape()[1];
    detail::check_shape(k > 0, "cross_entropy: logits must have at least one class; logits {}, target {}",
                        logits.shape(), target.shape());
    const bool indices = target.dim() == 1;
    detail::check_shape((indices && target.shape()[0] == n) || target.shape() == logits.shape(),
                        "cross_entropy: target must be class indices [N] or probabilities [N, K]; logits {}, "
                        "target {}",
                        logits.shape(), target.shape());
    if (indices)
        for (std::size_t i = 0; i < n; ++i) {
            const T c = target.value().data()[i];
            detail::check_value(c >= 0 && c < static_cast<T>(k) && c == std::floor(c),
                                "cross_entropy: label {} of sample {} is not a class in [0, {}); logits {}, target {}",
                                c, i, k, logits.shape(), target.shape());
        }
    // loss_i = -Σ t log softmax(z), row by row with the row max subtracted, in the wider type W
    // so that z - max cannot overflow: the losses of logits as large as ±3e38 are exact in W,
    // saturated to T's range when they do not fit it.
    using W = detail::wider_t<T>;
    xt::xarray<T> losses = xt::empty<T>(Shape{n});
    const T* z = logits.value().data();
    const T* t = target.value().data();
    std::vector<W> lp(k);
    for (std::size_t i = 0; i < n; ++i) {
        const T* row = z + i * k;
        const W m = *std::max_element(row, row + k);
        W s = 0;
        for (std::size_t j = 0; j < k; ++j) s += kernels::math::exp(static_cast<W>(row[j]) - m);
        const W log_s = std::log(s);
        for (std::size_t j = 0; j < k; ++j) lp[j] = static_cast<W>(row[j]) - m - log_s;
        W loss = 0;
        if (indices) {
            loss = -lp[static_cast<std::size_t>(t[i])];
        } else {
            for (std::size_t j = 0; j < k; ++j)
                if (t[i * k + j] != 0) loss -= t[i * k + j] * lp[j];
        }
        losses.data()[i] = detail::saturate<T>(loss);
    }
    basic_tensor<T> out(reduce(std::move(losses), r));
    record(OpKind::cross_entropy, {logits, target}, out,
           [logits, target, n, k, r, indices](const basic_tensor<T>& gy, auto& grads) {
               // dL/dloss_i, shaped to broadcast against the [N, K] rows
               auto coeff = upstream(gy, n, r);
               if (r == Reduction::none) coeff = reshape(coeff, {static_cast<std::ptrdiff_t>(n), 1});
               // dlogits_i = (softmax_i · Σ t_i - t_i) · dL/dloss_i   (t_i one-hot for an index, Σ t_i = 1)
               if (grads.needs(0)) {
                   const auto p = softmax(logits, 1);
                   if (indices) {
                       xt::xarray<T> one_hot = xt::zeros<T>(Shape{n, k});
                       for (std::size_t i = 0; i < n; ++i)
                           one_hot.data()[i * k + static_cast<std::size_t>(target.value().data()[i])] = T(1);
                       grads.add(0, (p - basic_tensor<T>(std::move(one_hot))) * coeff);
                   } else {
                       grads.add(0, (p * sum(target, {1}, true) - target) * coeff);
                   }
               }
               // dtarget_ij = -log p_ij · dL/dloss_i (probabilities only; indices are not differentiable)
               if (grads.needs(1) && !indices) grads.add(1, -(log_softmax(logits, 1) * coeff));
           });
    return out;
}

template <class T>
basic_tensor<T> mse_loss(const basic_tensor<T>& x, const basic_tensor<T>& target, Reduction r) {
    check_same_shape("mse_loss", x, target);
    const xt::xarray<T> diff = x.value() - target.value();
    basic_tensor<T> out(reduce(xt::xarray<T>(diff * diff), r));
    record(OpKind::mse_loss, {x, target}, out, [x, target, r](const basic_tensor<T>& gy, auto& grads) {
        // dx = 2 (x - t) · dL/dloss, dtarget = -dx
        const auto d = (x - target) * (T(2) * upstream(gy, x.size(), r));
        if (grads.needs(0)) grads.add(0, d);
        if (grads.needs(1)) grads.add(1, -d);
    });
    return out;
}

template <class T>
basic_tensor<T> binary_cross_entropy(const basic_tensor<T>& p, const basic_tensor<T>& target, Reduction r) {
    check_same_shape("binary_cross_entropy", p, target);
    const T* pv = p.value().data();
    for (std::size_t i = 0; i < p.size(); ++i)
        detail::check_value(pv[i] >= 0 && pv[i] <= 1,
                            "binary_cross_entropy: input {} at flat index {} is not a probability in [0, 1]; "
                            "input {}, target {}",
                            pv[i], i, p.shape(), target.shape());
    auto clamped = [](T v) { return std::max(std::log(v), T(-100)); };
    xt::xarray<T> losses = xt::empty<T>(p.shape());
    for (std::size_t i = 0; i < p.size(); ++i) {
        const T t = target.value().data()[i];
        losses.data()[i] = -(t * clamped(pv[i]) + (1 - t) * clamped(1 - pv[i]));
    }
    basic_tensor<T> out(reduce(std::move(losses), r));
    record(OpKind::binary_cross_entropy, {p, target}, out, [p, target, r](const basic_tensor<T>& gy, auto& grads) {
        // dp = (p - t) / (p (1 - p)) with p(1 - p) kept above 1e-12; dt = log(1 - p) - log p
        const auto g = upstream(gy, p.size(), r);
        if (grads.needs(0)) {
            const auto denom = p * (T(1) - p);
            const basic_tensor<T> keep(xt::xarray<T>(xt::cast<T>(denom.value() > T(1e-12))));
            grads.add(0, g * (p - target) / select(keep, denom, T(1e-12)));
        }
        if (grads.needs(1)) grads.add(1, g * (clamped_log(T(1) - p) - clamped_log(p)));
    });
    return out;
}

template <class T>
basic_tensor<T> binary_cross_entropy_with_logits(const basic_tensor<T>& z, const basic_tensor<T>& target,
                                                 Reduction r) {
    check_same_shape("binary_cross_entropy_with_logits", z, target);
    xt::xarray<T> losses = xt::empty<T>(z.shape());
    for (std::size_t i = 0; i < z.size(); ++i) {
        const T x = z.value().data()[i], t = target.value().data()[i];
        // max(x, 0) - x t + log(1 + e^-|x|): no overflow for any x
        losses.data()[i] = std::max(x, T(0)) - x * t + std::log1p(std::exp(-std::abs(x)));
    }
    basic_tensor<T> out(reduce(std::move(losses), r));
    record(OpKind::binary_cross_entropy, {z, target}, out, [z, target, r](const basic_tensor<T>& gy, auto& grads) {
        // dz = sigmoid(z) - t, dt = -z
        const auto g = upstream(gy, z.size(), r);
        if (grads.needs(0)) grads.add(0, g * (sigmoid(z) - target));
        if (grads.needs(1)) grads.add(1, -(g * z));
    });
    return out;
}

namespace {

// The per-element (or per-sample) losses reduced by tensor ops, so that the reduction is
// differentiable to any order: a mean divides by `count` (0 when it is 0).
template <class T>
basic_tensor<T> reduce_tensor(const basic_tensor<T>& values, Reduction r, double count) {
    if (r == Reduction::none) return values;
    const auto total = sum(values);
    if (r == Reduction::sum) return total;
    return total * static_cast<T>(count > 0 ? 1 / count : 0);
}

// Checks the class options against K classes; returns the weights (all 1 when none are given).
std::vector<double> class_weights(const char* op, const CrossEntropyOptions& o, std::size_t k, const Shape& a,
                                  const Shape& b) {
    detail::check_value(o.weight.empty() || o.weight.size() == k,
                        "{}: {} class weights for {} classes; input {}, target {}", op, o.weight.size(), k, a, b);
    for (const double w : o.weight)
        detail::check_value(w >= 0 && std::isfinite(w), "{}: class weight {} is not finite and >= 0", op, w);
    detail::check_value(o.label_smoothing >= 0 && o.label_smoothing < 1,
                        "{}: label_smoothing must be in [0, 1), got {}", op, o.label_smoothing);
    return o.weight.empty() ? std::vector<double>(k, 1.0) : o.weight;
}

// For class-index targets: the constant matrix [N, K] whose row i holds `row(i, label)`
// (zero for an ignored sample), and the sum of the kept samples' weights (the mean's count).
template <class T, class Row>
std::pair<basic_tensor<T>, double> label_matrix(const char* op, const basic_tensor<T>& target, std::size_t k,
                                               const CrossEntropyOptions& o, const std::vector<double>& w,
                                               const Shape& input_shape, Row row) {
    const std::size_t n = target.shape()[0];
    xt::xarray<T> m = xt::zeros<T>(Shape{n, k});
    double count = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const T c = target.value().data()[i];
        if (o.ignore_index && c == static_cast<T>(*o.ignore_index)) continue;
        detail::check_value(c >= 0 && c < static_cast<T>(k) && c == std::floor(c),
                            "{}: label {} of sample {} is not a class in [0, {}){}; input {}, target {}", op, c, i, k,
                            o.ignore_index ? fmt::format(" nor the ignore_index {}", *o.ignore_index) : "",
                            input_shape, target.shape());
        const auto label = static_cast<std::size_t>(c);
        for (std::size_t j = 0; j < k; ++j) m.data()[i * k + j] = static_cast<T>(row(j, label));
        count += w[label];
    }
    return {basic_tensor<T>(std::move(m)), count};
}

}  // namespace

template <class T>
basic_tensor<T> cross_entropy(const basic_tensor<T>& logits, const basic_tensor<T>& target,
                              const CrossEntropyOptions& o) {
    if (o.weight.empty() && o.label_smoothing == 0 && !o.ignore_index) return cross_entropy(logits, target, o.reduction);
    detail::check_shape(logits.dim() == 2 && logits.shape()[1] > 0,
                        "cross_entropy: logits must be [N, K] with K > 0; logits {}, target {}", logits.shape(),
                        target.shape());
    const std::size_t n = logits.shape()[0], k = logits.shape()[1];
    const auto w = class_weights("cross_entropy", o, k, logits.shape(), target.shape());
    const double eps = o.label_smoothing, spread = eps / static_cast<double>(k);
    if (target.dim() == 1 && target.shape()[0] == n) {
        // t''_ij = w_j ((1 - ε)[j = y_i] + ε/K): cross_entropy against it is PyTorch's weighted,
        // smoothed loss, term by term.
        const auto [t, count] = label_matrix("cross_entropy", target, k, o, w, logits.shape(),
                                             [&](std::size_t j, std::size_t y) { return w[j] * ((j == y) * (1 - eps) + spread); });
        return reduce_tensor(cross_entropy(logits, t, Reduction::none), o.reduction, count);
    }
    detail::check_shape(target.shape() == logits.shape(),
                        "cross_entropy: target must be class indices [N] or probabilities [N, K]; logits {}, target {}",
                        logits.shape(), target.shape());
    detail::check_value(!o.ignore_index, "cross_entropy: ignore_index needs class-index targets; logits {}, target {}",
                        logits.shape(), target.shape());
    xt::xarray<T> wk = xt::empty<T>(Shape{k});
    for (std::size_t j = 0; j < k; ++j) wk(j) = static_cast<T>(w[j]);
    const auto smoothed = eps > 0 ? target * static_cast<T>(1 - eps) + static_cast<T>(spread) : target;
    return reduce_tensor(cross_entropy(logits, smoothed * basic_tensor<T>(std::move(wk)), Reduction::none), o.reduction,
                         static_cast<double>(n));
}

template <class T>
basic_tensor<T> nll_loss(const basic_tensor<T>& log_probs, const basic_tensor<T>& target, const CrossEntropyOptions& o) {
    detail::check_shape(log_probs.dim() == 2 && log_probs.shape()[1] > 0 && target.dim() == 1 &&
                            target.shape()[0] == log_probs.shape()[0],
                        "nll_loss: log_probs must be [N, K] with K > 0 and target class indices [N]; log_probs {}, "
                        "target {}",
                        log_probs.shape(), target.shape());
    detail::check_value(o.label_smoothing == 0, "nll_loss: label_smoothing is cross_entropy's option, got {}",
                        o.label_smoothing);
    const std::size_t k = log_probs.shape()[1];
    const auto w = class_weights("nll_loss", o, k, log_probs.shape(), target.shape());
    const auto [pick, count] = label_matrix("nll_loss", target, k, o, w, log_probs.shape(),
                                            [&](std::size_t j, std::size_t y) { return j == y ? w[j] : 0.0; });
    return reduce_tensor(-sum(log_probs * pick, {1}), o.reduction, count);
}

template <class T>
basic_tensor<T> huber_loss(const basic_tensor<T>& x, const basic_tensor<T>& target, double delta, Reduction r) {
    check_same_shape("huber_loss", x, target);
    detail::check_value(delta > 0 && std::isfinite(delta), "huber_loss: delta must be positive, got {}", delta);
    const auto d = x - target;
    const auto a = abs(d);
    const auto quadratic = square(d) * T(0.5);
    const auto linear = (a - static_cast<T>(delta / 2)) * static_cast<T>(delta);
    return reduce_tensor(xgrad::where(xt::xarray<bool>(a.value() < static_cast<T>(delta)), quadratic, linear), r,
                         static_cast<double>(x.size()));
}

template <class T>
basic_tensor<T> smooth_l1_loss(const basic_tensor<T>& x, const basic_tensor<T>& target, double beta, Reduction r) {
    check_same_shape("smooth_l1_loss", x, target);
    detail::check_value(beta >= 0 && std::isfinite(beta), "smooth_l1_loss: beta must be >= 0, got {}", beta);
    if (beta == 0) return l1_loss(x, target, r);
    return huber_loss(x, target, beta, r) * static_cast<T>(1 / beta);
}

template <class T>
basic_tensor<T> l1_loss(const basic_tensor<T>& x, const basic_tensor<T>& target, Reduction r) {
    check_same_shape("l1_loss", x, target);
    return reduce_tensor(abs(x - target), r, static_cast<double>(x.size()));
}

#define XGRAD_INSTANTIATE(T)                                                                                   \
    template basic_tensor<T> cross_entropy(const basic_tensor<T>&, const basic_tensor<T>&, Reduction);         \
    template basic_tensor<T> mse_loss(const basic_tensor<T>&, const basic_tensor<T>&, Reduction);              \
    template basic_tensor<T> binary_cross_entropy(const basic_tensor<T>&, const basic_tensor<T>&, Reduction);  \
    template basic_tensor<T> binary_cross_entropy_with_logits(const basic_tensor<T>&, const basic_tensor<T>&,  \
                                                              Reduction);                                      \
    template basic_tensor<T> cross_entropy(const basic_tensor<T>&, const basic_tensor<T>&,                     \
                                           const CrossEntropyOptions&);                                        \
    template basic_tensor<T> nll_loss(const basic_tensor<T>&, const basic_tensor<T>&, const CrossEntropyOptions&); \
    template basic_tensor<T> huber_loss(const basic_tensor<T>&, const basic_tensor<T>&, double, Reduction);     \
    template basic_tensor<T> smooth_l1_loss(const basic_tensor<T>&, const basic_tensor<T>&, double, Reduction); \
    template basic_tensor<T> l1_loss(const basic_tensor<T>&, const basic_tensor<T>&, Reduction);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

namespace detail {

void register_loss_cases(CaseRegistry& r) {
    using V = std::vector<Tensor64>;
    const Reduction reductions[] = {Reduction::mean, Reduction::sum, Reduction::none};
    const char* names[] = {"mean", "sum", "none"};
    for (int i = 0; i < 3; ++i) {
        const Reduction red = reductions[i];
        const std::string suffix = std::string(" ") + names[i];
        r.add("cross_entropy", "labels [4] of 5 classes," + suffix, [red, suffix](std::uint64_t seed) {
            auto xs = case_inputs({{{4, 5}, -3.0, 3.0}}, seed, "cross_entropy/labels" + suffix);
            const Tensor64 labels(xt::xarray<double>{0, 4, 2, 2});
            return gradcheck([labels, red](const V& v) { return cross_entropy(v[0], labels, red); }, xs);
        });
        r.add(OpKind::cross_entropy, "probabilities [3, 4]," + suffix, {{{3, 4}, -3.0, 3.0}, {{3, 4}, 0.0, 1.0}},
              [red](const V& v) { return cross_entropy(v[0], v[1], red); });
        r.add(OpKind::mse_loss, "[3, 4]," + suffix, {{{3, 4}}, {{3, 4}}},
              [red](const V& v) { return mse_loss(v[0], v[1], red); });
        r.add(OpKind::binary_cross_entropy, "probabilities [2, 3]," + suffix, {{{2, 3}, 0.05, 0.95}, {{2, 3}, 0.0, 1.0}},
              [red](const V& v) { return binary_cross_entropy(v[0], v[1], red); });
        r.add("binary_cross_entropy_with_logits", "[2, 3]," + suffix, {{{2, 3}, -4.0, 4.0}, {{2, 3}, 0.0, 1.0}},
              [red](const V& v) { return binary_cross_entropy_with_logits(v[0], v[1], red); });
        // Class weights, smoothing and an ignored label (-1, sample 2), through the composition.
        const CrossEntropyOptions o{.reduction = red, .weight = {0.5, 2, 1, 0.25, 3}, .label_smoothing = 0.1,
                                    .ignore_index = -1};
        r.add("cross_entropy", "labels, weights, smoothing 0.1, ignore_index," + suffix, [suffix](std::uint64_t seed) {
            return case_inputs({{{4, 5}, -3.0, 3.0}}, seed, "cross_entropy/options" + suffix);
        }, [o](const V& v) { return cross_entropy(v[0], Tensor64(xt::xarray<double>{0, 4, -1, 2}), o); });
        r.add("cross_entropy", "probabilities, weights, smoothing 0.1," + suffix, {{{3, 5}, -3.0, 3.0}, {{3, 5}, 0.0, 1.0}},
              [o](const V& v) {
                  auto p = o;
                  p.ignore_index.reset();
                  return cross_entropy(v[0], v[1], p);
              });
        r.add("nll_loss", "weights, ignore_index," + suffix, [suffix](std::uint64_t seed) {
            return case_inputs({{{4, 5}, -4.0, -0.1}}, seed, "nll_loss" + suffix);
        }, [o](const V& v) {
            auto p = o;
            p.label_smoothing = 0;
            return nll_loss(v[0], Tensor64(xt::xarray<double>{0, 4, -1, 2}), p);
        });
        // Differences spread over both sides of delta (0.7) and of 0; kinks are measure zero.
        r.add("huber_loss", "[3, 4] delta 0.7," + suffix, {{{3, 4}, -2.0, 2.0}, {{3, 4}}},
              [red](const V& v) { return huber_loss(v[0], v[1], 0.7, red); });
        r.add("smooth_l1_loss", "[3, 4] beta 0.5," + suffix, {{{3, 4}, -2.0, 2.0}, {{3, 4}}},
              [red](const V& v) { return smooth_l1_loss(v[0], v[1], 0.5, red); });
        r.add("l1_loss", "[3, 4]," + suffix, {{{3, 4}, -2.0, 2.0}, {{3, 4}}},
              [red](const V& v) { return l1_loss(v[0], v[1], red); });
    }
    r.add("cross_entropy", "logits near +-1000, labels", [](std::uint64_t seed) {
        auto xs = case_inputs({{{2, 3}, -1.0, 1.0}}, seed, "cross_entropy/1000");
        xs[0].mutable_value() += xt::xarray<double>{{1000, -1000, 0}, {-1000, 1000, 999}};
        const Tensor64 labels(xt::xarray<double>{1, 2});
        return gradcheck([labels](const V& v) { return cross_entropy(v[0], labels); }, xs);
    });
}

}  // namespace detail
}  // namespace xgrad
