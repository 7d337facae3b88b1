#pragma once

#include <mutex>
#include <random>

namespace xgrad::detail {

std::mutex& generator_mutex();
// The process-wide generator that manual_seed() seeds. Use it through with_generator.
std::mt19937_64& generator();

template <class F>
decltype(auto) with_generator(F&& f) {
    std::lock_guard lock(generator_mutex());
    return f(generator());
}

}  // namespace xgrad::detail
