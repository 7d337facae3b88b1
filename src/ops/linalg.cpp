#include "xgrad/ops/linalg.hpp"

#include <functional>
#include <numeric>

#include <xtensor/xbuilder.hpp>
#include <xtensor/xnoalias.hpp>
#include <xtensor/xreducer.hpp>
#include <xtensor/xtensor.hpp>

#include "detail/cases.hpp"
#include "detail/check.hpp"
#include "kernels/gemm.hpp"
#include "xgrad/tape.hpp"

namespace xgrad {

using kernels::gemm;

template <class T>
basic_tensor<T> matmul(const basic_tensor<T>& a, const basic_tensor<T>& b) {
    detail::check_shape(a.dim() >= 2 && b.dim() >= 2, "matmul: a and b must be at least 2-D; a {}, b {}",
                        a.shape(), b.shape());
    const Shape& as = a.shape();
    const Shape& bs = b.shape();
    const std::size_t m = as[as.size() - 2], k = as.back(), n = bs.back();
    detail::check_shape(bs[bs.size() - 2] == k, "matmul: inner dimensions differ; a {}, b {}", as, bs);
    const bool shared_b = bs.size() == 2;  // one b for every matrix of a's batch
    detail::check_shape(shared_b || std::equal(as.begin(), as.end() - 2, bs.begin(), bs.end() - 2),
                        "matmul: batch dimensions differ; a {}, b {}", as, bs);
    // From the batch dimensions, not a.size() / (m·k): with k = 0 that quotient is 0 and the
    // [.., M, N] output of zeros would never be written.
    const std::size_t batch = std::accumulate(as.begin(), as.end() - 2, std::size_t{1}, std::multiplies<>());
    Shape ys = as;
    ys.back() = n;
    xt::xarray<T> y = xt::empty<T>(ys);
    if (shared_b) {
        gemm<T>(false, false, batch * m, n, k, 1, a.value().data(), b.value().data(), 0, y.data());
    } else {
        for (std::size_t i = 0; i < batch; ++i)
            gemm<T>(false, false, m, n, k, 1, a.value().data() + i * m * k, b.value().data() + i * k * n,
                    0, y.data() + i * m * n);
    }
    basic_tensor<T> out(std::move(y));
    record(OpKind::matmul, {a, b}, out, [a, b, batch, m, n, k, shared_b](const auto& gy, auto& grads) {
        const T* A = a.value().data();
        const T* B = b.value().data();
        // dA [M, K] += gy [M, N] · Bᵀ [N, K]
        if (grads[0]) {
            if (shared_b)
                gemm<T>(false, true, batch * m, k, n, 1, gy.data(), B, 1, grads[0]->data());
            else
                for (std::size_t i = 0; i < batch; ++i)
                    gemm<T>(false, true, m, k, n, 1, gy.data() + i * m * n, B + i * k * n, 1,
                            grads[0]->data() + i * m * k);
        }
        // dB [K, N] += Aᵀ [K, M] · gy [M, N]; a shared b sums over the batch in the same GEMM
        if (grads[1]) {
            if (shared_b)
                gemm<T>(true, false, k, n, batch * m, 1, A, gy.data(), 1, grads[1]->data());
            else
                for (std::size_t i = 0; i < batch; ++i)
                    gemm<T>(true, false, k, n, m, 1, A + i * m * k, gy.data() + i * m * n, 1,
                            grads[1]->data() + i * k * n);
        }
    });
    return out;
}

namespace {

template <class T>
void check_linear(const basic_tensor<T>& x, const basic_tensor<T>& w, const basic_tensor<T>* b) {
    const std::string bias = b ? ", b " + to_string(b->shape()) : "";
    detail::check_shape(x.dim() == 2 && w.dim() == 2, "linear: x must be [N, in] and w [in, out]; x {}, w {}{}",
                        x.shape(), w.shape(), bias);
    detail::check_shape(x.shape()[1] == w.shape()[0],
                        "linear: x has {} features but w expects {}; x {}, w {}{}", x.shape()[1],
                        w.shape()[0], x.shape(), w.shape(), bias);
    detail::check_shape(!b || (b->dim() == 1 && b->shape()[0] == w.shape()[1]),
                        "linear: b must be [out] = [{}]; x {}, w {}{}", w.shape()[1], x.shape(),
                        w.shape(), bias);
}

template <class T>
basic_tensor<T> linear_impl(const basic_tensor<T>& x, const basic_tensor<T>& w, const basic_tensor<T>* b) {
    check_linear(x, w, b);
    const std::size_t batch = x.shape()[0], in = x.shape()[1], nout = w.shape()[1];
    xt::xarray<T> y = xt::empty<T>(Shape{batch, nout});
    if (b) {
        for (std::size_t i = 0; i < batch; ++i)
            std::copy_n(b->value().data(), nout, y.data() + i * nout);
    }
    // y [N, out] = x [N, in] · w [in, out] (+ b, already in y)
    gemm<T>(false, false, batch, nout, in, 1, x.value().data(), w.value().data(), b ? 1 : 0, y.data());
    basic_tensor<T> out(std::move(y));
    auto backward = [x, w, batch, in, nout](const auto& gy, auto& grads) {
        // dx [N, in] += gy [N, out] · wᵀ [out, in]
        if (grads[0]) gemm<T>(false, true, batch, in, nout, 1, gy.data(), w.value().data(), 1, grads[0]->data());
        // dw [in, out] += xᵀ [in, N] · gy [N, out]
        if (grads[1]) gemm<T>(true, false, in, nout, batch, 1, x.value().data(), gy.data(), 1, grads[1]->data());
        // db [out] += sum of gy over N
        if (grads.size() > 2 && grads[2]) {
            T* db = grads[2]->data();
            for (std::size_t i = 0; i < batch; ++i)
                for (std::size_t j = 0; j < nout; ++j) db[j] += gy.data()[i * nout + j];
        }
    };
    if (b)
        record(OpKind::linear, {x, w, *b}, out, backward);
    else
        record(OpKind::linear, {x, w}, out, backward);
    return out;
}

}  // namespace

template <class T>
basic_tensor<T> linear(const basic_tensor<T>& x, const basic_tensor<T>& w, const basic_tensor<T>& b) {
    return linear_impl(x, w, &b);
}

template <class T>
basic_tensor<T> linear(const basic_tensor<T>& x, const basic_tensor<T>& w) {
    return linear_impl<T>(x, w, nullptr);
}

#define XGRAD_INSTANTIATE(T)                                                                      \
    template basic_tensor<T> matmul(const basic_tensor<T>&, const basic_tensor<T>&);              \
    template basic_tensor<T> linear(const basic_tensor<T>&, const basic_tensor<T>&,               \
                                    const basic_tensor<T>&);                                      \
    template basic_tensor<T> linear(const basic_tensor<T>&, const basic_tensor<T>&);
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
}

}  // namespace detail
}  // namespace xgrad
