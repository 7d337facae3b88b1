#include "xgrad/ops/shape.hpp"

#include <algorithm>
#include <cstring>
#include <numeric>

#include <xtensor/xbuilder.hpp>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xnoalias.hpp>

#include "detail/axes.hpp"
#include "detail/broadcast.hpp"
#include "detail/cases.hpp"
#include "kernels/copy.hpp"
#include "detail/check.hpp"
#include "detail/parallel.hpp"
#include "xgrad/ops/reduce.hpp"
#include "xgrad/ops/elementwise.hpp"
#include "xgrad/tape.hpp"

namespace xgrad {

template <class T>
basic_tensor<T> reshape(const basic_tensor<T>& x, const std::vector<std::ptrdiff_t>& shape) {
    Shape out_shape(shape.size());
    std::ptrdiff_t infer = -1;
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (shape[i] == -1) {
            detail::check_shape(infer < 0, "reshape: more than one -1 in the new shape; x {}", x.shape());
            infer = static_cast<std::ptrdiff_t>(i);
            continue;
        }
        detail::check_shape(shape[i] >= 0, "reshape: negative dimension {} in the new shape; x {}",
                            shape[i], x.shape());
        out_shape[i] = static_cast<std::size_t>(shape[i]);
    }
    Shape given = out_shape;  // the dimension to infer counts as 1
    if (infer >= 0) given[static_cast<std::size_t>(infer)] = 1;
    std::size_t known = detail::checked_elements("reshape", given, sizeof(T), "x " + to_string(x.shape()));
    if (infer >= 0) {
        detail::check_shape(known > 0 && x.size() % known == 0,
                            "reshape: cannot infer -1: x {} has {} elements, not a multiple of {}",
                            x.shape(), x.size(), known);
        out_shape[static_cast<std::size_t>(infer)] = x.size() / known;
        known *= out_shape[static_cast<std::size_t>(infer)];
    }
    detail::check_shape(known == x.size(), "reshape: x {} has {} elements, the new shape {} has {}",
                        x.shape(), x.size(), out_shape, known);
    // The same elements in the same order, copied on the threads when large (a flatten between
    // a W1 net's convolutions and its dense layers copies 3.2 MB per inference batch).
    xt::xarray<T> y = detail::allocating("reshape", out_shape, sizeof(T),
                                         [&] { return xt::xarray<T>(xt::empty<T>(out_shape)); });
    const T* src = x.value().data();
    T* dst = y.data();
    constexpr std::ptrdiff_t kBlock = detail::kParallelElements;
    const auto blocks = static_cast<std::ptrdiff_t>((x.size() + kBlock - 1) / kBlock);
#pragma omp parallel for schedule(static) if (blocks > 1)
    for (std::ptrdiff_t b = 0; b < blocks; ++b) {
        const std::size_t first = static_cast<std::size_t>(b * kBlock);
        std::memcpy(dst + first, src + first, std::min<std::size_t>(kBlock, x.size() - first) * sizeof(T));
    }
    basic_tensor<T> out(std::move(y));
    record(OpKind::reshape, {x}, out, [xs = x.shape()](const basic_tensor<T>& gy, auto& grads) {
        // dx = gy in x's shape: same elements, same order
        grads.add(0, reshape(gy, detail::dims(xs)));
    });
    return out;
}

template <class T>
basic_tensor<T> flatten(const basic_tensor<T>& x) {
    detail::check_shape(x.dim() >= 1, "flatten: x must have a batch axis, got x {}", x.shape());
    return reshape(x, {static_cast<std::ptrdiff_t>(x.shape()[0]),
                       static_cast<std::ptrdiff_t>(detail::extent(x.shape(), 1, x.dim()))});
}

template <class T>
basic_tensor<T> permute(const basic_tensor<T>& x, const std::vector<std::ptrdiff_t>& axes) {
    detail::check_shape(axes.size() == x.dim(), "permute: {} axes given for x {}", axes.size(), x.shape());
    std::vector<std::size_t> perm;
    for (auto a : axes) perm.push_back(detail::normalize_axis("permute", a, x.shape()));
    std::vector<std::size_t> inverse(perm.size(), perm.size());
    for (std::size_t i = 0; i < perm.size(); ++i) {
        detail::check_shape(inverse[perm[i]] == perm.size(),
                            "permute: axis {} appears twice; x {}", perm[i], x.shape());
        inverse[perm[i]] = i;
    }
    Shape ys;
    for (const std::size_t a : perm) ys.push_back(x.shape()[a]);
    xt::xarray<T> y = xt::empty<T>(ys);
    kernels::permute(x.value().data(), std::vector<std::size_t>(x.shape().begin(), x.shape().end()), perm, y.data());
    basic_tensor<T> out(std::move(y));
    record(OpKind::permute, {x}, out, [inverse](const basic_tensor<T>& gy, auto& grads) {
        // dx = gy with the axes put back
        grads.add(0, permute(gy, std::vector<std::ptrdiff_t>(inverse.begin(), inverse.end())));
    });
    return out;
}

