#pragma once

// Argument checks for ops: throw a typed xgrad error whose message is formatted only when
// the check fails. Shapes print as "[2, 3]".

#include <string>
#include <utility>

#include <fmt/format.h>

#include "xgrad/error.hpp"
#include "xgrad/tensor.hpp"

template <>
struct fmt::formatter<xgrad::Shape> : fmt::formatter<std::string> {
    auto format(const xgrad::Shape& s, format_context& ctx) const {
        return fmt::formatter<std::string>::format(xgrad::to_string(s), ctx);
    }
};

namespace xgrad::detail {

template <class... Args>
void check_shape(bool ok, fmt::format_string<Args...> f, Args&&... args) {
    if (!ok) throw ShapeError(fmt::format(f, std::forward<Args>(args)...));
}

template <class... Args>
void check_value(bool ok, fmt::format_string<Args...> f, Args&&... args) {
    if (!ok) throw ValueError(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace xgrad::detail
