#include "xgrad/parallel.hpp"

#include <cblas.h>
#include <omp.h>

#include "detail/check.hpp"

namespace xgrad {

void set_num_threads(int n) {
    detail::check_value(n >= 1, "set_num_threads: need at least 1 thread, got {}", n);
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

int num_threads() { return omp_get_max_threads(); }

}  // namespace xgrad
