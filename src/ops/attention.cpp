#include "xgrad/ops/attention.hpp"

#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <xtensor/xbroadcast.hpp>
#include <xtensor/xbuilder.hpp>

#include "detail/cases.hpp"
#include "detail/check.hpp"
#include "xgrad/ops/activation.hpp"
#include "xgrad/ops/elementwise.hpp"
#include "xgrad/ops/linalg.hpp"
#include "xgrad/ops/norm.hpp"
#include "xgrad/ops/shape.hpp"
#include "xgrad/tape.hpp"

namespace xgrad {

template <class T>
basic_tensor<T> scaled_dot_product_attention(const basic_tensor<T>& q, const basic_tensor<T>& k,
                                             const basic_tensor<T>& v, const AttentionOptions& o) {
    const xt::xarray<bool>* mask = o.mask ? &*o.mask : nullptr;
    const std::string shapes = fmt::format("q {}, k {}, v {}{}", to_string(q.shape()), to_string(k.shape()),
                                           to_string(v.shape()),
                                           mask ? ", mask " + to_string(Shape(mask->shape().begin(), mask->shape().end()))
                                                : "");
    const char* op = "scaled_dot_product_attention";
    detail::check_shape(q.dim() >= 2 && k.dim() == q.dim() && v.dim() == q.dim(),
                        "{}: q, k and v must be [B..., L, E], [B..., S, E], [B..., S, Ev] of one rank; {}", op, shapes);
    const std::size_t r = q.dim(), l = q.shape()[r - 2], e = q.shape()[r - 1], s = k.shape()[r - 2];
    detail::check_shape(k.shape()[r - 1] == e && v.shape()[r - 2] == s &&
                            std::equal(q.shape().begin(), q.shape().end() - 2, k.shape().begin()) &&
                            std::equal(q.shape().begin(), q.shape().end() - 2, v.shape().begin()),
                        "{}: q and k must share the batch and E, k and v the batch and S; {}", op, shapes);
    detail::check_value(o.dropout >= 0 && o.dropout < 1, "{}: dropout must be in [0, 1), got {}; {}", op, o.dropout,
                        shapes);
    const double scale = o.scale.value_or(e ? 1 / std::sqrt(static_cast<double>(e)) : 1.0);
    auto scores = matmul(q, transpose(k, -2, -1)) * static_cast<T>(scale);  // [B..., L, S]
    if (mask || o.causal) {
        xt::xarray<bool> keep = xt::ones<bool>(scores.shape());
        if (mask) {
            const Shape ms(mask->shape().begin(), mask->shape().end());
            const Shape& ss = scores.shape();
            bool fits = ms.size() <= ss.size();
            for (std::size_t i = 1; fits && i <= ms.size(); ++i)
                fits = ms[ms.size() - i] == 1 || ms[ms.size() - i] == ss[ss.size() - i];
            detail::check_shape(fits, "{}: mask must broadcast to the scores [B..., L, S] = {}; {}", op, ss, shapes);
            keep = xt::broadcast(*mask, scores.shape());
        }
        if (o.causal)
            for (std::size_t at = 0; at < keep.size(); ++at)
                if (at % s > at / s % l) keep.data()[at] = false;  // key j after query i
        for (std::size_t row = 0; row * s < keep.size() && s > 0; ++row) {
            bool any = false;
            for (std::size_t j = 0; j < s && !any; ++j) any = keep.data()[row * s + j];
            detail::check_value(any, "{}: query {} of batch entry {} has every key masked (a softmax over nothing); {}",
                                op, row % l, row / l, shapes);
        }
        // A masked score becomes the lowest finite value: its weight is exactly 0, and no
        // infinity reaches the rules' arithmetic.
        scores = xgrad::where(keep, scores, basic_tensor<T>(xt::xarray<T>(std::numeric_limits<T>::lowest())));
    }
    auto weights = softmax(scores, -1);
    if (o.dropout > 0) weights = xgrad::dropout(weights, o.dropout, true);
    return matmul(weights, v);
}

#define XGRAD_INSTANTIATE(T)                                                                                     \
    template basic_tensor<T> scaled_dot_product_attention(const basic_tensor<T>&, const basic_tensor<T>&,        \
                                                          const basic_tensor<T>&, const AttentionOptions&);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

namespace detail {

void register_attention_cases(CaseRegistry& r) {
    using V = std::vector<Tensor64>;
    const char* op = "scaled_dot_product_attention";
    r.add(op, "q [2,3,4], k [2,5,4], v [2,5,2]", {{{2, 3, 4}}, {{2, 5, 4}}, {{2, 5, 2}}},
          [](const V& v) { return scaled_dot_product_attention(v[0], v[1], v[2]); });
    r.add(op, "heads [1,2,4,3], causal, scale 0.7", {{{1, 2, 4, 3}}, {{1, 2, 4, 3}}, {{1, 2, 4, 3}}},
          [](const V& v) { return scaled_dot_product_attention(v[0], v[1], v[2], {.causal = true, .scale = 0.7}); });
    r.add(op, "[3,4] scores with a boolean mask", {{{3, 2}}, {{4, 2}}, {{4, 3}}},
          [](const V& v) {
              const xt::xarray<bool> mask{{true, false, true, true}, {false, false, true, false}, {true, true, true, true}};
              return scaled_dot_product_attention(v[0], v[1], v[2], {.mask = mask});
          });
    r.add(op, "[2,3,3] padding mask [2,1,3] and causal", {{{2, 3, 2}}, {{2, 3, 2}}, {{2, 3, 2}}}, [](const V& v) {
        const xt::xarray<bool> mask{{{true, true, false}}, {{true, true, true}}};
        return scaled_dot_product_attention(v[0], v[1], v[2], {.causal = true, .mask = mask});
    });
}

}  // namespace detail
}  // namespace xgrad
