#pragma once

// bfloat16 kernels on raw buffers: rounding, packing, and a batch-reduce GEMM with bf16
// operands and float32 sums. No Tensor, no tape.
//
// The numerics, on every CPU level: each operand is rounded to bf16 (round to nearest even;
// NaN stays NaN, infinities stay); a product of two bf16 values is exact in float32; the sums
// are float32, pair by pair along K: for the pair (2p, 2p + 1), acc += a[2p+1]·b[2p+1], then
// acc += a[2p]·b[2p], each rounded to nearest (what VDPBF16PS does). Denormal operands and
// results may flush to zero on the AVX512-BF16 level (the instruction's DAZ/FTZ); the
// portable level keeps them.

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace xgrad::kernels {

using bf16 = std::uint16_t;

inline float from_bf16(bf16 b) {
    const std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

inline bf16 to_bf16(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    const std::uint32_t nearest = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;  // ties to even; overflows to infinity
    const std::uint32_t quiet_nan = (u >> 16) | 0x0040u;                   // NaN stays NaN, sign kept
    // a select, not a branch: packing loops vectorise
    return static_cast<bf16>((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : nearest);
}

/// f rounded to the nearest bf16 value, as a float.
inline float round_bf16(float f) { return from_bf16(to_bf16(f)); }

/// What the bf16 GEMM runs on.
enum class Bf16Level {
    /// float32 arithmetic on the bf16 values, in the instruction's order: any x86-64 CPU.
    portable,
    /// VDPBF16PS on 512-bit registers (Cooper Lake and later Xeons, AMD Zen 4 and later).
    avx512_bf16,
};

/// The best level this CPU and OS support, capped by the environment variable
/// XGRAD_BF16_LEVEL ("portable" forces the portable path; unset or "best": no cap). Read once.
Bf16Level bf16_level();
/// "portable", "avx512_bf16".
const char* bf16_level_name(Bf16Level level);

/// Rows of a row-major float matrix [rows, cols] (row stride ld) as bf16 rows of
/// `pairs(cols)` pairs (2·pairs(cols) elements, the odd last one zero): a GEMM's A operand.
void pack_rows_bf16(const float* a, std::size_t rows, std::size_t cols, std::size_t ld, bf16* out);
/// A row-major float matrix B [k, n] (row stride ld; stored [n, k] when trans) as pairs
/// along K: out[p][j][0..1] = B[2p][j], B[2p + 1][j] (0 past the end), pairs(k) · n · 2
/// elements: a GEMM's B operand.
void pack_pairs_bf16(const float* b, std::size_t k, std::size_t n, std::size_t ld, bool trans, bf16* out);
inline std::size_t pairs(std::size_t k) { return (k + 1) / 2; }

/// C [M, N] (+)= Σ_i A_i · B_i over `count` pairs, P pairs of K: pair q of row r of A_i at
/// A_i + r·lda + q·a_pair (a_pair 2: packed rows; lda 2, a_pair 2·M: packed pairs [P, M, 2]),
/// B_i [P, N, 2] packed pairs, float32 C with row stride ldc. `accumulate` adds to C;
/// otherwise C is overwritten (zeros when count is 0). Single-threaded.
void gemm_bf16(std::size_t m, std::size_t n, std::size_t p, const bf16* const* a, std::size_t lda,
               const bf16* const* b, std::size_t count, float* c, std::size_t ldc, bool accumulate,
               Bf16Level level, std::size_t a_pair = 2);

/// n floats rounded to bf16 values into out (may be in), on the OpenMP threads.
void round_bf16(const float* in, std::size_t n, float* out);

/// C [M, N] = op(A) · op(B) (+ C when accumulate) for float matrices holding bf16 values, as
/// kernels::gemm's arguments (op transposes when asked; row strides as stored): packs both
/// operands, then gemm_bf16 on blocks of rows, on the OpenMP threads. float32 sums.
void gemm_bf16_float(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, const float* a,
                     std::size_t lda, const float* b, std::size_t ldb, bool accumulate, float* c, std::size_t ldc);

}  // namespace xgrad::kernels
