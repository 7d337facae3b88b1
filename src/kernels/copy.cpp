#include "kernels/copy.hpp"

#include <algorithm>
#include <cstring>

#include <omp.h>

#include "detail/parallel.hpp"

namespace xgrad::kernels {

namespace {

// y's axes and their strides in x, with neighbouring axes that read x in order (or that both
// repeat) merged, and axes of size 1 dropped.
struct Layout {
    std::vector<std::size_t> size, stride;
};

Layout layout(const std::vector<std::size_t>& size, const std::vector<std::size_t>& stride) {
    Layout l;
    for (std::size_t d = 0; d < size.size(); ++d) {
        if (size[d] == 1) continue;
        if (!l.size.empty() && l.stride.back() == stride[d] * size[d]) {
            l.size.back() *= size[d];
            l.stride.back() = stride[d];
        } else {
            l.size.push_back(size[d]);
            l.stride.push_back(stride[d]);
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

// body(r, off) for each run r in [0, runs) of y's last axis, off its offset in x: each thread
// takes a block of runs, finds its first offset, then carries the other axes' counters run by
// run (a division per axis and run cost more than copying a short run).
template <class Body>
void for_runs(const Layout& l, std::size_t runs, bool parallel, Body body) {
    const std::size_t outer = l.size.size() - 1;
#pragma omp parallel if (parallel)
    {
        const auto threads = static_cast<std::size_t>(omp_get_num_threads());
        const auto me = static_cast<std::size_t>(omp_get_thread_num());
        const std::size_t first = runs * me / threads, last = runs * (me + 1) / threads;
        std::vector<std::size_t> at(outer, 0);
        std::size_t off = 0;
        for (std::size_t d = outer, rest = first; d-- > 0;) {
            at[d] = rest % l.size[d];
            rest /= l.size[d];
            off += at[d] * l.stride[d];
        }
        for (std::size_t r = first; r < last; ++r) {
            body(r, off);
            for (std::size_t d = outer; d-- > 0;) {
                off += l.stride[d];
                if (++at[d] < l.size[d]) break;
                off -= l.stride[d] * l.size[d];
                at[d] = 0;
            }
        }
    }
}

}  // namespace

template <class T>
void strided_copy(const T* x, const std::vector<std::size_t>& size, const std::vector<std::size_t>& stride, T* y) {
    std::size_t total = 1;
    for (const std::size_t s : size) total *= s;
    if (total == 0) return;
    const Layout l = layout(size, stride);
    const std::size_t dims = l.size.size(), last = l.size[dims - 1];
    const bool parallel = total > static_cast<std::size_t>(detail::kParallelElements);
    if (l.stride[dims - 1] == 1) {  // y's last axis is contiguous in x: copy its runs
        for_runs(l, total / last, parallel, [&](std::size_t r, std::size_t off) {
            T* to = y + r * last;
            const T* from = x + off;
            if (last >= 64)
                std::memcpy(to, from, last * sizeof(T));
            else  // a call per short run costs more than the copy
                for (std::size_t j = 0; j < last; ++j) to[j] = from[j];
        });
        return;
    }
    if (l.stride[dims - 1] == 0) {  // x repeats along y's last axis: fill its runs
        for_runs(l, total / last, parallel, [&](std::size_t r, std::size_t off) {
            std::fill_n(y + r * last, last, x[off]);
        });
        return;
    }
    // The axis q of y that reads x contiguously: tiles of 32 along q and along y's last axis.
    const std::size_t q = static_cast<std::size_t>(
        std::find(l.stride.begin(), l.stride.end(), std::size_t{1}) - l.stride.begin());
    if (q == dims) {  // no such axis (strides of a view of a view): value by value
#pragma omp parallel for schedule(static) if (parallel)
        for (std::ptrdiff_t i = 0; i < static_cast<std::ptrdiff_t>(total); ++i)
            y[i] = x[offset(l, dims, static_cast<std::size_t>(i))];
        return;
    }
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
        const std::size_t ni = std::min(rows, i0 + kTile) - i0, nj = std::min(last, j0 + kTile) - j0;
        // y[.., i, .., j] = x[.., j, .., i] through a tile in L1: read along i (contiguous in
        // x), write along j (contiguous in y); strided writes of whole tiles hit one cache set.
        T tile_buf[kTile][kTile];
        for (std::size_t j = 0; j < nj; ++j)
            for (std::size_t i = 0; i < ni; ++i) tile_buf[i][j] = x[x_off + (j0 + j) * row_stride + i0 + i];
        for (std::size_t i = 0; i < ni; ++i)
            for (std::size_t j = 0; j < nj; ++j) y[y_off + (i0 + i) * q_step + j0 + j] = tile_buf[i][j];
    }
}

template <class T>
void permute(const T* x, const std::vector<std::size_t>& shape, const std::vector<std::size_t>& perm, T* y) {
    std::vector<std::size_t> x_stride(shape.size(), 1), size, stride;
    for (std::size_t d = shape.size(); d-- > 1;) x_stride[d - 1] = x_stride[d] * shape[d];
    for (const std::size_t a : perm) {
        size.push_back(shape[a]);
        stride.push_back(x_stride[a]);
    }
    strided_copy(x, size, stride, y);
}

template <class T>
void broadcast(const T* x, const std::vector<std::size_t>& from, const std::vector<std::size_t>& to, T* y) {
    // x's axes aligned to the right of y's; a missing axis or one of size 1 repeats (stride 0)
    std::vector<std::size_t> stride(to.size(), 0);
    std::size_t step = 1;
    for (std::size_t k = 0; k < from.size(); ++k) {
        const std::size_t d = from.size() - 1 - k;
        stride[to.size() - 1 - k] = from[d] == 1 ? 0 : step;
        step *= from[d];
    }
    strided_copy(x, to, stride, y);
}

#define XGRAD_INSTANTIATE(T)                                                                                   \
    template void strided_copy<T>(const T*, const std::vector<std::size_t>&, const std::vector<std::size_t>&, T*); \
    template void permute<T>(const T*, const std::vector<std::size_t>&, const std::vector<std::size_t>&, T*);      \
    template void broadcast<T>(const T*, const std::vector<std::size_t>&, const std::vector<std::size_t>&, T*);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad::kernels
