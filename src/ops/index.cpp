#include "xgrad/ops/index.hpp"

#include <cmath>
#include <cstring>

#include <fmt/format.h>
#include <xtensor/xadapt.hpp>
#include <xtensor/xbuilder.hpp>

#include "detail/axes.hpp"
#include "detail/cases.hpp"
#include "detail/check.hpp"
#include "xgrad/ops/elementwise.hpp"
#include "xgrad/ops/shape.hpp"
#include "xgrad/tape.hpp"

namespace xgrad {

namespace {

// x seen as [outer, n, inner] around one axis.
struct AxisView {
    std::size_t outer = 1, n = 0, inner = 1;
};

AxisView axis_view(const Shape& s, std::size_t axis) {
    AxisView v;
    v.n = s[axis];
    for (std::size_t i = 0; i < axis; ++i) v.outer *= s[i];
    for (std::size_t i = axis + 1; i < s.size(); ++i) v.inner *= s[i];
    return v;
}

void check_indices(const char* op, const std::vector<std::size_t>& indices, std::size_t n, std::size_t axis,
                   const Shape& xs) {
    for (std::size_t j = 0; j < indices.size(); ++j)
        detail::check_value(indices[j] < n, "{}: index {} (position {}) is outside axis {} of size {}; x {}", op,
                            indices[j], j, axis, n, xs);
}

// out [outer, k, inner] = x [outer, n, inner] at the indices.
template <class T>
void gather_blocks(const T* x, const AxisView& v, const std::vector<std::size_t>& indices, T* out) {
    const std::size_t k = indices.size();
    for (std::size_t o = 0; o < v.outer; ++o)
        for (std::size_t j = 0; j < k; ++j)
            std::memcpy(out + (o * k + j) * v.inner, x + (o * v.n + indices[j]) * v.inner, v.inner * sizeof(T));
}

}  // namespace

template <class T>
basic_tensor<T> index_select(const basic_tensor<T>& x, std::ptrdiff_t axis_in, const std::vector<std::size_t>& indices) {
    const std::size_t axis = detail::normalize_axis("index_select", axis_in, x.shape());
    const AxisView v = axis_view(x.shape(), axis);
    check_indices("index_select", indices, v.n, axis, x.shape());
    Shape shape = x.shape();
    shape[axis] = indices.size();
    xt::xarray<T> y = xt::empty<T>(shape);
    gather_blocks(x.value().data(), v, indices, y.data());
    basic_tensor<T> out(std::move(y));
    record(OpKind::index_select, {x}, out, [xs = x.shape(), axis, indices](const basic_tensor<T>& gy, auto& grads) {
        // dx: gy's entries added back where they were taken (a repeated index gathers them all)
        grads.add(0, index_add(zeros<T>(xs), static_cast<std::ptrdiff_t>(axis), indices, gy));
    });
    return out;
}

template <class T>
basic_tensor<T> index_add(const basic_tensor<T>& x, std::ptrdiff_t axis_in, const std::vector<std::size_t>& indices,
                          const basic_tensor<T>& src) {
    const std::size_t axis = detail::normalize_axis("index_add", axis_in, x.shape());
    Shape expect = x.shape();
    expect[axis] = indices.size();
    detail::check_shape(src.shape() == expect,
                        "index_add: src must have x's shape with {} (the number of indices) along axis {}; x {}, src {}",
                        indices.size(), axis, x.shape(), src.shape());
    const AxisView v = axis_view(x.shape(), axis);
    check_indices("index_add", indices, v.n, axis, x.shape());
    xt::xarray<T> y = x.value();
    const std::size_t k = indices.size();
    const T* s = src.value().data();
    for (std::size_t o = 0; o < v.outer; ++o)  // in index order: repeated indices add up the same way every run
        for (std::size_t j = 0; j < k; ++j) {
            T* dst = y.data() + (o * v.n + indices[j]) * v.inner;
            const T* from = s + (o * k + j) * v.inner;
            for (std::size_t i = 0; i < v.inner; ++i) dst[i] += from[i];
        }
    basic_tensor<T> out(std::move(y));
    record(OpKind::index_add, {x, src}, out, [axis, indices](const basic_tensor<T>& gy, auto& grads) {
        // out is x plus a scatter of src: dx = gy, dsrc = gy at the indices
        if (grads.needs(0)) grads.add(0, gy);
        if (grads.needs(1)) grads.add(1, index_select(gy, static_cast<std::ptrdiff_t>(axis), indices));
    });
    return out;
}

namespace {

// An index tensor checked against x for gather / scatter_add, and the offset into x of each of
// its positions (row-major over index's shape).
template <class T>
std::vector<std::size_t> gather_offsets(const char* op, const Shape& xs, std::size_t axis, const basic_tensor<T>& index) {
    const Shape& is = index.shape();
    detail::check_shape(is.size() == xs.size(), "{}: index must have x's rank; x {}, index {}", op, xs, is);
    for (std::size_t d = 0; d < xs.size(); ++d)
        detail::check_shape(d == axis || is[d] <= xs[d],
                            "{}: index is larger than x along axis {} (only axis {} may differ freely); x {}, index {}",
                            op, d, axis, xs, is);
    std::vector<std::size_t> stride(xs.size(), 1), at(xs.size(), 0), offsets(index.size());
    for (std::size_t d = xs.size(); d-- > 1;) stride[d - 1] = stride[d] * xs[d];
    const T* iv = index.value().data();
    std::size_t base = 0;  // x's offset of the position without its axis coordinate
    for (std::size_t p = 0; p < offsets.size(); ++p) {
        const T v = iv[p];
        detail::check_value(std::isfinite(v) && v == std::floor(v) && v >= 0 && v < static_cast<T>(xs[axis]),
                            "{}: index {} (flat position {}) is outside axis {} of size {}; x {}, index {}", op, v, p,
                            axis, xs[axis], xs, is);
        offsets[p] = base + static_cast<std::size_t>(v) * stride[axis];
        for (std::size_t d = is.size(); d-- > 0;) {  // the next position of index
            if (d != axis) base += stride[d];
            if (++at[d] < is[d]) break;
            if (d != axis) base -= stride[d] * is[d];
            at[d] = 0;
        }
    }
    return offsets;
}

}  // namespace

template <class T>
basic_tensor<T> gather(const basic_tensor<T>& x, std::ptrdiff_t axis_in, const basic_tensor<T>& index) {
    const std::size_t axis = detail::normalize_axis("gather", axis_in, x.shape());
    const auto offsets = gather_offsets("gather", x.shape(), axis, index);
    xt::xarray<T> y = xt::empty<T>(index.shape());
    const T* xv = x.value().data();
    for (std::size_t p = 0; p < offsets.size(); ++p) y.data()[p] = xv[offsets[p]];
    basic_tensor<T> out(std::move(y));
    record(OpKind::gather, {x}, out, [xs = x.shape(), axis, index](const basic_tensor<T>& gy, auto& grads) {
        // dx: gy added back where each entry was read
        grads.add(0, scatter_add(zeros<T>(xs), static_cast<std::ptrdiff_t>(axis), index, gy));
    });
    return out;
}

template <class T>
basic_tensor<T> scatter_add(const basic_tensor<T>& x, std::ptrdiff_t axis_in, const basic_tensor<T>& index,
                            const basic_tensor<T>& src) {
    const std::size_t axis = detail::normalize_axis("scatter_add", axis_in, x.shape());
    detail::check_shape(src.shape() == index.shape(), "scatter_add: src and index must have one shape; x {}, index {}, "
                                                      "src {}",
                        x.shape(), index.shape(), src.shape());
    const auto offsets = gather_offsets("scatter_add", x.shape(), axis, index);
    xt::xarray<T> y = x.value();
    const T* sv = src.value().data();
    for (std::size_t p = 0; p < offsets.size(); ++p) y.data()[offsets[p]] += sv[p];  // in order: deterministic
    basic_tensor<T> out(std::move(y));
    record(OpKind::scatter_add, {x, src}, out, [axis, index](const basic_tensor<T>& gy, auto& grads) {
        // out is x plus src scattered: dx = gy, dsrc = gy where src was added
        if (grads.needs(0)) grads.add(0, gy);
        if (grads.needs(1)) grads.add(1, gather(gy, static_cast<std::ptrdiff_t>(axis), index));
    });
    return out;
}

template <class T>
basic_tensor<T> embedding(const basic_tensor<T>& indices, const basic_tensor<T>& weight,
                          std::optional<std::ptrdiff_t> padding_idx) {
    detail::check_shape(weight.dim() == 2, "embedding: weight must be [V, D]; indices {}, weight {}", indices.shape(),
                        weight.shape());
    const std::size_t rows = weight.shape()[0], d = weight.shape()[1];
    const auto vs = static_cast<std::ptrdiff_t>(rows);
    detail::check_value(!padding_idx || (*padding_idx >= -vs && *padding_idx < vs),
                        "embedding: padding_idx {} is outside [-{}, {}); indices {}, weight {}",
                        padding_idx.value_or(0), rows, rows, indices.shape(), weight.shape());
    std::vector<std::size_t> picked(indices.size());
    for (std::size_t j = 0; j < picked.size(); ++j) {
        const T v = indices.value().data()[j];
        detail::check_value(std::isfinite(v) && v == std::floor(v) && v >= 0 && v < static_cast<T>(rows),
                            "embedding: index {} (flat position {}) is not a row of weight in [0, {}); indices {}, "
                            "weight {}",
                            v, j, rows, indices.shape(), weight.shape());
        picked[j] = static_cast<std::size_t>(v);
    }
    Shape shape = indices.shape();
    shape.push_back(d);
    xt::xarray<T> y = xt::empty<T>(shape);
    gather_blocks(weight.value().data(), AxisView{1, rows, d}, picked, y.data());
    basic_tensor<T> out(std::move(y));
    // The positions that looked up padding_idx pass no gradient: a constant [K, 1] mask.
    basic_tensor<T> keep;
    if (padding_idx) {
        const auto pad = static_cast<std::size_t>(*padding_idx < 0 ? *padding_idx + vs : *padding_idx);
        xt::xarray<T> m = xt::ones<T>({picked.size(), std::size_t{1}});
        for (std::size_t j = 0; j < picked.size(); ++j)
            if (picked[j] == pad) m.data()[j] = T(0);
        keep = basic_tensor<T>(std::move(m));
    }
    record(OpKind::embedding, {weight}, out, [picked, ws = weight.shape(), keep](const basic_tensor<T>& gy, auto& grads) {
        // dweight: each position's gradient row added into the row it read
        auto g = reshape(gy, {static_cast<std::ptrdiff_t>(picked.size()), static_cast<std::ptrdiff_t>(ws[1])});
        if (keep.defined()) g = g * keep;
        grads.add(0, index_add(zeros<T>(ws), 0, picked, g));
    });
    return out;
}

#define XGRAD_INSTANTIATE(T)                                                                                   \
    template basic_tensor<T> index_select(const basic_tensor<T>&, std::ptrdiff_t, const std::vector<std::size_t>&); \
    template basic_tensor<T> index_add(const basic_tensor<T>&, std::ptrdiff_t, const std::vector<std::size_t>&,  \
                                       const basic_tensor<T>&);                                                \
    template basic_tensor<T> embedding(const basic_tensor<T>&, const basic_tensor<T>&, std::optional<std::ptrdiff_t>); \
    template basic_tensor<T> gather(const basic_tensor<T>&, std::ptrdiff_t, const basic_tensor<T>&);           \
    template basic_tensor<T> scatter_add(const basic_tensor<T>&, std::ptrdiff_t, const basic_tensor<T>&,       \
                                         const basic_tensor<T>&);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

namespace detail {

void register_index_cases(CaseRegistry& r) {
    using V = std::vector<Tensor64>;
    r.add(OpKind::index_select, "axis 1 of [2,5,3], {4, 0, 0} (repeated)", {{{2, 5, 3}}},
          [](const V& v) { return index_select(v[0], 1, {4, 0, 0}); });
    r.add(OpKind::index_select, "axis 0 of [4,2], reversed", {{{4, 2}}},
          [](const V& v) { return index_select(v[0], 0, {3, 2, 1, 0}); });
    r.add(OpKind::index_select, "axis -1 of [3,4], {2}", {{{3, 4}}},
          [](const V& v) { return index_select(v[0], -1, {2}); });
    r.add(OpKind::index_add, "axis 0 of [4,3], {1, 3, 1} (repeated)", {{{4, 3}}, {{3, 3}}},
          [](const V& v) { return index_add(v[0], 0, {1, 3, 1}, v[1]); });
    r.add(OpKind::index_add, "axis 1 of [2,3,2], {2, 0}", {{{2, 3, 2}}, {{2, 2, 2}}},
          [](const V& v) { return index_add(v[0], 1, {2, 0}, v[1]); });
    r.add(OpKind::embedding, "[2,3] indices into [5,4], repeated", {{{5, 4}}}, [](const V& v) {
        const Tensor64 idx(xt::xarray<double>{{1, 4, 1}, {0, 2, 4}});
        return embedding(idx, v[0]);
    });
    r.add(OpKind::gather, "axis 1 of [3,4] by [3,2] (repeated)", {{{3, 4}}}, [](const V& v) {
        const Tensor64 idx(xt::xarray<double>{{3, 0}, {1, 1}, {2, 3}});
        return gather(v[0], 1, idx);
    });
    r.add(OpKind::gather, "axis 0 of [3,2,2] by [2,2,1] (smaller off the axis)", {{{3, 2, 2}}}, [](const V& v) {
        xt::xarray<double> values{2, 0, 1, 2};
        values.reshape({2, 2, 1});
        const Tensor64 idx(values);
        return gather(v[0], 0, idx);
    });
    r.add(OpKind::scatter_add, "axis -1 of [2,3] from [2,4] (repeated)", {{{2, 3}}, {{2, 4}}}, [](const V& v) {
        const Tensor64 idx(xt::xarray<double>{{0, 2, 0, 1}, {1, 1, 2, 0}});
        return scatter_add(v[0], -1, idx, v[1]);
    });
    // padding_idx's row passes no gradient by definition (not the derivative): it is a constant
    // here, appended to the rows under test; unit tests check that it stays without gradient.
    r.add(OpKind::embedding, "[5] indices into [3,3] + a padding row, padding_idx -1", {{{3, 3}}}, [](const V& v) {
        const Tensor64 idx(xt::xarray<double>{3, 0, 3, 2, 1});
        return embedding(idx, concat(V{v[0], Tensor64(xt::xarray<double>{{0.5, -1, 2}})}, 0), -1);
    });
}

}  // namespace detail
}  // namespace xgrad
