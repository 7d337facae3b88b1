#include "kernels/winograd.hpp"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/gemm.hpp"
#include "kernels/pool2d.hpp"
#include "kernels/threads.hpp"
#include "kernels/vector.hpp"

namespace xgrad::kernels {

namespace {

using Index = std::ptrdiff_t;

std::atomic<bool> g_enabled{true};

// Tiles per block: the rows of each of a block's GEMMs (forward, input gradient), their inner
// dimension (weight gradient). 16 is slower; 48 to 128 no faster (conv B at 2 threads).
constexpr std::size_t kTiles = 32;

// Fewer channels or filters give GEMMs too short to pay for the transforms.
constexpr std::size_t kMinChannels = 16;

// The most elements of a tile's transform (F(2x2, 3x3): 4x4).
constexpr std::size_t kMaxElements = 16;

// F(2, R): two outputs of an R-tap correlation (R = 1, 2, 3) from N = R + 1 products of
// transformed values, y = Aᵀ [(G g) ⊙ (Bᵀ d)] over a window d of N inputs. Each transform
// reads N (or 2, or R) values `s` apart and writes its results `t` apart; the last three are
// the transposes of the first three (the weight and the input gradients).
template <int R>
struct F2;

template <>
struct F2<3> {  // Lavin and Gray's F(2, 3)
    template <class V>
    static void input(const V* d, int s, V* o, int t) {  // Bᵀ d
        o[0] = d[0] - d[2 * s];
        o[t] = d[s] + d[2 * s];
        o[2 * t] = d[2 * s] - d[s];
        o[3 * t] = d[s] - d[3 * s];
    }
    template <class V>
    static void weight(const V* g, int s, V* o, int t) {  // G g
        o[0] = g[0];
        o[t] = V(0.5) * (g[0] + g[s] + g[2 * s]);
        o[2 * t] = V(0.5) * (g[0] - g[s] + g[2 * s]);
        o[3 * t] = g[2 * s];
    }
    template <class V>
    static void output(const V* m, int s, V* o, int t) {  // Aᵀ m
        o[0] = m[0] + m[s] + m[2 * s];
        o[t] = m[s] - m[2 * s] - m[3 * s];
    }
    template <class V>
    static void gradient(const V* e, int s, V* o, int t) {  // A e
        o[0] = e[0];
        o[t] = e[0] + e[s];
        o[2 * t] = e[0] - e[s];
        o[3 * t] = -e[s];
    }
    template <class V>
    static void weight_sum(const V* m, int s, V* o, int t) {  // Gᵀ m
        o[0] = m[0] + V(0.5) * (m[s] + m[2 * s]);
        o[t] = V(0.5) * (m[s] - m[2 * s]);
        o[2 * t] = V(0.5) * (m[s] + m[2 * s]) + m[3 * s];
    }
    template <class V>
    static void window(const V* z, int s, V* o, int t) {  // B z
        o[0] = z[0];
        o[t] = z[s] - z[2 * s] + z[3 * s];
        o[2 * t] = z[s] + z[2 * s] - z[0];
        o[3 * t] = -z[3 * s];
    }
};

template <>
struct F2<2> {  // products (d0 - d1) g0, d1 (g0 + g1), (d2 - d1) g1
    template <class V>
    static void input(const V* d, int s, V* o, int t) {
        o[0] = d[0] - d[s];
        o[t] = d[s];
        o[2 * t] = d[2 * s] - d[s];
    }
    template <class V>
    static void weight(const V* g, int s, V* o, int t) {
        o[0] = g[0];
        o[t] = g[0] + g[s];
        o[2 * t] = g[s];
    }
    template <class V>
    static void output(const V* m, int s, V* o, int t) {
        o[0] = m[0] + m[s];
        o[t] = m[s] + m[2 * s];
    }
    template <class V>
    static void gradient(const V* e, int s, V* o, int t) {
        o[0] = e[0];
        o[t] = e[0] + e[s];
        o[2 * t] = e[s];
    }
    template <class V>
    static void weight_sum(const V* m, int s, V* o, int t) {
        o[0] = m[0] + m[s];
        o[t] = m[s] + m[2 * s];
    }
    template <class V>
    static void window(const V* z, int s, V* o, int t) {
        o[0] = z[0];
        o[t] = z[s] - z[0] - z[2 * s];
        o[2 * t] = z[2 * s];
    }
};

template <>
struct F2<1> {  // the direct products d0 g0, d1 g0
    template <class V>
    static void input(const V* d, int s, V* o, int t) {
        o[0] = d[0];
        o[t] = d[s];
    }
    template <class V>
    static void weight(const V* g, int, V* o, int t) {
        o[0] = g[0];
        o[t] = g[0];
    }
    template <class V>
    static void output(const V* m, int s, V* o, int t) {
        o[0] = m[0];
        o[t] = m[s];
    }
    template <class V>
    static void gradient(const V* e, int s, V* o, int t) {
        o[0] = e[0];
        o[t] = e[s];
    }
    template <class V>
    static void weight_sum(const V* m, int s, V* o, int) {
        o[0] = m[0] + m[s];
    }
    template <class V>
    static void window(const V* z, int s, V* o, int t) {
        o[0] = z[0];
        o[t] = z[s];
    }
};

// The transforms of F2, and how many values each reads and writes for R taps.
enum class Step { input, weight, output, gradient, weight_sum, window };

constexpr int reads(Step step, int r) {
    return step == Step::weight ? r : step == Step::gradient ? 2 : r + 1;
}
constexpr int writes(Step step, int r) {
    return step == Step::output ? 2 : step == Step::weight_sum ? r : r + 1;
}

template <Step S, int R, class V>
inline void step(const V* in, int s, V* out, int t) {
    if constexpr (S == Step::input) F2<R>::input(in, s, out, t);
    if constexpr (S == Step::weight) F2<R>::weight(in, s, out, t);
    if constexpr (S == Step::output) F2<R>::output(in, s, out, t);
    if constexpr (S == Step::gradient) F2<R>::gradient(in, s, out, t);
    if constexpr (S == Step::weight_sum) F2<R>::weight_sum(in, s, out, t);
    if constexpr (S == Step::window) F2<R>::window(in, s, out, t);
}

// The 2-D transform S of an RY x RX sub-kernel: out from in (both row-major), the 1-D one down
// each column, then across each row.
template <Step S, int RY, int RX, class V>
inline void separable(const V* in, V* out) {
    constexpr int xi = reads(S, RX), yo = writes(S, RY), xo = writes(S, RX);
    V mid[yo * xi];
    for (int j = 0; j < xi; ++j) step<S, RY>(in + j, xi, mid + j, xi);
    for (int i = 0; i < yo; ++i) step<S, RX>(mid + i * xi, 1, out + i * xo, 1);
}

// A sub-kernel: up to 3x3 taps of the kernel, ry rows `stride` apart from row y0 and rx
// columns from column x0, computed by F(2, ry) x F(2, rx): tiles of 2x2 outputs from
// (ry + 1) x (rx + 1) windows and products (window pixel (r, q) of the tile at output (oy, ox)
// reads input (stride · (oy + r) + y0, stride · (ox + q) + x0) before padding).
struct Sub {
    std::size_t y0, x0, ry, rx;
    std::size_t elements() const { return (ry + 1) * (rx + 1); }
    bool same_kind(const Sub& o) const { return ry == o.ry && rx == o.rx; }
};

// One axis of a kernel of k taps at stride s: for each phase p < s, the taps p, p + s, ...
// (those that read input positions ≡ p mod s) in runs of at most 3, {first tap, count} each.
inline std::vector<std::pair<std::size_t, std::size_t>> runs(std::size_t k, std::size_t s) {
    std::vector<std::pair<std::size_t, std::size_t>> out;
    for (std::size_t p = 0; p < std::min(s, k); ++p) {
        const std::size_t taps = (k - p + s - 1) / s;
        for (std::size_t a = 0; a < taps; a += 3) out.push_back({p + s * a, std::min<std::size_t>(3, taps - a)});
    }
    return out;
}

// The kernel as a grid of sub-kernels: at stride 1 3x3 but at its right and bottom edges (a
// 5x5: 3x3, 3x2, 2x3 and 2x2); at stride 2 one stride-1 convolution per phase of the input (a
// 3x3: 2x2, 2x1, 1x2 and 1x1 taps). Those of one kind are next to each other: their products
// sum before one output transform. `start[i]`: where sub-kernel i's elements begin among all
// `elements`.
struct Subkernels {
    std::vector<Sub> subs;
    std::vector<std::size_t> start;
    std::size_t elements = 0;
    explicit Subkernels(const ConvGeometry& g) {
        for (const auto& [y0, ry] : runs(g.kh, g.sh))
            for (const auto& [x0, rx] : runs(g.kw, g.sw)) subs.push_back({y0, x0, ry, rx});
        std::stable_sort(subs.begin(), subs.end(),
                         [](const Sub& a, const Sub& b) { return a.ry * 4 + a.rx > b.ry * 4 + b.rx; });
        for (const Sub& s : subs) {
            start.push_back(elements);
            elements += s.elements();
        }
    }
    std::size_t count() const { return subs.size(); }
    bool one_kind() const { return subs.back().same_kind(subs.front()); }
    bool first_of_kind(std::size_t i) const { return i == 0 || !subs[i].same_kind(subs[i - 1]); }
    bool last_of_kind(std::size_t i) const { return i + 1 == count() || !subs[i].same_kind(subs[i + 1]); }
};

// Runs body.template operator()<RY, RX>() for the sub-kernel's kind.
template <class Body>
void by_kind(const Sub& s, Body&& body) {
    switch (3 * (s.ry - 1) + s.rx - 1) {
        case 0: return body.template operator()<1, 1>();
        case 1: return body.template operator()<1, 2>();
        case 2: return body.template operator()<1, 3>();
        case 3: return body.template operator()<2, 1>();
        case 4: return body.template operator()<2, 2>();
        case 5: return body.template operator()<2, 3>();
        case 6: return body.template operator()<3, 1>();
        case 7: return body.template operator()<3, 2>();
        default: return body.template operator()<3, 3>();
    }
}

// The 2x2 output tiles of a geometry, numbered image by image, row by row, in blocks.
struct Tiles {
    std::size_t across, per_image, total, block = kTiles;
    Subkernels subs;
    explicit Tiles(const ConvGeometry& g)
        : across((g.ow + 1) / 2), per_image((g.oh + 1) / 2 * across), total(g.n * per_image), subs(g) {}
    std::size_t blocks() const { return (total + block - 1) / block; }
    // The distance between the elements' matrices [block, width] of a block's transforms.
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

// A sum of values times zero, NaN when a value was not finite: one vector and one scalar.
template <class T>
struct FiniteCheck {
    typename Vector<T>::type vec{};
    T tail = 0;
    template <class V>
    void add(const V* values, int count) {
        V zero = values[0] * T(0);
        for (int e = 1; e < count; ++e) zero += values[e] * T(0);
        if constexpr (std::is_same_v<V, T>)
            tail += zero;
        else
            vec += zero;
    }
    bool finite() const {
        bool nan = tail != tail;
        for (std::size_t k = 0; k < sizeof(vec) / sizeof(T); ++k) nan = nan || vec[k] != vec[k];
        return !nan;
    }
};

// The pixels of tile t's (RY + 1) x (RX + 1) window for sub-kernel s: rows p[...] of x
// [N, H, W, width], `outside` past the image (or its padding).
template <int RY, int RX, class T>
void window(T* x, std::size_t width, const ConvGeometry& g, const Tiles& tiles, std::size_t t, const Sub& s,
            T* outside, T* p[kMaxElements]) {
    std::size_t n, oy, ox;
    tiles.locate(t, n, oy, ox);
    for (std::size_t r = 0; r <= RY; ++r)
        for (std::size_t q = 0; q <= RX; ++q) {
            const Index y = static_cast<Index>(g.sh * (oy + r) + s.y0) - static_cast<Index>(g.pt);
            const Index xx = static_cast<Index>(g.sw * (ox + q) + s.x0) - static_cast<Index>(g.pl);
            const bool inside = y >= 0 && y < static_cast<Index>(g.h) && xx >= 0 && xx < static_cast<Index>(g.w);
            p[(RX + 1) * r + q] =
                inside ? x + ((n * g.h + static_cast<std::size_t>(y)) * g.w + static_cast<std::size_t>(xx)) * width
                       : outside;
        }
}

// v [elements, block, C]: Bᵀ d B of the windows of the block's first `count` tiles for
// sub-kernel s (zero for the others).
template <int RY, int RX, class T>
void transform_inputs(const T* x, const ConvGeometry& g, const Tiles& tiles, std::size_t first, std::size_t count,
                      const Sub& s, const T* zeros, T* v) {
    constexpr int E = (RY + 1) * (RX + 1);
    const std::size_t stride = tiles.stride(g.c);
    constexpr std::size_t kAhead = 2;  // tiles
    for (std::size_t i = 0; i < tiles.block; ++i) {
        T* out = v + i * g.c;
        if (i >= count) {
            for (int e = 0; e < E; ++e) std::fill_n(out + e * stride, g.c, T(0));
            continue;
        }
        const T* p[kMaxElements];
        if (i + kAhead < count) {
            window<RY, RX>(x, g.c, g, tiles, first + i + kAhead, s, zeros, p);
            for (int e = 0; e < E; ++e)
                for (std::size_t k = 0; k < g.c; k += 64 / sizeof(T)) __builtin_prefetch(p[e] + k);
        }
        window<RY, RX>(x, g.c, g, tiles, first + i, s, zeros, p);
        lanes<T>(g.c, [&]<class V>(std::size_t k) {
            V d[E], o[E];
            for (int e = 0; e < E; ++e) d[e] = load<V>(p[e] + k);
            separable<Step::input, RY, RX>(d, o);
            for (int e = 0; e < E; ++e) store(out + e * stride + k, o[e]);
        });
    }
}

// u [elements, C, F] = G g Gᵀ for every sub-kernel, channel and filter (w [KH, KW, C, F]);
// [elements, F, C] when `transposed`.
template <class T>
void transform_weights(const T* w, const ConvGeometry& g, const Subkernels& subs, bool transposed, T* u) {
    const std::size_t cf = g.c * g.f;
    for (std::size_t i = 0; i < subs.count(); ++i) {
        const Sub& s = subs.subs[i];
        by_kind(s, [&]<int RY, int RX>() {
            T* us = u + subs.start[i] * cf;
            for (std::size_t c = 0; c < g.c; ++c)
                for (std::size_t f = 0; f < g.f; ++f) {
                    T taps[RY * RX], o[(RY + 1) * (RX + 1)];
                    for (std::size_t ky = 0; ky < RY; ++ky)
                        for (std::size_t kx = 0; kx < RX; ++kx)
                            taps[RX * ky + kx] = w[(((s.y0 + g.sh * ky) * g.kw + s.x0 + g.sw * kx) * g.c + c) * g.f + f];
                    separable<Step::weight, RY, RX>(taps, o);
                    const std::size_t at = transposed ? f * g.c + c : c * g.f + f;
                    for (int e = 0; e < (RY + 1) * (RX + 1); ++e) us[e * cf + at] = o[e];
                }
        });
    }
}

// A block's 2x2 outputs Aᵀ m A from the products m [elements, block, F] of one kind of
// sub-kernel, for its first `count` tiles: kept in `partial` [block, 4, F] when another kind
// follows; otherwise added to what `partial` holds (when `earlier`) and written, finished by
// the epilogue, or with a pool each tile's four outputs (one pool window: tiles start at even
// positions) into `pooled` [4, F] and their max into the pool's output. Adds the outputs
// (before the epilogue) to `check`.
template <int RY, int RX, class T>
void output_tiles(const T* m, const ConvGeometry& g, const Tiles& tiles, std::size_t first, std::size_t count,
                  bool earlier, bool last, T* partial, const Epilogue<T>& e, T* y, const WinogradPool<T>* pool,
                  T* pooled, FiniteCheck<T>& check) {
    constexpr int E = (RY + 1) * (RX + 1);
    const std::size_t stride = tiles.stride(g.f);
    for (std::size_t i = 0; i < count; ++i) {
        std::size_t n, oy, ox;
        tiles.locate(first + i, n, oy, ox);
        T* at[4];
        for (std::size_t q = 0; q < 4; ++q) {
            const std::size_t r = oy + q / 2, c = ox + q % 2;
            at[q] = !last ? partial + (4 * i + q) * g.f
                    : pool ? pooled + q * g.f
                    : r < g.oh && c < g.ow ? y + ((n * g.oh + r) * g.ow + c) * g.f
                                           : nullptr;
        }
        lanes<T>(g.f, [&]<class V>(std::size_t k) {
            V mv[E], out[4];
            for (int el = 0; el < E; ++el) mv[el] = load<V>(m + el * stride + i * g.f + k);
            separable<Step::output, RY, RX>(mv, out);
            if (earlier)
                for (std::size_t q = 0; q < 4; ++q) out[q] += load<V>(partial + (4 * i + q) * g.f + k);
            if (!last) {
                for (std::size_t q = 0; q < 4; ++q) store(at[q] + k, out[q]);
                return;
            }
            check.add(out, 4);
            for (std::size_t q = 0; q < 4; ++q) {
                if (!at[q]) continue;
                V v = out[q];
                if (e.bias) v += load<V>(e.bias + k);
                if (e.relu) v = v <= T(0) ? V{} : v;  // NaN passes, as relu()
                store(at[q] + k, v);
            }
        });
        if (last && pool && oy / 2 < pool->oh && ox / 2 < pool->ow) {
            const std::size_t o = ((n * pool->oh + oy / 2) * pool->ow + ox / 2) * g.f;
            max_pool2x2_window(pooled, pooled + 2 * g.f, g.f, static_cast<std::int32_t>(oy * g.ow + ox),
                               static_cast<std::int32_t>(g.ow), pool->relu, pool->y + o,
                               pool->argmax ? pool->argmax + o : nullptr);
        }
    }
}

// d [elements, block, F]: A dY Aᵀ of the block's first `count` tiles for one kind of
// sub-kernel (zero for the others, and for outputs past the edge).
template <int RY, int RX, class T>
void transform_gradients(const T* gy, const ConvGeometry& g, const Tiles& tiles, std::size_t first, std::size_t count,
                         const T* zeros, T* d) {
    constexpr int E = (RY + 1) * (RX + 1);
    const std::size_t stride = tiles.stride(g.f);
    constexpr std::size_t kAhead = 2;  // tiles, as transform_inputs
    // the tile's four outputs (zeros past the edge)
    const auto outputs = [&](std::size_t t, const T* p[4]) {
        std::size_t n, oy, ox;
        tiles.locate(t, n, oy, ox);
        for (std::size_t q = 0; q < 4; ++q) {
            const std::size_t r = oy + q / 2, c = ox + q % 2;
            p[q] = r < g.oh && c < g.ow ? gy + ((n * g.oh + r) * g.ow + c) * g.f : zeros;
        }
    };
    for (std::size_t i = 0; i < tiles.block; ++i) {
        T* out = d + i * g.f;
        if (i >= count) {
            for (int e = 0; e < E; ++e) std::fill_n(out + e * stride, g.f, T(0));
            continue;
        }
        const T* p[4];
        if (i + kAhead < count) {
            outputs(first + i + kAhead, p);
            for (std::size_t q = 0; q < 4; ++q)
                for (std::size_t k = 0; k < g.f; k += 64 / sizeof(T)) __builtin_prefetch(p[q] + k);
        }
        outputs(first + i, p);
        lanes<T>(g.f, [&]<class V>(std::size_t k) {
            V ev[4], o[E];
            for (int q = 0; q < 4; ++q) ev[q] = load<V>(p[q] + k);
            separable<Step::gradient, RY, RX>(ev, o);
            for (int e = 0; e < E; ++e) store(out + e * stride + k, o[e]);
        });
    }
}

// dx += B z Bᵀ of the block's first `count` tiles for sub-kernel s (z [elements, block, C]),
// each into its window (what falls on the padding dropped); adds the sums to `check`.
template <int RY, int RX, class T>
void scatter_windows(const T* z, const ConvGeometry& g, const Tiles& tiles, std::size_t first, std::size_t count,
                     const Sub& s, T* dx, FiniteCheck<T>& check) {
    constexpr int E = (RY + 1) * (RX + 1);
    const std::size_t stride = tiles.stride(g.c);
    for (std::size_t i = 0; i < count; ++i) {
        T* p[kMaxElements];
        window<RY, RX>(dx, g.c, g, tiles, first + i, s, static_cast<T*>(nullptr), p);
        lanes<T>(g.c, [&]<class V>(std::size_t k) {
            V zv[E], o[E];
            for (int e = 0; e < E; ++e) zv[e] = load<V>(z + e * stride + i * g.c + k);
            separable<Step::window, RY, RX>(zv, o);
            check.add(o, E);
            for (int e = 0; e < E; ++e)
                if (p[e]) store(p[e] + k, load<V>(p[e] + k) + o[e]);
        });
    }
}

// dw [KH, KW, C, F] += Gᵀ m G for every sub-kernel, channel and filter (m [elements, C, F]);
// false (dw unchanged) where a sum is not finite.
template <class T>
bool add_weight_sums(const T* m, const ConvGeometry& g, const Subkernels& subs, T* dw) {
    const std::size_t cf = g.c * g.f;
    T check = 0;
    for (std::size_t j = 0; j < subs.elements * cf; ++j) check += m[j] * T(0);
    if (check != check) return false;
    for (std::size_t i = 0; i < subs.count(); ++i) {
        const Sub& s = subs.subs[i];
        by_kind(s, [&]<int RY, int RX>() {
            const T* ms = m + subs.start[i] * cf;
            for (std::size_t c = 0; c < g.c; ++c)
                for (std::size_t f = 0; f < g.f; ++f) {
                    T sums[(RY + 1) * (RX + 1)], taps[RY * RX];
                    for (int e = 0; e < (RY + 1) * (RX + 1); ++e) sums[e] = ms[e * cf + c * g.f + f];
                    separable<Step::weight_sum, RY, RX>(sums, taps);
                    for (std::size_t ky = 0; ky < RY; ++ky)
                        for (std::size_t kx = 0; kx < RX; ++kx)
                            dw[(((s.y0 + g.sh * ky) * g.kw + s.x0 + g.sw * kx) * g.c + c) * g.f + f] += taps[RX * ky + kx];
                }
        });
    }
    return true;
}

}  // namespace

void set_winograd(bool enabled) { g_enabled = enabled; }
bool winograd_enabled() { return g_enabled; }

template <class T>
bool winograd(const ConvGeometry& g) {
    // The sub-kernels must cut the products by 1.4 at least (4 per output tap against
    // `elements` per tile): 3x3 2.25, 5x5 2.04, 7x7 1.96, 2x2 1.78, 3x3 at stride 2 1.44 (conv
    // D, 32x32x64 -> 128 at 2 threads: each pass 15% faster than the direct kernels); not 1xK
    // or Kx1, nor 2x2 at stride 2 (1.0).
    const bool fewer = g.kh >= 2 && g.kw >= 2 && 5 * 4 * g.kh * g.kw >= 7 * Subkernels(g).elements;
    return std::is_same_v<T, float> && g_enabled && g.sh <= 2 && g.sw <= 2 && g.dh == 1 && g.dw == 1 &&
           g.groups == 1 && g.c >= kMinChannels && g.f >= kMinChannels && !g.no_products() && g.oh > 0 &&
           g.ow > 0 && fewer;
}

template <class T>
bool conv2d_forward_winograd(const T* x, const T* w, const Epilogue<T>& e, const ConvGeometry& g, T* y,
                             const WinogradPool<T>* pool) {
    const Tiles tiles(g);
    const Subkernels& subs = tiles.subs;
    Buffer<T> u(subs.elements * g.c * g.f), zeros(g.c);
    transform_weights(w, g, subs, false, u.data());
    std::fill_n(zeros.data(), g.c, T(0));
    const bool kinds = !subs.one_kind();
    auto v = per_thread<T>(kMaxElements * tiles.stride(g.c));
    auto m = per_thread<T>(kMaxElements * tiles.stride(g.f) + (kinds ? 4 * tiles.stride(g.f) : 0) +
                           (pool ? 4 * g.f : 0));
    // m_e [block, F] = Σ_sub v_sub,e [block, C] · u_sub,e [C, F] for each element e, over the
    // sub-kernels of one kind, a sub-kernel at a time (its transformed windows in scratch)
    const BatchReduceGemm<T> first_product(tiles.block, g.f, g.c, g.c, g.f, g.f, false);
    const BatchReduceGemm<T> next_product(tiles.block, g.f, g.c, g.c, g.f, g.f, true);
    std::vector<FiniteCheck<T>> checks(static_cast<std::size_t>(omp_get_max_threads()));
#pragma omp parallel for schedule(static)
    for (Index b = 0; b < static_cast<Index>(tiles.blocks()); ++b) {
        const auto t = static_cast<std::size_t>(omp_get_thread_num());
        const std::size_t first = static_cast<std::size_t>(b) * tiles.block;
        const std::size_t count = std::min(tiles.block, tiles.total - first);
        T* vt = v[t].data();
        T* mt = m[t].data();
        T* partial = mt + kMaxElements * tiles.stride(g.f);
        T* pooled = partial + (kinds ? 4 * tiles.stride(g.f) : 0);
        for (std::size_t i = 0; i < subs.count(); ++i) {
            const Sub& s = subs.subs[i];
            by_kind(s, [&]<int RY, int RX>() {
                transform_inputs<RY, RX>(x, g, tiles, first, count, s, zeros.data(), vt);
                for (std::size_t k = 0; k < s.elements(); ++k) {
                    const T* a = vt + k * tiles.stride(g.c);
                    const T* bk = u.data() + (subs.start[i] + k) * g.c * g.f;
                    (subs.first_of_kind(i) ? first_product : next_product)(&a, &bk, 1, mt + k * tiles.stride(g.f));
                }
                if (subs.last_of_kind(i))
                    output_tiles<RY, RX>(mt, g, tiles, first, count, !s.same_kind(subs.subs[0]), i + 1 == subs.count(),
                                         partial, e, y, pool, pooled, checks[t]);
            });
        }
    }
    return std::all_of(checks.begin(), checks.end(), [](const FiniteCheck<T>& c) { return c.finite(); });
}

template <class T>
bool conv2d_backward_weight_winograd(const T* x, const T* gy, const ConvGeometry& g, T* dw) {
    const Tiles tiles(g);
    const Subkernels& subs = tiles.subs;
    Buffer<T> zeros(std::max(g.c, g.f)), sums(subs.elements * g.c * g.f);
    std::fill_n(zeros.data(), zeros.size(), T(0));
    std::fill_n(sums.data(), sums.size(), T(0));
    auto v = per_thread<T>(kMaxElements * tiles.stride(g.c)), d = per_thread<T>(kMaxElements * tiles.stride(g.f));
    accumulate_per_thread(sums.size(), sums.data(), [&](T* partial) {
        const auto t = static_cast<std::size_t>(omp_get_thread_num());
        T* vt = v[t].data();
        T* dt = d[t].data();
#pragma omp for schedule(static) nowait
        for (Index b = 0; b < static_cast<Index>(tiles.blocks()); ++b) {
            const std::size_t first = static_cast<std::size_t>(b) * tiles.block;
            const std::size_t count = std::min(tiles.block, tiles.total - first);
            // s_sub,e [C, F] += v_sub,eᵀ [C, block] · d_e [block, F], a sub-kernel at a time
            for (std::size_t i = 0; i < subs.count(); ++i) {
                const Sub& s = subs.subs[i];
                by_kind(s, [&]<int RY, int RX>() {
                    if (subs.first_of_kind(i)) transform_gradients<RY, RX>(gy, g, tiles, first, count, zeros.data(), dt);
                    transform_inputs<RY, RX>(x, g, tiles, first, count, s, zeros.data(), vt);
                    for (std::size_t k = 0; k < s.elements(); ++k)
                        gemm_per_thread<T>(true, false, g.c, g.f, tiles.block, 1, vt + k * tiles.stride(g.c), g.c,
                                           dt + k * tiles.stride(g.f), g.f, 1,
                                           partial + (subs.start[i] + k) * g.c * g.f, g.f);
                });
            }
        }
    });
    return add_weight_sums(sums.data(), g, subs, dw);
}

template <class T>
bool conv2d_backward_input_winograd(const T* gy, const T* w, const ConvGeometry& g, T* dx) {
    const Tiles tiles(g);
    const Subkernels& subs = tiles.subs;
    Buffer<T> ut(subs.elements * g.c * g.f), zeros(g.f);
    transform_weights(w, g, subs, true, ut.data());
    std::fill_n(zeros.data(), g.f, T(0));
    auto d = per_thread<T>(kMaxElements * tiles.stride(g.f)), z = per_thread<T>(kMaxElements * tiles.stride(g.c));
    // z_sub,e [block, C] = d_e [block, F] · u_sub,eᵀ [F, C]
    const BatchReduceGemm<T> product(tiles.block, g.c, g.f, g.f, g.c, g.c, false);
    std::vector<FiniteCheck<T>> checks(static_cast<std::size_t>(omp_get_max_threads()));
#pragma omp parallel
    {
        // Windows overlap: each thread takes whole images.
        const auto t = static_cast<std::size_t>(omp_get_thread_num());
        const auto threads = static_cast<std::size_t>(omp_get_num_threads());
        const std::size_t begin = g.n * t / threads * tiles.per_image, end = g.n * (t + 1) / threads * tiles.per_image;
        T* dt = d[t].data();
        T* zt = z[t].data();
        const std::size_t image = g.h * g.w * g.c;
        std::size_t zeroed = begin / tiles.per_image;  // images before it are zero
        for (std::size_t first = begin; first < end; first += tiles.block) {
            const std::size_t count = std::min(tiles.block, end - first);
            const std::size_t last = (first + count - 1) / tiles.per_image;
            for (; zeroed <= last; ++zeroed) std::fill_n(dx + zeroed * image, image, T(0));
            for (std::size_t i = 0; i < subs.count(); ++i) {
                const Sub& s = subs.subs[i];
                by_kind(s, [&]<int RY, int RX>() {
                    if (subs.first_of_kind(i)) transform_gradients<RY, RX>(gy, g, tiles, first, count, zeros.data(), dt);
                    for (std::size_t k = 0; k < s.elements(); ++k) {
                        const T* a = dt + k * tiles.stride(g.f);
                        const T* bk = ut.data() + (subs.start[i] + k) * g.c * g.f;
                        product(&a, &bk, 1, zt + k * tiles.stride(g.c));
                    }
                    scatter_windows<RY, RX>(zt, g, tiles, first, count, s, dx, checks[t]);
                });
            }
        }
    }
    return std::all_of(checks.begin(), checks.end(), [](const FiniteCheck<T>& c) { return c.finite(); });
}

template bool winograd<float>(const ConvGeometry&);
template bool winograd<double>(const ConvGeometry&);
template bool conv2d_forward_winograd<float>(const float*, const float*, const Epilogue<float>&, const ConvGeometry&,
                                             float*, const WinogradPool<float>*);
template bool conv2d_forward_winograd<double>(const double*, const double*, const Epilogue<double>&,
                                              const ConvGeometry&, double*, const WinogradPool<double>*);
template bool conv2d_backward_weight_winograd<float>(const float*, const float*, const ConvGeometry&, float*);
template bool conv2d_backward_weight_winograd<double>(const double*, const double*, const ConvGeometry&, double*);
template bool conv2d_backward_input_winograd<float>(const float*, const float*, const ConvGeometry&, float*);
template bool conv2d_backward_input_winograd<double>(const double*, const double*, const ConvGeometry&, double*);

}  // namespace xgrad::kernels
