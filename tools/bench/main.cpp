// bench: xgrad's benchmarks (never timed tests). Prints a readable table and one
// `RESULT {json}` line per figure.
//
//   bench ops  [--threads N] [--reps R] [--only NAME]   conv A-E, maxpool, dense (anchors.md W2)
//   bench gemm [--threads N] [--size S]                  sgemm GFLOP/s, the machine's reference
//   bench w1   [--threads N] [--batches B]                W1: one training epoch (or B batches)
//   bench infer [--threads N]                            the 10k test set at batch 256
//   bench lstm  [--threads N] [--batches B]              LSTM(28, 128) + Dense training steps

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

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
    // dW and dX: the backward pass's two halves, each timed as forward + that gradient alone
    // (only w, or only x, requiring grad) minus the forward.
    fmt::print("{:<8} {:<9} {:>9} {:>9} {:>12} {:>9} {:>7} {:>7}\n", "op", "variant", "fwd ms", "GFLOP/s",
               "fwd+bwd ms", "GFLOP/s", "dW ms", "dX ms");
    for (const auto& s : kConvs) {
        if (!only.empty() && only != s.name) continue;
        auto x = xgrad::randn({n, s.h, s.w, s.c}, true);
        auto w = xgrad::randn({s.k, s.k, s.c, s.f}, true);
        const xgrad::Tensor x_const(x.value()), w_const(w.value());
        const xgrad::Conv2dOptions base{.stride = s.stride, .padding = s.pad};
        const auto y0 = xgrad::conv2d(x, w, base);
        const double flop = 2.0 * static_cast<double>(y0.size() * s.k * s.k * s.c);
        // automatic is the default, what a user gets (tools/compare_torch.py reports it)
        for (auto v : {xgrad::ConvBackward::col2img, xgrad::ConvBackward::flipped, xgrad::ConvBackward::automatic}) {
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
            const double fwd_dw = median_ms(reps, [&] {
                w.zero_grad();
                xgrad::conv2d(x_const, w, o).backward(gy);
            });
            const double fwd_dx = median_ms(reps, [&] {
                x.zero_grad();
                xgrad::conv2d(x, w_const, o).backward(gy);
            });
            const char* vn = v == xgrad::ConvBackward::col2img   ? "col2img"
                             : v == xgrad::ConvBackward::flipped ? "flipped"
                                                                 : "automatic";
            fmt::print("{:<8} {:<9} {:>9.2f} {:>9.1f} {:>12.2f} {:>9.1f} {:>7.2f} {:>7.2f}\n", s.name, vn, fwd,
                       flop / fwd / 1e6, both, 3 * flop / both / 1e6, fwd_dw - fwd, fwd_dx - fwd);
            result("ops", fmt::format("\"op\": \"{}\", \"variant\": \"{}\", \"fwd_ms\": {:.3f}, \"fwdbwd_ms\": {:.3f}, "
                                      "\"fwd_gflops\": {:.1f}, \"fwdbwd_gflops\": {:.1f}, \"fwd_dw_ms\": {:.3f}, "
                                      "\"fwd_dx_ms\": {:.3f}",
                                      s.name, vn, fwd, both, flop / fwd / 1e6, 3 * flop / both / 1e6, fwd_dw, fwd_dx));
        }
    }
    if (only.empty() || only == "maxpool") {
        auto x = xgrad::randn({n, 28, 28, 32}, true);
        const double fwd = median_ms(reps, [&] {
            xgrad::NoGradGuard g;
            xgrad::max_pool2d(x, {.kernel = 2});
        });
        const auto gy = xt::ones<float>({n, std::size_t{14}, std::size_t{14}, std::size_t{32}});
        const double both = median_ms(reps, [&] {
            x.zero_grad();
            xgrad::max_pool2d(x, {.kernel = 2}).backward(gy);
        });
        fmt::print("{:<8} {:<9} {:>9.2f} {:>9} {:>12.2f}\n", "maxpool", "", fwd, "", both);
        result("ops", fmt::format("\"op\": \"maxpool\", \"fwd_ms\": {:.3f}, \"fwdbwd_ms\": {:.3f}", fwd, both));
    }
    if (only.empty() || only == "elementwise") {
        // Element-wise, softmax, reduction and shape ops on [256, 4096] (1M floats): the forward,
        // and forward + backward (of the sum of the output).
        auto x = xgrad::randn({256, 4096}, true);
        const std::pair<const char*, std::function<xgrad::Tensor()>> cases[] = {
            {"exp", [&] { return xgrad::exp(x); }},
            {"tanh", [&] { return xgrad::tanh(x); }},
            {"sigmoid", [&] { return xgrad::sigmoid(x); }},
            {"gelu", [&] { return xgrad::gelu(x); }},
            {"softmax", [&] { return xgrad::softmax(x, -1); }},
            {"log_softmax", [&] { return xgrad::log_softmax(x, -1); }},
            {"layer_norm", [&] { return xgrad::layer_norm(x, {4096}); }},
            {"sum", [&] { return xgrad::sum(x, {0}); }},
            {"transpose", [&] { return xgrad::transpose(x); }},
        };
        for (const auto& [name, f] : cases) {
            const double fwd = median_ms(reps, [&] {
                xgrad::NoGradGuard g;
                f();
            });
            const double both = median_ms(reps, [&] {
                x.zero_grad();
                xgrad::sum(f()).backward();
            });
            fmt::print("{:<18} {:>9.3f} {:>9} {:>12.3f}\n", name, fwd, "", both);
            result("ops", fmt::format("\"op\": \"{}\", \"fwd_ms\": {:.3f}, \"fwdbwd_ms\": {:.3f}", name, fwd, both));
        }
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
            fmt::print("{:<18} {:>9.3f} {:>9} {:>12.3f}\n", name, fwd, "", both);
            result("ops", fmt::format("\"op\": \"{}\", \"fwd_ms\": {:.3f}, \"fwdbwd_ms\": {:.3f}", name, fwd, both));
        }
    }
}

