#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "xgrad/io/npz.hpp"
#include "xgrad/tensor.hpp"

namespace xgrad::nn {

/// A tensor with its module path, e.g. "conv1.weight" or "0.bias".
template <class T>
using basic_named_tensor = std::pair<std::string, basic_tensor<T>>;
using NamedTensor = basic_named_tensor<float>;

/// Base of every layer and model. A module owns parameters (trained), buffers (state that is
/// saved but not trained, such as batch-norm statistics) and child modules, all named. Its
/// precision is T: `Module` (float) trains in float32, `Module64` in float64, and every layer
/// exists in both (`Dense`, `Dense64`, ...); the optimizers, schedulers, checkpoints and data
/// loaders take either.
///
/// ```
/// struct Net : xgrad::nn::Module {
///     std::shared_ptr<xgrad::nn::Dense> fc1 = add_module("fc1", xgrad::nn::Dense(4, 8, Activation::relu));
///     std::shared_ptr<xgrad::nn::Dense> fc2 = add_module("fc2", xgrad::nn::Dense(8, 1));
///     xgrad::Tensor forward(const xgrad::Tensor& x) override { return (*fc2)((*fc1)(x)); }
/// };
/// ```
template <class T>
class basic_module {
public:
    using value_type = T;
    using Tensor = basic_tensor<T>;
    using NamedTensor = basic_named_tensor<T>;

    basic_module() = default;
    virtual ~basic_module() = default;
    basic_module(const basic_module&) = delete;
    basic_module& operator=(const basic_module&) = delete;
    basic_module(basic_module&&) = default;
    basic_module& operator=(basic_module&&) = default;

    /// The module's computation on a batch.
    virtual Tensor forward(const Tensor& x) = 0;
    Tensor operator()(const Tensor& x) { return forward(x); }

    /// The layer's type ("Conv2D"), for summaries and messages.
    virtual std::string type_name() const { return "Module"; }

    /// Every parameter of this module and its children, depth first, named by module path.
    std::vector<NamedTensor> named_parameters() const;
    std::vector<Tensor> parameters() const;
    /// Every buffer (saved, not trained), named by module path.
    std::vector<NamedTensor> named_buffers() const;
    /// Parameters then buffers: everything save() writes.
    std::vector<NamedTensor> state() const;
    /// A table of the module tree, depth first: each module's path and type, its own
    /// parameters with their shapes, and their count; then the totals (a tensor shared by
    /// two layers counted once) and the buffers' size. Prints it to stdout unless `print` is
    /// false; returns it. (`Sequential` with an input shape adds each layer's output shape.)
    virtual std::string summary(bool print = true) const;
    /// Direct children, in registration order.
    const std::vector<std::pair<std::string, std::shared_ptr<basic_module>>>& children() const { return children_; }

    /// Training mode (batch statistics, dropout on) for this module and its children.
    void train(bool on = true);
    /// Evaluation mode: train(false).
    void eval() { train(false); }
    bool is_training() const { return training_; }

    /// Sets every parameter's existing gradient to zero.
    void zero_grad();

    /// Writes parameters and buffers to an .npz file (one array of T per module path;
    /// numpy.load opens it), atomically: the old file stays intact until the new one is
    /// complete. Throws IoError.
    void save(const std::string& path) const;
    /// Reads what save() wrote into this module's tensors. Throws IoError when the file is
    /// unreadable, misses a tensor, holds one of another shape, or holds a tensor this module
    /// does not have (strict, as PyTorch's default); the module is unchanged then.
    void load(const std::string& path);
    /// Sets every tensor of state() from `arrays["<prefix><name>"]`, all or nothing; `source`
    /// names the origin in errors. Entries outside `prefix` are ignored; every entry inside it
    /// must be a tensor of this module. Throws IoError as load().
    void load_state(const std::vector<std::pair<std::string, io::NpyArray>>& arrays, const std::string& prefix,
                    const std::string& source);

protected:
    /// Registers a trained tensor; it is made to require grad. Returns it (a handle to the same
    /// tensor, to keep as a member).
    Tensor add_parameter(std::string name, Tensor t);
    /// Registers a saved, untrained tensor and returns it.
    Tensor add_buffer(std::string name, Tensor t);
    /// Registers a child (given by value or as a shared_ptr) and returns it.
    template <class M>
    std::shared_ptr<M> add_module(std::string name, M module) {
        auto p = std::make_shared<M>(std::move(module));
        add_child(std::move(name), p);
        return p;
    }
    template <class M>
    std::shared_ptr<M> add_module(std::string name, std::shared_ptr<M> module) {
        add_child(std::move(name), module);
        return module;
    }

private:
    void add_child(std::string name, std::shared_ptr<basic_module> child);
    void collect(const std::string& prefix, bool parameters, std::vector<NamedTensor>& out) const;
    void summary_rows(const std::string& path, std::string& out) const;

    std::vector<NamedTensor> parameters_;
    std::vector<NamedTensor> buffers_;
    std::vector<std::pair<std::string, std::shared_ptr<basic_module>>> children_;
    bool training_ = true;
};

using Module = basic_module<float>;
using Module64 = basic_module<double>;

}  // namespace xgrad::nn
