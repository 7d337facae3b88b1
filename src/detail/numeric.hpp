#pragma once

// Arithmetic helpers for ops whose intermediate values may leave T's range, and the sum of
// rows that the reductions and softmaxes share.

#include <cmath>
#include <cstddef>
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

// out[j] += Σ_r x[r · cols + j] over `rows` rows (out starts at zero). Wide rows are added
// as they are (a vector loop along the row); narrow ones in chunks of whole rows at least 32
// values long, summed value by value into as many accumulators (a vector loop even for one
// column: a row's sum), then folded into the columns.
template <class T>
void add_rows(const T* x, std::size_t rows, std::size_t cols, T* out) {
    if (cols == 0) return;
    const std::size_t per_chunk = (32 + cols - 1) / cols;
    if (per_chunk == 1 || rows < 2 * per_chunk) {
        for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t j = 0; j < cols; ++j) out[j] += x[r * cols + j];
        return;
    }
    const std::size_t chunk = per_chunk * cols;  // < 64
    T acc[64] = {};
    std::size_t r = 0;
    for (; r + per_chunk <= rows; r += per_chunk) {
        const T* c = x + r * cols;
        for (std::size_t l = 0; l < chunk; ++l) acc[l] += c[l];
    }
    for (; r < rows; ++r)
        for (std::size_t j = 0; j < cols; ++j) acc[j] += x[r * cols + j];
    for (std::size_t l = 0; l < chunk; ++l) out[l % cols] += acc[l];
}

}  // namespace xgrad::detail
