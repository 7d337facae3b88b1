#pragma once

#include <cstddef>
#include <optional>

#include "xgrad/nn/init.hpp"
#include "xgrad/nn/module.hpp"
#include "xgrad/ops/attention.hpp"
#include "xgrad/ops/conv.hpp"
#include "xgrad/ops/pool.hpp"

namespace xgrad::nn {

/// An activation applied by a layer after its own computation (as Keras layers do).
enum class Activation { none, relu, leaky_relu, sigmoid, tanh, softmax, gelu, silu, elu, softplus, hardswish, log_softmax };

/// Applies an activation (leaky_relu with slope 0.01, softmax and log_softmax over the last axis, gelu exact,
/// elu with α 1, softplus with β 1 and threshold 20: PyTorch's defaults).
template <class T>
basic_tensor<T> activate(const basic_tensor<T>& x, Activation a);

/// Fully connected: x [N, in] -> x·W + b [N, out] (any leading dimensions: [N, T, in] -> [N, T, out]);
/// W [in, out] ("weight"), b [out] ("bias").
/// Weights start He-uniform, biases at zero. Throws ShapeError on a wrong input width.
template <class T>
class basic_dense : public basic_module<T> {
public:
    using Tensor = basic_tensor<T>;

    basic_dense(std::size_t in, std::size_t out, Activation activation = Activation::none, bool bias = true,
                Init init = Init::he_uniform);
    Tensor forward(const Tensor& x) override;
    std::string type_name() const override { return "Dense"; }

    Tensor weight, bias;

private:
    Activation activation_;
};
using Dense = basic_dense<float>;
using Dense64 = basic_dense<double>;

/// 2-D convolution layer, NHWC: x [N, H, W, C_in] -> [N, OH, OW, filters], every conv2d
/// option (stride, dilation, padding, groups, input-gradient variant). W [KH, KW, C_in /
/// groups, filters] ("weight") starts He-uniform, b [filters] ("bias") at zero.
template <class T>
class basic_conv2d : public basic_module<T> {
public:
    using Tensor = basic_tensor<T>;

    basic_conv2d(std::size_t in_channels, std::size_t filters, Size2 kernel, Conv2dOptions options = {},
                 Activation activation = Activation::none, bool bias = true, Init init = Init::he_uniform);
    Tensor forward(const Tensor& x) override;
    /// The convolution and bias without the activation.
    Tensor forward_without_activation(const Tensor& x) const;
    /// relu(conv + b) max-pooled by `pool`, as one op (conv2d_relu_max_pool2d), whatever the
    /// layer's activation: what Sequential runs for this layer with Activation::relu followed by
    /// MaxPool2D.
    Tensor forward_relu_max_pool(const Tensor& x, const Pool2dOptions& pool) const;
    Activation activation() const { return activation_; }
    std::string type_name() const override { return "Conv2D"; }

    Tensor weight, bias;

private:
    Conv2dOptions options_;
    Activation activation_;
};
using Conv2D = basic_conv2d<float>;
using Conv2D64 = basic_conv2d<double>;

/// Transposed 2-D convolution layer (PyTorch's nn.ConvTranspose2d), NHWC: x [N, H, W, in_channels]
/// -> [N, OH, OW, out_channels], sizes as conv_transpose2d gives them (`{.stride = 2}` with a 2x2
/// kernel doubles H and W). W [KH, KW, out_channels / groups, in_channels] ("weight") starts
/// He-uniform over KH·KW·out_channels / groups (the fan-in PyTorch computes for it), b
/// [out_channels] ("bias") at zero. Throws ValueError for empty channels or kernel, or groups
/// not dividing both channel counts.
template <class T>
class basic_conv_transpose2d : public basic_module<T> {
public:
    using Tensor = basic_tensor<T>;

    basic_conv_transpose2d(std::size_t in_channels, std::size_t out_channels, Size2 kernel,
                           ConvTranspose2dOptions options = {}, Activation activation = Activation::none,
                           bool bias = true, Init init = Init::he_uniform);
    Tensor forward(const Tensor& x) override;
    std::string type_name() const override { return "ConvTranspose2D"; }

    Tensor weight, bias;

private:
    ConvTranspose2dOptions options_;
    Activation activation_;
};
using ConvTranspose2D = basic_conv_transpose2d<float>;
using ConvTranspose2D64 = basic_conv_transpose2d<double>;

/// max_pool2d as a layer.
template <class T>
class basic_max_pool2d : public basic_module<T> {
public:
    using Tensor = basic_tensor<T>;