template <class T>
basic_tensor<T> transpose(const basic_tensor<T>& x, std::ptrdiff_t a, std::ptrdiff_t b) {
    std::vector<std::ptrdiff_t> axes(x.dim());
    std::iota(axes.begin(), axes.end(), 0);
    std::swap(axes[detail::normalize_axis("transpose", a, x.shape())],
              axes[detail::normalize_axis("transpose", b, x.shape())]);
    return permute(x, axes);
}

template <class T>
basic_tensor<T> transpose(const basic_tensor<T>& x) {
    std::vector<std::ptrdiff_t> axes(x.dim());
    std::iota(axes.rbegin(), axes.rend(), 0);
    return permute(x, axes);
}

template <class T>
basic_tensor<T> concat(const std::vector<basic_tensor<T>>& xs, std::ptrdiff_t axis_in) {
    detail::check_value(!xs.empty(), "concat: no tensors to join");
    auto all_shapes = [&xs] {
        std::string s;
        for (const auto& x : xs) s += (s.empty() ? "" : ", ") + to_string(x.shape());
        return s;
    };
    const Shape& first = xs[0].shape();
    const std::size_t axis = detail::normalize_axis("concat", axis_in, first);
    Shape out_shape = first;
    out_shape[axis] = 0;
    for (const auto& x : xs) {
        bool fits = x.dim() == first.size();
        for (std::size_t d = 0; fits && d < first.size(); ++d) fits = d == axis || x.shape()[d] == first[d];
        detail::check_shape(fits, "concat: shapes differ outside axis {}; {}", axis, all_shapes());
        out_shape[axis] += x.shape()[axis];
    }
    // Each input is a run of `outer` contiguous blocks of shape[axis]·inner elements.
    std::size_t outer = 1, inner = 1;
    for (std::size_t d = 0; d < axis; ++d) outer *= first[d];
    for (std::size_t d = axis + 1; d < first.size(); ++d) inner *= first[d];
    const std::size_t out_row = out_shape[axis] * inner;
    xt::xarray<T> y = xt::empty<T>(out_shape);
    std::size_t offset = 0;
    for (const auto& x : xs) {
        const std::size_t row = x.shape()[axis] * inner;
        for (std::size_t o = 0; o < outer; ++o)
            std::copy_n(x.value().data() + o * row, row, y.data() + o * out_row + offset);
        offset += row;
    }
    basic_tensor<T> out(std::move(y));
    std::vector<std::size_t> starts, lengths;  // each input's range along the axis
    for (std::size_t i = 0, at = 0; i < xs.size(); at += xs[i].shape()[axis], ++i) {
        starts.push_back(at);
        lengths.push_back(xs[i].shape()[axis]);
    }
    record(OpKind::concat, xs, out, [starts, lengths, axis](const basic_tensor<T>& gy, auto& grads) {
        // dx_i = the slice of gy that x_i filled
        for (std::size_t i = 0; i < grads.size(); ++i)
            if (grads.needs(i))
                grads.add(i, slice(gy, static_cast<std::ptrdiff_t>(axis), starts[i], lengths[i]));
    });
    return out;
}

template <class T>
basic_tensor<T> broadcast_to(const basic_tensor<T>& x, const Shape& shape) {
    detail::check_shape(detail::broadcast_shapes("broadcast_to", x.shape(), shape) == shape,
                        "broadcast_to: x {} does not broadcast to {}", x.shape(), shape);
    if (x.shape() == shape) return x;
    xt::xarray<T> y = xt::empty<T>(shape);
    kernels::broadcast(x.value().data(), std::vector<std::size_t>(x.shape().begin(), x.shape().end()),
                       std::vector<std::size_t>(shape.begin(), shape.end()), y.data());
    basic_tensor<T> out(std::move(y));
    record(OpKind::broadcast_to, {x}, out, [xs = x.shape()](const basic_tensor<T>& gy, auto& grads) {
        grads.add(0, sum_to(gy, xs));  // dx = gy summed over the repeated axes
    });
    return out;
}

