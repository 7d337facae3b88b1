// Checks of xgrad::distributed, run by tests/distributed/run.sh under mpirun with 2 ranks.
//
//   check equivalence   2 ranks x batch 32 must train like 1 process x batch 64 (20 steps)
//   check die           rank 1 is killed (SIGKILL) at step 5: the job must end, not hang
//   check hang          rank 1 stops answering at step 5: rank 0 must time out with an error
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdlib>
#include <string>
#include <thread>

#include <fmt/format.h>

#include "xgrad/xgrad.hpp"

namespace dist = xgrad::distributed;
namespace nn = xgrad::nn;
using xgrad::Tensor;

namespace {

struct Net : nn::Module {
    std::shared_ptr<nn::Conv2D> conv =
        add_module("conv", nn::Conv2D(1, 4, 3, {.padding = xgrad::Padding::same}, nn::Activation::relu));
    std::shared_ptr<nn::Dense> fc = add_module("fc", nn::Dense(4 * 4 * 4, 3));
    Tensor forward(const Tensor& x) override { return (*fc)(xgrad::flatten(xgrad::max_pool2d((*conv)(x)))); }
};

// 1280 random 8x8 images; the class is which third of the image is brightest.
xgrad::data::Dataset make_data() {
    xgrad::manual_seed(7);
    auto x = xgrad::rand({1280, 8, 8, 1});
    xt::xarray<float> y = xt::empty<float>(xgrad::Shape{1280});
    for (std::size_t i = 0; i < 1280; ++i) {
        float best = -1;
        for (std::size_t part = 0; part < 3; ++part) {
            float s = 0;
            for (std::size_t r = part * 2; r < part * 2 + 2; ++r)
                for (std::size_t c = 0; c < 8; ++c) s += x.value()(i, r, c, 0);
            if (s > best) best = s, y(i) = static_cast<float>(part);
        }
    }
    return {x, Tensor(y)};
}

constexpr std::size_t kSteps = 20;

// Trains `model` for kSteps batches of `loader`; with an averager, as one of several ranks.
double train(Net& model, const xgrad::data::DataLoader& loader, dist::GradientAverager* averager, int die_at = -1,
             bool hang = false) {
    xgrad::optim::SGD opt(model.parameters(), {.lr = 0.05, .momentum = 0.9});
    double seen = 0;
    for (std::size_t step = 0; step < kSteps; ++step) {
        if (static_cast<int>(step) == die_at) {
            if (hang) std::this_thread::sleep_for(std::chrono::minutes(10));
            std::raise(SIGKILL);  // dies as a crashed or OOM-killed process does
        }
        const auto b = loader.batch(step / loader.size(), step % loader.size());
        auto loss = xgrad::cross_entropy(model(b.x), b.y);
        opt.zero_grad();
        loss.backward();
        if (averager) averager->average();
        opt.step();
        seen += static_cast<double>(b.y.size());
    }
    return seen;
}

int equivalence(const xgrad::data::Dataset& data) {
    const auto rank = static_cast<std::size_t>(dist::rank()), world = static_cast<std::size_t>(dist::world_size());
    xgrad::manual_seed(100 + rank);  // different initial weights on every rank ...
    Net model;
    dist::broadcast(model);  // ... until rank 0's are broadcast
    dist::GradientAverager averager(model.parameters(), {.bucket_bytes = 512});
    const xgrad::data::DataLoader shard(data, {.batch_size = 32, .seed = 3, .shard = rank, .shards = world});
    std::vector<double> seen{train(model, shard, &averager)};
    dist::allreduce_sum(seen);

    // Every rank must hold the same weights: the sum of rank 0's minus everyone else's is 0.
    std::vector<double> signed_sum;
    for (const auto& [name, t] : model.state())
        for (float v : t.value()) signed_sum.push_back(rank == 0 ? v : -static_cast<double>(v) / double(world - 1));
    dist::allreduce_sum(signed_sum);
    double spread = 0;
    for (double v : signed_sum) spread = std::max(spread, std::abs(v));
    if (!dist::is_main()) return 0;

    xgrad::manual_seed(100);  // rank 0's initial weights, trained alone on global batches of 64
    Net alone;
    const xgrad::data::DataLoader whole(data, {.batch_size = 32 * world, .seed = 3});
    train(alone, whole, nullptr);
    double largest = 0;
    const auto a = model.state(), b = alone.state();
    for (std::size_t i = 0; i < a.size(); ++i)
        largest = std::max(largest, static_cast<double>(xt::amax(xt::abs(a[i].second.value() - b[i].second.value()))()));
    const bool ok = largest < 1e-4 && spread == 0 && seen[0] == static_cast<double>(kSteps * 32 * world);
    fmt::print("equivalence: {} ranks x batch 32 vs 1 process x batch {} after {} steps: max |difference| {:.3g}; "
               "ranks differ by {:.3g}; {} samples; {} buckets, allreduce {:.3f} ms per step: {}\n",
               world, 32 * world, kSteps, largest, spread, seen[0], averager.buckets(),
               1e3 * averager.seconds() / static_cast<double>(averager.calls()), ok ? "PASS" : "FAIL");
    return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    dist::Session mpi(argc, argv);
    const std::string mode = argc > 1 ? argv[1] : "equivalence";
    try {
        xgrad::set_num_threads(1);
        const auto data = make_data();
        if (mode == "equivalence") return equivalence(data);
        // die / hang: rank 1 leaves at step 5; rank 0 must not wait forever.
        xgrad::manual_seed(1);
        Net model;
        dist::broadcast(model);
        dist::GradientAverager averager(model.parameters());
        const xgrad::data::DataLoader shard(
            data, {.batch_size = 32, .seed = 3, .shard = mpi.rank(), .shards = mpi.world_size()});
        train(model, shard, &averager, dist::rank() == 1 ? 5 : -1, mode == "hang");
        fmt::print("rank {}: finished although rank 1 left: FAIL\n", dist::rank());
        return 1;
    } catch (const xgrad::Error& e) {
        fmt::print(stderr, "check: {}\n", e.what());
        dist::abort(2);
    }
}
