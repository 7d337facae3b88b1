#pragma once

#include <cstddef>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "xgrad/tensor.hpp"

namespace xgrad {

/// Every op the library records on the tape. Each one has gradcheck cases
/// (a test fails for a kind without any).
enum class OpKind {
    add, sub, mul, div, neg, exp, log, sqrt, pow, square, abs,
    sum, mean, max,
    reshape, permute, concat,
    matmul, linear,
    relu, leaky_relu, sigmoid, tanh, softmax, log_softmax,
    conv2d, max_pool2d, avg_pool2d,
    batch_norm, dropout,
    cross_entropy, mse_loss, binary_cross_entropy,
    // The kernels of first-order rules, ops themselves so that second derivatives pass
    // through them (each has its own rule and gradcheck cases).
    broadcast_to, slice, relu_backward,
    conv2d_input_grad, conv2d_weight_grad,
    max_pool2d_backward, max_pool2d_gather, avg_pool2d_backward,
    // Fused ops: one pass where two ops would make two (the same numbers as the pair).
    conv2d_relu, linear_relu, relu_max_pool2d, conv2d_relu_max_pool2d,
    erf, gelu, gelu_tanh, silu, elu, softplus, hardswish,
    maximum, minimum, clamp, where,
    layer_norm, group_norm,
    index_select, index_add, embedding, gather, scatter_add,
    count_
};

/// "max_pool2d": the name an op kind has in messages and in the gradcheck list.
std::string_view op_name(OpKind kind);

/// What a backward rule receives beside dL/dy: which inputs need a gradient, a place to add
/// each input's gradient, and the op's output.
template <class T>
class Grads {
public:
    /// Internal: built by the backward pass for one entry.
    Grads(std::string_view op, std::vector<Shape> shapes, std::vector<bool> needs, basic_tensor<T> output,
          bool create_graph)
        : op_(op), shapes_(std::move(shapes)), needs_(std::move(needs)), sums_(needs_.size()), at_(needs_.size()),
          output_(std::move(output)), create_graph_(create_graph) {}

    /// True when input i needs a gradient; a rule skips the others.
    bool needs(std::size_t i) const { return needs_[i]; }
    std::size_t size() const { return needs_.size(); }
    /// Adds g = dL/dx_i (shaped like input i) to input i's gradient; the backward pass sums
    /// what every rule adds for a tensor. g must be computed with the library's ops (or ops of
    /// your own recorded with record()): with create_graph those record themselves, so g
    /// carries its own graph and can be differentiated again. Ignored when input i needs no
    /// gradient. Throws ShapeError naming the op when g's shape is not the input's.
    void add(std::size_t i, basic_tensor<T> g);
    /// Adds g as the gradient of a slice of input i: elements start, start + 1, ... along
    /// `axis` (g is shaped like input i but for that axis), zero elsewhere. The same as
    /// add(i, g padded with zeros), but without create_graph the backward pass adds g into
    /// input i's gradient in place, so that many slices of one tensor (an RNN's time steps)
    /// cost their own sizes, not the whole tensor's each. Throws ShapeError naming the op
    /// when g does not fit.
    void add_slice(std::size_t i, std::size_t axis, std::size_t start, basic_tensor<T> g);

    /// Internal: where sum(i) sits in input i when it is the gradient of a slice (add_slice).
    struct SliceAt {
        std::size_t axis, start;
    };
    const std::optional<SliceAt>& slice_at(std::size_t i) const { return at_[i]; }
    /// The op's output y. Rules read it from here: a rule that captured the output tensor would
    /// keep its own graph alive forever.
    const basic_tensor<T>& output() const { return output_; }

