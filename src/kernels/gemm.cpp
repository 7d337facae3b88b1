#include "kernels/gemm.hpp"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <limits>
#include <type_traits>

#include "kernels/buffer.hpp"

#if XGRAD_HAVE_XSMM
#include <libxsmm.h>
#endif

namespace xgrad::kernels {

namespace {

// Leading dimensions must be at least 1 even for empty matrices, or OpenBLAS complains.
blasint ld(std::size_t v) { return static_cast<blasint>(v > 0 ? v : 1); }
blasint as_int(std::size_t v) { return static_cast<blasint>(v); }
CBLAS_TRANSPOSE op(bool trans) { return trans ? CblasTrans : CblasNoTrans; }

// C = beta · C: a product with an inner dimension of 0 is all zeros, which BLAS leaves unwritten
// (OpenBLAS returns early for k = 0), so C would keep what the buffer held before.
template <class T>
void scale(std::size_t m, std::size_t n, T beta, T* c, std::size_t ldc) {
    for (std::size_t r = 0; r < m; ++r)
        for (std::size_t j = 0; j < n; ++j) c[r * ldc + j] = beta == 0 ? T(0) : beta * c[r * ldc + j];
}

}  // namespace

template <>
void gemm<float>(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, float alpha,
                 const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta, float* c,
                 std::size_t ldc) {
    if (m == 0 || n == 0) return;
    if (k == 0) return scale(m, n, beta, c, ldc);
    cblas_sgemm(CblasRowMajor, op(trans_a), op(trans_b), as_int(m), as_int(n), as_int(k), alpha, a,
                ld(lda), b, ld(ldb), beta, c, ld(ldc));
}

template <>
void gemm<double>(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, double alpha,
                  const double* a, std::size_t lda, const double* b, std::size_t ldb, double beta, double* c,
                  std::size_t ldc) {
    if (m == 0 || n == 0) return;
    if (k == 0) return scale(m, n, beta, c, ldc);
    cblas_dgemm(CblasRowMajor, op(trans_a), op(trans_b), as_int(m), as_int(n), as_int(k), alpha, a,
                ld(lda), b, ld(ldb), beta, c, ld(ldc));
}

template <class T>
void gemm_per_thread(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha,
                     const T* a, std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc) {
#if XGRAD_HAVE_XSMM
    // libxsmm is column-major: C [m, n] = op(A) op(B) row-major is Cᵀ = op(B)ᵀ op(A)ᵀ, so B
    // goes first and trans_a becomes its second operand's flag. It JITs kernels for the CPU
    // it runs on (AVX-512 here), whatever OPENBLAS_CORETYPE selects for OpenBLAS: 185-218
    // GFLOP/s on one core for the W2 convs' per-image shapes against 73-96 (Haswell kernels).
    constexpr auto kMax = static_cast<std::size_t>(std::numeric_limits<int>::max());
    if constexpr (std::is_same_v<T, float>) {
        if (!trans_b && alpha == 1 && (beta == 0 || beta == 1) && m > 0 && n > 0 && k > 0 &&
            std::max({m, n, k, lda, ldb, ldc}) <= kMax) {
            const int mm = static_cast<int>(n), nn = static_cast<int>(m), kk = static_cast<int>(k);
            const int la = static_cast<int>(ldb), lb = static_cast<int>(lda), lc = static_cast<int>(ldc);
            // (libxsmm 1.17 has no kernels for a transposed first operand: trans_b goes to gemm.)
            const int flags = trans_a ? LIBXSMM_GEMM_FLAG_TRANS_B : 0;
            const float one = 1;
            if (const auto kernel = libxsmm_smmdispatch(mm, nn, kk, &la, &lb, &lc, &one, &beta, &flags, nullptr)) {
                kernel(b, a, c);
                return;
            }
        }
    }
#endif
    gemm<T>(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

template <class T>
void gemm_parallel(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a,
                   std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc) {
    const int threads = omp_get_max_threads();
    const bool large = XGRAD_HAVE_XSMM && std::is_same_v<T, float> && alpha == 1 && (beta == 0 || beta == 1) &&
                       !omp_in_parallel() &&
                       static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k) >= 1 << 20;
    if (!large) return gemm<T>(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    // libxsmm 1.17 has no kernel for a transposed B (its first operand): B [N, K] is transposed
    // once into [K, N] here, K·N elements copied for M·N·K multiply-adds (a dense layer's dx =
    // dY · Wᵀ ran in OpenBLAS's Haswell kernels at half libxsmm's rate).
    Buffer<T> transposed;
#if XGRAD_HAVE_XSMM
    if (trans_b) {
        // libxsmm's transposition kernel on this thread (0.045 ms for a 3136 x 128 weight, a
        // tenth of a tiled loop's time), column-major: B is a K x N matrix there (leading
        // dimension ldb), its transpose N x K with leading dimension N. (libxsmm_otrans_thread
        // raised SIGFPE in 1.17 when called before libxsmm_otrans.)
        transposed = Buffer<T>(k * n);
        libxsmm_otrans(transposed.data(), b, sizeof(T), static_cast<libxsmm_blasint>(k),
                       static_cast<libxsmm_blasint>(n), static_cast<libxsmm_blasint>(ldb),
                       static_cast<libxsmm_blasint>(n));
        b = transposed.data();
        ldb = n;
        trans_b = false;
    }
#endif
    if (threads == 1) return gemm_per_thread<T>(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    const bool by_rows = m >= n;
    const std::size_t size = by_rows ? m : n;
    // Blocks of whole vectors (16 floats) of C's split dimension, one per thread.
    const auto t_count = static_cast<std::size_t>(threads);
    const std::size_t block = std::max<std::size_t>(16, (size + t_count - 1) / t_count + 15) / 16 * 16;
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t t = 0; t < static_cast<std::ptrdiff_t>(t_count); ++t) {
        const std::size_t first = static_cast<std::size_t>(t) * block, last = std::min(size, first + block);
        if (first >= last) continue;
        if (by_rows)  // rows of op(A): A's columns when it is stored transposed
            gemm_per_thread<T>(trans_a, trans_b, last - first, n, k, alpha, trans_a ? a + first : a + first * lda, lda,
                               b, ldb, beta, c + first * ldc, ldc);
        else
            gemm_per_thread<T>(trans_a, trans_b, m, last - first, k, alpha, a, lda, trans_b ? b + first * ldb : b + first,
                               ldb, beta, c + first, ldc);
    }
}

template <class T>
BatchReduceGemm<T>::BatchReduceGemm(std::size_t m, std::size_t n, std::size_t k, std::size_t lda, std::size_t ldb,
                                    std::size_t ldc, bool accumulate)
    : m_(m), n_(n), k_(k), lda_(lda), ldb_(ldb), ldc_(ldc), accumulate_(accumulate) {
#if XGRAD_HAVE_XSMM
    // Column-major as in gemm_per_thread: Cᵀ = Σ B_iᵀ A_iᵀ, so the kernel takes the B list first.
    constexpr auto kMax = static_cast<std::size_t>(std::numeric_limits<int>::max());
    if constexpr (std::is_same_v<T, float>) {
        if (m > 0 && n > 0 && k > 0 && std::max({m, n, k, lda, ldb, ldc}) <= kMax) {
            const int la = static_cast<int>(ldb), lb = static_cast<int>(lda), lc = static_cast<int>(ldc);
            const float one = 1, beta = accumulate ? 1 : 0;
            kernel_ = reinterpret_cast<void*>(libxsmm_smmdispatch_reducebatch_addr(
                static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &la, &lb, &lc, &one, &beta, nullptr,
                nullptr));
        }
    }
#endif
}

template <class T>
void BatchReduceGemm<T>::operator()(const T* const* a, const T* const* b, std::size_t count, T* c) const {
    if (count == 0 || k_ == 0) {
        if (!accumulate_)
            for (std::size_t r = 0; r < m_; ++r) std::fill_n(c + r * ldc_, n_, T(0));
        return;
    }
#if XGRAD_HAVE_XSMM
    if constexpr (std::is_same_v<T, float>) {
        if (kernel_) {
            const unsigned long long pairs = count;
            reinterpret_cast<libxsmm_smmfunction_reducebatch_addr>(kernel_)(const_cast<const float**>(b),
                                                                             const_cast<const float**>(a), c, &pairs);
            return;
        }
    }
#endif
    for (std::size_t i = 0; i < count; ++i)
        gemm<T>(false, false, m_, n_, k_, 1, a[i], lda_, b[i], ldb_, i == 0 && !accumulate_ ? 0 : 1, c, ldc_);
}

template class BatchReduceGemm<float>;
template class BatchReduceGemm<double>;

template void gemm_per_thread<float>(bool, bool, std::size_t, std::size_t, std::size_t, float, const float*,
                                     std::size_t, const float*, std::size_t, float, float*, std::size_t);
template void gemm_parallel<float>(bool, bool, std::size_t, std::size_t, std::size_t, float, const float*, std::size_t,
                                   const float*, std::size_t, float, float*, std::size_t);
template void gemm_parallel<double>(bool, bool, std::size_t, std::size_t, std::size_t, double, const double*,
                                    std::size_t, const double*, std::size_t, double, double*, std::size_t);
template void gemm_per_thread<double>(bool, bool, std::size_t, std::size_t, std::size_t, double, const double*,
                                      std::size_t, const double*, std::size_t, double, double*, std::size_t);

}  // namespace xgrad::kernels
