#include "kernels/bf16.hpp"

#include <omp.h>

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "kernels/buffer.hpp"

namespace xgrad::kernels {

namespace {

Bf16Level detect() {
    Bf16Level best = Bf16Level::portable;
    // __builtin_cpu_supports also checks that the OS saves the AVX-512 registers (XCR0).
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512bf16"))
        best = Bf16Level::avx512_bf16;
    const char* cap = std::getenv("XGRAD_BF16_LEVEL");
    if (cap && std::strcmp(cap, "portable") == 0) best = Bf16Level::portable;
    return best;
}

// One pair of K for one element: acc += a1·b1, then acc += a0·b0 (each product exact).
inline float dot_pair(float acc, const bf16* a, const bf16* b) {
    acc += from_bf16(a[1]) * from_bf16(b[1]);
    acc += from_bf16(a[0]) * from_bf16(b[0]);
    return acc;
}

#if defined(__clang__)
#define XGRAD_NO_LOOP_VECTORIZE
#else
#define XGRAD_NO_LOOP_VECTORIZE __attribute__((optimize("no-tree-loop-vectorize")))
#endif

// Not loop-vectorised: g++ 12 at -O3 vectorises this in-order float sum over interleaved pairs
// wrongly (a 10-line reproduction, the sum of 1·1 .. 1·16, gives 140 instead of 136; see
// docs/notes.md, traps), and the order of the sum is the contract.
XGRAD_NO_LOOP_VECTORIZE void gemm_portable(std::size_t m, std::size_t n, std::size_t p, const bf16* const* a, std::size_t lda,
                   const bf16* const* b, std::size_t count, float* c, std::size_t ldc, bool accumulate,
                   std::size_t a_pair) {
    for (std::size_t r = 0; r < m; ++r)
        for (std::size_t j = 0; j < n; ++j) {
            float acc = accumulate ? c[r * ldc + j] : 0.0f;
            for (std::size_t i = 0; i < count; ++i)
                for (std::size_t q = 0; q < p; ++q)
                    acc = dot_pair(acc, a[i] + r * lda + q * a_pair, b[i] + (q * n + j) * 2);
            c[r * ldc + j] = acc;
        }
}

#define XGRAD_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))

// Rows [m0, m0 + R) and columns [n0, n0 + cols) of C, cols <= 16·V: R·V sums in registers
// over every pair of every product. Every loop over the arrays is unrolled by pragma: without
// it g++ 12 keeps `acc` in memory and stores it on every pair (80 GFLOP/s instead of 220).
template <int R, int V>
XGRAD_AVX512_BF16 void block_avx512(std::size_t m0, std::size_t n0, std::size_t cols, std::size_t n, std::size_t p,
                                    const bf16* const* a, std::size_t lda, std::size_t a_pair, const bf16* const* b,
                                    std::size_t count, float* c, std::size_t ldc, bool accumulate) {
    __mmask16 mask[V];
    #pragma GCC unroll 16
    for (int v = 0; v < V; ++v) {
        const std::size_t left = cols > 16u * static_cast<unsigned>(v) ? cols - 16u * static_cast<unsigned>(v) : 0;
        mask[v] = left >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << left) - 1u);
    }
    __m512 acc[R][V];
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
        #pragma GCC unroll 16
        for (int v = 0; v < V; ++v)
            acc[r][v] = accumulate ? _mm512_maskz_loadu_ps(mask[v], c + (m0 + static_cast<std::size_t>(r)) * ldc + n0 + 16u * static_cast<unsigned>(v))
                                   : _mm512_setzero_ps();
    for (std::size_t i = 0; i < count; ++i) {
        const bf16* ai = a[i] + m0 * lda;
        const bf16* bi = b[i] + n0 * 2;
        for (std::size_t q = 0; q < p; ++q) {
            __m512i bv[V];
            #pragma GCC unroll 16
            for (int v = 0; v < V; ++v)
                bv[v] = _mm512_maskz_loadu_epi32(mask[v], bi + (q * n + 16u * static_cast<unsigned>(v)) * 2);
            #pragma GCC unroll 16
            for (int r = 0; r < R; ++r) {
                std::int32_t pair;
                std::memcpy(&pair, ai + static_cast<std::size_t>(r) * lda + q * a_pair, sizeof pair);
                const __m512i av = _mm512_set1_epi32(pair);
                #pragma GCC unroll 16
                for (int v = 0; v < V; ++v)
                    acc[r][v] = _mm512_dpbf16_ps(acc[r][v], (__m512bh)av, (__m512bh)bv[v]);
            }
        }
    }
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
        #pragma GCC unroll 16
        for (int v = 0; v < V; ++v)
            _mm512_mask_storeu_ps(c + (m0 + static_cast<std::size_t>(r)) * ldc + n0 + 16u * static_cast<unsigned>(v), mask[v],
                                  acc[r][v]);
}