    /// Internal: the sum of what the rule added for input i (undefined when nothing was).
    basic_tensor<T>& sum(std::size_t i) { return sums_[i]; }

private:
    std::string_view op_;
    std::vector<Shape> shapes_;
    std::vector<bool> needs_;
    std::vector<basic_tensor<T>> sums_;
    std::vector<std::optional<SliceAt>> at_;  // set while sums_[i] is a slice's gradient alone
    basic_tensor<T> output_;
    bool create_graph_;
};

/// A backward rule: given gy = dL/dy (a tensor shaped like y), add each input's dL/dx with
/// grads.add(i, ...), computed with tensor ops. The same rule serves first-order backward
/// (the ops then run without recording: plain arrays, no graph) and create_graph (they
/// record, so the gradient can be differentiated again): one rule per op, any order.
template <class T>
using BackwardFn = std::function<void(const basic_tensor<T>& gy, Grads<T>& grads)>;

/// Records `out = op(inputs)` on this thread's tape with its backward rule, when grad mode
/// is on and some input requires a gradient (then `out` requires one too); otherwise does
/// nothing. `out` must be a fresh leaf holding the forward result. This is how the library
/// writes its ops and how users write their own:
///
/// ```
/// Tensor64 swish(const Tensor64& x) {
///     const auto s = xgrad::sigmoid(x);
///     Tensor64 out(xt::xarray<double>(x.value() * s.value()));
///     xgrad::record("swish", {x}, out, [x](const Tensor64& gy, auto& grads) {
///         const auto s = xgrad::sigmoid(x);  // in tensor ops: differentiable again
///         grads.add(0, gy * s * (1.0 + x * (1.0 - s)));
///     });
///     return out;
/// }
/// ```
///
/// Rules compute with tensor ops, skip inputs that need no gradient, and capture inputs
/// (cheap handles) but never the output. A gradient computed from raw arrays is a constant
/// to the graph: first-order backward is right, but a second derivative through it is not
/// (gradgradcheck catches it). backward() checks that every gradient keeps its input's shape
/// and throws ShapeError naming the op when one does not. Throws
/// ValueError when `out` was already recorded or is one of the inputs (a cycle). The record
/// order is process-wide, so a graph may be built on several threads.
template <class T>
void record(std::string op, std::initializer_list<basic_tensor<T>> inputs, basic_tensor<T>& out,
            std::type_identity_t<BackwardFn<T>> backward);
template <class T>
void record(std::string op, const std::vector<basic_tensor<T>>& inputs, basic_tensor<T>& out,
            std::type_identity_t<BackwardFn<T>> backward);
template <class T>
void record(OpKind op, std::initializer_list<basic_tensor<T>> inputs, basic_tensor<T>& out,
            std::type_identity_t<BackwardFn<T>> backward) {
    record(std::string(op_name(op)), inputs, out, std::move(backward));
}
template <class T>
void record(OpKind op, const std::vector<basic_tensor<T>>& inputs, basic_tensor<T>& out,
            std::type_identity_t<BackwardFn<T>> backward) {
    record(std::string(op_name(op)), inputs, out, std::move(backward));
}

/// Options of grad(), as torch.autograd.grad's.
template <class T>
struct GradOptions {
    /// dL/d(output i), each shaped like its output; empty means ones (scalar outputs only).
    /// With create_graph they may require grad themselves (a vector-Jacobian product that is
    /// differentiated with respect to the vector).
    std::vector<basic_tensor<T>> grad_outputs{};
    /// Record the backward pass, so that the gradients carry a graph and can be
    /// differentiated again, to any order (implies retain_graph).
    bool create_graph = false;
    /// Keep the graph for another backward() or grad() (freed otherwise).
    bool retain_graph = false;
    /// An input the outputs do not depend on gets an undefined tensor instead of an error.
    bool allow_unused = false;
};

/// The gradients of the outputs (summed, each weighted by its grad_output) with respect to
/// each input, as new tensors; no tensor's grad() changes. Inputs may be leaves or
/// intermediate tensors of the graph. Throws ValueError for an input that does not require
/// grad or is unused (without allow_unused), a non-scalar output without grad_outputs, or a
/// freed graph; ShapeError for a grad_output of the wrong shape.
///
/// ```
/// auto g = xgrad::grad(loss, {x, w});   // g[0] = dloss/dx, g[1] = dloss/dw
/// // d/dx of |du/dx|^2 (a gradient penalty, a PDE residual): differentiate a gradient
/// auto du = xgrad::grad(u, {x}, {.grad_outputs = {xgrad::ones<double>(u.shape())}, .create_graph = true});
/// auto penalty = xgrad::sum(du[0] * du[0]);
/// penalty.backward();
/// ```
template <class T>
std::vector<basic_tensor<T>> grad(const std::vector<basic_tensor<T>>& outputs,
                                  const std::vector<basic_tensor<T>>& inputs, const GradOptions<T>& options = {});
/// The same for one output.
template <class T>
std::vector<basic_tensor<T>> grad(const basic_tensor<T>& output,
                                  const std::vector<std::type_identity_t<basic_tensor<T>>>& inputs,
                                  const GradOptions<std::type_identity_t<T>>& options = {});

/// The graph that produced `root`, as Graphviz dot text: one box per recorded op (its name),
/// one ellipse per tensor (its shape; leaves that require grad are marked as parameters),
/// edges from inputs to ops to outputs. `dot -Tpng` renders it.
template <class T>
std::string to_dot(const basic_tensor<T>& root);

/// True when ops record themselves on this thread's tape (the default).
bool grad_enabled();

/// Anomaly mode (off by default, process-wide): every op checks its output, and backward()
/// every gradient it computes, for NaN and Inf; the first op that produces one throws
/// ValueError naming the op, forward or backward, and the shapes. Costs one pass over each
/// output and gradient.
void detect_anomaly(bool on);
bool anomaly_detection();

/// Turns anomaly mode on (or off) while it lives and restores the previous setting, also when
/// an exception leaves the scope: `{ xgrad::AnomalyGuard on; loss.backward(); }`. The mode is
/// process-wide, so guards on several threads at once see each other's setting.
class AnomalyGuard {
public:
    explicit AnomalyGuard(bool on = true) : previous_(anomaly_detection()) { detect_anomaly(on); }
    ~AnomalyGuard() { detect_anomaly(previous_); }
    AnomalyGuard(const AnomalyGuard&) = delete;
    AnomalyGuard& operator=(const AnomalyGuard&) = delete;

private:
    bool previous_;
};

/// Turns recording off on this thread while it lives (evaluation, optimizer steps).
class NoGradGuard {
public:
    NoGradGuard();
    ~NoGradGuard();
    NoGradGuard(const NoGradGuard&) = delete;
    NoGradGuard& operator=(const NoGradGuard&) = delete;

private:
    bool previous_;
};

/// Turns recording on while it lives, even inside a NoGradGuard (used by gradcheck).
class EnableGradGuard {
public:
    EnableGradGuard();
    ~EnableGradGuard();
    EnableGradGuard(const EnableGradGuard&) = delete;
    EnableGradGuard& operator=(const EnableGradGuard&) = delete;

private:
    bool previous_;
};

}  // namespace xgrad
