#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include <xtensor/xview.hpp>

#include "helpers.hpp"
#include "kernels/conv2d.hpp"
#include "xgrad/xgrad.hpp"

using xgrad::ConvBackward;
using xgrad::Padding;
using xgrad::Shape;
using xgrad::Tensor;
using xgrad::Tensor64;
using xgrad_test::array;
using xgrad_test::array_diff;
using xgrad_test::same_bits;
using Catch::Matchers::Contains;

namespace {

// dL/dx of sum(conv2d(x, w) * gy) for a random gy, with the given input-gradient variant.
xt::xarray<double> input_grad(const Tensor64& x0, const Tensor64& w, xgrad::Conv2dOptions o, ConvBackward v) {
    Tensor64 x(x0.value(), true);
    o.backward = v;
    auto y = xgrad::conv2d(x, w, o);
    xgrad::manual_seed(11);
    y.backward(xgrad::randn<double>(y.shape()).value());
    return x.grad();
}

// y, dx and dw of a convolution by its definition, in float64: every output pixel sums
// x at each tap inside the image times the tap's weights (within its group); gy is spread
// back the same way.
struct NaiveConv {
    xt::xarray<double> y, dx, dw;
};

NaiveConv naive_conv(const xt::xarray<double>& x, const xt::xarray<double>& w, const xt::xarray<double>& gy,
                     std::size_t sh, std::size_t sw, std::size_t dh, std::size_t dw, std::size_t pt, std::size_t pl,
                     std::size_t groups = 1) {
    const std::size_t n = x.shape(0), h = x.shape(1), wd = x.shape(2);
    const std::size_t kh = w.shape(0), kw = w.shape(1), cg = w.shape(2), f = w.shape(3), oh = gy.shape(1),
                      ow = gy.shape(2), fg = f / groups;
    NaiveConv r{xt::zeros<double>({n, oh, ow, f}), xt::zeros<double>(x.shape()), xt::zeros<double>(w.shape())};
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t oy = 0; oy < oh; ++oy)
            for (std::size_t ox = 0; ox < ow; ++ox)
                for (std::size_t ky = 0; ky < kh; ++ky)
                    for (std::size_t kx = 0; kx < kw; ++kx) {
                        const auto iy = static_cast<std::ptrdiff_t>(oy * sh + ky * dh) - static_cast<std::ptrdiff_t>(pt);
                        const auto ix = static_cast<std::ptrdiff_t>(ox * sw + kx * dw) - static_cast<std::ptrdiff_t>(pl);
                        if (iy < 0 || ix < 0 || iy >= static_cast<std::ptrdiff_t>(h) || ix >= static_cast<std::ptrdiff_t>(wd))
                            continue;
                        for (std::size_t fi = 0; fi < f; ++fi)
                            for (std::size_t ci = 0; ci < cg; ++ci) {
                                const std::size_t c = fi / fg * cg + ci;  // input channel of the group
                                r.y(i, oy, ox, fi) += x(i, iy, ix, c) * w(ky, kx, ci, fi);
                                r.dx(i, iy, ix, c) += gy(i, oy, ox, fi) * w(ky, kx, ci, fi);
                                r.dw(ky, kx, ci, fi) += gy(i, oy, ox, fi) * x(i, iy, ix, c);
                            }
                    }
    return r;
}

}  // namespace

TEST_CASE("conv2d: float32 with 16+ channels (direct forward) matches the definition", "[conv]") {
    // The float path runs libxsmm's batch-reduce kernels (when built with it), which the
    // float64 gradient checks never reach; the reference here is the plain sum.
    struct Case {
        std::size_t h, w, c, f, k, sh, sw, d, pt, pb, pl, pr;
    };
    for (const Case& k : {Case{9, 8, 16, 5, 3, 1, 1, 1, 1, 1, 1, 1}, Case{10, 9, 32, 16, 5, 1, 1, 1, 0, 0, 0, 0},
                          Case{11, 10, 16, 3, 3, 2, 1, 2, 2, 0, 1, 3}, Case{6, 7, 16, 4, 3, 1, 2, 1, 3, 0, 0, 0},
                          Case{9, 10, 16, 3, 3, 1, 1, 2, 2, 0, 1, 3}})
    for (const auto variant : {ConvBackward::col2img, ConvBackward::flipped}) {
        xgrad::manual_seed(21);
        const xt::xarray<double> x = xgrad::randn<double>({3, k.h, k.w, k.c}).value();
        const xt::xarray<double> w = xgrad::randn<double>({k.k, k.k, k.c, k.f}).value();
        xgrad::Conv2dOptions o;
        o.stride = {static_cast<int>(k.sh), static_cast<int>(k.sw)};
        o.dilation = static_cast<int>(k.d);
        o.padding = xgrad::PadSpec{static_cast<int>(k.pt), static_cast<int>(k.pb), static_cast<int>(k.pl),
                                   static_cast<int>(k.pr)};
        o.backward = variant;
        Tensor x32(xt::xarray<float>(xt::cast<float>(x)), true), w32(xt::xarray<float>(xt::cast<float>(w)), true);
        auto y = xgrad::conv2d(x32, w32, o);
        const xt::xarray<double> gy = xgrad::randn<double>(y.shape()).value();
        y.backward(xt::xarray<float>(xt::cast<float>(gy)));
        const auto ref = naive_conv(x, w, gy, k.sh, k.sw, k.d, k.d, k.pt, k.pl);
        INFO("x [3, " << k.h << ", " << k.w << ", " << k.c << "], w [" << k.k << ", " << k.k << ", " << k.c << ", "
                      << k.f << "], stride " << k.sh << "x" << k.sw << ", dilation " << k.d);
        CHECK(array_diff(y.value(), ref.y, 1e-3, 1e-4) == "");
        CHECK(array_diff(x32.grad(), ref.dx, 1e-3, 1e-4) == "");
        CHECK(array_diff(w32.grad(), ref.dw, 1e-3, 1e-4) == "");
    }
}

