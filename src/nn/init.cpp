#include "xgrad/nn/init.hpp"

#include <cmath>
#include <random>

#include "detail/check.hpp"
#include "detail/random.hpp"

namespace xgrad::nn {

std::pair<std::size_t, std::size_t> fans(const Shape& s) {
    switch (s.size()) {
        case 1: return {s[0], s[0]};
        case 2: return {s[0], s[1]};
        case 4: return {s[0] * s[1] * s[2], s[0] * s[1] * s[3]};
        default: break;
    }
    throw ShapeError("init: weights must be [out], [in, out] or [KH, KW, C_in, C_out], got " + to_string(s));
}

template <class T>
void initialize(basic_tensor<T>& w, Init init) {
    auto& v = w.mutable_value();
    if (init == Init::zeros || init == Init::ones) {
        v.fill(init == Init::ones ? T(1) : T(0));
        return;
    }
    const auto [fan_in_s, fan_out_s] = fans(w.shape());
    const double fan_in = static_cast<double>(fan_in_s), fan_out = static_cast<double>(fan_out_s);
    double bound = 0, stddev = 0;
    switch (init) {
        case Init::he_uniform: bound = std::sqrt(6 / fan_in); break;
        case Init::he_normal: stddev = std::sqrt(2 / fan_in); break;
        case Init::glorot_uniform: bound = std::sqrt(6 / (fan_in + fan_out)); break;
        case Init::glorot_normal: stddev = std::sqrt(2 / (fan_in + fan_out)); break;
        case Init::lecun_uniform: bound = std::sqrt(3 / fan_in); break;
        case Init::lecun_normal: stddev = std::sqrt(1 / fan_in); break;
        default: break;
    }
    detail::with_generator([&](std::mt19937_64& g) {
        if (bound > 0) {
            std::uniform_real_distribution<double> d(-bound, bound);
            for (auto& e : v) e = static_cast<T>(d(g));
        } else {
            std::normal_distribution<double> d(0, stddev);
            for (auto& e : v) e = static_cast<T>(d(g));
        }
    });
}

template void initialize(basic_tensor<float>&, Init);
template void initialize(basic_tensor<double>&, Init);

}  // namespace xgrad::nn