// anchors.md W1: Conv2D(32, 3x3, same) + ReLU -> MaxPool 2 -> Conv2D(64, 3x3, same) + ReLU ->
// MaxPool 2 -> Flatten -> Dense(128) + ReLU -> Dense(10).
xgrad::nn::Sequential w1_model() {
    using namespace xgrad::nn;
    const xgrad::Conv2dOptions same{.padding = xgrad::Padding::same};
    Sequential m({28, 28, 1});
    m.add(Conv2D(1, 32, 3, same, Activation::relu))
        .add(MaxPool2D({.kernel = 2}))
        .add(Conv2D(32, 64, 3, same, Activation::relu))
        .add(MaxPool2D({.kernel = 2}))
        .add(Flatten())
        .add(Dense(7 * 7 * 64, 128, Activation::relu))
        .add(Dense(128, 10));
    return m;
}

// Resident memory now, from /proc/self/statm (pages).
double rss_mib() {
    std::FILE* f = std::fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f) {
        if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        std::fclose(f);
    }
    return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}

double peak_rss_mib() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_maxrss) / 1024.0;
}

// One epoch of W1 training (SGD lr 0.01 momentum 0.9, batch 64, shuffled), or its first
// `batches` batches with the epoch time extrapolated; more batches than an epoch run on into
// the next epochs. Resident memory is sampled after batch 100, halfway and at the end: a
// training loop that leaks keeps growing from the second sample to the third. With
// `max_growth` > 0, returns false when the end exceeds batch 100's figure by more than that
// many percent (tools/test runs 2000 batches, across the smaller last batch of epoch 1).
// Under mpirun (after distributed::init), each rank trains on its share of every global batch
// of 64 and the gradients are averaged; rank 0 reports, with the allreduce time per step.
bool bench_w1(std::size_t batches, double max_growth) {
    namespace dist = xgrad::distributed;
    const auto rank = static_cast<std::size_t>(dist::rank()), ranks = static_cast<std::size_t>(dist::world_size());
    xgrad::manual_seed(1);
    const auto train = xgrad::data::load_fashion_mnist(xgrad::data::Split::train);
    auto model = w1_model();
    dist::broadcast(model);
    dist::GradientAverager averager(model.parameters());
    xgrad::optim::SGD opt(model.parameters(), {.lr = 0.01, .momentum = 0.9});
    xgrad::data::DataLoader loader(train, {.batch_size = 64 / ranks, .seed = 1, .shard = rank, .shards = ranks});
    const std::size_t n = batches ? batches : loader.size();
    double loss_sum = 0, rss_100 = 0, rss_mid = 0, wait_s = 0;
    const auto t0 = Clock::now();
    for (std::size_t i = 0; i < n; ++i) {
        if (i == 100) rss_100 = rss_mib();
        if (i == n / 2) rss_mid = rss_mib();
        const auto b = loader.batch(i / loader.size(), i % loader.size());
        auto loss = xgrad::cross_entropy(model(b.x), b.y);
        opt.zero_grad();
        loss.backward();
        if (ranks > 1) {  // the wait for the slowest rank, apart from the allreduce itself
            const auto w0 = Clock::now();
            dist::barrier();
            wait_s += std::chrono::duration<double>(Clock::now() - w0).count();
        }
        averager.average();
        opt.step();
        loss_sum += loss.item();
    }
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    const double epoch_s = s / static_cast<double>(n) * static_cast<double>(loader.size());
    const double images = static_cast<double>(n * 64) / s;
    const double rss_end = rss_mib();
    if (rank != 0) return true;
    if (ranks > 1) {
        const double ms = 1e3 * averager.seconds() / static_cast<double>(averager.calls());
        const double wait_ms = 1e3 * wait_s / static_cast<double>(n);
        fmt::print("{} ranks x {} threads, batch {} per rank; per step: gradient allreduce {:.2f} ms ({} bucket(s)), "
                   "waiting for the slowest rank {:.2f} ms\n",
                   ranks, xgrad::num_threads(), 64 / ranks, ms, averager.buckets(), wait_ms);
        result("w1_allreduce", fmt::format("\"ranks\": {}, \"allreduce_ms_per_step\": {:.3f}, "
                                           "\"wait_ms_per_step\": {:.3f}",
                                           ranks, ms, wait_ms));
    }
    fmt::print("W1: {} batches in {:.2f} s -> {:.2f} s/epoch, {:.0f} img/s, mean loss {:.4f}, peak RSS {:.0f} MiB, "
               "RSS after batch 100 {:.1f} MiB, halfway {:.1f} MiB, at the end {:.1f} MiB\n",
               n, s, epoch_s, images, loss_sum / static_cast<double>(n), peak_rss_mib(), rss_100, rss_mid, rss_end);
    result("w1", fmt::format("\"batches\": {}, \"seconds\": {:.3f}, \"s_per_epoch\": {:.3f}, \"images_per_s\": {:.1f}, "
                             "\"peak_rss_mib\": {:.1f}, \"rss_at_100_mib\": {:.1f}, \"rss_half_mib\": {:.1f}, "
                             "\"rss_end_mib\": {:.1f}",
                             n, s, epoch_s, images, peak_rss_mib(), rss_100, rss_mid, rss_end));
    if (max_growth <= 0 || n <= 100) return true;
    const double growth = 100.0 * (rss_end - rss_100) / rss_100;
    const bool ok = growth <= max_growth;
    fmt::print("RSS growth from batch 100 to batch {}: {:+.2f}% ({}: at most {}%)\n", n, growth, ok ? "ok" : "FAILED",
               max_growth);
    return ok;
}

