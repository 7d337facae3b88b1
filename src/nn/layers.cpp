#include "xgrad/nn/layers.hpp"

#include <cmath>

#include <xtensor/xbuilder.hpp>

#include "detail/check.hpp"
#include "xgrad/ops/activation.hpp"
#include "xgrad/ops/linalg.hpp"
#include "xgrad/ops/norm.hpp"
#include "xgrad/ops/shape.hpp"

namespace xgrad::nn {

Tensor activate(const Tensor& x, Activation a) {
    switch (a) {
        case Activation::none: return x;
        case Activation::relu: return relu(x);
        case Activation::leaky_relu: return leaky_relu(x);
        case Activation::sigmoid: return sigmoid(x);
        case Activation::tanh: return tanh(x);
        case Activation::softmax: return softmax(x);
    }
    return x;
}

std::string ActivationLayer::type_name() const {
    switch (activation_) {
        case Activation::none: return "Identity";
        case Activation::relu: return "ReLU";
        case Activation::leaky_relu: return "LeakyReLU";
        case Activation::sigmoid: return "Sigmoid";
        case Activation::tanh: return "Tanh";
        case Activation::softmax: return "Softmax";
    }
    return "Activation";
}

Dense::Dense(std::size_t in, std::size_t out, Activation activation, bool use_bias, Init init)
    : activation_(activation) {
    detail::check_value(in > 0 && out > 0, "Dense: in and out must be positive, got {} and {}", in, out);
    weight = add_parameter("weight", zeros({in, out}));
    initialize(weight, init);
    if (use_bias) bias = add_parameter("bias", zeros({out}));
}

Tensor Dense::forward(const Tensor& x) {
    return activate(bias.defined() ? linear(x, weight, bias) : linear(x, weight), activation_);
}

Conv2D::Conv2D(std::size_t in_channels, std::size_t filters, Size2 kernel, Conv2dOptions options,
               Activation activation, bool use_bias, Init init)
    : options_(options), activation_(activation) {
    detail::check_value(in_channels > 0 && filters > 0, "Conv2D: in_channels and filters must be positive, got {} and {}",
                        in_channels, filters);
    detail::check_value(kernel.h >= 1 && kernel.w >= 1, "Conv2D: kernel must be at least 1, got {}x{}", kernel.h,
                        kernel.w);
    detail::check_value(options.groups >= 1 && in_channels % static_cast<std::size_t>(options.groups) == 0 &&
                            filters % static_cast<std::size_t>(options.groups) == 0,
                        "Conv2D: groups {} must divide the input channels {} and the filters {}", options.groups,
                        in_channels, filters);
    weight = add_parameter("weight", zeros({static_cast<std::size_t>(kernel.h), static_cast<std::size_t>(kernel.w),
                                            in_channels / static_cast<std::size_t>(options.groups), filters}));
    initialize(weight, init);
    if (use_bias) bias = add_parameter("bias", zeros({filters}));
}

Tensor Conv2D::forward(const Tensor& x) {
    return activate(bias.defined() ? conv2d(x, weight, bias, options_) : conv2d(x, weight, options_), activation_);
}

Tensor MaxPool2D::forward(const Tensor& x) { return max_pool2d(x, options_); }
Tensor AvgPool2D::forward(const Tensor& x) { return avg_pool2d(x, options_); }
Tensor GlobalAvgPool2D::forward(const Tensor& x) { return global_avg_pool2d(x); }
Tensor Flatten::forward(const Tensor& x) { return flatten(x); }

BatchNorm::BatchNorm(std::size_t channels, double momentum, double eps) : momentum_(momentum), eps_(eps) {
    detail::check_value(channels > 0, "BatchNorm: channels must be positive, got {}", channels);
    detail::check_value(momentum >= 0 && momentum <= 1 && eps > 0 && std::isfinite(eps),
                        "BatchNorm: momentum must be in [0, 1] and eps positive, got {} and {}", momentum, eps);
    weight = add_parameter("weight", ones({channels}));
    bias = add_parameter("bias", zeros({channels}));
    running_mean = add_buffer("running_mean", zeros({channels}));
    running_var = add_buffer("running_var", ones({channels}));
}

Tensor BatchNorm::forward(const Tensor& x) {
    return batch_norm(x, weight, bias, running_mean, running_var, is_training(), momentum_, eps_);
}

Dropout::Dropout(double p) : p_(p) {
    detail::check_value(p >= 0 && p < 1, "Dropout: p must be in [0, 1), got {}", p);
}

Tensor Dropout::forward(const Tensor& x) { return dropout(x, p_, is_training()); }

}  // namespace xgrad::nn
