// Parameter groups, learning-rate schedules (with their state in checkpoints) and the
// training-loop features of Sequential::fit: early stopping, checkpoints, resume, callbacks.
#include <cmath>
#include <fstream>
#include <numbers>

#include <catch2/catch.hpp>

#include "helpers.hpp"
#include "xgrad/xgrad.hpp"

using xgrad::Shape;
using xgrad::Tensor;
using Catch::Matchers::Contains;
using xgrad_test::blobs;
using xgrad_test::temp_path;
using namespace xgrad::nn;
namespace optim = xgrad::optim;

namespace {

// The rates a schedule sets at construction and after each of `steps` steps.
std::vector<double> rates(optim::Optimizer& opt, optim::Scheduler& s, int steps, std::vector<double> metrics = {}) {
    std::vector<double> out{opt.lr()};
    for (int e = 0; e < steps; ++e) {
        if (metrics.empty())
            s.step();
        else
            s.step(metrics[static_cast<std::size_t>(e)]);
        out.push_back(opt.lr());
    }
    return out;
}

void check_rates(const std::vector<double>& actual, const std::vector<double>& expected) {
    REQUIRE(actual.size() == expected.size());
    for (std::size_t i = 0; i < actual.size(); ++i) {
        INFO("step " << i);
        CHECK(actual[i] == Approx(expected[i]).epsilon(1e-12).margin(1e-15));
    }
}

std::shared_ptr<Sequential> small_model(std::uint64_t seed) {
    xgrad::manual_seed(seed);
    auto m = std::make_shared<Sequential>(Shape{4});
    m->add(Dense(4, 8, Activation::relu)).add(Dense(8, 3));
    return m;
}

}  // namespace

TEST_CASE("parameter groups: each group steps with its own rate and weight decay", "[optim][training]") {
    // Two groups in one SGD equal two SGDs with the groups' options.
    Tensor a(xt::xarray<float>{1, -2}, true), b(xt::xarray<float>{0.5f}, true);
    Tensor a2(a.value(), true), b2(b.value(), true);
    optim::SGD grouped({{.params = {a}}, {.params = {b}, .lr = 0.5, .weight_decay = 0}},
                       {.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01});
    optim::SGD first({a2}, {.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01});
    optim::SGD second({b2}, {.lr = 0.5, .momentum = 0.9});
    CHECK(grouped.groups() == 2);
    CHECK(grouped.lr(1) == 0.5);
    for (int t = 0; t < 4; ++t) {
        for (auto* p : {&a, &b, &a2, &b2}) xgrad::sum(xgrad::square(*p) * 3.0f).backward();
        grouped.step();
        first.step();
        second.step();
        for (auto* o : std::initializer_list<optim::Optimizer*>{&grouped, &first, &second}) o->zero_grad();
    }
    CHECK(a.value() == a2.value());
    CHECK(b.value() == b2.value());
    // AdamW's decoupled decay per group, float64 groups, and the errors.
    xgrad::Tensor64 c(xt::xarray<double>{1}, true);
    optim::AdamW adamw({{.params64 = {c}, .weight_decay = 0.5}}, {.lr = 0.1});
    xgrad::sum(c * 0.0).backward();
    adamw.step();
    CHECK(c.value()(0) == Approx(1 - 0.1 * 0.5));
    REQUIRE_THROWS_WITH(optim::SGD({{.params = {a}}, {.params64 = {c}}}), Contains("group 1") && Contains("float64"));
    REQUIRE_THROWS_WITH(optim::SGD({{.params = {a}}, optim::ParamGroup{}}), Contains("parameter group 1"));
    REQUIRE_THROWS_WITH(optim::SGD({{.params = {a}, .lr = -1}}), Contains("learning rate"));
    REQUIRE_THROWS_WITH(optim::SGD({{.params = {a}}, {.params = {a}}}), Contains("parameter 1") && Contains("twice"));
    REQUIRE_THROWS_WITH(grouped.lr(2), Contains("no parameter group 2"));
    // A state saved with other groups is refused.
    optim::SGD one({a, b}, {.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01});
    REQUIRE_THROWS_WITH(one.load_state(grouped.state()), Contains("groups"));
}