// Inference over the 10k test images at batch 256 (an untrained W1: the arithmetic is the same).
// The fashion_mnist_lstm example's model on random data: LSTM(28, 128) reading 28 rows of 28
// values, Dense(128, 10) on its last state, cross-entropy, Adam; `batches` steps of batch 128
// timed after 5 warm-up steps (tools/compare_torch.py runs nn.LSTM the same way).
void bench_lstm(std::size_t batches) {
    xgrad::manual_seed(0);
    xgrad::nn::LSTM lstm(28, 128);
    xgrad::nn::Dense head(128, 10);
    std::vector<xgrad::Tensor> params = lstm.parameters();
    for (const auto& p : head.parameters()) params.push_back(p);
    xgrad::optim::Adam opt(params, {.lr = 1e-3});
    const auto x = xgrad::rand({128, 28, 28});
    xt::xarray<float> labels = xt::zeros<float>({std::size_t{128}});
    for (std::size_t i = 0; i < 128; ++i) labels(i) = static_cast<float>(i % 10);
    const xgrad::Tensor y(labels);
    const auto step = [&] {
        const auto h = lstm.run(x).second.h;  // [1, 128, 128]
        auto loss = xgrad::cross_entropy(head(xgrad::reshape(h, {128, 128})), y);
        opt.zero_grad();
        loss.backward();
        opt.step();
    };
    for (int i = 0; i < 5; ++i) step();
    const auto t0 = Clock::now();
    for (std::size_t i = 0; i < batches; ++i) step();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    fmt::print("LSTM(28, 128) + Dense, Adam, batch 128: {} batches in {:.2f} s -> {:.2f} s per 100\n", batches, s,
               s / static_cast<double>(batches) * 100);
    result("lstm", fmt::format("\"batches\": {}, \"s_per_100\": {:.4f}", batches, s / static_cast<double>(batches) * 100));
}

