#pragma once

#include <cstddef>
#include <utility>

#include "xgrad/tensor.hpp"

namespace xgrad::nn {

/// Weight initialisers. Fans come from the shape: dense weights [in, out] have fan_in = in,
/// fan_out = out; conv kernels [KH, KW, C_in, C_out] have fan_in = KH·KW·C_in and
/// fan_out = KH·KW·C_out. Random ones draw from the manual_seed() generator.
enum class Init {
    he_uniform,      ///< U(±sqrt(6 / fan_in)): for ReLU layers (the default of Dense and Conv2D)
    he_normal,       ///< N(0, 2 / fan_in)
    glorot_uniform,  ///< U(±sqrt(6 / (fan_in + fan_out))): Keras' default
    glorot_normal,   ///< N(0, 2 / (fan_in + fan_out))
    lecun_uniform,   ///< U(±sqrt(3 / fan_in))
    lecun_normal,    ///< N(0, 1 / fan_in)
    zeros,
    ones,
};

/// (fan_in, fan_out) of a weight shape. Throws ShapeError for a rank other than 1, 2 or 4.
std::pair<std::size_t, std::size_t> fans(const Shape& shape);

/// Fills `w` in place (not recorded on the tape).
template <class T>
void initialize(basic_tensor<T>& w, Init init);

}  // namespace xgrad::nn
