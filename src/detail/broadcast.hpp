#pragma once

// numpy broadcasting for elementwise ops: the shape two operands broadcast to.

#include <string_view>
#include <vector>

#include <omp.h>

#include <xtensor/xarray.hpp>

#include "detail/check.hpp"
#include "detail/parallel.hpp"

namespace xgrad::detail {

// The broadcast shape of a and b; throws ShapeError naming `op` and both shapes.
inline Shape broadcast_shapes(std::string_view op, const Shape& a, const Shape& b) {
    const std::size_t n = std::max(a.size(), b.size());
    Shape out(n);
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
        const std::size_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
        check_shape(da == db || da == 1 || db == 1,
                    "{}: shapes cannot broadcast (axis {} has {} and {}); a {}, b {}", op, i, da,
                    db, a, b);
        out[i] = da == 1 ? db : da;
    }
    return out;
}

// out = f(a, b) elementwise under numpy broadcasting, as plain loops: each operand walks the
// output with its own strides (0 along the axes it is broadcast over), adjacent axes that
// walk alike are merged, and the innermost run is one loop. xtensor's broadcasting stepper is
// several times slower on the [rows, C] x [1, C] shapes of the normalisation rules.
template <class T, class F>
xt::xarray<T> broadcast_apply(std::string_view op, const xt::xarray<T>& a, const xt::xarray<T>& b, F f) {
    const Shape as(a.shape().begin(), a.shape().end()), bs(b.shape().begin(), b.shape().end());
    const Shape out_shape = broadcast_shapes(op, as, bs);
    xt::xarray<T> out = xt::xarray<T>::from_shape(out_shape);
    const std::size_t total = out.size();
    if (total == 0) return out;
    T* y = out.data();
    const T* pa = a.data();
    const T* pb = b.data();
    const bool parallel = total > static_cast<std::size_t>(kParallelElements);
    if (as == bs) {
#pragma omp parallel for schedule(static) if (parallel)
        for (std::ptrdiff_t k = 0; k < static_cast<std::ptrdiff_t>(total); ++k) y[k] = f(pa[k], pb[k]);
        return out;
    }
    // Per output axis: its length and each operand's stride (0 when broadcast).
    const std::size_t n = out_shape.size();
    std::vector<std::size_t> len, sa, sb;
    auto strides = [n](const Shape& s) {
        std::vector<std::size_t> st(n, 0);
        std::size_t step = 1;
        for (std::size_t i = n; i-- > n - s.size();) {
            const std::size_t d = s[i - (n - s.size())];
            st[i] = d == 1 ? 0 : step;
            step *= d;
        }
        return st;
    };
    const auto full_a = strides(as), full_b = strides(bs);
    for (std::size_t i = 0; i < n; ++i) {
        if (out_shape[i] == 1) continue;
        // merge into the previous (outer) axis when both operands continue its walk
        if (!len.empty() && sa.back() == full_a[i] * out_shape[i] && sb.back() == full_b[i] * out_shape[i]) {
            len.back() *= out_shape[i];
            sa.back() = full_a[i];
            sb.back() = full_b[i];
            continue;
        }
        len.push_back(out_shape[i]);
        sa.push_back(full_a[i]);
        sb.push_back(full_b[i]);
    }
    if (len.empty()) {  // every axis of length 1
        y[0] = f(pa[0], pb[0]);
        return out;
    }
    const std::size_t inner = len.back(), ia = sa.back(), ib = sb.back(), rows = total / inner, m = len.size();
    // Rows in one block per thread: each finds its first row's offsets, then carries its
    // counters row by row (every output element is written once: any split gives the same).
#pragma omp parallel if (parallel)
    {
        const auto threads = static_cast<std::size_t>(omp_get_num_threads());
        const auto me = static_cast<std::size_t>(omp_get_thread_num());
        const std::size_t first = rows * me / threads, last = rows * (me + 1) / threads;
        std::vector<std::size_t> at(m, 0);  // the outer axes' counters at row `first`
        std::size_t oa = 0, ob = 0;
        for (std::size_t d = m - 1, rest = first; d-- > 0;) {
            at[d] = rest % len[d];
            rest /= len[d];
            oa += at[d] * sa[d];
            ob += at[d] * sb[d];
        }
        for (std::size_t r = first; r < last; ++r) {
            const T* ra = pa + oa;
            const T* rb = pb + ob;
            T* ry = y + r * inner;
            if (ia == 1 && ib == 1)
                for (std::size_t j = 0; j < inner; ++j) ry[j] = f(ra[j], rb[j]);
            else if (ia == 1)
                for (std::size_t j = 0; j < inner; ++j) ry[j] = f(ra[j], rb[0]);
            else if (ib == 1)
                for (std::size_t j = 0; j < inner; ++j) ry[j] = f(ra[0], rb[j]);
            else
                for (std::size_t j = 0; j < inner; ++j) ry[j] = f(ra[j * ia], rb[j * ib]);
            // next row: advance the outer counters, carrying
            for (std::size_t d = m - 1; d-- > 0;) {
                oa += sa[d];
                ob += sb[d];
                if (++at[d] < len[d]) break;
                oa -= sa[d] * len[d];
                ob -= sb[d] * len[d];
                at[d] = 0;
            }
        }
    }
    return out;
}

}  // namespace xgrad::detail
