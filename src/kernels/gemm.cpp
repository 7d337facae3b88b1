#include "kernels/gemm.hpp"

#include <cblas.h>

namespace xgrad::kernels {

namespace {

// Leading dimensions must be at least 1 even for empty matrices, or OpenBLAS complains.
blasint ld(std::size_t v) { return static_cast<blasint>(v > 0 ? v : 1); }
blasint as_int(std::size_t v) { return static_cast<blasint>(v); }

}  // namespace

template <>
void gemm<float>(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k,
                 float alpha, const float* a, const float* b, float beta, float* c) {
    if (m == 0 || n == 0) return;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                as_int(m), as_int(n), as_int(k), alpha, a, ld(trans_a ? m : k), b,
                ld(trans_b ? k : n), beta, c, ld(n));
}

template <>
void gemm<double>(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k,
                  double alpha, const double* a, const double* b, double beta, double* c) {
    if (m == 0 || n == 0) return;
    cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                as_int(m), as_int(n), as_int(k), alpha, a, ld(trans_a ? m : k), b,
                ld(trans_b ? k : n), beta, c, ld(n));
}

}  // namespace xgrad::kernels
