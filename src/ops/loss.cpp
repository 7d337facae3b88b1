#include "xgrad/ops/loss.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xnoalias.hpp>

#include "detail/cases.hpp"
#include "detail/check.hpp"
#include "detail/numeric.hpp"
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

// dL/dvalue_i: gy broadcast back over the reduced values (and divided by their count for a mean).
template <class T>
T upstream(const xt::xarray<T>& gy, std::size_t i, std::size_t count, Reduction r) {
    if (r == Reduction::none) return gy.data()[i];
    return r == Reduction::mean ? gy.data()[0] / static_cast<T>(count) : gy.data()[0];
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
    // probs [N, K] = softmax(logits), row by row with the row max subtracted; loss_i = -Σ t log p.
    // In the wider type W, so that z - max cannot overflow: the log-probabilities and losses of
    // logits as large as ±3e38 are exact in W, saturated to T's range when they do not fit it.
    using W = detail::wider_t<T>;
    xt::xarray<T> probs = xt::empty<T>(logits.shape());
    xt::xarray<T> log_probs = xt::empty<T>(indices ? Shape{0} : logits.shape());  // for dtarget
    xt::xarray<T> losses = xt::empty<T>(Shape{n});
    const T* z = logits.value().data();
    const T* t = target.value().data();
    std::vector<W> lp(k);
    for (std::size_t i = 0; i < n; ++i) {
        const T* row = z + i * k;
        T* p = probs.data() + i * k;
        const W m = *std::max_element(row, row + k);
        W s = 0;
        for (std::size_t j = 0; j < k; ++j) s += std::exp(static_cast<W>(row[j]) - m);
        const W log_s = std::log(s);
        for (std::size_t j = 0; j < k; ++j) {
            lp[j] = static_cast<W>(row[j]) - m - log_s;
            p[j] = static_cast<T>(std::exp(lp[j]));
        }
        W loss = 0;
        if (indices) {
            loss = -lp[static_cast<std::size_t>(t[i])];
        } else {
            for (std::size_t j = 0; j < k; ++j) {
                if (t[i * k + j] != 0) loss -= t[i * k + j] * lp[j];
                log_probs.data()[i * k + j] = detail::saturate<T>(lp[j]);
            }
        }
        losses.data()[i] = detail::saturate<T>(loss);
    }
    basic_tensor<T> out(reduce(std::move(losses), r));
    record(OpKind::cross_entropy, {logits, target}, out,
           [target, probs = std::move(probs), log_probs = std::move(log_probs), n, k, r, indices](
               const auto& gy, auto& grads) {
               const T* t = target.value().data();
               // dlogits_i = (softmax_i · Σ t_i - t_i) · dL/dloss_i   (t_i one-hot for an index, Σ t_i = 1)
               if (grads[0]) {
                   T* d = grads[0]->data();
                   for (std::size_t i = 0; i < n; ++i) {
                       const T g = upstream(gy, i, n, r);
                       T total = 1;
                       if (!indices) total = std::accumulate(t + i * k, t + (i + 1) * k, T(0));
                       for (std::size_t j = 0; j < k; ++j) {
                           const T tj = indices ? T(static_cast<std::size_t>(t[i]) == j) : t[i * k + j];
                           d[i * k + j] += g * (probs.data()[i * k + j] * total - tj);
                       }
                   }
               }
               // dtarget_ij = -log p_ij · dL/dloss_i (probabilities only; indices are not differentiable)
               if (grads[1] && !indices) {
                   T* d = grads[1]->data();
                   for (std::size_t i = 0; i < n; ++i)
                       for (std::size_t j = 0; j < k; ++j)
                           d[i * k + j] -= upstream(gy, i, n, r) * log_probs.data()[i * k + j];
               }
           });
    return out;
}

template <class T>
basic_tensor<T> mse_loss(const basic_tensor<T>& x, const basic_tensor<T>& target, Reduction r) {
    check_same_shape("mse_loss", x, target);
    xt::xarray<T> diff = x.value() - target.value();
    basic_tensor<T> out(reduce(xt::xarray<T>(diff * diff), r));
    record(OpKind::mse_loss, {x, target}, out, [diff = std::move(diff), r](const auto& gy, auto& grads) {
        // dx = 2 (x - t) · dL/dloss, dtarget = -dx
        for (std::size_t i = 0; i < diff.size(); ++i) {
            const T d = T(2) * diff.data()[i] * upstream(gy, i, diff.size(), r);
            if (grads[0]) grads[0]->data()[i] += d;
            if (grads[1]) grads[1]->data()[i] -= d;
        }
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
    auto clamped_log = [](T v) { return std::max(std::log(v), T(-100)); };
    xt::xarray<T> losses = xt::empty<T>(p.shape());
    for (std::size_t i = 0; i < p.size(); ++i) {
        const T t = target.value().data()[i];
        losses.data()[i] = -(t * clamped_log(pv[i]) + (1 - t) * clamped_log(1 - pv[i]));
    }
    basic_tensor<T> out(reduce(std::move(losses), r));
    record(OpKind::binary_cross_entropy, {p, target}, out, [p, target, r, clamped_log](const auto& gy, auto& grads) {
        // dp = (p - t) / (p (1 - p)) with p(1 - p) kept above 1e-12; dt = log(1 - p) - log p
        const std::size_t count = p.size();
        for (std::size_t i = 0; i < count; ++i) {
            const T pi = p.value().data()[i], t = target.value().data()[i];
            const T g = upstream(gy, i, count, r);
            if (grads[0]) grads[0]->data()[i] += g * (pi - t) / std::max(pi * (1 - pi), T(1e-12));
            if (grads[1]) grads[1]->data()[i] += g * (clamped_log(1 - pi) - clamped_log(pi));
        }
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
    record(OpKind::binary_cross_entropy, {z, target}, out, [z, target, r](const auto& gy, auto& grads) {
        // dz = sigmoid(z) - t, dt = -z
        const std::size_t count = z.size();
        for (std::size_t i = 0; i < count; ++i) {
            const T x = z.value().data()[i], t = target.value().data()[i];
            const T g = upstream(gy, i, count, r);
            const T e = std::exp(-std::abs(x));
            const T s = x >= 0 ? 1 / (1 + e) : e / (1 + e);
            if (grads[0]) grads[0]->data()[i] += g * (s - t);
            if (grads[1]) grads[1]->data()[i] -= g * x;
        }
    });
    return out;
}

#define XGRAD_INSTANTIATE(T)                                                                                   \
    template basic_tensor<T> cross_entropy(const basic_tensor<T>&, const basic_tensor<T>&, Reduction);         \
    template basic_tensor<T> mse_loss(const basic_tensor<T>&, const basic_tensor<T>&, Reduction);              \
    template basic_tensor<T> binary_cross_entropy(const basic_tensor<T>&, const basic_tensor<T>&, Reduction);  \
    template basic_tensor<T> binary_cross_entropy_with_logits(const basic_tensor<T>&, const basic_tensor<T>&,  \
                                                              Reduction);
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