template <class T>
basic_tensor<T> slice(const basic_tensor<T>& x, std::ptrdiff_t axis_in, std::size_t start, std::size_t length) {
    const std::size_t axis = detail::normalize_axis("slice", axis_in, x.shape());
    const std::size_t size = x.shape()[axis];
    detail::check_shape(start <= size && length <= size - start,
                        "slice: elements {} to {} of axis {} do not fit x {}", start, start + length, axis, x.shape());
    std::size_t outer = 1, inner = 1;
    for (std::size_t d = 0; d < axis; ++d) outer *= x.shape()[d];
    for (std::size_t d = axis + 1; d < x.dim(); ++d) inner *= x.shape()[d];
    Shape ys = x.shape();
    ys[axis] = length;
    xt::xarray<T> y = xt::empty<T>(ys);
    for (std::size_t o = 0; o < outer; ++o)
        std::copy_n(x.value().data() + (o * size + start) * inner, length * inner, y.data() + o * length * inner);
    basic_tensor<T> out(std::move(y));
    record(OpKind::slice, {x}, out, [axis, start](const basic_tensor<T>& gy, auto& grads) {
        grads.add_slice(0, axis, start, gy);  // dx = gy in its place along the axis, zeros elsewhere
    });
    return out;
}

template <class T>
basic_tensor<T> stack(const std::vector<basic_tensor<T>>& xs, std::ptrdiff_t axis_in) {
    detail::check_value(!xs.empty(), "stack: no tensors to join");
    std::string shapes;
    for (const auto& x : xs) shapes += (shapes.empty() ? "" : ", ") + to_string(x.shape());
    const Shape& first = xs[0].shape();
    for (const auto& x : xs)
        detail::check_shape(x.shape() == first, "stack: every tensor must have the same shape; {}", shapes);
    const auto n = static_cast<std::ptrdiff_t>(first.size());
    detail::check_shape(axis_in >= -(n + 1) && axis_in <= n, "stack: axis {} is out of range for a new axis of {}; {}",
                        axis_in, to_string(first), shapes);
    const auto axis = static_cast<std::size_t>(axis_in < 0 ? axis_in + n + 1 : axis_in);
    // Each input with a new axis of size 1, joined along it.
    std::vector<std::ptrdiff_t> unsqueezed = detail::dims(first);
    unsqueezed.insert(unsqueezed.begin() + static_cast<std::ptrdiff_t>(axis), 1);
    std::vector<basic_tensor<T>> parts;
    parts.reserve(xs.size());
    for (const auto& x : xs) parts.push_back(reshape(x, unsqueezed));
    return concat(parts, static_cast<std::ptrdiff_t>(axis));
}

template <class T>
std::vector<basic_tensor<T>> split(const basic_tensor<T>& x, const std::vector<std::size_t>& sizes,
                                   std::ptrdiff_t axis_in) {
    const std::size_t axis = detail::normalize_axis("split", axis_in, x.shape());
    std::size_t total = 0;
    for (auto s : sizes) total += s;
    detail::check_shape(total == x.shape()[axis], "split: sizes {} add up to {}, not axis {}'s {}; x {}",
                        to_string(Shape(sizes.begin(), sizes.end())), total, axis, x.shape()[axis], x.shape());
    std::vector<basic_tensor<T>> parts;
    std::size_t at = 0;
    for (auto s : sizes) {
        parts.push_back(slice(x, static_cast<std::ptrdiff_t>(axis), at, s));
        at += s;
    }
    return parts;
}

template <class T>
std::vector<basic_tensor<T>> split(const basic_tensor<T>& x, std::size_t split_size, std::ptrdiff_t axis_in) {
    const std::size_t axis = detail::normalize_axis("split", axis_in, x.shape());
    const std::size_t n = x.shape()[axis];
    detail::check_value(split_size > 0 || n == 0, "split: split_size must be positive, got 0; x {}", x.shape());
    std::vector<std::size_t> sizes;
    for (std::size_t at = 0; at < n; at += split_size) sizes.push_back(std::min(split_size, n - at));
    return split(x, sizes, axis_in);
}

