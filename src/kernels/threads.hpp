#pragma once

// Per-thread scratch for the kernels' OpenMP regions.

#include <omp.h>

#include <algorithm>
#include <cstddef>
#include <vector>

#include "kernels/buffer.hpp"

namespace xgrad::kernels {

// One scratch buffer of `size` elements for each thread of the next parallel region, allocated
// here, on the calling thread: an exception thrown inside an OpenMP region cannot leave it
// (std::terminate), so a failed allocation must happen before the region starts.
template <class T>
std::vector<Buffer<T>> per_thread(std::size_t size) {
    std::vector<Buffer<T>> buffers;
    buffers.reserve(static_cast<std::size_t>(omp_get_max_threads()));
    for (int t = 0; t < omp_get_max_threads(); ++t) buffers.emplace_back(size);
    return buffers;
}

// Per-thread lists of `size` pointers (a batch-reduce GEMM's operands), allocated likewise.
template <class T>
std::vector<std::vector<const T*>> per_thread_lists(std::size_t size) {
    return std::vector<std::vector<const T*>>(static_cast<std::size_t>(omp_get_max_threads()),
                                              std::vector<const T*>(size));
}

// p[0, count) = 0, split between the threads when it is large (a serial fill of a 16 MB
// gradient costs 0.35-0.7 ms on 2 threads).
template <class T>
void fill_zero(T* p, std::size_t count) {
    constexpr std::size_t kPiece = std::size_t{1} << 16;
    const auto pieces = static_cast<std::ptrdiff_t>((count + kPiece - 1) / kPiece);
#pragma omp parallel for schedule(static) if (pieces > 1)
    for (std::ptrdiff_t i = 0; i < pieces; ++i) {
        const std::size_t first = static_cast<std::size_t>(i) * kPiece;
        std::fill_n(p + first, std::min(kPiece, count - first), T(0));
    }
}

// Runs `body(partial)` on every thread of a new parallel region, each with its own partial
// sum of `size` elements starting at zero (body shares work with orphaned `omp for nowait`
// loops), then adds the partials to `out` in thread order: the same sums in the same order on
// every run at a given thread count, never in completion order.
template <class T, class Body>
void accumulate_per_thread(std::size_t size, T* out, Body body) {
    auto partials = per_thread<T>(size);
#pragma omp parallel
    {
        auto& partial = partials[static_cast<std::size_t>(omp_get_thread_num())];
        std::fill_n(partial.data(), size, T(0));
        body(partial.data());
    }
    for (const auto& partial : partials)
        for (std::size_t k = 0; k < partial.size(); ++k) out[k] += partial.data()[k];
}

}  // namespace xgrad::kernels