    explicit basic_max_pool2d(Pool2dOptions options = {}) : options_(options) {}
    Tensor forward(const Tensor& x) override;
    const Pool2dOptions& options() const { return options_; }
    std::string type_name() const override { return "MaxPool2D"; }

private:
    Pool2dOptions options_;
};
using MaxPool2D = basic_max_pool2d<float>;
using MaxPool2D64 = basic_max_pool2d<double>;

/// avg_pool2d as a layer.
template <class T>
class basic_avg_pool2d : public basic_module<T> {
public:
    using Tensor = basic_tensor<T>;

    explicit basic_avg_pool2d(Pool2dOptions options = {}) : options_(options) {}
    Tensor forward(const Tensor& x) override;
    std::string type_name() const override { return "AvgPool2D"; }

private:
    Pool2dOptions options_;
};
using AvgPool2D = basic_avg_pool2d<float>;
using AvgPool2D64 = basic_avg_pool2d<double>;

/// adaptive_avg_pool2d as a layer.
template <class T>
class basic_adaptive_avg_pool2d : public basic_module<T> {
public:
    using Tensor = basic_tensor<T>;

    explicit basic_adaptive_avg_pool2d(Size2 output_size) : size_(output_size) {}
    Tensor forward(const Tensor& x) override { return adaptive_avg_pool2d(x, size_); }
    std::string type_name() const override { return "AdaptiveAvgPool2D"; }

private:
    Size2 size_;
};
using AdaptiveAvgPool2D = basic_adaptive_avg_pool2d<float>;
using AdaptiveAvgPool2D64 = basic_adaptive_avg_pool2d<double>;

/// upsample2d as a layer: `Upsample2D({.scale = 2, .mode = Interpolation::bilinear})`.
template <class T>
class basic_upsample2d : public basic_module<T> {
public:
    using Tensor = basic_tensor<T>;

    explicit basic_upsample2d(Upsample2dOptions options = {}) : options_(options) {}
    Tensor forward(const Tensor& x) override { return upsample2d(x, options_); }
    std::string type_name() const override { return "Upsample2D"; }

private:
    Upsample2dOptions options_;
};
using Upsample2D = basic_upsample2d<float>;
using Upsample2D64 = basic_upsample2d<double>;

/// [N, H, W, C] -> [N, C] means.
template <class T>
class basic_global_avg_pool2d : public basic_module<T> {
public:
    using Tensor = basic_tensor<T>;

    Tensor forward(const Tensor& x) override;
    std::string type_name() const override { return "GlobalAvgPool2D"; }
};
using GlobalAvgPool2D = basic_global_avg_pool2d<float>;
using GlobalAvgPool2D64 = basic_global_avg_pool2d<double>;

/// Batch normalisation over the last axis (PyTorch's semantics, eps 1e-5, momentum 0.1):
/// gamma ("weight") starts at 1, beta ("bias") at 0, buffers running_mean at 0 and
/// running_var at 1. Batch statistics in training mode, running ones in eval mode.
template <class T>
class basic_batch_norm : public basic_module<T> {
public:
    using Tensor = basic_tensor<T>;

    explicit basic_batch_norm(std::size_t channels, double momentum = 0.1, double eps = 1e-5);
    Tensor forward(const Tensor& x) override;
    std::string type_name() const override { return "BatchNorm"; }

    Tensor weight, bias, running_mean, running_var;

private:
    double momentum_, eps_;
};
using BatchNorm = basic_batch_norm<float>;
using BatchNorm64 = basic_batch_norm<double>;

/// layer_norm over the trailing dimensions `normalized_shape` (PyTorch's nn.LayerNorm):
/// "weight" (ones) and "bias" (zeros) of that shape when elementwise_affine. Throws
/// ValueError for an empty or zero-sized shape.
template <class T>
class basic_layer_norm : public basic_module<T> {
public:
    using Tensor = basic_tensor<T>;

    explicit basic_layer_norm(Shape normalized_shape, double eps = 1e-5, bool elementwise_affine = true);
    Tensor forward(const Tensor& x) override;
    std::string type_name() const override { return "LayerNorm"; }

    Tensor weight, bias;

private:
    Shape normalized_;
    double eps_;
};
using LayerNorm = basic_layer_norm<float>;
using LayerNorm64 = basic_layer_norm<double>;

/// group_norm as a layer (PyTorch's nn.GroupNorm, NHWC): num_groups groups of the last
/// axis's channels; "weight" (ones) and "bias" (zeros) [channels] when affine. The same in
/// training and eval mode (no running statistics). Throws ValueError unless num_groups divides
/// channels.
template <class T>
class basic_group_norm : public basic_module<T> {
public:
    using Tensor = basic_tensor<T>;

