// The bfloat16 kernels (src/kernels/bf16.hpp): rounding, and the GEMM against a float64
// reference on bf16-rounded inputs, on every CPU level this machine has.

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "kernels/bf16.hpp"

using namespace xgrad::kernels;

namespace {

std::uint32_t bits(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

float from_bits(std::uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

struct Problem {
    std::size_t m, n, k, count;
};

// Random operands (bf16-exact), packed, and C's starting values.
struct Operands {
    std::vector<float> a, b;  // count · [m, k], count · [k, n]
    std::vector<bf16> pa, pb;
    std::vector<const bf16*> la, lb;
    std::size_t lda;

    Operands(const Problem& p, std::uint32_t seed) : a(p.count * p.m * p.k), b(p.count * p.k * p.n) {
        std::mt19937 rng(seed);
        std::normal_distribution<float> normal;
        for (auto& v : a) v = round_bf16(normal(rng));
        for (auto& v : b) v = round_bf16(normal(rng));
        lda = 2 * pairs(p.k);
        pa.resize(p.count * p.m * lda);
        pb.resize(p.count * pairs(p.k) * p.n * 2);
        for (std::size_t i = 0; i < p.count; ++i) {
            pack_rows_bf16(a.data() + i * p.m * p.k, p.m, p.k, p.k, pa.data() + i * p.m * lda);
            // B stored transposed for every other product: both packings
            if (i % 2 == 0) {
                pack_pairs_bf16(b.data() + i * p.k * p.n, p.k, p.n, p.n, false, pb.data() + i * pairs(p.k) * p.n * 2);
            } else {
                std::vector<float> bt(p.k * p.n);
                for (std::size_t r = 0; r < p.k; ++r)
                    for (std::size_t j = 0; j < p.n; ++j) bt[j * p.k + r] = b[i * p.k * p.n + r * p.n + j];
                pack_pairs_bf16(bt.data(), p.k, p.n, p.k, true, pb.data() + i * pairs(p.k) * p.n * 2);
            }
        }
        for (std::size_t i = 0; i < p.count; ++i) {
            la.push_back(pa.data() + i * p.m * lda);
            lb.push_back(pb.data() + i * pairs(p.k) * p.n * 2);
        }
    }
};

std::vector<Problem> problems() {
    // Full register blocks and their remainders in M and N (16 columns a vector, 4 vectors a
    // block), odd K (a zero-padded pair), several products, a single row or column.
    return {{1, 1, 1, 1},  {7, 10, 5, 1},   {28, 64, 32, 9}, {13, 70, 33, 3}, {64, 128, 64, 1},
            {100, 17, 2, 2}, {5, 200, 7, 2}, {33, 48, 18, 4}, {1, 65, 31, 1},  {9, 1, 40, 3}};
}

}  // namespace

TEST_CASE("bf16: rounding is to nearest even; NaN, infinity and zero keep their class", "[bf16]") {
    CHECK(to_bf16(1.0f) == 0x3f80);
    CHECK(to_bf16(-2.0f) == 0xc000);
    // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1)
    CHECK(to_bf16(from_bits(0x3f808000u)) == 0x3f80);
    // 1 + 3·2^-8 lies halfway between 1 + 2^-7 and 1 + 2^-6: even is up
    CHECK(to_bf16(from_bits(0x3f818000u)) == 0x3f82);
    CHECK(to_bf16(from_bits(0x3f808001u)) == 0x3f81);  // above halfway: up
    CHECK(to_bf16(from_bits(0x3f807fffu)) == 0x3f80);  // below: down
    CHECK(to_bf16(std::numeric_limits<float>::max()) == 0x7f80);  // rounds to infinity
    CHECK(to_bf16(std::numeric_limits<float>::infinity()) == 0x7f80);
    CHECK(to_bf16(-std::numeric_limits<float>::infinity()) == 0xff80);
    CHECK(to_bf16(-0.0f) == 0x8000);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    CHECK(std::isnan(round_bf16(nan)));
    CHECK(std::isnan(round_bf16(from_bits(0x7f800001u))));  // a signalling NaN whose payload is in the cut bits
    CHECK(std::isnan(round_bf16(-nan)));
    CHECK(bits(round_bf16(3.5f)) == bits(3.5f));  // bf16-exact values are kept
}

TEST_CASE("bf16: the GEMM equals a float64 reference on bf16 inputs up to float32 summation", "[bf16]") {
    for (const auto& p : problems()) {
        for (bool accumulate : {false, true}) {
            INFO("m " << p.m << ", n " << p.n << ", k " << p.k << ", products " << p.count
                      << (accumulate ? ", accumulating" : ""));
            const Operands o(p, 7);
            std::vector<float> c(p.m * p.n, 0.5f);
            gemm_bf16(p.m, p.n, pairs(p.k), o.la.data(), o.lda, o.lb.data(), p.count, c.data(), p.n, accumulate,
                      Bf16Level::portable);
            double worst = 0;
            for (std::size_t r = 0; r < p.m; ++r)
                for (std::size_t j = 0; j < p.n; ++j) {
                    double ref = accumulate ? 0.5 : 0.0, magnitude = std::abs(ref);
                    for (std::size_t i = 0; i < p.count; ++i)
                        for (std::size_t q = 0; q < p.k; ++q) {
                            const double t = static_cast<double>(o.a[(i * p.m + r) * p.k + q]) *
                                             static_cast<double>(o.b[(i * p.k + q) * p.n + j]);
                            ref += t;
                            magnitude += std::abs(t);
                        }
                    // float32 sums of exact products: at most one rounding per term
                    const double bound = static_cast<double>(p.k * p.count + 1) * 0x1p-24 * magnitude;
                    worst = std::max(worst, std::abs(c[r * p.n + j] - ref) / std::max(bound, 1e-300));
                }
            CHECK(worst <= 1.0);
        }
    }
}

TEST_CASE("bf16: every CPU level gives the portable path's numbers, bit for bit", "[bf16]") {
    INFO("this CPU's level: " << bf16_level_name(bf16_level()));
    for (const auto& p : problems()) {
        INFO("m " << p.m << ", n " << p.n << ", k " << p.k << ", products " << p.count);
        const Operands o(p, 11);
        for (bool accumulate : {false, true}) {
            std::vector<float> portable(p.m * p.n, 0.25f), best(p.m * p.n, 0.25f);
            gemm_bf16(p.m, p.n, pairs(p.k), o.la.data(), o.lda, o.lb.data(), p.count, portable.data(), p.n,
                      accumulate, Bf16Level::portable);
            gemm_bf16(p.m, p.n, pairs(p.k), o.la.data(), o.lda, o.lb.data(), p.count, best.data(), p.n, accumulate,
                      bf16_level());
            std::size_t differ = 0;
            for (std::size_t i = 0; i < best.size(); ++i) differ += bits(best[i]) != bits(portable[i]);
            CHECK(differ == 0);
        }
    }
}

TEST_CASE("bf16: no products overwrite C with zeros, or leave it when accumulating", "[bf16]") {
    std::vector<float> c(6, 3.0f);
    gemm_bf16(2, 3, 4, nullptr, 8, nullptr, 0, c.data(), 3, true, bf16_level());
    CHECK(c == std::vector<float>(6, 3.0f));
    gemm_bf16(2, 3, 4, nullptr, 8, nullptr, 0, c.data(), 3, false, bf16_level());
    CHECK(c == std::vector<float>(6, 0.0f));
}
