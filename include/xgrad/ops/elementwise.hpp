#pragma once

// Elementwise arithmetic with numpy broadcasting: shapes are aligned at their last axis and
// a dimension of 1 stretches to match; each input's gradient is summed back to its shape.
// Shapes that cannot broadcast throw ShapeError naming the op and both shapes.

#include <type_traits>

#include "xgrad/tensor.hpp"

namespace xgrad {

/// a + b, broadcast. Throws ShapeError.
template <class T> basic_tensor<T> add(const basic_tensor<T>& a, const basic_tensor<T>& b);
/// a - b, broadcast. Throws ShapeError.
template <class T> basic_tensor<T> sub(const basic_tensor<T>& a, const basic_tensor<T>& b);
/// a * b elementwise, broadcast. Throws ShapeError.
template <class T> basic_tensor<T> mul(const basic_tensor<T>& a, const basic_tensor<T>& b);
/// a / b elementwise, broadcast. Throws ShapeError.
template <class T> basic_tensor<T> div(const basic_tensor<T>& a, const basic_tensor<T>& b);
/// a ** b elementwise for a > 0, broadcast. Throws ShapeError.
template <class T> basic_tensor<T> pow(const basic_tensor<T>& a, const basic_tensor<T>& b);
/// x ** p for a constant exponent (x may be negative when p is an integer).
template <class T> basic_tensor<T> pow(const basic_tensor<T>& x, std::type_identity_t<T> p);
/// -x
template <class T> basic_tensor<T> neg(const basic_tensor<T>& x);
/// e ** x
template <class T> basic_tensor<T> exp(const basic_tensor<T>& x);
/// Natural logarithm (x > 0).
template <class T> basic_tensor<T> log(const basic_tensor<T>& x);
/// Square root (x > 0 for a finite gradient).
template <class T> basic_tensor<T> sqrt(const basic_tensor<T>& x);
/// x * x
template <class T> basic_tensor<T> square(const basic_tensor<T>& x);
/// |x|; its gradient at 0 is 0.
template <class T> basic_tensor<T> abs(const basic_tensor<T>& x);
/// The larger of a and b elementwise (broadcast); NaN in either gives NaN; at a tie the
/// gradient is split in half (as PyTorch's). Throws ShapeError for shapes that do not broadcast.
template <class T> basic_tensor<T> maximum(const basic_tensor<T>& a, const basic_tensor<T>& b);
/// The smaller of a and b, as maximum.
template <class T> basic_tensor<T> minimum(const basic_tensor<T>& a, const basic_tensor<T>& b);
/// x limited to [lo, hi]; the gradient passes where lo <= x <= hi (bounds included, as
/// PyTorch's). Throws ValueError when lo > hi.
template <class T>
basic_tensor<T> clamp(const basic_tensor<T>& x, std::type_identity_t<T> lo, std::type_identity_t<T> hi);
/// a where `condition`, b elsewhere; the three broadcast together. The condition is a
/// constant (no gradient). `xgrad::where(x.value() > 0, x, y)`.
template <class T>
basic_tensor<T> where(const xt::xarray<bool>& condition, const basic_tensor<T>& a, const basic_tensor<T>& b);

/// A 0-D constant: what a scalar operand becomes.
template <class T>
basic_tensor<T> scalar(T v) {
    return basic_tensor<T>(xt::xarray<T>(v));
}

template <class T> basic_tensor<T> operator+(const basic_tensor<T>& a, const basic_tensor<T>& b) { return add(a, b); }
template <class T> basic_tensor<T> operator-(const basic_tensor<T>& a, const basic_tensor<T>& b) { return sub(a, b); }
template <class T> basic_tensor<T> operator*(const basic_tensor<T>& a, const basic_tensor<T>& b) { return mul(a, b); }
template <class T> basic_tensor<T> operator/(const basic_tensor<T>& a, const basic_tensor<T>& b) { return div(a, b); }
template <class T> basic_tensor<T> operator-(const basic_tensor<T>& x) { return neg(x); }

template <class T> basic_tensor<T> operator+(const basic_tensor<T>& a, std::type_identity_t<T> s) { return add(a, scalar(s)); }
template <class T> basic_tensor<T> operator+(std::type_identity_t<T> s, const basic_tensor<T>& a) { return add(scalar(s), a); }
template <class T> basic_tensor<T> operator-(const basic_tensor<T>& a, std::type_identity_t<T> s) { return sub(a, scalar(s)); }
template <class T> basic_tensor<T> operator-(std::type_identity_t<T> s, const basic_tensor<T>& a) { return sub(scalar(s), a); }
template <class T> basic_tensor<T> operator*(const basic_tensor<T>& a, std::type_identity_t<T> s) { return mul(a, scalar(s)); }
template <class T> basic_tensor<T> operator*(std::type_identity_t<T> s, const basic_tensor<T>& a) { return mul(scalar(s), a); }
template <class T> basic_tensor<T> operator/(const basic_tensor<T>& a, std::type_identity_t<T> s) { return div(a, scalar(s)); }
template <class T> basic_tensor<T> operator/(std::type_identity_t<T> s, const basic_tensor<T>& a) { return div(scalar(s), a); }

}  // namespace xgrad
