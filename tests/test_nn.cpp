#include <cstdio>
#include <fstream>
#include <limits>
#include <thread>

#include <catch2/catch.hpp>

#include "helpers.hpp"
#include "xgrad/xgrad.hpp"

using xgrad::Shape;
using xgrad::Tensor;
using Catch::Matchers::Contains;
using namespace xgrad::nn;

namespace {

struct Net : Module {
    std::shared_ptr<Dense> fc1 = add_module("fc1", Dense(4, 8, Activation::relu));
    std::shared_ptr<BatchNorm> bn = add_module("bn", BatchNorm(8));
    std::shared_ptr<Dense> fc2 = add_module("fc2", Dense(8, 3));
    Tensor forward(const Tensor& x) override { return (*fc2)((*bn)((*fc1)(x))); }
};

using xgrad_test::blobs;
using xgrad_test::temp_path;

}  // namespace

TEST_CASE("Module: parameters and buffers are named by module path", "[nn]") {
    Net net;
    std::vector<std::string> names;
    for (const auto& [name, t] : net.named_parameters()) names.push_back(name);
    CHECK(names == std::vector<std::string>{"fc1.weight", "fc1.bias", "bn.weight", "bn.bias", "fc2.weight", "fc2.bias"});
    CHECK(net.named_buffers().size() == 2);
    CHECK(net.named_buffers()[0].first == "bn.running_mean");
    for (const auto& t : net.parameters()) CHECK(t.requires_grad());
}

TEST_CASE("Module: summary lists the module tree with each module's parameters and the totals", "[nn]") {
    struct Shared : Module {
        std::shared_ptr<Dense> fc = add_module("fc", Dense(4, 4));
        std::shared_ptr<Dense> again = add_module("again", fc);  // the same layer twice
        Tensor forward(const Tensor& x) override { return (*again)((*fc)(x)); }
    };
    Net net;
    const auto table = net.summary(false);
    CHECK_THAT(table, Contains("(Net)") || Contains("(Module)"));
    CHECK_THAT(table, Contains("fc1 (Dense)") && Contains("weight [4, 8], bias [8]") && Contains("bn (BatchNorm)"));
    CHECK_THAT(table, Contains("Trainable params: 83") && Contains("Non-trainable (buffers): 16"));
    CHECK_THAT(Shared().summary(false), Contains("Trainable params: 20"));  // counted once
    Sequential no_shape;
    no_shape.add(Dense(3, 2));
    CHECK_THAT(no_shape.summary(false), Contains("0 (Dense)") && Contains("weight [3, 2]"));
}

TEST_CASE("Module: train and eval reach every child", "[nn]") {
    Net net;
    net.eval();
    CHECK_FALSE(net.bn->is_training());
    net.train();
    CHECK(net.fc2->is_training());
}

TEST_CASE("layers: output shapes and initial values", "[nn]") {
    xgrad::manual_seed(0);
    Conv2D conv(3, 8, {3, 5}, {.stride = 2, .padding = xgrad::Padding::same});
    CHECK(conv.weight.shape() == Shape{3, 5, 3, 8});
    CHECK(conv(xgrad::zeros({2, 9, 10, 3})).shape() == Shape{2, 5, 5, 8});
    CHECK(xt::all(xt::equal(conv.bias.value(), 0.0f)));
    const float bound = std::sqrt(6.0f / (3 * 5 * 3));  // He-uniform, fan_in = KH·KW·C_in
    CHECK(xt::amax(xt::abs(conv.weight.value()))() <= bound);
    CHECK(xt::amax(xt::abs(conv.weight.value()))() > 0.8f * bound);
    CHECK(Dense(5, 2)(xgrad::zeros({7, 5})).shape() == Shape{7, 2});
    CHECK(MaxPool2D({.kernel = 2})(xgrad::zeros({1, 4, 4, 3})).shape() == Shape{1, 2, 2, 3});
    CHECK(GlobalAvgPool2D()(xgrad::zeros({2, 4, 4, 3})).shape() == Shape{2, 3});
    CHECK(Flatten()(xgrad::zeros({2, 4, 4, 3})).shape() == Shape{2, 48});
    CHECK(xgrad_test::array_diff(Softmax()(xgrad::zeros({1, 4})).value(), xt::xarray<float>{{0.25, 0.25, 0.25, 0.25}}) ==
          "");
    REQUIRE_THROWS_AS(Dropout(1.5), xgrad::ValueError);
    REQUIRE_THROWS_WITH(Dense(5, 2)(xgrad::zeros({7, 4})), Contains("linear:") && Contains("x [7, 4], w [5, 2]"));
}

