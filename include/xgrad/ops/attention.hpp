#pragma once

// Attention, composed of matmul, softmax and where: every rule (and every order of derivative)
// is theirs.

#include <optional>

#include "xgrad/tensor.hpp"

namespace xgrad {

struct AttentionOptions {
    /// Query i attends to keys 0..i only (PyTorch's is_causal: the mask's upper-left triangle).
    bool causal = false;
    /// Multiplies q·kᵀ; unset means 1 / sqrt(E).
    std::optional<double> scale{};
    /// Dropout on the attention weights (drawn from manual_seed's generator); 0 = none.
    double dropout = 0.0;
    /// true = may attend (PyTorch's boolean masks); broadcasts to the scores [B..., L, S], e.g.
    /// a key padding mask [N, 1, 1, S]. Combines with `causal`.
    std::optional<xt::xarray<bool>> mask{};
};

/// softmax(q·kᵀ · scale, over the keys) · v, as PyTorch's F.scaled_dot_product_attention:
/// q [B..., L, E], k [B..., S, E], v [B..., S, Ev] -> [B..., L, Ev] (equal batch dimensions,
/// e.g. [N, heads, L, E]). The softmax subtracts each row's maximum, so large scores do not
/// overflow. `{.causal = true}`, `{.mask = padding}`. Deliberate difference from PyTorch (which returns
/// NaN there): a query with every key masked throws ValueError. Throws ShapeError naming every
/// shape when the dimensions do not match.
template <class T>
basic_tensor<T> scaled_dot_product_attention(const basic_tensor<T>& q, const basic_tensor<T>& k,
                                             const basic_tensor<T>& v, const AttentionOptions& options = {});

}  // namespace xgrad
