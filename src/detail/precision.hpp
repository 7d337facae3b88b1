#pragma once

// How ops apply the bf16 contract of xgrad/precision.hpp.

#include <type_traits>

#include "xgrad/precision.hpp"

namespace xgrad::detail {

/// True when a product op on T tensors takes bf16 operands now (float tensors under an
/// AutocastGuard(Precision::bf16) on this thread).
template <class T>
bool bf16_products() {
    return std::is_same_v<T, float> && autocast_precision() == Precision::bf16;
}

/// True when the CPU has bf16 kernels; false on the portable level (float32 kernels on
/// bf16-rounded copies of the operands).
bool bf16_fast_kernels();

/// Re-enters the precision an op's forward pass ran in, for the ops of its backward rule.
class PrecisionScope {
public:
    explicit PrecisionScope(bool bf16) : guard_(bf16 ? Precision::bf16 : Precision::float32) {}

private:
    AutocastGuard guard_;
};

}  // namespace xgrad::detail