TEST_CASE("initializers: fans from the shape and seeded draws", "[nn]") {
    CHECK(fans(Shape{3, 3, 16, 32}) == std::pair<std::size_t, std::size_t>{144, 288});
    CHECK(fans(Shape{100, 10}) == std::pair<std::size_t, std::size_t>{100, 10});
    REQUIRE_THROWS_AS(fans(Shape{2, 2, 2}), xgrad::ShapeError);
    Tensor a = xgrad::zeros({50, 50}), b = xgrad::zeros({50, 50});
    xgrad::manual_seed(9);
    initialize(a, Init::glorot_normal);
    xgrad::manual_seed(9);
    initialize(b, Init::glorot_normal);
    CHECK(a.value() == b.value());
    const double var = xt::variance(a.value())();
    CHECK(var == Approx(2.0 / 100).epsilon(0.1));
}

TEST_CASE("Module: save and load round-trip, and refuse another model's file", "[nn][io]") {
    xgrad::manual_seed(1);
    Net a;
    a.bn->running_mean.mutable_value() = xt::xarray<float>{1, 2, 3, 4, 5, 6, 7, 8};
    const auto path = temp_path("net.npz");
    a.save(path);
    xgrad::manual_seed(2);
    Net b;
    b.load(path);
    for (std::size_t i = 0; i < a.state().size(); ++i) CHECK(a.state()[i].second.value() == b.state()[i].second.value());

    struct Other : Module {
        std::shared_ptr<Dense> fc1 = add_module("fc1", Dense(4, 9));
        Tensor forward(const Tensor& x) override { return (*fc1)(x); }
    } other;
    const auto before = other.fc1->weight.value();
    REQUIRE_THROWS_WITH(other.load(path), Contains("'fc1.weight' has shape [4, 8] but the model expects [4, 9]"));
    CHECK(other.fc1->weight.value() == before);  // unchanged
    REQUIRE_THROWS_AS(b.load(temp_path("missing.npz")), xgrad::IoError);
}

TEST_CASE("Sequential: summary, fit, evaluate and a batched predict", "[nn]") {
    const auto train = blobs(256, 1), test = blobs(128, 2);
    xgrad::manual_seed(3);
    Sequential model({4});
    model.add(Dense(4, 16, Activation::relu)).add(Dropout(0.1)).add(Dense(16, 3));
    const auto table = model.summary(false);
    CHECK_THAT(table, Contains("0 (Dense)") && Contains("[N, 16]") && Contains("Total params: 131"));
    REQUIRE_THROWS_WITH(model.fit(train), Contains("compile"));
    model.compile(std::make_shared<xgrad::optim::Adam>(model.parameters(), xgrad::optim::AdamOptions{.lr = 0.02}));
    std::size_t calls = 0;
    const auto csv = temp_path("history.csv");
    const auto h = model.fit(train, {.epochs = 30,
                                     .batch_size = 32,
                                     .validation_data = &test,
                                     .callbacks = {[&](const EpochMetrics&) { return ++calls < 25; }},
                                     .progress = xgrad::Progress::Mode::quiet,
                                     .csv_log = csv});
    CHECK(calls == 25);  // the callback stopped training
    CHECK(h.epochs.size() == 25);
    CHECK(h.epochs.back().loss < h.epochs.front().loss);
    CHECK(*h.epochs.back().val_accuracy > 0.9);
    std::ifstream f(csv);
    std::string header;
    std::getline(f, header);
    CHECK(header == "epoch,loss,accuracy,val_loss,val_accuracy,seconds");
    const auto e = model.evaluate(test);
    CHECK(e.accuracy == Approx(*h.epochs.back().val_accuracy));
    const auto all = model.predict(test.x, 50);  // 3 batches
    CHECK(all.shape() == Shape{128, 3});
    xgrad::NoGradGuard g;
    model.eval();
    CHECK(xgrad_test::array_diff(all.value(), model(test.x).value(), 1e-5) == "");
}

TEST_CASE("Sequential: a validation split holds out the last samples", "[nn]") {
    const auto train = blobs(100, 4);
    Sequential model({4});
    model.add(Dense(4, 3));
    model.compile(std::make_shared<xgrad::optim::SGD>(model.parameters()));
    const auto h = model.fit(train, {.epochs = 1, .batch_size = 10, .validation_split = 0.2,
                                     .progress = xgrad::Progress::Mode::quiet});
    CHECK(h.epochs[0].val_loss.has_value());
    REQUIRE_THROWS_AS(model.fit(train, {.validation_split = 1.0}), xgrad::ValueError);
}

