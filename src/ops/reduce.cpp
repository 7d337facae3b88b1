#include "xgrad/ops/reduce.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <vector>

#include <xtensor/xbuilder.hpp>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xnoalias.hpp>
#include <xtensor/xreducer.hpp>
#include <xtensor/xtensor.hpp>

#include "detail/axes.hpp"
#include "detail/numeric.hpp"
#include "detail/cases.hpp"
#include "detail/parallel.hpp"
#include "kernels/copy.hpp"
#include "xgrad/ops/elementwise.hpp"
#include "xgrad/ops/shape.hpp"
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

template <class T>
basic_tensor<T> average_scale(const basic_tensor<T>& g, T scale) {
    return scale == T(1) ? g : g * scale;
}

// sum over the leading `lead` axes of a row-major array, without xtensor's generic reducer
// (the bias gradient of every conv and dense layer, a loss's mean).
template <class T>
xt::xarray<T> sum_leading(const xt::xarray<T>& x, std::size_t lead) {
    std::size_t rows = 1;
    for (std::size_t d = 0; d < lead; ++d) rows *= x.shape()[d];
    const std::size_t cols = rows ? x.size() / rows : 0;
    Shape rest(x.shape().begin() + static_cast<std::ptrdiff_t>(lead), x.shape().end());
    xt::xarray<T> y = xt::zeros<T>(rest);
    if (cols == 0) return y;  // an empty trailing axis
    T* out = y.data();
    // Blocks of rows (at least 64Ki values) summed on the threads, then the blocks' sums in
    // block order: the same numbers at any thread count (a bias gradient sums N·OH·OW rows:
    // serial, it was 2.6% of a W1 step with the other thread waiting).
    const std::size_t block = std::max<std::size_t>(256, (detail::kParallelElements + cols - 1) / cols);
    const std::size_t blocks = (rows + block - 1) / block;
    if (blocks <= 1) {
        detail::add_rows(x.data(), rows, cols, out);
        return y;
    }
    std::vector<T> partial(blocks * cols, T(0));
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t b = 0; b < static_cast<std::ptrdiff_t>(blocks); ++b) {
        const std::size_t first = static_cast<std::size_t>(b) * block, end = std::min(rows, first + block);
        detail::add_rows(x.data() + first * cols, end - first, cols, partial.data() + static_cast<std::size_t>(b) * cols);
    }
    for (std::size_t b = 0; b < blocks; ++b)
        for (std::size_t j = 0; j < cols; ++j) out[j] += partial[b * cols + j];
    return y;
}

// sum over the consecutive axes [first, first + count) of a row-major array that has axes
// before them: [outer, k, inner] summed over k, each of the outer blocks by one thread (the
// same numbers at any thread count); a row's sum when inner is 1 (layer_norm's means).
template <class T>
xt::xarray<T> sum_middle(const xt::xarray<T>& x, std::size_t first, std::size_t count) {
    std::size_t outer = 1, k = 1, inner = 1;
    Shape rest;
    for (std::size_t d = 0; d < x.dimension(); ++d) {
        const std::size_t n = x.shape()[d];
        if (d < first) outer *= n;
        else if (d < first + count) k *= n;
        else inner *= n;
        if (d < first || d >= first + count) rest.push_back(n);
    }
    xt::xarray<T> y = xt::zeros<T>(rest);
    if (y.size() == 0 || k == 0) return y;
#pragma omp parallel for schedule(static) if (static_cast<std::ptrdiff_t>(x.size()) > detail::kParallelElements)
    for (std::ptrdiff_t o = 0; o < static_cast<std::ptrdiff_t>(outer); ++o)
        detail::add_rows(x.data() + static_cast<std::size_t>(o) * k * inner, k, inner, y.data() + static_cast<std::size_t>(o) * inner);
    return y;
}

