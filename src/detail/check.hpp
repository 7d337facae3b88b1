#pragma once

// Argument checks for ops: throw a typed xgrad error whose message is formatted only when
// the check fails. Shapes print as "[2, 3]".

#include <cstddef>
#include <cstdint>
#include <new>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "xgrad/error.hpp"
#include "xgrad/tensor.hpp"

template <>
struct fmt::formatter<xgrad::Shape> : fmt::formatter<std::string> {
    auto format(const xgrad::Shape& s, format_context& ctx) const {
        return fmt::formatter<std::string>::format(xgrad::to_string(s), ctx);
    }
};

namespace xgrad::detail {

template <class... Args>
void check_shape(bool ok, fmt::format_string<Args...> f, Args&&... args) {
    if (!ok) throw ShapeError(fmt::format(f, std::forward<Args>(args)...));
}

template <class... Args>
void check_value(bool ok, fmt::format_string<Args...> f, Args&&... args) {
    if (!ok) throw ValueError(fmt::format(f, std::forward<Args>(args)...));
}

// The element count of `shape`, after checking that it and its size in bytes (elements of
// `element_bytes`) fit in memory's address range: a product that wraps around 2^64 would let a
// later op index far outside a small allocation. Zero-size dimensions do not hide an overflow
// among the others (xtensor's strides are products of the later dimensions). Throws ShapeError.
// `context` (e.g. "x [0]") is appended to the message.
inline std::size_t checked_elements(const char* op, const Shape& shape, std::size_t element_bytes,
                                    const std::string& context = "") {
    std::size_t nonzero = 1, count = 1;
    bool overflow = false;
    for (const std::size_t d : shape) {
        count *= d;
        if (d != 0) overflow = overflow || __builtin_mul_overflow(nonzero, d, &nonzero);
    }
    std::size_t bytes = 0;
    overflow = overflow || __builtin_mul_overflow(nonzero, element_bytes, &bytes) ||
               bytes > static_cast<std::size_t>(PTRDIFF_MAX);
    if (overflow)
        throw ShapeError(fmt::format("{}: the shape {} has more elements than memory can address{}{}", op,
                                     to_string(shape), context.empty() ? "" : "; ", context));
    return count;
}

// Bytes of RAM and swap together: a dense array larger than that cannot be filled, whatever
// the kernel's overcommit policy lets mmap promise (src/memory.cpp).
std::size_t memory_bytes();

// Runs `make` (an allocation of a user-sized array), turning a failed allocation into a
// ValueError that names the op and the shape instead of a bare std::bad_alloc. An array larger
// than the machine's memory is refused before anything is asked of the allocator.
template <class Make>
auto allocating(const char* op, const Shape& shape, std::size_t element_bytes, Make make) {
    const std::size_t count = checked_elements(op, shape, element_bytes);
    auto refuse = [&] {
        return ValueError(fmt::format("{}: cannot allocate {} bytes for the shape {} ({} bytes of memory and swap)",
                                      op, count * element_bytes, to_string(shape), memory_bytes()));
    };
    if (count * element_bytes > memory_bytes()) throw refuse();
    try {
        return make();
    } catch (const std::bad_alloc&) {
        throw refuse();
    }
}

}  // namespace xgrad::detail