TEST_CASE("schedules follow torch.optim.lr_scheduler, per group", "[optim][training]") {
    Tensor p(xt::xarray<float>{1}, true), q(xt::xarray<float>{1}, true);
    SECTION("StepLR and MultiStepLR") {
        optim::SGD opt({{.params = {p}}, {.params = {q}, .lr = 0.1}}, {.lr = 1});
        optim::MultiStepLR s(opt, {2, 3}, 0.5);
        check_rates(rates(opt, s, 4), {1, 1, 0.5, 0.25, 0.25});
        CHECK(opt.lr(1) == Approx(0.025));  // the second group from its own base
        optim::SGD opt2({p}, {.lr = 1});
        optim::StepLR step(opt2, 2, 0.5);
        check_rates(rates(opt2, step, 5), {1, 1, 0.5, 0.5, 0.25, 0.25});
    }
    SECTION("LinearLR warmup and LambdaLR") {
        optim::SGD opt({p}, {.lr = 0.3});
        optim::LinearLR warm(opt, {.start_factor = 0.25, .total_iters = 3});
        check_rates(rates(opt, warm, 4), {0.075, 0.15, 0.225, 0.3, 0.3});
        optim::SGD opt2({p}, {.lr = 2});
        optim::LambdaLR lambda(opt2, [](std::int64_t e) { return 1.0 / static_cast<double>(e + 1); });
        check_rates(rates(opt2, lambda, 3), {2, 1, 2.0 / 3, 0.5});
        optim::LambdaLR negative(opt2, [](std::int64_t e) { return e == 0 ? 1.0 : -1.0; });
        REQUIRE_THROWS_WITH(negative.step(), Contains("LambdaLR") && Contains("-1"));
    }
    SECTION("OneCycleLR") {
        optim::SGD opt({p}, {.lr = 5});
        optim::OneCycleLR s(opt, {.max_lr = 0.1, .total_steps = 10});
        CHECK(s.per_batch());
        const double lo = 0.1 / 25, end = lo / 1e4;
        auto anneal = [](double from, double to, double pct) {
            return to + (from - to) / 2 * (std::cos(std::numbers::pi * pct) + 1);
        };
        std::vector<double> expected{lo, anneal(lo, 0.1, 0.5), 0.1};
        for (int t = 3; t < 10; ++t) expected.push_back(anneal(0.1, end, (t - 2) / 7.0));
        expected.push_back(end);  // after the last batch
        check_rates(rates(opt, s, 10), expected);
        REQUIRE_THROWS_WITH(s.step(), Contains("total_steps"));
    }
    SECTION("CosineAnnealingLR and ExponentialLR") {
        optim::SGD opt({p}, {.lr = 1});
        optim::CosineAnnealingLR cosine(opt, 4, 0.1);
        const auto r = rates(opt, cosine, 4);
        CHECK(r[1] == Approx(0.1 + 0.9 * (1 + std::cos(std::numbers::pi / 4)) / 2));
        CHECK(r[4] == Approx(0.1));
        optim::SGD opt2({p}, {.lr = 1});
        optim::ExponentialLR ex(opt2, 0.5);
        check_rates(rates(opt2, ex, 2), {1, 0.5, 0.25});
    }
    SECTION("ReduceLROnPlateau: cut after patience epochs without improvement, then cool down") {
        optim::SGD opt({p}, {.lr = 1});
        optim::ReduceLROnPlateau s(opt, {.factor = 0.5, .patience = 2, .cooldown = 1, .min_lr = 0.2});
        // best 1, 0.9; then 3 without improvement (0.89995 is within the 1e-4 threshold) -> cut;
        // the cooldown epoch does not count; 3 more -> cut; then min_lr holds.
        check_rates(rates(opt, s, 11, {1, 0.9, 0.95, 0.89995, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95}),
                    {1, 1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25});
        CHECK(s.best() == 0.9);
        for (int e = 0; e < 4; ++e) s.step(0.95);
        CHECK(opt.lr() == 0.2);
        REQUIRE_THROWS_WITH(s.step(), Contains("ReduceLROnPlateau") && Contains("metric"));
        REQUIRE_THROWS_WITH(s.step(std::nan("")), Contains("metric"));
        optim::SGD opt2({p}, {.lr = 1});
        optim::ReduceLROnPlateau up(opt2, {.maximize = true, .patience = 0});
        check_rates(rates(opt2, up, 3, {0.5, 0.6, 0.6}), {1, 1, 1, 0.1});
    }
    SECTION("bad options") {
        optim::SGD opt({p}, {.lr = 1});
        REQUIRE_THROWS_AS(optim::MultiStepLR(opt, {3, 2}), xgrad::ValueError);
        REQUIRE_THROWS_AS(optim::LinearLR(opt, {.start_factor = 0}), xgrad::ValueError);
        REQUIRE_THROWS_AS(optim::OneCycleLR(opt, {}), xgrad::ValueError);
        REQUIRE_THROWS_AS(optim::ReduceLROnPlateau(opt, {.factor = 1}), xgrad::ValueError);
        REQUIRE_THROWS_AS(optim::StepLR(opt, 1, 0), xgrad::ValueError);
    }
}

