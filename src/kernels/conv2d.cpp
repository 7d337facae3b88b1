#include "kernels/conv2d.hpp"

#include <omp.h>

#include <algorithm>
#include <cassert>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/bf16.hpp"
#include "kernels/vector.hpp"
#include "kernels/gemm.hpp"
#include "kernels/pool2d.hpp"
#include "kernels/threads.hpp"
#include "kernels/winograd.hpp"

namespace xgrad::kernels {

namespace {

using Index = std::ptrdiff_t;

// The input pixel a kernel tap reads, or -1 when it falls in the padding.
inline Index source(std::size_t o, std::size_t k, std::size_t stride, std::size_t dilation,
                    std::size_t pad, std::size_t size) {
    const Index i = static_cast<Index>(o * stride + k * dilation) - static_cast<Index>(pad);
    return i >= 0 && i < static_cast<Index>(size) ? i : -1;
}

// The taps [first, last) of a run of `taps` consecutive pixels starting at `start` (which may be
// negative or past the end) that fall inside [0, size); first == last when none do.
inline std::pair<std::size_t, std::size_t> inside(Index start, std::size_t taps, std::size_t size) {
    const Index n = static_cast<Index>(taps);
    const Index first = std::clamp<Index>(-start, 0, n);
    const Index last = std::clamp<Index>(static_cast<Index>(size) - start, first, n);
    return {static_cast<std::size_t>(first), static_cast<std::size_t>(last)};
}

}  // namespace

namespace {

// img2col of output lines [first, last) (a line is one output row of one image), restricted
// to kernel rows [ky0, ky1) (rows of (ky1 - ky0)·KW·Cg columns); `cols` points at the matrix
// row of line `first`'s first pixel.
template <class T>
void img2col_lines(const T* x, const ConvGeometry& g, std::size_t group, std::size_t first, std::size_t last,
                   std::size_t ky0, std::size_t ky1, T* cols) {
    const std::size_t cg = g.cg(), patch = (ky1 - ky0) * g.kw * cg;
    const bool contiguous = g.groups == 1 && g.dw == 1;  // a kernel row's taps: one run of memory
    for (std::size_t line = first; line < last; ++line) {
        const std::size_t n = line / g.oh, oy = line % g.oh;
        for (std::size_t ox = 0; ox < g.ow; ++ox) {
            T* row = cols + ((line - first) * g.ow + ox) * patch;
            for (std::size_t ky = ky0; ky < ky1; ++ky) {
                const Index iy = source(oy, ky, g.sh, g.dh, g.pt, g.h);
                T* dst_row = row + (ky - ky0) * g.kw * cg;
                if (iy < 0) {
                    std::fill_n(dst_row, g.kw * cg, T(0));
                    continue;
                }
                const T* src_row = x + (n * g.h + static_cast<std::size_t>(iy)) * g.w * g.c + group * cg;
                if (contiguous) {
                    // The row's taps inside the image, [k0, k1), read consecutive pixels with
                    // consecutive channels: one copy for them, zeros for the padding around.
                    const Index column = static_cast<Index>(ox * g.sw) - static_cast<Index>(g.pl);  // of tap 0
                    // Both ends are clamped to [0, KW]: the padding may be wider than the
                    // kernel, so that a whole row of taps lies left or right of the image.
                    const auto [k0, k1] = inside(column, g.kw, g.w);
                    std::fill_n(dst_row, k0 * cg, T(0));
                    if (k1 > k0)
                        std::copy_n(src_row + static_cast<std::size_t>(column + static_cast<Index>(k0)) * g.c,
                                    (k1 - k0) * cg, dst_row + k0 * cg);
                    std::fill_n(dst_row + k1 * cg, (g.kw - k1) * cg, T(0));
                    continue;
                }
                for (std::size_t kx = 0; kx < g.kw; ++kx) {
                    const Index ix = source(ox, kx, g.sw, g.dw, g.pl, g.w);
                    T* dst = dst_row + kx * cg;
                    if (ix < 0)
                        std::fill_n(dst, cg, T(0));
                    else
                        std::copy_n(src_row + static_cast<std::size_t>(ix) * g.c, cg, dst);
                }
            }
        }
    }
}

// col2img of images [first, last); `cols` points at the matrix row of output pixel (first, 0, 0).
template <class T>
void col2img_images(const T* cols, const ConvGeometry& g, std::size_t group, std::size_t first, std::size_t last,
                    T* dx) {
    const std::size_t cg = g.cg(), patch = g.patch();
    for (std::size_t n = first; n < last; ++n) {
        for (std::size_t oy = 0; oy < g.oh; ++oy)
            for (std::size_t ox = 0; ox < g.ow; ++ox) {
                const T* row = cols + (((n - first) * g.oh + oy) * g.ow + ox) * patch;
                for (std::size_t ky = 0; ky < g.kh; ++ky) {
                    const Index iy = source(oy, ky, g.sh, g.dh, g.pt, g.h);
                    if (iy < 0) continue;
                    for (std::size_t kx = 0; kx < g.kw; ++kx) {
                        const Index ix = source(ox, kx, g.sw, g.dw, g.pl, g.w);
                        if (ix < 0) continue;
                        const T* src = row + (ky * g.kw + kx) * cg;
                        T* dst = dx + ((n * g.h + static_cast<std::size_t>(iy)) * g.w +
                                       static_cast<std::size_t>(ix)) * g.c + group * cg;
                        for (std::size_t c = 0; c < cg; ++c) dst[c] += src[c];
                    }
                }
            }
    }
}

// The batch cut into chunks of whole images, about kChunkRows img2col rows each: a chunk's
// columns are built and multiplied by one thread while they are still in its cache, with a
// single-threaded GEMM (OpenBLAS runs serially inside an OpenMP region), and no thread waits
// for another between the two. Whole images, because col2img's windows overlap within one.
struct Chunks {
    struct Chunk {
        std::size_t first, last;  // images [first, last)
        std::size_t row, rows;    // their img2col rows [row, row + rows)
    };
    std::size_t n, per_image;  // images in the batch, img2col rows per image
    std::size_t images;        // per chunk
    std::size_t count;
    explicit Chunks(const ConvGeometry& g) : n(g.n), per_image(g.oh * g.ow) {
        constexpr std::size_t kChunkRows = 256;
        images = std::clamp<std::size_t>(kChunkRows / std::max<std::size_t>(1, per_image), 1, std::max<std::size_t>(1, n));
        count = (n + images - 1) / images;
    }
    Chunk operator[](Index i) const {
        const std::size_t first = static_cast<std::size_t>(i) * images, last = std::min(n, first + images);
        return {first, last, first * per_image, (last - first) * per_image};
    }
};

// n elements of v rounded to bf16 values in `storage`: the operand of a bf16 product that runs
// on the float32 kernels (a path without bf16 kernels, or the portable level).
template <class T>
const T* rounded(const T* v, std::size_t n, Buffer<T>& storage) {
    if constexpr (std::is_same_v<T, float>) {
        storage = Buffer<T>(n);
        round_bf16(v, n, storage.data());
        return storage.data();
    }
    return v;
}

// One thread's scratch for the bf16 products of the batch-split kernels: packed operands.
struct Bf16Scratch {
    Buffer<bf16> a, b;
};

// Scratch for an A of up to m x k and a B of up to k x n on every thread, allocated on this one.
std::vector<Bf16Scratch> bf16_scratch(bool use_bf16, std::size_t m, std::size_t n, std::size_t k) {
    std::vector<Bf16Scratch> s(static_cast<std::size_t>(omp_get_max_threads()));
    if (use_bf16)
        for (auto& t : s) {
            t.a = Buffer<bf16>(m * 2 * pairs(k));
            t.b = Buffer<bf16>(pairs(k) * n * 2);
        }
    return s;
}

// C [M, N] (+)= op(A) [M, K] · B [K, N] for one thread (B not transposed; beta 0 or 1): with
// bf16, the operands (bf16 values in floats) packed into `s` (B only when not given packed)
// and multiplied by gemm_bf16 with float32 sums; otherwise gemm_per_thread.
template <class T>
void thread_product(bool use_bf16, Bf16Scratch& s, bool trans_a, std::size_t m, std::size_t n, std::size_t k, const T* a,
                    std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc,
                    const bf16* packed_b = nullptr) {
    if constexpr (std::is_same_v<T, float>) {
        if (use_bf16) {
            // op(A) as packed rows, or (stored [K, M]) as packed pairs [P, M, 2], read in order
            if (trans_a)
                pack_pairs_bf16(a, k, m, lda, false, s.a.data());
            else
                pack_rows_bf16(a, m, k, lda, s.a.data());
            if (!packed_b) {
                pack_pairs_bf16(b, k, n, ldb, false, s.b.data());
                packed_b = s.b.data();
            }
            const bf16* ap = s.a.data();
            gemm_bf16(m, n, pairs(k), &ap, trans_a ? 2 : 2 * pairs(k), &packed_b, 1, c, ldc, beta != 0, bf16_level(),
                      trans_a ? 2 * m : 2);
            return;
        }
    }
    gemm_per_thread<T>(trans_a, false, m, n, k, 1, a, lda, b, ldb, beta, c, ldc);
}

// The epilogue over rows [0, rows) of a block y [rows, F] that one thread has just written.
template <class T>
void finish(const Epilogue<T>& e, std::size_t rows, std::size_t f, T* y) {
    if (!e.bias && !e.relu) return;
    for (std::size_t r = 0; r < rows; ++r) {
        T* __restrict row = y + r * f;
        if (e.bias)
            for (std::size_t j = 0; j < f; ++j) row[j] += e.bias[j];
        if (e.relu)
            for (std::size_t j = 0; j < f; ++j) row[j] = !(row[j] <= T(0)) ? row[j] : T(0);
    }
}

// The same over a whole output y [N, OH, OW, F], one output line per thread at a time.
template <class T>
void finish_all(const Epilogue<T>& e, const ConvGeometry& g, T* y) {
    if (!e.bias && !e.relu) return;
#pragma omp parallel for schedule(static)
    for (Index line = 0; line < static_cast<Index>(g.n * g.oh); ++line)
        finish(e, g.ow, g.f, y + static_cast<std::size_t>(line) * g.ow * g.f);
}

// One input channel: a direct loop beats img2col + GEMM (inner dimension only KH·KW) in
// OpenBLAS, but not in libxsmm's JIT kernels, which serve float only: conv A fwd+bwd at 2
// threads 5.4 ms direct, 2.8 ms through libxsmm.
template <class T>
bool direct_single_channel(const ConvGeometry& g) {
    return g.single_channel() && !(XGRAD_HAVE_XSMM && std::is_same_v<T, float>);
}

// Batch splitting needs one group (per-group GEMMs would read strided column blocks).
template <class T>
bool batch_split(const ConvGeometry& g) {
    return g.groups == 1 && !g.pointwise() && !direct_single_channel<T>(g);
}

// Convolutions with this many input channels or more skip img2col in the forward pass: a tap's
// input row segment is already a matrix [OW, C] (row stride sw·C), so an output line is one
// batch-reduce GEMM over the taps (conv2d_forward_direct). Fewer channels make K too short.
constexpr std::size_t kDirectMinChannels = 16;

// Only with libxsmm, whose batch-reduce kernel keeps the sum over taps in registers; float64
// goes direct too (one small gemm() per tap), so the gradient check covers the path. Without
// libxsmm, one OpenBLAS call per tap and line costs more than img2col + GEMM (a -Dxsmm=disabled
// build, fwd+bwd at 2 threads: conv E 46.1 ms direct against 38.1, conv B 12.3 against 10.3).
template <class T>
bool direct(const ConvGeometry& g) {
    return XGRAD_HAVE_XSMM && batch_split<T>(g) && g.c >= kDirectMinChannels;
}

// Where a forward pass's output lines go: straight into y [N, OH, OW, F], or with a pool, two
// at a time into a per-thread pair, max-pooled 2x2 (stride 2, no padding) into pool->y
// [N, OH / 2, OW / 2, F] while the pair is in cache: relu after the max when asked, argmax as
// max_pool2d_forward writes it (none when null).
template <class T>
struct LinePool {
    T* y;
    std::int32_t* argmax;
    bool relu;
};

// Calls line(thread, output line n·OH + oy, out [OW, F]) for every output line the
// destination needs (all of them, or the pairs the pool reads), the threads sharing them.
template <class T, class Line>
void output_lines(const ConvGeometry& g, T* y, const LinePool<T>* pool, Line line) {
    const std::size_t out_line = g.ow * g.f;
    if (!pool) {
        const Index lines = static_cast<Index>(g.n * g.oh);
#pragma omp parallel for schedule(static)
        for (Index l = 0; l < lines; ++l)
            line(static_cast<std::size_t>(omp_get_thread_num()), static_cast<std::size_t>(l),
                 y + static_cast<std::size_t>(l) * out_line);
        return;
    }
    const std::size_t poh = g.oh / 2, pooled_line = g.ow / 2 * g.f;
    auto pairs = per_thread<T>(2 * out_line);
    const Index lines = static_cast<Index>(g.n * poh);
#pragma omp parallel for schedule(static)
    for (Index l = 0; l < lines; ++l) {
        const auto t = static_cast<std::size_t>(omp_get_thread_num());
        T* r0 = pairs[t].data();
        T* r1 = r0 + out_line;
        const std::size_t n = static_cast<std::size_t>(l) / poh, py = static_cast<std::size_t>(l) % poh;
        line(t, n * g.oh + 2 * py, r0);
        line(t, n * g.oh + 2 * py + 1, r1);
        const std::size_t o = static_cast<std::size_t>(l) * pooled_line;
        max_pool2x2_line(r0, r1, g.ow, g.f, 2 * py, pool->relu, pool->y + o, pool->argmax ? pool->argmax + o : nullptr);
    }
}

// Each thread's copy of the image its output lines read, remade when the thread moves to
// another image: get(t, n, load) calls load(n, copy) for a new image, which fills the copy's
// inside (its border, the padding, stays zero) and returns what the lines read: the copy, or
// x's own image when nothing needs copying. The copies start zeroed on their own threads.
template <class E>
class ImageCopies {
public:
    explicit ImageCopies(std::size_t size)
        : copies_(per_thread<E>(size)), loaded_(copies_.size(), kFresh), sources_(copies_.size()) {}