TEST_CASE("conv2d: random geometries match the definition, padding wider than the kernel and the input included",
          "[conv][traps]") {
    // Every kernel path (single channel, few channels, img2col + GEMM, the 16+ channel direct
    // passes, grouped, pointwise, both input-gradient variants) in float and double, on geometries drawn to put
    // whole kernel rows and columns in the padding: each side's padding up to twice the kernel
    // and beyond the whole input.
    xgrad_test::Picker pick(1234);
    std::size_t checked = 0;
    for (int trial = 0; trial < 160; ++trial) {
        const std::size_t groups = trial % 5 == 4 ? 2 : 1;
        const std::size_t cg = std::vector<std::size_t>{1, 2, 3, 16}[pick(0, 3)], c = cg * groups;
        // Every fourth trial a 3x3 kernel with 16 filters (whole float and double vectors): the
        // few-channel forward's and weight gradient's register paths.
        const bool vectors = trial % 4 == 1;
        const std::size_t f = groups * (vectors ? 16 : pick(1, 3)), kh = vectors ? 3 : pick(1, 4),
                          kw = vectors ? 3 : pick(1, 4);
        const std::size_t sh = pick(1, 3), sw = pick(1, 3), dh = pick(1, 2), dw = trial % 3 == 0 ? 2 : 1;
        // Those trials draw wider images too: lines of 7 to 8 pixel blocks and a last block that overlaps.
        const std::size_t h = pick(1, 6), w = vectors ? pick(5, 23) : pick(1, 6);
        const std::size_t pt = pick(0, 2 * kh + 1), pb = pick(0, 2 * kh), pl = pick(0, w + kw + 1), pr = pick(0, w + 2);
        const std::size_t ekh = dh * (kh - 1) + 1, ekw = dw * (kw - 1) + 1;
        if (h + pt + pb < ekh || w + pl + pr < ekw) continue;
        auto o = xgrad_test::conv_options(sh, sw, dh, dw, pt, pb, pl, pr, groups);
        xgrad::manual_seed(static_cast<std::uint64_t>(trial));
        const xt::xarray<double> x = xgrad::randn<double>({2, h, w, c}).value();
        const xt::xarray<double> wt = xgrad::randn<double>({kh, kw, cg, f}).value();
        const xt::xarray<double> b = xgrad::randn<double>({f}).value();
        const Shape ys{2, (h + pt + pb - ekh) / sh + 1, (w + pl + pr - ekw) / sw + 1, f};
        const xt::xarray<double> gy = xgrad::randn<double>(ys).value();
        auto ref = naive_conv(x, wt, gy, sh, sw, dh, dw, pt, pl, groups);
        ref.y += b;
        const xt::xarray<double> db = xt::sum(gy, {0, 1, 2});
        INFO("x [2, " << h << ", " << w << ", " << c << "], w [" << kh << ", " << kw << ", " << cg << ", " << f
                      << "], stride " << sh << "x" << sw << ", dilation " << dh << "x" << dw << ", padding {" << pt
                      << ", " << pb << ", " << pl << ", " << pr << "}, groups " << groups);
        for (const auto variant : {ConvBackward::col2img, ConvBackward::flipped}) {
            o.backward = variant;
            Tensor64 x64(x, true), w64(wt, true), b64(b, true);
            auto y64 = xgrad::conv2d(x64, w64, b64, o);
            y64.backward(gy);
            CHECK(array_diff(y64.value(), ref.y, 1e-10, 1e-10) == "");
            CHECK(array_diff(x64.grad(), ref.dx, 1e-10, 1e-10) == "");
            CHECK(array_diff(w64.grad(), ref.dw, 1e-10, 1e-10) == "");
            CHECK(array_diff(b64.grad(), db, 1e-10, 1e-10) == "");
            Tensor x32(xt::xarray<float>(xt::cast<float>(x)), true), w32(xt::xarray<float>(xt::cast<float>(wt)), true);
            Tensor b32(xt::xarray<float>(xt::cast<float>(b)), true);
            auto y32 = xgrad::conv2d(x32, w32, b32, o);
            y32.backward(xt::xarray<float>(xt::cast<float>(gy)));
            CHECK(array_diff(y32.value(), ref.y, 1e-4, 1e-4) == "");
            CHECK(array_diff(x32.grad(), ref.dx, 1e-4, 1e-4) == "");
            CHECK(array_diff(w32.grad(), ref.dw, 1e-4, 1e-4) == "");
        }
        ++checked;
    }
    CHECK(checked > 100);
}

