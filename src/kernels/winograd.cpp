#include "kernels/winograd.hpp"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <type_traits>

#include "kernels/gemm.hpp"
#include "kernels/pool2d.hpp"
#include "kernels/threads.hpp"
#include "kernels/vector.hpp"

namespace xgrad::kernels {

namespace {

using Index = std::ptrdiff_t;

std::atomic<bool> g_enabled{true};

// Tiles per block: the rows of each of a block's 16 GEMMs (forward), their inner dimension
// (weight gradient). 16 is slower; 48 to 128 no faster (conv B at 2 threads).
constexpr std::size_t kTiles = 32;

// Fewer channels or filters give GEMMs too short to pay for the transforms.
constexpr std::size_t kMinChannels = 16;

// A kernel larger than 3x3 is a grid of 3x3 sub-kernels, `down` x `across` (zero taps past its
// edges): the convolution sums each one's convolution of x shifted by its offset (3·i, 3·j).
struct Subkernels {
    std::size_t down, across, count;
    explicit Subkernels(const ConvGeometry& g)
        : down((g.kh + 2) / 3), across((g.kw + 2) / 3), count(down * across) {}
};

// The 2x2 output tiles of a geometry, numbered image by image, row by row, in blocks.
struct Tiles {
    std::size_t across, per_image, total, block = kTiles, blocks;
    Subkernels subs;
    explicit Tiles(const ConvGeometry& g)
        : across((g.ow + 1) / 2), per_image((g.oh + 1) / 2 * across), total(g.n * per_image),
          blocks((total + block - 1) / block), subs(g) {}
    // The distance between the 16 elements' matrices [block, width] of a block's transforms.
    std::size_t stride(std::size_t width) const { return block * width; }
    // The tile's image and the output position of its top-left output.
    void locate(std::size_t t, std::size_t& n, std::size_t& oy, std::size_t& ox) const {
        n = t / per_image;
        oy = 2 * (t % per_image / across);
        ox = 2 * (t % per_image % across);
    }
};

template <class V, class T>
inline V load(const T* p) {
    V v;
    std::memcpy(&v, p, sizeof(V));
    return v;
}

template <class V, class T>
inline void store(T* p, V v) {
    std::memcpy(p, &v, sizeof(V));
}

// Runs body.template operator()<V>(k) for k over [0, count): 64-byte vectors, then one value
// at a time for the tail.
template <class T, class Body>
inline void lanes(std::size_t count, Body body) {
    using Vec = typename Vector<T>::type;
    constexpr std::size_t width = sizeof(Vec) / sizeof(T);
    std::size_t k = 0;
    for (; k + width <= count; k += width) body.template operator()<Vec>(k);
    for (; k < count; ++k) body.template operator()<T>(k);
}

// Whether any lane of `check` (a sum of values times zero) is NaN: some value was not finite.
template <class V>
bool not_finite(V check) {
    if constexpr (std::is_arithmetic_v<V>) {
        return check != check;
    } else {
        bool any = false;
        for (std::size_t k = 0; k < sizeof(V) / sizeof(check[0]); ++k) any = any || check[k] != check[k];
        return any;
    }
}

// Bᵀ d B of one 4x4 window (rows p[0..15], zeros in the padding) at channel k, into the 16
// elements' rows of v (`stride` apart).
template <class V, class T>
inline void input_transform(const T* const* p, std::size_t k, T* v, std::size_t stride) {
    V d[16], a[16];
    for (int e = 0; e < 16; ++e) d[e] = load<V>(p[e] + k);
    for (int j = 0; j < 4; ++j) {
        a[j] = d[j] - d[8 + j];
        a[4 + j] = d[4 + j] + d[8 + j];
        a[8 + j] = d[8 + j] - d[4 + j];
        a[12 + j] = d[4 + j] - d[12 + j];
    }
    for (int i = 0; i < 4; ++i) {
        const V* r = a + 4 * i;
        store(v + (4 * i + 0) * stride + k, r[0] - r[2]);
        store(v + (4 * i + 1) * stride + k, r[1] + r[2]);
        store(v + (4 * i + 2) * stride + k, r[2] - r[1]);
        store(v + (4 * i + 3) * stride + k, r[1] - r[3]);
    }
}

// The 16 pixels of tile t's 4x4 input window for sub-kernel `sub` (zeros in the padding).
template <class T>
void window(const T* x, const ConvGeometry& g, const Tiles& tiles, std::size_t t, std::size_t sub, const T* zeros,
            const T* p[16]) {
    std::size_t n, oy, ox;
    tiles.locate(t, n, oy, ox);
    oy += 3 * (sub / tiles.subs.across);
    ox += 3 * (sub % tiles.subs.across);
    for (std::size_t r = 0; r < 4; ++r)
        for (std::size_t q = 0; q < 4; ++q) {
            const Index y = static_cast<Index>(oy + r) - static_cast<Index>(g.pt);
            const Index xx = static_cast<Index>(ox + q) - static_cast<Index>(g.pl);
            const bool inside = y >= 0 && y < static_cast<Index>(g.h) && xx >= 0 && xx < static_cast<Index>(g.w);
            p[4 * r + q] =
                inside ? x + ((n * g.h + static_cast<std::size_t>(y)) * g.w + static_cast<std::size_t>(xx)) * g.c : zeros;
        }
}

// v [16, block, C]: the transformed input windows of the block's tiles for sub-kernel `sub`
// (zero past the last tile).
template <class T>
void transform_inputs(const T* x, const ConvGeometry& g, const Tiles& tiles, std::size_t first, std::size_t sub,
                      const T* zeros, T* v) {
    const std::size_t stride = tiles.stride(g.c);
    constexpr std::size_t kAhead = 2;  // tiles
    for (std::size_t i = 0; i < tiles.block; ++i) {
        T* out = v + i * g.c;
        if (first + i >= tiles.total) {
            for (std::size_t e = 0; e < 16; ++e) std::fill_n(out + e * stride, g.c, T(0));
            continue;
        }
        const T* p[16];
        if (first + i + kAhead < tiles.total) {
            window(x, g, tiles, first + i + kAhead, sub, zeros, p);
            for (const T* px : p)
                for (std::size_t k = 0; k < g.c; k += 64 / sizeof(T)) __builtin_prefetch(px + k);
        }
        window(x, g, tiles, first + i, sub, zeros, p);
        lanes<T>(g.c, [&]<class V>(std::size_t k) { input_transform<V>(p, k, out, stride); });
    }
}

// Whether the tap (ky, kx) of sub-kernel `sub` is inside the kernel; `at` its index (KH·KW).
inline bool tap(const ConvGeometry& g, const Subkernels& subs, std::size_t sub, std::size_t ky, std::size_t kx,
                std::size_t& at) {
    const std::size_t y = 3 * (sub / subs.across) + ky, x = 3 * (sub % subs.across) + kx;
    at = y * g.kw + x;
    return y < g.kh && x < g.kw;
}

// u [subs, 16, C, F] = G w Gᵀ for every sub-kernel, channel and filter (w [KH, KW, C, F]).
template <class T>
void transform_weights(const T* w, const ConvGeometry& g, T* u) {
    const std::size_t cf = g.c * g.f;
    const Subkernels subs(g);
    for (std::size_t sub = 0; sub < subs.count; ++sub) {
        T* us = u + sub * 16 * cf;
        for (std::size_t j = 0; j < cf; ++j) {
            T k[3][3], a[4][3];
            for (std::size_t ky = 0; ky < 3; ++ky)
                for (std::size_t kx = 0; kx < 3; ++kx) {
                    std::size_t at;
                    k[ky][kx] = tap(g, subs, sub, ky, kx, at) ? w[at * cf + j] : T(0);
                }
            for (int kx = 0; kx < 3; ++kx) {
                a[0][kx] = k[0][kx];
                a[1][kx] = T(0.5) * (k[0][kx] + k[1][kx] + k[2][kx]);
                a[2][kx] = T(0.5) * (k[0][kx] - k[1][kx] + k[2][kx]);
                a[3][kx] = k[2][kx];
            }
            for (int i = 0; i < 4; ++i) {
                us[(4 * i + 0) * cf + j] = a[i][0];
                us[(4 * i + 1) * cf + j] = T(0.5) * (a[i][0] + a[i][1] + a[i][2]);
                us[(4 * i + 2) * cf + j] = T(0.5) * (a[i][0] - a[i][1] + a[i][2]);
                us[(4 * i + 3) * cf + j] = a[i][2];
            }
        }
    }
}

// The 2x2 outputs Aᵀ m A of one tile at filter k from the 16 products' rows of m.
template <class V, class T>
inline void output_transform(const T* m, std::size_t k, std::size_t stride, V out[4]) {
    V s[8];
    for (int j = 0; j < 4; ++j) {
        const V m0 = load<V>(m + j * stride + k), m1 = load<V>(m + (4 + j) * stride + k);
        const V m2 = load<V>(m + (8 + j) * stride + k), m3 = load<V>(m + (12 + j) * stride + k);
        s[j] = m0 + m1 + m2;
        s[4 + j] = m1 - m2 - m3;
    }
    out[0] = s[0] + s[1] + s[2];
    out[1] = s[1] - s[2] - s[3];
    out[2] = s[4] + s[5] + s[6];
    out[3] = s[5] - s[6] - s[7];
}

// Writes the block's outputs from m [16, block, F], finished by the epilogue, or with a pool
// each tile's four outputs (one pool window: tiles start at even positions) into `window`
// [4, F] and their max into the pool's output; false where an output is not finite (before
// the epilogue).
template <class T>
bool store_outputs(const T* m, const ConvGeometry& g, const Tiles& tiles, std::size_t first, const Epilogue<T>& e,
                   T* y, const WinogradPool<T>* pool, T* window) {
    const std::size_t stride = tiles.stride(g.f);
    // Σ output · 0 over the block, NaN when an output is not: checked once, at the end.
    typename Vector<T>::type check{};
    T check_tail = 0;
    for (std::size_t i = 0; i < tiles.block && first + i < tiles.total; ++i) {
        std::size_t n, oy, ox;
        tiles.locate(first + i, n, oy, ox);
        T* at[4];
        for (std::size_t q = 0; q < 4; ++q) {
            const std::size_t r = oy + q / 2, c = ox + q % 2;
            at[q] = pool ? window + q * g.f : r < g.oh && c < g.ow ? y + ((n * g.oh + r) * g.ow + c) * g.f : nullptr;
        }
        lanes<T>(g.f, [&]<class V>(std::size_t k) {
            V out[4];
            output_transform<V>(m + i * g.f, k, stride, out);
            const V zero = (out[0] + out[1] + out[2] + out[3]) * T(0);
            if constexpr (std::is_same_v<V, T>)
                check_tail += zero;
            else
                check += zero;
            for (std::size_t q = 0; q < 4; ++q) {
                if (!at[q]) continue;
                V v = out[q];
                if (e.bias) v += load<V>(e.bias + k);
                if (e.relu) v = v <= T(0) ? V{} : v;  // NaN passes, as relu()
                store(at[q] + k, v);
            }
        });
        if (pool && oy / 2 < pool->oh && ox / 2 < pool->ow) {
            const std::size_t o = ((n * pool->oh + oy / 2) * pool->ow + ox / 2) * g.f;
            max_pool2x2_window(window, window + 2 * g.f, g.f, static_cast<std::int32_t>(oy * g.ow + ox),
                               static_cast<std::int32_t>(g.ow), pool->relu, pool->y + o,
                               pool->argmax ? pool->argmax + o : nullptr);
        }
    }
    return !not_finite(check) && !not_finite(check_tail);
}

// A dY [2x2] → [4x4] tile transform A dY Aᵀ at filter k (rows p[0..3], zeros past the output).
template <class V, class T>
inline void gradient_transform(const T* const* p, std::size_t k, T* out, std::size_t stride) {
    const V e00 = load<V>(p[0] + k), e01 = load<V>(p[1] + k), e10 = load<V>(p[2] + k), e11 = load<V>(p[3] + k);
    // rows: A [4x2] = [1 0; 1 1; 1 -1; 0 -1] applied to the two output rows
    const V r[4][2] = {{e00, e01}, {e00 + e10, e01 + e11}, {e00 - e10, e01 - e11}, {-e10, -e11}};
    for (int i = 0; i < 4; ++i) {
        store(out + (4 * i + 0) * stride + k, r[i][0]);
        store(out + (4 * i + 1) * stride + k, r[i][0] + r[i][1]);
        store(out + (4 * i + 2) * stride + k, r[i][0] - r[i][1]);
        store(out + (4 * i + 3) * stride + k, -r[i][1]);
    }
}

// d [16, block, F]: the transformed output gradients of the block's tiles (zero past the last).
template <class T>
void transform_gradients(const T* gy, const ConvGeometry& g, const Tiles& tiles, std::size_t first, const T* zeros,
                         T* d) {
    const std::size_t stride = tiles.stride(g.f);
    for (std::size_t i = 0; i < tiles.block; ++i) {
        T* out = d + i * g.f;
        if (first + i >= tiles.total) {
            for (std::size_t e = 0; e < 16; ++e) std::fill_n(out + e * stride, g.f, T(0));
            continue;
        }
        std::size_t n, oy, ox;
        tiles.locate(first + i, n, oy, ox);
        const T* p[4];
        for (std::size_t q = 0; q < 4; ++q) {
            const std::size_t r = oy + q / 2, c = ox + q % 2;
            p[q] = r < g.oh && c < g.ow ? gy + ((n * g.oh + r) * g.ow + c) * g.f : zeros;
        }
        lanes<T>(g.f, [&]<class V>(std::size_t k) { gradient_transform<V>(p, k, out, stride); });
    }
}

// dw [KH, KW, C, F] += Gᵀ s G for every sub-kernel, channel and filter (s [subs, 16, C, F]),
// the taps past the kernel's edge dropped; false (dw unchanged) where a sum is not finite.
template <class T>
bool add_weight_sums(const T* s, const ConvGeometry& g, T* dw) {
    const std::size_t cf = g.c * g.f;
    const Subkernels subs(g);
    T check = 0;
    for (std::size_t j = 0; j < subs.count * 16 * cf; ++j) check += s[j] * T(0);
    if (check != check) return false;
    for (std::size_t sub = 0; sub < subs.count; ++sub) {
        const T* ss = s + sub * 16 * cf;
        for (std::size_t j = 0; j < cf; ++j) {
            T a[3][4];  // Gᵀ s: G [4x3] = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1]
            for (int b = 0; b < 4; ++b) {
                const T s0 = ss[(0 + b) * cf + j], s1 = ss[(4 + b) * cf + j], s2 = ss[(8 + b) * cf + j],
                        s3 = ss[(12 + b) * cf + j];
                a[0][b] = s0 + T(0.5) * (s1 + s2);
                a[1][b] = T(0.5) * (s1 - s2);
                a[2][b] = T(0.5) * (s1 + s2) + s3;
            }
            for (std::size_t ky = 0; ky < 3; ++ky) {
                const T* r = a[ky];
                const T row[3] = {r[0] + T(0.5) * (r[1] + r[2]), T(0.5) * (r[1] - r[2]), T(0.5) * (r[1] + r[2]) + r[3]};
                for (std::size_t kx = 0; kx < 3; ++kx) {
                    std::size_t at;
                    if (tap(g, subs, sub, ky, kx, at)) dw[at * cf + j] += row[kx];
                }
            }
        }
    }
    return true;
}

}  // namespace

void set_winograd(bool enabled) { g_enabled = enabled; }
bool winograd_enabled() { return g_enabled; }

template <class T>
bool winograd(const ConvGeometry& g) {
    // 3x3 sub-kernels must cut the products by 1.5 at least (4 per output and sub-kernel
    // against KH·KW): 3x3 2.25, 5x5 1.56, 7x7 only 1.36.
    const Subkernels subs(g);
    const bool fewer = g.kh >= 3 && g.kw >= 3 && 2 * g.kh * g.kw >= 3 * 4 * subs.count;
    return std::is_same_v<T, float> && g_enabled && fewer && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 &&
           g.groups == 1 && g.c >= kMinChannels && g.f >= kMinChannels && !g.no_products();
}

template <class T>
bool conv2d_forward_winograd(const T* x, const T* w, const Epilogue<T>& e, const ConvGeometry& g, T* y,
                             const WinogradPool<T>* pool) {
    const Tiles tiles(g);
    const std::size_t subs = tiles.subs.count;
    Buffer<T> u(subs * 16 * g.c * g.f), zeros(g.c);
    transform_weights(w, g, u.data());
    std::fill_n(zeros.data(), g.c, T(0));
    auto v = per_thread<T>(16 * tiles.stride(g.c));
    auto m = per_thread<T>(16 * tiles.stride(g.f) + (pool ? 4 * g.f : 0));
    // m_e [block, F] = Σ_sub v_sub,e [block, C] · u_sub,e [C, F] for each of the 16 elements, a
    // sub-kernel at a time (one sub-kernel's transformed windows in scratch)
    const BatchReduceGemm<T> first_product(tiles.block, g.f, g.c, g.c, g.f, g.f, false);
    const BatchReduceGemm<T> next_product(tiles.block, g.f, g.c, g.c, g.f, g.f, true);
    bool finite = true;
#pragma omp parallel for schedule(static) reduction(&& : finite)
    for (Index b = 0; b < static_cast<Index>(tiles.blocks); ++b) {
        const auto t = static_cast<std::size_t>(omp_get_thread_num());
        const std::size_t first = static_cast<std::size_t>(b) * tiles.block;
        T* vt = v[t].data();
        T* mt = m[t].data();
        for (std::size_t sub = 0; sub < subs; ++sub) {
            transform_inputs(x, g, tiles, first, sub, zeros.data(), vt);
            for (std::size_t k = 0; k < 16; ++k) {
                const T* a = vt + k * tiles.stride(g.c);
                const T* bk = u.data() + (sub * 16 + k) * g.c * g.f;
                (sub == 0 ? first_product : next_product)(&a, &bk, 1, mt + k * tiles.stride(g.f));
            }
        }
        finite = store_outputs(mt, g, tiles, first, e, y, pool, mt + 16 * tiles.stride(g.f)) && finite;
    }
    return finite;
}

template <class T>
bool conv2d_backward_weight_winograd(const T* x, const T* gy, const ConvGeometry& g, T* dw) {
    const Tiles tiles(g);
    const std::size_t subs = tiles.subs.count;
    Buffer<T> zeros(std::max(g.c, g.f)), sums(subs * 16 * g.c * g.f);
    std::fill_n(zeros.data(), zeros.size(), T(0));
    std::fill_n(sums.data(), sums.size(), T(0));
    auto v = per_thread<T>(16 * tiles.stride(g.c)), d = per_thread<T>(16 * tiles.stride(g.f));
    accumulate_per_thread(sums.size(), sums.data(), [&](T* partial) {
        const auto t = static_cast<std::size_t>(omp_get_thread_num());
        T* vt = v[t].data();
        T* dt = d[t].data();
#pragma omp for schedule(static) nowait
        for (Index b = 0; b < static_cast<Index>(tiles.blocks); ++b) {
            const std::size_t first = static_cast<std::size_t>(b) * tiles.block;
            transform_gradients(gy, g, tiles, first, zeros.data(), dt);
            // s_sub,e [C, F] += v_sub,eᵀ [C, block] · d_e [block, F], a sub-kernel at a time
            for (std::size_t sub = 0; sub < subs; ++sub) {
                transform_inputs(x, g, tiles, first, sub, zeros.data(), vt);
                for (std::size_t k = 0; k < 16; ++k)
                    gemm_per_thread<T>(true, false, g.c, g.f, tiles.block, 1, vt + k * tiles.stride(g.c), g.c,
                                       dt + k * tiles.stride(g.f), g.f, 1, partial + (sub * 16 + k) * g.c * g.f, g.f);
            }
        }
    });
    return add_weight_sums(sums.data(), g, dw);
}

template bool winograd<float>(const ConvGeometry&);
template bool winograd<double>(const ConvGeometry&);
template bool conv2d_forward_winograd<float>(const float*, const float*, const Epilogue<float>&, const ConvGeometry&,
                                             float*, const WinogradPool<float>*);
template bool conv2d_forward_winograd<double>(const double*, const double*, const Epilogue<double>&,
                                              const ConvGeometry&, double*, const WinogradPool<double>*);
template bool conv2d_backward_weight_winograd<float>(const float*, const float*, const ConvGeometry&, float*);
template bool conv2d_backward_weight_winograd<double>(const double*, const double*, const ConvGeometry&, double*);

}  // namespace xgrad::kernels
