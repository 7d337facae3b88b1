// Code the compiler has got wrong before (meson.build says how it is avoided).

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "xgrad/xgrad.hpp"

namespace {

// A small inline store, filled the way xtensor's svector (xgrad::Shape) fills itself.
template <class T, std::size_t N>
struct Small {
    T* begin = data;
    alignas(64) T data[N];
    Small(const T* first, const T* last) { std::uninitialized_copy(first, last, begin); }
};

template <class T, std::size_t N>
[[gnu::noinline]] bool equal(const Small<T, N>& s, const T* want) {
    for (std::size_t i = 0; i < N; ++i)
        if (s.begin[i] != want[i]) return false;
    return true;
}

}  // namespace

TEST_CASE("compiler: constant 64-bit elements with a zero tail are stored as written (g++ 12, AVX-512)",
          "[compiler][traps]") {
    // g++ 12.2's SLP vectoriser with -mavx512f broadcast the first element over the zeros.
    const std::size_t a[4] = {2, 2, 0, 0}, b[8] = {2, 2, 2, 2, 2, 2, 2, 0};
    const double c[4] = {1, 1, 1, 0};
    const std::int64_t d[2] = {5, 0};
    CHECK(equal(Small<std::size_t, 4>(a, a + 4), a));
    CHECK(equal(Small<std::size_t, 8>(b, b + 8), b));
    CHECK(equal(Small<double, 4>(c, c + 4), c));
    CHECK(equal(Small<std::int64_t, 2>(d, d + 2), d));
    const xgrad::Shape s{2, 2, 2, 0};
    CHECK(s[3] == 0);
    CHECK(xgrad::zeros<float>(xgrad::Shape{3, 3, 0, 0}).size() == 0);
}
