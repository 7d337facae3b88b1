#include "xgrad/ops/pool.hpp"

#include <cstdint>

#include <fmt/format.h>
#include <xtensor/xbuilder.hpp>

#include "detail/cases.hpp"
#include "detail/check.hpp"
#include "kernels/buffer.hpp"
#include "kernels/pool2d.hpp"
#include "xgrad/ops/reduce.hpp"
#include "xgrad/tape.hpp"

namespace xgrad {

namespace {

template <class T>
kernels::PoolGeometry pool_geometry(const char* op, const basic_tensor<T>& x, const Pool2dOptions& o) {
    detail::check_shape(x.dim() == 4, "{}: x must be [N, H, W, C], got x {}", op, x.shape());
    const Size2 k = o.kernel, s = o.stride.value_or(o.kernel), p = o.padding;
    detail::check_value(k.h >= 1 && k.w >= 1, "{}: kernel must be at least 1, got {}x{}; x {}", op, k.h, k.w,
                        x.shape());
    detail::check_value(s.h >= 1 && s.w >= 1, "{}: stride must be at least 1, got {}x{}; x {}", op, s.h, s.w,
                        x.shape());
    // p <= k / 2 rather than 2p <= k, which overflows an int for a padding near 2^30.
    detail::check_value(p.h >= 0 && p.w >= 0 && p.h <= k.h / 2 && p.w <= k.w / 2,
                        "{}: padding must be between 0 and half the kernel ({}x{}), got {}x{}; x {}", op, k.h, k.w,
                        p.h, p.w, x.shape());
    const std::size_t h = x.shape()[1], w = x.shape()[2];
    // A window over an empty image covers no pixel at all, padded or not (PyTorch refuses
    // such inputs too); an empty batch or channel axis is fine.
    detail::check_shape(h > 0 && w > 0, "{}: x has no rows or no columns (H and W must be at least 1); x {}", op,
                        x.shape());
    // The argmax of a max-pool window is an int32 pixel index within its image.
    detail::check_shape(h * w <= static_cast<std::size_t>(INT32_MAX),
                        "{}: an image of {}x{} pixels has more than 2^31 pixels; x {}", op, h, w, x.shape());
    const auto kh = static_cast<std::size_t>(k.h), kw = static_cast<std::size_t>(k.w);
    const auto ph = static_cast<std::size_t>(p.h), pw = static_cast<std::size_t>(p.w);
    detail::check_shape(h + 2 * ph >= kh && w + 2 * pw >= kw,
                        "{}: the {}x{} window is larger than the padded input ({}x{}); x {}", op, kh, kw,
                        h + 2 * ph, w + 2 * pw, x.shape());
    const auto sh = static_cast<std::size_t>(s.h), sw = static_cast<std::size_t>(s.w);
    return {x.shape()[0], h, w, x.shape()[3], kh, kw, sh, sw, ph, pw,
            (h + 2 * ph - kh) / sh + 1, (w + 2 * pw - kw) / sw + 1};
}

}  // namespace

template <class T>
basic_tensor<T> max_pool2d(const basic_tensor<T>& x, const Pool2dOptions& o) {
    const auto g = pool_geometry("max_pool2d", x, o);
    xt::xarray<T> y = xt::empty<T>(Shape{g.n, g.oh, g.ow, g.c});
    // Uninitialised and recycled: the kernel writes every index. Shared, because a backward
    // rule must be copyable and a Buffer is not.
    auto argmax = std::make_shared<kernels::Buffer<std::int32_t>>(y.size());
    kernels::max_pool2d_forward<T>(x.value().data(), g, y.data(), argmax->data());
    basic_tensor<T> out(std::move(y));
    record(OpKind::max_pool2d, {x}, out, [argmax, g](const auto& gy, auto& grads) {
        // dx: each gy element goes to its window's first maximum
        if (grads[0]) kernels::max_pool2d_backward<T>(gy.data(), argmax->data(), g, grads[0]->data());
    });
    return out;
}

template <class T>
basic_tensor<T> avg_pool2d(const basic_tensor<T>& x, const Pool2dOptions& o) {
    const auto g = pool_geometry("avg_pool2d", x, o);
    xt::xarray<T> y = xt::empty<T>(Shape{g.n, g.oh, g.ow, g.c});
    kernels::avg_pool2d_forward<T>(x.value().data(), g, o.count_include_pad, y.data());
    basic_tensor<T> out(std::move(y));
    record(OpKind::avg_pool2d, {x}, out, [g, include = o.count_include_pad](const auto& gy, auto& grads) {
        // dx: each gy element spread evenly over its window
        if (grads[0]) kernels::avg_pool2d_backward<T>(gy.data(), g, include, grads[0]->data());
    });
    return out;
}

template <class T>
basic_tensor<T> global_avg_pool2d(const basic_tensor<T>& x) {
    detail::check_shape(x.dim() == 4 && x.shape()[1] > 0 && x.shape()[2] > 0,
                        "global_avg_pool2d: x must be [N, H, W, C] with H, W > 0, got x {}", x.shape());
    return mean(x, {1, 2});
}

#define XGRAD_INSTANTIATE(T)                                                              \
    template basic_tensor<T> max_pool2d(const basic_tensor<T>&, const Pool2dOptions&);    \
    template basic_tensor<T> avg_pool2d(const basic_tensor<T>&, const Pool2dOptions&);    \
    template basic_tensor<T> global_avg_pool2d(const basic_tensor<T>&);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

namespace detail {

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
        r.add(OpKind::avg_pool2d, c.name, {{c.x}}, [o = c.o](const V& v) { return avg_pool2d(v[0], o); });
    }
    r.add(OpKind::avg_pool2d, "3x3 stride 2 padding 1, exclude pad", {{{1, 6, 6, 2}}},
          [](const V& v) { return avg_pool2d(v[0], pool(3, Size2(2), 1, false)); });
    r.add("global_avg_pool2d", "[2,3,5,4]", {{{2, 3, 5, 4}}}, [](const V& v) { return global_avg_pool2d(v[0]); });
}

}  // namespace detail
}  // namespace xgrad
