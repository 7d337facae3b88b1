#pragma once

#include <cstddef>

namespace xgrad::detail {

// Element-wise loops shorter than this run on one thread: below it, waking the OpenMP team
// costs more than the memory traffic it shares (64Ki floats = 256 KiB).
inline constexpr std::ptrdiff_t kParallelElements = std::ptrdiff_t{1} << 16;

}  // namespace xgrad::detail
