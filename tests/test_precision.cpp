// bf16 mixed precision (xgrad/precision.hpp): product ops take bf16 operands and sum in
// float32, forward and backward, on every kernel path; everything else stays float32. The
// suite runs this file a second time with XGRAD_BF16_LEVEL=portable (tests/meson.build).

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "helpers.hpp"
#include "xgrad/xgrad.hpp"

using xgrad::Padding;
using xgrad::Shape;
using xgrad::Tensor;
using xgrad::Tensor64;

namespace {

// x rounded to bf16 (nearest even), in double.
xt::xarray<double> rounded(const xt::xarray<float>& x) {
    xt::xarray<double> out = xt::empty<double>(x.shape());
    for (std::size_t i = 0; i < x.size(); ++i) {
        std::uint32_t u;
        const float f = x.data()[i];
        std::memcpy(&u, &f, sizeof u);
        u += 0x7fffu + ((u >> 16) & 1u);
        u &= 0xffff0000u;
        float r;
        std::memcpy(&r, &u, sizeof r);
        out.data()[i] = r;
    }
    return out;
}

// |a - b| <= tol · (max |b| + 1e-3), elementwise: float32 sums of exact bf16 products differ
// from a float64 sum by a few float32 roundings of the running sum.
bool close(const xt::xarray<float>& a, const xt::xarray<double>& b, double tol = 2e-5) {
    if (a.shape() != b.shape()) return false;
    double scale = 1e-3;
    for (std::size_t i = 0; i < b.size(); ++i) scale = std::max(scale, std::abs(b.data()[i]));
    for (std::size_t i = 0; i < b.size(); ++i)
        if (!(std::abs(a.data()[i] - b.data()[i]) <= tol * scale)) return false;
    return true;
}

}  // namespace

TEST_CASE("precision: bf16 conv2d, its input and weight gradients are float32 sums of bf16 products",
          "[precision]") {
    INFO("bf16 kernels: " << xgrad::bf16_kernels());
    for (const auto& c : xgrad_test::conv_paths()) {
        const xgrad_test::WinogradScope winograd(c.winograd);
        for (auto variant : {xgrad::ConvBackward::col2img, xgrad::ConvBackward::flipped}) {
            INFO(c.name << (variant == xgrad::ConvBackward::col2img ? " [col2img]" : " [flipped]"));
            xgrad::manual_seed(3);
            Tensor x = xgrad::randn<float>(c.x, true), w = xgrad::randn<float>(c.w, true);
            Tensor b = xgrad::randn<float>({c.w[3]}, true);
            auto o = c.o;
            o.backward = variant;
            Tensor y;
            {
                xgrad::AutocastGuard bf16;
                y = xgrad::conv2d(x, w, b, o);
            }
            const auto gy = xgrad::randn<float>(y.shape());
            y.backward(gy.value());  // after the guard: the rule keeps the forward pass's precision
            // float64 on the bf16-rounded operands; the bias is added in float32, unrounded
            Tensor64 x64(rounded(x.value()), true), w64(rounded(w.value()), true), b64(xt::cast<double>(b.value()), true);
            auto y64 = xgrad::conv2d(x64, w64, b64, o);
            y64.backward(rounded(gy.value()));
            CHECK(close(y.value(), y64.value()));
            CHECK(close(x.grad(), x64.grad()));
            CHECK(close(w.grad(), w64.grad()));
            // db = Σ gy over N, OH, OW, float32 and unrounded
            xt::xarray<double> db = xt::zeros<double>({c.w[3]});
            for (std::size_t i = 0; i < gy.size(); ++i) db(i % c.w[3]) += gy.value().data()[i];
            CHECK(close(b.grad(), db));
            // and it is not the float32 result: the operands were rounded
            xgrad::NoGradGuard off;
            CHECK(!xgrad_test::array_diff(y.value(), xgrad::conv2d(x, w, b, o).value(), 1e-7, 1e-7).empty());
        }
    }
}