TEST_CASE("scheduler state: a restored schedule continues exactly; another schedule's state is refused",
          "[optim][training][io]") {
    Tensor p(xt::xarray<float>{1}, true);
    optim::SGD opt({p}, {.lr = 1});
    optim::ReduceLROnPlateau s(opt, {.patience = 1});
    for (double m : {1.0, 2.0}) s.step(m);
    const auto state = s.state();
    const auto opt_state = opt.state();
    std::vector<double> straight;
    for (double m : {2.0, 0.5, 3.0, 3.0}) {
        s.step(m);
        straight.push_back(opt.lr());
    }
    optim::SGD opt2({p}, {.lr = 1});
    optim::ReduceLROnPlateau s2(opt2, {.patience = 1});
    opt2.load_state(opt_state);
    s2.load_state(state);
    CHECK(s2.epoch() == 2);
    CHECK(s2.best() == 1.0);
    std::vector<double> resumed;
    for (double m : {2.0, 0.5, 3.0, 3.0}) {
        s2.step(m);
        resumed.push_back(opt2.lr());
    }
    CHECK(resumed == straight);
    optim::ReduceLROnPlateau other_options(opt2, {.patience = 2});
    REQUIRE_THROWS_WITH(other_options.load_state(state), Contains("patience=1") && Contains("patience=2"));
    optim::StepLR step(opt2, 1);
    REQUIRE_THROWS_WITH(step.load_state(state), Contains("ReduceLROnPlateau") && Contains("StepLR"));
    auto broken = state;
    for (auto& [k, a] : broken)
        if (k == "bad_epochs") a = xgrad::io::to_npy(xt::xarray<double>(1.5));
    const auto before = s2.state();
    REQUIRE_THROWS_WITH(s2.load_state(broken), Contains("bad_epochs"));
    CHECK(s2.epoch() == 6);  // unchanged
}