TEST_CASE("conv2d: Winograd matches the definition on random geometries, kernels from 2x2 to 7x7, stride 2 and "
          "padding wider than the kernel included", "[conv][traps]") {
    // Forward (with bias and relu), both input-gradient variants (col2img as Winograd's
    // transposed map, flipped as dY's forward through Winograd while its padding is narrow) and
    // the weight gradient, against the float64 definition; the direct kernels (Winograd off)
    // must give other bits, or the test would not be testing Winograd.
    xgrad_test::Picker pick(4321);
    std::size_t checked = 0, differs = 0;
    for (int trial = 0; trial < 100; ++trial) {
        const std::size_t c = std::vector<std::size_t>{16, 17, 32, 40}[pick(0, 3)];
        const std::size_t f = std::vector<std::size_t>{16, 19, 32, 64}[pick(0, 3)];
        // 3x3, and other kernels as sub-kernels of at most 3x3 (cut short at the edges: 2, 4,
        // 5 and 7 wide), 2x2 through F(2x2, 2x2); at stride 2 (one axis or both, 3 taps or
        // more there) one sub-kernel per phase of the input
        const std::size_t sh = trial % 4 == 2 ? pick(1, 2) : 1, sw = trial % 4 == 2 ? pick(1, 2) : 1;
        const std::size_t kh = trial % 2 ? 3 : pick(sh + 1, 7), kw = trial % 2 ? 3 : pick(sw + 1, 7);
        const std::size_t n = pick(1, 3), h = pick(1, 13), w = pick(1, 13);
        const std::size_t pt = pick(0, 4), pb = pick(0, 4), pl = pick(0, 4), pr = pick(0, 4);
        if (h + pt + pb < kh || w + pl + pr < kw) continue;
        const bool relu = trial % 3 == 0;
        auto o = xgrad_test::conv_options(sh, sw, 1, 1, pt, pb, pl, pr, 1);
        xgrad::manual_seed(static_cast<std::uint64_t>(100 + trial));
        const xt::xarray<double> x = xgrad::randn<double>({n, h, w, c}).value();
        const xt::xarray<double> wt = xgrad::randn<double>({kh, kw, c, f}).value();
        const xt::xarray<double> b = xgrad::randn<double>({f}).value();
        const Shape ys{n, (h + pt + pb - kh) / sh + 1, (w + pl + pr - kw) / sw + 1, f};
        xt::xarray<double> gy = xgrad::randn<double>(ys).value();
        auto ref = naive_conv(x, wt, gy, sh, sw, 1, 1, pt, pl);
        ref.y += b;
        if (relu) {  // the reference's gradients through relu: dY masked where the output is not positive
            ref.y = xt::maximum(ref.y, 0.0);
            const xt::xarray<double> masked = xt::where(ref.y > 0.0, gy, 0.0);
            ref = naive_conv(x, wt, masked, sh, sw, 1, 1, pt, pl);
            ref.y = xt::maximum(ref.y + b, 0.0);
        }
        INFO("x [" << n << ", " << h << ", " << w << ", " << c << "], w [" << kh << ", " << kw << ", " << c << ", " << f
                   << "], stride {" << sh << ", " << sw << "}, padding {"
                   << pt << ", " << pb << ", " << pl << ", " << pr << "}" << (relu ? ", relu" : ""));
        for (const auto variant : {ConvBackward::col2img, ConvBackward::flipped}) {
            o.backward = variant;
            xt::xarray<float> y[2], dx[2], dw[2];
            for (const bool winograd : {true, false}) {
                const xgrad_test::WinogradScope scope(winograd);
                Tensor x32(xt::xarray<float>(xt::cast<float>(x)), true), w32(xt::xarray<float>(xt::cast<float>(wt)), true);
                Tensor b32(xt::xarray<float>(xt::cast<float>(b)), true);
                auto y32 = relu ? xgrad::conv2d_relu(x32, w32, b32, o) : xgrad::conv2d(x32, w32, b32, o);
                y32.backward(xt::xarray<float>(xt::cast<float>(gy)));
                y[winograd] = y32.value();
                dx[winograd] = x32.grad();
                dw[winograd] = w32.grad();
            }
            CHECK(array_diff(y[1], ref.y, 1e-4, 1e-4) == "");
            CHECK(array_diff(dx[1], ref.dx, 1e-4, 1e-4) == "");
            CHECK(array_diff(dw[1], ref.dw, 1e-4, 1e-4) == "");
            differs += !same_bits(y[1], y[0]) && !same_bits(dx[1], dx[0]) && !same_bits(dw[1], dw[0]);
        }
        ++checked;
    }
    CHECK(checked > 50);
    CHECK(differs > checked);  // in most of the 2 · checked runs
}