template <class T>
basic_tensor<T> reduce_sum(const char* op, OpKind kind, const basic_tensor<T>& x, const Axes& axes_in,
                           bool keepdims, bool average) {
    const auto axes = detail::normalize_axes(op, axes_in, x.shape());
    const Shape kept = reduced_shape(x.shape(), axes, true);
    std::size_t count = 1;
    for (auto a : axes) count *= x.shape()[a];
    // An empty result (an empty batch) is fine; a mean of nothing has no value.
    detail::check_shape(!average || count > 0, "mean: x {} is empty along the reduced axes", x.shape());
    const T scale = average ? T(1) / static_cast<T>(std::max<std::size_t>(count, 1)) : T(1);
    // Consecutive axes (leading, trailing or between) without xtensor's generic reducer; other
    // axes (group_norm's {1, 3}) are made the trailing ones by a permuted copy first.
    bool consecutive = true;
    for (std::size_t i = 1; i < axes.size(); ++i) consecutive = consecutive && axes[i] == axes[0] + i;
    xt::xarray<T> y;
    if (!consecutive) {
        std::vector<std::size_t> order;  // the kept axes in order, then the reduced ones
        for (std::size_t d = 0; d < x.dim(); ++d)
            if (!std::binary_search(axes.begin(), axes.end(), d)) order.push_back(d);
        const std::size_t kept = order.size();
        order.insert(order.end(), axes.begin(), axes.end());
        Shape moved;
        for (const std::size_t d : order) moved.push_back(x.shape()[d]);
        xt::xarray<T> xm = xt::empty<T>(moved);
        kernels::permute(x.value().data(), std::vector<std::size_t>(x.shape().begin(), x.shape().end()), order,
                         xm.data());
        y = kept == 0 ? sum_leading(xm, axes.size()) : sum_middle(xm, kept, axes.size());
    } else {
        y = axes.empty() || axes[0] == 0 ? sum_leading(x.value(), axes.size()) : sum_middle(x.value(), axes[0], axes.size());
    }
    if (average) y *= scale;
    y.reshape(reduced_shape(x.shape(), axes, keepdims));
    basic_tensor<T> out(std::move(y));
    record(kind, {x}, out, [kept, scale, xs = x.shape()](const basic_tensor<T>& gy, auto& grads) {
        // dx = gy (/ count for mean), broadcast over the reduced axes
        const auto g = reshape(gy, detail::dims(kept));
        grads.add(0, broadcast_to(average_scale(g, scale), xs));
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
    return reduce_sum("mean", OpKind::mean, x, axes, keepdims, true);
}

template <class T>
basic_tensor<T> mean(const basic_tensor<T>& x) {
    return mean(x, all_axes(x.dim()));
}

template <class T>
basic_tensor<T> max(const basic_tensor<T>& x, const Axes& axes_in, bool keepdims) {
    const auto axes = detail::normalize_axes("max", axes_in, x.shape());
    std::size_t inner = 1;
    for (auto a : axes) inner *= x.shape()[a];
    // An empty result (an empty batch) is fine; the maximum of nothing has no value.
    detail::check_shape(inner > 0, "max: x {} is empty along the reduced axes", x.shape());
    // Move the reduced axes last, so that each output owns one contiguous row.
    std::vector<std::size_t> perm;
    for (std::size_t i = 0; i < x.dim(); ++i)
        if (std::find(axes.begin(), axes.end(), i) == axes.end()) perm.push_back(i);
    perm.insert(perm.end(), axes.begin(), axes.end());
    const xt::xarray<T> xp = xt::transpose(x.value(), perm);
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
    if (!grad_enabled() || !x.requires_grad()) return out;
    // Ones at the first maximum of every slice: dx = gy broadcast back, times this constant
    // (piecewise constant in x, so it carries no graph).
    xt::xarray<T> mp = xt::zeros<T>(xp.shape());
    for (std::size_t o = 0; o < outer; ++o) mp.data()[o * inner + argmax[o]] = T(1);
    std::vector<std::size_t> inverse(perm.size());
    for (std::size_t i = 0; i < perm.size(); ++i) inverse[perm[i]] = i;
    basic_tensor<T> mask(xt::xarray<T>(xt::transpose(mp, inverse)));
    record(OpKind::max, {x}, out,
           [mask, kept = reduced_shape(x.shape(), axes, true)](const basic_tensor<T>& gy, auto& grads) {
               grads.add(0, mul(broadcast_to(reshape(gy, detail::dims(kept)), mask.shape()), mask));
           });
    return out;
}

template <class T>
basic_tensor<T> max(const basic_tensor<T>& x) {
    return max(x, all_axes(x.dim()));
}

template <class T>
basic_tensor<T> sum_to(const basic_tensor<T>& x, const Shape& shape) {
    if (x.shape() == shape) return x;
    detail::check_shape(shape.size() <= x.dim(), "sum_to: x {} has fewer axes than the shape {}", x.shape(), shape);
    const std::size_t lead = x.dim() - shape.size();
    Axes axes;
    for (std::size_t i = 0; i < x.dim(); ++i) {
        const bool stretched = i >= lead && shape[i - lead] == 1 && x.shape()[i] != 1;
        detail::check_shape(i < lead || stretched || shape[i - lead] == x.shape()[i],
                            "sum_to: x {} does not broadcast from the shape {}", x.shape(), shape);
        if (i < lead || stretched) axes.push_back(static_cast<std::ptrdiff_t>(i));
    }
    return reshape(sum(x, axes), detail::dims(shape));
}

#define XGRAD_INSTANTIATE(T)                                                   \
    template basic_tensor<T> sum_to(const basic_tensor<T>&, const Shape&);     \
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
