#pragma once
// The model behind the checkpoint fuzz target and its seed corpus (make_checkpoint_seeds):
// dense and conv layers and batch norm buffers, small enough for 1 KB checkpoints.

#include "xgrad/xgrad.hpp"

namespace xgrad_fuzz {

struct Net : xgrad::nn::Module {
    std::shared_ptr<xgrad::nn::Conv2D> conv = add_module("conv", xgrad::nn::Conv2D(1, 2, 3));
    std::shared_ptr<xgrad::nn::BatchNorm> norm = add_module("norm", xgrad::nn::BatchNorm(2));
    std::shared_ptr<xgrad::nn::Dense> dense = add_module("dense", xgrad::nn::Dense(8, 3));
    xgrad::Tensor forward(const xgrad::Tensor& x) override {
        return (*dense)(xgrad::flatten((*norm)((*conv)(x))));
    }
};

}  // namespace xgrad_fuzz