TEST_CASE("conv2d: Winograd recomputes the direct way when a value is not finite", "[conv][traps]") {
    // inf - inf inside a transform would put NaN where the definition has inf, and a NaN would
    // reach outputs whose windows do not hold it: with an infinity or a NaN in x, in w or in dY
    // every output and gradient that reads it is the direct kernels' bit for bit.
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    for (int where = 0; where < 36; ++where) {
        // both input-gradient variants (flipped: the forward of dY; col2img: the transposed
        // map), 3x3 and 5x5 kernels (the latter with sub-kernels cut short), 3x3 at stride 2
        const std::size_t k = where / 12 == 1 ? 5 : 3;
        const xgrad::Conv2dOptions o{.stride = where / 24 ? 2 : 1, .padding = Padding::same,
                                     .backward = where / 6 % 2 ? ConvBackward::col2img : ConvBackward::flipped};
        INFO("case " << where % 6 << ", " << k << "x" << k << (where / 24 ? " stride 2" : "") << ", "
                     << (where / 6 % 2 ? "col2img" : "flipped"));
        xgrad::manual_seed(5);
        xt::xarray<float> xv = xgrad::randn<float>({2, 6, 7, 16}).value(), wv = xgrad::randn<float>({k, k, 16, 16}).value();
        xt::xarray<float> gv = xgrad::randn<float>({2, where / 24 ? 3u : 6u, where / 24 ? 4u : 7u, 16}).value();
        const float bad = where % 2 ? nan : inf;
        if (where % 6 / 2 == 0) {
            xv(0, 2, 3, 5) = bad;
            xv(1, 0, 0, 1) = -bad;
        }
        if (where % 6 / 2 == 1) wv(1, 1, 4, 2) = bad;
        if (where % 6 / 2 == 2) gv(1, gv.shape(1) - 1, gv.shape(2) - 1, 9) = bad;
        xt::xarray<float> y[2], dx[2], dw[2];
        for (const bool winograd : {true, false}) {
            const xgrad_test::WinogradScope scope(winograd);
            Tensor x(xv, true), w(wv, true);
            auto out = xgrad::conv2d(x, w, o);
            out.backward(gv);
            y[winograd] = out.value();
            dx[winograd] = x.grad();
            dw[winograd] = w.grad();
        }
        // what reads the bad value (the others may differ by rounding)
        if (where % 6 / 2 != 2) CHECK(same_bits(y[1], y[0]));
        if (where % 6 / 2 != 0) CHECK(same_bits(dx[1], dx[0]));
        if (where % 6 / 2 != 1) CHECK(same_bits(dw[1], dw[0]));
    }
}

TEST_CASE("conv2d kernels: the input gradient overwrites dx, whatever it held", "[conv][traps]") {
    // The op hands the kernels uninitialised memory: every path (Winograd's transposed map and
    // its non-finite fallback, the few-channel gather, the direct and strided scatters, the
    // GEMM + col2img, 1x1, the flipped forward of dY and its padded form, no filters at all)
    // must write all of dx. A dx poisoned with NaN must give the bits of a dx that held zeros.
    using xgrad::kernels::ConvGeometry;
    auto geometry = [](std::size_t n, std::size_t hw, std::size_t c, std::size_t k, std::size_t f, std::size_t s,
                       std::size_t pad, std::size_t groups = 1) {
        const std::size_t o = (hw + 2 * pad - k) / s + 1;
        return ConvGeometry{n, hw, hw, c, k, k, f, groups, s, s, 1, 1, pad, pad, pad, pad, o, o};
    };
    auto check = [](const ConvGeometry& g, bool bf16, bool inf_in_gy, auto zero) {
        using T = decltype(zero);
        std::mt19937 rng(3);
        std::normal_distribution<double> normal;
        std::vector<T> gy(g.n * g.oh * g.ow * g.f), w(g.kh * g.kw * g.cg() * g.f);
        for (auto& v : gy) v = T(normal(rng));
        for (auto& v : w) v = T(normal(rng));
        if (inf_in_gy) gy[gy.size() / 2] = std::numeric_limits<T>::infinity();
        for (const bool col2img : {true, false}) {
            INFO((col2img ? "col2img" : "flipped") << (bf16 ? " bf16" : "") << (inf_in_gy ? " inf in dY" : ""));
            std::vector<T> clean(g.n * g.h * g.w * g.c, T(0)), poisoned(clean.size(), std::numeric_limits<T>::quiet_NaN());
            for (auto* dx : {&clean, &poisoned}) {
                if (col2img) xgrad::kernels::conv2d_backward_input_col2img<T>(gy.data(), w.data(), g, dx->data(), bf16);
                else xgrad::kernels::conv2d_backward_input_flipped<T>(gy.data(), w.data(), g, dx->data(), bf16);
            }
            CHECK(std::memcmp(clean.data(), poisoned.data(), clean.size() * sizeof(T)) == 0);
            if (!inf_in_gy) CHECK(std::all_of(clean.begin(), clean.end(), [](T v) { return std::isfinite(v); }));
        }
    };
    struct Case {
        const char* name;
        ConvGeometry g;
    };
    const Case cases[] = {
        {"3x3 s1 16 -> 16 (Winograd; flipped as a forward)", geometry(3, 8, 16, 3, 16, 1, 1)},
        {"3x3 s2 16 -> 16 (Winograd per phase; flipped padded)", geometry(3, 9, 16, 3, 16, 2, 1)},
        {"3x3 s1 16 -> 16, one image (fewer images than threads)", geometry(1, 6, 16, 3, 16, 1, 1)},
        {"3x3 s3 16 -> 4 (strided scatter)", geometry(2, 10, 16, 3, 4, 3, 0)},
        {"3x3 s1 3 -> 4 (GEMM and col2img)", geometry(2, 7, 3, 3, 4, 1, 1)},
        {"3x3 s1 3 -> 16 (few-channel gather)", geometry(2, 9, 3, 3, 16, 1, 1)},
        {"3x3 s1 1 -> 16, 6 wide (few-channel gather, pixel by pixel)", geometry(2, 6, 1, 3, 16, 1, 1)},
        {"2x2 s1 pad 3 (wider than the kernel)", geometry(2, 5, 2, 2, 3, 1, 3)},
        {"1x1", geometry(2, 5, 3, 1, 4, 1, 0)},
        {"3x3 groups 2", geometry(2, 6, 4, 3, 6, 1, 1, 2)},
        {"no filters", geometry(2, 5, 3, 3, 0, 1, 1)},
    };
    for (const auto& c : cases) {
        INFO(c.name);
        check(c.g, false, false, 0.f);
        check(c.g, true, false, 0.f);
        check(c.g, false, false, 0.0);
    }
    INFO("Winograd's fallback");
    check(cases[0].g, false, true, 0.f);
    check(cases[1].g, false, true, 0.f);
}

