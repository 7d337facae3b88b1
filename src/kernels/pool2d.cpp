#include "kernels/pool2d.hpp"

#include <algorithm>
#include <cstring>

#include "kernels/vector.hpp"

namespace xgrad::kernels {

namespace {

using Index = std::ptrdiff_t;

// The window's rows (or columns) inside the input: [begin, end).
struct Span {
    std::size_t begin, end;
};

inline Span window(std::size_t o, std::size_t stride, std::size_t kernel, std::size_t pad, std::size_t size) {
    const Index start = static_cast<Index>(o * stride) - static_cast<Index>(pad);
    const Index stop = std::min<Index>(start + static_cast<Index>(kernel), static_cast<Index>(size));
    return {static_cast<std::size_t>(std::max<Index>(start, 0)), static_cast<std::size_t>(stop)};
}

inline std::size_t divisor(const Span& ys, const Span& xs, const PoolGeometry& g, bool count_include_pad) {
    return count_include_pad ? g.kh * g.kw : (ys.end - ys.begin) * (xs.end - xs.begin);
}

// Calls f(n, first output element, rows, columns) for every window of every image, with the
// images' output rows shared among the threads.
template <class F>
void for_each_window(const PoolGeometry& g, F f) {
    const Index lines = static_cast<Index>(g.n * g.oh);
#pragma omp parallel for schedule(static)
    for (Index line = 0; line < lines; ++line) {
        const std::size_t n = static_cast<std::size_t>(line) / g.oh, oy = static_cast<std::size_t>(line) % g.oh;
        const Span ys = window(oy, g.sh, g.kh, g.ph, g.h);
        for (std::size_t ox = 0; ox < g.ow; ++ox)
            f(n, ((n * g.oh + oy) * g.ow + ox) * g.c, ys, window(ox, g.sw, g.kw, g.pw, g.w));
    }
}

}  // namespace

namespace {

// One window of max_pool2d_forward; kIndices: also write the argmax.
template <bool kIndices, class T>
inline void max_window(const T* x, const PoolGeometry& g, std::size_t n, const Span& ys, const Span& xs, bool relu,
                       T* __restrict best, std::int32_t* __restrict at) {
    // The window's first pixel starts every channel; the others replace it only when
    // strictly greater (or the first NaN), so ties keep the first maximum in row-major
    // order. The branch-free select over channels vectorises.
    const T* first = x + ((n * g.h + ys.begin) * g.w + xs.begin) * g.c;
    const auto first_pos = static_cast<std::int32_t>(ys.begin * g.w + xs.begin);
    for (std::size_t c = 0; c < g.c; ++c) {
        best[c] = first[c];
        if constexpr (kIndices) at[c] = first_pos;
    }
    for (std::size_t iy = ys.begin; iy < ys.end; ++iy)
        for (std::size_t ix = iy == ys.begin ? xs.begin + 1 : xs.begin; ix < xs.end; ++ix) {
            const T* v = x + ((n * g.h + iy) * g.w + ix) * g.c;
            const auto pos = static_cast<std::int32_t>(iy * g.w + ix);
            for (std::size_t c = 0; c < g.c; ++c) {
                // NaN counts as the largest value: the first NaN of the window wins and
                // propagates (PyTorch's rule), a finite maximum never hides it.
                const bool greater = v[c] > best[c] || (v[c] != v[c] && best[c] == best[c]);
                best[c] = greater ? v[c] : best[c];
                if constexpr (kIndices) at[c] = greater ? pos : at[c];
            }
        }
    if (relu)
        for (std::size_t c = 0; c < g.c; ++c) best[c] = !(best[c] <= T(0)) ? best[c] : T(0);
}

// The 2x2 window whose rows start at r0 and r1 (C channels per pixel): the four pixels compared
// per channel in one pass, in max_window's order and with its NaN rule, the result stored once
// (max_window keeps its running maximum in memory, as the window's size is known only at run
// time: the W1 forward pass spent 7% of a step there). pos is the index of r0's first pixel,
// w the image's width; `count` of the pixels' c channels, from r0's first.
template <bool kIndices, class T>
inline void max_window_2x2(const T* __restrict r0, const T* __restrict r1, std::size_t c, std::size_t count,
                           std::int32_t pos, std::int32_t w, bool relu, T* __restrict best,
                           std::int32_t* __restrict at) {
    auto take = [](T v, T& m, std::int32_t v_at, std::int32_t& m_at) {
        const bool greater = v > m || (v != v && m == m);  // NaN counts as the largest
        m = greater ? v : m;
        m_at = greater ? v_at : m_at;
    };
    for (std::size_t k = 0; k < count; ++k) {
        T m = r0[k];
        std::int32_t m_at = pos;
        take(r0[c + k], m, pos + 1, m_at);
        take(r1[k], m, pos + w, m_at);
        take(r1[c + k], m, pos + w + 1, m_at);
        best[k] = relu && m <= T(0) ? T(0) : m;
        if constexpr (kIndices) at[k] = m_at;
    }
}

// Whether any of the n values is NaN: one vectorised pass (an integer OR needs no order).
template <class T>
bool any_nan(const T* p, std::size_t n) {
    int any = 0;
    for (std::size_t i = 0; i < n; ++i) any |= p[i] != p[i];
    return any != 0;
}

// max_window_2x2's numbers, a vector of channels at a time, for windows without NaN (the
// caller checks): the maximum m is one max tree (`a > b ? a : b`, one vmaxps per pair), the
// argmax the first pixel equal to m (a tie keeps the first, -0 and +0 included), the value
// that pixel's, or relu(m) (relu makes -0 and +0 one value). Half the instructions of
// max_window_2x2's NaN-ordering comparisons (the 2x2 pool was 8% of a bf16 inference).
template <bool kIndices, class T>
inline void max_window_2x2_numbers(const T* __restrict r0, const T* __restrict r1, std::size_t c, std::int32_t pos,
                                   std::int32_t w, bool relu, T* __restrict best, std::int32_t* __restrict at) {
    using Vec = typename Vector<T>::type;
    constexpr std::size_t kLanes = sizeof(Vec) / sizeof(T);
    std::size_t k = 0;
    for (; k + kLanes <= c; k += kLanes) {
        Vec v0, v1, v2, v3;
        std::memcpy(&v0, r0 + k, sizeof(Vec));
        std::memcpy(&v1, r0 + c + k, sizeof(Vec));
        std::memcpy(&v2, r1 + k, sizeof(Vec));
        std::memcpy(&v3, r1 + c + k, sizeof(Vec));
        const Vec m01 = v0 > v1 ? v0 : v1, m23 = v2 > v3 ? v2 : v3, m = m01 > m23 ? m01 : m23;
        const auto e0 = v0 == m, e1 = v1 == m, e2 = v2 == m;
        const Vec y = relu ? (m > Vec{} ? m : Vec{}) : (e0 ? v0 : e1 ? v1 : e2 ? v2 : v3);
        std::memcpy(best + k, &y, sizeof(Vec));
        if constexpr (kIndices && sizeof(T) == sizeof(std::int32_t)) {
            typedef std::int32_t Positions __attribute__((vector_size(sizeof(Vec))));
            const Positions p0 = Positions{} + pos, p = e0 ? p0 : e1 ? p0 + 1 : e2 ? p0 + w : p0 + w + 1;
            std::memcpy(at + k, &p, sizeof p);
        } else if constexpr (kIndices) {
            for (std::size_t l = 0; l < kLanes; ++l)
                at[k + l] = e0[l] ? pos : e1[l] ? pos + 1 : e2[l] ? pos + w : pos + w + 1;
        }
    }
    if (k < c) max_window_2x2<kIndices>(r0 + k, r1 + k, c, c - k, pos, w, relu, best + k, kIndices ? at + k : nullptr);
}

}  // namespace

template <class T>
void max_pool2d_forward(const T* x, const PoolGeometry& g, T* y, std::int32_t* argmax, bool relu) {
    const bool two = g.kh == 2 && g.kw == 2;
    if (two && g.sh == 2 && g.sw == 2 && g.ph == 0 && g.pw == 0 && g.oh == g.h / 2 && g.ow == g.w / 2) {
        // the usual 2x2 pool: a line pair at a time, as a fused convolution pools its lines
        const Index lines = static_cast<Index>(g.n * g.oh);
#pragma omp parallel for schedule(static)
        for (Index line = 0; line < lines; ++line) {
            const std::size_t n = static_cast<std::size_t>(line) / g.oh, oy = static_cast<std::size_t>(line) % g.oh;
            const T* r0 = x + (n * g.h + 2 * oy) * g.w * g.c;
            const std::size_t o = static_cast<std::size_t>(line) * g.ow * g.c;
            max_pool2x2_line(r0, r0 + g.w * g.c, g.w, g.c, 2 * oy, relu, y + o, argmax ? argmax + o : nullptr);
        }
        return;
    }
    const auto w = static_cast<std::int32_t>(g.w);
    for_each_window(g, [&](std::size_t n, std::size_t o, const Span& ys, const Span& xs) {
        const bool whole = two && ys.end - ys.begin == 2 && xs.end - xs.begin == 2;
        const T* r0 = x + ((n * g.h + ys.begin) * g.w + xs.begin) * g.c;
        const auto pos = static_cast<std::int32_t>(ys.begin * g.w + xs.begin);
        if (argmax) {
            if (whole)
                max_window_2x2<true>(r0, r0 + g.w * g.c, g.c, g.c, pos, w, relu, y + o, argmax + o);
            else
                max_window<true>(x, g, n, ys, xs, relu, y + o, argmax + o);
        } else if (whole) {
            max_window_2x2<false>(r0, r0 + g.w * g.c, g.c, g.c, pos, w, relu, y + o, nullptr);
        } else {
            max_window<false>(x, g, n, ys, xs, relu, y + o, nullptr);
        }
    });
}

template <class T>
void max_pool2x2_line(const T* r0, const T* r1, std::size_t w, std::size_t c, std::size_t iy, bool relu, T* y,
                      std::int32_t* argmax) {
    const auto width = static_cast<std::int32_t>(w);
    for (std::size_t ox = 0; ox < w / 2; ++ox) {
        const std::size_t at = 2 * ox * c;
        max_pool2x2_window(r0 + at, r1 + at, c, static_cast<std::int32_t>(iy * w + 2 * ox), width, relu, y + ox * c,
                           argmax ? argmax + ox * c : nullptr);
    }
}

template <class T>
void max_pool2x2_window(const T* r0, const T* r1, std::size_t c, std::int32_t pos, std::int32_t w, bool relu, T* y,
                        std::int32_t* argmax) {
    const bool numbers = !any_nan(r0, 2 * c) && !any_nan(r1, 2 * c);
    if (numbers && argmax)
        max_window_2x2_numbers<true>(r0, r1, c, pos, w, relu, y, argmax);
    else if (numbers)
        max_window_2x2_numbers<false>(r0, r1, c, pos, w, relu, y, nullptr);
    else if (argmax)
        max_window_2x2<true>(r0, r1, c, c, pos, w, relu, y, argmax);
    else
        max_window_2x2<false>(r0, r1, c, c, pos, w, relu, y, nullptr);
}

template <class T>
void max_pool2d_backward(const T* gy, const std::int32_t* argmax, const PoolGeometry& g, T* dx) {
    const std::size_t outputs = g.oh * g.ow, pixels = g.h * g.w * g.c;
    // Windows that tile the image (stride = kernel, no padding, as the usual 2x2 pool) cover
    // each pixel at most once: every pixel is written in one pass, gy at the argmax and 0
    // elsewhere, with no zero-fill first. Otherwise zeros, then gy added at each argmax.
    const bool tiled = g.sh == g.kh && g.sw == g.kw && g.ph == 0 && g.pw == 0;
    // Overlapping windows may share an argmax within an image, never across images.
#pragma omp parallel for schedule(static)
    for (Index ni = 0; ni < static_cast<Index>(g.n); ++ni) {
        const std::size_t n = static_cast<std::size_t>(ni);
        T* image = dx + n * pixels;
        if (!tiled) {
            std::fill_n(image, pixels, T(0));
            for (std::size_t o = n * outputs; o < (n + 1) * outputs; ++o) {
                const T* grad = gy + o * g.c;
                const std::int32_t* at = argmax + o * g.c;
                for (std::size_t c = 0; c < g.c; ++c) image[static_cast<std::size_t>(at[c]) * g.c + c] += grad[c];
            }
            continue;
        }
        for (std::size_t iy = 0; iy < g.h; ++iy) {
            T* row = image + iy * g.w * g.c;
            const std::size_t oy = iy / g.kh;
            if (oy >= g.oh) {  // rows below the last window (floor mode)
                std::fill_n(row, g.w * g.c, T(0));
                continue;
            }
            for (std::size_t ix = 0; ix < g.ow * g.kw; ++ix) {
                const std::size_t o = (n * g.oh + oy) * g.ow + ix / g.kw;
                const T* __restrict grad = gy + o * g.c;
                const std::int32_t* __restrict at = argmax + o * g.c;
                const auto pos = static_cast<std::int32_t>(iy * g.w + ix);
                T* __restrict d = row + ix * g.c;
                for (std::size_t c = 0; c < g.c; ++c) d[c] = at[c] == pos ? grad[c] : T(0);
            }
            std::fill_n(row + g.ow * g.kw * g.c, (g.w - g.ow * g.kw) * g.c, T(0));  // columns right of the last
        }
    }
}

template <class T>
void max_pool2d_gather(const T* x, const std::int32_t* argmax, const PoolGeometry& g, T* y) {
    const std::size_t outputs = g.oh * g.ow;
#pragma omp parallel for schedule(static)
    for (Index ni = 0; ni < static_cast<Index>(g.n); ++ni) {
        const std::size_t n = static_cast<std::size_t>(ni);
        const T* image = x + n * g.h * g.w * g.c;
        for (std::size_t o = n * outputs; o < (n + 1) * outputs; ++o) {
            const std::int32_t* at = argmax + o * g.c;
            for (std::size_t c = 0; c < g.c; ++c) y[o * g.c + c] = image[static_cast<std::size_t>(at[c]) * g.c + c];
        }
    }
}

template <class T>
void avg_pool2d_forward(const T* x, const PoolGeometry& g, bool count_include_pad, T* y) {
    for_each_window(g, [&](std::size_t n, std::size_t o, const Span& ys, const Span& xs) {
        T* out = y + o;
        std::fill_n(out, g.c, T(0));
        for (std::size_t iy = ys.begin; iy < ys.end; ++iy)
            for (std::size_t ix = xs.begin; ix < xs.end; ++ix) {
                const T* v = x + ((n * g.h + iy) * g.w + ix) * g.c;
                for (std::size_t c = 0; c < g.c; ++c) out[c] += v[c];
            }
        const T scale = T(1) / static_cast<T>(divisor(ys, xs, g, count_include_pad));
        for (std::size_t c = 0; c < g.c; ++c) out[c] *= scale;
    });
}

template <class T>
void avg_pool2d_backward(const T* gy, const PoolGeometry& g, bool count_include_pad, T* dx) {
#pragma omp parallel for schedule(static)
    for (Index ni = 0; ni < static_cast<Index>(g.n); ++ni) {
        const std::size_t n = static_cast<std::size_t>(ni);
        for (std::size_t oy = 0; oy < g.oh; ++oy) {
            const Span ys = window(oy, g.sh, g.kh, g.ph, g.h);
            for (std::size_t ox = 0; ox < g.ow; ++ox) {
                const Span xs = window(ox, g.sw, g.kw, g.pw, g.w);
                const T* grad = gy + ((n * g.oh + oy) * g.ow + ox) * g.c;
                const T scale = T(1) / static_cast<T>(divisor(ys, xs, g, count_include_pad));
                for (std::size_t iy = ys.begin; iy < ys.end; ++iy)
                    for (std::size_t ix = xs.begin; ix < xs.end; ++ix) {
                        T* d = dx + ((n * g.h + iy) * g.w + ix) * g.c;
                        for (std::size_t c = 0; c < g.c; ++c) d[c] += grad[c] * scale;
                    }
            }
        }
    }
}

#define XGRAD_INSTANTIATE(T)                                                                          \
    template void max_pool2d_forward<T>(const T*, const PoolGeometry&, T*, std::int32_t*, bool);      \
    template void max_pool2x2_line<T>(const T*, const T*, std::size_t, std::size_t, std::size_t, bool, T*,  \
                                      std::int32_t*);                                                  \
    template void max_pool2x2_window<T>(const T*, const T*, std::size_t, std::int32_t, std::int32_t, bool, T*, \
                                        std::int32_t*);                                                \
    template void max_pool2d_backward<T>(const T*, const std::int32_t*, const PoolGeometry&, T*);     \
    template void max_pool2d_gather<T>(const T*, const std::int32_t*, const PoolGeometry&, T*);       \
    template void avg_pool2d_forward<T>(const T*, const PoolGeometry&, bool, T*);                     \
    template void avg_pool2d_backward<T>(const T*, const PoolGeometry&, bool, T*);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad::kernels