    basic_group_norm(std::size_t num_groups, std::size_t channels, double eps = 1e-5, bool affine = true);
    Tensor forward(const Tensor& x) override;
    std::string type_name() const override { return "GroupNorm"; }

    Tensor weight, bias;

private:
    std::size_t groups_;
    double eps_;
};
using GroupNorm = basic_group_norm<float>;
using GroupNorm64 = basic_group_norm<double>;

/// instance_norm as a layer (PyTorch's nn.InstanceNorm2d without running statistics, whose
/// default is also affine = false): each sample's channel normalised over its positions.
template <class T>
class basic_instance_norm : public basic_module<T> {
public:
    using Tensor = basic_tensor<T>;

    explicit basic_instance_norm(std::size_t channels, double eps = 1e-5, bool affine = false);
    Tensor forward(const Tensor& x) override;
    std::string type_name() const override { return "InstanceNorm"; }

    Tensor weight, bias;

private:
    std::size_t channels_;
    double eps_;
};
using InstanceNorm = basic_instance_norm<float>;
using InstanceNorm64 = basic_instance_norm<double>;

/// A lookup table (PyTorch's nn.Embedding): forward(indices) gives the rows of "weight"
/// [num_embeddings, dim] at the indices (a tensor of whole numbers of any shape, e.g. token ids
/// [N, T] -> [N, T, dim]). Weights start N(0, 1), as PyTorch's; row padding_idx starts at zero
/// and receives no gradient. Throws ValueError for an empty table or a padding_idx outside
/// [-num_embeddings, num_embeddings).
template <class T>
class basic_embedding : public basic_module<T> {
public:
    using Tensor = basic_tensor<T>;

    basic_embedding(std::size_t num_embeddings, std::size_t dim, std::optional<std::ptrdiff_t> padding_idx = {});
    Tensor forward(const Tensor& indices) override;
    std::string type_name() const override { return "Embedding"; }

    Tensor weight;

private:
    std::optional<std::ptrdiff_t> padding_idx_;
};
using Embedding = basic_embedding<float>;
using Embedding64 = basic_embedding<double>;

/// Multi-head attention (PyTorch's nn.MultiheadAttention with batch_first = true):
/// attend(query [N, L, E], key [N, S, E], value [N, S, E]) -> [N, L, E]; forward(x) is
/// self-attention, attend(x, x, x). The inputs are projected by "in_proj_weight" [E, 3E] and
/// "in_proj_bias" [3E] (PyTorch's [3E, E] in_proj_weight transposed, as Dense weights are: q,
/// k, v in that order), split into num_heads heads of E / num_heads, combined by
/// scaled_dot_product_attention and projected by the child Dense "out_proj" ("out_proj.weight",
/// "out_proj.bias"). Weights start Glorot-uniform, biases at zero. `causal` masks later keys in
/// every call; attend() also takes a boolean mask (true = may attend) broadcasting to
/// [N, heads, L, S], e.g. a key padding mask [N, 1, 1, S]. Throws ValueError unless num_heads
/// divides embed_dim, ShapeError for inputs that are not [N, ·, E].
template <class T>
class basic_multihead_attention : public basic_module<T> {
public:
    using Tensor = basic_tensor<T>;

    basic_multihead_attention(std::size_t embed_dim, std::size_t num_heads, bool causal = false, double dropout = 0.0,
                              bool bias = true);
    Tensor forward(const Tensor& x) override;
    Tensor attend(const Tensor& query, const Tensor& key, const Tensor& value);
    Tensor attend(const Tensor& query, const Tensor& key, const Tensor& value, const xt::xarray<bool>& mask);
    std::string type_name() const override { return "MultiheadAttention"; }

    Tensor in_proj_weight, in_proj_bias;
    std::shared_ptr<basic_dense<T>> out_proj;

private:
    Tensor attend_impl(const Tensor& query, const Tensor& key, const Tensor& value, const xt::xarray<bool>* mask);