TEST_CASE("conv2d: padding wider than the kernel reads zeros, not the next pixels (golden value)", "[conv][traps]") {
    // x = 1..9 as [1, 3, 3, 1], a 1x1 kernel of one, padding 2: the image framed by two zeros.
    auto x = xgrad::reshape(xgrad::arange<double>(1, 10), {1, 3, 3, 1});
    for (auto x_as : {0, 1}) {
        auto y = x_as ? xgrad::conv2d(Tensor(xt::xarray<float>(xt::cast<float>(x.value()))), xgrad::ones({1, 1, 1, 1}),
                                      {.padding = 2}).value()
                      : xt::xarray<float>(xt::cast<float>(xgrad::conv2d(x, xgrad::ones<double>({1, 1, 1, 1}),
                                                                        {.padding = 2}).value()));
        REQUIRE(y.shape() == Shape{1, 7, 7, 1});
        const xt::xarray<float> row4 = xt::view(y, 0, 4, xt::all(), 0);
        CHECK(array_diff(row4, xt::xarray<double>{0, 0, 7, 8, 9, 0, 0}) == "");
    }
}

TEST_CASE("conv2d: a 3x3 input and 2x2 kernel by hand", "[conv]") {
    Tensor64 x(array({1, 3, 3, 1}, {1, 2, 3, 4, 5, 6, 7, 8, 9}));
    Tensor64 w(array({2, 2, 1, 1}, {1, 0, 0, -1}));
    auto y = xgrad::conv2d(x, w);
    CHECK(y.shape() == Shape{1, 2, 2, 1});
    // y = x[i][j] - x[i+1][j+1]
    CHECK(array_diff(y.value(), array({1, 2, 2, 1}, {-4, -4, -4, -4})) == "");
    Tensor64 b(xt::xarray<double>{10.0});
    CHECK(array_diff(xgrad::conv2d(x, w, b).value(), array({1, 2, 2, 1}, {6, 6, 6, 6})) == "");
}

TEST_CASE("conv2d: two output channels and two input channels by hand", "[conv]") {
    // x [1, 1, 2, 2]: pixels (1, 2) and (3, 4); w [1, 2, 2, 2] sums channel 0 in f0, channel 1 in f1
    Tensor64 x(array({1, 1, 2, 2}, {1, 2, 3, 4}));
    xt::xarray<double> wv = xt::zeros<double>({1, 2, 2, 2});
    wv(0, 0, 0, 0) = wv(0, 1, 0, 0) = 1;
    wv(0, 0, 1, 1) = wv(0, 1, 1, 1) = 1;
    auto y = xgrad::conv2d(x, Tensor64(wv));
    CHECK(array_diff(y.value(), array({1, 1, 1, 2}, {4, 6})) == "");
}

TEST_CASE("conv2d: TensorFlow SAME at stride 2 on an even input (golden value)", "[conv][traps]") {
    auto x = xgrad::reshape(xgrad::arange<double>(1, 17), {1, 4, 4, 1});
    auto w = xgrad::ones<double>({3, 3, 1, 1});
    auto y = xgrad::conv2d(x, w, {.stride = 2, .padding = Padding::same});
    CHECK(array_diff(y.value(), array({1, 2, 2, 1}, {54, 45, 72, 54})) == "");
}

TEST_CASE("conv2d: 1x1 and 1x3 same at strides 1 and 2 give full-size input gradients", "[conv][traps]") {
    xgrad::manual_seed(1);
    auto x = xgrad::randn<double>({2, 6, 7, 3});
    for (Shape k : {Shape{1, 1, 3, 4}, Shape{1, 3, 3, 4}})
        for (int stride : {1, 2})
            for (auto v : {ConvBackward::col2img, ConvBackward::flipped}) {
                INFO("kernel " << xgrad::to_string(k) << " stride " << stride);
                auto dx = input_grad(x, xgrad::randn<double>(k), {.stride = stride, .padding = Padding::same}, v);
                CHECK(dx.shape() == x.shape());
                // At stride 1 every pixel feeds some output; at stride 2 odd rows feed none, and
                // odd columns none for the 1x1 (N 2, rows 0 2 4, columns 0 2 4 6 or all 7, C 3).
                const auto nonzero = static_cast<std::size_t>(xt::sum(xt::not_equal(dx, 0.0))());
                CHECK(nonzero == (stride == 1 ? x.size() : 2 * 3 * (k[1] == 3 ? 7 : 4) * 3));
            }
}

