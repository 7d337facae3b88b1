#pragma once

// bfloat16 mixed precision: the numerics contract and its guard.

#include <string>

namespace xgrad {

/// The arithmetic of the products in convolutions and matrix products.
enum class Precision {
    /// float32 operands and sums (the default).
    float32,
    /// bfloat16 operands (each rounded to nearest even from float32), float32 sums.
    bf16,
};

/// Mixed-precision training, like PyTorch's `torch.autocast("cpu", dtype=torch.bfloat16)`:
/// while the guard lives on this thread, the product ops of float tensors take bf16 operands
/// and sum in float32; every other op, the tensors themselves, the gradients reaching the
/// parameters and the optimizer stay float32 (master weights: an update below bf16's
/// resolution still moves a weight). The numerics contract, the one table:
///
/// | op                                                     | operands | sums    | output  |
/// |--------------------------------------------------------|----------|---------|---------|
/// | conv2d, conv2d_relu, conv2d_relu_max_pool2d (its convolution), their input and weight gradients, conv_transpose2d (an input gradient) | bf16 | float32 | float32 |
/// | linear, linear_relu, matmul, and their gradients        | bf16     | float32 | float32 |
/// | everything else (activations, pooling, reductions, losses, batch norm, optimizers) | float32 | float32 | float32 |
///
/// An op's backward pass runs in the precision its forward pass ran in, whether backward()
/// is called inside the guard or after it. float64 tensors ignore the guard. Which kernels
/// run is chosen once from the CPU (bf16_kernels()); every level gives the same bf16
/// operands and float32 sums, differing only in the order of the float32 sums.
///
/// ```
/// {
///     xgrad::AutocastGuard bf16;                // Precision::bf16
///     auto loss = xgrad::cross_entropy(model(x), y);
///     loss.backward();
/// }
/// optimizer.step();                             // float32 master weights
/// ```
class AutocastGuard {
public:
    explicit AutocastGuard(Precision precision = Precision::bf16);
    ~AutocastGuard();
    AutocastGuard(const AutocastGuard&) = delete;
    AutocastGuard& operator=(const AutocastGuard&) = delete;

private:
    Precision previous_;
};

/// This thread's precision for product ops (Precision::float32 outside any guard).
Precision autocast_precision();

/// The kernels bf16 products run on here: "avx512_bf16" (VDPBF16PS; Cooper Lake and later
/// Xeons, AMD Zen 4 and later) or "portable" (float32 arithmetic on the bf16 values, any
/// x86-64 CPU). Set the environment variable XGRAD_BF16_LEVEL=portable before the process
/// starts to force the portable kernels (tests do, to check both).
std::string bf16_kernels();

}  // namespace xgrad
