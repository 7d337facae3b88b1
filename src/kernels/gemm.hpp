#pragma once

#include <cstddef>

namespace xgrad::kernels {

// C [M, N] = alpha · op(A) · op(B) + beta · C on row-major contiguous buffers, where
// op(A) is [M, K] (A stored [K, M] when trans_a) and op(B) is [K, N] (B stored [N, K] when
// trans_b). OpenBLAS sgemm/dgemm; beta = 1 accumulates into C.
template <class T>
void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha,
          const T* a, const T* b, T beta, T* c);

}  // namespace xgrad::kernels
