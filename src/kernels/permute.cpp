#include "kernels/permute.hpp"

#include <algorithm>
#include <cstring>

#include "detail/parallel.hpp"

namespace xgrad::kernels {

namespace {

// The permutation as y's shape and, per axis of y, its stride in x, with neighbouring axes of
// y that are also neighbours in x (in order) merged, and axes of size 1 dropped.
struct Layout {
    std::vector<std::size_t> size, stride;
};

Layout layout(const std::vector<std::size_t>& shape, const std::vector<std::size_t>& perm) {
    std::vector<std::size_t> x_stride(shape.size(), 1);
    for (std::size_t d = shape.size(); d-- > 1;) x_stride[d - 1] = x_stride[d] * shape[d];
    Layout l;
    for (const std::size_t a : perm) {
        if (shape[a] == 1) continue;
        if (!l.size.empty() && l.stride.back() == x_stride[a] * shape[a]) {
            l.size.back() *= shape[a];
            l.stride.back() = x_stride[a];
        } else {
            l.size.push_back(shape[a]);
            l.stride.push_back(x_stride[a]);
        }
    }
    if (l.size.empty()) {  // a single value (or all axes of size 1)
        l.size.push_back(1);
        l.stride.push_back(1);
    }
    return l;
}

// The offset in x of y's flat position `at` over the axes [0, dims) of l (the rest at 0).
std::size_t offset(const Layout& l, std::size_t dims, std::size_t at) {
    std::size_t off = 0;
    for (std::size_t d = dims; d-- > 0;) {
        off += (at % l.size[d]) * l.stride[d];
        at /= l.size[d];
    }
    return off;
}

}  // namespace

template <class T>
void permute(const T* x, const std::vector<std::size_t>& shape, const std::vector<std::size_t>& perm, T* y) {
    std::size_t total = 1;
    for (const std::size_t s : shape) total *= s;
    if (total == 0) return;
    const Layout l = layout(shape, perm);
    const std::size_t dims = l.size.size(), last = l.size[dims - 1];
    const bool parallel = total > static_cast<std::size_t>(detail::kParallelElements);
    if (l.stride[dims - 1] == 1) {  // y's last axis is contiguous in x: copy its runs
        const auto runs = static_cast<std::ptrdiff_t>(total / last);
#pragma omp parallel for schedule(static) if (parallel)
        for (std::ptrdiff_t r = 0; r < runs; ++r)
            std::memcpy(y + static_cast<std::size_t>(r) * last, x + offset(l, dims - 1, static_cast<std::size_t>(r)),
                        last * sizeof(T));
        return;
    }
    // The axis q of y that is x's last (stride 1): tiles of 32 along q and along y's last axis.
    const std::size_t q = static_cast<std::size_t>(
        std::find(l.stride.begin(), l.stride.end(), std::size_t{1}) - l.stride.begin());
    const std::size_t rows = l.size[q], row_stride = l.stride[dims - 1];
    std::size_t q_step = 1;  // y's stride along q
    for (std::size_t d = q + 1; d < dims; ++d) q_step *= l.size[d];
    // The other axes: one (rows x last) plane of y per combination, planes in y's order.
    Layout rest;
    for (std::size_t d = 0; d + 1 < dims; ++d)
        if (d != q) {
            rest.size.push_back(l.size[d]);
            rest.stride.push_back(l.stride[d]);
        }
    std::vector<std::size_t> y_stride(dims, 1);
    for (std::size_t d = dims - 1; d-- > 0;) y_stride[d] = y_stride[d + 1] * l.size[d + 1];
    std::vector<std::size_t> rest_y_stride;
    for (std::size_t d = 0; d + 1 < dims; ++d)
        if (d != q) rest_y_stride.push_back(y_stride[d]);
    constexpr std::size_t kTile = 32;
    const std::size_t planes = total / (rows * last), row_tiles = (rows + kTile - 1) / kTile,
                      col_tiles = (last + kTile - 1) / kTile;
    const auto tiles = static_cast<std::ptrdiff_t>(planes * row_tiles * col_tiles);
#pragma omp parallel for schedule(static) if (parallel)
    for (std::ptrdiff_t t = 0; t < tiles; ++t) {
        const auto tile = static_cast<std::size_t>(t);
        const std::size_t plane = tile / (row_tiles * col_tiles), i0 = tile / col_tiles % row_tiles * kTile,
                          j0 = tile % col_tiles * kTile;
        std::size_t x_off = 0, y_off = 0, at = plane;
        for (std::size_t d = rest.size.size(); d-- > 0;) {
            x_off += (at % rest.size[d]) * rest.stride[d];
            y_off += (at % rest.size[d]) * rest_y_stride[d];
            at /= rest.size[d];
        }
        const std::size_t i1 = std::min(rows, i0 + kTile), j1 = std::min(last, j0 + kTile);
        // y[.., i, .., j] = x[.., j, .., i]: read along i (contiguous in x), write along j
        for (std::size_t j = j0; j < j1; ++j)
            for (std::size_t i = i0; i < i1; ++i) y[y_off + i * q_step + j] = x[x_off + j * row_stride + i];
    }
}

template void permute<float>(const float*, const std::vector<std::size_t>&, const std::vector<std::size_t>&, float*);
template void permute<double>(const double*, const std::vector<std::size_t>&, const std::vector<std::size_t>&,
                              double*);

}  // namespace xgrad::kernels
