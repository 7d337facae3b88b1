// Float64 training: modules, layers, Sequential, optimizers, schedulers, checkpoints and the
// data loader in double precision, and float32 optimizers that form their constants in double.

#include <cmath>
#include <filesystem>

#include <catch2/catch.hpp>

#include "helpers.hpp"
#include "xgrad/xgrad.hpp"

using xgrad::Tensor64;
using Catch::Matchers::Contains;
namespace nn = xgrad::nn;
namespace optim = xgrad::optim;

namespace {

// W1 in float64.
struct Net64 : nn::Module64 {
    const xgrad::Conv2dOptions same{.padding = xgrad::Padding::same};
    std::shared_ptr<nn::Conv2D64> conv1 = add_module("conv1", nn::Conv2D64(1, 8, 3, same, nn::Activation::relu));
    std::shared_ptr<nn::Conv2D64> conv2 = add_module("conv2", nn::Conv2D64(8, 16, 3, same, nn::Activation::relu));
    std::shared_ptr<nn::Dense64> fc1 = add_module("fc1", nn::Dense64(7 * 7 * 16, 32, nn::Activation::relu));
    std::shared_ptr<nn::Dense64> fc2 = add_module("fc2", nn::Dense64(32, 10));

    Tensor64 forward(const Tensor64& x) override {
        auto h = xgrad::max_pool2d((*conv1)(x), {.kernel = 2});
        h = xgrad::max_pool2d((*conv2)(h), {.kernel = 2});
        return (*fc2)((*fc1)(xgrad::flatten(h)));
    }
};

xgrad::data::Dataset64 fashion_slice(std::size_t n) {
    return xgrad::data::load_fashion_mnist(xgrad::data::Split::train).slice(0, n).cast<double>();
}

}  // namespace

TEST_CASE("float64: the W1 CNN trains end to end on Fashion-MNIST, with a scheduler and a checkpoint",
          "[float64][nn]") {
    xgrad::manual_seed(3);
    const auto data = fashion_slice(640);
    REQUIRE(data.x.value().dimension() == 4);
    Net64 model;
    for (const auto& p : model.parameters()) CHECK(p.value().size() > 0);
    optim::SGD opt(model.parameters(), {.lr = 0.05, .momentum = 0.9});
    CHECK(opt.params().empty());
    CHECK(opt.params64().size() == 8);
    optim::StepLR schedule(opt, 1, 0.5);
    xgrad::data::DataLoader64 loader(data, {.batch_size = 64, .seed = 1});
    auto epoch_loss = [&](std::size_t epoch) {
        double total = 0;
        for (std::size_t i = 0; i < loader.size(); ++i) {
            const auto b = loader.batch(epoch, i);
            auto loss = xgrad::cross_entropy(model(b.x), b.y);
            opt.zero_grad();
            loss.backward();
            opt.step();
            total += loss.item();
        }
        return total / static_cast<double>(loader.size());
    };
    const double first = epoch_loss(0);
    schedule.step();
    const double second = epoch_loss(1);
    CHECK(second < first);
    CHECK(opt.lr() == Approx(0.025));

    const auto path = (std::filesystem::temp_directory_path() / "xgrad_float64_checkpoint.npz").string();
    xgrad::io::save_checkpoint(path, model, opt, 2);
    Net64 restored;
    optim::SGD restored_opt(restored.parameters(), {.lr = 0.05, .momentum = 0.9});
    CHECK(xgrad::io::load_checkpoint(path, restored, restored_opt) == 2);
    std::filesystem::remove(path);
    const auto a = model.parameters(), b = restored.parameters();
    for (std::size_t i = 0; i < a.size(); ++i)
        CHECK(xgrad_test::array_diff(a[i].value(), b[i].value(), 0, 0) == "");  // float64 kept exactly
    CHECK(restored_opt.lr() == Approx(0.025));
    const auto batch = loader.batch(0, 0);
    CHECK(nn::count_correct(model(batch.x), batch.y) == nn::count_correct(restored(batch.x), batch.y));
}

