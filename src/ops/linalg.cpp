#include "xgrad/ops/linalg.hpp"

#include <functional>
#include <numeric>

#include <xtensor/xbuilder.hpp>
#include <xtensor/xnoalias.hpp>
#include <xtensor/xreducer.hpp>
#include <xtensor/xtensor.hpp>

#include "detail/axes.hpp"
#include "detail/cases.hpp"
#include "detail/check.hpp"
#include "detail/precision.hpp"
#include "kernels/bf16.hpp"
#include "kernels/buffer.hpp"
#include "kernels/gemm.hpp"
#include "xgrad/ops/activation.hpp"
#include "xgrad/ops/reduce.hpp"
#include "xgrad/ops/shape.hpp"
#include "xgrad/tape.hpp"

namespace xgrad {

using kernels::gemm;

namespace {

// C = op(A) · op(B) (+ C when beta is 1): gemm_parallel, or with bf16 products the bf16 kernels (or,
// on the portable level, gemm on rounded copies of A and B).
template <class T>
void product(bool bf16, bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const T* a, std::size_t lda,
             const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc) {
    if constexpr (std::is_same_v<T, float>) {
        if (bf16 && detail::bf16_fast_kernels())
            return kernels::gemm_bf16_float(ta, tb, m, n, k, a, lda, b, ldb, beta != 0, c, ldc);
        if (bf16) {
            const std::size_t as = (ta ? k : m) * lda, bs = (tb ? n : k) * ldb;  // elements as stored
            kernels::Buffer<float> ar(as), br(bs);
            kernels::round_bf16(a, as, ar.data());
            kernels::round_bf16(b, bs, br.data());
            return kernels::gemm_parallel<T>(ta, tb, m, n, k, 1, ar.data(), lda, br.data(), ldb, beta, c, ldc);
        }
    }
    kernels::gemm_parallel<T>(ta, tb, m, n, k, 1, a, lda, b, ldb, beta, c, ldc);
}

// op(a) · op(b), op transposing the last two axes when asked: the one product every matmul
// and linear gradient is, recorded as matmul. a and b share their batch axes, or b is 2-D
// and shared by every matrix of a (then a is not transposed).
template <class T>
basic_tensor<T> matmul_t(const basic_tensor<T>& a, const basic_tensor<T>& b, bool ta, bool tb) {
    const Shape& as = a.shape();
    const Shape& bs = b.shape();
    const std::size_t ra = as[as.size() - 2], ca = as.back(), rb = bs[bs.size() - 2], cb = bs.back();
    const std::size_t m = ta ? ca : ra, k = ta ? ra : ca, n = tb ? rb : cb;
    detail::check_shape((tb ? cb : rb) == k, "matmul: inner dimensions differ; a {}, b {}", as, bs);
    const bool shared_b = bs.size() == 2 && as.size() > 2;  // one b for every matrix of a's batch
    detail::check_shape(shared_b ? !ta : std::equal(as.begin(), as.end() - 2, bs.begin(), bs.end() - 2),
                        "matmul: batch dimensions differ; a {}, b {}", as, bs);
    // From the batch dimensions, not a.size() / (m·k): with k = 0 that quotient is 0 and the
    // [.., M, N] output of zeros would never be written.
    const std::size_t batch = std::accumulate(as.begin(), as.end() - 2, std::size_t{1}, std::multiplies<>());
    Shape ys = as;
    ys[ys.size() - 2] = m;
    ys.back() = n;
    xt::xarray<T> y = xt::empty<T>(ys);
    const bool bf16 = detail::bf16_products<T>();  // product() rounds the operands
    const T* A = a.value().data();
    const T* B = b.value().data();
    if (shared_b) {
        product<T>(bf16, false, tb, batch * m, n, k, A, ca, B, cb, 0, y.data(), n);
    } else {
        for (std::size_t i = 0; i < batch; ++i)
            product<T>(bf16, ta, tb, m, n, k, A + i * m * k, ca, B + i * k * n, cb, 0, y.data() + i * m * n, n);
    }
    basic_tensor<T> out(std::move(y));
    record(OpKind::matmul, {a, b}, out, [a, b, ta, tb, shared_b, bf16](const basic_tensor<T>& gy, auto& grads) {
        detail::PrecisionScope scope(bf16);  // the gradients' products in the forward pass's precision
        // C = op(A) op(B): dA = gC op(B)ᵀ (its transpose when A is stored transposed), and
        // dB = op(A)ᵀ gC (likewise); a shared B sums over a's batch in one product.
        if (grads.needs(0)) grads.add(0, ta ? matmul_t(b, gy, tb, true) : matmul_t(gy, b, false, !tb));
        if (grads.needs(1)) {
            if (shared_b) {
                // a [..., K] as [rows, K], gy [..., N] as [rows, N] (K or N may be 0)
                const auto rows = static_cast<std::ptrdiff_t>(detail::extent(a.shape(), 0, a.dim() - 1));
                const auto fa = reshape(a, {rows, static_cast<std::ptrdiff_t>(a.shape().back())});
                const auto fg = reshape(gy, {rows, static_cast<std::ptrdiff_t>(gy.shape().back())});
                grads.add(1, tb ? matmul_t(fg, fa, true, false) : matmul_t(fa, fg, true, false));
            } else {
                grads.add(1, tb ? matmul_t(gy, a, true, ta) : matmul_t(a, gy, !ta, false));
            }
        }
    });
    return out;
}

}  // namespace

template <class T>
basic_tensor<T> matmul(const basic_tensor<T>& a, const basic_tensor<T>& b) {
    detail::check_shape(a.dim() >= 2 && b.dim() >= 2, "matmul: a and b must be at least 2-D; a {}, b {}",
                        a.shape(), b.shape());
    const Shape& as = a.shape();
    const Shape& bs = b.shape();
    detail::check_shape(bs[bs.size() - 2] == as.back(), "matmul: inner dimensions differ; a {}, b {}", as, bs);
    detail::check_shape(bs.size() == 2 || std::equal(as.begin(), as.end() - 2, bs.begin(), bs.end() - 2),
                        "matmul: batch dimensions differ; a {}, b {}", as, bs);
    return matmul_t(a, b, false, false);
}

namespace {

template <class T>
void check_linear(const basic_tensor<T>& x, const basic_tensor<T>& w, const basic_tensor<T>* b) {
    const std::string bias = b ? ", b " + to_string(b->shape()) : "";
    detail::check_shape(x.dim() >= 1 && w.dim() == 2, "linear: x must be [..., in] and w [in, out]; x {}, w {}{}",
                        x.shape(), w.shape(), bias);
    detail::check_shape(x.shape().back() == w.shape()[0],
                        "linear: x has {} features but w expects {}; x {}, w {}{}", x.shape().back(),
                        w.shape()[0], x.shape(), w.shape(), bias);
    detail::check_shape(!b || (b->dim() == 1 && b->shape()[0] == w.shape()[1]),
                        "linear: b must be [out] = [{}]; x {}, w {}{}", w.shape()[1], x.shape(),
                        w.shape(), bias);
}

// linear, or linear_relu (kind): relu applied to the product while it is in cache, and the
// rule masks gy with relu_backward before linear's gradients.
template <class T>
basic_tensor<T> linear_impl(OpKind kind, const basic_tensor<T>& x, const basic_tensor<T>& w, const basic_tensor<T>* b) {
    check_linear(x, w, b);
    if (x.dim() != 2) {
        // x [..., in] (a sequence's [N, T, in], or one sample's [in]) as rows [rows, in], and
        // the result back as [..., out]: the reshapes are ops, so the rule is linear's.
        const auto rows = static_cast<std::ptrdiff_t>(detail::extent(x.shape(), 0, x.dim() - 1));
        const auto flat = reshape(x, {rows, static_cast<std::ptrdiff_t>(x.shape().back())});
        std::vector<std::ptrdiff_t> out_shape(x.shape().begin(), x.shape().end() - 1);
        out_shape.push_back(static_cast<std::ptrdiff_t>(w.shape()[1]));
        return reshape(linear_impl(kind, flat, w, b), out_shape);
    }
    const bool relu = kind == OpKind::linear_relu;
    const std::size_t batch = x.shape()[0], in = x.shape()[1], nout = w.shape()[1];
    xt::xarray<T> y = xt::empty<T>(Shape{batch, nout});
    if (b) {
        for (std::size_t i = 0; i < batch; ++i)
            std::copy_n(b->value().data(), nout, y.data() + i * nout);
    }
    // y [N, out] = x [N, in] · w [in, out] (+ b, already in y)
    const bool bf16 = detail::bf16_products<T>();  // product() rounds the operands
    product<T>(bf16, false, false, batch, nout, in, x.value().data(), in, w.value().data(), nout, b ? 1 : 0, y.data(),
               nout);
    if (relu) {
        T* v = y.data();
        for (std::size_t i = 0; i < y.size(); ++i) v[i] = !(v[i] <= T(0)) ? v[i] : T(0);  // NaN passes, as relu()
    }
    basic_tensor<T> out(std::move(y));
    auto backward = [x, w, relu, bf16](const basic_tensor<T>& gy_out, auto& grads) {
        detail::PrecisionScope scope(bf16);  // the gradients' products in the forward pass's precision
        const basic_tensor<T> gy = relu ? relu_backward(gy_out, grads.output()) : gy_out;  // dL/d(x·w + b)
        if (grads.needs(0)) grads.add(0, matmul_t(gy, w, false, true));  // dx [N, in] = gy [N, out] · wᵀ
        if (grads.needs(1)) grads.add(1, matmul_t(x, gy, true, false));  // dw [in, out] = xᵀ · gy
        if (grads.size() > 2 && grads.needs(2)) grads.add(2, sum(gy, {0}));  // db = gy summed over N
    };
    if (b)
        record(kind, {x, w, *b}, out, backward);
    else
        record(kind, {x, w}, out, backward);
    return out;
}

}  // namespace

template <class T>
basic_tensor<T> linear(const basic_tensor<T>& x, const basic_tensor<T>& w, const basic_tensor<T>& b) {
    return linear_impl(OpKind::linear, x, w, &b);
}

template <class T>
basic_tensor<T> linear(const basic_tensor<T>& x, const basic_tensor<T>& w) {
    return linear_impl<T>(OpKind::linear, x, w, nullptr);
}

template <class T>
basic_tensor<T> linear_relu(const basic_tensor<T>& x, const basic_tensor<T>& w, const basic_tensor<T>& b) {
    return linear_impl(OpKind::linear_relu, x, w, &b);
}

template <class T>
basic_tensor<T> linear_relu(const basic_tensor<T>& x, const basic_tensor<T>& w) {
    return linear_impl<T>(OpKind::linear_relu, x, w, nullptr);
}

#define XGRAD_INSTANTIATE(T)                                                                      \
    template basic_tensor<T> matmul(const basic_tensor<T>&, const basic_tensor<T>&);              \
    template basic_tensor<T> linear(const basic_tensor<T>&, const basic_tensor<T>&,               \
                                    const basic_tensor<T>&);                                      \
    template basic_tensor<T> linear(const basic_tensor<T>&, const basic_tensor<T>&);             \
    template basic_tensor<T> linear_relu(const basic_tensor<T>&, const basic_tensor<T>&,          \
                                         const basic_tensor<T>&);                                 \
    template basic_tensor<T> linear_relu(const basic_tensor<T>&, const basic_tensor<T>&);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

namespace detail {

void register_linalg_cases(CaseRegistry& r) {
    using V = std::vector<Tensor64>;
    r.add(OpKind::matmul, "[3,4] . [4,5]", {{{3, 4}}, {{4, 5}}}, [](const V& v) { return matmul(v[0], v[1]); });
    r.add(OpKind::matmul, "batched [2,3,4] . [2,4,5]", {{{2, 3, 4}}, {{2, 4, 5}}},
          [](const V& v) { return matmul(v[0], v[1]); });
    r.add(OpKind::matmul, "shared b [2,2,3,4] . [4,2]", {{{2, 2, 3, 4}}, {{4, 2}}},
          [](const V& v) { return matmul(v[0], v[1]); });
    r.add(OpKind::matmul, "a . a (same input twice)", {{{3, 3}}}, [](const V& v) { return matmul(v[0], v[0]); });
    r.add(OpKind::linear, "[4,3] . [3,5] + [5]", {{{4, 3}}, {{3, 5}}, {{5}}},
          [](const V& v) { return linear(v[0], v[1], v[2]); });
    r.add(OpKind::linear, "no bias, batch 1", {{{1, 3}}, {{3, 2}}}, [](const V& v) { return linear(v[0], v[1]); });
    r.add(OpKind::linear, "a sequence [2,3,4] . [4,2] + [2]", {{{2, 3, 4}}, {{4, 2}}, {{2}}},
          [](const V& v) { return linear(v[0], v[1], v[2]); });
    r.add(OpKind::linear, "one sample [3] . [3,2]", {{{3}}, {{3, 2}}}, [](const V& v) { return linear(v[0], v[1]); });
    // Random inputs are almost surely away from relu's kink (central differences step 1e-6).
    r.add(OpKind::linear_relu, "[5,3] . [3,4] + [4]", {{{5, 3}}, {{3, 4}}, {{4}}},
          [](const V& v) { return linear_relu(v[0], v[1], v[2]); });
    r.add(OpKind::linear_relu, "no bias", {{{6, 3}}, {{3, 4}}}, [](const V& v) { return linear_relu(v[0], v[1]); });
    r.add(OpKind::linear_relu, "a sequence [2,2,3] . [3,4] + [4]", {{{2, 2, 3}}, {{3, 4}}, {{4}}},
          [](const V& v) { return linear_relu(v[0], v[1], v[2]); });
}

}  // namespace detail
}  // namespace xgrad