TEST_CASE("conv2d: even kernels with same padding keep ceil(H / stride)", "[conv][traps]") {
    auto x = xgrad::zeros<double>({1, 7, 8, 1});
    for (int k : {2, 4})
        for (int s : {1, 2, 3}) {
            auto y = xgrad::conv2d(x, xgrad::zeros<double>({Shape::value_type(k), Shape::value_type(k), 1, 1}),
                                   {.stride = s, .padding = Padding::same});
            CHECK(y.shape() == Shape{1, std::size_t(7 + s - 1) / s, std::size_t(8 + s - 1) / s, 1});
        }
    // 2x2 same pads only the bottom/right: y[i][j] = x[i][j] + x[i+1][j] + ... with zeros past the edge.
    auto ramp = xgrad::reshape(xgrad::arange<double>(1, 5), {1, 2, 2, 1});
    auto y = xgrad::conv2d(ramp, xgrad::ones<double>({2, 2, 1, 1}), {.padding = Padding::same});
    CHECK(array_diff(y.value(), array({1, 2, 2, 1}, {10, 6, 7, 4})) == "");
}

TEST_CASE("conv2d: a valid conv with a kernel larger than the input is a ShapeError", "[conv][traps][errors]") {
    auto x = xgrad::zeros({1, 2, 2, 1});
    auto w = xgrad::zeros({3, 3, 1, 4});
    REQUIRE_THROWS_AS(xgrad::conv2d(x, w), xgrad::ShapeError);
    REQUIRE_THROWS_WITH(xgrad::conv2d(x, w), Contains("conv2d:") && Contains("x [1, 2, 2, 1], w [3, 3, 1, 4]"));
}

TEST_CASE("conv2d: both input-gradient variants agree", "[conv]") {
    xgrad::manual_seed(2);
    const struct {
        Shape x, w;
        xgrad::Conv2dOptions o;
    } cases[] = {
        {{2, 7, 9, 3}, {3, 3, 3, 4}, {.padding = Padding::same}},
        {{1, 8, 8, 2}, {2, 2, 2, 3}, {.stride = 2, .padding = Padding::same}},
        {{1, 9, 7, 2}, {3, 5, 2, 2}, {.stride = {2, 1}, .padding = {1, 2, 0, 3}}},
        {{1, 9, 9, 4}, {3, 3, 2, 4}, {.stride = 3, .dilation = 2, .padding = Padding::same, .groups = 2}},
        {{2, 5, 5, 3}, {1, 1, 3, 2}, {}},
    };
    for (const auto& c : cases) {
        auto x = xgrad::randn<double>(c.x), w = xgrad::randn<double>(c.w);
        CHECK(array_diff(input_grad(x, w, c.o, ConvBackward::col2img), input_grad(x, w, c.o, ConvBackward::flipped),
                         1e-12, 0) == "");
    }
}

TEST_CASE("conv2d: float32 forward agrees with float64", "[conv]") {
    xgrad::manual_seed(3);
    auto x = xgrad::randn<double>({2, 9, 8, 3});
    auto w = xgrad::randn<double>({3, 3, 3, 5});
    auto b = xgrad::randn<double>({5});
    const xgrad::Conv2dOptions o{.stride = 2, .padding = Padding::same};
    auto y64 = xgrad::conv2d(x, w, b, o);
    auto y32 = xgrad::conv2d(Tensor(xt::cast<float>(x.value())), Tensor(xt::cast<float>(w.value())),
                             Tensor(xt::cast<float>(b.value())), o);
    CHECK(array_diff(y32.value(), y64.value(), 1e-5, 1e-5) == "");
}

TEST_CASE("conv2d: float32 forward and both gradients agree with float64 on the batch-split path", "[conv]") {
    // 3 images of 17x17 (over 256 output pixels each: one chunk per image, the per-thread
    // GEMMs that may run in libxsmm, which only the float path uses); with and without bias.
    // With one channel, float may take img2col + GEMM where double takes the direct loop.
    for (const std::size_t c : {1u, 4u})
    for (const bool bias : {false, true}) {
        for (const auto& o : {xgrad::Conv2dOptions{.padding = Padding::same},
                              xgrad::Conv2dOptions{.stride = 2, .padding = Padding::valid}}) {
            xgrad::manual_seed(5);
            auto x = xgrad::randn<double>({3, 17, 17, c});
            auto w = xgrad::randn<double>({3, 3, c, 6});
            auto b = xgrad::randn<double>({6});
            Tensor64 x64(x.value(), true), w64(w.value(), true), b64(b.value(), true);
            Tensor x32(xt::xarray<float>(xt::cast<float>(x.value())), true);
            Tensor w32(xt::xarray<float>(xt::cast<float>(w.value())), true);
            Tensor b32(xt::xarray<float>(xt::cast<float>(b.value())), true);
            auto y64 = bias ? xgrad::conv2d(x64, w64, b64, o) : xgrad::conv2d(x64, w64, o);
            auto y32 = bias ? xgrad::conv2d(x32, w32, b32, o) : xgrad::conv2d(x32, w32, o);
            CHECK(array_diff(y32.value(), y64.value(), 1e-4, 1e-4) == "");
            xgrad::manual_seed(6);
            const xt::xarray<double> gy = xgrad::randn<double>(y64.shape()).value();
            y64.backward(gy);
            y32.backward(xt::xarray<float>(xt::cast<float>(gy)));
            CHECK(array_diff(x32.grad(), x64.grad(), 1e-4, 1e-4) == "");
            CHECK(array_diff(w32.grad(), w64.grad(), 1e-3, 1e-4) == "");
            if (bias) CHECK(array_diff(b32.grad(), b64.grad(), 1e-3, 1e-4) == "");
        }
    }
}

