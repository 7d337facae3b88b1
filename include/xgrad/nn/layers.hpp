#pragma once

#include <cstddef>

#include "xgrad/nn/init.hpp"
#include "xgrad/nn/module.hpp"
#include "xgrad/ops/conv.hpp"
#include "xgrad/ops/pool.hpp"

namespace xgrad::nn {

/// An activation applied by a layer after its own computation (as Keras layers do).
enum class Activation { none, relu, leaky_relu, sigmoid, tanh, softmax };

/// Applies an activation (leaky_relu with slope 0.01, softmax over the last axis).
Tensor activate(const Tensor& x, Activation a);

/// Fully connected: x [N, in] -> x·W + b [N, out]; W [in, out] ("weight"), b [out] ("bias").
/// Weights start He-uniform, biases at zero. Throws ShapeError on a wrong input width.
class Dense : public Module {
public:
    Dense(std::size_t in, std::size_t out, Activation activation = Activation::none, bool bias = true,
          Init init = Init::he_uniform);
    Tensor forward(const Tensor& x) override;
    std::string type_name() const override { return "Dense"; }

    Tensor weight, bias;

private:
    Activation activation_;
};

/// 2-D convolution layer, NHWC: x [N, H, W, C_in] -> [N, OH, OW, filters], every conv2d
/// option (stride, dilation, padding, groups, input-gradient variant). W [KH, KW, C_in /
/// groups, filters] ("weight") starts He-uniform, b [filters] ("bias") at zero.
class Conv2D : public Module {
public:
    Conv2D(std::size_t in_channels, std::size_t filters, Size2 kernel, Conv2dOptions options = {},
           Activation activation = Activation::none, bool bias = true, Init init = Init::he_uniform);
    Tensor forward(const Tensor& x) override;
    std::string type_name() const override { return "Conv2D"; }

    Tensor weight, bias;

private:
    Conv2dOptions options_;
    Activation activation_;
};

/// max_pool2d as a layer.
class MaxPool2D : public Module {
public:
    explicit MaxPool2D(Pool2dOptions options = {}) : options_(options) {}
    Tensor forward(const Tensor& x) override;
    std::string type_name() const override { return "MaxPool2D"; }

private:
    Pool2dOptions options_;
};

/// avg_pool2d as a layer.
class AvgPool2D : public Module {
public:
    explicit AvgPool2D(Pool2dOptions options = {}) : options_(options) {}
    Tensor forward(const Tensor& x) override;
    std::string type_name() const override { return "AvgPool2D"; }

private:
    Pool2dOptions options_;
};

/// [N, H, W, C] -> [N, C] means.
class GlobalAvgPool2D : public Module {
public:
    Tensor forward(const Tensor& x) override;
    std::string type_name() const override { return "GlobalAvgPool2D"; }
};

/// Batch normalisation over the last axis (PyTorch's semantics, eps 1e-5, momentum 0.1):
/// gamma ("weight") starts at 1, beta ("bias") at 0, buffers running_mean at 0 and
/// running_var at 1. Batch statistics in training mode, running ones in eval mode.
class BatchNorm : public Module {
public:
    explicit BatchNorm(std::size_t channels, double momentum = 0.1, double eps = 1e-5);
    Tensor forward(const Tensor& x) override;
    std::string type_name() const override { return "BatchNorm"; }

    Tensor weight, bias, running_mean, running_var;

private:
    double momentum_, eps_;
};

/// Inverted dropout in training mode, the identity in eval mode. Throws ValueError unless
/// 0 <= p < 1.
class Dropout : public Module {
public:
    explicit Dropout(double p = 0.5);
    Tensor forward(const Tensor& x) override;
    std::string type_name() const override { return "Dropout"; }

private:
    double p_;
};

/// [N, ...] -> [N, product of the rest].
class Flatten : public Module {
public:
    Tensor forward(const Tensor& x) override;
    std::string type_name() const override { return "Flatten"; }
};

/// An activation as a layer: ReLU(), Softmax() and so on.
class ActivationLayer : public Module {
public:
    explicit ActivationLayer(Activation a) : activation_(a) {}
    Tensor forward(const Tensor& x) override { return activate(x, activation_); }
    std::string type_name() const override;

private:
    Activation activation_;
};

inline ActivationLayer ReLU() { return ActivationLayer(Activation::relu); }
inline ActivationLayer LeakyReLU() { return ActivationLayer(Activation::leaky_relu); }
inline ActivationLayer Sigmoid() { return ActivationLayer(Activation::sigmoid); }
inline ActivationLayer Tanh() { return ActivationLayer(Activation::tanh); }
inline ActivationLayer Softmax() { return ActivationLayer(Activation::softmax); }

}  // namespace xgrad::nn
