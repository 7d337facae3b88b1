// Training from image files rather than tensors: Fashion-MNIST written once as PNG files in
// one directory per class (train/0_T-shirt-top/00017.png, ...), then read back by
// data::ImageFolder, decoded by libpng batch by batch while the previous batch trains
// (prefetch), and fed to Sequential::fit with a validation ImageFolder.
//
//   tools/run image_folder --train 12000 --epochs 2

#include <algorithm>
#include <chrono>
#include <filesystem>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <xtensor/xview.hpp>

#include "xgrad/xgrad.hpp"

using namespace xgrad::nn;
namespace fs = std::filesystem;

namespace {

// Writes the first `n` images of a split as dir/<label>_<name>/<index>.png, unless there.
void export_pngs(const xgrad::data::Dataset& data, std::size_t n, const fs::path& dir) {
    if (fs::exists(dir)) return;
    const auto& names = xgrad::data::fashion_mnist_classes();
    const fs::path partial = dir.string() + ".partial";
    fs::remove_all(partial);
    for (std::size_t i = 0; i < n; ++i) {
        const auto label = static_cast<std::size_t>(data.y.value()(i));
        std::string name = fmt::format("{}_{}", label, names[label]);
        std::replace(name.begin(), name.end(), '/', '-');  // "T-shirt/top"
        fs::create_directories(partial / name);
        const auto one = data.slice(i, i + 1).x.value();
        xgrad::io::save_png((partial / name / fmt::format("{:05}.png", i)).string(),
                            xt::xarray<float>(xt::view(one, 0)));
    }
    fs::rename(partial, dir);  // complete or absent, never half-written
}

double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Trains a CNN on Fashion-MNIST stored as PNG files, read with data::ImageFolder."};
    int epochs = 2, threads = 0;
    std::size_t train_n = 12000, test_n = 2000, batch = 64;
    std::string dir = "/tmp/xgrad_fashion_png", data_dir = xgrad::data::kFashionMnistDir;
    bool no_prefetch = false, compare = false, quiet = false;
    app.add_option("--dir", dir, "Where the PNG directories are written and read");
    app.add_option("--train", train_n, "Training images to export and train on")->check(CLI::PositiveNumber);
    app.add_option("--test", test_n, "Test images to export and evaluate")->check(CLI::PositiveNumber);
    app.add_option("--epochs", epochs, "Training epochs")->check(CLI::PositiveNumber);
    app.add_option("--batch", batch, "Batch size")->check(CLI::PositiveNumber);
    app.add_option("--threads", threads, "Threads (default: all cores)");
    app.add_option("--data", data_dir, "Directory with the Fashion-MNIST IDX files");
    app.add_flag("--no-prefetch", no_prefetch, "Decode each batch when it is asked for");
    app.add_flag("--compare", compare, "Also time one epoch without prefetch, then one with it");
    app.add_flag("--quiet", quiet, "No progress output");
    CLI11_PARSE(app, argc, argv);

    try {
        if (threads > 0) xgrad::set_num_threads(threads);
        const fs::path root = fs::path(dir) / fmt::format("{}-{}", train_n, test_n);
        const auto start = std::chrono::steady_clock::now();
        const auto train_set = xgrad::data::load_fashion_mnist(xgrad::data::Split::train, data_dir);
        const auto test_set = xgrad::data::load_fashion_mnist(xgrad::data::Split::test, data_dir);
        export_pngs(train_set, std::min(train_n, train_set.size()), root / "train");
        export_pngs(test_set, std::min(test_n, test_set.size()), root / "test");
        fmt::print("PNG files in {} ({:.1f} s)\n", root.string(), seconds_since(start));

        const auto train = std::make_shared<xgrad::data::ImageFolder>((root / "train").string());
        const auto test = std::make_shared<xgrad::data::ImageFolder>((root / "test").string());
        fmt::print("{} training and {} test images in {} classes ({} ... {})\n", train->size(), test->size(),
                   train->classes().size(), train->classes().front(), train->classes().back());

        // A small CNN, its weights drawn from seed 1.
        auto build = [](Sequential& m) {
            xgrad::manual_seed(1);
            const xgrad::Conv2dOptions same{.padding = xgrad::Padding::same};
            m.add(Conv2D(1, 16, 3, same, Activation::relu))
                .add(MaxPool2D({.kernel = 2}))
                .add(Conv2D(16, 32, 3, same, Activation::relu))
                .add(MaxPool2D({.kernel = 2}))
                .add(Flatten())
                .add(Dense(7 * 7 * 32, 10));
            m.compile(std::make_shared<xgrad::optim::Adam>(m.parameters(), xgrad::optim::AdamOptions{.lr = 2e-3}));
        };
        Sequential model({28, 28, 1});
        build(model);
        const auto progress = quiet ? xgrad::Progress::Mode::quiet : xgrad::Progress::Mode::automatic;
        if (compare) {
            const auto t = std::chrono::steady_clock::now();
            const xgrad::data::DataLoader reader(train, {.batch_size = batch});
            for (std::size_t i = 0; i < reader.size(); ++i) reader.batch(0, i);
            fmt::print("decoding alone: {:.0f} images/s\n", static_cast<double>(train->size()) / seconds_since(t));
            // The same epoch of the same (fresh) model, decoding inline and then ahead.
            for (const bool ahead : {false, true}) {
                Sequential probe({28, 28, 1});
                build(probe);
                const auto t = std::chrono::steady_clock::now();
                probe.fit(train, {.batch_size = batch, .progress = xgrad::Progress::Mode::quiet, .prefetch = ahead});
                fmt::print("one epoch, prefetch {}: {:.2f} s\n", ahead ? "on " : "off", seconds_since(t));
            }
        }
        model.fit(train, {.epochs = epochs,
                          .batch_size = batch,
                          .seed = 1,
                          .validation_source = test,
                          .progress = progress,
                          .prefetch = !no_prefetch});
        const auto result = model.evaluate(test);
        fmt::print("test accuracy: {:.2f}% (loss {:.4f})\n", 100 * result.accuracy, result.loss);
    } catch (const xgrad::Error& e) {
        fmt::print(stderr, "image_folder: {}\n", e.what());
        return 1;
    } catch (const fs::filesystem_error& e) {
        fmt::print(stderr, "image_folder: {}\n", e.what());
        return 1;
    }
    return 0;
}