// The rows of one column block: blocks of kRows, then one block of the rest.
template <int V, int kRows, int... Rs>
XGRAD_AVX512_BF16 void rows_avx512(std::integer_sequence<int, Rs...>, std::size_t m, std::size_t n0, std::size_t cols,
                                   std::size_t n, std::size_t p, const bf16* const* a, std::size_t lda,
                                   std::size_t a_pair, const bf16* const* b, std::size_t count, float* c,
                                   std::size_t ldc, bool accumulate) {
    std::size_t m0 = 0;
    for (; m0 + kRows <= m; m0 += kRows)
        block_avx512<kRows, V>(m0, n0, cols, n, p, a, lda, a_pair, b, count, c, ldc, accumulate);
    const int rest = static_cast<int>(m - m0);
    // Rs = 0 .. kRows - 1: the one block of `rest` rows, R known at compile time
    ((Rs == rest && Rs > 0
          ? block_avx512<(Rs > 0 ? Rs : 1), V>(m0, n0, cols, n, p, a, lda, a_pair, b, count, c, ldc, accumulate)
          : void()),
     ...);
}

// Registers: R·V sums + V columns of B + 1 broadcast of A, at most 32.
template <int V>
constexpr int rows_for() {
    return V == 4 ? 4 : V == 3 ? 6 : V == 2 ? 8 : 12;
}

template <int V>
XGRAD_AVX512_BF16 void columns_avx512(std::size_t m, std::size_t n0, std::size_t cols, std::size_t n, std::size_t p,
                                      const bf16* const* a, std::size_t lda, std::size_t a_pair,
                                      const bf16* const* b, std::size_t count, float* c, std::size_t ldc,
                                      bool accumulate) {
    constexpr int kRows = rows_for<V>();
    rows_avx512<V, kRows>(std::make_integer_sequence<int, kRows>{}, m, n0, cols, n, p, a, lda, a_pair, b, count, c,
                          ldc, accumulate);
}

XGRAD_AVX512_BF16 void gemm_avx512(std::size_t m, std::size_t n, std::size_t p, const bf16* const* a, std::size_t lda,
                                   std::size_t a_pair, const bf16* const* b, std::size_t count, float* c,
                                   std::size_t ldc, bool accumulate) {
    for (std::size_t n0 = 0; n0 < n; n0 += 64) {
        const std::size_t cols = std::min<std::size_t>(64, n - n0);
        switch ((cols + 15) / 16) {
            case 1: columns_avx512<1>(m, n0, cols, n, p, a, lda, a_pair, b, count, c, ldc, accumulate); break;
            case 2: columns_avx512<2>(m, n0, cols, n, p, a, lda, a_pair, b, count, c, ldc, accumulate); break;
            case 3: columns_avx512<3>(m, n0, cols, n, p, a, lda, a_pair, b, count, c, ldc, accumulate); break;
            default: columns_avx512<4>(m, n0, cols, n, p, a, lda, a_pair, b, count, c, ldc, accumulate); break;
        }
    }
}

}  // namespace

