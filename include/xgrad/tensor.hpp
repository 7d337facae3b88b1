#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <xtensor/xarray.hpp>

#include "xgrad/error.hpp"

namespace xgrad {

/// A tensor's shape, outermost dimension first: images are [N, H, W, C].
using Shape = xt::xarray<float>::shape_type;

/// "[2, 3]": how every message prints a shape ("[]" for a scalar).
std::string to_string(const Shape& shape);

namespace detail {
template <class T>
struct Node;
}

/// Options of backward().
struct BackwardOptions {
    /// Keep the graph after the pass, so that it can be backpropagated again (the default
    /// frees it: a second backward() then throws).
    bool retain_graph = false;
};

/// A cheap, shared handle to a value (`xt::xarray<T>`, row-major, contiguous), its
/// optional gradient, and the tape entry that produced it. Copies share the same tensor,
/// as Python names do in PyTorch.
///
/// ```
/// xgrad::Tensor64 x(xt::xarray<double>{1.0, 2.0}, /*requires_grad=*/true);
/// auto loss = xgrad::sum(x * x);
/// loss.backward();          // x.grad() is {2, 4}
/// ```
template <class T>
class basic_tensor {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "xgrad tensors hold float or double");

public:
    using value_type = T;
    using array_type = xt::xarray<T>;

    /// An undefined handle (as a default-constructed member); every accessor throws ValueError.
    basic_tensor() = default;
    /// A leaf tensor holding `value`.
    explicit basic_tensor(array_type value, bool requires_grad = false);

    /// True unless default-constructed.
    bool defined() const { return node_ != nullptr; }

    const array_type& value() const;
    /// In-place access for optimizers and initialisers. Not recorded on the tape, but each call
    /// bumps the tensor's version: a recorded op whose input or output was accessed this way
    /// since it ran makes backward() throw ValueError ("modified after it was recorded")
    /// instead of computing a gradient from values the forward pass never saw.
    array_type& mutable_value();
    const Shape& shape() const;
    /// Number of dimensions.
    std::size_t dim() const;
    /// Number of elements.
    std::size_t size() const;

    bool requires_grad() const;
    /// Marks a leaf as a parameter whose gradient backward() accumulates.
    /// Throws ValueError on a tensor produced by a recorded op.
    basic_tensor& set_requires_grad(bool requires_grad);
    /// True for tensors created directly (not produced by a recorded op).
    bool is_leaf() const;

    /// True once backward() has reached this tensor (leaves only: the gradients of
    /// intermediate tensors are released as soon as they are used).
    bool has_grad() const;
    /// dL/dthis, same shape as value(). Throws ValueError when there is none.
    const array_type& grad() const;
    /// In-place access to the gradient, for optimizers and gradient clipping. Throws
    /// ValueError when there is none.
    array_type& mutable_grad();
    /// Sets an existing gradient to zero (keeping its buffer); no-op when there is none.
    void zero_grad();

    /// Backpropagates from this scalar (size-1) tensor. Throws ValueError when it is not a
    /// scalar, does not require grad, its graph was freed by an earlier backward(), or a value
    /// in it was modified after it was recorded (then no gradient is touched). Threads may
    /// backpropagate into shared leaves at the same time: each leaf's accumulation is locked.
    void backward(BackwardOptions options = {}) const;
    /// Backpropagates `grad_output` (dL/dthis, same shape as this tensor). Throws ShapeError.
    void backward(const array_type& grad_output, BackwardOptions options = {}) const;

    /// A function of a tensor's gradient: returns nothing to inspect it, or a replacement of
    /// the same shape (computed with tensor ops, it stays differentiable under create_graph).
    using GradHook = std::function<std::optional<basic_tensor>(const basic_tensor&)>;
    /// Runs `hook` on this tensor's gradient in every backward pass (and grad()) that reaches
    /// it, once the pass has summed it over all paths: for an intermediate before it flows on
    /// to the inputs, for a leaf before it is added to grad(). Hooks run in the order they
    /// were registered. Throws ValueError when the tensor does not require grad.
    ///
    /// ```
    /// h.register_hook([](const xgrad::Tensor& g) { return std::optional(g * 0.5f); });
    /// ```
    void register_hook(GradHook hook);
    /// Removes every hook of this tensor.
    void remove_hooks();

    /// The single value of a size-1 tensor. Throws ValueError otherwise.
    T item() const;
    /// A new leaf holding a copy of the value, detached from the tape.
    basic_tensor detach() const;

    /// Internal: the shared node (for the tape and the library's own ops).
    const std::shared_ptr<detail::Node<T>>& node() const { return node_; }
    explicit basic_tensor(std::shared_ptr<detail::Node<T>> node) : node_(std::move(node)) {}

private:
    detail::Node<T>& checked_node() const;

    std::shared_ptr<detail::Node<T>> node_;
};

/// Training precision.
using Tensor = basic_tensor<float>;
/// Gradient checks and exactness tests.
using Tensor64 = basic_tensor<double>;

/// Seeds the generator behind rand/randn, dropout and every seeded initialiser.
void manual_seed(std::uint64_t seed);
/// The generator's full state as text, for checkpoints.
std::string generator_state();
/// Restores a state from generator_state(). Throws ValueError for text that is not one.
void set_generator_state(const std::string& state);

template <class T = float>
basic_tensor<T> zeros(const Shape& shape, bool requires_grad = false);
template <class T = float>
basic_tensor<T> ones(const Shape& shape, bool requires_grad = false);
template <class T = float>
basic_tensor<T> full(const Shape& shape, T value, bool requires_grad = false);
/// Uniform in [0, 1), from the generator of manual_seed().
template <class T = float>
basic_tensor<T> rand(const Shape& shape, bool requires_grad = false);
/// Standard normal, from the generator of manual_seed().
template <class T = float>
basic_tensor<T> randn(const Shape& shape, bool requires_grad = false);
/// 1-D: start, start + step, ... up to but excluding stop. Throws ValueError for step 0.
template <class T = float>
basic_tensor<T> arange(T start, T stop, T step = 1);

/// A leaf of `shape` holding `values` in row-major order (the last index fastest), without
/// writing xtensor: `xgrad::from_vector({1.f, 2.f, 3.f, 4.f, 5.f, 6.f}, {2, 3})`. Throws
/// ShapeError when the number of values differs from the shape's size.
template <class T>
basic_tensor<T> from_vector(const std::vector<T>& values, const Shape& shape, bool requires_grad = false);
/// The values in row-major order.
template <class T>
std::vector<T> to_vector(const basic_tensor<T>& t);

/// The tensor as text: a header with shape, precision and grad flag, then the values nested
/// by dimension (6 significant digits). A tensor of more than 1000 values shows the first
/// and last 3 entries of each dimension around "...", as PyTorch prints.
///
/// ```
/// tensor([2, 3], float32, requires_grad)
/// [[1, 2, 3],
///  [4, 5, 6]]
/// ```
template <class T>
std::string to_string(const basic_tensor<T>& t);
/// Writes to_string(t).
template <class T>
std::ostream& operator<<(std::ostream& out, const basic_tensor<T>& t);

}  // namespace xgrad