#define XGRAD_INSTANTIATE(T)                                                                   \
    template basic_tensor<T> broadcast_to(const basic_tensor<T>&, const Shape&);               \
    template basic_tensor<T> slice(const basic_tensor<T>&, std::ptrdiff_t, std::size_t, std::size_t); \
    template basic_tensor<T> reshape(const basic_tensor<T>&, const std::vector<std::ptrdiff_t>&); \
    template basic_tensor<T> flatten(const basic_tensor<T>&);                                  \
    template basic_tensor<T> permute(const basic_tensor<T>&, const std::vector<std::ptrdiff_t>&); \
    template basic_tensor<T> transpose(const basic_tensor<T>&, std::ptrdiff_t, std::ptrdiff_t); \
    template basic_tensor<T> transpose(const basic_tensor<T>&);                                \
    template basic_tensor<T> concat(const std::vector<basic_tensor<T>>&, std::ptrdiff_t);            \
    template basic_tensor<T> stack(const std::vector<basic_tensor<T>>&, std::ptrdiff_t);             \
    template std::vector<basic_tensor<T>> split(const basic_tensor<T>&, const std::vector<std::size_t>&, \
                                                std::ptrdiff_t);                                   \
    template std::vector<basic_tensor<T>> split(const basic_tensor<T>&, std::size_t, std::ptrdiff_t);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

namespace detail {

void register_shape_cases(CaseRegistry& r) {
    using V = std::vector<Tensor64>;
    const CaseInput x{{2, 3, 4}};
    r.add(OpKind::reshape, "[2,3,4] -> [4,-1]", {x}, [](const V& v) { return reshape(v[0], {4, -1}); });
    r.add("flatten", "[2,3,2,2] -> [2,12]", {{{2, 3, 2, 2}}}, [](const V& v) { return flatten(v[0]); });
    r.add(OpKind::permute, "[2,3,4] {2,0,1}", {x}, [](const V& v) { return permute(v[0], {2, 0, 1}); });
    r.add("transpose", "[2,3,4] axes 0,-1", {x}, [](const V& v) { return transpose(v[0], 0, -1); });
    r.add("transpose", "[3,5] matrix", {{{3, 5}}}, [](const V& v) { return transpose(v[0]); });
    r.add(OpKind::concat, "axis 1 of [2,1,4] [2,3,4]", {{{2, 1, 4}}, x},
          [](const V& v) { return concat(V{v[0], v[1]}, 1); });
    r.add(OpKind::concat, "axis 0, one input twice", {{{1, 3}}, {{2, 3}}},
          [](const V& v) { return concat(V{v[0], v[1], v[0]}, 0); });
    r.add(OpKind::concat, "axis -1", {{{2, 2}}, {{2, 3}}}, [](const V& v) { return concat(V{v[0], v[1]}, -1); });
    r.add(OpKind::broadcast_to, "[3,1] -> [2,3,4]", {{{3, 1}}}, [](const V& v) { return broadcast_to(v[0], {2, 3, 4}); });
    r.add(OpKind::broadcast_to, "[] -> [2,3]", {{{}}}, [](const V& v) { return broadcast_to(v[0], {2, 3}); });
    r.add("stack", "three [2,3] along a new axis 1", {{{2, 3}}, {{2, 3}}, {{2, 3}}},
          [](const V& v) { return stack(V{v[0], v[1], v[2]}, 1); });
    r.add("stack", "two [3] along a new last axis (-1)", {{{3}}, {{3}}}, [](const V& v) { return stack(V{v[0], v[1]}, -1); });
    r.add("split", "[5,2] into {2, 3} along 0, recombined", {{{5, 2}}}, [](const V& v) {
        const auto p = split(v[0], std::vector<std::size_t>{2, 3}, 0);
        return p[0] * sum(p[1], {0}, true);  // every part reaches the result
    });
    r.add("split", "[2,5] in chunks of 2 along -1 (the last one shorter)", {{{2, 5}}}, [](const V& v) {
        const auto p = split(v[0], std::size_t{2}, -1);
        return concat(V{p[2], p[0] * p[1]}, 1);
    });
    r.add(OpKind::slice, "axis 1, 1..2 of [2,4,3]", {{{2, 4, 3}}}, [](const V& v) { return slice(v[0], 1, 1, 2); });
    r.add(OpKind::slice, "axis -1, first of [3,2]", {{{3, 2}}}, [](const V& v) { return slice(v[0], -1, 0, 1); });
    r.add(OpKind::slice, "axis 0, last two of [4,2]", {{{4, 2}}}, [](const V& v) { return slice(v[0], 0, 2, 2); });
}

}  // namespace detail
}  // namespace xgrad