Bf16Level bf16_level() {
    static const Bf16Level level = detect();
    return level;
}

const char* bf16_level_name(Bf16Level level) {
    return level == Bf16Level::avx512_bf16 ? "avx512_bf16" : "portable";
}

void pack_rows_bf16(const float* a, std::size_t rows, std::size_t cols, std::size_t ld, bf16* out) {
    const std::size_t width = 2 * pairs(cols);
    for (std::size_t r = 0; r < rows; ++r) {
        bf16* dst = out + r * width;
        for (std::size_t j = 0; j < cols; ++j) dst[j] = to_bf16(a[r * ld + j]);
        if (width > cols) dst[cols] = 0;
    }
}

namespace {

// Pairs [q0, q1) of K and columns [j0, j1) of pack_pairs_bf16's output (its layout, [P, N, 2]).
// A transposed B is read along its stored rows (consecutive pairs of K), not down its columns.
void pack_pairs_part(const float* b, std::size_t k, std::size_t n, std::size_t ld, bool trans, bf16* out,
                     std::size_t q0, std::size_t q1, std::size_t j0, std::size_t j1) {
    if (trans) {
        for (std::size_t j = j0; j < j1; ++j) {
            const float* row = b + j * ld;  // B's column j
            for (std::size_t q = q0; q < q1; ++q) {
                bf16* dst = out + (q * n + j) * 2;
                dst[0] = to_bf16(row[2 * q]);
                dst[1] = 2 * q + 1 < k ? to_bf16(row[2 * q + 1]) : bf16(0);
            }
        }
        return;
    }
    for (std::size_t q = q0; q < q1; ++q) {
        bf16* dst = out + q * n * 2;
        const float* row0 = b + 2 * q * ld;
        if (2 * q + 1 < k) {  // two rows in order
            const float* row1 = row0 + ld;
            for (std::size_t j = j0; j < j1; ++j) {
                dst[2 * j] = to_bf16(row0[j]);
                dst[2 * j + 1] = to_bf16(row1[j]);
            }
        } else {
            for (std::size_t j = j0; j < j1; ++j) {
                dst[2 * j] = to_bf16(row0[j]);
                dst[2 * j + 1] = 0;
            }
        }
    }
}

// Blocks of a pack_pairs_bf16 output, [P, N, 2], as tasks for the threads: pairs and columns
// both split, so that a short K (a dense layer's 128 outputs, 64 pairs) still gives each
// thread its share.
struct PairTasks {
    static constexpr std::size_t kPairs = 32, kColumns = 256;
    std::size_t p, n, pair_blocks, column_blocks;
    PairTasks(std::size_t k, std::size_t n_)
        : p(pairs(k)), n(n_), pair_blocks((p + kPairs - 1) / kPairs), column_blocks((n + kColumns - 1) / kColumns) {}
    std::ptrdiff_t count() const { return static_cast<std::ptrdiff_t>(pair_blocks * column_blocks); }
    void run(std::ptrdiff_t t, const float* b, std::size_t k, std::size_t ld, bool trans, bf16* out) const {
        const std::size_t q0 = static_cast<std::size_t>(t) / column_blocks * kPairs;
        const std::size_t j0 = static_cast<std::size_t>(t) % column_blocks * kColumns;
        pack_pairs_part(b, k, n, ld, trans, out, q0, std::min(p, q0 + kPairs), j0, std::min(n, j0 + kColumns));
    }
};

}  // namespace

void pack_pairs_bf16(const float* b, std::size_t k, std::size_t n, std::size_t ld, bool trans, bf16* out) {
    pack_pairs_part(b, k, n, ld, trans, out, 0, pairs(k), 0, n);
}

void round_bf16(const float* in, std::size_t n, float* out) {
    const auto count = static_cast<std::ptrdiff_t>(n);
#pragma omp parallel for schedule(static) if (count > (std::ptrdiff_t{1} << 16))
    for (std::ptrdiff_t i = 0; i < count; ++i) out[i] = round_bf16(in[i]);
}