TEST_CASE("precision: bf16 conv2d on random geometries (padding wider than the kernel, strides, dilations, "
          "groups) is the float32 sum of bf16 products, every input-gradient variant",
          "[precision][traps]") {
    // The fixed paths above use mostly same padding; this draws the direct bf16 passes (16+
    // channels: the scatters, the weight gradient from per-thread images, the flipped
    // variant as a forward of dY) and the few-channel and GEMM ones onto odd geometries,
    // against float64 on the rounded operands (its own kernels are proven against the
    // definition in test_conv).
    INFO("bf16 kernels: " << xgrad::bf16_kernels());
    xgrad_test::Picker pick(4321);
    std::size_t checked = 0;
    for (int trial = 0; trial < 120; ++trial) {
        const std::size_t groups = trial % 6 == 5 ? 2 : 1;
        const std::size_t cg = std::vector<std::size_t>{1, 3, 16, 17, 32}[pick(0, 4)], c = cg * groups;
        const std::size_t f = groups * std::vector<std::size_t>{1, 3, 16, 19, 32}[pick(0, 4)];
        // Half the trials at stride 1 with each side's padding inside the dilated kernel (the
        // flipped variant's forward-of-dY path), the others anywhere up to wider than the input.
        const bool inside = trial % 2 == 0;
        const std::size_t kh = pick(1, 5), kw = pick(1, 5), sh = inside ? 1 : pick(1, 3), sw = inside ? 1 : pick(1, 3);
        const std::size_t dh = pick(1, 2), dw = pick(1, 2), h = pick(1, 9), w = pick(1, 11);
        const std::size_t ekh = dh * (kh - 1) + 1, ekw = dw * (kw - 1) + 1;
        const std::size_t pt = pick(0, inside ? ekh - 1 : kh + 2), pb = pick(0, inside ? ekh - 1 : kh + 1),
                          pl = pick(0, inside ? ekw - 1 : w + 2), pr = pick(0, inside ? ekw - 1 : kw + 1);
        if (h + pt + pb < ekh || w + pl + pr < ekw) continue;
        auto o = xgrad_test::conv_options(sh, sw, dh, dw, pt, pb, pl, pr, groups);
        const std::size_t n = pick(1, 3);
        INFO("x [" << n << ", " << h << ", " << w << ", " << c << "], w [" << kh << ", " << kw << ", " << cg << ", " << f
                   << "], stride " << sh << "x" << sw << ", dilation " << dh << "x" << dw << ", padding {" << pt << ", "
                   << pb << ", " << pl << ", " << pr << "}, groups " << groups);
        xgrad::manual_seed(static_cast<std::uint64_t>(trial));
        const xt::xarray<float> xv = xgrad::randn<float>({n, h, w, c}).value();
        const xt::xarray<float> wv = xgrad::randn<float>({kh, kw, cg, f}).value();
        Tensor64 x64(rounded(xv), true), w64(rounded(wv), true);
        auto y64 = xgrad::conv2d(x64, w64, o);
        const xt::xarray<float> gy = xgrad::randn<float>(y64.shape()).value();
        y64.backward(rounded(gy));
        for (auto variant : {xgrad::ConvBackward::col2img, xgrad::ConvBackward::flipped, xgrad::ConvBackward::automatic}) {
            INFO("variant " << static_cast<int>(variant));
            o.backward = variant;
            Tensor x(xv, true), wt(wv, true), y;
            {
                xgrad::AutocastGuard bf16;
                y = xgrad::conv2d(x, wt, o);
            }
            y.backward(gy);
            CHECK(close(y.value(), y64.value()));
            CHECK(close(x.grad(), x64.grad()));
            CHECK(close(wt.grad(), w64.grad()));
        }
        ++checked;
    }
    CHECK(checked > 80);
}