TEST_CASE("checkpoint: resuming gives exactly the uninterrupted run (1 thread)", "[nn][io]") {
    xgrad::set_num_threads(1);
    const auto data = blobs(96, 6);
    auto run = [&](Net& net, xgrad::optim::Optimizer& opt, std::size_t from, std::size_t to) {
        xgrad::data::DataLoader loader(data, {.batch_size = 16, .seed = 3});
        for (std::size_t e = from; e < to; ++e)
            for (std::size_t i = 0; i < loader.size(); ++i) {
                const auto b = loader.batch(e, i);
                auto loss = xgrad::cross_entropy(xgrad::dropout((*net.fc2)((*net.bn)((*net.fc1)(b.x))), 0.2, true), b.y);
                opt.zero_grad();
                loss.backward();
                opt.step();
            }
    };
    xgrad::manual_seed(11);
    Net straight;
    xgrad::optim::Adam opt_straight(straight.parameters());
    run(straight, opt_straight, 0, 4);

    xgrad::manual_seed(11);
    Net first;
    xgrad::optim::Adam opt_first(first.parameters());
    run(first, opt_first, 0, 2);
    const auto path = temp_path("ckpt.npz");
    xgrad::io::save_checkpoint(path, first, opt_first, 2);
    xgrad::manual_seed(999);  // the checkpoint restores the generator too
    Net resumed;
    xgrad::optim::Adam opt_resumed(resumed.parameters());
    CHECK(xgrad::io::load_checkpoint(path, resumed, opt_resumed) == 2);
    run(resumed, opt_resumed, 2, 4);
    for (std::size_t i = 0; i < straight.state().size(); ++i)
        CHECK(straight.state()[i].second.value() == resumed.state()[i].second.value());
    xgrad::set_num_threads(2);
}

TEST_CASE("checkpoint: another model's checkpoint or a weights file is refused, nothing changes", "[nn][io][errors]") {
    Net net;
    xgrad::optim::SGD opt(net.parameters(), {.momentum = 0.9});
    const auto weights = temp_path("weights_only.npz");
    net.save(weights);
    REQUIRE_THROWS_WITH(xgrad::io::load_checkpoint(weights, net, opt), Contains("not an xgrad checkpoint"));
    Sequential small({4});
    small.add(Dense(4, 2));
    xgrad::optim::SGD small_opt(small.parameters());
    const auto path = temp_path("small_ckpt.npz");
    xgrad::io::save_checkpoint(path, small, small_opt, 1);
    const auto before = net.fc1->weight.value();
    REQUIRE_THROWS_AS(xgrad::io::load_checkpoint(path, net, opt), xgrad::IoError);
    CHECK(net.fc1->weight.value() == before);
}

TEST_CASE("checkpoint: an epoch entry that is empty, not a count or a wrong dtype is an IoError", "[nn][io][errors]") {
    Net net;
    xgrad::optim::SGD opt(net.parameters(), {.momentum = 0.9});
    const auto path = temp_path("epoch_ckpt.npz");
    xgrad::io::save_checkpoint(path, net, opt, 3);
    const auto good = xgrad::io::read_npz(path);
    const auto bad = temp_path("epoch_bad.npz");
    auto with_epoch = [&](xgrad::io::NpyArray epoch) {
        auto arrays = good;
        for (auto& [name, a] : arrays)
            if (name == "epoch") a = epoch;
        xgrad::io::write_npz(bad, arrays);
    };
    const double nan = std::numeric_limits<double>::quiet_NaN();
    for (const auto& epoch : {xgrad::io::to_npy(xt::xarray<double>::from_shape({0})),
                              xgrad::io::to_npy(xt::xarray<double>{1, 2}), xgrad::io::to_npy(xt::xarray<double>(nan)),
                              xgrad::io::to_npy(xt::xarray<double>(-1)), xgrad::io::to_npy(xt::xarray<double>(2.5)),
                              xgrad::io::to_npy(xt::xarray<double>(1e300)), xgrad::io::bytes_to_npy("3")}) {
        with_epoch(epoch);
        REQUIRE_THROWS_WITH(xgrad::io::load_checkpoint(bad, net, opt), Contains(bad) && Contains("epoch"));
    }
    with_epoch(xgrad::io::to_npy(xt::xarray<double>(7)));
    CHECK(xgrad::io::load_checkpoint(bad, net, opt) == 7);
}

