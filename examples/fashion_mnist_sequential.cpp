// The W1 CNN of fashion_mnist.cpp, built Keras-style with Sequential: add, summary, compile,
// fit (progress bar, validation, CSV log, optional plot), evaluate, predict, and the
// per-class report (confusion matrix, precision / recall / F1, top-2 accuracy).
//
//   tools/run fashion_mnist_sequential --epochs 3 --csv history.csv --plot history.png

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "xgrad/xgrad.hpp"

using namespace xgrad::nn;
using xgrad::Padding;

int main(int argc, char** argv) {
    CLI::App app{"Trains the Fashion-MNIST CNN with the Keras-like Sequential API."};
    int epochs = 3, threads = 0;
    std::size_t batch = 64, limit = 0;
    std::string csv, plot, save, data_dir = xgrad::data::kFashionMnistDir;
    bool quiet = false;
    app.add_option("--epochs", epochs, "Training epochs")->check(CLI::PositiveNumber);
    app.add_option("--batch", batch, "Batch size")->check(CLI::PositiveNumber);
    app.add_option("--threads", threads, "Threads (default: all cores)");
    app.add_option("--limit", limit, "Train on the first N images only (0: all)");
    app.add_option("--csv", csv, "Write per-epoch metrics to this CSV file");
    app.add_option("--plot", plot, "Draw loss and accuracy curves to this PNG (needs gnuplot)");
    app.add_option("--save", save, "Write the trained weights to this .npz file");
    app.add_option("--data", data_dir, "Directory with the Fashion-MNIST IDX files");
    app.add_flag("--quiet", quiet, "No progress output");
    CLI11_PARSE(app, argc, argv);

    try {
        if (threads > 0) xgrad::set_num_threads(threads);
        xgrad::manual_seed(1);
        auto train = xgrad::data::load_fashion_mnist(xgrad::data::Split::train, data_dir);
        const auto test = xgrad::data::load_fashion_mnist(xgrad::data::Split::test, data_dir);
        if (limit > 0 && limit < train.size()) train = train.slice(0, limit);

        const xgrad::Conv2dOptions same{.padding = Padding::same};
        Sequential model({28, 28, 1});
        model.add(Conv2D(1, 32, 3, same, Activation::relu))
            .add(MaxPool2D({.kernel = 2}))
            .add(Conv2D(32, 64, 3, same, Activation::relu))
            .add(MaxPool2D({.kernel = 2}))
            .add(Flatten())
            .add(Dense(7 * 7 * 64, 128, Activation::relu))
            .add(Dense(128, 10));
        model.summary();
        model.compile(std::make_shared<xgrad::optim::SGD>(model.parameters(),
                                                          xgrad::optim::SGDOptions{.lr = 0.01, .momentum = 0.9}));
        const auto history = model.fit(train, {.epochs = epochs,
                                               .batch_size = batch,
                                               .seed = 1,
                                               .validation_data = &test,
                                               .progress = quiet ? xgrad::Progress::Mode::quiet
                                                                 : xgrad::Progress::Mode::automatic,
                                               .csv_log = csv,
                                               .plot = plot});
        const auto result = model.evaluate(test);
        fmt::print("test accuracy: {:.2f}% (loss {:.4f})\n", 100 * result.accuracy, result.loss);

        // Which classes are confused with which, and each class's precision, recall and F1.
        const auto all_scores = model.predict(test.x);
        ConfusionMatrix confusion(10);
        confusion.update(all_scores, test.y);
        const auto& names = xgrad::data::fashion_mnist_classes();
        fmt::print("{}top-2 accuracy: {:.2f}%\n", confusion.report(names),
                   100 * top_k_accuracy(all_scores, test.y, 2));

        // predict runs in batches; here the first test images and their classes.
        const auto scores = model.predict(xgrad::data::take_rows(test.x, {0, 1, 2}));
        for (std::size_t i = 0; i < 3; ++i) {
            const float* row = scores.value().data() + i * 10;
            const auto best = static_cast<std::size_t>(std::max_element(row, row + 10) - row);
            fmt::print("test image {}: predicted {}, truly {}\n", i, xgrad::data::fashion_mnist_classes()[best],
                       xgrad::data::fashion_mnist_classes()[static_cast<std::size_t>(test.y.value()(i))]);
        }
        if (!save.empty()) model.save(save);
        (void)history;
    } catch (const xgrad::Error& e) {
        fmt::print(stderr, "fashion_mnist_sequential: {}\n", e.what());
        return 1;
    }
    return 0;
}