TEST_CASE("checkpoint: resuming mid-epoch with a per-batch schedule gives exactly the uninterrupted run",
          "[nn][io][training]") {
    xgrad::set_num_threads(1);
    const auto data = blobs(100, 6);  // 7 batches of 16, the last of 4
    xgrad::data::DataLoader loader(data, {.batch_size = 16, .seed = 3});
    const std::int64_t total = 3 * static_cast<std::int64_t>(loader.size());
    auto make = [&](std::shared_ptr<Sequential>& m, std::unique_ptr<optim::Adam>& opt,
                    std::unique_ptr<optim::OneCycleLR>& sched) {
        m = small_model(5);
        m->add(Dropout(0.2));
        opt = std::make_unique<optim::Adam>(m->parameters());
        sched = std::make_unique<optim::OneCycleLR>(*opt, optim::OneCycleOptions{.max_lr = 0.05, .total_steps = total});
    };
    // Trains from the optimizer's step count to `until` steps.
    auto train = [&](Sequential& m, optim::Adam& opt, optim::OneCycleLR& sched, std::int64_t until) {
        while (opt.steps() < until) {
            const auto e = static_cast<std::size_t>(opt.steps()) / loader.size();
            const auto b = loader.batch(e, static_cast<std::size_t>(opt.steps()) % loader.size());
            auto loss = xgrad::cross_entropy(m(b.x), b.y);
            opt.zero_grad();
            loss.backward();
            opt.step();
            sched.step();
        }
    };
    std::shared_ptr<Sequential> straight, first, resumed;
    std::unique_ptr<optim::Adam> o1, o2, o3;
    std::unique_ptr<optim::OneCycleLR> s1, s2, s3;
    make(straight, o1, s1);
    train(*straight, *o1, *s1, total - 1);
    make(first, o2, s2);
    train(*first, *o2, *s2, 10);  // 1 epoch and 3 batches
    const auto path = temp_path("mid_epoch_ckpt.npz");
    xgrad::io::save_checkpoint(path, *first, *o2, 1, s2.get());
    make(resumed, o3, s3);
    xgrad::manual_seed(77);
    CHECK(xgrad::io::load_checkpoint(path, *resumed, *o3, s3.get()) == 1);
    CHECK(o3->steps() - 1 * static_cast<std::int64_t>(loader.size()) == 3);  // batches to skip in epoch 1
    CHECK(o3->lr() == o2->lr());
    train(*resumed, *o3, *s3, total - 1);
    for (std::size_t i = 0; i < straight->state().size(); ++i)
        CHECK(straight->state()[i].second.value() == resumed->state()[i].second.value());
    CHECK(o3->lr() == o1->lr());
    // A checkpoint with a schedule needs one to load into, and the reverse; nothing changes then.
    const auto weights = resumed->state()[0].second.value();
    REQUIRE_THROWS_WITH(xgrad::io::load_checkpoint(path, *resumed, *o3), Contains("schedule") && Contains(path));
    const auto plain = temp_path("plain_ckpt.npz");
    xgrad::io::save_checkpoint(plain, *first, *o2, 1);
    REQUIRE_THROWS_WITH(xgrad::io::load_checkpoint(plain, *resumed, *o3, s3.get()), Contains("OneCycleLR"));
    optim::StepLR wrong(*o3, 2);
    REQUIRE_THROWS_WITH(xgrad::io::load_checkpoint(path, *resumed, *o3, &wrong), Contains("OneCycleLR"));
    CHECK(resumed->state()[0].second.value() == weights);
    xgrad::set_num_threads(2);
}

TEST_CASE("fit: epochs count from 1, drop_last, batch callbacks, a per-batch scheduler and errors naming the layer",
          "[nn][training]") {
    const auto train = blobs(100, 1);
    auto model = small_model(2);
    model->add(BatchNorm(3));
    auto opt = std::make_shared<optim::SGD>(model->parameters(), optim::SGDOptions{.lr = 0.1});
    model->compile(opt);
    std::vector<BatchMetrics> batches;
    optim::OneCycleLR sched(*opt, {.max_lr = 0.2, .total_steps = 2 * 33});
    auto h = model->fit(train, {.epochs = 2,
                                .batch_size = 3,
                                .batch_callbacks = {[&](const BatchMetrics& b) {
                                    batches.push_back(b);
                                    return true;
                                }},
                                .drop_last = true,  // 100 = 33·3 + 1: a batch of one would break BatchNorm
                                .scheduler = &sched,
                                .progress = xgrad::Progress::Mode::quiet});
    REQUIRE(h.epochs.size() == 2);
    CHECK(h.epochs[0].epoch == 1);
    CHECK(h.epochs[1].epoch == 2);
    REQUIRE(batches.size() == 66);
    CHECK(batches[33].epoch == 2);
    CHECK(batches[33].batch == 0);
    CHECK(batches[0].lr == Approx(0.2 / 25));
    CHECK(sched.epoch() == 66);
    // Without drop_last the batch of one fails, and the error says which layer.
    REQUIRE_THROWS_WITH(model->fit(train, {.batch_size = 3, .progress = xgrad::Progress::Mode::quiet}),
                        Contains("Sequential layer 2 (BatchNorm)"));
    // A batch callback that returns false stops after that batch.
    std::size_t calls = 0;
    model->fit(train, {.epochs = 3,
                       .batch_size = 10,
                       .batch_callbacks = {[&](const BatchMetrics&) { return ++calls < 4; }},
                       .progress = xgrad::Progress::Mode::quiet});
    CHECK(calls == 4);
    // A shape mistake names the layer and keeps its type.
    Sequential bad({4});
    bad.add(Dense(4, 8)).add(Dense(5, 3));
    REQUIRE_THROWS_AS(bad(xgrad::zeros({2, 4})), xgrad::ShapeError);
    REQUIRE_THROWS_WITH(bad(xgrad::zeros({2, 4})), Contains("Sequential layer 1 (Dense)") && Contains("[2, 8]"));
    // Options that cannot work are refused before training.
    optim::SGD other(model->parameters());
    optim::StepLR elsewhere(other, 1);
    REQUIRE_THROWS_WITH(model->fit(train, {.scheduler = &elsewhere}), Contains("another optimizer"));
    REQUIRE_THROWS_WITH(model->fit(train, {.monitor = Monitor::val_loss}), Contains("validation"));
}

