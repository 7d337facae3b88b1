#pragma once

// The W1 CNN of ../shared/anchors.md as a Module, shared by the examples that train it:
//   Conv2D(32, 3x3, same) + ReLU -> MaxPool 2 -> Conv2D(64, 3x3, same) + ReLU -> MaxPool 2
//   -> Flatten -> Dense(128) + ReLU -> Dense(10).

#include "xgrad/xgrad.hpp"

struct Net : xgrad::nn::Module {
    using Conv2D = xgrad::nn::Conv2D;
    using Dense = xgrad::nn::Dense;
    static constexpr auto relu = xgrad::nn::Activation::relu;
    const xgrad::Conv2dOptions same{.padding = xgrad::Padding::same};
    // Each convolution, its relu and its pool run as one op (conv2d_relu_max_pool2d: the pool
    // taken while the convolution's lines are in cache), the same numbers as the three.
    std::shared_ptr<Conv2D> conv1 = add_module("conv1", Conv2D(1, 32, 3, same));
    std::shared_ptr<Conv2D> conv2 = add_module("conv2", Conv2D(32, 64, 3, same));
    std::shared_ptr<Dense> fc1 = add_module("fc1", Dense(7 * 7 * 64, 128, relu));
    std::shared_ptr<Dense> fc2 = add_module("fc2", Dense(128, 10));

    xgrad::Tensor forward(const xgrad::Tensor& x) override {
        auto h = conv1->forward_relu_max_pool(x, {.kernel = 2});  // [N, 14, 14, 32]
        h = conv2->forward_relu_max_pool(h, {.kernel = 2});       // [N, 7, 7, 64]
        return (*fc2)((*fc1)(xgrad::flatten(h)));                      // logits [N, 10]
    }
};
