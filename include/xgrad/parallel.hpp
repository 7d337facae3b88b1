#pragma once

namespace xgrad {

/// Sets the threads of xgrad's own loops (OpenMP) and of OpenBLAS together, so that the two
/// never oversubscribe the cores. Throws ValueError for n < 1.
void set_num_threads(int n);
/// The thread count set by set_num_threads (initially OpenMP's default).
int num_threads();

}  // namespace xgrad