TEST_CASE("fit: early stopping restores the best epoch's weights; the best model is saved; ReduceLROnPlateau sees "
          "the validation loss",
          "[nn][training]") {
    const auto train = blobs(200, 1), val = blobs(100, 2);
    auto model = small_model(3);
    auto opt = std::make_shared<optim::SGD>(model->parameters(), optim::SGDOptions{.lr = 0.5});
    model->compile(opt);
    optim::ReduceLROnPlateau plateau(*opt, {.patience = 0});
    std::vector<std::vector<xt::xarray<float>>> weights;  // after each epoch
    const auto best_path = temp_path("best_model.npz");
    std::remove(best_path.c_str());
    auto h = model->fit(train, {.epochs = 30,
                                .batch_size = 20,
                                .validation_data = &val,
                                .callbacks = {[&](const EpochMetrics&) {
                                    weights.emplace_back();
                                    for (const auto& [n, t] : model->state()) weights.back().push_back(t.value());
                                    return true;
                                }},
                                .scheduler = &plateau,
                                .early_stopping = EarlyStopping{.patience = 2, .min_delta = 1e-3},
                                .best_model = best_path,
                                .progress = xgrad::Progress::Mode::quiet});
    // It stopped 2 epochs after its best (beyond min_delta), with the best epoch's weights.
    REQUIRE(h.epochs.size() < 30);
    std::size_t best = 0;
    for (std::size_t e = 1; e < h.epochs.size(); ++e)
        if (*h.epochs[e].val_loss < *h.epochs[best].val_loss - 1e-3) best = e;
    CHECK(h.epochs.size() == best + 3);
    for (std::size_t k = 0; k < model->state().size(); ++k) CHECK(model->state()[k].second.value() == weights[best][k]);
    auto reloaded = small_model(99);
    reloaded->load(best_path);
    for (std::size_t k = 0; k < model->state().size(); ++k)
        CHECK(reloaded->state()[k].second.value() == weights[best][k]);
    CHECK(opt->lr() < 0.5);  // the plateau schedule cut the rate when the loss stopped falling
    double lowest = *h.epochs[0].val_loss;
    for (const auto& m : h.epochs) lowest = std::min(lowest, *m.val_loss);
    CHECK(plateau.best() == lowest);
}

