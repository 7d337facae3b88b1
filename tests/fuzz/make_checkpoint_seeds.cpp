// Writes the checkpoint fuzz target's seed corpus (tests/fuzz/corpus/checkpoint): a valid
// checkpoint of xgrad_fuzz::Net after one SGD-momentum step, and copies of it whose optimizer
// entries are empty, NaN, negative, fractional or missing, so that the fuzzer starts beside
// every validation branch of load_checkpoint. Run by hand: make_checkpoint_seeds DIR.
#include <cstdio>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "fuzz_net.hpp"

namespace io = xgrad::io;

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: make_checkpoint_seeds DIR\n");
        return 2;
    }
    const std::string dir = argv[1];
    xgrad::manual_seed(1);
    xgrad_fuzz::Net model;
    xgrad::optim::SGD opt(model.parameters(), {.lr = 0.1, .momentum = 0.9});
    xgrad::sum(model.forward(xgrad::randn({2, 4, 4, 1}))).backward();
    opt.step();
    const std::string base = dir + "/sgd_one_step.npz";
    io::save_checkpoint(base, model, opt, 1);
    const auto full = io::read_npz(base);
    const double nan = std::numeric_limits<double>::quiet_NaN();
    using Change = std::function<void(io::NpzArchive&)>;
    auto set = [](const std::string& key, xt::xarray<double> v) -> Change {
        return [key, v](io::NpzArchive& a) {
            for (auto& [name, arr] : a)
                if (name == key) arr = io::to_npy(v);
        };
    };
    auto drop = [](const std::string& prefix) -> Change {
        return [prefix](io::NpzArchive& a) {
            std::erase_if(a, [&](const auto& e) { return e.first.rfind(prefix, 0) == 0; });
        };
    };
    const std::vector<std::pair<std::string, Change>> variants = {
        {"steps_empty", set("optim/steps", xt::xarray<double>::from_shape({0}))},
        {"steps_nan", set("optim/steps", xt::xarray<double>(nan))},
        {"steps_negative", set("optim/steps", xt::xarray<double>(-3.0))},
        {"steps_fractional", set("optim/steps", xt::xarray<double>(0.5))},
        {"lr_empty", set("optim/lr", xt::xarray<double>::from_shape({0}))},
        {"lr_nan", set("optim/lr", xt::xarray<double>(nan))},
        {"lr_negative", set("optim/lr", xt::xarray<double>(-1.0))},
        {"steps_missing", drop("optim/steps")},
        {"lr_missing", drop("optim/lr")},
        {"stepped_missing", drop("optim/stepped")},
        {"momentum_missing", drop("optim/momentum_buffer")},
        {"one_momentum_missing", drop("optim/momentum_buffer.2")},
        {"epoch_negative", set("epoch", xt::xarray<double>(-1.0))},
    };
    for (const auto& [name, change] : variants) {
        auto arrays = full;
        change(arrays);
        io::write_npz(dir + "/" + name + ".npz", arrays);
    }
    std::printf("%zu seeds in %s\n", variants.size() + 1, dir.c_str());
    return 0;
}
