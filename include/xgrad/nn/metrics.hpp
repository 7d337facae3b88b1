#pragma once

#include <cstddef>

#include "xgrad/tensor.hpp"

namespace xgrad::nn {

/// How many rows of scores [N, K] have their largest value (the first, on ties) at the
/// target class: targets are indices [N] or one-hot/probabilities [N, K] (their largest
/// entry). Throws ShapeError when the shapes do not fit.
template <class T>
std::size_t count_correct(const basic_tensor<T>& scores, const basic_tensor<T>& targets);

}  // namespace xgrad::nn