void gemm_bf16_float(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, const float* a,
                     std::size_t lda, const float* b, std::size_t ldb, bool accumulate, float* c, std::size_t ldc) {
    if (m == 0 || n == 0) return;
    if (k == 0) {  // an empty sum (a weight gradient over an empty batch): C is zero, or unchanged
        if (!accumulate)
            for (std::size_t r = 0; r < m; ++r) std::fill_n(c + r * ldc, n, 0.0f);
        return;
    }
    // A [M, K] as packed rows; stored transposed ([K, M]), as packed pairs [P, M, 2], which
    // reads it in order
    const std::size_t width = 2 * pairs(k);
    Buffer<bf16> pa(m * width), pb(pairs(k) * n * 2);
    // Both packings in blocks on the threads (a dense layer's weights are MBs, and a batch of
    // 64 rows or pairs of them is one block only if it is not split further: one thread
    // packed while the other waited).
    const auto threads = static_cast<std::size_t>(omp_get_max_threads());
    const std::size_t a_rows = std::max<std::size_t>(1, (m + 4 * threads - 1) / (4 * threads));  // per task
    const auto a_tasks = static_cast<std::ptrdiff_t>((m + a_rows - 1) / a_rows);
    const PairTasks a_pairs(k, m), b_pairs(k, n);
#pragma omp parallel
    {
        if (trans_a) {  // A stored [K, M]: packed pairs [P, M, 2]
#pragma omp for schedule(static) nowait
            for (std::ptrdiff_t t = 0; t < a_pairs.count(); ++t) a_pairs.run(t, a, k, lda, false, pa.data());
        } else {
#pragma omp for schedule(static) nowait
            for (std::ptrdiff_t t = 0; t < a_tasks; ++t) {
                const std::size_t first = static_cast<std::size_t>(t) * a_rows;
                pack_rows_bf16(a + first * lda, std::min(a_rows, m - first), k, lda, pa.data() + first * width);
            }
        }
#pragma omp for schedule(static)
        for (std::ptrdiff_t t = 0; t < b_pairs.count(); ++t) b_pairs.run(t, b, k, ldb, trans_b, pb.data());
    }
    // row r0's first pair and the step from one row to the next, one pair to the next
    const std::size_t row_step = trans_a ? 2 : width, pair_step = trans_a ? 2 * m : 2;
    // Tasks of at most 48 rows of C, as many as a multiple of the threads, of equal size: a
    // batch of 64 rows in tasks of 48 and 16 left one thread waiting for the other.
    const std::size_t tasks_wanted = ((m + 47) / 48 + threads - 1) / threads * threads;
    const std::size_t kRows = (m + tasks_wanted - 1) / tasks_wanted;  // rows of C per task
    const auto tasks = static_cast<std::ptrdiff_t>((m + kRows - 1) / kRows);
    const Bf16Level level = bf16_level();
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t t = 0; t < tasks; ++t) {
        const std::size_t r0 = static_cast<std::size_t>(t) * kRows, rows = std::min(kRows, m - r0);
        const bf16* ap = pa.data() + r0 * row_step;
        const bf16* bp = pb.data();
        gemm_bf16(rows, n, pairs(k), &ap, row_step, &bp, 1, c + r0 * ldc, ldc, accumulate, level, pair_step);
    }
}

void gemm_bf16(std::size_t m, std::size_t n, std::size_t p, const bf16* const* a, std::size_t lda,
               const bf16* const* b, std::size_t count, float* c, std::size_t ldc, bool accumulate,
               Bf16Level level, std::size_t a_pair) {
    if (m == 0 || n == 0) return;
    if (level == Bf16Level::avx512_bf16 && bf16_level() == Bf16Level::avx512_bf16)
        gemm_avx512(m, n, p, a, lda, a_pair, b, count, c, ldc, accumulate);
    else
        gemm_portable(m, n, p, a, lda, b, count, c, ldc, accumulate, a_pair);
}

}  // namespace xgrad::kernels