TEST_CASE("threads: two models trained at once match the same models trained in turn", "[nn][threads]") {
    const auto data = blobs(128, 8);
    auto make = [](std::uint64_t seed) {
        xgrad::manual_seed(seed);
        auto m = std::make_shared<Sequential>(Shape{4});
        m->add(Conv2D(1, 4, {1, 3}, {.padding = xgrad::Padding::same}, Activation::relu)).add(Flatten()).add(Dense(16, 3));
        return m;
    };
    auto train = [&data](Sequential& m) {
        xgrad::optim::SGD opt(m.parameters(), {.lr = 0.05, .momentum = 0.9});
        xgrad::data::DataLoader loader(data, {.batch_size = 16, .seed = 2});
        for (std::size_t e = 0; e < 3; ++e)
            for (std::size_t i = 0; i < loader.size(); ++i) {
                const auto b = loader.batch(e, i);
                auto loss = xgrad::cross_entropy(m(xgrad::reshape(b.x, {-1, 1, 4, 1})), b.y);
                opt.zero_grad();
                loss.backward();
                opt.step();
            }
    };
    auto a1 = make(1), b1 = make(2);
    train(*a1);
    train(*b1);
    auto a2 = make(1), b2 = make(2);
    std::thread ta([&] { train(*a2); });
    std::thread tb([&] { train(*b2); });
    ta.join();
    tb.join();
    for (std::size_t i = 0; i < a1->state().size(); ++i) {
        CHECK(a1->state()[i].second.value() == a2->state()[i].second.value());
        CHECK(b1->state()[i].second.value() == b2->state()[i].second.value());
    }
}

TEST_CASE("plot_history: gnuplot (installed by tools/setup.sh) draws a real 1000x400 PNG", "[nn]") {
    History h;
    for (std::size_t e = 1; e <= 3; ++e) h.epochs.push_back({e, 1.0 / e, 0.5 + 0.1 * e, 1.2 / e, 0.5, 1.0});
    const auto png = temp_path("curves.png");
    std::remove(png.c_str());
    INFO("gnuplot missing? tools/setup.sh installs gnuplot-nox");
    REQUIRE(std::system("command -v gnuplot >/dev/null 2>&1") == 0);
    REQUIRE(plot_history(h, png));
    std::ifstream f(png, std::ios::binary);
    std::string head(24, '\0');
    f.read(head.data(), 24);
    REQUIRE(f.good());
    CHECK(head.substr(0, 8) == "\x89PNG\r\n\x1a\n");
    CHECK(head.substr(12, 4) == "IHDR");
    auto be32 = [&](std::size_t at) {
        std::uint32_t v = 0;
        for (std::size_t k = 0; k < 4; ++k) v = v << 8 | static_cast<unsigned char>(head[at + k]);
        return v;
    };
    CHECK(be32(16) == 1000);  // width
    CHECK(be32(20) == 400);   // height
    f.seekg(0, std::ios::end);
    CHECK(f.tellg() > 5000);  // two drawn panels, not an empty canvas
}

namespace {

// `steps` SGD steps of a small CNN (single- and multi-channel convs, pooling, batch norm,
// dropout) from seed 5; returns every tensor of the model's state. Its loss spikes near step
// 120 (lr 0.05, momentum 0.9), which amplifies any rounding difference by orders of magnitude.
std::vector<xt::xarray<float>> train_steps(std::size_t steps = 200) {
    xgrad::manual_seed(5);
    auto x = xgrad::rand({64, 8, 8, 1});
    xt::xarray<float> yv = xt::empty<float>({64});
    for (std::size_t i = 0; i < 64; ++i) yv(i) = static_cast<float>(i % 3);
    const xgrad::data::Dataset data{x, Tensor(yv)};
    Sequential m({8, 8, 1});
    const xgrad::Conv2dOptions same{.padding = xgrad::Padding::same};
    m.add(Conv2D(1, 4, 3, same, Activation::relu))
        .add(Conv2D(4, 6, 3, same))
        .add(BatchNorm(6))
        .add(ReLU())
        .add(MaxPool2D({.kernel = 2}))
        .add(Flatten())
        .add(Dropout(0.2))
        .add(Dense(96, 3));
    xgrad::optim::SGD opt(m.parameters(), {.lr = 0.05, .momentum = 0.9});
    xgrad::data::DataLoader loader(data, {.batch_size = 16, .seed = 1});
    for (std::size_t step = 0; step < steps; ++step) {
        const auto b = loader.batch(step / loader.size(), step % loader.size());
        auto loss = xgrad::cross_entropy(m(b.x), b.y);
        opt.zero_grad();
        loss.backward();
        opt.step();
    }
    std::vector<xt::xarray<float>> out;
    for (const auto& [name, t] : m.state()) out.push_back(t.value());
    return out;
}

}  // namespace