TEST_CASE("conv2d: the default input-gradient variant is process-wide", "[conv]") {
    CHECK(xgrad::default_conv_backward() == ConvBackward::automatic);
    xgrad::set_default_conv_backward(ConvBackward::flipped);
    CHECK(xgrad::default_conv_backward() == ConvBackward::flipped);
    xgrad::set_default_conv_backward(ConvBackward::automatic);
}

TEST_CASE("conv2d: the automatic variant is flipped for bf16 products at stride 1 on the direct path, col2img "
          "elsewhere (float32 through Winograd's transposed map), bit for bit",
          "[conv][precision]") {
    // dx of float32 conv2d with the variant, in bf16 mode or not
    const auto dx = [](const xgrad::Conv2dOptions& base, const Shape& xs, const Shape& ws, bool bf16, ConvBackward v) {
        xgrad::manual_seed(12);
        xgrad::Tensor x(xgrad::randn<float>(xs).value(), true), w(xgrad::randn<float>(ws).value());
        auto o = base;
        o.backward = v;
        xgrad::Tensor y;
        {
            xgrad::AutocastGuard precision(bf16 ? xgrad::Precision::bf16 : xgrad::Precision::float32);
            y = xgrad::conv2d(x, w, o);
        }
        y.backward(xgrad::randn<float>(y.shape()).value());
        return xt::xarray<float>(x.grad());
    };
    const xgrad::Conv2dOptions same{.padding = Padding::same}, strided{.stride = 2, .padding = Padding::same};
    const bool bf16_kernels = xgrad::bf16_kernels() != "portable";
    INFO("bf16 kernels: " << xgrad::bf16_kernels());
    // 32 output channels: the flipped gradient is the direct forward of dY
    const Shape xs{2, 7, 9, 16}, ws{3, 3, 16, 32};
    const auto automatic = dx(same, xs, ws, true, ConvBackward::automatic);
    CHECK(same_bits(automatic, dx(same, xs, ws, true, bf16_kernels ? ConvBackward::flipped : ConvBackward::col2img)));
    CHECK(!same_bits(automatic, dx(same, xs, ws, true, bf16_kernels ? ConvBackward::col2img : ConvBackward::flipped)));
    CHECK(same_bits(dx(same, xs, ws, false, ConvBackward::automatic), dx(same, xs, ws, false, ConvBackward::col2img)));
    CHECK(!same_bits(dx(same, xs, ws, false, ConvBackward::automatic), dx(same, xs, ws, false, ConvBackward::flipped)));
    CHECK(same_bits(dx(strided, xs, ws, true, ConvBackward::automatic), dx(strided, xs, ws, true, ConvBackward::col2img)));
    CHECK(same_bits(dx(strided, xs, ws, false, ConvBackward::automatic), dx(strided, xs, ws, false, ConvBackward::col2img)));
    // three input channels: the flipped forward of dY would have three output channels
    const Shape few_x{2, 7, 9, 3}, few_w{3, 3, 3, 32};
    CHECK(same_bits(dx(same, few_x, few_w, true, ConvBackward::automatic),
                    dx(same, few_x, few_w, true, ConvBackward::col2img)));
    {
        const xgrad_test::WinogradScope direct(false);
        CHECK(same_bits(dx(same, xs, ws, false, ConvBackward::automatic), dx(same, xs, ws, false, ConvBackward::col2img)));
    }
}

TEST_CASE("conv2d: bad input gives typed errors naming the op and the shapes", "[conv][errors]") {
    auto x = xgrad::zeros({8, 28, 28, 3});
    auto w = xgrad::zeros({3, 3, 1, 16});
    REQUIRE_THROWS_WITH(xgrad::conv2d(x, w),
                        Contains("conv2d: x has 3 channels but w expects 1; x [8, 28, 28, 3], w [3, 3, 1, 16]"));
    REQUIRE_THROWS_AS(xgrad::conv2d(xgrad::zeros({28, 28, 3}), w), xgrad::ShapeError);
    REQUIRE_THROWS_WITH(xgrad::conv2d(xgrad::zeros({28, 28, 3}), w), Contains("[28, 28, 3]"));
    auto w3 = xgrad::zeros({3, 3, 3, 16});
    REQUIRE_THROWS_AS(xgrad::conv2d(x, xgrad::zeros({3, 3, 3})), xgrad::ShapeError);
    REQUIRE_THROWS_WITH(xgrad::conv2d(x, w3, xgrad::zeros({8})), Contains("b must be [F] = [16]") && Contains("b [8]"));
    REQUIRE_THROWS_AS(xgrad::conv2d(x, w3, {.stride = 0}), xgrad::ValueError);
    REQUIRE_THROWS_AS(xgrad::conv2d(x, w3, {.stride = {1, -2}}), xgrad::ValueError);
    REQUIRE_THROWS_AS(xgrad::conv2d(x, w3, {.dilation = 0}), xgrad::ValueError);
    REQUIRE_THROWS_WITH(xgrad::conv2d(x, w3, {.padding = {1, -1, 0, 0}}), Contains("negative"));
    REQUIRE_THROWS_WITH(xgrad::conv2d(x, xgrad::zeros({3, 3, 1, 16}), {.groups = 2}),
                        Contains("groups 2 must divide") && Contains("x [8, 28, 28, 3]"));
    REQUIRE_THROWS_AS(xgrad::conv2d(x, xgrad::zeros({3, 3, 1, 16}), {.groups = 0}), xgrad::ValueError);
}