TEST_CASE("fit: a checkpoint written every epoch resumes with initial_epoch exactly as an uninterrupted fit",
          "[nn][training][io]") {
    xgrad::set_num_threads(1);
    const auto train = blobs(120, 1);
    auto run = [&](std::shared_ptr<Sequential>& m, std::shared_ptr<optim::Adam>& opt,
                   std::unique_ptr<optim::StepLR>& s) {
        m = small_model(4);
        m->add(Dropout(0.1));
        opt = std::make_shared<optim::Adam>(m->parameters());
        s = std::make_unique<optim::StepLR>(*opt, 1, 0.5);
        m->compile(opt);
    };
    std::shared_ptr<Sequential> straight, first, resumed;
    std::shared_ptr<optim::Adam> o1, o2, o3;
    std::unique_ptr<optim::StepLR> s1, s2, s3;
    const auto path = temp_path("fit_ckpt.npz");
    run(straight, o1, s1);
    straight->fit(train, {.epochs = 4, .batch_size = 16, .scheduler = s1.get(), .progress = xgrad::Progress::Mode::quiet});
    run(first, o2, s2);
    first->fit(train, {.epochs = 2, .batch_size = 16, .scheduler = s2.get(), .checkpoint = path,
                       .progress = xgrad::Progress::Mode::quiet});
    run(resumed, o3, s3);
    xgrad::manual_seed(1234);
    const auto done = xgrad::io::load_checkpoint(path, *resumed, *o3, s3.get());
    CHECK(done == 2);
    auto h = resumed->fit(train, {.epochs = 4, .batch_size = 16, .initial_epoch = static_cast<int>(done),
                                  .scheduler = s3.get(), .progress = xgrad::Progress::Mode::quiet});
    REQUIRE(h.epochs.size() == 2);
    CHECK(h.epochs[0].epoch == 3);
    for (std::size_t i = 0; i < straight->state().size(); ++i)
        CHECK(straight->state()[i].second.value() == resumed->state()[i].second.value());
    CHECK(o3->lr() == o1->lr());
    CHECK(o3->lr() == Approx(1e-3 / 16));
    xgrad::set_num_threads(2);
}

TEST_CASE("Sequential: the nll, huber and l1 losses train; nll with LogSoftmax is cross-entropy", "[nn][training][loss]") {
    const auto train = blobs(200, 1);
    auto a = small_model(6), b = small_model(6);
    b->add(LogSoftmax());
    a->compile(std::make_shared<optim::SGD>(a->parameters(), optim::SGDOptions{.lr = 0.1}), Loss::cross_entropy);
    b->compile(std::make_shared<optim::SGD>(b->parameters(), optim::SGDOptions{.lr = 0.1}), Loss::nll);
    const auto ha = a->fit(train, {.epochs = 2, .progress = xgrad::Progress::Mode::quiet});
    const auto hb = b->fit(train, {.epochs = 2, .progress = xgrad::Progress::Mode::quiet});
    CHECK(hb.epochs[1].loss == Approx(ha.epochs[1].loss).epsilon(1e-4));
    CHECK(hb.epochs[1].accuracy == ha.epochs[1].accuracy);
    CHECK(hb.epochs[1].accuracy > 0.6);  // chance is 1/3
    for (const auto loss : {Loss::huber, Loss::l1}) {
        xgrad::manual_seed(1);
        const auto x = xgrad::randn({128, 4});
        const Tensor y = xgrad::sum(x, {1}, true) * 0.5f;
        Sequential reg({4});
        reg.add(Dense(4, 1));
        reg.compile(std::make_shared<optim::Adam>(reg.parameters(), optim::AdamOptions{.lr = 0.05}), loss);
        const auto h = reg.fit({x, y}, {.epochs = 30, .batch_size = 16, .progress = xgrad::Progress::Mode::quiet});
        CHECK(std::isnan(h.epochs.back().accuracy));
        CHECK(h.epochs.back().loss < 0.1 * h.epochs.front().loss);
    }
}