TEST_CASE("float64: Sequential64 fits, evaluates and predicts", "[float64][nn]") {
    xgrad::manual_seed(4);
    const auto data = fashion_slice(256);
    nn::Sequential64 model({28, 28, 1});
    model.add(nn::Flatten64()).add(nn::Dense64(784, 32, nn::Activation::relu)).add(nn::Dense64(32, 10));
    CHECK_THAT(model.summary(false), Contains("Dense") && Contains("25120"));
    model.compile(std::make_shared<optim::Adam>(model.parameters(), optim::AdamOptions{.lr = 1e-3}));
    const auto history = model.fit(data, {.epochs = 3, .batch_size = 32, .progress = xgrad::Progress::Mode::quiet});
    CHECK(history.epochs.back().loss < history.epochs.front().loss);
    const auto e = model.evaluate(data);
    CHECK(e.accuracy > 0.5);
    CHECK(model.predict(data.x).shape() == xgrad::Shape{256, 10});
    // A float32 optimizer does not fit a float64 model.
    nn::Sequential other({2});
    other.add(nn::Dense(2, 1));
    REQUIRE_THROWS_WITH(model.compile(std::make_shared<optim::SGD>(other.parameters())), Contains("float32"));
}

TEST_CASE("float64: every optimizer in float64 matches its float32 run to float32 precision", "[float64][optim]") {
    auto compare = [](auto make) {
        Tensor64 p64(xt::xarray<double>{1.0, -2.0, 0.5}, true);
        xgrad::Tensor p32(xt::xarray<float>{1.0f, -2.0f, 0.5f}, true);
        auto o64 = make(std::vector<Tensor64>{p64});
        auto o32 = make(std::vector<xgrad::Tensor>{p32});
        for (int t = 1; t <= 20; ++t) {
            const xt::xarray<double> g{0.3 * t, -1.0 + 0.05 * t, std::sin(t)};
            xgrad::sum(p64 * Tensor64(g)).backward();
            xgrad::sum(p32 * xgrad::Tensor(xt::xarray<float>(xt::cast<float>(g)))).backward();
            o64->step();
            o32->step();
            o64->zero_grad();
            o32->zero_grad();
        }
        for (std::size_t k = 0; k < 3; ++k) CHECK(p32.value()(k) == Approx(p64.value()(k)).epsilon(1e-5));
    };
    compare([](auto ps) { return std::make_unique<optim::SGD>(ps, optim::SGDOptions{.lr = 0.01, .momentum = 0.9}); });
    compare([](auto ps) { return std::make_unique<optim::Adagrad>(ps, optim::AdagradOptions{.lr = 0.1}); });
    compare([](auto ps) { return std::make_unique<optim::RMSprop>(ps, optim::RMSpropOptions{.centered = true}); });
    compare([](auto ps) { return std::make_unique<optim::Adam>(ps, optim::AdamOptions{.lr = 0.01}); });
    compare([](auto ps) { return std::make_unique<optim::AdamW>(ps, optim::AdamOptions{.lr = 0.01, .weight_decay = 0.1}); });
}

TEST_CASE("float64: Adam in float32 follows the float64 trajectory (1 - beta formed in double)", "[float64][optim]") {
    // A constant gradient: each step moves p by about lr. With 1 - beta2 formed from beta2
    // rounded to float (1.3e-5 relative off) the float32 run drifted 6.6e-6 relative from the
    // float64 one after 12 steps; with the constants formed in double, 5.4e-8.
    Tensor64 p64(xt::xarray<double>{0.0}, true);
    xgrad::Tensor p32(xt::xarray<float>{0.0f}, true);
    optim::Adam a64({p64}, {.lr = 0.1}), a32({p32}, {.lr = 0.1});
    for (int t = 0; t < 12; ++t) {
        xgrad::sum(p64 * 0.7).backward();
        xgrad::sum(p32 * 0.7f).backward();
        a64.step();
        a32.step();
        a64.zero_grad();
        a32.zero_grad();
    }
    const double rel = std::abs(p32.value()(0) - p64.value()(0)) / std::abs(p64.value()(0));
    INFO("relative drift " << rel);
    CHECK(rel < 1e-6);
}

TEST_CASE("float64: datasets cast between precisions; a float64 loader keeps its order", "[float64][data]") {
    const xgrad::data::Dataset d32{xgrad::Tensor(xt::xarray<float>{{1, 2}, {3, 4}, {5, 6}}),
                                   xgrad::Tensor(xt::xarray<float>{0, 1, 0})};
    const auto d64 = d32.cast<double>();
    CHECK(xgrad_test::array_diff(d64.x.value(), xt::xarray<double>{{1, 2}, {3, 4}, {5, 6}}, 0, 0) == "");
    xgrad::data::DataLoader l32(d32, {.batch_size = 2, .seed = 5});
    xgrad::data::DataLoader64 l64(d64, {.batch_size = 2, .seed = 5});
    CHECK(xgrad_test::array_diff(xt::xarray<double>(xt::cast<double>(l32.batch(1, 0).x.value())),
                                 l64.batch(1, 0).x.value(), 0, 0) == "");
}
