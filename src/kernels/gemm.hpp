#pragma once

#include <cstddef>

namespace xgrad::kernels {

// C [M, N] = alpha · op(A) · op(B) + beta · C on row-major buffers, where op(A) is [M, K]
// (A stored [K, M] when trans_a) and op(B) is [K, N] (B stored [N, K] when trans_b); lda,
// ldb and ldc are the row strides as stored. OpenBLAS sgemm/dgemm; beta = 1 accumulates.
template <class T>
void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha,
          const T* a, std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc);

// The same, for one thread's share of a batch-split kernel (called inside an OpenMP region,
// where OpenBLAS runs serially): a libxsmm JIT kernel for the shape when xgrad was built with
// libxsmm and it has one (float, alpha 1, beta 0 or 1, no trans_b), otherwise gemm().
template <class T>
void gemm_per_thread(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha,
                     const T* a, std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc);

// The same on contiguous matrices (row strides equal to their stored widths).
template <class T>
void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha,
          const T* a, const T* b, T beta, T* c) {
    gemm<T>(trans_a, trans_b, m, n, k, alpha, a, trans_a ? m : k, b, trans_b ? k : n, beta, c, n);
}

}  // namespace xgrad::kernels