TEST_CASE("metrics: top-k accuracy with argmax's tie order, a confusion matrix and per-class P/R/F1 by hand",
          "[nn][metrics]") {
    const Tensor scores(xt::xarray<float>{{0.1f, 0.7f, 0.2f}, {0.5f, 0.3f, 0.2f}, {0.2f, 0.2f, 0.6f}, {0.3f, 0.3f, 0.1f}});
    const Tensor labels(xt::xarray<float>{1, 2, 0, 1});
    CHECK(count_top_k(scores, labels, 1) == 1);
    CHECK(count_top_k(scores, labels, 1) == count_correct(scores, labels));
    CHECK(count_top_k(scores, labels, 2) == 3);  // row 1's class 2 ranks third
    CHECK(count_top_k(scores, labels, 3) == 4);
    CHECK(top_k_accuracy(scores, labels, 2) == 0.75);
    REQUIRE_THROWS_AS(count_top_k(scores, labels, 0), xgrad::ValueError);
    REQUIRE_THROWS_WITH(count_top_k(scores, Tensor(xt::xarray<float>{1, 2, 3, 1}), 1), Contains("target 3 of row 2"));
    ConfusionMatrix cm(3);
    cm.update(scores, labels);
    CHECK(cm.total() == 4);
    CHECK(cm.count(1, 1) == 1);
    CHECK(cm.count(2, 0) == 1);
    CHECK(cm.count(0, 2) == 1);
    CHECK(cm.count(1, 0) == 1);
    CHECK(cm.accuracy() == 0.25);
    CHECK(cm.precision() == std::vector<double>{0, 1, 0});
    CHECK(cm.recall() == std::vector<double>{0, 0.5, 0});
    CHECK(cm.f1()[1] == Approx(2.0 / 3));
    CHECK(cm.macro_f1() == Approx(2.0 / 9));
    const auto text = cm.report({"cat", "dog", "bird"});
    CHECK(text.find("dog") != std::string::npos);
    CHECK(text.find("0.6667") != std::string::npos);
    // One-hot targets read as their argmax; a bad batch adds nothing.
    cm.update(scores, Tensor(xt::xarray<float>{{0, 1, 0}, {0, 0, 1}, {1, 0, 0}, {0, 1, 0}}));
    CHECK(cm.total() == 8);
    REQUIRE_THROWS_AS(cm.update(scores, Tensor(xt::xarray<float>{1, 2, 0, 7})), xgrad::ValueError);
    CHECK(cm.total() == 8);
    REQUIRE_THROWS_WITH(ConfusionMatrix(2).update(scores, labels), Contains("3 classes, the matrix 2"));
    REQUIRE_THROWS_AS(cm.report({"a"}), xgrad::ValueError);
}

TEST_CASE("fit on a Source with prefetch trains exactly as on the in-memory dataset", "[nn][training][data]") {
    xgrad::set_num_threads(1);
    const auto train = blobs(100, 3), val = blobs(40, 4);
    const auto source = xgrad_test::as_source(train);
    auto trained = [&](bool streamed) {
        auto m = small_model(5);
        m->compile(std::make_shared<optim::SGD>(m->parameters(), optim::SGDOptions{.lr = 0.1, .momentum = 0.9}));
        const FitOptions o{.epochs = 2, .batch_size = 16, .seed = 7, .validation_data = &val,
                           .progress = xgrad::Progress::Mode::quiet, .prefetch = streamed};
        const auto h = streamed ? m->fit(source, o) : m->fit(train, o);
        return std::pair{m, h};
    };
    const auto [a, ha] = trained(false);
    const auto [b, hb] = trained(true);
    for (std::size_t i = 0; i < a->state().size(); ++i)
        CHECK(a->state()[i].second.value() == b->state()[i].second.value());
    CHECK(ha.epochs.back().val_loss == hb.epochs.back().val_loss);
    // validation samples from a Source: the same figures as from memory
    const auto val_source = xgrad_test::as_source(val);
    const auto ev = b->evaluate(val_source, 16), em = b->evaluate(val, 16);
    CHECK(ev.loss == Approx(em.loss).epsilon(1e-12));
    CHECK(ev.accuracy == em.accuracy);
    const auto hv = b->fit(source, {.epochs = 1, .validation_source = val_source, .progress = xgrad::Progress::Mode::quiet});
    CHECK(*hv.epochs[0].val_loss == Approx(b->evaluate(val).loss).epsilon(1e-12));
    REQUIRE_THROWS_WITH(b->fit(source, {.validation_split = 0.2}), Contains("validation_split needs an in-memory"));
    REQUIRE_THROWS_WITH(b->fit(train, {.validation_data = &val, .validation_source = val_source}),
                        Contains("not both"));
    xgrad::set_num_threads(2);
}