TEST_CASE("conv2d: an empty batch gives an empty output and zero gradients on every kernel path", "[conv][traps]") {
    for (const auto& c : xgrad_test::conv_paths())
        for (const bool bf16 : {false, true})
            for (const auto variant : {ConvBackward::col2img, ConvBackward::flipped, ConvBackward::automatic}) {
                INFO(c.name << (bf16 ? ", bf16" : "") << ", variant " << static_cast<int>(variant));
                Shape xs = c.x;
                xs[0] = 0;
                auto o = c.o;
                o.backward = variant;
                Tensor x(xt::xarray<float>(xt::zeros<float>(xs)), true), w = xgrad::randn<float>(c.w, true);
                Tensor b = xgrad::randn<float>({c.w[3]}, true);
                xgrad::AutocastGuard precision(bf16 ? xgrad::Precision::bf16 : xgrad::Precision::float32);
                auto y = xgrad::conv2d(x, w, b, o);
                REQUIRE(y.shape()[0] == 0);
                xgrad::sum(y).backward();
                CHECK(x.grad().shape() == xs);
                CHECK(xt::all(xt::equal(w.grad(), 0.0f)));
                CHECK(xt::all(xt::equal(b.grad(), 0.0f)));
                auto p = xgrad::conv2d_relu_max_pool2d(x, w, b, o, {.kernel = 1});
                CHECK(p.shape()[0] == 0);
                xgrad::NoGradGuard off;
                CHECK(xgrad::conv2d_relu(x, w, b, o).shape()[0] == 0);
            }
}

TEST_CASE("conv2d: no input channels gives the bias alone, no filters an empty output, in every precision",
          "[conv][traps]") {
    // As PyTorch: a sum over no channels is zero, so y = b (relu'd for conv2d_relu), db = Σ dY,
    // and dW, dx are empty; with no filters y is [N, OH, OW, 0] and dx is zero.
    for (const bool bf16 : {false, true})
        for (const std::size_t k : {1, 3}) {
            INFO((bf16 ? "bf16" : "float32") << ", kernel " << k);
            xgrad::AutocastGuard precision(bf16 ? xgrad::Precision::bf16 : xgrad::Precision::float32);
            Tensor x(xt::xarray<float>(xt::zeros<float>({2, 5, 4, 0})), true), w = xgrad::randn<float>({k, k, 0, 16}, true);
            Tensor b = xgrad::randn<float>({16}, true);
            auto y = xgrad::conv2d(x, w, b, {.padding = Padding::same});
            REQUIRE(y.shape() == Shape{2, 5, 4, 16});
            CHECK(array_diff(y.value(), xt::xarray<float>(xt::broadcast(b.value(), y.shape())), 0, 0) == "");
            xgrad::sum(y).backward();
            CHECK(array_diff(b.grad(), xt::xarray<float>(xt::full_like(b.value(), 40.0f)), 0, 0) == "");
            CHECK(x.grad().shape() == x.shape());
            CHECK(w.grad().shape() == w.shape());
            const auto relu = xgrad::conv2d_relu(x, w, b, {.padding = Padding::same});
            CHECK(array_diff(relu.value(), xt::xarray<float>(xt::maximum(y.value(), 0.0f)), 0, 0) == "");
            CHECK(xgrad::conv2d_relu_max_pool2d(x, w, b, {.padding = Padding::same}, {.kernel = 2}).shape() ==
                  Shape{2, 2, 2, 16});

            Tensor x2 = xgrad::randn<float>({2, 5, 4, 16}, true), w2 = xgrad::randn<float>({k, k, 16, 0}, true);
            auto y2 = xgrad::conv2d(x2, w2, {.padding = Padding::same});
            REQUIRE(y2.shape() == Shape{2, 5, 4, 0});
            xgrad::sum(y2).backward();
            CHECK(xt::all(xt::equal(x2.grad(), 0.0f)));
            const Shape pooled{2, 2, 2, 0};  // g++ 12 once stored this as [2, 2, 2, 2] (test_compiler)
            CHECK(xgrad::conv2d_relu_max_pool2d(x2, w2, {.padding = Padding::same}, {.kernel = 2}).shape() == pooled);
            // the transposed convolution of no channels is its bias
            const auto t = xgrad::conv_transpose2d(Tensor(xt::xarray<float>(xt::zeros<float>({1, 3, 3, 0}))),
                                                   xgrad::randn<float>({k, k, 4, 0}),
                                                   Tensor(xt::xarray<float>(xt::ones<float>({4}))), {.stride = 2});
            CHECK(xt::all(xt::equal(t.value(), 1.0f)));
        }
}
