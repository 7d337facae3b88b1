#include "xgrad/ops/pool.hpp"

#include <cmath>
#include <cstdint>
#include <memory>

#include <fmt/format.h>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xmanipulation.hpp>

#include "detail/cases.hpp"
#include "detail/check.hpp"
#include "detail/pool.hpp"
#include "detail/precision.hpp"
#include "kernels/buffer.hpp"
#include "kernels/pool2d.hpp"
#include "xgrad/ops/activation.hpp"
#include "xgrad/ops/linalg.hpp"
#include "xgrad/ops/reduce.hpp"
#include "xgrad/ops/shape.hpp"
#include "xgrad/tape.hpp"

namespace xgrad {

namespace detail {

kernels::PoolGeometry pool_geometry(const char* op, const Shape& xs, const Pool2dOptions& o) {
    check_shape(xs.size() == 4, "{}: x must be [N, H, W, C], got x {}", op, xs);
    const Size2 k = o.kernel, s = o.stride.value_or(o.kernel), p = o.padding;
    check_value(k.h >= 1 && k.w >= 1, "{}: kernel must be at least 1, got {}x{}; x {}", op, k.h, k.w, xs);
    check_value(s.h >= 1 && s.w >= 1, "{}: stride must be at least 1, got {}x{}; x {}", op, s.h, s.w, xs);
    // p <= k / 2 rather than 2p <= k, which overflows an int for a padding near 2^30.
    check_value(p.h >= 0 && p.w >= 0 && p.h <= k.h / 2 && p.w <= k.w / 2,
                "{}: padding must be between 0 and half the kernel ({}x{}), got {}x{}; x {}", op, k.h, k.w, p.h, p.w,
                xs);
    const std::size_t h = xs[1], w = xs[2];
    // A window over an empty image covers no pixel at all, padded or not (PyTorch refuses
    // such inputs too); an empty batch or channel axis is fine.
    check_shape(h > 0 && w > 0, "{}: x has no rows or no columns (H and W must be at least 1); x {}", op, xs);
    // The argmax of a max-pool window is an int32 pixel index within its image.
    check_shape(h * w <= static_cast<std::size_t>(INT32_MAX),
                "{}: an image of {}x{} pixels has more than 2^31 pixels; x {}", op, h, w, xs);
    const auto kh = static_cast<std::size_t>(k.h), kw = static_cast<std::size_t>(k.w);
    const auto ph = static_cast<std::size_t>(p.h), pw = static_cast<std::size_t>(p.w);
    check_shape(h + 2 * ph >= kh && w + 2 * pw >= kw,
                "{}: the {}x{} window is larger than the padded input ({}x{}); x {}", op, kh, kw, h + 2 * ph,
                w + 2 * pw, xs);
    const auto sh = static_cast<std::size_t>(s.h), sw = static_cast<std::size_t>(s.w);
    return {xs[0], h, w, xs[3], kh, kw, sh, sw, ph, pw, (h + 2 * ph - kh) / sh + 1, (w + 2 * pw - kw) / sw + 1};
}

}  // namespace detail

namespace {

using detail::Argmax;
using detail::pool_geometry;

template <class T>
basic_tensor<T> max_pool2d_gather(const basic_tensor<T>& x, const Argmax& argmax, const kernels::PoolGeometry& g);

// dx [N, H, W, C]: each gy element added at its window's argmax. Linear in gy; its adjoint,
// and so its gradient, is max_pool2d_gather with the same indices.
template <class T>
basic_tensor<T> max_pool2d_backward(const basic_tensor<T>& gy, const Argmax& argmax, const kernels::PoolGeometry& g) {
    xt::xarray<T> dx = xt::empty<T>(Shape{g.n, g.h, g.w, g.c});  // the kernel writes every element
    kernels::max_pool2d_backward<T>(gy.value().data(), argmax->data(), g, dx.data());
    basic_tensor<T> out(std::move(dx));
    record(OpKind::max_pool2d_backward, {gy}, out, [argmax, g](const basic_tensor<T>& gx, auto& grads) {
        grads.add(0, max_pool2d_gather(gx, argmax, g));
    });
    return out;
}

// y [N, OH, OW, C]: x at each window's argmax. Its gradient is max_pool2d_backward.
template <class T>
basic_tensor<T> max_pool2d_gather(const basic_tensor<T>& x, const Argmax& argmax, const kernels::PoolGeometry& g) {
    xt::xarray<T> y = xt::empty<T>(Shape{g.n, g.oh, g.ow, g.c});
    kernels::max_pool2d_gather<T>(x.value().data(), argmax->data(), g, y.data());
    basic_tensor<T> out(std::move(y));
    record(OpKind::max_pool2d_gather, {x}, out, [argmax, g](const basic_tensor<T>& gy, auto& grads) {
        grads.add(0, max_pool2d_backward(gy, argmax, g));
    });
    return out;
}

// dx: each gy element spread evenly over its window. Linear in gy and its own adjoint's
// adjoint: its gradient is avg_pool2d with the same options.
template <class T>
basic_tensor<T> avg_pool2d_backward(const basic_tensor<T>& gy, const kernels::PoolGeometry& g, const Pool2dOptions& o) {
    xt::xarray<T> dx = xt::zeros<T>(Shape{g.n, g.h, g.w, g.c});
    kernels::avg_pool2d_backward<T>(gy.value().data(), g, o.count_include_pad, dx.data());
    basic_tensor<T> out(std::move(dx));
    record(OpKind::avg_pool2d_backward, {gy}, out, [o](const basic_tensor<T>& gx, auto& grads) {
        grads.add(0, avg_pool2d(gx, o));
    });
    return out;
}

// max_pool2d of x, or relu_max_pool2d (kind): relu applied to the pooled values.
template <class T>
basic_tensor<T> max_pool_impl(OpKind kind, const basic_tensor<T>& x, const Pool2dOptions& o) {
    const bool relu = kind == OpKind::relu_max_pool2d;
    const auto g = pool_geometry(relu ? "relu_max_pool2d" : "max_pool2d", x.shape(), o);
    xt::xarray<T> y = xt::empty<T>(Shape{g.n, g.oh, g.ow, g.c});
    // Uninitialised and recycled: the kernel writes every index. Shared, because a backward
    // rule must be copyable and a Buffer is not. None when nothing will be backpropagated.
    const bool indices = grad_enabled() && x.requires_grad();
    auto argmax = indices ? std::make_shared<kernels::Buffer<std::int32_t>>(y.size())
                          : std::make_shared<kernels::Buffer<std::int32_t>>();
    kernels::max_pool2d_forward<T>(x.value().data(), g, y.data(), indices ? argmax->data() : nullptr, relu);
    basic_tensor<T> out(std::move(y));
    record(kind, {x}, out, [argmax = Argmax(argmax), g, relu](const basic_tensor<T>& gy, auto& grads) {
        // dx: each gy element goes to its window's first maximum, masked by relu's gradient
        // on the pooled values (where the maximum is positive, so is the pixel it came from)
        grads.add(0, max_pool2d_backward(relu ? relu_backward(gy, grads.output()) : gy, argmax, g));
    });
    return out;
}

}  // namespace

template <class T>
basic_tensor<T> max_pool2d(const basic_tensor<T>& x, const Pool2dOptions& o) {
    return max_pool_impl(OpKind::max_pool2d, x, o);
}

template <class T>
basic_tensor<T> relu_max_pool2d(const basic_tensor<T>& x, const Pool2dOptions& o) {
    return max_pool_impl(OpKind::relu_max_pool2d, x, o);
}

template <class T>
basic_tensor<T> avg_pool2d(const basic_tensor<T>& x, const Pool2dOptions& o) {
    const auto g = pool_geometry("avg_pool2d", x.shape(), o);
    xt::xarray<T> y = xt::empty<T>(Shape{g.n, g.oh, g.ow, g.c});
    kernels::avg_pool2d_forward<T>(x.value().data(), g, o.count_include_pad, y.data());
    basic_tensor<T> out(std::move(y));
    record(OpKind::avg_pool2d, {x}, out, [g, o](const basic_tensor<T>& gy, auto& grads) {
        grads.add(0, avg_pool2d_backward(gy, g, o));
    });
    return out;
}

template <class T>
basic_tensor<T> global_avg_pool2d(const basic_tensor<T>& x) {
    detail::check_shape(x.dim() == 4 && x.shape()[1] > 0 && x.shape()[2] > 0,
                        "global_avg_pool2d: x must be [N, H, W, C] with H, W > 0, got x {}", x.shape());
    return mean(x, {1, 2});
}

namespace {

// x [N, H, W, C] -> [N, OH, OW, C] by the maps mh [OH, H] along H and mw [OW, W] along W: two
// matmuls with constant matrices on permuted views, so the rules are matmul's and permute's.
// In float32 whatever the autocast: resampling is not a product op of the contract.
template <class T>
basic_tensor<T> resample(const basic_tensor<T>& x, const xt::xarray<T>& mh, const xt::xarray<T>& mw) {
    detail::PrecisionScope float32(false);
    const basic_tensor<T> mwt(xt::xarray<T>(xt::transpose(mw))), mht(xt::xarray<T>(xt::transpose(mh)));
    const auto along_w = matmul(permute(x, {0, 1, 3, 2}), mwt);        // [N, H, C, OW]
    const auto along_h = matmul(permute(along_w, {0, 3, 2, 1}), mht);  // [N, OW, C, OH]
    return permute(along_h, {0, 3, 1, 2});                             // [N, OH, OW, C]
}

template <class T>
void check_resample_input(const char* op, const basic_tensor<T>& x, Size2 out) {
    detail::check_shape(x.dim() == 4 && x.shape()[1] > 0 && x.shape()[2] > 0,
                        "{}: x must be [N, H, W, C] with H, W > 0, got x {}", op, x.shape());
    detail::check_value(out.h >= 1 && out.w >= 1, "{}: the output size must be at least 1, got {}x{}; x {}", op, out.h,
                        out.w, x.shape());
    detail::checked_elements(op, Shape{x.shape()[0], static_cast<std::size_t>(out.h), static_cast<std::size_t>(out.w),
                                       x.shape()[3]},
                             sizeof(T), "x " + to_string(x.shape()));
}

// adaptive_avg_pool2d's map along one axis: row i averages inputs floor(i·n/m) .. ceil((i+1)·n/m) - 1.
template <class T>
xt::xarray<T> bin_means(std::size_t n, std::size_t m) {
    xt::xarray<T> a = xt::zeros<T>({m, n});
    for (std::size_t i = 0; i < m; ++i) {
        const std::size_t lo = i * n / m, hi = ((i + 1) * n + m - 1) / m;
        for (std::size_t j = lo; j < hi; ++j) a(i, j) = T(1) / static_cast<T>(hi - lo);
    }
    return a;
}

// upsample2d's map along one axis from n inputs to m outputs.
template <class T>
xt::xarray<T> interpolation(std::size_t n, std::size_t m, Interpolation mode, bool align_corners) {
    xt::xarray<T> a = xt::zeros<T>({m, n});
    for (std::size_t i = 0; i < m; ++i) {
        if (mode == Interpolation::nearest) {
            a(i, std::min(n - 1, static_cast<std::size_t>(std::floor(static_cast<double>(i) * n / m)))) = T(1);
            continue;
        }
        double src = align_corners ? (m > 1 ? static_cast<double>(i) * (n - 1) / (m - 1) : 0.0)
                                   : (i + 0.5) * n / m - 0.5;
        src = std::max(src, 0.0);
        const auto lo = std::min(n - 1, static_cast<std::size_t>(src));
        const std::size_t hi = std::min(lo + 1, n - 1);
        const double frac = src - static_cast<double>(lo);
        a(i, lo) += static_cast<T>(1 - frac);
        a(i, hi) += static_cast<T>(frac);
    }
    return a;
}

}  // namespace

template <class T>
basic_tensor<T> adaptive_avg_pool2d(const basic_tensor<T>& x, Size2 output_size) {
    check_resample_input("adaptive_avg_pool2d", x, output_size);
    const auto oh = static_cast<std::size_t>(output_size.h), ow = static_cast<std::size_t>(output_size.w);
    return resample(x, bin_means<T>(x.shape()[1], oh), bin_means<T>(x.shape()[2], ow));
}

template <class T>
basic_tensor<T> upsample2d(const basic_tensor<T>& x, const Upsample2dOptions& o) {
    detail::check_value(o.size || (o.scale.h >= 1 && o.scale.w >= 1), "upsample2d: scale must be at least 1, got {}x{}; x {}",
                        o.scale.h, o.scale.w, x.shape());
    detail::check_shape(x.dim() == 4, "upsample2d: x must be [N, H, W, C] with H, W > 0, got x {}", x.shape());
    const auto scaled = [&](std::size_t in, int factor) {
        const double out = static_cast<double>(in) * factor;
        return out < 0x1p30 ? static_cast<int>(out) : 0x40000000;
    };
    const Size2 out = o.size.value_or(Size2(scaled(x.shape()[1], o.scale.h), scaled(x.shape()[2], o.scale.w)));
    check_resample_input("upsample2d", x, out);
    const auto oh = static_cast<std::size_t>(out.h), ow = static_cast<std::size_t>(out.w);
    return resample(x, interpolation<T>(x.shape()[1], oh, o.mode, o.align_corners),
                    interpolation<T>(x.shape()[2], ow, o.mode, o.align_corners));
}

#define XGRAD_INSTANTIATE(T)                                                              \
    template basic_tensor<T> max_pool2d(const basic_tensor<T>&, const Pool2dOptions&);    \
    template basic_tensor<T> relu_max_pool2d(const basic_tensor<T>&, const Pool2dOptions&); \
    template basic_tensor<T> avg_pool2d(const basic_tensor<T>&, const Pool2dOptions&);    \
    template basic_tensor<T> global_avg_pool2d(const basic_tensor<T>&);                   \
    template basic_tensor<T> adaptive_avg_pool2d(const basic_tensor<T>&, Size2);          \
    template basic_tensor<T> upsample2d(const basic_tensor<T>&, const Upsample2dOptions&);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

namespace detail {

template <class T>
basic_tensor<T> max_pool2d_backward(const basic_tensor<T>& gy, const Argmax& argmax, const kernels::PoolGeometry& g) {
    return xgrad::max_pool2d_backward(gy, argmax, g);
}
template Tensor max_pool2d_backward(const Tensor&, const Argmax&, const kernels::PoolGeometry&);
template Tensor64 max_pool2d_backward(const Tensor64&, const Argmax&, const kernels::PoolGeometry&);

namespace {

Pool2dOptions pool(Size2 kernel, std::optional<Size2> stride = std::nullopt, Size2 padding = 0,
                   bool count_include_pad = true) {
    Pool2dOptions o;
    o.kernel = kernel;
    o.stride = stride;
    o.padding = padding;
    o.count_include_pad = count_include_pad;
    return o;
}

}  // namespace

void register_pool_cases(CaseRegistry& r) {
    using V = std::vector<Tensor64>;
    const struct {
        const char* name;
        Shape x;
        Pool2dOptions o;
    } cases[] = {
        {"2x2 on 4x6, batch 2", {2, 4, 6, 3}, pool(2)},
        {"2x2 on 5x5 (floor)", {1, 5, 5, 2}, pool(2)},
        {"3x3 stride 2 overlapping", {1, 7, 7, 2}, pool(3, Size2(2))},
        {"3x2 stride 1x2 on 6x7", {2, 6, 7, 1}, pool({3, 2}, Size2(1, 2))},
        {"3x3 stride 2 padding 1", {1, 6, 6, 2}, pool(3, Size2(2), 1)},
    };
    for (const auto& c : cases) {
        r.add(OpKind::max_pool2d, c.name, {{c.x}}, [o = c.o](const V& v) { return max_pool2d(v[0], o); });
        r.add(OpKind::relu_max_pool2d, c.name, {{c.x}}, [o = c.o](const V& v) { return relu_max_pool2d(v[0], o); });
        r.add(OpKind::avg_pool2d, c.name, {{c.x}}, [o = c.o](const V& v) { return avg_pool2d(v[0], o); });
        // The gradient kernels as ops: the argmax of a fixed input with distinct values, and
        // the backward pass of avg_pool2d.
        xt::xarray<double> fixed = xt::empty<double>(c.x);
        for (std::size_t k = 0; k < fixed.size(); ++k) fixed.data()[k] = std::sin(1.7 * static_cast<double>(k));
        const auto g = pool_geometry("max_pool2d", fixed.shape(), c.o);
        auto argmax = std::make_shared<kernels::Buffer<std::int32_t>>(g.n * g.oh * g.ow * g.c);
        xt::xarray<double> y = xt::empty<double>(Shape{g.n, g.oh, g.ow, g.c});
        kernels::max_pool2d_forward<double>(fixed.data(), g, y.data(), argmax->data());
        const Argmax a(argmax);
        r.add(OpKind::max_pool2d_backward, c.name, {{y.shape()}},
              [a, g](const V& v) { return max_pool2d_backward(v[0], a, g); });
        r.add(OpKind::max_pool2d_gather, c.name, {{c.x}}, [a, g](const V& v) { return max_pool2d_gather(v[0], a, g); });
        r.add(OpKind::avg_pool2d_backward, c.name, {{y.shape()}},
              [g, o = c.o](const V& v) { return avg_pool2d_backward(v[0], g, o); });
    }
    r.add(OpKind::avg_pool2d, "3x3 stride 2 padding 1, exclude pad", {{{1, 6, 6, 2}}},
          [](const V& v) { return avg_pool2d(v[0], pool(3, Size2(2), 1, false)); });
    r.add(OpKind::avg_pool2d_backward, "3x3 stride 2 padding 1, exclude pad", {{{1, 3, 3, 2}}}, [](const V& v) {
        const auto o = pool(3, Size2(2), 1, false);
        return avg_pool2d_backward(v[0], pool_geometry("avg_pool2d", Shape{1, 6, 6, 2}, o), o);
    });
    r.add("adaptive_avg_pool2d", "[2,5,7,2] -> 3x2 (overlapping bins)", {{{2, 5, 7, 2}}},
          [](const V& v) { return adaptive_avg_pool2d(v[0], {3, 2}); });
    r.add("adaptive_avg_pool2d", "[1,2,3,2] -> 4x3 (more outputs than inputs)", {{{1, 2, 3, 2}}},
          [](const V& v) { return adaptive_avg_pool2d(v[0], {4, 3}); });
    r.add("upsample2d", "[1,3,2,2] nearest x2x3", {{{1, 3, 2, 2}}},
          [](const V& v) { return upsample2d(v[0], {.scale = {2, 3}}); });
    r.add("upsample2d", "[2,3,4,1] bilinear x2", {{{2, 3, 4, 1}}},
          [](const V& v) { return upsample2d(v[0], {.scale = 2, .mode = Interpolation::bilinear}); });
    r.add("upsample2d", "[1,4,3,2] bilinear to 3x5, align_corners", {{{1, 4, 3, 2}}}, [](const V& v) {
        return upsample2d(v[0], {.size = Size2(3, 5), .mode = Interpolation::bilinear, .align_corners = true});
    });
    r.add("global_avg_pool2d", "[2,3,5,4]", {{{2, 3, 5, 4}}}, [](const V& v) { return global_avg_pool2d(v[0]); });
}

}  // namespace detail
}  // namespace xgrad
