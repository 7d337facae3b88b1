#pragma once

// numpy broadcasting for elementwise ops: the shape two operands broadcast to.

#include <string_view>
#include <vector>

#include <xtensor/xarray.hpp>

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

}  // namespace xgrad::detail
