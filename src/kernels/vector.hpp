#pragma once

namespace xgrad::kernels {

/// 64 bytes of T as one GCC vector (an AVX-512 register; two AVX2 ones): the element-wise
/// kernels' register type.
template <class T>
struct Vector;
template <>
struct Vector<float> {
    typedef float type __attribute__((vector_size(64)));
};
template <>
struct Vector<double> {
    typedef double type __attribute__((vector_size(64)));
};

}  // namespace xgrad::kernels
