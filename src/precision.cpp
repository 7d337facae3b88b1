#include "xgrad/precision.hpp"

#include <cstdio>
#include <mutex>

#include "detail/precision.hpp"
#include "kernels/bf16.hpp"

namespace xgrad {

namespace {

thread_local Precision t_precision = Precision::float32;

}  // namespace

AutocastGuard::AutocastGuard(Precision precision) : previous_(t_precision) {
    t_precision = precision;
    if (precision == Precision::bf16 && kernels::bf16_level() == kernels::Bf16Level::portable) {
        static std::once_flag told;
        std::call_once(told, [] {
            std::fprintf(stderr,
                         "xgrad: bf16 mixed precision on the portable kernels (float32 arithmetic on bf16 values): "
                         "the same numbers, no speed-up (this CPU has no AVX512-BF16, or XGRAD_BF16_LEVEL=portable)\n");
        });
    }
}

AutocastGuard::~AutocastGuard() { t_precision = previous_; }

Precision autocast_precision() { return t_precision; }

std::string bf16_kernels() { return kernels::bf16_level_name(kernels::bf16_level()); }

namespace detail {

bool bf16_fast_kernels() { return kernels::bf16_level() != kernels::Bf16Level::portable; }

}  // namespace detail
}  // namespace xgrad
