#include "xgrad/ops/conv.hpp"

#include <algorithm>
#include <atomic>
#include <new>
#include <cmath>

#include <fmt/format.h>
#include <xtensor/xbuilder.hpp>

#include "detail/cases.hpp"
#include "detail/check.hpp"
#include "detail/pool.hpp"
#include "detail/precision.hpp"
#include "kernels/conv2d.hpp"
#include "kernels/winograd.hpp"
#include "xgrad/ops/activation.hpp"
#include "xgrad/ops/elementwise.hpp"
#include "xgrad/ops/reduce.hpp"
#include "xgrad/tape.hpp"

namespace xgrad {

namespace {

std::atomic<ConvBackward> g_default_backward{ConvBackward::automatic};

// Output size and padding along one axis; throws when the window does not fit.
struct AxisFit {
    std::size_t out, pad_before, pad_after;
};

AxisFit fit_axis(std::size_t in, std::size_t kernel, int stride, int dilation, Padding mode, int before,
                 int after, const char* axis, const char* op, const std::string& shapes) {
    const std::size_t ek = static_cast<std::size_t>(dilation) * (kernel - 1) + 1;
    const auto s = static_cast<std::size_t>(stride);
    if (mode == Padding::same) {
        const std::size_t out = (in + s - 1) / s;
        const std::size_t needed = (out - 1) * s + ek;
        const std::size_t total = needed > in ? needed - in : 0;
        return {out, total / 2, total - total / 2};  // the odd one goes after (bottom/right)
    }
    const auto pb = static_cast<std::size_t>(before), pa = static_cast<std::size_t>(after);
    detail::check_shape(in + pb + pa >= ek,
                        "{}: the kernel ({} {}, {} dilated) is larger than the {} input ({} with "
                        "padding); {}",
                        op, kernel, axis, ek, axis, in + pb + pa, shapes);
    return {(in + pb + pa - ek) / s + 1, pb, pa};
}

// The geometry of x [N, H, W, C] * w [KH, KW, C / groups, F] (+ b [F]), checked; `op` names the
// op in messages (conv2d, or one of its gradients).
template <class T>
kernels::ConvGeometry conv_geometry(const char* op, const Shape& xs, const Shape& ws, const Shape* bs,
                                    const Conv2dOptions& o) {
    const std::string shapes = fmt::format("x {}, w {}{}", to_string(xs), to_string(ws),
                                           bs ? ", b " + to_string(*bs) : "");
    detail::check_shape(xs.size() == 4, "{}: x must be [N, H, W, C]; {}", op, shapes);
    detail::check_shape(ws.size() == 4, "{}: w must be [KH, KW, C / groups, F]; {}", op, shapes);
    detail::check_value(o.stride.h >= 1 && o.stride.w >= 1, "{}: stride must be at least 1, got {}x{}; {}", op,
                        o.stride.h, o.stride.w, shapes);
    detail::check_value(o.dilation.h >= 1 && o.dilation.w >= 1,
                        "{}: dilation must be at least 1, got {}x{}; {}", op, o.dilation.h, o.dilation.w, shapes);
    const auto& p = o.padding;
    detail::check_value(p.top >= 0 && p.bottom >= 0 && p.left >= 0 && p.right >= 0,
                        "{}: padding must not be negative, got {{top {}, bottom {}, left {}, right {}}}; {}", op,
                        p.top, p.bottom, p.left, p.right, shapes);
    detail::check_value(o.groups >= 1, "{}: groups must be at least 1, got {}; {}", op, o.groups, shapes);
    const auto groups = static_cast<std::size_t>(o.groups);
    const std::size_t c = xs[3], f = ws[3];
    detail::check_value(c % groups == 0 && f % groups == 0,
                        "{}: groups {} must divide both the input channels {} and the filters {}; {}", op,
                        groups, c, f, shapes);
    detail::check_shape(ws[2] * groups == c, "{}: x has {} channels but w expects {}{}; {}", op, c,
                        ws[2] * groups, groups > 1 ? fmt::format(" ({} groups)", groups) : "", shapes);
    // No input channels or no filters are legal (an empty output, or the bias alone); a kernel
    // without extent is not.
    detail::check_shape(ws[0] >= 1 && ws[1] >= 1, "{}: w has an empty kernel; {}", op, shapes);
    detail::check_shape(!bs || (bs->size() == 1 && (*bs)[0] == f), "{}: b must be [F] = [{}]; {}", op, f,
                        shapes);
    const auto fy = fit_axis(xs[1], ws[0], o.stride.h, o.dilation.h, p.mode, p.top, p.bottom,
                             "high", op, shapes);
    const auto fx = fit_axis(xs[2], ws[1], o.stride.w, o.dilation.w, p.mode, p.left, p.right,
                             "wide", op, shapes);
    const kernels::ConvGeometry g{xs[0], xs[1], xs[2], c, ws[0], ws[1], f, groups,
                                  static_cast<std::size_t>(o.stride.h), static_cast<std::size_t>(o.stride.w),
                                  static_cast<std::size_t>(o.dilation.h), static_cast<std::size_t>(o.dilation.w),
                                  fy.pad_before, fy.pad_after, fx.pad_before, fx.pad_after, fy.out, fx.out};
    // Every buffer the kernels may size from the geometry must have a size that fits in
    // size_t: a huge padding would otherwise wrap a product around and overrun a small block.
    const std::size_t hp = g.h + g.pt + g.pb, wp = g.w + g.pl + g.pr;
    const std::size_t ekh = g.dh * (g.kh - 1) + 1, ekw = g.dw * (g.kw - 1) + 1;
    for (const Shape& buffer : {Shape{g.n, g.oh, g.ow, g.f}, Shape{hp, wp, g.c}, Shape{g.n, g.oh, g.ow, g.kh, g.kw, g.c},
                                Shape{g.n, hp + ekh, wp + ekw, std::max(g.f, g.c)}})
        detail::checked_elements(op, buffer, sizeof(T), shapes);
    return g;
}

// Runs a kernel call; its scratch buffers are allocated on this thread (never inside an
// OpenMP region), and a failed allocation becomes a ValueError naming the op and geometry.
template <class F>
void with_scratch(const kernels::ConvGeometry& g, F run) {
    try {
        run();
    } catch (const std::bad_alloc&) {
        throw ValueError(fmt::format("conv2d: cannot allocate the kernels' scratch memory; x [{}, {}, {}, {}], "
                                     "w [{}, {}, {}, {}], output [{}, {}, {}, {}], padding {{{}, {}, {}, {}}}",
                                     g.n, g.h, g.w, g.c, g.kh, g.kw, g.cg(), g.f, g.n, g.oh, g.ow, g.f, g.pt, g.pb,
                                     g.pl, g.pr));
    }
}

// The output shape [N, OH, OW, F] of a geometry.
Shape output_shape(const kernels::ConvGeometry& g) { return Shape{g.n, g.oh, g.ow, g.f}; }

template <class T>
xt::xarray<T> allocate(const char* op, const Shape& shape, bool zeroed) {
    return detail::allocating(op, shape, sizeof(T), [&] {
        return zeroed ? xt::xarray<T>(xt::zeros<T>(shape)) : xt::xarray<T>(xt::empty<T>(shape));
    });
}

template <class T>
void check_gy(const char* op, const basic_tensor<T>& gy, const kernels::ConvGeometry& g, const std::string& shapes) {
    detail::check_shape(gy.shape() == output_shape(g), "{}: gy has shape {} but the convolution's output is {}; {}", op,
                        gy.shape(), output_shape(g), shapes);
}

// conv2d_weight_grad with the forward pass's img2col columns when it kept them (null: made here).
template <class T>
basic_tensor<T> weight_grad(const basic_tensor<T>& x, const basic_tensor<T>& gy, const Shape& w_shape,
                            const Conv2dOptions& o, const kernels::Buffer<T>* kept_cols) {
    const auto g = conv_geometry<T>("conv2d_weight_grad", x.shape(), w_shape, nullptr, o);
    check_gy("conv2d_weight_grad", gy, g, fmt::format("x {}, gy {}, w {}", to_string(x.shape()),
                                                     to_string(gy.shape()), to_string(w_shape)));
    xt::xarray<T> dw = allocate<T>("conv2d_weight_grad", w_shape, true);
    const bool bf16 = detail::bf16_products<T>();  // the kernels round the operands
    with_scratch(g, [&] {
        kernels::Buffer<T> cols;
        if (!kept_cols) kernels::conv2d_columns<T>(x.value().data(), g, cols);
        // dW [KH·KW·Cg, F] = colsᵀ [KH·KW·Cg, N·OH·OW] · dY [N·OH·OW, F], per group
        kernels::conv2d_backward_weight<T>(x.value().data(), kept_cols ? *kept_cols : cols, gy.value().data(), g,
                                           dw.data(), bf16);
    });
    basic_tensor<T> out(std::move(dw));
    record(OpKind::conv2d_weight_grad, {x, gy}, out, [x, gy, o, bf16](const basic_tensor<T>& gw, auto& grads) {
        detail::PrecisionScope scope(bf16);
        // dW is bilinear in x and dY: its adjoints are the conv's input gradient and the conv
        if (grads.needs(0)) grads.add(0, conv2d_input_grad(gy, gw, x.shape(), o));
        if (grads.needs(1)) grads.add(1, conv2d(x, gw, o));
    });
    return out;
}

// A convolution's rule from gy = dL/d(conv + b): dx, dw (from the forward pass's img2col
// columns when it kept them) and db, for the inputs that need them.
template <class T, class Grads>
void add_conv_grads(const basic_tensor<T>& x, const basic_tensor<T>& w, const Conv2dOptions& o,
                    const basic_tensor<T>& gy, const kernels::Buffer<T>* cols, Grads& grads) {
    if (grads.needs(0)) grads.add(0, conv2d_input_grad(gy, w, x.shape(), o));
    if (grads.needs(1)) grads.add(1, weight_grad<T>(x, gy, w.shape(), o, cols));
    if (grads.size() > 2 && grads.needs(2)) grads.add(2, sum(gy, {0, 1, 2}));  // db = dY over N, OH, OW
}

// conv2d, or conv2d_relu (kind): relu(conv + b) computed in the conv's output pass, whose rule
// masks dY with relu_backward and continues as conv2d's.
template <class T>
basic_tensor<T> conv2d_impl(OpKind kind, const basic_tensor<T>& x, const basic_tensor<T>& w, const basic_tensor<T>* b,
                            const Conv2dOptions& options) {
    const bool relu = kind == OpKind::conv2d_relu;
    const char* name = relu ? "conv2d_relu" : "conv2d";
    const auto g = conv_geometry<T>(name, x.shape(), w.shape(), b ? &b->shape() : nullptr, options);
    Conv2dOptions o = options;
    o.backward = options.backward.value_or(default_conv_backward());
    xt::xarray<T> y = allocate<T>(name, output_shape(g), false);
    // The img2col columns are kept only for a weight gradient (none in inference).
    const bool keep_cols = grad_enabled() && w.requires_grad();
    const bool bf16 = detail::bf16_products<T>();  // the kernels round the operands
    kernels::Buffer<T> cols;
    with_scratch(g, [&] {
        kernels::conv2d_forward<T>(x.value().data(), w.value().data(), {b ? b->value().data() : nullptr, relu}, g,
                                   y.data(), cols, keep_cols, bf16);
    });
    basic_tensor<T> out(std::move(y));
    // Shared, because a backward rule must be copyable (std::function) and a Buffer is not.
    auto backward = [x, w, o, relu, bf16, cols = std::make_shared<kernels::Buffer<T>>(std::move(cols))](
                        const basic_tensor<T>& gy_out, auto& grads) {
        detail::PrecisionScope scope(bf16);  // the gradients' products in the forward pass's precision
        const basic_tensor<T> gy = relu ? relu_backward(gy_out, grads.output()) : gy_out;  // dL/d(conv + b)
        add_conv_grads(x, w, o, gy, cols->size() ? cols.get() : nullptr, grads);
    };
    if (b)
        record(kind, {x, w, *b}, out, std::move(backward));
    else
        record(kind, {x, w}, out, std::move(backward));
    return out;
}

// relu_max_pool2d(conv2d(x, w[, b])) as one op: the pool is taken while the convolution's
// lines are in cache (kernels::conv2d_forward_max_pool). The rule routes the pooled gradient,
// masked by relu on the pooled values, to each window's argmax, then continues as conv2d's:
// the two ops' rules in one.
template <class T>
basic_tensor<T> conv_pool_impl(const basic_tensor<T>& x, const basic_tensor<T>& w, const basic_tensor<T>* b,
                               const Conv2dOptions& options, const Pool2dOptions& pool) {
    const char* name = "conv2d_relu_max_pool2d";
    const auto g = conv_geometry<T>(name, x.shape(), w.shape(), b ? &b->shape() : nullptr, options);
    const std::string pool_op = fmt::format("{} (x {}, w {}; pooling the convolution's output)", name,
                                            to_string(x.shape()), to_string(w.shape()));
    const auto pg = detail::pool_geometry(pool_op.c_str(), output_shape(g), pool);
    Conv2dOptions o = options;
    o.backward = options.backward.value_or(default_conv_backward());
    xt::xarray<T> y = allocate<T>(name, Shape{pg.n, pg.oh, pg.ow, pg.c}, false);
    // The argmax only for a backward pass (none in inference).
    const bool indices = grad_enabled() && (x.requires_grad() || w.requires_grad() || (b && b->requires_grad()));
    const bool bf16 = detail::bf16_products<T>();  // the kernels round the operands
    auto argmax = std::make_shared<kernels::Buffer<std::int32_t>>();
    with_scratch(g, [&] {
        if (indices) *argmax = kernels::Buffer<std::int32_t>(y.size());
        kernels::conv2d_forward_max_pool<T>(x.value().data(), w.value().data(), b ? b->value().data() : nullptr, true,
                                            g, pg, y.data(), indices ? argmax->data() : nullptr, bf16);
    });
    basic_tensor<T> out(std::move(y));
    auto backward = [x, w, o, pg, bf16, argmax = detail::Argmax(argmax)](const basic_tensor<T>& gp, auto& grads) {
        detail::PrecisionScope scope(bf16);
        // dL/d(conv + b): where the window's maximum was positive, its gradient at the argmax
        const basic_tensor<T> gy = detail::max_pool2d_backward(relu_backward(gp, grads.output()), argmax, pg);
        add_conv_grads<T>(x, w, o, gy, nullptr, grads);
    };
    if (b)
        record(OpKind::conv2d_relu_max_pool2d, {x, w, *b}, out, std::move(backward));
    else
        record(OpKind::conv2d_relu_max_pool2d, {x, w}, out, std::move(backward));
    return out;
}

// The output extent of a transposed convolution along one axis: the input size of the
// convolution it transposes whose output has `in` positions (with output_padding rows it cannot
// reach). Bounded first, so no stride or padding wraps it around.
std::size_t transposed_extent(std::size_t in, std::size_t kernel, int stride, int dilation, Padding mode,
                              int before, int after, int out_pad, const char* axis, const std::string& shapes) {
    detail::check_shape(in >= 1, "conv_transpose2d: x has no {} extent; {}", axis, shapes);
    detail::check_shape(static_cast<double>(in) * stride + static_cast<double>(kernel) * dilation < 0x1p62,
                        "conv_transpose2d: the {} output ({} · stride {}) is too large; {}", axis, in, stride, shapes);
    const auto n = static_cast<long long>(in), s = static_cast<long long>(stride);
    if (mode == Padding::same) return static_cast<std::size_t>(n * s);
    const long long ek = static_cast<long long>(dilation) * (static_cast<long long>(kernel) - 1) + 1;
    const long long full = (n - 1) * s + ek + out_pad;  // before cropping the padding
    const long long out = full - before - after;
    detail::check_shape(out >= 1, "conv_transpose2d: the padding ({} + {}) leaves no {} output of {}; {}", before,
                        after, axis, full, shapes);
    return static_cast<std::size_t>(out);
}

// The options of the convolution a transposed one is the adjoint of, and the shape of that
// convolution's input (the transposed one's output), checked with conv_transpose2d's names.
std::pair<Conv2dOptions, Shape> transposed_geometry(const Shape& xs, const Shape& ws, const Shape* bs,
                                                    const ConvTranspose2dOptions& o) {
    const std::string shapes = fmt::format("x {}, w {}{}", to_string(xs), to_string(ws),
                                           bs ? ", b " + to_string(*bs) : "");
    const char* op = "conv_transpose2d";
    detail::check_shape(xs.size() == 4, "{}: x must be [N, H, W, C]; {}", op, shapes);
    detail::check_shape(ws.size() == 4, "{}: w must be [KH, KW, F / groups, C]; {}", op, shapes);
    detail::check_value(o.stride.h >= 1 && o.stride.w >= 1, "{}: stride must be at least 1, got {}x{}; {}", op,
                        o.stride.h, o.stride.w, shapes);
    detail::check_value(o.dilation.h >= 1 && o.dilation.w >= 1,
                        "{}: dilation must be at least 1, got {}x{}; {}", op, o.dilation.h, o.dilation.w, shapes);
    const auto& p = o.padding;
    detail::check_value(p.top >= 0 && p.bottom >= 0 && p.left >= 0 && p.right >= 0,
                        "{}: padding must not be negative, got {{top {}, bottom {}, left {}, right {}}}; {}", op,
                        p.top, p.bottom, p.left, p.right, shapes);
    const Size2 op_ = o.output_padding;
    detail::check_value(op_.h >= 0 && op_.w >= 0 && op_.h < o.stride.h && op_.w < o.stride.w,
                        "{}: output_padding must be at least 0 and below the stride {}x{}, got {}x{}; {}", op,
                        o.stride.h, o.stride.w, op_.h, op_.w, shapes);
    detail::check_value(p.mode != Padding::same || (op_.h == 0 && op_.w == 0),
                        "{}: output_padding {}x{} with Padding::same (whose output is in · stride); give explicit "
                        "padding for other sizes; {}", op, op_.h, op_.w, shapes);
    detail::check_value(o.groups >= 1, "{}: groups must be at least 1, got {}; {}", op, o.groups, shapes);
    const auto groups = static_cast<std::size_t>(o.groups);
    const std::size_t c = xs[3], f = ws[2] * groups;
    detail::check_value(c % groups == 0, "{}: groups {} must divide the input channels {}; {}", op, groups, c,
                        shapes);
    detail::check_shape(ws[3] == c, "{}: x has {} channels but w expects {} (w is [KH, KW, F / groups, C]); {}", op,
                        c, ws[3], shapes);
    detail::check_shape(ws[0] >= 1 && ws[1] >= 1, "{}: w has an empty kernel; {}", op, shapes);
    detail::check_shape(!bs || (bs->size() == 1 && (*bs)[0] == f), "{}: b must be [F] = [{}]; {}", op, f, shapes);
    const std::size_t oh = transposed_extent(xs[1], ws[0], o.stride.h, o.dilation.h, p.mode, p.top, p.bottom,
                                             op_.h, "high", shapes);
    const std::size_t ow = transposed_extent(xs[2], ws[1], o.stride.w, o.dilation.w, p.mode, p.left, p.right,
                                             op_.w, "wide", shapes);
    Conv2dOptions conv{o.stride, o.dilation, o.padding, o.groups, o.backward};
    return {conv, Shape{xs[0], oh, ow, f}};
}

}  // namespace

void set_default_conv_backward(ConvBackward variant) { g_default_backward = variant; }
ConvBackward default_conv_backward() { return g_default_backward; }
void set_winograd_convolutions(bool enabled) { kernels::set_winograd(enabled); }
bool winograd_convolutions() { return kernels::winograd_enabled(); }

template <class T>
basic_tensor<T> conv2d(const basic_tensor<T>& x, const basic_tensor<T>& w, const Conv2dOptions& options) {
    return conv2d_impl<T>(OpKind::conv2d, x, w, nullptr, options);
}

template <class T>
basic_tensor<T> conv2d(const basic_tensor<T>& x, const basic_tensor<T>& w, const basic_tensor<T>& b,
                       const Conv2dOptions& options) {
    return conv2d_impl<T>(OpKind::conv2d, x, w, &b, options);
}

template <class T>
basic_tensor<T> conv2d_relu(const basic_tensor<T>& x, const basic_tensor<T>& w, const Conv2dOptions& options) {
    return conv2d_impl<T>(OpKind::conv2d_relu, x, w, nullptr, options);
}

template <class T>
basic_tensor<T> conv2d_relu(const basic_tensor<T>& x, const basic_tensor<T>& w, const basic_tensor<T>& b,
                            const Conv2dOptions& options) {
    return conv2d_impl<T>(OpKind::conv2d_relu, x, w, &b, options);
}

template <class T>
basic_tensor<T> conv2d_relu_max_pool2d(const basic_tensor<T>& x, const basic_tensor<T>& w, const Conv2dOptions& options,
                                       const Pool2dOptions& pool) {
    return conv_pool_impl<T>(x, w, nullptr, options, pool);
}

template <class T>
basic_tensor<T> conv2d_relu_max_pool2d(const basic_tensor<T>& x, const basic_tensor<T>& w, const basic_tensor<T>& b,
                                       const Conv2dOptions& options, const Pool2dOptions& pool) {
    return conv_pool_impl<T>(x, w, &b, options, pool);
}

template <class T>
basic_tensor<T> conv2d_input_grad(const basic_tensor<T>& gy, const basic_tensor<T>& w, const Shape& x_shape,
                                  const Conv2dOptions& options) {
    const auto g = conv_geometry<T>("conv2d_input_grad", x_shape, w.shape(), nullptr, options);
    check_gy("conv2d_input_grad", gy, g, fmt::format("x {}, gy {}, w {}", to_string(x_shape), to_string(gy.shape()),
                                                    to_string(w.shape())));
    Conv2dOptions o = options;
    o.backward = options.backward.value_or(default_conv_backward());
    xt::xarray<T> dx = allocate<T>("conv2d_input_grad", x_shape, false);  // the kernels write all of it
    const bool bf16 = detail::bf16_products<T>();  // the kernels round the operands
    with_scratch(g, [&] {
        // dx [N, H, W, C]: col2img(dY · Wᵀ), or conv(dilated, padded dY, flipped W)
        const ConvBackward variant = *o.backward != ConvBackward::automatic ? *o.backward
                                     : kernels::flipped_is_faster(g, bf16) ? ConvBackward::flipped
                                                                            : ConvBackward::col2img;
        if (variant == ConvBackward::col2img)
            kernels::conv2d_backward_input_col2img<T>(gy.value().data(), w.value().data(), g, dx.data(), bf16);
        else
            kernels::conv2d_backward_input_flipped<T>(gy.value().data(), w.value().data(), g, dx.data(), bf16);
    });
    basic_tensor<T> out(std::move(dx));
    record(OpKind::conv2d_input_grad, {gy, w}, out, [gy, w, o, bf16](const basic_tensor<T>& gx, auto& grads) {
        detail::PrecisionScope scope(bf16);
        // dx is bilinear in dY and w: its adjoints are the conv itself and the weight gradient
        if (grads.needs(0)) grads.add(0, conv2d(gx, w, o));
        if (grads.needs(1)) grads.add(1, weight_grad<T>(gx, gy, w.shape(), o, nullptr));
    });
    return out;
}

template <class T>
basic_tensor<T> conv2d_weight_grad(const basic_tensor<T>& x, const basic_tensor<T>& gy, const Shape& w_shape,
                                   const Conv2dOptions& options) {
    return weight_grad<T>(x, gy, w_shape, options, nullptr);
}

template <class T>
basic_tensor<T> conv_transpose2d(const basic_tensor<T>& x, const basic_tensor<T>& w,
                                 const ConvTranspose2dOptions& options) {
    const auto [conv, out_shape] = transposed_geometry(x.shape(), w.shape(), nullptr, options);
    return conv2d_input_grad(x, w, out_shape, conv);
}

template <class T>
basic_tensor<T> conv_transpose2d(const basic_tensor<T>& x, const basic_tensor<T>& w, const basic_tensor<T>& b,
                                 const ConvTranspose2dOptions& options) {
    const auto [conv, out_shape] = transposed_geometry(x.shape(), w.shape(), &b.shape(), options);
    return conv2d_input_grad(x, w, out_shape, conv) + b;
}

#define XGRAD_INSTANTIATE(T)                                                                            \
    template basic_tensor<T> conv2d_input_grad(const basic_tensor<T>&, const basic_tensor<T>&, const Shape&, \
                                               const Conv2dOptions&);                                   \
    template basic_tensor<T> conv2d_weight_grad(const basic_tensor<T>&, const basic_tensor<T>&, const Shape&, \
                                                const Conv2dOptions&);                                  \
    template basic_tensor<T> conv2d(const basic_tensor<T>&, const basic_tensor<T>&, const Conv2dOptions&); \
    template basic_tensor<T> conv2d(const basic_tensor<T>&, const basic_tensor<T>&, const basic_tensor<T>&, \
                                    const Conv2dOptions&);                                      \
    template basic_tensor<T> conv2d_relu(const basic_tensor<T>&, const basic_tensor<T>&, const Conv2dOptions&); \
    template basic_tensor<T> conv2d_relu(const basic_tensor<T>&, const basic_tensor<T>&, const basic_tensor<T>&, \
                                         const Conv2dOptions&);                                  \
    template basic_tensor<T> conv2d_relu_max_pool2d(const basic_tensor<T>&, const basic_tensor<T>&,     \
                                                    const Conv2dOptions&, const Pool2dOptions&);  \
    template basic_tensor<T> conv2d_relu_max_pool2d(const basic_tensor<T>&, const basic_tensor<T>&,     \
                                                    const basic_tensor<T>&, const Conv2dOptions&, \
                                                    const Pool2dOptions&);                        \
    template basic_tensor<T> conv_transpose2d(const basic_tensor<T>&, const basic_tensor<T>&,           \
                                              const ConvTranspose2dOptions&);                     \
    template basic_tensor<T> conv_transpose2d(const basic_tensor<T>&, const basic_tensor<T>&,           \
                                              const basic_tensor<T>&, const ConvTranspose2dOptions&);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

namespace detail {

namespace {

struct ConvCase {
    const char* name;
    Shape x, w;
    bool bias;
    Conv2dOptions options;
};

Conv2dOptions opts(Size2 stride, PadSpec padding, Size2 dilation = 1, int groups = 1) {
    Conv2dOptions o;
    o.stride = stride;
    o.padding = padding;
    o.dilation = dilation;
    o.groups = groups;
    return o;
}

// The case matrix: kernels 1x1 to 5x5 and 3x5, strides 1-3, same / valid / explicit
// asymmetric padding, dilation, groups and depthwise, non-square inputs, batch 1 and 3.
std::vector<ConvCase> conv_cases() {
    const Padding same = Padding::same, valid = Padding::valid;
    return {
        {"1x1 same s1 (pointwise)", {2, 5, 5, 3}, {1, 1, 3, 4}, true, opts(1, same)},
        {"1x1 same s2", {2, 5, 6, 3}, {1, 1, 3, 2}, false, opts(2, same)},
        {"1x1 explicit pad 1", {1, 4, 4, 2}, {1, 1, 2, 2}, false, opts(1, 1)},
        {"1x3 same s1", {1, 5, 7, 2}, {1, 3, 2, 3}, false, opts(1, same)},
        {"1x3 same s2", {1, 6, 7, 2}, {1, 3, 2, 3}, true, opts(2, same)},
        {"2x2 same s1 (asymmetric)", {2, 6, 6, 2}, {2, 2, 2, 3}, false, opts(1, same)},
        {"2x2 valid s2", {1, 7, 6, 2}, {2, 2, 2, 2}, true, opts(2, valid)},
        {"3x3 same s1 7x9 batch 3", {3, 7, 9, 2}, {3, 3, 2, 4}, true, opts(1, same)},
        // Images of more than 256 output pixels: the kernels split the batch into chunks of
        // one image, several per thread (the W1-sized path).
        {"3x3 same s1 17x17 batch 3 (one image per chunk)", {3, 17, 17, 2}, {3, 3, 2, 3}, true, opts(1, same)},
        {"3x3 same s2 even input", {1, 8, 8, 3}, {3, 3, 3, 2}, false, opts(2, same)},
        {"3x3 valid s3", {1, 10, 11, 2}, {3, 3, 2, 2}, false, opts(3, valid)},
        {"4x4 same s1 (asymmetric)", {1, 7, 6, 2}, {4, 4, 2, 2}, false, opts(1, same)},
        {"4x4 same s2", {1, 9, 8, 2}, {4, 4, 2, 2}, true, opts(2, same)},
        {"5x5 valid 7x9", {1, 7, 9, 2}, {5, 5, 2, 3}, false, opts(1, valid)},
        {"5x5 same s3 one channel", {1, 8, 7, 1}, {5, 5, 1, 2}, true, opts(3, same)},
        {"3x3 same one channel batch 2", {2, 6, 7, 1}, {3, 3, 1, 4}, true, opts(1, same)},
        {"2x3 dilation 2 explicit one channel", {1, 9, 8, 1}, {2, 3, 1, 3}, false, opts({2, 1}, {1, 0, 2, 1}, 2)},
        // Up to four channels and whole vectors of filters (8 doubles): blocks of 8 output
        // pixels whose taps lie inside the row keep their sums in registers; the rest go pixel
        // by pixel.
        {"3x3 same one channel 8 filters (register blocks)", {2, 4, 19, 1}, {3, 3, 1, 8}, true, opts(1, same)},
        {"3x2 explicit {1,0,3,2} s2 dilation 2 one channel 8 filters", {1, 6, 30, 1}, {3, 2, 1, 8}, false,
         opts(2, {1, 0, 3, 2}, 2)},
        {"3x3 same three channels 16 filters (register blocks)", {1, 3, 21, 3}, {3, 3, 3, 16}, true, opts(1, same)},
        // At stride 1 the few-channel 3x3 input gradient gathers each pixel's taps from dY
        // (clamped reads at the edges).
        {"3x3 explicit {2,1,0,3} dilation 2 two channels 8 filters (few-channel dx)", {2, 6, 7, 2}, {3, 3, 2, 8},
         false, opts(1, {2, 1, 0, 3}, 2)},
        {"2x3 valid s1x2 four channels 8 filters (register blocks)", {2, 3, 22, 4}, {2, 3, 4, 8}, false,
         opts({1, 2}, valid)},
        // 3x3 kernels over up to three channels, whole vectors of filters: the weight
        // gradient keeps its 9·C sums in registers per output line (taps in the padding read
        // zero at the edges), including images where every pixel is an edge.
        {"3x3 explicit {4,1,5,4} s2x1 dilation 2 two channels 8 filters (few-channel dW)", {2, 5, 6, 2},
         {3, 3, 2, 8}, true, opts({2, 1}, {4, 1, 5, 4}, 2)},
        {"3x3 valid s3 three channels 8 filters (few-channel dW)", {1, 10, 11, 3}, {3, 3, 3, 8}, false,
         opts(3, valid)},
        {"3x3 same 2x2 image one channel 16 filters (few-channel dW, edges only)", {2, 2, 2, 1}, {3, 3, 1, 16}, true,
         opts(1, same)},
        {"3x5 explicit {1,2,0,3} stride 2x1", {2, 7, 9, 2}, {3, 5, 2, 3}, true, opts({2, 1}, {1, 2, 0, 3})},
        {"3x3 dilation 2 same", {1, 9, 9, 2}, {3, 3, 2, 2}, false, opts(1, same, 2)},
        {"3x3 dilation 2 valid s2", {1, 11, 10, 2}, {3, 3, 2, 2}, true, opts(2, valid, 2)},
        // 16 input channels or more: the forward pass is a direct batch-reduce GEMM per output
        // line, the weight gradient rebuilds img2col a kernel row at a time, and at stride 1
        // the col2img input gradient adds each tap's block straight into dx; the flipped
        // variant's inner conv is direct too when F >= 16. A top padding of 3 leaves the first
        // output line with no tap inside the image.
        {"3x3 same s1 16 channels (direct)", {2, 5, 6, 16}, {3, 3, 16, 3}, true, opts(1, same)},
        {"5x5 valid 16 channels (direct)", {1, 7, 8, 16}, {5, 5, 16, 2}, false, opts(1, valid)},
        {"3x3 explicit {2,0,1,3} s2x1 dilation 2 (direct)", {1, 8, 9, 16}, {3, 3, 16, 2}, true,
         opts({2, 1}, {2, 0, 1, 3}, 2)},
        {"3x3 explicit {2,0,1,3} dilation 2 (direct)", {1, 8, 9, 16}, {3, 3, 16, 2}, false, opts(1, {2, 0, 1, 3}, 2)},
        {"3x3 explicit {3,0,0,0} 16 channels (a line of padding only)", {1, 4, 4, 16}, {3, 3, 16, 2}, true,
         opts(1, {3, 0, 0, 0})},
        {"3x3 same s2 16 -> 16 channels (direct, flipped direct)", {1, 6, 5, 16}, {3, 3, 16, 16}, false,
         opts(2, same)},
        // Padding wider than the kernel, and beyond the whole input: img2col's run copy once
        // read the next pixels there (whole rows of taps left or right of the image).
        {"1x1 explicit pad 2 (wider than the kernel)", {1, 3, 3, 2}, {1, 1, 2, 2}, true, opts(1, 2)},
        {"2x2 explicit {3,1,4,0} (left beyond the input)", {1, 3, 3, 2}, {2, 2, 2, 3}, false, opts(1, {3, 1, 4, 0})},
        {"1x2 explicit {0,2,1,5} s2 (right beyond the input)", {2, 4, 3, 3}, {1, 2, 3, 2}, true,
         opts(2, {0, 2, 1, 5})},
        {"3x2 explicit {5,4,3,4} one channel", {1, 2, 3, 1}, {3, 2, 1, 2}, false, opts(1, {5, 4, 3, 4})},
        {"3x3 explicit {4,1,5,4} 16 channels (direct, wider than the input)", {1, 3, 4, 16}, {3, 3, 16, 2}, true,
         opts(1, {4, 1, 5, 4})},
        {"3x3 groups 2 same", {2, 6, 6, 4}, {3, 3, 2, 6}, true, opts(1, same, 1, 2)},
        {"3x3 depthwise same 7x9", {1, 7, 9, 3}, {3, 3, 1, 3}, false, opts(1, same, 1, 3)},
        {"3x3 depthwise x2 valid s2", {1, 6, 6, 2}, {3, 3, 1, 4}, true, opts(2, valid, 1, 2)},
    };
}

struct TransposedCase {
    const char* name;
    Shape x, w;
    bool bias;
    ConvTranspose2dOptions options;
};

ConvTranspose2dOptions topts(Size2 stride, PadSpec padding, Size2 output_padding = 0, Size2 dilation = 1,
                             int groups = 1) {
    ConvTranspose2dOptions o;
    o.stride = stride;
    o.padding = padding;
    o.output_padding = output_padding;
    o.dilation = dilation;
    o.groups = groups;
    return o;
}

// Transposed convolutions: upsampling strides with and without output_padding, SAME, dilation,
// groups, padding wider than the kernel, and 16 channels either side (the kernels' direct paths).
std::vector<TransposedCase> transposed_cases() {
    const Padding same = Padding::same, valid = Padding::valid;
    return {
        {"2x2 s2 valid (x2 upsampling) batch 2", {2, 3, 3, 3}, {2, 2, 2, 3}, true, topts(2, valid)},
        {"3x3 s2 pad 1 output_padding 1", {1, 4, 5, 2}, {3, 3, 3, 2}, false, topts(2, 1, 1)},
        {"3x3 s2 same", {1, 3, 4, 2}, {3, 3, 2, 2}, true, topts(2, same)},
        {"4x4 s2 pad 1 (DCGAN)", {2, 3, 3, 2}, {4, 4, 2, 2}, true, topts(2, 1)},
        {"3x3 s1 same one channel", {1, 5, 6, 1}, {3, 3, 3, 1}, false, topts(1, same)},
        {"3x2 s2x1 explicit {1,0,2,1} output_padding 1x0 dilation 2", {1, 4, 5, 2}, {3, 2, 2, 2}, true,
         topts({2, 1}, {1, 0, 2, 1}, {1, 0}, 2)},
        {"3x3 s3 valid output_padding 2", {1, 2, 3, 2}, {3, 3, 2, 2}, false, topts(3, valid, 2)},
        {"3x3 groups 2 s2", {1, 3, 3, 4}, {3, 3, 3, 4}, true, topts(2, valid, 0, 1, 2)},
        {"1x1 pad 1 (wider than the kernel)", {1, 4, 4, 2}, {1, 1, 3, 2}, false, topts(1, 1)},
        {"2x2 s3 pad 2 (wider than the kernel)", {1, 3, 3, 2}, {2, 2, 2, 2}, true, topts(3, 2)},
        {"3x3 s1 same 16 -> 3 channels", {1, 4, 5, 16}, {3, 3, 3, 16}, true, topts(1, same)},
        {"3x3 s2 3 -> 16 channels", {1, 3, 3, 3}, {3, 3, 16, 3}, false, topts(2, valid)},
    };
}

const char* variant_name(ConvBackward v) { return v == ConvBackward::col2img ? "col2img" : "flipped"; }

}  // namespace

void register_conv_cases(CaseRegistry& r) {
    using V = std::vector<Tensor64>;
    const auto cases = conv_cases();
    for (const auto& c : cases) {
        std::vector<CaseInput> inputs{{c.x}, {c.w}};
        if (c.bias) inputs.push_back({{c.w[3]}});
        for (auto variant : {ConvBackward::col2img, ConvBackward::flipped}) {
            Conv2dOptions o = c.options;
            o.backward = variant;
            r.add(OpKind::conv2d, fmt::format("{} [{}]", c.name, variant_name(variant)), inputs,
                  [o](const V& v) { return v.size() > 2 ? conv2d(v[0], v[1], v[2], o) : conv2d(v[0], v[1], o); });
        }
        // conv2d_relu in every other geometry (random inputs lie away from relu's kink).
        if ((&c - &cases[0]) % 2 == 0)
            r.add(OpKind::conv2d_relu, c.name, inputs, [o = c.options](const V& v) {
                return v.size() > 2 ? conv2d_relu(v[0], v[1], v[2], o) : conv2d_relu(v[0], v[1], o);
            });
        // The fused conv + relu + max-pool wherever the output can hold a 2x2 pool.
        if ((&c - &cases[0]) % 2 == 1) {
            const Shape ys = [&] {
                NoGradGuard off;
                return conv2d(zeros<double>(c.x), zeros<double>(c.w), c.options).shape();
            }();
            if (ys[1] >= 2 && ys[2] >= 2)
                r.add(OpKind::conv2d_relu_max_pool2d, c.name, inputs, [o = c.options](const V& v) {
                    return v.size() > 2 ? conv2d_relu_max_pool2d(v[0], v[1], v[2], o)
                                        : conv2d_relu_max_pool2d(v[0], v[1], o);
                });
        }
        // The gradients as ops of their own, in every third geometry: dx from gy and w (both
        // variants), dw from x and gy.
        if ((&c - &cases[0]) % 3 == 0) {
            const Shape ys = [&] {
                NoGradGuard off;
                return conv2d(zeros<double>(c.x), zeros<double>(c.w), c.options).shape();
            }();
            for (auto variant : {ConvBackward::col2img, ConvBackward::flipped}) {
                Conv2dOptions o = c.options;
                o.backward = variant;
                r.add(OpKind::conv2d_input_grad, fmt::format("{} [{}]", c.name, variant_name(variant)), {{ys}, {c.w}},
                      [o, xs = c.x](const V& v) { return conv2d_input_grad(v[0], v[1], xs, o); });
            }
            r.add(OpKind::conv2d_weight_grad, c.name, {{c.x}, {ys}},
                  [o = c.options, ws = c.w](const V& v) { return conv2d_weight_grad(v[0], v[1], ws, o); });
        }
        // Both input-gradient variants give the same dx to 1e-12 (float64).
        const std::string id = fmt::format("conv2d/{} [variants agree]", c.name);
        r.add("conv2d", fmt::format("{} [variants agree]", c.name), [c, inputs, id](std::uint64_t seed) {
            const auto v = case_inputs(inputs, seed, id);
            xt::xarray<double> dx[2];
            for (int i = 0; i < 2; ++i) {
                Conv2dOptions o = c.options;
                o.backward = i == 0 ? ConvBackward::col2img : ConvBackward::flipped;
                Tensor64 x(v[0].value(), true);
                auto y = v.size() > 2 ? conv2d(x, v[1], v[2], o) : conv2d(x, v[1], o);
                y.backward(case_inputs({CaseInput{y.shape()}}, seed, id + "/gy")[0].value());
                dx[i] = x.grad();
            }
            GradcheckReport rep;
            for (std::size_t k = 0; k < dx[0].size(); ++k)
                rep.max_abs_err = std::max(rep.max_abs_err, std::abs(dx[0].data()[k] - dx[1].data()[k]));
            rep.passed = rep.max_abs_err <= 1e-12;
            if (!rep.passed)
                rep.message = fmt::format("col2img and flipped differ by {:.3g}; x {}, w {}", rep.max_abs_err,
                                          to_string(c.x), to_string(c.w));
            return rep;
        });
    }
    // The fused conv + relu + max-pool beyond a 2x2 pool: overlapping and padded windows and
    // img2col convolutions (the output computed first), and the line-pair paths (few channels,
    // direct) with W1's shape in miniature, odd output sizes (floor mode drops a row and a
    // column) and F not a multiple of a vector.
    const Padding same = Padding::same;
    const Pool2dOptions two{}, three{.kernel = 3, .stride = Size2(2), .padding = 1};
    const struct {
        const char* name;
        Shape x, w;
        bool bias;
        Conv2dOptions conv;
        Pool2dOptions pool;
    } pooled[] = {
        {"3x3 same 1 -> 16 channels, pool 2x2 (line pairs)", {2, 6, 6, 1}, {3, 3, 1, 16}, true, opts(1, same), two},
        {"3x3 same 3 -> 8 channels 5x7, pool 2x2 (odd sizes)", {1, 5, 7, 3}, {3, 3, 3, 8}, false, opts(1, same), two},
        {"3x3 valid 2 -> 3 channels, pool 2x2", {2, 6, 7, 2}, {3, 3, 2, 3}, true, opts(1, Padding::valid), two},
        {"3x3 same 16 channels, pool 2x2 (direct, line pairs)", {1, 4, 6, 16}, {3, 3, 16, 2}, true, opts(1, same), two},
        {"3x3 same 8 channels, pool 2x2 (img2col, output first)", {1, 4, 5, 8}, {3, 3, 8, 3}, false, opts(1, same), two},
        {"3x3 same 2 channels, pool 3x3 stride 2 padding 1", {1, 7, 7, 2}, {3, 3, 2, 3}, true, opts(1, same), three},
    };
    for (const auto& c : pooled) {
        std::vector<CaseInput> inputs{{c.x}, {c.w}};
        if (c.bias) inputs.push_back({{c.w[3]}});
        r.add(OpKind::conv2d_relu_max_pool2d, c.name, inputs, [conv = c.conv, pool = c.pool](const V& v) {
            return v.size() > 2 ? conv2d_relu_max_pool2d(v[0], v[1], v[2], conv, pool)
                                : conv2d_relu_max_pool2d(v[0], v[1], conv, pool);
        });
    }
}

void register_conv_transpose_cases(CaseRegistry& r) {
    using V = std::vector<Tensor64>;
    for (const auto& c : transposed_cases()) {
        std::vector<CaseInput> inputs{{c.x}, {c.w}};
        if (c.bias) inputs.push_back({{c.w[2] * static_cast<std::size_t>(c.options.groups)}});
        for (auto variant : {ConvBackward::col2img, ConvBackward::flipped}) {
            ConvTranspose2dOptions o = c.options;
            o.backward = variant;
            r.add("conv_transpose2d", fmt::format("{} [{}]", c.name, variant_name(variant)), inputs, [o](const V& v) {
                return v.size() > 2 ? conv_transpose2d(v[0], v[1], v[2], o) : conv_transpose2d(v[0], v[1], o);
            });
        }
        // The adjoint identity <conv2d(z, w), x> = <z, conv_transpose2d(x, w)> to 1e-12 (float64).
        const std::string id = fmt::format("conv_transpose2d/{} [adjoint]", c.name);
        r.add("conv_transpose2d", fmt::format("{} [adjoint of conv2d]", c.name), [c, id](std::uint64_t seed) {
            NoGradGuard off;
            const auto v = case_inputs({CaseInput{c.x}, CaseInput{c.w}}, seed, id);
            const Tensor64 t = conv_transpose2d(v[0], v[1], c.options);
            const auto z = case_inputs({CaseInput{t.shape()}}, seed, id + "/z")[0];
            const Conv2dOptions o{c.options.stride, c.options.dilation, c.options.padding, c.options.groups, {}};
            const Tensor64 y = conv2d(z, v[1], o);
            GradcheckReport rep;
            if (y.shape() != c.x) {
                rep.message = fmt::format("conv2d of the transposed output {} has shape {}, not x {}",
                                          to_string(t.shape()), to_string(y.shape()), to_string(c.x));
                return rep;
            }
            double lhs = 0, rhs = 0, scale = 0;
            for (std::size_t k = 0; k < y.size(); ++k) {
                lhs += y.value().data()[k] * v[0].value().data()[k];
                scale += std::abs(y.value().data()[k] * v[0].value().data()[k]);
            }
            for (std::size_t k = 0; k < t.size(); ++k) rhs += z.value().data()[k] * t.value().data()[k];
            rep.max_abs_err = std::abs(lhs - rhs);
            rep.passed = rep.max_abs_err <= 1e-12 * std::max(1.0, scale);
            if (!rep.passed)
                rep.message = fmt::format("<conv2d(z, w), x> = {} but <z, conv_transpose2d(x, w)> = {}; x {}, w {}",
                                          lhs, rhs, to_string(c.x), to_string(c.w));
            return rep;
        });
    }
}

}  // namespace detail
}  // namespace xgrad