    template <class Load>
    const E* get(std::size_t t, std::size_t n, Load load) {
        if (loaded_[t] == kFresh) std::fill_n(copies_[t].data(), copies_[t].size(), E(0));
        if (loaded_[t] != n) {
            sources_[t] = load(n, copies_[t].data());
            loaded_[t] = n;
        }
        return sources_[t];
    }

private:
    static constexpr std::size_t kFresh = SIZE_MAX;  // no image yet, not zeroed
    std::vector<Buffer<E>> copies_;
    std::vector<std::size_t> loaded_;
    std::vector<const E*> sources_;
};

// Image n of x copied inside a zero border of the convolution's padding: rows of
// W + pl + pr pixels, the first at padded row 0.
template <class T>
void copy_padded(const T* x, const ConvGeometry& g, std::size_t n, T* image) {
    const std::size_t wp = g.w + g.pl + g.pr;
    const T* src = x + n * g.h * g.w * g.c;
    for (std::size_t iy = 0; iy < g.h; ++iy)
        std::copy_n(src + iy * g.w * g.c, g.w * g.c, image + ((iy + g.pt) * wp + g.pl) * g.c);
}

// The direct forward's traversal over output_lines: `images` holds each thread's image (see
// ImageCopies; load returns a padded image, or x's own image when there is no padding) with
// `pixel` elements per pixel, `weights` [KH·KW] each tap's weight matrix, and line(thread, the
// taps' row segments, their weights, count, out) is called with the taps on rows of padding
// left out.
template <class E, class T, class Load, class Line>
void direct_lines(const ConvGeometry& g, std::size_t pixel, ImageCopies<E>& images, const E* const* weights, T* y,
                  const LinePool<T>* pool, Load load, Line line) {
    const std::size_t wp = g.w + g.pl + g.pr, taps = g.kh * g.kw;
    auto as = per_thread_lists<E>(taps), bs = per_thread_lists<E>(taps);
    output_lines(g, y, pool, [&](std::size_t t, std::size_t l, T* out) {
        const std::size_t n = l / g.oh, oy = l % g.oh;
        const E* src = images.get(t, n, load);
        const E** a = as[t].data();
        const E** b = bs[t].data();
        std::size_t count = 0;
        for (std::size_t ky = 0; ky < g.kh; ++ky) {
            const std::size_t iy = oy * g.sh + ky * g.dh;  // in padded coordinates
            if (iy < g.pt || iy >= g.pt + g.h) continue;   // a row of zeros
            for (std::size_t kx = 0; kx < g.kw; ++kx, ++count) {
                a[count] = src + (iy * wp + kx * g.dw) * pixel;
                b[count] = weights[ky * g.kw + kx];
            }
        }
        line(a, b, count, out);
    });
}

// y [N, OH, OW, F] = Σ over taps of x's row segment [OW, C] at the tap · w[tap] [C, F], one
// batch-reduce GEMM per output line, finished by the epilogue while the line is in cache. A
// padded convolution first copies the image into a zero-bordered per-thread buffer.
template <class T>
void conv2d_forward_direct(const T* x, const T* w, const Epilogue<T>& e, const ConvGeometry& g, T* y,
                           const LinePool<T>* pool) {
    const bool padded = g.pt + g.pb + g.pl + g.pr > 0;
    const std::size_t wp = g.w + g.pl + g.pr;
    const BatchReduceGemm<T> line_gemm(g.ow, g.f, g.c, g.sw * g.c, g.f, g.f, false);
    ImageCopies<T> images(padded ? (g.h + g.pt + g.pb) * wp * g.c : 0);
    std::vector<const T*> weights(g.kh * g.kw);
    for (std::size_t t = 0; t < weights.size(); ++t) weights[t] = w + t * g.c * g.f;
    const auto load = [&](std::size_t n, T* image) -> const T* {
        if (!padded) return x + n * g.h * g.w * g.c;
        copy_padded(x, g, n, image);
        return image;
    };
    direct_lines(g, g.c, images, weights.data(), y, pool, load,
                 [&](const T* const* a, const T* const* b, std::size_t count, T* out) {
        line_gemm(a, b, count, out);
        finish(e, g.ow, g.f, out);
    });
}

// The same with bf16 products: each thread packs its current image (zero-bordered, channels
// padded to an even count), the weights are packed once per call as pairs along C.
void conv2d_forward_direct_bf16(const float* x, const float* w, const Epilogue<float>& e, const ConvGeometry& g,
                                float* y, const LinePool<float>* pool) {
    const std::size_t c2 = 2 * pairs(g.c);  // bf16 channels per pixel
    const std::size_t wp = g.w + g.pl + g.pr;
    const std::size_t taps = g.kh * g.kw, tap_size = pairs(g.c) * g.f * 2;
    Buffer<bf16> packed_w(taps * tap_size);
    for (std::size_t t = 0; t < taps; ++t)
        pack_pairs_bf16(w + t * g.c * g.f, g.c, g.f, g.f, false, packed_w.data() + t * tap_size);
    std::vector<const bf16*> weights(taps);
    for (std::size_t t = 0; t < taps; ++t) weights[t] = packed_w.data() + t * tap_size;
    ImageCopies<bf16> images((g.h + g.pt + g.pb) * wp * c2);
    const Bf16Level level = bf16_level();
    const auto load = [&](std::size_t n, bf16* image) -> const bf16* {
        for (std::size_t iy = 0; iy < g.h; ++iy)
            pack_rows_bf16(x + (n * g.h + iy) * g.w * g.c, g.w, g.c, g.c, image + ((iy + g.pt) * wp + g.pl) * c2);
        return image;
    };
    direct_lines(g, c2, images, weights.data(), y, pool, load,
                 [&](const bf16* const* a, const bf16* const* b, std::size_t count, float* out) {
        gemm_bf16(g.ow, g.f, pairs(g.c), a, g.sw * c2, b, count, out, g.f, false, level);
        finish(e, g.ow, g.f, out);
    });
}

// The stride-1 scatter of an input gradient, without the dcols matrix: for input row iy and
// kernel column kx, the output pixels whose tap (ky, kx) lands on that row for some ky are
// one output line's run [ox0, ox1), landing on consecutive pixels ix0.., so Σ over those ky of
// dY[line, ox0:ox1] · Wᵀ[tap] is one batch-reduce GEMM into dx. Threads take whole input rows
// (no two write the same pixel).
struct ScatterColumn {  // kernel column kx: its output run and the input pixel of its first
    std::size_t ox0 = 0, ox1 = 0, ix0 = 0;
};

std::vector<ScatterColumn> scatter_columns(const ConvGeometry& g) {
    std::vector<ScatterColumn> columns(g.kw);
    for (std::size_t kx = 0; kx < g.kw; ++kx) {
        // ix = ox + kx·dw - pl must fall in [0, W)
        auto& col = columns[kx];
        const Index shift = static_cast<Index>(kx * g.dw) - static_cast<Index>(g.pl);
        std::tie(col.ox0, col.ox1) = inside(shift, g.ow, g.w);
        col.ix0 = col.ox1 > col.ox0 ? static_cast<std::size_t>(static_cast<Index>(col.ox0) + shift) : 0;
    }
    return columns;
}

// Calls run(thread, output line of each tap, kernel row of each tap, count, kx, column, dx
// pixel offset) for every input row and kernel column with a non-empty run.
template <class Run>
void scatter_rows(const ConvGeometry& g, const std::vector<ScatterColumn>& columns, Run run) {
    assert(g.sh == 1 && g.sw == 1);
    const Index rows = static_cast<Index>(g.n * g.h);
    std::vector<std::vector<std::size_t>> lines(static_cast<std::size_t>(omp_get_max_threads()),
                                                std::vector<std::size_t>(g.kh)),
        kys = lines;
#pragma omp parallel
    {
        const auto t = static_cast<std::size_t>(omp_get_thread_num());
#pragma omp for schedule(static)
        for (Index r = 0; r < rows; ++r) {
            const std::size_t n = static_cast<std::size_t>(r) / g.h, iy = static_cast<std::size_t>(r) % g.h;
            for (std::size_t kx = 0; kx < g.kw; ++kx) {
                const auto& col = columns[kx];
                if (col.ox1 == col.ox0) continue;
                std::size_t count = 0;
                for (std::size_t ky = 0; ky < g.kh; ++ky) {
                    // the output line whose tap ky reads row iy: oy + ky·dh - pt = iy
                    const Index oy = static_cast<Index>(iy + g.pt) - static_cast<Index>(ky * g.dh);
                    if (oy < 0 || oy >= static_cast<Index>(g.oh)) continue;
                    lines[t][count] = n * g.oh + static_cast<std::size_t>(oy);
                    kys[t][count++] = ky;
                }
                run(t, lines[t].data(), kys[t].data(), count, kx, col, ((n * g.h + iy) * g.w + col.ix0) * g.c);
            }
        }
    }
}

// dx [N, H, W, C] += the stride-1 scatter of dY · Wᵀ (scatter_rows) in float32. wt: Wᵀ
// [F, KH·KW·C].
template <class T>
void scatter_direct(const T* gy, const T* wt, const ConvGeometry& g, T* dx) {
    const auto columns = scatter_columns(g);
    std::vector<BatchReduceGemm<T>> gemms;
    gemms.reserve(g.kw);
    for (const auto& col : columns) gemms.emplace_back(col.ox1 - col.ox0, g.c, g.f, g.f, g.patch(), g.c, true);
    auto as = per_thread_lists<T>(g.kh), bs = per_thread_lists<T>(g.kh);
    scatter_rows(g, columns, [&](std::size_t t, const std::size_t* lines, const std::size_t* kys, std::size_t count,
                                 std::size_t kx, const ScatterColumn& col, std::size_t pixel) {
        for (std::size_t i = 0; i < count; ++i) {
            as[t][i] = gy + (lines[i] * g.ow + col.ox0) * g.f;
            bs[t][i] = wt + (kys[i] * g.kw + kx) * g.c;
        }
        gemms[kx](as[t].data(), bs[t].data(), count, dx + pixel);
    });
}

// The same with bf16 products: dY packed once (rows of pairs along F), Wᵀ per tap as pairs
// along F.
void scatter_direct_bf16(const float* gy, const float* w, const ConvGeometry& g, float* dx) {
    const std::size_t f2 = 2 * pairs(g.f), taps = g.kh * g.kw, tap_size = pairs(g.f) * g.c * 2;
    Buffer<bf16> packed_gy(g.n * g.oh * g.ow * f2), packed_wt(taps * tap_size);
#pragma omp parallel for schedule(static)
    for (Index line = 0; line < static_cast<Index>(g.n * g.oh); ++line)
        pack_rows_bf16(gy + static_cast<std::size_t>(line) * g.ow * g.f, g.ow, g.f, g.f,
                       packed_gy.data() + static_cast<std::size_t>(line) * g.ow * f2);
    // Wᵀ[tap] [F, C] is w[tap] [C, F] transposed
    for (std::size_t t = 0; t < taps; ++t)
        pack_pairs_bf16(w + t * g.c * g.f, g.f, g.c, g.f, true, packed_wt.data() + t * tap_size);
    auto as = per_thread_lists<bf16>(g.kh), bs = per_thread_lists<bf16>(g.kh);
    const Bf16Level level = bf16_level();
    scatter_rows(g, scatter_columns(g), [&](std::size_t t, const std::size_t* lines, const std::size_t* kys,
                                            std::size_t count, std::size_t kx, const ScatterColumn& col,
                                            std::size_t pixel) {
        for (std::size_t i = 0; i < count; ++i) {
            as[t][i] = packed_gy.data() + (lines[i] * g.ow + col.ox0) * f2;
            bs[t][i] = packed_wt.data() + (kys[i] * g.kw + kx) * tap_size;
        }
        gemm_bf16(col.ox1 - col.ox0, g.c, pairs(g.f), as[t].data(), f2, bs[t].data(), count, dx + pixel, g.c, true,
                  level);
    });
}

// The strided input gradient without the dcols matrix. Input pixels split into classes by
// their position modulo the stride: the pixels ix0, ix0 + sw, .. of a row receive the kernel
// columns kx with kx·dw ≡ ix0 + pl (mod sw), each from consecutive dY pixels (one further for
// each stride), and likewise for rows. So for each input row and column class, Σ over the
// class's taps of a run of dY · Wᵀ[tap] is one batch-reduce GEMM into every sw-th pixel of the
// row (ldc = sw·C), reading dY's image copied between columns of zeros wide enough that every
// tap's run lies inside it. Threads take whole input rows. wt: Wᵀ [F, KH·KW·C].
template <class T>
void scatter_strided(const T* gy, const T* wt, const ConvGeometry& g, T* dx) {
    struct Tap {
        std::size_t kx;
        Index first;  // the dY column of the class's first pixel
    };
    struct ColumnClass {
        std::size_t ix0, m;  // first input column, pixels in the class
        std::vector<Tap> taps;
    };
    const auto sh = static_cast<Index>(g.sh), sw = static_cast<Index>(g.sw);
    std::vector<ColumnClass> classes;
    Index left = 0, right = 0;  // dY columns of zeros the runs need on each side
    for (std::size_t ix0 = 0; ix0 < std::min(g.sw, g.w); ++ix0) {
        ColumnClass cc{ix0, (g.w - ix0 + g.sw - 1) / g.sw, {}};
        for (std::size_t kx = 0; kx < g.kw; ++kx) {
            const Index v = static_cast<Index>(ix0 + g.pl) - static_cast<Index>(kx * g.dw);  // sw·ox
            if (((v % sw) + sw) % sw != 0) continue;
            const Index first = v / sw;  // exact: may be negative
            const auto m = static_cast<Index>(cc.m);
            if (first + m <= 0 || first >= static_cast<Index>(g.ow)) continue;  // the whole run in padding
            left = std::max(left, -first);
            right = std::max(right, first + m - static_cast<Index>(g.ow));
            cc.taps.push_back({kx, first});
        }
        classes.push_back(std::move(cc));
    }
    const std::size_t owp = g.ow + static_cast<std::size_t>(left + right);
    std::vector<BatchReduceGemm<T>> gemms;
    gemms.reserve(classes.size());
    for (const auto& cc : classes) gemms.emplace_back(cc.m, g.c, g.f, g.f, g.patch(), g.sw * g.c, true);
    const bool padded = left + right > 0;
    ImageCopies<T> images(padded ? g.oh * owp * g.f : 0);
    const auto load = [&](std::size_t n, T* image) -> const T* {
        const T* src = gy + n * g.oh * g.ow * g.f;
        if (!padded) return src;
        for (std::size_t oy = 0; oy < g.oh; ++oy)
            std::copy_n(src + oy * g.ow * g.f, g.ow * g.f, image + (oy * owp + static_cast<std::size_t>(left)) * g.f);
        return image;
    };
    auto as = per_thread_lists<T>(g.kh * g.kw), bs = per_thread_lists<T>(g.kh * g.kw);
    const Index rows = static_cast<Index>(g.n * g.h);
#pragma omp parallel
    {
        const auto t = static_cast<std::size_t>(omp_get_thread_num());
#pragma omp for schedule(static)
        for (Index r = 0; r < rows; ++r) {
            const std::size_t n = static_cast<std::size_t>(r) / g.h, iy = static_cast<std::size_t>(r) % g.h;
            const T* image = images.get(t, n, load);
            for (std::size_t ci = 0; ci < classes.size(); ++ci) {
                const auto& cc = classes[ci];
                std::size_t count = 0;
                for (std::size_t ky = 0; ky < g.kh; ++ky) {
                    const Index v = static_cast<Index>(iy + g.pt) - static_cast<Index>(ky * g.dh);  // sh·oy
                    if (v < 0 || v % sh != 0 || v / sh >= static_cast<Index>(g.oh)) continue;
                    const auto oy = static_cast<std::size_t>(v / sh);
                    for (const auto& tap : cc.taps) {
                        as[t][count] = image + (oy * owp + static_cast<std::size_t>(tap.first + left)) * g.f;
                        bs[t][count++] = wt + (ky * g.kw + tap.kx) * g.c;
                    }
                }
                gemms[ci](as[t].data(), bs[t].data(), count, dx + ((n * g.h + iy) * g.w + cc.ix0) * g.c);
            }
        }
    }
}

// One chunk's share of a direct conv's weight gradient with bf16 products, images
// [first, last): dY's rows packed once as pairs of rows; the chunk's images rounded to bf16
// once into zero-bordered copies (`images`, scratch for them), from which each kernel row's
// img2col columns are built straight into pairs of rows, the two pixels' runs interleaved:
// partial [KH, KW·C, F] += colsᵀ · dY. (Building the pairs from x rounded and range-checked
// every value once per tap, 6.6% of a bf16 W1 step.)
void weight_grad_direct_bf16(const float* x, const float* gy, const ConvGeometry& g, std::size_t first,
                             std::size_t last, float* partial, Bf16Scratch& s, bf16* images) {
    const std::size_t rows = (last - first) * g.oh * g.ow, p = pairs(rows), m = g.kw * g.c;
    const std::size_t wp = g.w + g.pl + g.pr, image_size = (g.h + g.pt + g.pb) * wp * g.c;
    pack_pairs_bf16(gy + first * g.oh * g.ow * g.f, rows, g.f, g.f, false, s.b.data());
    std::fill_n(images, (last - first) * image_size, bf16(0));
    for (std::size_t n = first; n < last; ++n)
        for (std::size_t iy = 0; iy < g.h; ++iy) {
            const float* src = x + (n * g.h + iy) * g.w * g.c;
            bf16* dst = images + (n - first) * image_size + ((iy + g.pt) * wp + g.pl) * g.c;
            for (std::size_t j = 0; j < g.w * g.c; ++j) dst[j] = to_bf16(src[j]);
        }
    for (std::size_t ky = 0; ky < g.kh; ++ky) {
        // pixel (image, oy, ox) of the chunk, advanced one at a time
        std::size_t n = 0, oy = 0, ox = 0;
        const auto next = [&]() -> const bf16* {
            const bf16* at = images + n * image_size + ((oy * g.sh + ky * g.dh) * wp + ox * g.sw) * g.c;
            if (++ox == g.ow) {
                ox = 0;
                if (++oy == g.oh) oy = 0, ++n;
            }
            return at;
        };
        for (std::size_t q = 0; q < p; ++q) {
            const bf16* r0 = next();
            const bool second = 2 * q + 1 < rows;  // an odd chunk's last pair has one pixel
            const bf16* r1 = second ? next() : r0;
            const bf16 keep = second ? bf16(0xffff) : bf16(0);
            bf16* __restrict out = s.a.data() + q * m * 2;
            for (std::size_t kx = 0; kx < g.kw; ++kx) {
                const bf16* __restrict a = r0 + kx * g.dw * g.c;
                const bf16* __restrict b = r1 + kx * g.dw * g.c;
                bf16* __restrict dst = out + kx * g.c * 2;
                for (std::size_t c = 0; c < g.c; ++c) {
                    dst[2 * c] = a[c];
                    dst[2 * c + 1] = static_cast<bf16>(b[c] & keep);
                }
            }
        }
        const bf16* a = s.a.data();
        const bf16* b = s.b.data();
        gemm_bf16(m, g.f, p, &a, 2, &b, 1, partial + ky * m * g.f, g.f, true, bf16_level(), 2 * m);
    }
}

}  // namespace

template <class T>
void img2col(const T* x, const ConvGeometry& g, std::size_t group, T* cols) {
    const Index lines = static_cast<Index>(g.n * g.oh);
#pragma omp parallel for schedule(static)
    for (Index line = 0; line < lines; ++line)
        img2col_lines(x, g, group, static_cast<std::size_t>(line), static_cast<std::size_t>(line) + 1, 0, g.kh,
                      cols + static_cast<std::size_t>(line) * g.ow * g.patch());
}

template <class T>
void col2img(const T* cols, const ConvGeometry& g, std::size_t group, T* dx) {
    // Windows overlap within an image, never across images: one image per thread.
#pragma omp parallel for schedule(static)
    for (Index n = 0; n < static_cast<Index>(g.n); ++n)
        col2img_images(cols + static_cast<std::size_t>(n) * g.oh * g.ow * g.patch(), g, group,
                       static_cast<std::size_t>(n), static_cast<std::size_t>(n) + 1, dx);
}

namespace {

// Calls f(row of w, x there) for every kernel tap and input channel of output pixel
// (n, oy, ox) that falls inside the image (taps in the padding read zero); the row of
// w [KH·KW·C, F] is (ky·KW + kx)·C + c. One group only.
template <class T, class F>
inline void for_each_tap(const T* x, const ConvGeometry& g, std::size_t n, std::size_t oy, std::size_t ox, F f) {
    for (std::size_t ky = 0; ky < g.kh; ++ky) {
        const Index iy = source(oy, ky, g.sh, g.dh, g.pt, g.h);
        if (iy < 0) continue;
        for (std::size_t kx = 0; kx < g.kw; ++kx) {
            const Index ix = source(ox, kx, g.sw, g.dw, g.pl, g.w);
            if (ix < 0) continue;
            const T* px = x + ((n * g.h + static_cast<std::size_t>(iy)) * g.w + static_cast<std::size_t>(ix)) * g.c;
            for (std::size_t c = 0; c < g.c; ++c) f((ky * g.kw + kx) * g.c + c, px[c]);
        }
    }
}

// The image a few-channel forward line reads: rows of `width` pixels of kC channels, the first
// at padded row `top` (0 for a copy with the padding in it; pt for x's own image, whose rows
// of padding are not stored), and one row of zeros read for the rows of padding.
template <class T>
struct Rows {
    const T* image;
    std::size_t width, top;
    const T* zeros;
};

// Output pixels [ox0, ox0 + kPixels) of line oy, filters [f0, f0 + kV vectors): the sums stay
// in registers over every tap and channel, each input value broadcast once for the kV vectors
// of weights. Every tap along a row lies inside the image's width (its columns of padding are
// in the copy).
// k3: the kernel is 3x3 with stride and dilation 1 along the row (the usual first layer),
// known at compile time, so that the tap loops unroll: with run-time loops the block's setup
// cost as much as its 126 multiply-adds (conv A's forward at 2 threads 0.22 -> 0.13 ms).
template <std::size_t kPixels, std::size_t kC, std::size_t kV, bool k3, class T>
inline void few_channels_block(const Rows<T>& in, const T* w, const Epilogue<T>& e, const ConvGeometry& g,
                               std::size_t oy, std::size_t ox0, std::size_t f0, T* line) {
    using Vec = typename Vector<T>::type;
    constexpr std::size_t kLanes = sizeof(Vec) / sizeof(T);
    const std::size_t kh = k3 ? 3 : g.kh, kw = k3 ? 3 : g.kw, sw = k3 ? 1 : g.sw, dw = k3 ? 1 : g.dw;
    Vec acc[kPixels][kV];
    for (std::size_t v = 0; v < kV; ++v) {
        Vec init{};
        if (e.bias) std::memcpy(&init, e.bias + f0 + v * kLanes, sizeof(Vec));
        for (std::size_t p = 0; p < kPixels; ++p) acc[p][v] = init;
    }
    const std::size_t step = sw * kC;  // from one output pixel's tap to the next's
    // No branch on the rows of padding (they read the row of zeros): with k3 the 27 taps
    // and channels are straight-line code, the sums never leave the registers (skipping the
    // rows spilled some, and cost 21% of conv C's forward outside the multiply-adds).
#pragma GCC unroll 3
    for (std::size_t ky = 0; ky < kh; ++ky) {
        const std::size_t iy = oy * g.sh + ky * g.dh;  // in padded coordinates
        const T* row = iy < g.pt || iy >= g.pt + g.h ? in.zeros : in.image + (iy - in.top) * in.width * kC;
#pragma GCC unroll 3
        for (std::size_t kx = 0; kx < kw; ++kx) {
            const T* px = row + (ox0 * sw + kx * dw) * kC;
            for (std::size_t c = 0; c < kC; ++c) {
                Vec wk[kV];
                const T* wrow = w + ((ky * kw + kx) * kC + c) * g.f + f0;
                for (std::size_t v = 0; v < kV; ++v) std::memcpy(&wk[v], wrow + v * kLanes, sizeof(Vec));
                for (std::size_t p = 0; p < kPixels; ++p) {
                    const T xv = px[p * step + c];
                    for (std::size_t v = 0; v < kV; ++v) acc[p][v] += xv * wk[v];
                }
            }
        }
    }
    const bool relu = e.relu;  // (read once: the stores below may alias e)
    for (std::size_t p = 0; p < kPixels; ++p)
        for (std::size_t v = 0; v < kV; ++v) {
            if (relu) acc[p][v] = acc[p][v] <= T(0) ? Vec{} : acc[p][v];  // NaN passes, as relu()
            std::memcpy(line + (ox0 + p) * g.f + f0 + v * kLanes, &acc[p][v], sizeof(Vec));
        }
}

// few_channels_block for the channel count, known at compile time.
template <std::size_t kPixels, std::size_t kV, class T>
inline void few_channels_any(const Rows<T>& in, const T* w, const Epilogue<T>& e, const ConvGeometry& g,
                             std::size_t oy, std::size_t ox0, std::size_t f0, T* line) {
    if (g.kh == 3 && g.kw == 3 && g.sw == 1 && g.dw == 1) {
        switch (g.c) {
            case 1: return few_channels_block<kPixels, 1, kV, true>(in, w, e, g, oy, ox0, f0, line);
            case 3: return few_channels_block<kPixels, 3, kV, true>(in, w, e, g, oy, ox0, f0, line);
            default: break;
        }
    }
    switch (g.c) {
        case 1: return few_channels_block<kPixels, 1, kV, false>(in, w, e, g, oy, ox0, f0, line);
        case 2: return few_channels_block<kPixels, 2, kV, false>(in, w, e, g, oy, ox0, f0, line);
        case 3: return few_channels_block<kPixels, 3, kV, false>(in, w, e, g, oy, ox0, f0, line);
        default: return few_channels_block<kPixels, 4, kV, false>(in, w, e, g, oy, ox0, f0, line);
    }
}

// The line's pixels in blocks of kPixels (the last block ends at OW: it may recompute, to the
// same values, pixels of the block before), two vectors of filters at a time (one broadcast of
// x feeds both), then one.
template <std::size_t kPixels, class T>
void few_channels_blocks(const Rows<T>& in, const T* w, const Epilogue<T>& e, const ConvGeometry& g, std::size_t oy,
                         T* line) {
    constexpr std::size_t kLanes = 64 / sizeof(T);
    for (std::size_t ox = 0; ox < g.ow; ox += kPixels) {
        const std::size_t ox0 = std::min(ox, g.ow - kPixels);
        std::size_t f0 = 0;
        for (; f0 + 2 * kLanes <= g.f; f0 += 2 * kLanes) few_channels_any<kPixels, 2>(in, w, e, g, oy, ox0, f0, line);
        if (f0 < g.f) few_channels_any<kPixels, 1>(in, w, e, g, oy, ox0, f0, line);
    }
}

// Output line `line` (n·OH + oy) of conv2d_forward_few_channels into out_line [OW, F], from
// image n as `in` holds it (x for filters that fill no whole vector: one pixel at a time).
template <class T>
void few_channels_line(const Rows<T>& in, const T* x, const T* w, const Epilogue<T>& e, const ConvGeometry& g,
                       std::size_t line, T* out_line) {
    const std::size_t n = line / g.oh, oy = line % g.oh;
    if (g.f % (64 / sizeof(T)) != 0) {
        for (std::size_t ox = 0; ox < g.ow; ++ox) {
            T* __restrict out = out_line + ox * g.f;
            for (std::size_t f = 0; f < g.f; ++f) out[f] = e.bias ? e.bias[f] : T(0);
            for_each_tap(x, g, n, oy, ox, [&](std::size_t row, T v) {
                const T* __restrict wk = w + row * g.f;
                for (std::size_t f = 0; f < g.f; ++f) out[f] += v * wk[f];
            });
            if (e.relu)
                for (std::size_t f = 0; f < g.f; ++f) out[f] = !(out[f] <= T(0)) ? out[f] : T(0);
        }
        return;
    }
    // Blocks of 8 pixels, or 7 where they tile the line (W1's 28 columns), or single pixels
    // on lines narrower than that.
    if (g.ow % 8 == 0 || (g.ow > 8 && g.ow % 7 != 0))
        few_channels_blocks<8>(in, w, e, g, oy, out_line);
    else if (g.ow >= 7)
        few_channels_blocks<7>(in, w, e, g, oy, out_line);
    else
        few_channels_blocks<1>(in, w, e, g, oy, out_line);
}

// y = conv(x, w) for a few input channels (one group), finished by the epilogue: inner
// dimension KH·KW·C is too short for img2col + GEMM (conv A, one channel: 0.93 ms through
// libxsmm at 2 threads, 0.38 ms here). With columns of padding, each thread reads a copy of
// its image inside a zero border, so that no block of pixels has a tap outside its row.
template <class T>
void conv2d_forward_few_channels(const T* x, const T* w, const Epilogue<T>& e, const ConvGeometry& g, T* y,
                                 const LinePool<T>* pool) {
    const bool copy = g.pl + g.pr > 0 && g.f % (64 / sizeof(T)) == 0;
    const std::size_t wp = g.w + g.pl + g.pr;
    ImageCopies<T> images(copy ? (g.h + g.pt + g.pb) * wp * g.c : 0);
    Buffer<T> zeros(wp * g.c);
    std::fill_n(zeros.data(), zeros.size(), T(0));
    output_lines(g, y, pool, [&](std::size_t t, std::size_t line, T* out) {
        const std::size_t n = line / g.oh;
        Rows<T> in{x + n * g.h * g.w * g.c, g.w, g.pt, zeros.data()};
        if (copy)
            in = {images.get(t, n, [&](std::size_t, T* image) {
                      copy_padded(x, g, n, image);
                      return image;
                  }),
                  wp, 0, zeros.data()};
        few_channels_line(in, x, w, e, g, line, out);
    });
}

// dw [KH, KW, 1, F] += Σ over N, OH, OW of x at each tap · dY, accumulated per thread.
template <class T>
void conv2d_backward_weight_single_channel(const T* x, const T* gy, const ConvGeometry& g, T* dw) {
    const std::size_t taps = g.kh * g.kw;
    const Index lines = static_cast<Index>(g.n * g.oh);
    accumulate_per_thread(taps * g.f, dw, [&](T* partial) {
#pragma omp for schedule(static) nowait
        for (Index line = 0; line < lines; ++line) {
            const std::size_t n = static_cast<std::size_t>(line) / g.oh, oy = static_cast<std::size_t>(line) % g.oh;
            for (std::size_t ox = 0; ox < g.ow; ++ox) {
                const T* __restrict grad = gy + ((n * g.oh + oy) * g.ow + ox) * g.f;
                for_each_tap(x, g, n, oy, ox, [&](std::size_t tap, T v) {
                    T* __restrict acc = partial + tap * g.f;
                    for (std::size_t f = 0; f < g.f; ++f) acc[f] += v * grad[f];
                });
            }
        }
    });
}

// v rounded to bf16, lane by lane, as round_bf16(float) does (ties to even, NaN kept quiet).
inline Vector<float>::type round_lanes_bf16(Vector<float>::type v) {
    typedef std::uint32_t Bits __attribute__((vector_size(64)));
    Bits u;
    std::memcpy(&u, &v, sizeof u);
    const Bits nearest = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    const Bits quiet_nan = (u | 0x00400000u) & 0xffff0000u;
    const Bits r = (u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : nearest;
    std::memcpy(&v, &r, sizeof v);
    return v;
}

// Whether the few-channel 3x3 kernels serve g (weight_grad_few_channels, and at stride 1
// input_grad_few_channels): a 3x3 kernel over at most 3 channels (the weight gradient's 9·C
// sums fit the registers), filters in whole vectors.
template <class T>
bool few_channels_3x3(const ConvGeometry& g) {
    return g.few_channels() && g.c <= 3 && g.kh == 3 && g.kw == 3 && g.f % (64 / sizeof(T)) == 0;
}

// dw [9·C, F] += Σ over N, OH, OW of x at each tap · dY for a 3x3 kernel over kC channels,
// per thread. For each output line and vector of filters, the 9·kC sums stay in registers
// over the line's pixels (dY read once per pixel, x from cache; taps in the padding skipped
// at the edges only). No img2col: W1's first layer spent as long building and rounding its
// columns as multiplying them. kRound rounds dY to bf16 as it is read (the bf16 mode, whose
// caller passes x rounded): the same values as rounded copies.
template <std::size_t kC, bool kRound, class T>
void weight_grad_few_channels(const T* x, const T* gy, const ConvGeometry& g, T* dw) {
    using Vec = typename Vector<T>::type;
    constexpr std::size_t kLanes = 64 / sizeof(T), kRows = 9 * kC, kAhead = 16;
    const Index h = static_cast<Index>(g.h), w = static_cast<Index>(g.w);
    const Index lines = static_cast<Index>(g.n * g.oh);
    accumulate_per_thread(kRows * g.f, dw, [&](T* partial) {
#pragma omp for schedule(static) nowait
        for (Index line = 0; line < lines; ++line) {
            const std::size_t n = static_cast<std::size_t>(line) / g.oh, oy = static_cast<std::size_t>(line) % g.oh;
            const T* image = x + n * g.h * g.w * kC;
            const Index iy0 = static_cast<Index>(oy * g.sh) - static_cast<Index>(g.pt);
            for (std::size_t f0 = 0; f0 < g.f; f0 += kLanes) {
                Vec acc[kRows] = {};
                for (std::size_t ox = 0; ox < g.ow; ++ox) {
                    const T* grad = gy + (static_cast<std::size_t>(line) * g.ow + ox) * g.f;
                    // The first pass over the line brings in all of dY's pixels, a few ahead:
                    // on its own the read waited on memory for a third of conv C's dW.
                    if (f0 == 0)
                        for (std::size_t f = 0; f < g.f; f += kLanes) __builtin_prefetch(grad + kAhead * g.f + f);
                    Vec gv;
                    std::memcpy(&gv, grad + f0, sizeof gv);
                    if constexpr (kRound) gv = round_lanes_bf16(gv);
                    const Index ix0 = static_cast<Index>(ox * g.sw) - static_cast<Index>(g.pl);
                    // Straight-line code either way, so that the sums stay in registers: inside
                    // the image every tap is read; at the edges a tap in the padding reads 0
                    // (from a clamped address).
                    const bool interior = iy0 >= 0 && iy0 + static_cast<Index>(2 * g.dh) < h && ix0 >= 0 &&
                                          ix0 + static_cast<Index>(2 * g.dw) < w;
                    auto taps = [&](auto edge) {
#pragma GCC unroll 3
                        for (std::size_t ky = 0; ky < 3; ++ky) {
                            const Index iy = iy0 + static_cast<Index>(ky * g.dh);
#pragma GCC unroll 3
                            for (std::size_t kx = 0; kx < 3; ++kx) {
                                const Index ix = ix0 + static_cast<Index>(kx * g.dw);
                                const bool in = !edge || (iy >= 0 && iy < h && ix >= 0 && ix < w);
                                const std::size_t at =
                                    edge ? static_cast<std::size_t>(std::clamp<Index>(iy, 0, h - 1) * w +
                                                                    std::clamp<Index>(ix, 0, w - 1))
                                         : static_cast<std::size_t>(iy * w + ix);
#pragma GCC unroll 3
                                for (std::size_t c = 0; c < kC; ++c) {
                                    const T v = image[at * kC + c];
                                    acc[(ky * 3 + kx) * kC + c] += (in ? v : T(0)) * gv;
                                }
                            }
                        }
                    };
                    if (interior)
                        taps(std::false_type{});
                    else
                        taps(std::true_type{});
                }
                for (std::size_t r = 0; r < kRows; ++r) {
                    T* __restrict out = partial + r * g.f + f0;
                    for (std::size_t l = 0; l < kLanes; ++l) out[l] += acc[r][l];
                }
            }
        }
    });
}

// The sum of v's lanes, halving the vector each step (the same order on every run).
template <class T, std::size_t kBytes>
inline T sum_lanes(const T* v) {
    if constexpr (kBytes == sizeof(T)) {
        return v[0];
    } else {
        typedef T Half __attribute__((vector_size(kBytes / 2)));
        Half a, b;
        std::memcpy(&a, v, sizeof a);
        std::memcpy(&b, v + kBytes / 2 / sizeof(T), sizeof b);
        const Half h = a + b;
        return sum_lanes<T, kBytes / 2>(reinterpret_cast<const T*>(&h));
    }
}

// dx [N, H, W, kC] = Σ over the 3x3 taps of dY at the output pixel the tap reads each input
// pixel from, times w [tap, c, :], at stride 1: a gather per input pixel and channel, its
// sums over the filters in vectors, each dx value written once. Blocks of kP pixels along a
// line share each vector of weights (one load for kP multiply-adds). No dcols and no
// scatter: conv A's dx (64x28x28x1 -> 32 at 2 threads) took 1.35 ms as dY · Wᵀ and col2img.
// kRound rounds dY to bf16 as it is read, the caller passing w rounded (the bf16 mode).
template <std::size_t kP, std::size_t kC, bool kRound, class T>
void input_grad_few_channels_block(const T* image, const T* w, const ConvGeometry& g, Index oy0, Index ox0,
                                   T* out) {
    using Vec = typename Vector<T>::type;
    constexpr std::size_t kLanes = 64 / sizeof(T);
    const Index oh = static_cast<Index>(g.oh), ow = static_cast<Index>(g.ow);
    const Index dh = static_cast<Index>(g.dh), dw = static_cast<Index>(g.dw);
    // tap (ky, kx) reads pixel p of the block for the output (oy0 - ky·dh, ox0 + p - kx·dw)
    const bool interior = oy0 - 2 * dh >= 0 && oy0 < oh && ox0 - 2 * dw >= 0 && ox0 + Index{kP} - 1 < ow;
    Vec acc[kP][kC] = {};
    // Straight-line code either way (as in weight_grad_few_channels): at the edges a tap
    // outside dY reads zero from a clamped address.
    auto taps = [&](auto edge) {
        for (std::size_t f0 = 0; f0 < g.f; f0 += kLanes) {
#pragma GCC unroll 3
            for (std::size_t ky = 0; ky < 3; ++ky) {
                const Index oy = oy0 - static_cast<Index>(ky) * dh;
                const bool row_in = !edge || (oy >= 0 && oy < oh);
                const Index row = edge ? std::clamp<Index>(oy, 0, oh - 1) : oy;
#pragma GCC unroll 3
                for (std::size_t kx = 0; kx < 3; ++kx) {
                    Vec wv[kC];
                    for (std::size_t c = 0; c < kC; ++c)
                        std::memcpy(&wv[c], w + ((ky * 3 + kx) * kC + c) * g.f + f0, sizeof(Vec));
#pragma GCC unroll 8
                    for (std::size_t p = 0; p < kP; ++p) {
                        const Index ox = ox0 + static_cast<Index>(p) - static_cast<Index>(kx) * dw;
                        const bool in = row_in && (!edge || (ox >= 0 && ox < ow));
                        const Index col = edge ? std::clamp<Index>(ox, 0, ow - 1) : ox;
                        Vec gv;
                        std::memcpy(&gv, image + static_cast<std::size_t>(row * ow + col) * g.f + f0, sizeof gv);
                        if constexpr (kRound) gv = round_lanes_bf16(gv);
                        if (!in) gv = Vec{};
                        for (std::size_t c = 0; c < kC; ++c) acc[p][c] += gv * wv[c];
                    }
                }
            }
        }
    };
    if (interior)
        taps(std::false_type{});
    else
        taps(std::true_type{});
    for (std::size_t p = 0; p < kP; ++p)
        for (std::size_t c = 0; c < kC; ++c) out[p * kC + c] = sum_lanes<T, sizeof(Vec)>(reinterpret_cast<const T*>(&acc[p][c]));
}

// Every line of dx in blocks of kP pixels (the last block ends at W: it may write again, with
// the same values, pixels of the block before), or pixel by pixel on lines narrower than that.
template <std::size_t kC, bool kRound, class T>
void input_grad_few_channels(const T* gy, const T* w, const ConvGeometry& g, T* dx) {
    constexpr std::size_t kP = kC == 1 ? 8 : 4;  // sums in registers: 8 or 12 (kC 3) vectors
    const Index lines = static_cast<Index>(g.n * g.h);
#pragma omp parallel for schedule(static)
    for (Index line = 0; line < lines; ++line) {
        const std::size_t n = static_cast<std::size_t>(line) / g.h;
        const T* image = gy + n * g.oh * g.ow * g.f;
        const Index oy0 = static_cast<Index>(static_cast<std::size_t>(line) % g.h + g.pt);
        T* out = dx + static_cast<std::size_t>(line) * g.w * kC;
        if (g.w < kP) {
            for (std::size_t ix = 0; ix < g.w; ++ix)
                input_grad_few_channels_block<1, kC, kRound>(image, w, g, oy0, static_cast<Index>(ix + g.pl),
                                                               out + ix * kC);
            continue;
        }
        for (std::size_t ix = 0; ix < g.w; ix += kP) {
            const std::size_t ix0 = std::min(ix, g.w - kP);
            input_grad_few_channels_block<kP, kC, kRound>(image, w, g, oy0, static_cast<Index>(ix0 + g.pl),
                                                            out + ix0 * kC);
        }
    }
}

// Runs body.template operator()<kC, kRound>() with g.c (1 to 3) known at compile time, and
// kRound = round (bf16 rounding of dY, float32 only).
template <class T, class Body>
void by_few_channels(std::size_t c, bool round, Body body) {
    const auto with = [&]<bool kRound>() {
        switch (c) {
            case 1: return body.template operator()<1, kRound>();
            case 2: return body.template operator()<2, kRound>();
            default: return body.template operator()<3, kRound>();
        }
    };
    if constexpr (std::is_same_v<T, float>) {
        if (round) return with.template operator()<true>();
    }
    with.template operator()<false>();
}

// input_grad_few_channels, w rounded to bf16 first when `round`.
template <class T>
void conv2d_backward_input_few_channels(const T* gy, const T* w, const ConvGeometry& g, T* dx, bool round) {
    Buffer<T> w_bf16;
    if constexpr (std::is_same_v<T, float>) {
        if (round) w = rounded(w, 9 * g.c * g.f, w_bf16);
    }
    by_few_channels<T>(g.c, round, [&]<std::size_t kC, bool kRound>() {
        input_grad_few_channels<kC, kRound>(gy, w, g, dx);
    });
}

// weight_grad_few_channels, x rounded to bf16 first when `round` (a few channels: small).
template <class T>
void conv2d_backward_weight_few_channels(const T* x, const T* gy, const ConvGeometry& g, T* dw, bool round) {
    Buffer<T> x_bf16;
    if constexpr (std::is_same_v<T, float>) {
        if (round) x = rounded(x, g.n * g.h * g.w * g.c, x_bf16);
    }
    by_few_channels<T>(g.c, round, [&]<std::size_t kC, bool kRound>() {
        weight_grad_few_channels<kC, kRound>(x, gy, g, dw);
    });
}

}  // namespace

namespace {

// The usual pool: 2x2, stride 2, unpadded (each window is a pair of lines' pixel pair).
bool pools_pairs(const PoolGeometry& pool) {
    return pool.kh == 2 && pool.kw == 2 && pool.sh == 2 && pool.sw == 2 && pool.ph == 0 && pool.pw == 0;
}

// Whether forward() can pool the convolution's lines as it makes them (LinePool).
template <class T>
bool pools_lines(const ConvGeometry& g, const PoolGeometry& pool) {
    return pools_pairs(pool) && (g.few_channels() || direct<T>(g));
}

// conv2d_forward, its output lines pooled when `pool` is not null (then y is unused, and the
// path must be one pools_lines() accepts).
template <class T>
void forward(const T* x, const T* w, Epilogue<T> e, const ConvGeometry& g, T* y, Buffer<T>& cols, bool keep_cols,
             bool use_bf16, const LinePool<T>* pool) {
    use_bf16 = use_bf16 && std::is_same_v<T, float>;
    // Winograd's products are not the bf16 products of the numerics contract: float32 only.
    if (!use_bf16 && !pool && winograd<T>(g) && conv2d_forward_winograd(x, w, e, g, y)) {
        cols = Buffer<T>();
        return;
    }
    Buffer<T> x_bf16, w_bf16;
    if (use_bf16 && !(bf16_level() != Bf16Level::portable && !g.few_channels() && (direct<T>(g) || batch_split<T>(g)))) {
        x = rounded(x, g.n * g.h * g.w * g.c, x_bf16);
        w = rounded(w, g.kh * g.kw * g.cg() * g.f, w_bf16);
        use_bf16 = false;  // float32 kernels on bf16 values
    }
    const std::size_t rows = g.rows(), patch = g.patch(), fg = g.fg();
    cols = Buffer<T>();
    if (g.no_products()) {  // an empty output, or (no input channels) the bias and relu alone
        assert(!pool);
        std::fill_n(y, rows * g.f, T(0));
        finish_all(e, g, y);
        return;
    }
    if (g.few_channels()) {  // the weight gradient builds its img2col columns itself
        conv2d_forward_few_channels(x, w, e, g, y, pool);
        return;
    }
    if (g.pointwise()) {
        // y [N·H·W, F] = x [N·H·W, C] · w [C, F]
        gemm<T>(false, false, rows, g.f, g.c, 1, x, g.c, w, g.f, 0, y, g.f);
        finish_all(e, g, y);
        return;
    }
    if (direct<T>(g)) {
        // the weight gradient rebuilds img2col, a kernel row at a time
        if constexpr (std::is_same_v<T, float>) {
            if (use_bf16) return conv2d_forward_direct_bf16(x, w, e, g, y, pool);
        }
        conv2d_forward_direct(x, w, e, g, y, pool);
        return;
    }
    if (batch_split<T>(g)) {
        const Chunks chunks(g);
        // The whole batch's columns when the weight gradient will read them; a chunk's in a
        // per-thread buffer otherwise.
        if (keep_cols) cols = Buffer<T>(rows * patch);
        auto scratch = per_thread<T>(keep_cols ? 0 : chunks.images * chunks.per_image * patch);
        auto packed = bf16_scratch(use_bf16, chunks.images * chunks.per_image, 0, patch);
        Buffer<bf16> packed_w(use_bf16 ? pairs(patch) * g.f * 2 : 0);
        if constexpr (std::is_same_v<T, float>) {
            if (use_bf16) pack_pairs_bf16(w, patch, g.f, g.f, false, packed_w.data());
        }
#pragma omp parallel for schedule(static)
        for (Index i = 0; i < static_cast<Index>(chunks.count); ++i) {
            const auto k = chunks[i];
            const auto t = static_cast<std::size_t>(omp_get_thread_num());
            T* c = keep_cols ? cols.data() + k.row * patch : scratch[t].data();
            img2col_lines(x, g, 0, k.first * g.oh, k.last * g.oh, 0, g.kh, c);
            thread_product<T>(use_bf16, packed[t], false, k.rows, g.f, patch, c, patch, w, g.f, 0, y + k.row * g.f, g.f,
                              packed_w.data());
            finish(e, k.rows, g.f, y + k.row * g.f);
        }
        return;
    }
    Buffer<T> all(g.groups * rows * patch);
    for (std::size_t grp = 0; grp < g.groups; ++grp) {
        T* cg = all.data() + grp * rows * patch;
        img2col(x, g, grp, cg);
        // y[:, group] [N·OH·OW, Fg] = cols [N·OH·OW, KH·KW·Cg] · w[:, group] [KH·KW·Cg, Fg]
        gemm<T>(false, false, rows, fg, patch, 1, cg, patch, w + grp * fg, g.f, 0, y + grp * fg, g.f);
    }
    finish_all(e, g, y);
    if (keep_cols) cols = std::move(all);
}

}  // namespace

template <class T>
void conv2d_forward(const T* x, const T* w, Epilogue<T> e, const ConvGeometry& g, T* y, Buffer<T>& cols,
                    bool keep_cols, bool use_bf16) {
    forward(x, w, e, g, y, cols, keep_cols, use_bf16, static_cast<const LinePool<T>*>(nullptr));
}

template <class T>
void conv2d_forward_max_pool(const T* x, const T* w, const T* bias, bool relu, const ConvGeometry& g,
                             const PoolGeometry& pool, T* y, std::int32_t* argmax, bool use_bf16) {
    Buffer<T> cols;
    if (!use_bf16 && pools_pairs(pool) && winograd<T>(g)) {  // each output tile is a window
        const WinogradPool<T> tiles{y, argmax, relu, pool.oh, pool.ow};
        if (conv2d_forward_winograd<T>(x, w, {bias, false}, g, nullptr, &tiles)) return;
    }
    if (!g.no_products() && pools_lines<T>(g, pool)) {
        const LinePool<T> lines{y, argmax, relu};
        forward<T>(x, w, {bias, false}, g, nullptr, cols, false, use_bf16, &lines);
        return;
    }
    // Any other pool or convolution: the whole output, then the pool.
    Buffer<T> full(g.n * g.oh * g.ow * g.f);
    forward<T>(x, w, {bias, false}, g, full.data(), cols, false, use_bf16, nullptr);
    max_pool2d_forward<T>(full.data(), pool, y, argmax, relu);
}

template <class T>
void conv2d_columns(const T* x, const ConvGeometry& g, Buffer<T>& cols) {
    if (g.no_products() || direct_single_channel<T>(g) || g.pointwise() || direct<T>(g) || winograd<T>(g) ||
        few_channels_3x3<T>(g)) {
        cols = Buffer<T>();
        return;
    }
    const std::size_t rows = g.rows(), patch = g.patch();
    if (cols.size() != g.groups * rows * patch) cols = Buffer<T>(g.groups * rows * patch);
    for (std::size_t grp = 0; grp < g.groups; ++grp) img2col(x, g, grp, cols.data() + grp * rows * patch);
}

template <class T>
void conv2d_backward_weight(const T* x, const Buffer<T>& cols, const T* gy, const ConvGeometry& g, T* dw,
                            bool use_bf16) {
    if (g.no_products()) return;  // nothing to add
    use_bf16 = use_bf16 && std::is_same_v<T, float>;
    if (few_channels_3x3<T>(g)) return conv2d_backward_weight_few_channels(x, gy, g, dw, use_bf16);
    if (!use_bf16 && winograd<T>(g) && conv2d_backward_weight_winograd(x, gy, g, dw)) return;
    Buffer<T> x_bf16, gy_bf16, cols_bf16;
    // A few input channels: an inner dimension of KH·KW·C is too short for the bf16 kernels to pay
    // for packing its operands (W1's first layer: float32 on rounded copies is faster).
    if (use_bf16 && !(bf16_level() != Bf16Level::portable && batch_split<T>(g) && !g.few_channels())) {
        x = rounded(x, g.n * g.h * g.w * g.c, x_bf16);
        gy = rounded(gy, g.rows() * g.f, gy_bf16);
        if (!cols.empty()) {
            rounded(cols.data(), cols.size(), cols_bf16);
            conv2d_backward_weight<T>(x, cols_bf16, gy, g, dw, false);
            return;
        }
        use_bf16 = false;  // float32 kernels on bf16 values
    }
    const std::size_t rows = g.rows(), patch = g.patch(), fg = g.fg();
    if (direct_single_channel<T>(g)) {
        conv2d_backward_weight_single_channel(x, gy, g, dw);
        return;
    }
    if (g.pointwise()) {
        // dw [C, F] += xᵀ [C, N·H·W] · dY [N·H·W, F]
        gemm<T>(true, false, g.c, g.f, rows, 1, x, g.c, gy, g.f, 1, dw, g.f);
        return;
    }
    if (batch_split<T>(g)) {
        // Each thread adds its chunks' colsᵀ · dY to its own partial dw. After a direct forward
        // pass it rebuilds the columns of one kernel row at a time ([rows, KW·C], small enough
        // to stay in its cache with their block of dw), which costs no more than reading back
        // a whole-batch matrix (conv E at 2 threads, scratch test: 5.3-5.6 ms against 5.4-5.9;
        // the whole chunk at once: 6.8-7.1 ms).
        const Chunks chunks(g);
        const std::size_t row_patch = g.kw * g.c;  // columns per kernel row
        auto columns = per_thread<T>(direct<T>(g) && !use_bf16 ? chunks.images * chunks.per_image * row_patch : 0);
        auto packed = bf16_scratch(use_bf16, patch, g.f, chunks.images * chunks.per_image);
        auto images = per_thread<bf16>(use_bf16 && direct<T>(g)
                                           ? chunks.images * (g.h + g.pt + g.pb) * (g.w + g.pl + g.pr) * g.c
                                           : 0);
        accumulate_per_thread(patch * g.f, dw, [&](T* partial) {
            const auto t = static_cast<std::size_t>(omp_get_thread_num());
            Buffer<T>& c = columns[t];
#pragma omp for schedule(static) nowait
            for (Index i = 0; i < static_cast<Index>(chunks.count); ++i) {
                const auto k = chunks[i];
                if (!direct<T>(g)) {
                    thread_product<T>(use_bf16, packed[t], true, patch, g.f, k.rows, cols.data() + k.row * patch, patch,
                                      gy + k.row * g.f, g.f, 1, partial, g.f);
                    continue;
                }
                if constexpr (std::is_same_v<T, float>) {
                    if (use_bf16) {
                        weight_grad_direct_bf16(x, gy, g, k.first, k.last, partial, packed[t], images[t].data());
                        continue;
                    }
                }
                for (std::size_t ky = 0; ky < g.kh; ++ky) {
                    img2col_lines(x, g, 0, k.first * g.oh, k.last * g.oh, ky, ky + 1, c.data());
                    thread_product<T>(use_bf16, packed[t], true, row_patch, g.f, k.rows, c.data(), row_patch,
                                      gy + k.row * g.f, g.f, 1, partial + ky * row_patch * g.f, g.f);
                }
            }
        });
        return;
    }
    for (std::size_t grp = 0; grp < g.groups; ++grp)
        // dw[:, group] [KH·KW·Cg, Fg] += colsᵀ [KH·KW·Cg, N·OH·OW] · dY[:, group] [N·OH·OW, Fg]
        gemm<T>(true, false, patch, fg, rows, 1, cols.data() + grp * rows * patch, patch, gy + grp * fg, g.f, 1,
                dw + grp * fg, g.f);
}

template <class T>
void conv2d_backward_input_col2img(const T* gy, const T* w, const ConvGeometry& g, T* dx, bool use_bf16) {
    use_bf16 = use_bf16 && std::is_same_v<T, float>;
    if (!use_bf16 && winograd<T>(g) && conv2d_backward_input_winograd(gy, w, g, dx)) return;
    if (!g.no_products() && few_channels_3x3<T>(g) && g.sh == 1 && g.sw == 1)
        return conv2d_backward_input_few_channels(gy, w, g, dx, use_bf16);
    // The paths below add into dx, zeroed first (also after a Winograd call that met a value
    // not finite: those recompute the direct way).
    fill_zero(dx, g.n * g.h * g.w * g.c);
    if (g.no_products()) return;
    Buffer<T> gy_bf16, w_bf16;
    if (use_bf16 && !(bf16_level() != Bf16Level::portable && batch_split<T>(g))) {
        gy = rounded(gy, g.rows() * g.f, gy_bf16);
        w = rounded(w, g.kh * g.kw * g.cg() * g.f, w_bf16);
        use_bf16 = false;  // float32 kernels on bf16 values
    }
    const std::size_t rows = g.rows(), patch = g.patch(), fg = g.fg();
    if (g.pointwise()) {
        // dx [N·H·W, C] += dY [N·H·W, F] · wᵀ [F, C]
        gemm<T>(false, true, rows, g.c, g.f, 1, gy, g.f, w, g.f, 1, dx, g.c);
        return;
    }
    if (batch_split<T>(g)) {
        // Wᵀ [F, KH·KW·C] is made once, so that each thread's GEMM has no transposed operand.
        Buffer<T> wt(patch * g.f);
        for (std::size_t r = 0; r < patch; ++r)
            for (std::size_t f = 0; f < g.f; ++f) wt.data()[f * patch + r] = w[r * g.f + f];
        if (direct<T>(g) && g.sh == 1 && g.sw == 1) {
            if constexpr (std::is_same_v<T, float>) {
                if (use_bf16) return scatter_direct_bf16(gy, w, g, dx);
            }
            scatter_direct(gy, wt.data(), g, dx);
            return;
        }
        // Strided, float32 and float64 (bf16 keeps the GEMM + col2img below)
        if (direct<T>(g) && !use_bf16) return scatter_strided(gy, wt.data(), g, dx);
        // Per chunk: its dcols = dY · Wᵀ, scattered at once into its own images of dx.
        const Chunks chunks(g);
        auto scratch = per_thread<T>(chunks.images * chunks.per_image * patch);
        auto packed = bf16_scratch(use_bf16, chunks.images * chunks.per_image, 0, g.f);
        Buffer<bf16> packed_wt(use_bf16 ? pairs(g.f) * patch * 2 : 0);
        if constexpr (std::is_same_v<T, float>) {
            if (use_bf16) pack_pairs_bf16(wt.data(), g.f, patch, patch, false, packed_wt.data());
        }
#pragma omp parallel
        {
            const auto t = static_cast<std::size_t>(omp_get_thread_num());
            Buffer<T>& dcols = scratch[t];
#pragma omp for schedule(static)
            for (Index i = 0; i < static_cast<Index>(chunks.count); ++i) {
                const auto k = chunks[i];
                thread_product<T>(use_bf16, packed[t], false, k.rows, patch, g.f, gy + k.row * g.f, g.f, wt.data(), patch,
                                  0, dcols.data(), patch, packed_wt.data());
                col2img_images(dcols.data(), g, 0, k.first, k.last, dx);
            }
        }
        return;
    }
    Buffer<T> dcols(rows * patch);
    for (std::size_t grp = 0; grp < g.groups; ++grp) {
        // dcols [N·OH·OW, KH·KW·Cg] = dY[:, group] [N·OH·OW, Fg] · w[:, group]ᵀ [Fg, KH·KW·Cg]
        gemm<T>(false, true, rows, patch, fg, 1, gy + grp * fg, g.f, w + grp * fg, g.f, 0, dcols.data(), patch);
        col2img(dcols.data(), g, grp, dx);
    }
}

namespace {

// The flipped input gradient at stride 1, padding within the dilated kernel: the forward
// convolution of dY (geometry gd) with the flipped weights.
bool flipped_as_forward(const ConvGeometry& g) {
    const std::size_t ekh = g.dh * (g.kh - 1) + 1, ekw = g.dw * (g.kw - 1) + 1;
    return g.sh == 1 && g.sw == 1 && g.pt < ekh && g.pb < ekh && g.pl < ekw && g.pr < ekw;
}

ConvGeometry flipped_forward_geometry(const ConvGeometry& g) {
    const std::size_t ekh = g.dh * (g.kh - 1) + 1, ekw = g.dw * (g.kw - 1) + 1;
    return {g.n, g.oh, g.ow, g.f, g.kh, g.kw, g.c, g.groups, 1, 1, g.dh, g.dw,
            ekh - 1 - g.pt, ekh - 1 - g.pb, ekw - 1 - g.pl, ekw - 1 - g.pr, g.h, g.w};
}

}  // namespace

bool flipped_is_faster(const ConvGeometry& g, bool bf16) {
    // float32 (and float64): never. Where Winograd serves the forward it serves col2img's
    // transposed map too, which beats the flipped forward of dY (2 threads: conv B's dx
    // 1.48-1.60 ms against 1.57-1.65; conv E's, whose flipped forward is padded by 4, 6.2 against
    // 10.5); elsewhere col2img's direct scatter is faster.
    if (!bf16 || !flipped_as_forward(g)) return false;
    // bf16: the direct forward of dY, when it has 16+ output channels (x's): conv A's dx (one
    // channel) 1.43-1.92 ms by col2img against 1.73-2.29 flipped, conv C's (three) 4.2-4.7
    // against 4.8-5.7
    const ConvGeometry gd = flipped_forward_geometry(g);
    return bf16_level() != Bf16Level::portable && direct<float>(gd) && gd.f >= kDirectMinChannels;
}

template <class T>
void conv2d_backward_input_flipped(const T* gy, const T* w, const ConvGeometry& g, T* dx, bool use_bf16) {
    if (g.no_products()) return fill_zero(dx, g.n * g.h * g.w * g.c);
    const std::size_t ekh = g.dh * (g.kh - 1) + 1, ekw = g.dw * (g.kw - 1) + 1;
    const std::size_t hp = g.h + g.pt + g.pb, wp = g.w + g.pl + g.pr;  // padded input
    const std::size_t hu = hp + ekh - 1, wu = wp + ekw - 1;            // dilated, padded dY
    const std::size_t cg = g.cg(), fg = g.fg();

    // wf [KH, KW, Fg, C]: w flipped in H and W, channels swapped within each group.
    Buffer<T> wf(g.kh * g.kw * fg * g.c);
    for (std::size_t ky = 0; ky < g.kh; ++ky)
        for (std::size_t kx = 0; kx < g.kw; ++kx)
            for (std::size_t c = 0; c < cg; ++c)
                for (std::size_t grp = 0; grp < g.groups; ++grp)
                    for (std::size_t fi = 0; fi < fg; ++fi)
                        wf.data()[((ky * g.kw + kx) * fg + fi) * g.c + grp * cg + c] =
                            w[(((g.kh - 1 - ky) * g.kw + (g.kw - 1 - kx)) * cg + c) * g.f + grp * fg + fi];

    // Stride 1 with no padding wider than the dilated kernel: dx is the convolution of dY itself
    // with wf, padded by what the kernel reaches beyond x's padding ([N, H, W, C] exactly), and
    // the forward pass's kernels pad each image as they read it.
    if (flipped_as_forward(g)) {
        const ConvGeometry gd = flipped_forward_geometry(g);
        Buffer<T> cols;
        conv2d_forward<T>(gy, wf.data(), {}, gd, dx, cols, false, use_bf16);
        return;
    }

    // u [N, HU, WU, F]: dY spread `stride` apart, after ekh - 1 rows and ekw - 1 columns of zeros.
    Buffer<T> u(g.n * hu * wu * g.f);
    std::fill_n(u.data(), u.size(), T(0));
    for (std::size_t n = 0; n < g.n; ++n)
        for (std::size_t oy = 0; oy < g.oh; ++oy)
            for (std::size_t ox = 0; ox < g.ow; ++ox)
                std::copy_n(gy + ((n * g.oh + oy) * g.ow + ox) * g.f, g.f,
                            u.data() + ((n * hu + ekh - 1 + oy * g.sh) * wu + ekw - 1 + ox * g.sw) * g.f);

    // dx_padded [N, HP, WP, C] = valid, stride-1 conv of u with wf at the same dilation.
    const ConvGeometry gu{g.n, hu, wu, g.f, g.kh, g.kw, g.c, g.groups, 1, 1, g.dh, g.dw, 0, 0, 0, 0, hp, wp};
    Buffer<T> dxp(g.n * hp * wp * g.c), cols;
    conv2d_forward<T>(u.data(), wf.data(), {}, gu, dxp.data(), cols, false, use_bf16);

    // dx = dx_padded without its padding
    for (std::size_t n = 0; n < g.n; ++n)
        for (std::size_t y = 0; y < g.h; ++y)
            for (std::size_t x = 0; x < g.w; ++x) {
                const T* src = dxp.data() + ((n * hp + y + g.pt) * wp + x + g.pl) * g.c;
                T* dst = dx + ((n * g.h + y) * g.w + x) * g.c;
                std::copy_n(src, g.c, dst);
            }
}

#define XGRAD_INSTANTIATE(T)                                                                            \
    template void img2col<T>(const T*, const ConvGeometry&, std::size_t, T*);                           \
    template void col2img<T>(const T*, const ConvGeometry&, std::size_t, T*);                           \
    template void conv2d_forward<T>(const T*, const T*, Epilogue<T>, const ConvGeometry&, T*, Buffer<T>&, bool, bool); \
    template void conv2d_forward_max_pool<T>(const T*, const T*, const T*, bool, const ConvGeometry&,          \
                                             const PoolGeometry&, T*, std::int32_t*, bool);                     \
    template void conv2d_columns<T>(const T*, const ConvGeometry&, Buffer<T>&);                          \
    template void conv2d_backward_weight<T>(const T*, const Buffer<T>&, const T*, const ConvGeometry&, T*, bool); \
    template void conv2d_backward_input_col2img<T>(const T*, const T*, const ConvGeometry&, T*, bool);      \
    template void conv2d_backward_input_flipped<T>(const T*, const T*, const ConvGeometry&, T*, bool);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad::kernels