TEST_CASE("precision: bf16 conv2d: a NaN or an infinity reaches exactly the outputs whose windows hold it",
          "[precision][nan]") {
    INFO("bf16 kernels: " << xgrad::bf16_kernels());
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    for (const auto& c : xgrad_test::conv_paths()) {
        const xgrad_test::WinogradScope winograd(c.winograd);
        INFO(c.name);
        xgrad::manual_seed(8);
        xt::xarray<float> xv = xgrad::randn<float>(c.x).value();
        // a non-finite value in every third pixel's last channel of the first image's middle row
        // (where a kernel row's run of pairs ends next to it), in the first channel elsewhere
        const std::size_t h = c.x[1], w = c.x[2], ch = c.x[3];
        for (std::size_t ix = 0; ix < w; ix += 3) xv(0, h / 2, ix, ch - 1) = ix % 2 ? inf : nan;
        xv(c.x[0] - 1, 0, w - 1, 0) = -inf;
        Tensor y;
        {
            xgrad::AutocastGuard bf16;
            y = xgrad::conv2d(Tensor(xv), Tensor(xgrad::randn<float>(c.w).value()), c.o);
        }
        xgrad::manual_seed(8);
        xgrad::randn<float>(c.x);  // the same weights as above
        const Tensor64 w64(rounded(xgrad::randn<float>(c.w).value()));
        const auto y64 = xgrad::conv2d(Tensor64(rounded(xv)), w64, c.o);
        std::size_t differ = 0;
        for (std::size_t i = 0; i < y.size(); ++i)
            differ += std::isfinite(y.value().data()[i]) != std::isfinite(y64.value().data()[i]);
        CHECK(differ == 0);
    }
}

TEST_CASE("precision: bf16 linear, linear_relu and matmul, forward and backward", "[precision]") {
    xgrad::manual_seed(4);
    // the second size packs its operands in several blocks of rows and of pairs, K odd
    for (const auto& [rows, in] : {std::pair<std::size_t, std::size_t>{37, 70}, {130, 301}})
    for (bool relu : {false, true}) {
        INFO((relu ? "linear_relu " : "linear ") << rows << " x " << in);
        Tensor x = xgrad::randn<float>({rows, in}, true), w = xgrad::randn<float>({in, 45}, true);
        Tensor b = xgrad::randn<float>({45}, true);
        Tensor y;
        {
            xgrad::AutocastGuard bf16;
            y = relu ? xgrad::linear_relu(x, w, b) : xgrad::linear(x, w, b);
        }
        const auto gy = xgrad::randn<float>(y.shape());
        y.backward(gy.value());
        Tensor64 x64(rounded(x.value()), true), w64(rounded(w.value()), true), b64(xt::cast<double>(b.value()), true);
        auto y64 = relu ? xgrad::linear_relu(x64, w64, b64) : xgrad::linear(x64, w64, b64);
        y64.backward(rounded(gy.value()));  // the bias gradient sums the unrounded gy: rounding is exact here
        CHECK(close(y.value(), y64.value()));
        CHECK(close(x.grad(), x64.grad()));
        CHECK(close(w.grad(), w64.grad()));
        // db = Σ gy (masked), float32 and unrounded
        xt::xarray<double> db = xt::zeros<double>({45});
        for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t j = 0; j < 45; ++j)
                if (!relu || y64.value()(r, j) > 0) db(j) += gy.value()(r, j);
        CHECK(close(b.grad(), db));
    }
    // batched matmul and one b shared by a batch, both operands' gradients
    for (const auto& [as, bs] : {std::pair<Shape, Shape>{{3, 5, 33}, {3, 33, 7}}, {{2, 6, 20}, {20, 11}}}) {
        Tensor a = xgrad::randn<float>(as, true), m = xgrad::randn<float>(bs, true);
        Tensor y;
        {
            xgrad::AutocastGuard bf16;
            y = xgrad::matmul(a, m);
        }
        const auto gy = xgrad::randn<float>(y.shape());
        y.backward(gy.value());
        Tensor64 a64(rounded(a.value()), true), m64(rounded(m.value()), true);
        auto y64 = xgrad::matmul(a64, m64);
        y64.backward(rounded(gy.value()));
        CHECK(close(y.value(), y64.value()));
        CHECK(close(a.grad(), a64.grad()));
        CHECK(close(m.grad(), m64.grad()));
    }
}

