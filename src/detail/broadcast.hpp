#pragma once

// numpy broadcasting for elementwise ops and the reduction of a gradient back to the shape
// of the input it belongs to.

#include <string_view>
#include <vector>

#include <xtensor/xarray.hpp>
#include <xtensor/xnoalias.hpp>
#include <xtensor/xreducer.hpp>
#include <xtensor/xtensor.hpp>

#include "detail/check.hpp"

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

// acc += g summed over the axes that broadcasting stretched, so that the result keeps
// acc's shape. g has the broadcast shape; acc has the input's shape.
template <class T, class E>
void accumulate_reduced(xt::xarray<T>& acc, E&& g) {
    if (g.shape() == acc.shape()) {
        xt::noalias(acc) += g;
        return;
    }
    const std::size_t lead = g.dimension() - acc.dimension();
    std::vector<std::size_t> axes;
    for (std::size_t i = 0; i < g.dimension(); ++i)
        if (i < lead || (acc.shape()[i - lead] == 1 && g.shape()[i] != 1)) axes.push_back(i);
    xt::xarray<T> s = xt::sum(g, axes);
    s.reshape(acc.shape());
    xt::noalias(acc) += s;
}

}  // namespace xgrad::detail
