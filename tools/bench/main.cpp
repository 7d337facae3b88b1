// bench: xgrad's benchmarks (never timed tests). Prints a readable table and one
// `RESULT {json}` line per figure.
//
//   bench ops  [--threads N] [--reps R] [--only NAME]   conv A-E, maxpool, dense (anchors.md W2)
//   bench gemm [--threads N] [--size S]                  sgemm GFLOP/s, the machine's reference

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "xgrad/xgrad.hpp"

namespace {

using Clock = std::chrono::steady_clock;

// Median milliseconds of `reps` runs of f, after one warm-up run.
double median_ms(int reps, const std::function<void()>& f) {
    f();
    std::vector<double> ms;
    for (int i = 0; i < reps; ++i) {
        const auto t0 = Clock::now();
        f();
        ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    std::nth_element(ms.begin(), ms.begin() + static_cast<long>(ms.size() / 2), ms.end());
    return ms[ms.size() / 2];
}

void result(const std::string& name, const std::string& fields) {
    fmt::print("RESULT {{\"bench\": \"{}\", {}}}\n", name, fields);
}

struct ConvShape {
    const char* name;
    std::size_t h, w, c, f, k;
    int stride, pad;
};

// anchors.md W2, batch 64.
const ConvShape kConvs[] = {
    {"convA", 28, 28, 1, 32, 3, 1, 1},  {"convB", 14, 14, 32, 64, 3, 1, 1}, {"convC", 32, 32, 3, 64, 3, 1, 1},
    {"convD", 32, 32, 64, 128, 3, 2, 1}, {"convE", 16, 16, 64, 64, 5, 1, 0},
};

void bench_ops(int reps, const std::string& only) {
    constexpr std::size_t n = 64;
    xgrad::manual_seed(0);
    fmt::print("{:<8} {:<8} {:>9} {:>9} {:>12} {:>9}\n", "op", "variant", "fwd ms", "GFLOP/s", "fwd+bwd ms",
               "GFLOP/s");
    for (const auto& s : kConvs) {
        if (!only.empty() && only != s.name) continue;
        auto x = xgrad::randn({n, s.h, s.w, s.c}, true);
        auto w = xgrad::randn({s.k, s.k, s.c, s.f}, true);
        const xgrad::Conv2dOptions base{.stride = s.stride, .padding = s.pad};
        const auto y0 = xgrad::conv2d(x, w, base);
        const double flop = 2.0 * static_cast<double>(y0.size() * s.k * s.k * s.c);
        for (auto v : {xgrad::ConvBackward::col2img, xgrad::ConvBackward::flipped}) {
            auto o = base;
            o.backward = v;
            const double fwd = median_ms(reps, [&] {
                xgrad::NoGradGuard g;
                xgrad::conv2d(x, w, o);
            });
            const auto gy = xt::ones_like(y0.value());
            const double both = median_ms(reps, [&] {
                x.zero_grad();
                w.zero_grad();
                xgrad::conv2d(x, w, o).backward(gy);
            });
            const char* vn = v == xgrad::ConvBackward::col2img ? "col2img" : "flipped";
            fmt::print("{:<8} {:<8} {:>9.2f} {:>9.1f} {:>12.2f} {:>9.1f}\n", s.name, vn, fwd, flop / fwd / 1e6, both,
                       3 * flop / both / 1e6);
            result("ops", fmt::format("\"op\": \"{}\", \"variant\": \"{}\", \"fwd_ms\": {:.3f}, \"fwdbwd_ms\": {:.3f}, "
                                      "\"fwd_gflops\": {:.1f}, \"fwdbwd_gflops\": {:.1f}",
                                      s.name, vn, fwd, both, flop / fwd / 1e6, 3 * flop / both / 1e6));
        }
    }
    if (only.empty() || only == "maxpool") {
        auto x = xgrad::randn({n, 28, 28, 32}, true);
        const double fwd = median_ms(reps, [&] {
            xgrad::NoGradGuard g;
            xgrad::max_pool2d(x, {.kernel = 2});
        });
        const double both = median_ms(reps, [&] {
            x.zero_grad();
            xgrad::sum(xgrad::max_pool2d(x, {.kernel = 2})).backward();
        });
        fmt::print("{:<8} {:<8} {:>9.2f} {:>9} {:>12.2f}\n", "maxpool", "", fwd, "", both);
        result("ops", fmt::format("\"op\": \"maxpool\", \"fwd_ms\": {:.3f}, \"fwdbwd_ms\": {:.3f}", fwd, both));
    }
    if (only.empty() || only == "dense") {
        for (auto [in, out] : {std::pair<std::size_t, std::size_t>{3136, 128}, {128, 10}}) {
            auto x = xgrad::randn({n, in}, true);
            auto w = xgrad::randn({in, out}, true);
            auto b = xgrad::randn({out}, true);
            const double fwd = median_ms(reps, [&] {
                xgrad::NoGradGuard g;
                xgrad::linear(x, w, b);
            });
            const double both = median_ms(reps, [&] {
                x.zero_grad();
                w.zero_grad();
                b.zero_grad();
                xgrad::sum(xgrad::linear(x, w, b)).backward();
            });
            const auto name = fmt::format("dense {}->{}", in, out);
            fmt::print("{:<17} {:>9.3f} {:>9} {:>12.3f}\n", name, fwd, "", both);
            result("ops", fmt::format("\"op\": \"{}\", \"fwd_ms\": {:.3f}, \"fwdbwd_ms\": {:.3f}", name, fwd, both));
        }
    }
}

void bench_gemm(int reps, std::size_t size) {
    auto a = xgrad::randn({size, size});
    auto b = xgrad::randn({size, size});
    xgrad::NoGradGuard g;
    const double ms = median_ms(reps, [&] { xgrad::matmul(a, b); });
    const double gflops = 2.0 * static_cast<double>(size * size * size) / ms / 1e6;
    fmt::print("sgemm n={}: {:.2f} ms, {:.1f} GFLOP/s\n", size, ms, gflops);
    result("gemm", fmt::format("\"n\": {}, \"ms\": {:.3f}, \"gflops\": {:.1f}", size, ms, gflops));
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"xgrad benchmarks: medians of repeated runs, one RESULT json line per figure."};
    int threads = 0, reps = 10;
    app.add_option("--threads", threads, "Threads for OpenMP and OpenBLAS (default: all cores)");
    app.add_option("--reps", reps, "Timed repetitions per figure (median reported)");
    app.require_subcommand(1);
    app.fallthrough();  // --threads and --reps may follow the subcommand
    std::string only;
    auto* ops = app.add_subcommand("ops", "conv A-E (both input-gradient variants), maxpool, dense");
    ops->add_option("--only", only, "convA..convE, maxpool or dense");
    std::size_t size = 2048;
    auto* gemm = app.add_subcommand("gemm", "sgemm GFLOP/s");
    gemm->add_option("--size", size, "Matrix size");
    CLI11_PARSE(app, argc, argv);
    try {
        if (threads > 0) xgrad::set_num_threads(threads);
        fmt::print("threads: {}\n", xgrad::num_threads());
        if (*ops) bench_ops(reps, only);
        if (*gemm) bench_gemm(reps, size);
    } catch (const xgrad::Error& e) {
        fmt::print(stderr, "bench: {}\n", e.what());
        return 2;
    }
    return 0;
}
