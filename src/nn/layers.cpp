#include "xgrad/nn/layers.hpp"

#include <cmath>

#include <xtensor/xbuilder.hpp>

#include "detail/axes.hpp"
#include "detail/check.hpp"
#include "xgrad/ops/activation.hpp"
#include "xgrad/ops/conv.hpp"
#include "xgrad/ops/elementwise.hpp"
#include "xgrad/ops/index.hpp"
#include "xgrad/ops/linalg.hpp"
#include "xgrad/ops/norm.hpp"
#include "xgrad/ops/shape.hpp"

namespace xgrad::nn {

template <class T>
basic_tensor<T> activate(const basic_tensor<T>& x, Activation a) {
    switch (a) {
        case Activation::none: return x;
        case Activation::relu: return relu(x);
        case Activation::leaky_relu: return leaky_relu(x);
        case Activation::sigmoid: return sigmoid(x);
        case Activation::tanh: return tanh(x);
        case Activation::softmax: return softmax(x);
        case Activation::gelu: return gelu(x);
        case Activation::silu: return silu(x);
        case Activation::elu: return elu(x);
        case Activation::softplus: return softplus(x);
        case Activation::hardswish: return hardswish(x);
        case Activation::log_softmax: return log_softmax(x);
    }
    return x;
}

template <class T>
std::string basic_activation_layer<T>::type_name() const {
    switch (activation_) {
        case Activation::none: return "Identity";
        case Activation::relu: return "ReLU";
        case Activation::leaky_relu: return "LeakyReLU";
        case Activation::sigmoid: return "Sigmoid";
        case Activation::tanh: return "Tanh";
        case Activation::softmax: return "Softmax";
        case Activation::gelu: return "GELU";
        case Activation::silu: return "SiLU";
        case Activation::elu: return "ELU";
        case Activation::softplus: return "Softplus";
        case Activation::hardswish: return "Hardswish";
        case Activation::log_softmax: return "LogSoftmax";
    }
    return "Activation";
}

template <class T>
basic_dense<T>::basic_dense(std::size_t in, std::size_t out, Activation activation, bool use_bias, Init init)
    : activation_(activation) {
    detail::check_value(in > 0 && out > 0, "Dense: in and out must be positive, got {} and {}", in, out);
    weight = this->add_parameter("weight", zeros<T>({in, out}));
    initialize(weight, init);
    if (use_bias) bias = this->add_parameter("bias", zeros<T>({out}));
}

template <class T>
basic_tensor<T> basic_dense<T>::forward(const Tensor& x) {
    if (activation_ == Activation::relu)  // one fused op
        return bias.defined() ? linear_relu(x, weight, bias) : linear_relu(x, weight);
    return activate(bias.defined() ? linear(x, weight, bias) : linear(x, weight), activation_);
}

template <class T>
basic_conv2d<T>::basic_conv2d(std::size_t in_channels, std::size_t filters, Size2 kernel, Conv2dOptions options,
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
    weight = this->add_parameter("weight", zeros<T>({static_cast<std::size_t>(kernel.h),
                                                     static_cast<std::size_t>(kernel.w),
                                                     in_channels / static_cast<std::size_t>(options.groups), filters}));
    initialize(weight, init);
    if (use_bias) bias = this->add_parameter("bias", zeros<T>({filters}));
}

template <class T>
basic_tensor<T> basic_conv2d<T>::forward(const Tensor& x) {
    if (activation_ == Activation::relu)  // one fused op
        return bias.defined() ? conv2d_relu(x, weight, bias, options_) : conv2d_relu(x, weight, options_);
    return activate(forward_without_activation(x), activation_);
}

template <class T>
basic_tensor<T> basic_conv2d<T>::forward_without_activation(const Tensor& x) const {
    return bias.defined() ? conv2d(x, weight, bias, options_) : conv2d(x, weight, options_);
}

template <class T>
basic_tensor<T> basic_conv2d<T>::forward_relu_max_pool(const Tensor& x, const Pool2dOptions& pool) const {
    return bias.defined() ? conv2d_relu_max_pool2d(x, weight, bias, options_, pool)
                          : conv2d_relu_max_pool2d(x, weight, options_, pool);
}

template <class T>
basic_conv_transpose2d<T>::basic_conv_transpose2d(std::size_t in_channels, std::size_t out_channels, Size2 kernel,
                                                  ConvTranspose2dOptions options, Activation activation,
                                                  bool use_bias, Init init)
    : options_(options), activation_(activation) {
    detail::check_value(in_channels > 0 && out_channels > 0,
                        "ConvTranspose2D: in_channels and out_channels must be positive, got {} and {}", in_channels,
                        out_channels);
    detail::check_value(kernel.h >= 1 && kernel.w >= 1, "ConvTranspose2D: kernel must be at least 1, got {}x{}",
                        kernel.h, kernel.w);
    detail::check_value(options.groups >= 1 && in_channels % static_cast<std::size_t>(options.groups) == 0 &&
                            out_channels % static_cast<std::size_t>(options.groups) == 0,
                        "ConvTranspose2D: groups {} must divide the input channels {} and the output channels {}",
                        options.groups, in_channels, out_channels);
    weight = this->add_parameter(
        "weight", zeros<T>({static_cast<std::size_t>(kernel.h), static_cast<std::size_t>(kernel.w),
                            out_channels / static_cast<std::size_t>(options.groups), in_channels}));
    initialize(weight, init);
    if (use_bias) bias = this->add_parameter("bias", zeros<T>({out_channels}));
}

template <class T>
basic_tensor<T> basic_conv_transpose2d<T>::forward(const Tensor& x) {
    return activate(bias.defined() ? conv_transpose2d(x, weight, bias, options_) : conv_transpose2d(x, weight, options_),
                    activation_);
}

template <class T>
basic_tensor<T> basic_max_pool2d<T>::forward(const Tensor& x) { return max_pool2d(x, options_); }
template <class T>
basic_tensor<T> basic_avg_pool2d<T>::forward(const Tensor& x) { return avg_pool2d(x, options_); }
template <class T>
basic_tensor<T> basic_global_avg_pool2d<T>::forward(const Tensor& x) { return global_avg_pool2d(x); }
template <class T>
basic_tensor<T> basic_flatten<T>::forward(const Tensor& x) { return flatten(x); }

template <class T>
basic_batch_norm<T>::basic_batch_norm(std::size_t channels, double momentum, double eps)
    : momentum_(momentum), eps_(eps) {
    detail::check_value(channels > 0, "BatchNorm: channels must be positive, got {}", channels);
    detail::check_value(momentum >= 0 && momentum <= 1 && eps > 0 && std::isfinite(eps),
                        "BatchNorm: momentum must be in [0, 1] and eps positive, got {} and {}", momentum, eps);
    weight = this->add_parameter("weight", ones<T>({channels}));
    bias = this->add_parameter("bias", zeros<T>({channels}));
    running_mean = this->add_buffer("running_mean", zeros<T>({channels}));
    running_var = this->add_buffer("running_var", ones<T>({channels}));
}

template <class T>
basic_tensor<T> basic_batch_norm<T>::forward(const Tensor& x) {
    return batch_norm(x, weight, bias, running_mean, running_var, this->is_training(), momentum_, eps_);
}

template <class T>
basic_layer_norm<T>::basic_layer_norm(Shape normalized_shape, double eps, bool elementwise_affine)
    : normalized_(std::move(normalized_shape)), eps_(eps) {
    std::size_t n = normalized_.empty() ? 0 : 1;
    for (auto d : normalized_) n *= d;
    detail::check_value(n > 0, "LayerNorm: normalized_shape must be non-empty with no zero dimension, got {}",
                        to_string(normalized_));
    detail::check_value(eps > 0 && std::isfinite(eps), "LayerNorm: eps must be positive, got {}", eps);
    if (elementwise_affine) {
        weight = this->add_parameter("weight", ones<T>(normalized_));
        bias = this->add_parameter("bias", zeros<T>(normalized_));
    }
}

template <class T>
basic_tensor<T> basic_layer_norm<T>::forward(const Tensor& x) {
    return weight.defined() ? layer_norm(x, normalized_, weight, bias, eps_) : layer_norm(x, normalized_, eps_);
}

template <class T>
basic_embedding<T>::basic_embedding(std::size_t num_embeddings, std::size_t dim, std::optional<std::ptrdiff_t> padding_idx)
    : padding_idx_(padding_idx) {
    detail::check_value(num_embeddings > 0 && dim > 0, "Embedding: num_embeddings and dim must be positive, got {} and {}",
                        num_embeddings, dim);
    const auto v = static_cast<std::ptrdiff_t>(num_embeddings);
    detail::check_value(!padding_idx || (*padding_idx >= -v && *padding_idx < v),
                        "Embedding: padding_idx {} is outside [-{}, {})", padding_idx.value_or(0), num_embeddings,
                        num_embeddings);
    weight = this->add_parameter("weight", randn<T>({num_embeddings, dim}));
    if (padding_idx) {
        const auto row = static_cast<std::size_t>(*padding_idx < 0 ? *padding_idx + v : *padding_idx);
        T* w = weight.mutable_value().data();
        std::fill(w + row * dim, w + (row + 1) * dim, T(0));
    }
}

template <class T>
basic_tensor<T> basic_embedding<T>::forward(const Tensor& indices) {
    return embedding(indices, weight, padding_idx_);
}

template <class T>
basic_multihead_attention<T>::basic_multihead_attention(std::size_t embed_dim, std::size_t num_heads, bool causal,
                                                        double dropout, bool bias)
    : embed_dim_(embed_dim), heads_(num_heads), causal_(causal), dropout_(dropout) {
    detail::check_value(embed_dim > 0 && num_heads > 0 && embed_dim % num_heads == 0,
                        "MultiheadAttention: num_heads {} must be positive and divide embed_dim {}", num_heads,
                        embed_dim);
    detail::check_value(dropout >= 0 && dropout < 1, "MultiheadAttention: dropout must be in [0, 1), got {}", dropout);
    in_proj_weight = this->add_parameter("in_proj_weight", zeros<T>({embed_dim, 3 * embed_dim}));
    initialize(in_proj_weight, Init::glorot_uniform);
    if (bias) in_proj_bias = this->add_parameter("in_proj_bias", zeros<T>({3 * embed_dim}));
    out_proj = this->add_module("out_proj", basic_dense<T>(embed_dim, embed_dim, Activation::none, bias,
                                                           Init::glorot_uniform));
}

template <class T>
basic_tensor<T> basic_multihead_attention<T>::forward(const Tensor& x) { return attend_impl(x, x, x, nullptr); }

template <class T>
basic_tensor<T> basic_multihead_attention<T>::attend(const Tensor& query, const Tensor& key, const Tensor& value) {
    return attend_impl(query, key, value, nullptr);
}

template <class T>
basic_tensor<T> basic_multihead_attention<T>::attend(const Tensor& query, const Tensor& key, const Tensor& value,
                                                     const xt::xarray<bool>& mask) {
    return attend_impl(query, key, value, &mask);
}

template <class T>
basic_tensor<T> basic_multihead_attention<T>::attend_impl(const Tensor& query, const Tensor& key, const Tensor& value,
                                                          const xt::xarray<bool>* mask) {
    const std::size_t e = embed_dim_;
    for (const Tensor* t : {&query, &key, &value})
        detail::check_shape(t->dim() == 3 && t->shape()[2] == e && t->shape()[0] == query.shape()[0],
                            "MultiheadAttention: query, key and value must be [N, L or S, {}] with one N; query {}, "
                            "key {}, value {}",
                            e, query.shape(), key.shape(), value.shape());
    detail::check_shape(key.shape() == value.shape(), "MultiheadAttention: key and value differ; key {}, value {}",
                        key.shape(), value.shape());
    const auto d = [](std::size_t v) { return static_cast<std::ptrdiff_t>(v); };
    const std::size_t n = query.shape()[0], h = heads_, dh = e / h;
    // One projection of the three (q, k, v: columns 0, E and 2E of in_proj) into [N, heads, ·, E / heads].
    auto project = [&](const Tensor& x, std::size_t part) {
        const std::size_t len = x.shape()[1];
        const Tensor w = slice(in_proj_weight, 1, part * e, e);
        const Tensor flat = reshape(x, {d(n * len), d(e)});
        const Tensor p = in_proj_bias.defined() ? linear(flat, w, slice(in_proj_bias, 0, part * e, e)) : linear(flat, w);
        return permute(reshape(p, {d(n), d(len), d(h), d(dh)}), {0, 2, 1, 3});
    };
    AttentionOptions o{.causal = causal_, .scale = {}, .dropout = this->is_training() ? dropout_ : 0.0, .mask = {}};
    if (mask) o.mask = *mask;
    const Tensor q = project(query, 0), k = project(key, 1), v = project(value, 2);
    const Tensor a = scaled_dot_product_attention(q, k, v, o);
    const std::size_t l = query.shape()[1];
    const Tensor merged = reshape(permute(a, {0, 2, 1, 3}), {d(n * l), d(e)});  // heads side by side again
    return reshape((*out_proj)(merged), {d(n), d(l), d(e)});
}

template <class T>
basic_transformer_encoder_layer<T>::basic_transformer_encoder_layer(std::size_t d_model, std::size_t num_heads,
                                                                    TransformerEncoderOptions options)
    : options_(options) {
    detail::check_value(options.dim_feedforward > 0, "TransformerEncoderLayer: dim_feedforward must be positive");
    self_attn = this->add_module("self_attn", basic_multihead_attention<T>(d_model, num_heads, options.causal,
                                                                           options.dropout));
    linear1 = this->add_module("linear1", basic_dense<T>(d_model, options.dim_feedforward));
    linear2 = this->add_module("linear2", basic_dense<T>(options.dim_feedforward, d_model));
    norm1 = this->add_module("norm1", basic_layer_norm<T>({d_model}, options.layer_norm_eps));
    norm2 = this->add_module("norm2", basic_layer_norm<T>({d_model}, options.layer_norm_eps));
}

template <class T>
basic_tensor<T> basic_transformer_encoder_layer<T>::feed_forward(const Tensor& x) {
    const auto d = [](std::size_t v) { return static_cast<std::ptrdiff_t>(v); };
    const Shape& s = x.shape();
    const bool training = this->is_training();
    const Tensor flat = reshape(x, {d(s[0] * s[1]), d(s[2])});
    const Tensor hidden = dropout(activate((*linear1)(flat), options_.activation), options_.dropout, training);
    return dropout(reshape((*linear2)(hidden), detail::dims(s)), options_.dropout, training);
}

template <class T>
basic_tensor<T> basic_transformer_encoder_layer<T>::forward(const Tensor& x) {
    detail::check_shape(x.dim() == 3, "TransformerEncoderLayer: x must be [N, T, E], got x {}", x.shape());
    const bool training = this->is_training();
    auto attend = [&](const Tensor& h) { return dropout((*self_attn)(h), options_.dropout, training); };
    if (options_.norm_first) {
        const Tensor h = x + attend((*norm1)(x));
        return h + feed_forward((*norm2)(h));
    }
    const Tensor h = (*norm1)(x + attend(x));
    return (*norm2)(h + feed_forward(h));
}

template <class T>
basic_group_norm<T>::basic_group_norm(std::size_t num_groups, std::size_t channels, double eps, bool affine)
    : groups_(num_groups), eps_(eps) {
    detail::check_value(num_groups > 0 && channels > 0 && channels % num_groups == 0,
                        "GroupNorm: num_groups {} must be positive and divide the channels {}", num_groups, channels);
    detail::check_value(eps > 0 && std::isfinite(eps), "GroupNorm: eps must be positive, got {}", eps);
    if (affine) {
        weight = this->add_parameter("weight", ones<T>({channels}));
        bias = this->add_parameter("bias", zeros<T>({channels}));
    }
}

template <class T>
basic_tensor<T> basic_group_norm<T>::forward(const Tensor& x) {
    return weight.defined() ? group_norm(x, groups_, weight, bias, eps_) : group_norm(x, groups_, eps_);
}

template <class T>
basic_instance_norm<T>::basic_instance_norm(std::size_t channels, double eps, bool affine)
    : channels_(channels), eps_(eps) {
    detail::check_value(channels > 0, "InstanceNorm: channels must be positive, got {}", channels);
    detail::check_value(eps > 0 && std::isfinite(eps), "InstanceNorm: eps must be positive, got {}", eps);
    if (affine) {
        weight = this->add_parameter("weight", ones<T>({channels}));
        bias = this->add_parameter("bias", zeros<T>({channels}));
    }
}

template <class T>
basic_tensor<T> basic_instance_norm<T>::forward(const Tensor& x) {
    detail::check_shape(x.dim() >= 2 && x.shape().back() == channels_,
                        "InstanceNorm: x must be [N, ..., {}] (the layer's channels), got x {}", channels_, x.shape());
    return weight.defined() ? instance_norm(x, weight, bias, eps_) : instance_norm(x, eps_);
}

template <class T>
basic_dropout<T>::basic_dropout(double p) : p_(p) {
    detail::check_value(p >= 0 && p < 1, "Dropout: p must be in [0, 1), got {}", p);
}

template <class T>
basic_tensor<T> basic_dropout<T>::forward(const Tensor& x) { return dropout(x, p_, this->is_training()); }

#define XGRAD_INSTANTIATE(T)                                                   \
    template basic_tensor<T> activate(const basic_tensor<T>&, Activation);    \
    template class basic_dense<T>;                                             \
    template class basic_conv2d<T>;                                            \
    template class basic_conv_transpose2d<T>;                                  \
    template class basic_max_pool2d<T>;                                        \
    template class basic_avg_pool2d<T>;                                        \
    template class basic_global_avg_pool2d<T>;                                 \
    template class basic_batch_norm<T>;                                        \
    template class basic_layer_norm<T>;                                        \
    template class basic_group_norm<T>;                                        \
    template class basic_multihead_attention<T>;                               \
    template class basic_transformer_encoder_layer<T>;                         \
    template class basic_embedding<T>;                                         \
    template class basic_instance_norm<T>;                                     \
    template class basic_dropout<T>;                                           \
    template class basic_flatten<T>;                                           \
    template class basic_activation_layer<T>;
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad::nn
