#pragma once

// Arithmetic helpers for ops whose intermediate values may leave T's range.

#include <cmath>
#include <limits>
#include <type_traits>

namespace xgrad::detail {

// The type in which a T computation has headroom: float's exponent range fits many times in
// double's, double's in x86-64's 80-bit long double.
template <class T>
using wider_t = std::conditional_t<std::is_same_v<T, float>, double, long double>;

// v rounded to T, saturated at T's largest finite magnitude instead of overflowing to ±inf;
// NaN stays NaN, and an infinite v (an infinite input) stays infinite.
// (Selects, no branches: loops that saturate vectorise.)
template <class T, class W>
T saturate(W v) {
    constexpr W hi = static_cast<W>(std::numeric_limits<T>::max());
    const W a = std::fabs(v);
    return static_cast<T>(a > hi && a != std::numeric_limits<W>::infinity() ? std::copysign(hi, v) : v);
}

}  // namespace xgrad::detail