TEST_CASE("precision: bf16 linear and matmul on random sizes (1, odd, more rows than a thread's block), both "
          "gradients", "[precision][traps]") {
    // The packing splits pairs along K and blocks of 256 columns into tasks; sizes of 1, odd K
    // (a last half pair) and rows fewer than the threads are its edges.
    xgrad_test::Picker pick(99);
    for (int trial = 0; trial < 40; ++trial) {
        const bool big = trial % 8 == 7;
        const std::size_t m = big ? pick(200, 700) : pick(1, 40), k = big ? pick(150, 400) : pick(1, 70),
                          n = big ? pick(200, 600) : pick(1, 40);
        INFO(m << " x " << k << " x " << n);
        xgrad::manual_seed(static_cast<std::uint64_t>(trial));
        Tensor x = xgrad::randn<float>({m, k}, true), w = xgrad::randn<float>({k, n}, true);
        Tensor b = xgrad::randn<float>({n}, true);
        Tensor y;
        {
            xgrad::AutocastGuard bf16;
            y = trial % 2 ? xgrad::linear(x, w, b) : xgrad::matmul(x, w);
        }
        const auto gy = xgrad::randn<float>(y.shape());
        y.backward(gy.value());
        Tensor64 x64(rounded(x.value()), true), w64(rounded(w.value()), true), b64(xt::cast<double>(b.value()), true);
        auto y64 = trial % 2 ? xgrad::linear(x64, w64, b64) : xgrad::matmul(x64, w64);
        y64.backward(rounded(gy.value()));
        CHECK(close(y.value(), y64.value()));
        CHECK(close(x.grad(), x64.grad()));
        CHECK(close(w.grad(), w64.grad()));
    }
}

TEST_CASE("precision: float32 master weights: an update below bf16's resolution still moves a weight",
          "[precision]") {
    // bf16 has 8 significant bits: next to 1 its values are 2^-7 apart. One SGD step of 1e-4
    // must leave the float32 weight at 1 - 1e-4, not round it back to 1.
    Tensor w(xt::xarray<float>({4, 1}, 1.0f), true);
    xgrad::optim::SGD opt({w}, {.lr = 1e-4});
    const Tensor x(xt::xarray<float>({1, 4}, 1.0f));
    {
        xgrad::AutocastGuard bf16;
        auto loss = xgrad::sum(xgrad::linear(x, w));  // dloss/dw = 1
        opt.zero_grad();
        loss.backward();
        opt.step();
    }
    for (std::size_t i = 0; i < 4; ++i) CHECK(w.value()(i, 0) == 1.0f - 1e-4f);
    CHECK(xgrad::autocast_precision() == xgrad::Precision::float32);  // the guard restored it
}

TEST_CASE("precision: the guard nests and restores; float64 tensors ignore it", "[precision]") {
    {
        xgrad::AutocastGuard outer;
        CHECK(xgrad::autocast_precision() == xgrad::Precision::bf16);
        {
            xgrad::AutocastGuard inner(xgrad::Precision::float32);
            CHECK(xgrad::autocast_precision() == xgrad::Precision::float32);
        }
        CHECK(xgrad::autocast_precision() == xgrad::Precision::bf16);
        // 1 + 2^-9 is not a bf16 value: float64 products keep it
        const Tensor64 a(xt::xarray<double>({1, 1}, 1.0 + std::ldexp(1.0, -9)));
        CHECK(xgrad::matmul(a, a).item() == (1.0 + std::ldexp(1.0, -9)) * (1.0 + std::ldexp(1.0, -9)));
        const Tensor af(xt::xarray<float>({1, 1}, 1.0f + std::ldexp(1.0f, -9)));
        CHECK(xgrad::matmul(af, af).item() == 1.0f);  // rounded to 1 before the product
    }
    CHECK(xgrad::autocast_precision() == xgrad::Precision::float32);
    CHECK((xgrad::bf16_kernels() == "avx512_bf16" || xgrad::bf16_kernels() == "portable"));
}
