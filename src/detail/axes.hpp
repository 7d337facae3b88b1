#pragma once

#include <algorithm>
#include <string_view>
#include <vector>

#include "detail/check.hpp"

namespace xgrad::detail {

// The product of shape[first, last): a block of dimensions counted, never inferred (an empty
// batch has no multiple to infer a -1 from).
inline std::size_t extent(const Shape& shape, std::size_t first, std::size_t last) {
    std::size_t n = 1;
    for (std::size_t i = first; i < last; ++i) n *= shape[i];
    return n;
}

// A possibly negative axis of an ndim-dimensional tensor as an index; throws ShapeError.
inline std::size_t normalize_axis(std::string_view op, std::ptrdiff_t axis, const Shape& shape) {
    const auto n = static_cast<std::ptrdiff_t>(shape.size());
    check_shape(axis >= -n && axis < n, "{}: axis {} is out of range for x {}", op, axis, shape);
    return static_cast<std::size_t>(axis < 0 ? axis + n : axis);
}

// Sorted, distinct axes; throws ShapeError for an axis out of range or repeated (as permute).
inline std::vector<std::size_t> normalize_axes(std::string_view op, const std::vector<std::ptrdiff_t>& axes,
                                               const Shape& shape) {
    std::vector<std::size_t> out;
    for (auto a : axes) out.push_back(normalize_axis(op, a, shape));
    std::sort(out.begin(), out.end());
    check_shape(std::adjacent_find(out.begin(), out.end()) == out.end(),
                "{}: an axis is repeated in the axes of x {}", op, shape);
    return out;
}

// A shape as the signed dimensions reshape() takes.
inline std::vector<std::ptrdiff_t> dims(const Shape& shape) {
    return std::vector<std::ptrdiff_t>(shape.begin(), shape.end());
}

}  // namespace xgrad::detail
