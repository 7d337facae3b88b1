#include "kernels/gemm.hpp"

#include <cblas.h>

namespace xgrad::kernels {

namespace {

// Leading dimensions must be at least 1 even for empty matrices, or OpenBLAS complains.
blasint ld(std::size_t v) { return static_cast<blasint>(v > 0 ? v : 1); }
blasint as_int(std::size_t v) { return static_cast<blasint>(v); }
CBLAS_TRANSPOSE op(bool trans) { return trans ? CblasTrans : CblasNoTrans; }

}  // namespace

template <>
void gemm<float>(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, float alpha,
                 const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta, float* c,
                 std::size_t ldc) {
    if (m == 0 || n == 0) return;
    cblas_sgemm(CblasRowMajor, op(trans_a), op(trans_b), as_int(m), as_int(n), as_int(k), alpha, a,
                ld(lda), b, ld(ldb), beta, c, ld(ldc));
}

template <>
void gemm<double>(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, double alpha,
                  const double* a, std::size_t lda, const double* b, std::size_t ldb, double beta, double* c,
                  std::size_t ldc) {
    if (m == 0 || n == 0) return;
    cblas_dgemm(CblasRowMajor, op(trans_a), op(trans_b), as_int(m), as_int(n), as_int(k), alpha, a,
                ld(lda), b, ld(ldb), beta, c, ld(ldc));
}

}  // namespace xgrad::kernels