void bench_infer(int reps) {
    xgrad::manual_seed(1);
    const auto test = xgrad::data::load_fashion_mnist(xgrad::data::Split::test);
    auto model = w1_model();
    const double ms = median_ms(reps, [&] { model.predict(test.x, 256); });
    const double images = static_cast<double>(test.size()) / (ms / 1000);
    fmt::print("inference: 10000 images in {:.1f} ms, {:.0f} img/s\n", ms, images);
    result("infer", fmt::format("\"ms\": {:.2f}, \"images_per_s\": {:.1f}", ms, images));
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
    bool bf16 = false;
    app.add_flag("--bf16", bf16, "bf16 mixed precision for every figure (xgrad/precision.hpp; gemm: the bf16 products)");
    app.require_subcommand(1);
    app.fallthrough();  // --threads and --reps may follow the subcommand
    std::string only;
    auto* ops = app.add_subcommand("ops", "conv A-E (each input-gradient variant, and the automatic default), maxpool, "
                                          "dense, elementwise");
    ops->add_option("--only", only, "convA..convE, maxpool, dense or elementwise");
    std::size_t size = 2048;
    auto* gemm = app.add_subcommand("gemm", "sgemm GFLOP/s");
    gemm->add_option("--size", size, "Matrix size");
    std::size_t batches = 0;
    auto* w1 = app.add_subcommand("w1", "one W1 training epoch: s/epoch, img/s, peak RSS");
    w1->add_option("--batches", batches, "Time only the first B batches and extrapolate");
    double max_growth = 0;
    w1->add_option("--max-rss-growth", max_growth, "Fail when RSS grows more than this many percent after batch 100");
    bool distributed = false;
    w1->add_flag("--distributed", distributed, "Data-parallel under mpirun: a global batch of 64 split over the ranks");
    auto* infer = app.add_subcommand("infer", "W1 inference on the test set at batch 256");
    std::size_t lstm_batches = 100;
    auto* lstm = app.add_subcommand("lstm", "LSTM(28, 128) + Dense training steps (the fashion_mnist_lstm model)");
    lstm->add_option("--batches", lstm_batches, "Timed steps");
    CLI11_PARSE(app, argc, argv);
    std::optional<xgrad::distributed::Session> mpi;
    try {
        if (distributed) mpi.emplace(argc, argv);
        if (threads > 0) xgrad::set_num_threads(threads);
        if (xgrad::distributed::is_main())
            fmt::print("threads: {}; products: {}\n", xgrad::num_threads(),
                       bf16 ? fmt::format("bf16 mixed precision on the {} kernels", xgrad::bf16_kernels()) : "float32");
        if (bf16) result("precision", fmt::format("\"bf16\": true, \"kernels\": \"{}\"", xgrad::bf16_kernels()));
        std::optional<xgrad::AutocastGuard> mixed;
        if (bf16) mixed.emplace(xgrad::Precision::bf16);
        if (*ops) bench_ops(reps, only);
        if (*gemm) bench_gemm(reps, size);
        if (*w1 && !bench_w1(batches, max_growth)) return 1;
        if (*infer) bench_infer(std::max(3, reps / 3));
        if (*lstm) bench_lstm(lstm_batches);
    } catch (const xgrad::Error& e) {
        fmt::print(stderr, "bench: {}\n", e.what());
        if (mpi) xgrad::distributed::abort(2);  // the other ranks would wait forever
        return 2;
    }
    return 0;
}
