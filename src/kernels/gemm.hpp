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

// The same for one whole product on the OpenMP threads (called outside a parallel region):
// float products of 2^20 multiply-adds or more, built with libxsmm, give each thread a block
// of C (rows, or columns when C is wider than tall) with the whole inner dimension, through
// gemm_per_thread (the whole product at one thread; a transposed B copied untransposed first):
// libxsmm JITs AVX-512 kernels whatever OPENBLAS_CORETYPE chooses for OpenBLAS (a dense
// 3136 -> 128 layer's forward 0.25-0.32 ms -> 0.11-0.13 at 2 threads under the Haswell
// setting). Everything else is gemm().
template <class T>
void gemm_parallel(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha,
                   const T* a, std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc);

// C [M, N] = Σ_i A_i [M, K] · B_i [K, N] (+ C when `accumulate`) over `count` pairs of row-major
// matrices sharing their row strides, for one thread: the direct convolution's sum of one
// product per kernel tap. Made once per shape (dispatch outside the loop), called per pair
// list: a libxsmm batch-reduce kernel that keeps the sum in registers (float, built with
// libxsmm), otherwise one gemm() per pair.
template <class T>
class BatchReduceGemm {
public:
    BatchReduceGemm(std::size_t m, std::size_t n, std::size_t k, std::size_t lda, std::size_t ldb, std::size_t ldc,
                    bool accumulate);
    void operator()(const T* const* a, const T* const* b, std::size_t count, T* c) const;

private:
    std::size_t m_, n_, k_, lda_, ldb_, ldc_;
    bool accumulate_;
    void* kernel_ = nullptr;  // libxsmm's, or null
};

// The same on contiguous matrices (row strides equal to their stored widths).
template <class T>
void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha,
          const T* a, const T* b, T beta, T* c) {
    gemm<T>(trans_a, trans_b, m, n, k, alpha, a, trans_a ? m : k, b, trans_b ? k : n, beta, c, n);
}

}  // namespace xgrad::kernels