    std::size_t embed_dim_, heads_;
    bool causal_;
    double dropout_;
};
using MultiheadAttention = basic_multihead_attention<float>;
using MultiheadAttention64 = basic_multihead_attention<double>;

/// Options of a TransformerEncoderLayer, PyTorch's defaults.
struct TransformerEncoderOptions {
    std::size_t dim_feedforward = 2048;
    double dropout = 0.1;
    /// Of the feed-forward block's first layer.
    Activation activation = Activation::relu;
    double layer_norm_eps = 1e-5;
    /// Pre-norm (x + block(norm(x))) rather than PyTorch's default post-norm (norm(x + block(x))).
    bool norm_first = false;
    /// Each position attends to itself and earlier ones only (a language model's encoder).
    bool causal = false;
};

/// One Transformer encoder layer (PyTorch's nn.TransformerEncoderLayer, batch_first = true):
/// x [N, T, E] -> [N, T, E] through self-attention and a feed-forward block (Dense E ->
/// dim_feedforward -> E), each with dropout, a residual connection and LayerNorm. Children
/// "self_attn", "linear1", "linear2", "norm1", "norm2" as PyTorch names them.
template <class T>
class basic_transformer_encoder_layer : public basic_module<T> {
public:
    using Tensor = basic_tensor<T>;

    basic_transformer_encoder_layer(std::size_t d_model, std::size_t num_heads, TransformerEncoderOptions options = {});
    Tensor forward(const Tensor& x) override;
    std::string type_name() const override { return "TransformerEncoderLayer"; }

    std::shared_ptr<basic_multihead_attention<T>> self_attn;
    std::shared_ptr<basic_dense<T>> linear1, linear2;
    std::shared_ptr<basic_layer_norm<T>> norm1, norm2;

private:
    Tensor feed_forward(const Tensor& x);

    TransformerEncoderOptions options_;
};
using TransformerEncoderLayer = basic_transformer_encoder_layer<float>;
using TransformerEncoderLayer64 = basic_transformer_encoder_layer<double>;

/// Inverted dropout in training mode, the identity in eval mode. Throws ValueError unless
/// 0 <= p < 1.
template <class T>
class basic_dropout : public basic_module<T> {
public:
    using Tensor = basic_tensor<T>;

    explicit basic_dropout(double p = 0.5);
    Tensor forward(const Tensor& x) override;
    std::string type_name() const override { return "Dropout"; }

private:
    double p_;
};
using Dropout = basic_dropout<float>;
using Dropout64 = basic_dropout<double>;

/// [N, ...] -> [N, product of the rest].
template <class T>
class basic_flatten : public basic_module<T> {
public:
    using Tensor = basic_tensor<T>;

    Tensor forward(const Tensor& x) override;
    std::string type_name() const override { return "Flatten"; }
};
using Flatten = basic_flatten<float>;
using Flatten64 = basic_flatten<double>;

/// An activation as a layer: ReLU(), Softmax() and so on.
template <class T>
class basic_activation_layer : public basic_module<T> {
public:
    using Tensor = basic_tensor<T>;

    explicit basic_activation_layer(Activation a) : activation_(a) {}
    Tensor forward(const Tensor& x) override { return activate<T>(x, activation_); }
    std::string type_name() const override;

private:
    Activation activation_;
};
using ActivationLayer = basic_activation_layer<float>;
using ActivationLayer64 = basic_activation_layer<double>;

template <class T = float>
basic_activation_layer<T> ReLU() { return basic_activation_layer<T>(Activation::relu); }
template <class T = float>
basic_activation_layer<T> LeakyReLU() { return basic_activation_layer<T>(Activation::leaky_relu); }
template <class T = float>
basic_activation_layer<T> Sigmoid() { return basic_activation_layer<T>(Activation::sigmoid); }
template <class T = float>
basic_activation_layer<T> Tanh() { return basic_activation_layer<T>(Activation::tanh); }
template <class T = float>
basic_activation_layer<T> Softmax() { return basic_activation_layer<T>(Activation::softmax); }
/// log(softmax(x)) over the last axis: the output that Loss::nll / nll_loss expect.
template <class T = float>
basic_activation_layer<T> LogSoftmax() { return basic_activation_layer<T>(Activation::log_softmax); }
template <class T = float>
basic_activation_layer<T> GELU() { return basic_activation_layer<T>(Activation::gelu); }
template <class T = float>
basic_activation_layer<T> SiLU() { return basic_activation_layer<T>(Activation::silu); }
template <class T = float>
basic_activation_layer<T> ELU() { return basic_activation_layer<T>(Activation::elu); }
template <class T = float>
basic_activation_layer<T> Softplus() { return basic_activation_layer<T>(Activation::softplus); }
template <class T = float>
basic_activation_layer<T> Hardswish() { return basic_activation_layer<T>(Activation::hardswish); }

}  // namespace xgrad::nn
