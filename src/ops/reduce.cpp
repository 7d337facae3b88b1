#include "xgrad/ops/reduce.hpp"

#include <cmath>
#include <numeric>

#include <xtensor/xbuilder.hpp>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xnoalias.hpp>
#include <xtensor/xreducer.hpp>
#include <xtensor/xtensor.hpp>

#include "detail/axes.hpp"
#include "detail/cases.hpp"
#include "xgrad/ops/elementwise.hpp"
#include "xgrad/tape.hpp"

namespace xgrad {

namespace {

Axes all_axes(std::size_t ndim) {
    Axes a(ndim);
    std::iota(a.begin(), a.end(), 0);
    return a;
}

// The shape of a reduction: reduced axes dropped, or kept with size 1.
Shape reduced_shape(const Shape& shape, const std::vector<std::size_t>& axes, bool keepdims) {
    Shape out;
    for (std::size_t i = 0; i < shape.size(); ++i) {
        const bool reduced = std::find(axes.begin(), axes.end(), i) != axes.end();
        if (!reduced) out.push_back(shape[i]);
        else if (keepdims) out.push_back(1);
    }
    return out;
}

// dx += gy broadcast back over the reduced axes, times `scale`.
template <class T>
void spread(xt::xarray<T>& dx, const xt::xarray<T>& gy, const Shape& kept_shape, T scale) {
    if (gy.size() == 1) {  // a full reduction: one value for every element, without broadcasting
        const T g = gy.data()[0] * scale;
        for (auto& v : dx) v += g;
        return;
    }
    xt::xarray<T> g = gy * scale;
    g.reshape(kept_shape);
    xt::noalias(dx) += g;
}

template <class T>
basic_tensor<T> reduce_sum(const char* op, OpKind kind, const basic_tensor<T>& x, const Axes& axes_in,
                           bool keepdims, bool average) {
    const auto axes = detail::normalize_axes(op, axes_in, x.shape());
    const Shape kept = reduced_shape(x.shape(), axes, true);
    std::size_t count = 1;
    for (auto a : axes) count *= x.shape()[a];
    const T scale = average ? T(1) / static_cast<T>(std::max<std::size_t>(count, 1)) : T(1);
    xt::xarray<T> y = xt::sum(x.value(), axes);
    if (average) y *= scale;
    y.reshape(reduced_shape(x.shape(), axes, keepdims));
    basic_tensor<T> out(std::move(y));
    record(kind, {x}, out, [kept, scale](const auto& gy, auto& grads) {
        // dx = gy (/ count for mean), broadcast over the reduced axes
        if (grads[0]) spread(*grads[0], gy, kept, scale);
    });
    return out;
}

}  // namespace

template <class T>
basic_tensor<T> sum(const basic_tensor<T>& x, const Axes& axes, bool keepdims) {
    return reduce_sum("sum", OpKind::sum, x, axes, keepdims, false);
}

template <class T>
basic_tensor<T> sum(const basic_tensor<T>& x) {
    return sum(x, all_axes(x.dim()));
}

template <class T>
basic_tensor<T> mean(const basic_tensor<T>& x, const Axes& axes, bool keepdims) {
    detail::check_shape(x.size() > 0, "mean: x {} is empty", x.shape());
    return reduce_sum("mean", OpKind::mean, x, axes, keepdims, true);
}

template <class T>
basic_tensor<T> mean(const basic_tensor<T>& x) {
    return mean(x, all_axes(x.dim()));
}

template <class T>
basic_tensor<T> max(const basic_tensor<T>& x, const Axes& axes_in, bool keepdims) {
    const auto axes = detail::normalize_axes("max", axes_in, x.shape());
    detail::check_shape(x.size() > 0, "max: x {} is empty", x.shape());
    // Move the reduced axes last, so that each output owns one contiguous row.
    std::vector<std::size_t> perm;
    for (std::size_t i = 0; i < x.dim(); ++i)
        if (std::find(axes.begin(), axes.end(), i) == axes.end()) perm.push_back(i);
    perm.insert(perm.end(), axes.begin(), axes.end());
    const xt::xarray<T> xp = xt::transpose(x.value(), perm);
    std::size_t inner = 1;
    for (auto a : axes) inner *= x.shape()[a];
    const std::size_t outer = x.size() / inner;

    xt::xarray<T> y = xt::empty<T>(reduced_shape(x.shape(), axes, keepdims));
    std::vector<std::size_t> argmax(outer);
    for (std::size_t o = 0; o < outer; ++o) {
        const T* row = xp.data() + o * inner;
        std::size_t best = 0;
        // NaN counts as the largest value (the first NaN wins), so that it propagates as in
        // PyTorch and numpy instead of disappearing behind a finite maximum.
        for (std::size_t k = 1; k < inner && !std::isnan(row[best]); ++k)
            if (row[k] > row[best] || std::isnan(row[k])) best = k;
        argmax[o] = best;
        y.data()[o] = row[best];
    }
    basic_tensor<T> out(std::move(y));
    record(OpKind::max, {x}, out,
           [argmax = std::move(argmax), perm, pshape = xp.shape(), inner](const auto& gy, auto& grads) {
               if (!grads[0]) return;
               // dx: each gy element goes to the first maximum of its row
               xt::xarray<T> gp = xt::zeros<T>(pshape);
               for (std::size_t o = 0; o < argmax.size(); ++o)
                   gp.data()[o * inner + argmax[o]] = gy.data()[o];
               std::vector<std::size_t> inverse(perm.size());
               for (std::size_t i = 0; i < perm.size(); ++i) inverse[perm[i]] = i;
               xt::noalias(*grads[0]) += xt::transpose(gp, inverse);
           });
    return out;
}

template <class T>
basic_tensor<T> max(const basic_tensor<T>& x) {
    return max(x, all_axes(x.dim()));
}

#define XGRAD_INSTANTIATE(T)                                                   \
    template basic_tensor<T> sum(const basic_tensor<T>&);                      \
    template basic_tensor<T> sum(const basic_tensor<T>&, const Axes&, bool);   \
    template basic_tensor<T> mean(const basic_tensor<T>&);                     \
    template basic_tensor<T> mean(const basic_tensor<T>&, const Axes&, bool);  \
    template basic_tensor<T> max(const basic_tensor<T>&);                      \
    template basic_tensor<T> max(const basic_tensor<T>&, const Axes&, bool);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

namespace detail {

void register_reduce_cases(CaseRegistry& r) {
    using V = std::vector<Tensor64>;
    const CaseInput x{{2, 3, 4}};
    r.add(OpKind::sum, "all", {x}, [](const V& v) { return sum(v[0]); });
    r.add(OpKind::sum, "axis 1", {x}, [](const V& v) { return sum(v[0], {1}); });
    r.add(OpKind::sum, "axes {0, -1} keepdims", {x}, [](const V& v) { return sum(v[0], {0, -1}, true); });
    r.add(OpKind::mean, "all", {x}, [](const V& v) { return mean(v[0]); });
    r.add(OpKind::mean, "axis -1", {x}, [](const V& v) { return mean(v[0], {-1}); });
    r.add(OpKind::mean, "axes {0, 2} keepdims", {x}, [](const V& v) { return mean(v[0], {0, 2}, true); });
    r.add(OpKind::max, "all", {x}, [](const V& v) { return max(v[0]); });
    r.add(OpKind::max, "axis 1", {x}, [](const V& v) { return max(v[0], {1}); });
    r.add(OpKind::max, "axes {0, 2} keepdims", {x}, [](const V& v) { return max(v[0], {0, 2}, true); });
    r.add(OpKind::max, "axis 0 of [5, 3]", {{{5, 3}}}, [](const V& v) { return max(v[0], {0}); });
}

}  // namespace detail
}  // namespace xgrad