TEST_CASE("determinism: with a seed and 1 thread, two runs give bit-identical weights after 200 steps",
          "[nn][determinism]") {
    xgrad::set_num_threads(1);
    const auto a = train_steps();
    const auto b = train_steps();
    xgrad::set_num_threads(2);
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i] == b[i]);
}

TEST_CASE("determinism: at 2 threads two runs are bit-identical too; 1 and 2 threads differ by rounding only",
          "[nn][determinism]") {
    xgrad::set_num_threads(2);
    const auto a = train_steps();
    const auto b = train_steps();
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i] == b[i]);
    // Partial sums split differently (OpenBLAS, the single-channel weight gradient) round
    // differently. Compared before the loss spike, which would amplify that into percents.
    const auto two = train_steps(100);
    xgrad::set_num_threads(1);
    const auto one = train_steps(100);
    xgrad::set_num_threads(2);
    double largest = 0;
    for (std::size_t i = 0; i < a.size(); ++i)
        largest = std::max(largest, static_cast<double>(xt::amax(xt::abs(two[i] - one[i]))()));
    UNSCOPED_INFO("largest |1 thread - 2 threads| after 100 steps: " << largest);
    CHECK(largest < 1e-4);
}

TEST_CASE("distributed: a single process is a world of one; gradients are packed into buckets in order",
          "[nn][distributed]") {
    CHECK(xgrad::distributed::rank() == 0);
    CHECK(xgrad::distributed::world_size() == 1);
    CHECK(xgrad::distributed::is_main());
    // 4x8 + 8 + 8x3 + 3 floats = 128, 32, 96, 12 bytes.
    Net net;  // fc1 [4, 8] + [8], bn [8] x 2, fc2 [8, 3] + [3]
    const auto params = net.parameters();
    CHECK(xgrad::distributed::GradientAverager(params, {.bucket_bytes = 1 << 20}).buckets() == 1);
    CHECK(xgrad::distributed::GradientAverager(params, {.bucket_bytes = 4}).buckets() == params.size());
    // 160 bytes: [fc1.weight, fc1.bias], [bn.weight, bn.bias, fc2.weight], [fc2.bias]
    CHECK(xgrad::distributed::GradientAverager(params, {.bucket_bytes = 160}).buckets() == 3);
    // With one rank, average() leaves the gradients alone.
    auto loss = xgrad::sum((*net.fc2)((*net.bn)((*net.fc1)(xgrad::ones({2, 4})))));
    loss.backward();
    const auto before = net.fc1->weight.grad();
    xgrad::distributed::GradientAverager averager(params);
    averager.average();
    CHECK(net.fc1->weight.grad() == before);
}

TEST_CASE("Sequential: an empty batch runs forward, backward and predict, in float32 and bf16", "[nn][traps]") {
    for (const bool bf16 : {false, true}) {
        INFO((bf16 ? "bf16" : "float32"));
        xgrad::AutocastGuard precision(bf16 ? xgrad::Precision::bf16 : xgrad::Precision::float32);
        const xgrad::Conv2dOptions same{.padding = xgrad::Padding::same};
        Sequential model({8, 8, 1});
        model.add(Conv2D(1, 16, 3, same, Activation::relu))
            .add(MaxPool2D({.kernel = 2}))
            .add(Conv2D(16, 16, 3, same, Activation::relu))
            .add(Flatten())
            .add(Dense(4 * 4 * 16, 8, Activation::relu))
            .add(Dense(8, 3));
        const auto x = xgrad::zeros<float>({0, 8, 8, 1});
        auto y = model(x);
        CHECK(y.shape() == Shape{0, 3});
        xgrad::sum(y).backward();
        for (const auto& p : model.parameters()) CHECK(xt::all(xt::equal(p.grad(), 0.0f)));
        CHECK(model.predict(x).shape() == Shape{0, 3});
    }
    // the shapes under it: flatten counts the trailing size, a shared matmul operand of K = 0
    CHECK(xgrad::flatten(xgrad::zeros<float>({0, 7, 7, 64})).shape() == Shape{0, 3136});
    Tensor a = xgrad::zeros<float>({2, 3, 0}, true), b = xgrad::zeros<float>({0, 4}, true);
    xgrad::sum(xgrad::matmul(a, b)).backward();
    CHECK(b.grad().shape() == b.shape());
}
